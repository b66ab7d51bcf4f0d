"""Operations, over real HTTP and real processes: request ids, Prometheus metrics (by route
template, across uvicorn workers, ETL runs read from the catalogue), JSON access logs from
`shahr serve`, /readyz, and the read-only role the public queries run as."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serving import free_port

from api.pool import PublicPool, public_dsn
from catalog.database import libpq_dsn
from catalog.roles import READER_ROLE, ensure_reader_role
from support import current_table

pytestmark = pytest.mark.usefixtures("demo_loaded")
SHAHR = str(Path(sys.executable).with_name("shahr"))
ITEMS = "/collections/{collection_id}/items"
HEX32 = re.compile(r"[0-9a-f]{32}")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value, from the Prometheus text format."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


# ---- request ids ------------------------------------------------------------------------------

def test_request_id_is_echoed_or_made(http: httpx.Client) -> None:
    r = http.get("/collections/crashes/items", headers={"X-Request-ID": "trace-42.a:b"})
    assert r.headers["x-request-id"] == "trace-42.a:b"
    r = http.get("/collections/no-such/items", headers={"X-Request-ID": "trace-43"})
    assert r.status_code == 404 and r.json()["request_id"] == "trace-43"
    for bad in ["x" * 200, "a b", "<script>", "-leading-dash", "\u00fc".encode()]:
        r = http.get("/healthz", headers={"X-Request-ID": bad})
        assert HEX32.fullmatch(r.headers["x-request-id"]), bad
    made = {http.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(made) == 3 and all(HEX32.fullmatch(m) for m in made)


# ---- metrics ----------------------------------------------------------------------------------

def test_metrics_count_requests_by_route_template(http: httpx.Client) -> None:
    before = samples(http.get("/metrics").text)
    for slug in ("crashes", "schools", "crashes"):
        assert http.get(f"/collections/{slug}/items", params={"limit": 1}).status_code == 200
    assert http.get("/collections/no-such/items").status_code == 404
    assert http.get("/no/such/page").status_code == 404
    r = http.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    after = samples(r.text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("shahr_http_requests_total", method="GET", route=ITEMS, status="200") == 3
    assert delta("shahr_http_requests_total", method="GET", route=ITEMS, status="404") == 1
    assert delta("shahr_http_requests_total", method="GET", route="unmatched",
                 status="404") == 1
    assert delta("shahr_http_request_duration_seconds_count", method="GET", route=ITEMS,
                 status="200") == 3
    assert delta("shahr_http_request_duration_seconds_bucket", method="GET", route=ITEMS,
                 status="200", le="+Inf") == 3
    assert delta("shahr_http_request_duration_seconds_sum", method="GET", route=ITEMS,
                 status="200") > 0
    # a label per route template, never per URL
    assert "/collections/crashes/items" not in r.text
    assert value(after, "shahr_database_up") == 1
    assert value(after, "shahr_db_pool_connections", state="open") >= 1


def test_etl_metrics_are_read_from_the_catalogue(http: httpx.Client, database_url: str) -> None:
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as db:
        runs = db.execute("SELECT job_name, status, count(*), sum(rows_loaded) "
                          "FROM catalog.etl_runs GROUP BY 1, 2").fetchall()
        found = samples(http.get("/metrics").text)
        assert runs
        loaded: dict[str, float] = {}
        for job, status, n, rows in runs:
            assert value(found, "shahr_etl_runs_total", job=job, status=status) == n
            loaded[job] = loaded.get(job, 0) + rows
        for job, rows in loaded.items():
            assert value(found, "shahr_etl_rows_loaded_total", job=job) == rows
        # a run recorded by another process (the CLI, the worker) shows at the next scrape
        run_id = db.execute(
            "INSERT INTO catalog.etl_runs (job_name, source, status, rows_loaded, "
            "rows_rejected, finished_at) VALUES ('metrics-probe', 'test', 'failed', 7, 3, "
            "now()) RETURNING id").fetchone()[0]  # type: ignore[index]
        try:
            found = samples(http.get("/metrics").text)
            assert value(found, "shahr_etl_runs_total", job="metrics-probe",
                         status="failed") == 1
            assert value(found, "shahr_etl_rows_loaded_total", job="metrics-probe") == 7
            assert value(found, "shahr_etl_rows_rejected_total", job="metrics-probe") == 3
            assert value(found, "shahr_etl_last_finished_timestamp_seconds",
                         job="metrics-probe", status="failed") == pytest.approx(time.time(),
                                                                                abs=60)
        finally:
            db.execute("DELETE FROM catalog.etl_runs WHERE id = %s", [run_id])


def test_readyz_says_who_public_queries_run_as(http: httpx.Client) -> None:
    body = http.get("/readyz").json()
    assert body["status"] == "ready" and body["pool"] == "up"
    assert body["public_queries_as"] == f"role {READER_ROLE}"


# ---- shahr serve: workers, JSON logs ----------------------------------------------------------

def test_serve_logs_json_lines_and_counts_every_worker(database_url: str,
                                                       tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "SHAHR_DATABASE_URL": database_url,
           "SHAHR_DATA_DIR": str(tmp_path / "data")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen([SHAHR, "serve", "--workers", "2", "--port", str(port),
                             "--log-format", "json"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        # (workers import the whole stack: slow on a busy machine, and uvicorn restarts a
        # worker that does not answer its health check in time)
        deadline = time.monotonic() + 180
        while len(_started_workers(log)) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
            time.sleep(0.3)
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
        n = 40
        for i in range(n):  # a new connection each: they spread over the workers
            r = httpx.get(f"{base}/collections/crashes/items",
                          params={"limit": 1}, headers={"X-Request-ID": f"ops-{i}"})
            assert r.status_code == 200
        for _ in range(4):  # whichever worker answers, it counts every worker's requests
            found = samples(httpx.get(f"{base}/metrics").text)
            assert value(found, "shahr_http_requests_total", method="GET", route=ITEMS,
                         status="200") == n
        assert not (tmp_path / "data" / "metrics").exists() or any(
            (tmp_path / "data" / "metrics").iterdir())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not any((tmp_path / "data" / "metrics").glob("*/*.db"))  # removed at exit
    log.seek(0)
    lines = [json.loads(line) for line in log if line.startswith("{")]
    access = {rec["request_id"]: rec for rec in lines
              if rec.get("logger") == "shahr.access" and rec.get("request_id", "").startswith(
                  "ops-")}
    assert sorted(access) == sorted(f"ops-{i}" for i in range(n))
    rec = access["ops-0"]
    assert (rec["method"], rec["route"], rec["status"], rec["client"]) == (
        "GET", ITEMS, 200, "127.0.0.1")
    assert rec["path"] == "/collections/crashes/items"
    assert isinstance(rec["duration_ms"], float) and rec["duration_ms"] > 0
    assert rec["level"] == "info" and rec["time"].endswith("+00:00")
    assert len({r["pid"] for r in access.values()}) >= 2  # both workers answered
    assert not any(r.get("logger") == "uvicorn.access" for r in lines)


def _started_workers(log: Any) -> set[int]:
    """Pids of the workers that finished starting, from the JSON log so far."""
    log.seek(0)
    pids = {json.loads(line)["pid"] for line in log
            if line.startswith("{") and "Application startup complete" in line}
    log.seek(0, 2)
    return pids


def test_serve_refuses_a_bad_log_format(tmp_path: Path, database_url: str) -> None:
    r = subprocess.run([SHAHR, "serve", "--log-format", "xml"], capture_output=True, text=True,
                       env={**os.environ, "SHAHR_DATABASE_URL": database_url}, cwd=tmp_path,
                       timeout=60)
    assert r.returncode != 0
    assert "--log-format" in r.stderr and "text, json" in r.stderr
    assert "Traceback" not in r.stderr


# ---- the read-only role -----------------------------------------------------------------------

def test_public_queries_cannot_write(database_url: str) -> None:
    """The public pool (and the downloads' own connections) run as the reader role: every
    published table is readable, nothing can be changed or created, keys stay hidden."""
    assert ensure_reader_role(database_url) is True  # idempotent: run by every upgrade
    owner = libpq_dsn(database_url)
    with psycopg.connect(owner) as db:
        table = current_table(db, "crashes")
        tables = [r[0] for r in db.execute(
            "SELECT format('data.%I', v.table_name) FROM catalog.versions v "
            "JOIN catalog.datasets d ON d.current_version_id = v.id").fetchall()]
    insert = f"INSERT INTO {table} (fid) VALUES (-1)"
    refused = [
        "SELECT count(*) FROM catalog.api_keys",  # not published data
        "SELECT count(*) FROM catalog.audit_log",
        "INSERT INTO catalog.organisations (slug, name_en) VALUES ('evil', 'Evil')",
        "UPDATE catalog.datasets SET slug = 'evil'",
        "DELETE FROM catalog.etl_runs",
        insert,
        f"UPDATE {table} SET geom = NULL",
        f"DELETE FROM {table}",
        f"TRUNCATE {table}",
        f"DROP TABLE {table}",
        f"ALTER TABLE {table} ADD COLUMN evil int",
        f"CREATE INDEX ON {table} (fid)",
        "CREATE TABLE data.evil (x int)",
        "CREATE TABLE catalog.evil (x int)",
        "CREATE TABLE public.evil (x int)",
        "CREATE SCHEMA evil",
        "CREATE FUNCTION public.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    ]

    async def attempt() -> tuple[str, list[int]]:
        pool = PublicPool(owner, role=READER_ROLE, statement_timeout_ms=5000, max_size=2,
                          timeout=10)
        await pool.open(wait=True)
        try:
            async with pool.connection() as conn:
                who = (await (await conn.execute("SELECT current_user")).fetchone())[0]
                counts = []
                for t in tables:  # every published table, loaded after the role was made
                    cur = await conn.execute(f"SELECT count(*) FROM {t}")
                    counts.append((await cur.fetchone())[0])
                for stmt in refused:
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        await conn.execute(stmt)
            # downloads connect on their own, as the same role
            assert pool.role_in_use
            async with await psycopg.AsyncConnection.connect(
                    public_dsn(pool, owner), autocommit=True) as own:
                cur = await own.execute("SELECT current_user")
                assert (await cur.fetchone())[0] == READER_ROLE  # type: ignore[index]
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    await own.execute(insert)
            return who, counts
        finally:
            await pool.close()

    who, counts = asyncio.run(attempt())
    assert who == READER_ROLE
    assert len(counts) == len(tables) >= 12 and all(n > 0 for n in counts)
    with psycopg.connect(owner) as db:  # nothing changed
        assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0  # type: ignore[index]
        assert db.execute("SELECT to_regclass('data.evil')").fetchone() == (None,)


def test_a_database_not_granted_to_the_role_is_read_as_the_owner(server_url: str) -> None:
    """The role belongs to the server, so it may exist while this database was migrated
    without its grants (an older `shahr db upgrade`): then public queries run as the
    connecting user instead of failing with 'permission denied'."""
    from alembic import command
    from sqlalchemy.engine import make_url

    from catalog.bootstrap import create_database, drop_database, ensure_postgis
    from catalog.database import get_engine
    from catalog.migrate import alembic_config

    name = f"shahr_test_nogrants_{os.getpid()}"
    create_database(server_url, name)
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        ensure_postgis(url)
        command.upgrade(alembic_config(url), "head")  # the migrations alone, no grants

        async def who() -> tuple[str, bool | None, str]:
            pool = PublicPool(libpq_dsn(url), role=READER_ROLE, statement_timeout_ms=5000,
                              max_size=1, timeout=10)
            await pool.open(wait=True)
            try:
                async with pool.connection() as conn:
                    cur = await conn.execute("SELECT current_user, count(*) FROM "
                                             "catalog.datasets GROUP BY 1")
                    row = await cur.fetchone()
                    user = row[0] if row else (await (await conn.execute(
                        "SELECT current_user")).fetchone())[0]  # type: ignore[index]
                return user, pool.role_in_use, pool.identity
            finally:
                await pool.close()

        user, in_use, identity = asyncio.run(who())
        assert user != READER_ROLE and in_use is False
        assert identity == "the connecting user (no role)"
    finally:
        get_engine(url).dispose()
        drop_database(server_url, name)
