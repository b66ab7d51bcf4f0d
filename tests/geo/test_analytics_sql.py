"""The analytics SQL builders (geo.analytics) on the demo city in PostGIS, each against the
same computation done independently with geopandas on the same tables (read_postgis; areas,
buffers and distances in EPSG:32639).

Tolerances: counts and sums are exact; areas within 1 m² (1e-6 km²: both sides move the same
vertices with PROJ), land-use areas within one part in a million (slivers where boundaries
meet); distances within 1 cm (ours are rounded to centimetres); entropy and shares within
1e-6 (ours are rounded to 6 decimals)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pytest
import shapely
from sqlalchemy import BigInteger, Boolean, Float, Text, column, create_engine, table
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.engine import Engine, make_url

from catalog.collections import Collection, load_collections
from geo.analytics import (
    LINE_SEPARATOR,
    Analysis,
    Source,
    aggregate,
    catchment,
    coverage,
    csv_line,
    feature_line,
    geometry_kind,
    getis_ord_star,
    hex_band,
    hexbin,
    landuse_mix,
    nearest_by_zone,
    nearest_features,
    segment_counts,
    top_roads,
)

UTM = 32639
AREA_TOL_KM2 = 1e-6
DIST_TOL_M = 0.01
TYPES = {"integer": BigInteger, "number": Float, "boolean": Boolean}


@pytest.fixture(scope="module")
def db(database_url: str, demo_loaded: dict) -> Iterator[psycopg.Connection]:
    with psycopg.connect(make_url(database_url).set(drivername="postgresql")
                         .render_as_string(hide_password=False), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def engine(database_url: str, demo_loaded: dict) -> Iterator[Engine]:
    eng = create_engine(make_url(database_url).set(drivername="postgresql+psycopg"))
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def colls(db: psycopg.Connection) -> dict[str, Collection]:
    return load_collections(db)


def tbl(coll: Collection) -> Any:
    cols = [column("fid", BigInteger), column("geom")]
    cols += [column(c.name, TYPES.get(c.type, Text)) for c in coll.columns]
    return table(coll.table, *cols, schema="data")


def src(coll: Collection, where: Any = (), columns: tuple[str, ...] = ()) -> Source:
    t = tbl(coll)
    clauses = tuple(where(t) if callable(where) else where)
    return Source(t, geometry_kind(coll.geometry_type), clauses, coll.extent, coll.key_field,
                  columns)


def rows(db: psycopg.Connection, an: Analysis) -> list[dict[str, Any]]:
    c = an.stmt.compile(dialect=pg_psycopg.dialect(),
                        compile_kwargs={"render_postcompile": True})
    cur = db.execute(str(c), dict(c.params))
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def read(engine: Engine, coll: Collection, where: str = "") -> gpd.GeoDataFrame:
    sql = f'SELECT * FROM data."{coll.table}"' + (f" WHERE {where}" if where else "")
    gdf = gpd.read_postgis(sql, engine, geom_col="geom")
    return gdf.set_index(gdf["fid"].to_numpy())


def points_of(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Where each feature counts in a zone: itself, or its representative point."""
    if (gdf.geom_type == "Point").all():
        return gdf
    return gdf.set_geometry(gdf.representative_point())


def in_zones(a: gpd.GeoDataFrame, zones: gpd.GeoDataFrame) -> pd.DataFrame:
    """(fid of A, zone fid) pairs: A's representative points in the zones (lon/lat)."""
    j = gpd.sjoin(points_of(a)[["fid", "geom"]].rename(columns={"fid": "afid"}),
                  zones[["fid", "geom"]].rename(columns={"fid": "zfid"}), predicate="intersects")
    return j[["afid", "zfid"]]


# ---- aggregate ------------------------------------------------------------------------------

