"""Request parameters of the analyses (/analytics/{name}, `shahr analyze NAME`), checked and
turned into a Job: the SQL to run (built by geo.analytics) and what to do with its rows.

The same parsing serves the web API and the CLI, so both accept the same names and give the
same errors: a Problem (400) naming the parameter and saying what is accepted.

Layers are named by dataset slug. Each input layer takes its own CQL2 filter, in the
language given by `filter-lang` (cql2-text, the default, or cql2-json) and the CRS given by
`filter-crs`: `filter` for the analysed layer, `zones-filter`, `facilities-filter` and
`roads-filter` for the others."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select

from api.problems import Problem, bad_request, not_found
from api.query import parse_filter, sa_table
from catalog.collections import Collection
from geo.analytics import (
    Analysis,
    AnalysisError,
    Source,
    aggregate,
    catchment,
    coverage,
    csv_line,
    estimated_hexagons,
    feature_line,
    geometry_kind,
    hex_band,
    hexbin,
    landuse_mix,
    metric_srid,
    nearest_by_zone,
    nearest_features,
    segment_counts,
    top_roads,
)

ANALYSES = ("aggregate", "coverage", "nearest", "landuse-mix", "hexbin", "traffic")
FORMATS = ("json", "geojson", "csv", "html")
COMMON = ("f", "lang", "filter-lang", "filter-crs")
PARAMS: dict[str, tuple[str, ...]] = {
    "aggregate": ("layer", "zones", "field", "filter", "zones-filter"),
    "coverage": ("layer", "zones", "facilities", "distance", "field", "output", "filter",
                 "zones-filter", "facilities-filter"),
    "nearest": ("layer", "facilities", "zones", "output", "filter", "facilities-filter",
                "zones-filter"),
    "landuse-mix": ("layer", "zones", "field", "categories", "filter", "zones-filter"),
    "hexbin": ("layer", "size", "field", "filter"),
    "traffic": ("kind", "layer", "by", "volume", "capacity", "k-factor", "n", "size", "roads",
                "roads-filter", "distance", "significance", "band", "permutations", "filter"),
}
MAX_ZONES = 10_000  # zones (districts, neighbourhoods, ...) in one answer
MAX_HEXAGONS = 100_000  # hexagons a grid may lay over the layer's extent
MAX_SEGMENTS = 50_000  # road segments in one hot-spot answer
MAX_DISTANCE_M = 50_000.0
HEX_SIZE_M = (10.0, 50_000.0)
MAX_TOP = 1_000
MAX_PERMUTATIONS = 9_999
MAX_CATEGORIES = 100
MAX_K_FACTOR = 24.0
DEFAULT_HEX_M = 500.0
DEFAULT_SEGMENT_BUFFER_M = 25.0
DEFAULT_SEGMENT_BAND_M = 500.0
VOLUME_NAMES = ("volume", "aadt", "adt", "count", "flow")
CAPACITY_NAMES = ("capacity", "cap")
CATEGORY_NAMES = ("landuse", "land_use", "use", "zoning")


@dataclass(frozen=True)
class Hotspots:
    """Gi* to compute on the rows (`value` per unit, centres in `_x`, `_y`)."""

    value: str
    band: float
    permutations: int


@dataclass(frozen=True)
class Check:
    """A query run before the analysis: when it returns 0 the request is refused."""

    stmt: Select[Any]
    parameter: str
    message: str


@dataclass(frozen=True)
class Job:
    """What a request asks: the built analysis, the output format and how to present it."""

    analysis: str
    fmt: str
    built: Analysis
    title: str
    value: str  # the property a map colours by
    parameters: dict[str, Any]
    units: dict[str, str]
    stream: bool = False  # one row per feature of a layer: streamed, not held in memory
    bound: tuple[str, int] | None = None  # (what, most rows): more is a 400
    checks: tuple[Check, ...] = ()
    hotspots: Hotspots | None = None
    lang: str = "en"
    extent: tuple[float, float, float, float] | None = None
    names: dict[str, str] = field(default_factory=dict)  # property -> label for people


def parse(analysis: str, params: Mapping[str, str],
          collections: Mapping[str, Collection]) -> Job:
    """Check every parameter of one analysis; a Problem (400, or 404 for an unknown
    analysis) says what was wrong."""
    if analysis not in ANALYSES:
        raise not_found(f"no analysis {analysis!r}; analyses: {', '.join(ANALYSES)}")
    accepted = (*PARAMS[analysis], *COMMON)
    unknown = [k for k in params if k not in accepted]
    if unknown:
        raise bad_request(f"{', '.join(unknown)}: not a parameter of {analysis}; accepted: "
                          f"{', '.join(accepted)}", parameter=unknown[0])
    p = _Params(params, collections)
    job = _BUILDERS[analysis](p)
    return replace(job, fmt=p.fmt, lang=p.lang)


class _Params:
    """Typed access to the parameters, each error naming its parameter."""

    def __init__(self, params: Mapping[str, str], collections: Mapping[str, Collection]):
        self.raw = params
        self.collections = collections
        self.fmt = self.choice("f", FORMATS, "json")
        self.lang = self.choice("lang", ("en", "fa"), "en")
        self.filter_lang = self.choice("filter-lang", ("cql2-text", "cql2-json"), "cql2-text")
        self.echo: dict[str, Any] = {}

    def get(self, name: str) -> str | None:
        v = self.raw.get(name)
        if v is not None and not v.strip():
            raise bad_request(f"{name}: is empty; leave it out or give a value", parameter=name)
        return v.strip() if v is not None else None

    def choice(self, name: str, options: tuple[str, ...], default: str | None) -> str:
        v = self.get(name)
        if v is None:
            if default is None:
                raise bad_request(f"{name}: is required; accepted: {', '.join(options)}",
                                  parameter=name)
            return default
        if v not in options:
            raise bad_request(f"{name}: {v!r} is not accepted; accepted: {', '.join(options)}",
                              parameter=name)
        return v

    def dataset(self, name: str, *, required: bool = True) -> Collection | None:
        slug = self.get(name)
        if slug is None:
            if required:
                raise bad_request(f"{name}: is required: the slug of a dataset ("
                                  f"{_some(self.collections)})", parameter=name)
            return None
        coll = self.collections.get(slug)
        if coll is None:
            raise bad_request(f"{name}: no dataset {slug!r}; datasets: "
                              f"{_some(self.collections)}", parameter=name)
        self.echo[name] = slug
        return coll

    def polygons(self, name: str, coll: Collection) -> None:
        if geometry_kind(coll.geometry_type) != "polygon":
            raise bad_request(f"{name}: {coll.slug!r} holds {coll.geometry_type} features; "
                              f"{name} must be polygons (e.g. "
                              f"{_some(self.collections, 'polygon')})", parameter=name)

    def number(self, name: str, default: float | None, lo: float, hi: float, *,
               above: bool = False, unit: str = "") -> float:
        v = self.get(name)
        if v is None:
            if default is None:
                raise bad_request(f"{name}: is required ({_range(lo, hi, above, unit)})",
                                  parameter=name)
            return default
        try:
            x = float(v)
        except ValueError:
            raise bad_request(f"{name}: {v!r} is not a number; accepted: "
                              f"{_range(lo, hi, above, unit)}", parameter=name) from None
        if not math.isfinite(x) or (x <= lo if above else x < lo) or x > hi:
            raise bad_request(f"{name}: {v} is out of range; accepted: "
                              f"{_range(lo, hi, above, unit)}", parameter=name)
        self.echo[name] = x
        return x

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        v = self.get(name)
        if v is None:
            return default
        try:
            x = int(v)
        except ValueError:
            raise bad_request(f"{name}: {v!r} is not a whole number; accepted: {lo} to {hi}",
                              parameter=name) from None
        if not lo <= x <= hi:
            raise bad_request(f"{name}: {x} is out of range; accepted: {lo} to {hi}",
                              parameter=name)
        self.echo[name] = x
        return x

    def boolean(self, name: str) -> bool:
        v = self.choice(name, ("true", "false"), "false")
        self.echo[name] = v == "true"
        return v == "true"

    def column(self, name: str, coll: Collection, kinds: tuple[str, ...], what: str, *,
               required: bool = False, guesses: tuple[str, ...] = ()) -> str | None:
        """A column of the dataset of one of `kinds` (Frictionless types); when not given,
        the first of `guesses` the dataset has."""
        fitting = [c.name for c in coll.columns if c.type in kinds]
        v = self.get(name)
        if v is None:
            v = next((g for g in guesses if g in fitting), None)
            if v is None:
                if required:
                    raise bad_request(f"{name}: is required: {what} of {coll.slug!r} ("
                                      f"{', '.join(fitting) or 'it has none'})", parameter=name)
                return None
        col = coll.column(v)
        if col is None or col.type not in kinds:
            said = f"is {col.type}" if col else "is not a property"
            raise bad_request(f"{name}: {v!r} {said} of {coll.slug!r}; {what}: "
                              f"{', '.join(fitting) or 'none in this dataset'}", parameter=name)
        self.echo[name] = v
        return v

    def filter(self, name: str, coll: Collection) -> tuple[ColumnElement[bool], ...]:
        text = self.get(name)
        if text is None:
            return ()
        try:
            clause = parse_filter(coll, text, self.filter_lang, self.get("filter-crs"))
        except Problem as exc:  # parse_filter names `filter`; say which filter it was
            param = exc.extra.get("parameter")
            if param == "filter" and name != "filter":
                detail = exc.detail[len("filter"):] if exc.detail.startswith("filter") \
                    else f": {exc.detail}"
                raise bad_request(f"{name}{detail}", parameter=name) from None
            raise
        self.echo[name] = text
        return (clause,)

    def source(self, coll: Collection, filter_name: str | None, *,
               columns: tuple[str, ...] = ()) -> Source:
        where = self.filter(filter_name, coll) if filter_name else ()
        return Source(table=sa_table(coll), kind=geometry_kind(coll.geometry_type),
                      where=where, extent=coll.extent, key=coll.key_field, columns=columns)


def _some(collections: Mapping[str, Collection], kind: str | None = None) -> str:
    slugs = [s for s, c in sorted(collections.items())
             if kind is None or geometry_kind(c.geometry_type) == kind]
    return ", ".join(slugs[:20]) + (", ..." if len(slugs) > 20 else "") if slugs else "none yet"


def _range(lo: float, hi: float, above: bool, unit: str) -> str:
    u = f" {unit}" if unit else ""
    return f"{'more than' if above else 'at least'} {lo:g} and at most {hi:g}{u}"


def _srid(coll: Collection) -> int:
    try:
        return metric_srid(coll.metric_crs, coll.extent)
    except AnalysisError as exc:
        raise bad_request(f"layer: {exc}", parameter="layer") from None


def _all_columns(coll: Collection) -> tuple[str, ...]:
    return tuple(c.name for c in coll.columns)


def _title(coll: Collection, lang: str) -> str:
    return (coll.title_fa or coll.title_en or coll.slug) if lang == "fa" else coll.title


def _label(coll: Collection, name: str, lang: str) -> str:
    col = coll.column(name)
    if col is None:
        return name
    return (col.label_fa or col.label_en or name) if lang == "fa" else \
        (col.label_en or col.label_fa or name)


def _what(p: _Params, coll: Collection, fld: str | None) -> str:
    """"Housing units of Buildings" / "Buildings": what is counted or summed."""
    layer = _title(coll, p.lang)
    if fld is None:
        return layer
    return f"{_label(coll, fld, p.lang)} {layer}" if p.lang == "fa" else \
        f"{_label(coll, fld, p.lang)} of {layer}"


def _t(p: _Params, en: str, fa: str) -> str:
    return fa if p.lang == "fa" else en


def _count_check(src: Source, parameter: str, message: str) -> Check:
    sub = src.subquery("c")
    return Check(select(func.count()).select_from(sub), parameter, message)


# ---- the analyses ----------------------------------------------------------------------------

def _aggregate(p: _Params) -> Job:
    coll = p.dataset("layer")
    zones = p.dataset("zones")
    assert coll and zones
    p.polygons("zones", zones)
    fld = p.column("field", coll, ("integer", "number"), "numeric properties")
    layer = p.source(coll, "filter")
    z = p.source(zones, "zones-filter", columns=_all_columns(zones))
    built = aggregate(layer, z, _srid(coll), field=fld, max_zones=MAX_ZONES)
    what, per = _what(p, coll, fld), _title(zones, p.lang)
    return Job("aggregate", p.fmt, built, title=_t(p, f"{what} per {per}",
                                                 f"{what} به تفکیک {per}"),
               value="sum_per_km2" if fld else "count_per_km2", parameters=p.echo,
               units={"area_km2": "km²", "count_per_km2": "features per km²",
                      **({"sum_per_km2": f"{fld} per km²"} if fld else {})},
               bound=("zones", MAX_ZONES), extent=zones.extent)


def _coverage(p: _Params) -> Job:
    coll = p.dataset("layer")
    fac = p.dataset("facilities")
    assert coll and fac
    output = p.choice("output", ("zones", "catchment"), "zones")
    p.echo["output"] = output
    distance = p.number("distance", None, 0, MAX_DISTANCE_M, above=True, unit="metres")
    facilities = p.source(fac, "facilities-filter")
    srid = _srid(coll)
    check = _count_check(facilities, "facilities-filter",
                         f"no feature of {fac.slug!r} matches it")
    if output == "catchment":
        for name in ("zones", "field", "filter", "zones-filter"):
            if p.get(name) is not None:
                raise bad_request(f"{name}: not used with output=catchment (the catchment "
                                  "depends only on the facilities and the distance)",
                                  parameter=name)
        built = catchment(facilities, srid, distance=distance)
        near = _title(fac, p.lang)
        return Job("coverage", p.fmt, built,
                   title=_t(p, f"Within {distance:g} m of {near}",
                            f"پهنهٔ {distance:g} متری {near}"),
                   value="area_km2", parameters=p.echo, units={"area_km2": "km²",
                                                               "distance_m": "m"},
                   checks=(check,), extent=coll.extent)
    zones = p.dataset("zones")
    assert zones
    p.polygons("zones", zones)
    fld = p.column("field", coll, ("integer", "number"), "numeric properties")
    layer = p.source(coll, "filter")
    z = p.source(zones, "zones-filter", columns=_all_columns(zones))
    built = coverage(layer, z, facilities, srid, distance=distance, field=fld,
                     max_zones=MAX_ZONES)
    what, per, near = _what(p, coll, fld), _title(zones, p.lang), _title(fac, p.lang)
    return Job("coverage", p.fmt, built,
               title=_t(p, f"Share of {what} within {distance:g} m of {near}, per {per}",
                        f"سهم {what} در {distance:g} متری {near}، به تفکیک {per}"),
               value="share", parameters=p.echo,
               units={"area_km2": "km²", "catchment_km2": "km²", "share": "0..1",
                      "area_share": "0..1", "total": fld or "features",
                      "covered": fld or "features"},
               bound=("zones", MAX_ZONES), checks=(check,), extent=zones.extent)


def _nearest(p: _Params) -> Job:
    coll = p.dataset("layer")
    fac = p.dataset("facilities")
    assert coll and fac
    zones = p.dataset("zones", required=False)
    output = p.choice("output", ("features", "zones"), "zones" if zones else "features")
    p.echo["output"] = output
    layer = p.source(coll, "filter")
    facilities = p.source(fac, "facilities-filter")
    check = _count_check(facilities, "facilities-filter",
                         f"no feature of {fac.slug!r} matches it")
    srid = _srid(coll)
    if output == "zones":
        if zones is None:
            raise bad_request("output: zones needs zones= (a polygon dataset to summarise "
                              "the distances in)", parameter="output")
        p.polygons("zones", zones)
        z = p.source(zones, "zones-filter", columns=_all_columns(zones))
        built = nearest_by_zone(layer, facilities, z, srid, max_zones=MAX_ZONES)
        return Job("nearest", p.fmt, built,
                   title=_t(p, f"Distance from {_title(coll, p.lang)} to the nearest of "
                               f"{_title(fac, p.lang)}, per {_title(zones, p.lang)}",
                            f"فاصلهٔ {_title(coll, p.lang)} تا نزدیک‌ترین "
                            f"{_title(fac, p.lang)}، به تفکیک {_title(zones, p.lang)}"),
                   value="median_m", parameters=p.echo,
                   units={k: "m" for k in ("min_m", "mean_m", "median_m", "p90_m", "max_m")},
                   bound=("zones", MAX_ZONES), checks=(check,), extent=zones.extent)
    if zones is not None or p.get("zones-filter") is not None:
        raise bad_request("zones: only used with output=zones", parameter="zones")
    line = csv_line if p.fmt == "csv" else None if p.fmt == "html" else feature_line
    built = nearest_features(layer, facilities, srid, geometry=p.fmt != "csv", line=line)
    return Job("nearest", p.fmt, built,
               title=_t(p, f"Nearest of {_title(fac, p.lang)} to each of "
                           f"{_title(coll, p.lang)}",
                        f"نزدیک‌ترین {_title(fac, p.lang)} به هر یک از {_title(coll, p.lang)}"),
               value="distance_m",
               parameters=p.echo, units={"distance_m": "m"}, stream=True, checks=(check,),
               extent=coll.extent)


def _landuse_mix(p: _Params) -> Job:
    coll = p.dataset("layer")
    zones = p.dataset("zones")
    assert coll and zones
    p.polygons("layer", coll)
    p.polygons("zones", zones)
    fld = p.column("field", coll, ("string", "integer"), "the land-use (category) property",
                   required=True, guesses=CATEGORY_NAMES)
    assert fld
    cats: list[str] | None = None
    text = p.get("categories")
    if text is not None:
        cats = list(dict.fromkeys(c.strip() for c in text.split(",") if c.strip()))
        if not 2 <= len(cats) <= MAX_CATEGORIES:
            raise bad_request(f"categories: give 2 to {MAX_CATEGORIES} land uses separated "
                              "by commas (or leave it out: every use in the layer counts)",
                              parameter="categories")
        p.echo["categories"] = cats
    layer = p.source(coll, "filter")
    z = p.source(zones, "zones-filter", columns=_all_columns(zones))
    built = landuse_mix(layer, z, _srid(coll), field=fld, categories=cats, max_zones=MAX_ZONES)
    per = _title(zones, p.lang)
    return Job("landuse-mix", p.fmt, built,
               title=_t(p, f"Land-use mix per {per}", f"آمیختگی کاربری زمین به تفکیک {per}"),
               value="entropy", parameters=p.echo,
               units={"area_km2": "km²", "landuse_km2": "km²", "entropy": "0..1",
                      "dominant_share": "0..1"},
               bound=("zones", MAX_ZONES), extent=zones.extent)


def _hex_size(p: _Params, default: float | None) -> float:
    return p.number("size", default, HEX_SIZE_M[0], HEX_SIZE_M[1], unit="metres (the "
                    "hexagon's edge)")


def _check_grid(p: _Params, coll: Collection, srid: int, size: float) -> None:
    n = estimated_hexagons(coll.extent, srid, size)
    if n > MAX_HEXAGONS:
        least = math.ceil(size * math.sqrt(n / MAX_HEXAGONS))
        raise bad_request(f"size: {size:g} m lays about {n:,} hexagons over {coll.slug!r}; "
                          f"at most {MAX_HEXAGONS:,} are made: give size={least} or more",
                          parameter="size")


def _hexbin(p: _Params) -> Job:
    coll = p.dataset("layer")
    assert coll
    size = _hex_size(p, None)
    fld = p.column("field", coll, ("integer", "number"), "numeric properties")
    srid = _srid(coll)
    _check_grid(p, coll, srid, size)
    built = hexbin(p.source(coll, "filter"), srid, size=size, field=fld)
    what = _what(p, coll, fld)
    return Job("hexbin", p.fmt, built,
               title=_t(p, f"{what} in {size:g} m hexagons", f"{what} در شش‌ضلعی‌های "
                        f"{size:g} متری"),
               value="sum" if fld else "count", parameters=p.echo,
               units={"count_per_km2": "features per km²",
                      **({"sum_per_km2": f"{fld} per km²"} if fld else {})},
               extent=coll.extent)


def _traffic(p: _Params) -> Job:
    kind = p.choice("kind", ("top-roads", "hotspots"), None)
    p.echo["kind"] = kind
    used = {"top-roads": ("by", "volume", "capacity", "k-factor", "n"),
            "hotspots": ("by", "size", "roads", "roads-filter", "distance", "significance",
                         "band", "permutations")}[kind]
    for name in PARAMS["traffic"]:
        if name not in (*used, "kind", "layer", "filter") and p.get(name) is not None:
            raise bad_request(f"{name}: not used with kind={kind}; its parameters: "
                              f"layer, filter, {', '.join(used)}", parameter=name)
    return _top_roads(p) if kind == "top-roads" else _hotspots(p)


def _top_roads(p: _Params) -> Job:
    coll = p.dataset("layer")
    assert coll
    by = p.choice("by", ("volume", "vc"), "volume")
    p.echo["by"] = by
    vol = p.column("volume", coll, ("integer", "number"), "numeric properties",
                   required=True, guesses=VOLUME_NAMES)
    assert vol
    cap = p.column("capacity", coll, ("integer", "number"), "numeric properties",
                   guesses=CAPACITY_NAMES)
    if by == "vc" and cap is None:
        raise bad_request("capacity: by=vc needs a capacity property", parameter="capacity")
    k = p.number("k-factor", 1.0, 0, MAX_K_FACTOR, above=True)
    n = p.integer("n", 20, 1, MAX_TOP)
    built = top_roads(p.source(coll, "filter", columns=_all_columns(coll)), volume=vol,
                      capacity=cap, k_factor=k, by=by, n=n)  # type: ignore[arg-type]
    return Job("traffic", p.fmt, built,
               title=_t(p, f"Top {n} of {_title(coll, p.lang)} by "
                           f"{'v/c' if by == 'vc' else _label(coll, vol, p.lang)}",
                        f"{n} قطعهٔ نخست {_title(coll, p.lang)} به ترتیب "
                        f"{'v/c' if by == 'vc' else _label(coll, vol, p.lang)}"),
               value="vc" if by == "vc" else vol, parameters=p.echo,
               units={"vc": f"{vol} × {k:g} / {cap}"} if cap else {}, extent=coll.extent)


def _hotspots(p: _Params) -> Job:
    coll = p.dataset("layer")
    assert coll
    by = p.choice("by", ("hex", "segment"), "hex")
    p.echo["by"] = by
    significance = p.boolean("significance")
    perms = p.integer("permutations", 999, 0, MAX_PERMUTATIONS)
    srid = _srid(coll)
    layer = p.source(coll, "filter")
    if by == "hex":
        for name in ("roads", "roads-filter", "distance"):
            if p.get(name) is not None:
                raise bad_request(f"{name}: only used with by=segment", parameter=name)
        size = _hex_size(p, DEFAULT_HEX_M)
        _check_grid(p, coll, srid, size)
        built = hexbin(layer, srid, size=size, empty=True)
        band = p.number("band", hex_band(size), 0, MAX_DISTANCE_M, above=True, unit="metres")
        title = _t(p, f"{_title(coll, p.lang)} per {size:g} m hexagon",
                   f"{_title(coll, p.lang)} در شش‌ضلعی‌های {size:g} متری")
        extent = coll.extent
    else:
        if p.get("size") is not None:
            raise bad_request("size: only used with by=hex", parameter="size")
        roads = p.dataset("roads")
        assert roads
        if geometry_kind(roads.geometry_type) != "line":
            raise bad_request(f"roads: {roads.slug!r} holds {roads.geometry_type} features; "
                              "roads must be lines", parameter="roads")
        distance = p.number("distance", DEFAULT_SEGMENT_BUFFER_M, 0, 1000.0, above=True,
                            unit="metres")
        band = p.number("band", DEFAULT_SEGMENT_BAND_M, 0, MAX_DISTANCE_M, above=True,
                        unit="metres")
        r = p.source(roads, "roads-filter", columns=_all_columns(roads))
        built = segment_counts(layer, r, srid, distance=distance, max_segments=MAX_SEGMENTS)
        title = _t(p, f"{_title(coll, p.lang)} within {distance:g} m of each segment of "
                      f"{_title(roads, p.lang)}",
                   f"{_title(coll, p.lang)} در {distance:g} متری هر قطعهٔ "
                   f"{_title(roads, p.lang)}")
        extent = roads.extent
    hot = Hotspots("count", band, perms) if significance else None
    if hot is not None:
        built = replace(built, properties=(*built.properties, "gi_z", "gi_p_norm", "gi_p_sim",
                                           "hotspot", "neighbours"))
    return Job("traffic", p.fmt, built, title=title, value="gi_z" if hot else "count",
               parameters=p.echo, units={"band": "m"}, hotspots=hot,
               bound=("segments", MAX_SEGMENTS) if by == "segment" else None, extent=extent)


_BUILDERS: dict[str, Callable[[_Params], Job]] = {
    "aggregate": _aggregate, "coverage": _coverage, "nearest": _nearest,
    "landuse-mix": _landuse_mix, "hexbin": _hexbin, "traffic": _traffic,
}
