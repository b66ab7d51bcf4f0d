"""Languages of the web pages. Which one a request gets (``?lang=`` then remembered in a
cookie, else the cookie, else Accept-Language by quality, else the configured default);
Babel message catalogues read from the ``.po`` files when first needed (no compile step
for anyone); and how each language writes numbers, digits and dates (Persian: Persian
digits, Jalali calendar)."""

from __future__ import annotations

import gettext as _gettext
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations
from fastapi import Request

from catalog.jalali import to_jalali_string

LANGS = ("fa", "en")
RTL = frozenset({"fa"})
COOKIE = "shahr_lang"
COOKIE_MAX_AGE = 365 * 24 * 3600
LOCALES = Path(__file__).parent / "locales"
DOMAIN = "messages"
_PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


def N_(message: str) -> str:
    """Marks a message for `pybabel extract` where it is defined; it is translated where it
    is shown (with `_()` in a template)."""
    return message


# Values the catalogue stores as codes, shown by name (translated in the templates).
LABELS: dict[str, dict[str, str]] = {
    "theme": {"land-use": N_("Land use"), "housing": N_("Housing"),
              "infrastructure": N_("Infrastructure"), "traffic": N_("Traffic"),
              "boundaries": N_("Boundaries")},
    "geometry_type": {"point": N_("Points"), "line": N_("Lines"), "polygon": N_("Polygons"),
                      "multipoint": N_("Points"), "linestring": N_("Lines"),
                      "multilinestring": N_("Lines"), "multipolygon": N_("Polygons")},
    "status": {"current": N_("current"), "previous": N_("previous"), "queued": N_("queued"),
               "published": N_("published"), "superseded": N_("superseded"),
               "dropped": N_("dropped"), "succeeded": N_("succeeded"), "failed": N_("failed"),
               "running": N_("running"), "skipped": N_("skipped"), "pending": N_("pending"),
               "loading": N_("loading"), "archived": N_("archived")},
    "type": {"string": N_("text"), "integer": N_("whole number"), "number": N_("number"),
             "boolean": N_("yes/no"), "date": N_("date"), "datetime": N_("date and time")},
    "frequency": {"annual": N_("annually"), "daily": N_("daily"), "weekly": N_("weekly"),
                  "monthly": N_("monthly"),
                  "quarterly": N_("quarterly"), "annually": N_("annually"),
                  "yearly": N_("yearly"), "irregular": N_("irregular"),
                  "continual": N_("continually"), "never": N_("never"),
                  "as-needed": N_("as needed")},
    "sort": {"relevance": N_("Relevance"), "title": N_("Title A–Z"),
             "-title": N_("Title Z–A"), "-modified": N_("Newest first"),
             "modified": N_("Oldest first")},
    "format": {"csv": N_("CSV (spreadsheets, Excel)"), "geojson": N_("GeoJSON"),
               "geojsonseq": N_("GeoJSON text sequence"), "gpkg": N_("GeoPackage (QGIS)"),
               "shp": N_("Shapefile (zipped)"), "kml": N_("KML (Google Earth)"),
               "fgb": N_("FlatGeobuf"), "parquet": N_("GeoParquet"),
               "xlsx": N_("Excel workbook")},
    "facet": {"theme": N_("Theme"), "organisation": N_("Organisation"),
              "keyword": N_("Keyword"), "licence": N_("Licence"),
              "geometry_type": N_("Geometry"), "format": N_("Download format"),
              "bbox": N_("Area"), "q": N_("Words")},
}


def label(kind: str, value: str | None) -> str:
    """The English message for a stored code (translate it with gettext); the code itself
    when it has none."""
    if value is None:
        return ""
    return LABELS.get(kind, {}).get(str(value).lower(), str(value))


# --- which language ------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    lang: str
    remember: bool  # chosen with ?lang=: set the cookie


class UnknownLanguage(ValueError):
    """``?lang=`` names a language the pages are not written in."""


