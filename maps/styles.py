"""The style of a layer, chosen from the data unless the spec says otherwise: a land-use-like
column gets the land-use palette, another small set of categories a qualitative palette,
a numeric column a classed choropleth (quantiles or natural breaks, via mapclassify), points
are clustered, lines are weighted by a volume-like column. The same Style colours embedded
GeoJSON (in Python) and vector tiles (as a JavaScript function), so both paths look alike."""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maps import palettes
from maps.numbers import format_number
from maps.spec import Field, Layer, MapSpec, SpecError

MAX_CATEGORIES = 12  # more distinct values than this: the rest are drawn as "other"
LANDUSE_MATCH = 0.6  # share of a column's values the land-use vocabulary must know
EXACT_BREAKS_MAX = 300  # natural breaks on more values runs on an even sample of them
# (mapclassify's Fisher-Jenks is quadratic: ~0.2 s for 300 values without numba)
VOLUME_WORDS = ("aadt", "volume", "traffic", "flow", "count", "ridership", "trips",
                "vehicles", "passengers")
NAME_WORDS = ("name", "title", "address", "description")
LINE_WIDTHS = (1.5, 2.5, 4.0, 6.0, 8.5)
HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class LegendEntry:
    color: str
    label: str
    width: float | None = None  # a line width swatch instead of a filled box


@dataclass(frozen=True)
class Style:
    kind: str  # categories | choropleth | plain
    column: str | None = None
    title: str = ""
    categories: Mapping[str, str] = field(default_factory=dict)  # raw value -> colour
    landuse: bool = False
    bins: tuple[float, ...] = ()  # upper bounds of the classes
    colors: tuple[str, ...] = ()
    classify: str | None = None
    base_color: str = palettes.PLAIN_COLOR
    entries: tuple[LegendEntry, ...] = ()
    weight_column: str | None = None
    weight_bins: tuple[float, ...] = ()
    weight_title: str = ""
    weight_entries: tuple[LegendEntry, ...] = ()
    cluster: bool = False
    heat: bool = False
    heat_weight: str | None = None

    # -- colours in Python (embedded GeoJSON) ----------------------------------------------
    def color(self, props: Mapping[str, Any]) -> str:
        if self.kind == "categories" and self.column:
            v = props.get(self.column)
            if v is None:
                return palettes.NO_DATA_COLOR
            found = self.categories.get(_key(v))
            if found is None and self.landuse:
                cls = palettes.landuse_class(v)
                found = cls.color if cls else None
            return found or palettes.OTHER_COLOR
        if self.kind == "choropleth" and self.column:
            return _class_color(props.get(self.column), self.bins, self.colors)
        return self.base_color

    def width(self, props: Mapping[str, Any]) -> float:
        if not self.weight_column:
            return 2.5
        v = _number(props.get(self.weight_column))
        if v is None:
            return LINE_WIDTHS[0]
        for i, upper in enumerate(self.weight_bins):
            if v <= upper:
                return LINE_WIDTHS[min(i, len(LINE_WIDTHS) - 1)]
        return LINE_WIDTHS[-1]

    def leaflet(self, props: Mapping[str, Any], geometry: str) -> dict[str, Any]:
        """Leaflet path options for one feature."""
        c = self.color(props)
        if geometry == "line":
            return {"color": c, "weight": self.width(props), "opacity": 0.9}
        if geometry == "point":
            return {"color": "#333333", "weight": 1, "fill": True, "fillColor": c,
                    "fillOpacity": 0.9, "radius": 6}
        return {"color": "#555555", "weight": 0.6, "opacity": 0.8, "fillColor": c,
                "fillOpacity": 0.72}

    # -- the same in JavaScript (vector tiles) ---------------------------------------------
    def js_function(self, geometry: str) -> str:
        """`function(properties, zoom)` returning Leaflet path options, for VectorGrid."""
        data = {
            "kind": self.kind, "column": self.column, "base": self.base_color,
            "cats": dict(self.categories) if not self.landuse
            else {**palettes.landuse_spellings(), **self.categories},
            "other": palettes.OTHER_COLOR, "nodata": palettes.NO_DATA_COLOR,
            "bins": list(self.bins), "colors": list(self.colors),
            "wcol": self.weight_column, "wbins": list(self.weight_bins),
            "widths": list(LINE_WIDTHS), "geom": geometry,
        }
        return "(function(){var S=" + json.dumps(data, ensure_ascii=False) + ";" + _JS_STYLE + \
            "})()"


