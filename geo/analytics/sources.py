"""The inputs every analysis shares: a layer as a table with its compiled filter, and the
few SQL pieces all builders use (a feature's representative point, zone membership, the
metric transform, search boxes in the storage CRS).

Rules that hold in every analysis (and that docs/analytics.md states for users):

- Every feature of a layer counts at one point when it is put in a zone or a hexagon: a
  point is itself; a line or polygon counts at `ST_PointOnSurface` (a point surely on it), so
  a building straddling a district line is counted once, never twice or as a fraction.
- Membership is tested in the storage CRS (EPSG:4326), where the GiST indexes are: containment
  does not depend on the CRS, apart from edges (straight in lon/lat here, straight in the
  source CRS there) that differ by millimetres over a city.
- Lengths, distances and areas are computed in the layer's metric CRS (its UTM zone), in
  metres, never in degrees. The small side of a join is transformed, not the big one, where
  the question allows it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pyproj import CRS, Transformer
from sqlalchemy import (
    CTE,
    Boolean,
    ColumnElement,
    Float,
    Integer,
    Select,
    String,
    Subquery,
    TableClause,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
)

try:  # SQLAlchemy 2.1 spells DISTINCT ON as an extension; 2.0 as .distinct(*columns)
    from sqlalchemy.dialects.postgresql import distinct_on as _distinct_on_clause
except ImportError:  # pragma: no cover - SQLAlchemy 2.0
    _distinct_on_clause = None

STORAGE_SRID = 4326
GeometryKind = Literal["point", "line", "polygon"]
# Digits of lon/lat in GeoJSON output (7 decimals: about 1 cm), as items use.
GEOJSON_DIGITS = 7
# A search box made in the metric CRS and moved to lon/lat is grown by this much (degrees,
# about 1 m) so the curvature of its edges can never cut a candidate off.
BOX_MARGIN_DEG = 1e-5


class AnalysisError(ValueError):
    """A request the analysis cannot answer; `parameter` names the input at fault."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def geometry_kind(geometry_type: str) -> GeometryKind:
    """`MultiPolygon` -> polygon, `LineString` -> line, `Point` -> point."""
    t = geometry_type.lower()
    if "polygon" in t:
        return "polygon"
    if "line" in t:
        return "line"
    return "point"


@dataclass(frozen=True)
class Source:
    """One input layer: its table (with `fid` and `geom` columns, geometry in EPSG:4326),
    the filter already compiled to SQL, and what the caller knows about it."""

    table: TableClause
    kind: GeometryKind
    where: tuple[ColumnElement[bool], ...] = ()
    extent: tuple[float, float, float, float] | None = None  # lon/lat of every feature
    key: str | None = None  # the column that names a feature (output beside fid)
    columns: tuple[str, ...] = field(default_factory=tuple)  # properties to output

    def subquery(self, name: str, extra: Sequence[str] = ()) -> Subquery:
        """fid, geom and the named columns of the filtered layer, as a FROM item. A
        subquery (not the bare table) so one dataset can appear twice in a statement."""
        names = list(dict.fromkeys([*extra]))
        cols = [self.table.c.fid, self.table.c.geom] + [self.table.c[n] for n in names]
        return select(*cols).where(*self.where).subquery(name)


def zones_cte(zones: Source, max_zones: int, name: str = "z") -> CTE:
    """The filtered zones (at most max_zones + 1, in feature order, so the caller can tell
    when there were too many) with every output column: referenced twice, so materialised."""
    t = zones.table
    cols = [t.c.fid, t.c.geom] + [t.c[n] for n in zones.columns]
    return (select(*cols).where(*zones.where).order_by(t.c.fid)
            .limit(bindparam("max_zones", max_zones + 1, Integer)).cte(name))


def rep_point(geom: ColumnElement[Any], kind: GeometryKind) -> ColumnElement[Any]:
    """Where a feature counts: itself for points, a point surely on it otherwise."""
    return geom if kind == "point" else func.ST_PointOnSurface(geom)


def counts_in(area: ColumnElement[Any], geom: ColumnElement[Any],
              kind: GeometryKind) -> ColumnElement[bool]:
    """The feature (by its representative point) lies in `area` (both in EPSG:4326). The
    bounding-box test on the feature's own geometry lets the GiST index of its table work
    (its representative point is inside its box)."""
    if kind == "point":
        return func.ST_Intersects(area, geom)
    return and_(area.op("&&")(geom), func.ST_Intersects(area, rep_point(geom, kind)))


def metric(geom: ColumnElement[Any], srid: int) -> ColumnElement[Any]:
    return func.ST_Transform(geom, srid)


def fnum(value: float, name: str | None = None) -> ColumnElement[Any]:
    return bindparam(name, value, Float)


def search_box(metric_geom: ColumnElement[Any], metres: float, srid: int) -> ColumnElement[Any]:
    """A lon/lat box that surely holds everything within `metres` of a geometry given in the
    metric CRS: its box grown by `metres`, edges cut into 16 pieces, moved to EPSG:4326,
    boxed again and grown by a margin. Index lookups in the storage CRS use it; the exact
    distance test is then made in metres."""
    grown = func.ST_Expand(func.ST_Envelope(metric_geom), fnum(metres))
    step = func.greatest(func.ST_XMax(grown) - func.ST_XMin(grown),
                         func.ST_YMax(grown) - func.ST_YMin(grown)) / 16.0
    moved = func.ST_Transform(func.ST_Segmentize(grown, func.greatest(step, 1.0)), STORAGE_SRID)
    return func.ST_Expand(func.ST_Envelope(moved), fnum(BOX_MARGIN_DEG))


