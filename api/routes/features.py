"""OGC API Features, Parts 1-3: landing page, conformance, collections, items (with bbox,
datetime, CQL2 filters, CRS, paging by feature id), single features and queryables, as
GeoJSON/JSON and HTML. Every published dataset is a collection named by its slug."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import psycopg
from fastapi import APIRouter, Body, Request
from fastapi.responses import Response
from pydantic import StrictBool

from api.deps import (
    CollectionDep,
    CollectionId,
    CollectionsDep,
    PoolDep,
    collection_of,
    single_params,
)
from api.html import render, wants_html
from api.links import base_url, link
from api.problems import bad_request, not_found
from api.query import (
    FeatureQuery,
    StatementCache,
    compile_sql,
    count_statement,
    cursor_values,
    item_statement,
    items_statement,
    parse_params,
    request_shape,
    supported_crs,
)
from api.routes import home
from api.routes.tiles import TILES_CONFORMANCE
from catalog.collections import Collection
from geo.sql import CRS84

router = APIRouter(tags=["OGC API Features"])
log = logging.getLogger("shahr.api")
# Below this many rows numberMatched of a filtered request is counted exactly; above it, only
# with count=exact (a COUNT scans what the filter selects).
EXACT_COUNT_ROWS = 200_000
FORMATS = {"json": "JSON / GeoJSON", "geojson": "GeoJSON", "html": "HTML"}

GEOJSON = "application/geo+json"
OGC = "http://www.opengis.net/spec"
CONFORMANCE = [
    f"{OGC}/ogcapi-features-1/1.0/conf/core",
    f"{OGC}/ogcapi-features-1/1.0/conf/geojson",
    f"{OGC}/ogcapi-features-1/1.0/conf/html",
    f"{OGC}/ogcapi-features-2/1.0/conf/crs",
    f"{OGC}/ogcapi-features-3/1.0/conf/queryables",
    f"{OGC}/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    f"{OGC}/ogcapi-features-3/1.0/conf/filter",
    f"{OGC}/ogcapi-features-3/1.0/conf/features-filter",
    f"{OGC}/cql2/1.0/conf/cql2-text",
    f"{OGC}/cql2/1.0/conf/cql2-json",
    f"{OGC}/cql2/1.0/conf/basic-cql2",
    f"{OGC}/cql2/1.0/conf/advanced-comparison-operators",
    f"{OGC}/cql2/1.0/conf/case-insensitive-comparison",
    f"{OGC}/cql2/1.0/conf/basic-spatial-functions",
    f"{OGC}/cql2/1.0/conf/basic-spatial-functions-plus",
    f"{OGC}/cql2/1.0/conf/spatial-functions",
    f"{OGC}/cql2/1.0/conf/temporal-functions",
    f"{OGC}/cql2/1.0/conf/arithmetic",
    f"{OGC}/cql2/1.0/conf/property-property",
]


def _json(body: Any, media: str = "application/json", **headers: str) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, default=str), media_type=media,
                    headers=headers)


@router.get("/", summary="Landing page", response_model=None)
async def landing(request: Request) -> Response:
    _check_format(single_params(request))
    b = base_url(request)
    body = {
        "title": "Shahr · شهر",
        "description": "Municipal open data: catalogue, OGC API Features and vector tiles, "
                       "in Persian and English.",
        "links": [
            link(f"{b}/?f=json", "self", "application/json", "This document"),
            link(f"{b}/?f=html", "alternate", "text/html", "This document as HTML"),
            link(f"{b}/openapi.json", "service-desc",
                 "application/vnd.oai.openapi+json;version=3.1", "The API definition"),
            link(f"{b}/docs", "service-doc", "text/html", "The API documentation"),
            link(f"{b}/tileMatrixSets", "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes",
                 "application/json", "Tile matrix sets"),
            link(f"{b}/conformance", "conformance", "application/json",
                 "Conformance classes"),
            link(f"{b}/collections", "data", "application/json", "Collections"),
            link(f"{b}/datasets", "search", "application/json", "Search the catalogue"),
        ],
    }
    if wants_html(request):  # people get the home page, which keeps these links
        return await home.page(request, body)
    return _json(body)


@router.get("/conformance", summary="Conformance classes", response_model=None)
async def conformance(request: Request) -> Response:
    _check_format(single_params(request))
    body = {"conformsTo": CONFORMANCE + [c for c in TILES_CONFORMANCE if c not in CONFORMANCE]}
    if wants_html(request):
        return render(request, "ogc/conformance.html", body)
    return _json(body)


def collection_doc(coll: Collection, b: str) -> dict[str, Any]:
    c = f"{b}/collections/{coll.slug}"
    temporal = [[coll.temporal_start.isoformat() if coll.temporal_start else None,
                 coll.temporal_end.isoformat() if coll.temporal_end else None]]
    return {
        "id": coll.slug,
        "title": coll.title,
        "description": coll.description,
        "titles": {"fa": coll.title_fa, "en": coll.title_en},
        "keywords": list(coll.keywords),
        "itemType": "feature",
        "extent": {"spatial": {"bbox": [list(coll.extent)], "crs": CRS84},
                   "temporal": {"interval": temporal,
                                "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}},
        "crs": supported_crs(coll),
        "storageCrs": CRS84,
        "geometryType": coll.geometry_type,
        "numberOfFeatures": coll.feature_count,
        "version": coll.version,
        "license": coll.licence,
        "links": [
            link(c, "self", "application/json", "This collection"),
            link(f"{c}?f=html", "alternate", "text/html", "This collection as HTML"),
            link(f"{c}/items", "items", GEOJSON, "Features"),
            link(f"{c}/items?f=html", "items", "text/html", "Features as HTML"),
            link(f"{c}/queryables", "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                 "application/schema+json", "Queryables"),
            link(f"{c}/tiles", "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector",
                 "application/json", "Vector tiles"),
            link(f"{b}/datasets/{coll.slug}", "describedby", "application/json",
                 "Catalogue record"),
            link(f"https://spdx.org/licenses/{coll.licence}.html", "license", "text/html",
                 coll.licence),
        ],
    }


@router.get("/collections", summary="The collections (one per published dataset)",
            response_model=None)
async def collections(request: Request, colls: CollectionsDep) -> Response:
    _check_format(single_params(request))
    b = base_url(request)
    body = {
        "links": [link(f"{b}/collections", "self", "application/json"),
                  link(f"{b}/collections?f=html", "alternate", "text/html")],
        "collections": [collection_doc(c, b) for c in colls.values()],
        "crs": [CRS84, "http://www.opengis.net/def/crs/EPSG/0/4326",
                "http://www.opengis.net/def/crs/EPSG/0/3857"],
    }
    if wants_html(request):
        return render(request, "ogc/collections.html", body)
    return _json(body)


@router.get("/collections/{collection_id}", summary="One collection", response_model=None)
async def collection(request: Request, coll: CollectionDep) -> Response:
    _check_format(single_params(request))
    body = collection_doc(coll, base_url(request))
    if wants_html(request):
        return render(request, "ogc/collection.html", body)
    return _json(body)


@router.get("/collections/{collection_id}/queryables",
            summary="Properties usable in filters (JSON Schema)", response_model=None)
async def queryables(request: Request, coll: CollectionDep) -> Response:
    _check_format(single_params(request))
    b = base_url(request)
    schema_types = {"string": {"type": "string"}, "integer": {"type": "integer"},
                    "number": {"type": "number"}, "boolean": {"type": "boolean"},
                    "date": {"type": "string", "format": "date"},
                    "datetime": {"type": "string", "format": "date-time"}}
    props: dict[str, Any] = {
        "geometry": {"$ref": f"https://geojson.org/schema/{coll.geometry_type}.json",
                     "x-ogc-role": "primary-geometry"},
    }
    for c in coll.columns:
        entry = {**schema_types.get(c.type, {"type": "string"}), "title": c.title}
        if c.description_en or c.description_fa:
            entry["description"] = c.description_en or c.description_fa
        if c.unit:
            entry["x-unit"] = c.unit
        props[c.name] = entry
    body = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{b}/collections/{coll.slug}/queryables",
        "type": "object", "title": coll.title, "properties": props,
        "additionalProperties": False,
    }
    if wants_html(request):
        return render(request, "ogc/queryables.html", {"title": coll.title, **body})
    return _json(body, "application/schema+json")


def _check_format(params: dict[str, str]) -> None:
    f = params.get("f")
    if f is not None and f.lower() not in FORMATS:
        raise bad_request(f"f: {f!r} is not offered here; accepted: {', '.join(FORMATS)}",
                          parameter="f")



def _page_url(request: Request, **changes: str | None) -> str:
    params = dict(request.query_params)
    for k, v in changes.items():
        if v is None:
            params.pop(k, None)
        else:
            params[k] = v
    return f"{base_url(request)}{request.url.path}" + (f"?{urlencode(params)}" if params else "")


def _statements(request: Request) -> StatementCache:
    """The app's compiled-statement cache (per app: its settings shape the SQL)."""
    state = request.app.state
    if not hasattr(state, "statements"):
        state.statements = StatementCache()
    return state.statements  # type: ignore[no-any-return]


