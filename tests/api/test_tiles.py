"""OGC API Tiles over real HTTP against the demo city in PostGIS. Tiles are decoded with
mapbox-vector-tile and compared with independent PostGIS queries written here
(`ST_TileEnvelope`, `ST_Intersects`), never the service's own SQL builders."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mapbox_vector_tile
import morecantile
import psycopg
import pytest
import yaml

from api.routes.tiles import TILES_CONFORMANCE, RenderedTile, TileCache
from catalog.database import libpq_dsn
from catalog.settings import Settings
from geo import tiles as geotiles
from support import current_table, write_manifest

pytestmark = pytest.mark.usefixtures("demo_loaded")

MVT = "application/vnd.mapbox-vector-tile"
PROBLEM = "application/problem+json"
WMQ = morecantile.tms.get("WebMercatorQuad")
MARGIN = 64 / 4096  # the tile buffer, as a share of the tile


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def centre(db: psycopg.Connection) -> tuple[float, float]:
    """The middle of the demo city's parcels (lon, lat)."""
    x0, y0, x1, y1 = db.execute(
        f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e "
        f"FROM {current_table(db, 'landuse-parcels')}) s").fetchone()
    return (x0 + x1) / 2, (y0 + y1) / 2


def centre_tile(centre: tuple[float, float], z: int) -> morecantile.Tile:
    return WMQ.tile(centre[0], centre[1], z)


def tile_url(slug: str, z: int, x: int, y: int, tms: str = "WebMercatorQuad") -> str:
    return f"/collections/{slug}/tiles/{tms}/{z}/{x}/{y}"


def decode(resp: httpx.Response, layer: str) -> dict[int, dict[str, Any]]:
    """feature id -> properties of one layer of an MVT response."""
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["content-type"] == MVT
    layers = mapbox_vector_tile.decode(resp.content)
    assert list(layers) == [layer]
    feats = layers[layer]["features"]
    ids = [f["id"] for f in feats]
    assert len(ids) == len(set(ids)), "a feature appears twice in one tile"
    return {f["id"]: f["properties"] for f in feats}


def expected_ids(db: psycopg.Connection, slug: str, z: int, x: int, y: int, *,
                 margin: float = 0.0, where: str = "TRUE") -> set[int]:
    """Features intersecting the WebMercatorQuad tile, straight from PostGIS."""
    rows = db.execute(
        f"SELECT fid FROM {current_table(db, slug)} WHERE ST_Intersects(geom, ST_Transform("
        f"ST_TileEnvelope(%s, %s, %s, margin => %s), 4326)) AND ({where})",
        [z, x, y, margin]).fetchall()
    return {r[0] for r in rows}


def assert_holds(db: psycopg.Connection, slug: str, z: int, x: int, y: int, got: set[int],
                 where: str = "TRUE") -> None:
    """Every feature meeting the tile is in it, and nothing from beyond its 64-cell buffer
    (features of the buffer zone that collapse in the MVT grid may be left out there)."""
    inside = expected_ids(db, slug, z, x, y, where=where)
    buffered = expected_ids(db, slug, z, x, y, margin=MARGIN, where=where)
    assert inside <= got, f"cut: {sorted(inside - got)[:10]}"
    assert got <= buffered, f"from outside the tile: {sorted(got - buffered)[:10]}"


def problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text[:300]
    assert resp.headers["content-type"] == PROBLEM
    body: dict[str, Any] = resp.json()
    assert body["status"] == status and body["detail"]
    return body


# ---- tile matrix sets and metadata ------------------------------------------------------

def test_tile_matrix_sets(http: httpx.Client) -> None:
    listing = http.get("/tileMatrixSets").json()
    ids = [t["id"] for t in listing["tileMatrixSets"]]
    assert ids == ["WebMercatorQuad", "WorldCRS84Quad"]
    wmq = http.get("/tileMatrixSets/WebMercatorQuad").json()
    assert wmq["id"] == "WebMercatorQuad"
    assert wmq["crs"] == "http://www.opengis.net/def/crs/EPSG/0/3857"
    assert [m["id"] for m in wmq["tileMatrices"]] == [str(z) for z in range(25)]
    crs84 = http.get("/tileMatrixSets/WorldCRS84Quad").json()
    assert crs84["tileMatrices"][0]["matrixWidth"] == 2
    body = problem(http.get("/tileMatrixSets/webmercatorquad"), 404)
    assert "WebMercatorQuad" in body["detail"]


