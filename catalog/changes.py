"""Versions of a dataset and what changed between two of them.

Every load makes a version table (``data.<slug>_v<N>``); the newest ``keep_versions`` keep
their tables, older ones are dropped but stay listed (etl.runner). Two kept versions are
compared in one SQL statement: a FULL OUTER JOIN of their tables on the dataset's key field
says which features were added (only in `to`), removed (only in `from`) or changed.

"Changed" means a published value differs: an attribute or the geometry (``fid``, the
feature's row in the source file, is not compared — a feature that moved down the file is
the same feature).

- Attributes: each side's common columns are packed into one ``jsonb`` document and the two
  documents compared with ``IS DISTINCT FROM``. That is the row-hash idea without the hash:
  both rows are in hand inside the join, so comparing the documents costs what hashing them
  would, and cannot collide. jsonb compares numbers by value (an integer column that became
  a number column is not a change for 5 -> 5.0); a column whose type changed otherwise
  (say integer -> text) is compared as text.
- Geometry: exact equality (PostGIS ``=``: the same coordinates in the same order, as
  ``ST_OrderingEquals``), not ``ST_Equals``. The question is whether the *published* data
  changed, and a download shows every coordinate: a moved vertex is a change even when it
  is tiny, and topological equality would hide it. Exact comparison is also cheap (no GEOS)
  and cannot fail on a difficult geometry. When the two versions have different geometry
  types (Polygon vs MultiPolygon after a promotion), both sides are compared as multi
  geometries so the promotion alone does not change every feature.

Counts cover everything; the lists of keys are paged (``limit``/``offset``, ordered by key),
and changed features say which fields changed with their old and new values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

__all__ = [
    "KINDS",
    "ChangeError",
    "ChangeReport",
    "VersionInfo",
    "compare",
    "dataset_versions",
]

KINDS = ("added", "removed", "changed")
DATA_SCHEMA = "data"
_PAIRS_PER_CALL = 50  # jsonb_build_object takes at most 100 arguments


class ChangeError(ValueError):
    """A comparison that cannot be made; `status` is the HTTP status that fits (400/404)."""

    def __init__(self, status: int, parameter: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.parameter = status, parameter


@dataclass(frozen=True)
class VersionInfo:
    number: int
    status: str  # current | previous | dropped
    table: str
    kept: bool  # its table still exists
    feature_count: int | None
    geometry_type: str | None
    checksum: str | None  # sha256 of the source file(s) it was loaded from
    columns: tuple[dict[str, Any], ...]  # schema_json: name, source, type, storage
    created: datetime
    published: datetime | None
    extent: tuple[float, float, float, float] | None
    run: dict[str, Any] | None  # the ETL run that made it

    def column_names(self) -> list[str]:
        return [c["name"] for c in self.columns]

    def storage(self, name: str) -> str | None:
        return next((c.get("storage", c["type"]) for c in self.columns if c["name"] == name),
                    None)


@dataclass(frozen=True)
class DatasetVersions:
    slug: str
    dataset_id: int
    key_field: str | None
    current: int | None
    versions: tuple[VersionInfo, ...]  # newest first

    def get(self, number: int) -> VersionInfo | None:
        return next((v for v in self.versions if v.number == number), None)

    @property
    def kept(self) -> list[VersionInfo]:
        return [v for v in self.versions if v.kept]


_DATASET_SQL = """
SELECT d.id, d.slug, d.key_field, cv.number AS current
FROM catalog.datasets d LEFT JOIN catalog.versions cv ON cv.id = d.current_version_id
WHERE d.slug = %(slug)s AND d.current_version_id IS NOT NULL
"""
_VERSIONS_SQL = """
SELECT v.number, v.status, v.table_name, v.feature_count, v.geometry_type, v.checksum,
       v.schema_json, v.created, v.published,
       ST_XMin(v.extent) AS x0, ST_YMin(v.extent) AS y0, ST_XMax(v.extent) AS x1,
       ST_YMax(v.extent) AS y1,
       to_regclass(format('%%I.%%I', %(schema)s::text, v.table_name)) IS NOT NULL AS kept,
       r.id AS run_id, r.status AS run_status, r.source AS run_source,
       r.started_at, r.finished_at, r.duration_s, r.rows_read, r.rows_loaded,
       r.rows_rejected, r.rows_repaired
