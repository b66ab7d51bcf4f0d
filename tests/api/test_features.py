"""OGC API Features Parts 1-2 and the spatial query parameters, over real HTTP against the
demo city in PostGIS. Every answer is compared with an independent computation: the rows
read straight from the dataset's table with psycopg, and shapely/pyproj on them (never the
service's own SQL builders)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import numpy
import psycopg
import pytest
import shapely
from pyproj import Geod, Transformer
from serving import serve
from shapely.geometry import box, mapping, shape

from catalog.database import libpq_dsn
from catalog.settings import Settings
from support import current_table

pytestmark = pytest.mark.usefixtures("demo_loaded")

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG = "http://www.opengis.net/def/crs/EPSG/0/{}"
GEOJSON = "application/geo+json"
PROBLEM = "application/problem+json"
GEOD = Geod(ellps="WGS84")
# A rectangle in the middle of the demo city (lon/lat).
LON0, LAT0, LON1, LAT1 = 51.33, 35.66, 51.45, 35.73
CENTRE = (51.40, 35.70)

Rows = dict[int, dict[str, Any]]


# ---- independent data: the table as PostGIS holds it --------------------------------------

def _plain(v: Any) -> Any:
    return v.isoformat() if isinstance(v, date) else v


@pytest.fixture(scope="module")
def table(database_url: str) -> Callable[[str], Rows]:
    """slug -> {fid: {column: value, ..., "geometry": shapely}} read with psycopg."""
    cache: dict[str, Rows] = {}

    def get(slug: str) -> Rows:
        if slug not in cache:
            with psycopg.connect(libpq_dsn(database_url)) as db:
                name = current_table(db, slug)
                cur = db.execute(f"SELECT *, ST_AsBinary(geom) AS wkb__ FROM {name} "
                                 "ORDER BY fid")
                cols = [d.name for d in cur.description]
                rows: Rows = {}
                for rec in cur:
                    d = dict(zip(cols, rec, strict=True))
                    d.pop("geom")
                    d.pop("_geom_3857", None)  # internal: the Web Mercator copy
                    geom = shapely.from_wkb(bytes(d.pop("wkb__")))
                    fid = d.pop("fid")
                    rows[fid] = {k: _plain(v) for k, v in d.items()} | {"geometry": geom}
            cache[slug] = rows
        return cache[slug]
    return get


def props(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "geometry"}


# ---- HTTP helpers -------------------------------------------------------------------------

def get_json(http: httpx.Client, url: str, **params: Any) -> dict[str, Any]:
    r = http.get(url, params=params or None)
    assert r.status_code == 200, (url, params, r.text[:500])
    return r.json()


def rel(doc: dict[str, Any], name: str) -> str | None:
    return next((x["href"] for x in doc.get("links", []) if x["rel"] == name), None)


def walk(http: httpx.Client, url: str, params: dict[str, Any] | None = None,
         direction: str = "next", max_pages: int = 500) -> list[dict[str, Any]]:
    """The pages from `url`, following `direction` links to the end."""
    pages = []
    doc = get_json(http, url, **(params or {}))
    pages.append(doc)
    while (nxt := rel(doc, direction)) is not None:
        assert len(pages) < max_pages, "paging does not end"
        doc = get_json(http, nxt)
        pages.append(doc)
    return pages


def ids(doc: dict[str, Any]) -> list[int]:
    return [f["id"] for f in doc["features"]]


def all_ids(http: httpx.Client, slug: str, **params: Any) -> list[int]:
    params.setdefault("limit", 1000)
    out = [i for page in walk(http, f"/collections/{slug}/items", params) for i in ids(page)]
    assert len(out) == len(set(out)), "a feature came twice"
    return out


def problem(r: httpx.Response, status: int = 400, *words: str) -> dict[str, Any]:
    assert r.status_code == status, (r.request.url, r.status_code, r.text[:400])
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    for w in words:
        assert w.lower() in body["detail"].lower(), (w, body["detail"])
    return body


def coords(geom: dict[str, Any]) -> list[tuple[float, ...]]:
    """Every coordinate of a GeoJSON geometry, in order."""
    out: list[tuple[float, ...]] = []

    def walk_(c: Any) -> None:
        if c and isinstance(c[0], int | float):
            out.append(tuple(c))
        else:
            for x in c:
                walk_(x)
    walk_(geom["coordinates"])
    return out


# ---- landing page, conformance, collections -----------------------------------------------

def test_landing_page_links_resolve(http: httpx.Client) -> None:
    doc = get_json(http, "/")
    rels = {x["rel"]: x["href"] for x in doc["links"]}
    for name in ("self", "service-desc", "service-doc", "conformance", "data"):
        assert name in rels, name
        assert http.get(rels[name]).status_code == 200, name
    assert rels["data"].endswith("/collections")


def test_conformance_declares_the_classes(http: httpx.Client) -> None:
    classes = set(get_json(http, "/conformance")["conformsTo"])
    spec = "http://www.opengis.net/spec"
    for c in ("ogcapi-features-1/1.0/conf/core", "ogcapi-features-1/1.0/conf/geojson",
              "ogcapi-features-1/1.0/conf/html", "ogcapi-features-2/1.0/conf/crs",
              "ogcapi-features-3/1.0/conf/filter", "ogcapi-features-3/1.0/conf/queryables",
              "cql2/1.0/conf/cql2-text", "cql2/1.0/conf/cql2-json",
              "cql2/1.0/conf/basic-spatial-functions", "cql2/1.0/conf/temporal-functions",
              "cql2/1.0/conf/arithmetic"):
        assert f"{spec}/{c}" in classes, c
    # Accent-insensitive comparison is not implemented, so it is not claimed.
    assert not any("accent" in c for c in classes)


def test_collections_are_the_published_datasets(http: httpx.Client, database_url: str,
                                                table: Callable[[str], Rows]) -> None:
    doc = get_json(http, "/collections")
    with psycopg.connect(libpq_dsn(database_url)) as db:
        slugs = {r[0] for r in db.execute(
            "SELECT slug FROM catalog.datasets WHERE current_version_id IS NOT NULL")}
    got = {c["id"]: c for c in doc["collections"]}
    assert set(got) == slugs  # other tests may have published more than the demo city
    assert {"crashes", "districts", "bus-stops", "roads", "landuse-parcels", "buildings",
            "schools", "hospitals", "fire-stations", "metro-lines", "metro-stations",
            "traffic-sensors"} <= slugs
    for slug in ("crashes", "districts", "bus-stops", "roads"):
        c = got[slug]
        rows = table(slug)
        assert c["numberOfFeatures"] == len(rows)
        x0, y0, x1, y1 = shapely.union_all([r["geometry"] for r in rows.values()]).bounds
        assert c["extent"]["spatial"]["bbox"][0] == pytest.approx([x0, y0, x1, y1], abs=1e-6)
        assert c["extent"]["spatial"]["crs"] == CRS84
        assert {CRS84, EPSG.format(4326), EPSG.format(3857), EPSG.format(32639)} <= \
            set(c["crs"])
        assert c["storageCrs"] == CRS84
        rels = {x["rel"] for x in c["links"]}
        assert {"self", "items", "http://www.opengis.net/def/rel/ogc/1.0/queryables"} <= rels
    assert got["crashes"]["extent"]["temporal"]["interval"] == [["2022-03-21", "2024-03-19"]]
    one = get_json(http, "/collections/districts")
    assert one["id"] == "districts" and one["title"] == "Municipal districts"


def test_unknown_collection_is_404(http: httpx.Client) -> None:
    for path in ("/collections/nope", "/collections/nope/items", "/collections/nope/items/1",
                 "/collections/nope/queryables"):
        problem(http.get(path), 404, "no collection 'nope'", "districts")


# ---- paging -------------------------------------------------------------------------------

def test_next_links_walk_every_feature_once_in_id_order(http: httpx.Client,
                                                        table: Callable[[str], Rows]) -> None:
    expected = list(table("crashes"))
    pages = walk(http, "/collections/crashes/items", {"limit": 100})
    assert len(pages) == math.ceil(len(expected) / 100)
    got = [i for p in pages for i in ids(p)]
    assert got == expected
    for n, page in enumerate(pages):
        assert page["numberMatched"] == len(expected)
        assert page["numberReturned"] == len(page["features"]) <= 100
        assert (rel(page, "prev") is None) == (n == 0)
        assert "offset" not in (rel(page, "next") or "")  # keyset links
    assert rel(pages[-1], "next") is None


def test_prev_links_walk_back_to_the_first_page(http: httpx.Client,
                                                table: Callable[[str], Rows]) -> None:
    forward = walk(http, "/collections/crashes/items", {"limit": 64})
    back = walk(http, rel(forward[-1], "prev") or "", direction="prev")
    assert [ids(p) for p in reversed(back)] == [ids(p) for p in forward[:-1]]
    assert rel(back[-1], "prev") is None
    # and forward again from a page reached backwards
    assert ids(get_json(http, rel(back[-1], "next") or "")) == ids(forward[1])


def test_deep_pages_with_after_and_before(http: httpx.Client,
                                          table: Callable[[str], Rows]) -> None:
    fids = list(table("crashes"))
    assert ids(get_json(http, "/collections/crashes/items", after=fids[500], limit=10)) == \
        fids[501:511]
    assert ids(get_json(http, "/collections/crashes/items", before=fids[500], limit=10)) == \
        fids[490:500]
    assert ids(get_json(http, "/collections/crashes/items", after=-1, limit=3)) == fids[:3]
    beyond = get_json(http, "/collections/crashes/items", after=fids[-1])
    assert beyond["features"] == [] and rel(beyond, "next") is None
    last = get_json(http, "/collections/crashes/items", after=fids[-6], limit=5)
    assert ids(last) == fids[-5:] and rel(last, "next") is None


def test_keyset_page_is_an_index_range_scan(database_url: str) -> None:
    """A deep page reads from the primary key onwards instead of skipping rows (EXPLAIN)."""
    from api.query import compile_sql, items_statement, parse_params
    from catalog.collections import load_collections

    with psycopg.connect(libpq_dsn(database_url)) as db:
        coll = load_collections(db)["landuse-parcels"]
        q = parse_params(coll, {"after": "1200", "limit": "10"}, default_limit=10,
                         max_limit=100)
        sql, params = compile_sql(items_statement(q))
        db.execute("SET enable_seqscan = off")  # tiny table: ask what an index can do
        plan = "\n".join(r[0] for r in db.execute(f"EXPLAIN {sql}", params))
    assert "Index Scan" in plan and "fid > " in plan, plan
    assert "Offset" not in plan and "Sort" not in plan.split("Aggregate")[1], plan


def test_sorted_pages_are_keyset_pages_too(http: httpx.Client,
                                           table: Callable[[str], Rows]) -> None:
    rows = table("buildings")
    assert any(r["year_built"] is None for r in rows.values())  # nulls come last

    def key(item: tuple[int, dict[str, Any]]) -> tuple[Any, ...]:
        fid, r = item
        y = r["year_built"]
        return (y is None, "" if y is None else "".join(chr(0x10FFFF - ord(c)) for c in y),
                r["floors"] is None, r["floors"] or 0, fid)
    expected = [fid for fid, _ in sorted(rows.items(), key=key)]
    params = {"sortby": "-year_built,+floors", "limit": 97}
    pages = walk(http, "/collections/buildings/items", params)
    assert [i for p in pages for i in ids(p)] == expected
    assert all("after=" in (rel(p, "next") or "after=") for p in pages)
    assert all("offset" not in (rel(p, "next") or "") for p in pages)
    back = walk(http, rel(pages[-1], "prev") or "", direction="prev")
    assert [ids(p) for p in reversed(back)] == [ids(p) for p in pages[:-1]]
    problem(http.get("/collections/buildings/items", params={**params, "after": 10**9}),
            400, "after", "no feature")


def test_paging_a_filtered_request(http: httpx.Client, table: Callable[[str], Rows]) -> None:
    area = box(LON0, LAT0, LON1, LAT1)
    expected = [fid for fid, r in table("crashes").items()
                if r["severity"] == "injury" and area.intersects(r["geometry"])]
    pages = walk(http, "/collections/crashes/items",
                 {"bbox": f"{LON0},{LAT0},{LON1},{LAT1}", "severity": "injury", "limit": 7})
    assert [i for p in pages for i in ids(p)] == expected
    assert {p["numberMatched"] for p in pages} == {len(expected)}


def test_offset_paging_when_asked(http: httpx.Client, table: Callable[[str], Rows]) -> None:
    fids = list(table("crashes"))
    doc = get_json(http, "/collections/crashes/items", offset=20, limit=10)
    assert ids(doc) == fids[20:30]
    assert parse_qs(urlparse(rel(doc, "next") or "").query)["offset"] == ["30"]
    assert parse_qs(urlparse(rel(doc, "prev") or "").query)["offset"] == ["10"]
    problem(http.get("/collections/crashes/items", params={"offset": 5, "after": 3}), 400,
            "offset")
    problem(http.get("/collections/crashes/items", params={"after": 5, "before": 30}), 400,
            "after", "before")


def test_post_search_pages_with_post_links(http: httpx.Client,
                                           table: Callable[[str], Rows]) -> None:
    body = {"filter": {"op": "=", "args": [{"property": "severity"}, "fatal"]}}
    expected = [fid for fid, r in table("crashes").items() if r["severity"] == "fatal"]
    r = http.post("/collections/crashes/items/search", params={"limit": 5}, json=body)
    assert r.status_code == 200, r.text
    got, doc = ids(r.json()), r.json()
    while (nxt := next((x for x in doc["links"] if x["rel"] == "next"), None)) is not None:
        assert nxt["method"] == "POST" and nxt["body"] == body
        doc = http.post(nxt["href"], json=nxt["body"]).json()
        got += ids(doc)
    assert got == expected


# ---- limit and numberMatched --------------------------------------------------------------

def test_limit_default_and_bounds(http: httpx.Client, settings: Settings) -> None:
    assert len(get_json(http, "/collections/crashes/items")["features"]) == 10
    assert len(get_json(http, "/collections/crashes/items", limit=1)["features"]) == 1
    for bad in ("0", "-1", "abc", "1.5", "", "1e3"):
        problem(http.get("/collections/crashes/items", params={"limit": bad}), 400, "limit")
    small = settings.model_copy(update={"max_limit": 50, "default_limit": 7})
    with serve(small) as base, httpx.Client(base_url=base, timeout=30) as other:
        assert len(get_json(other, "/collections/crashes/items")["features"]) == 7
        # above the maximum is not an error: the page is the maximum, with a next link
        doc = get_json(other, "/collections/crashes/items", limit=100000)
        assert doc["numberReturned"] == 50 and rel(doc, "next") is not None


def test_number_matched(http: httpx.Client, table: Callable[[str], Rows]) -> None:
    rows = table("crashes")
    assert get_json(http, "/collections/crashes/items")["numberMatched"] == len(rows)
    fatal = sum(r["severity"] == "fatal" for r in rows.values())
    assert get_json(http, "/collections/crashes/items", severity="fatal")["numberMatched"] \
        == fatal
    assert get_json(http, "/collections/crashes/items", severity="fatal",
                    count="exact")["numberMatched"] == fatal
    assert get_json(http, "/collections/crashes/items", filter="vehicles >= 3",
                    count="exact")["numberMatched"] == \
        sum(r["vehicles"] >= 3 for r in rows.values())
    problem(http.get("/collections/crashes/items", params={"count": "maybe"}), 400, "count",
            "exact")
    nearest = get_json(http, "/collections/crashes/items", nearest="51.4,35.7", k=3)
    assert "numberMatched" not in nearest


def test_a_property_named_like_a_parameter(http: httpx.Client,
                                           table: Callable[[str], Rows]) -> None:
    """traffic-sensors has a `count` column: count=exact still counts, and the 400 for
    count=500 says how to filter on the property."""
    rows = table("traffic-sensors")
    doc = get_json(http, "/collections/traffic-sensors/items", count="exact", hour=8)
    assert doc["numberMatched"] == sum(r["hour"] == 8 for r in rows.values())
    problem(http.get("/collections/traffic-sensors/items", params={"count": "500"}), 400,
            "filter=count=500")
    n = sum(r["count"] == rows[1]["count"] for r in rows.values())
    doc = get_json(http, "/collections/traffic-sensors/items", filter=f"count={rows[1]['count']}")
    assert doc["numberMatched"] == n


# ---- bbox ---------------------------------------------------------------------------------

def _in_box(rows: Rows, area: Any) -> list[int]:
    return [fid for fid, r in rows.items() if area.intersects(r["geometry"])]


@pytest.mark.parametrize("slug", ["crashes", "districts", "roads", "landuse-parcels"])
def test_bbox_crs84(http: httpx.Client, table: Callable[[str], Rows], slug: str) -> None:
    expected = _in_box(table(slug), box(LON0, LAT0, LON1, LAT1))
    assert 0 < len(expected) < len(table(slug))
    assert all_ids(http, slug, bbox=f"{LON0},{LAT0},{LON1},{LAT1}") == expected
    assert all_ids(http, slug, bbox=f"{LON0},{LAT0},-10,{LON1},{LAT1},5000") == expected
    assert all_ids(http, slug, bbox=f"{LON0},{LAT0},{LON1},{LAT1}", **{"bbox-crs": CRS84}) \
        == expected


def test_bbox_in_epsg_4326_is_lat_lon(http: httpx.Client, table: Callable[[str], Rows]) -> None:
    expected = _in_box(table("crashes"), box(LON0, LAT0, LON1, LAT1))
    for name in ("EPSG:4326", EPSG.format(4326), "[EPSG:4326]"):
        assert all_ids(http, "crashes", bbox=f"{LAT0},{LON0},{LAT1},{LON1}",
                       **{"bbox-crs": name}) == expected
    # lon/lat given where lat/lon is due: nothing is at latitude 51
    assert all_ids(http, "crashes", bbox=f"{LON0},{LAT0},{LON1},{LAT1}",
                   **{"bbox-crs": "EPSG:4326"}) == []


@pytest.mark.parametrize("epsg", [32639, 3857])
def test_bbox_in_projected_crs(http: httpx.Client, table: Callable[[str], Rows],
                               epsg: int) -> None:
    """The bbox is a rectangle in that CRS (its edges are not straight in lon/lat)."""
    to = Transformer.from_crs(4326, epsg, always_xy=True)
    x0, y0 = to.transform(LON0, LAT0)
    x1, y1 = to.transform(LON1, LAT1)
    for slug in ("crashes", "bus-stops", "schools"):
        expected = []
        for fid, r in table(slug).items():
            x, y = to.transform(r["geometry"].x, r["geometry"].y)
            if x0 <= x <= x1 and y0 <= y <= y1:
                expected.append(fid)
        assert expected
        assert all_ids(http, slug, bbox=f"{x0},{y0},{x1},{y1}",
                       **{"bbox-crs": f"EPSG:{epsg}"}) == expected


def test_bbox_edges_follow_the_projected_crs(http: httpx.Client,
                                             table: Callable[[str], Rows]) -> None:
    """A crash 5 m inside the middle of a 30 km UTM bbox edge is found and one 5 m outside
    is not; moving only the bbox's corners to lon/lat would be about 12 m off there."""
    fid, row = next(iter(table("crashes").items()))
    x, y = Transformer.from_crs(4326, 32639, always_xy=True).transform(row["geometry"].x,
                                                                      row["geometry"].y)
    x0, x1 = x - 15000, x + 15000
    for y0, y1, found in ((y - 5, y + 20000, True), (y + 5, y + 20000, False),
                          (y - 20000, y + 5, True), (y - 20000, y - 5, False)):
        doc = get_json(http, "/collections/crashes/items", crash_id=row["crash_id"],
                       bbox=f"{x0},{y0},{x1},{y1}", **{"bbox-crs": "EPSG:32639"})
        assert ids(doc) == ([fid] if found else []), (y0 - y, y1 - y)


