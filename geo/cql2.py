"""CQL2 filters (OGC API Features Part 3), compiled to parameterised SQLAlchemy expressions.

Parsing is left to the `cql2` library (text and JSON encodings, with error positions); this
module walks the CQL2-JSON tree and builds SQL against an allow-list of queryables, so no
user text reaches SQL except as a bound parameter. Items, tiles, downloads, counts and maps
all use this one compiler (DESIGN principle 3).

Every literal is checked against the type of what it is compared with, and expressions of
types PostgreSQL could not compare are refused here, so a bad filter is a 400 that says what
was wrong, never a database error."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import cql2
from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Date,
    DateTime,
    Float,
    Numeric,
    and_,
    between,
    bindparam,
    cast,
    false,
    func,
    not_,
    null,
    or_,
    true,
)
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BindParameter

MAX_FILTER_CHARS = 100_000
# The cql2 parser recurses on the native stack and crashes the whole process (SIGSEGV) on
# deeply nested input (about 1,500 nested parentheses), so nesting is bounded before parsing.
MAX_PARENS = 100
MAX_NESTING = 500  # parentheses plus operators that can nest (NOT, comparisons, arithmetic)
MAX_JSON_DEPTH = 200  # objects and arrays, geometry coordinates included


class FilterError(ValueError):
    """A filter that cannot be used; the message says where and what is accepted."""


@dataclass(frozen=True)
class Queryable:
    name: str
    column: ColumnElement[Any]
    type: str  # string integer number boolean date datetime geometry


def parse(text: str | dict[str, Any], lang: str = "cql2-text") -> dict[str, Any] | bool:
    """CQL2 text or JSON -> the CQL2-JSON tree, with syntax errors made readable."""
    if isinstance(text, str) and len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"the filter is longer than {MAX_FILTER_CHARS} characters; send "
                          "large shapes as CQL2-JSON with POST .../items/search")
    try:
        if lang == "cql2-json":
            data = json.loads(text) if isinstance(text, str) else text
            _check_json_depth(data)
            expr = cql2.Expr(data)
        elif lang == "cql2-text":
            if not isinstance(text, str):
                raise FilterError("a cql2-text filter must be a string")
            _check_text_nesting(text)
            expr = cql2.Expr(text)
        else:
            raise FilterError(f"unknown filter-lang {lang!r}; use cql2-text or cql2-json")
        tree = expr.to_json()
    except FilterError:
        raise
    except json.JSONDecodeError as exc:
        raise FilterError(f"filter is not valid JSON: {exc.msg} at line {exc.lineno} column "
                          f"{exc.colno}") from None
    except RecursionError:
        raise FilterError(f"the filter is nested too deeply (at most {MAX_JSON_DEPTH} "
                          "levels)") from None
    except Exception as exc:  # cql2 raises plain Exception / ValueError with a caret diagram
        raise FilterError(_syntax_message(str(exc), lang)) from None
    if not isinstance(tree, dict | bool):
        raise FilterError("a filter must be a boolean expression (a comparison, a spatial or "
                          f"temporal function, ...), not {_show(tree)}")
    _check_json_depth(tree)
    return tree  # type: ignore[return-value]


_TOKEN = re.compile(r"""
    (?P<str>'(?:[^']|'')*'?)                            # string literal
  | (?P<qid>"(?:[^"]|"")*"?)                            # quoted identifier
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)       # number
  | (?P<word>[^\W\d][\w:.]*)                            # identifier or keyword
  | (?P<op><>|<=|>=|[=<>+\-*/%^])
  | (?P<open>\()
  | (?P<close>\))
  | (?P<comma>,)
