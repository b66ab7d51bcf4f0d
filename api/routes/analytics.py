"""Spatial analyses for planners, answered by PostGIS: /analytics/aggregate, /coverage,
/nearest, /landuse-mix, /hexbin and /traffic. Each answers with GeoJSON (the default), CSV
(`f=csv`) or a page with a choropleth map and a table (`f=html`, or a browser). Parameters
and rules: docs/analytics.md; parsing: api.analytics_params; SQL: geo.analytics."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api import analytics_run as run
from api.analytics_params import ANALYSES, COMMON, PARAMS, Job, parse
from api.deps import CollectionsDep, PoolDep, single_params
from api.downloads import copy_out
from api.html import wants_html
from api.links import base_url
from api.problems import Problem, bad_request, not_found

router = APIRouter(tags=["Analytics"])
log = logging.getLogger("shahr.api")
ENV = Environment(loader=FileSystemLoader(str(Path(__file__).parents[1] / "templates")),
                  autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
TABLE_ROWS = 2_000  # rows shown in a page's table (the downloads hold all)
MEDIA = {"json": run.GEOJSON_MEDIA, "geojson": run.GEOJSON_MEDIA, "csv": run.CSV_MEDIA}

SUMMARIES = {
    "aggregate": "Count, sum and mean of a layer's features in each zone, with density per km²",
    "coverage": "Share of a layer (features or a field's sum) within a distance of facilities, "
                "per zone; or the catchment areas",
    "nearest": "Nearest facility of each feature and the distance in metres; or per zone "
               "statistics of those distances",
    "landuse-mix": "Land-use mix per zone: normalised Shannon entropy of land-use areas",
    "hexbin": "A layer counted (and a field summed) in hexagons of a chosen size",
    "traffic": "Top road segments by volume or v/c; crash hot spots per hexagon or segment "
               "with Getis-Ord Gi*",
}
DESCRIPTIONS = {
    "layer": "the analysed dataset's slug", "zones": "a polygon dataset's slug",
    "facilities": "the facilities' dataset slug", "roads": "a line dataset's slug (segments)",
    "field": "a property of the layer (numeric; for landuse-mix the land-use category)",
    "distance": "metres", "size": "hexagon edge in metres",
    "filter": "CQL2 filter on layer", "zones-filter": "CQL2 filter on zones",
    "facilities-filter": "CQL2 filter on facilities", "roads-filter": "CQL2 filter on roads",
    "filter-lang": "cql2-text (default) or cql2-json, for every filter",
    "filter-crs": "CRS of coordinates in the filters (default CRS84)",
    "f": "json (GeoJSON, default), geojson, csv or html", "lang": "en or fa (html)",
    "output": "coverage: zones | catchment; nearest: features | zones",
    "categories": "land uses to count, comma separated", "kind": "top-roads | hotspots",
    "by": "top-roads: volume | vc; hotspots: hex | segment", "volume": "volume property",
    "capacity": "capacity property", "k-factor": "v/c = volume × k-factor / capacity",
    "n": "how many roads", "significance": "true: Getis-Ord Gi* z-scores and p-values",
    "band": "distance band of the Gi* weights, metres",
    "permutations": "Gi* permutations (0 to 9999)",
}


def _openapi(name: str) -> dict[str, Any]:
    params = [{"name": p, "in": "query", "required": p in ("layer",) or (
        p in ("zones",) and name in ("aggregate", "landuse-mix")),
        "description": DESCRIPTIONS.get(p, p), "schema": {"type": "string"}}
        for p in (*PARAMS[name], *COMMON)]
    return {"parameters": params}


@router.get("/analytics", summary="The analyses and their parameters", response_model=None)
async def index(request: Request) -> Response:
    b = base_url(request)
    body = {"analyses": [
        {"id": n, "summary": SUMMARIES[n], "parameters": [*PARAMS[n], *COMMON],
         "links": [{"href": f"{b}/analytics/{n}", "rel": "item", "type": run.GEOJSON_MEDIA}]}
        for n in ANALYSES]}
    return Response(json.dumps(body, ensure_ascii=False), media_type="application/json")


def _params(request: Request) -> dict[str, str]:
    seen = single_params(request)
    if "f" not in seen and wants_html(request):
        seen["f"] = "html"
    return seen


async def _answer(request: Request, name: str, pool: Any,
                  collections: dict[str, Any]) -> Response:
    job = parse(name, _params(request), collections)
    try:
        if job.stream and job.fmt != "html":
            return await _stream(request, pool, job)
        async with pool.connection() as conn:
            result = await run.fetch(conn, job, limit=TABLE_ROWS + 1 if job.stream else None)
    except (psycopg.errors.DataError, psycopg.errors.InternalError_) as exc:
        raise _database_error(exc) from None
    if job.hotspots is not None:
        result = await anyio.to_thread.run_sync(run.add_hotspots, result)
    if job.fmt == "csv":
        return Response(run.csv_bytes(result), media_type=run.CSV_MEDIA,
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    if job.fmt == "html":
        return await anyio.to_thread.run_sync(_page, request, result)
    return Response(run.geojson_bytes(result), media_type=run.GEOJSON_MEDIA)


def _database_error(exc: psycopg.Error) -> Problem:
    """A query PostGIS could not finish for reasons in the data or the filter (an invalid
    geometry in a zone, a filter value out of range) is the request's to fix: a 400."""
    msg = (exc.diag.message_primary or str(exc)).strip()
    log.info("analysis refused by the database: %s", msg)
    return bad_request(f"the database could not run this analysis: {msg}")


