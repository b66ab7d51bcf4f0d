"""The map routes over real HTTP on the demo city: styles chosen from the data, filters as on
items, the vector-tile path above the threshold, embed / download / JSON, and problems for
bad parameters (as HTML when a browser asks)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import morecantile
import pytest

from catalog.settings import Settings

pytestmark = pytest.mark.usefixtures("demo_loaded")
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture
def low_threshold(settings: Settings) -> Iterator[int]:
    """Draw layers of more than 100 features from vector tiles, for this test only."""
    old = settings.map_feature_threshold
    settings.map_feature_threshold = 100
    yield 100
    settings.map_feature_threshold = old


def matched(http: httpx.Client, slug: str, cql: str | None = None) -> int:
    params = {"limit": "1", **({"filter": cql} if cql else {})}
    r = http.get(f"/collections/{slug}/items", params=params)
    assert r.status_code == 200, r.text
    return int(r.json()["numberMatched"])


def test_landuse_map_is_styled_from_the_data(http: httpx.Client) -> None:
    r = http.get("/maps/landuse-parcels", params={"f": "json", "lang": "en"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["drawn_from"] == "geojson"
    assert doc["features"] == matched(http, "landuse-parcels")
    assert doc["style"]["kind"] == "categories" and doc["style"]["column"] == "landuse"
    assert doc["style"]["palette"] == "landuse"
    legend = {e["label"]: e["color"] for e in doc["style"]["legend"]}
    assert legend["Residential"] == "#f6d743" and legend["Commercial"] == "#e63946"
    assert doc["iframe"].startswith("<iframe") and "embed=1" in doc["iframe"]
    fa = http.get("/maps/landuse-parcels", params={"f": "json", "lang": "fa"}).json()
    assert "مسکونی" in {e["label"] for e in fa["style"]["legend"]}


@pytest.mark.parametrize(("slug", "kind", "column"), [
    ("districts", "choropleth", "population"),
    ("roads", "choropleth", "aadt"),
    ("crashes", "categories", "severity"),
    ("buildings", "categories", "use"),
    ("metro-lines", "categories", "colour"),
])
def test_each_kind_of_layer_gets_a_sensible_style(http: httpx.Client, slug: str, kind: str,
                                                  column: str) -> None:
    doc = http.get(f"/maps/{slug}", params={"f": "json"}).json()
    assert (doc["style"]["kind"], doc["style"]["column"]) == (kind, column)


def test_roads_are_weighted_and_points_clustered(http: httpx.Client) -> None:
    roads = http.get("/maps/roads", params={"f": "json"}).json()
    assert roads["style"]["weight"] == "aadt"
    schools = http.get("/maps/schools", params={"f": "json"}).json()
    assert schools["style"]["cluster"] is True


def test_classification_and_k_are_honoured(http: httpx.Client) -> None:
    q = http.get("/maps/landuse-parcels", params={
        "f": "json", "column": "area_m2", "classify": "quantiles", "k": "4"}).json()
    nb = http.get("/maps/landuse-parcels", params={
        "f": "json", "column": "area_m2", "classify": "natural_breaks", "k": "4"}).json()
    assert q["style"]["kind"] == nb["style"]["kind"] == "choropleth"
    assert len(q["style"]["bins"]) == len(nb["style"]["bins"]) == 4
    assert q["style"]["bins"] != nb["style"]["bins"]
    assert q["style"]["bins"][-1] == nb["style"]["bins"][-1]  # both end at the maximum


def test_filter_is_the_items_filter(http: httpx.Client) -> None:
    cql = "landuse = 'residential'"
    doc = http.get("/maps/landuse-parcels", params={"f": "json", "filter": cql}).json()
    assert doc["features"] == matched(http, "landuse-parcels", cql) > 0
    assert [e["label"] for e in doc["style"]["legend"]] in (["Residential"], ["مسکونی"])
    embed = http.get("/maps/landuse-parcels", params={"embed": "1", "filter": cql})
    assert embed.text.count('"landuse": "residential"') == doc["features"]
    assert '"landuse": "commercial"' not in embed.text


def test_embed_is_a_bare_map_using_only_local_assets(http: httpx.Client) -> None:
    r = http.get("/maps/schools", params={"embed": "1", "lang": "en"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert '<html lang="en" dir="ltr">' in html
    assert "site-header" not in html  # no page chrome
    assert "L.markerClusterGroup" in html
    assets = re.findall(r'<(?:script src|link rel="stylesheet" href)="([^"]+)"', html)
    assert any(a.endswith("/static/vendor/leaflet/leaflet.js") for a in assets)
    for url in assets:
        assert url.startswith(str(http.base_url).rstrip("/") + "/static/vendor/"), url
        got = http.get(url)
        assert got.status_code == 200 and got.content, url
    fa = http.get("/maps/schools", params={"embed": "1", "lang": "fa"}).text
    assert '<html lang="fa" dir="rtl">' in fa


def test_vendored_font_and_images_are_served(http: httpx.Client) -> None:
    css = http.get("/static/vendor/vazirmatn/Vazirmatn-font-face.css")
    assert css.status_code == 200
    for rel in re.findall(r"url\('([^']+)'\)", css.text)[:3]:
        assert http.get(f"/static/vendor/vazirmatn/{rel}").status_code == 200
    assert http.get("/static/vendor/leaflet/images/marker-icon.png").status_code == 200


def test_page_shows_the_map_the_download_and_the_embed_code(http: httpx.Client) -> None:
    r = http.get("/maps/districts", params={"lang": "en"}, headers=HTML)
    assert r.status_code == 200
    html = r.text
    assert re.search(r'<iframe class="shahr-map-frame" src="[^"]*/maps/districts\?[^"]*embed=1',
                     html)
    assert "download=1" in html
    assert "&lt;iframe" in html  # the snippet, escaped inside a textarea


def test_download_is_a_standalone_file(http: httpx.Client) -> None:
    r = http.get("/maps/crashes", params={"download": "1", "heat": "true"})
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="crashes-map.html"'
    assert "/static/vendor" not in r.text and "<script src=" not in r.text
    assert "L.heatLayer" in r.text or "heatLayer" in r.text


def test_large_layers_are_drawn_from_vector_tiles(http: httpx.Client,
                                                  low_threshold: int) -> None:
    assert matched(http, "landuse-parcels") > low_threshold
    doc = http.get("/maps/landuse-parcels", params={"f": "json", "lang": "en"}).json()
    assert doc["drawn_from"] == "vector-tiles"
    assert doc["tiles"] == (f"{str(http.base_url).rstrip('/')}/collections/landuse-parcels/"
                            "tiles/WebMercatorQuad/{z}/{x}/{y}")
    assert doc["style"]["palette"] == "landuse"  # styled from a sample of rows
    assert "Residential" in {e["label"] for e in doc["style"]["legend"]}
    embed = http.get("/maps/landuse-parcels", params={"embed": "1"}).text
    assert "L.vectorGrid.protobuf" in embed and '"type": "FeatureCollection"' not in embed
    w, s, e, n = http.get("/collections/landuse-parcels").json()["extent"]["spatial"]["bbox"][0]
    t = morecantile.tms.get("WebMercatorQuad").tile((w + e) / 2, (s + n) / 2, 13)
    tile = http.get(doc["tiles"].format(z=t.z, x=t.x, y=t.y))
    assert tile.status_code == 200
    assert tile.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert int(tile.headers["x-shahr-features"]) > 0


def test_filters_reach_the_tiles_and_small_results_are_embedded(http: httpx.Client,
                                                                 low_threshold: int) -> None:
    wide = "area_m2 > 10"
    doc = http.get("/maps/landuse-parcels", params={"f": "json", "filter": wide}).json()
    assert doc["drawn_from"] == "vector-tiles"
    assert f"filter={quote(wide, safe='')}" in doc["tiles"].replace("+", "%20")
    few = "landuse = 'health'"
    n = matched(http, "landuse-parcels", few)
    assert 0 < n <= low_threshold
    small = http.get("/maps/landuse-parcels", params={"f": "json", "filter": few}).json()
    assert small["drawn_from"] == "geojson" and small["features"] == n


def test_heat_map_of_a_large_point_layer_reads_its_points(http: httpx.Client,
                                                          low_threshold: int) -> None:
    cql = "severity <> 'damage'"
    n = matched(http, "crashes", cql)
    assert n > low_threshold
    doc = http.get("/maps/crashes", params={"f": "json", "heat": "true", "filter": cql}).json()
    assert doc["drawn_from"] == "vector-tiles" and doc["style"]["kind"] == "heat"
    embed = http.get("/maps/crashes", params={"embed": "1", "heat": "true", "filter": cql})
    call = embed.text.split("L.heatLayer(", 1)[1].split(")", 1)[0]
    assert len(re.findall(r"\[-?[\d.]+, -?[\d.]+, [\d.]+\]", call)) == n


def test_explore_overlays_layers_with_their_own_filters(http: httpx.Client) -> None:
    cql = "level = 'primary'"
    r = http.get("/maps/explore", params={"layers": "districts,schools", "f": "json",
                                          "filter.schools": cql})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert [layer["dataset"] for layer in doc["layers"]] == ["districts", "schools"]
    assert doc["layers"][1]["features"] == matched(http, "schools", cql)
    assert doc["layers"][0]["features"] == matched(http, "districts")
    embed = http.get("/maps/explore", params={"layers": "districts,schools", "embed": "1"})
    assert "L.control.layers" in embed.text


@pytest.mark.parametrize(("path", "params", "status", "parameter"), [
    ("/maps/nowhere", {}, 404, None),
    ("/maps/districts", {"column": "nope"}, 400, "column"),
    ("/maps/districts", {"classify": "jenks"}, 400, "classify"),
    ("/maps/districts", {"k": "12"}, 400, "k"),
    ("/maps/districts", {"palette": "rainbow"}, 400, "palette"),
    ("/maps/districts", {"heat": "true"}, 400, "heat"),
    ("/maps/districts", {"style": "choropleth", "column": "name_en"}, 400, "column"),
    ("/maps/districts", {"filter": "population >"}, 400, "filter"),
    ("/maps/districts", {"zoom": "3"}, 400, "zoom"),
    ("/maps/districts", {"basemap": "tiles.example.org"}, 400, "basemap"),
    ("/maps/explore", {}, 400, "layers"),
    ("/maps/explore", {"layers": "a,b,c,d,e,f,g,h,i"}, 400, "layers"),
    ("/maps/explore", {"layers": "districts,nowhere"}, 404, None),
    ("/maps/explore", {"layers": "districts", "filter": "x = 1"}, 400, "filter"),
    ("/maps/explore", {"layers": "districts", "filter.districts": "nope = 1"}, 400,
     "filter.districts"),
])
def test_bad_parameters_are_problems(http: httpx.Client, path: str, params: dict,
                                     status: int, parameter: str | None) -> None:
    r = http.get(path, params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["detail"]
    if parameter:
        assert body["parameter"] == parameter
        assert parameter.split(".")[0] in body["detail"], body["detail"]


def test_a_browser_gets_the_problem_as_a_page(http: httpx.Client) -> None:
    r = http.get("/maps/districts", params={"column": "nope", "lang": "en"}, headers=HTML)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/html")
    assert "no column &#39;nope&#39;" in r.text or "no column 'nope'" in r.text
    r = http.get("/maps/nowhere", headers=HTML)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
