"""Links in responses: the public base URL (configured, or the request's) and OGC-style
link objects, shared by every router."""

from __future__ import annotations

from fastapi import Request


def base_url(request: Request) -> str:
    configured = request.app.state.settings.base_url
    return (configured or str(request.base_url)).rstrip("/")


def link(href: str, rel: str, type_: str, title: str | None = None) -> dict[str, str]:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out
