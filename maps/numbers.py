"""Numbers as a reader of each language writes them: grouped thousands, a few significant
decimals, and Persian digits and separators in Persian."""

from __future__ import annotations

from babel.numbers import format_decimal

_PERSIAN = str.maketrans({**{str(d): "۰۱۲۳۴۵۶۷۸۹"[d] for d in range(10)},
                          ",": "٬", ".": "٫", "-": "−"})


def format_number(value: float, lang: str) -> str:
    v = float(value)
    pattern = "#,##0" if abs(v) >= 100 or v == int(v) else "#,##0.##"
    text = format_decimal(v, format=pattern, locale="en")
    return text.translate(_PERSIAN) if lang == "fa" else text


def persian_digits(text: str) -> str:
    return text.translate(str.maketrans({str(d): "۰۱۲۳۴۵۶۷۸۹"[d] for d in range(10)}))
