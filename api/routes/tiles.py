"""OGC API Tiles: vector tiles (MVT) of every collection, in WebMercatorQuad and
WorldCRS84Quad, with the same filters as items (CQL2 `filter`, `datetime`, `bbox`,
property equality, `properties`), tileset metadata, TileJSON 3.0.0 and the tile matrix sets.

The tile path is `.../tiles/{tileMatrixSetId}/{z}/{x}/{y}` (XYZ order, as TileJSON clients
and tipg use); the OGC variables are `tileMatrix`=z, `tileCol`=x, `tileRow`=y and the
tileset's templated link says so (/req/core/tc-op allows any template).

Errors: an unknown tile matrix set is a 404 (it names a resource, the tileset, that does not
exist, like an unknown collection); z/x/y outside the tile matrix is a 400 (/req/core/tc-error
allows 400 or 404; the request is malformed and the message gives the valid range). A tile
with no features is a 204, answered without the database when the tile misses the
collection's extent. Paging parameters (`limit`, `offset`, ...) are a 400: a tile is never
paged or cut, it holds every matching feature (thinning below the full-detail zoom is
described in the TileJSON and reported per tile in `X-Shahr-Thinned`).

Tiles are cached in memory (LRU, bounded by bytes) keyed by collection, dataset version,
tile matrix set, z/x/y and the normalised query; the ETag is a hash of that key, so a new
version of the dataset changes it, and `If-None-Match` is answered without the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from api.deps import CollectionDep, PoolDep, single_params
from api.links import base_url, link
from api.problems import bad_request, not_found
from api.query import WEB_MERCATOR, compile_sql, parse_params, sa_table
from catalog.collections import Collection
from geo import overview
from geo import tiles as geotiles
from geo.sql import CRS84

router = APIRouter(tags=["OGC API Tiles"])

MVT = "application/vnd.mapbox-vector-tile"
OGC = "http://www.opengis.net/spec"
REL = "http://www.opengis.net/def/rel/ogc/1.0"
TILES_CONFORMANCE = [
    f"{OGC}/ogcapi-tiles-1/1.0/conf/core",
    f"{OGC}/ogcapi-tiles-1/1.0/conf/tileset",
    f"{OGC}/ogcapi-tiles-1/1.0/conf/tilesets-list",
    f"{OGC}/ogcapi-tiles-1/1.0/conf/geodata-tilesets",
    f"{OGC}/ogcapi-tiles-1/1.0/conf/mvt",
    f"{OGC}/tms/2.0/conf/tilematrixset",
    f"{OGC}/tms/2.0/conf/json-tilematrixset",
]
CACHE_BYTES = 256 * 2**20  # tile cache size per worker
ENTRY_OVERHEAD = 256  # bytes counted per cached tile besides its data (so 204s count too)
STATEMENTS = 1024  # compiled tile statements kept per worker
MAX_AGE = 300  # seconds a client or proxy may reuse a tile without revalidating
ETAG_SALT = "shahr-mvt-2"  # change when the tile SQL changes, so old ETags stop matching
# For the tile query only (the transaction's): a dense z14 tile sorts some 10 MB of feature
# rows for ST_AsMVT, which PostgreSQL's default 4 MB spills to disk on every request; and a
# parallel plan, which shortens one tile on an idle server, costs more than it saves when
# many tiles are asked at once (worker start-up, tuple queues): with it off, the server
# renders about a quarter more tiles a second under load (bench/bench_api.py).
TILE_SETTINGS = "SET LOCAL work_mem = '32MB'; SET LOCAL max_parallel_workers_per_gather = 0"
# Query parameters that filter or shape a tile exactly as on items.
TILE_PARAMS = {"bbox", "bbox-crs", "datetime", "filter", "filter-lang", "filter-crs",
               "properties", "near", "radius", "intersects"}
# Items parameters that make no sense for a tile (it is never paged, sorted or cut).
PAGING_PARAMS = {"limit", "offset", "after", "before", "sortby", "count", "nearest", "k",
                 "skipGeometry", "crs"}
FIELD_TYPES = {"string": "String", "integer": "Number", "number": "Number",
               "boolean": "Boolean", "date": "String", "datetime": "String"}
SCHEMA_TYPES = {"string": {"type": "string"}, "integer": {"type": "integer"},
                "number": {"type": "number"}, "boolean": {"type": "boolean"},
                "date": {"type": "string", "format": "date"},
                "datetime": {"type": "string", "format": "date-time"}}

TmsId = Annotated[str, Path(alias="tileMatrixSetId",
                            description="WebMercatorQuad or WorldCRS84Quad")]


async def _query_doc(
    filter_: Annotated[str | None, Query(alias="filter", description=(
        "CQL2 filter, as on items (e.g. landuse = 'residential')"))] = None,
    filter_lang: Annotated[str | None, Query(alias="filter-lang",
                                             description="cql2-text (default) or cql2-json")
                           ] = None,
    filter_crs: Annotated[str | None, Query(alias="filter-crs",
                                            description="CRS of geometries in the filter")
                          ] = None,
    datetime: Annotated[str | None, Query(description="Instant or interval, as on items")
                        ] = None,
    bbox: Annotated[str | None, Query(description="Also only features in this box")] = None,
    properties: Annotated[str | None, Query(description=(
        "Comma-separated properties to put in the tiles (default: all)"))] = None,
) -> None:
    """Documents the tile query parameters (they are read, with property equality filters,
    from the query string by `tile_params`)."""


# ---- cache ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RenderedTile:
    data: bytes
    features: int
    left_out: int  # features meeting the tile that are not in it (thinned or collapsed)
    as_points: int  # features that collapse in the MVT grid, written as a point
    simplified: bool
    merged: int = 0  # features drawn only as part of another's overview cell

    @property
    def thinned(self) -> str | None:
        if not (self.simplified or self.left_out or self.as_points or self.merged):
            return None
        out = (f"simplified={'yes' if self.simplified else 'no'}; left-out={self.left_out}; "
               f"as-points={self.as_points}")
        return f"{out}; merged={self.merged}" if self.merged else out


@dataclass(frozen=True)
class Statement:
    sql: str
    params: dict[str, Any]
    filtered: bool  # carries a user filter (so an evaluation error is the client's)
    simplified: bool  # below the full-detail zoom, for lines and polygons
    overview: bool = False  # read from the dense layer's overview tables


TileKey = tuple[str, int, str, int, int, int, str]


class TileCache:
    """LRU of rendered tiles bounded by bytes, plus compiled statements; one per app. A
    newer version of a dataset drops the tiles of older ones. Concurrent requests for the
    same missing tile wait for one rendering."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._tiles: OrderedDict[TileKey, RenderedTile] = OrderedDict()
        self._versions: dict[str, int] = {}
        self._pending: dict[TileKey, asyncio.Future[RenderedTile]] = {}
        self.statements: OrderedDict[tuple[Any, ...], Statement] = OrderedDict()

    def _see_version(self, slug: str, version_id: int) -> None:
        known = self._versions.get(slug)
        if known is None or version_id > known:
            self._versions[slug] = version_id
            if known is not None:
                for key in [k for k in self._tiles if k[0] == slug and k[1] != version_id]:
                    self.size -= _cost(self._tiles.pop(key))

    def get(self, key: TileKey) -> RenderedTile | None:
        self._see_version(key[0], key[1])
        found = self._tiles.get(key)
        if found is not None:
            self._tiles.move_to_end(key)
        return found

    def put(self, key: TileKey, tile: RenderedTile) -> None:
        self._see_version(key[0], key[1])
        if key[1] != self._versions[key[0]] or _cost(tile) > self.max_bytes // 4:
            return
        old = self._tiles.pop(key, None)
        if old is not None:
            self.size -= _cost(old)
        self._tiles[key] = tile
        self.size += _cost(tile)
        while self.size > self.max_bytes and self._tiles:
            _, dropped = self._tiles.popitem(last=False)
            self.size -= _cost(dropped)

    async def get_or_render(self, key: TileKey,
                            render: Callable[[], Awaitable[RenderedTile]]
                            ) -> tuple[RenderedTile, bool]:
        """(tile, whether it came from the cache)."""
        found = self.get(key)
        if found is not None:
            return found, True
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending), True
        future: asyncio.Future[RenderedTile] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            tile = await render()
        except Exception as exc:  # the waiters get the same answer (e.g. a 400 or 503)
            future.set_exception(exc)
            future.exception()  # retrieved: no warning when nobody waits
            raise
        except BaseException:  # cancelled: the waiters are cancelled too, none hangs
            future.cancel()
            raise
        else:
            future.set_result(tile)
            self.put(key, tile)
            return tile, False
        finally:
            self._pending.pop(key, None)


