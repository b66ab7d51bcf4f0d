"""The load step: COPY batches into a new version table in schema `data`, then retype
inferred columns, move duplicate or missing keys to the rejects, build indexes, ANALYZE, and
make the version current — all in the caller's one transaction, so a failure at any step
leaves the previous version serving and no half-made table behind."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from etl.coltypes import PG_TYPE
from geo import overview

DATA_SCHEMA = "data"
_WRITE = pacsv.WriteOptions(include_header=False, quoting_style="needed", batch_size=8192)
Bbox = tuple[float, float, float, float]
DIGITS_FROM = "۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩٫"
DIGITS_TO = "01234567890123456789."


# The geometry in Web Mercator beside the stored lon/lat, computed by PostgreSQL as rows
# arrive: vector tiles in WebMercatorQuad read it instead of projecting every feature on
# every request. Outside Mercator's latitudes (+-85.06) the geometry is clipped first (a
# point at a pole has no Mercator coordinates: it becomes empty here, and only here).
# Source column names never start with "_", so the name cannot clash.
WEB_MERCATOR = "_geom_3857"
WEB_MERCATOR_COLUMN = (
    f"{WEB_MERCATOR} geometry(Geometry, 3857) GENERATED ALWAYS AS (CASE"
    " WHEN ST_YMin(geom) >= -85.0511 AND ST_YMax(geom) <= 85.0511 THEN ST_Transform(geom, 3857)"
    " ELSE ST_Transform(ST_ClipByBox2D(geom, ST_MakeEnvelope(-180, -85.0511, 180, 85.0511,"
    " 4326)), 3857) END) STORED")


def table_name(slug: str, number: int) -> str:
    return f"{slug.replace('-', '_')}_v{number}"


def qualified(table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(DATA_SCHEMA), sql.Identifier(table))


def create_table(conn: psycopg.Connection, table: str, columns: list[tuple[str, str]],
                 geometry_type: str) -> None:
    """An unlogged-free plain table; indexes come after the data (bulk in)."""
    cols = [sql.SQL("fid bigint NOT NULL")]
    cols += [sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in columns]
    cols.append(sql.SQL("geom geometry({}, 4326) NOT NULL").format(sql.SQL(geometry_type)))
    cols.append(sql.SQL(WEB_MERCATOR_COLUMN))
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(qualified(table)))
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(qualified(table),
                                                        sql.SQL(", ").join(cols)))


class Copier:
    """One COPY ... FROM STDIN (FORMAT csv) for a whole load; pyarrow writes the CSV bytes in
    C++, and psycopg's queued writer sends them from a second thread while we transform."""

    def __init__(self, conn: psycopg.Connection, table: str, names: list[str]) -> None:
        self.cur = conn.cursor()
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            qualified(table), sql.SQL(", ").join(map(sql.Identifier, names)))
        self._ctx = self.cur.copy(stmt, writer=QueuedLibpqWriter(self.cur))
        self.copy = self._ctx.__enter__()
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if len(table) == 0:
            return
        buf = io.BytesIO()
        pacsv.write_csv(table, buf, _WRITE)
        self.copy.write(buf.getbuffer())
        self.rows += len(table)

    def close(self, exc: BaseException | None = None) -> None:
        self._ctx.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)


def retype_columns(conn: psycopg.Connection, table: str,
                   changes: list[tuple[str, str, list[str]]], decimal: str = ".") -> list[str]:
    """ALTER inferred text columns to their types in one rewrite; digits are folded and
    `null_values` nulled in SQL. Returns warnings for columns that had to stay text."""
    if not changes:
        return []
    warnings: list[str] = []
    clauses = []
    for name, storage, nulls in changes:
        expr = sql.SQL("NULLIF(btrim(translate({c}, {f}, {t})), '')").format(
            c=sql.Identifier(name), f=sql.Literal(DIGITS_FROM), t=sql.Literal(DIGITS_TO))
        if nulls:
            expr = sql.SQL("CASE WHEN {e} IN ({n}) THEN NULL ELSE {e} END").format(
                e=expr, n=sql.SQL(", ").join(map(sql.Literal, nulls)))
        pg = PG_TYPE[storage]
        if decimal == "," and storage in ("integer", "number"):
            expr = sql.SQL("replace(replace({}, '.', ''), ',', '.')").format(expr)
        if storage == "integer":
            expr = sql.SQL("({})::numeric").format(expr)
        clauses.append(sql.SQL("ALTER COLUMN {c} TYPE {t} USING ({e})::{t}").format(
            c=sql.Identifier(name), t=sql.SQL(pg), e=expr))
    stmt = sql.SQL("ALTER TABLE {} {}").format(qualified(table), sql.SQL(", ").join(clauses))
    try:
        with conn.transaction():
            conn.execute(stmt)
    except psycopg.errors.DataError as exc:
        # The values fit our patterns but not PostgreSQL's parser: keep them as text.
        warnings.append(f"columns {', '.join(n for n, _, _ in changes)} kept as text: "
                        f"PostgreSQL could not convert them ({exc.diag.message_primary})")
    return warnings


