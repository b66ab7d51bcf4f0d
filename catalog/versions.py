"""Any kept version of a dataset as a servable `Collection`, so a download can be obtained
again later exactly: the columns come from that version's own schema (catalog.versions), its
extent and count too, and it is served only while its table exists (status current or
previous). Versions older than the kept ones are still listed but their tables are gone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from catalog.collections import COLLECTION_COLUMNS, Collection, collection_from_row

SERVABLE = ("current", "previous")


@dataclass(frozen=True)
class VersionSummary:
    number: int
    status: str  # current | previous | dropped


class VersionDropped(LookupError):
    """The version exists in the catalogue but its table was dropped (kept: the servable)."""

    def __init__(self, slug: str, number: int, kept: list[int]) -> None:
        self.slug, self.number, self.kept = slug, number, kept
        kept_text = ", ".join(map(str, kept)) or "none"
        super().__init__(f"version {number} of {slug!r} was dropped (only the newest versions "
                         f"are kept as tables); kept versions: {kept_text}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (raised in build processes too)
        return (VersionDropped, (self.slug, self.number, self.kept))


# One row shaped like catalog.collections' query, for version %(number)s (NULL: the current
# one). The columns are the version's own (schema_json, in its order); labels, units and
# descriptions come from the data dictionary where a column of that name still exists.
_QUERY = f"""
SELECT {COLLECTION_COLUMNS}, coalesce(v.published, v.created) AS modified,
       v.status, to_regclass('data.' || quote_ident(v.table_name)) IS NOT NULL AS table_exists,
       coalesce((SELECT json_agg(json_build_object(
                   'name', s.e->>'name', 'type', s.e->>'type', 'label_fa', f.label_fa,
                   'label_en', f.label_en, 'description_fa', f.description_fa,
                   'description_en', f.description_en, 'unit', f.unit,
                   'is_key', coalesce(f.is_key, false)) ORDER BY s.ord)
                 FROM jsonb_array_elements(v.schema_json) WITH ORDINALITY AS s(e, ord)
                 LEFT JOIN catalog.fields f ON f.dataset_id = d.id AND f.name = s.e->>'name'),
                '[]') AS fields
FROM catalog.datasets d
JOIN catalog.versions v ON v.dataset_id = d.id
JOIN catalog.organisations o ON o.id = d.organisation_id
WHERE d.slug = %(slug)s
  AND CASE WHEN %(number)s::int IS NULL THEN v.id = d.current_version_id
           ELSE v.number = %(number)s::int END
"""

_VERSIONS = """
SELECT v.number, v.status FROM catalog.versions v
JOIN catalog.datasets d ON d.id = v.dataset_id
WHERE d.slug = %(slug)s ORDER BY v.number
"""


def _resolve(row: dict[str, Any] | None, versions: list[VersionSummary], slug: str,
             number: int | None) -> Collection | None:
    if row is None:
        return None
    if row["status"] not in SERVABLE or not row["table_exists"]:
        kept = [v.number for v in versions if v.status in SERVABLE]
        raise VersionDropped(slug, row["version"], kept)
    return collection_from_row(row)


def collection_at_version(conn: psycopg.Connection, slug: str,
                          number: int | None = None) -> Collection | None:
    """Version `number` of dataset `slug` (None: the current one) as a Collection; None when
    the dataset or that version does not exist; VersionDropped when its table is gone."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_QUERY, {"slug": slug, "number": number}).fetchone()
        versions = list_versions(conn, slug) if row is not None and (
            row["status"] not in SERVABLE or not row["table_exists"]) else []
    return _resolve(row, versions, slug, number)


async def collection_at_version_async(conn: psycopg.AsyncConnection, slug: str,
                                      number: int | None = None) -> Collection | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_QUERY, {"slug": slug, "number": number})
        row = await cur.fetchone()
    versions: list[VersionSummary] = []
    if row is not None and (row["status"] not in SERVABLE or not row["table_exists"]):
        versions = await list_versions_async(conn, slug)
    return _resolve(row, versions, slug, number)


def list_versions(conn: psycopg.Connection, slug: str) -> list[VersionSummary]:
    """Every version of a dataset ever published, oldest first (dropped ones included)."""
    return [VersionSummary(n, s) for n, s in conn.execute(_VERSIONS, {"slug": slug})]


async def list_versions_async(conn: psycopg.AsyncConnection,
                              slug: str) -> list[VersionSummary]:
    cur = await conn.execute(_VERSIONS, {"slug": slug})
    return [VersionSummary(n, s) for n, s in await cur.fetchall()]


def describe_versions(versions: list[VersionSummary]) -> str:
    """`1 (dropped), 2, 3 (current)` for error messages."""
    if not versions:
        return "none"
    return ", ".join(f"{v.number}" + ("" if v.status == "previous" else f" ({v.status})")
                     for v in versions)