""", re.VERBOSE)
_NESTING_WORDS = {"NOT", "DIV", "LIKE", "IN", "BETWEEN", "IS"}


def _check_text_nesting(text: str) -> None:
    """Bound how deeply cql2-text can nest, cheaply and before the parser sees it: the
    open parentheses, plus the operators in the current run of each level (a run ends at
    AND, OR or a comma, so long flat lists and AND/OR chains stay allowed)."""
    runs = [0]
    total = 0
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "open":
            runs.append(0)
            if len(runs) > MAX_PARENS:
                raise FilterError(f"the filter nests more than {MAX_PARENS} parentheses "
                                  f"(at column {m.start() + 1})")
        elif kind == "close":
            if len(runs) > 1:
                total -= runs.pop()
        elif kind == "comma" or (kind == "word" and m.group().upper() in ("AND", "OR")):
            total -= runs[-1]
            runs[-1] = 0
        elif kind == "op" or (kind == "word" and m.group().upper() in _NESTING_WORDS):
            runs[-1] += 1
            total += 1
            if total + len(runs) > MAX_NESTING:
                raise FilterError("the filter nests too deeply (more than "
                                  f"{MAX_NESTING} levels, at column {m.start() + 1}); join "
                                  "conditions with AND/OR or use IN")


def _check_json_depth(data: Any) -> None:
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise FilterError(f"the filter is nested too deeply (more than {MAX_JSON_DEPTH} "
                              "levels of objects and arrays)")
        stack.extend((c, depth + 1) for c in children)


def _syntax_message(raw: str, lang: str) -> str:
    pos = re.search(r"-->\s*(\d+):(\d+)", raw)
    expected = re.search(r"=\s*expected (.+)", raw)
    where = f" at line {pos.group(1)}, column {pos.group(2)}" if pos else ""
    what = f"; expected {expected.group(1).strip()}" if expected else ""
    if not pos and not expected:
        first = raw.strip().splitlines()[0] if raw.strip() else "invalid"
        if "untagged enum" in first:
            first = ("not a CQL2-JSON expression (an object with op and args, a property, a "
                     "literal, a geometry, an interval, ...)")
        what = f": {first}"
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
ARITHMETIC = {"+", "-", "*", "/", "%", "div", "^"}
TEMPORAL = ("t_after", "t_before", "t_contains", "t_disjoint", "t_during", "t_equals",
            "t_finishedby", "t_finishes", "t_intersects", "t_meets", "t_metby",
            "t_overlappedby", "t_overlaps", "t_startedby", "t_starts")
GEOJSON_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon",
                 "MultiPolygon", "GeometryCollection"}
SUPPORTED = ("AND, OR, NOT, =, <>, <, <=, >, >=, LIKE, BETWEEN, IN, IS NULL, CASEI, "
             f"{', '.join(s.upper() for s in SPATIAL)}, "
             f"{', '.join(t.upper() for t in TEMPORAL)}, + - * / % div ^")
# Types that can be compared with each other.
_KIND = {"integer": "number", "number": "number", "date": "time", "datetime": "time",
         "string": "string", "boolean": "boolean", "geometry": "geometry"}
_INF_LO, _INF_HI = "-inf", "+inf"  # the open ends ('..') of an interval


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
            return false()
        if isinstance(node, dict) and "property" in node and \
                self.prop(node["property"]).type == "boolean":
            return self.prop(node["property"]).column  # a boolean property is a predicate
        if not isinstance(node, dict) or "op" not in node:
            raise FilterError(f"expected a boolean expression, got {_show(node)}")
        op = str(node["op"]).lower()
        args = node.get("args", [])
        if not isinstance(args, list):
            raise FilterError(f"the args of {node['op']!r} must be a list")
        if op in ("and", "or"):
            if not args:
                raise FilterError(f"{op.upper()} needs at least one argument")
            parts = [self.compile(a) for a in args]
            return and_(*parts) if op == "and" else or_(*parts)
        if op == "not":
            _arity(op, args, 1)
            return not_(self.compile(args[0]))
        if op in COMPARISONS:
            left, right = self._pair(op, args)
            return COMPARISONS[op](left, right)
        if op == "like":
            _arity("LIKE", args, 2)
            for a in args:
                if self._type_of(a) not in (None, "string"):
                    raise FilterError(f"LIKE compares text, but {_show(a)} is a "
                                      f"{self._type_of(a)}")
            left, right = (self.value(a, "string") for a in args)
            return left.like(right, escape="\\")
        if op == "between":
            _arity("BETWEEN", args, 3)
            typ = self._common_type("BETWEEN", args)
            if typ in ("boolean", "geometry"):
                raise FilterError(f"BETWEEN needs numbers, text or dates, not a {typ}")
            low, high = self.value(args[1], typ), self.value(args[2], typ)
            return between(self.value(args[0], typ), low, high)
        if op == "in":
            _arity("IN", args, 2)
            items = args[1] if isinstance(args[1], list) else [args[1]]
            if not items:
                raise FilterError("IN needs at least one value")
            typ = self._common_type("IN", [args[0], *items])
            return self.value(args[0], typ).in_([self.value(v, typ) for v in items])
        if op == "isnull":
            _arity("IS NULL", args, 1)
            a = args[0]
            subject = self.prop(a["property"]).column if _is_prop(a) else self.value(a)
            return subject.is_(null())
        if op in SPATIAL:
            _arity(op.upper(), args, 2)
            return getattr(func, SPATIAL[op])(self.geometry(args[0]), self.geometry(args[1]))
        if op in TEMPORAL:
            _arity(op.upper(), args, 2)
            return self.temporal(op, args)
        if op in ("casei", "accenti") or op in ARITHMETIC:
            raise FilterError(f"{node['op']!r} gives a value, not true or false: compare it "
                              "with something")
        raise FilterError(f"operator {node['op']!r} is not supported; supported: {SUPPORTED}")

    # ---- values -----------------------------------------------------------------------

    def _type_of(self, node: Any) -> str | None:
        """The type of a scalar expression; None for a text literal (it takes the type of
        what it is compared with: '2024-01-01' can be a date)."""
        if isinstance(node, bool):
            return "boolean"
        if isinstance(node, int | float):
            return "number"
        if not isinstance(node, dict):
            return None
        if "property" in node:
            return self.prop(node["property"]).type
        if "date" in node:
            return "date"
        if "timestamp" in node:
            return "datetime"
        if node.get("type") in GEOJSON_TYPES or "bbox" in node:
            return "geometry"
        op = str(node.get("op", "")).lower()
        if op == "casei":
            return "string"
        if op in ARITHMETIC:
            return "number"
        return None

    def _common_type(self, what: str, args: list[Any]) -> str | None:
        found: str | None = None
        for a in args:
            t = self._type_of(a)
            if t is None:
                continue
            if t == "geometry":
                raise FilterError(f"{what}: {_show(a)} is a geometry; compare geometries "
                                  "with the spatial functions (S_INTERSECTS, ...)")
            if found is None or (found == "integer" and t == "number"):
                found = t
            elif _KIND.get(found) != _KIND.get(t):
                raise FilterError(f"{what}: cannot compare a {found} with a {t} "
                                  f"({_show(a)})")
        return found if found is not None else "string"

    def _pair(self, op: str, args: list[Any]) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
        _arity(op, args, 2)
        t = self._common_type(op, args)
        if t == "boolean" and op not in ("=", "<>"):
            raise FilterError(f"{op} does not order true and false; use = or <>")
        return self.value(args[0], t), self.value(args[1], t)

    def prop(self, name: Any) -> Queryable:
        q = self.q.get(name) if isinstance(name, str) else None
        if q is None:
            raise FilterError(f"unknown property {name!r}; queryables are: "
                              f"{', '.join(sorted(self.q))}")
        return q

    def value(self, node: Any, typ: str | None = None) -> ColumnElement[Any]:
        if isinstance(node, dict):
            if "property" in node:
                q = self.prop(node["property"])
                if q.type == "geometry":
                    raise FilterError(f"{q.name!r} is a geometry: use it in a spatial "
                                      "function (S_INTERSECTS, ...) or IS NULL")
                return q.column
            if "date" in node:
                return self._bind(_date(node["date"]), "date")
            if "timestamp" in node:
                return self._bind(_timestamp(node["timestamp"]), "datetime")
            op = str(node.get("op", "")).lower()
            args = node.get("args")
            if op == "casei":
                _arity("CASEI", args, 1)
                if self._type_of(args[0]) not in (None, "string"):
                    raise FilterError(f"CASEI needs text, but {_show(args[0])} is a "
                                      f"{self._type_of(args[0])}")
                return func.lower(self.value(args[0], "string"))
            if op == "accenti":
                raise FilterError("ACCENTI (accent-insensitive comparison) is not supported; "
                                  "CASEI is")
            if op in ARITHMETIC:
                return self._arithmetic(op, args)
            if node.get("type") in GEOJSON_TYPES or "bbox" in node:
                raise FilterError("a geometry can only be used in a spatial function")
            if "interval" in node:
                raise FilterError("an INTERVAL can only be used in a temporal function "
                                  "(T_INTERSECTS, T_DURING, ...)")
            if "op" in node:
                raise FilterError(f"{node['op']!r} does not give a value here; supported: "
                                  f"{SUPPORTED}")
            raise FilterError(f"cannot use {_show(node)} as a value")
        if isinstance(node, list):
            raise FilterError(f"a list {_show(node)} can only follow IN")
        return self._bind(_coerce(node, typ), typ)

    def _arithmetic(self, op: str, args: Any) -> ColumnElement[Any]:
        _arity(op, args, 2)
        for a in args:
            if self._type_of(a) not in (None, "number", "integer"):
                raise FilterError(f"arithmetic ({op}) needs numbers, but {_show(a)} is a "
                                  f"{self._type_of(a)}")
        a, b = (cast(self.value(x, "number"), Float) for x in args)
        # Division by zero gives NULL (no match) rather than a database error.
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / func.nullif(b, 0, type_=Float)
        if op == "^":
            return func.power(a, b)
        an, bn = cast(a, Numeric), func.nullif(cast(b, Numeric), 0)
        return func.mod(an, bn) if op == "%" else func.div(an, bn)

    def _bind(self, v: Any, typ: str | None) -> ColumnElement[Any]:
        self.n += 1
        if v is None:
            return null()
        if typ in ("number", "integer"):
            # Whole numbers bind as bigint so `id = 5` can use the column's index.
            integral = isinstance(v, int) or (isinstance(v, float) and v.is_integer()
                                              and abs(v) < 2**63)
            return bindparam(f"f{self.n}", int(v) if integral else v,
                             type_=BigInteger() if integral else Float(), unique=True)
        sa_type = {"boolean": Boolean(), "date": Date(),
                   "datetime": DateTime(timezone=True)}.get(typ or "")
        # unique: names are made distinct at compile time, so two filters compiled into one
        # statement (an analysis's inputs) never share a value's name.
        return bindparam(f"f{self.n}", v, type_=sa_type, unique=True) if sa_type is not None \
            else bindparam(f"f{self.n}", v, unique=True)

    def geometry(self, node: Any) -> ColumnElement[Any]:
        if _is_prop(node):
            q = self.prop(node["property"])
            if q.type != "geometry":
                raise FilterError(f"{q.name!r} is not a geometry; spatial functions need the "
                                  "`geometry` queryable")
            return q.column
        if isinstance(node, dict) and "bbox" in node:
            box = node["bbox"]
            if not (isinstance(box, list) and len(box) in (4, 6)
                    and all(isinstance(v, int | float) and not isinstance(v, bool)
                            for v in box)):
                raise FilterError("BBOX needs 4 numbers (minx, miny, maxx, maxy) or 6")
            box = box if len(box) == 4 else box[:2] + box[3:5]
            if box[0] > box[2] or box[1] > box[3]:
                raise FilterError(f"BBOX {_show(node['bbox'])} has its minimum above its "
                                  "maximum")
            try:
                return self.bbox_sql([float(v) for v in box])
            except ValueError as exc:
                raise FilterError(str(exc)) from None
        if isinstance(node, dict) and node.get("type") in GEOJSON_TYPES:
            try:
                return self.geometry_sql(node)
            except ValueError as exc:  # geo.sql.GeometryError: malformed or invalid
                raise FilterError(str(exc)) from None
        raise FilterError(f"expected a geometry or the `geometry` property, got {_show(node)}")

    # ---- time -------------------------------------------------------------------------

    def temporal(self, op: str, args: list[Any]) -> ColumnElement[bool]:
        """Allen's interval relations as CQL2 defines them; an instant is an interval whose
        start is its end, and '..' is an open end."""
        a0, a1 = self._period(args[0], op)
        b0, b1 = self._period(args[1], op)
        lt, le, eq = _tcmp("<"), _tcmp("<="), _tcmp("=")

        def gt(x: Any, y: Any) -> ColumnElement[bool]:
            return lt(y, x)

        def ge(x: Any, y: Any) -> ColumnElement[bool]:
            return le(y, x)

        intersects = and_(le(a0, b1), ge(a1, b0))
        rule = {
            "t_after": lambda: gt(a0, b1),
            "t_before": lambda: lt(a1, b0),
            "t_contains": lambda: and_(lt(a0, b0), gt(a1, b1)),
            "t_disjoint": lambda: not_(intersects),
            "t_during": lambda: and_(gt(a0, b0), lt(a1, b1)),
            "t_equals": lambda: and_(eq(a0, b0), eq(a1, b1)),
            "t_finishedby": lambda: and_(lt(a0, b0), eq(a1, b1)),
            "t_finishes": lambda: and_(gt(a0, b0), eq(a1, b1)),
            "t_intersects": lambda: intersects,
            "t_meets": lambda: eq(a1, b0),
            "t_metby": lambda: eq(a0, b1),
            "t_overlappedby": lambda: and_(gt(a0, b0), lt(a0, b1), gt(a1, b1)),
            "t_overlaps": lambda: and_(lt(a0, b0), gt(a1, b0), lt(a1, b1)),
            "t_startedby": lambda: and_(eq(a0, b0), gt(a1, b1)),
            "t_starts": lambda: and_(eq(a0, b0), lt(a1, b1)),
        }[op]
        return rule()

    def _period(self, node: Any, op: str) -> tuple[Any, Any]:
        """(start, end) of an instant or interval: SQL expressions, or the open ends."""
        if isinstance(node, dict) and "interval" in node:
            ends = node["interval"]
            if not (isinstance(ends, list) and len(ends) == 2):
                raise FilterError(f"{op.upper()}: an INTERVAL has a start and an end, got "
                                  f"{_show(ends)}")
            lo = _INF_LO if ends[0] in ("..", None) else self._instant(ends[0], op)
            hi = _INF_HI if ends[1] in ("..", None) else self._instant(ends[1], op)
            literals = [v.value for v in (lo, hi) if isinstance(v, BindParameter)]
            if len(literals) == 2 and _instant_key(literals[0]) > _instant_key(literals[1]):
                raise FilterError(f"{op.upper()}: the interval {_show(ends)} ends before it "
                                  "starts")
            return lo, hi
        v = self._instant(node, op)
        return v, v

    def _instant(self, node: Any, op: str) -> ColumnElement[Any]:
        if _is_prop(node):
            q = self.prop(node["property"])
            if q.type not in ("date", "datetime"):
                raise FilterError(f"{op.upper()} needs dates or times, but {q.name!r} is a "
                                  f"{q.type}")
            return q.column
        if isinstance(node, dict) and ("date" in node or "timestamp" in node):
            return self.value(node)
        if isinstance(node, str):
            return self._bind(_timestamp(node) if "T" in node.upper() else _date(node),
                              "datetime" if "T" in node.upper() else "date")
        raise FilterError(f"{op.upper()} needs a date or time property, DATE(), TIMESTAMP() "
                          f"or INTERVAL(), got {_show(node)}")


def _tcmp(op: str) -> Callable[[Any, Any], ColumnElement[bool]]:
    """A comparison of interval ends where either may be an open end ('..'): an open
    start is before, an open end after, every instant (and equal to its own kind)."""

    def rank(v: Any) -> int:
        return (0 if v == _INF_LO else 2) if isinstance(v, str) else 1

    def cmp(x: Any, y: Any) -> ColumnElement[bool]:
        if not isinstance(x, str) and not isinstance(y, str):
            return COMPARISONS[op](x, y)
        rx, ry = rank(x), rank(y)
        if not {"<": rx < ry, "<=": rx <= ry, "=": rx == ry}[op]:
            return false()
        known = y if isinstance(x, str) else x  # a NULL date is in no relation
        return true() if isinstance(known, str) else known.is_not(null())
    return cmp


def _arity(op: str, args: Any, n: int) -> None:
    if not isinstance(args, list) or len(args) != n:
        got = len(args) if isinstance(args, list) else "no list of"
        raise FilterError(f"{op.upper() if op.isalpha() else op} takes {n} argument"
                          f"{'s' if n > 1 else ''}, got {got}")


def _is_prop(node: Any) -> bool:
    return isinstance(node, dict) and "property" in node


def _instant_key(v: date) -> datetime:
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    return datetime(v.year, v.month, v.day, tzinfo=UTC)


def _show(node: Any) -> str:
    text = json.dumps(node, ensure_ascii=False, default=str)
    return text if len(text) < 80 else text[:77] + "..."


def _date(s: Any) -> date:
    try:
        return date.fromisoformat(s)
    except (TypeError, ValueError):
        raise FilterError(f"{_show(s)} is not a date (YYYY-MM-DD)") from None


def _timestamp(s: Any) -> datetime:
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except (AttributeError, TypeError, ValueError):
        raise FilterError(f"{_show(s)} is not a timestamp (e.g. 2024-05-01T12:00:00Z)") \
            from None


def _coerce(v: Any, typ: str | None) -> Any:
    """Check a literal against the property's type, so `units = 'abc'` is a clear 400."""
    if typ in ("integer", "number"):
        if isinstance(v, bool) or not isinstance(v, int | float):
            try:
                f = float(v)
            except (TypeError, ValueError):
                raise FilterError(f"{_show(v)} is not a number") from None
            if f != f or f in (float("inf"), float("-inf")):
                raise FilterError(f"{_show(v)} is not a finite number")
            return f
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
    try:
        return Compiler(queryables, geometry_sql, bbox_sql).compile(tree)
    except RecursionError:
        raise FilterError("the filter is nested too deeply") from None
