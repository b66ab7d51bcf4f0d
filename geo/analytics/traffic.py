"""Traffic: the busiest road segments (by volume, or by volume over capacity), and crash
counts per road segment buffer for hot-spot maps (per hexagon: geo.analytics.hexbin).

v/c is `volume × k_factor / capacity`: with a daily volume (AADT) and an hourly capacity,
k_factor is the share of the day's traffic in the design hour (typically 0.08 to 0.12); with
volume and capacity in the same unit it is 1."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import Float, cast, func, literal_column, select

from geo.analytics.sources import (
    Analysis,
    Source,
    fnum,
    free_labels,
    geojson,
    metric,
    rounded,
    search_box,
)

RankBy = Literal["volume", "vc"]
TOP_STATS = ("rank", "vc")
SEGMENT_STATS = ("length_m", "count", "count_per_km")
HIDDEN = ("_x", "_y")


def top_roads(roads: Source, *, volume: str, capacity: str | None, k_factor: float = 1.0,
              by: RankBy = "volume", n: int = 20) -> Analysis:
    """The n segments with the highest volume (or v/c; segments with no volume, or no
    capacity when ranking by v/c, are left out), ranked (ties share a rank), with the
    layer's columns and v/c."""
    t = roads.table
    vol = t.c[volume]
    cap = t.c[capacity] if capacity else None
    vc = (cast(vol, Float) * fnum(k_factor) / func.nullif(cast(cap, Float), 0.0)
          if cap is not None else None)
    metric_ = vol if by == "volume" else vc
    assert metric_ is not None
    where = [*roads.where, vol.is_not(None)]
    if by == "vc":
        where.append(vc.is_not(None))  # type: ignore[union-attr]
    labels = free_labels(roads.columns, TOP_STATS, prefix="road_")
    cols = [t.c.fid, geojson(t.c.geom).label("geometry"),
            func.rank().over(order_by=metric_.desc()).label("rank"),
            *[t.c[name].label(label) for name, label in labels.items()],
            (rounded(vc, 4) if vc is not None else literal_column("NULL")).label("vc")]
    stmt = select(*cols).where(*where).order_by(metric_.desc(), t.c.fid).limit(n)
    return Analysis(stmt, ("rank", *labels.values(), "vc"))


def segment_counts(points: Source, roads: Source, srid: int, *, distance: float,
                   max_segments: int = 50_000) -> Analysis:
    """Every road segment (at most max_segments + 1, in feature order) with its length and
    the number of points (crashes) within `distance` metres of it; a crash at a junction
    counts on each segment it is near. The segment's centre in the metric CRS is kept
    (hidden) for spatial weights."""
    t = roads.table
    g = metric(t.c.geom, srid)
    r = (select(t.c.fid, t.c.geom, g.label("g"), search_box(g, distance, srid).label("box"),
                *[t.c[c] for c in roads.columns])
         .where(*roads.where).order_by(t.c.fid).limit(max_segments + 1).cte("r"))
    c = points.subquery("c")
    stats = (select(r.c.fid.label("rid"), func.count().label("n"))
             .select_from(r.join(c, c.c.geom.op("&&")(r.c.box)))
             .where(func.ST_DWithin(r.c.g, metric(c.c.geom, srid), fnum(distance)))
             .group_by(r.c.fid).subquery("s"))
    labels = free_labels(roads.columns, SEGMENT_STATS, prefix="road_")
    n = func.coalesce(stats.c.n, 0)
    length = func.ST_Length(r.c.g)
    centre = func.ST_Centroid(r.c.g)
    cols = [r.c.fid, geojson(r.c.geom).label("geometry"),
            *[r.c[name].label(label) for name, label in labels.items()],
            rounded(length, 1).label("length_m"), n.label("count"),
            rounded(cast(n, Float) / func.nullif(length / 1000.0, 0.0), 4)
            .label("count_per_km"),
            func.ST_X(centre).label("_x"), func.ST_Y(centre).label("_y")]
    stmt = (select(*cols).select_from(r.outerjoin(stats, stats.c.rid == r.c.fid))
            .order_by(r.c.fid))
    return Analysis(stmt, (*labels.values(), *SEGMENT_STATS), hidden=HIDDEN)
