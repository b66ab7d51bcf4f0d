"""Jalali (Solar Hijri) dates as municipal files write them, read and shown.

Files write ``1402/05/12``, ``1402-5-12``, ``14020512`` or the same in Persian digits, often
with direction marks pasted in by spreadsheet software. :func:`parse_jalali` defines what is
accepted and explains what is not; :func:`parse_jalali_array` does the same to a whole column
in a few vectorised passes (regex extraction in Arrow, calendar arithmetic in numpy), so the
ETL can keep the bad rows with their reason instead of looping in Python.

The calendar is jdatetime's: the 33-year arithmetic cycle of FarsiWeb's jalali.c, leap when
``year % 33`` is one of 1, 5, 9, 13, 17, 22, 26, 30 (1403 is leap, 1402 is not).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

import jdatetime
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalog.text import PERSIAN_DIGITS, as_string_array, fold_digits, fold_digits_array

__all__ = [
    "MONTH_NAMES",
    "is_jalali_leap",
    "parse_jalali",
    "parse_jalali_array",
    "parse_jalali_datetime",
    "to_jalali_string",
]

MIN_YEAR, MAX_YEAR = jdatetime.MINYEAR, jdatetime.MAXYEAR  # 1 .. 9377
MONTH_NAMES = (
    "Farvardin",
    "Ordibehesht",
    "Khordad",
    "Tir",
    "Mordad",
    "Shahrivar",
    "Mehr",
    "Aban",
    "Azar",
    "Dey",
    "Bahman",
    "Esfand",
)
_LEAP_REMAINDERS = (1, 5, 9, 13, 17, 22, 26, 30)
_MONTH_DAYS = np.array([31, 31, 31, 31, 31, 31, 30, 30, 30, 30, 30, 29], dtype=np.int64)
_DAYS_BEFORE_MONTH = np.concatenate([[0], np.cumsum(_MONTH_DAYS)[:-1]])
# jalali.c counts days from 1600-01-01 (Gregorian); date32 counts from 1970-01-01.
_EPOCH_SHIFT = (dt.date(1970, 1, 1) - dt.date(1600, 1, 1)).days

# One pattern for Python `re` and Arrow's RE2: 4-digit year, then month and day either
# with the same separator twice (/, - or .; 1 or 2 digits each) or run together (2 digits
# each). The separator groups let both versions check "same twice" without backreferences.
_DATE_PATTERN = r"(?P<y>[0-9]{4})(?P<s1>[-/.]?)(?P<m>[0-9]{1,2})(?P<s2>[-/.]?)(?P<d>[0-9]{1,2})"
_DATE_RE = re.compile(_DATE_PATTERN)
_DATETIME_RE = re.compile(
    _DATE_PATTERN
    + r"(?:(?:[ ]+|[ ]*T[ ]*)(?P<H>[0-9]{1,2}):(?P<M>[0-9]{2})"
    + r"(?::(?P<S>[0-9]{2})(?:\.(?P<f>[0-9]{1,6}))?)?)?"
)
_EXPECTED = "expected YYYY/MM/DD (or YYYY-MM-DD, YYYY.MM.DD, YYYYMMDD)"

# Direction marks and BOMs that spreadsheets leave around and inside RTL dates.
_INVISIBLE = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
_INVISIBLE_TABLE = dict.fromkeys(map(ord, _INVISIBLE))
_INVISIBLE_CLASS = f"[{_INVISIBLE}]"
_TRIM = " \t\n\r\v\f\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
_TRIM += "\u202f\u205f\u3000"


def is_jalali_leap(year: int) -> bool:
    """Whether Esfand of ``year`` has 30 days (jdatetime's rule)."""
    return year % 33 in _LEAP_REMAINDERS


def _clean(s: str) -> str:
    return fold_digits(s.translate(_INVISIBLE_TABLE)).strip(_TRIM)


def _check_date(y: int, m: int, d: int, raw: str) -> None:
    """Raise ValueError naming what is wrong with y/m/d (taken from ``raw``)."""
    if not MIN_YEAR <= y <= MAX_YEAR:
        raise ValueError(f"invalid Jalali date {raw!r}: year {y} is outside {MIN_YEAR}..{MAX_YEAR}")
    if not 1 <= m <= 12:
        raise ValueError(f"invalid Jalali date {raw!r}: month {m} is not between 1 and 12")
    days = int(_MONTH_DAYS[m - 1])
    if m == 12 and is_jalali_leap(y):
        days = 30
    if not 1 <= d <= days:
        why = ""
        if m == 12:
            why = f"; {y} is {'a' if days == 30 else 'not a'} leap year"
        raise ValueError(
            f"invalid Jalali date {raw!r}: day {d} is out of range for {MONTH_NAMES[m - 1]} "
            f"{y} ({days} days{why})"
        )


def _match_date(match: re.Match[str], raw: str) -> dt.date:
    y, m, d = int(match["y"]), int(match["m"]), int(match["d"])
    if match["s1"] != match["s2"]:
        raise ValueError(f"invalid Jalali date {raw!r}: mixed separators; {_EXPECTED}")
    if not match["s1"] and (len(match["m"]) != 2 or len(match["d"]) != 2):
        raise ValueError(f"invalid Jalali date {raw!r}: {_EXPECTED}")
    _check_date(y, m, d, raw)
    return jdatetime.date(y, m, d).togregorian()


def parse_jalali(s: str | None) -> dt.date | None:
    """Parse a Jalali date into a Gregorian ``date``; None or blank gives None.

    Accepts ``1402/05/12``, ``1402-5-12``, ``1402.05.12``, ``14020512``, Persian or
    Arabic-Indic digits, surrounding whitespace and direction marks. Raises ValueError
    saying what is wrong (format, month, or day for that month and year).
    """
    if s is None:
        return None
    t = _clean(s)
    if not t:
        return None
    match = _DATE_RE.fullmatch(t)
    if match is None:
        raise ValueError(f"invalid Jalali date {s!r}: {_EXPECTED}")
    return _match_date(match, s)


def parse_jalali_datetime(s: str | None) -> dt.datetime | None:
    """Parse a Jalali date with an optional time (``1402/05/12 14:30`` or ``... 14:30:05``).

    Returns a naive Gregorian ``datetime`` (midnight when there is no time part); None or
    blank gives None; anything else that is not a valid date and time raises ValueError.
    """
    if s is None:
        return None
    t = _clean(s)
    if not t:
        return None
    match = _DATETIME_RE.fullmatch(t)
    if match is None:
        raise ValueError(f"invalid Jalali date-time {s!r}: {_EXPECTED}, then optionally HH:MM[:SS]")
    day = _match_date(match, s)
    if match["H"] is None:
        return dt.datetime(day.year, day.month, day.day)
    hour, minute, second = int(match["H"]), int(match["M"]), int(match["S"] or 0)
    for value, name, top in ((hour, "hour", 23), (minute, "minute", 59), (second, "second", 59)):
        if value > top:
            raise ValueError(f"invalid Jalali date-time {s!r}: {name} {value} is not 0..{top}")
    micro = int((match["f"] or "").ljust(6, "0"))
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, micro)


