"""Map pages in real headless Chromium, offline (basemap none; the page fixtures fail on any
console error or request leaving 127.0.0.1): features drawn as Leaflet paths, clustered
markers, heat canvases and vector-tile canvases at city zoom, the explorer's layer control,
the Persian page, and a downloaded map that works from another origin with no server of
ours behind it. Screenshots land in test-output/screenshots/."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from catalog.settings import Settings

pytestmark = pytest.mark.usefixtures("demo_loaded")

# Canvases with at least one painted pixel (VectorGrid tiles, heat): proof something drew.
PAINTED_CANVASES = """(selector) => Array.from(document.querySelectorAll(selector)).filter(c => {
    if (!c.width || !c.height) return false;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true;
    return false;
}).length"""


def features(live_server: str, path: str, **params: str) -> int:
    doc = httpx.get(f"{live_server}{path}", params={"f": "json", **params}, timeout=30).json()
    return int(doc["features"])


def open_map(page: object, url: str) -> None:
    page.goto(url, wait_until="networkidle")  # type: ignore[attr-defined]
    page.wait_for_selector(".leaflet-container")  # type: ignore[attr-defined]
    page.wait_for_timeout(300)  # type: ignore[attr-defined]


def test_map_draws_every_parcel_with_a_legend(page, shot, live_server: str) -> None:
    n = features(live_server, "/maps/landuse-parcels")
    open_map(page, "/maps/landuse-parcels?embed=1&lang=en")
    assert page.locator("path.leaflet-interactive").count() == n
    legend = page.locator(".shahr-legend")
    assert legend.is_visible()
    assert "Residential" in legend.inner_text() and "Commercial" in legend.inner_text()
    fills = page.eval_on_selector_all(
        "path.leaflet-interactive", "ps => new Set(ps.map(p => p.getAttribute('fill'))).size")
    assert fills >= 5, "parcels are coloured by land use"
    shot(page, "map-landuse-parcels")
    page.locator("path.leaflet-interactive").nth(n // 2).click(force=True)
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for()
    assert "Land use" in popup.inner_text()


def test_dataset_map_page_shows_the_map_in_a_frame(page, shot) -> None:
    page.goto("/maps/roads?lang=en", wait_until="networkidle")
    frame = page.frame_locator("iframe.shahr-map-frame")
    frame.locator(".leaflet-container").wait_for()
    assert frame.locator("path.leaflet-interactive").count() > 100
    assert page.locator("textarea#shahr-embed-code").input_value().startswith("<iframe")
    shot(page, "map-page-roads")


def test_points_are_clustered(page, shot) -> None:
    open_map(page, "/maps/crashes?embed=1&lang=en")
    clusters = page.locator(".marker-cluster")
    assert clusters.count() > 0
    total = sum(int(t) for t in clusters.all_inner_texts() if t.strip().isdigit())
    assert total > 0
    shot(page, "map-crashes-clustered")


def test_heat_map(page, shot) -> None:
    open_map(page, "/maps/crashes?embed=1&heat=true&lang=en")
    assert page.evaluate(PAINTED_CANVASES, "canvas.leaflet-heatmap-layer") == 1
    assert page.locator("path.leaflet-interactive").count() == 0
    shot(page, "map-crashes-heat")


def test_explore_two_layers_with_the_layer_control(page, shot, live_server: str) -> None:
    districts = features(live_server, "/maps/districts")
    open_map(page, "/maps/explore?layers=districts,roads&embed=1&lang=en")
    overlays = page.locator(".leaflet-control-layers-overlays label")
    assert overlays.count() == 2
    assert overlays.all_inner_texts()[0].strip() == "Municipal districts"
    drawn = page.locator("path.leaflet-interactive").count()
    roads = features(live_server, "/maps/roads")
    assert drawn == districts + roads
    shot(page, "map-explore-districts-roads")
    overlays.nth(1).locator("input").uncheck()  # hide the roads
    page.wait_for_timeout(200)
    assert page.locator("path.leaflet-interactive").count() == districts


@pytest.fixture
def low_threshold(settings: Settings) -> Iterator[int]:
    old = settings.map_feature_threshold
    settings.map_feature_threshold = 100
    yield 100
    settings.map_feature_threshold = old


def test_large_layer_draws_vector_tiles_at_city_zoom(page, shot, low_threshold: int) -> None:
    tiles: list[int] = []
    page.on("response", lambda r: "/tiles/WebMercatorQuad/" in r.url and tiles.append(r.status))
    open_map(page, "/maps/landuse-parcels?embed=1&lang=en")
    page.wait_for_function("document.querySelectorAll('.leaflet-tile-loaded').length > 0")
    assert page.locator("path.leaflet-interactive").count() == 0  # nothing embedded
    assert tiles and set(tiles) <= {200, 204} and 200 in tiles
    painted = page.evaluate(PAINTED_CANVASES, ".leaflet-tile-container canvas")
    assert painted >= 2, "parcels drawn on the tile canvases"
    zoom = page.evaluate("Object.values(window).find(v => v instanceof L.Map).getZoom()")
    assert 11 <= zoom <= 15, "fitted to the city"
    shot(page, "map-landuse-parcels-vector-tiles")
    popup = page.locator(".leaflet-popup-content")
    for dx, dy in ((0, 0), (15, 10), (-20, 5), (8, -25), (-10, -12), (30, 30)):
        page.mouse.click(640 + dx, 450 + dy)  # a click on a tile's parcel opens its popup
        page.wait_for_timeout(150)
        if popup.count():
            break
    assert "Land use" in popup.inner_text()


def test_persian_map_page(page_fa, shot) -> None:
    page_fa.goto("/maps/landuse-parcels", wait_until="networkidle")
    assert page_fa.locator("html").get_attribute("dir") == "rtl"
    frame = page_fa.frame_locator("iframe.shahr-map-frame")
    frame.locator(".shahr-legend").wait_for()
    assert frame.locator("html").get_attribute("dir") == "rtl"
    legend = frame.locator(".shahr-legend").inner_text()
    assert "مسکونی" in legend and "Residential" not in legend
    shot(page_fa, "map-page-fa")


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A bare static server on another loopback port: the downloaded file is opened from
    there, so anything it still needed from Shahr would show as a request to Shahr."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    thread.join(timeout=5)


def test_downloaded_map_works_standalone(page, shot, live_server: str, other_origin) -> None:
    origin, folder = other_origin
    r = httpx.get(f"{live_server}/maps/schools", params={"download": "1", "lang": "en"},
                  timeout=30)
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    (folder / "schools-map.html").write_text(r.text, encoding="utf-8")
    requested: list[str] = []
    page.on("request", lambda q: requested.append(q.url))
    open_map(page, f"{origin}/schools-map.html")
    assert page.locator(".marker-cluster, path.leaflet-interactive").count() > 0
    assert [u for u in requested if not u.startswith(("data:", origin))] == [], requested
    shot(page, "map-schools-downloaded")
