"""The folium Map objects the builders return: which layers, legend and bounds they hold,
clustering, weights, heat, vector tiles above the threshold, the explorer's layer control;
and that every rendered map links only Shahr's own copies of its libraries."""

from __future__ import annotations

import re
from pathlib import Path

import folium
import pytest
from folium.map import FitBounds
from folium.plugins import Fullscreen, HeatMap, MarkerCluster, VectorGridProtobuf
from test_map_styles import PARCEL_FIELDS, lines, parcel_rows, points, polygons

from maps import offline
from maps.build import build_explore, build_map
from maps.legend import Legend
from maps.spec import Field, Layer, MapSpec

VENDOR = Path(__file__).resolve().parents[2] / "api" / "static" / "vendor"
TILES = "http://127.0.0.1:8000/collections/parcels/tiles/WebMercatorQuad/{z}/{x}/{y}"


def children(element: object, kind: type) -> list:
    found = []
    for child in element._children.values():  # type: ignore[attr-defined]
        if isinstance(child, kind):
            found.append(child)
        found += children(child, kind)
    return found


def urls(html: str) -> set[str]:
    return set(re.findall(r"""https?://[^\s"'<>)`\\]+""", html))


SCHOOL_FIELDS = (Field("school_id", "integer", is_key=True),
                 Field("name_fa", "string", "نام", "Name (Persian)"),
                 Field("name_en", "string", "نام انگلیسی", "Name (English)"),
                 Field("level", "string", "دوره", "Level"),
                 Field("students", "integer", "دانش‌آموزان", "Students"))
SCHOOLS = [{"school_id": i, "name_fa": f"مدرسه {i}", "name_en": f"School {i}",
            "level": ["primary", "lower secondary", "upper secondary"][i % 3],
            "students": 100 + 7 * i} for i in range(40)]
ROAD_FIELDS = (Field("road_id", "integer", is_key=True), Field("aadt", "integer"))
ROADS = [{"road_id": i, "aadt": 500 * (i + 1)} for i in range(20)]


def tiled(rows: list[dict]) -> Layer:
    return Layer(slug="parcels", title="Parcels", geometry="polygon", fields=PARCEL_FIELDS,
                 bounds=(51.2, 35.6, 51.5, 35.8), tiles=TILES, tile_layer="parcels",
                 sample=rows, feature_count=1_000_000)


def all_maps() -> dict[str, folium.Map]:
    """One map of each kind the service draws (basemap none)."""
    spec = MapSpec(basemap="none")
    return {
        "polygons": build_map(polygons(parcel_rows(), PARCEL_FIELDS), spec),
        "clustered points": build_map(points(SCHOOLS, SCHOOL_FIELDS), spec),
        "heat": build_map(points(SCHOOLS, SCHOOL_FIELDS), MapSpec(basemap="none", heat=True)),
        "weighted lines": build_map(lines(ROADS, ROAD_FIELDS), spec),
        "vector tiles": build_map(tiled(parcel_rows()), spec),
        "explore": build_explore([polygons(parcel_rows(), PARCEL_FIELDS),
                                  points(SCHOOLS, SCHOOL_FIELDS), tiled(parcel_rows())], spec),
    }


def test_polygon_map_embeds_the_features_with_legend_tooltips_and_bounds() -> None:
    layer = polygons(parcel_rows(), PARCEL_FIELDS)
    m = build_map(layer, MapSpec(basemap="none", lang="en"))
    (gj,) = children(m, folium.GeoJson)
    assert len(gj.data["features"]) == 60
    (tooltip,) = children(gj, folium.GeoJsonTooltip)
    assert tooltip.fields[0] == "landuse" and tooltip.aliases[0] == "Land use"
    (popup,) = children(gj, folium.GeoJsonPopup)
    assert popup.aliases == [f.label("en") for f in PARCEL_FIELDS]
    first = gj.data["features"][0]
    assert gj.style_function(first)["fillColor"] == "#f6d743"  # residential yellow
    (legend,) = children(m, Legend)
    assert legend.entries[0].label == "Residential"
    assert legend.sections[0][0] == "Land use"
    (fit,) = children(m, FitBounds)
    w, s, e, n = layer.bounds
    assert fit.bounds == [[s, w], [n, e]]
    assert not children(m, folium.TileLayer), "basemap none: no tile layer"


def test_persian_map_labels_and_direction() -> None:
    m = build_map(polygons(parcel_rows(), PARCEL_FIELDS), MapSpec(basemap="none", lang="fa"))
    (gj,) = children(m, folium.GeoJson)
    (popup,) = children(gj, folium.GeoJsonPopup)
    assert popup.aliases == [f.label("fa") for f in PARCEL_FIELDS]
    assert "مساحت (m2)" in popup.aliases
    (legend,) = children(m, Legend)
    assert legend.dir == "rtl" and legend.entries[0].label == "مسکونی"


def test_points_are_clustered() -> None:
    m = build_map(points(SCHOOLS, SCHOOL_FIELDS), MapSpec(basemap="none"))
    (cluster,) = children(m, MarkerCluster)
    (gj,) = children(cluster, folium.GeoJson)
    assert len(gj.data["features"]) == len(SCHOOLS)
    assert isinstance(gj.marker, folium.CircleMarker)
    assert children(gj, folium.GeoJsonTooltip)[0].fields[0] == "name_en"
    unclustered = build_map(points(SCHOOLS, SCHOOL_FIELDS), MapSpec(basemap="none",
                                                                   cluster=False))
    assert not children(unclustered, MarkerCluster)