def test_bad_bbox_is_400(http: httpx.Client) -> None:
    for value, crs, words in [
        ("1,2,3", None, ("bbox", "4 or 6")), ("1,2,3,4,5", None, ("bbox", "4 or 6")),
        ("a,b,c,d", None, ("bbox", "numbers")), ("51.5,35.6,51.3,35.7", None, ("minimum",)),
        ("51.3,35.6,51.5,95", None, ("latitude",)), ("190,0,200,10", None, ("longitude",)),
        ("nan,1,2,3", None, ("finite",)), ("1,2,inf,4", None, ("finite",)),
        ("", None, ("bbox",)), ("1,2,3,4", "EPSG:99999", ("bbox-crs", "unknown")),
        ("1,2,3,4", "EPSG:2056", ("bbox-crs", "not offered", "32639")),
        ("1,2,3,4", "nonsense", ("bbox-crs",)),
    ]:
        params = {"bbox": value} | ({"bbox-crs": crs} if crs else {})
        problem(http.get("/collections/crashes/items", params=params), 400, *words)
    problem(http.get("/collections/crashes/items", params={"bbox-crs": "EPSG:4326"}), 400,
            "without bbox")


# ---- output CRS ---------------------------------------------------------------------------

def test_default_crs_is_crs84_with_header(http: httpx.Client,
                                          table: Callable[[str], Rows]) -> None:
    r = http.get("/collections/crashes/items", params={"limit": 5})
    assert r.headers["content-crs"] == f"<{CRS84}>"
    assert r.headers["content-type"].startswith(GEOJSON)
    rows = table("crashes")
    for f in r.json()["features"]:
        g = rows[f["id"]]["geometry"]
        assert f["geometry"]["coordinates"] == pytest.approx([g.x, g.y], abs=1e-7)


