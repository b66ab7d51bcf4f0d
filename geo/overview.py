"""Low-zoom overviews of dense layers, built once at load so that a city-wide tile of a
million parcels costs a few thousand index lookups instead of a million geometries.

Up to a layer's *top* zoom a screen holds far fewer pixels than a dense layer has features,
so drawing each one is both slow and pointless. As tippecanoe does with tiny polygons,
features smaller than a *cell* (four screen pixels, 1/64 of a tile) are merged per cell:
the cell is drawn as one square (a point for point layers) carrying the attributes of the
largest feature in it and `_features`, how many features it stands for. Features as large
as a cell or larger are drawn as themselves (simplified). From the top zoom + 1 on, tiles
hold every feature again.

The top zoom follows the data (`top_zoom`): the highest zoom at which the typical (median)
feature is still smaller than a cell, so that a full-detail tile would mostly draw specks
of a pixel or two; never below MIN_TOP_ZOOM (13) and never above MAX_TOP_ZOOM (15). A
million parcels of about 20 m merge up to z14, where a tile would otherwise hold some
13,000 of them, each two pixels wide; layers of larger features, and point layers, stop at
z13.

Two tables per dataset version, in the data table's schema:
- `<table>__cells` (level, cx, cy, fid, n, size): per zoom level, each occupied cell (column
  cx, row cy of the cell grid in EPSG:3857, origin at x = y = 0), the representative
  feature and n features merged; a B-tree on (level, cx, cy) finds a tile's cells.
- `<table>__big` (fid, size, geom): features at least one top-level cell wide,
  in EPSG:3857 with a GiST index.
`size` is a feature's larger bounding-box side in EPSG:3857 units.
"""

from __future__ import annotations

import math

from sqlalchemy import BigInteger, Float, Integer, SmallInteger, Table, column
from sqlalchemy import table as sa_table
from sqlalchemy.sql import quoted_name

EARTH_CIRCUMFERENCE = 2 * math.pi * 6_378_137.0
MIN_TOP_ZOOM = 13  # dense layers merge cells at least up to here (point layers: exactly)
MAX_TOP_ZOOM = 15  # ... and never above (a z15 cell is 19 m: 4 pixels)
SIZE_SAMPLE_ROWS = 20_000  # features sampled for the median size
CELLS_PER_TILE = 64  # a cell is four screen pixels of a 256-pixel tile
CELLS_SUFFIX = "__cells"
BIG_SUFFIX = "__big"
COUNT_PROPERTY = "_features"  # source columns never start with "_": no clash


def cell_size(z: int) -> float:
    """Cell side at zoom z in EPSG:3857 units (a power-of-two fraction of the world, so
    cells line up with tile edges)."""
    return EARTH_CIRCUMFERENCE / 2**z / CELLS_PER_TILE


def top_zoom(median_size: float | None, *, points: bool) -> int:
    """The highest zoom merged into cells: the last at which the median feature (its larger
    bounding-box side in EPSG:3857 units) is smaller than a cell, within MIN_TOP_ZOOM and
    MAX_TOP_ZOOM. Points have no size: they merge up to MIN_TOP_ZOOM, so each is its own
    feature from z14, where one is clicked."""
    if points or median_size is None:
        return MIN_TOP_ZOOM
    top = MIN_TOP_ZOOM
    while top < MAX_TOP_ZOOM and median_size < cell_size(top + 1):
        top += 1
    return top


def median_size_statement(schema: str, table: str, geom_3857: str, rows: int) -> str:
    """SQL for the median feature size of about SIZE_SAMPLE_ROWS features of a table of
    `rows` (a repeatable Bernoulli sample, so a reload of the same file decides alike)."""
    _check_identifiers(schema, table, geom_3857)
    percent = min(100.0, 100.0 * SIZE_SAMPLE_ROWS / max(rows, 1))
    return (f'SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY greatest(ST_XMax(b) - '
            f'ST_XMin(b), ST_YMax(b) - ST_YMin(b))) FROM (SELECT Box2D("{geom_3857}") AS b '
            f'FROM {_q(schema, table)} TABLESAMPLE BERNOULLI ({percent!r}) REPEATABLE (1402) '
            f'WHERE NOT ST_IsEmpty("{geom_3857}")) s')


def _check_identifiers(*names: str) -> None:
    for name in names:
        if '"' in name:
            raise ValueError(f"bad identifier {name!r}")


def tables(table: str) -> tuple[str, str]:
    """The overview tables of a data table: (cells, big)."""
    return f"{table}{CELLS_SUFFIX}", f"{table}{BIG_SUFFIX}"


def _q(schema: str, name: str) -> str:
    return f'"{schema}"."{quoted_name(name, True)}"'