def accept_language(header: str | None) -> list[str]:
    """Our languages in the order an Accept-Language header prefers them (by quality, then
    by order; ``q=0`` refuses; ``*`` is any): "en-GB,fa;q=0.9" -> ["en", "fa"]."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((header or "").split(",")):
        tag, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.lower().startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        primary = tag.split("-")[0].lower()
        if q > 0 and (primary in LANGS or primary == "*"):
            ranked.append((-q, i, primary))
    out: list[str] = []
    for _q, _i, lang in sorted(ranked):
        if lang not in out:
            out.append(lang)
    return out


def negotiate(request: Request, default: str = "fa") -> Choice:
    """?lang= (then remembered), else the cookie, else Accept-Language, else the default."""
    asked = request.query_params.get("lang")
    if asked is not None:
        lang = asked.strip().lower()
        if lang not in LANGS:
            raise UnknownLanguage(f"lang: {asked!r} is not offered; accepted: "
                                  f"{', '.join(LANGS)}")
        return Choice(lang, remember=True)
    cookie = request.cookies.get(COOKIE)
    if cookie in LANGS:
        return Choice(cookie, remember=False)
    for lang in accept_language(request.headers.get("accept-language")):
        return Choice(default if lang == "*" else lang, remember=False)
    return Choice(default, remember=False)


def direction(lang: str) -> str:
    return "rtl" if lang in RTL else "ltr"


# --- message catalogues --------------------------------------------------------------------


def po_path(lang: str) -> Path:
    return LOCALES / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(lang: str) -> _gettext.NullTranslations:
    """The language's catalogue, compiled from its .po in memory (so a translator edits the
    .po and restarts; nobody runs `pybabel compile`)."""
    path = po_path(lang)
    if not path.exists():
        return _gettext.NullTranslations()
    with path.open("rb") as f:
        catalog = read_po(f, locale=lang, domain=DOMAIN)
    buf = BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


_current: ContextVar[str] = ContextVar("shahr_lang", default="en")


@contextmanager
def language(lang: str) -> Iterator[None]:
    """Translate into `lang` while rendering (templates call gettext through this)."""
    token = _current.set(lang)
    try:
        yield
    finally:
        _current.reset(token)


def current() -> str:
    return _current.get()


def gettext(message: str) -> str:
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    return translations(_current.get()).pgettext(context, message)


def npgettext(context: str, singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).npgettext(context, singular, plural, n)


# --- numbers, digits, dates ----------------------------------------------------------------


def digits(value: Any, lang: str) -> str:
    """Any text with its digits in the language's script (Persian: ۰-۹)."""
    text = "" if value is None else str(value)
    return text.translate(_PERSIAN) if lang == "fa" else text


def number(value: Any, lang: str, decimals: int | None = None) -> str:
    """A number grouped by thousands as the language writes it (fa: ۱۲٬۳۴۵٫۶)."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return digits(value, lang)
    if decimals is not None:
        value = round(value, decimals)
    # fa's own numbering system (arabext) has the Persian separators: ٬ for thousands, ٫.
    system = "default" if lang == "fa" else "latn"
    return digits(format_decimal(value, locale=lang, group_separator=True,
                                 decimal_quantization=decimals is not None,
                                 numbering_system=system), lang)


def _as_date(value: Any) -> date | datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, date | datetime):
        return value
    text = str(value)
    try:
        return datetime.fromisoformat(text) if len(text) > 10 else date.fromisoformat(text)
    except ValueError:
        return None


def show_date(value: Any, lang: str, *, time: bool = False) -> str:
    """A date (or ISO text) as people read it: fa in the Jalali calendar with Persian digits
    (۱۴۰۲/۰۵/۱۲), en as Babel's medium form (Aug 3, 2023); with `time`, the clock too."""
    d = _as_date(value)
    if d is None:
        return "" if value is None else str(value)
    if not time and isinstance(d, datetime):
        d = d.date()
    if lang == "fa":
        if isinstance(d, datetime):
            return digits(to_jalali_string(d.date(), "en") + f" {d:%H:%M}", "fa")
        return to_jalali_string(d, "fa")
    if isinstance(d, datetime):
        return format_datetime(d, "medium", locale="en", tzinfo=d.tzinfo).replace(
            "\u202f", " ")
    return format_date(d, "medium", locale="en")


def iso_date(value: Any) -> str:
    """For <time datetime="...">."""
    d = _as_date(value)
    return d.isoformat() if d is not None else ""
