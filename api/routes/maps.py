"""Interactive maps (folium): `/maps/{slug}` for one dataset, styled from its data unless the
query says otherwise, and `/maps/explore?layers=a,b` for several overlaid. A layer with more
features than SHAHR_MAP_FEATURE_THRESHOLD (after its filter) is drawn from the vector-tile
endpoint instead of embedded GeoJSON, so the 1,000,000-parcel map opens as fast as a small
one. `embed=1` is the bare map for an <iframe>; `download=1` a standalone HTML file (every
script inlined; vector tiles still come from this server); `f=json` describes the map.

Filters are the items' own (CQL2 `filter`, `filter-lang`, `filter-crs`, `bbox`, `datetime`),
parsed by api.query; on the explorer each layer has its own, as `filter.<slug>=...` (and
`filter-lang.<slug>`, `bbox.<slug>`, ...). Bad parameters are RFC 9457 problems, as an HTML
page when a browser asked."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Float, cast, func, literal, select

from api.deps import CollectionsDep, PoolDep, single_params
from api.html import choose_lang, render, wants_html
from api.links import base_url
from api.problems import Problem, bad_request, not_found
from api.query import compile_sql, items_statement, parse_params, sa_table
from catalog.collections import Collection
from maps import offline, palettes
from maps.build import build_explore, build_map
from maps.spec import SPEC_PARAMS, Field, Layer, MapSpec, SpecError
from maps.styles import choose_style

router = APIRouter(tags=["Maps"])

FILTER_PARAMS = ("filter", "filter-lang", "filter-crs", "bbox", "bbox-crs", "datetime")
PAGE_PARAMS = ("embed", "download", "f")
EXPLORE_PARAMS = ("layers", "basemap", "lang", *PAGE_PARAMS)
MAX_LAYERS = 8
HEAT_MAX = 100_000  # points a heat map draws at most
SAMPLE_ROWS = 5_000  # property rows read to choose and class the style of a tiled layer
TMS = "WebMercatorQuad"
VENDOR_DIR = Path(__file__).resolve().parents[1] / "static" / "vendor"
IFRAME_HEIGHT = 480


# ---- what a layer is made of ------------------------------------------------------------

def geometry_kind(coll: Collection) -> str:
    kind = coll.geometry_type.lower()
    return "point" if kind.endswith("point") else "line" if "line" in kind else "polygon"


def layer_fields(coll: Collection) -> tuple[Field, ...]:
    return tuple(Field(c.name, c.type, c.label_fa, c.label_en, c.unit, c.is_key)
                 for c in coll.columns)


def layer_title(coll: Collection, lang: str) -> str:
    first, second = (coll.title_fa, coll.title_en) if lang == "fa" else \
        (coll.title_en, coll.title_fa)
    return first or second or coll.slug


def _bounds(coll: Collection) -> tuple[float, float, float, float] | None:
    if any(v is None for v in coll.extent):
        return None
    w, s, e, n = (float(v) for v in coll.extent)
    return w, s, e, n


def _feature_bounds(features: list[dict[str, Any]]) -> tuple[float, float, float, float] | None:
    xs: list[float] = []
    ys: list[float] = []

    def walk(c: Any) -> None:
        if c and isinstance(c[0], int | float):
            xs.append(float(c[0]))
            ys.append(float(c[1]))
        else:
            for part in c or ():
                walk(part)

    for f in features:
        walk((f.get("geometry") or {}).get("coordinates"))
    return (min(xs), min(ys), max(xs), max(ys)) if xs else None


async def load_layer(request: Request, pool: Any, coll: Collection, filters: dict[str, str],
                     *, lang: str, heat: bool, weight: str | None,
                     prefix: str = "") -> Layer:
    """The dataset as a Layer: embedded GeoJSON when at most the threshold matches, else
    vector tiles with the same filters plus a sample of rows to style from."""
    threshold = request.app.state.settings.map_feature_threshold
    try:
        q = parse_params(coll, filters, default_limit=threshold, max_limit=threshold)
    except Problem as exc:  # name the explorer's per-layer parameter
        if prefix and "parameter" in exc.extra:
            exc.extra["parameter"] = f"{exc.extra['parameter']}.{coll.slug}"
            exc.detail = f"{coll.slug}: {exc.detail}"
        raise
    common: dict[str, Any] = dict(slug=coll.slug, title=layer_title(coll, lang),
                                  geometry=geometry_kind(coll), fields=layer_fields(coll),
                                  bounds=_bounds(coll), feature_count=coll.feature_count)
    if coll.feature_count <= threshold or q.filtered:
        sql, params = compile_sql(items_statement(q))
        try:
            async with pool.connection() as conn:
                row = await (await conn.execute(sql, params)).fetchone()
        except (psycopg.errors.DataError, psycopg.errors.InternalError_) as exc:
            if not q.filtered:
                raise
            # a filter that parsed but cannot be evaluated (e.g. an invalid polygon literal)
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            name = f"filter.{coll.slug}" if prefix else "filter"
            raise bad_request(f"{name}: cannot be evaluated: {detail}",
                              parameter=name) from None
        assert row is not None
        text, count, _ids, more = row[0], row[1], row[2], row[3]
        if not more:
            features = json.loads(f"[{text}]")
            return Layer(**{**common, "bounds": _feature_bounds(features) or common["bounds"],
                            "feature_count": count},
                         features={"type": "FeatureCollection", "features": features})
    base = base_url(request)
    query = f"?{urlencode(filters)}" if filters else ""
    tiles = f"{base}/collections/{coll.slug}/tiles/{TMS}/{{z}}/{{x}}/{{y}}{query}"
    sample = await _sample(pool, coll, q.where)
    points = await _heat_points(pool, coll, q.where, weight) if heat else None
    return Layer(**common, tiles=tiles, tile_layer=coll.slug, sample=sample,
                 heat_points=points)


async def _sample(pool: Any, coll: Collection, where: list[Any]) -> list[dict[str, Any]]:
    """Up to SAMPLE_ROWS property rows: a block sample of a large table (TABLESAMPLE reads
    only a few pages), topped up by a plain scan when a filter leaves too few."""
    t = sa_table(coll)
    pairs = [x for c in coll.columns for x in (literal(c.name), t.c[c.name])]
    chunks = [pairs[i:i + 100] for i in range(0, len(pairs), 100)] or [[]]
    cols = [func.json_build_object(*ch) for ch in chunks]
    stmt = select(*cols).select_from(t).where(*where).limit(SAMPLE_ROWS)
    sql, params = compile_sql(stmt)
    pct = min(100.0, 100.0 * 4 * SAMPLE_ROWS / max(coll.feature_count, 1))
    table_sql = f'data."{coll.table}"' if f'data."{coll.table}"' in sql else \
        f"data.{coll.table}"
    sampled = sql.replace(f"FROM {table_sql}",
                          f"FROM {table_sql} TABLESAMPLE SYSTEM ({pct:.6f})", 1)
    rows: list[Any] = []
    async with pool.connection() as conn:
        if sampled != sql and pct < 100:
            rows = await (await conn.execute(sampled, params)).fetchall()
        if len(rows) < SAMPLE_ROWS // 10:
            rows = await (await conn.execute(sql, params)).fetchall()
    out = []
    for r in rows:
        merged: dict[str, Any] = {}
        for part in r:
            merged.update(part)
        out.append(merged)
    return out


async def _heat_points(pool: Any, coll: Collection, where: list[Any],
                       weight: str | None) -> list[tuple[float, float, float]]:
    t = sa_table(coll)
    w = cast(t.c[weight], Float) if weight and coll.column(weight) else literal(1.0)
    stmt = (select(func.ST_Y(t.c.geom), func.ST_X(t.c.geom), func.coalesce(w, 0.0))
            .where(*where, func.GeometryType(t.c.geom) == "POINT").limit(HEAT_MAX))
    sql, params = compile_sql(stmt)
    async with pool.connection() as conn:
        rows = await (await conn.execute(sql, params)).fetchall()
    return [(round(float(a), 6), round(float(b), 6), float(c)) for a, b, c in rows]


# ---- parameters -------------------------------------------------------------------------


def _flag(params: dict[str, str], name: str) -> bool:
    v = params.get(name)
    if v is None:
        return False
    if v.lower() not in ("1", "true", "0", "false", "yes", "no", ""):
        raise bad_request(f"{name}: {v!r}; accepted: 1 or 0 (true or false)", parameter=name)
    return v.lower() in ("1", "true", "yes")


def _format(params: dict[str, str]) -> str:
    f = params.get("f", "html")
    if f not in ("html", "json"):
        raise bad_request(f"f: {f!r}; accepted: html (the map), json (its description)",
                          parameter="f")
    return f


def _spec(request: Request, params: dict[str, str], lang: str) -> MapSpec:
    default = request.app.state.settings.basemap
    try:
        return MapSpec.from_params({k: v for k, v in params.items() if k != "lang"},
                                   basemap=default, lang=lang,  # type: ignore[arg-type]
                                   palettes=palettes.palette_names())
    except SpecError as exc:
        raise bad_request(str(exc), parameter=exc.parameter) from None


def _collection(collections: dict[str, Collection], slug: str) -> Collection:
    found = collections.get(slug)
    if found is None:
        raise not_found(f"no dataset {slug!r}; datasets: {', '.join(sorted(collections))}")
    return found


# ---- responses ---------------------------------------------------------------------------

async def _answer(request: Request, make: Callable[[], Awaitable[Response]]) -> Response:
    """The route's response; a problem becomes an HTML page when a browser asked."""
    try:
        return await make()
    except Problem as exc:
        if not _browser(request):
            raise
        detail = exc.detail
        return render(request, "maps/problem.html",
                      {"title": exc.title, "status": exc.status, "detail": detail,
                       "parameter": exc.extra.get("parameter")}, status_code=exc.status)


