"""Catalogue search: the folded search document kept on each dataset, and the query behind
``GET /datasets`` (full text, filters, facets, bbox, sort, paging) and ``/datasets/{slug}``.

Both sides of a search go through the same steps, :func:`search_terms`: Persian-aware
folding (:func:`catalog.text.search_fold`) and splitting into letter/digit runs. The
document is stored already split, so PostgreSQL's ``simple`` parser sees the very words the
query is made of and a GIN index on ``to_tsvector('simple', search_text)`` answers it.

Statements are SQLAlchemy Core, compiled for psycopg and run on the API's async pool (so
the pool's statement timeout applies); user input only ever reaches SQL as bound values.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    bindparam,
    case,
    cast,
    collate,
    column,
    func,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
    values,
)
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.orm import Session

from catalog.models import THEMES, Dataset, Organisation
from catalog.text import ZWNJ, search_fold
from geo.geometry import family_of
from geo.sql import CRS84, envelope, ogc_crs

__all__ = [
    "DEFAULT_LIMIT",
    "FACETS",
    "FORMATS",
    "MAX_LIMIT",
    "MAX_OFFSET",
    "SORTS",
    "Criteria",
    "Facet",
    "SearchError",
    "SearchResult",
    "criteria",
    "facet_value",
    "load_dataset",
    "parse_bbox",
    "parse_sort",
    "refresh_search_text",
    "search",
    "search_document",
    "search_terms",
    "similar_slugs",
    "tsquery_text",
]

FORMATS = ("csv", "geojson", "geojsonseq", "gpkg", "shp", "kml", "fgb", "parquet", "xlsx")
"""Every published dataset can be downloaded in each of these (issue 8 serves them)."""
FACETS = ("theme", "organisation", "keyword", "licence", "geometry_type", "format")
GEOMETRY_FAMILIES = ("point", "line", "polygon")
SORTS = ("relevance", "title", "-title", "modified", "-modified")
DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET = 20, 100, 1_000_000
FACET_SIZE = 30  # values shown per facet (selected ones always are), as datasette does
MAX_QUERY_CHARS, MAX_TERMS = 500, 16
RECENT_RUNS = 10
TITLE_WEIGHT = 3  # titles are repeated in the document: ts_rank counts occurrences

_DIALECT = pg_psycopg.dialect()
_SIMPLE = literal_column("'simple'::regconfig")  # a constant, so the GIN index matches
_TERM = re.compile(r"[^\W_]+")
_D = Dataset.__table__
_O = Organisation.__table__
_TSV = func.to_tsvector(_SIMPLE, _D.c.search_text)

Bbox = tuple[float, float, float, float]


class SearchError(ValueError):
    """A request parameter that cannot be searched with; says which and what is accepted."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


# --- the search document ---------------------------------------------------------------


class _Org(Protocol):
    @property
    def slug(self) -> str: ...
    @property
    def name_fa(self) -> str | None: ...
    @property
    def name_en(self) -> str | None: ...


