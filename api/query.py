"""From request parameters to one SQL statement. The same parsing of bbox, datetime,
property filters and CQL2 serves items, tiles, downloads and counts; GeoJSON is built by
PostgreSQL (`ST_AsGeoJSON`, `string_agg`) so Python only passes the bytes on."""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Date,
    DateTime,
    Float,
    Numeric,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    column,
    exists,
    false,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    table,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg

from api.problems import bad_request
from catalog.collections import Collection
from etl.load import WEB_MERCATOR
from geo import cql2
from geo.crs import CrsError
from geo.sql import (
    CRS84,
    GeometryError,
    OgcCrs,
    distance_metres,
    envelope,
    geojson_geometry,
    ogc_crs,
    output_geometry,
    point,
    within_metres,
    wkt_geometry,
)

DIALECT = pg_psycopg.dialect()
SA_TYPES = {"string": Text, "integer": BigInteger, "number": Float, "boolean": Boolean,
            "date": Date, "datetime": DateTime}
# Parameters every items request may carry (anything else must be a queryable).
ITEM_PARAMS = {
    "f", "lang", "limit", "offset", "after", "before", "bbox", "bbox-crs", "datetime", "crs",
    "filter", "filter-lang", "filter-crs", "properties", "sortby", "skipGeometry", "near",
    "radius", "nearest", "k", "intersects", "count",
}
MAX_K = 1000
MAX_RADIUS_M = 100_000.0


class QueryError(ValueError):
    pass


@dataclass(frozen=True)
class Caps:
    """Request size caps from the settings (SHAHR_MAX_FILTER_BYTES, SHAHR_MAX_VERTICES): set
    for each request by api.logs.RequestContext, so every caller of parse_params (items,
    tiles, downloads) is held to its app's caps without passing them along."""

    max_filter_bytes: int = 65_536
    max_vertices: int = 10_000


DEFAULT_CAPS = Caps()
CAPS: ContextVar[Caps] = ContextVar("shahr_caps", default=DEFAULT_CAPS)


def _check_size(value: str, name: str) -> None:
    size = len(value.encode())
    limit = CAPS.get().max_filter_bytes
    if size > limit:
        raise bad_request(f"{name}: {size:,} bytes is more than the {limit:,} accepted in a "
                          "URL; send large filters and shapes as CQL2-JSON in the body of "
                          "POST /collections/{id}/items/search", parameter=name)


class VertexBudget:
    """Counts the vertices of the shapes one request gives, refusing more than the cap."""

    def __init__(self, name: str) -> None:
        self.name, self.left = name, CAPS.get().max_vertices

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            limit = CAPS.get().max_vertices
            raise bad_request(f"{self.name}: the shapes have more than {limit:,} vertices "
                              "in all; simplify them (or split the request)",
                              parameter=self.name)

    def geojson(self, obj: Any) -> Any:
        self.take(geojson_positions(obj))
        return obj