def area_km2(geom_4326: ColumnElement[Any], srid: int) -> ColumnElement[Any]:
    return func.ST_Area(metric(geom_4326, srid)) / 1e6


def geojson(geom: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.ST_AsGeoJSON(geom, GEOJSON_DIGITS)


def metric_srid(metric_crs: str | None, extent: tuple[float, float, float, float] | None) -> int:
    """The EPSG code of a layer's metric CRS (`EPSG:32639`), else the UTM zone of its
    extent's centre."""
    if metric_crs:
        code = metric_crs.split(":")[-1]
        if code.isdigit():
            return int(code)
    if extent is None:
        raise AnalysisError("layer", "the layer has no metric CRS and no extent to pick one")
    lon, lat = (extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def metric_bounds(extent: tuple[float, float, float, float], srid: int,
                  margin: float = 0.0) -> tuple[float, float, float, float]:
    """A lon/lat extent as a box in the metric CRS that holds all of it (its edges are
    sampled, since a lon/lat box is not a box there), grown by `margin` metres."""
    x0, y0, x1, y1 = extent
    tr = Transformer.from_crs(CRS.from_epsg(STORAGE_SRID), CRS.from_epsg(srid), always_xy=True)
    b = tr.transform_bounds(x0, y0, x1, y1, densify_pts=64)
    return (b[0] - margin, b[1] - margin, b[2] + margin, b[3] + margin)


def envelope(bounds: tuple[float, float, float, float], srid: int) -> ColumnElement[Any]:
    x0, y0, x1, y1 = bounds
    return func.ST_MakeEnvelope(fnum(x0), fnum(y0), fnum(x1), fnum(y1), srid)


def hexagon_area_km2(size: float) -> float:
    """Area of a regular hexagon whose edge (= circumradius) is `size` metres."""
    return 3 * math.sqrt(3) / 2 * size * size / 1e6


def estimated_hexagons(extent: tuple[float, float, float, float], srid: int,
                       size: float) -> int:
    """How many hexagons a grid of this size lays over the extent (an upper bound)."""
    x0, y0, x1, y1 = metric_bounds(extent, srid)
    cols = (x1 - x0) / (1.5 * size) + 2
    rows = (y1 - y0) / (math.sqrt(3) * size) + 2
    return int(cols * rows)


def distinct_on(stmt: Select[Any], *cols: Any) -> Select[Any]:
    """SELECT DISTINCT ON (cols) ... in either SQLAlchemy 2.0 or 2.1."""
    if _distinct_on_clause is None:  # pragma: no cover
        return stmt.distinct(*cols)
    return stmt.ext(_distinct_on_clause(*cols))


def rounded(expr: ColumnElement[Any], digits: int) -> ColumnElement[Any]:
    """A value rounded to `digits` decimals as a double (round(x · 10^d) / 10^d): cheaper
    per row than a cast to numeric, which counts when a million rows are written."""
    scale = literal_column(f"{float(10**digits)!r}::float8")
    return func.round(cast(expr, Float) * scale) / scale


def free_labels(names: Sequence[str], reserved: Sequence[str],
                prefix: str = "zone_") -> dict[str, str]:
    """Output labels for input columns: their own names, or `prefix` + name where a name is
    taken by a result column (a zone property called `count`, say)."""
    taken = set(reserved)
    return {n: (prefix + n if n in taken else n) for n in names}


# Joins the text lines of several answers in one row of a streamed analysis: a control
# character that JSON escapes and CSV text here never holds, turned into a newline by the
# writer (so PostgreSQL's COPY neither quotes nor escapes the row).
LINE_SEPARATOR = "\x1e"


def csv_line(cols: Sequence[Any]) -> ColumnElement[Any]:
    """A CSV record of the labelled columns (text quoted, line breaks made spaces; null is
    empty), as PostgreSQL text."""
    fields = []
    for c in cols:
        if isinstance(c.type, String):
            text = func.translate(cast(c, Text), "\r\n\x1e", "   ")
            fields.append(func.coalesce(
                literal('"') + func.replace(text, '"', '""') + literal('"'), ""))
        elif isinstance(c.type, Boolean):
            fields.append(case((c.is_(True), "true"), (c.is_(False), "false"), else_=""))
        else:
            fields.append(func.coalesce(cast(c, Text), ""))
    return func.concat_ws(",", *fields)


def feature_line(cols: Sequence[Any]) -> ColumnElement[Any]:
    """A GeoJSON Feature (after a comma) of the labelled columns: `fid` is its id,
    `geometry` its geometry (GeoJSON text), the others its properties."""
    by = {c.name: c for c in cols}
    props = [x for c in cols if c.name not in ("fid", "geometry") for x in (literal(c.name), c)]
    geometry = func.coalesce(by["geometry"], "null") if "geometry" in by else literal("null")
    return func.concat(literal(',{"type":"Feature","id":'), func.to_json(by["fid"]),
                       literal(',"geometry":'), geometry, literal(',"properties":'),
                       func.json_build_object(*props), literal("}"))


@dataclass(frozen=True)
class Analysis:
    """A built analysis: one SELECT whose rows are the result. `fid` identifies a row (a
    zone, a hexagon, a feature), `geometry` is GeoJSON text (or absent), `properties` are
    the columns to publish, in order; `hidden` columns feed later steps (coordinates for
    Getis-Ord Gi*) and are not published."""

    stmt: Select[Any]
    properties: tuple[str, ...]
    geometry: bool = True
    hidden: tuple[str, ...] = ()
    lines: bool = False  # rows are one `line` column of finished text (see csv_line)
