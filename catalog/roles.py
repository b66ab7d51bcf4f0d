"""The read-only database role that public queries run as.

Public requests (items, tiles, the catalogue, downloads) only read, so they run as a role
that can SELECT the catalogue and the published data and nothing else: a bug or an
injected statement cannot change anything. The role is NOLOGIN; the service's connections
switch to it (`SET ROLE`), or a deployment gives a login of its own that is a member of it
(`SHAHR_READER_DATABASE_URL`). `ensure_reader_role` is idempotent and runs with every
`shahr db upgrade` (catalog.migrate.upgrade): it is not a migration because roles belong to
the server, not to one database, and the grants must also cover tables made since."""

from __future__ import annotations

import contextlib
import logging

import psycopg
from psycopg import sql

from catalog.database import libpq_dsn

log = logging.getLogger("shahr.roles")

READER_ROLE = "shahr_reader"
SCHEMAS = ("catalog", "data")
# Catalogue tables that are not published data: API key hashes, the write audit trail and
# the e-mail addresses citizens leave with their requests and reports.
PRIVATE = ("catalog.api_keys", "catalog.audit_log", "catalog.contacts")
# Whether the connected user may switch to the role: no row when the role does not exist.
CAN_SET_ROLE = "SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = %s"
# ... and the role can read this database's schemas (the role belongs to the server: it
# may exist from another database while this one was never upgraded to grant it anything).
READER_READY = """
SELECT pg_has_role(current_user, r.oid, 'MEMBER') AND coalesce(
         (SELECT count(*) = 2 AND bool_and(has_schema_privilege(r.oid, n.oid, 'USAGE'))
          FROM pg_namespace n WHERE n.nspname IN ('catalog', 'data')), false)
FROM pg_roles r WHERE r.rolname = %s
"""


def ensure_reader_role(url: str, role: str = READER_ROLE) -> bool:
    """Create `role` (NOLOGIN) when missing, let the connected user switch to it, and grant
    it read access to the catalogue and data schemas, also for tables made later (but not
    to the API keys and the audit log). Returns
    False, with a warning, when this database user may not create or grant roles: the
    service then runs public queries as the connecting user."""
    if not role:
        return False
    ident = sql.Identifier(role)
    schemas = sql.SQL(", ").join(map(sql.Identifier, SCHEMAS))
    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        try:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone() is None:
                # (DuplicateObject: made meanwhile by another upgrade)
                with contextlib.suppress(psycopg.errors.DuplicateObject):
                    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident))
            row = conn.execute(CAN_SET_ROLE, [role]).fetchone()
            if not (row and row[0]):
                conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(ident))
            statements = [
                "GRANT USAGE ON SCHEMA {schemas} TO {role}",
                "GRANT SELECT ON ALL TABLES IN SCHEMA {schemas} TO {role}",
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {schemas} GRANT SELECT ON TABLES TO {role}",
                # Nothing but reading, even if someone granted more by hand.
                "REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES "
                "IN SCHEMA {schemas} FROM {role}",
                "REVOKE CREATE ON SCHEMA {schemas}, public FROM {role}",
                "REVOKE USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA {schemas} FROM {role}",
            ]
            for text in statements:
                conn.execute(sql.SQL(text).format(schemas=schemas, role=ident))
            for name in PRIVATE:
                if conn.execute("SELECT to_regclass(%s)", [name]).fetchone() != (None,):
                    conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(
                        sql.Identifier(*name.split(".")), ident))
        except psycopg.errors.InsufficientPrivilege as exc:
            log.warning("the read-only role %s could not be set up (%s); public queries will "
                        "run as the connecting user. A superuser can run `shahr db upgrade` "
                        "once to make it.", role, exc.diag.message_primary or exc)
            return False
    return True

