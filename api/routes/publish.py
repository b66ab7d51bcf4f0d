"""Publishing: create and edit datasets, upload their files, run their ETL, follow the runs.

Every write needs an API key (api/auth.py) and is audited. A dataset created here is an
ordinary catalogue dataset whose job manifest lives in the catalogue (etl/catalogue_manifests)
instead of a YAML file; it is published by its first successful run. Uploads are streamed to
disk with the size limit counted as they arrive, sniffed and checked (etl/uploads.py) before
anything reads them, and loaded by `shahr worker` (etl/queue.py); the answer is `202` with
the queued run to follow at `GET /runs/{id}`."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import AuditedRoute, WriterDep, require_publisher_of, set_target
from api.problems import Problem, bad_request, not_found
from catalog.database import session_scope
from catalog.keys import Writer
from catalog.models import (
    Dataset,
    EtlRun,
    Organisation,
    RejectedRow,
    RunRequest,
    StoredManifest,
    Upload,
    Version,
)
from catalog.settings import Settings
from etl.catalogue_manifests import build, document, incoming_dir, ingest
from etl.manifest import (
    Bilingual,
    Contact,
    CsvGeometry,
    FieldSpec,
    ManifestError,
    Refresh,
    Slug,
    Temporal,
)
from etl.queue import mark_stale_runs, queue_run
from etl.runner import register_dataset
from etl.uploads import UploadError, check_url, too_large

router = APIRouter(tags=["publishing"], route_class=AuditedRoute)

JSON_BODY_LIMIT = 64 * 1024  # a URL upload's JSON body
MULTIPART_SLACK = 1 << 20  # headers and boundaries on top of the file itself
Theme = Literal["land-use", "housing", "infrastructure", "traffic", "boundaries"]
Frequency = Literal["continuous", "daily", "weekly", "monthly", "quarterly", "biannual",
                    "annual", "irregular", "never", "unknown"]


# ---- request bodies ----------------------------------------------------------------------------

class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrganisationIn(_Body):
    slug: Slug
    name: Bilingual | None = Field(default=None, description="Needed when the organisation "
                                   "is new")
    url: str | None = None
    email: str | None = None


class SourceOptions(_Body):
    """How the ETL reads this dataset's files (the manifest's `source`, without a path)."""

    url: str | None = Field(default=None, description="http(s) URL the worker reloads on the "
                            "`refresh` schedule (and on a re-run before any upload)")
    format: Literal["geojson", "shapefile", "gpkg", "kml", "kmz", "csv", "flatgeobuf"] | None = (
        None)
    layer: str | None = None
    member: str | None = Field(default=None, description="The file to load inside a zip")
    encoding: str | None = None
    crs: str | None = Field(default=None, description="Source CRS, e.g. EPSG:32639")
    csv: CsvGeometry | None = None


class DatasetIn(_Body):
    """A new dataset: its catalogue metadata (fa/en) and the options its ETL needs."""

    slug: Slug
    title: Bilingual
    description: Bilingual | None = None
    theme: Theme
    keywords: list[str] = Field(default_factory=list)
    licence: str = Field(default="CC-BY-4.0", description="SPDX licence id")
    organisation: Slug | OrganisationIn = Field(
        description="An organisation's slug, or {slug, name: {fa, en}} to create it")
    publisher: str | None = None
    contact: Contact | None = None
    update_frequency: Frequency = "unknown"
    temporal: Temporal | None = None
    source: SourceOptions = Field(default_factory=SourceOptions)
    key: str | None = Field(default=None, description="Source column identifying a feature")
    geometry_type: Literal["point", "line", "polygon"] | None = None
    fields: list[FieldSpec] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    max_rejected: float = Field(default=0.5, ge=0, le=1)
    refresh: Refresh = None


class DatasetPatch(_Body):
    """Changes to a dataset (JSON merge patch: given keys replace, null clears an optional
    one; `source` keys merge one by one). The slug and organisation cannot change."""

    slug: str | None = None
    organisation: Any = None
    title: Bilingual | None = None
    description: Bilingual | None = None
    theme: Theme | None = None
    keywords: list[str] | None = None
    licence: str | None = None
    publisher: str | None = None
    contact: Contact | None = None
    update_frequency: Frequency | None = None
    temporal: Temporal | None = None
    source: dict[str, Any] | None = None
    key: str | None = None
    geometry_type: Literal["point", "line", "polygon"] | None = None
    fields: list[FieldSpec] | None = None
    exclude: list[str] | None = None
    max_rejected: float | None = Field(default=None, ge=0, le=1)
    refresh: Refresh = None


class UrlUpload(_Body):
    url: str = Field(description="http(s) URL of the file; the worker fetches it with the "
                     "upload limits")
    force: bool = Field(default=False, description="Load even if the file is unchanged")


class RunIn(_Body):
    force: bool = Field(default=True, description="Load even if the input is unchanged")


DATASET_KEYS = ("title", "description", "theme", "keywords", "licence", "publisher", "contact",
                "update_frequency", "temporal")
TOP_KEYS = ("key", "geometry_type", "fields", "exclude", "max_rejected", "refresh")


# ---- helpers -----------------------------------------------------------------------------------

def _url(request: Request) -> str:
    return request.app.state.database_url


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def conflict(detail: str) -> Problem:
    return Problem(409, "Conflict", detail)


def _writable(s: Session, slug: str, writer: Writer, *, catalogue_only: bool
              ) -> tuple[Dataset, StoredManifest | None]:
    ds = s.scalar(select(Dataset).where(Dataset.slug == slug))
    if ds is None:
        raise not_found(f"no dataset {slug!r}; POST /datasets creates one")
    require_publisher_of(writer, ds.organisation.slug)
    sm = s.get(StoredManifest, ds.id)
    if catalogue_only and sm is None:
        raise conflict(f"dataset {slug!r} is defined by the job manifest {ds.job_name!r} in "
                       "SHAHR_JOBS_DIRS; change that file instead (edits and uploads through "
                       "the API are for datasets created with POST /datasets)")
    return ds, sm


def _manifest_problem(exc: ManifestError) -> Problem:
    return bad_request(str(exc).replace("\n  ", "; ").replace("invalid manifest;", "invalid:"))


def _dataset_body(ds: Dataset, sm: StoredManifest) -> dict[str, Any]:
    return {
        "slug": ds.slug, "organisation": ds.organisation.slug,
        "published": ds.current_version_id is not None,
        "manifest": sm.manifest,
        "current_upload": _upload_json(sm.current_upload) if sm.current_upload else None,
        "links": [
            {"rel": "self", "href": f"/datasets/{ds.slug}/manifest"},
            {"rel": "describedby", "href": f"/datasets/{ds.slug}"},
            {"rel": "uploads", "href": f"/datasets/{ds.slug}/uploads", "method": "POST"},
            {"rel": "runs", "href": f"/datasets/{ds.slug}/runs", "method": "POST"},
        ],
    }


def _upload_json(up: Upload) -> dict[str, Any]:
    return {"id": up.id, "kind": up.kind, "original_name": up.original_name, "url": up.url,
            "format": up.format, "member": up.member, "size": up.size, "sha256": up.sha256,
            "created": up.created.isoformat() if up.created else None}


def _run_ref(run: EtlRun, slug: str) -> dict[str, Any]:
    return {"id": run.id, "status": run.status, "dataset": slug, "href": f"/runs/{run.id}"}


# ---- datasets ----------------------------------------------------------------------------------

def _create(url: str, settings: Settings, body: DatasetIn, writer: Writer) -> dict[str, Any]:
    org_in = body.organisation if isinstance(body.organisation, OrganisationIn) else \
        OrganisationIn(slug=body.organisation)
    require_publisher_of(writer, org_in.slug)
    with session_scope(url) as s:
        if s.scalar(select(Dataset.id).where(Dataset.slug == body.slug)) is not None:
            raise conflict(f"dataset {body.slug!r} exists already; PATCH /datasets/{body.slug} "
                           "changes it")
        org = s.scalar(select(Organisation).where(Organisation.slug == org_in.slug))
        name = org_in.name or (Bilingual(fa=org.name_fa, en=org.name_en)
                               if org and (org.name_fa or org.name_en) else None)
        if name is None:
            raise bad_request(f"organisation: {org_in.slug!r} does not exist yet; give it as "
                              "{\"slug\": ..., \"name\": {\"fa\": ..., \"en\": ...}} to create "
                              "it", parameter="organisation")
        dataset = {k: getattr(body, k) for k in DATASET_KEYS}
        dataset["organisation"] = {"slug": org_in.slug, "name": name,
                                   "url": org_in.url or (org.url if org else None),
                                   "email": org_in.email or (org.email if org else None)}
        data = {"dataset": {"slug": body.slug, **dataset},
                "source": body.source.model_dump(exclude_none=True),
                **{k: getattr(body, k) for k in TOP_KEYS}}
        doc = json.loads(json.dumps(data, default=_plain))
        _check_source_url(doc, settings)
        try:
            m = build(doc, slug=body.slug, settings=settings, placeholder=True)
            ds = register_dataset(s, m)
        except ManifestError as exc:
            raise _manifest_problem(exc) from None
        sm = StoredManifest(dataset_id=ds.id, manifest=document(m), created_by=writer.key_id)
        s.add(sm)
        s.flush()
        s.refresh(ds)
        return _dataset_body(ds, sm)


def _check_source_url(doc: dict[str, Any], settings: Settings) -> None:
    """A refresh URL the worker could never fetch is refused now, not at the first run."""
    url = doc.get("source", {}).get("url")
    if url:
        try:
            check_url(str(url), allow_private=settings.fetch_private_hosts)
        except UploadError as exc:
            raise bad_request(f"source.{exc}", parameter="source.url") from None


def _plain(v: Any) -> Any:
    if isinstance(v, BaseModel):
        return v.model_dump(mode="json", exclude_none=True)
    return str(v)


@router.post("/datasets", status_code=201, summary="Create a dataset (admin, or a publisher "
             "for its own organisation)", response_description="The dataset's stored manifest")
async def create_dataset(request: Request, body: DatasetIn, writer: WriterDep) -> JSONResponse:
    set_target(request, body.slug)
    out = await run_in_threadpool(_create, _url(request), _settings(request), body, writer)
    return JSONResponse(out, status_code=201, headers={"Location": f"/datasets/{body.slug}"})


def _patch(url: str, settings: Settings, slug: str, body: DatasetPatch,
           writer: Writer) -> dict[str, Any]:
    given = body.model_dump(exclude_unset=True, mode="json")
    for fixed in ("slug", "organisation"):
        if fixed in given:
            raise bad_request(f"{fixed}: a dataset's {fixed} cannot be changed; create a new "
                              "dataset instead", parameter=fixed)
    if not given:
        raise bad_request("the patch is empty; give the keys to change")
    with session_scope(url) as s:
        ds, sm = _writable(s, slug, writer, catalogue_only=True)
        assert sm is not None
        doc = json.loads(json.dumps(sm.manifest))
        for k, v in given.items():
            if k in DATASET_KEYS:
                _merge(doc["dataset"], k, v)
            elif k == "source":
                for sk, sv in (v or {}).items():
                    if sk == "path":
                        raise bad_request("source.path: files are sent with POST "
                                          f"/datasets/{slug}/uploads", parameter="source.path")
                    _merge(doc.setdefault("source", {}), sk, sv)
            else:
                _merge(doc, k, v)
        _check_source_url(doc, settings)
        try:
            m = build(doc, slug=slug, settings=settings, upload=sm.current_upload,
                      placeholder=True)
            register_dataset(s, m)
        except ManifestError as exc:
            raise _manifest_problem(exc) from None
        sm.manifest = document(m)
        sm.modified = datetime.now(UTC)
        s.flush()
        return _dataset_body(ds, sm)


def _merge(target: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        target.pop(key, None)
    else:
        target[key] = value


@router.patch("/datasets/{slug}", summary="Change a dataset's metadata or ETL options",
              response_description="The dataset's stored manifest")
async def patch_dataset(request: Request, slug: str, body: DatasetPatch,
                        writer: WriterDep) -> JSONResponse:
    out = await run_in_threadpool(_patch, _url(request), _settings(request), slug, body, writer)
    return JSONResponse(out)


def _show(url: str, slug: str, writer: Writer) -> dict[str, Any]:
    with session_scope(url) as s:
        ds, sm = _writable(s, slug, writer, catalogue_only=True)
        assert sm is not None
        return _dataset_body(ds, sm)


@router.get("/datasets/{slug}/manifest", summary="A dataset's stored manifest (its writers)")
async def get_manifest(request: Request, slug: str, writer: WriterDep) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(_show, _url(request), slug, writer))


# ---- uploads -----------------------------------------------------------------------------------

UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary",
                                    "description": "GeoJSON, GeoPackage, FlatGeobuf, KML, CSV, "
                                    "or a zip (Shapefile, or one of those)"},
                           "force": {"type": "boolean", "default": False}}}},
        "application/json": {"schema": UrlUpload.model_json_schema()},
    },
}


class _Receiver:
    """Streams one multipart `file` part to disk, counting its bytes against the limit."""

    def __init__(self, target: Path, limit: int) -> None:
        self.target, self.limit = target, limit
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self.size = 0
        self.files = 0
        self._name = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._part: str | None = None
        self._is_file = False
        self._text = bytearray()
        self._pending: list[bytes] = []
        self.out = target.open("wb")

    def on_part_begin(self) -> None:
        self._headers, self._part, self._is_file = {}, None, False
        self._text = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._name.lower()] = self._value
        self._name, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _, opts = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._part = opts.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in opts:
            if self._part != "file":
                raise bad_request(f"the file goes in the form field `file`, not "
                                  f"`{self._part}`", parameter="file")
            self.files += 1
            if self.files > 1:
                raise bad_request("send one file per upload (zip several files together)",
                                  parameter="file")
            self._is_file = True
            self.filename = opts[b"filename"].decode("utf-8", "replace") or None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.size += end - start
            if self.size > self.limit:
                raise too_large(self.limit)
            self._pending.append(data[start:end])
        else:
            self._text += data[start:end]
            if len(self._text) > 4096:
                raise bad_request(f"form field `{self._part}` is too long", parameter=self._part)

    def on_part_end(self) -> None:
        if not self._is_file and self._part:
            self.fields[self._part] = self._text.decode("utf-8", "replace")

    def flush(self) -> None:
        for chunk in self._pending:
            self.out.write(chunk)
        self._pending.clear()


async def _receive_multipart(request: Request, target: Path, limit: int) -> _Receiver:
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise bad_request("the multipart body has no boundary in its Content-Type")
    rx = _Receiver(target, limit)
    callbacks = {name: getattr(rx, name) for name in (
        "on_part_begin", "on_header_field", "on_header_value", "on_header_end",
        "on_headers_finished", "on_part_data", "on_part_end")}
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        async for chunk in request.stream():
            parser.write(chunk)
            if rx._pending:
                await run_in_threadpool(rx.flush)
        parser.finalize()
        await run_in_threadpool(rx.flush)
    except (Problem, UploadError):
        raise
    except Exception as exc:  # the multipart parser's errors: a malformed body
        raise bad_request(f"the multipart body is malformed ({exc})") from None
    finally:
        rx.out.close()
    if rx.files == 0:
        raise bad_request("no file: send it in the multipart form field `file`, or send JSON "
                          '{"url": "https://..."} for the worker to fetch', parameter="file")
    return rx


async def _json_body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > JSON_BODY_LIMIT:
            raise Problem(413, "Content too large", "a URL upload's JSON body is at most 64 KB")
    return bytes(body)


def _upload_problem(exc: UploadError) -> Problem:
    titles = {400: "Bad request", 413: "Content too large", 415: "Unsupported media type",
              422: "Unprocessable content"}
    return Problem(exc.status, titles.get(exc.status, "Error"), str(exc))


def _store_and_queue(url: str, settings: Settings, slug: str, writer: Writer, received: Path,
                     filename: str | None, force: bool) -> dict[str, Any]:
    with session_scope(url) as s:
        ds, _ = _writable(s, slug, writer, catalogue_only=True)
        try:
            up = ingest(s, ds, received, settings=settings, original_name=filename,
                        key_id=writer.key_id)
        except UploadError as exc:
            raise _upload_problem(exc) from None
        run = queue_run(s, ds, kind="upload", source=f"upload {up.id} ({filename or 'file'})",
                        upload_id=up.id, force=force, key_id=writer.key_id)
        return {"run": _run_ref(run, slug), "upload": _upload_json(up)}


def _queue_url(url: str, settings: Settings, slug: str, writer: Writer, body: UrlUpload
               ) -> dict[str, Any]:
    try:
        check_url(body.url, allow_private=settings.fetch_private_hosts)
    except UploadError as exc:
        raise _upload_problem(exc) from None
    with session_scope(url) as s:
        ds, _ = _writable(s, slug, writer, catalogue_only=True)
        run = queue_run(s, ds, kind="url", source=body.url, url=body.url, force=body.force,
                        key_id=writer.key_id)
        return {"run": _run_ref(run, slug), "upload": None}


@router.post("/datasets/{slug}/uploads", status_code=202, openapi_extra={"requestBody":
             UPLOAD_BODY}, max_body_size=1 << 50,  # the real limit: SHAHR_MAX_UPLOAD_MB, below
             summary="Upload a new source file (multipart `file`) or a URL to fetch (JSON); "
             "queues a run that makes a new version", response_description="The queued run")
async def upload(request: Request, slug: str, writer: WriterDep) -> JSONResponse:
    url, settings = _url(request), _settings(request)
    limit = settings.max_upload_mb << 20
    await run_in_threadpool(_check_writable, url, slug, writer)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit + MULTIPART_SLACK:
            raise _upload_problem(too_large(limit))
        folder = await run_in_threadpool(incoming_dir, settings, slug)
        received = folder / f"{uuid.uuid4().hex}.part"
        try:
            rx = await _receive_multipart(request, received, limit)
        except UploadError as exc:
            received.unlink(missing_ok=True)
            raise _upload_problem(exc) from None
        except BaseException:
            received.unlink(missing_ok=True)
            raise
        force = rx.fields.get("force", "").lower() in ("1", "true", "yes")
        out = await run_in_threadpool(_store_and_queue, url, settings, slug, writer, received,
                                      rx.filename, force)
    elif ctype == "application/json" or ctype.endswith("+json"):
        raw = await _json_body(request)
        try:
            body = UrlUpload.model_validate_json(raw)
        except ValidationError as exc:
            e = exc.errors()[0]
            where = ".".join(str(p) for p in e["loc"]) or "body"
            raise bad_request(f"{where}: {e['msg']}; send {{\"url\": \"https://...\"}}",
                              parameter=where) from None
        out = await run_in_threadpool(_queue_url, url, settings, slug, writer, body)
    else:
        raise Problem(415, "Unsupported media type",
                      f"send the file as multipart/form-data (field `file`), or JSON "
                      f'{{"url": "https://..."}}; not {ctype or "no Content-Type"}')
    return JSONResponse(out, status_code=202, headers={"Location": out["run"]["href"]})


def _check_writable(url: str, slug: str, writer: Writer) -> None:
    with session_scope(url) as s:
        _writable(s, slug, writer, catalogue_only=True)


# ---- runs --------------------------------------------------------------------------------------

def _rerun(url: str, slug: str, writer: Writer, force: bool) -> dict[str, Any]:
    with session_scope(url) as s:
        ds, sm = _writable(s, slug, writer, catalogue_only=False)
        if sm is not None and sm.current_upload_id is None \
                and not sm.manifest.get("source", {}).get("url"):
            raise conflict(f"dataset {slug!r} has nothing to load yet; POST "
                           f"/datasets/{slug}/uploads sends a file")
        source = (f"upload {sm.current_upload_id}" if sm and sm.current_upload_id
                  else (sm.manifest["source"]["url"] if sm else f"job {ds.job_name}"))
        run = queue_run(s, ds, kind="rerun", source=source, force=force,
                        upload_id=sm.current_upload_id if sm else None, key_id=writer.key_id)
        return {"run": _run_ref(run, slug)}


@router.post("/datasets/{slug}/runs", status_code=202, summary="Run a dataset's ETL again",
             response_description="The queued run")
async def rerun(request: Request, slug: str, writer: WriterDep,
                body: Annotated[RunIn | None, Body()] = None) -> JSONResponse:
    force = body.force if body is not None else True
    out = await run_in_threadpool(_rerun, _url(request), slug, writer, force)
    return JSONResponse(out, status_code=202, headers={"Location": out["run"]["href"]})


def _readable_run(s: Session, run_id: int, writer: Writer) -> tuple[EtlRun, Dataset | None]:
    run = s.get(EtlRun, run_id)
    if run is None:
        raise not_found(f"no run {run_id}")
    ds = s.get(Dataset, run.dataset_id) if run.dataset_id is not None else None
    if not writer.is_admin:
        if ds is None:
            raise not_found(f"no run {run_id} of your organisation's datasets")
        require_publisher_of(writer, ds.organisation.slug)
    return run, ds


def _run_json(url: str, settings: Settings, run_id: int, writer: Writer) -> dict[str, Any]:
    with contextlib.suppress(Exception):  # best effort: a worker that died is noticed here
        mark_stale_runs(url, heartbeat_s=settings.worker_heartbeat_s, run_id=run_id)
    with session_scope(url) as s:
        run, ds = _readable_run(s, run_id, writer)
        req = s.get(RunRequest, run_id)
        version = s.scalar(select(Version.number).where(Version.id == run.version_id)) \
            if run.version_id else None
        slug = ds.slug if ds else None
        out: dict[str, Any] = {
            "id": run.id, "dataset": slug, "job": run.job_name, "status": run.status,
            "source": run.source, "version": version,
            "started": run.started_at.isoformat() if run.started_at else None,
            "finished": run.finished_at.isoformat() if run.finished_at else None,
            "duration_s": run.duration_s, "rows_read": run.rows_read,
            "rows_loaded": run.rows_loaded, "rows_rejected": run.rows_rejected,
            "rows_repaired": run.rows_repaired, "warnings": run.warnings, "error": run.error,
            "request": None,
            "links": [{"rel": "self", "href": f"/runs/{run.id}"},
                      {"rel": "rejects", "href": f"/runs/{run.id}/rejects"}]
            + ([{"rel": "dataset", "href": f"/datasets/{slug}"}] if slug else []),
        }
        if req is not None:
            out["request"] = {
                "kind": req.kind, "queued": req.created.isoformat(), "force": req.force,
                "upload": _upload_json(req.upload) if req.upload else None, "url": req.url,
                "worker": f"{req.worker_host}:{req.worker_pid}" if req.worker_host else None,
                "heartbeat": req.heartbeat.isoformat() if req.heartbeat else None}
        return out


@router.get("/runs/{run_id}", summary="A run's status, counts and error (its writers)")
async def get_run(request: Request, run_id: int, writer: WriterDep) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(
        _run_json, _url(request), _settings(request), run_id, writer))


def _rejects(url: str, run_id: int, writer: Writer, limit: int, offset: int) -> dict[str, Any]:
    with session_scope(url) as s:
        run, _ = _readable_run(s, run_id, writer)
        total = s.scalar(select(func.count()).select_from(RejectedRow)
                         .where(RejectedRow.run_id == run_id)) or 0
        rows = s.scalars(select(RejectedRow).where(RejectedRow.run_id == run_id)
                         .order_by(RejectedRow.source_row, RejectedRow.id)
                         .limit(limit).offset(offset))
        links = [{"rel": "self", "href": f"/runs/{run_id}/rejects?limit={limit}&offset={offset}"},
                 {"rel": "run", "href": f"/runs/{run_id}"}]
        if offset + limit < total:
            links.append({"rel": "next", "href": f"/runs/{run_id}/rejects?limit={limit}"
                          f"&offset={offset + limit}"})
        return {"run": run.id, "status": run.status, "total": total,
                "rejects": [{"row": r.source_row, "field": r.field, "reason": r.reason,
                             "values": r.raw} for r in rows],
                "links": links}


@router.get("/runs/{run_id}/rejects", summary="The rows a run could not load, with reasons")
async def get_rejects(
    request: Request, run_id: int, writer: WriterDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(_rejects, _url(request), run_id, writer,
                                                limit, offset))
