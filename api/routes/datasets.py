"""The catalogue: ``GET /datasets`` (search, filters, facets, bbox, sort, paging) and
``GET /datasets/{slug}`` (metadata, data dictionary, versions, ETL runs, links). JSON for
programs, HTML for people: ``f=json|html`` decides, else the Accept header (a browser asks
for text/html; API clients, ``*/*`` and no header get JSON)."""

from __future__ import annotations

import contextlib
import posixpath
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from api import downloads as dl
from api import i18n
from api.html import choose_lang, page_lang, render, url, wants_html, with_params
from api.links import base_url, link
from api.problems import bad_request, not_found
from api.query import parse_params
from catalog import search as cat
from catalog.collections import Collection
from catalog.participation import open_report_counts
from catalog.versions import collection_at_version_async

router = APIRouter(tags=["catalogue"])
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
VARY = {"Vary": "Accept, Accept-Language"}
MEDIA_TYPES = {
    "csv": "text/csv", "geojson": "application/geo+json", "geojsonseq": "application/geo+json-seq",
    "gpkg": "application/geopackage+sqlite3", "shp": "application/zip",
    "kml": "application/vnd.google-earth.kml+xml", "fgb": "application/flatgeobuf",
    "parquet": "application/vnd.apache.parquet",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
Values = Annotated[list[str] | None, Query()]


# --- request helpers -----------------------------------------------------------------------


def _problem(exc: cat.SearchError) -> Exception:
    return bad_request(str(exc), parameter=exc.parameter)


def _wants_html(request: Request, f: str | None) -> bool:
    """api.html's negotiation, but an `f` we cannot answer in is a 400, not a guess."""
    if f is not None and f not in ("json", "html"):
        raise bad_request(f"f: unknown format {f!r}; accepted: json, html", parameter="f")
    return wants_html(request)


def _href(request: Request, path: str, params: list[tuple[str, str]] | None = None) -> str:
    query = urlencode(params or [])
    return f"{base_url(request)}{path}" + (f"?{query}" if query else "")


def _params(request: Request, *, drop: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.query_params.multi_items() if k not in drop]


async def _fa_collation(request: Request, conn: Any) -> str | None:
    """ICU's Persian collation when the server has it (so پ چ ژ گ sort among the letters,
    not after them); looked up once per app."""
    state = request.app.state
    if not hasattr(state, "fa_collation"):
        cur = await conn.execute(
            "SELECT collname FROM pg_collation WHERE collname IN ('fa-x-icu', 'und-x-icu') "
            "ORDER BY collname LIMIT 1")
        row = await cur.fetchone()
        state.fa_collation = row[0] if row else None
    return state.fa_collation  # type: ignore[no-any-return]


# --- JSON shapes ---------------------------------------------------------------------------


def _iso(v: date | datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def _pair(row: dict[str, Any], prefix: str) -> dict[str, str | None]:
    return {"fa": row[f"{prefix}_fa"], "en": row[f"{prefix}_en"]}


def _extent(row: dict[str, Any]) -> dict[str, Any] | None:
    if row["x0"] is None:
        return None
    return {"bbox": [row["x0"], row["y0"], row["x1"], row["y1"]], "crs": CRS84}


def _dataset_links(request: Request, slug: str) -> list[dict[str, str]]:
    return [
        link(_href(request, f"/datasets/{slug}"), "self", "application/json"),
        link(_href(request, f"/datasets/{slug}", [("f", "html")]), "alternate", "text/html"),
        link(_href(request, f"/collections/{slug}"), "collection", "application/json",
              "OGC API Features collection"),
        link(_href(request, f"/collections/{slug}/items"), "items", "application/geo+json"),
        link(_href(request, f"/collections/{slug}/tiles"),
              "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector", "application/json"),
        link(_href(request, f"/maps/{slug}"), "map", "text/html"),
    ]


def _summary(request: Request, r: dict[str, Any]) -> dict[str, Any]:
    return {
        "slug": r["slug"], "title": _pair(r, "title"), "description": _pair(r, "description"),
        "theme": r["theme"],
        "organisation": {"slug": r["org_slug"], "name": _pair(r, "org_name")},
        "keywords": r["keywords"], "licence": r["licence"],
        "geometry_type": r["geometry_type"], "feature_count": r["feature_count"],
        "extent": _extent(r), "modified": _iso(r["modified"]),
        "links": _dataset_links(request, r["slug"]),
    }


def _facet_json(request: Request, name: str, item: cat.Facet) -> dict[str, Any]:
    keep = [(k, v) for k, v in _params(request, drop=("offset",))
            if not (k == name and cat.facet_value(name, v) == item.value)]
    out: dict[str, Any] = {"value": item.value, "count": item.count, "selected": item.selected,
                           "href": _href(request, "/datasets",
                                         keep if item.selected else [*keep, (name, item.value)])}
    if item.label_fa or item.label_en:
        out["label"] = {"fa": item.label_fa, "en": item.label_en}
    return out


def _list_json(request: Request, res: cat.SearchResult) -> dict[str, Any]:
    rest = _params(request, drop=("offset",))

    def at(offset: int) -> str:
        return _href(request, "/datasets", rest + ([("offset", str(offset))] if offset else []))

    params = _params(request, drop=("f",))
    links = [link(_href(request, "/datasets", _params(request)), "self", "application/json"),
             link(_href(request, "/datasets", [*params, ("f", "html")]), "alternate",
                   "text/html")]
    if res.offset + res.limit < res.number_matched:
        links.append(link(at(res.offset + res.limit), "next", "application/json"))
    if res.offset > 0:
        links.append(link(at(max(0, min(res.offset, res.number_matched) - res.limit)), "prev",
                           "application/json"))
    return {
        "datasets": [_summary(request, r) for r in res.datasets],
        "numberMatched": res.number_matched, "numberReturned": len(res.datasets),
        "offset": res.offset, "limit": res.limit, "sort": res.sort,
        "facets": {name: [_facet_json(request, name, f) for f in items]
                   for name, items in res.facets.items()},
        "links": links,
    }


def _public_source(label: str) -> str:
    """A run's source without the server's folders (URLs are shown whole)."""
    if "://" in label:
        return label
    return posixpath.basename(label.split("!")[0]) + ("!" + label.split("!", 1)[1]
                                                      if "!" in label else "")


def _detail_json(request: Request, ds: dict[str, Any]) -> dict[str, Any]:
    slug = ds["slug"]
    downloads = [{"format": f, "mediaType": MEDIA_TYPES[f],
                  "href": _href(request, f"/datasets/{slug}/download", [("format", f)])}
                 for f in cat.FORMATS]
    runs = []
    for r in ds["runs"]:
        folder = posixpath.dirname(r["source"].split("!")[0]) + "/"
        error = r["error"].replace(folder, "") if r["error"] and folder != "/" else r["error"]
        runs.append({"id": r["id"], "status": r["status"], "source": _public_source(r["source"]),
                     "started": _iso(r["started_at"]), "finished": _iso(r["finished_at"]),
                     "duration_s": r["duration_s"], "rows_read": r["rows_read"],
                     "rows_loaded": r["rows_loaded"], "rows_rejected": r["rows_rejected"],
                     "rows_repaired": r["rows_repaired"], "version": r["version"],
                     "warnings": r["warnings"], "error": error})
    temporal = None
    if ds["temporal_start"] or ds["temporal_end"]:
        temporal = {"start": _iso(ds["temporal_start"]), "end": _iso(ds["temporal_end"])}
    return {
        "slug": slug, "title": _pair(ds, "title"), "description": _pair(ds, "description"),
        "theme": ds["theme"], "keywords": ds["keywords"], "licence": ds["licence"],
        "organisation": {"slug": ds["org_slug"], "name": _pair(ds, "org_name"),
                         "url": ds["org_url"], "email": ds["org_email"]},
        "publisher": ds["publisher"],
        "contact": {"name": ds["contact_name"], "email": ds["contact_email"]},
        "update_frequency": ds["update_frequency"], "temporal": temporal,
        "synthetic": ds["synthetic"], "geometry_type": ds["geometry_type"],
        "feature_count": ds["feature_count"], "extent": _extent(ds),
        "source_crs": ds["source_crs"], "source_encoding": ds["source_encoding"],
        "metric_crs": ds["metric_crs"], "key_field": ds["key_field"],
        "version": ds["version"], "created": _iso(ds["created"]),
        "modified": _iso(ds["modified"]),
        "fields": [{"name": f["name"], "type": f["type"], "unit": f["unit"],
                    "label": _pair(f, "label"), "description": _pair(f, "description"),
                    "is_key": f["is_key"], "calendar": f["calendar"]} for f in ds["fields"]],
        "versions": [{**{k: v[k] for k in ("number", "status", "feature_count",
                                             "geometry_type", "checksum", "run_id")},
                      "created": _iso(v["created"]), "published": _iso(v["published"])}
                     for v in ds["versions"]],
        "runs": runs,
        "distributions": downloads,
        "links": [*_dataset_links(request, slug),
                  *(link(d["href"], "enclosure", d["mediaType"], d["format"])
                    for d in downloads)],
    }


# --- HTML ----------------------------------------------------------------------------------

# Every dataset offers every download format, so that facet tells a person nothing here.
FACET_ORDER = ("theme", "organisation", "geometry_type", "keyword", "licence")
FACET_SHOWN = 8  # values listed per facet before "n more"
PREVIEW_ROWS = 10
FORM_KEEPS = ("theme", "organisation", "keyword", "licence", "geometry_type", "format", "bbox",
              "limit", "f")


def _search_page(request: Request, body: dict[str, Any], criteria: cat.Criteria,
                 order: str, lang: str) -> Response:
    """The search results page: results, facets as filters, active filters to remove, sort,
    pages and the extents of the results for a small map."""
    active = [{"facet": name, "text": _facet_text(name, item, lang), "href": item["href"]}
              for name in FACET_ORDER for item in body["facets"].get(name, [])
              if item["selected"]]
    for name in ("q", "bbox"):
        value = request.query_params.get(name, "").strip()
        if value:
            active.insert(0, {"facet": name, "text": value,
                              "href": with_params(request, drop=(name, "offset"))})
    links = {link["rel"]: link["href"] for link in body["links"]}
    extents = [{"slug": d["slug"], "title": _pick(d["title"], lang), "bbox": d["extent"]["bbox"],
                "href": url(request, f"/datasets/{d['slug']}")}
               for d in body["datasets"] if d["extent"]]
    return render(request, "datasets.html", dict(
        page=body, q=criteria.q or "", site_q=criteria.q or "",
        sorts=[(s, s == order) for s in cat.SORTS],
        hidden=[(k, v) for k, v in _params(request) if k in FORM_KEEPS],
        facets=[{"name": n, "items": body["facets"][n]} for n in FACET_ORDER
                if body["facets"].get(n)],
        facet_size=FACET_SHOWN, active=active,
        clear_href=url(request, "/datasets", [(k, v) for k, v in _params(request)
                                              if k in ("sort", "limit", "f")]),
        first=body["offset"] + 1 if body["numberReturned"] else 0,
        last=body["offset"] + body["numberReturned"],
        next_href=links.get("next"), prev_href=links.get("prev"), extents=extents,
        detail_href=lambda slug: url(request, f"/datasets/{slug}")))


def _pick(pair: dict[str, str | None], lang: str) -> str:
    return pair.get(lang) or pair.get("en" if lang == "fa" else "fa") or ""


def _facet_text(name: str, item: dict[str, Any], lang: str) -> str:
    if name in ("theme", "geometry_type", "format"):
        with i18n.language(lang):
            return i18n.gettext(i18n.label(name, item["value"]))
    if "label" in item:
        return _pick(item["label"], lang) or str(item["value"])
    return str(item["value"])


def _download_sizes(request: Request, coll: Collection | None) -> dict[str, int]:
    """Sizes of the whole-dataset files already in the download cache (the cache key GET
    /datasets/{slug}/download?format=... computes, for the same collection and no filter);
    streamed formats have none."""
    if coll is None:
        return {}
    root = request.app.state.settings.cache_dir / "downloads"
    q = parse_params(coll, {}, default_limit=1, max_limit=1)
    sizes = {}
    for name, fmt in dl.FORMATS.items():
        if fmt.streamed:
            continue
        e = dl.Export.make(coll, q, fmt)
        path = dl.cache_path(root, e, dl.cache_key(e, dl.rows_select(e)))
        with contextlib.suppress(OSError):
            sizes[name] = path.stat().st_size
    return sizes


def _snippets(items: str, download: str) -> list[dict[str, str]]:
    """Copy-ready code for this dataset: curl, Python (requests, geopandas), JavaScript."""
    return [
        {"id": "curl", "title": "curl", "language": "shell", "code":
            f'curl -s "{items}?limit=100" -H "Accept: application/geo+json"\n'
            f'curl -L -o data.gpkg "{download}?format=gpkg"'},
        {"id": "requests", "title": "Python (requests)", "language": "python", "code":
            "import requests\n\n"
            f'url = "{items}"\n'
            'page = requests.get(url, params={"limit": 100}, timeout=60).json()\n'
            'print(page["numberMatched"], "features")\n'
            'for feature in page["features"]:\n'
            '    print(feature["id"], feature["properties"])'},
        {"id": "geopandas", "title": "Python (geopandas)", "language": "python", "code":
            "import geopandas as gpd\n\n"
            f'gdf = gpd.read_file("{download}?format=geojson")\n'
            "print(gdf.head())"},
        {"id": "fetch", "title": "JavaScript (fetch)", "language": "javascript", "code":
            f'const url = "{items}?limit=100";\n'
            "const page = await fetch(url, {headers: {Accept: \"application/geo+json\"}})\n"
            "  .then((r) => r.json());\n"
            "console.log(page.numberMatched, page.features);"},
    ]


async def _dataset_page(request: Request, body: dict[str, Any]) -> Response:
    """The dataset page: metadata, map preview, first rows, downloads with sizes, snippets,
    versions and runs."""
    slug = body["slug"]
    lang = choose_lang(request).lang
    async with request.app.state.pool.connection() as conn:  # as the download route has it
        coll = await collection_at_version_async(conn, slug, None)
    sizes = _download_sizes(request, coll)
    downloads = [{**d, "size": sizes.get(d["format"]),
                  "streamed": dl.FORMATS[d["format"]].streamed,
                  "too_big": d["format"] == "xlsx" and body["feature_count"] > dl.XLSX_MAX_ROWS}
                 for d in body["distributions"]]
    items = url(request, f"/collections/{slug}/items")
    return render(request, "dataset.html", dict(
        d=body, downloads=downloads,
        link={link["rel"]: link["href"] for link in body["links"]},
        map_src=url(request, f"/maps/{slug}", [("embed", "1"), ("lang", lang)]),
        map_href=url(request, f"/maps/{slug}"),
        items_url=items, items_html=url(request, f"/collections/{slug}/items", [("f", "html")]),
        preview_limit=PREVIEW_ROWS, xlsx_max_rows=dl.XLSX_MAX_ROWS,
        snippets=_snippets(items, url(request, f"/datasets/{slug}/download"))))


# --- routes --------------------------------------------------------------------------------


@router.get("/datasets", summary="Search the catalogue, with facets and paging")
async def list_datasets(
    request: Request,
    q: Annotated[str | None, Query(description="Words to find (fa or en); the last one may "
                                   "be the start of a word")] = None,
    theme: Values = None,
    organisation: Values = None,
    keyword: Values = None,
    licence: Values = None,
    geometry_type: Values = None,
    fmt: Annotated[list[str] | None, Query(alias="format")] = None,
    bbox: Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat")] = None,
    sort: Annotated[str | None, Query(description=", ".join(cat.SORTS))] = None,
    limit: Annotated[int, Query(ge=1, le=cat.MAX_LIMIT)] = cat.DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=cat.MAX_OFFSET)] = 0,
    f: Annotated[str | None, Query(description="json or html")] = None,
    lang: Annotated[str | None, Query(description="fa or en (HTML, title sort)")] = None,
) -> Response:
    html = _wants_html(request, f)
    ui_lang = choose_lang(request).lang if html else page_lang(request)
    try:
        criteria = cat.criteria(q=q, theme=theme, organisation=organisation, keyword=keyword,
                                licence=licence, geometry_type=geometry_type, format=fmt,
                                bbox=bbox)
        order = cat.parse_sort(sort, has_query=bool(criteria.q))
    except cat.SearchError as exc:
        raise _problem(exc) from None
    async with request.app.state.pool.connection() as conn:
        collation = await _fa_collation(request, conn)
        res = await cat.search(conn, criteria=criteria, sort=order, limit=limit,
                               offset=offset, lang=ui_lang, collation=collation)
        open_reports = await open_report_counts(conn, slugs=[r["slug"] for r in res.datasets])
    body = _list_json(request, res)
    for d in body["datasets"]:  # citizens' open reports: a signal of data quality
        d["open_reports"] = open_reports.get(d["slug"], 0)
    if not html:
        return JSONResponse(body, headers=VARY)
    return _search_page(request, body, criteria, order, ui_lang)


@router.get("/datasets/{slug}", summary="One dataset: metadata, fields, versions, runs, links")
async def get_dataset(
    request: Request,
    slug: str,
    f: Annotated[str | None, Query(description="json or html")] = None,
    lang: Annotated[str | None, Query(description="fa or en (HTML)")] = None,
) -> Response:
    html = _wants_html(request, f)
    async with request.app.state.pool.connection() as conn:
        ds = await cat.load_dataset(conn, slug=slug)
        if ds is None:
            near = await cat.similar_slugs(conn, slug)
            hint = f"did you mean {', '.join(map(repr, near))}? " if near else ""
            raise not_found(f"no published dataset {slug!r}; {hint}GET /datasets lists them")
        open_reports = await open_report_counts(conn, slugs=[slug])
    body = _detail_json(request, ds)
    body["open_reports"] = open_reports.get(slug, 0)
    if not html:
        return JSONResponse(body, headers=VARY)
    return await _dataset_page(request, body)