def test_aggregate_polygons_into_zones_matches_geopandas(db, engine, colls) -> None:
    b, d = colls["buildings"], colls["districts"]
    got = rows(db, aggregate(src(b), src(d, columns=("district",)), UTM, field="units"))
    bg, dg = read(engine, b), read(engine, d)
    pairs = in_zones(bg, dg).join(bg["units"], on="afid")
    exp = pairs.groupby("zfid").agg(n=("afid", "size"), s=("units", "sum"), m=("units", "mean"))
    area = dg.to_crs(UTM).area / 1e6
    assert [r["fid"] for r in got] == sorted(dg.index)
    assert sum(r["count"] for r in got) == len(bg) == len(pairs)
    for r in got:
        z = r["fid"]
        n = int(exp.n.get(z, 0))
        assert r["count"] == n and int(r["sum"]) == int(exp.s.get(z, 0)), z
        assert abs(float(r["area_km2"]) - area[z]) < AREA_TOL_KM2
        assert abs(float(r["count_per_km2"]) - n / area[z]) < 1e-4
        if n:
            assert abs(float(r["mean"]) - exp.m[z]) < 1e-6
            assert abs(float(r["sum_per_km2"]) - exp.s[z] / area[z]) < 1e-4
        assert r["district"] == dg.loc[z, "district"]


def test_aggregate_filters_restrict_the_layer_and_the_zones(db, engine, colls) -> None:
    c, d = colls["crashes"], colls["districts"]
    got = rows(db, aggregate(src(c, lambda t: [t.c.severity == "injury"]),
                             src(d, lambda t: [t.c.district <= 5]), UTM))
    cg = read(engine, c, "severity = 'injury'")
    dg = read(engine, d, "district <= 5")
    exp = in_zones(cg, dg).groupby("zfid").size()
    assert [r["fid"] for r in got] == sorted(dg.index) and len(got) == 5
    assert {r["fid"]: r["count"] for r in got} == {z: int(exp.get(z, 0)) for z in dg.index}
    everything = rows(db, aggregate(src(c), src(d, lambda t: [t.c.district <= 5]), UTM))
    assert sum(r["count"] for r in everything) > sum(r["count"] for r in got) > 0


def test_aggregate_says_when_there_are_too_many_zones(db, colls) -> None:
    got = rows(db, aggregate(src(colls["crashes"]), src(colls["districts"]), UTM, max_zones=5))
    assert len(got) == 6  # one more than allowed: the caller refuses the answer


# ---- coverage -------------------------------------------------------------------------------

def test_coverage_share_within_a_distance_matches_geopandas(db, engine, colls) -> None:
    b, d, m = colls["buildings"], colls["districts"], colls["metro-stations"]
    got = rows(db, coverage(src(b), src(d), src(m), UTM, distance=500, field="units"))
    bg, dg, mg = read(engine, b), read(engine, d), read(engine, m)
    near = gpd.sjoin(bg.to_crs(UTM)[["fid", "geom"]], mg.to_crs(UTM)[["geom"]],
                     predicate="dwithin", distance=500)
    covered = set(near["fid"])
    pairs = in_zones(bg, dg).join(bg["units"], on="afid")
    pairs["near"] = pairs.afid.isin(covered)
    total = pairs.groupby("zfid").units.sum()
    cov = pairs[pairs.near].groupby("zfid").units.sum()
    reach = shapely.union_all(mg.to_crs(UTM).buffer(500, quad_segs=16).values)
    dm = dg.to_crs(UTM)
    assert 0 < len(covered) < len(bg)
    for r in got:
        z = r["fid"]
        assert int(r["total"]) == int(total.get(z, 0)) and int(r["covered"]) == int(
            cov.get(z, 0)), z
        if r["total"]:
            assert abs(float(r["share"]) - cov.get(z, 0) / total[z]) < 1e-6
        inside = shapely.intersection(dm.geometry[z], reach).area / 1e6
        assert abs(float(r["catchment_km2"]) - inside) < AREA_TOL_KM2
        assert abs(float(r["area_share"]) - inside / (dm.geometry[z].area / 1e6)) < 1e-6


