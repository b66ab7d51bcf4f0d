"""Vector tiles: the tile matrix sets (from morecantile), validating z/x/y against them, tile
bounds in the matrix set's CRS and in lon/lat, the size of one tile unit per zoom, and the
one SQL statement that turns a filtered table into a Mapbox Vector Tile (`ST_AsMVT`).

Thinning is explicit and counted, never silent:

- from the *full-detail* zoom (the first zoom whose screen pixel is at most WebMercatorQuad
  z12's, 38.2 m) a tile holds every feature that intersects it, and those of its 64-cell
  buffer. A feature that would collapse to nothing in the MVT grid (smaller than one cell,
  1/4096 of the tile, or a sliver) is written as a point instead: its point nearest the
  tile's centre;
- below that zoom, geometries are simplified with a tolerance of one grid cell (the grid
  the MVT encoding snaps to anyway), and features smaller than one cell in both directions
  are left out, as is whatever collapses in `ST_AsMVTGeom`;
- the statement counts features written as points and features of the tile left out, so
  the API can report them (a header per tile; the rule in the TileJSON).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import morecantile
from pyproj import Transformer
from sqlalchemy import (
    Float,
    Select,
    Table,
    Text,
    bindparam,
    case,
    func,
    literal_column,
    null,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.sql.elements import ColumnElement

from geo.overview import COUNT_PROPERTY

STORAGE_SRID = 4326
TILE_EXTENT = 4096  # MVT grid cells across a tile
TILE_BUFFER = 64  # grid cells kept around a tile, so strokes and labels join at edges
EARTH_RADIUS = 6_378_137.0
METRES_PER_DEGREE = 2 * math.pi * EARTH_RADIUS / 360
# Screen pixel (cell) size of WebMercatorQuad z12: from here on a tile keeps every feature.
FULL_DETAIL_CELL_M = 2 * math.pi * EARTH_RADIUS / 256 / 2**12
# The tile matrix sets offered, with the PostGIS SRID of their CRS (CRS84 is 4326 in
# PostGIS's lon/lat axis order).
SUPPORTED: dict[str, int] = {"WebMercatorQuad": 3857, "WorldCRS84Quad": 4326}

Box = tuple[float, float, float, float]


class TileError(ValueError):
    """A tile request outside the matrix set (the message says the valid range)."""


class UnknownTileMatrixSet(LookupError):
    """A tile matrix set id that is not offered."""

    def __init__(self, tms_id: str) -> None:
        super().__init__(f"no tile matrix set {tms_id!r}; offered: {', '.join(SUPPORTED)}")


def tile_matrix_set(tms_id: str) -> morecantile.TileMatrixSet:
    """The morecantile definition of an offered tile matrix set (ids are case-sensitive)."""
    if tms_id not in SUPPORTED:
        raise UnknownTileMatrixSet(tms_id)
    return _tms(tms_id)


@lru_cache(maxsize=8)
def _tms(tms_id: str) -> morecantile.TileMatrixSet:
    return morecantile.tms.get(tms_id)  # a fresh copy each call (slow): keep one


def tms_document(tms_id: str) -> dict[str, Any]:
    """The OGC 2D Tile Matrix Set 2.0 JSON of a tile matrix set."""
    doc: dict[str, Any] = tile_matrix_set(tms_id).model_dump(mode="json", exclude_none=True)
    return doc


def crs_uri(tms_id: str) -> str:
    return str(tile_matrix_set(tms_id).crs.root)


def zoom_range(tms_id: str) -> tuple[int, int]:
    tms = tile_matrix_set(tms_id)
    return tms.minzoom, tms.maxzoom


def cell_metres(tms_id: str, z: int) -> float:
    """Screen pixel (tile matrix cell) size at zoom z, in metres at the equator."""
    cell = tile_matrix_set(tms_id).matrix(z).cellSize
    return cell * METRES_PER_DEGREE if SUPPORTED[tms_id] == STORAGE_SRID else cell


@lru_cache(maxsize=8)
def full_detail_zoom(tms_id: str) -> int:
    """The first zoom whose tiles keep every feature (see the module docstring)."""
    lo, hi = zoom_range(tms_id)
    for z in range(lo, hi + 1):
        if cell_metres(tms_id, z) <= FULL_DETAIL_CELL_M * 1.0001:
            return z
    return hi


def unit_size(tms_id: str, z: int) -> float:
    """One MVT grid cell (1/4096 of a tile, 1/16 of a screen pixel) at zoom z, in the matrix
    set's CRS units (metres or degrees): the simplification tolerance below full detail."""
    m = tile_matrix_set(tms_id).matrix(z)
    return float(m.cellSize) * m.tileWidth / TILE_EXTENT


@lru_cache(maxsize=8)
def _transformer(srid: int) -> Transformer:
    return Transformer.from_crs(srid, STORAGE_SRID, always_xy=True)


