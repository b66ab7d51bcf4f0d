"""The catalogue: ``GET /datasets`` (search, filters, facets, bbox, sort, paging) and
``GET /datasets/{slug}`` (metadata, data dictionary, versions, ETL runs, links). JSON for
programs, HTML for people: ``f=json|html`` decides, else the Accept header (a browser asks
for text/html; API clients, ``*/*`` and no header get JSON)."""

from __future__ import annotations

import posixpath
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from api.html import page_lang, render, wants_html
from api.links import base_url, link
from api.problems import bad_request, not_found
from catalog import search as cat
from catalog.jalali import to_jalali_string
from catalog.text import PERSIAN_DIGITS

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
LABELS: dict[str, dict[str, str]] = {  # value -> Persian label; English shows the value
    "theme": {"land-use": "کاربری زمین", "housing": "مسکن", "infrastructure": "زیرساخت",
              "traffic": "ترافیک", "boundaries": "مرزها"},
    "geometry_type": {"point": "نقطه", "line": "خط", "polygon": "چندضلعی"},
}
UI = {
    "en": {"datasets": "Datasets", "search": "Search", "sort": "Sort by", "matched": "{} datasets",
           "filters": "Filters", "results": "Results", "pages": "Pages", "next": "Next",
           "prev": "Previous", "none": "No dataset matches.", "other_lang": "فارسی",
           "theme": "Theme", "organisation": "Organisation", "keyword": "Keyword",
           "licence": "Licence", "geometry_type": "Geometry", "format": "Format",
           "features": "Features", "updated": "Modified", "json": "This page as JSON",
           "relevance": "Relevance", "title": "Title A–Z", "-title": "Title Z–A",
           "-modified": "Newest first", "modified": "Oldest first",
           "about": "About", "use": "Use the data", "downloads": "Downloads",
           "fields": "Data dictionary", "versions": "Versions", "runs": "Recent ETL runs",
           "name": "Name", "label": "Label", "type": "Type", "unit": "Unit",
           "description": "Description", "key": "Key", "version": "Version",
           "status": "Status", "created": "Created", "published": "Published",
           "started": "Started", "read": "Read", "loaded": "Loaded", "rejected": "Rejected",
           "repaired": "Repaired", "error": "Error", "contact": "Contact",
           "temporal": "Time covered", "extent": "Extent", "source_crs": "Source CRS",
           "frequency": "Updated", "publisher": "Publisher", "keywords": "Keywords",
           "collection": "OGC API Features collection", "items": "Features (GeoJSON)",
           "tiles": "Vector tiles", "map": "Map", "all": "All datasets", "yes": "yes"},
    "fa": {"datasets": "مجموعه‌داده‌ها", "search": "جستجو", "sort": "ترتیب",
           "matched": "{} مجموعه‌داده", "filters": "پالایه‌ها", "results": "نتیجه‌ها",
           "pages": "صفحه‌ها", "next": "بعدی", "prev": "قبلی",
           "none": "هیچ مجموعه‌داده‌ای پیدا نشد.", "other_lang": "English", "theme": "موضوع",
           "organisation": "سازمان", "keyword": "کلیدواژه", "licence": "پروانه",
           "geometry_type": "هندسه", "format": "قالب", "features": "عارضه‌ها",
           "updated": "به‌روزرسانی", "json": "این صفحه به صورت JSON", "relevance": "ارتباط",
           "title": "عنوان (الف تا ی)", "-title": "عنوان (ی تا الف)",
           "-modified": "تازه‌ترین", "modified": "قدیمی‌ترین", "about": "درباره",
           "use": "استفاده از داده",
           "downloads": "دریافت", "fields": "فرهنگ داده", "versions": "نسخه‌ها",
           "runs": "اجراهای اخیر ETL", "name": "نام", "label": "برچسب", "type": "نوع",
           "unit": "واحد", "description": "توضیح", "key": "کلید", "version": "نسخه",
           "status": "وضعیت", "created": "ایجاد", "published": "انتشار", "started": "آغاز",
           "read": "خوانده", "loaded": "بارگذاری", "rejected": "ردشده", "repaired": "ترمیم",
           "error": "خطا", "contact": "تماس", "temporal": "بازه زمانی", "extent": "گستره",
           "source_crs": "دستگاه مختصات منبع", "frequency": "دوره به‌روزرسانی",
           "publisher": "ناشر", "keywords": "کلیدواژه‌ها",
           "collection": "مجموعه OGC API Features", "items": "عارضه‌ها (GeoJSON)",
           "tiles": "کاشی‌های برداری", "map": "نقشه", "all": "همه مجموعه‌داده‌ها",
           "yes": "بله"},
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


def _html(request: Request, template: str, **context: Any) -> Response:
    lang = page_lang(request)
    t = UI[lang]

    def pick(pair: dict[str, str | None] | None) -> str:
        pair = pair or {}
        other = "en" if lang == "fa" else "fa"
        return pair.get(lang) or pair.get(other) or ""

    def num(n: int | None) -> str:
        s = "" if n is None else f"{n:,}"
        return s.translate(str.maketrans("0123456789,", PERSIAN_DIGITS + "٬")) \
            if lang == "fa" else s

    def day(iso: str | None) -> str:
        if not iso:
            return ""
        d = date.fromisoformat(iso[:10])
        return to_jalali_string(d, "fa") if lang == "fa" else d.isoformat()

    def label(facet: str, item: dict[str, Any]) -> str:
        if "label" in item:
            return pick(item["label"]) or item["value"]
        fa = LABELS.get(facet, {}).get(item["value"]) if lang == "fa" else None
        return fa or item["value"]

    params = _params(request, drop=("lang", "offset"))
    switch = "en" if lang == "fa" else "fa"
    response = render(request, template, {
        "t": t, "pick": pick, "num": num, "day": day, "facet_label": label,
        "json_href": _href(request, request.url.path, [*_params(request, drop=("f",)),
                                                       ("f", "json")]),
        "lang_href": _href(request, request.url.path, [*params, ("lang", switch)]),
        "home_href": _href(request, "/datasets", [(k, v) for k, v in _params(request)
                                                  if k in ("lang", "f")]),
        **context})
    response.headers.update(VARY)
    return response


def _detail_href(request: Request, slug: str) -> str:
    return _href(request, f"/datasets/{slug}",
                 [(k, v) for k, v in _params(request) if k in ("lang", "f")])


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
    html, ui_lang = _wants_html(request, f), page_lang(request)
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
    body = _list_json(request, res)
    if not html:
        return JSONResponse(body, headers=VARY)
    links = {link["rel"]: link["href"] for link in body["links"]}
    keep = ("theme", "organisation", "keyword", "licence", "geometry_type", "format", "bbox",
            "limit", "lang", "f")
    return _html(
        request, "datasets.html", page=body, q=criteria.q or "",
        sorts=[(s, UI[ui_lang][s], s == order) for s in cat.SORTS],
        hidden=[(k, v) for k, v in _params(request) if k in keep],
        next_href=links.get("next"), prev_href=links.get("prev"),
        detail_href=lambda slug: _detail_href(request, slug))


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
    body = _detail_json(request, ds)
    if not html:
        return JSONResponse(body, headers=VARY)
    return _html(request, "dataset.html", d=body,
                 link={link["rel"]: link["href"] for link in body["links"]})
