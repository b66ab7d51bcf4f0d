"""Citizen participation: requests for missing datasets (with supporters) and reports of
problems in published data, their triage by publishers, and the counts and feeds built on
them. Keyword-only functions over a SQLAlchemy connection of the owner engine.

Nothing here writes to a dataset or its data: a report is a note about the data, answered by
a publisher, who may name the version that fixed it. Contact e-mails go to their own table
(`catalog.contacts`, which the public read-only role cannot read)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Connection, and_, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from catalog.models import (
    OPEN_STATUSES,
    ContactEmail,
    Dataset,
    DatasetRequest,
    Organisation,
    Report,
    RequestSupport,
    Version,
)

R = DatasetRequest.__table__
S = RequestSupport.__table__
P = Report.__table__
C = ContactEmail.__table__
D = Dataset.__table__
O = Organisation.__table__  # noqa: E741
V = Version.__table__


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def _geojson(v: str | None) -> dict[str, Any] | None:
    return json.loads(v) if v else None


def _geom(value: dict[str, Any]) -> Any:
    return func.ST_SetSRID(func.ST_GeomFromGeoJSON(json.dumps(value)), 4326)


# ---- dataset requests --------------------------------------------------------------------------

def _request_columns() -> list[Any]:
    return [R.c.id, R.c.title, R.c.description, R.c.theme,
            func.ST_AsGeoJSON(R.c.area, 7).label("area"), R.c.status, R.c.public_answer,
            R.c.answered_at, R.c.supporters, R.c.created]


def _request_row(row: Any) -> dict[str, Any]:
    m = row._mapping
    return {"id": m["id"], "title": m["title"], "description": m["description"],
            "theme": m["theme"], "area": _geojson(m["area"]), "status": m["status"],
            "public_answer": m["public_answer"], "answered": _iso(m["answered_at"]),
            "supporters": m["supporters"], "created": _iso(m["created"])}


def create_request(conn: Connection, *, title: str, description: str, theme: str,
                   area: dict[str, Any] | None, email: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {"title": title, "description": description, "theme": theme}
    if area is not None:
        values["area"] = _geom(area)
    new_id = conn.execute(insert(R).values(**values).returning(R.c.id)).scalar_one()
    if email:
        conn.execute(insert(C).values(kind="request", item_id=new_id, email=email))
    found = get_request(conn, request_id=new_id)
    assert found is not None
    return found


def get_request(conn: Connection, *, request_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(*_request_columns()).where(R.c.id == request_id)).first()
    return _request_row(row) if row else None


def list_requests(conn: Connection, *, status: str | None, limit: int, offset: int
                  ) -> tuple[list[dict[str, Any]], int]:
    """Requests, most supported first then newest; and how many match."""
    where = [R.c.status == status] if status else []
    total = conn.execute(select(func.count()).select_from(R).where(*where)).scalar_one()
    rows = conn.execute(select(*_request_columns()).where(*where)
                        .order_by(R.c.supporters.desc(), R.c.id.desc())
                        .limit(limit).offset(offset))
    return [_request_row(r) for r in rows], total


def support_request(conn: Connection, *, request_id: int, supporter: str
                    ) -> tuple[bool, int] | None:
    """Add one supporter (a hash of their cookie id); (added, supporters), or None when there
    is no such request. A second support by the same supporter adds nothing."""
    exists = conn.execute(select(R.c.id).where(R.c.id == request_id).with_for_update()).first()
    if exists is None:
        return None
    added = conn.execute(pg_insert(S).values(request_id=request_id, supporter=supporter)
                         .on_conflict_do_nothing().returning(S.c.request_id)).first()
    if added is not None:
        count = conn.execute(update(R).where(R.c.id == request_id)
                             .values(supporters=R.c.supporters + 1)
                             .returning(R.c.supporters)).scalar_one()
    else:
        count = conn.execute(select(R.c.supporters).where(R.c.id == request_id)).scalar_one()
    return added is not None, count


def answer_request(conn: Connection, *, request_id: int, status: str | None,
                   public_answer: str | None) -> dict[str, Any] | None:
    values = _answer_values(status, public_answer)
    if values:
        done = conn.execute(update(R).where(R.c.id == request_id).values(**values)
                            .returning(R.c.id)).first()
        if done is None:
            return None
    return get_request(conn, request_id=request_id)


def _answer_values(status: str | None, public_answer: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if status is not None:
        values["status"] = status
    if public_answer is not None:
        values["public_answer"] = public_answer or None
        values["answered_at"] = func.now()
    return values


# ---- reports -----------------------------------------------------------------------------------

def dataset_target(conn: Connection, *, slug: str) -> dict[str, Any] | None:
    """What a report needs to know of a dataset: its id, organisation, current version and
    table (None when the dataset is unknown)."""
    row = conn.execute(
        select(D.c.id, D.c.slug, D.c.title_fa, D.c.title_en, O.c.slug.label("organisation"),
               V.c.number.label("version"), V.c.table_name)
        .select_from(D.join(O, O.c.id == D.c.organisation_id)
                     .outerjoin(V, V.c.id == D.c.current_version_id))
        .where(D.c.slug == slug)).first()
    return dict(row._mapping) if row else None


def feature_point(conn: Connection, *, table: str, feature_id: int) -> dict[str, Any] | None:
    """A point on feature `feature_id` of data table `table` as GeoJSON; None when the
    feature does not exist (the table name comes from the catalogue, never from a request)."""
    ident = '"' + table.replace('"', '""') + '"'
    row = conn.execute(text(f"SELECT ST_AsGeoJSON(ST_PointOnSurface(geom), 7) FROM data.{ident} "
                            "WHERE fid = :fid"), {"fid": feature_id}).first()
    if row is None:
        return None
    return _geojson(row[0]) or {}


def _report_columns() -> list[Any]:
    return [P.c.id, D.c.slug.label("dataset"), O.c.slug.label("organisation"), P.c.feature_id,
            P.c.version, P.c.category, P.c.comment,
            func.ST_AsGeoJSON(P.c.location, 7).label("location"),
            func.ST_AsGeoJSON(P.c.feature_point, 7).label("feature_point"), P.c.status,
            P.c.public_answer, P.c.answered_at, P.c.fixed_version, P.c.created]


def _report_from() -> Any:
    return P.join(D, D.c.id == P.c.dataset_id).join(O, O.c.id == D.c.organisation_id)


def _report_row(row: Any) -> dict[str, Any]:
    m = row._mapping
    return {"id": m["id"], "dataset": m["dataset"], "organisation": m["organisation"],
            "feature_id": m["feature_id"], "version": m["version"], "category": m["category"],
            "comment": m["comment"], "location": _geojson(m["location"]),
            "feature_point": _geojson(m["feature_point"]), "status": m["status"],
            "public_answer": m["public_answer"], "answered": _iso(m["answered_at"]),
            "fixed_version": m["fixed_version"], "created": _iso(m["created"])}


def create_report(conn: Connection, *, dataset_id: int, version: int | None,
                  feature_id: str | None, feature_at: dict[str, Any] | None, category: str,
                  comment: str, location: tuple[float, float] | None,
                  email: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {"dataset_id": dataset_id, "version": version,
                              "feature_id": feature_id, "category": category,
                              "comment": comment}
    if location is not None:
        values["location"] = func.ST_SetSRID(func.ST_MakePoint(*location), 4326)
    if feature_at:
        values["feature_point"] = _geom(feature_at)
    new_id = conn.execute(insert(P).values(**values).returning(P.c.id)).scalar_one()
    if email:
        conn.execute(insert(C).values(kind="report", item_id=new_id, email=email))
    found = get_report(conn, report_id=new_id)
    assert found is not None
    return found


def get_report(conn: Connection, *, report_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(*_report_columns()).select_from(_report_from())
                       .where(P.c.id == report_id)).first()
    return _report_row(row) if row else None


def list_reports(conn: Connection, *, dataset_id: int, status: str | None,
                 feature_id: str | None = None, limit: int, offset: int
                 ) -> tuple[list[dict[str, Any]], int]:
    """A dataset's reports, newest first; and how many match."""
    where = [P.c.dataset_id == dataset_id]
    if status:
        where.append(P.c.status == status)
    if feature_id is not None:
        where.append(P.c.feature_id == feature_id)
    total = conn.execute(select(func.count()).select_from(P).where(*where)).scalar_one()
    rows = conn.execute(select(*_report_columns()).select_from(_report_from()).where(*where)
                        .order_by(P.c.id.desc()).limit(limit).offset(offset))
    return [_report_row(r) for r in rows], total