def build_statements(schema: str, table: str, geom_3857: str, top: int = MIN_TOP_ZOOM
                     ) -> list[str]:
    """SQL that (re)builds both overview tables of `schema.table` from its EPSG:3857
    geometry column, with cells from zoom 0 to `top`. Only identifiers are interpolated (all
    from the loader, quoted); every number is a constant of this module or `top`."""
    _check_identifiers(schema, table, geom_3857)
    if not isinstance(top, int) or not 0 <= top <= MAX_TOP_ZOOM:
        raise ValueError(f"overview top zoom {top!r}; accepted: 0 to {MAX_TOP_ZOOM}")
    cells_name, big_name = tables(table)
    src, cells, big = _q(schema, table), _q(schema, cells_name), _q(schema, big_name)
    g = f'"{geom_3857}"'
    top_cell = cell_size(top)
    # Each feature's box, computed once (one geometry read per row): size and centre come
    # from it, in the big table and in the cells alike, so the two never disagree.
    boxes = f"(SELECT fid, Box2D({g}) AS b FROM {src} WHERE NOT ST_IsEmpty({g}) OFFSET 0) b"
    size = "greatest(ST_XMax(b) - ST_XMin(b), ST_YMax(b) - ST_YMin(b))"
    out = [
        f"DROP TABLE IF EXISTS {cells}",
        f"DROP TABLE IF EXISTS {big}",
        f"CREATE TABLE {big} AS SELECT s.fid, s.size, t.{g} AS geom"
        f" FROM (SELECT fid, {size} AS size FROM {boxes}) s JOIN {src} t ON t.fid = s.fid"
        f" WHERE s.size >= {top_cell!r}",
        f"CREATE INDEX ON {big} USING gist (geom)",
        f"CREATE TABLE {cells} (level smallint NOT NULL, cx integer NOT NULL,"
        " cy integer NOT NULL, fid bigint NOT NULL, n integer NOT NULL,"
        " size double precision NOT NULL)",
        # The top level from the whole table: one sort of a narrow projection, shared by
        # the window (the count) and DISTINCT ON (the largest feature of each cell).
        f"INSERT INTO {cells} SELECT DISTINCT ON (cx, cy) {top}, cx, cy, fid,"
        " count(*) OVER (PARTITION BY cx, cy ORDER BY size DESC, fid ROWS BETWEEN UNBOUNDED"
        " PRECEDING AND UNBOUNDED FOLLOWING), size FROM ("
        f" SELECT fid, floor((ST_XMin(b) + ST_XMax(b)) / 2 / {top_cell!r})::integer AS cx,"
        f" floor((ST_YMin(b) + ST_YMax(b)) / 2 / {top_cell!r})::integer AS cy, {size} AS size"
        f" FROM {boxes}) s WHERE size < {top_cell!r} ORDER BY cx, cy, size DESC, fid",
    ]
    # Each lower level from the one above (cells halve: cx >> 1 floors negatives too), plus
    # the features that were a cell wide one level up but are not at this one.
    for z in range(top - 1, -1, -1):
        c, above = cell_size(z), cell_size(z + 1)
        out.append(
            f"INSERT INTO {cells} SELECT DISTINCT ON (cx, cy) {z}, cx, cy, fid,"
            " sum(n) OVER (PARTITION BY cx, cy ORDER BY size DESC, fid ROWS BETWEEN"
            " UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING), size FROM ("
            f" SELECT cx >> 1 AS cx, cy >> 1 AS cy, fid, n, size FROM {cells}"
            f"  WHERE level = {z + 1}"
            " UNION ALL"
            f" SELECT floor((ST_XMin(b) + ST_XMax(b)) / 2 / {c!r})::integer,"
            f"  floor((ST_YMin(b) + ST_YMax(b)) / 2 / {c!r})::integer, fid, 1, size"
            f"  FROM (SELECT fid, size, Box2D(geom) AS b FROM {big}"
            f"        WHERE size >= {above!r} AND size < {c!r}) x) s"
            " ORDER BY cx, cy, size DESC, fid")
    out += [f"CREATE INDEX ON {cells} (level, cx, cy)", f"ANALYZE {cells}", f"ANALYZE {big}"]
    return out


def cell_range(bounds: tuple[float, float, float, float], z: int) -> dict[str, float | int]:
    """Named parameters of `tile_statement` for one WebMercatorQuad tile: its level, cell
    size and the cells (inclusive column and row ranges) that make it up."""
    c = cell_size(z)
    x0, y0, x1, y1 = bounds
    return {"ov_level": z, "ov_cell": c,
            "ov_cx0": math.floor(x0 / c + 1e-9), "ov_cx1": math.floor(x1 / c + 1e-9) - 1,
            "ov_cy0": math.floor(y0 / c + 1e-9), "ov_cy1": math.floor(y1 / c + 1e-9) - 1}


def overview_tables(schema: str, table: str) -> tuple[Table, Table]:
    """SQLAlchemy views of the two overview tables, for the tile statement."""
    cells_name, big_name = tables(table)
    cells = sa_table(cells_name, column("level", SmallInteger), column("cx", Integer),
                     column("cy", Integer), column("fid", BigInteger), column("n", Integer),
                     column("size", Float), schema=schema)
    big = sa_table(big_name, column("fid", BigInteger), column("size", Float),
                   column("geom"), schema=schema)
    return cells, big
