"""HTML for people: content negotiation (f=html or a browser's Accept header) and Jinja2
rendering with the page language and direction (fa is right-to-left)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


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
    lang = request.query_params.get("lang")
    if lang in ("fa", "en"):
        return lang
    return "fa" if request.headers.get("accept-language", "").lower().startswith("fa") else "en"


def render(request: Request, template: str, context: dict[str, Any],
           status_code: int = 200) -> HTMLResponse:
    lang = page_lang(request)
    return TEMPLATES.TemplateResponse(
        request, template, {"lang": lang, "dir": "rtl" if lang == "fa" else "ltr", **context},
        status_code=status_code)