class _Field(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def label_fa(self) -> str | None: ...
    @property
    def label_en(self) -> str | None: ...
    @property
    def description_fa(self) -> str | None: ...
    @property
    def description_en(self) -> str | None: ...


class _Dataset(Protocol):
    @property
    def slug(self) -> str: ...
    @property
    def title_fa(self) -> str | None: ...
    @property
    def title_en(self) -> str | None: ...
    @property
    def description_fa(self) -> str | None: ...
    @property
    def description_en(self) -> str | None: ...
    @property
    def theme(self) -> str: ...
    @property
    def keywords(self) -> Sequence[str] | None: ...
    @property
    def organisation(self) -> _Org | None: ...


def search_terms(text: str | None) -> list[str]:
    """The words search compares: folded (ي/ی, ك/ک, digits, diacritics, case), then split
    on anything that is not a letter or digit (ZWNJ, hyphens, underscores, punctuation)."""
    return _TERM.findall(search_fold(text))


def _doc_terms(text: str | None) -> list[str]:
    """search_terms, plus each ZWNJ-joined word written solid: "ساختمان‌ها" is found by
    "ساختمان ها", "ساختمان‌ها" and "ساختمانها", the three ways people type it."""
    terms = search_terms(text)
    if text and ZWNJ in text:
        terms += [t for t in search_terms(text.replace(ZWNJ, "")) if t not in terms]
    return terms


def search_document(dataset: _Dataset, fields: Iterable[_Field]) -> str:
    """The folded words a dataset is found by: titles (weighted by repetition), keywords,
    slug, theme, organisation, descriptions, and each field's name, labels and description
    in Persian and English. Duck-typed so the migration can backfill from plain rows."""
    org = dataset.organisation
    titles = [dataset.title_fa, dataset.title_en]
    parts: list[str | None] = [*titles * TITLE_WEIGHT, *(dataset.keywords or ()) * 2,
                               dataset.slug, dataset.theme]
    if org is not None:
        parts += [org.slug, org.name_fa, org.name_en]
    parts += [dataset.description_fa, dataset.description_en]
    for f in fields:
        parts += [f.name, f.label_fa, f.label_en, f.description_fa, f.description_en]
    return " ".join(t for p in parts if p for t in _doc_terms(p))


def refresh_search_text(session: Session, dataset: Dataset) -> None:
    """Recompute the dataset's search document from its metadata and fields (call it in the
    transaction that changes them, so search never sees a half-published dataset)."""
    dataset.search_text = search_document(dataset, dataset.fields)
    session.flush()


def tsquery_text(q: str | None) -> str | None:
    """``'w1' & 'w2':*`` for to_tsquery: every word must match, the last one as a prefix
    (search-as-you-type). Words are letter/digit runs, so quoting them is safe; None when
    the query has no words."""
    terms = search_terms(q)[:MAX_TERMS]
    if not terms:
        return None
    return " & ".join(f"'{t}'" for t in terms) + ":*"


# --- request parameters ------------------------------------------------------------------


@dataclass(frozen=True)
class Criteria:
    """What to find. Values of one facet are alternatives (OR); facets combine with AND."""

    q: str | None = None
    theme: tuple[str, ...] = ()
    organisation: tuple[str, ...] = ()
    keyword: tuple[str, ...] = ()
    licence: tuple[str, ...] = ()
    geometry_type: tuple[str, ...] = ()  # point | line | polygon
    format: tuple[str, ...] = ()
    bbox: Bbox | None = None

    def selected(self, facet: str) -> tuple[str, ...]:
        return getattr(self, facet)  # type: ignore[no-any-return]


def _clean(name: str, values: Iterable[str] | None) -> tuple[str, ...]:
    """Non-empty values, stripped and without repeats (an empty form field means 'any')."""
    out: list[str] = []
    for v in values or ():
        v = v.strip()
        if "\x00" in v:
            raise SearchError(name, "values cannot contain NUL characters")
        if v and v not in out:
            out.append(v)
    return tuple(out)


def _vocabulary(name: str, given: tuple[str, ...], accepted: Sequence[str]
                ) -> tuple[str, ...]:
    out = tuple(facet_value(name, v) for v in given)
    bad = [g for g, v in zip(given, out, strict=True) if v not in accepted]
    if bad:
        raise SearchError(name, f"unknown value {bad[0]!r}; accepted: {', '.join(accepted)}")
    return out


def facet_value(facet: str, raw: str) -> str:
    """A filter value as the facet lists it: closed vocabularies are case-insensitive, and a
    geometry type may be given as a GeoJSON type (MultiPolygon -> polygon)."""
    v = raw.strip()
    if facet in ("theme", "format"):
        return v.lower()
    if facet == "geometry_type":
        v = v.lower()
        return v if v in GEOMETRY_FAMILIES else (family_of(v) or v)
    return v


def criteria(*, q: str | None = None, theme: Iterable[str] | None = None,
             organisation: Iterable[str] | None = None, keyword: Iterable[str] | None = None,
             licence: Iterable[str] | None = None, geometry_type: Iterable[str] | None = None,
             format: Iterable[str] | None = None, bbox: str | None = None) -> Criteria:
    """Validate raw request values: closed vocabularies (theme, geometry type, format) must
    be known; organisation, keyword and licence are matched as given."""
    q = (q or "").strip() or None
    if q and len(q) > MAX_QUERY_CHARS:
        raise SearchError("q", f"at most {MAX_QUERY_CHARS} characters (got {len(q)})")
    return Criteria(
        q=q,
        theme=_vocabulary("theme", _clean("theme", theme), THEMES),
        organisation=_clean("organisation", organisation),
        keyword=_clean("keyword", keyword),
        licence=_clean("licence", licence),
        geometry_type=_vocabulary("geometry_type", _clean("geometry_type", geometry_type),
                                  GEOMETRY_FAMILIES),
        format=_vocabulary("format", _clean("format", format), FORMATS),
        bbox=parse_bbox(bbox) if bbox and bbox.strip() else None,
    )


def parse_bbox(text: str) -> Bbox:
    """``minLon,minLat,maxLon,maxLat`` in WGS 84 (6 numbers: the heights are ignored). A
    minLon greater than maxLon crosses the antimeridian, as OGC API Features allows."""
    parts = text.split(",")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) not in (4, 6) or not all(map(math.isfinite, nums)):
        raise SearchError("bbox", f"{text!r} must be 4 numbers minLon,minLat,maxLon,maxLat "
                          "(WGS 84 degrees) separated by commas, e.g. 51.2,35.5,51.6,35.8")
    x0, y0, x1, y1 = nums if len(nums) == 4 else (nums[0], nums[1], nums[3], nums[4])
    if not all(-180 <= x <= 180 for x in (x0, x1)):
        raise SearchError("bbox", f"{text!r}: longitudes must lie between -180 and 180")
    if not all(-90 <= y <= 90 for y in (y0, y1)):
        raise SearchError("bbox", f"{text!r}: latitudes must lie between -90 and 90")
    if y0 > y1:
        raise SearchError("bbox", f"{text!r}: minLat {y0} is greater than maxLat {y1}")
    return (x0, y0, x1, y1)