_JS_STYLE = """
function cls(v, bins, out, last) {
  for (var i = 0; i < bins.length; i++) {
    if (v <= bins[i]) return out[Math.min(i, out.length - 1)];
  }
  return last;
}
function colour(p) {
  var v = S.column ? p[S.column] : null;
  if (S.kind === 'categories') {
    if (v === null || v === undefined) return S.nodata;
    var k = String(v);
    return S.cats[k] || S.cats[k.toLowerCase()] || S.other;
  }
  if (S.kind === 'choropleth') {
    if (v === null || v === undefined || v === '' || isNaN(+v)) return S.nodata;
    return cls(+v, S.bins, S.colors, S.colors[S.colors.length - 1]);
  }
  return S.base;
}
return function(p, z) {
  var c = colour(p || {});
  if (S.geom === 'line') {
    var w = 2.5;
    if (S.wcol) { var x = p[S.wcol]; w = (x === null || x === undefined) ? S.widths[0]
        : cls(+x, S.wbins, S.widths, S.widths[S.widths.length - 1]); }
    return {color: c, weight: w, opacity: 0.9};
  }
  if (S.geom === 'point') {
    return {radius: 4, fill: true, fillColor: c, fillOpacity: 0.9, color: '#333333', weight: 0.5};
  }
  return {fill: true, fillColor: c, fillOpacity: 0.72, color: '#555555', weight: 0.4, opacity: 0.8};
};
"""


