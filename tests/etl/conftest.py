"""Helpers for ETL tests: write a manifest for a file, run it, and query what was loaded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from catalog.database import libpq_dsn
from catalog.settings import Settings
from etl.manifest import Manifest, load_manifest
from etl.runner import RunResult, run_job
from support import write_manifest

LoadFn = Callable[..., tuple[RunResult, Manifest]]


@pytest.fixture
def load(settings: Settings, database_url: str, tmp_path: Path) -> LoadFn:
    """load(source_dict, slug=..., key=..., fields=[...], force=False) -> (result, manifest)."""
    def _load(source: dict[str, Any], *, force: bool = False, manifest_path: Path | None = None,
              **extra: Any) -> tuple[RunResult, Manifest]:
        path = manifest_path or write_manifest(tmp_path, source, **extra)
        m = load_manifest(path)
        return run_job(m, url=database_url, settings=settings, force=force), m
    return _load


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        yield conn
