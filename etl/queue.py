"""The job queue behind the publishing API: ETL runs asked for by an upload, a re-run or a
schedule are procrastinate jobs in the same PostgreSQL, carried out by `shahr worker`.

A run is recorded as `queued` together with its job, in one transaction (procrastinate defers
on our connection). The worker's task starts the ETL in a child process (`etl.queued_run`) and
watches it: it writes a heartbeat, kills the child when SHAHR_JOB_TIMEOUT_S is over, and marks
the run failed with the reason when the child dies. A worker that dies itself (kill -9) stops
the heartbeat; the next sweep (any worker, or `GET /runs/{id}`) marks its run failed. The
child dies with its worker (PR_SET_PDEATHSIG) and the load is one transaction, so the current
version keeps serving in every case."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from procrastinate import App, JobContext, PsycopgConnector
from procrastinate.jobs import Status
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from catalog.database import libpq_dsn, session_scope
from catalog.models import Dataset, EtlRun, RunRequest, StoredManifest
from catalog.settings import Settings
from etl.manifest import ManifestError, find_manifests, load_manifest

log = logging.getLogger("shahr.worker")

QUEUE = "etl"
RUN_TASK = "shahr.run_dataset"
REFRESH_TASK = "shahr.refresh_due"
MISSED_HEARTBEATS = 3  # a running run with no heartbeat for this many intervals is abandoned
QUEUE_GRACE_S = 60  # a queued run whose job is gone this long after queueing is failed
REFRESH_LOCK = 0x5348_4152  # advisory lock: one scheduling pass at a time ("SHAR")

app = App(connector=PsycopgConnector())
# Defers on a caller's connection only (never opened), whatever `app`'s connector is doing.
_deferrer = App(connector=PsycopgConnector())


# ---- queueing ----------------------------------------------------------------------------------

def queue_run(s: Session, ds: Dataset, *, kind: str, source: str, upload_id: int | None = None,
              url: str | None = None, force: bool = False, key_id: int | None = None) -> EtlRun:
    """Record a queued run of `ds` and its job in the session's transaction (both or neither
    exist once it commits). Runs of one dataset are carried out one at a time."""
    run = EtlRun(job_name=ds.job_name or ds.slug, dataset_id=ds.id, source=source,
                 status="queued")
    s.add(run)
    s.flush()
    req = RunRequest(run_id=run.id, dataset_id=ds.id, kind=kind, upload_id=upload_id, url=url,
                     force=force, key_id=key_id)
    s.add(req)
    pg = s.connection().connection.driver_connection
    assert isinstance(pg, psycopg.Connection)
    req.job_id = _deferrer.configure_task(
        RUN_TASK, queue=QUEUE, lock=f"dataset:{ds.slug}", connection=pg).defer(run_id=run.id)
    s.flush()
    return run


def fail_run(url: str, run_id: int, error: str) -> bool:
    """Mark a queued or running run failed (never overwrites a finished one)."""
    with session_scope(url) as s:
        return _fail(s, run_id, error)


def _fail(s: Session, run_id: int, error: str) -> bool:
    done = s.execute(text(
        "UPDATE catalog.etl_runs SET status = 'failed', error = :error, finished_at = now(), "
        "duration_s = extract(epoch FROM now() - started_at) "
        "WHERE id = :id AND status IN ('queued', 'running')"),
        {"id": run_id, "error": error})
    return bool(done.rowcount)  # type: ignore[attr-defined]


# ---- abandoned runs ----------------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie (dead, not yet reaped) is dead
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    return True


def mark_stale_runs(url: str, *, heartbeat_s: float, run_id: int | None = None,
                    host: str | None = None, own_pid: int | None = None) -> list[int]:
    """Fail the runs nobody is carrying out any more: running with no heartbeat for
    MISSED_HEARTBEATS intervals; running on `host` under a process that is gone (or is
    `own_pid`, a worker just started, which runs nothing yet); queued for longer than a
    minute with no live job. Returns their ids."""
    stale_after = heartbeat_s * MISSED_HEARTBEATS
    only = "AND r.id = :run_id" if run_id is not None else ""
    failed: list[int] = []
    with session_scope(url) as s:
        rows = s.execute(text(
            "UPDATE catalog.etl_runs r SET status = 'failed', finished_at = now(), "
            "duration_s = extract(epoch FROM now() - r.started_at), error = "
            "'the worker carrying out this run (' || coalesce(q.worker_host, '?') || ', pid ' "
            "|| coalesce(q.worker_pid::text, '?') || ') stopped reporting at ' "
            "|| coalesce(to_char(q.heartbeat AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD HH24:MI:SS') || ' UTC', 'its start') || ' (killed or crashed); the load "
            "did not complete and the current version still serves' "
            "FROM catalog.run_requests q WHERE q.run_id = r.id AND r.status = 'running' "
            "AND (q.heartbeat IS NULL OR q.heartbeat < now() - make_interval(secs => :stale)) "
            f"{only} RETURNING r.id"), {"stale": stale_after, "run_id": run_id})
        failed += [r[0] for r in rows]
        if host is not None:
            running = s.execute(
                select(RunRequest.run_id, RunRequest.worker_pid)
                .join(EtlRun, EtlRun.id == RunRequest.run_id)
                .where(EtlRun.status == "running", RunRequest.worker_host == host)).all()
            gone = [(rid, pid) for rid, pid in running
                    if pid is None or pid == own_pid or not _pid_alive(pid)]
            for rid, pid in gone:
                if _fail(s, rid, f"the worker carrying out this run ({host}, pid {pid}) is "
                         "gone (killed or crashed); the load did not complete and the "
                         "current version still serves"):
                    failed.append(rid)
        has_queue = s.scalar(text("SELECT to_regclass('public.procrastinate_jobs')"))
        if has_queue:
            rows = s.execute(text(
                "UPDATE catalog.etl_runs r SET status = 'failed', finished_at = now(), error = "
                "'its queued job was lost or cancelled before a worker took it; ask for a "
                "re-run' FROM catalog.run_requests q "
                "LEFT JOIN procrastinate_jobs j ON j.id = q.job_id "
                "WHERE q.run_id = r.id AND r.status = 'queued' "
                "AND q.created < now() - make_interval(secs => :grace) "
                "AND (j.id IS NULL OR j.status NOT IN ('todo', 'doing')) "
                f"{only} RETURNING r.id"), {"grace": QUEUE_GRACE_S, "run_id": run_id})
            failed += [r[0] for r in rows]
    for rid in failed:
        log.warning("run %s marked failed: abandoned", rid)
    return failed


# ---- scheduled refreshes -----------------------------------------------------------------------

def queue_due_refreshes(url: str, settings: Settings, *, now: datetime | None = None
                        ) -> list[int]:
    """Queue a refresh of every job with a source URL and a refresh period whose last run
    started at least a period ago (or never ran), unless one is queued or running. YAML
    jobs (SHAHR_JOBS_DIRS) and catalogue datasets alike. Returns the queued run ids."""
    from etl.catalogue_manifests import build
    from etl.runner import register_dataset

    now = now or datetime.now(UTC)
    queued: list[int] = []
    with session_scope(url) as s:
        if not s.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": REFRESH_LOCK}):
            return []  # another worker is scheduling right now
        candidates = []
        for path in find_manifests(settings.jobs_dirs).values():
            try:
                m = load_manifest(path)
            except ManifestError as exc:
                log.warning("scheduled refresh: %s", exc)
                continue
            if m.refresh_period() is not None:
                candidates.append(m)
        yaml_slugs = {m.dataset.slug for m in candidates}
        for ds, sm in s.execute(select(Dataset, StoredManifest).join(
                StoredManifest, StoredManifest.dataset_id == Dataset.id)).all():
            if ds.slug in yaml_slugs:
                continue
            with contextlib.suppress(ManifestError):
                m = build(sm.manifest, slug=ds.slug, settings=settings)
                if m.refresh_period() is not None:
                    candidates.append(m)
        for m in candidates:
            period = m.refresh_period()
            assert period is not None
            ds = s.scalar(select(Dataset).where(Dataset.slug == m.dataset.slug))
            if ds is None:
                try:
                    ds = register_dataset(s, m)
                except (ValueError, ManifestError) as exc:
                    log.warning("scheduled refresh of %s: %s", m.name, exc)
                    continue
            last = s.scalar(select(EtlRun).where(EtlRun.dataset_id == ds.id)
                            .order_by(EtlRun.id.desc()).limit(1))
            if last is not None and (last.status in ("queued", "running")
                                     or last.started_at + period > now):
                continue
            run = queue_run(s, ds, kind="schedule", source=m.source.url or "?")
            queued.append(run.id)
    return queued


# ---- the worker --------------------------------------------------------------------------------

@dataclass
class WorkerConfig:
    """What the worker's tasks need (procrastinate passes it in the job context)."""

    url: str
    settings: Settings
    host: str = field(default_factory=socket.gethostname)

    @property
    def heartbeat_s(self) -> float:
        return self.settings.worker_heartbeat_s

    @property
    def logs_dir(self) -> Path:
        return (self.settings.data_dir / "logs" / "runs").resolve()