def _cost(tile: RenderedTile) -> int:
    return len(tile.data) + ENTRY_OVERHEAD


def tile_cache(request: Request) -> TileCache:
    cache: TileCache | None = getattr(request.app.state, "tile_cache", None)
    if cache is None:
        cache = request.app.state.tile_cache = TileCache()
    return cache


# ---- parameters -----------------------------------------------------------------------------

def _tms(tms_id: str) -> str:
    try:
        geotiles.tile_matrix_set(tms_id)
    except geotiles.UnknownTileMatrixSet as exc:
        raise not_found(str(exc)) from None
    return tms_id


def tile_params(request: Request, coll: Collection) -> dict[str, str]:
    """The query parameters that shape a tile, validated and sorted (the cache key uses
    their order); `f=mvt` and `lang` are accepted and ignored."""
    params = single_params(request)
    f = params.pop("f", None)
    if f not in (None, "mvt", "pbf"):
        raise bad_request(f"f: {f!r}; a tile is {MVT} (f=mvt)", parameter="f")
    params.pop("lang", None)
    paging = sorted(PAGING_PARAMS & set(params))
    if paging:
        raise bad_request(
            f"{', '.join(paging)}: not accepted for tiles; a tile is never paged, sorted or "
            "cut, it holds every feature that matches (see the TileJSON for thinning at low "
            "zooms)", parameter=paging[0])
    names = {c.name for c in coll.columns}
    unknown = sorted(k for k in params if k not in TILE_PARAMS and k not in names)
    if unknown:
        raise bad_request(
            f"unknown parameter(s) {', '.join(map(repr, unknown))}; accepted for tiles: "
            f"{', '.join(sorted(TILE_PARAMS))}, or a property name for equality: "
            f"{', '.join(sorted(names)) or 'none'}", parameter=unknown[0])
    return dict(sorted(params.items()))


