"""CQL2 filters (OGC API Features Part 3), compiled to parameterised SQLAlchemy expressions.

Parsing is left to the `cql2` library (text and JSON encodings, with error positions); this
module walks the CQL2-JSON tree and builds SQL against an allow-list of queryables, so no
user text reaches SQL except as a bound parameter. Items, tiles, downloads, counts and maps
all use this one compiler (DESIGN principle 3)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import cql2
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Date,
    DateTime,
    Float,
    and_,
    between,
    bindparam,
    func,
    not_,
    null,
    or_,
    true,
)
from sqlalchemy.sql import operators

MAX_FILTER_CHARS = 100_000


class FilterError(ValueError):
    """A filter that cannot be used; the message says where and what is accepted."""


@dataclass(frozen=True)
class Queryable:
    name: str
    column: ColumnElement[Any]
    type: str  # string integer number boolean date datetime geometry


def parse(text: str | dict[str, Any], lang: str = "cql2-text") -> dict[str, Any]:
    """CQL2 text or JSON -> the CQL2-JSON tree, with syntax errors made readable."""
    if isinstance(text, str) and len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"the filter is longer than {MAX_FILTER_CHARS} characters")
    try:
        if lang == "cql2-json":
            data = json.loads(text) if isinstance(text, str) else text
            expr = cql2.Expr(data)
        elif lang == "cql2-text":
            expr = cql2.Expr(text)
        else:
            raise FilterError(f"unknown filter-lang {lang!r}; use cql2-text or cql2-json")
        tree = expr.to_json()
    except FilterError:
        raise
    except json.JSONDecodeError as exc:
        raise FilterError(f"filter is not valid JSON: {exc.msg} at line {exc.lineno} column "
                          f"{exc.colno}") from None
    except Exception as exc:  # cql2 raises plain Exception / ValueError with a caret diagram
        raise FilterError(_syntax_message(str(exc), lang)) from None
    if not isinstance(tree, dict | bool):
        raise FilterError("a filter must be a boolean expression")
    return tree  # type: ignore[return-value]


def _syntax_message(raw: str, lang: str) -> str:
    pos = re.search(r"-->\s*(\d+):(\d+)", raw)
    expected = re.search(r"=\s*expected (.+)", raw)
    where = f" at line {pos.group(1)}, column {pos.group(2)}" if pos else ""
    what = f"; expected {expected.group(1).strip()}" if expected else ""
    if not pos and not expected:
        what = f": {raw.strip().splitlines()[0] if raw.strip() else 'invalid'}"
    return f"{lang} syntax error{where}{what}"


COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operators.eq, "<>": operators.ne, "<": operators.lt, "<=": operators.le,
    ">": operators.gt, ">=": operators.ge,
}
SPATIAL = {
    "s_intersects": "ST_Intersects", "s_equals": "ST_Equals", "s_disjoint": "ST_Disjoint",
    "s_touches": "ST_Touches", "s_within": "ST_Within", "s_overlaps": "ST_Overlaps",
    "s_crosses": "ST_Crosses", "s_contains": "ST_Contains",
}
ARITHMETIC = {"+": operators.add, "-": operators.sub, "*": operators.mul, "/": operators.truediv}
GEOJSON_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon",
                 "MultiPolygon", "GeometryCollection"}


class Compiler:
    """Walks a CQL2-JSON tree. `geometry_sql` turns a GeoJSON literal into SQL in the
    storage CRS (it knows the filter-crs and axis order)."""

    def __init__(self, queryables: dict[str, Queryable],
                 geometry_sql: Callable[[dict[str, Any]], ColumnElement[Any]],
                 bbox_sql: Callable[[list[float]], ColumnElement[Any]]) -> None:
        self.q = queryables
        self.geometry_sql = geometry_sql
        self.bbox_sql = bbox_sql
        self.n = 0

    def compile(self, node: Any) -> ColumnElement[bool]:
        if node is True:
            return true()
        if node is False:
            return not_(true())
        if not isinstance(node, dict) or "op" not in node:
            raise FilterError(f"expected a boolean expression, got {_show(node)}")
        op, args = str(node["op"]).lower(), node.get("args", [])
        if op == "and":
            return and_(*[self.compile(a) for a in args])
        if op == "or":
            return or_(*[self.compile(a) for a in args])
        if op == "not":
            return not_(self.compile(args[0]))
        if op in COMPARISONS:
            left, right = self._pair(args)
            return COMPARISONS[op](left, right)
        if op == "like":
            left, right = self._pair(args, want="string")
            return left.like(right, escape="\\")
        if op == "between":
            subject = self.value(args[0])
            typ = self._type_of(args[0])
            return between(subject, self.value(args[1], typ), self.value(args[2], typ))
        if op == "in":
            typ = self._type_of(args[0])
            items = args[1] if isinstance(args[1], list) else [args[1]]
            if not items:
                raise FilterError("IN needs at least one value")
            return self.value(args[0]).in_([self.value(v, typ) for v in items])
        if op == "isnull":
            return self.value(args[0]).is_(null())
        if op in SPATIAL:
            return getattr(func, SPATIAL[op])(self.geometry(args[0]), self.geometry(args[1]))
        if op.startswith("t_"):
            return self.temporal(op, args)
        raise FilterError(f"operator {node['op']!r} is not supported; supported: and, or, "
                          "not, =, <>, <, <=, >, >=, like, between, in, is null, casei, "
                          f"{', '.join(s.upper() for s in SPATIAL)}, T_AFTER, T_BEFORE, "
                          "T_DURING, T_EQUALS, T_INTERSECTS, T_DISJOINT, + - * /")

    # ---- values -----------------------------------------------------------------------

    def _type_of(self, node: Any) -> str | None:
        if isinstance(node, dict) and "property" in node:
            return self.prop(node["property"]).type
        if isinstance(node, dict) and str(node.get("op", "")).lower() in ("casei", "accenti"):
            return "string"
        if isinstance(node, dict) and node.get("op") in ARITHMETIC:
            return "number"
        return None

    def _pair(self, args: list[Any], want: str | None = None
              ) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
        if len(args) != 2:
            raise FilterError("a comparison takes two arguments")
        t = self._type_of(args[0]) or self._type_of(args[1]) or want
        return self.value(args[0], t), self.value(args[1], t)

    def prop(self, name: str) -> Queryable:
        q = self.q.get(name)
        if q is None:
            raise FilterError(f"unknown property {name!r}; queryables are: "
                              f"{', '.join(sorted(self.q))}")
        return q

    def value(self, node: Any, typ: str | None = None) -> ColumnElement[Any]:
        if isinstance(node, dict):
            if "property" in node:
                return self.prop(node["property"]).column
            if "date" in node:
                return self._bind(_date(node["date"]), "date")
            if "timestamp" in node:
                return self._bind(_timestamp(node["timestamp"]), "datetime")
            op = str(node.get("op", "")).lower()
            if op in ("casei", "accenti"):
                return func.lower(self.value(node["args"][0], "string"))
            if op in ARITHMETIC:
                a, b = node["args"]
                return ARITHMETIC[op](self.value(a, "number"), self.value(b, "number"))
            if node.get("type") in GEOJSON_TYPES or "bbox" in node:
                raise FilterError("a geometry can only be used in a spatial function")
            raise FilterError(f"cannot use {_show(node)} as a value")
        if isinstance(node, list):
            raise FilterError(f"a list {_show(node)} can only follow IN")
        return self._bind(_coerce(node, typ), typ)

    def _bind(self, v: Any, typ: str | None) -> ColumnElement[Any]:
        self.n += 1
        sa_type = {"number": Float(), "integer": Float(), "boolean": Boolean(),
                   "date": Date(), "datetime": DateTime(timezone=True)}.get(typ or "")
        if v is None:
            return null()
        return bindparam(f"f{self.n}", v, type_=sa_type) if sa_type is not None \
            else bindparam(f"f{self.n}", v)

    def geometry(self, node: Any) -> ColumnElement[Any]:
        if isinstance(node, dict) and "property" in node:
            q = self.prop(node["property"])
            if q.type != "geometry":
                raise FilterError(f"{q.name!r} is not a geometry; spatial functions need the "
                                  "`geometry` queryable")
            return q.column
        if isinstance(node, dict) and "bbox" in node:
            box = node["bbox"]
            if not (isinstance(box, list) and len(box) in (4, 6)):
                raise FilterError("BBOX needs 4 numbers (minx, miny, maxx, maxy)")
            return self.bbox_sql([float(v) for v in (box if len(box) == 4
                                                     else box[:2] + box[3:5])])
        if isinstance(node, dict) and node.get("type") in GEOJSON_TYPES:
            return self.geometry_sql(node)
        raise FilterError(f"expected a geometry or the `geometry` property, got {_show(node)}")

    # ---- time -------------------------------------------------------------------------

    def temporal(self, op: str, args: list[Any]) -> ColumnElement[bool]:
        if len(args) != 2:
            raise FilterError(f"{op.upper()} takes two arguments")
        subject = args[0]
        q = self.prop(subject["property"]) if isinstance(subject, dict) and \
            "property" in subject else None
        if q is None or q.type not in ("date", "datetime"):
            raise FilterError(f"{op.upper()} needs a date or datetime property first")
        col = q.column
        lo, hi = self._instant_or_interval(args[1], q.type)
        if op in ("t_after",):
            return col > hi if hi is not None else true()
        if op == "t_before":
            return col < lo if lo is not None else true()
        if op in ("t_equals",):
            return col == lo if lo is not None and lo is hi else and_(col >= lo, col <= hi)
        if op in ("t_intersects", "t_during", "t_contains"):
            parts = [col >= lo] if lo is not None else []
            parts += [col <= hi] if hi is not None else []
            return and_(true(), *parts)
        if op == "t_disjoint":
            parts = [col < lo] if lo is not None else []
            parts += [col > hi] if hi is not None else []
            return or_(*parts) if parts else not_(true())
        raise FilterError(f"temporal operator {op.upper()} is not supported; use T_AFTER, "
                          "T_BEFORE, T_DURING, T_EQUALS, T_INTERSECTS or T_DISJOINT")

    def _instant_or_interval(self, node: Any, typ: str) -> tuple[Any, Any]:
        if isinstance(node, dict) and "interval" in node:
            a, b = node["interval"]
            lo = None if a in ("..", None) else self._instant(a, typ)
            hi = None if b in ("..", None) else self._instant(b, typ)
            return lo, hi
        v = self._instant(node, typ)
        return v, v

    def _instant(self, node: Any, typ: str) -> ColumnElement[Any]:
        if isinstance(node, dict) and ("date" in node or "timestamp" in node):
            return self.value(node, typ)
        if isinstance(node, str):
            return self._bind(_timestamp(node) if "T" in node else _date(node),
                              "datetime" if "T" in node else "date")
        raise FilterError(f"expected a DATE, TIMESTAMP or INTERVAL, got {_show(node)}")


def _show(node: Any) -> str:
    text = json.dumps(node, ensure_ascii=False)
    return text if len(text) < 80 else text[:77] + "..."


def _date(s: str) -> date:
    try:
        return date.fromisoformat(s)
    except (TypeError, ValueError):
        raise FilterError(f"{s!r} is not a date (YYYY-MM-DD)") from None


def _timestamp(s: str) -> datetime:
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise FilterError(f"{s!r} is not a timestamp (e.g. 2024-05-01T12:00:00Z)") from None


def _coerce(v: Any, typ: str | None) -> Any:
    """Check a literal against the property's type, so `units = 'abc'` is a clear 400."""
    if typ in ("integer", "number"):
        if isinstance(v, bool) or not isinstance(v, int | float):
            try:
                return float(v)
            except (TypeError, ValueError):
                raise FilterError(f"{_show(v)} is not a number") from None
        return v
    if typ == "boolean":
        if not isinstance(v, bool):
            raise FilterError(f"{_show(v)} is not true or false")
        return v
    if typ == "date":
        return _date(str(v)) if not isinstance(v, date) else v
    if typ == "datetime":
        return _timestamp(str(v)) if not isinstance(v, datetime) else v
    if typ == "string" and not isinstance(v, str):
        return str(v).lower() if isinstance(v, bool) else str(v)
    return v


def compile_filter(tree: dict[str, Any] | bool, queryables: dict[str, Queryable], *,
                   geometry_sql: Callable[[dict[str, Any]], ColumnElement[Any]],
                   bbox_sql: Callable[[list[float]], ColumnElement[Any]]) -> ColumnElement[bool]:
    return Compiler(queryables, geometry_sql, bbox_sql).compile(tree)

