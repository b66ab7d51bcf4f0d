"""From layers and a spec to a folium Map: basemap, the layer drawn as embedded GeoJSON
(styled per feature, clustered points, tooltips and popups labelled in fa/en) or from vector
tiles (VectorGrid with the same style as a JavaScript function, popups on click), a heat map
on request, the legend, fitted to the data, and every asset served locally."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import folium
from branca.element import Element, MacroElement
from folium.plugins import HeatMap, MarkerCluster, VectorGridProtobuf
from jinja2 import Template

from maps import offline
from maps.legend import Legend
from maps.spec import Field, Layer, MapSpec, SpecError
from maps.styles import LegendEntry, Style, choose_style

OSM_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a>'
TOOLTIP_FIELDS = 3
MAX_ZOOM = 19

PAGE_CSS = """
<link rel="icon" href="data:,">
<style>
.leaflet-container { background: #eef0f2; font-family: Vazirmatn, system-ui, sans-serif; }
.leaflet-tooltip, .leaflet-popup-content { font-family: Vazirmatn, system-ui, sans-serif; }
.shahr-popup { border-collapse: collapse; font-size: 12px; }
.shahr-popup th { text-align: start; padding: 1px 8px 1px 0; color: #444; font-weight: 600; }
.shahr-popup td { padding: 1px 0; }
.leaflet-control-scale-line, .leaflet-control-attribution { direction: ltr; }
html[dir=rtl] .leaflet-tooltip, html[dir=rtl] .leaflet-popup-content { direction: rtl;
  text-align: right; }
html[dir=rtl] .shahr-popup th { padding: 1px 0 1px 8px; }
</style>
"""


def new_map(spec: MapSpec) -> folium.Map:
    """An empty map with the spec's basemap (none: a plain background, nothing fetched)."""
    # maxZoom as a map option: with no basemap no tile layer sets it, and clustering needs it
    m = folium.Map(location=None, tiles=None, control_scale=True, zoom_start=2,
                   maxZoom=MAX_ZOOM)
    if spec.basemap == "osm":
        folium.TileLayer(OSM_URL, attr=OSM_ATTRIBUTION, name="OpenStreetMap",
                         max_zoom=MAX_ZOOM, control=False).add_to(m)
    elif spec.basemap != "none":
        host = urlsplit(spec.basemap).hostname or "basemap"
        folium.TileLayer(spec.basemap, attr=host, name=host, max_zoom=MAX_ZOOM,
                         control=False).add_to(m)
    m.get_root().header.add_child(Element(PAGE_CSS), name="shahr_map_css")
    return m


def build_map(layer: Layer, spec: MapSpec, *, static_url: str = "/static",
              report_url: str | None = None) -> folium.Map:
    """One dataset, styled from the data unless the spec overrides it. `report_url` (a URL
    with `{id}`) adds a "report a problem" link to each feature's popup."""
    style = choose_style(layer, spec)
    m = new_map(spec)
    add_layer(m, layer, style, spec)
    if report_url:
        ReportLinks(m, report_url, spec.lang).add_to(m)
    Legend(legend_sections(layer, style, spec, single=True), spec.lang).add_to(m)
    fit(m, [layer])
    offline.localize(m, static_url)
    return m


def build_explore(layers: Sequence[Layer], spec: MapSpec, *,
                  static_url: str = "/static") -> folium.Map:
    """Several datasets overlaid, each styled from its own data, with a layer control."""
    m = new_map(spec)
    sections: list[tuple[str, tuple[LegendEntry, ...]]] = []
    for layer in layers:
        style = choose_style(layer, spec)
        add_layer(m, layer, style, spec)
        sections += legend_sections(layer, style, spec, single=False)
    Legend(sections, spec.lang).add_to(m)
    folium.LayerControl(collapsed=False,
                        position="topleft" if spec.lang == "fa" else "topright").add_to(m)
    fit(m, layers)
    offline.localize(m, static_url)
    return m


HEAT_COLORS = ("#0000ff", "#00ffff", "#00ff00", "#ffff00", "#ff0000")  # leaflet.heat's ramp


def legend_sections(layer: Layer, style: Style, spec: MapSpec, *, single: bool
                    ) -> list[tuple[str, tuple[LegendEntry, ...]]]:
    """(title, entries) for the legend: the colour classes, line widths, or heat."""
    fa = spec.lang == "fa"
    if style.heat:
        low, high = ("کم", "زیاد") if fa else ("fewer", "more")
        ramp = tuple(LegendEntry(c, low if i == 0 else high if i == len(HEAT_COLORS) - 1
                                 else "") for i, c in enumerate(HEAT_COLORS))
        what = "تراکم" if fa else "Density"
        return [(f"{layer.title}: {what}", ramp)]
    title = layer.title if style.kind == "plain" else style.title
    if not single and style.kind != "plain":
        title = f"{layer.title}: {title}"
    if style.weight_column and style.weight_column == style.column:
        # coloured and weighted by the same value: one legend of coloured widths
        merged = tuple(LegendEntry(e.color, e.label, w.width)
                       for e, w in zip(style.entries, style.weight_entries, strict=False))
        return [(title, merged + style.entries[len(merged):])]
    out = [(title, style.entries)]
    if style.weight_entries:
        wt = style.weight_title if single else f"{layer.title}: {style.weight_title}"
        out.append((wt, style.weight_entries))
    return out


def fit(m: folium.Map, layers: Sequence[Layer]) -> None:
    boxes = [b for b in (layer.bounds for layer in layers) if b and None not in b]
    if not boxes:
        return
    w = min(b[0] for b in boxes)
    s = min(b[1] for b in boxes)
    e = max(b[2] for b in boxes)
    n = max(b[3] for b in boxes)
    m.fit_bounds([[s, w], [n, e]])


def add_layer(m: folium.Map, layer: Layer, style: Style, spec: MapSpec) -> None:
    if style.heat:
        _heat(m, layer, style)
        return
    if layer.features is not None:
        _geojson(m, layer, style, spec)
    else:
        _vector_tiles(m, layer, style, spec)


# ---- embedded GeoJSON -------------------------------------------------------------------

def _geojson(m: folium.Map, layer: Layer, style: Style, spec: MapSpec) -> None:
    assert layer.features is not None
    geom = layer.geometry
    has_features = bool(layer.features.get("features"))
    fields = [f for f in layer.fields]
    kwargs: dict[str, Any] = {}
    if has_features and fields:
        tip = tooltip_fields(layer, style, spec)
        kwargs["tooltip"] = folium.GeoJsonTooltip(
            fields=[f.name for f in tip], aliases=[f.label(spec.lang) for f in tip],
            localize=True, sticky=True)
        kwargs["popup"] = folium.GeoJsonPopup(
            fields=[f.name for f in fields], aliases=[f.label(spec.lang) for f in fields],
            localize=True, class_name="shahr-popup")
    if geom == "point":
        kwargs["marker"] = folium.CircleMarker(radius=6)
    gj = folium.GeoJson(
        dict(layer.features), name=layer.title,
        style_function=lambda f: style.leaflet(f.get("properties") or {}, geom),
        highlight_function=lambda f: {"weight": 3, "color": "#111111"},
        zoom_on_click=False, **kwargs)
    if style.cluster and geom == "point":
        cluster = MarkerCluster(name=layer.title, options={"maxClusterRadius": 50})
        cluster.add_to(m)
        gj.control = False
        gj.add_to(cluster)
    else:
        gj.add_to(m)


def tooltip_fields(layer: Layer, style: Style, spec: MapSpec) -> list[Field]:
    """A name, the styled column and the weight: what a hover should tell."""
    wanted: list[Field] = []
    for name in (f"name_{spec.lang}", "name_en", "name_fa", "name"):
        f = layer.field(name)
        if f is not None:
            wanted.append(f)
            break
    for name in (style.column, style.weight_column):
        f = layer.field(name) if name else None
        if f is not None and f not in wanted:
            wanted.append(f)
    for f in layer.fields:
        if len(wanted) >= TOOLTIP_FIELDS:
            break
        if f not in wanted:
            wanted.append(f)
    return wanted[:TOOLTIP_FIELDS]


# ---- vector tiles -----------------------------------------------------------------------

class TilePopups(MacroElement):
    """Click a vector-tile feature: a popup of its properties with their fa/en labels."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        (function() {
            // Leaflet.VectorGrid 1.3.0 (the npm release) calls L.DomEvent.fakeStop on click,
            // which Leaflet 1.8 removed; its repository since calls stop() (PR #288).
            if (!L.DomEvent.fakeStop) { L.DomEvent.fakeStop = L.DomEvent.stop; }
            var fields = {{ this.fields|tojson }};
            function esc(v) {
                if (v === null || v === undefined) return '';
                return String(v).replace(/[&<>"']/g, function(c) {
                    return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c];
                });
            }
            {{ this.layer }}.on('click', function(e) {
                var p = (e.layer && e.layer.properties) || {};
                var rows = fields.map(function(f) {
                    return '<tr><th>' + esc(f[1]) + '</th><td>' + esc(p[f[0]]) + '</td></tr>';
                }).join('');
                L.popup().setLatLng(e.latlng)
                    .setContent('<table class="shahr-popup">' + rows + '</table>')
                    .openOn({{ this.map }});
            });
        })();
        {% endmacro %}
    """)

    def __init__(self, layer: VectorGridProtobuf, m: folium.Map,
                 fields: list[tuple[str, str]]) -> None:
        super().__init__()
        self._name = "TilePopups"
        self.layer = layer.get_name()
        self.map = m.get_name()
        self.fields = fields


class ReportLinks(MacroElement):
    """A "report a problem" link under a feature's popup (embedded GeoJSON layers, whose
    features carry their id), opening the report form in the top window."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        (function() {
            var tmpl = {{ this.url|tojson }}, label = {{ this.label|tojson }};
            {{ this.map }}.on('popupopen', function(e) {
                var src = e.popup._source, f = src && src.feature;
                if (!f || f.id === undefined || f.id === null) return;
                var box = e.popup.getElement(), content = box &&
                    box.querySelector('.leaflet-popup-content');
                if (!content || content.querySelector('.shahr-report')) return;
                var a = document.createElement('a');
                a.className = 'shahr-report';
                a.target = '_top';
                a.href = tmpl.replace('{id}', encodeURIComponent(f.id));
                a.textContent = label;
                var p = document.createElement('p');
                p.appendChild(a);
                content.appendChild(p);
            });
        })();
        {% endmacro %}
    """)

    def __init__(self, m: folium.Map, url: str, lang: str) -> None:
        super().__init__()
        self._name = "ReportLinks"
        self.map = m.get_name()
        self.url = url
        self.label = "گزارش مشکل این عارضه" if lang == "fa" else "Report a problem"