def _statement(cache: TileCache, coll: Collection, params: dict[str, str],
               spec: geotiles.TileSpec) -> Statement:
    points = coll.geometry_type.lower().endswith("point")
    simplify = not spec.full_detail and not points
    # A dense layer's low zooms come from its overview (a filter needs the features
    # themselves, so a filtered tile does not).
    use_overview = (coll.overview_zoom is not None and spec.srid == 3857
                    and spec.z <= coll.overview_zoom and set(params) <= {"properties"})
    key = (coll.slug, coll.version_id, spec.srid, simplify, points, use_overview,
           urlencode(params))
    # (web_mercator is fixed per version, so version_id covers it)
    found = cache.statements.get(key)
    if found is not None:
        cache.statements.move_to_end(key)
        return found
    q = parse_params(coll, params, default_limit=1, max_limit=1)
    props = q.properties if q.properties is not None else [c.name for c in coll.columns]
    if use_overview:
        cells, big = overview.overview_tables("data", coll.table)
        sql, bound = compile_sql(geotiles.overview_tile_statement(
            sa_table(coll), cells, big, props, points=points))
        stmt = Statement(sql, bound, False, True, overview=True)
        cache.statements[key] = stmt
        return stmt
    projected = WEB_MERCATOR if coll.web_mercator and spec.srid == 3857 else None
    sql, bound = compile_sql(geotiles.tile_statement(
        sa_table(coll), props, q.where, srid=spec.srid, full_detail=not simplify,
        points=points, projected=projected))
    stmt = Statement(sql, bound, bool(q.where), simplify)
    cache.statements[key] = stmt
    while len(cache.statements) > STATEMENTS:
        cache.statements.popitem(last=False)
    return stmt


def _etag(key: TileKey) -> str:
    return '"' + hashlib.blake2b(f"{ETAG_SALT}|{key!r}".encode(), digest_size=16).hexdigest() \
        + '"'


