"""The catalogue's ORM models (schema `catalog`). Published data lives in schema `data`,
one table per dataset version, made by the ETL loader, not by these models."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA = "catalog"
DATA_SCHEMA = "data"
THEMES = ("land-use", "housing", "infrastructure", "traffic", "boundaries")
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "skipped")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA, naming_convention=NAMING)


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name_fa: Mapped[str | None] = mapped_column(Text)
    name_en: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = _now()

    datasets: Mapped[list[Dataset]] = relationship(back_populates="organisation")


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (
        CheckConstraint(f"theme IN {THEMES!r}", name="theme"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    title_fa: Mapped[str | None] = mapped_column(Text)
    title_en: Mapped[str | None] = mapped_column(Text)
    description_fa: Mapped[str | None] = mapped_column(Text)
    description_en: Mapped[str | None] = mapped_column(Text)
    theme: Mapped[str] = mapped_column(String(32))
    keywords: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    licence: Mapped[str] = mapped_column(String(64))
    publisher: Mapped[str | None] = mapped_column(Text)
    contact_name: Mapped[str | None] = mapped_column(Text)
    contact_email: Mapped[str | None] = mapped_column(Text)
    update_frequency: Mapped[str] = mapped_column(String(32), server_default="unknown")
    temporal_start: Mapped[date | None] = mapped_column(Date)
    temporal_end: Mapped[date | None] = mapped_column(Date)
    synthetic: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # Computed at load time:
    spatial_extent = mapped_column(Geometry("POLYGON", srid=4326, spatial_index=False))
    feature_count: Mapped[int | None] = mapped_column(BigInteger)
    geometry_type: Mapped[str | None] = mapped_column(String(32))
    source_crs: Mapped[str | None] = mapped_column(Text)
    source_encoding: Mapped[str | None] = mapped_column(String(32))
    metric_crs: Mapped[str | None] = mapped_column(String(32))
    key_field: Mapped[str | None] = mapped_column(Text)
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions.id", use_alter=True, ondelete="SET NULL"))
    job_name: Mapped[str | None] = mapped_column(Text)
    search_text: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = _now()
    modified: Mapped[datetime] = _now()

    organisation: Mapped[Organisation] = relationship(back_populates="datasets")
    fields: Mapped[list[Field]] = relationship(
        back_populates="dataset", order_by="Field.position", cascade="all, delete-orphan")
    versions: Mapped[list[Version]] = relationship(
        back_populates="dataset", foreign_keys="Version.dataset_id", order_by="Version.number")
    current_version: Mapped[Version | None] = relationship(
        foreign_keys=[current_version_id], post_update=True)


class Field(Base):
    """The data dictionary: one row per published column of the current version."""

    __tablename__ = "fields"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(63))
    source_name: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    unit: Mapped[str | None] = mapped_column(Text)
    label_fa: Mapped[str | None] = mapped_column(Text)
    label_en: Mapped[str | None] = mapped_column(Text)
    description_fa: Mapped[str | None] = mapped_column(Text)
    description_en: Mapped[str | None] = mapped_column(Text)
    is_key: Mapped[bool] = mapped_column(Boolean, server_default="false")
    calendar: Mapped[str | None] = mapped_column(String(16))

    dataset: Mapped[Dataset] = relationship(back_populates="fields")


class Version(Base):
    """One load of a dataset: a table in schema `data`. Only the current one is served."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    table_name: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(16), server_default="loading")
    feature_count: Mapped[int | None] = mapped_column(BigInteger)
    extent = mapped_column(Geometry("POLYGON", srid=4326, spatial_index=False))
    geometry_type: Mapped[str | None] = mapped_column(String(32))
    checksum: Mapped[str | None] = mapped_column(String(64))
    schema_json: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    run_id: Mapped[int | None] = mapped_column(ForeignKey("etl_runs.id", ondelete="SET NULL"))
    created: Mapped[datetime] = _now()
    published: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The highest zoom of the dense layer's tile overview (geo/overview.py); NULL: none.
    tile_overview_zoom: Mapped[int | None] = mapped_column(SmallInteger)

    dataset: Mapped[Dataset] = relationship(back_populates="versions", foreign_keys=[dataset_id])


class EtlRun(Base):
    """A run of one job: what was read, loaded, rejected and repaired, and how it ended."""

    __tablename__ = "etl_runs"
    __table_args__ = (CheckConstraint(f"status IN {RUN_STATUSES!r}", name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_name: Mapped[str] = mapped_column(Text)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), server_default="running")
    input_checksum: Mapped[str | None] = mapped_column(String(64))
    manifest_checksum: Mapped[str | None] = mapped_column(String(64))
    rows_read: Mapped[int] = mapped_column(BigInteger, server_default="0")
    rows_loaded: Mapped[int] = mapped_column(BigInteger, server_default="0")
    rows_rejected: Mapped[int] = mapped_column(BigInteger, server_default="0")
    rows_repaired: Mapped[int] = mapped_column(BigInteger, server_default="0")
    warnings: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    error: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column(Float)
    version_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions.id", use_alter=True, ondelete="SET NULL"))

    rejects: Mapped[list[RejectedRow]] = relationship(
        back_populates="run", order_by="RejectedRow.source_row", cascade="all, delete-orphan")


class RejectedRow(Base):
    """A source row that could not be loaded, kept with its reason and raw values."""

    __tablename__ = "rejected_rows"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("etl_runs.id", ondelete="CASCADE"), index=True)
    source_row: Mapped[int] = mapped_column(BigInteger)
    field: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")

    run: Mapped[EtlRun] = relationship(back_populates="rejects")