def test_conformance_classes_are_exported() -> None:
    assert "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core" in TILES_CONFORMANCE
    assert "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt" in TILES_CONFORMANCE


def test_tilesets_and_tileset_metadata(http: httpx.Client, live_server: str) -> None:
    sets = http.get("/collections/landuse-parcels/tiles").json()
    assert [s["tileMatrixSetURI"].rsplit("/", 1)[1] for s in sets["tilesets"]] == \
        ["WebMercatorQuad", "WorldCRS84Quad"]
    assert all(s["dataType"] == "vector" for s in sets["tilesets"])
    meta = http.get("/collections/landuse-parcels/tiles/WebMercatorQuad").json()
    rels = {x["rel"]: x for x in meta["links"]}
    template = rels["item"]
    assert template["templated"] is True and template["type"] == MVT
    assert template["href"].endswith(
        "/collections/landuse-parcels/tiles/WebMercatorQuad/{tileMatrix}/{tileCol}/{tileRow}")
    assert rels["http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"]["href"].endswith(
        "/tileMatrixSets/WebMercatorQuad")
    assert rels["describedby"]["href"].endswith("/WebMercatorQuad/tilejson.json")
    layer = meta["layers"][0]
    assert layer["id"] == "landuse-parcels" and layer["geometryDimension"] == 2
    assert layer["propertiesSchema"]["properties"]["area_m2"]["type"] == "number"
    # The template works as OGC clients fill it in.
    t = WMQ.tile(51.4, 35.7, 3)
    href = template["href"].replace(live_server, "").format(tileMatrix=3, tileCol=t.x,
                                                            tileRow=t.y)
    assert http.get(href).status_code in (200, 204)
    problem(http.get("/collections/landuse-parcels/tiles/Mercator"), 404)
    problem(http.get("/collections/no-such/tiles"), 404)
    problem(http.get("/collections/no-such/tiles/WebMercatorQuad/1/0/0"), 404)


def test_tilejson(http: httpx.Client, db: psycopg.Connection) -> None:
    tj = http.get("/collections/landuse-parcels/tiles/WebMercatorQuad/tilejson.json").json()
    for key in ("tilejson", "tiles", "vector_layers", "bounds", "minzoom", "maxzoom",
                "center", "description"):
        assert key in tj, key
    assert tj["tilejson"] == "3.0.0"
    assert tj["tiles"][0].endswith("/collections/landuse-parcels/tiles/WebMercatorQuad/"
                                   "{z}/{x}/{y}")
    assert 0 == tj["minzoom"] < tj["maxzoom"] == 24
    layer = tj["vector_layers"][0]
    assert layer["id"] == "landuse-parcels"
    columns = [r[0] for r in db.execute(
        "SELECT f.name FROM catalog.fields f JOIN catalog.datasets d ON d.id = f.dataset_id "
        "WHERE d.slug = 'landuse-parcels' ORDER BY f.position")]
    assert list(layer["fields"]) == columns
    assert layer["fields"]["area_m2"] == "Number" and layer["fields"]["landuse"] == "String"
    x0, y0, x1, y1 = db.execute(
        f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e "
        f"FROM {current_table(db, 'landuse-parcels')}) s").fetchone()
    w, s, e, n = tj["bounds"]
    assert w <= x0 + 1e-6 and s <= y0 + 1e-6 and e >= x1 - 1e-6 and n >= y1 - 1e-6
    assert max(abs(w - x0), abs(s - y0), abs(e - x1), abs(n - y1)) < 1e-3
    cx, cy, cz = tj["center"]
    assert w < cx < e and s < cy < n and tj["minzoom"] <= cz <= tj["maxzoom"]
    # Thinning is described, with the zoom from which tiles hold every feature.
    thin = tj["x-shahr-thinning"]
    assert thin["fullDetailFromZoom"] == 12
    assert "simplified" in tj["description"] and "every feature" in tj["description"]
    # A filtered TileJSON hands its filter on to the tiles, and properties shape the fields.
    tj = http.get("/collections/landuse-parcels/tiles/WebMercatorQuad/tilejson.json",
                  params={"filter": "landuse = 'residential'",
                          "properties": "landuse,area_m2"}).json()
    assert "filter=landuse" in tj["tiles"][0] and "properties=landuse" in tj["tiles"][0]
    assert list(tj["vector_layers"][0]["fields"]) == ["landuse", "area_m2"]
    problem(http.get("/collections/landuse-parcels/tiles/WebMercatorQuad/tilejson.json",
                     params={"filter": "nope = 1"}), 400)