def parse_sort(value: str | None, *, has_query: bool) -> str:
    """Default: relevance when there is a query, else the most recently modified first."""
    if not value or not value.strip():
        return "relevance" if has_query else "-modified"
    v = value.strip()
    if v == "+title" or v == "+modified":
        v = v[1:]
    if v not in SORTS:
        raise SearchError("sort", f"unknown sort {value!r}; accepted: {', '.join(SORTS)} "
                          "(a leading '-' means descending)")
    return v


# --- the query ---------------------------------------------------------------------------

_FAMILY = case(
    (func.lower(_D.c.geometry_type).like("%point"), "point"),
    (func.lower(_D.c.geometry_type).like("%linestring"), "line"),
    (func.lower(_D.c.geometry_type).like("%polygon"), "polygon"),
    else_=None,
)
_FACET_COLUMN: dict[str, ColumnElement[Any]] = {
    "theme": _D.c.theme, "organisation": _O.c.slug, "licence": _D.c.licence,
    "geometry_type": _FAMILY,
}


def _envelope(x0: float, y0: float, x1: float, y1: float) -> ColumnElement[Any]:
    return envelope([x0, y0, x1, y1], ogc_crs(CRS84))


def _bbox_condition(b: Bbox) -> ColumnElement[bool]:
    """Extents are boxes, so box overlap (&&, index-friendly) is exact intersection."""
    x0, y0, x1, y1 = b
    ext = _D.c.spatial_extent
    if x0 <= x1:
        return ext.op("&&")(_envelope(x0, y0, x1, y1))
    return or_(ext.op("&&")(_envelope(x0, y0, 180, y1)),
               ext.op("&&")(_envelope(-180, y0, x1, y1)))


def _tsquery(tsq: str) -> ColumnElement[Any]:
    return func.to_tsquery(_SIMPLE, bindparam("tsquery", tsq, Text))


def _conditions(c: Criteria, tsq: str | None, *, skip: str | None = None
                ) -> list[ColumnElement[bool]]:
    """The WHERE clauses for c, leaving out facet `skip` (its counts ignore its own filter,
    so choosing a value shows how many the alternatives would add)."""
    where: list[ColumnElement[bool]] = [_D.c.current_version_id.is_not(None)]
    if tsq:
        where.append(_TSV.op("@@")(_tsquery(tsq)))
    if c.bbox:
        where.append(_bbox_condition(c.bbox))
    for name, col in _FACET_COLUMN.items():
        if name != skip and c.selected(name):
            where.append(col.in_(c.selected(name)))
    if skip != "keyword" and c.keyword:
        where.append(_D.c.keywords.op("&&")(cast(array(c.keyword), ARRAY(Text))))
    # format: every published dataset offers every format, and unknown ones were refused.
    return where