# ---- write access (migration 0003) -----------------------------------------------------------
# etl_runs.status also takes "queued" from 0003 on: a run asked for through the API waits in
# the job queue until a worker takes it.
KEY_ROLES = ("admin", "publisher")
UPLOAD_KINDS = ("file", "url")
REQUEST_KINDS = ("upload", "url", "rerun", "schedule")


class ApiKey(Base):
    """A write key. Only a SHA-256 of its secret is kept; the prefix finds the row."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(f"role IN {KEY_ROLES!r}", name="role"),
        CheckConstraint("role = 'admin' OR organisation IS NOT NULL", name="publisher_org"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    organisation: Mapped[str | None] = mapped_column(String(64))  # publisher's organisation slug
    label: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = _now()
    expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """One write request: who (key), what (action, target), when, and how it ended."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                         index=True)
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"),
                                               index=True)
    key_prefix: Mapped[str | None] = mapped_column(String(16))
    role: Mapped[str | None] = mapped_column(String(16))
    organisation: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    target: Mapped[str | None] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    result: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    client_ip: Mapped[str | None] = mapped_column(Text)


class StoredManifest(Base):
    """The manifest of a dataset created through the API (a YAML job file's equivalent)."""

    __tablename__ = "dataset_manifests"

    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # The file the dataset is loaded from now: set when a run of an upload succeeds.
    current_upload_id: Mapped[int | None] = mapped_column(
        ForeignKey("uploads.id", ondelete="SET NULL"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    created: Mapped[datetime] = _now()
    modified: Mapped[datetime] = _now()

    dataset: Mapped[Dataset] = relationship()
    current_upload: Mapped[Upload | None] = relationship()


class Upload(Base):
    """A source file received (or fetched) for a dataset, kept under
    SHAHR_DATA_DIR/sources/<slug>/; `path` is relative to that folder."""

    __tablename__ = "uploads"
    __table_args__ = (CheckConstraint(f"kind IN {UPLOAD_KINDS!r}", name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"),
                                            index=True)
    kind: Mapped[str] = mapped_column(String(8))
    original_name: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))
    member: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    created: Mapped[datetime] = _now()


class RunRequest(Base):
    """Why a queued run exists and who is working on it: the job, the worker's host and
    pid, the ETL child's pid and a heartbeat (a run whose heartbeat stops is marked failed)."""

    __tablename__ = "run_requests"
    __table_args__ = (CheckConstraint(f"kind IN {REQUEST_KINDS!r}", name="kind"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("etl_runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"),
                                            index=True)
    kind: Mapped[str] = mapped_column(String(16))
    upload_id: Mapped[int | None] = mapped_column(ForeignKey("uploads.id", ondelete="SET NULL"))
    url: Mapped[str | None] = mapped_column(Text)
    force: Mapped[bool] = mapped_column(Boolean, server_default="false")
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    worker_host: Mapped[str | None] = mapped_column(Text)
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    child_pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created: Mapped[datetime] = _now()

    run: Mapped[EtlRun] = relationship()
    upload: Mapped[Upload | None] = relationship()


# ---- citizen participation (docs/participation.md) ---------------------------------------------

PARTICIPATION_STATUSES = ("new", "accepted", "in_progress", "done", "declined")
OPEN_STATUSES = ("new", "accepted", "in_progress")
REPORT_CATEGORIES = ("wrong_value", "wrong_location", "missing_feature", "outdated")
CONTACT_KINDS = ("request", "report")


class DatasetRequest(Base):
    """A citizen's request for a dataset the catalogue does not have; others support it."""

    __tablename__ = "dataset_requests"
    __table_args__ = (
        CheckConstraint(f"status IN {PARTICIPATION_STATUSES!r}", name="status"),
        CheckConstraint(f"theme IN {THEMES!r}", name="theme"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    theme: Mapped[str] = mapped_column(String(32))
    area = mapped_column(Geometry("GEOMETRY", srid=4326, spatial_index=False), nullable=True)
    status: Mapped[str] = mapped_column(String(16), server_default="new", index=True)
    public_answer: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    supporters: Mapped[int] = mapped_column(Integer, server_default="0")
    created: Mapped[datetime] = _now()


class RequestSupport(Base):
    """One supporter of a request: a hash of their signed-cookie id (no account, no IP)."""

    __tablename__ = "request_supports"

    request_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_requests.id", ondelete="CASCADE"), primary_key=True)
    supporter: Mapped[str] = mapped_column(String(64), primary_key=True)
    created: Mapped[datetime] = _now()


class Report(Base):
    """A citizen's report of a problem in a dataset or one of its features. It never
    changes published data: a publisher answers it and may name the version that fixed it."""

    __tablename__ = "reports"
    __table_args__ = (
        CheckConstraint(f"status IN {PARTICIPATION_STATUSES!r}", name="status"),
        CheckConstraint(f"category IN {REPORT_CATEGORIES!r}", name="category"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"),
                                            index=True)
    feature_id: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int | None] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str] = mapped_column(Text)
    location = mapped_column(Geometry("POINT", srid=4326, spatial_index=False), nullable=True)
    # Where the reported feature was when reported (a point on it), for the reports layer.
    feature_point = mapped_column(Geometry("POINT", srid=4326, spatial_index=False),
                                  nullable=True)
    status: Mapped[str] = mapped_column(String(16), server_default="new")
    public_answer: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    fixed_version: Mapped[int | None] = mapped_column(Integer)
    created: Mapped[datetime] = _now()


class ContactEmail(Base):
    """The e-mail a citizen left with a request or report, kept apart from it so the public
    role cannot read it (catalog/roles.py PRIVATE); only publishers and admins see it."""

    __tablename__ = "contacts"
    __table_args__ = (
        CheckConstraint(f"kind IN {CONTACT_KINDS!r}", name="kind"),
        UniqueConstraint("kind", "item_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    item_id: Mapped[int] = mapped_column(Integer)
    email: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = _now()
