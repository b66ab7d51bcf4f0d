"""Running a job: record the run, skip an unchanged input, stream extract -> transform ->
COPY, keep every rejected row with its reason, and publish the new version in the same
transaction that created it. A failure anywhere leaves the current version serving and the
run marked failed with the error."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from geoalchemy2.elements import WKTElement
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from catalog.database import get_engine, raw_connect, session_scope
from catalog.models import Dataset, EtlRun, Field, Organisation, Version
from catalog.search import refresh_search_text
from catalog.settings import Settings
from etl.coltypes import frictionless_type
from etl.load import (
    Bbox,
    Copier,
    build_overview,
    create_table,
    drop_tables,
    enforce_key,
    finish_table,
    retype_columns,
    table_name,
)
from etl.manifest import Manifest
from etl.readers import reader_for
from etl.source import SourceError, SourceFile, materialise
from etl.transform import Plan, Reject, TransformError, make_plan, pg_columns, transform_batch
from geo.crs import CrsError, crs_label, parse_crs, utm_crs_for

ProgressFn = Callable[[int, int | None], None]
StageFn = Callable[[str], None]


@dataclass
class RunResult:
    job: str
    run_id: int | None
    status: str  # succeeded | failed | skipped
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_repaired: int = 0
    version: int | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


class RejectSink:
    """Writes rejected rows on their own connection as they come, so they survive a failed
    load (the reasons are most needed exactly then)."""

    def __init__(self, url: str, run_id: int) -> None:
        self.conn = raw_connect(url, autocommit=True)
        self.run_id = run_id
        self.count = 0

    def add(self, rejects: list[Reject]) -> None:
        if not rejects:
            return
        with self.conn.cursor().copy(
                "COPY catalog.rejected_rows (run_id, source_row, field, reason, raw) "
                "FROM STDIN") as cp:
            for r in rejects:
                cp.write_row((self.run_id, r.row, r.field, r.reason,
                              json.dumps(r.raw, ensure_ascii=False, default=str)))
        self.count += len(rejects)

    def close(self) -> None:
        self.conn.close()


def run_job(manifest: Manifest, *, url: str, settings: Settings, force: bool = False,
            on_progress: ProgressFn | None = None, on_stage: StageFn | None = None,
            run_id: int | None = None) -> RunResult:
    """Run one job to the end; never raises for bad input (the result says what went wrong).
    `run_id` carries out a run already recorded as queued (the job worker's); else a new
    run is recorded."""
    t0 = time.perf_counter()
    stage = on_stage or (lambda _msg: None)
    stage("reading source")
    try:
        src = materialise(manifest, settings.cache_dir)
    except SourceError as exc:
        run_id = _record_failed_start(url, manifest, str(exc), run_id)
        return RunResult(manifest.name, run_id, "failed", error=str(exc),
                         seconds=time.perf_counter() - t0)

    with session_scope(url) as s:
        ds = _ensure_dataset(s, manifest)
        if not force and _unchanged(s, manifest, ds, src):
            run = _run_row(s, run_id, job_name=manifest.name, dataset_id=ds.id,
                           source=src.label, status="skipped", input_checksum=src.checksum,
                           manifest_checksum=manifest.text_sha256, finished_at=_now(),
                           duration_s=0.0)
            return RunResult(manifest.name, run.id, "skipped", seconds=time.perf_counter() - t0)
        run = _run_row(s, run_id, job_name=manifest.name, dataset_id=ds.id, source=src.label,
                       status="running", input_checksum=src.checksum,
                       manifest_checksum=manifest.text_sha256)
        run_id, dataset_id = run.id, ds.id

    result = RunResult(manifest.name, run_id, "running")
    sink = RejectSink(url, run_id)
    try:
        _load(manifest, src, url=url, settings=settings, dataset_id=dataset_id, run_id=run_id,
              sink=sink, result=result, on_progress=on_progress, stage=stage)
        result.status = "succeeded"
    except (SourceError, TransformError, CrsError, psycopg.Error, DBAPIError, ValueError,
            OSError) as exc:
        result.status, result.error = "failed", _error_text(exc)
    except BaseException as exc:  # interrupted: still record it, then let it propagate
        result.status, result.error = "failed", f"interrupted: {exc!r}"
        _finish_run(url, result, sink.count)
        sink.close()
        raise
    result.rows_rejected = sink.count
    sink.close()
    result.seconds = time.perf_counter() - t0
    _finish_run(url, result, sink.count)
    return result


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        detail = f" ({exc.diag.message_detail})" if exc.diag.message_detail else ""
        return f"database error: {exc.diag.message_primary}{detail}"
    if isinstance(exc, psycopg.Error):
        return f"database error: {str(exc).strip() or type(exc).__name__}"
    return str(exc)


def _now() -> datetime:
    return datetime.now(UTC)


def _record_failed_start(url: str, manifest: Manifest, error: str,
                         run_id: int | None = None) -> int:
    with session_scope(url) as s:
        ds = s.scalar(select(Dataset).where(Dataset.slug == manifest.dataset.slug))
        run = _run_row(s, run_id, job_name=manifest.name, dataset_id=ds.id if ds else None,
                       source=manifest.source.path or manifest.source.url or "?",
                       status="failed", error=error, finished_at=_now(), duration_s=0.0,
                       manifest_checksum=manifest.text_sha256)
        return run.id


def _run_row(s: Session, run_id: int | None, **values: object) -> EtlRun:
    """A new run row, or the queued one `run_id` names, set to `values` (started now)."""
    run = s.get(EtlRun, run_id, with_for_update=True) if run_id is not None else None
    if run is None:
        run = EtlRun(**values)
        s.add(run)
    else:
        for k, v in values.items():
            setattr(run, k, v)
        run.started_at = _now()
    s.flush()
    return run


def register_dataset(s: Session, manifest: Manifest) -> Dataset:
    """Create or update a dataset's catalogue entry from its manifest without loading data
    (it stays unpublished until a run loads it): how the API creates and edits datasets."""
    ds = _ensure_dataset(s, manifest)
    _apply_metadata(ds, ds.organisation, manifest)
    ds.modified = _now()
    refresh_search_text(s, ds)
    return ds


def _finish_run(url: str, r: RunResult, rejected: int) -> None:
    with session_scope(url) as s:
        run = s.get(EtlRun, r.run_id)
        assert run is not None
        run.status = r.status
        run.finished_at = _now()
        run.rows_read, run.rows_loaded = r.rows_read, r.rows_loaded
        run.rows_rejected, run.rows_repaired = rejected, r.rows_repaired
        run.warnings, run.error = r.warnings, r.error
        run.duration_s = r.seconds
        if r.version is not None and r.status == "succeeded":
            run.version_id = s.scalar(select(Version.id).where(
                Version.dataset_id == run.dataset_id, Version.number == r.version))


def _ensure_dataset(s: Session, m: Manifest) -> Dataset:
    """The dataset row (created unpublished on first run) and its organisation."""
    org = s.scalar(select(Organisation).where(Organisation.slug == m.dataset.organisation.slug))
    o = m.dataset.organisation
    if org is None:
        org = Organisation(slug=o.slug)
        s.add(org)
    org.name_fa, org.name_en, org.url, org.email = o.name.fa, o.name.en, o.url, o.email
    ds = s.scalar(select(Dataset).where(Dataset.slug == m.dataset.slug))
    if ds is None:
        ds = Dataset(slug=m.dataset.slug, organisation=org, theme=m.dataset.theme,
                     licence=m.dataset.licence, keywords=[])
        _apply_metadata(ds, org, m)
        s.add(ds)
    elif ds.job_name and ds.job_name != m.name:
        raise SourceError(f"{m.path}: dataset {m.dataset.slug!r} is published by job "
                          f"{ds.job_name!r}; two jobs cannot publish one dataset")
    s.flush()
    return ds


def _apply_metadata(ds: Dataset, org: Organisation, m: Manifest) -> None:
    d = m.dataset
    ds.organisation = org
    ds.job_name = m.name
    ds.title_fa, ds.title_en = d.title.fa, d.title.en
    ds.description_fa = d.description.fa if d.description else None
    ds.description_en = d.description.en if d.description else None
    ds.theme, ds.keywords, ds.licence = d.theme, list(d.keywords), d.licence
    ds.publisher = d.publisher or org.name_en or org.name_fa
    ds.contact_name = d.contact.name if d.contact else None
    ds.contact_email = d.contact.email if d.contact else None
    ds.update_frequency = d.update_frequency
    ds.temporal_start = d.temporal.start if d.temporal else None
    ds.temporal_end = d.temporal.end if d.temporal else None
    ds.synthetic = d.synthetic


def _unchanged(s: Session, m: Manifest, ds: Dataset, src: SourceFile) -> bool:
    if ds.current_version_id is None:
        return False
    last = s.scalar(select(EtlRun).where(EtlRun.job_name == m.name,
                                         EtlRun.status == "succeeded")
                    .order_by(EtlRun.id.desc()).limit(1))
    return bool(last and last.input_checksum == src.checksum
                and last.manifest_checksum == m.text_sha256)


def _load(m: Manifest, src: SourceFile, *, url: str, settings: Settings, dataset_id: int,
          run_id: int, sink: RejectSink, result: RunResult, on_progress: ProgressFn | None,
          stage: StageFn) -> None:
    reader = reader_for(src, m)
    info = reader.info()
    crs_text = m.source.crs or info.crs
    if not crs_text:
        raise TransformError(
            f"{src.label} does not say its coordinate reference system (no .prj / crs). "
            "Add `source.crs` to the manifest, e.g. `crs: EPSG:32639`.")
    plan = make_plan(info, m, parse_crs(crs_text))
    total = info.feature_count if info.feature_count and info.feature_count > 0 else None

    engine = get_engine(url)
    with engine.connect() as sa_conn, sa_conn.begin():
        pg = sa_conn.connection.driver_connection
        assert isinstance(pg, psycopg.Connection)
        number = (sa_conn.scalar(select(func.max(Version.number))
                                 .where(Version.dataset_id == dataset_id)) or 0) + 1
        table = table_name(m.dataset.slug, number)
        stage(f"loading {table}")
        copier: Copier | None = None
        row = 1
        impossible = 0
        example: tuple[float, float] | None = None
        try:
            for batch in reader.batches(settings.etl_batch_size):
                out = transform_batch(plan, batch, row)
                if copier is None:
                    create_table(pg, table, pg_columns(plan), plan.geometry_type)
                    copier = Copier(pg, table, out.table.column_names)
                row += len(batch.table)
                copier.write(out.table)
                sink.add(out.rejects + [Reject(row=r[0], field=None, reason=r[1], raw=r[2])
                                        for r in batch.invalid_rows])
                result.rows_read += len(batch.table) + len(batch.invalid_rows)
                result.rows_repaired += out.repaired
                impossible += out.impossible
                example = example or out.impossible_example
                if on_progress:
                    on_progress(result.rows_read, total)
        except BaseException as exc:
            if copier is not None:
                copier.close(exc)
            raise
        if copier is None:
            raise TransformError(f"{src.label} has no rows to load")
        copier.close()
        _check_impossible(plan, impossible, result.rows_read, example)

        stage("indexing")
        changes = [(c.name, c.guess.result(), c.spec.null_values if c.spec else [])
                   for c in plan.columns if c.guess is not None and c.guess.result() != "string"]
        result.warnings += retype_columns(pg, table, changes, plan.decimal)
        for c in plan.columns:
            if c.guess is not None and c.guess.result() != "string":
                c.storage = c.guess.result()
        key = plan.column(m.key).name if m.key and plan.column(m.key) else None
        key_rejects = 0
        if key:
            kr = enforce_key(pg, table, key)
            key_rejects = len(kr.rows)
            sink.add([Reject(row=fid, field=m.key, reason=reason, raw=raw)
                      for fid, reason, raw in kr.rows])
        if key_rejects:  # the rows that left may have widened the bbox: measure again
            count, extent = finish_table(pg, table)
        else:
            count, extent = finish_table(pg, table, rows=copier.rows, bbox=plan.bounds)
        result.rows_loaded = count
        overview_zoom = None
        if 0 < settings.tile_overview_min_features <= count:
            stage("building low-zoom tile overviews")
            overview_zoom = build_overview(
                pg, table, count, points=plan.geometry_type.lower().endswith("point"))
        result.warnings += _quality_warnings(plan)
        rejected = result.rows_read - count
        if result.rows_read and rejected / result.rows_read > m.max_rejected:
            raise TransformError(
                f"{rejected} of {result.rows_read} rows were rejected, more than the "
                f"manifest's max_rejected ({m.max_rejected:.0%}); nothing was published. "
                f"See `shahr etl rejects {run_id}`.")
        stage("publishing")
        _publish(sa_conn, m, plan, info_encoding=info.encoding, dataset_id=dataset_id,
                 run_id=run_id, number=number, table=table, count=count, extent=extent,
                 checksum=src.checksum, key=key, keep=settings.keep_versions,
                 overview_zoom=overview_zoom)
        result.version = number


def _check_impossible(plan: Plan, impossible: int, rows: int,
                      example: tuple[float, float] | None) -> None:
    if impossible and rows and impossible / rows > 0.5 and example:
        from geo.crs import describe_impossible

        raise TransformError(
            f"{impossible} of {rows} rows have {describe_impossible(plan.src_crs, *example)}")


def _quality_warnings(plan: Plan) -> list[str]:
    out = []
    for c in plan.columns:
        if c.fffd and c.fffd_example:
            row, value = c.fffd_example
            out.append(f"{c.source}: {c.fffd} values contain U+FFFD replacement characters "
                       f"(characters lost in an earlier conversion), e.g. row {row}: {value!r}")
        if c.guess is not None and c.guess.result() == "string" and c.guess.jalali_like \
                and c.guess.non_null:
            out.append(f"{c.source}: values look like Jalali dates; declare the field with "
                       "`type: date` and `calendar: jalali` to publish them as dates")
    return out


def _publish(sa_conn: Connection, m: Manifest, plan: Plan, *, info_encoding: str | None,
             dataset_id: int, run_id: int, number: int, table: str, count: int,
             extent: Bbox | None, checksum: str, key: str | None, keep: int,
             overview_zoom: int | None = None) -> None:
    """Make the new version current and update the catalogue, inside the load transaction."""
    with Session(bind=sa_conn, join_transaction_mode="create_savepoint") as s:
        ds = s.get(Dataset, dataset_id, with_for_update=True)
        assert ds is not None
        org = s.scalar(select(Organisation).where(
            Organisation.slug == m.dataset.organisation.slug))
        assert org is not None
        _apply_metadata(ds, org, m)
        schema = [{"name": c.name, "source": c.source, "type": frictionless_type(c.load_type),
                   "storage": c.load_type} for c in plan.columns]
        extent_el = None
        if extent:
            x0, y0, x1, y1 = extent
            extent_el = WKTElement(
                f"POLYGON(({x0} {y0},{x0} {y1},{x1} {y1},{x1} {y0},{x0} {y0}))", srid=4326)
        version = Version(dataset_id=ds.id, number=number, table_name=table, status="current",
                          feature_count=count, extent=extent_el,
                          geometry_type=plan.geometry_type, checksum=checksum,
                          schema_json=schema, run_id=run_id, published=_now(),
                          tile_overview_zoom=overview_zoom)
        for v in s.scalars(select(Version).where(Version.dataset_id == ds.id,
                                                 Version.status == "current")):
            v.status = "previous"
        s.add(version)
        s.flush()
        ds.current_version_id = version.id
        ds.feature_count, ds.spatial_extent = count, extent_el
        ds.geometry_type = plan.geometry_type
        ds.source_crs = crs_label(plan.src_crs)
        ds.source_encoding = info_encoding
        ds.key_field = key
        ds.modified = _now()
        if extent:
            ds.metric_crs = utm_crs_for((extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2)
        ds.fields.clear()
        s.flush()
        for pos, c in enumerate(plan.columns, start=1):
            spec = c.spec
            ds.fields.append(Field(
                position=pos, name=c.name, source_name=c.source,
                type=frictionless_type(c.load_type), unit=spec.unit if spec else None,
                label_fa=spec.label.fa if spec and spec.label else None,
                label_en=spec.label.en if spec and spec.label else None,
                description_fa=spec.description.fa if spec and spec.description else None,
                description_en=spec.description.en if spec and spec.description else None,
                is_key=c.name == key,
                calendar=spec.calendar if spec and spec.calendar == "jalali" else None))
        refresh_search_text(s, ds)
        # Keep the newest `keep` versions' tables; older ones are dropped but stay listed.
        stale = s.scalars(select(Version).where(Version.dataset_id == ds.id,
                                                Version.status == "previous",
                                                Version.id != version.id)
                          .order_by(Version.number.desc()).offset(keep - 1)).all()
        pg = sa_conn.connection.driver_connection
        assert isinstance(pg, psycopg.Connection)
        drop_tables(pg, [v.table_name for v in stale])
        for v in stale:
            v.status = "dropped"
        s.commit()