@dataclass
class KeyRejects:
    rows: list[tuple[int, str, dict[str, Any]]]  # (fid, reason, raw)


def enforce_key(conn: psycopg.Connection, table: str, key: str) -> KeyRejects:
    """Move rows with a missing or repeated key to the rejects (first occurrence wins), then
    index the key as unique. Done in SQL: free when the key is clean, which it usually is."""
    t, k = qualified(table), sql.Identifier(key)
    index = sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
        sql.Identifier(f"{table}_key"), t, k)
    no_nulls = conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {} WHERE {} IS NULL)")
                            .format(t, k)).fetchone()[0]  # type: ignore[index]
    if no_nulls:
        try:  # the usual case: a clean key costs only its index
            with conn.transaction():
                conn.execute(index)
            return KeyRejects(rows=[])
        except psycopg.errors.UniqueViolation:
            pass
    rows: list[tuple[int, str, dict[str, Any]]] = []
    for fid, raw in conn.execute(sql.SQL(
            "DELETE FROM {t} AS x WHERE x.{k} IS NULL"
            " RETURNING x.fid, to_jsonb(x) - 'geom' - '_geom_3857'").format(
            t=t, k=k)).fetchall():
        rows.append((fid, f"key {key} is missing", raw))
    dupes = conn.execute(sql.SQL(
        """DELETE FROM {t} d USING (
               SELECT fid, first_value(fid) OVER w AS first_fid,
                      row_number() OVER w AS rn
               FROM {t} WINDOW w AS (PARTITION BY {k} ORDER BY fid)) s
           WHERE d.fid = s.fid AND s.rn > 1
           RETURNING d.fid, s.first_fid, d.{k}::text,
                     to_jsonb(d) - 'geom' - '_geom_3857'""").format(
        t=t, k=k)).fetchall()
    for fid, first, value, raw in dupes:
        rows.append((fid, f"duplicate key {key}={value} (first at row {first})", raw))
    conn.execute(index)
    return KeyRejects(rows=sorted(rows))


def finish_table(conn: psycopg.Connection, table: str, *, rows: int | None = None,
                 bbox: Bbox | None = None) -> tuple[int, Bbox | None]:
    """Primary key, GiST index, ANALYZE; returns (feature count, bbox). When the caller
    knows the count and bbox of what it loaded, the table is not scanned again for them."""
    t = qualified(table)
    conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
    conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (fid)").format(t))
    conn.execute(sql.SQL("CREATE INDEX {} ON {} USING gist (geom)").format(
        sql.Identifier(f"{table}_geom"), t))
    conn.execute(sql.SQL("ANALYZE {}").format(t))
    if rows is not None:
        return rows, bbox
    n, x0, y0, x1, y1 = conn.execute(sql.SQL(
        "SELECT n, ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)"
        " FROM (SELECT count(*) AS n, ST_Extent(geom) AS e FROM {}) s").format(t)
    ).fetchone()  # type: ignore[misc]
    return int(n), (None if x0 is None else (x0, y0, x1, y1))


def build_overview(conn: psycopg.Connection, table: str, rows: int, *, points: bool) -> int:
    """The low-zoom tile overview of a dense layer (geo/overview.py), in the load's
    transaction, so it is published, and dropped, with its version. Returns its top zoom,
    decided from the median feature size of a sample."""
    conn.execute("SET LOCAL work_mem = '256MB'")
    top = overview.MIN_TOP_ZOOM
    if not points:
        row = conn.execute(overview.median_size_statement(  # type: ignore[arg-type]
            DATA_SCHEMA, table, WEB_MERCATOR, rows)).fetchone()
        top = overview.top_zoom(row[0] if row else None, points=False)
    for statement in overview.build_statements(DATA_SCHEMA, table, WEB_MERCATOR, top):
        conn.execute(statement)  # type: ignore[arg-type]  # identifiers quoted by geo
    return top


def drop_tables(conn: psycopg.Connection, tables: Iterable[str]) -> None:
    for table in tables:
        for name in (table, *overview.tables(table)):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(qualified(name)))
