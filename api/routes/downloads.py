"""`GET /datasets/{slug}/download?format=...`: a dataset version, whole or filtered with the
items parameters, as CSV, GeoJSON, GeoJSON-seq (streamed from PostgreSQL) or GeoPackage,
zipped Shapefile, KML, FlatGeobuf, GeoParquet, XLSX (built once per version and query, then
served from the cache with Content-Length, ETag, Last-Modified and Range).

Paging and ordering parameters (`limit`, `offset`, `after`, `before`, `sortby`, `count`,
`nearest`, `k`, `f`) are refused with a 400: a download always holds every matching feature,
in feature id order, so it can be obtained again exactly (`version=N`)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC
from email.utils import format_datetime, parsedate_to_datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import anyio
import anyio.to_process
import psycopg
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from api import downloads as dl
from api.deps import single_params
from api.pool import public_dsn
from api.problems import Problem, bad_request, not_found
from api.query import compile_sql, count_statement, parse_params
from api.routes.features import ITEM_PARAMETERS
from catalog.collections import Collection
from catalog.database import libpq_dsn
from catalog.search import similar_slugs
from catalog.versions import (
    VersionDropped,
    collection_at_version_async,
    describe_versions,
    list_versions_async,
)
from geo.sql import CRS84

router = APIRouter(tags=["downloads"])
log = logging.getLogger("shahr.api")

REFUSED = {"limit", "offset", "after", "before", "sortby", "count", "nearest", "k", "f"}
MAX_EXPORTS = 8  # exports running at once per worker (each holds a database connection)
# A numbered version never changes: cache it for good. The current one changes with the next
# load: caches must revalidate (cheap: the ETag is known without touching the data).
CACHE_FIXED = "public, max-age=31536000, immutable"
CACHE_CURRENT = "public, no-cache"
NOTES = {
    "crs": "CRS of the file (see the collection's crs list); default CRS84. Coordinates are "
           "always x/y (longitude, latitude), as every one of these formats expects; KML is "
           "WGS 84 only.",
    "skipGeometry": "true: leave geometries out (csv, geojson, geojsonseq and xlsx only).",
    "near": "lon,lat: features within radius metres (true distance).",
}
# The items parameters a download takes (the filters and the shape), in the OpenAPI document.
PARAMETERS = [{**p, "description": NOTES.get(p["name"], p["description"])}
              for p in ITEM_PARAMETERS if p["name"] not in REFUSED]



def _format(value: str | None) -> dl.Format:
    accepted = ", ".join(dl.FORMATS)
    if not value:
        raise bad_request(f"format: say which format to download; accepted: {accepted}",
                          parameter="format")
    fmt = dl.FORMATS.get(value.lower())
    if fmt is None:
        raise bad_request(f"format: {value!r} is not offered; accepted: {accepted}",
                          parameter="format")
    return fmt


def _version(value: str | None, slug: str) -> int | None:
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise bad_request(f"version: {value!r} is not a version number (1, 2, ...); the "
                          f"dataset's versions are listed at /datasets/{slug}",
                          parameter="version")
    return n


async def _collection(request: Request, slug: str, number: int | None) -> Collection:
    async with request.app.state.pool.connection() as conn:
        try:
            coll = await collection_at_version_async(conn, slug, number)
        except VersionDropped as exc:
            raise Problem(410, "Gone", str(exc), kept_versions=exc.kept) from None
        if coll is not None:
            return coll
        versions = await list_versions_async(conn, slug)
        near = [] if versions else await similar_slugs(conn, slug)
    if not versions:
        hint = f"did you mean {', '.join(map(repr, near))}? " if near else ""
        raise not_found(f"no published dataset {slug!r}; {hint}GET /datasets lists them")
    raise not_found(f"dataset {slug!r} has no version {number}; versions: "
                    f"{describe_versions(versions)}")


def _slots(request: Request) -> asyncio.Semaphore:
    state = request.app.state
    if getattr(state, "download_slots", None) is None:
        state.download_slots = asyncio.Semaphore(MAX_EXPORTS)
    return state.download_slots  # type: ignore[no-any-return]


def _database_error(exc: psycopg.Error, e: dl.Export | None = None) -> Problem:
    """Values PostgreSQL/PostGIS cannot compute with (as on items): the request's fault. A
    table gone meanwhile: the version was dropped by a newer load while we started."""
    if isinstance(exc, psycopg.errors.UndefinedTable) and e is not None:
        return Problem(410, "Gone", f"version {e.coll.version} of {e.coll.slug!r} was dropped "
                       "just now by a newer load; ask again for the current version")
    message = exc.diag.message_primary or str(exc).splitlines()[0]
    log.info("download refused by the database: %s", message)
    return bad_request(f"the database could not evaluate this request: {message}; check "
                       "the numbers, coordinates and CRS given")


def _about(request: Request, e: dl.Export, params: dict[str, str]) -> list[tuple[str, str]]:
    c = e.coll
    base = (request.app.state.settings.base_url or str(request.base_url)).rstrip("/")
    query = urlencode({"format": e.fmt.name, "version": str(c.version), **params})
    return [("dataset", c.slug), ("title (fa)", c.title_fa or ""),
            ("title (en)", c.title_en or ""), ("version", str(c.version)),
            ("published", c.modified.isoformat()), ("licence", c.licence),
            ("publisher", c.organisation_name or c.organisation),
            ("crs", f"EPSG:{e.srid}"), ("filter", urlencode(params) or "none (whole dataset)"),
            ("source", f"{base}/datasets/{c.slug}/download?{query}")]


def _not_modified(request: Request, etag: str, e: dl.Export) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        return etag in [t.strip().removeprefix("W/") for t in inm.split(",")] or inm == "*"
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            return e.coll.modified.replace(microsecond=0) <= parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
    return False


@router.head("/datasets/{slug}/download", include_in_schema=False, response_model=None)
@router.get("/datasets/{slug}/download", summary="Download a dataset version, whole or "
            "filtered (csv geojson geojsonseq gpkg shp kml fgb parquet xlsx)",
            response_model=None, openapi_extra={"parameters": PARAMETERS})
async def download(
    request: Request,
    slug: Annotated[str, Path(description="The dataset's slug")],
    format: Annotated[str | None, Query(description=", ".join(dl.FORMATS))] = None,
    version: Annotated[str | None, Query(
        description="A kept version's number (default: the current one)")] = None,
) -> Response:
    params = single_params(request)
    fmt = _format(params.pop("format", None))
    number = _version(params.pop("version", None), slug)
    refused = sorted(REFUSED & set(params))
    if refused:
        raise bad_request(
            f"{', '.join(refused)}: not offered for downloads (a download holds every "
            "matching feature in feature id order; narrow it with bbox, datetime, filter, "
            "property=value, near/radius or intersects, and choose columns with "
            "properties)", parameter=refused[0])
    coll = await _collection(request, slug, number)
    settings = request.app.state.settings
    q = parse_params(coll, params, default_limit=1, max_limit=1)
    if q.skip_geometry and not fmt.tabular:
        raise bad_request(f"skipGeometry: {fmt.name} always holds the geometry; "
                          "skipGeometry=true is offered for csv, geojson, geojsonseq and xlsx",
                          parameter="skipGeometry")
    e = dl.Export.make(coll, q, fmt)
    if fmt.wgs84_only and e.srid != 4326:
        raise bad_request(f"crs: {fmt.name} is always WGS 84 longitude/latitude; leave crs "
                          "out", parameter="crs")
    if fmt.name == "csv":
        stmt = dl.csv_select(e)
    elif fmt.streamed:
        stmt = dl.feature_select(e, seq=fmt.name == "geojsonseq")
    else:
        stmt = dl.rows_select(e)
    key = dl.cache_key(e, stmt)
    etag = f'"{key}"'
    headers = {
        "ETag": etag,
        "Last-Modified": format_datetime(coll.modified.astimezone(UTC), usegmt=True),
        "Cache-Control": CACHE_FIXED if number is not None else CACHE_CURRENT,
        "Content-Disposition": f'attachment; filename="{e.filename()}"',
        "Content-Crs": f"<{CRS84 if e.srid == 4326 else q.crs.uri}>",  # always x/y order
        "X-Shahr-Version": str(coll.version),
    }
    if _not_modified(request, etag, e):
        return Response(status_code=304, headers={k: v for k, v in headers.items()
                                                  if k != "Content-Disposition"})
    dsn = public_dsn(request.app.state.pool, libpq_dsn(request.app.state.database_url))
    if fmt.streamed:
        if request.method == "HEAD":  # the length is known only by making it
            head = Response(headers={**headers, "Accept-Ranges": "none"},
                            media_type=fmt.media_type)
            del head.headers["content-length"]
            return head
        return await _stream(request, dsn, e, headers)
    root = settings.cache_dir / "downloads"
    path = dl.cache_path(root, e, key)
    if not path.exists():
        if fmt.name == "xlsx":
            await _check_rows(request, e)
        async with _slots(request):
            try:
                _same_path, built = await anyio.to_process.run_sync(
                    dl.build_in_process, dsn, str(root), slug, coll.version, params, fmt.name,
                    key, _about(request, e, params))
            except (psycopg.errors.DataError, psycopg.errors.InternalError_,
                    psycopg.errors.UndefinedTable) as exc:
                raise _database_error(exc, e) from None
            except VersionDropped as exc:
                raise Problem(410, "Gone", str(exc), kept_versions=exc.kept) from None
        if built:
            dl.BUILDS[path.name] += 1
    return FileResponse(path, media_type=fmt.media_type, headers=headers)


async def _check_rows(request: Request, e: dl.Export) -> None:
    """An Excel sheet holds 1,048,576 rows: refuse more, before building anything."""
    n = e.coll.feature_count
    if e.q.filtered:
        sql, params = compile_sql(count_statement(e.q))
        try:
            async with request.app.state.pool.connection() as conn:
                cur = await conn.execute(sql, params)
                row = await cur.fetchone()
        except (psycopg.errors.DataError, psycopg.errors.InternalError_) as exc:
            raise _database_error(exc) from None
        n = int(row[0]) if row else 0
    if n > dl.XLSX_MAX_ROWS:
        raise bad_request(f"format: xlsx holds at most {dl.XLSX_MAX_ROWS:,} rows and this "
                          f"download has {n:,}; narrow it with a filter or use csv",
                          parameter="format")


async def _stream(request: Request, dsn: str, e: dl.Export,
                  headers: dict[str, str]) -> Response:
    """Start the COPY and wait for its first chunk (so a query error is still a problem
    response), then stream the rest; the connection closes when the body ends or the
    client goes away. The first row must come within the statement timeout of the other
    public queries (the export's own timeout is long: a slow client is no fault), else the
    query is cancelled and the answer is a 503."""
    slots = _slots(request)
    await slots.acquire()
    chunks = dl.copy_stream(dsn, e)
    wait_s = request.app.state.settings.statement_timeout_ms / 1000
    try:
        try:
            first = await asyncio.wait_for(anext(chunks), wait_s)
        except TimeoutError:
            raise psycopg.errors.QueryCanceled(
                f"no first row within {wait_s:g} s (SHAHR_STATEMENT_TIMEOUT_MS)") from None
    except (psycopg.errors.DataError, psycopg.errors.InternalError_,
            psycopg.errors.UndefinedTable) as exc:
        slots.release()
        await chunks.aclose()
        raise _database_error(exc, e) from None
    except BaseException:
        slots.release()
        await chunks.aclose()
        raise

    async def body() -> Any:
        try:
            yield first
            async for chunk in chunks:
                yield chunk
        finally:
            slots.release()
            await chunks.aclose()

    return StreamingResponse(body(), media_type=e.fmt.media_type,
                             headers={**headers, "Accept-Ranges": "none"})
