"""Maps that work without the internet. folium links Leaflet, jQuery, Bootstrap, Font
Awesome and every plugin from CDNs; here each element's links are replaced, before rendering,
by the copies Shahr serves under `{static}/vendor/` (installed from npm by `make assets`), and
the links a Shahr map does not need (Bootstrap, glyphicons, awesome-markers) are dropped. A
link with no local copy is an error, so a new plugin cannot slip a CDN back in.

`standalone` turns a rendered page into one self-contained file: the vendored scripts and
styles inlined, their images and fonts as data: URLs."""

from __future__ import annotations

import base64
import mimetypes
import re
from pathlib import Path

import folium
from branca.element import Element

# folium's resource name -> path under the vendor folder (see assets/vendor.sh).
VENDORED = {
    "leaflet": "leaflet/leaflet.js",
    "leaflet_css": "leaflet/leaflet.css",
    "jquery": "jquery/jquery.min.js",
    "markerclusterjs": "leaflet.markercluster/leaflet.markercluster.js",
    "markerclustercss": "leaflet.markercluster/MarkerCluster.css",
    "markerclusterdefaultcss": "leaflet.markercluster/MarkerCluster.Default.css",
    "leaflet-heat.js": "leaflet.heat/leaflet-heat.js",
    "vectorGrid": "leaflet.vectorgrid/Leaflet.VectorGrid.bundled.min.js",
}
# folium's defaults that no Shahr map uses (icons and page styling from Bootstrap).
DROPPED = {"bootstrap", "bootstrap_css", "glyphicons_css", "awesome_markers",
           "awesome_markers_css", "awesome_markers_font_css", "awesome_rotate_css"}
FONT_CSS = "vazirmatn/Vazirmatn-font-face.css"


class OfflineAssetError(RuntimeError):
    """An element links a resource Shahr does not vendor."""


def _walk(element: Element) -> list[Element]:
    found = [element]
    for child in element._children.values():
        found += _walk(child)
    return found


def localize(m: folium.Map, static_url: str) -> None:
    """Point every JS/CSS link of the map's elements at `{static_url}/vendor/...` and add
    the Persian web font. Call after the map is complete, before rendering."""
    vendor = f"{static_url.rstrip('/')}/vendor"
    for el in _walk(m):
        for attr in ("default_js", "default_css"):
            links = getattr(el, attr, None)
            if not links:
                continue
            local = []
            for name, url in links:
                if name in DROPPED:
                    continue
                if url.startswith(vendor):
                    local.append((name, url))
                    continue
                path = VENDORED.get(name)
                if path is None:
                    raise OfflineAssetError(
                        f"{type(el).__name__} links {name!r} ({url}); Shahr serves no copy "
                        "of it: add its npm package to assets/ and to VENDORED")
                local.append((name, f"{vendor}/{path}"))
            setattr(el, attr, local)  # an instance list: the class default stays as it was
    m.get_root().header.add_child(
        Element(f'<link rel="stylesheet" href="{vendor}/{FONT_CSS}"/>'), name="vazirmatn")


_SCRIPT = re.compile(r'<script src="(?P<url>[^"]+)"></script>')
_STYLESHEET = re.compile(r'<link rel="stylesheet" href="(?P<url>[^"]+)"\s*/?>')
_CSS_URL = re.compile(r"url\((['\"]?)(?!data:|https?:|#)(?P<path>[^'\")]+)\1\)")
FONT_WEIGHTS = ("Regular", "Bold")  # the font faces a standalone map inlines


def standalone(html: str, static_url: str, vendor_dir: Path) -> str:
    """The page with every `{static_url}/vendor/...` script and stylesheet inlined, so the
    file works when opened from disk with no server and no network."""
    vendor = f"{static_url.rstrip('/')}/vendor/"

    def local(url: str) -> Path | None:
        if not url.startswith(vendor):
            return None
        path = (vendor_dir / url[len(vendor):]).resolve()
        if vendor_dir.resolve() not in path.parents or not path.is_file():
            raise OfflineAssetError(f"{url}: no such vendored file under {vendor_dir} "
                                    "(run `make assets`)")
        return path

    def script(m: re.Match[str]) -> str:
        path = local(m["url"])
        if path is None:
            return m[0]
        code = path.read_text(encoding="utf-8").replace("</script", "<\\/script")
        return f"<script>/* {path.parent.name}/{path.name} */\n{code}\n</script>"

    def stylesheet(m: re.Match[str]) -> str:
        path = local(m["url"])
        if path is None:
            return m[0]
        css = path.read_text(encoding="utf-8")
        if path.name == Path(FONT_CSS).name:
            css = _only_weights(css, FONT_WEIGHTS)
        css = _CSS_URL.sub(lambda u: f"url({_data_url(path.parent / u['path'])})", css)
        return f"<style>/* {path.parent.name}/{path.name} */\n{css}\n</style>"

    return _STYLESHEET.sub(stylesheet, _SCRIPT.sub(script, html))


def _only_weights(css: str, weights: tuple[str, ...]) -> str:
    faces = re.findall(r"@font-face\s*{[^}]*}", css)
    kept = [f for f in faces if any(f"Vazirmatn-{w}." in f for w in weights)]
    return "\n".join(kept)


def _data_url(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or (
        "font/woff2" if path.suffix == ".woff2" else "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