async def _stream(request: Request, pool: Any, job: Job) -> Response:
    """A per-feature answer: COPY on a connection of the pool (warm: PostGIS has its
    transformations ready, which a new backend needs most of a second for; public role,
    statement timeout), streamed as it comes. The checks run first and the first block is
    awaited, so an error is still a problem response. A connection given back in the middle
    of its COPY (the client went away) is closed by the pool, not reused."""
    conn = await pool.getconn()
    try:
        for i, (sql, params) in enumerate(run.statements(job)[:-1]):
            cur = await conn.execute(sql, params)
            run.check(job, i, await cur.fetchone())
        statement = run.copy_statement(job, job.fmt, psycopg.AsyncClientCursor(conn).mogrify)
        blocks = copy_out(conn, statement)
        first = await anext(blocks, b"")
    except (psycopg.errors.DataError, psycopg.errors.InternalError_) as exc:
        await pool.putconn(conn)
        raise _database_error(exc) from None
    except BaseException:
        await pool.putconn(conn)
        raise

    async def rest() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for block in blocks:
                yield block
        finally:
            await blocks.aclose()
            await pool.putconn(conn)

    body = _framed(job, rest())
    headers = {"Content-Disposition": f'attachment; filename="{job.analysis}.csv"'} \
        if job.fmt == "csv" else {}
    return StreamingResponse(body, media_type=MEDIA[job.fmt], headers=headers)


async def _framed(job: Job, blocks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    head, tail = run.stream_head(job, job.fmt)
    first = True
    async for block in blocks:
        block = run.unjoin(job, block)
        if first:
            first = False
            if job.fmt != "csv" and block[:1] == b",":
                block = block[1:]
            block = head + block
        yield block
    yield tail if not first else head + tail


# ---- the page ------------------------------------------------------------------------------

def _map_html(request: Request, result: run.Result) -> str | None:
    """The choropleth (the maps package's builder), as a whole HTML document."""
    from maps.build import build_map
    from maps.spec import Field, Layer, MapSpec, SpecError

    job = result.job
    fc = run.feature_dicts(result)
    first = next((f["geometry"]["type"] for f in fc["features"] if f["geometry"]), None)
    if first is None:
        return None
    kind = "polygon" if "Polygon" in first else "line" if "Line" in first else "point"
    numeric = {p for p in job.built.properties
               if any(isinstance(r.get(p), int | float) and not isinstance(r.get(p), bool)
                      for r in result.rows)}
    fields = tuple(Field(p, "number" if p in numeric else "string",
                         label_en=p.replace("_", " ")) for p in job.built.properties
                   if not any(isinstance(r.get(p), dict | list) for r in result.rows[:1]))
    layer = Layer(slug=job.analysis, title=job.title, geometry=kind,  # type: ignore[arg-type]
                  fields=fields, bounds=run.bounds(result), features=fc,
                  feature_count=len(fc["features"]))
    settings = request.app.state.settings
    static = f"{base_url(request)}/static"
    lang = job.lang if job.lang in ("fa", "en") else "en"
    try:
        spec = MapSpec(style="choropleth", column=job.value, classify="quantiles", k=5,
                       basemap=settings.basemap, lang=lang)  # type: ignore[arg-type]
        m = build_map(layer, spec, static_url=static)
    except SpecError:  # nothing numeric to colour by (every value empty): one colour
        spec = MapSpec(style="plain", basemap=settings.basemap, lang=lang)  # type: ignore[arg-type]
        m = build_map(layer, spec, static_url=static)
    fig = m.get_root()
    fig.title = job.title  # type: ignore[attr-defined]
    return fig.render()


def _page(request: Request, result: run.Result) -> HTMLResponse:
    job = result.job
    url = str(request.url.remove_query_params("f"))
    sep = "&" if "?" in url else "?"
    links = {f: f"{url}{sep}{urlencode({'f': f})}" for f in ("json", "csv")}
    rows = result.rows[:TABLE_ROWS]
    html = ENV.get_template("analytics/result.html").render(
        lang=job.lang, dir="rtl" if job.lang == "fa" else "ltr", job=job, rows=rows,
        columns=["fid", *job.built.properties], shown=len(rows), total=len(result.rows),
        truncated=result.truncated or len(result.rows) > TABLE_ROWS,
        map_html=_map_html(request, result), links=links, base=base_url(request))
    return HTMLResponse(html)


def _route(name: str) -> Any:
    async def analysis(request: Request, pool: PoolDep, collections: CollectionsDep) -> Response:
        return await _answer(request, name, pool, collections)

    analysis.__name__ = f"analytics_{name.replace('-', '_')}"
    analysis.__doc__ = f"{SUMMARIES[name]}. Parameters: docs/analytics.md."
    return analysis


for _name in ANALYSES:
    router.add_api_route(f"/analytics/{_name}", _route(_name), methods=["GET"],
                         summary=SUMMARIES[_name], response_model=None,
                         openapi_extra=_openapi(_name))


@router.get("/analytics/{name}", include_in_schema=False, response_model=None)
async def unknown(name: str) -> Response:
    raise not_found(f"no analysis {name!r}; analyses: {', '.join(ANALYSES)}")