def _browser(request: Request) -> bool:
    return request.query_params.get("f") != "json" and wants_html(request)


def _static(request: Request) -> str:
    return f"{base_url(request)}/static"


def _map_html(m: Any, *, lang: str, title: str) -> str:
    fig = m.get_root()
    fig.title = title
    html = fig.render()
    direction = "rtl" if lang == "fa" else "ltr"
    return html.replace("<html>", f'<html lang="{lang}" dir="{direction}">', 1)


def _map_response(request: Request, html: str, *, download: bool, filename: str) -> Response:
    headers = {"Vary": "Accept, Accept-Language, Cookie"}
    if download:
        html = offline.standalone(html, _static(request), VENDOR_DIR)
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return HTMLResponse(html, headers=headers)


def _links(request: Request, path: str, params: dict[str, str]) -> dict[str, str]:
    base = base_url(request)
    keep = {k: v for k, v in params.items() if k not in PAGE_PARAMS}

    def url(**extra: str) -> str:
        q = urlencode({**keep, **extra})
        return f"{base}{path}" + (f"?{q}" if q else "")

    return {"page": url(), "embed": url(embed="1"), "download": url(download="1"),
            "json": url(f="json")}


def iframe(src: str, title: str) -> str:
    return (f'<iframe src="{escape(src)}" title="{escape(title)}" width="100%" '
            f'height="{IFRAME_HEIGHT}" style="border:0" loading="lazy" '
            'allowfullscreen></iframe>')