FROM catalog.versions v LEFT JOIN catalog.etl_runs r ON r.id = v.run_id
WHERE v.dataset_id = %(id)s
ORDER BY v.number DESC
"""


def _version(row: dict[str, Any]) -> VersionInfo:
    run = None
    if row["run_id"] is not None:
        run = {"id": row["run_id"], "status": row["run_status"], "source": row["run_source"],
               "started": row["started_at"], "finished": row["finished_at"],
               "duration_s": row["duration_s"], "rows_read": row["rows_read"],
               "rows_loaded": row["rows_loaded"], "rows_rejected": row["rows_rejected"],
               "rows_repaired": row["rows_repaired"]}
    extent = None if row["x0"] is None else (row["x0"], row["y0"], row["x1"], row["y1"])
    return VersionInfo(
        number=row["number"], status=row["status"], table=row["table_name"],
        kept=bool(row["kept"]) and row["status"] != "dropped",
        feature_count=row["feature_count"], geometry_type=row["geometry_type"],
        checksum=row["checksum"], columns=tuple(row["schema_json"] or ()),
        created=row["created"], published=row["published"], extent=extent, run=run)


async def dataset_versions(conn: psycopg.AsyncConnection, slug: str
                           ) -> DatasetVersions | None:
    """A published dataset's versions, newest first (dropped ones included, `kept` False);
    None when no published dataset has that slug."""
    if "\x00" in slug:
        return None
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_DATASET_SQL, {"slug": slug})
        ds = await cur.fetchone()
        if ds is None:
            return None
        await cur.execute(_VERSIONS_SQL, {"id": ds["id"], "schema": DATA_SCHEMA})
        rows = await cur.fetchall()
    return DatasetVersions(slug=ds["slug"], dataset_id=ds["id"], key_field=ds["key_field"],
                           current=ds["current"], versions=tuple(map(_version, rows)))


# --- the comparison --------------------------------------------------------------------------


@dataclass
class ChangeReport:
    slug: str
    key: str
    from_version: VersionInfo
    to_version: VersionInfo
    compared_columns: list[str]
    added_columns: list[str]
    removed_columns: list[str]
    retyped_columns: list[dict[str, str]]  # name, from, to (compared as text)
    counts: dict[str, int]  # added removed changed unchanged
    limit: int
    offset: int
    added: list[Any] = field(default_factory=list)  # keys
    removed: list[Any] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)  # key, fields, values

    def has_more(self) -> bool:
        return any(self.offset + self.limit < self.counts[k] for k in KINDS)


def _pick_versions(info: DatasetVersions, from_: int | None, to: int | None
                   ) -> tuple[VersionInfo, VersionInfo]:
    kept = info.kept
    numbers = ", ".join(str(v.number) for v in sorted(kept, key=lambda v: v.number)) or "none"

    def get(number: int, parameter: str) -> VersionInfo:
        v = info.get(number)
        if v is None:
            raise ChangeError(404, parameter, f"{info.slug} has no version {number}; "
                              f"kept versions: {numbers}")
        if not v.kept:
            raise ChangeError(404, parameter, f"version {number} of {info.slug} was dropped "
                              f"(only the newest versions keep their data, see "
                              f"SHAHR_KEEP_VERSIONS); kept versions: {numbers}")
        return v

    target = get(to if to is not None else (info.current or 0), "to")
    if from_ is not None:
        return get(from_, "from"), target
    older = [v for v in kept if v.number < target.number]
    if not older:
        raise ChangeError(400, "from", f"{info.slug} keeps no version older than "
                          f"{target.number} to compare it with; kept versions: {numbers}")
    return older[0], target


def _doc(alias: str, columns: list[tuple[str, bool]]) -> sql.Composable:
    """jsonb {column: value} of one side's compared columns (as text where retyped)."""
    if not columns:
        return sql.SQL("'{}'::jsonb")
    chunks = []
    for i in range(0, len(columns), _PAIRS_PER_CALL):
        pairs = []
        for name, as_text in columns[i:i + _PAIRS_PER_CALL]:
            value = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(name))
            if as_text:
                value = sql.SQL("({})::text").format(value)
            pairs.append(sql.SQL("{}, {}").format(sql.Literal(name), value))
        chunks.append(sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(pairs)))
    return sql.SQL(" || ").join(chunks)


def _geom(alias: str, multi: bool) -> sql.Composable:
    g = sql.SQL("{}.geom").format(sql.Identifier(alias))
    return sql.SQL("ST_Multi({})").format(g) if multi else g