def test_heat_map_has_every_point() -> None:
    m = build_map(points(SCHOOLS, SCHOOL_FIELDS), MapSpec(basemap="none", heat=True,
                                                          weight="students"))
    (heat,) = children(m, HeatMap)
    assert len(heat.data) == len(SCHOOLS)
    top = max(s["students"] for s in SCHOOLS)
    assert max(p[2] for p in heat.data) == pytest.approx(1.0)
    assert min(p[2] for p in heat.data) == pytest.approx(100 / top)
    assert not children(m, folium.GeoJson)


def test_lines_are_drawn_with_widths_by_volume() -> None:
    m = build_map(lines(ROADS, ROAD_FIELDS), MapSpec(basemap="none"))
    (gj,) = children(m, folium.GeoJson)
    widths = [gj.style_function(f)["weight"] for f in gj.data["features"]]
    assert widths[0] < widths[-1] and widths == sorted(widths)
    (legend,) = children(m, Legend)
    assert all(e.width is not None for e in legend.entries)


def test_large_layers_draw_from_vector_tiles_with_the_same_palette() -> None:
    m = build_map(tiled(parcel_rows()), MapSpec(basemap="none"))
    assert not children(m, folium.GeoJson)
    (vg,) = children(m, VectorGridProtobuf)
    assert vg.url == TILES
    assert isinstance(vg.options, str) and '"parcels"' in vg.options
    assert "#f6d743" in vg.options and "#e63946" in vg.options
    assert "interactive: true" in vg.options
    html = m.get_root().render()
    assert "shahr-popup" in html and ".on('click'" in html  # popups on click
    (legend,) = children(m, Legend)
    assert legend.entries[0].label == "Residential"


def test_explore_overlays_layers_with_a_layer_control_and_fits_them_all() -> None:
    parcels = polygons(parcel_rows(), PARCEL_FIELDS)
    schools = points(SCHOOLS, SCHOOL_FIELDS)
    schools = Layer(**{**schools.__dict__, "bounds": (50.0, 35.0, 52.0, 36.0)})
    m = build_explore([parcels, schools], MapSpec(basemap="none"))
    assert len(children(m, folium.LayerControl)) == 1
    names = [c.layer_name for c in children(m, folium.map.Layer)
             if c.control and not isinstance(c, folium.TileLayer)]
    assert names == ["Parcels", "Points"]
    (fit,) = children(m, FitBounds)
    assert fit.bounds == [[35.0, 50.0], [36.0, 52.0]]
    (legend,) = children(m, Legend)
    assert [t for t, _ in legend.sections] == ["Parcels: Land use", "Points: Level"]


def test_basemap_osm_or_template() -> None:
    layer = polygons(parcel_rows(), PARCEL_FIELDS)
    (osm,) = children(build_map(layer, MapSpec(basemap="osm")), folium.TileLayer)
    assert "tile.openstreetmap.org" in osm.tiles
    url = "https://tiles.example.org/{z}/{x}/{y}.png"
    (xyz,) = children(build_map(layer, MapSpec(basemap=url)), folium.TileLayer)
    assert xyz.tiles == url


@pytest.mark.parametrize("kind", ["polygons", "clustered points", "heat", "weighted lines",
                                  "vector tiles", "explore"])
def test_rendered_maps_link_no_cdn(kind: str) -> None:
    html = all_maps()[kind].get_root().render()
    tiles_base = TILES.split("{")[0]
    assert all(u.startswith(tiles_base) for u in urls(html)), urls(html)
    linked = re.findall(r'<(?:script src|link rel="stylesheet" href)="([^"]+)"', html)
    assert "/static/vendor/leaflet/leaflet.js" in linked
    for url in linked:
        assert url.startswith("/static/vendor/"), url
        assert (VENDOR / url.removeprefix("/static/vendor/")).is_file(), \
            f"{url} is not in api/static/vendor (make assets)"


def test_only_the_basemap_is_external() -> None:
    html = build_map(polygons(parcel_rows(), PARCEL_FIELDS), MapSpec(basemap="osm")) \
        .get_root().render()
    assert {u.split("/")[2] for u in urls(html)} <= {"tile.openstreetmap.org",
                                                      "www.openstreetmap.org"}


def test_a_plugin_without_a_local_copy_is_refused() -> None:
    m = folium.Map(tiles=None)
    Fullscreen().add_to(m)
    with pytest.raises(offline.OfflineAssetError, match=r"Control\.Fullscreen"):
        offline.localize(m, "/static")
    assert Fullscreen.default_js[0][1].startswith("https://"), "class defaults untouched"
    assert folium.Map.default_js[0][1].startswith("https://")


def test_standalone_inlines_every_vendored_file() -> None:
    html = build_map(points(SCHOOLS, SCHOOL_FIELDS), MapSpec(basemap="none")) \
        .get_root().render()
    out = offline.standalone(html, "/static", VENDOR)
    assert "/static/vendor" not in out
    assert "<script src=" not in out and 'rel="stylesheet"' not in out
    assert (VENDOR / "leaflet/leaflet.js").read_text(encoding="utf-8")[:200] in out
    assert "MarkerCluster" in out
    assert "data:image/png;base64," in out  # leaflet.css's images
    assert "data:font/woff2;base64," in out  # the Persian font
    # (the inlined libraries mention URLs in comments; nothing is loaded from one)
    assert not re.findall(r'<(?:script|link|img)\b[^>]*\s(?:src|href)="(?!data:)[^"]*"', out)
    with pytest.raises(offline.OfflineAssetError):
        offline.standalone('<script src="/static/vendor/nope.js"></script>', "/static", VENDOR)