def _describe(layer: Layer, spec: MapSpec) -> dict[str, Any]:
    style = choose_style(layer, spec)
    return {
        "dataset": layer.slug, "title": layer.title, "geometry": layer.geometry,
        "drawn_from": "geojson" if layer.features is not None else "vector-tiles",
        "features": layer.feature_count, "tiles": layer.tiles,
        "style": {"kind": "heat" if style.heat else style.kind, "column": style.column,
                  "classify": style.classify, "bins": list(style.bins),
                  "palette": spec.palette or (palettes.LANDUSE if style.landuse else None),
                  "cluster": style.cluster, "weight": style.weight_column,
                  "legend": [{"color": e.color, "label": e.label} for e in style.entries]},
    }


# ---- routes ------------------------------------------------------------------------------

@router.get("/maps/explore", summary="Several datasets on one map, with a layer control",
            response_model=None)
async def explore(request: Request, pool: PoolDep, collections: CollectionsDep) -> Response:
    async def make() -> Response:
        params = single_params(request)
        lang = choose_lang(request).lang
        slugs = [s.strip() for s in params.get("layers", "").split(",") if s.strip()]
        if not slugs:
            raise bad_request("layers: give the datasets to overlay, e.g. "
                              "layers=districts,schools; datasets: "
                              f"{', '.join(sorted(collections))}", parameter="layers")
        if len(slugs) > MAX_LAYERS:
            raise bad_request(f"layers: {len(slugs)} datasets; at most {MAX_LAYERS} on one "
                              "map", parameter="layers")
        if len(set(slugs)) != len(slugs):
            raise bad_request("layers: a dataset is named twice", parameter="layers")
        colls = [_collection(collections, s) for s in slugs]
        per_layer = {f"{p}.{s}" for p in FILTER_PARAMS for s in slugs}
        unknown = sorted(k for k in params if k not in EXPLORE_PARAMS and k not in per_layer)
        if unknown:
            hint = " (a filter names its layer: filter.<dataset>=...)" \
                if any(u in FILTER_PARAMS for u in unknown) else ""
            raise bad_request(
                f"unknown parameter(s) {', '.join(map(repr, unknown))}{hint}; accepted: "
                f"{', '.join(EXPLORE_PARAMS)}, and per layer "
                f"{', '.join(p + '.<dataset>' for p in FILTER_PARAMS)}", parameter=unknown[0])
        spec = _spec(request, {k: v for k, v in params.items()
                               if k in ("basemap",)}, lang)
        fmt = _format(params)
        embed, download = _flag(params, "embed"), _flag(params, "download")
        layers = []
        for coll in colls:
            filters = {p: params[f"{p}.{coll.slug}"] for p in FILTER_PARAMS
                       if f"{p}.{coll.slug}" in params}
            layers.append(await load_layer(request, pool, coll, filters, lang=lang,
                                           heat=False, weight=None, prefix=coll.slug))
        try:
            described = [_describe(layer, spec) for layer in layers]
            m = build_explore(layers, spec, static_url=_static(request)) \
                if embed or download else None
        except SpecError as exc:
            raise bad_request(str(exc), parameter=exc.parameter) from None
        links = _links(request, "/maps/explore", params)
        title = " · ".join(layer.title for layer in layers)
        if fmt == "json":
            return Response(json.dumps({
                "title": title, "layers": described,
                "links": links, "iframe": iframe(links["embed"], title)},
                ensure_ascii=False), media_type="application/json")
        if m is not None:
            return _map_response(request, _map_html(m, lang=lang, title=title),
                                 download=download, filename="shahr-explore-map.html")
        return _page(request, title=title, layers=layers, links=links)

    return await _answer(request, make)


