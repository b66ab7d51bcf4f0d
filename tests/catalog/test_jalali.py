"""Jalali dates: what is accepted, what is refused and why, and the vectorised parser."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import jdatetime
import pyarrow as pa
import pytest

from catalog.jalali import (
    is_jalali_leap,
    parse_jalali,
    parse_jalali_array,
    parse_jalali_datetime,
    to_jalali_string,
)

MORDAD_12_1402 = dt.date(2023, 8, 3)


@pytest.mark.parametrize(
    "raw",
    [
        "1402/05/12",
        "1402/5/12",
        "1402-5-12",
        "1402-05-12",
        "1402.05.12",
        "14020512",
        "  1402/05/12\t",
        "۱۴۰۲/۰۵/۱۲",
        "١٤٠٢/٠٥/١٢",
        "۱۴۰۲/05/١٢",  # mixed digit sets
        "۱۴۰۲۰۵۱۲",
        "۱۴۰۲٫۰۵٫۱۲",  # Arabic decimal separator reads as '.'
        "\u200f1402/05/12\u200f",  # RLM pasted by a spreadsheet
        "1402/\u200f05/\u200f12",
    ],
)
def test_parse_jalali_formats(raw: str) -> None:
    assert parse_jalali(raw) == MORDAD_12_1402


@pytest.mark.parametrize("raw", [None, "", "   ", "\u200f", "\t\n"])
def test_parse_jalali_blank_is_none(raw: str | None) -> None:
    assert parse_jalali(raw) is None


def test_leap_esfand() -> None:
    assert is_jalali_leap(1403)
    assert not is_jalali_leap(1402)
    assert is_jalali_leap(1399)
    assert parse_jalali("1403/12/30") == dt.date(2025, 3, 20)
    assert parse_jalali("1399/12/30") == dt.date(2021, 3, 20)
    assert parse_jalali("1402/12/29") == dt.date(2024, 3, 19)
    assert parse_jalali("1404/01/01") == dt.date(2025, 3, 21)  # Nowruz 1404
    with pytest.raises(ValueError, match=r"day 30 .* Esfand 1402 \(29 days; 1402 is not a leap"):
        parse_jalali("1402/12/30")
    with pytest.raises(ValueError, match="day 31"):
        parse_jalali("1403/12/31")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("1402/13/01", "month 13 is not between 1 and 12"),
        ("1402/00/10", "month 0"),
        ("1402/05/00", "day 0 is out of range for Mordad"),
        ("1402/05/32", "day 32 is out of range for Mordad 1402 \\(31 days\\)"),
        ("1402/06/31", None),  # Shahrivar has 31: valid, see below
        ("1402/07/31", "day 31 is out of range for Mehr 1402 \\(30 days\\)"),
        ("1402/11/31", "Bahman"),
        ("0000/01/01", "year 0"),
        ("9999/01/01", "year 9999"),
        ("1402-05/12", "mixed separators"),
        ("1402/0512", "mixed separators"),
        ("1402512", "expected YYYY/MM/DD"),
        ("140205121", "expected YYYY/MM/DD"),
        ("02/05/12", "expected YYYY/MM/DD"),
        ("12/05/1402", "expected YYYY/MM/DD"),
        ("1402/5", "expected YYYY/MM/DD"),
        ("1402 / 05 / 12", "expected YYYY/MM/DD"),
        ("1402/05/12 14:30", "expected YYYY/MM/DD"),  # a time needs parse_jalali_datetime
        ("امروز", "expected YYYY/MM/DD"),
    ],
)
def test_parse_jalali_errors(raw: str, message: str | None) -> None:
    if message is None:
        assert parse_jalali(raw) == dt.date(2023, 9, 22)
        return
    with pytest.raises(ValueError, match=message) as info:
        parse_jalali(raw)
    assert repr(raw) in str(info.value)  # the message quotes the value as written


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1402/05/12", dt.datetime(2023, 8, 3)),
        ("1402/05/12 14:30", dt.datetime(2023, 8, 3, 14, 30)),
        ("1402/05/12 14:30:05", dt.datetime(2023, 8, 3, 14, 30, 5)),
        ("1402-05-12T14:30:05", dt.datetime(2023, 8, 3, 14, 30, 5)),
        ("1402/05/12 9:05:00.25", dt.datetime(2023, 8, 3, 9, 5, 0, 250000)),
        ("۱۴۰۲/۰۵/۱۲  ۱۴:۳۰:۰۵", dt.datetime(2023, 8, 3, 14, 30, 5)),
        ("1403/12/30 23:59:59", dt.datetime(2025, 3, 20, 23, 59, 59)),
        ("", None),
        (None, None),
    ],
)
def test_parse_jalali_datetime(raw: str | None, expected: dt.datetime | None) -> None:
    assert parse_jalali_datetime(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("1402/05/12 24:00", "hour 24"),
        ("1402/05/12 12:60", "minute 60"),
        ("1402/05/12 12:30:61", "second 61"),
        ("1402/05/12 14", "HH:MM"),
        ("1402/12/30 10:00", "not a leap year"),
    ],
)
def test_parse_jalali_datetime_errors(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_jalali_datetime(raw)


# --- parse_jalali_array --------------------------------------------------------------------

MIXED: list[str | None] = [
    "1402/05/12",
    "1403/12/30",
    "1402/12/30",
    "14020512",
    "1402-5-1",
    "۱۴۰۲/۰۵/۱۲",
    "١٤٠٢.٠٥.١٢",
    "\u200f1402/05/12",
    "  1300/01/01 ",
    "1402/13/01",
    "1402/07/31",
    "1402-05/12",
    "1402512",
    "1402/05/12 14:30",
    "abc",
    "",
    "  ",
    None,
    "0000/01/01",
    "9377/12/29",
    "0001/01/01",
]


def _scalar(values: list[str | None]) -> tuple[list[dt.date | None], list[bool]]:
    dates: list[dt.date | None] = []
    bad: list[bool] = []
    for value in values:
        try:
            dates.append(parse_jalali(value))
            bad.append(False)
        except ValueError:
            dates.append(None)
            bad.append(True)
    return dates, bad


@pytest.mark.parametrize(
    "make",
    [
        lambda v: pa.array(v, type=pa.string()),
        lambda v: pa.array(v, type=pa.large_string()),
        lambda v: pa.array(["x", *v], type=pa.string()).slice(1),
        lambda v: pa.chunked_array([v[:5], v[5:]], type=pa.string()),
        lambda v: pa.array(v).dictionary_encode(),
    ],
)
def test_parse_jalali_array_equals_scalar(
    make: Callable[[list[str | None]], pa.Array | pa.ChunkedArray],
) -> None:
    values, bad = parse_jalali_array(make(MIXED))
    assert values.type == pa.date32()
    assert (values.to_pylist(), bad.to_pylist()) == _scalar(MIXED)
    assert bad.null_count == 0


def test_parse_jalali_array_integers_and_empty() -> None:
    values, bad = parse_jalali_array(pa.array([14020512, None, 14021230], type=pa.int64()))
    assert values.to_pylist() == [MORDAD_12_1402, None, None]
    assert bad.to_pylist() == [False, False, True]
    values, bad = parse_jalali_array(pa.array([], type=pa.string()))
    assert len(values) == len(bad) == 0
    values, bad = parse_jalali_array(pa.nulls(2))
    assert values.to_pylist() == [None, None]
    assert bad.to_pylist() == [False, False]


def test_parse_jalali_array_every_day_1300_to_1500_matches_jdatetime() -> None:
    """Every y/m/d with d up to 31, so validation is checked along with conversion."""
    raw: list[str] = []
    expected: list[dt.date | None] = []
    for y in range(1300, 1501):
        for m in range(1, 13):
            for d in range(1, 32):
                raw.append(f"{y}/{m:02d}/{d:02d}")
                try:
                    expected.append(jdatetime.date(y, m, d).togregorian())
                except ValueError:
                    expected.append(None)
    values, bad = parse_jalali_array(pa.array(raw))
    assert values.to_pylist() == expected
    assert bad.to_pylist() == [e is None for e in expected]
    assert sum(e is not None for e in expected) == len(range(1300, 1501)) * 365 + sum(
        is_jalali_leap(y) for y in range(1300, 1501)
    )


def test_parse_jalali_array_leap_rule_all_years() -> None:
    years = range(1, 9378)
    raw = [f"{y:04d}/12/30" for y in years] + [f"{y:04d}/01/01" for y in years]
    values, bad = parse_jalali_array(pa.array(raw))
    expected: list[dt.date | None] = []
    for text in raw:
        y, m, d = map(int, text.split("/"))
        try:
            expected.append(jdatetime.date(y, m, d).togregorian())
        except ValueError:
            expected.append(None)
    assert values.to_pylist() == expected
    assert bad.to_pylist() == [e is None for e in expected]
    assert [is_jalali_leap(y) for y in years] == [jdatetime.date(y, 1, 1).isleap() for y in years]


# --- to_jalali_string ----------------------------------------------------------------------


def test_to_jalali_string() -> None:
    assert to_jalali_string(MORDAD_12_1402) == "1402/05/12"
    assert to_jalali_string(MORDAD_12_1402, digits="fa") == "۱۴۰۲/۰۵/۱۲"
    assert to_jalali_string(dt.date(2025, 3, 20)) == "1403/12/30"
    assert to_jalali_string(dt.datetime(2023, 8, 3, 14, 30, 5)) == "1402/05/12 14:30:05"
    with pytest.raises(ValueError, match="digits"):
        to_jalali_string(MORDAD_12_1402, digits="ar")  # type: ignore[arg-type]


def test_to_jalali_string_round_trips() -> None:
    start = dt.date(2020, 1, 1)
    for offset in range(0, 2000, 7):
        day = start + dt.timedelta(days=offset)
        assert parse_jalali(to_jalali_string(day)) == day
        assert parse_jalali(to_jalali_string(day, digits="fa")) == day
    moment = dt.datetime(2024, 3, 19, 23, 5, 9)
    assert parse_jalali_datetime(to_jalali_string(moment, digits="fa")) == moment
