"""What a map is asked to show, independent of where the data comes from: the layer (its
fields and either embedded GeoJSON or a vector-tile URL) and the map spec (style, column,
classification, palette, heat, cluster, weight, basemap, language). Parsed from request
parameters here so every caller (the web routes, tests, a notebook) gets the same checks and
the same error messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

Lang = Literal["fa", "en"]
GeometryKind = Literal["point", "line", "polygon"]

STYLES = ("auto", "categories", "choropleth", "plain")
CLASSIFICATIONS = ("quantiles", "natural_breaks")
K_RANGE = (2, 9)
BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
# The query parameters a map page reads (anything else is refused, as on items).
SPEC_PARAMS = ("style", "column", "classify", "k", "palette", "heat", "cluster", "weight",
               "basemap", "lang")


class SpecError(ValueError):
    """A map parameter that cannot be honoured; `parameter` names it for the problem."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


@dataclass(frozen=True)
class Field:
    """A column of the layer, as the data dictionary describes it."""

    name: str
    type: str  # Frictionless: string integer number boolean date datetime
    label_fa: str | None = None
    label_en: str | None = None
    unit: str | None = None
    is_key: bool = False

    def label(self, lang: Lang) -> str:
        first, second = (self.label_fa, self.label_en) if lang == "fa" else \
            (self.label_en, self.label_fa)
        text = first or second or self.name
        return f"{text} ({self.unit})" if self.unit else text

    @property
    def numeric(self) -> bool:
        return self.type in ("integer", "number")


@dataclass(frozen=True)
class Layer:
    """One dataset to draw. Exactly one of `features` (a GeoJSON FeatureCollection, embedded
    in the page) or `tiles` (an MVT URL template with {z}/{x}/{y}, whose tile layer is named
    `tile_layer`) is set. `sample` holds property rows used to choose and classify the style
    when the features themselves are not at hand (the vector-tile case)."""

    slug: str
    title: str
    geometry: GeometryKind
    fields: tuple[Field, ...]
    bounds: tuple[float, float, float, float] | None = None  # west, south, east, north
    features: Mapping[str, Any] | None = None
    tiles: str | None = None
    tile_layer: str | None = None
    sample: Sequence[Mapping[str, Any]] = ()
    feature_count: int | None = None
    heat_points: Sequence[tuple[float, float, float]] | None = None  # lat, lon, weight

    def __post_init__(self) -> None:
        if (self.features is None) == (self.tiles is None):
            raise ValueError("a Layer needs exactly one of features or tiles")

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def rows(self) -> list[Mapping[str, Any]]:
        """Property rows to style from: the features' own, else the sample."""
        if self.features is not None:
            return [f.get("properties") or {} for f in self.features.get("features", [])]
        return list(self.sample)

    def with_features(self, features: Mapping[str, Any]) -> Layer:
        return replace(self, features=features, tiles=None)


@dataclass(frozen=True)
class MapSpec:
    """How to draw a layer. `None` means "choose from the data" (see styles.choose_style)."""

    style: str = "auto"
    column: str | None = None
    classify: str = "quantiles"
    k: int = 5
    palette: str | None = None
    heat: bool = False
    cluster: bool | None = None
    weight: str | None = None
    basemap: str = "osm"
    lang: Lang = "en"

    @classmethod
    def from_params(cls, params: Mapping[str, str], *, basemap: str = "osm",
                    lang: Lang = "en", palettes: Sequence[str] = ()) -> MapSpec:
        """Validate map query parameters; a bad one raises SpecError naming it and what is
        accepted. `basemap` and `lang` are the defaults when not given."""
        style = params.get("style", "auto")
        if style not in STYLES:
            raise SpecError("style", f"{style!r} is not a style; accepted: {', '.join(STYLES)}")
        classify = params.get("classify", "quantiles")
        if classify not in CLASSIFICATIONS:
            raise SpecError("classify", f"{classify!r} is not a classification; accepted: "
                            f"{', '.join(CLASSIFICATIONS)}")
        k = _int(params.get("k", "5"), "k", *K_RANGE)
        palette = params.get("palette") or None
        if palette is not None and palettes and palette not in palettes:
            raise SpecError("palette", f"{palette!r} is not a palette; accepted: "
                            f"{', '.join(palettes)}")
        chosen_lang = params.get("lang", lang)
        if chosen_lang not in ("fa", "en"):
            raise SpecError("lang", f"{chosen_lang!r}; accepted: fa, en")
        bm = params.get("basemap", basemap)
        check_basemap(bm)
        return cls(style=style, column=params.get("column") or None, classify=classify, k=k,
                   palette=palette, heat=_bool(params.get("heat"), "heat") or False,
                   cluster=_bool(params.get("cluster"), "cluster"),
                   weight=params.get("weight") or None, basemap=bm,
                   lang=chosen_lang)  # type: ignore[arg-type]


def check_basemap(value: str) -> None:
    if value in ("osm", "none"):
        return
    if value.startswith(("http://", "https://")) and all(
            f"{{{c}}}" in value for c in "zxy"):
        return
    raise SpecError("basemap", f"{value!r}; accepted: osm, none, or an XYZ URL template "
                    "such as https://tiles.example.org/{z}/{x}/{y}.png")


def _int(text: str, name: str, lo: int, hi: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise SpecError(name, f"{text!r} is not a whole number; accepted: {lo} to {hi}") \
            from None
    if not lo <= v <= hi:
        raise SpecError(name, f"{v} is out of range; accepted: {lo} to {hi}")
    return v


def _bool(text: str | None, name: str) -> bool | None:
    if text is None or text == "":
        return None
    try:
        return BOOL_WORDS[text.lower()]
    except KeyError:
        raise SpecError(name, f"{text!r}; accepted: true, false") from None
