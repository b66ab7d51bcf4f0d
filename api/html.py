"""HTML for people: content negotiation (f=html or a browser's Accept header) and Jinja2
rendering in the request's language (api.i18n: Babel catalogues through jinja2.ext.i18n),
with the direction, the language switch and the links every page's layout needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context

from api import i18n
from api.links import base_url
from api.problems import bad_request

TEMPLATE_DIR = Path(__file__).parent / "templates"
ENV = Environment(
    loader=FileSystemLoader(str(TEMPLATE_DIR)),
    autoescape=select_autoescape(["html", "xml"], default_for_string=True),
    extensions=["jinja2.ext.i18n"],
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.install_gettext_callables(  # type: ignore[attr-defined]
    i18n.gettext, i18n.ngettext, newstyle=True, pgettext=i18n.pgettext,
    npgettext=i18n.npgettext)
TEMPLATES = Jinja2Templates(env=ENV)
HTML_VARY = "Accept, Accept-Language, Cookie"
OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"


def wants_html(request: Request) -> bool:
    """`f=html`, or an Accept header that prefers text/html to every JSON type (by quality,
    then by order), as a browser's does; anything else gets JSON."""
    f = request.query_params.get("f")
    if f is not None:
        return f.lower() == "html"
    html, json_ = _quality(request.headers.get("accept", ""))
    if html == 0:
        return False
    if html != json_:
        return html > json_
    return _html_first(request)


def _quality(accept: str) -> tuple[float, float]:
    """The best quality given to text/html and to any JSON type (0 when not named)."""
    html = json_ = 0.0
    for part in accept.lower().split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = max(0.0, min(1.0, float(p[2:])))
                except ValueError:
                    q = 0.0
        if media in ("text/html", "application/xhtml+xml"):
            html = max(html, q)
        elif media.endswith("json") or media.endswith("+json"):
            json_ = max(json_, q)
    return html, json_


def _html_first(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    html_at = min(i for i in (accept.find("text/html"), accept.find("xhtml"), len(accept))
                  if i >= 0)
    return html_at < (accept.find("json") if "json" in accept else len(accept))


def page_lang(request: Request) -> str:
    """The language JSON responses sort titles in (unchanged: ?lang=, else fa when
    Accept-Language starts with it, else en). Pages use `choose_lang`."""
    lang = request.query_params.get("lang")
    if lang in ("fa", "en"):
        return lang
    return "fa" if request.headers.get("accept-language", "").lower().startswith("fa") else "en"


def choose_lang(request: Request) -> i18n.Choice:
    """A page's language (api.i18n.negotiate); an unknown ?lang= is a 400 problem."""
    default = getattr(request.app.state.settings, "default_lang", "fa")
    try:
        return i18n.negotiate(request, default)
    except i18n.UnknownLanguage as exc:
        raise bad_request(str(exc), parameter="lang") from None


# --- what templates may call ---------------------------------------------------------------


def url(request: Request, path: str, params: list[tuple[str, str]] | None = None) -> str:
    """An absolute link on this service (SHAHR_BASE_URL or the request's)."""
    query = urlencode(params or [])
    return f"{base_url(request)}{path}" + (f"?{query}" if query else "")


def with_params(request: Request, *, drop: tuple[str, ...] = (),
                add: list[tuple[str, str]] | None = None) -> str:
    """This page's URL with some parameters dropped and others added."""
    keep = [(k, v) for k, v in request.query_params.multi_items() if k not in drop]
    return url(request, request.url.path, keep + (add or []))


@pass_context
def _pick(ctx: Context, pair: Any) -> str:
    """The page language's text of a {fa, en} pair, else the other one."""
    if not isinstance(pair, dict):
        return "" if pair is None else str(pair)
    lang = ctx.get("lang", "en")
    other = "en" if lang == "fa" else "fa"
    return pair.get(lang) or pair.get(other) or ""


@pass_context
def _digits(ctx: Context, value: Any) -> str:
    return i18n.digits(value, ctx.get("lang", "en"))


@pass_context
def _num(ctx: Context, value: Any, decimals: int | None = None) -> str:
    return i18n.number(value, ctx.get("lang", "en"), decimals)


@pass_context
def _date(ctx: Context, value: Any) -> str:
    return i18n.show_date(value, ctx.get("lang", "en"))


@pass_context
def _datetime(ctx: Context, value: Any) -> str:
    return i18n.show_date(value, ctx.get("lang", "en"), time=True)


def _label(value: Any, kind: str) -> str:
    return i18n.gettext(i18n.label(kind, value)) if value not in (None, "") else ""


def _filesize(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return i18n.digits(f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}",
                               i18n.current())
        size /= 1024
    return ""


ENV.filters.update(digits=_digits, num=_num, date=_date, datetime=_datetime, label=_label,
                   filesize=_filesize)
ENV.globals.update(pick=_pick, iso_date=i18n.iso_date)


def basemap_url(request: Request) -> str:
    """The XYZ template the pages' own small maps draw under the data (SHAHR_BASEMAP: osm,
    none, or a template); empty for none."""
    basemap = getattr(request.app.state.settings, "basemap", "osm") or "none"
    if basemap == "none":
        return ""
    return OSM_TILES if basemap == "osm" else basemap


def render(request: Request, template: str, context: dict[str, Any],
           status_code: int = 200) -> HTMLResponse:
    """The page in the negotiated language, with the layout's links (language switch, this
    page as JSON, home, search); a ?lang= choice is remembered in a cookie."""
    choice = choose_lang(request)
    lang = choice.lang
    other = "en" if lang == "fa" else "fa"
    base = base_url(request)
    ctx = {
        "request": request, "lang": lang, "dir": i18n.direction(lang), "other_lang": other,
        "base": base, "static": f"{base}/static",
        "lang_href": with_params(request, drop=("lang",), add=[("lang", other)]),
        "json_href": with_params(request, drop=("f", "lang"), add=[("f", "json")]),
        "path": request.url.path, "basemap_url": basemap_url(request),
        **context,
    }
    with i18n.language(lang):
        body = ENV.get_template(template).render(ctx)
    response = HTMLResponse(body, status_code=status_code)
    response.headers["Vary"] = HTML_VARY
    response.headers["Content-Language"] = lang
    if choice.remember:
        response.set_cookie(i18n.COOKIE, lang, max_age=i18n.COOKIE_MAX_AGE, path="/",
                            samesite="lax", httponly=True)
    return response
