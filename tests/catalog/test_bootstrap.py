"""Finding or making the database: the private-cluster fallback and the configured URL."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from catalog.bootstrap import (
    ensure_postgis,
    resolve_database,
    start_private_cluster,
    stop_private_cluster,
)
from catalog.database import DatabaseUnavailable, libpq_dsn
from catalog.settings import Settings


@pytest.mark.skipif(not (shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob(
    "*/bin/initdb"))), reason="no PostgreSQL server binaries")
def test_private_cluster_is_made_started_and_reused() -> None:
    # Under /tmp with open permissions: initdb runs as `postgres` when we are root.
    base = Path(tempfile.mkdtemp(prefix="shahr-pg-"))
    os.chmod(base, 0o755)
    pgdir = base / "postgres"
    try:
        url = start_private_cluster(pgdir)
        assert "127.0.0.1" in url and url.endswith("/shahr")
        assert (pgdir / "data" / "PG_VERSION").exists()
        version = ensure_postgis(url)
        assert version.startswith("3.")
        # A second call finds the running cluster on the same port.
        assert start_private_cluster(pgdir) == url
        # And after a stop, starts it again on the recorded port.
        stop_private_cluster(pgdir)
        assert start_private_cluster(pgdir) == url
        with psycopg.connect(libpq_dsn(url)) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("shahr",)
    finally:
        stop_private_cluster(pgdir)
        shutil.rmtree(base, ignore_errors=True)


def test_configured_url_wins_and_is_not_touched() -> None:
    choice = resolve_database(Settings(database_url="postgresql://u:p@db.example:6543/x"))
    assert choice.kind == "configured" and "db.example:6543" in choice.describe()


def test_postgis_missing_or_unreachable_is_a_paragraph() -> None:
    with pytest.raises(DatabaseUnavailable) as exc:
        ensure_postgis("postgresql://postgres@127.0.0.1:9/nothing")
    assert "Cannot connect" in str(exc.value) and "shahr db status" in str(exc.value)