def geojson_positions(obj: Any) -> int:
    """How many positions a GeoJSON geometry (or collection) holds; anything else is 0."""
    n, stack = 0, [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(v for k in ("coordinates", "geometries") if isinstance(
                v := node.get(k), list))
        elif isinstance(node, list):
            if node and not isinstance(node[0], list | dict):
                n += 1
            else:
                stack.extend(c for c in node if isinstance(c, list | dict))
    return n


@lru_cache(maxsize=512)
def sa_table(coll: Collection) -> Table:
    cols = [column("fid", BigInteger)]
    cols += [column(c.name, SA_TYPES.get(c.type, Text)) for c in coll.columns]
    cols.append(column("geom"))
    if coll.web_mercator:
        cols.append(column(WEB_MERCATOR))
    return table(coll.table, *cols, schema="data")


def queryables(coll: Collection) -> dict[str, cql2.Queryable]:
    t = sa_table(coll)
    q = {c.name: cql2.Queryable(c.name, t.c[c.name], c.type) for c in coll.columns}
    for name in ("geometry", "geom"):
        q.setdefault(name, cql2.Queryable(name, t.c.geom, "geometry"))
    q.setdefault("id", cql2.Queryable("id", t.c.fid, "integer"))
    return q


def supported_crs(coll: Collection) -> list[str]:
    uris = [CRS84, "http://www.opengis.net/def/crs/EPSG/0/4326",
            "http://www.opengis.net/def/crs/EPSG/0/3857"]
    if coll.source_crs and coll.source_crs.startswith("EPSG:"):
        uri = f"http://www.opengis.net/def/crs/EPSG/0/{coll.source_crs.split(':')[1]}"
        if uri not in uris:
            uris.append(uri)
    if coll.metric_crs and coll.metric_crs.startswith("EPSG:"):
        uri = f"http://www.opengis.net/def/crs/EPSG/0/{coll.metric_crs.split(':')[1]}"
        if uri not in uris:
            uris.append(uri)
    return uris


def _crs_param(coll: Collection, value: str | None, name: str) -> OgcCrs:
    if value is None:
        return ogc_crs(CRS84)
    if not value.strip():
        raise bad_request(f"{name}: is empty; leave it out for CRS84, or give one of: "
                          f"{', '.join(supported_crs(coll))}", parameter=name)
    try:
        crs = ogc_crs(value)
    except CrsError as exc:
        raise bad_request(f"{name}: {exc}; supported: {', '.join(supported_crs(coll))}",
                          parameter=name) from None
    if crs.uri not in supported_crs(coll):
        raise bad_request(f"{name}: {value!r} is not offered for this collection; supported: "
                          f"{', '.join(supported_crs(coll))}", parameter=name)
    return crs


@dataclass
class FeatureQuery:
    coll: Collection
    where: list[ColumnElement[bool]] = field(default_factory=list)
    limit: int = 10
    offset: int = 0
    after: int | None = None
    before: int | None = None
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (column, descending)
    properties: list[str] | None = None
    skip_geometry: bool = False
    crs: OgcCrs = field(default_factory=lambda: ogc_crs(CRS84))
    nearest: tuple[float, float, int] | None = None
    near: tuple[float, float] | None = None
    exact_count: bool = False

    @property
    def filtered(self) -> bool:
        return bool(self.where)

    @property
    def cursor(self) -> int | None:
        """The feature id a keyset page starts after (or, walking back, ends before)."""
        return self.before if self.before is not None else self.after


def _floats(text: str, n: tuple[int, ...], name: str) -> list[float]:
    parts = text.split(",")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise bad_request(f"{name}: {text!r} must be {' or '.join(map(str, n))} numbers "
                          "separated by commas", parameter=name) from None
    if len(vals) not in n or not all(map(_finite, vals)):
        raise bad_request(f"{name}: {text!r} must be {' or '.join(map(str, n))} finite numbers "
                          "separated by commas", parameter=name)
    return vals


def _finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


def _int(text: str, name: str, lo: int, hi: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise bad_request(f"{name}: {text!r} is not a whole number", parameter=name) from None
    if not lo <= v <= hi:
        raise bad_request(f"{name}: {v} is out of range; accepted: {lo} to {hi}", parameter=name)
    return v


def parse_bbox(coll: Collection, value: str, crs_value: str | None) -> ColumnElement[Any]:
    vals = _floats(value, (4, 6), "bbox")
    box = vals if len(vals) == 4 else vals[:2] + vals[3:5]
    if box[0] > box[2] or box[1] > box[3]:
        raise bad_request(f"bbox: {value!r} has its minimum above its maximum; give "
                          "minx,miny,maxx,maxy", parameter="bbox")
    crs = _crs_param(coll, crs_value, "bbox-crs")
    if crs.uri == CRS84 and (abs(box[0]) > 180 or abs(box[2]) > 180 or abs(box[1]) > 90
                             or abs(box[3]) > 90):
        raise bad_request(f"bbox: {value!r} is outside longitude -180..180 / latitude -90..90 "
                          "(use bbox-crs for projected coordinates)", parameter="bbox")
    return envelope(box, crs)


def parse_datetime(coll: Collection, value: str) -> ColumnElement[bool]:
    col = coll.temporal_column
    if col is None:
        raise bad_request(f"datetime: collection {coll.slug!r} has no date or time column to "
                          "filter on", parameter="datetime")
    c = sa_table(coll).c[col.name]
    parts = value.split("/")
    if len(parts) > 2:
        raise bad_request("datetime: give an instant or an interval start/end (.. for open)",
                          parameter="datetime")

    def instant(s: str) -> date | datetime | None:
        if s in ("..", ""):
            return None
        try:
            return datetime.fromisoformat(s.replace("Z", "+00:00")) if "T" in s \
                else date.fromisoformat(s)
        except ValueError:
            raise bad_request(f"datetime: {s!r} is not RFC 3339 (2024-05-01 or "
                              "2024-05-01T12:00:00Z)", parameter="datetime") from None

    if len(parts) == 1:
        v = instant(parts[0])
        if v is None:
            raise bad_request("datetime: an instant cannot be '..'", parameter="datetime")
        if isinstance(v, date) and not isinstance(v, datetime) and col.type == "datetime":
            return and_(c >= v, c < func.date(literal(v)) + 1)
        return c == v
    lo, hi = instant(parts[0]), instant(parts[1])
    if lo is None and hi is None:
        raise bad_request("datetime: an interval needs at least one end", parameter="datetime")
    if lo is not None and hi is not None and _instant_key(lo) > _instant_key(hi):
        raise bad_request(f"datetime: the interval {value!r} ends before it starts; give "
                          "start/end", parameter="datetime")
    conds = []
    if lo is not None:
        conds.append(c >= lo)
    if hi is not None:
        conds.append(c <= hi)
    return and_(*conds)


def _instant_key(v: date) -> datetime:
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    return datetime(v.year, v.month, v.day, tzinfo=UTC)


def parse_filter(coll: Collection, text: str | dict[str, Any], lang: str | None,
                 crs_value: str | None) -> ColumnElement[bool]:
    crs = _crs_param(coll, crs_value, "filter-crs")
    if isinstance(text, str):
        _check_size(text, "filter")
    budget = VertexBudget("filter")
    try:
        tree = cql2.parse(text, lang or ("cql2-json" if isinstance(text, dict) else "cql2-text"))
        return cql2.compile_filter(
            tree, queryables(coll),
            geometry_sql=lambda g: geojson_geometry(budget.geojson(g), crs),
            bbox_sql=lambda b: envelope(b, crs))
    except cql2.FilterError as exc:
        raise bad_request(f"filter: {exc}", parameter="filter") from None


def _property_filter(coll: Collection, name: str, value: str) -> ColumnElement[bool]:
    col = coll.column(name)
    assert col is not None
    c = sa_table(coll).c[name]
    try:
        if col.type == "integer":
            return c == int(value)
        if col.type == "number":
            return c == float(value)
        if col.type == "boolean":
            if value.lower() not in ("true", "false"):
                raise ValueError
            return c == (value.lower() == "true")
        if col.type == "date":
            return c == date.fromisoformat(value)
        if col.type == "datetime":
            return c == datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"{name}: {value!r} is not a valid {col.type}",
                          parameter=name) from None
    return c == value


def parse_params(coll: Collection, params: Mapping[str, str], *, default_limit: int,
                 max_limit: int, body_filter: dict[str, Any] | None = None) -> FeatureQuery:
    """Validate every parameter; unknown ones are a 400 naming what is accepted."""
    names = {c.name for c in coll.columns}
    unknown = [k for k in params if k not in ITEM_PARAMS and k not in names]
    if unknown:
        raise bad_request(
            f"unknown parameter(s) {', '.join(map(repr, unknown))}; accepted: "
            f"{', '.join(sorted(ITEM_PARAMS))}, or a property name for equality: "
            f"{', '.join(sorted(names)) or 'none'}", parameter=unknown[0])
    q = FeatureQuery(coll=coll)
    # A limit above the maximum is not an error (OGC API Features Part 1, 7.15.3): the
    # page is the maximum, with a next link.
    q.limit = min(_int(params["limit"], "limit", 1, 2**62), max_limit) if "limit" in params \
        else min(default_limit, max_limit)
    if "offset" in params:
        q.offset = _int(params["offset"], "offset", 0, 10**12)
    if "after" in params:
        q.after = _int(params["after"], "after", -1, 2**62)
    if "before" in params:
        q.before = _int(params["before"], "before", 0, 2**62)
    if q.after is not None and q.before is not None:
        raise bad_request("give after (the next page) or before (the previous page), not "
                          "both", parameter="before")
    if q.offset and q.cursor is not None:
        raise bad_request("give offset or after/before, not both (after/before come from "
                          "the next and prev links)", parameter="offset")
    q.crs = _crs_param(coll, params.get("crs"), "crs")
    if "bbox" in params:
        q.where.append(func.ST_Intersects(sa_table(coll).c.geom,
                                          parse_bbox(coll, params["bbox"],
                                                     params.get("bbox-crs"))))
    elif "bbox-crs" in params:
        raise bad_request("bbox-crs is given without bbox", parameter="bbox-crs")
    if "datetime" in params:
        q.where.append(parse_datetime(coll, params["datetime"]))
    if "filter" in params:
        lang = params.get("filter-lang")
        if lang not in (None, "cql2-text", "cql2-json"):
            raise bad_request(f"filter-lang: {lang!r}; accepted: cql2-text, cql2-json",
                              parameter="filter-lang")
        q.where.append(parse_filter(coll, params["filter"], lang, params.get("filter-crs")))
    if body_filter is not None:
        q.where.append(parse_filter(coll, body_filter, "cql2-json", params.get("filter-crs")))
    for name in (names & set(params)) - ITEM_PARAMS:
        q.where.append(_property_filter(coll, name, params[name]))
    if "properties" in params:
        wanted = [p.strip() for p in params["properties"].split(",") if p.strip()]
        bad = [p for p in wanted if p not in names]
        if bad:
            raise bad_request(f"properties: no property {', '.join(map(repr, bad))}; "
                              f"properties are: {', '.join(c.name for c in coll.columns)}",
                              parameter="properties")
        q.properties = wanted
    skip = params.get("skipGeometry", "false").lower()
    if skip not in ("true", "false"):
        raise bad_request("skipGeometry: accepted values are true and false",
                          parameter="skipGeometry")
    q.skip_geometry = skip == "true"
    if "sortby" in params:
        for part in params["sortby"].split(","):
            part = part.strip()
            desc = part.startswith("-")
            name = part.lstrip("+-").strip()
            if name not in names and name != "id":
                raise bad_request(f"sortby: no property {name!r}; sortable: "
                                  f"{', '.join(sorted(names | {'id'}))}", parameter="sortby")
            q.sort.append(("fid" if name == "id" else name, desc))
    _spatial_params(coll, params, q)
    count = params.get("count", "estimate")
    if count not in ("exact", "estimate"):
        raise bad_request("count: accepted values are exact and estimate"
                          f"{_shadowed_hint(coll, 'count', count)}", parameter="count")
    q.exact_count = count == "exact"
    return q


def _shadowed_hint(coll: Collection, name: str, value: str) -> str:
    """When a property has the name of a parameter, say how to filter on it instead."""
    if coll.column(name) is None:
        return ""
    return (f" (the property {name!r} has this parameter's name: filter on it with "
            f"filter={name}={value})")


def _spatial_params(coll: Collection, params: Mapping[str, str], q: FeatureQuery) -> None:
    geom = sa_table(coll).c.geom
    if "radius" in params and "near" not in params:
        raise bad_request("radius needs near=lon,lat", parameter="radius")
    if "near" in params:
        lon, lat = _lonlat(params["near"], "near")
        if "radius" not in params:
            raise bad_request("near needs radius (metres)", parameter="radius")
        try:
            r = float(params["radius"])
        except ValueError:
            raise bad_request("radius: must be a number of metres", parameter="radius") from None
        if not 0 < r <= MAX_RADIUS_M:
            raise bad_request(f"radius: {params['radius']} is out of range; accepted: more than "
                              f"0 and at most {MAX_RADIUS_M:.0f} metres", parameter="radius")
        q.where.append(within_metres(geom, lon, lat, r))
        q.near = (lon, lat)
    if "k" in params and "nearest" not in params:
        raise bad_request("k needs nearest=lon,lat", parameter="k")
    if "nearest" in params:
        lon, lat = _lonlat(params["nearest"], "nearest")
        k = _int(params.get("k", "5"), "k", 1, MAX_K)
        q.nearest = (lon, lat, k)
    if "intersects" in params:
        try:
            q.where.append(func.ST_Intersects(geom, _geometry_param(params["intersects"])))
        except GeometryError as exc:
            raise bad_request(f"intersects: {exc}", parameter="intersects") from None


def _lonlat(text: str, name: str) -> tuple[float, float]:
    lon, lat = _floats(text, (2,), name)
    if abs(lon) > 180 or abs(lat) > 90:
        raise bad_request(f"{name}: {text!r} is not lon,lat in degrees", parameter=name)
    return lon, lat


_WKT = re.compile(r"^\s*(MULTI)?(POINT|LINESTRING|POLYGON)\s*\(", re.IGNORECASE)


def _geometry_param(text: str) -> ColumnElement[Any]:
    """`intersects=` as WKT or GeoJSON, lon/lat (CRS84)."""
    crs = ogc_crs(CRS84)
    _check_size(text, "intersects")
    budget = VertexBudget("intersects")
    t = text.strip()
    if t.startswith("{"):
        try:
            obj = json.loads(t)
        except json.JSONDecodeError as exc:
            raise bad_request(f"intersects: not valid GeoJSON ({exc.msg})",
                              parameter="intersects") from None
        except RecursionError:
            raise bad_request("intersects: the GeoJSON is nested too deeply",
                              parameter="intersects") from None
        if isinstance(obj, dict) and obj.get("type") == "Feature":
            obj = obj.get("geometry") or {}
        if not isinstance(obj, dict) or obj.get("type") not in cql2.GEOJSON_TYPES:
            raise bad_request("intersects: give a GeoJSON geometry or WKT",
                              parameter="intersects")
        return geojson_geometry(budget.geojson(obj), crs)
    if _WKT.match(t):
        budget.take(_wkt_positions(t))
        return wkt_geometry(t, crs)
    raise bad_request("intersects: give WKT (e.g. POLYGON((...))) or a GeoJSON geometry",
                      parameter="intersects")


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _wkt_positions(text: str) -> int:
    """Vertices of a WKT shape, counted as pairs of numbers (an upper bound when it has Z)."""
    return len(_NUMBER.findall(text)) // 2


# ---- SQL ------------------------------------------------------------------------------------

def compile_sql(stmt: Any) -> tuple[str, dict[str, Any]]:
    c = stmt.compile(dialect=DIALECT, compile_kwargs={"render_postcompile": True})
    return str(c), dict(c.params)


def _props_json(coll: Collection, t: Table, names: list[str],
                extra: list[tuple[str, ColumnElement[Any]]]) -> ColumnElement[Any]:
    pairs: list[tuple[str, ColumnElement[Any]]] = [(n, t.c[n]) for n in names] + extra
    if not pairs:
        return literal_column("'{}'::json")
    # json_build_object takes at most 100 arguments: merge chunks of 50 pairs as jsonb.
    chunks = [pairs[i:i + 50] for i in range(0, len(pairs), 50)]
    objs = [func.json_build_object(*[x for name, col in ch for x in (literal(name), col)])
            for ch in chunks]
    if len(objs) == 1:
        return objs[0]
    merged = cast(objs[0], JSONB)
    for o in objs[1:]:
        merged = merged.op("||")(cast(o, JSONB))
    return merged


def geometry_digits(crs: OgcCrs) -> int:
    return 7 if crs.srid in (4326,) else 3


def feature_json(q: FeatureQuery, t: Table,
                 extra: list[tuple[str, ColumnElement[Any]]] | None = None) -> ColumnElement[Any]:
    names = q.properties if q.properties is not None else [c.name for c in q.coll.columns]
    props = _props_json(q.coll, t, names, extra or [])
    geom = literal("null") if q.skip_geometry else func.coalesce(
        func.ST_AsGeoJSON(output_geometry(t.c.geom, q.crs), geometry_digits(q.crs)), "null")
    return func.concat(literal('{"type":"Feature","id":'), t.c.fid, literal(',"geometry":'),
                       geom, literal(',"properties":'), props, literal("}"))


# An ordering term: (expression, descending, nulls last). Pages are ordered by the sortby
# terms (nulls last) and then by feature id, so every order is total and pages are stable.
Term = tuple[ColumnElement[Any], bool, bool]


def _terms(q: FeatureQuery, t: Table) -> list[Term]:
    return [(t.c[name], desc, True) for name, desc in q.sort] + [(t.c.fid, False, True)]


def _reverse(terms: list[Term]) -> list[Term]:
    return [(col, not desc, not last) for col, desc, last in terms]


def _order_by(terms: list[Term]) -> list[Any]:
    out = []
    for col, desc, last in terms:
        o = col.desc() if desc else col.asc()
        out.append(o.nulls_last() if last else o.nulls_first())
    return out


def _beyond(col: ColumnElement[Any], cur: ColumnElement[Any], desc: bool, last: bool,
            never_null: bool) -> ColumnElement[bool]:
    """`col` comes strictly after the cursor's value in this one term."""
    strictly = col < cur if desc else col > cur
    if never_null:
        return strictly
    if last:
        return and_(cur.is_not(null()), or_(col.is_(null()), strictly))
    return and_(col.is_not(null()), or_(cur.is_(null()), strictly))


def _after_cursor(terms: list[Term], cursor: list[ColumnElement[Any]],
                  fid: ColumnElement[Any]) -> ColumnElement[bool]:
    """Rows strictly after the cursor row in the order `terms` (keyset paging)."""
    if len(terms) == 1:
        col, desc, last = terms[0]
        return _beyond(col, cursor[0], desc, last, True)
    ors = []
    for i, (col, desc, last) in enumerate(terms):
        same = [terms[j][0].is_not_distinct_from(cursor[j]) for j in range(i)]
        ors.append(and_(*same, _beyond(col, cursor[i], desc, last, col is fid)))
    return or_(*ors)


def _cursor_values(q: FeatureQuery, t: Table, terms: list[Term],
                   fid: ColumnElement[Any]) -> list[ColumnElement[Any]]:
    """The cursor row's sort values, looked up by its id (an index probe each)."""
    return [fid if col is t.c.fid else select(col).where(t.c.fid == fid).scalar_subquery()
            for col, _desc, _last in terms]


def cursor_param(value: int | None) -> ColumnElement[Any]:
    """The keyset cursor as a named parameter, so one compiled statement serves every page
    (see StatementCache)."""
    return bindparam("cursor", value, BigInteger)


def items_statement(q: FeatureQuery) -> Select[Any]:
    """One row: (features joined by commas, how many, their ids in page order, whether more
    follow in the direction of travel, whether any lie on the other side of the cursor or
    offset, whether the cursor names a feature).

    Pages after the first are keyset pages: `after=<id>` (from the next link) or
    `before=<id>` (from the prev link) continue from that feature's place in the order, so
    a deep page costs what the first one does. One row more than the limit is read to know
    whether there is a next page."""
    t = sa_table(q.coll)
    if q.nearest is not None:
        return _nearest_statement(q, t)
    extra: list[tuple[str, ColumnElement[Any]]] = []
    if q.near is not None:
        dist = cast(distance_metres(t.c.geom, *q.near), Numeric)
        extra.append(("distance_m", func.round(dist, 2)))
    where = list(q.where)
    backwards = q.before is not None
    terms = _terms(q, t)
    run = _reverse(terms) if backwards else terms
    other: ColumnElement[Any] = literal(q.offset > 0)
    cursor_ok: ColumnElement[Any] = literal(True)
    if q.cursor is not None:
        cursor = cursor_param(q.cursor)
        cur = _cursor_values(q, t, terms, cursor)
        where.append(_after_cursor(run, cur, t.c.fid))
        behind = or_(_after_cursor(_reverse(run), cur, t.c.fid), t.c.fid == cursor)
        other = exists(select(literal(1)).select_from(t).where(*q.where, behind))
        if q.sort:
            cursor_ok = exists(select(literal(1)).select_from(t).where(t.c.fid == cursor))
    order = _order_by(run)
    inner = (select(t.c.fid, feature_json(q, t, extra).label("j"),
                    func.row_number().over(order_by=order).label("rn"))
             .where(*where).order_by(*order).limit(q.limit + 1))
    if q.offset:
        inner = inner.offset(q.offset)
    sub = inner.subquery("page")
    end = q.offset + q.limit  # row_number counts the rows OFFSET skips too
    shown = sub.c.rn <= end
    ordering = sub.c.rn.desc() if backwards else sub.c.rn
    return select(
        func.coalesce(func.string_agg(sub.c.j, aggregate_order_by(literal(","), ordering))
                      .filter(shown), ""),
        func.count().filter(shown),
        func.coalesce(func.array_agg(aggregate_order_by(sub.c.fid, ordering)).filter(shown),
                      literal_column("'{}'::bigint[]")),
        func.coalesce(func.bool_or(sub.c.rn > end), false()),
        other, cursor_ok)


def _nearest_statement(q: FeatureQuery, t: Table) -> Select[Any]:
    """k nearest by true distance: the k-th nearest in degrees bounds a radius that surely
    holds the true k nearest (longitude degrees shrink by cos(lat)); re-rank in metres."""
    assert q.nearest is not None
    lon, lat, k = q.nearest
    pt = point(lon, lat)
    kth = (select(t.c.geom.op("<->")(pt).label("d")).where(*q.where)
           .order_by(t.c.geom.op("<->")(pt)).offset(k - 1).limit(1).scalar_subquery())
    factor = 1.02 / max(math.cos(math.radians(min(abs(lat) + 1.0, 89.0))), 0.01)
    dist = distance_metres(t.c.geom, lon, lat)
    radius = func.coalesce(kth * factor, literal_column("'Infinity'::float8"))
    extra = [("distance_m", func.round(cast(dist, Numeric), 2))]
    inner = (select(t.c.fid, feature_json(q, t, extra).label("j"),
                    func.row_number().over(order_by=[dist, t.c.fid]).label("rn"))
             .where(*q.where, func.ST_DWithin(t.c.geom, pt, radius))
             .order_by(dist, t.c.fid).limit(k))
    sub = inner.subquery("page")
    return select(
        func.coalesce(func.string_agg(sub.c.j, aggregate_order_by(literal(","), sub.c.rn)), ""),
        func.count(),
        func.coalesce(func.array_agg(aggregate_order_by(sub.c.fid, sub.c.rn)),
                      literal_column("'{}'::bigint[]")),
        false(), false(), literal(True))


def count_statement(q: FeatureQuery) -> Select[Any]:
    t = sa_table(q.coll)
    return select(func.count()).select_from(t).where(*q.where)


def item_statement(q: FeatureQuery, fid: int) -> Select[Any]:
    t = sa_table(q.coll)
    return select(feature_json(q, t)).where(t.c.fid == bindparam("fid", fid, BigInteger))


class StatementCache:
    """Compiled SQL per (dataset version, request shape), least recently used dropped.

    Building and compiling a SQLAlchemy statement costs more than PostgreSQL answering a
    page, so requests of the same shape reuse one compile; the values that change from
    page to page (the keyset cursor, a feature id) are named parameters set per request.
    A new dataset version is a new key, so nothing stale is served."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def request_shape(params: Mapping[str, str]) -> tuple[Any, ...]:
    """What decides the SQL of an items request: every parameter but the cursor values."""
    return (tuple(sorted((k, v) for k, v in params.items()
                         if k not in ("after", "before", "f", "lang"))),
            "after" in params, "before" in params)


def cursor_values(params: Mapping[str, str]) -> tuple[int | None, int | None]:
    """after/before, validated as parse_params does."""
    after = _int(params["after"], "after", -1, 2**62) if "after" in params else None
    before = _int(params["before"], "before", 0, 2**62) if "before" in params else None
    return after, before
