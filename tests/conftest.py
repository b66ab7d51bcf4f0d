"""Shared fixtures: one throwaway PostGIS database per test run (on the server Shahr would
use), settings pointing at it, the demo city generated and loaded once, and the app served
over real HTTP by uvicorn."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from catalog.bootstrap import create_database, drop_database, ensure_postgis, resolve_database
from catalog.migrate import upgrade
from catalog.settings import Settings

TEST_PARCELS = 1500


@pytest.fixture(scope="session")
def server_url() -> str:
    """The PostgreSQL server tests make their database on (SHAHR_DATABASE_URL's, or local)."""
    return resolve_database(Settings(database_url=os.environ.get("SHAHR_DATABASE_URL"))).url


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    name = f"shahr_test_{uuid.uuid4().hex[:10]}"
    create_database(server_url, name)
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    ensure_postgis(url)
    upgrade(url)
    yield url
    from catalog.database import get_engine

    get_engine(url).dispose()
    drop_database(server_url, name)


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shahr")


@pytest.fixture(scope="session")
def settings(database_url: str, session_tmp: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=session_tmp / "data",
                    jobs_dirs=[session_tmp / "demo"], etl_batch_size=1000,
                    basemap="none")


@pytest.fixture(scope="session")
def demo_manifests(settings: Settings) -> list[Path]:
    from etl.demo import generate_city

    return generate_city(settings.jobs_dirs[0], seed=settings.demo_seed, parcels=TEST_PARCELS)


@pytest.fixture(scope="session")
def demo_loaded(demo_manifests: list[Path], settings: Settings, database_url: str) -> dict:
    """Every demo job run once; job name -> RunResult."""
    from etl.manifest import load_manifest
    from etl.runner import run_job

    results = {}
    for p in demo_manifests:
        m = load_manifest(p)
        results[m.name] = run_job(m, url=database_url, settings=settings)
    return results


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[str]:
    """The real app served by uvicorn on a free loopback port; yields its base URL."""
    from serving import served

    from api.app import create_app

    with served(create_app(settings)) as base:
        yield base


@pytest.fixture
def http(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=30) as client:
        yield client