@router.get("/maps/{slug}", summary="A dataset's map, styled from its data",
            response_model=None)
async def dataset_map(request: Request, slug: str, pool: PoolDep,
                      collections: CollectionsDep) -> Response:
    async def make() -> Response:
        params = single_params(request)
        coll = _collection(collections, slug)
        lang = choose_lang(request).lang
        accepted = (*SPEC_PARAMS, *FILTER_PARAMS, *PAGE_PARAMS)
        unknown = sorted(k for k in params if k not in accepted)
        if unknown:
            raise bad_request(f"unknown parameter(s) {', '.join(map(repr, unknown))}; "
                              f"accepted: {', '.join(accepted)}", parameter=unknown[0])
        spec = _spec(request, params, lang)
        fmt = _format(params)
        embed, download = _flag(params, "embed"), _flag(params, "download")
        filters = {k: params[k] for k in FILTER_PARAMS if k in params}
        layer = await load_layer(request, pool, coll, filters, lang=lang, heat=spec.heat,
                                 weight=spec.weight)
        try:
            description = _describe(layer, spec)
            report = f"{base_url(request)}/datasets/{slug}/reports/new?feature={{id}}"
            m = build_map(layer, spec, static_url=_static(request), report_url=report) \
                if embed or download else None
        except SpecError as exc:
            raise bad_request(str(exc), parameter=exc.parameter) from None
        links = _links(request, f"/maps/{slug}", params)
        if fmt == "json":
            return Response(json.dumps({**description, "links": links,
                                        "iframe": iframe(links["embed"], layer.title)},
                                       ensure_ascii=False), media_type="application/json")
        if m is not None:
            return _map_response(request, _map_html(m, lang=lang, title=layer.title),
                                 download=download, filename=f"{slug}-map.html")
        column = layer.field(description["style"]["column"] or "")
        return _page(request, title=layer.title, layers=[layer], links=links,
                     description=description,
                     style_label=column.label(lang) if column else "")

    return await _answer(request, make)


def _page(request: Request, *, title: str, layers: list[Layer], links: dict[str, str],
          description: dict[str, Any] | None = None, style_label: str = "") -> Response:
    return render(request, "maps/page.html", {
        "title": title, "layers": layers, "links": links, "description": description,
        "style_label": style_label, "iframe": iframe(links["embed"], title),
    })