def test_crs_epsg_4326_is_lat_lon(http: httpx.Client, table: Callable[[str], Rows]) -> None:
    for slug in ("crashes", "districts"):
        rows = table(slug)
        r = http.get(f"/collections/{slug}/items", params={"limit": 30, "crs": "EPSG:4326"})
        assert r.headers["content-crs"] == f"<{EPSG.format(4326)}>"
        for f in r.json()["features"]:
            want = [(y, x) for x, y in shapely.get_coordinates(rows[f["id"]]["geometry"])]
            got = coords(f["geometry"])
            assert len(got) == len(want)
            assert got == [pytest.approx(w, abs=1e-7) for w in want]


@pytest.mark.parametrize("epsg", [3857, 32639])
def test_crs_projected_matches_pyproj(http: httpx.Client, table: Callable[[str], Rows],
                                      epsg: int) -> None:
    to = Transformer.from_crs(4326, epsg, always_xy=True)
    for slug in ("crashes", "districts", "metro-lines"):
        rows = table(slug)
        for crs in (f"EPSG:{epsg}", EPSG.format(epsg), f"[EPSG:{epsg}]"):
            r = http.get(f"/collections/{slug}/items", params={"limit": 25, "crs": crs})
            assert r.status_code == 200, r.text
            assert r.headers["content-crs"] == f"<{EPSG.format(epsg)}>"
            for f in r.json()["features"]:
                lonlat = shapely.get_coordinates(rows[f["id"]]["geometry"])
                xs, ys = to.transform(lonlat[:, 0], lonlat[:, 1])
                got = coords(f["geometry"])
                assert len(got) == len(xs)
                for (gx, gy), x, y in zip(got, xs, ys, strict=True):
                    assert abs(gx - x) <= 1e-3 and abs(gy - y) <= 1e-3, (slug, gx, x, gy, y)


