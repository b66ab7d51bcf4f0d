"""A dataset's versions and what changed between them, and its data dictionary as a
Frictionless Data Package:

- ``GET /datasets/{slug}/versions``: every version (the newest SHAHR_KEEP_VERSIONS keep
  their data), with feature counts, source checksums and the ETL run that made each;
- ``GET /datasets/{slug}/changes?from=N&to=M``: features added, removed and changed
  (matched by the key field), counted in full and listed by page;
- ``GET /datasets/{slug}/datapackage.json``: the Table Schema of the published fields.
"""

from __future__ import annotations

import posixpath
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.problems import Problem, bad_request, not_found
from api.routes.features import base_url, link
from catalog import changes as ch
from catalog import metadata as md
from catalog import search as cat

router = APIRouter(tags=["versions"])
MAX_CHANGES_LIMIT = 1000
DEFAULT_CHANGES_LIMIT = 100


def _iso(v: date | datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


async def _missing(conn: Any, slug: str) -> Problem:
    near = await cat.similar_slugs(conn, slug)
    hint = f"did you mean {', '.join(map(repr, near))}? " if near else ""
    return not_found(f"no published dataset {slug!r}; {hint}GET /datasets lists them")


def _public_source(label: str | None) -> str | None:
    """A run's source without the server's folders (URLs are shown whole)."""
    if not label or "://" in label:
        return label
    path, _, member = label.partition("!")
    return posixpath.basename(path) + (f"!{member}" if member else "")


def _version_json(request: Request, slug: str, v: ch.VersionInfo,
                  older: ch.VersionInfo | None) -> dict[str, Any]:
    run = None
    if v.run:
        run = {**v.run, "source": _public_source(v.run["source"]),
               "started": _iso(v.run["started"]), "finished": _iso(v.run["finished"])}
    links = []
    if v.kept and older is not None:
        links.append(link(_href(request, f"/datasets/{slug}/changes",
                                [("from", str(older.number)), ("to", str(v.number))]),
                          "changes", "application/json",
                          f"What changed from version {older.number}"))
    return {
        "number": v.number, "status": v.status, "kept": v.kept,
        "feature_count": v.feature_count, "geometry_type": v.geometry_type,
        "checksum": v.checksum, "checksum_algorithm": "sha256" if v.checksum else None,
        "created": _iso(v.created), "published": _iso(v.published),
        "extent": {"bbox": list(v.extent), "crs": md.CRS84} if v.extent else None,
        "fields": [{"name": c["name"], "type": c["type"]} for c in v.columns],
        "run": run, "links": links,
    }


def _href(request: Request, path: str, params: list[tuple[str, str]] | None = None) -> str:
    query = urlencode(params or [])
    return f"{base_url(request)}{path}" + (f"?{query}" if query else "")


@router.get("/datasets/{slug}/versions",
            summary="A dataset's versions: counts, checksums and the runs that made them")
async def versions(request: Request, slug: str) -> JSONResponse:
    async with request.app.state.pool.connection() as conn:
        info = await ch.dataset_versions(conn, slug)
        if info is None:
            raise await _missing(conn, slug)
    kept = info.kept
    body = {
        "dataset": info.slug, "key_field": info.key_field, "current": info.current,
        "keep_versions": request.app.state.settings.keep_versions,
        "versions": [
            _version_json(request, slug, v,
                          next((o for o in kept if o.number < v.number), None))
            for v in info.versions],
        "links": [
            link(_href(request, f"/datasets/{slug}/versions"), "self", "application/json"),
            link(_href(request, f"/datasets/{slug}"), "describes", "application/json",
                 "The dataset"),
        ],
    }
    return JSONResponse(body)


def _kinds(kind: str | None) -> tuple[str, ...]:
    if kind is None or not kind.strip():
        return ch.KINDS
    out = tuple(k.strip().lower() for k in kind.split(",") if k.strip())
    bad = [k for k in out if k not in ch.KINDS]
    if bad:
        raise bad_request(f"kind: unknown value {bad[0]!r}; accepted: {', '.join(ch.KINDS)} "
                          "(comma-separated)", parameter="kind")
    return out


def _brief(v: ch.VersionInfo) -> dict[str, Any]:
    return {"number": v.number, "status": v.status, "feature_count": v.feature_count,
            "published": _iso(v.published), "checksum": v.checksum}


@router.get("/datasets/{slug}/changes",
            summary="Features added, removed and changed between two kept versions")
async def changes(
    request: Request,
    slug: str,
    from_: Annotated[int | None, Query(alias="from", ge=1, description=(
        "The older version (default: the kept version before `to`)"))] = None,
    to: Annotated[int | None, Query(ge=1, description=(
        "The newer version (default: the current one)"))] = None,
    kind: Annotated[str | None, Query(description=(
        "Which lists to page: added, removed, changed (comma-separated; default all). "
        "Counts are always complete."))] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_CHANGES_LIMIT, description=(
        "Keys per list and page"))] = DEFAULT_CHANGES_LIMIT,
    offset: Annotated[int, Query(ge=0, description="Keys to skip in each list")] = 0,
) -> JSONResponse:
    kinds = _kinds(kind)
    async with request.app.state.pool.connection() as conn:
        try:
            report = await ch.compare(conn, slug=slug, from_=from_, to=to, limit=limit,
                                      offset=offset, kinds=kinds)
        except ch.ChangeError as exc:
            if exc.status == 404 and exc.parameter is None:
                raise await _missing(conn, slug) from None
            extra = {"parameter": exc.parameter} if exc.parameter else {}
            title = "Not found" if exc.status == 404 else "Bad request"
            raise Problem(exc.status, title, str(exc), **extra) from None
    a, b = report.from_version, report.to_version
    keep = [(k, v) for k, v in request.query_params.multi_items()
            if k not in ("from", "to", "offset")]
    pinned = [("from", str(a.number)), ("to", str(b.number)), *keep]
    links = [link(_href(request, f"/datasets/{slug}/changes",
                        pinned + ([("offset", str(offset))] if offset else [])),
                  "self", "application/json")]
    if report.has_more():
        links.append(link(_href(request, f"/datasets/{slug}/changes",
                                [*pinned, ("offset", str(offset + limit))]),
                          "next", "application/json"))
    if offset:
        links.append(link(_href(request, f"/datasets/{slug}/changes",
                                [*pinned, ("offset", str(max(0, offset - limit)))]),
                          "prev", "application/json"))
    links.append(link(_href(request, f"/datasets/{slug}/versions"), "version-history",
                      "application/json"))
    body = {
        "dataset": slug, "key": report.key, "from": _brief(a), "to": _brief(b),
        "columns": {"compared": report.compared_columns, "added": report.added_columns,
                    "removed": report.removed_columns, "retyped": report.retyped_columns},
        "counts": report.counts,
        "limit": limit, "offset": offset,
        "added": report.added if "added" in kinds else None,
        "removed": report.removed if "removed" in kinds else None,
        "changed": report.changed if "changed" in kinds else None,
        "links": links,
    }
    return JSONResponse({k: v for k, v in body.items() if v is not None})


@router.get("/datasets/{slug}/datapackage.json",
            summary="The data dictionary as a Frictionless Data Package (Table Schema)")
async def datapackage(request: Request, slug: str) -> JSONResponse:
    async with request.app.state.pool.connection() as conn:
        records = await md.load_records(conn, [slug])
        if not records:
            raise await _missing(conn, slug)
    return JSONResponse(md.datapackage(records[0], base_url(request)))
