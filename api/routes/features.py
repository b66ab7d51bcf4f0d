"""OGC API Features, Parts 1-3: landing page, conformance, collections, items (with bbox,
datetime, CQL2 filters, CRS, paging by feature id), single features and queryables, as
GeoJSON/JSON and HTML. Every published dataset is a collection named by its slug."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from api.deps import CollectionDep, CollectionsDep, PoolDep
from api.html import render, wants_html
from api.problems import bad_request, not_found
from api.query import (
    FeatureQuery,
    compile_sql,
    count_statement,
    has_more_statement,
    item_statement,
    items_statement,
    parse_params,
    supported_crs,
)
from catalog.collections import Collection
from geo.sql import CRS84

router = APIRouter(tags=["OGC API Features"])

GEOJSON = "application/geo+json"
OGC = "http://www.opengis.net/spec"
CONFORMANCE = [
    f"{OGC}/ogcapi-features-1/1.0/conf/core",
    f"{OGC}/ogcapi-features-1/1.0/conf/geojson",
    f"{OGC}/ogcapi-features-1/1.0/conf/html",
    f"{OGC}/ogcapi-features-1/1.0/conf/oas30",
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


def base_url(request: Request) -> str:
    configured = request.app.state.settings.base_url
    return (configured or str(request.base_url)).rstrip("/")


def link(href: str, rel: str, type_: str, title: str | None = None) -> dict[str, str]:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def _json(body: Any, media: str = "application/json", **headers: str) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, default=str), media_type=media,
                    headers=headers)


@router.get("/", summary="Landing page", response_model=None)
async def landing(request: Request) -> Response:
    b = base_url(request)
    body = {
        "title": "Shahr · شهر",
        "description": "Municipal open data: catalogue, OGC API Features and vector tiles, "
                       "in Persian and English.",
        "links": [
            link(f"{b}/?f=json", "self", "application/json", "This document"),
            link(f"{b}/?f=html", "alternate", "text/html", "This document as HTML"),
            link(f"{b}/openapi.json", "service-desc",
                 "application/vnd.oai.openapi+json;version=3.0", "The API definition"),
            link(f"{b}/docs", "service-doc", "text/html", "The API documentation"),
            link(f"{b}/conformance", "conformance", "application/json",
                 "Conformance classes"),
            link(f"{b}/collections", "data", "application/json", "Collections"),
            link(f"{b}/datasets", "search", "application/json", "Search the catalogue"),
        ],
    }
    if wants_html(request):
        return render(request, "ogc/landing.html", body)
    return _json(body)


@router.get("/conformance", summary="Conformance classes", response_model=None)
async def conformance(request: Request) -> Response:
    body = {"conformsTo": CONFORMANCE}
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
    body = collection_doc(coll, base_url(request))
    if wants_html(request):
        return render(request, "ogc/collection.html", body)
    return _json(body)


@router.get("/collections/{collection_id}/queryables",
            summary="Properties usable in filters (JSON Schema)", response_model=None)
async def queryables(request: Request, coll: CollectionDep) -> Response:
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


def _params(request: Request) -> dict[str, str]:
    params: dict[str, str] = {}
    for k, v in request.query_params.multi_items():
        if k in params:
            raise bad_request(f"parameter {k!r} is given more than once", parameter=k)
        params[k] = v
    return params


def _page_url(request: Request, **changes: str | None) -> str:
    params = dict(request.query_params)
    for k, v in changes.items():
        if v is None:
            params.pop(k, None)
        else:
            params[k] = v
    return f"{base_url(request)}{request.url.path}" + (f"?{urlencode(params)}" if params else "")


async def _run(pool: Any, stmt: Any) -> Any:
    sql, params = compile_sql(stmt)
    async with pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return await cur.fetchone()


async def _items(request: Request, pool: Any, coll: Collection,
                 body_filter: dict[str, Any] | None = None) -> Response:
    settings = request.app.state.settings
    params = _params(request)
    q = parse_params(coll, params, default_limit=settings.default_limit,
                     max_limit=settings.max_limit, body_filter=body_filter)
    features, returned, first, last = await _run(pool, items_statement(q))
    matched = await _matched(pool, q)
    links = _item_links(request, q, returned, first, last, matched)
    if returned == q.limit and q.nearest is None and "next" not in {x["rel"] for x in links}:
        more = await _run(pool, has_more_statement(q, last)) if q.sort == [] and not q.offset \
            else (1,)
        if more:
            links.append(_next_link(request, q, last))
    if wants_html(request):
        feats = json.loads(f"[{features}]")
        return render(request, "ogc/items.html", {
            "title": coll.title, "collection": coll, "features": feats,
            "numberReturned": returned, "numberMatched": matched, "links": links,
            "columns": q.properties or [c.name for c in coll.columns]})
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
    if q.exact_count or q.coll.feature_count <= 200_000:
        row = await _run(pool, count_statement(q))
        return int(row[0])
    return None


def _next_link(request: Request, q: FeatureQuery, last: int) -> dict[str, str]:
    if q.sort or q.offset:
        url = _page_url(request, offset=str(q.offset + q.limit), after=None, before=None)
    else:
        url = _page_url(request, after=str(last), before=None, offset=None)
    return link(url, "next", GEOJSON, "Next page")


def _item_links(request: Request, q: FeatureQuery, returned: int, first: int | None,
                last: int | None, matched: int | None) -> list[dict[str, str]]:
    links = [link(_page_url(request), "self", GEOJSON, "This page"),
             link(_page_url(request, f="html"), "alternate", "text/html", "This page as HTML"),
             link(f"{base_url(request)}/collections/{q.coll.slug}", "collection",
                  "application/json", q.coll.title)]
    if q.nearest is not None:
        return links
    paged_back = q.after is not None or q.before is not None or q.offset > 0
    if paged_back and returned and first is not None:
        if q.sort or q.offset:
            prev = _page_url(request, offset=str(max(q.offset - q.limit, 0)))
        else:
            prev = _page_url(request, before=str(first), after=None)
        links.append(link(prev, "prev", GEOJSON, "Previous page"))
    if q.before is not None and last is not None and returned:
        # Walking backwards: there is always a page after this one.
        links.append(_next_link(request, q, last))
    return links


@router.get("/collections/{collection_id}/items", summary="Features, filtered and paged",
            response_model=None)
async def items(request: Request, pool: PoolDep, coll: CollectionDep) -> Response:
    return await _items(request, pool, coll)


@router.post("/collections/{collection_id}/items/search",
             summary="Features matching a CQL2-JSON filter sent in the body (large shapes)",
             response_model=None)
async def items_search(request: Request, pool: PoolDep, coll: CollectionDep,
                       body: Annotated[dict[str, Any], Body(
                           description="A CQL2-JSON filter expression, or "
                                       "{\"filter\": <CQL2-JSON>}")]) -> Response:
    expr = body.get("filter", body) if isinstance(body, dict) else body
    if not isinstance(expr, dict):
        raise bad_request("the body must be a CQL2-JSON expression (an object)")
    return await _items(request, pool, coll, body_filter=expr)


@router.get("/collections/{collection_id}/items/{feature_id}", summary="One feature",
            response_model=None)
async def item(request: Request, pool: PoolDep, coll: CollectionDep,
               feature_id: str) -> Response:
    try:
        fid = int(feature_id)
    except ValueError:
        raise not_found(f"no feature {feature_id!r} in {coll.slug}: feature ids are whole "
                        "numbers") from None
    settings = request.app.state.settings
    params = _params(request)
    extra = set(params) - {"f", "crs", "properties", "skipGeometry", "lang"}
    if extra:
        raise bad_request(f"unknown parameter(s) {', '.join(sorted(extra))} for one feature; "
                          "accepted: crs, properties, skipGeometry, f", parameter=min(extra))
    q = parse_params(coll, params, default_limit=settings.default_limit,
                     max_limit=settings.max_limit)
    row = await _run(pool, item_statement(q, fid)) if abs(fid) < 2**62 else None
    if row is None:
        raise not_found(f"no feature {fid} in {coll.slug}")
    b = base_url(request)
    feature = json.loads(row[0])
    feature["links"] = [
        link(f"{b}/collections/{coll.slug}/items/{fid}", "self", GEOJSON),
        link(f"{b}/collections/{coll.slug}/items/{fid}?f=html", "alternate", "text/html"),
        link(f"{b}/collections/{coll.slug}", "collection", "application/json", coll.title)]
    if wants_html(request):
        return render(request, "ogc/item.html", {"title": f"{coll.title} · {fid}",
                                                 "collection": coll, "feature": feature})
    return _json(feature, GEOJSON, **{"Content-Crs": f"<{q.crs.uri}>"})