def test_source_crs_round_trip(http: httpx.Client, settings: Settings) -> None:
    """bus-stops came as UTM 39N x/y in a CSV: asked for in EPSG:32639 they come back as
    the file's numbers, and a bbox around a file coordinate finds that stop."""
    import csv

    path = settings.jobs_dirs[0] / "bus_stops.csv"
    with path.open(encoding="utf-8-sig") as fh:
        src = {int(r["stop_id"]): (float(r["x"]), float(r["y"]))
               for r in csv.DictReader(fh, delimiter=";")}
    feats = [f for p in walk(http, "/collections/bus-stops/items",
                             {"crs": "EPSG:32639", "limit": 1000}) for f in p["features"]]
    assert len(feats) == len(src)
    for f in feats:
        x, y = src[f["properties"]["stop_id"]]
        gx, gy = f["geometry"]["coordinates"]
        assert abs(gx - x) <= 1e-3 and abs(gy - y) <= 1e-3
    stop, (x, y) = next(iter(src.items()))
    found = get_json(http, "/collections/bus-stops/items", bbox=f"{x-1},{y-1},{x+1},{y+1}",
                     **{"bbox-crs": "EPSG:32639"})
    assert [f["properties"]["stop_id"] for f in found["features"]] == [stop]


def test_single_feature_in_another_crs(http: httpx.Client, table: Callable[[str], Rows]) -> None:
    fid = next(iter(table("schools")))
    g = table("schools")[fid]["geometry"]
    r = http.get(f"/collections/schools/items/{fid}", params={"crs": "EPSG:32639"})
    assert r.headers["content-crs"] == f"<{EPSG.format(32639)}>"
    x, y = Transformer.from_crs(4326, 32639, always_xy=True).transform(g.x, g.y)
    assert r.json()["geometry"]["coordinates"] == pytest.approx([x, y], abs=1e-3)


def test_bad_crs_is_400(http: httpx.Client) -> None:
    for crs, words in [("EPSG:99999", ("crs", "unknown")), ("banana", ("crs",)),
                       ("EPSG:2056", ("crs", "not offered", EPSG.format(32639))),
                       ("http://www.opengis.net/def/crs/EPSG/0/xyz", ("crs",))]:
        problem(http.get("/collections/crashes/items", params={"crs": crs}), 400, *words)
        problem(http.get("/collections/crashes/items/1", params={"crs": crs}), 400, "crs")


# ---- datetime -----------------------------------------------------------------------------

def test_datetime_instants_and_intervals(http: httpx.Client,
                                         table: Callable[[str], Rows]) -> None:
    rows = table("crashes")
    day = sorted(r["date"] for r in rows.values())[100]

    def expect(lo: str | None, hi: str | None) -> list[int]:
        return [fid for fid, r in rows.items()
                if (lo is None or r["date"] >= lo) and (hi is None or r["date"] <= hi)]
    cases = {
        day: expect(day, day),
        "2023-01-01/2023-01-31": expect("2023-01-01", "2023-01-31"),
        "../2022-05-01": expect(None, "2022-05-01"),
        "/2022-05-01": expect(None, "2022-05-01"),
        "2024-02-01/..": expect("2024-02-01", None),
        "2024-02-01/": expect("2024-02-01", None),
        "2031-01-01": [],
    }
    for value, expected in cases.items():
        assert all_ids(http, "crashes", datetime=value) == expected, value
    assert len(cases[day]) >= 1 and len(cases["2023-01-01/2023-01-31"]) > 5


