"""What the publishing API needs to know about each published dataset, read from the
catalogue in one query and kept as immutable values (cheap to cache per request burst)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from geo.overview import MIN_TOP_ZOOM

Bbox = tuple[float, float, float, float]


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Frictionless: string integer number boolean date datetime
    storage: str  # load type: ... datetime | datetime_naive
    label_fa: str | None = None
    label_en: str | None = None
    description_fa: str | None = None
    description_en: str | None = None
    unit: str | None = None
    is_key: bool = False

    @property
    def title(self) -> str:
        return self.label_en or self.label_fa or self.name


@dataclass(frozen=True)
class Collection:
    """A dataset's current version, as served: its table, columns and metadata."""

    slug: str
    dataset_id: int
    version_id: int
    version: int
    table: str  # unqualified name in schema `data`
    title_fa: str | None
    title_en: str | None
    description_fa: str | None
    description_en: str | None
    theme: str
    keywords: tuple[str, ...]
    licence: str
    organisation: str
    organisation_name: str | None
    geometry_type: str
    extent: Bbox
    feature_count: int
    source_crs: str | None
    metric_crs: str | None
    key_field: str | None
    temporal_start: date | None
    temporal_end: date | None
    modified: datetime
    synthetic: bool
    columns: tuple[Column, ...] = field(default_factory=tuple)
    # The table keeps its geometry in EPSG:3857 too (`_geom_3857`; versions loaded before
    # that column existed do not), which WebMercatorQuad tiles read.
    web_mercator: bool = False
    # The highest zoom of the low-zoom tile overview (geo/overview.py: dense layers only);
    # None: the layer has none.
    overview_zoom: int | None = None

    @property
    def title(self) -> str:
        return self.title_en or self.title_fa or self.slug

    @property
    def description(self) -> str:
        return self.description_en or self.description_fa or ""

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def temporal_column(self) -> Column | None:
        """The column `datetime=` filters on: the first date or datetime column."""
        return next((c for c in self.columns if c.type in ("date", "datetime")), None)


# The columns of a Collection row, shared with catalog.versions (which selects them for any
# kept version, with its own `modified` and fields).
COLLECTION_COLUMNS = f"""
       d.id AS dataset_id, d.slug, d.title_fa, d.title_en, d.description_fa,
       d.description_en, d.theme, d.keywords, d.licence, o.slug AS organisation,
       coalesce(o.name_en, o.name_fa) AS organisation_name, v.geometry_type,
       ST_XMin(v.extent) AS x0, ST_YMin(v.extent) AS y0, ST_XMax(v.extent) AS x1,
       ST_YMax(v.extent) AS y1, v.feature_count, d.source_crs, d.metric_crs, d.key_field,
       d.temporal_start, d.temporal_end, d.synthetic,
       v.id AS version_id, v.number AS version, v.table_name, v.schema_json,
       EXISTS (SELECT FROM pg_attribute a
               WHERE a.attrelid = to_regclass('data.' || quote_ident(v.table_name))
                 AND a.attname = '_geom_3857' AND NOT a.attisdropped) AS web_mercator,
       CASE WHEN to_regclass('data.' || quote_ident(v.table_name || '__cells')) IS NOT NULL
            THEN coalesce(v.tile_overview_zoom, {MIN_TOP_ZOOM}) END AS overview_zoom"""

_QUERY = f"""
SELECT {COLLECTION_COLUMNS}, d.modified,
       coalesce((SELECT json_agg(json_build_object(
                   'name', f.name, 'type', f.type, 'label_fa', f.label_fa,
                   'label_en', f.label_en, 'description_fa', f.description_fa,
                   'description_en', f.description_en, 'unit', f.unit, 'is_key', f.is_key)
                   ORDER BY f.position)
                 FROM catalog.fields f WHERE f.dataset_id = d.id), '[]') AS fields
FROM catalog.datasets d
JOIN catalog.versions v ON v.id = d.current_version_id
JOIN catalog.organisations o ON o.id = d.organisation_id
ORDER BY d.slug
"""


def collection_from_row(row: dict[str, Any]) -> Collection:
    """A Collection from a row of COLLECTION_COLUMNS plus `modified` and `fields`."""
    storage = {c["name"]: c.get("storage", c["type"]) for c in row["schema_json"]}
    cols = tuple(
        Column(name=f["name"], type=f["type"], storage=storage.get(f["name"], f["type"]),
               label_fa=f["label_fa"], label_en=f["label_en"],
               description_fa=f["description_fa"], description_en=f["description_en"],
               unit=f["unit"], is_key=f["is_key"])
        for f in row["fields"])
    return Collection(
        slug=row["slug"], dataset_id=row["dataset_id"], version_id=row["version_id"],
        version=row["version"], table=row["table_name"], title_fa=row["title_fa"],
        title_en=row["title_en"], description_fa=row["description_fa"],
        description_en=row["description_en"], theme=row["theme"],
        keywords=tuple(row["keywords"] or ()), licence=row["licence"],
        organisation=row["organisation"], organisation_name=row["organisation_name"],
        geometry_type=row["geometry_type"],
        extent=(row["x0"], row["y0"], row["x1"], row["y1"]),
        feature_count=int(row["feature_count"] or 0), source_crs=row["source_crs"],
        metric_crs=row["metric_crs"], key_field=row["key_field"],
        temporal_start=row["temporal_start"], temporal_end=row["temporal_end"],
        modified=row["modified"], synthetic=row["synthetic"], columns=cols,
        web_mercator=bool(row.get("web_mercator")),
        overview_zoom=row.get("overview_zoom"))


def load_collections(conn: psycopg.Connection) -> dict[str, Collection]:
    """slug -> Collection for every dataset with a current version."""
    with conn.cursor(row_factory=dict_row) as cur:
        return {r["slug"]: collection_from_row(r) for r in cur.execute(_QUERY).fetchall()}


async def load_collections_async(conn: psycopg.AsyncConnection) -> dict[str, Collection]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_QUERY)
        return {r["slug"]: collection_from_row(r) for r in await cur.fetchall()}


CATALOGUE_STAMP = ("SELECT coalesce(max(modified)::text, '') || ':' || count(*) "
                   "FROM catalog.datasets WHERE current_version_id IS NOT NULL")
