"""Land-use mix: the Shannon entropy of land-use areas in each zone, normalised to 0 (a
single use) ... 1 (every use in equal shares):

    H = -Σ p_k ln p_k / ln K

where p_k is the share of the zone's land-use area in use k and K the number of uses
considered: the distinct values of the land-use field among the (filtered) layer's features,
or the `categories` a planner lists (then other uses are left out). Areas are true areas in
the metric CRS; a parcel crossing a zone boundary counts with the part inside each zone
(parts under 0.1% of their parcel, slivers where boundaries meet, are left out)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Float, Text, any_, bindparam, case, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by

from geo.analytics.sources import (
    Analysis,
    Source,
    area_km2,
    free_labels,
    geojson,
    metric,
    rounded,
    zones_cte,
)

# A piece of a parcel in a zone smaller than this share of the parcel is a sliver where two
# boundaries meet (drawn apart by a centimetre or two), not land use: it is left out, else a
# 0.05 m² sliver would add a use to the zone. (Every partial piece of the demo city's
# parcels is a sliver under 0.003% of its parcel.)
SLIVER = 0.001
STATS = ("area_km2", "landuse_km2", "uses", "dominant", "dominant_share", "entropy", "shares")


def landuse_mix(layer: Source, zones: Source, srid: int, *, field: str,
                categories: Sequence[str] | None = None, max_zones: int = 10_000) -> Analysis:
    """One row per zone: its land-use area (km²), how many uses it holds, the dominant use
    and its share, the normalised entropy (null for a zone with no land use), and the share
    of each use (`shares`, a JSON object use -> share)."""
    z = zones_cte(zones, max_zones)
    a = layer.subquery("a", [field])
    cat = a.c[field]
    wanted: list[Any] = [cat.is_not(None)]
    k: Any
    if categories:
        wanted.append(cat == any_(bindparam("categories", list(categories), ARRAY(Text))))
        k = bindparam("k", len(set(categories)), Float)
    else:
        ak = layer.subquery("ak", [field])
        k = (select(func.count(ak.c[field].distinct())).where(ak.c[field].is_not(None))
             .scalar_subquery())
    # A parcel inside its zone counts whole; one crossing the zone's edge by the part
    # inside, cut in the metric CRS (where both edges are the straight lines they were drawn
    # as; cut in lon/lat, slivers of tens of m² appear where boundaries meet).
    zm = select(z.c.fid, z.c.geom, metric(z.c.geom, srid).label("g")).cte("zm")
    whole = func.ST_CoveredBy(a.c.geom, zm.c.geom)
    am = metric(a.c.geom, srid)
    full = func.ST_Area(am)
    piece = case((whole, full), else_=func.ST_Area(func.ST_Intersection(am, zm.c.g)))
    pieces = (select(zm.c.fid.label("zid"), cast(cat, Text).label("use"), piece.label("m2"),
                     full.label("full"))
              .select_from(zm.join(a, func.ST_Intersects(zm.c.geom, a.c.geom)))
              .where(*wanted).subquery("pieces"))
    byuse = (select(pieces.c.zid, pieces.c.use, func.sum(pieces.c.m2).label("m2"))
             .where(pieces.c.m2 >= pieces.c.full * SLIVER, pieces.c.m2 > 0)
             .group_by(pieces.c.zid, pieces.c.use).subquery("u"))
    tot = func.sum(byuse.c.m2).over(partition_by=byuse.c.zid)
    shares = select(byuse.c.zid, byuse.c.use, byuse.c.m2,
                    (byuse.c.m2 / func.nullif(tot, 0.0)).label("p")).subquery("p")
    p = shares.c.p
    plogp = case((p > 0, p * func.ln(p)), else_=0.0)
    entropy = case((k > 1, -func.sum(plogp) / func.ln(cast(k, Float))), else_=0.0)
    stats = (select(shares.c.zid, func.sum(shares.c.m2).label("m2"),
                    func.count().filter(p > 0).label("uses"),
                    func.max(p).label("top"),
                    (func.array_agg(aggregate_order_by(shares.c.use, p.desc(), shares.c.use))
                     [1]).label("dominant"),
                    entropy.label("entropy"),
                    func.json_object_agg(shares.c.use, rounded(p, 6)).label("shares"))
             .where(shares.c.m2 > 0).group_by(shares.c.zid).subquery("s"))
    labels = free_labels(zones.columns, STATS)
    zc = select(z, area_km2(z.c.geom, srid).label("area")).subquery("zc")
    cols = [zc.c.fid, geojson(zc.c.geom).label("geometry"),
            *[zc.c[n].label(lab) for n, lab in labels.items()],
            rounded(zc.c.area, 6).label("area_km2"),
            rounded(func.coalesce(stats.c.m2, 0.0) / 1e6, 6).label("landuse_km2"),
            func.coalesce(stats.c.uses, 0).label("uses"), stats.c.dominant.label("dominant"),
            rounded(stats.c.top, 6).label("dominant_share"),
            rounded(stats.c.entropy, 6).label("entropy"), stats.c.shares.label("shares")]
    stmt = (select(*cols).select_from(zc.outerjoin(stats, stats.c.zid == zc.c.fid))
            .order_by(zc.c.fid))
    return Analysis(stmt, (*labels.values(), *STATS))