def test_bad_datetime_is_400(http: httpx.Client) -> None:
    for value, words in [("2023-13-01", ("not rfc 3339",)), ("yesterday", ("datetime",)),
                         ("2024-01-01/2023-01-01", ("ends before it starts",)),
                         ("../..", ("at least one end",)), ("..", ("cannot be",)),
                         ("2023-01-01/2023-02-01/2023-03-01", ("interval",))]:
        problem(http.get("/collections/crashes/items", params={"datetime": value}), 400,
                "datetime", *words)
    problem(http.get("/collections/districts/items", params={"datetime": "2023-01-01"}), 400,
            "no date or time")


# ---- property equality, properties, sortby, skipGeometry ----------------------------------

def test_property_equality_filters(http: httpx.Client, table: Callable[[str], Rows]) -> None:
    crashes, stops, buildings = table("crashes"), table("bus-stops"), table("buildings")
    some = next(iter(crashes.values()))
    cases = [
        ("crashes", {"severity": "fatal"}, [f for f, r in crashes.items()
                                            if r["severity"] == "fatal"]),
        ("crashes", {"vehicles": "3", "severity": "injury"},
         [f for f, r in crashes.items() if r["vehicles"] == 3 and r["severity"] == "injury"]),
        ("crashes", {"severity_fa": some["severity_fa"]},
         [f for f, r in crashes.items() if r["severity_fa"] == some["severity_fa"]]),
        ("crashes", {"date": some["date"]},
         [f for f, r in crashes.items() if r["date"] == some["date"]]),
        ("bus-stops", {"shelter": "true"}, [f for f, r in stops.items() if r["shelter"]]),
        ("bus-stops", {"shelter": "FALSE"}, [f for f, r in stops.items()
                                             if r["shelter"] is False]),
        ("buildings", {"use": "residential"},  # `use` is an SQL keyword
         [f for f, r in buildings.items() if r["use"] == "residential"]),
        ("crashes", {"severity": "no such value"}, []),
    ]
    for slug, params, expected in cases:
        assert all_ids(http, slug, **params) == expected, params
        assert len(expected) or params.get("severity") == "no such value"


def test_bad_property_values_are_400(http: httpx.Client) -> None:
    for slug, params, words in [
        ("crashes", {"vehicles": "two"}, ("vehicles", "integer")),
        ("bus-stops", {"shelter": "maybe"}, ("shelter", "boolean")),
        ("crashes", {"date": "2023-02-30"}, ("date",)),
        ("districts", {"area_km2": "big"}, ("area_km2", "number")),
        ("crashes", {"colour": "red"}, ("unknown parameter", "accepted", "severity")),
    ]:
        problem(http.get(f"/collections/{slug}/items", params=params), 400, *words)


def test_properties_and_skip_geometry(http: httpx.Client, table: Callable[[str], Rows]) -> None:
    rows = table("crashes")
    doc = get_json(http, "/collections/crashes/items", properties="severity,date", limit=20)
    for f in doc["features"]:
        assert f["properties"] == {"severity": rows[f["id"]]["severity"],
                                   "date": rows[f["id"]]["date"]}
        assert f["geometry"]["type"] == "Point"
    none = get_json(http, "/collections/crashes/items", properties="", limit=3)
    assert all(f["properties"] == {} for f in none["features"])
    bare = get_json(http, "/collections/crashes/items", skipGeometry="true", limit=5)
    for f in bare["features"]:
        assert f["geometry"] is None and f["properties"] == props(rows[f["id"]])
    assert get_json(http, "/collections/crashes/items", skipGeometry="false",
                    limit=1)["features"][0]["geometry"] is not None
    problem(http.get("/collections/crashes/items", params={"properties": "severity,nope"}),
            400, "properties", "nope", "severity")
    problem(http.get("/collections/crashes/items", params={"skipGeometry": "yes"}), 400,
            "skipGeometry", "true")


def test_full_feature_properties_match_the_table(http: httpx.Client,
                                                 table: Callable[[str], Rows]) -> None:
    for slug in ("crashes", "hospitals", "landuse-parcels", "traffic-sensors"):
        rows = table(slug)
        for f in get_json(http, f"/collections/{slug}/items", limit=50)["features"]:
            assert f["type"] == "Feature"
            assert f["properties"] == props(rows[f["id"]]), slug
            assert shape(f["geometry"]).equals_exact(rows[f["id"]]["geometry"], 1e-6)


def test_sortby(http: httpx.Client, table: Callable[[str], Rows]) -> None:
    rows = table("crashes")
    by_vehicles = [f for f, _ in sorted(rows.items(), key=lambda x: (x[1]["vehicles"], x[0]))]
    assert all_ids(http, "crashes", sortby="vehicles") == by_vehicles
    assert all_ids(http, "crashes", sortby="+vehicles") == by_vehicles
    desc = [f for f, _ in sorted(rows.items(),
                                 key=lambda x: (-x[1]["vehicles"], x[1]["date"], x[0]))]
    assert all_ids(http, "crashes", sortby="-vehicles,date") == desc
    assert all_ids(http, "crashes", sortby="-id") == sorted(rows, reverse=True)
    districts = table("districts")
    names = [f for f, _ in sorted(districts.items(), key=lambda x: (x[1]["name_en"], x[0]))]
    assert all_ids(http, "districts", sortby="name_en", limit=5) == names
    for bad in ("nope", "-", "vehicles;DROP TABLE x", "geometry", "vehicles,,date"):
        problem(http.get("/collections/crashes/items", params={"sortby": bad}), 400, "sortby")


# ---- single features ----------------------------------------------------------------------

def test_single_feature(http: httpx.Client, table: Callable[[str], Rows]) -> None:
    rows = table("districts")
    fid = list(rows)[3]
    r = http.get(f"/collections/districts/items/{fid}")
    assert r.status_code == 200 and r.headers["content-type"].startswith(GEOJSON)
    assert r.headers["content-crs"] == f"<{CRS84}>"
    f = r.json()
    assert f["id"] == fid and f["properties"] == props(rows[fid])
    assert shape(f["geometry"]).equals_exact(rows[fid]["geometry"], 1e-6)
    assert {x["rel"] for x in f["links"]} >= {"self", "collection", "alternate"}
    sub = get_json(http, f"/collections/districts/items/{fid}", properties="name_en",
                   skipGeometry="true")
    assert sub["properties"] == {"name_en": rows[fid]["name_en"]} and sub["geometry"] is None
    for missing in (max(rows) + 1, 0, -1, "abc", "1.0", "99999999999999999999999", "search"):
        problem(http.get(f"/collections/districts/items/{missing}"), 404, "no feature")
    problem(http.get(f"/collections/districts/items/{fid}", params={"bbox": "1,2,3,4"}), 400,
            "bbox")