_COMPARE_SQL = """
WITH d AS MATERIALIZED (
    SELECT {key_out} AS key,
           CASE WHEN a.fid IS NULL THEN 'added'
                WHEN b.fid IS NULL THEN 'removed'
                WHEN {doc_a} IS DISTINCT FROM {doc_b}
                     OR {geom_a} IS DISTINCT FROM {geom_b} THEN 'changed'
                ELSE 'unchanged' END AS kind
    FROM {table_a} a FULL OUTER JOIN {table_b} b ON {key_a} = {key_b}
),
changed_page AS (
    SELECT key, row_number() OVER (ORDER BY key) AS rn
    FROM (SELECT key FROM d WHERE kind = 'changed' ORDER BY key
          LIMIT {limit_changed} OFFSET {offset}) p
)
SELECT 'count' AS section, kind, NULL::jsonb AS key, count(*) AS n, NULL::jsonb AS fields,
       NULL::jsonb AS "values", 0::bigint AS rn
FROM d GROUP BY kind
UNION ALL
SELECT 'item', 'added', to_jsonb(key), NULL, NULL, NULL, row_number() OVER (ORDER BY key)
FROM (SELECT key FROM d WHERE kind = 'added' ORDER BY key
      LIMIT {limit_added} OFFSET {offset}) p
UNION ALL
SELECT 'item', 'removed', to_jsonb(key), NULL, NULL, NULL, row_number() OVER (ORDER BY key)
FROM (SELECT key FROM d WHERE kind = 'removed' ORDER BY key
      LIMIT {limit_removed} OFFSET {offset}) p
UNION ALL
SELECT 'item', 'changed', to_jsonb(p.key), NULL,
       (SELECT coalesce(jsonb_agg(f ORDER BY f), '[]'::jsonb)
        FROM jsonb_object_keys(j.new) f WHERE j.old -> f IS DISTINCT FROM j.new -> f)
       || CASE WHEN j.geom_changed THEN '["geometry"]'::jsonb ELSE '[]'::jsonb END,
       (SELECT coalesce(jsonb_object_agg(f, jsonb_build_object('old', j.old -> f,
                                                               'new', j.new -> f)),
                        '{{}}'::jsonb)
        FROM jsonb_object_keys(j.new) f WHERE j.old -> f IS DISTINCT FROM j.new -> f)
       || CASE WHEN j.geom_changed THEN jsonb_build_object('geometry', jsonb_build_object(
              'old', ST_AsGeoJSON(a.geom, 15)::jsonb, 'new', ST_AsGeoJSON(b.geom, 15)::jsonb))
          ELSE '{{}}'::jsonb END,
       p.rn
FROM changed_page p
JOIN {table_a} a ON {key_a} = p.key
JOIN {table_b} b ON {key_b} = p.key
CROSS JOIN LATERAL (SELECT {doc_a} AS old, {doc_b} AS new,
                           {geom_a} IS DISTINCT FROM {geom_b} AS geom_changed) j
ORDER BY 1, 2, 7
"""


async def compare(conn: psycopg.AsyncConnection, *, slug: str, from_: int | None = None,
                  to: int | None = None, limit: int = 100, offset: int = 0,
                  kinds: tuple[str, ...] = KINDS) -> ChangeReport:
    """Which features were added, removed and changed from version `from_` to `to` (default:
    the current version, and the kept version before it), matched by the key field. Raises
    ChangeError for an unknown dataset or version, a dropped one, or a dataset without a
    key field."""
    info = await dataset_versions(conn, slug)
    if info is None:
        raise ChangeError(404, None, f"no published dataset {slug!r}; GET /datasets lists them")
    key = info.key_field
    if not key:
        raise ChangeError(400, None, f"{slug} has no key field, so its features cannot be "
                          "matched between versions: changes need a column that identifies "
                          "each feature (`key:` in the job's manifest)")
    a, b = _pick_versions(info, from_, to)
    for v, parameter in ((a, "from"), (b, "to")):
        if key not in v.column_names():
            raise ChangeError(400, parameter, f"version {v.number} of {slug} has no key "
                              f"column {key!r}, so its features cannot be matched")
    a_cols = [c for c in a.column_names() if c != key]
    b_cols = [c for c in b.column_names() if c != key]
    common = [c for c in b_cols if c in a_cols]
    retyped = [{"name": c, "from": a.storage(c) or "", "to": b.storage(c) or ""}
               for c in common if _family(a.storage(c)) != _family(b.storage(c))]
    as_text = {r["name"] for r in retyped}
    cols = [(c, c in as_text) for c in common]
    key_text = _family(a.storage(key)) != _family(b.storage(key))
    multi = (a.geometry_type or "") != (b.geometry_type or "")

    def key_of(alias: str) -> sql.Composable:
        k = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(key))
        return sql.SQL("({})::text").format(k) if key_text else k

    stmt = sql.SQL(_COMPARE_SQL).format(
        key_out=sql.SQL("coalesce({}, {})").format(key_of("b"), key_of("a")),
        key_a=key_of("a"), key_b=key_of("b"),
        doc_a=_doc("a", cols), doc_b=_doc("b", cols),
        geom_a=_geom("a", multi), geom_b=_geom("b", multi),
        table_a=sql.SQL("{}.{}").format(sql.Identifier(DATA_SCHEMA), sql.Identifier(a.table)),
        table_b=sql.SQL("{}.{}").format(sql.Identifier(DATA_SCHEMA), sql.Identifier(b.table)),
        offset=sql.Literal(offset),
        **{f"limit_{k}": sql.Literal(limit if k in kinds else 0) for k in KINDS})
    report = ChangeReport(
        slug=slug, key=key, from_version=a, to_version=b, compared_columns=common,
        added_columns=[c for c in b_cols if c not in a_cols],
        removed_columns=[c for c in a_cols if c not in b_cols], retyped_columns=retyped,
        counts={k: 0 for k in (*KINDS, "unchanged")}, limit=limit, offset=offset)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(stmt)
        for row in await cur.fetchall():
            if row["section"] == "count":
                report.counts[row["kind"]] = int(row["n"])
            elif row["kind"] == "changed":
                report.changed.append({"key": row["key"], "fields": row["fields"],
                                       "values": row["values"]})
            else:
                getattr(report, row["kind"]).append(row["key"])
    return report


def _family(storage: str | None) -> str | None:
    """Types whose values compare alike as jsonb: integer and number are both numbers (the
    two datetime flavours are not: one has an offset, the other has none)."""
    return "number" if storage in ("integer", "number") else storage