def test_coverage_facility_filter_and_catchment(db, engine, colls) -> None:
    b, d, s = colls["buildings"], colls["districts"], colls["bus-stops"]
    shelters = src(s, lambda t: [t.c.shelter.is_(True)])
    got = rows(db, coverage(src(b), src(d), shelters, UTM, distance=300))
    bg, dg = read(engine, b), read(engine, d)
    sg = read(engine, s, "shelter")
    near = set(gpd.sjoin(bg.to_crs(UTM)[["fid", "geom"]], sg.to_crs(UTM)[["geom"]],
                         predicate="dwithin", distance=300)["fid"])
    pairs = in_zones(bg, dg)
    exp = pairs[pairs.afid.isin(near)].groupby("zfid").size()
    assert {r["fid"]: int(r["covered"]) for r in got} == {z: int(exp.get(z, 0))
                                                          for z in dg.index}
    assert {r["fid"]: int(r["total"]) for r in got} == pairs.groupby("zfid").size().to_dict()
    parts = rows(db, catchment(shelters, UTM, distance=300))
    union = shapely.union_all(sg.to_crs(UTM).buffer(300, quad_segs=16).values)
    # each part's area is rounded to 1e-6 km²: the sum may be off by half of that per part
    assert abs(sum(float(p["area_km2"]) for p in parts) - union.area / 1e6) \
        < len(parts) * 5e-7 + AREA_TOL_KM2
    assert len(parts) == len(shapely.get_parts(union))
    assert sum(p["facilities"] for p in parts) == len(sg)


# ---- nearest --------------------------------------------------------------------------------

def _nearest_expected(a: gpd.GeoDataFrame, c: gpd.GeoDataFrame) -> pd.DataFrame:
    """sjoin_nearest in EPSG:32639: per feature of A its distance and the set of nearest
    facilities (all of them when tied)."""
    j = gpd.sjoin_nearest(a.to_crs(UTM)[["fid", "geom"]],
                          c.to_crs(UTM)[["fid", "geom"]].rename(columns={"fid": "cfid"}),
                          distance_col="d")
    return j.groupby("fid").agg(d=("d", "min"), ids=("cfid", lambda s: set(s)))


def _check_nearest(got: list[dict[str, Any]], exp: pd.DataFrame) -> None:
    assert len(got) == len(exp) == len({r["fid"] for r in got})
    for r in got:
        e = exp.loc[r["fid"]]
        assert abs(float(r["distance_m"]) - e.d) <= DIST_TOL_M, (r, e.d)
        assert r["nearest_fid"] in e.ids or abs(float(r["distance_m"]) - e.d) < DIST_TOL_M


@pytest.mark.parametrize("layer", ["schools", "crashes", "buildings", "landuse-parcels"])
def test_nearest_facility_matches_sjoin_nearest(db, engine, colls, layer: str) -> None:
    """Points take the Voronoi path, polygons the general one; both must agree with
    geopandas to the centimetre."""
    a, f = colls[layer], colls["fire-stations"]
    got = rows(db, nearest_features(src(a), src(f), UTM, geometry=False))
    _check_nearest(got, _nearest_expected(read(engine, a), read(engine, f)))


