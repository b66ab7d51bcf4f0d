"""Links in responses: the public base URL (configured, or the request's) and OGC-style
link objects, shared by every router."""

from __future__ import annotations

from fastapi import Request


def base_url(request: Request) -> str:
    configured = request.app.state.settings.base_url
    if configured:
        return configured.rstrip("/")
    # Starlette builds a URL object per call; the answer depends only on these.
    scope = request.scope
    key = (scope.get("scheme"), scope.get("server"), scope.get("root_path", ""),
           _host(scope["headers"]))
    found = _BASES.get(key)
    if found is None:
        if len(_BASES) > 256:
            _BASES.clear()
        found = _BASES[key] = str(request.base_url).rstrip("/")
    return found


_BASES: dict[tuple[object, ...], str] = {}


def _host(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"host":
            return value
    return None


def link(href: str, rel: str, type_: str, title: str | None = None) -> dict[str, str]:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out