# ---- tile contents --------------------------------------------------------------------

@pytest.mark.parametrize("z", [12, 14])
@pytest.mark.parametrize("slug", ["landuse-parcels", "roads", "crashes"])
def test_centre_tile_holds_every_feature(http: httpx.Client, db: psycopg.Connection,
                                         centre: tuple[float, float], slug: str,
                                         z: int) -> None:
    t = centre_tile(centre, z)
    resp = http.get(tile_url(slug, z, t.x, t.y))
    feats = decode(resp, slug)
    assert_holds(db, slug, z, t.x, t.y, set(feats))
    # Nothing thinned: no header (a feature collapsing in the grid would be a counted point).
    assert "x-shahr-thinned" not in resp.headers
    assert resp.headers["x-shahr-features"] == str(len(feats))


def test_tile_properties_are_the_rows(http: httpx.Client, db: psycopg.Connection,
                                      centre: tuple[float, float]) -> None:
    t = centre_tile(centre, 14)
    feats = decode(http.get(tile_url("landuse-parcels", 14, t.x, t.y)), "landuse-parcels")
    table = current_table(db, "landuse-parcels")
    cur = db.execute(f"SELECT * FROM {table} WHERE fid = ANY(%s)", [list(feats)])
    names = [d.name for d in cur.description]
    checked = 0
    for row in cur.fetchall():
        rec = dict(zip(names, row, strict=True))
        props = feats[rec["fid"]]
        for name, value in rec.items():
            if name in ("fid", "geom") or name.startswith("_"):  # _geom_3857: internal
                continue
            if value is None:
                assert name not in props
            elif isinstance(value, float):
                assert props[name] == pytest.approx(value)
            else:
                assert props[name] == value, (rec["fid"], name)
            checked += 1
    assert checked > 100
    assert any("landuse_fa" in p and p["landuse_fa"] for p in feats.values())
    # properties= keeps only those
    only = decode(http.get(tile_url("landuse-parcels", 14, t.x, t.y),
                           params={"properties": "landuse"}), "landuse-parcels")
    assert set(only) == set(feats)
    assert all(set(p) <= {"landuse"} for p in only.values())