def _vector_tiles(m: folium.Map, layer: Layer, style: Style, spec: MapSpec) -> None:
    assert layer.tiles is not None
    name = layer.tile_layer or layer.slug
    options = (
        "{rendererFactory: L.canvas.tile, interactive: true, maxNativeZoom: 22, "
        f"vectorTileLayerStyles: {{{_js_string(name)}: {style.js_function(layer.geometry)}}}}}"
    )
    vg = VectorGridProtobuf(layer.tiles, name=layer.title, options=options)
    vg.add_to(m)
    TilePopups(vg, m, [(f.name, f.label(spec.lang)) for f in layer.fields]).add_to(m)


def _js_string(text: str) -> str:
    return json.dumps(text)


# ---- heat -------------------------------------------------------------------------------

def heat_points(layer: Layer, weight: str | None) -> list[list[float]]:
    if layer.heat_points is not None:
        return [[lat, lon, w] for lat, lon, w in layer.heat_points]
    out: list[list[float]] = []
    for f in (layer.features or {}).get("features", []):
        g = f.get("geometry") or {}
        if g.get("type") != "Point":
            continue
        lon, lat = g["coordinates"][:2]
        w = 1.0
        if weight:
            v = (f.get("properties") or {}).get(weight)
            w = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0
        out.append([lat, lon, w])
    return out


def _heat(m: folium.Map, layer: Layer, style: Style) -> None:
    points = heat_points(layer, style.heat_weight)
    if layer.features is None and layer.heat_points is None:
        raise SpecError("heat", "a heat map of a vector-tile layer needs its points")
    top = max((p[2] for p in points), default=1.0) or 1.0
    if style.heat_weight:  # leaflet.heat wants intensities in 0..1
        points = [[lat, lon, w / top] for lat, lon, w in points]
    group = folium.FeatureGroup(name=layer.title)
    HeatMap(points, radius=18, blur=14, min_opacity=0.35, max_zoom=16).add_to(group)
    group.add_to(m)