def answer_report(conn: Connection, *, report_id: int, status: str | None,
                  public_answer: str | None, fixed_version: int | None) -> dict[str, Any]:
    values = _answer_values(status, public_answer)
    if fixed_version is not None:
        values["fixed_version"] = fixed_version
    if values:
        conn.execute(update(P).where(P.c.id == report_id).values(**values))
    found = get_report(conn, report_id=report_id)
    assert found is not None
    return found


def version_exists(conn: Connection, *, dataset_id: int, number: int) -> bool:
    return conn.execute(select(V.c.id).where(and_(V.c.dataset_id == dataset_id,
                                                   V.c.number == number))).first() is not None


def contact_email(conn: Connection, *, kind: str, item_id: int) -> str | None:
    return conn.execute(select(C.c.email).where(and_(C.c.kind == kind, C.c.item_id == item_id))
                        ).scalar_one_or_none()


def reports_layer(conn: Connection, *, dataset_id: int, open_only: bool) -> dict[str, Any]:
    """The dataset's reports as a GeoJSON FeatureCollection: each at its corrected location
    pin, else at the reported feature; reports with neither are left out."""
    where = [P.c.dataset_id == dataset_id,
             func.coalesce(P.c.location, P.c.feature_point).is_not(None)]
    if open_only:
        where.append(P.c.status.in_(OPEN_STATUSES))
    rows = conn.execute(select(P.c.id, P.c.feature_id, P.c.category, P.c.status,
                               P.c.comment, P.c.created,
                               (P.c.location.is_not(None)).label("pinned"),
                               func.ST_AsGeoJSON(func.coalesce(P.c.location, P.c.feature_point),
                                                 7).label("g"))
                        .where(*where).order_by(P.c.id))
    features = [{"type": "Feature", "id": r.id, "geometry": json.loads(r.g),
                 "properties": {"category": r.category, "status": r.status,
                                "feature_id": r.feature_id, "comment": r.comment,
                                "corrected_location": r.pinned, "created": _iso(r.created)}}
                for r in rows]
    return {"type": "FeatureCollection", "features": features}


# ---- for the catalogue (public pool, psycopg) ------------------------------------------------

OPEN_COUNTS = """
SELECT d.slug, count(r.id)::int FROM catalog.datasets d
JOIN catalog.reports r ON r.dataset_id = d.id AND r.status = ANY(%(open)s)
WHERE d.slug = ANY(%(slugs)s) GROUP BY d.slug
"""


async def open_report_counts(conn: psycopg.AsyncConnection[Any], *, slugs: list[str]
                             ) -> dict[str, int]:
    """Open reports (new, accepted, in progress) per dataset slug: a data-quality signal."""
    if not slugs:
        return {}
    cur = await conn.execute(OPEN_COUNTS, {"open": list(OPEN_STATUSES), "slugs": slugs})
    rows = await cur.fetchall()
    out = {slug: 0 for slug in slugs}
    for row in rows:
        if isinstance(row, dict):
            out[row["slug"]] = row["count"]
        else:
            out[row[0]] = row[1]
    return out