# ---- queryables ---------------------------------------------------------------------------

def test_queryables_are_a_json_schema_of_the_columns(http: httpx.Client, database_url: str,
                                                     table: Callable[[str], Rows]) -> None:
    r = http.get("/collections/crashes/queryables")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/schema+json")
    schema = r.json()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("/collections/crashes/queryables")
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    with psycopg.connect(libpq_dsn(database_url)) as db:
        fields = dict(db.execute("""SELECT f.name, f.type FROM catalog.fields f
                                    JOIN catalog.datasets d ON d.id = f.dataset_id
                                    WHERE d.slug = 'crashes'""").fetchall())
    p = schema["properties"]
    assert set(p) == set(fields) | {"geometry"}
    assert p["geometry"]["x-ogc-role"] == "primary-geometry"
    assert p["geometry"]["$ref"].endswith("/Point.json")
    assert p["date"] == {"type": "string", "format": "date", "title": "Date"}
    assert p["vehicles"]["type"] == "integer" and p["vehicles"]["x-unit"] == "vehicles"
    py = {"integer": int, "string": str, "number": (int, float), "boolean": bool}
    for row in table("crashes").values():  # every value fits the schema
        for k, v in props(row).items():
            t = p[k]["type"]
            assert isinstance(v, py[t]) if p[k].get("format") != "date" \
                else date.fromisoformat(v)


# ---- HTML ---------------------------------------------------------------------------------

def test_html_pages_show_the_data(http: httpx.Client, table: Callable[[str], Rows]) -> None:
    rows = table("districts")
    fid = next(iter(rows))
    pages = {
        "/": ["Collections", "conformance"],
        "/conformance": ["ogcapi-features-1/1.0/conf/core"],
        "/collections": ["districts", "Municipal districts", "crashes"],
        "/collections/districts": ["Municipal districts", str(len(rows))],
        "/collections/districts/queryables": ["population", "area_km2"],
        "/collections/districts/items": [rows[fid]["name_en"], rows[fid]["name_fa"],
                                         f'{rows[fid]["population"]:,}'],  # grouped
        f"/collections/districts/items/{fid}": [rows[fid]["name_en"],
                                                str(rows[fid]["area_km2"])],
    }
    for path, words in pages.items():
        # Pages default to Persian (SHAHR_DEFAULT_LANG); these words are the English ones.
        for how in ({"params": {"f": "html"}, "headers": {"Accept-Language": "en"}},
                    {"headers": {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
                                 "Accept-Language": "en"}}):
            r = http.get(path, **how)  # type: ignore[arg-type]
            assert r.status_code == 200, (path, r.text[:300])
            assert r.headers["content-type"].startswith("text/html"), path
            assert "<html" in r.text
            for w in words:
                assert w in r.text, (path, w)
    html = http.get("/collections/districts/items", params={"f": "html", "limit": 5}).text
    assert 'rel="next"' in html


def test_content_negotiation(http: httpx.Client) -> None:
    def kind(**kw: Any) -> str:
        r = http.get("/collections/crashes/items", **kw)
        assert r.status_code == 200
        return r.headers["content-type"].split(";")[0]
    assert kind() == GEOJSON
    assert kind(params={"f": "json"}) == GEOJSON
    assert kind(headers={"Accept": "application/geo+json"}) == GEOJSON
    assert kind(headers={"Accept": "application/json, text/html;q=0.5"}) == GEOJSON
    assert kind(headers={"Accept": "text/html;q=0.2, application/json"}) == GEOJSON
    assert kind(headers={"Accept": "text/html"}) == "text/html"
    assert kind(headers={"Accept": "text/html"}, params={"f": "json"}) == GEOJSON
    assert kind(headers={"Accept": "*/*"}) == GEOJSON
    for path in ("/", "/collections", "/collections/crashes/items", "/conformance"):
        problem(http.get(path, params={"f": "xml"}), 400, "f", "html")


# ---- OpenAPI ------------------------------------------------------------------------------

def test_openapi_lists_the_paths(http: httpx.Client) -> None:
    doc = get_json(http, "/openapi.json")
    assert doc["openapi"].startswith("3.")
    # OGC's OpenAPI class is for OpenAPI 3.0: claimed exactly when the document is 3.0
    classes = get_json(http, "/conformance")["conformsTo"]
    assert any(c.endswith("/conf/oas30") for c in classes) == doc["openapi"].startswith("3.0.")
    paths = doc["paths"]
    for p in ("/", "/conformance", "/collections", "/collections/{collection_id}",
              "/collections/{collection_id}/items", "/collections/{collection_id}/queryables",
              "/collections/{collection_id}/items/{feature_id}"):
        assert "get" in paths[p], p
    assert "post" in paths["/collections/{collection_id}/items/search"]
    documented = {p["name"] for p in paths["/collections/{collection_id}/items"]["get"]
                  ["parameters"]}
    assert {"limit", "bbox", "bbox-crs", "datetime", "crs", "filter", "filter-lang",
            "filter-crs", "properties", "sortby", "skipGeometry", "near", "radius",
            "nearest", "k", "intersects"} <= documented
    docs = http.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text


# ---- spatial query parameters -------------------------------------------------------------

def _geod(lon: float, lat: float, g: Any) -> float:
    return GEOD.inv(lon, lat, g.x, g.y)[2]


@pytest.mark.parametrize("slug,radius", [("crashes", 500), ("crashes", 1500),
                                         ("schools", 2500), ("bus-stops", 800)])