def test_tile_bounds_match_postgis(db: psycopg.Connection, centre: tuple[float, float]) -> None:
    for z in (0, 5, 12, 14, 20):
        t = centre_tile(centre, z)
        spec = geotiles.tile("WebMercatorQuad", z, t.x, t.y)
        pg = db.execute("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                        "(SELECT ST_TileEnvelope(%s, %s, %s) e) s", [z, t.x, t.y]).fetchone()
        assert spec.bounds == pytest.approx(pg, abs=1e-6)
        ll = db.execute("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT "
                        "ST_Transform(ST_TileEnvelope(%s, %s, %s), 4326) e) s",
                        [z, t.x, t.y]).fetchone()
        assert spec.lonlat_tile == pytest.approx(ll, abs=1e-9)


def test_filters_select_exactly_what_items_select(http: httpx.Client, db: psycopg.Connection,
                                                  centre: tuple[float, float]) -> None:
    z = 14
    t = centre_tile(centre, z)
    url = tile_url("landuse-parcels", z, t.x, t.y)
    every = set(decode(http.get(url), "landuse-parcels"))

    def bbox(margin: float) -> str:
        box = db.execute("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT "
                         "ST_Transform(ST_TileEnvelope(%s, %s, %s, margin => %s), 4326) e) s",
                         [z, t.x, t.y, margin]).fetchone()
        return ",".join(repr(v) for v in box)

    def items(params: dict[str, str], margin: float) -> set[int]:
        page = http.get("/collections/landuse-parcels/items",
                        params={**params, "bbox": bbox(margin), "limit": "10000"}).json()
        assert page["numberReturned"] < 10000
        return {f["id"] for f in page["features"]}

    cases: list[tuple[dict[str, str], str]] = [
        ({"filter": "landuse = 'residential'"}, "landuse = 'residential'"),
        ({"landuse": "commercial"}, "landuse = 'commercial'"),
        ({"filter": "area_m2 > 500 AND district IN (1, 2, 3, 4, 5, 6)",
          "filter-lang": "cql2-text"}, "area_m2 > 500 AND district IN (1, 2, 3, 4, 5, 6)"),
        ({"filter": json.dumps({"op": "like", "args": [{"property": "zoning"}, "R-%"]}),
          "filter-lang": "cql2-json"}, "zoning LIKE 'R-%%'"),
    ]
    sizes = []
    for params, sql in cases:
        resp = http.get(url, params=params)
        tiled = set(decode(resp, "landuse-parcels")) if resp.status_code == 200 else set()
        # The items in the tile are all there; none from beyond the tile and its buffer.
        assert items(params, 0.0) <= tiled <= items(params, MARGIN), params
        assert_holds(db, "landuse-parcels", z, t.x, t.y, tiled, where=sql)
        assert tiled <= every
        sizes.append(len(tiled))
    assert all(0 < n < len(every) for n in sizes[:2]), sizes


def test_datetime_filter_on_points(http: httpx.Client, db: psycopg.Connection,
                                   centre: tuple[float, float]) -> None:
    t = centre_tile(centre, 12)
    url = tile_url("crashes", 12, t.x, t.y)
    every = set(decode(http.get(url), "crashes"))
    lo, hi = db.execute(
        "SELECT percentile_disc(0.25) WITHIN GROUP (ORDER BY date), percentile_disc(0.75) "
        f"WITHIN GROUP (ORDER BY date) FROM {current_table(db, 'crashes')} WHERE fid = ANY(%s)",
        [list(every)]).fetchone()
    some = set(decode(http.get(url, params={"datetime": f"{lo}/{hi}"}), "crashes"))
    assert_holds(db, "crashes", 12, t.x, t.y, some, where=f"date BETWEEN '{lo}' AND '{hi}'")
    assert some < every and some


def test_empty_tiles_are_204(http: httpx.Client, centre: tuple[float, float]) -> None:
    far = WMQ.tile(-60.0, -30.0, 14)  # the South Atlantic: no data, no database
    resp = http.get(tile_url("landuse-parcels", 14, far.x, far.y))
    assert resp.status_code == 204 and resp.content == b""
    assert resp.headers["etag"] and "max-age" in resp.headers["cache-control"]
    t = centre_tile(centre, 14)
    url = tile_url("landuse-parcels", 14, t.x, t.y)
    nothing = {"filter": "landuse = 'no such use'"}
    first = http.get(url, params=nothing)
    assert first.status_code == 204 and first.content == b""
    again = http.get(url, params=nothing)
    assert again.status_code == 204 and again.headers["x-shahr-cache"] == "hit"


def test_etag_cache_and_304(http: httpx.Client, centre: tuple[float, float]) -> None:
    t = centre_tile(centre, 13)
    url = tile_url("landuse-parcels", 13, t.x, t.y)
    params = {"filter": "area_m2 >= 0"}  # a query no other test asks, so the first is a miss
    first = http.get(url, params=params)
    assert first.status_code == 200 and first.headers["x-shahr-cache"] == "miss"
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert first.headers["cache-control"].startswith("public, max-age=")
    second = http.get(url, params=params)
    assert second.headers["x-shahr-cache"] == "hit" and second.headers["etag"] == etag
    assert second.content == first.content
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        nm = http.get(url, params=params, headers={"If-None-Match": header})
        assert nm.status_code == 304 and nm.content == b"" and nm.headers["etag"] == etag
    assert http.get(url, params=params, headers={"If-None-Match": '"other"'}).status_code == 200
    other = http.get(url, params={"filter": "area_m2 >= 1"})
    assert other.headers["etag"] != etag
    # The same query spelled in another order is the same tile.
    a = http.get(url, params=[("landuse", "residential"), ("properties", "owner")])
    b = http.get(url, params=[("properties", "owner"), ("landuse", "residential")])
    assert a.headers["etag"] == b.headers["etag"] and b.headers["x-shahr-cache"] == "hit"


@pytest.mark.parametrize(("path", "params", "status"), [
    ("WebMercatorQuad/14/16384/0", {}, 400),  # x outside the matrix
    ("WebMercatorQuad/14/0/16384", {}, 400),  # y outside the matrix
    ("WebMercatorQuad/3/-1/0", {}, 400),
    ("WebMercatorQuad/25/0/0", {}, 400),  # no such tile matrix
    ("WebMercatorQuad/-1/0/0", {}, 400),
    ("WebMercatorQuad/z/0/0", {}, 400),
    ("WebMercatorQuad/3/0.5/0", {}, 400),
    ("WorldCRS84Quad/0/2/0", {}, 400),  # 2 columns at zoom 0
    ("NoSuchQuad/3/0/0", {}, 404),  # an unknown tile matrix set is an unknown resource
    ("WebMercatorQuad/3/5/3", {"filter": "landuse = "}, 400),
    ("WebMercatorQuad/3/5/3", {"filter": "no_such = 1"}, 400),
    ("WebMercatorQuad/3/5/3", {"filter": "area_m2 * 1e308 * 1e308 > 1"}, 400),  # in the db
    ("WebMercatorQuad/3/5/3", {"filter-lang": "sql", "filter": "x"}, 400),
    ("WebMercatorQuad/3/5/3", {"limit": "10"}, 400),  # tiles are never paged or cut
    ("WebMercatorQuad/3/5/3", {"offset": "10"}, 400),
    ("WebMercatorQuad/3/5/3", {"sortby": "area_m2"}, 400),
    ("WebMercatorQuad/3/5/3", {"nope": "1"}, 400),
    ("WebMercatorQuad/3/5/3", {"properties": "nope"}, 400),
    ("WebMercatorQuad/3/5/3", {"area_m2": "big"}, 400),
    ("WebMercatorQuad/3/5/3", {"datetime": "yesterday"}, 400),
    ("WebMercatorQuad/3/5/3", {"f": "json"}, 400),
])
def test_bad_requests_are_problems(http: httpx.Client, path: str, params: dict[str, str],
                                   status: int) -> None:
    problem(http.get(f"/collections/landuse-parcels/tiles/{path}", params=params), status)


def test_repeated_parameter_is_a_problem(http: httpx.Client) -> None:
    resp = http.get("/collections/landuse-parcels/tiles/WebMercatorQuad/3/5/3",
                    params=[("landuse", "a"), ("landuse", "b")])
    problem(resp, 400)


def test_low_zoom_tiles_say_how_they_are_thinned(http: httpx.Client, db: psycopg.Connection,
                                                 centre: tuple[float, float]) -> None:
    t = centre_tile(centre, 10)
    resp = http.get(tile_url("landuse-parcels", 10, t.x, t.y))
    feats = decode(resp, "landuse-parcels")
    thinned = dict(part.strip().split("=") for part in resp.headers["x-shahr-thinned"].split(";"))
    assert thinned["simplified"] == "yes"
    # Demo parcels are far larger than a grid cell at z10 (38 m): nothing is left out.
    assert thinned["left-out"] == "0"
    assert_holds(db, "landuse-parcels", 10, t.x, t.y, set(feats))
    # Points are never simplified or thinned.
    pts = http.get(tile_url("crashes", 10, t.x, t.y))
    assert "x-shahr-thinned" not in pts.headers
    assert set(decode(pts, "crashes")) == expected_ids(db, "crashes", 10, t.x, t.y,
                                                       margin=MARGIN)


def test_world_crs84_quad(http: httpx.Client, db: psycopg.Connection,
                          centre: tuple[float, float]) -> None:
    z = 12
    size = 180 / 2**z  # degrees per tile: 2 x 1 tiles at zoom 0
    x, y = int((centre[0] + 180) // size), int((90 - centre[1]) // size)
    resp = http.get(tile_url("landuse-parcels", z, x, y, "WorldCRS84Quad"))
    feats = decode(resp, "landuse-parcels")
    w, n = -180 + x * size, 90 - y * size

    def ids(pad: float) -> set[int]:
        rows = db.execute(
            f"SELECT fid FROM {current_table(db, 'landuse-parcels')} WHERE ST_Intersects(geom, "
            "ST_MakeEnvelope(%s, %s, %s, %s, 4326))",
            [w - pad, n - size - pad, w + size + pad, n + pad]).fetchall()
        return {r[0] for r in rows}

    assert feats and ids(0.0) <= set(feats) <= ids(size * MARGIN)
    assert "x-shahr-thinned" not in resp.headers
    tj = http.get("/collections/landuse-parcels/tiles/WorldCRS84Quad/tilejson.json").json()
    assert tj["tiles"][0].endswith("/WorldCRS84Quad/{z}/{x}/{y}")
    assert tj["x-shahr-thinning"]["fullDetailFromZoom"] == 11


@pytest.mark.parametrize("tms", ["WebMercatorQuad", "WorldCRS84Quad"])
def test_points_land_where_they_are(http: httpx.Client, db: psycopg.Connection,
                                    centre: tuple[float, float], tms: str) -> None:
    """Tile coordinates of every crash, against its lon/lat projected here with pyproj."""
    from pyproj import Transformer

    matrix_set = morecantile.tms.get(tms)
    t = matrix_set.tile(centre[0], centre[1], 13)
    b = matrix_set.xy_bounds(t)
    resp = http.get(tile_url("crashes", 13, t.x, t.y, tms))
    layer = mapbox_vector_tile.decode(resp.content)["crashes"]  # y up, 0 at the bottom
    extent = layer["extent"]
    assert extent == 4096
    where = dict(db.execute(f"SELECT fid, ARRAY[ST_X(geom), ST_Y(geom)] FROM "
                            f"{current_table(db, 'crashes')}"))
    to_tms = Transformer.from_crs("EPSG:4326", "EPSG:3857" if tms == "WebMercatorQuad"
                                  else "OGC:CRS84", always_xy=True)
    assert len(layer["features"]) > 5
    for f in layer["features"]:
        x, y = to_tms.transform(*where[f["id"]])
        want = ((x - b.left) / (b.right - b.left) * extent,
                (y - b.bottom) / (b.top - b.bottom) * extent)
        got = f["geometry"]["coordinates"]
        assert abs(got[0] - want[0]) <= 1 and abs(got[1] - want[1]) <= 1, (f["id"], got, want)


# ---- datasets of our own: thinning of tiny features, a reload -------------------------------

def _square(lon: float, lat: float, metres: float) -> list[list[list[float]]]:
    dlat = metres / 111_320
    dlon = dlat / 0.8124  # cos(35.7 degrees)
    return [[[lon, lat], [lon + dlon, lat], [lon + dlon, lat + dlat], [lon, lat + dlat],
             [lon, lat]]]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory, settings: Settings,
                 database_url: str, centre: tuple[float, float]) -> str:
    """Three squares well inside one tile at every zoom up to 15: 0.5 m, 5 m and 200 m."""
    from etl.manifest import load_manifest
    from etl.runner import run_job

    folder = tmp_path_factory.mktemp("tiny")
    b = WMQ.xy_bounds(centre_tile(centre, 10))
    # 0.3 of the way across a z10 tile is inside z11...z15 tiles, not on their edges.
    lon, lat = WMQ.lnglat(b.left + 0.3 * (b.right - b.left),
                          b.bottom + 0.3 * (b.top - b.bottom))
    feats = [{"type": "Feature", "properties": {"site_id": i + 1, "size_m": m},
              "geometry": {"type": "Polygon", "coordinates": _square(lon + i * 0.01, lat, m)}}
             for i, m in enumerate((0.5, 5.0, 200.0))]
    (folder / "tiny.geojson").write_text(json.dumps({"type": "FeatureCollection",
                                                     "features": feats}))
    path = write_manifest(folder, {"path": "tiny.geojson", "format": "geojson"},
                          slug="tiles-tiny-squares", key="site_id", geometry_type="polygon")
    result = run_job(load_manifest(path), url=database_url, settings=settings)
    assert result.status == "succeeded", result.error
    return "tiles-tiny-squares"


def _wait_for_collection(http: httpx.Client, slug: str) -> None:
    deadline = time.monotonic() + 10
    while http.get(f"/collections/{slug}").status_code != 200:
        assert time.monotonic() < deadline, f"{slug} never appeared"
        time.sleep(0.2)


def test_tiny_features_are_points_at_full_detail_and_reported_below(
        http: httpx.Client, db: psycopg.Connection, tiny_dataset: str) -> None:
    _wait_for_collection(http, tiny_dataset)
    fids = dict(db.execute(f"SELECT size_m, fid FROM {current_table(db, tiny_dataset)}"))
    lon, lat = db.execute(f"SELECT ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)) FROM "
                          f"{current_table(db, tiny_dataset)} WHERE size_m = 0.5").fetchone()
    # z15 (a grid cell is 0.24 m here): all three are polygons; nothing is thinned.
    t = WMQ.tile(lon, lat, 15)
    resp = http.get(tile_url(tiny_dataset, 15, t.x, t.y))
    layer = mapbox_vector_tile.decode(resp.content)[tiny_dataset]["features"]
    assert {f["id"]: f["geometry"]["type"] for f in layer}[fids[0.5]] == "Polygon"
    assert "x-shahr-thinned" not in resp.headers
    # z12 (a grid cell is 1.9 m): the 0.5 m square is kept, as a point, and reported.
    t = WMQ.tile(lon, lat, 12)
    resp = http.get(tile_url(tiny_dataset, 12, t.x, t.y))
    layer = mapbox_vector_tile.decode(resp.content)[tiny_dataset]["features"]
    kinds = {f["id"]: f["geometry"]["type"] for f in layer}
    assert kinds == {fids[0.5]: "Point", fids[5.0]: "Polygon", fids[200.0]: "Polygon"}
    assert resp.headers["x-shahr-thinned"] == "simplified=no; left-out=0; as-points=1"
    # z10 (a grid cell is 7.8 m): the 0.5 m and 5 m squares are left out, and counted.
    t = WMQ.tile(lon, lat, 10)
    resp = http.get(tile_url(tiny_dataset, 10, t.x, t.y))
    layer = mapbox_vector_tile.decode(resp.content)[tiny_dataset]["features"]
    assert [f["id"] for f in layer] == [fids[200.0]]
    assert resp.headers["x-shahr-thinned"] == "simplified=yes; left-out=2; as-points=0"
    # z5 (a grid cell is 250 m): all three are smaller than a cell. The tile is empty and
    # still says what it left out.
    t = WMQ.tile(lon, lat, 5)
    resp = http.get(tile_url(tiny_dataset, 5, t.x, t.y))
    assert resp.status_code == 204
    assert resp.headers["x-shahr-thinned"] == "simplified=yes; left-out=3; as-points=0"


def test_a_new_version_changes_the_etag(http: httpx.Client, settings: Settings,
                                        database_url: str, tmp_path: Path,
                                        centre: tuple[float, float]) -> None:
    from etl.manifest import load_manifest
    from etl.runner import run_job

    # A private copy of the demo parcels, so reloading it leaves the demo datasets alone.
    demo = settings.jobs_dirs[0] / "landuse-parcels.yaml"
    data = yaml.safe_load(demo.read_text(encoding="utf-8"))
    data["dataset"]["slug"] = "tiles-reload-parcels"
    data["source"]["path"] = str((demo.parent / data["source"]["path"]).resolve())
    path = tmp_path / "tiles-reload-parcels.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    first_run = run_job(load_manifest(path), url=database_url, settings=settings)
    assert first_run.status == "succeeded", first_run.error
    slug = "tiles-reload-parcels"
    _wait_for_collection(http, slug)
    t = centre_tile(centre, 14)
    url = tile_url(slug, 14, t.x, t.y)
    before = http.get(url)
    assert before.status_code == 200
    etag = before.headers["etag"]
    assert http.get(url, headers={"If-None-Match": etag}).status_code == 304

    again = run_job(load_manifest(path), url=database_url, settings=settings, force=True)
    assert again.status == "succeeded" and again.version == first_run.version + 1  # type: ignore[operator]
    deadline = time.monotonic() + 10
    while (after := http.get(url)).headers["etag"] == etag:
        assert time.monotonic() < deadline, "the ETag did not change after a reload"
        time.sleep(0.2)
    assert after.status_code == 200 and after.headers["x-shahr-cache"] == "miss"
    assert http.get(url, headers={"If-None-Match": etag}).status_code == 200
    # Same data, new version: the same features.
    assert set(decode(after, slug)) == set(decode(before, slug))


# ---- the cache on its own -----------------------------------------------------------------

def _tile(n: int, features: int = 1) -> RenderedTile:
    return RenderedTile(b"x" * n, features, 0, 0, False)


def test_cache_is_bounded_by_bytes_and_drops_old_versions() -> None:
    cache = TileCache(max_bytes=10_000)
    for i in range(20):
        cache.put(("a", 1, "WebMercatorQuad", 14, i, 0, ""), _tile(1000))
    assert cache.size <= 10_000
    assert cache.get(("a", 1, "WebMercatorQuad", 14, 0, 0, "")) is None  # evicted first
    assert cache.get(("a", 1, "WebMercatorQuad", 14, 19, 0, "")) is not None
    cache.put(("b", 7, "WebMercatorQuad", 14, 0, 0, ""), _tile(10))
    cache.put(("a", 2, "WebMercatorQuad", 14, 0, 0, ""), _tile(10))  # a new version of a
    assert cache.get(("a", 1, "WebMercatorQuad", 14, 19, 0, "")) is None
    assert cache.get(("b", 7, "WebMercatorQuad", 14, 0, 0, "")) is not None
    cache.put(("a", 1, "WebMercatorQuad", 14, 5, 0, ""), _tile(10))  # stale: not kept
    assert cache.get(("a", 1, "WebMercatorQuad", 14, 5, 0, "")) is None


def test_cache_renders_a_tile_once_for_concurrent_requests() -> None:
    import asyncio

    async def scenario() -> tuple[int, list[bool]]:
        cache = TileCache()
        calls = 0

        async def render() -> RenderedTile:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return _tile(100)

        key = ("a", 1, "WebMercatorQuad", 1, 0, 0, "")
        results = await asyncio.gather(*[cache.get_or_render(key, render) for _ in range(5)])
        return calls, [hit for _, hit in results]

    calls, hits = asyncio.run(scenario())
    assert calls == 1 and hits.count(False) == 1


def test_tile_validation() -> None:
    assert geotiles.full_detail_zoom("WebMercatorQuad") == 12
    assert geotiles.full_detail_zoom("WorldCRS84Quad") == 11
    spec = geotiles.tile("WorldCRS84Quad", 0, 1, 0)
    assert spec.bounds == (0.0, -90.0, 180.0, 90.0) and spec.srid == 4326
    with pytest.raises(geotiles.TileError, match="accepted: 0 to 0"):
        geotiles.tile("WorldCRS84Quad", 0, 0, 1)
    with pytest.raises(geotiles.TileError, match="plain whole number"):
        geotiles.tile("WebMercatorQuad", "03", 0, 0)
    with pytest.raises(geotiles.UnknownTileMatrixSet):
        geotiles.tile("EuropeanETRS89_LAEAQuad", 0, 0, 0)
    world = geotiles.tile("WebMercatorQuad", 0, 0, 0)
    assert world.lonlat == pytest.approx((-180, -85.0511287798, 180, 85.0511287798))