def test_nearest_with_points_on_voronoi_edges_and_on_facilities(db, engine, colls) -> None:
    """Points equidistant from two stations (on a cell edge), at the stations, and a single
    facility (no diagram at all) each get exactly one right answer."""
    f = colls["fire-stations"]
    fg = read(engine, f).to_crs(UTM)
    xy = shapely.get_coordinates(fg.geometry.values)
    mids = [(xy[i] + xy[j]) / 2 for i in range(len(xy)) for j in range(i + 1, len(xy))
            if np.hypot(*(xy[i] - xy[j])) < 4000]
    pts = gpd.GeoDataFrame({"fid": np.arange(1, len(mids) + len(xy) + 1)},
                           geometry=shapely.points(np.r_[np.array(mids), xy]),
                           crs=UTM).to_crs(4326).rename_geometry("geom")
    db.execute("DROP TABLE IF EXISTS public.analytics_edge_points")
    db.execute("CREATE TABLE public.analytics_edge_points (fid bigint PRIMARY KEY, "
               "geom geometry(Point, 4326))")
    with db.cursor().copy("COPY public.analytics_edge_points (fid, geom) FROM STDIN") as cp:
        for fid, g in zip(pts.fid, pts.geom, strict=True):
            cp.write_row((int(fid), f"SRID=4326;{g.wkt}"))
    db.execute("CREATE INDEX ON public.analytics_edge_points USING gist (geom)")
    db.execute("ANALYZE public.analytics_edge_points")
    try:
        t = table("analytics_edge_points", column("fid", BigInteger), column("geom"),
                  schema="public")
        edge = Source(t, "point", (), f.extent)
        got = rows(db, nearest_features(edge, src(f), UTM, geometry=False))
        pts = pts.set_index(pts["fid"].to_numpy())
        _check_nearest(got, _nearest_expected(pts, read(engine, f)))
        assert len(mids) > 20
        # the same answers written as CSV lines, several to a row (as the API streams them)
        text = "\n".join(r["line"] for r in rows(db, nearest_features(
            edge, src(f), UTM, geometry=False, line=csv_line))).replace(LINE_SEPARATOR, "\n")
        as_lines = pd.read_csv(io.StringIO(text), header=None,
                               names=["fid", "nearest_fid", "nearest_station_id", "distance_m"])
        assert sorted(as_lines.itertuples(index=False, name=None)) == sorted(
            (r["fid"], r["nearest_fid"], r["nearest_station_id"], float(r["distance_m"]))
            for r in got)
        one = src(f, lambda t: [t.c.station_id == 7])
        got = rows(db, nearest_features(edge, one, UTM, geometry=False))
        assert len(got) == len(pts) and {r["nearest_station_id"] for r in got} == {7}
        _check_nearest(got, _nearest_expected(pts, read(engine, f, "station_id = 7")))
        features = [json.loads(x[1:]) for r in rows(db, nearest_features(
            edge, one, UTM, line=feature_line)) for x in r["line"].split(LINE_SEPARATOR)]
        assert sorted(ft["id"] for ft in features) == sorted(pts.fid)
        assert {ft["properties"]["nearest_station_id"] for ft in features} == {7}
        assert all(ft["geometry"]["type"] == "Point" for ft in features)
    finally:
        db.execute("DROP TABLE IF EXISTS public.analytics_edge_points")


def test_nearest_summary_per_zone(db, engine, colls) -> None:
    a, f, d = colls["landuse-parcels"], colls["fire-stations"], colls["districts"]
    got = rows(db, nearest_by_zone(src(a, lambda t: [t.c.landuse == "residential"]), src(f),
                                   src(d), UTM))
    ag = read(engine, a, "landuse = 'residential'")
    exp = _nearest_expected(ag, read(engine, f))
    pairs = in_zones(ag, read(engine, d)).join(exp.d, on="afid")
    stats = pairs.groupby("zfid").d
    assert sum(r["count"] for r in got) == len(ag)
    for r in got:
        z = r["fid"]
        if r["count"] == 0:
            assert z not in stats.groups and r["median_m"] is None
            continue
        s = stats.get_group(z)
        assert r["count"] == len(s)
        for key, value in (("min_m", s.min()), ("mean_m", s.mean()), ("median_m", s.median()),
                           ("p90_m", s.quantile(0.9)), ("max_m", s.max())):
            assert abs(float(r[key]) - value) <= DIST_TOL_M, (z, key)


# ---- land-use mix ---------------------------------------------------------------------------

def _entropy(shares: pd.Series, k: int) -> float:
    p = shares[shares > 0]
    return float(-(p * np.log(p)).sum() / math.log(k)) if k > 1 else 0.0