def _jalali_to_epoch_days(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 for valid Jalali y/m/d arrays (jalali.c's day count, vectorised)."""
    jy = y - 979
    days = 365 * jy + (jy // 33) * 8 + (jy % 33 + 3) // 4
    days += _DAYS_BEFORE_MONTH[m - 1] + d - 1 + 79
    return days - _EPOCH_SHIFT


def parse_jalali_array(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """Parse a column of Jalali dates: ``(date32 values, bad)``, both as long as ``arr``.

    Values are null where the input is null, blank or bad; ``bad`` is true exactly where a
    non-blank value is not a valid date under :func:`parse_jalali`'s rules (call it on those
    few values for the reason). Integer columns (``14020512`` read as a number) are accepted.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], type=arr.type)
    if pa.types.is_integer(arr.type):
        arr = arr.cast(pa.string())
    a = as_string_array(arr)
    has_invisible = pc.match_substring_regex(a, _INVISIBLE_CLASS).fill_null(False)
    if pc.any(has_invisible).as_py():
        a = pc.replace_with_mask(
            a,
            has_invisible,
            pc.replace_substring_regex(a.filter(has_invisible), _INVISIBLE_CLASS, ""),
        )
    a = pc.utf8_trim(fold_digits_array(a), characters=_TRIM)

    present = pc.greater(pc.binary_length(a), 0).fill_null(False)
    parts = pc.extract_regex(a, f"^{_DATE_PATTERN}$")
    s1, s2 = pc.struct_field(parts, "s1"), pc.struct_field(parts, "s2")
    shape_ok = pc.and_(
        pc.equal(s1, s2),
        pc.or_(
            pc.not_equal(s1, ""),
            pc.and_(
                pc.equal(pc.binary_length(pc.struct_field(parts, "m")), 2),
                pc.equal(pc.binary_length(pc.struct_field(parts, "d")), 2),
            ),
        ),
    )
    ok = shape_ok.fill_null(False).to_numpy(zero_copy_only=False)

    def number(name: str) -> np.ndarray:
        values = pc.cast(pc.struct_field(parts, name), pa.int64()).fill_null(0)
        return values.to_numpy(zero_copy_only=False)

    y, m, d = number("y"), number("m"), number("d")
    leap = np.isin(y % 33, _LEAP_REMAINDERS)
    ok &= (y >= MIN_YEAR) & (y <= MAX_YEAR) & (m >= 1) & (m <= 12)
    month_days = _MONTH_DAYS[np.clip(m, 1, 12) - 1] + ((m == 12) & leap)
    ok &= (d >= 1) & (d <= month_days)

    m = np.where(ok, m, 1)
    days = _jalali_to_epoch_days(y, m, d).astype(np.int32)
    values = pa.array(days, type=pa.int32(), mask=~ok).cast(pa.date32())
    bad = pc.and_(present, pa.array(~ok))
    return values, bad


def to_jalali_string(d: dt.date, digits: Literal["fa", "en"] = "en") -> str:
    """Format a Gregorian date as ``1402/05/12`` (``۱۴۰۲/۰۵/۱۲`` with ``digits="fa"``).

    A ``datetime`` also gets its wall-clock time, ``HH:MM:SS``, which parse_jalali_datetime
    reads back.
    """
    if digits not in ("fa", "en"):
        raise ValueError(f"digits must be 'fa' or 'en', not {digits!r}")
    j = jdatetime.date.fromgregorian(date=d)
    text = f"{j.year:04d}/{j.month:02d}/{j.day:02d}"
    if isinstance(d, dt.datetime):
        text += f" {d:%H:%M:%S}"
    if digits == "fa":
        text = text.translate(str.maketrans("0123456789", PERSIAN_DIGITS))
    return text
