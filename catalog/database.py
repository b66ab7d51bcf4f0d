"""Database engine and sessions. One engine per URL; psycopg 3 underneath."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


class DatabaseUnavailable(RuntimeError):
    """The database cannot be used; the message says what to do (no traceback for users)."""


def sqlalchemy_url(url: str) -> str:
    """Accept postgres://, postgresql:// or postgresql+psycopg:// and use psycopg 3."""
    u = make_url(url.replace("postgres://", "postgresql://", 1))
    if u.drivername in ("postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def libpq_dsn(url: str) -> str:
    """The same URL as a libpq connection string, for raw psycopg connections (COPY)."""
    u = make_url(sqlalchemy_url(url))
    parts = {
        "host": u.host, "port": u.port, "dbname": u.database, "user": u.username,
        "password": u.password,
    }
    parts.update({k: v for k, v in u.query.items() if isinstance(v, str)})
    return make_conninfo("", **{k: v for k, v in parts.items() if v is not None})


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    return create_engine(sqlalchemy_url(url), pool_pre_ping=True, pool_size=5, max_overflow=10)


def raw_connect(url: str, **kwargs: object) -> psycopg.Connection:
    """A plain psycopg connection (COPY, DDL outside the ORM)."""
    return psycopg.connect(libpq_dsn(url), **kwargs)  # type: ignore[arg-type]


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    factory = sessionmaker(get_engine(url), expire_on_commit=False)
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