@pytest.mark.parametrize("categories", [None, ("residential", "commercial", "mixed")])
def test_landuse_mix_entropy_matches_geopandas_overlay(db, engine, colls, categories) -> None:
    a, d = colls["landuse-parcels"], colls["districts"]
    got = rows(db, landuse_mix(src(a), src(d), UTM, field="landuse", categories=categories))
    ag, dg = read(engine, a), read(engine, d)
    if categories:
        ag = ag[ag.landuse.isin(categories)]
    k = len(categories) if categories else ag.landuse.nunique()
    pieces = gpd.overlay(ag.to_crs(UTM)[["landuse", "geom"]].assign(pfid=ag.index),
                         dg.to_crs(UTM)[["fid", "geom"]], how="intersection")
    pieces["m2"] = pieces.area
    full = ag.to_crs(UTM).area
    # slivers (under 0.1% of their parcel) where boundaries meet are not land use
    pieces = pieces[pieces.m2 >= 0.001 * pieces.pfid.map(full)]
    by = pieces.groupby(["fid", "landuse"]).m2.sum()
    for r in got:
        z = r["fid"]
        if z not in by.index.get_level_values(0):
            assert r["entropy"] is None and r["uses"] == 0
            continue
        areas = by.loc[z]
        shares = areas / areas.sum()
        assert abs(float(r["entropy"]) - _entropy(shares, k)) < 1e-6, z
        # a parcel on a zone's edge may count whole here and lose a sliver of a few m² in
        # the overlay (or the reverse): land-use area within one part in a million
        assert abs(float(r["landuse_km2"]) - areas.sum() / 1e6) < 1e-6 * areas.sum() / 1e6 \
            + AREA_TOL_KM2
        assert r["uses"] == int((shares > 0).sum())
        assert r["dominant"] == shares.idxmax()
        assert set(r["shares"]) == set(shares.index)
        for use, p in shares.items():
            assert abs(r["shares"][use] - p) < 1e-6
        assert 0 <= float(r["entropy"]) <= 1


# ---- hexagons -------------------------------------------------------------------------------

def _hexagon(i: int, j: int, size: float) -> shapely.Polygon:
    """PostGIS's hexagon (i, j), built here from its documented layout."""
    cx, cy = 1.5 * size * i, math.sqrt(3) * size * (j + (i % 2) / 2)
    return shapely.Polygon([(cx + size * math.cos(math.radians(60 * k)),
                             cy + size * math.sin(math.radians(60 * k))) for k in range(6)])


def test_hexbin_counts_and_sums_match_geopandas(db, engine, colls) -> None:
    b = colls["buildings"]
    size = 700.0
    got = rows(db, hexbin(src(b), UTM, size=size, field="units"))
    bg = read(engine, b)
    pts = points_of(bg).to_crs(UTM)
    hexes = gpd.GeoDataFrame({"ij": [(r["i"], r["j"]) for r in got]},
                             geometry=[_hexagon(r["i"], r["j"], size) for r in got], crs=UTM)
    j = gpd.sjoin(pts[["units", "geom"]], hexes, predicate="intersects")
    exp = j.groupby("ij").agg(n=("units", "size"), s=("units", "sum"))
    assert sum(r["count"] for r in got) == len(bg) == len(j)
    hex_km2 = 3 * math.sqrt(3) / 2 * size**2 / 1e6
    for r in got:
        ij = (r["i"], r["j"])
        assert r["count"] == exp.n[ij] and int(r["sum"]) == int(exp.s[ij])
        assert abs(float(r["count_per_km2"]) - r["count"] / hex_km2) < 1e-4
        centre = _hexagon(*ij, size).centroid
        assert math.hypot(r["_x"] - centre.x, r["_y"] - centre.y) < 1e-6


def test_hexbin_filter_and_empty_hexagons_of_the_study_area(db, engine, colls) -> None:
    c = colls["crashes"]
    fatal = rows(db, hexbin(src(c, lambda t: [t.c.severity == "fatal"]), UTM, size=500))
    n_fatal = len(read(engine, c, "severity = 'fatal'"))
    assert sum(r["count"] for r in fatal) == n_fatal > 0 and all(r["count"] for r in fatal)
    study = rows(db, hexbin(src(c), UTM, size=500, empty=True))
    full = rows(db, hexbin(src(c), UTM, size=500))
    assert {(r["i"], r["j"]) for r in full} < {(r["i"], r["j"]) for r in study}
    assert sum(r["count"] for r in study) == sum(r["count"] for r in full) == len(
        read(engine, c))
    hull = points_of(read(engine, c)).to_crs(UTM).union_all().convex_hull
    assert all(_hexagon(r["i"], r["j"], 500).intersects(hull.buffer(1)) for r in study)