def _key(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _number(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _class_color(v: Any, bins: Sequence[float], colors: Sequence[str]) -> str:
    x = _number(v)
    if x is None or not colors:
        return palettes.NO_DATA_COLOR
    for i, upper in enumerate(bins):
        if x <= upper:
            return colors[min(i, len(colors) - 1)]
    return colors[-1]


# ---- choosing ---------------------------------------------------------------------------

def choose_style(layer: Layer, spec: MapSpec) -> Style:
    """The style for `layer` under `spec`; SpecError when the spec asks for the impossible
    (an unknown column, heat on polygons, a choropleth of text, ...)."""
    rows = layer.rows()
    lang = spec.lang
    column = _checked_field(layer, spec.column, "column") if spec.column else None
    weight = _checked_field(layer, spec.weight, "weight") if spec.weight else None
    if weight is not None and not weight.numeric:
        raise SpecError("weight", f"{weight.name!r} is {weight.type}; a weight needs a "
                        f"numeric column: {_names(_numeric_fields(layer)) or 'none here'}")
    if weight is not None and layer.geometry == "polygon":
        raise SpecError("weight", "weights apply to lines (width) and points (heat "
                        "intensity), not to polygons; use column= for a choropleth")
    if spec.heat and layer.geometry != "point":
        raise SpecError("heat", f"a heat map needs a point layer; {layer.slug!r} is made of "
                        f"{layer.geometry}s")
    if spec.cluster and layer.geometry != "point":
        raise SpecError("cluster", f"clustering applies to point layers; {layer.slug!r} is "
                        f"made of {layer.geometry}s")

    kind = spec.style
    if column is None and kind in ("categories", "choropleth"):
        column = _auto_column(layer, rows, kind)
        if column is None:
            wanted = "text or yes/no" if kind == "categories" else "numeric"
            raise SpecError("style", f"{kind}: {layer.slug!r} has no {wanted} column to "
                            "colour by; give column=")
    if kind == "auto":
        if column is None:
            column = _auto_column(layer, rows, "auto")
        kind = "plain" if column is None else (
            "choropleth" if column.numeric and not _is_landuse(column, rows) else "categories")
    if kind == "choropleth" and column is not None and not column.numeric:
        raise SpecError("column", f"{column.name!r} is {column.type}; a choropleth needs a "
                        f"numeric column: {_names(_numeric_fields(layer)) or 'none here'} "
                        "(or style=categories)")

    if weight is None and layer.geometry == "line" and spec.style == "auto":
        weight = _volume_field(layer, rows)
    if spec.style == "auto" and spec.column is None and weight is not None \
            and layer.geometry == "line" and not _identity_colours(column, rows):
        column, kind = weight, "choropleth"  # lines: coloured and weighted by the volume

    if kind == "categories" and column is not None:
        style = _categories(layer, column, rows, spec)
    elif kind == "choropleth" and column is not None:
        style = _choropleth(column, rows, spec)
    else:
        style = Style(kind="plain", title=layer.title, base_color=palettes.PLAIN_COLOR,
                      entries=(LegendEntry(palettes.PLAIN_COLOR, layer.title),))

    extra: dict[str, Any] = {}
    if weight is not None and layer.geometry == "line":
        wbins = _breaks([_number(r.get(weight.name)) for r in rows], "quantiles",
                        len(LINE_WIDTHS))
        extra.update(weight_column=weight.name, weight_bins=tuple(wbins),
                     weight_title=weight.label(lang),
                     weight_entries=_range_entries(wbins, [palettes.WEIGHT_COLOR] * len(wbins),
                                                   _values(rows, weight.name), lang,
                                                   widths=LINE_WIDTHS))
    if layer.geometry == "point":
        # vector tiles draw every point themselves; clusters need the features at hand
        extra["cluster"] = layer.features is not None and not spec.heat and \
            (spec.cluster if spec.cluster is not None else True)
        extra["heat"] = spec.heat
        extra["heat_weight"] = weight.name if weight is not None else None
    return Style(**{**style.__dict__, **extra})


def _checked_field(layer: Layer, name: str, parameter: str) -> Field:
    f = layer.field(name)
    if f is None:
        raise SpecError(parameter, f"{layer.slug!r} has no column {name!r}; columns: "
                        f"{_names(layer.fields)}")
    return f


def _names(fields: Sequence[Field]) -> str:
    return ", ".join(f.name for f in fields)


def _numeric_fields(layer: Layer) -> list[Field]:
    return [f for f in layer.fields if f.numeric]


def _values(rows: Sequence[Mapping[str, Any]], name: str) -> list[Any]:
    return [r.get(name) for r in rows if r.get(name) is not None]


def _is_id(f: Field) -> bool:
    n = f.name.lower()
    return f.is_key or n == "id" or n.endswith("_id") or n == "fid"


def _is_name(f: Field) -> bool:
    n = f.name.lower()
    return any(w in n for w in NAME_WORDS)


def _landuse_share(values: Sequence[Any]) -> tuple[float, int]:
    distinct = {palettes.normalise(v) for v in values}
    if not distinct:
        return 0.0, 0
    known = {d for d in distinct if palettes.landuse_class(d)}
    return len(known) / len(distinct), len(known)


def _is_landuse(f: Field, rows: Sequence[Mapping[str, Any]]) -> bool:
    if f.type != "string":
        return False
    share, known = _landuse_share(_values(rows, f.name))
    # one known class alone (a filtered map) counts when it is all the column holds
    return share >= LANDUSE_MATCH and (known >= 2 or share == 1.0)


def _names_use(f: Field) -> bool:
    words = f"{f.name} {f.label_en or ''}".lower()
    return "use" in words or "کاربری" in (f.label_fa or "")


def _identity_colours(f: Field | None, rows: Sequence[Mapping[str, Any]]) -> bool:
    """A column whose values are colours themselves (a metro line's `colour`)."""
    if f is None or f.type != "string":
        return False
    vals = _values(rows, f.name)
    return bool(vals) and all(HEX_COLOUR.match(str(v)) for v in vals)


def _auto_column(layer: Layer, rows: Sequence[Mapping[str, Any]], kind: str) -> Field | None:
    """The column a reader would colour this layer by."""
    names = {f.name for f in layer.fields}

    def translation(f: Field) -> bool:  # x_fa beside x: colour by x, label with x_fa
        return f.name.endswith("_fa") and f.name.removesuffix("_fa") in names

    if kind in ("auto", "categories"):
        best: tuple[float, int, int, int] | None = None
        chosen = None
        for i, f in enumerate(layer.fields):
            if translation(f) or not _is_landuse(f, rows):
                continue
            share, known = _landuse_share(_values(rows, f.name))
            score = (share, int(_names_use(f)), known, -i)
            if best is None or score > best:
                best, chosen = score, f
        if chosen is not None:
            return chosen
        for f in layer.fields:
            if _identity_colours(f, rows) and kind == "auto":
                return f
        for f in layer.fields:
            if f.type not in ("string", "boolean") or _is_id(f) or _is_name(f) \
                    or translation(f) or _identity_colours(f, rows):
                continue
            distinct = len({_key(v) for v in _values(rows, f.name)})
            if 2 <= distinct <= MAX_CATEGORIES:
                return f
        if kind == "categories":
            return None
    numeric = [f for f in layer.fields if f.numeric and not _is_id(f)
               and len(set(_values(rows, f.name))) >= 2]
    volume = [f for f in numeric if any(w in f.name.lower() for w in VOLUME_WORDS)]
    return (volume or numeric or [None])[0]


def _volume_field(layer: Layer, rows: Sequence[Mapping[str, Any]]) -> Field | None:
    for f in layer.fields:
        if f.numeric and not _is_id(f) and any(w in f.name.lower() for w in VOLUME_WORDS) \
                and _values(rows, f.name):
            return f
    return None


def _categories(layer: Layer, column: Field, rows: Sequence[Mapping[str, Any]],
                spec: MapSpec) -> Style:
    lang = spec.lang
    counts = Counter(_key(v) for v in _values(rows, column.name))
    ordered = [v for v, _ in counts.most_common()]
    landuse = spec.palette == palettes.LANDUSE or (
        spec.palette is None and _is_landuse(column, rows))
    translated = _translations(layer, column, rows) if lang == "fa" else {}
    entries: list[LegendEntry] = []
    cats: dict[str, str] = {}
    if _identity_colours(column, rows) and spec.palette is None:
        for v in ordered[:MAX_CATEGORIES]:
            cats[v] = v
        name_field = _label_field(layer, lang)
        for r in rows:  # a colour column: the legend names what each colour is
            c = r.get(column.name)
            if c in cats and not any(e.color == c for e in entries):
                label = str(r.get(name_field.name)) if name_field else c
                entries.append(LegendEntry(c, label))
        return Style(kind="categories", column=column.name, title=layer.title,
                     categories=cats, entries=tuple(entries))
    if landuse:
        seen: dict[str, palettes.LandUseClass] = {}
        unknown = []
        for v in ordered:
            cls = palettes.landuse_class(v)
            if cls is None:
                unknown.append(v)
                continue
            cats[v] = cls.color
            seen.setdefault(cls.key, cls)
        order = {c.key: i for i, c in enumerate(palettes.LANDUSE_CLASSES)}
        for cls in sorted(seen.values(), key=lambda c: order[c.key]):
            entries.append(LegendEntry(cls.color, cls.label(lang)))
        if unknown:
            entries.append(LegendEntry(palettes.OTHER_COLOR, _other(lang)))
    else:
        name = spec.palette or palettes.DEFAULT_QUALITATIVE
        shown = ordered[:MAX_CATEGORIES] if len(ordered) <= MAX_CATEGORIES \
            else ordered[:MAX_CATEGORIES - 1]
        for v, c in zip(shown, palettes.colors(name, len(shown)), strict=True):
            cats[v] = c
            entries.append(LegendEntry(c, translated.get(v, _category_label(v, lang))))
        if len(ordered) > len(shown):
            entries.append(LegendEntry(palettes.OTHER_COLOR, _other(lang)))
    return Style(kind="categories", column=column.name, title=column.label(lang),
                 categories=cats, landuse=landuse, entries=tuple(entries))


def _translations(layer: Layer, column: Field, rows: Sequence[Mapping[str, Any]]
                  ) -> dict[str, str]:
    """value -> its Persian form, from a sibling `<column>_fa` column."""
    twin = layer.field(f"{column.name}_fa")
    if twin is None:
        return {}
    out: dict[str, str] = {}
    for r in rows:
        v, fa = r.get(column.name), r.get(twin.name)
        if v is not None and fa:
            out.setdefault(_key(v), str(fa))
    return out


def _label_field(layer: Layer, lang: str) -> Field | None:
    for name in (f"name_{lang}", "name_en", "name_fa", "name"):
        f = layer.field(name)
        if f is not None:
            return f
    return None


def _category_label(v: str, lang: str) -> str:
    if v in ("true", "false"):
        return {("fa", "true"): "بله", ("fa", "false"): "خیر", ("en", "true"): "Yes",
                ("en", "false"): "No"}[(lang, v)]
    return v


def _other(lang: str) -> str:
    return "سایر" if lang == "fa" else "Other"


def _choropleth(column: Field, rows: Sequence[Mapping[str, Any]], spec: MapSpec) -> Style:
    values = [_number(r.get(column.name)) for r in rows]
    bins = _breaks(values, spec.classify, spec.k)
    name = spec.palette or palettes.DEFAULT_SEQUENTIAL
    if name == palettes.LANDUSE:
        raise SpecError("palette", "the landuse palette colours categories; for a numeric "
                        "column choose a ColorBrewer scheme such as YlOrRd or Blues")
    cols = palettes.colors(name, len(bins)) if bins else []
    present = [v for v in values if v is not None]
    entries = _range_entries(bins, cols, present, spec.lang)
    if len(present) < len(values):
        entries += (LegendEntry(palettes.NO_DATA_COLOR,
                                "بدون داده" if spec.lang == "fa" else "No data"),)
    return Style(kind="choropleth", column=column.name, title=column.label(spec.lang),
                 bins=tuple(bins), colors=tuple(cols), classify=spec.classify,
                 entries=entries)


def _breaks(values: Sequence[float | None], classify: str, k: int) -> list[float]:
    """Upper bounds of the classes. Fewer distinct values than k: one class each."""
    # mapclassify imports scipy and scikit-learn (about 2 s): only when a map classifies.
    import mapclassify

    y = np.array([v for v in values if v is not None], dtype=float)
    if y.size == 0:
        return []
    distinct = np.unique(y)
    if distinct.size <= k:
        return [float(v) for v in distinct]
    if classify == "natural_breaks":
        sample = y
        if y.size > EXACT_BREAKS_MAX:  # an even sample of the sorted values keeps the shape
            s = np.sort(y)
            sample = s[np.linspace(0, s.size - 1, EXACT_BREAKS_MAX).round().astype(int)]
        with warnings.catch_warnings():  # "Numba not installed": known, and sampled for it
            warnings.simplefilter("ignore", UserWarning)
            bins = list(mapclassify.FisherJenks(sample, k=k).bins)
        bins[-1] = float(y.max())
    else:
        bins = list(mapclassify.Quantiles(y, k=k).bins)
    out: list[float] = []
    for b in bins:  # ties can repeat a bound; keep them strictly increasing
        if not out or b > out[-1]:
            out.append(float(b))
    return out


def _range_entries(bins: Sequence[float], cols: Sequence[str], values: Sequence[Any],
                   lang: str, widths: Sequence[float] | None = None
                   ) -> tuple[LegendEntry, ...]:
    present = [x for x in (_number(v) for v in values) if x is not None]
    if not bins or not present:
        return ()
    lo = min(present)
    entries = []
    distinct = len(set(present)) <= len(bins)
    for i, upper in enumerate(bins):
        start = lo if i == 0 else bins[i - 1]
        label = format_number(upper, lang) if distinct else \
            f"{format_number(start, lang)} – {format_number(upper, lang)}"
        width = widths[min(i, len(widths) - 1)] if widths else None
        entries.append(LegendEntry(cols[min(i, len(cols) - 1)], label, width))
    return tuple(entries)
