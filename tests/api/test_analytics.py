"""/analytics/* over real HTTP on the demo city: each analysis against the same computation
done independently with geopandas on the same tables (read_postgis; distances and areas in
EPSG:32639), filters restricting the inputs, the three formats (GeoJSON, CSV, HTML page with
a map) and clear 400s for bad parameters.

Tolerances: counts and sums exact; areas within 1 m² (1e-6 km²); distances within 1 cm
(answers are rounded to the centimetre); shares and entropy within 1e-6; Gi* z-scores within
1e-3 (rounded to 4 decimals)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from typing import Any

import geopandas as gpd
import httpx
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url

UTM = 32639


@pytest.fixture(scope="module")
def engine(database_url: str, demo_loaded: dict) -> Iterator[Engine]:
    eng = create_engine(make_url(database_url).set(drivername="postgresql+psycopg"))
    yield eng
    eng.dispose()


def read(engine: Engine, slug: str, where: str = "") -> gpd.GeoDataFrame:
    with engine.connect() as conn:
        table = conn.exec_driver_sql(
            "SELECT v.table_name FROM catalog.datasets d JOIN catalog.versions v "
            "ON v.id = d.current_version_id WHERE d.slug = %s", (slug,)).scalar_one()
    sql = f'SELECT * FROM data."{table}"' + (f" WHERE {where}" if where else "")
    gdf = gpd.read_postgis(sql, engine, geom_col="geom")
    return gdf.set_index(gdf["fid"].to_numpy())


def rep_points(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if (gdf.geom_type == "Point").all():
        return gdf
    return gdf.set_geometry(gdf.representative_point())


def zone_of(a: gpd.GeoDataFrame, zones: gpd.GeoDataFrame) -> pd.Series:
    """The zone (fid) each feature of A counts in, by its representative point."""
    j = gpd.sjoin(rep_points(a)[["geom"]], zones[["fid", "geom"]], predicate="intersects")
    return j["fid"]


def get(http: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    r = http.get(path, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/geo+json")
    body = r.json()
    assert body["type"] == "FeatureCollection"
    return body


def props(body: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    return {f["id"]: f["properties"] for f in body["features"]}


def problem(http: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    r = http.get(path, params=params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


# ---- each analysis against geopandas ---------------------------------------------------------

def test_aggregate_housing_units_per_district(http, engine) -> None:
    body = get(http, "/analytics/aggregate", layer="buildings", zones="districts", field="units")
    b, d = read(engine, "buildings"), read(engine, "districts")
    z = zone_of(b, d)
    n, s = z.value_counts(), b["units"].groupby(z).sum()
    area = d.to_crs(UTM).area / 1e6
    got = props(body)
    assert sorted(got) == sorted(d.index) and body["numberReturned"] == len(d)
    for zid, p in got.items():
        assert p["count"] == int(n.get(zid, 0)) and p["sum"] == int(s.get(zid, 0))
        assert abs(p["area_km2"] - area[zid]) < 1e-6
        assert abs(p["sum_per_km2"] - s.get(zid, 0) / area[zid]) < 1e-4
        assert p["name_en"] == d.loc[zid, "name_en"]
    assert all(f["geometry"]["type"] == "MultiPolygon" for f in body["features"])
    assert body["analysis"] == "aggregate" and body["parameters"]["field"] == "units"


def test_aggregate_filters_restrict_the_inputs(http, engine) -> None:
    body = get(http, "/analytics/aggregate", layer="crashes", zones="districts",
               filter="severity = 'injury' AND vehicles >= 2", **{"zones-filter": "district > 15"})
    c = read(engine, "crashes", "severity = 'injury' AND vehicles >= 2")
    d = read(engine, "districts", "district > 15")
    n = zone_of(c, d).value_counts()
    got = props(body)
    assert sorted(got) == sorted(d.index) and len(got) == 7
    assert {k: p["count"] for k, p in got.items()} == {k: int(n.get(k, 0)) for k in d.index}
    everything = props(get(http, "/analytics/aggregate", layer="crashes", zones="districts",
                           **{"zones-filter": "district > 15"}))
    assert sum(p["count"] for p in everything.values()) > sum(p["count"] for p in got.values())


def test_coverage_of_homes_near_metro_stations(http, engine) -> None:
    body = get(http, "/analytics/coverage", layer="buildings", zones="districts",
               facilities="metro-stations", distance=500, field="units")
    b, d, m = read(engine, "buildings"), read(engine, "districts"), read(engine, "metro-stations")
    near = gpd.sjoin(b.to_crs(UTM)[["geom"]], m.to_crs(UTM)[["geom"]], predicate="dwithin",
                     distance=500).index.unique()
    z = zone_of(b, d)
    total = b["units"].groupby(z).sum()
    covered = b.loc[b.index.isin(near), "units"].groupby(z[z.index.isin(near)]).sum()
    for zid, p in props(body).items():
        assert p["total"] == int(total.get(zid, 0)) and p["covered"] == int(covered.get(zid, 0))
        if p["total"]:
            assert abs(p["share"] - covered.get(zid, 0) / total[zid]) < 1e-6
    catch = get(http, "/analytics/coverage", facilities="metro-stations", distance=500,
                layer="buildings", output="catchment")
    union = m.to_crs(UTM).buffer(500, quad_segs=16).union_all()
    assert abs(sum(f["properties"]["area_km2"] for f in catch["features"]) - union.area / 1e6) \
        < len(catch["features"]) * 5e-7 + 1e-6
    assert sum(f["properties"]["facilities"] for f in catch["features"]) == len(m)


def test_nearest_fire_station_of_every_parcel_csv_streamed(http, engine) -> None:
    r = http.get("/analytics/nearest", params={"layer": "landuse-parcels",
                                               "facilities": "fire-stations", "f": "csv",
                                               "filter": "landuse <> 'vacant'"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    a = read(engine, "landuse-parcels", "landuse <> 'vacant'")
    f = read(engine, "fire-stations")
    j = gpd.sjoin_nearest(a.to_crs(UTM)[["geom"]], f.to_crs(UTM)[["fid", "geom"]],
                          distance_col="d")
    best = j.groupby(level=0).d.min()
    nearest = j.groupby(level=0).fid.apply(set)
    assert len(rows) == len(a) == len({r["fid"] for r in rows})
    assert set(rows[0]) == {"fid", "parcel_id", "nearest_fid", "nearest_station_id",
                            "distance_m"}
    for row in rows:
        fid = int(row["fid"])
        assert abs(float(row["distance_m"]) - best[fid]) <= 0.01
        assert int(row["nearest_fid"]) in nearest[fid] or \
            abs(float(row["distance_m"]) - best[fid]) < 0.01
        assert int(row["nearest_station_id"]) == f.loc[int(row["nearest_fid"]), "station_id"]


def test_nearest_to_the_one_facility_a_filter_leaves(http, engine) -> None:
    r = http.get("/analytics/nearest", params={"layer": "crashes", "facilities": "fire-stations",
                                               "facilities-filter": "station_id = 7",
                                               "filter": "fatalities > 0", "f": "csv"})
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    c = read(engine, "crashes", "fatalities > 0")
    station = read(engine, "fire-stations", "station_id = 7").to_crs(UTM).geometry.iloc[0]
    d = c.to_crs(UTM).distance(station)
    assert len(rows) == len(c) > 0 and {row["nearest_station_id"] for row in rows} == {"7"}
    assert all(abs(float(row["distance_m"]) - d[int(row["fid"])]) <= 0.01 for row in rows)


def test_nearest_as_geojson_and_per_zone(http, engine) -> None:
    body = get(http, "/analytics/nearest", layer="schools", facilities="hospitals")
    s, h = read(engine, "schools"), read(engine, "hospitals")
    j = gpd.sjoin_nearest(s.to_crs(UTM)[["geom"]], h.to_crs(UTM)[["geom"]], distance_col="d")
    best = j.groupby(level=0).d.min()
    assert len(body["features"]) == len(s)
    for feat in body["features"]:
        assert feat["geometry"]["type"] == "Point"
        assert abs(feat["properties"]["distance_m"] - best[feat["id"]]) <= 0.01
    zones = get(http, "/analytics/nearest", layer="schools", facilities="hospitals",
                zones="districts")
    z = zone_of(s, read(engine, "districts"))
    med = best.groupby(z).median()
    for zid, p in props(zones).items():
        assert p["count"] == int((z == zid).sum())
        if p["count"]:
            assert abs(p["median_m"] - med[zid]) <= 0.01


def test_landuse_mix_entropy(http, engine) -> None:
    body = get(http, "/analytics/landuse-mix", layer="landuse-parcels", zones="districts")
    a, d = read(engine, "landuse-parcels"), read(engine, "districts")
    pieces = gpd.overlay(a.to_crs(UTM)[["landuse", "geom"]].assign(pfid=a.index),
                         d.to_crs(UTM)[["fid", "geom"]], how="intersection")
    pieces["m2"] = pieces.area
    pieces = pieces[pieces.m2 >= 0.001 * pieces.pfid.map(a.to_crs(UTM).area)]  # no slivers
    by = pieces.groupby(["fid", "landuse"]).m2.sum()
    k = a.landuse.nunique()
    for zid, p in props(body).items():
        shares = by.loc[zid] / by.loc[zid].sum()
        h = float(-(shares * np.log(shares)).sum() / math.log(k))
        assert abs(p["entropy"] - h) < 1e-6 and 0 <= p["entropy"] <= 1
        assert p["dominant"] == shares.idxmax()
        assert abs(p["shares"][p["dominant"]] - shares.max()) < 1e-6


def test_hexbin_counts_every_crash_once(http, engine) -> None:
    body = get(http, "/analytics/hexbin", layer="crashes", size=400, filter="severity='damage'")
    c = read(engine, "crashes", "severity = 'damage'")
    got = body["features"]
    assert sum(f["properties"]["count"] for f in got) == len(c)
    hexes = gpd.GeoDataFrame(
        {"hid": [f["id"] for f in got]},
        geometry=gpd.GeoSeries.from_wkt([_hexagon_wkt(f["properties"]["i"],
                                                      f["properties"]["j"], 400)
                                         for f in got]), crs=UTM)
    n = gpd.sjoin(c.to_crs(UTM)[["geom"]], hexes, predicate="intersects").hid.value_counts()
    assert {f["id"]: f["properties"]["count"] for f in got} == n.to_dict()


def _hexagon_wkt(i: int, j: int, size: float) -> str:
    cx, cy = 1.5 * size * i, math.sqrt(3) * size * (j + (i % 2) / 2)
    pts = [(cx + size * math.cos(math.radians(60 * k)), cy + size * math.sin(math.radians(60 * k)))
           for k in (*range(6), 0)]
    return "POLYGON((" + ", ".join(f"{x!r} {y!r}" for x, y in pts) + "))"


def test_traffic_top_roads_by_volume_over_capacity(http, engine) -> None:
    body = get(http, "/analytics/traffic", kind="top-roads", layer="roads", by="vc",
               **{"k-factor": 0.09, "n": 7})
    r = read(engine, "roads")
    vc = (r.aadt * 0.09 / r.capacity).sort_values(ascending=False, kind="stable")
    assert [f["id"] for f in body["features"]] == list(vc.index[:7])
    assert [f["properties"]["rank"] for f in body["features"]] == list(range(1, 8))


def test_traffic_crash_hotspots_per_segment_with_gi_star(http, engine) -> None:
    body = get(http, "/analytics/traffic", kind="hotspots", layer="crashes", by="segment",
               roads="roads", distance=30, significance="true", permutations=99)
    c, r = read(engine, "crashes"), read(engine, "roads")
    n = gpd.sjoin(c.to_crs(UTM)[["geom"]], r.to_crs(UTM)[["fid", "geom"]], predicate="dwithin",
                  distance=30).fid.value_counts()
    got = props(body)
    assert {k: p["count"] for k, p in got.items()} == {k: int(n.get(k, 0)) for k in r.index}
    # Getis-Ord Gi*, written out: binary weights within 500 m of the segments' centres
    ids = list(got)
    y = np.array([got[k]["count"] for k in ids], dtype=float)
    xy = np.array([(p.x, p.y) for p in r.to_crs(UTM).loc[ids].centroid])
    w = (np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1]) <= 500)
    w = w.astype(float)
    wi, nn, mean = w.sum(1), len(y), y.mean()
    s = math.sqrt((y**2).mean() - mean**2)
    z = (w @ y - mean * wi) / (s * np.sqrt((nn * (w**2).sum(1) - wi**2) / (nn - 1)))
    assert np.allclose([got[k]["gi_z"] for k in ids], z, atol=1e-3)
    assert {p["hotspot"] for p in got.values()} >= {"not significant"}
    assert any(p["hotspot"].startswith("hot spot") for p in got.values())
    assert body["hotspots"]["permutations"] == 99


def test_traffic_hotspots_per_hexagon_without_significance(http, engine) -> None:
    body = get(http, "/analytics/traffic", kind="hotspots", layer="crashes", size=800)
    assert sum(f["properties"]["count"] for f in body["features"]) == len(read(engine,
                                                                               "crashes"))
    assert any(f["properties"]["count"] == 0 for f in body["features"])  # the study area
    assert "gi_z" not in body["features"][0]["properties"]


# ---- formats --------------------------------------------------------------------------------

def test_csv_of_a_zone_analysis(http) -> None:
    r = http.get("/analytics/aggregate", params={"layer": "crashes", "zones": "districts",
                                                 "field": "injuries", "f": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:2] == ["fid", "district"] and rows[0][-3:] == ["sum", "mean", "sum_per_km2"]
    assert len(rows) == 23
    assert "attachment" in r.headers["content-disposition"]


def test_html_page_with_a_choropleth_and_a_table(http) -> None:
    r = http.get("/analytics/coverage", params={"layer": "buildings", "zones": "districts",
                                                "facilities": "bus-stops", "distance": 300,
                                                "f": "html", "lang": "fa"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert 'dir="rtl"' in html and "<iframe" in html and "srcdoc=" in html
    assert "L.map" in html or "L.geoJson" in html or "leaflet" in html.lower()
    assert html.count("<tr>") == 1 + 22  # header and one row per district
    assert "fitBounds" in html  # the map is fitted to the zones
    assert "cdn.jsdelivr" not in html and "unpkg.com" not in html  # served by Shahr
    browser = http.get("/analytics/aggregate", params={"layer": "crashes", "zones": "districts"},
                       headers={"accept": "text/html,application/xhtml+xml"})
    assert browser.headers["content-type"].startswith("text/html")


def test_index_lists_every_analysis(http) -> None:
    r = http.get("/analytics")
    ids = [a["id"] for a in r.json()["analyses"]]
    assert ids == ["aggregate", "coverage", "nearest", "landuse-mix", "hexbin", "traffic"]
    spec = http.get("/openapi.json").json()
    assert all(f"/analytics/{i}" in spec["paths"] for i in ids)


# ---- bad parameters -------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "params", "parameter", "words"), [
    ("aggregate", {"layer": "nope", "zones": "districts"}, "layer", "no dataset 'nope'"),
    ("aggregate", {"layer": "crashes", "zones": "roads"}, "zones", "must be polygons"),
    ("aggregate", {"layer": "crashes"}, "zones", "is required"),
    ("aggregate", {"layer": "crashes", "zones": "districts", "field": "severity"}, "field",
     "numeric properties"),
    ("aggregate", {"layer": "crashes", "zones": "districts", "zones-filter": "nope = 1"},
     "zones-filter", "nope"),
    ("aggregate", {"layer": "crashes", "zones": "districts", "filter": "severity ="},
     "filter", ""),
    ("aggregate", {"layer": "crashes", "zones": "districts", "radius": "5"}, "radius",
     "accepted"),
    ("coverage", {"layer": "buildings", "zones": "districts", "facilities": "bus-stops",
                  "distance": "-300"}, "distance", "more than 0"),
    ("coverage", {"layer": "buildings", "zones": "districts", "facilities": "bus-stops",
                  "distance": "far"}, "distance", "not a number"),
    ("coverage", {"layer": "buildings", "zones": "districts", "facilities": "bus-stops",
                  "distance": "300", "facilities-filter": "stop_id < 0"}, "facilities-filter",
     "no feature"),
    ("nearest", {"layer": "schools", "facilities": "hospitals", "output": "zones"}, "output",
     "zones"),
    ("landuse-mix", {"layer": "schools", "zones": "districts"}, "layer", "must be polygons"),
    ("landuse-mix", {"layer": "landuse-parcels", "zones": "districts", "categories": "x"},
     "categories", "2 to"),
    ("hexbin", {"layer": "crashes", "size": "1"}, "size", "at least 10"),
    ("hexbin", {"layer": "crashes", "size": "12"}, "size", "hexagons"),
    ("traffic", {"layer": "roads"}, "kind", "top-roads, hotspots"),
    ("traffic", {"kind": "top-roads", "layer": "roads", "n": "0"}, "n", "1 to 1000"),
    ("traffic", {"kind": "top-roads", "layer": "crashes", "volume": "severity"}, "volume",
     "numeric"),
    ("traffic", {"kind": "hotspots", "layer": "crashes", "by": "segment"}, "roads",
     "is required"),
    ("traffic", {"kind": "hotspots", "layer": "crashes", "permutations": "-1"},
     "permutations", "0 to 9999"),
    ("aggregate", {"layer": "crashes", "zones": "districts", "f": "xml"}, "f", "csv"),
])
def test_bad_parameters_are_a_clear_400(http, path, params, parameter, words) -> None:
    p = problem(http, f"/analytics/{path}", **params)
    assert p["parameter"] == parameter
    assert p["detail"].startswith(f"{parameter}:") and words in p["detail"]


def test_unknown_analysis_is_404(http) -> None:
    r = http.get("/analytics/kriging")
    assert r.status_code == 404 and "aggregate" in r.json()["detail"]