def _config(context: JobContext) -> WorkerConfig:
    cfg = context.additional_context.get("shahr")
    assert isinstance(cfg, WorkerConfig), "run the tasks with `shahr worker`"
    return cfg


@app.task(name=RUN_TASK, queue=QUEUE, pass_context=True)
async def run_dataset(context: JobContext, run_id: int) -> None:
    """Carry out queued run `run_id` in a child process, with heartbeat and timeout."""
    job_id = context.job.id if context.job else None
    await supervise(_config(context), run_id, job_id=job_id)


@app.periodic(cron="* * * * *", periodic_id="refresh-due")
@app.task(name=REFRESH_TASK, queue=QUEUE, pass_context=True, queueing_lock=REFRESH_TASK)
async def refresh_due(context: JobContext, timestamp: int) -> None:
    """Every minute: queue the scheduled refreshes that are due."""
    cfg = _config(context)
    queued = await asyncio.to_thread(queue_due_refreshes, cfg.url, cfg.settings)
    if queued:
        log.info("queued scheduled refreshes: runs %s", queued)


class _RunDb:
    """The supervisor's own connection, opened again when the database went away (a restart
    must not leave a child unwatched)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: psycopg.AsyncConnection | None = None

    async def execute(self, sql: str, params: list[Any]) -> int:
        for attempt in (1, 2):
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
                cur = await self.conn.execute(sql, params)  # type: ignore[arg-type]
                return cur.rowcount
            except psycopg.OperationalError:
                await self.close()
                if attempt == 2:
                    raise
        return 0

    async def fail(self, run_id: int, error: str) -> None:
        await self.execute(
            "UPDATE catalog.etl_runs SET status = 'failed', error = %s, finished_at = now(), "
            "duration_s = extract(epoch FROM now() - started_at) "
            "WHERE id = %s AND status IN ('queued', 'running')", [error, run_id])

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self.conn.close()
            self.conn = None


async def supervise(cfg: WorkerConfig, run_id: int, *, job_id: int | None) -> None:
    db = _RunDb(libpq_dsn(cfg.url))
    try:
        await _supervise(cfg, db, run_id, job_id)
    finally:
        await db.close()


async def _supervise(cfg: WorkerConfig, db: _RunDb, run_id: int, job_id: int | None) -> None:
    timeout = cfg.settings.job_timeout_s
    # One statement: a sweep must never see the run running without its first heartbeat
    # (it would take it for abandoned).
    started = await db.execute(
        "WITH started AS (UPDATE catalog.etl_runs SET status = 'running', started_at = now() "
        "WHERE id = %s AND status = 'queued' RETURNING id) "
        "UPDATE catalog.run_requests q SET worker_host = %s, worker_pid = %s, "
        "job_id = coalesce(%s, q.job_id), heartbeat = now() FROM started "
        "WHERE q.run_id = started.id", [run_id, cfg.host, os.getpid(), job_id])
    if not started:
        log.warning("run %s is no longer queued; nothing to do", run_id)
        return
    cfg.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = cfg.logs_dir / f"{run_id}.log"
    payload = json.dumps({"run_id": run_id, "url": cfg.url, "parent_pid": os.getpid(),
                          "settings": cfg.settings.model_dump(mode="json")})
    with log_path.open("ab") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "etl.queued_run", stdin=asyncio.subprocess.PIPE,
            stdout=log_file, stderr=asyncio.subprocess.STDOUT)
    timed_out = False
    try:
        assert proc.stdin is not None
        proc.stdin.write(payload.encode())
        await proc.stdin.drain()
        proc.stdin.close()
        await db.execute("UPDATE catalog.run_requests SET child_pid = %s WHERE run_id = %s",
                         [proc.pid, run_id])
        log.info("run %s: ETL process %s started (log %s)", run_id, proc.pid, log_path)
        t0 = time.monotonic()
        while True:
            left = timeout - (time.monotonic() - t0)
            if left <= 0:
                timed_out = True
                proc.kill()
                await proc.wait()
                break
            try:
                await asyncio.wait_for(proc.wait(), timeout=min(cfg.heartbeat_s, left))
                break
            except TimeoutError:
                try:
                    await db.execute("UPDATE catalog.run_requests SET heartbeat = now() "
                                     "WHERE run_id = %s", [run_id])
                except psycopg.OperationalError as exc:
                    log.warning("run %s: heartbeat not written (%s)", run_id, exc)
    except BaseException as exc:  # stopping (CancelledError) or broken: stop the child too
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())
        why = ("the worker was stopped before the run finished"
               if isinstance(exc, asyncio.CancelledError)
               else f"the worker failed while watching the run ({exc!r})")
        with contextlib.suppress(psycopg.Error):
            await asyncio.shield(db.fail(run_id, f"{why}; nothing was published"))
        raise
    if timed_out:
        await db.fail(run_id, f"timed out after {timeout} s (SHAHR_JOB_TIMEOUT_S); the ETL "
                      "process was stopped and nothing was published")
    elif proc.returncode != 0:
        await db.fail(run_id, f"the ETL process {_exit_text(proc.returncode)}: "
                      f"{_tail(log_path)}")
    log.info("run %s: ETL process ended (%s)", run_id, _exit_text(proc.returncode))


def _exit_text(code: int | None) -> str:
    if code is None:
        return "did not end"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text_ = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text_[-lines:])[-1500:] or "(no output)"


async def _sweep_forever(cfg: WorkerConfig) -> None:
    """Periodically fail abandoned runs and release the jobs of dead workers (their `lock`
    would otherwise hold back every later run of the same dataset)."""
    while True:
        await asyncio.sleep(cfg.heartbeat_s)
        try:
            await sweep(cfg)
        except (psycopg.Error, OSError) as exc:  # the database may be restarting
            log.warning("sweep failed: %s", exc)


async def sweep(cfg: WorkerConfig) -> None:
    await asyncio.to_thread(mark_stale_runs, cfg.url, heartbeat_s=cfg.heartbeat_s)
    stalled = await app.job_manager.get_stalled_jobs(
        seconds_since_heartbeat=cfg.heartbeat_s * MISSED_HEARTBEATS)
    for job in stalled:
        log.warning("releasing job %s of a dead worker", job.id)
        await app.job_manager.finish_job(job, status=Status.FAILED, delete_job=False)


async def run_worker(cfg: WorkerConfig, *, concurrency: int = 1, wait: bool = True) -> None:
    """Run the worker until stopped (SIGINT/SIGTERM; a running job's child is killed and its
    run marked failed after 30 s). `wait=False` stops once the queue is empty (tests)."""
    failed = await asyncio.to_thread(mark_stale_runs, cfg.url, heartbeat_s=cfg.heartbeat_s,
                                     host=cfg.host, own_pid=os.getpid())
    if failed:
        log.warning("runs abandoned by an earlier worker marked failed: %s", failed)
    connector = PsycopgConnector(conninfo=libpq_dsn(cfg.url), min_size=1,
                                 max_size=concurrency + 3)
    with app.replace_connector(connector):
        async with app.open_async():
            await sweep(cfg)
            sweeper = asyncio.create_task(_sweep_forever(cfg))
            try:
                await app.run_worker_async(
                    queues=[QUEUE], concurrency=concurrency, wait=wait,
                    name=f"shahr@{cfg.host}:{os.getpid()}",
                    additional_context={"shahr": cfg},
                    update_heartbeat_interval=cfg.heartbeat_s,
                    stalled_worker_timeout=cfg.heartbeat_s * MISSED_HEARTBEATS,
                    fetch_job_polling_interval=max(1.0, cfg.heartbeat_s),
                    abort_job_polling_interval=max(1.0, cfg.heartbeat_s),
                    shutdown_graceful_timeout=30, delete_jobs="successful")
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