def test_near_radius_is_true_distance(http: httpx.Client, table: Callable[[str], Rows],
                                      slug: str, radius: float) -> None:
    rows = table(slug)
    middle = list(rows.values())[len(rows) // 2]["geometry"]
    lon, lat = middle.x + 0.001, middle.y - 0.0007  # near a feature, not on it
    dist = {fid: _geod(lon, lat, r["geometry"]) for fid, r in rows.items()}
    feats = [f for p in walk(http, f"/collections/{slug}/items",
                             {"near": f"{lon},{lat}", "radius": radius, "limit": 1000})
             for f in p["features"]]
    got = {f["id"] for f in feats}
    sure_in = {fid for fid, d in dist.items() if d <= radius - 0.5}
    sure_out = {fid for fid, d in dist.items() if d > radius + 0.5}
    assert sure_in, "the probe should have features within the radius"
    assert sure_in <= got, sure_in - got
    assert not got & sure_out, got & sure_out
    for f in feats:
        assert abs(f["properties"]["distance_m"] - dist[f["id"]]) <= 0.5


def test_nearest_k_in_order_with_metres(http: httpx.Client, table: Callable[[str], Rows]) -> None:
    lon, lat = 51.37, 35.69
    for slug, k, extra, keep in [
        ("crashes", 5, {}, lambda r: True),
        ("crashes", 12, {"severity": "fatal"}, lambda r: r["severity"] == "fatal"),
        ("schools", 1, {}, lambda r: True),
        ("hospitals", 50, {}, lambda r: True),  # more than there are
    ]:
        rows = {f: r for f, r in table(slug).items() if keep(r)}
        ranked = sorted((_geod(lon, lat, r["geometry"]), fid) for fid, r in rows.items())
        doc = get_json(http, f"/collections/{slug}/items", nearest=f"{lon},{lat}", k=k,
                       **extra)
        got = [(f["properties"]["distance_m"], f["id"]) for f in doc["features"]]
        assert len(got) == min(k, len(rows))
        assert [i for _, i in got] == [i for _, i in ranked[:k]]
        for (d, _), (want, _) in zip(got, ranked, strict=False):
            assert abs(d - want) <= 0.5
        assert [d for d, _ in got] == sorted(d for d, _ in got)


def test_nearest_on_lines_and_polygons(http: httpx.Client, table: Callable[[str], Rows]) -> None:
    """Distances to the nearest roads: checked against shapely in the local UTM zone (scale
    error there is under 0.1 %), and the order against the same."""
    lon, lat = CENTRE
    to = Transformer.from_crs(4326, 32639, always_xy=True)
    pt = shapely.Point(to.transform(lon, lat))
    rows = table("roads")
    utm = {fid: shapely.transform(r["geometry"], lambda c: numpy.column_stack(
        to.transform(c[:, 0], c[:, 1]))) for fid, r in rows.items()}
    ranked = sorted((g.distance(pt), fid) for fid, g in utm.items())
    doc = get_json(http, "/collections/roads/items", nearest=f"{lon},{lat}", k=4)
    for f, (d, fid) in zip(doc["features"], ranked[:4], strict=True):
        assert abs(f["properties"]["distance_m"] - d) <= max(1.0, d * 0.002)
        assert f["id"] == fid or abs(utm[f["id"]].distance(pt) - d) < 1.0


def test_intersects_wkt_and_geojson(http: httpx.Client, table: Callable[[str], Rows]) -> None:
    poly = shapely.Polygon([(51.35, 35.67), (51.44, 35.66), (51.46, 35.72), (51.38, 35.74),
                            (51.35, 35.67)])
    line = shapely.LineString([(51.30, 35.65), (51.50, 35.75)])
    for slug in ("crashes", "districts", "roads"):
        rows = table(slug)
        for g in (poly, line):
            expected = [fid for fid, r in rows.items() if g.intersects(r["geometry"])]
            assert all_ids(http, slug, intersects=g.wkt) == expected
            assert all_ids(http, slug, intersects=json.dumps(mapping(g))) == expected
        feature = {"type": "Feature", "properties": {}, "geometry": mapping(poly)}
        assert all_ids(http, slug, intersects=json.dumps(feature)) == \
            [fid for fid, r in rows.items() if poly.intersects(r["geometry"])]


def test_point_in_polygon_which_district_and_zone(http: httpx.Client,
                                                  table: Callable[[str], Rows]) -> None:
    districts, parcels = table("districts"), table("landuse-parcels")
    probes = [r["geometry"].representative_point() for r in list(parcels.values())[:40:7]]
    probes.append(shapely.Point(*CENTRE))
    for pt in probes:
        want_d = [fid for fid, r in districts.items() if r["geometry"].contains(pt)]
        want_p = [fid for fid, r in parcels.items() if r["geometry"].intersects(pt)]
        assert len(want_d) == 1
        body = {"op": "s_contains", "args": [{"property": "geometry"},
                                             {"type": "Point", "coordinates": [pt.x, pt.y]}]}
        r = http.post("/collections/districts/items/search", json={"filter": body})
        assert ids(r.json()) == want_d
        assert all_ids(http, "districts", intersects=pt.wkt) == want_d
        text = f"S_INTERSECTS(geometry, POINT({pt.x} {pt.y}))"
        assert all_ids(http, "landuse-parcels", filter=text) == want_p


def test_post_search_with_a_large_polygon(http: httpx.Client,
                                          table: Callable[[str], Rows]) -> None:
    """A 4,000-vertex shape does not fit a URL; POST it as CQL2-JSON."""
    ring = shapely.Point(*CENTRE).buffer(0.05, quad_segs=1000)
    assert len(ring.exterior.coords) > 4000
    rows = table("crashes")
    expected = [fid for fid, r in rows.items() if ring.intersects(r["geometry"])]
    body = {"op": "s_intersects", "args": [{"property": "geometry"}, mapping(ring)]}
    for payload in (body, {"filter": body}):
        r = http.post("/collections/crashes/items/search", params={"limit": 1000},
                      json=payload)
        assert r.status_code == 200, r.text[:300]
        assert ids(r.json()) == expected and r.json()["numberMatched"] == len(expected)
    # with the other parameters alongside
    r = http.post("/collections/crashes/items/search",
                  params={"severity": "injury", "properties": "severity", "limit": 1000},
                  json=body)
    assert ids(r.json()) == [f for f in expected if rows[f]["severity"] == "injury"]


def test_bad_post_search_is_400(http: httpx.Client) -> None:
    url = "/collections/crashes/items/search"
    for kwargs, words in [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, ()),
        ({"json": [1, 2]}, ()),
        ({"json": {"filter": 5}}, ("cql2-json",)),
        ({"json": {"op": "=", "args": [{"property": "nope"}, 1]}}, ("unknown property",)),
        ({"json": {"op": "frobnicate", "args": []}}, ("not supported",)),
        ({"content": b"", "headers": {"content-type": "application/json"}}, ()),
    ]:
        problem(http.post(url, **kwargs), 400, *words)  # type: ignore[arg-type]
    problem(http.post("/collections/nope/items/search", json={"op": "=", "args": [1, 1]}), 404)


