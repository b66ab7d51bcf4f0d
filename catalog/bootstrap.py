"""Find or make the PostGIS database Shahr uses, so `make demo` works on a bare machine.

Order: `SHAHR_DATABASE_URL` when set; else the PostgreSQL server on 127.0.0.1:5432 when one
answers (database `shahr`); else a private cluster under `.data/postgres` started with the
installed `initdb`/`pg_ctl` on a free port. PostGIS is installed from Debian when missing and
we are root."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from catalog.database import DatabaseUnavailable, libpq_dsn
from catalog.settings import Settings

LOCAL_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_DBNAME = "shahr"


@dataclass(frozen=True)
class DatabaseChoice:
    url: str
    kind: str  # "configured" | "local server" | "private cluster"

    def describe(self) -> str:
        u = make_url(self.url)
        return f"{self.kind}: {u.host}:{u.port or 5432}/{u.database} (user {u.username})"


def _answers(url: str, timeout: int = 3) -> bool:
    try:
        with psycopg.connect(libpq_dsn(url), connect_timeout=timeout):
            return True
    except psycopg.Error:
        return False


def _with_database(url: str, dbname: str) -> str:
    return make_url(url).set(database=dbname).render_as_string(hide_password=False)


def create_database(server_url: str, dbname: str) -> None:
    """CREATE DATABASE unless it exists (connecting to the server's `postgres` database)."""
    with psycopg.connect(libpq_dsn(_with_database(server_url, "postgres")),
                         autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def drop_database(server_url: str, dbname: str) -> None:
    with psycopg.connect(libpq_dsn(_with_database(server_url, "postgres")),
                         autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(dbname)))


def resolve_database(settings: Settings, *, start: bool = True) -> DatabaseChoice:
    """Which database to use, creating the `shahr` database or private cluster if needed."""
    if settings.database_url:
        return DatabaseChoice(settings.database_url, "configured")
    if _answers(LOCAL_SERVER):
        create_database(LOCAL_SERVER, DEFAULT_DBNAME)
        return DatabaseChoice(_with_database(LOCAL_SERVER, DEFAULT_DBNAME), "local server")
    if not start:
        raise DatabaseUnavailable(_no_database_message(settings))
    return DatabaseChoice(start_private_cluster(settings.postgres_dir), "private cluster")


def _no_database_message(settings: Settings) -> str:
    return (
        "No PostgreSQL database is reachable. Set SHAHR_DATABASE_URL to a PostGIS database "
        "(e.g. postgresql://user:password@host:5432/shahr), or start PostgreSQL on "
        "127.0.0.1:5432, or install the PostgreSQL server binaries (Debian: "
        f"apt-get install postgresql) so Shahr can run its own under {settings.postgres_dir}."
    )


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return str(candidates[0]) if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root; run them as the `postgres` user then."""
    if os.geteuid() == 0 and shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def start_private_cluster(pgdir: Path) -> str:
    """Initialise (once) and start a cluster under pgdir; return its URL."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise DatabaseUnavailable(_no_database_message(Settings(data_dir=pgdir.parent)))
    pgdir = pgdir.resolve()
    data, port_file = pgdir / "data", pgdir / "port"
    if not (data / "PG_VERSION").exists():
        pgdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(pgdir, "postgres", "postgres")
        subprocess.run(_as_postgres_user([initdb, "-D", str(data), "-U", "postgres",
                                          "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]),
                       check=True, capture_output=True)
    port = int(port_file.read_text()) if port_file.exists() else _free_port()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    if not _answers(url, timeout=1):
        opts = f"-p {port} -c listen_addresses=127.0.0.1 -k {pgdir}"
        subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-l", str(pgdir / "log"),
                                          "-o", opts, "-w", "start"]),
                       check=True, capture_output=True)
        port_file.write_text(str(port))
    create_database(url, DEFAULT_DBNAME)
    return _with_database(url, DEFAULT_DBNAME)


def ensure_postgis(url: str, *, install: bool = True) -> str:
    """Make sure the postgis extension exists in the database; return its version."""
    try:
        conn = psycopg.connect(libpq_dsn(url), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no answer"
        raise DatabaseUnavailable(
            f"Cannot connect to the database {make_url(url).render_as_string()}: {reason}. "
            "Check that PostgreSQL is running and SHAHR_DATABASE_URL is right "
            "(`shahr db status` shows what Shahr is trying to use)."
        ) from None
    with conn:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'").fetchone()
        if not available and install:
            major = conn.execute("SHOW server_version_num").fetchone()[0][:2]  # type: ignore[index]
            _install_postgis_package(int(major))
            available = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'").fetchone()
        if not available:
            raise DatabaseUnavailable(
                "The PostgreSQL server has no PostGIS extension. Install it on the database "
                "server (Debian/Ubuntu: apt-get install postgresql-<major>-postgis-3; "
                "Docker: use the postgis/postgis image), then run `shahr db upgrade` again."
            )
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        except psycopg.errors.InsufficientPrivilege:
            raise DatabaseUnavailable(
                "PostGIS is installed on the server but this database user may not create "
                "the extension. Ask a superuser to run `CREATE EXTENSION postgis;` in the "
                "database, then run `shahr db upgrade` again."
            ) from None
        return str(conn.execute("SELECT postgis_lib_version()").fetchone()[0])  # type: ignore[index]


def _install_postgis_package(major: int) -> None:
    """Debian's postgresql-<major>-postgis-3, when we are root on a Debian-like system."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    pkg = f"postgresql-{major}-postgis-3"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", pkg]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True)


def stop_private_cluster(pgdir: Path) -> None:
    """Stop a cluster made by start_private_cluster (fast shutdown)."""
    pg_ctl = _pg_bin("pg_ctl")
    data = pgdir.resolve() / "data"
    if pg_ctl and (data / "postmaster.pid").exists():
        subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
                       check=False, capture_output=True)
