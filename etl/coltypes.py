"""Column types: inferred from *all* values of a text column (not its first rows), and
enforced where the manifest declares them. Vectorised with pyarrow.compute, so a million
values cost milliseconds; values that do not fit a declared type become rejects."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalog.jalali import parse_jalali_array
from catalog.text import fold_digits_array

# Storage types (Frictionless names) -> PostgreSQL and Arrow types.
PG_TYPE = {
    "string": "text", "integer": "bigint", "number": "double precision", "boolean": "boolean",
    "date": "date", "datetime": "timestamptz", "datetime_naive": "timestamp",
}
ARROW_TYPE = {
    "string": pa.string(), "integer": pa.int64(), "number": pa.float64(),
    "boolean": pa.bool_(), "date": pa.date32(), "datetime": pa.timestamp("us", tz="UTC"),
    "datetime_naive": pa.timestamp("us"),
}

RE_INT = r"^[+-]?\d{1,18}(\.0+)?$"
RE_NUM = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
RE_BOOL = r"^(?i:true|false|yes|no|t|f|y|n)$"
RE_DATE = r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$"
RE_DT = r"^\d{4}[-/]\d{1,2}[-/]\d{1,2}[T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?"
RE_TZ = r"(Z|[+-]\d{2}(:?\d{2})?)$"
TRUE_WORDS = ("true", "yes", "t", "y")


def frictionless_type(storage: str) -> str:
    """The data dictionary's type name (both datetime flavours are `datetime`)."""
    return "datetime" if storage.startswith("datetime") else storage


def arrow_storage_type(t: pa.DataType) -> str | None:
    """The storage type of a natively typed column (GeoPackage, GeoJSON numbers...)."""
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "datetime" if t.tz else "datetime_naive"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return None  # text: inferred from its values
    return "string"  # lists, binary, time...: published as their text form


def prepare_text(arr: pa.Array, null_values: list[str], decimal: str = ".") -> pa.Array:
    """Trim, fold Persian/Arabic digits, and turn empty and `null_values` into nulls."""
    arr = pc.utf8_trim_whitespace(fold_digits_array(arr.cast(pa.string())))
    nulls = pc.equal(pc.utf8_length(arr), 0)
    if null_values:
        nulls = pc.or_kleene(nulls, pc.is_in(arr, value_set=pa.array(null_values, pa.string())))
    arr = pc.if_else(nulls, pa.scalar(None, pa.string()), arr)
    if decimal == ",":
        arr = pc.replace_substring(pc.replace_substring(arr, ".", ""), ",", ".")
    return arr


@dataclass
class TypeGuess:
    """Accumulates, batch by batch, which types every non-null value of a column fits."""

    integer: bool = True
    number: bool = True
    boolean: bool = True
    date: bool = True
    datetime: bool = True
    tz_some: bool = False
    tz_all: bool = True
    jalali_like: bool = True
    non_null: int = 0
    warnings: list[str] = field(default_factory=list)

    def update(self, values: pa.Array) -> None:
        v = values.drop_null()
        if len(v) == 0:
            return
        self.non_null += len(v)

        def all_match(pattern: str) -> bool:
            return bool(pc.all(pc.match_substring_regex(v, pattern)).as_py())

        if self.integer:
            self.integer = all_match(RE_INT)
        if self.number:
            self.number = all_match(RE_NUM)
        if self.boolean:
            self.boolean = all_match(RE_BOOL)
        if self.date or self.jalali_like:
            is_date = all_match(RE_DATE)
            if is_date:
                years = pc.cast(pc.utf8_slice_codeunits(v, 0, 4), pa.int32())
                ymin, ymax = pc.min_max(years).values()
                gregorian = ymin.as_py() >= 1700 and ymax.as_py() <= 2200
                jalali = ymin.as_py() >= 1200 and ymax.as_py() <= 1500
                self.date = self.date and gregorian and _dates_parse(v)
                self.jalali_like = self.jalali_like and jalali
            else:
                self.date = self.jalali_like = False
        if self.datetime:
            self.datetime = all_match(RE_DT)
            if self.datetime:
                has_tz = pc.match_substring_regex(v, RE_TZ)
                self.tz_some = self.tz_some or bool(pc.any(has_tz).as_py())
                self.tz_all = self.tz_all and bool(pc.all(has_tz).as_py())

    def result(self) -> str:
        if self.non_null == 0:
            return "string"
        for name in ("integer", "number", "boolean", "date"):
            if getattr(self, name):
                return name
        if self.datetime:
            return "datetime" if self.tz_some else "datetime_naive"
        return "string"


def _dates_parse(v: pa.Array) -> bool:
    try:
        pc.cast(pc.replace_substring(v, "/", "-"), pa.date32())
        return True
    except pa.ArrowInvalid:
        return False


@dataclass
class Cast:
    values: pa.Array
    bad: np.ndarray  # bool mask: a non-null value that does not fit the type


def _bad_mask(matches: pa.Array, values: pa.Array) -> np.ndarray:
    """Non-null values that did not match."""
    return (pc.fill_null(pc.invert(matches), False).to_numpy(zero_copy_only=False)
            & values.is_valid().to_numpy(zero_copy_only=False))