def _to_lonlat(srid: int, x: float, y: float) -> tuple[float, float]:
    if srid == 3857:  # spherical Mercator: exact in closed form, and 100x faster than PROJ
        return (math.degrees(x / EARTH_RADIUS),
                math.degrees(math.atan(math.sinh(y / EARTH_RADIUS))))
    lon, lat = _transformer(srid).transform(x, y)
    return float(lon), float(lat)


@dataclass(frozen=True)
class TileSpec:
    """One validated tile: its bounds in the matrix set's CRS (for `ST_AsMVTGeom`), the
    lon/lat box of the tile with its buffer (for the index search), and the size of one
    grid cell in degrees (for simplification and the "smaller than a cell" test)."""

    tms_id: str
    z: int
    x: int
    y: int
    srid: int
    bounds: Box
    lonlat: Box  # buffered, clamped to the world
    lonlat_tile: Box  # the tile itself
    unit_lon: float
    unit_lat: float
    full_detail: bool

    @property
    def tolerance(self) -> float:
        """Simplification tolerance in degrees: one grid cell (the smaller axis)."""
        return min(self.unit_lon, self.unit_lat)

    def intersects(self, box: Sequence[float | None]) -> bool:
        """Whether the buffered tile can touch a lon/lat box (False when the box is empty)."""
        if len(box) != 4 or any(v is None for v in box):
            return False
        x0, y0, x1, y1 = (float(v) for v in box)  # type: ignore[arg-type]
        w, s, e, n = self.lonlat
        eps = 1e-9
        return not (x1 < w - eps or x0 > e + eps or y1 < s - eps or y0 > n + eps)

    def sql_params(self) -> dict[str, float]:
        """Values for the named parameters of `tile_statement`."""
        x0, y0, x1, y1 = self.bounds
        w, s, e, n = self.lonlat
        w0, s0, e0, n0 = self.lonlat_tile
        return {"tile_x0": x0, "tile_y0": y0, "tile_x1": x1, "tile_y1": y1,
                "tile_w": w, "tile_s": s, "tile_e": e, "tile_n": n,
                "tile_w0": w0, "tile_s0": s0, "tile_e0": e0, "tile_n0": n0,
                "tile_cx": (w0 + e0) / 2, "tile_cy": (s0 + n0) / 2,
                "tile_ux": self.unit_lon, "tile_uy": self.unit_lat,
                "tile_tol": self.tolerance,
                # tile CRS -> MVT grid (x right, y down), and one grid cell in tile CRS units
                "tile_scale": TILE_EXTENT / (x1 - x0), "tile_xoff": -x0 * TILE_EXTENT / (x1 - x0),
                "tile_yoff": y1 * TILE_EXTENT / (x1 - x0), "tile_tol_m": (x1 - x0) / TILE_EXTENT,
                "tile_pad_m": (x1 - x0) / TILE_EXTENT * TILE_BUFFER}


def _index(text: str | int, what: str, hi: int, where: str = "") -> int:
    try:
        v = int(text)
    except (TypeError, ValueError):
        raise TileError(f"{what} {text!r} is not a whole number; accepted: 0 to {hi}") from None
    if isinstance(text, str) and text != str(v):
        raise TileError(f"{what} {text!r} is not a plain whole number; accepted: 0 to {hi}")
    if not 0 <= v <= hi:
        raise TileError(f"{what} {v} is outside the tile matrix{where}; accepted: 0 to {hi}")
    return v


@lru_cache(maxsize=4096)
def tile(tms_id: str, z: str | int, x: str | int, y: str | int) -> TileSpec:
    """Validate z/x/y against the tile matrix set and compute the tile's bounds."""
    tms = tile_matrix_set(tms_id)
    zi = _index(z, "tileMatrix (z)", tms.maxzoom)
    if zi < tms.minzoom:
        raise TileError(f"tileMatrix (z) {zi} is outside the tile matrix set; accepted: "
                        f"{tms.minzoom} to {tms.maxzoom}")
    m = tms.matrix(zi)
    xi = _index(x, "tileCol (x)", m.matrixWidth - 1, f" at zoom {zi}")
    yi = _index(y, "tileRow (y)", m.matrixHeight - 1, f" at zoom {zi}")
    srid = SUPPORTED[tms_id]
    b = tms.xy_bounds(xi, yi, zi)
    bounds: Box = (float(b.left), float(b.bottom), float(b.right), float(b.top))
    unit = unit_size(tms_id, zi)
    pad = unit * TILE_BUFFER
    world = tms.xy_bbox
    bx0, by0 = max(bounds[0] - pad, world.left), max(bounds[1] - pad, world.bottom)
    bx1, by1 = min(bounds[2] + pad, world.right), min(bounds[3] + pad, world.top)
    lonlat: Box
    lonlat_tile: Box
    if srid == STORAGE_SRID:
        lonlat, lonlat_tile = (bx0, by0, bx1, by1), bounds
        unit_lon = unit_lat = unit
    else:
        def geographic(x0: float, y0: float, x1: float, y1: float) -> Box:
            w, s = _to_lonlat(srid, x0, y0)
            e, n = _to_lonlat(srid, x1, y1)
            return (max(w, -180.0), max(s, -90.0), min(e, 180.0), min(n, 90.0))

        lonlat, lonlat_tile = geographic(bx0, by0, bx1, by1), geographic(*bounds)
        unit_lon = abs(_to_lonlat(srid, bounds[0] + unit, bounds[1])[0]
                       - _to_lonlat(srid, bounds[0], bounds[1])[0])
        # Degrees of latitude per cell shrink towards the pole: take the poleward edge.
        edge = bounds[3] if abs(bounds[3]) >= abs(bounds[1]) else bounds[1]
        step = -unit if edge > 0 else unit
        unit_lat = abs(_to_lonlat(srid, bounds[0], edge)[1]
                       - _to_lonlat(srid, bounds[0], edge + step)[1])
    return TileSpec(tms_id, zi, xi, yi, srid, bounds, lonlat, lonlat_tile, unit_lon, unit_lat,
                    zi >= full_detail_zoom(tms_id))