def _from() -> Any:
    return _D.join(_O, _O.c.id == _D.c.organisation_id)


def _facet_statement(c: Criteria, tsq: str | None) -> Any:
    """One UNION ALL: (facet, value, label_fa, label_en, n) for every facet, plus the total
    matched as facet '_total'."""
    parts: list[Select[Any]] = []
    for name, col in _FACET_COLUMN.items():
        labels: list[Any] = [_O.c.name_fa, _O.c.name_en] if name == "organisation" else []
        fa, en = labels or (null(), null())
        parts.append(
            select(literal_column(f"'{name}'").label("facet"), col.label("value"),
                   fa.label("label_fa"), en.label("label_en"), func.count().label("n"))
            .select_from(_from()).where(*_conditions(c, tsq, skip=name))
            .group_by(col, *labels))
    kw = func.unnest(_D.c.keywords).table_valued("value").render_derived(name="kw")
    fmt = values(column("value", Text), name="fmt").data([(f,) for f in FORMATS])
    for name, tv in (("keyword", kw), ("format", fmt)):
        parts.append(
            select(literal_column(f"'{name}'"), tv.c.value, null(), null(), func.count())
            .select_from(_from().join(tv, true())).where(*_conditions(c, tsq, skip=name))
            .group_by(tv.c.value))
    parts.append(select(literal_column("'_total'"), null(), null(), null(), func.count())
                 .select_from(_from()).where(*_conditions(c, tsq)))
    return union_all(*parts)


def _title_key(lang: str, collation: str | None) -> ColumnElement[Any]:
    if lang == "fa":
        key = func.coalesce(_D.c.title_fa, _D.c.title_en, _D.c.slug)
        return collate(key, collation) if collation else key
    return func.lower(func.coalesce(_D.c.title_en, _D.c.title_fa, _D.c.slug))


def _page_statement(c: Criteria, tsq: str | None, *, sort: str, lang: str,
                    collation: str | None, limit: int, offset: int) -> Select[Any]:
    rank = func.ts_rank(_TSV, _tsquery(tsq)) if tsq else literal_column("0::real")
    title = _title_key(lang, collation)
    order: list[Any] = {
        "relevance": [rank.desc(), title],
        "title": [title], "-title": [title.desc()],
        "modified": [_D.c.modified], "-modified": [_D.c.modified.desc()],
    }[sort]
    ext = _D.c.spatial_extent
    return (
        select(_D.c.slug, _D.c.title_fa, _D.c.title_en, _D.c.description_fa,
               _D.c.description_en, _D.c.theme, _D.c.keywords, _D.c.licence,
               _D.c.geometry_type, _FAMILY.label("geometry_family"), _D.c.feature_count,
               _D.c.modified, _O.c.slug.label("org_slug"), _O.c.name_fa.label("org_name_fa"),
               _O.c.name_en.label("org_name_en"), func.ST_XMin(ext).label("x0"),
               func.ST_YMin(ext).label("y0"), func.ST_XMax(ext).label("x1"),
               func.ST_YMax(ext).label("y1"), rank.label("rank"))
        .select_from(_from()).where(*_conditions(c, tsq))
        .order_by(*order, _D.c.slug).limit(limit).offset(offset))


def compile_sql(stmt: Any) -> tuple[str, dict[str, Any]]:
    """A Core statement as psycopg SQL text with its bound values."""
    compiled = stmt.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    return str(compiled), dict(compiled.params)


@dataclass(frozen=True)
class Facet:
    value: str
    count: int
    selected: bool
    label_fa: str | None = None
    label_en: str | None = None


@dataclass
class SearchResult:
    criteria: Criteria
    sort: str
    limit: int
    offset: int
    number_matched: int
    datasets: list[dict[str, Any]]
    facets: dict[str, list[Facet]] = field(default_factory=dict)


def _facets(rows: Iterable[dict[str, Any]], c: Criteria) -> tuple[int, dict[str, list[Facet]]]:
    total = 0
    found: dict[str, list[Facet]] = {name: [] for name in FACETS}
    for r in rows:
        if r["facet"] == "_total":
            total = int(r["n"])
        elif r["value"] is not None:
            found[r["facet"]].append(Facet(r["value"], int(r["n"]),
                                           r["value"] in c.selected(r["facet"]),
                                           r["label_fa"], r["label_en"]))
    out: dict[str, list[Facet]] = {}
    for name, items in found.items():
        items.sort(key=lambda f: (-f.count, f.value))
        shown = items[:FACET_SIZE] + [f for f in items[FACET_SIZE:] if f.selected]
        have = {f.value for f in shown}
        # A chosen value nothing matches any more still shows (count 0) so it can be undone.
        shown += [Facet(v, 0, True) for v in c.selected(name) if v not in have]
        out[name] = shown
    return total, out


