"""The connection pool public requests use: read-only role, statement timeout, and quick
503s while the database is away.

psycopg_pool replaces a broken connection when it is returned and reconnects in the
background (with backoff) until the server answers again, so the service recovers from a
database restart by itself. Two things are added here:

- connections idle for a while are checked (an empty query) before they are handed out, so
  the first requests after a restart do not meet connections that died with the old server;
  a connection in steady use is not checked, so a busy service pays nothing;
- while the database is known to be away (a connection came back broken or failed its
  check, or a request waited in vain while connecting failed, and no new connection has
  been made since), a request waits at most `FAIL_FAST_S` for a connection instead of the
  full pool timeout: it gets its 503 at once, not after seconds. A pool that is merely busy
  (connections exist, all in use) is not "away": its requests wait their full time.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from catalog.roles import READER_READY

log = logging.getLogger("shahr.pool")

CHECK_IDLE_S = 2.0  # connections unused for longer than this are checked before use
FAIL_FAST_S = 0.5  # how long a request waits for a connection while the database is away


class PublicPool(AsyncConnectionPool):
    """An AsyncConnectionPool whose connections run as `role` (when the connecting user may
    switch to it) under a statement timeout."""

    def __init__(self, dsn: str, *, role: str | None, statement_timeout_ms: int,
                 max_size: int, timeout: float) -> None:
        self.role = role or None
        self.role_in_use: bool | None = None  # known after the first connection
        self.down_since: float | None = None
        self._errors_seen = 0  # failed connection attempts counted when one last succeeded
        super().__init__(
            dsn, min_size=1, max_size=max_size, timeout=timeout, open=False,
            kwargs={"autocommit": True,
                    "options": f"-c statement_timeout={statement_timeout_ms} -c jit=off"},
            configure=self._configure, check=self._check, reset=self._reset,
            name="public")

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self.role is not None:
            if self.role_in_use is None:
                cur = await conn.execute(READER_READY, [self.role])
                row = await cur.fetchone()
                self.role_in_use = bool(row and row[0])
                if not self.role_in_use:
                    log.warning("database role %s is missing, not granted to this user, or "
                                "not given this database's schemas (run `shahr db upgrade` "
                                "as a superuser); public queries run as the connecting user",
                                self.role)
            if self.role_in_use:
                await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self.role)))
        self._errors_seen = self.get_stats().get("connections_errors", 0)
        if self.down_since is not None:
            log.info("database reachable again after %.1f s",
                     time.monotonic() - self.down_since)
            self.down_since = None

    async def _check(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if time.monotonic() - getattr(conn, "_shahr_used", 0.0) < CHECK_IDLE_S:
            return
        try:
            await self.check_connection(conn)
        except psycopg.Error:
            self._mark_down()
            raise

    async def _reset(self, conn: psycopg.AsyncConnection[Any]) -> None:
        conn._shahr_used = time.monotonic()  # type: ignore[attr-defined]

    async def putconn(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if conn.closed or conn.pgconn.status != psycopg.pq.ConnStatus.OK:
            self._mark_down()
        await super().putconn(conn)

    async def getconn(self, timeout: float | None = None) -> psycopg.AsyncConnection[Any]:
        if timeout is None and self.down_since is not None:
            timeout = FAIL_FAST_S
        try:
            return await super().getconn(timeout)
        except PoolTimeout:
            if self.get_stats().get("connections_errors", 0) > self._errors_seen:
                self._mark_down()  # not busy: connecting fails
            raise

    def _mark_down(self) -> None:
        if self.down_since is None:
            log.warning("database connection lost; answering 503 until it is back")
            self.down_since = time.monotonic()

    @property
    def healthy(self) -> bool:
        return self.down_since is None

    @property
    def identity(self) -> str:
        """Who public queries run as, for /readyz."""
        if self.role is None:
            return "the login of SHAHR_READER_DATABASE_URL or the connecting user"
        if self.role_in_use is None:
            return f"role {self.role} (not connected yet)"
        return f"role {self.role}" if self.role_in_use else "the connecting user (no role)"


def public_dsn(pool: PublicPool, owner_dsn: str) -> str:
    """The connection string for public queries on connections of their own (streamed
    downloads, file builds): the pool's, switched to the reader role as the pool's are."""
    if pool.role is not None and pool.role_in_use:
        return make_conninfo(pool.conninfo if isinstance(pool.conninfo, str) else owner_dsn,
                             options=f"-c role={pool.role}")
    return pool.conninfo if isinstance(pool.conninfo, str) else owner_dsn
