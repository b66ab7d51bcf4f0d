"""Manifests kept in the catalogue: a dataset created through the publishing API has its job
manifest in `catalog.dataset_manifests` (JSON) instead of a YAML file, and its uploaded files
under SHAHR_DATA_DIR/sources/<slug>/. This module turns such a record back into an ordinary
`Manifest`, so the runner, `shahr etl run --all` and the worker treat both kinds alike."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.database import session_scope
from catalog.models import Dataset, StoredManifest, Upload
from catalog.settings import Settings
from etl.manifest import Manifest, ManifestError, find_manifests, load_manifest, parse_manifest
from etl.uploads import Limits, UploadError, check_file

PENDING = "(no file uploaded yet)"


class NothingToLoad(ManifestError):
    """The dataset has neither an uploaded file nor a source URL."""


def sources_dir(settings: Settings, slug: str) -> Path:
    """Where a catalogue dataset's files live (absolute, so API and worker agree)."""
    return (settings.data_dir / "sources" / slug).resolve()


def document(m: Manifest) -> dict[str, Any]:
    """The JSON kept for a manifest: everything but where its current file is."""
    doc = m.model_dump(mode="json", exclude_none=True)
    doc["source"].pop("path", None)
    if doc["source"].get("member") is None:
        doc["source"].pop("member", None)
    return doc


def build(doc: dict[str, Any], *, slug: str, settings: Settings,
          upload: Upload | None = None, placeholder: bool = False) -> Manifest:
    """The Manifest for a stored document: its source is `upload`'s file when given, else the
    document's `source.url`; `placeholder` validates a document with neither (not loadable)."""
    data = copy.deepcopy(doc)
    src = data.setdefault("source", {})
    if upload is not None:
        src.pop("url", None)
        src["path"] = upload.path
        if upload.member:
            src["member"] = upload.member
    elif not src.get("url"):
        if not placeholder:
            raise NothingToLoad(f"dataset {slug!r} has no uploaded file and no source.url yet; "
                                f"POST /datasets/{slug}/uploads sends one")
        src["path"] = PENDING
    m = parse_manifest(data, where=f"dataset {slug!r}")
    # A virtual path: names the job after the slug and anchors the upload's relative path.
    m.path = sources_dir(settings, slug) / f"{slug}.yaml"
    m.text_sha256 = hashlib.sha256(
        json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return m


def stored(s: Session, slug: str) -> tuple[Dataset, StoredManifest] | None:
    row = s.execute(select(Dataset, StoredManifest)
                    .join(StoredManifest, StoredManifest.dataset_id == Dataset.id)
                    .where(Dataset.slug == slug)).first()
    return (row[0], row[1]) if row else None


def manifest_for(s: Session, ds: Dataset, settings: Settings, *,
                 upload: Upload | None = None) -> Manifest:
    """What a run of `ds` loads: a catalogue dataset's stored manifest (with `upload`, else
    its current file, else its source URL), or a YAML dataset's job file."""
    sm = s.get(StoredManifest, ds.id)
    if sm is None:
        found = find_manifests(settings.jobs_dirs)
        path = found.get(ds.job_name or "")
        if path is None:
            raise ManifestError(
                f"dataset {ds.slug!r} comes from job {ds.job_name!r}, whose manifest is not "
                f"in SHAHR_JOBS_DIRS ({', '.join(map(str, settings.jobs_dirs))})")
        return load_manifest(path)
    return build(sm.manifest, slug=ds.slug, settings=settings,
                 upload=upload or sm.current_upload)


def all_stored(url: str, settings: Settings, *, exclude: set[str] | None = None
               ) -> list[Manifest]:
    """Every catalogue dataset that has something to load (for `shahr etl run --all`)."""
    out = []
    with session_scope(url) as s:
        rows = s.execute(select(Dataset, StoredManifest)
                         .join(StoredManifest, StoredManifest.dataset_id == Dataset.id)
                         .order_by(Dataset.slug)).all()
        for ds, sm in rows:
            if exclude and ds.slug in exclude:
                continue
            try:
                out.append(build(sm.manifest, slug=ds.slug, settings=settings,
                                 upload=sm.current_upload))
            except NothingToLoad:
                continue
    return out


def adopt_upload(s: Session, run_upload: Upload) -> None:
    """Make `run_upload` the dataset's current file (after a run of it succeeded)."""
    sm = s.get(StoredManifest, run_upload.dataset_id, with_for_update=True)
    if sm is not None and sm.current_upload_id != run_upload.id:
        sm.current_upload_id = run_upload.id


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def incoming_dir(settings: Settings, slug: str) -> Path:
    """Where a file being received is written before it is checked."""
    d = sources_dir(settings, slug) / "incoming"
    d.mkdir(parents=True, exist_ok=True)
    return d


def ingest(s: Session, ds: Dataset, received: Path, *, settings: Settings,
           original_name: str | None, kind: str = "file", url: str | None = None,
           key_id: int | None = None) -> Upload:
    """Check a received file (type, archive safety, the manifest's format and member) and
    keep it as the dataset's upload `uploads/<id>-<sha>.<ext>`; an identical earlier upload
    is reused. A refused file is deleted and UploadError says why."""
    sm = s.get(StoredManifest, ds.id)
    src = (sm.manifest if sm else {}).get("source", {})
    try:
        accepted = check_file(received, filename=original_name,
                              limits=Limits.from_settings(settings),
                              declared_format=src.get("format"), member=src.get("member"))
    except BaseException:
        received.unlink(missing_ok=True)
        raise
    if accepted.format == "csv" and not src.get("csv"):
        received.unlink(missing_ok=True)
        raise UploadError(f"dataset {ds.slug!r} has no source.csv saying which columns hold the "
                          "geometry; PATCH /datasets/{slug} with source.csv (e.g. {\"lon\": "
                          "\"lon\", \"lat\": \"lat\"}) first", status=422)
    digest = _sha256(received)
    home = sources_dir(settings, ds.slug)
    same = s.scalar(select(Upload).where(Upload.dataset_id == ds.id, Upload.sha256 == digest)
                    .order_by(Upload.id.desc()).limit(1))
    if same is not None and same.member == accepted.member and (home / same.path).is_file():
        received.unlink(missing_ok=True)
        return same
    up = Upload(dataset_id=ds.id, kind=kind, original_name=original_name, url=url,
                path="", format=accepted.format, member=accepted.member,
                size=received.stat().st_size, sha256=digest, key_id=key_id)
    s.add(up)
    s.flush()
    up.path = f"uploads/{up.id:06d}-{digest[:12]}{accepted.ext}"
    (home / "uploads").mkdir(parents=True, exist_ok=True)
    received.replace(home / up.path)
    return up
