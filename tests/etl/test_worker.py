"""The job worker for real: `shahr worker` processes against the test database, uploads over
HTTP, versions served over HTTP. Faults: a worker killed -9 in the middle of a load (the
current version keeps serving, the run ends failed, the dataset's queue is not blocked), a
malformed upload (a clear error, nothing published), a job over its time limit; and URL
uploads and scheduled refreshes fetched by the worker."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from publishing_support import (
    SHAHR,
    TITLE_FA,
    FileServer,
    bearer,
    csv_bytes,
    dataset_body,
    eventually,
    new_key,
    pid_alive,
    running_worker,
    serve,
    slug,
    wait_run,
    worker_env,
)

from catalog.database import libpq_dsn
from catalog.settings import Settings
from etl.demo import write_parcels
from etl.queue import queue_due_refreshes

GEOJSON = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"id": i, "name": f"نقطه {i}"},
     "geometry": {"type": "Point", "coordinates": [51.3 + i / 100, 35.7]}} for i in range(1, 4)]}


@pytest.fixture(scope="module")
def wsettings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_upload_mb": 64, "fetch_private_hosts": True,
                                       "worker_heartbeat_s": 1.0, "job_timeout_s": 300,
                                       "etl_batch_size": 5000})


@pytest.fixture(scope="module")
def base(wsettings: Settings) -> Iterator[str]:
    with serve(wsettings) as url:
        yield url


@pytest.fixture
def client(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def org() -> str:
    return slug("wk-org")


@pytest.fixture(scope="module")
def key(database_url: str, org: str) -> dict[str, str]:
    return bearer(new_key(database_url, "publisher", org))


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    server = FileServer()
    yield server
    server.close()


def create(client: httpx.Client, auth: dict[str, str], org: str, name: str,
           **extra: Any) -> None:
    body = dataset_body(name, {"slug": org, "name": {"fa": "شهرداری", "en": "Municipality"}},
                        **extra)
    r = client.post("/datasets", headers=auth, json=body)
    assert r.status_code == 201, r.text


def upload(client: httpx.Client, key: dict[str, str], name: str, filename: str,
           data: bytes, **form: str) -> int:
    r = client.post(f"/datasets/{name}/uploads", headers=key, data=form,
                    files={"file": (filename, data, "application/octet-stream")})
    assert r.status_code == 202, r.text
    return int(r.json()["run"]["id"])


def matched(client: httpx.Client, name: str) -> int:
    r = client.get(f"/collections/{name}/items", params={"limit": 1})
    assert r.status_code == 200, r.text
    return int(r.json()["numberMatched"])


def versions(db: psycopg.Connection, name: str) -> list[int]:
    return [r[0] for r in db.execute(
        "SELECT v.number FROM catalog.versions v JOIN catalog.datasets d ON d.id = v.dataset_id "
        "WHERE d.slug = %s ORDER BY v.number", [name]).fetchall()]


def test_uploads_are_loaded_by_the_worker_and_served(
        client: httpx.Client, key: dict[str, str], org: str, wsettings: Settings,
        db: psycopg.Connection, tmp_path: Path) -> None:
    name = slug("wk-upl")
    create(client, key, org, name)
    first = upload(client, key, name, "stops.csv", csv_bytes(3))
    with running_worker(wsettings, tmp_path / "worker.log") as w:
        run = wait_run(client, first, key)
        assert run["status"] == "succeeded", (run, w.output())
        assert (run["version"], run["rows_loaded"], run["rows_read"]) == (1, 3, 3)
        assert run["request"]["worker"].endswith(f":{w.pid}")
        assert run["request"]["heartbeat"] is not None
        assert matched(client, name) == 3
        public = client.get(f"/datasets/{name}").json()  # published: in the catalogue now
        assert public["title"]["fa"] == TITLE_FA

        second = wait_run(client, upload(client, key, name, "more.csv", csv_bytes(5)), key)
        assert (second["status"], second["version"], second["rows_loaded"]) == ("succeeded", 2, 5)
        assert matched(client, name) == 5
        assert versions(db, name) == [1, 2]

        again = wait_run(client, upload(client, key, name, "again.csv", csv_bytes(5)), key)
        assert again["status"] == "skipped"  # the same bytes: nothing to load
        assert again["request"]["upload"]["id"] == second["request"]["upload"]["id"]

        r = client.post(f"/datasets/{name}/runs", headers=key)
        rerun = wait_run(client, r.json()["run"]["id"], key)
        assert (rerun["status"], rerun["version"], rerun["request"]["kind"]) == (
            "succeeded", 3, "rerun")
        assert rerun["request"]["upload"]["id"] == second["request"]["upload"]["id"]
        log = (wsettings.data_dir / "logs" / "runs" / f"{rerun['id']}.log").resolve()
        assert f"run {rerun['id']}: succeeded" in log.read_text()

    # First-class: `shahr etl run --all` sees the catalogue dataset (unchanged: skipped).
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    env = worker_env(wsettings, SHAHR_JOBS_DIRS=json.dumps([str(jobs)]), COLUMNS="200")
    r = subprocess.run([SHAHR, "etl", "run", "--all"], env=env, capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    line = next((ln for ln in r.stdout.splitlines() if name in ln), "")
    assert "unchanged, skipped" in line, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    stored = db.execute("SELECT d.job_name, u.sha256 = encode(sha256(%s), 'hex') "
                        "FROM catalog.datasets d JOIN catalog.dataset_manifests m "
                        "ON m.dataset_id = d.id JOIN catalog.uploads u "
                        "ON u.id = m.current_upload_id WHERE d.slug = %s",
                        [csv_bytes(5), name]).fetchone()
    assert stored == (name, True)
    kept = wsettings.data_dir.resolve() / "sources" / name / "uploads"
    assert sorted(p.suffix for p in kept.iterdir()) == [".csv", ".csv"]


def _copy_backend(db: psycopg.Connection, table: str) -> int | None:
    row = db.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                     "AND state = 'active' AND query ILIKE %s",
                     [f'COPY "data"."{table}"%']).fetchone()
    return int(row[0]) if row else None


def test_a_worker_killed_mid_load_leaves_the_current_version_serving(
        client: httpx.Client, key: dict[str, str], org: str, wsettings: Settings,
        db: psycopg.Connection, tmp_path: Path) -> None:
    name = slug("wk-kill")
    create(client, key, org, name, source={}, key="parcel_id")
    small, big = tmp_path / "small.gpkg", tmp_path / "big.gpkg"
    write_parcels(small, n=400, seed=1)
    write_parcels(big, n=150_000, seed=2)
    first = upload(client, key, name, "parcels.gpkg", small.read_bytes())
    with running_worker(wsettings, tmp_path / "a.log") as a:
        assert wait_run(client, first, key)["status"] == "succeeded", a.output()
        assert matched(client, name) == 400
        doomed = upload(client, key, name, "parcels.gpkg", big.read_bytes())
        table = f"{name.replace('-', '_')}_v2"
        eventually(lambda: _copy_backend(db, table), timeout=180, every=0.05)
        child = db.execute("SELECT child_pid FROM catalog.run_requests WHERE run_id = %s",
                           [doomed]).fetchone()[0]
        assert child and pid_alive(child)
        a.kill9()  # mid-load: the COPY into the new version table is running
    eventually(lambda: not pid_alive(child), timeout=15)  # the ETL child died with it
    eventually(lambda: _copy_backend(db, table) is None, timeout=30)  # and its transaction
    assert matched(client, name) == 400  # the current version still serves
    run = wait_run(client, doomed, key, timeout=30)  # noticed by GET /runs: no heartbeat
    assert run["status"] == "failed"
    assert "stopped reporting" in run["error"] and "current version still serves" in run["error"]
    assert versions(db, name) == [1]
    assert db.execute("SELECT to_regclass(%s)", [f"data.{table}"]).fetchone() == (None,)

    # A new worker releases the dead one's job, so the dataset's queue is not blocked.
    with running_worker(wsettings, tmp_path / "b.log") as b:
        r = client.post(f"/datasets/{name}/runs", headers=key)
        after = wait_run(client, r.json()["run"]["id"], key, timeout=180)
        assert after["status"] == "succeeded", (after, b.output())
        assert after["rows_loaded"] == 400
    job = db.execute("SELECT j.status FROM procrastinate_jobs j JOIN catalog.run_requests q "
                     "ON q.job_id = j.id WHERE q.run_id = %s", [doomed]).fetchone()
    assert job == ("failed",)


def test_a_malformed_upload_gives_a_clear_error_and_publishes_nothing(
        client: httpx.Client, key: dict[str, str], org: str, wsettings: Settings,
        db: psycopg.Connection, tmp_path: Path) -> None:
    name = slug("wk-bad")
    create(client, key, org, name, source={}, key="id")
    good = json.dumps(GEOJSON, ensure_ascii=False).encode()
    broken = good[: len(good) // 2]  # cut mid-feature: sniffs as GeoJSON, does not parse
    junk = b"\x00\x01\x02 this is not a file anyone can read \x00" * 10
    with running_worker(wsettings, tmp_path / "worker.log") as w:
        ok = wait_run(client, upload(client, key, name, "points.geojson", good), key)
        assert ok["status"] == "succeeded", w.output()
        current = db.execute("SELECT m.current_upload_id FROM catalog.dataset_manifests m "
                             "JOIN catalog.datasets d ON d.id = m.dataset_id WHERE d.slug = %s",
                             [name]).fetchone()

        r = client.post(f"/datasets/{name}/uploads", headers=key,
                        files={"file": ("points.geojson", junk, "application/geo+json")})
        assert r.status_code == 415
        assert "binary data of an unknown kind" in r.json()["detail"]
        assert "accepted: GeoJSON" in r.json()["detail"]

        bad = wait_run(client, upload(client, key, name, "points.geojson", broken), key)
        assert bad["status"] == "failed", w.output()
        assert bad["error"] and "Traceback" not in bad["error"]
        assert bad["request"]["upload"]["format"] == "geojson"
        assert "points" in bad["source"] or "uploads/" in bad["source"]
    assert versions(db, name) == [1]  # nothing published
    assert matched(client, name) == 3
    assert db.execute("SELECT m.current_upload_id FROM catalog.dataset_manifests m "
                      "JOIN catalog.datasets d ON d.id = m.dataset_id WHERE d.slug = %s",
                      [name]).fetchone() == current  # a re-run still loads the good file


def test_a_job_over_its_time_limit_is_stopped_and_failed(
        client: httpx.Client, key: dict[str, str], org: str, wsettings: Settings,
        db: psycopg.Connection, files: FileServer, tmp_path: Path) -> None:
    name = slug("wk-slow")
    create(client, key, org, name, source={}, key="id")
    r = client.post(f"/datasets/{name}/uploads", headers=key,
                    json={"url": f"{files.base}/slow.geojson"})
    assert r.status_code == 202, r.text
    run_id = r.json()["run"]["id"]
    started = time.monotonic()
    with running_worker(wsettings, tmp_path / "worker.log", SHAHR_JOB_TIMEOUT_S="10") as w:
        run = wait_run(client, run_id, key, timeout=120)
        assert run["status"] == "failed", w.output()
        assert "timed out after 10 s (SHAHR_JOB_TIMEOUT_S)" in run["error"]
        child = db.execute("SELECT child_pid FROM catalog.run_requests WHERE run_id = %s",
                           [run_id]).fetchone()[0]
        assert not pid_alive(child)
    assert time.monotonic() - started >= 10
    assert versions(db, name) == []


def test_url_uploads_and_scheduled_refreshes_are_fetched_by_the_worker(
        client: httpx.Client, key: dict[str, str], org: str, wsettings: Settings,
        database_url: str, db: psycopg.Connection, files: FileServer, tmp_path: Path) -> None:
    name = slug("wk-feed")
    files.files[f"/{name}.csv"] = csv_bytes(3)
    files.files["/huge.csv"] = csv_bytes(40_000)  # ~1.6 MB, over this worker's 1 MB
    create(client, key, org, name, refresh="PT1M",
           source={"csv": {"lon": "lon", "lat": "lat"}, "url": f"{files.base}/{name}.csv"})
    sched = wsettings.model_copy(update={"jobs_dirs": [tmp_path / "no-jobs"]})
    due = queue_due_refreshes(database_url, sched)
    mine = [r for r in due if _dataset_of(db, r) == name]
    assert len(mine) == 1  # never ran: due now
    assert not [r for r in queue_due_refreshes(database_url, sched)
                if _dataset_of(db, r) == name]  # queued already: not twice
    with running_worker(wsettings, tmp_path / "worker.log", SHAHR_MAX_UPLOAD_MB="1") as w:
        run = wait_run(client, mine[0], key)
        assert run["status"] == "succeeded", w.output()
        assert run["request"]["kind"] == "schedule" and run["rows_loaded"] == 3
        assert run["request"]["upload"]["kind"] == "url"
        assert run["request"]["upload"]["url"] == f"{files.base}/{name}.csv"

        files.files[f"/{name}.csv"] = csv_bytes(4)
        assert not [r for r in queue_due_refreshes(database_url, sched)
                    if _dataset_of(db, r) == name]  # ran less than a minute ago
        later = datetime.now(UTC) + timedelta(minutes=2)
        again = [r for r in queue_due_refreshes(database_url, sched, now=later)
                 if _dataset_of(db, r) == name]
        assert len(again) == 1
        refreshed = wait_run(client, again[0], key)
        assert (refreshed["status"], refreshed["version"], refreshed["rows_loaded"]) == (
            "succeeded", 2, 4)
        assert matched(client, name) == 4

        for url, says in ((f"{files.base}/huge.csv", "larger than the limit of 1 MB"),
                          (f"{files.base}/missing.csv", "HTTP 404")):
            r = client.post(f"/datasets/{name}/uploads", headers=key, json={"url": url})
            assert r.status_code == 202, r.text
            failed = wait_run(client, r.json()["run"]["id"], key)
            assert failed["status"] == "failed" and says in failed["error"], failed
    assert versions(db, name) == [1, 2]
    incoming = wsettings.data_dir.resolve() / "sources" / name / "incoming"
    assert not list(incoming.iterdir())  # refused downloads are not kept


def _dataset_of(db: psycopg.Connection, run_id: int) -> str | None:
    row = db.execute("SELECT d.slug FROM catalog.etl_runs r JOIN catalog.datasets d "
                     "ON d.id = r.dataset_id WHERE r.id = %s", [run_id]).fetchone()
    return row[0] if row else None


def test_a_new_worker_fails_runs_its_dead_predecessor_left(
        client: httpx.Client, key: dict[str, str], org: str, wsettings: Settings,
        db: psycopg.Connection, tmp_path: Path) -> None:
    """At start a worker fails the running runs of workers on its host that are gone, at
    once (without waiting for their heartbeat to go stale)."""
    name = slug("wk-orphan")
    create(client, key, org, name)
    run_id = upload(client, key, name, "s.csv", csv_bytes(2))
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that surely is not running any more
    db.execute("UPDATE catalog.etl_runs SET status = 'running' WHERE id = %s", [run_id])
    db.execute("UPDATE catalog.run_requests SET worker_host = %s, worker_pid = %s, "
               "heartbeat = now() + interval '1 hour' WHERE run_id = %s",
               [os.uname().nodename, gone.pid, run_id])
    with running_worker(wsettings, tmp_path / "worker.log") as w:
        run = wait_run(client, run_id, key, timeout=60)
        assert run["status"] == "failed", w.output()
        assert f"pid {gone.pid}) is gone" in run["error"]