def test_bad_spatial_parameters_are_400(http: httpx.Client) -> None:
    for params, words in [
        ({"near": "51.4,35.7"}, ("radius",)), ({"radius": "500"}, ("near",)),
        ({"near": "51.4,35.7", "radius": "-5"}, ("radius", "metres")),
        ({"near": "51.4,35.7", "radius": "0"}, ("radius",)),
        ({"near": "51.4,35.7", "radius": "1e9"}, ("radius", "at most")),
        ({"near": "51.4,35.7", "radius": "far"}, ("radius", "number")),
        ({"near": "east", "radius": "5"}, ("near",)),
        ({"near": "200,35", "radius": "5"}, ("near", "lon,lat")),
        ({"nearest": "51.4"}, ("nearest",)), ({"nearest": "51.4,35.7", "k": "0"}, ("k",)),
        ({"nearest": "51.4,35.7", "k": "ten"}, ("k",)), ({"k": "3"}, ("nearest",)),
        ({"nearest": "51.4,35.7", "k": "100000"}, ("k",)),
        ({"intersects": "POLYGON((0 0, 1 1))"}, ("intersects", "wkt")),
        ({"intersects": "POLYGON((0 0, 1 0, 0 1, 1 1, 0 0))"},
         ("intersects", "not valid", "self-intersection")),
        ({"intersects": "POINT(1)"}, ("intersects",)),
        ({"intersects": "CIRCLE(1 2, 3)"}, ("intersects", "wkt")),
        ({"intersects": '{"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}'},
         ("intersects",)),
        ({"intersects": '{"type": "Nope"}'}, ("intersects", "geojson")),
        ({"intersects": "{broken"}, ("intersects", "geojson")),
        ({"intersects": "[1, 2]"}, ("intersects",)),
    ]:
        problem(http.get("/collections/crashes/items", params=params), 400, *words)


# ---- malformed input and injection --------------------------------------------------------

MALFORMED = [
    {"limit": "ten"}, {"limit": "0"}, {"limit": "-3"}, {"limit": "99999999999999999999999"},
    {"offset": "-1"}, {"offset": "x"}, {"after": "x"}, {"before": "-5"}, {"after": "1.5"},
    {"bbox": "1,2,3"}, {"bbox": "x,y,z,w"}, {"bbox": "1,2,3,4", "bbox-crs": "EPSG:0"},
    {"crs": "EPSG:1"}, {"crs": ""}, {"datetime": "2023-02-30"}, {"datetime": "never"},
    {"filter": "severity = "}, {"filter": "severity = 'a"}, {"filter": "nope = 1"},
    {"filter": "severity = 1", "filter-lang": "sql"}, {"filter-lang": "cql2-json",
                                                       "filter": "{"},
    {"filter": "S_INTERSECTS(geometry, POINT(1 2))", "filter-crs": "EPSG:99999"},
    {"properties": "a,b"}, {"sortby": "-"}, {"skipGeometry": "1"}, {"count": "all"},
    {"near": "1,2,3", "radius": "5"}, {"nearest": ",", "k": "1"}, {"intersects": ""},
    {"f": "csv"}, {"unknown": "1"}, {"severity": "fatal", "SEVERITY": "x"},
]


def test_malformed_input_is_400_problem_json(http: httpx.Client) -> None:
    for params in MALFORMED:
        r = http.get("/collections/crashes/items", params=params)
        body = problem(r, 400)
        assert body["type"] == "about:blank" and body["instance"].endswith("/items")
        assert len(body["detail"]) > 15, body
        named = body.get("parameter") or ""
        assert named in params or any(k in body["detail"] for k in params), (params, body)


def test_repeated_parameter_is_400(http: httpx.Client) -> None:
    problem(http.get("/collections/crashes/items?limit=5&limit=6"), 400, "more than once")


def test_injection_attempts_never_reach_sql(http: httpx.Client, database_url: str,
                                            table: Callable[[str], Rows]) -> None:
    schools = table("schools")
    quoted = next(r["name_en"] for r in schools.values() if "'" in r["name_en"])
    attempts: list[tuple[str, dict[str, str], int]] = [
        ("crashes", {"severity; DROP TABLE catalog.datasets": "1"}, 400),
        ("crashes", {"severity": "fatal'; DROP TABLE catalog.datasets; --"}, 200),
        ("crashes", {"severity": "' OR '1'='1"}, 200),
        ("crashes", {"sortby": "date; DROP TABLE catalog.datasets"}, 400),
        ("crashes", {"sortby": "(SELECT 1)"}, 400),
        ("crashes", {"properties": "severity) FROM x; --"}, 400),
        ("crashes", {"filter": "severity = 'x'' OR 1=1 --'"}, 200),
        ("crashes", {"filter": '"severity; DROP TABLE x" = 1'}, 400),
        ("crashes", {"filter": "severity = 'a' OR pg_sleep(5) = 1"}, 400),
        ("crashes", {"datetime": "2023-01-01'; DROP TABLE x; --"}, 400),
        ("crashes", {"crs": "EPSG:4326'; DROP TABLE x; --"}, 400),
        ("crashes", {"intersects": "POINT(1 2)'); DROP TABLE x; --"}, 400),
        ("schools", {"name_en": quoted}, 200),
        ("schools", {"filter": "name_en = '" + quoted.replace("'", "''") + "'"}, 200),
    ]
    for slug, params, status in attempts:
        r = http.get(f"/collections/{slug}/items", params=params)
        assert r.status_code == status, (params, r.text[:300])
        if status == 200 and slug == "crashes":
            assert r.json()["features"] == []  # the text was data, matching nothing
    for params in ({"name_en": quoted},
                   {"filter": "name_en = '" + quoted.replace("'", "''") + "'"}):
        assert [f["properties"]["name_en"] for f in get_json(
            http, "/collections/schools/items", **params)["features"]] == [quoted]
    r = http.get("/collections/crashes';DROP TABLE x;--/items")
    assert r.status_code == 404
    with psycopg.connect(libpq_dsn(database_url)) as db:
        assert db.execute("SELECT count(*) FROM catalog.datasets").fetchone()[0] >= 12
        assert db.execute(f"SELECT count(*) FROM {current_table(db, 'crashes')}"
                          ).fetchone()[0] == len(table("crashes"))


def test_odd_values_never_give_500(http: httpx.Client) -> None:
    odd = ["", " ", "'", '"', "\\", "%", "%00", "\x00", "-", "..", "1e999", "-0", "NaN",
           "null", "[]", "{}", "🙂", "ی", "a" * 5000, "(" * 300, "1," * 2000]
    names = ["limit", "offset", "after", "bbox", "bbox-crs", "datetime", "crs", "filter",
             "filter-crs", "properties", "sortby", "skipGeometry", "near", "nearest", "k",
             "intersects", "count", "severity", "vehicles", "date"]
    for name in names:
        for value in odd:
            params = {name: value}
            if name in ("near",):
                params["radius"] = "100"
            r = http.get("/collections/crashes/items", params=params)
            assert r.status_code < 500, (name, value[:40], r.text[:300])
