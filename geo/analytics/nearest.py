"""Nearest facility: for each feature of layer A, the nearest feature of layer C and the
distance to it in metres (in the metric CRS, as a planner's GIS measures it), and summary
statistics of those distances per zone.

Points to points (the common case: parcels' or homes' points to fire stations) take the
fast path, which needs no nearest-neighbour search per feature:

1. the facilities are moved to the metric CRS and their Voronoi diagram is made there: the
   cell of a facility is exactly the set of places nearer to it than to any other;
2. the cells' edges are cut into 200 m pieces and moved to lon/lat, so each cell is a
   polygon in the storage CRS;
3. each cell takes the points of A strictly inside it through A's GiST index (a join like
   the zone aggregate's), and the distance to its facility is measured in metres;
4. points within 1 cm of a cell edge (where two facilities are equally near, or where the
   cells' lon/lat edges could disagree by rounding) are set aside and measured against every
   facility instead, so each point gets exactly one answer, the right one.

A row-by-row k-nearest-neighbour search in lon/lat would be both slower and wrong: the
nearest in degrees is not the nearest in metres (longitude degrees are shorter). Any other
pair of geometry types takes the general path, per feature of A: the nearest facility by the
index gives an upper bound in metres, which becomes a radius in degrees that surely holds
the nearest in metres; the facilities inside it are measured and the nearest is kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    ARRAY,
    CTE,
    BigInteger,
    ColumnElement,
    Select,
    Subquery,
    all_,
    any_,
    cast,
    exists,
    func,
    literal,
    literal_column,
    select,
    true,
    union_all,
)

from geo.analytics.sources import (
    LINE_SEPARATOR,
    STORAGE_SRID,
    Analysis,
    Source,
    counts_in,
    distinct_on,
    envelope,
    fnum,
    free_labels,
    geojson,
    metric,
    metric_bounds,
    rounded,
    zones_cte,
)
from geo.sql import degrees_for

# Cells are cut into pieces this long (metres) before they are moved to lon/lat, so their
# edges stay on the straight lines of the metric CRS: within 0.6 mm in a city 36 km from its
# UTM zone's central meridian, within 5 mm at the zone's edge; either way well inside the
# 1 cm band below, so every point is still measured against its true nearest facility.
CELL_PIECE_M = 200.0
# Points this near a cell edge (degrees: about 1 cm) are measured against every facility.
EDGE_BAND_DEG = 1e-7
# The Voronoi diagram covers the layer's extent grown by this much (metres).
DIAGRAM_MARGIN_M = 1_000.0
DISTANCE_DIGITS = 2  # centimetres
ZONE_STATS = ("count", "min_m", "mean_m", "median_m", "p90_m", "max_m")


# Builds a row's output columns from (A's subquery, nearest fid, nearest key, distance).
Emit = Callable[[Subquery, Any, Any, Any], list[Any]]
# Turns a row's labelled output columns into one line of text (a CSV record, a feature).
Line = Callable[[list[Any]], ColumnElement[Any]]


def _key(src: Source, sub: Subquery | CTE) -> ColumnElement[Any]:
    return sub.c[src.key] if src.key else literal(None)


def _pairs_emit(carry: tuple[str, ...]) -> Emit:
    def emit(a: Subquery, fid: Any, key: Any, distance: Any) -> list[Any]:
        return [a.c.fid, *[a.c[n] for n in carry], fid.label("nearest_fid"),
                key.label("nearest_key"), distance.label("distance")]
    return emit


def nearest_pairs(layer: Source, facilities: Source, srid: int, *,
                  carry: tuple[str, ...] = ()) -> Select[Any]:
    """Rows (fid, the carried columns of A, nearest_fid, nearest_key, distance) for every
    feature of A (filtered), in no particular order; `distance` in metres, full precision."""
    return _nearest(replace(layer, columns=carry), facilities, srid, _pairs_emit(carry), None)


def _nearest(layer: Source, facilities: Source, srid: int, emit: Emit,
             line: Line | None) -> Select[Any]:
    if layer.kind == "point" and facilities.kind == "point" and layer.extent is not None:
        return _voronoi(layer, facilities, srid, emit, line)
    return _general(layer, facilities, srid, emit, line)


def _voronoi(layer: Source, facilities: Source, srid: int, emit: Emit,
             line: Line | None) -> Select[Any]:
    assert layer.extent is not None
    c = facilities.table
    f = (select(c.c.fid, (c.c[facilities.key] if facilities.key else literal(None))
                .label("fkey"), metric(c.c.geom, srid).label("g"))
         .where(*facilities.where).cte("f"))
    frame = envelope(metric_bounds(layer.extent, srid, DIAGRAM_MARGIN_M), srid)
    diagram = select(func.ST_VoronoiPolygons(func.ST_Collect(f.c.g), 0.0, frame)
                     .label("gc")).cte("d")
    numbered = select(func.generate_series(1, func.ST_NumGeometries(diagram.c.gc)).label("k"),
                      diagram.c.gc).subquery("dn")
    cell = func.ST_GeometryN(numbered.c.gc, numbered.c.k)
    raw = select(numbered.c.k, cell.label("cell")).subquery("v")
    # A cell's facility is the one inside it (the lowest fid when several share a place).
    cells = distinct_on(
        select(raw.c.k, f.c.fid, f.c.fkey, f.c.g,
               func.ST_Transform(func.ST_Segmentize(raw.c.cell, fnum(CELL_PIECE_M)),
                                 STORAGE_SRID).label("c4"))
        .select_from(raw.join(f, func.ST_Intersects(raw.c.cell, f.c.g))), raw.c.k,
    ).order_by(raw.c.k, f.c.fid).cte("cells")
    # The points of A within a centimetre of each cell's edges, listed on the cell: a cell
    # leaves them out of its join (a cheap test against a short array) and they are
    # measured against every facility below.
    segs = func.ST_DumpSegments(func.ST_Boundary(cells.c.c4)).table_valued("path", "geom") \
        .render_derived("seg", with_types=False)
    ab = layer.subquery("ab")
    near_edges = (select(func.coalesce(func.array_agg(ab.c.fid.distinct()),
                                       literal_column("'{}'::bigint[]")))
                  .select_from(segs.join(ab, func.ST_DWithin(segs.c.geom, ab.c.geom,
                                                             fnum(EDGE_BAND_DEG))))
                  .correlate(cells).scalar_subquery())
    cb = select(cells, near_edges.label("band")).cte("cb")
    listed = select(func.unnest(cb.c.band).label("fid")).subquery("listed")
    band = cast(select(func.coalesce(func.array_agg(listed.c.fid),
                                     literal_column("'{}'::bigint[]"))).scalar_subquery(),
                ARRAY(BigInteger))  # an array expression: `= ANY (array)`, not a subquery

    a = layer.subquery("a", layer.columns)
    dist = func.ST_Distance(cb.c.g, metric(a.c.geom, srid))
    inside = (func.ST_Contains(cb.c.c4, a.c.geom), a.c.fid != all_(cb.c.band))
    cols = emit(a, cb.c.fid, cb.c.fkey, dist)
    if line is None:
        main = select(*cols).select_from(cb.join(a, inside[0])).where(inside[1])
    else:  # one row per cell: its points' lines joined (a million rows become a few dozen)
        chunk = (select(func.string_agg(line(cols), literal(LINE_SEPARATOR)))
                 .select_from(a).where(*inside).correlate(cb).scalar_subquery())
        # OFFSET 0 keeps the chunk from being worked out twice (for the filter, then again)
        chunks = select(chunk.label("line")).select_from(cb).offset(0).subquery("chunks")
        main = select(chunks.c.line).where(chunks.c.line.is_not(None))
    # Points on (or within a centimetre of) an edge are measured against every facility;
    # so is every point when there is no diagram (one facility, or all at one place).
    branches = [main]
    for name, where in (("a2", lambda t: t.c.fid == any_(band)),
                        ("a3", lambda t: ~exists(select(literal(1)).select_from(cells)))):
        t = layer.subquery(name, layer.columns)
        d2 = func.ST_Distance(f.c.g, metric(t.c.geom, srid))
        rows = distinct_on(
            select(*emit(t, f.c.fid, f.c.fkey, d2)).select_from(t.join(f, true()))
            .where(where(t)), t.c.fid,
        ).order_by(t.c.fid, d2, f.c.fid).subquery(f"{name}n")
        branches.append(rows.select() if line is None else
                        select(line(list(rows.c)).label("line")))
    return select(union_all(*branches).subquery("pairs"))


def _general(layer: Source, facilities: Source, srid: int, emit: Emit,
             line: Line | None) -> Select[Any]:
    a = layer.subquery("a", layer.columns)
    ext = layer.extent or (-180.0, -89.0, 180.0, 89.0)
    # Degrees per metre that surely hold a metric distance at the layer's farthest latitude
    # (longitude degrees shrink with latitude; the UTM scale factor is at least 0.9996).
    per_metre = degrees_for(1.0, max(abs(ext[1]), abs(ext[3]))) * 1.001
    c1 = facilities.subquery("c1", [facilities.key] if facilities.key else [])
    c2 = facilities.subquery("c2")
    am = metric(a.c.geom, srid)
    bound = (select(func.ST_Distance(metric(c2.c.geom, srid), am))
             .order_by(c2.c.geom.op("<->")(a.c.geom)).limit(1).correlate(a).scalar_subquery())
    d = func.ST_Distance(metric(c1.c.geom, srid), am)
    best = (select(c1.c.fid.label("nearest_fid"), _key(facilities, c1).label("nearest_key"),
                   d.label("distance"))
            .where(func.ST_DWithin(c1.c.geom, a.c.geom, bound * per_metre + 1e-9))
            .order_by(d, c1.c.fid).limit(1).lateral("n"))
    cols = emit(a, best.c.nearest_fid, best.c.nearest_key, best.c.distance)
    out = [line(cols).label("line")] if line is not None else cols
    return select(*out).select_from(a.join(best, true()))


def nearest_features(layer: Source, facilities: Source, srid: int, *,
                     geometry: bool = True, line: Line | None = None) -> Analysis:
    """One row per feature of A: its key, the nearest facility's fid and key, and the
    distance in metres (to the centimetre). With `line`, rows are text instead (a CSV
    record or a GeoJSON feature per feature of A, several joined by LINE_SEPARATOR in a
    row), for streaming a million answers in a few dozen rows."""
    fkey = f"nearest_{facilities.key}" if facilities.key else "nearest_key"
    if fkey == layer.key:
        fkey = f"facility_{fkey}"
    props = [*([layer.key] if layer.key else []), "nearest_fid", fkey, "distance_m"]

    def emit(a: Subquery, fid: Any, key: Any, distance: Any) -> list[Any]:
        cols: list[Any] = [a.c.fid]
        if geometry:
            cols.append(geojson(a.c.geom).label("geometry"))
        if layer.key:
            cols.append(a.c[layer.key])
        return [*cols, fid.label("nearest_fid"), key.label(fkey),
                rounded(distance, DISTANCE_DIGITS).label("distance_m")]

    src = replace(layer, columns=(layer.key,) if layer.key else ())
    stmt = _nearest(src, facilities, srid, emit, line)
    return Analysis(stmt, tuple(props), geometry=geometry, lines=line is not None)


def nearest_by_zone(layer: Source, facilities: Source, zones: Source, srid: int, *,
                    max_zones: int = 10_000) -> Analysis:
    """One row per zone: how many of A's features lie in it (by their representative point)
    and the minimum, mean, median, 90th percentile and maximum of their distances to the
    nearest facility, in metres."""
    pairs = nearest_pairs(replace(layer, columns=()), facilities, srid).subquery("p")
    z = zones_cte(zones, max_zones)
    a = layer.subquery("a")
    d = pairs.c.distance
    stats = (select(z.c.fid.label("zid"), func.count().label("n"), func.min(d).label("lo"),
                    func.avg(d).label("mean"),
                    func.percentile_cont(0.5).within_group(d).label("median"),
                    func.percentile_cont(0.9).within_group(d).label("p90"),
                    func.max(d).label("hi"))
             .select_from(z.join(a, counts_in(z.c.geom, a.c.geom, layer.kind))
                          .join(pairs, pairs.c.fid == a.c.fid))
             .group_by(z.c.fid).subquery("s"))
    labels = free_labels(zones.columns, ZONE_STATS)
    r = DISTANCE_DIGITS
    cols = [z.c.fid, geojson(z.c.geom).label("geometry"),
            *[z.c[n].label(lab) for n, lab in labels.items()],
            func.coalesce(stats.c.n, literal_column("0")).label("count"),
            rounded(stats.c.lo, r).label("min_m"), rounded(stats.c.mean, r).label("mean_m"),
            rounded(stats.c.median, r).label("median_m"), rounded(stats.c.p90, r).label("p90_m"),
            rounded(stats.c.hi, r).label("max_m")]
    stmt = (select(*cols).select_from(z.outerjoin(stats, stats.c.zid == z.c.fid))
            .order_by(z.c.fid))
    return Analysis(stmt, (*labels.values(), *ZONE_STATS))
