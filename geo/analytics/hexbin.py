"""Hexagon bins: a point or polygon layer counted (and a numeric field summed) in a grid of
regular hexagons of a chosen size, laid in the metric CRS with `ST_HexagonGrid` so every
hexagon has the same true area, for heat-style maps.

The grid covers the layer's extent; each hexagon goes to lon/lat once and takes its features
through the layer's GiST index (by representative point, as zones do). A hexagon is named by
its column and row in PostGIS's grid (`i`, `j`: centre at x = 1.5·size·i, y = √3·size·(j +
i mod 2 / 2) in the metric CRS), so the same size gives the same names for any filter."""

from __future__ import annotations

from sqlalchemy import Float, cast, func, literal, literal_column, select

from geo.analytics.sources import (
    STORAGE_SRID,
    Analysis,
    Source,
    counts_in,
    envelope,
    fnum,
    geojson,
    hexagon_area_km2,
    metric_bounds,
    rep_point,
    rounded,
)

HIDDEN = ("_x", "_y")  # the hexagon's centre in the metric CRS (for spatial weights)


def hexbin(layer: Source, srid: int, *, size: float, field: str | None = None,
           empty: bool = False) -> Analysis:
    """One row per hexagon holding at least one feature (with `empty`, also every empty
    hexagon meeting the convex hull of the layer's features: the study area a hot-spot test
    needs), ordered by i, j."""
    assert layer.extent is not None, "a hexagon grid needs the layer's extent"
    bounds = envelope(metric_bounds(layer.extent, srid), srid)
    grid = func.ST_HexagonGrid(fnum(size), bounds).table_valued("geom", "i", "j") \
        .render_derived("grid", with_types=False)
    h = select(grid.c.i, grid.c.j, grid.c.geom.label("g"),
               func.ST_Transform(grid.c.geom, STORAGE_SRID).label("g4")).cte("h")
    a = layer.subquery("a", [field] if field else [])
    aggs = [func.count(a.c.fid).label("n")]
    if field:
        aggs += [func.sum(a.c[field]).label("s"), func.avg(a.c[field]).label("m")]
    stats = (select(h.c.i.label("si"), h.c.j.label("sj"), *aggs)
             .select_from(h.join(a, counts_in(h.c.g4, a.c.geom, layer.kind)))
             .group_by(h.c.i, h.c.j).subquery("s"))
    on = (stats.c.si == h.c.i) & (stats.c.sj == h.c.j)
    if empty:
        ah = layer.subquery("ah")
        hull = select(func.ST_ConvexHull(func.ST_Collect(rep_point(ah.c.geom, layer.kind)))) \
            .scalar_subquery()
        frm = h.outerjoin(stats, on)
        where = [func.ST_Intersects(h.c.g4, hull)]
    else:
        frm, where = h.join(stats, on), []
    area = fnum(hexagon_area_km2(size), "hex_km2")
    n = func.coalesce(stats.c.n, 0)
    centre = func.ST_Centroid(h.c.g)
    cols = [func.concat(h.c.i, literal("_"), h.c.j).label("fid"),
            geojson(h.c.g4).label("geometry"), h.c.i.label("i"), h.c.j.label("j"),
            n.label("count"), rounded(cast(n, Float) / area, 4).label("count_per_km2")]
    props = ["i", "j", "count", "count_per_km2"]
    if field:
        total = func.coalesce(stats.c.s, literal_column("0"))
        cols += [total.label("sum"), rounded(stats.c.m, 6).label("mean"),
                 rounded(cast(total, Float) / area, 4).label("sum_per_km2")]
        props += ["sum", "mean", "sum_per_km2"]
    cols += [func.ST_X(centre).label("_x"), func.ST_Y(centre).label("_y")]
    stmt = select(*cols).select_from(frm).where(*where).order_by(h.c.i, h.c.j)
    return Analysis(stmt, tuple(props), hidden=HIDDEN)