# ---- traffic --------------------------------------------------------------------------------

def test_top_roads_by_volume_and_by_vc(db, engine, colls) -> None:
    r = colls["roads"]
    rg = read(engine, r)
    cols = tuple(c.name for c in r.columns)
    got = rows(db, top_roads(src(r, columns=cols), volume="aadt", capacity="capacity",
                             k_factor=0.09, by="vc", n=10))
    vc = (rg.aadt * 0.09 / rg.capacity).sort_values(ascending=False, kind="stable")
    assert [g["fid"] for g in got] == list(vc.index[:10])
    assert all(abs(float(g["vc"]) - vc[g["fid"]]) < 1e-4 for g in got)
    assert [g["rank"] for g in got] == list(range(1, 11))
    got = rows(db, top_roads(src(r, lambda t: [t.c.road_class == "collector"], cols),
                             volume="aadt", capacity=None, n=5))
    top = rg[rg.road_class == "collector"].aadt.sort_values(ascending=False)
    assert [g["aadt"] for g in got] == list(top.iloc[:5])


def test_crash_counts_per_segment_buffer_match_geopandas(db, engine, colls) -> None:
    c, r = colls["crashes"], colls["roads"]
    got = rows(db, segment_counts(src(c), src(r), UTM, distance=25))
    cg, rg = read(engine, c), read(engine, r)
    j = gpd.sjoin(cg.to_crs(UTM)[["geom"]], rg.to_crs(UTM)[["fid", "geom"]],
                  predicate="dwithin", distance=25)
    exp = j.groupby("fid").size()
    assert len(got) == len(rg)
    assert {g["fid"]: g["count"] for g in got} == {f: int(exp.get(f, 0)) for f in rg.index}
    length = rg.to_crs(UTM).length
    assert all(abs(float(g["length_m"]) - length[g["fid"]]) < 0.05 for g in got)


def test_getis_ord_gi_star_equals_the_formula(db, colls) -> None:
    """esda's Gi* z-scores on the crash counts per hexagon, against Getis and Ord's formula
    written out with numpy (binary weights, each unit its own neighbour)."""
    size = 600.0
    got = rows(db, hexbin(src(colls["crashes"]), UTM, size=size, empty=True))
    y = np.array([g["count"] for g in got], dtype=float)
    xy = np.array([(g["_x"], g["_y"]) for g in got])
    gi = getis_ord_star(y, xy, hex_band(size), permutations=99)
    d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    w = (d <= hex_band(size)).astype(float)
    n, mean = len(y), y.mean()
    s = math.sqrt((y**2).mean() - mean**2)
    wi = w.sum(axis=1)
    z = (w @ y - mean * wi) / (s * np.sqrt((n * (w**2).sum(axis=1) - wi**2) / (n - 1)))
    assert np.allclose(gi.z, z, atol=1e-9)
    assert 1 <= (w.sum(axis=1) - 1).max() <= 6  # hexagons: at most six neighbours
    assert np.array_equal(gi.neighbours, (w.sum(axis=1) - 1).astype(int))
    from scipy.stats import norm
    assert np.allclose(gi.p_norm, np.minimum(2 * norm.sf(np.abs(z)), 1))
    assert gi.p_sim is not None and ((gi.p_sim > 0) & (gi.p_sim <= 1)).all()
    hot = [c for c in gi.classes() if c.startswith("hot")]
    assert hot and all(zz > 1.64 for zz, c in zip(gi.z, gi.classes(), strict=True)
                       if c.startswith("hot"))
