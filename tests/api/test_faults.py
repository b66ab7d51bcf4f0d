"""The database restarted under a running service: during the outage requests get 503
problem documents at once (no hang, no 500); once it is back they succeed again, without
restarting the service.

The shared PostgreSQL server is never touched: the test starts a private cluster of its own
(initdb/pg_ctl as catalog.bootstrap does, on a free port), loads two demo datasets into it,
serves the app on it over HTTP, then stops and starts that cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import morecantile
import pytest
from serving import free_port, served

from api.app import create_app
from catalog.bootstrap import (
    _as_postgres_user,
    _pg_bin,
    ensure_postgis,
    start_private_cluster,
    stop_private_cluster,
)
from catalog.migrate import upgrade
from catalog.settings import Settings

pytestmark = pytest.mark.skipif(_pg_bin("initdb") is None or _pg_bin("pg_ctl") is None,
                                reason="no PostgreSQL server binaries")
PROBLEM = "application/problem+json"
JOBS = ("schools", "crashes")
CENTRE = (51.40, 35.70)


@pytest.fixture(scope="module")
def cluster(demo_manifests: list[Path], session_tmp: Path) -> Iterator[tuple[Path, Settings]]:
    """A private PostgreSQL cluster with PostGIS, migrated, with two demo datasets loaded."""
    from etl.manifest import load_manifest
    from etl.runner import run_job

    base = Path(tempfile.mkdtemp(prefix="shahr-faults-"))
    os.chmod(base, 0o755)  # initdb runs as `postgres` when we are root
    pgdir = base / "postgres"
    try:
        url = start_private_cluster(pgdir)
        ensure_postgis(url)
        upgrade(url)
        settings = Settings(database_url=url, data_dir=base / "data",
                            jobs_dirs=[demo_manifests[0].parent], etl_batch_size=1000,
                            basemap="none", statement_timeout_ms=5000)
        for path in demo_manifests:
            m = load_manifest(path)
            if m.name in JOBS:
                assert run_job(m, url=url, settings=settings).status == "succeeded"
        yield pgdir, settings
    finally:
        stop_private_cluster(pgdir)
        from catalog.database import get_engine

        get_engine.cache_clear()
        shutil.rmtree(base, ignore_errors=True)


def _urls() -> list[str]:
    tile = morecantile.tms.get("WebMercatorQuad").tile(*CENTRE, 12)
    # (not /collections: its list may be answered from a cache of up to a second)
    return ["/collections/crashes/items?limit=5", "/collections/schools/items/1",
            "/datasets", "/datasets?q=school", "/datasets/schools",
            f"/collections/crashes/tiles/WebMercatorQuad/12/{tile.x}/{tile.y}?severity=fatal",
            "/datasets/schools/download?format=csv",
            "/datasets/crashes/download?format=geojson&severity=fatal"]


def _all_ok(c: httpx.Client, urls: list[str]) -> list[tuple[str, int]]:
    return [(u, r.status_code) for u in urls if (r := c.get(u)).status_code not in (200, 204)]


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_database_restart_gives_503_then_recovers(cluster: tuple[Path, Settings],
                                                 mode: str) -> None:
    pgdir, settings = cluster
    urls = _urls()
    with served(create_app(settings)) as base, httpx.Client(base_url=base, timeout=30) as c:
        assert _all_ok(c, urls) == []
        assert c.get("/readyz").status_code == 200

        _stop(pgdir, mode)
        try:
            for _round in range(3):  # dead pooled connections first, then none at all
                for url in urls:
                    t0 = time.monotonic()
                    r = c.get(url)
                    took = time.monotonic() - t0
                    assert r.status_code == 503, (url, r.status_code, r.text[:300])
                    assert r.headers["content-type"].startswith(PROBLEM), url
                    assert r.headers["retry-after"], url
                    assert "database" in r.json()["detail"], (url, r.json())
                    assert took < 3, (url, took)  # at once, not after the pool's timeout
            assert c.get("/healthz").status_code == 200  # the process itself is fine
            ready = c.get("/readyz")
            assert ready.status_code == 503 and ready.json()["pool"] == "database away"
        finally:
            start_private_cluster(pgdir)

        # The same service, not restarted: it reconnects by itself.
        deadline = time.monotonic() + 30
        while c.get("/collections/crashes/items?limit=1").status_code != 200:
            assert time.monotonic() < deadline, "the service did not recover within 30 s"
            time.sleep(0.2)
        for _round in range(3):
            assert _all_ok(c, [*urls, "/collections"]) == []
        body = c.get("/readyz").json()
        assert body["status"] == "ready" and body["pool"] == "up"


def _stop(pgdir: Path, mode: str) -> None:
    """Stop the private cluster: `fast` (clients told) or `immediate` (as a crash)."""
    pg_ctl = _pg_bin("pg_ctl")
    assert pg_ctl
    done = subprocess.run(
        _as_postgres_user([pg_ctl, "-D", str(pgdir.resolve() / "data"), "-m", mode, "-w",
                           "stop"]), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_database_away_from_the_start_fails_fast(settings: Settings) -> None:
    """No database when the service starts: the first request waits the pool's timeout,
    then the pool is known to be away and the next ones are answered at once."""
    away = settings.model_copy(update={
        "database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere",
        "pool_timeout_s": 2.0})
    with served(create_app(away)) as base, httpx.Client(base_url=base, timeout=30) as c:
        first = c.get("/collections/crashes/items")
        assert first.status_code == 503 and first.headers["content-type"].startswith(PROBLEM)
        assert first.elapsed.total_seconds() < 6
        for url in ("/collections/crashes/items", "/datasets", "/datasets/schools"):
            r = c.get(url)
            assert r.status_code == 503 and r.elapsed.total_seconds() < 1.5, url
        assert c.get("/readyz").json()["pool"] == "database away"
        assert c.get("/healthz").status_code == 200
