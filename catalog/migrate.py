"""Apply and inspect Alembic migrations without an alembic.ini."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from catalog.database import get_engine, sqlalchemy_url
from catalog.roles import ensure_reader_role
from catalog.settings import get_settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the catalogue to `revision`; also makes the `data` schema the loader fills
    and the read-only role public queries run as (catalog.roles)."""
    command.upgrade(alembic_config(url), revision)
    ensure_reader_role(url, get_settings().reader_role)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("postgresql://x@localhost/x")).get_current_head()


def current_revision(url: str) -> str | None:
    with get_engine(url).connect() as conn:
        has_table = conn.execute(text("SELECT to_regclass('catalog.alembic_version')")).scalar()
        if not has_table:
            return None
        return MigrationContext.configure(
            conn, opts={"version_table_schema": "catalog"}).get_current_revision()


def at_head(url: str) -> bool:
    return current_revision(url) == head_revision()