def _param(name: str) -> ColumnElement[Any]:
    return bindparam(name, type_=Float)


def tile_statement(t: Table, properties: Sequence[str], where: Sequence[ColumnElement[bool]],
                   *, srid: int, full_detail: bool, points: bool,
                   projected: str | None = None) -> Select[Any]:
    """One row: (tile bytes, features in it, features left out, features written as points).

    The tile's coordinates are named parameters (`TileSpec.sql_params`) and the layer name
    is `tile_layer`, so the compiled SQL can be reused for every tile of one query. The
    search `ST_Intersects(geom, <buffered tile in lon/lat>)` uses the GiST index on `geom`.
    `projected` names a column holding the geometry already in the tile matrix set's CRS
    (the loader keeps one in EPSG:3857): read instead of projecting every feature.
    """
    geom = t.c.geom
    bounds = func.ST_MakeEnvelope(_param("tile_x0"), _param("tile_y0"), _param("tile_x1"),
                                  _param("tile_y1"), srid)
    search = func.ST_MakeEnvelope(_param("tile_w"), _param("tile_s"), _param("tile_e"),
                                  _param("tile_n"), STORAGE_SRID)
    inside = func.ST_MakeEnvelope(_param("tile_w0"), _param("tile_s0"), _param("tile_e0"),
                                  _param("tile_n0"), STORAGE_SRID)
    stored = t.c[projected] if projected is not None else None

    def mvt(g: ColumnElement[Any], *, is_projected: bool = False) -> ColumnElement[Any]:
        p = g if is_projected or srid == STORAGE_SRID else func.ST_Transform(g, srid)
        return func.ST_AsMVTGeom(p, bounds, TILE_EXTENT, TILE_BUFFER, True)

    def source_mvt() -> ColumnElement[Any]:
        if stored is None:
            return mvt(geom)
        # A feature wholly inside the tile needs no clipping: move it to the tile grid with
        # an affine transform and snap it (what ST_AsMVTGeom does after clipping, at a
        # fraction of the cost; rings run as MVT wants, exterior clockwise on screen).
        # Anything crossing the tile edge, or collapsing in the grid, takes ST_AsMVTGeom.
        scale = _param("tile_scale")
        fast = func.ST_SnapToGrid(func.ST_Affine(
            func.ST_ForcePolygonCW(stored), scale, 0, 0, -scale, _param("tile_xoff"),
            _param("tile_yoff")), 1)
        return case((stored.op("@")(bounds), fast), else_=mvt(stored, is_projected=True))

    if points or full_detail:
        first = source_mvt()
    else:
        tiny = ((func.ST_XMax(geom) - func.ST_XMin(geom) < _param("tile_ux"))
                & (func.ST_YMax(geom) - func.ST_YMin(geom) < _param("tile_uy")))
        simplified = (mvt(func.ST_Simplify(geom, _param("tile_tol"), True)) if stored is None
                      else mvt(func.ST_Simplify(stored, _param("tile_tol_m"), True),
                               is_projected=True))
        first = case((tiny, null()), else_=simplified)
    # OFFSET 0 keeps PostgreSQL from inlining `s`, which would evaluate ST_AsMVTGeom once
    # per reference below instead of once per feature.
    s = (select(t.c.fid, *[t.c[name] for name in properties], first.label("g"),
                geom.label("src"))
         .where(func.ST_Intersects(geom, search), *where).offset(literal_column("0"))
         .subquery("s"))
    meets_tile = func.ST_Intersects(s.c.src, inside)
    # The fast path leaves a feature that collapsed in the grid EMPTY; ST_AsMVTGeom, NULL.
    g = case((func.ST_IsEmpty(s.c.g), null()), else_=s.c.g)
    if full_detail and not points:
        # A feature of the tile that collapses in the MVT grid (smaller than a cell, or a
        # sliver) is kept as a point: the point of it nearest the tile's centre.
        centre = func.ST_SetSRID(func.ST_MakePoint(_param("tile_cx"), _param("tile_cy")),
                                 STORAGE_SRID)
        final = func.coalesce(g, case((meets_tile, mvt(func.ST_ClosestPoint(s.c.src,
                                                                            centre)))))
    else:
        final = g
    # The feature rows ST_AsMVT encodes: id, properties and tile geometry, nothing else.
    f = (select(s.c.fid, *[s.c[name] for name in properties], final.label("geom"))
         .correlate(s).lateral("f"))
    tile_bytes = func.ST_AsMVT(f.table_valued(), bindparam("tile_layer", type_=Text),
                               literal_column(str(TILE_EXTENT)), literal_column("'geom'"),
                               aggregate_order_by(literal_column("'fid'"), f.c.fid))
    # Left out: features of the tile itself (not only of its buffer) with no tile geometry.
    left_out = func.count().filter(f.c.geom.is_(None) & meets_tile)
    as_points = (func.count().filter(func.ST_Dimension(f.c.geom) == 0) if not points
                 else literal_column("0"))
    return (select(func.coalesce(tile_bytes, literal_column("''::bytea")),
                   func.count().filter(f.c.geom.isnot(None)), left_out, as_points)
            .select_from(s).join(f, true()))


