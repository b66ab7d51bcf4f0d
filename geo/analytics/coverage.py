"""Coverage (accessibility): for each zone, the share of a measure of layer A (its features,
or the sum of a field such as housing units) lying within a distance of any feature of layer
C (500 m of a metro station, 300 m of a bus stop), and the catchment areas themselves.

A feature of A is covered when any part of it is within the distance of any part of a
facility, measured in metres in the metric CRS (`ST_DWithin`, exact: not a polygonal
buffer). The facilities are the small side: each is moved to the metric CRS once, its search
box (grown by the distance) goes back to lon/lat for A's GiST index, and only the candidates
in the box are measured. The catchment (the facilities' buffers, merged) is drawn with 64
segments per circle and also gives each zone the share of its area within reach."""

from __future__ import annotations

from sqlalchemy import CTE, case, func, literal_column, select, true

from geo.analytics.sources import (
    STORAGE_SRID,
    Analysis,
    Source,
    area_km2,
    counts_in,
    fnum,
    free_labels,
    geojson,
    metric,
    rounded,
    search_box,
    zones_cte,
)

QUAD_SEGS = 16  # per quarter circle: 64 segments a circle, as geopandas draws buffers
STATS = ("area_km2", "total", "covered", "share", "catchment_km2", "area_share")


def facilities_cte(facilities: Source, srid: int, distance: float, name: str = "f") -> CTE:
    """The filtered facilities in the metric CRS, each with its lon/lat search box."""
    c = facilities.table
    g = metric(c.c.geom, srid)
    return (select(c.c.fid, g.label("g"), search_box(g, distance, srid).label("box"))
            .where(*facilities.where).cte(name))


def catchment_cte(f: CTE, distance: float, srid: int, name: str = "catchment") -> CTE:
    """The facilities' buffers merged into one (multi)polygon, in the metric CRS."""
    buffers = func.ST_Buffer(f.c.g, fnum(distance), f"quad_segs={QUAD_SEGS}")
    return select(func.ST_Union(buffers).label("g")).cte(name)


def coverage(layer: Source, zones: Source, facilities: Source, srid: int, *,
             distance: float, field: str | None = None, max_zones: int = 10_000) -> Analysis:
    """One row per zone: the total of the measure (count of A's features in the zone, or the
    sum of `field`), the part of it covered, their ratio `share` (null when the total is 0),
    the area of the zone within the catchment (km²) and its share of the zone's area."""
    z = zones_cte(zones, max_zones)
    f = facilities_cte(facilities, srid, distance)
    catch = catchment_cte(f, distance, srid)
    near_src = layer.subquery("an")
    # The features of A within the distance of some facility (each listed once).
    near = (select(near_src.c.fid)
            .select_from(f.join(near_src, near_src.c.geom.op("&&")(f.c.box)))
            .where(func.ST_DWithin(f.c.g, metric(near_src.c.geom, srid), fnum(distance)))
            .distinct().cte("near"))
    a = layer.subquery("a", [field] if field else [])
    measure = a.c[field] if field else literal_column("1")
    is_near = near.c.fid.is_not(None)
    stats = (select(z.c.fid.label("zid"),
                    func.coalesce(func.sum(measure), 0).label("total"),
                    func.coalesce(func.sum(case((is_near, measure), else_=0)), 0)
                    .label("covered"))
             .select_from(z.join(a, counts_in(z.c.geom, a.c.geom, layer.kind))
                          .outerjoin(near, near.c.fid == a.c.fid))
             .group_by(z.c.fid).subquery("s"))
    zm = metric(z.c.geom, srid)
    inside = func.ST_Area(func.ST_Intersection(zm, select(catch.c.g).scalar_subquery())) / 1e6
    zc = select(z, area_km2(z.c.geom, srid).label("area"), inside.label("reach")).subquery("zc")
    labels = free_labels(zones.columns, STATS)
    total = func.coalesce(stats.c.total, 0)
    covered = func.coalesce(stats.c.covered, 0)
    cols = [zc.c.fid, geojson(zc.c.geom).label("geometry"),
            *[zc.c[n].label(lab) for n, lab in labels.items()],
            rounded(zc.c.area, 6).label("area_km2"), total.label("total"),
            covered.label("covered"),
            rounded(covered * 1.0 / func.nullif(total, 0), 6).label("share"),
            rounded(func.coalesce(zc.c.reach, 0.0), 6).label("catchment_km2"),
            rounded(func.coalesce(zc.c.reach, 0.0) / func.nullif(zc.c.area, 0.0), 6)
            .label("area_share")]
    stmt = (select(*cols).select_from(zc.outerjoin(stats, stats.c.zid == zc.c.fid))
            .order_by(zc.c.fid))
    return Analysis(stmt, (*labels.values(), *STATS))


def catchment(facilities: Source, srid: int, *, distance: float) -> Analysis:
    """The catchment: every place within `distance` of a facility, one polygon per separate
    part, with its area (km²) and how many facilities it holds."""
    f = facilities_cte(facilities, srid, distance)
    catch = catchment_cte(f, distance, srid)
    parts = func.ST_Dump(catch.c.g).table_valued("path", "geom") \
        .render_derived("parts", with_types=False)
    part = parts.c.geom
    numbered = (select(func.row_number().over(order_by=[func.ST_XMin(part), func.ST_YMin(part)])
                       .label("fid"), part.label("g"))
                .select_from(catch).join(parts, true()).subquery("p"))
    count = (select(func.count()).select_from(f)
             .where(func.ST_Intersects(f.c.g, numbered.c.g)).scalar_subquery())
    stmt = select(numbered.c.fid,
                  geojson(func.ST_Transform(numbered.c.g, STORAGE_SRID)).label("geometry"),
                  rounded(func.ST_Area(numbered.c.g) / 1e6, 6).label("area_km2"),
                  count.label("facilities"),
                  fnum(distance).label("distance_m")).order_by(numbered.c.fid)
    return Analysis(stmt, ("area_km2", "facilities", "distance_m"))