def _not_modified(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def _query_suffix(params: dict[str, str]) -> str:
    return f"?{urlencode(params)}" if params else ""


# ---- tiles ----------------------------------------------------------------------------------

async def _render(pool: Any, stmt: Statement, spec: geotiles.TileSpec,
                  layer: str) -> RenderedTile:
    params = {**stmt.params, **spec.sql_params(), "tile_layer": layer}
    if stmt.overview:
        params.update(overview.cell_range(spec.bounds, spec.z))
    try:
        # (JIT, which costs more than it saves on a tile query, is off for the whole pool.)
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(TILE_SETTINGS)
            cur = await conn.execute(stmt.sql, params, binary=True)
            row = await cur.fetchone()
    except (psycopg.errors.DataError, psycopg.errors.InternalError_) as exc:
        if not stmt.filtered:
            raise
        # A filter that parsed but cannot be evaluated (e.g. an invalid polygon literal).
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise bad_request(f"filter: cannot be evaluated: {detail}", parameter="filter") from None
    assert row is not None
    data, features, left_out, as_points = row
    if stmt.overview:
        return RenderedTile(bytes(data) if features else b"", int(features), 0, 0, True,
                            merged=int(left_out))
    return RenderedTile(bytes(data) if features else b"", int(features), int(left_out),
                        int(as_points), stmt.simplified)


def _tile_headers(etag: str, cache: str | None = None,
                  tile: RenderedTile | None = None) -> dict[str, str]:
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={MAX_AGE}"}
    if cache is not None:
        headers["X-Shahr-Cache"] = cache
    if tile is not None:
        headers["X-Shahr-Features"] = str(tile.features)
        if tile.thinned:
            headers["X-Shahr-Thinned"] = tile.thinned
    return headers


@router.get(
    "/collections/{collection_id}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileCol}/{tileRow}",
    summary="A vector tile (MVT) of the collection, z/x/y, with the items' filters",
    response_class=Response, dependencies=[Depends(_query_doc)],
    responses={200: {"content": {MVT: {}}, "description": "The tile"},
               204: {"description": "No feature in this tile"},
               304: {"description": "Not modified (If-None-Match)"}},
)
async def get_tile(
    request: Request, pool: PoolDep, coll: CollectionDep, tms_id: TmsId,
    z: Annotated[str, Path(alias="tileMatrix", description="Zoom level (z), e.g. 14")],
    x: Annotated[int, Path(alias="tileCol", ge=0, description="Column (x), from the west")],
    y: Annotated[int, Path(alias="tileRow", ge=0, description="Row (y), from the north")],
) -> Response:
    _tms(tms_id)
    try:
        spec = geotiles.tile(tms_id, z, x, y)
    except geotiles.TileError as exc:
        raise bad_request(str(exc)) from None
    params = tile_params(request, coll)
    cache = tile_cache(request)
    stmt = _statement(cache, coll, params, spec)
    key: TileKey = (coll.slug, coll.version_id, tms_id, spec.z, spec.x, spec.y,
                    urlencode(params))
    etag = _etag(key)
    if _not_modified(request, etag):
        return Response(status_code=304, headers=_tile_headers(etag))
    if coll.feature_count == 0 or not spec.intersects(coll.extent):
        return Response(status_code=204, headers=_tile_headers(etag, "skip"))
    tile, hit = await cache.get_or_render(
        key, lambda: _render(pool, stmt, spec, coll.slug))
    headers = _tile_headers(etag, "hit" if hit else "miss", tile)
    if not tile.features:
        return Response(status_code=204, headers=headers)
    return Response(tile.data, media_type=MVT, headers=headers)


# ---- metadata -------------------------------------------------------------------------------

def _tms_summary(b: str, tms_id: str) -> dict[str, Any]:
    tms = geotiles.tile_matrix_set(tms_id)
    return {"id": tms_id, "title": tms.title, "uri": str(tms.uri),
            "crs": geotiles.crs_uri(tms_id),
            "links": [link(f"{b}/tileMatrixSets/{tms_id}", "self", "application/json",
                           f"The {tms_id} tile matrix set")]}


def _thinning(tms_id: str) -> dict[str, Any]:
    full = geotiles.full_detail_zoom(tms_id)
    return {
        "fullDetailFromZoom": full,
        "belowFullDetail": (
            f"below zoom {full}, geometries are simplified with a tolerance of one tile grid "
            f"cell (1/{geotiles.TILE_EXTENT} of the tile, the precision MVT keeps anyway) and "
            "features smaller than one grid cell in both directions are left out"),
        "fromFullDetail": (
            f"from zoom {full}, a tile holds every feature that intersects it; a feature "
            "that would collapse in the MVT grid (smaller than one grid cell, or a sliver) "
            "is written as a point, its point nearest the tile's centre, so that it is not "
            "lost"),
        "perTileHeader": ("X-Shahr-Thinned: simplified=yes|no; left-out=N; as-points=M "
                          "(absent when nothing is thinned); X-Shahr-Features: features in "
                          "the tile"),
        "limit": "none: tiles are never cut to a number of features",
    }


def _overview_thinning(tms_id: str, coll: Collection) -> dict[str, Any]:
    """How a dense layer's low zooms are drawn (geo/overview.py), added to `_thinning`."""
    thinning = _thinning(tms_id)
    top = coll.overview_zoom
    if top is None or tms_id != "WebMercatorQuad":
        return thinning
    return {**thinning,
            "fullDetailFromZoom": top + 1,
            "overviewToZoom": top,
            "overview": (
                f"this layer is dense ({coll.feature_count:,} features): up to zoom {top} "
                "(at least 13; higher while its typical feature is still smaller than a "
                "cell), features smaller than a cell (1/{overview.CELLS_PER_TILE} of a tile, four "
                "screen pixels) are merged per cell into one square (a point for point "
                "layers) carrying the attributes of the cell's largest feature and "
                f"`{overview.COUNT_PROPERTY}`, the number of features it stands for; larger "
                "features are drawn themselves, simplified. Tiles with a filter are drawn "
                f"from the features themselves. From zoom {top + 1}, every feature."),
            "perTileHeader": thinning["perTileHeader"] + "; merged=N: features drawn only "
                             "as part of another feature's cell"}


def _bounds(coll: Collection) -> list[float]:
    if any(v is None for v in coll.extent):
        return [-180.0, -85.0511, 180.0, 85.0511]
    return [round(float(v), 7) for v in coll.extent]


def _center(coll: Collection, tms_id: str) -> list[float]:
    w, s, e, n = _bounds(coll)
    cx, cy = (w + e) / 2, (s + n) / 2
    tms = geotiles.tile_matrix_set(tms_id)
    zoom = tms.minzoom
    for z in range(tms.minzoom, min(tms.maxzoom, 20) + 1):
        tb = tms.bounds(tms.tile(cx, max(min(cy, 85.0), -85.0), z))
        if tb.right - tb.left >= e - w and tb.top - tb.bottom >= n - s:
            zoom = z
        else:
            break
    return [round(cx, 7), round(cy, 7), zoom]


def _tileset(request: Request, coll: Collection, tms_id: str,
             params: dict[str, str]) -> dict[str, Any]:
    b = base_url(request)
    c = f"{b}/collections/{coll.slug}"
    q = _query_suffix(params)
    lo, hi = geotiles.zoom_range(tms_id)
    tms = geotiles.tile_matrix_set(tms_id)
    props = _properties(coll, params)
    w, s, e, n = _bounds(coll)
    return {
        "title": f"{coll.title} ({tms_id})",
        "description": coll.description,
        "dataType": "vector",
        "crs": geotiles.crs_uri(tms_id),
        "tileMatrixSetURI": str(tms.uri),
        "links": [
            link(f"{c}/tiles/{tms_id}{q}", "self", "application/json", "This tileset"),
            link(f"{b}/tileMatrixSets/{tms_id}", f"{REL}/tiling-scheme", "application/json",
                 f"The {tms_id} tile matrix set"),
            {**link(f"{c}/tiles/{tms_id}/{{tileMatrix}}/{{tileCol}}/{{tileRow}}{q}", "item",
                    MVT, "Tiles: z = tileMatrix, x = tileCol, y = tileRow"),
             "templated": True},
            link(f"{c}/tiles/{tms_id}/tilejson.json{q}", "describedby", "application/json",
                 "TileJSON 3.0.0"),
            link(c, f"{REL}/geodata", "application/json", coll.title),
        ],
        "layers": [{
            "id": coll.slug, "title": coll.title, "dataType": "vector",
            "geometryDimension": _dimension(coll), "featureType": coll.slug,
            "minTileMatrix": str(lo), "maxTileMatrix": str(hi),
            "propertiesSchema": {
                "type": "object",
                "properties": {p.name: {**SCHEMA_TYPES.get(p.type, {"type": "string"}),
                                        "title": p.title} for p in props}},
        }],
        "boundingBox": {"lowerLeft": [w, s], "upperRight": [e, n], "crs": CRS84},
        "centerPoint": {"coordinates": _center(coll, tms_id)[:2], "crs": CRS84},
        "x-shahr-thinning": _overview_thinning(tms_id, coll),
    }


def _dimension(coll: Collection) -> int:
    kind = coll.geometry_type.lower()
    return 0 if kind.endswith("point") else 1 if "line" in kind else 2


def _properties(coll: Collection, params: dict[str, str]) -> list[Any]:
    if "properties" not in params:
        return list(coll.columns)
    wanted = [p.strip() for p in params["properties"].split(",") if p.strip()]
    return [c for c in coll.columns if c.name in wanted]


def _validated(request: Request, coll: Collection) -> dict[str, str]:
    """The tile parameters, checked as a tile request would check them."""
    params = tile_params(request, coll)
    parse_params(coll, params, default_limit=1, max_limit=1)
    return params


def _json(body: Any, media: str = "application/json") -> Response:
    return Response(json.dumps(body, ensure_ascii=False), media_type=media)


@router.get("/collections/{collection_id}/tiles",
            summary="The vector tilesets of a collection (one per tile matrix set)",
            response_model=None)
async def tilesets(request: Request, coll: CollectionDep) -> Response:
    params = _validated(request, coll)
    b = base_url(request)
    c = f"{b}/collections/{coll.slug}"
    q = _query_suffix(params)
    sets = []
    for tms_id in geotiles.SUPPORTED:
        tms = geotiles.tile_matrix_set(tms_id)
        sets.append({
            "title": f"{coll.title} ({tms_id})", "dataType": "vector",
            "crs": geotiles.crs_uri(tms_id), "tileMatrixSetURI": str(tms.uri),
            "links": [
                link(f"{c}/tiles/{tms_id}{q}", "self", "application/json",
                     f"Tileset in {tms_id}"),
                link(f"{b}/tileMatrixSets/{tms_id}", f"{REL}/tiling-scheme",
                     "application/json", f"The {tms_id} tile matrix set"),
            ]})
    return _json({"links": [link(f"{c}/tiles{q}", "self", "application/json", "Tilesets"),
                            link(c, "collection", "application/json", coll.title)],
                  "tilesets": sets})


@router.get("/collections/{collection_id}/tiles/{tileMatrixSetId}",
            summary="Tileset metadata: layers, bounds, the tile URL template",
            response_model=None, dependencies=[Depends(_query_doc)])
async def tileset(request: Request, coll: CollectionDep, tms_id: TmsId) -> Response:
    _tms(tms_id)
    return _json(_tileset(request, coll, tms_id, _validated(request, coll)))


@router.get("/collections/{collection_id}/tiles/{tileMatrixSetId}/tilejson.json",
            summary="TileJSON 3.0.0 of the tileset (for MapLibre, Leaflet, QGIS)",
            response_model=None, dependencies=[Depends(_query_doc)])
async def tilejson(request: Request, coll: CollectionDep, tms_id: TmsId) -> Response:
    _tms(tms_id)
    params = _validated(request, coll)
    b = base_url(request)
    lo, hi = geotiles.zoom_range(tms_id)
    thinning = _overview_thinning(tms_id, coll)
    fields = {c.name: FIELD_TYPES.get(c.type, "String") for c in _properties(coll, params)}
    if "overview" in thinning and not (set(params) - {"properties"}):
        fields[overview.COUNT_PROPERTY] = "Number"
    description = " ".join(x for x in (
        coll.description,
        f"Thinning: {thinning['belowFullDetail']}; {thinning['fromFullDetail']}. "
        + (f"{thinning['overview']} " if "overview" in thinning else "")
        + "No tile is cut to a number of features.") if x)
    body = {
        "tilejson": "3.0.0",
        "name": coll.title,
        "description": description,
        "version": f"{coll.version}.0.0",
        "attribution": f"{coll.organisation_name or coll.organisation}, {coll.licence}",
        "scheme": "xyz",
        "tiles": [f"{b}/collections/{coll.slug}/tiles/{tms_id}/{{z}}/{{x}}/{{y}}"
                  f"{_query_suffix(params)}"],
        "minzoom": lo,
        "maxzoom": hi,
        "bounds": _bounds(coll),
        "center": _center(coll, tms_id),
        "vector_layers": [{"id": coll.slug, "description": coll.title, "minzoom": lo,
                           "maxzoom": hi, "fields": fields}],
        "crs": geotiles.crs_uri(tms_id),
        "x-shahr-thinning": thinning,
    }
    return _json(body)


@router.get("/tileMatrixSets", summary="The tile matrix sets tiles are offered in",
            response_model=None)
async def tile_matrix_sets(request: Request) -> Response:
    b = base_url(request)
    return _json({"links": [link(f"{b}/tileMatrixSets", "self", "application/json")],
                  "tileMatrixSets": [_tms_summary(b, t) for t in geotiles.SUPPORTED]})


@router.get("/tileMatrixSets/{tileMatrixSetId}",
            summary="A tile matrix set (OGC 2D Tile Matrix Set 2.0 JSON)", response_model=None)
async def tile_matrix_set(tms_id: TmsId) -> Response:
    return _json(geotiles.tms_document(_tms(tms_id)))