def _null_where(arr: pa.Array, bad: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(bad), pa.scalar(None, arr.type), arr) if bad.any() else arr


def cast_text(values: pa.Array, storage: str, *, calendar: str = "gregorian",
              date_format: str | None = None) -> Cast:
    """Cast prepared text (see prepare_text) to a storage type; flag what does not fit."""
    n = len(values)
    if storage == "string":
        return Cast(values, np.zeros(n, dtype=bool))
    if calendar == "jalali":
        dates, bad = parse_jalali_array(values)
        bad_np = bad.to_numpy(zero_copy_only=False).astype(bool)
        if storage.startswith("datetime"):
            dates = pc.cast(dates, pa.timestamp("us"))
            if storage == "datetime":
                dates = pc.assume_timezone(dates, "Asia/Tehran")
        return Cast(dates, bad_np)
    if date_format and storage in ("date", "datetime", "datetime_naive"):
        parsed = pc.strptime(values, format=date_format, unit="us", error_is_null=True)
        bad = values.is_valid().to_numpy(zero_copy_only=False) & \
            parsed.is_null().to_numpy(zero_copy_only=False)
        out = pc.cast(parsed, ARROW_TYPE["date"]) if storage == "date" else parsed
        if storage == "datetime":
            out = pc.assume_timezone(out, "UTC")
        return Cast(out, bad)
    pattern = {"integer": RE_INT, "number": RE_NUM, "boolean": RE_BOOL, "date": RE_DATE,
               "datetime": RE_DT, "datetime_naive": RE_DT}[storage]
    bad = _bad_mask(pc.match_substring_regex(values, pattern), values)
    clean = _null_where(values, bad)
    if storage == "integer":
        clean = pc.replace_substring_regex(clean, r"\.0+$", "")
        return Cast(pc.cast(clean, pa.int64()), bad)
    if storage == "number":
        return Cast(pc.cast(clean, pa.float64()), bad)
    if storage == "boolean":
        truth = pc.is_in(pc.utf8_lower(clean), value_set=pa.array(TRUE_WORDS))
        return Cast(pc.if_else(clean.is_null(), pa.scalar(None, pa.bool_()), truth), bad)
    if storage == "date":
        iso = pc.replace_substring_regex(clean, RE_DATE, r"\1-\2-\3")
        iso = pc.replace_substring_regex(iso, r"^(\d{4})-(\d)-", r"\1-0\2-")  # pad month
        iso = pc.replace_substring_regex(iso, r"-(\d)$", r"-0\1")  # pad day (RE2: no lookahead)
        return _cast_or_per_value(iso, ARROW_TYPE["date"], bad, _py_date)
    # datetimes: normalise separators and short offsets so Arrow's ISO parser takes them.
    iso = pc.replace_substring_regex(clean, r"^(\d{4})/(\d{1,2})/(\d{1,2})", r"\1-\2-\3")
    iso = pc.replace_substring_regex(iso, r"([+-]\d{2})$", r"\1:00")
    if storage == "datetime":
        has_tz = pc.fill_null(pc.match_substring_regex(iso, RE_TZ), True)
        iso = pc.if_else(has_tz, iso, pc.binary_join_element_wise(iso, "Z", ""))
    return _cast_or_per_value(iso, ARROW_TYPE[storage], bad, _py_datetime)


def _py_date(s: str) -> date:
    return date.fromisoformat(s)


def _py_datetime(s: str) -> datetime:
    return datetime.fromisoformat(s)


def _cast_or_per_value(iso: pa.Array, t: pa.DataType, bad: np.ndarray, parse) -> Cast:  # type: ignore[no-untyped-def]
    """Cast in one go; when a value is impossible (30 February), find it value by value."""
    try:
        return Cast(pc.cast(iso, t), bad)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out: list[object] = []
        bad = bad.copy()
        for i, s in enumerate(iso.to_pylist()):
            if s is None:
                out.append(None)
                continue
            try:
                out.append(parse(s))
            except ValueError:
                out.append(None)
                bad[i] = True
        return Cast(pa.array(out, type=t if not pa.types.is_timestamp(t) else None).cast(t), bad)


def storage_of_declared(declared: str, guess: TypeGuess | None) -> str:
    """Declared `datetime` is stored naive unless the values carry offsets."""
    if declared == "datetime" and guess is not None and not guess.tz_some:
        return "datetime_naive"
    return declared


_IDENT = re.compile(r"[^a-z0-9_]+")


def column_name(source: str, taken: set[str], position: int) -> str:
    """A safe, lower-case SQL column name for a source column (Persian names -> col_N)."""
    name = _IDENT.sub("_", source.strip().lower()).strip("_")[:60]
    if not name or name[0].isdigit():
        name = f"col_{name}" if name else f"col_{position}"
    if name in {"fid", "geom", "ctid", "oid", "xmin", "xmax", "cmin", "cmax", "tableoid"}:
        name = f"{name}_src"
    base, k = name, 2
    while name in taken:
        name = f"{base}_{k}"
        k += 1
    taken.add(name)
    return name