async def _run(pool: Any, stmt: Any) -> Any:
    sql, params = compile_sql(stmt)
    return await _run_sql(pool, sql, params)


async def _run_sql(pool: Any, sql: str, params: dict[str, Any]) -> Any:
    try:
        async with pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()
    except (psycopg.errors.DataError, psycopg.errors.InternalError_) as exc:
        # Values PostgreSQL/PostGIS cannot compute with (an overflow in filter arithmetic,
        # a shape PROJ cannot move to the CRS asked for, ...): the request's fault, a 400.
        message = exc.diag.message_primary or str(exc).splitlines()[0]
        log.info("query refused by the database: %s", message)
        raise bad_request(f"the database could not evaluate this request: {message}; check "
                          "the numbers, coordinates and CRS given") from None


async def _items(request: Request, pool: Any, coll: Collection,
                 body_filter: dict[str, Any] | None = None,
                 post_body: dict[str, Any] | None = None) -> Response:
    settings = request.app.state.settings
    params = single_params(request)
    _check_format(params)
    key = ("items", coll.version_id, request_shape(params),
           json.dumps(body_filter, sort_keys=True) if body_filter is not None else None)
    cached = _statements(request).get(key)
    if cached is None:
        q = parse_params(coll, params, default_limit=settings.default_limit,
                         max_limit=settings.max_limit, body_filter=body_filter)
        sql, sql_params = compile_sql(items_statement(q))
        _statements(request).put(key, (q, sql, sql_params))
    else:
        q0, sql, sql_params = cached
        after, before = cursor_values(params)
        q = replace(q0, after=after, before=before)
        if q.cursor is not None:
            sql_params = {**sql_params, "cursor": q.cursor}
    features, returned, fids, more, other, cursor_ok = await _run_sql(pool, sql, sql_params)
    if not cursor_ok:
        name = "before" if q.before is not None else "after"
        raise bad_request(f"{name}: there is no feature {q.cursor} in {coll.slug}; a sorted "
                          "page continues from a feature's place (use the next and prev "
                          "links)", parameter=name)
    matched = await _matched(pool, q)
    links = _item_links(request, q, fids, more, other, post_body)
    if wants_html(request):
        feats = json.loads(f"[{features}]")
        return render(request, "ogc/items.html", {
            "title": coll.title, "collection": coll, "features": feats,
            "numberReturned": returned, "numberMatched": matched, "links": links,
            "columns": q.properties if q.properties is not None
            else [c.name for c in coll.columns]})
    head = {"type": "FeatureCollection", "numberReturned": returned,
            "timeStamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "links": links}
    if matched is not None:
        head["numberMatched"] = matched
    prefix = json.dumps(head, ensure_ascii=False)[:-1]
    payload = f'{prefix},"features":[{features}]}}'.encode()
    return Response(payload, media_type=GEOJSON, headers={"Content-Crs": f"<{q.crs.uri}>"})


async def _matched(pool: Any, q: FeatureQuery) -> int | None:
    """Exact and free without filters (the catalogue knows); exact on small tables or when
    asked (count=exact); otherwise left out rather than scanning a big table."""
    if q.nearest is not None:
        return None
    if not q.filtered:
        return q.coll.feature_count
    if q.exact_count or q.coll.feature_count <= EXACT_COUNT_ROWS:
        row = await _run(pool, count_statement(q))
        return int(row[0])
    return None


def _page_link(request: Request, rel: str, title: str, body: dict[str, Any] | None,
               **changes: str | None) -> dict[str, Any]:
    out: dict[str, Any] = link(_page_url(request, **changes), rel, GEOJSON, title)
    if body is not None:  # a POST search: the next page is the same POST (as STAC API does)
        out["method"] = "POST"
        out["body"] = body
    return out


def _item_links(request: Request, q: FeatureQuery, fids: list[int], more: bool, other: bool,
                body: dict[str, Any] | None) -> list[dict[str, Any]]:
    """self, alternate, collection; next when more features follow, prev when some come
    before. Keyset links (after=/before= a feature id) unless the client paged by offset."""
    links: list[dict[str, Any]] = [
        _page_link(request, "self", "This page", body),
        link(_page_url(request, f="html"), "alternate", "text/html", "This page as HTML"),
        link(f"{base_url(request)}/collections/{q.coll.slug}", "collection",
             "application/json", q.coll.title)]
    if q.nearest is not None:
        return links
    backwards = q.before is not None
    has_next, has_prev = (other, more) if backwards else (more, other)
    if q.offset:
        if has_prev:
            links.append(_page_link(request, "prev", "Previous page", body,
                                    offset=str(max(q.offset - q.limit, 0))))
        if has_next:
            links.append(_page_link(request, "next", "Next page", body,
                                    offset=str(q.offset + q.limit)))
        return links
    if has_prev and fids:
        links.append(_page_link(request, "prev", "Previous page", body,
                                before=str(fids[0]), after=None))
    if has_next and fids:
        links.append(_page_link(request, "next", "Next page", body,
                                after=str(fids[-1]), before=None))
    elif has_next and backwards:  # an empty page before the first: go back to the start
        links.append(_page_link(request, "next", "Next page", body, after=None, before=None))
    return links


def _q(name: str, description: str, schema: dict[str, Any] | None = None,
       style: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": "query", "required": False,
                           "description": description, "schema": schema or {"type": "string"}}
    if style:
        out.update(style=style, explode=False)
    return out


_F = _q("f", "Response format: json (GeoJSON) or html; the Accept header works too.",
        {"type": "string", "enum": sorted(FORMATS)})
_CRS = _q("crs", "CRS of the returned geometries (see the collection's crs list); default "
          "CRS84. EPSG:4326 is latitude, longitude.")
_PROPERTIES = _q("properties", "Comma-separated properties to return (empty: none).",
                 {"type": "array", "items": {"type": "string"}}, "form")
_SKIP = _q("skipGeometry", "true: leave geometries out.", {"type": "boolean"})
ITEM_PARAMETERS = [
    _F,
    _q("limit", "Features per page (default 10); a value above the server's maximum gives "
       "the maximum.", {"type": "integer", "minimum": 1, "default": 10}),
    _q("bbox", "minx,miny,maxx,maxy (or 6 numbers with heights), in bbox-crs.",
       {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 6}, "form"),
    _q("bbox-crs", "CRS of bbox; default CRS84."),
    _q("datetime", "An instant (2023-05-01) or interval (2023-01-01/2023-02-01, .. for "
       "open) on the first date or time property."),
    _CRS, _PROPERTIES, _SKIP,
    _q("sortby", "Comma-separated properties, - for descending (e.g. -date,+severity)."),
    _q("filter", "A CQL2 filter (Part 3) on the queryables."),
    _q("filter-lang", "cql2-text (default) or cql2-json.",
       {"type": "string", "enum": ["cql2-text", "cql2-json"]}),
    _q("filter-crs", "CRS of the geometries in filter; default CRS84."),
    _q("near", "lon,lat: features within radius metres (true distance); adds distance_m."),
    _q("radius", "Metres (more than 0), with near.", {"type": "number", "minimum": 0}),
    _q("nearest", "lon,lat: the k nearest features, nearest first, with distance_m."),
    _q("k", "How many nearest features (default 5).", {"type": "integer", "minimum": 1}),
    _q("intersects", "A WKT or GeoJSON geometry (CRS84) the features must intersect."),
    _q("count", "exact: always count numberMatched (it may be left out on big tables).",
       {"type": "string", "enum": ["exact", "estimate"]}),
    _q("after", "Paging cursor from the next link (a feature id).", {"type": "integer"}),
    _q("before", "Paging cursor from the prev link (a feature id).", {"type": "integer"}),
    _q("offset", "Skip this many features (prefer the next link).",
       {"type": "integer", "minimum": 0}),
]


@router.get("/collections/{collection_id}/items", summary="Features, filtered and paged",
            description="Any queryable can also be given as a parameter for equality "
                        "(e.g. severity=fatal).",
            response_model=None, openapi_extra={"parameters": ITEM_PARAMETERS})
async def items(request: Request, collection_id: CollectionId) -> Response:
    return await _items(request, request.app.state.pool,
                        await collection_of(request, collection_id))


@router.post("/collections/{collection_id}/items/search",
             summary="Features matching a CQL2-JSON filter sent in the body (large shapes)",
             response_model=None,
             openapi_extra={"parameters": [p for p in ITEM_PARAMETERS
                                           if p["name"] not in ("filter", "filter-lang")]})
async def items_search(request: Request, pool: PoolDep, coll: CollectionDep,
                       body: Annotated[dict[str, Any] | StrictBool, Body(
                           description="A CQL2-JSON filter expression, or "
                                       "{\"filter\": <CQL2-JSON>}")]) -> Response:
    expr = body.get("filter", body) if isinstance(body, dict) else body
    if isinstance(expr, bool):  # TRUE and FALSE are CQL2 expressions too
        expr = {"op": "and", "args": [expr]}
    if not isinstance(expr, dict):
        raise bad_request("the body must be a CQL2-JSON expression (an object), or "
                          "{\"filter\": <CQL2-JSON>}")
    return await _items(request, pool, coll, body_filter=expr, post_body=body)


@router.get("/collections/{collection_id}/items/{feature_id}", summary="One feature",
            response_model=None, openapi_extra={"parameters": [_F, _CRS, _PROPERTIES, _SKIP]})
async def item(request: Request, collection_id: CollectionId, feature_id: str) -> Response:
    coll = await collection_of(request, collection_id)
    pool = request.app.state.pool
    try:
        fid = int(feature_id)
    except ValueError:
        raise not_found(f"no feature {feature_id!r} in {coll.slug}: feature ids are whole "
                        "numbers") from None
    settings = request.app.state.settings
    params = single_params(request)
    _check_format(params)
    extra = set(params) - {"f", "crs", "properties", "skipGeometry", "lang"}
    if extra:
        raise bad_request(f"unknown parameter(s) {', '.join(sorted(extra))} for one feature; "
                          "accepted: crs, properties, skipGeometry, f", parameter=min(extra))
    if abs(fid) >= 2**62:
        raise not_found(f"no feature {fid} in {coll.slug}")
    key = ("item", coll.version_id, request_shape(params))
    cached = _statements(request).get(key)
    if cached is None:
        q = parse_params(coll, params, default_limit=settings.default_limit,
                         max_limit=settings.max_limit)
        sql, sql_params = compile_sql(item_statement(q, fid))
        _statements(request).put(key, (q, sql, sql_params))
    else:
        q, sql, sql_params = cached
    row = await _run_sql(pool, sql, {**sql_params, "fid": fid})
    if row is None:
        raise not_found(f"no feature {fid} in {coll.slug}")
    b = base_url(request)
    links = [
        link(f"{b}/collections/{coll.slug}/items/{fid}", "self", GEOJSON),
        link(f"{b}/collections/{coll.slug}/items/{fid}?f=html", "alternate", "text/html"),
        link(f"{b}/collections/{coll.slug}", "collection", "application/json", coll.title)]
    if wants_html(request):
        feature = {**json.loads(row[0]), "links": links}
        return render(request, "ogc/item.html", {"title": f"{coll.title} · {fid}",
                                                 "collection": coll, "feature": feature})
    # The database wrote the feature's JSON; splice the links in rather than parse it again.
    payload = f'{row[0][:-1]},"links":{json.dumps(links, ensure_ascii=False)}}}'
    return Response(payload.encode(), media_type=GEOJSON,
                    headers={"Content-Crs": f"<{q.crs.uri}>"})

