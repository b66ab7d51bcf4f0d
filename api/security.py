"""Security headers on every response, and CORS.

Every response: `X-Content-Type-Options: nosniff` and `Referrer-Policy`. HTML pages also get
a Content-Security-Policy that allows only this site ('self') plus the basemap's tile host
for images; scripts and styles may be inline (the pages and folium's maps are built with
inline scripts) but come from nowhere else. Pages may be framed only by this site
(`frame-ancestors 'self'`, `X-Frame-Options: SAMEORIGIN`), except maps (`/maps/...`), which
are made to be embedded in other sites' pages: any site may frame them.

CORS (SHAHR_CORS_ORIGINS, default `*`): open data is read from other sites' pages, so by
default any origin may GET, HEAD and POST (POST search, CKAN actions) without credentials.
API keys travel in the Authorization header, which a browser never adds by itself, so
allowing it cross-origin opens no CSRF hole. Other methods (publishing) are not offered to
browsers on other origins.

Request bodies (POST search, CKAN actions) are capped at SHAHR_MAX_BODY_BYTES with a 413
problem document. A route that takes more (uploads) says so with FastAPI's own
`max_body_size=` on the route or router; that limit is honoured here."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.middleware.cors import CORSMiddleware

from api.problems import problem_response
from catalog.settings import Settings

OSM_ORIGIN = "https://tile.openstreetmap.org"
EMBEDDABLE = ("/maps/",)  # path prefixes other sites may frame
# FastAPI's /docs and /redoc load Swagger UI / ReDoc from this CDN.
DOCS_PATHS = ("/docs", "/redoc")
DOCS_SOURCES = "https://cdn.jsdelivr.net"
DOCS_IMAGES = "https://fastapi.tiangolo.com"
EXPOSED = ["ETag", "Last-Modified", "Link", "Content-Crs", "Content-Disposition",
           "X-Request-ID", "X-Shahr-Version", "Retry-After", "RateLimit-Limit",
           "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"]
ALLOWED_HEADERS = ["Authorization", "Content-Type", "Accept", "Accept-Language",
                   "If-None-Match", "If-Modified-Since", "Range", "X-Request-ID"]
_HOST = re.compile(r"^(\*\.)?[A-Za-z0-9.-]+(:\d+)?$")


def tile_origin(template: str) -> str | None:
    """The CSP source of an XYZ tile URL template (`{s}` as a wildcard subdomain); None for
    `osm`-style names and anything that is not an http(s) URL."""
    if template == "osm":
        return OSM_ORIGIN
    try:
        parts = urlsplit(template)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    host = parts.netloc.replace("{s}.", "*.", 1) if parts.netloc.startswith("{s}.") \
        else parts.netloc
    return f"{parts.scheme}://{host}" if _HOST.match(host) else f"{parts.scheme}:"


class SecurityHeaders:
    """Pure ASGI: adds the headers as the response starts (no body buffering)."""

    def __init__(self, app: Any, *, basemap: str) -> None:
        self.app = app
        self.basemap_origin = tile_origin(basemap)
        self.common = [(b"x-content-type-options", b"nosniff"),
                       (b"referrer-policy", b"strict-origin-when-cross-origin")]

    def csp(self, path: str, query: bytes) -> bytes:
        images = ["'self'", "data:", "blob:"]
        if self.basemap_origin:
            images.append(self.basemap_origin)
        if b"basemap=" in query:  # a map may be asked for with another basemap
            for value in parse_qs(query.decode("latin-1")).get("basemap", [])[:1]:
                origin = tile_origin(value)
                if origin and origin not in images:
                    images.append(origin)
        scripts = "'self' 'unsafe-inline'"
        if path.startswith(DOCS_PATHS):
            scripts += f" {DOCS_SOURCES}"
            images.append(DOCS_IMAGES)
        frame = "*" if path.startswith(EMBEDDABLE) else "'self'"
        policy = (f"default-src 'self'; script-src {scripts}; style-src {scripts}; "
                  f"img-src {' '.join(images)}; font-src 'self' data:; "
                  f"connect-src 'self'; worker-src 'self' blob:; object-src 'none'; "
                  f"base-uri 'self'; form-action 'self'; frame-ancestors {frame}")
        return policy.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), *self.common]
                if _is_html(headers):
                    path = scope["path"]
                    headers.append((b"content-security-policy",
                                    self.csp(path, scope.get("query_string", b""))))
                    if not path.startswith(EMBEDDABLE):
                        headers.append((b"x-frame-options", b"SAMEORIGIN"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_html(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.startswith(b"text/html")
    return False


class RefuseNul:
    """Pure ASGI: PostgreSQL text cannot hold a NUL character, so a request with one could
    only fail deeper down. In the query it is a 400 naming the parameter; in the path there
    is no such resource (404)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"")
            if "\x00" in scope["path"]:
                response = problem_response(
                    None, 404, "Not found", f"no resource at {scope['path']!r}: a path never "
                    "holds a NUL character (%00)", instance=scope["path"])
                await response(scope, receive, send)
                return
            if b"%00" in query:
                pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
                name = next((k for k, v in pairs if "\x00" in k or "\x00" in v), "query")
                response = problem_response(
                    None, 400, "Bad request", f"{name.replace(chr(0), '')}: holds a NUL "
                    "character (%00), which no parameter accepts", instance=scope["path"],
                    parameter=name.replace("\x00", ""))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised while a body is read (FastAPI passes HTTPExceptions through unchanged)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the {limit:,} bytes accepted "
                              "(SHAHR_MAX_BODY_BYTES); simplify the filter's shapes")


class BodyLimit:
    """Pure ASGI: count the body as the endpoint reads it and stop at the limit (the
    declared Content-Length is refused before reading). The limit is the route's own
    `max_body_size` when it has one (FastAPI puts it in the scope), else `max_bytes`."""

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value) if value.isdigit() else None
                break
        total = 0

        async def limited_receive() -> Any:
            nonlocal total
            limit = scope.get(MAX_BODY_SIZE_SCOPE_KEY) or self.max_bytes
            if declared is not None and declared > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


def install(app: FastAPI, settings: Settings) -> None:
    """The body limit innermost; CORS inside the security headers (so preflights get
    them too)."""
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RefuseNul)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
                           allow_headers=ALLOWED_HEADERS, expose_headers=EXPOSED,
                           allow_credentials=False, max_age=600)
    app.add_middleware(SecurityHeaders, basemap=getattr(settings, "basemap", "osm"))
