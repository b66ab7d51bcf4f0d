"""The map legend: a Leaflet control holding plain HTML (a branca MacroElement, so it renders
with the map and needs no extra library: branca's own colormap legend pulls d3 from a CDN).
It lists the classes of the style with their colours, and line widths for weighted lines;
right-to-left in Persian."""

from __future__ import annotations

from html import escape

from branca.element import Element, Figure, MacroElement
from jinja2 import Template

from maps.styles import LegendEntry

CSS = """
<style>
.shahr-legend { background: rgba(255,255,255,.94); padding: 8px 10px; border-radius: 6px;
  box-shadow: 0 1px 4px rgba(0,0,0,.3); font: 13px/1.35 Vazirmatn, system-ui, sans-serif;
  color: #1a1a1a; max-height: 45vh; overflow-y: auto; max-width: 260px; }
.shahr-legend h2 { font-size: 13px; margin: 0 0 6px; font-weight: 700; }
.shahr-legend ul { list-style: none; margin: 0 0 4px; padding: 0; }
.shahr-legend li { display: flex; align-items: center; gap: 6px; margin: 2px 0; }
.shahr-legend .sw { display: inline-block; width: 16px; height: 12px; flex: none;
  border: 1px solid rgba(0,0,0,.35); }
.shahr-legend .ln { display: inline-block; width: 22px; flex: none; border-radius: 2px; }
.shahr-legend[dir=rtl] { text-align: right; }
</style>
"""


class Legend(MacroElement):
    """A legend control; `sections` are (title, entries) pairs, drawn in order."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        (function() {
            var legend = L.control({position: {{ this.position|tojson }}});
            legend.onAdd = function() {
                var div = L.DomUtil.create('div', 'shahr-legend');
                div.setAttribute('dir', {{ this.dir|tojson }});
                div.innerHTML = {{ this.html|tojson }};
                L.DomEvent.disableClickPropagation(div);
                L.DomEvent.disableScrollPropagation(div);
                return div;
            };
            legend.addTo({{ this._parent.get_name() }});
        })();
        {% endmacro %}
    """)

    def __init__(self, sections: list[tuple[str, tuple[LegendEntry, ...]]], lang: str) -> None:
        super().__init__()
        self._name = "Legend"
        self.sections = [(t, tuple(e)) for t, e in sections if e]
        self.lang = lang
        self.dir = "rtl" if lang == "fa" else "ltr"
        self.position = "bottomleft" if lang == "fa" else "bottomright"
        self.html = "".join(_section(t, e) for t, e in self.sections)

    @property
    def entries(self) -> list[LegendEntry]:
        return [e for _, entries in self.sections for e in entries]

    def render(self, **kwargs: object) -> None:
        figure = self.get_root()
        if isinstance(figure, Figure):
            figure.header.add_child(Element(CSS), name="shahr_legend_css")
        super().render(**kwargs)


def _section(title: str, entries: tuple[LegendEntry, ...]) -> str:
    items = []
    for e in entries:
        if e.width is not None:
            swatch = (f'<span class="ln" style="height:{e.width:g}px;'
                      f'background:{escape(e.color)}"></span>')
        else:
            swatch = f'<span class="sw" style="background:{escape(e.color)}"></span>'
        items.append(f"<li>{swatch}<span>{escape(e.label)}</span></li>")
    return f"<h2>{escape(title)}</h2><ul>{''.join(items)}</ul>"