def overview_tile_statement(t: Table, cells: Table, big: Table, properties: Sequence[str],
                            *, points: bool) -> Select[Any]:
    """A WebMercatorQuad tile of a dense layer at a low zoom, from its overview tables (see
    geo/overview.py): the zoom's large features, simplified, and one square (or point) per
    occupied cell carrying its largest feature's attributes and `_features`. One row:
    (tile bytes, features in it, features merged into another's cell, 0). The tile's
    coordinates and cells are named parameters (`TileSpec.sql_params`, `cell_range`)."""
    bounds = func.ST_MakeEnvelope(_param("tile_x0"), _param("tile_y0"), _param("tile_x1"),
                                  _param("tile_y1"), 3857)
    scale = _param("tile_scale")

    def to_grid(g: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.ST_SnapToGrid(func.ST_Affine(g, scale, 0, 0, -scale, _param("tile_xoff"),
                                                 _param("tile_yoff")), 1)

    props = [t.c[name] for name in properties]
    large = (select(t.c.fid, *props, null().label(COUNT_PROPERTY),
                    func.ST_AsMVTGeom(func.ST_Simplify(big.c.geom, _param("tile_tol_m"), True),
                                      bounds, TILE_EXTENT, TILE_BUFFER, True).label("geom"))
             .select_from(big.join(t, t.c.fid == big.c.fid))
             .where(big.c.geom.op("&&")(func.ST_Expand(bounds, _param("tile_pad_m"))),
                    big.c.size >= _param("ov_cell")))
    cell = _param("ov_cell")
    if points:
        shape = func.ST_SetSRID(func.ST_MakePoint((cells.c.cx + 0.5) * cell,
                                                  (cells.c.cy + 0.5) * cell), 3857)
    else:
        shape = func.ST_MakeEnvelope(cells.c.cx * cell, cells.c.cy * cell,
                                     (cells.c.cx + 1) * cell, (cells.c.cy + 1) * cell, 3857)
    merged = (select(t.c.fid, *props, cells.c.n.label(COUNT_PROPERTY),
                     to_grid(shape).label("geom"))
              .select_from(cells.join(t, t.c.fid == cells.c.fid))
              .where(cells.c.level == bindparam("ov_level"),
                     cells.c.cx.between(bindparam("ov_cx0"), bindparam("ov_cx1")),
                     cells.c.cy.between(bindparam("ov_cy0"), bindparam("ov_cy1"))))
    f = large.union_all(merged).subquery("f")
    tile_bytes = func.ST_AsMVT(f.table_valued(), bindparam("tile_layer", type_=Text),
                               literal_column(str(TILE_EXTENT)), literal_column("'geom'"),
                               aggregate_order_by(literal_column("'fid'"), f.c.fid))
    stood_for = func.coalesce(func.sum(f.c[COUNT_PROPERTY]), 0)
    cells_n = func.count(f.c[COUNT_PROPERTY])
    return (select(func.coalesce(tile_bytes, literal_column("''::bytea")),
                   func.count().filter(f.c.geom.isnot(None)), stood_for - cells_n,
                   literal_column("0"))
            .where(f.c.geom.isnot(None)))