async def search(conn: psycopg.AsyncConnection, *, criteria: Criteria, sort: str,
                 limit: int = DEFAULT_LIMIT, offset: int = 0, lang: str = "en",
                 collation: str | None = None) -> SearchResult:
    """One page of matching published datasets, the number matched and the facet counts
    (two statements). `collation` orders Persian titles (e.g. ICU's "fa-x-icu") when given."""
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError("limit", f"must be between 1 and {MAX_LIMIT} (got {limit})")
    if not 0 <= offset <= MAX_OFFSET:
        raise SearchError("offset", f"must be between 0 and {MAX_OFFSET} (got {offset})")
    tsq = tsquery_text(criteria.q)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(*compile_sql(_facet_statement(criteria, tsq)))
        total, facets = _facets(await cur.fetchall(), criteria)
        await cur.execute(*compile_sql(_page_statement(
            criteria, tsq, sort=sort, lang=lang, collation=collation, limit=limit,
            offset=offset)))
        rows = await cur.fetchall()
    return SearchResult(criteria, sort, limit, offset, total, rows, facets)


# --- one dataset ---------------------------------------------------------------------------

_DATASET_SQL = """
SELECT d.*, ST_XMin(d.spatial_extent) AS x0, ST_YMin(d.spatial_extent) AS y0,
       ST_XMax(d.spatial_extent) AS x1, ST_YMax(d.spatial_extent) AS y1,
       v.number AS version, o.slug AS org_slug, o.name_fa AS org_name_fa,
       o.name_en AS org_name_en, o.url AS org_url, o.email AS org_email
FROM catalog.datasets d
JOIN catalog.organisations o ON o.id = d.organisation_id
JOIN catalog.versions v ON v.id = d.current_version_id
WHERE d.slug = %(slug)s
"""
_FIELDS_SQL = """
SELECT name, type, unit, label_fa, label_en, description_fa, description_en, is_key, calendar
FROM catalog.fields WHERE dataset_id = %(id)s ORDER BY position
"""
_VERSIONS_SQL = """
SELECT number, status, feature_count, geometry_type, checksum, created, published, run_id
FROM catalog.versions WHERE dataset_id = %(id)s ORDER BY number DESC
"""
_RUNS_SQL = """
SELECT r.id, r.status, r.source, r.started_at, r.finished_at, r.duration_s, r.rows_read,
       r.rows_loaded, r.rows_rejected, r.rows_repaired, r.warnings, r.error,
       v.number AS version
FROM catalog.etl_runs r LEFT JOIN catalog.versions v ON v.id = r.version_id
WHERE r.dataset_id = %(id)s ORDER BY r.id DESC LIMIT %(n)s
"""


async def load_dataset(conn: psycopg.AsyncConnection, *, slug: str) -> dict[str, Any] | None:
    """A published dataset's metadata with its `fields`, `versions` and recent `runs`
    (newest first); None when there is no published dataset with that slug."""
    if "\x00" in slug:  # PostgreSQL text cannot hold it, so no slug has it
        return None
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_DATASET_SQL, {"slug": slug})
        ds = await cur.fetchone()
        if ds is None:
            return None
        for key, sql in (("fields", _FIELDS_SQL), ("versions", _VERSIONS_SQL),
                         ("runs", _RUNS_SQL)):
            await cur.execute(sql, {"id": ds["id"], "n": RECENT_RUNS})
            ds[key] = await cur.fetchall()
    return ds


async def similar_slugs(conn: psycopg.AsyncConnection, slug: str, n: int = 3) -> list[str]:
    """Published slugs that look like `slug`, to suggest on a 404."""
    cur = await conn.execute(
        "SELECT slug FROM catalog.datasets WHERE current_version_id IS NOT NULL")
    slugs = [r[0] for r in await cur.fetchall()]
    return difflib.get_close_matches(slug.lower(), slugs, n=n, cutoff=0.5)

