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
    """`f=html`, or a browser whose Accept header puts text/html before any JSON type."""
    f = request.query_params.get("f")
    if f is not None:
        return f.lower() == "html"
    accept = request.headers.get("accept", "").lower()
    if "text/html" not in accept:
        return False
    json_at = accept.find("json") if "json" in accept else len(accept)
    return accept.find("text/html") < json_at


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
