"""Structured logs with a request id, and the per-request context the other parts read.

`RequestContext` (pure ASGI, the outermost of our middleware) gives each request an id (the
client's `X-Request-ID` when it is sane, else a new one), echoes it in the response, makes
it available to every log line and problem document of the request (a context variable),
puts the app's request caps where api.query finds them, and when the response is done
writes one access line (method, route, status, duration, request id, client) and counts it
in the metrics. `shahr serve --log-format json` writes every line as one JSON object."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from api import metrics

if TYPE_CHECKING:
    from api.query import Caps

REQUEST_ID: ContextVar[str | None] = ContextVar("shahr_request_id", default=None)
SANE_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")
access_log = logging.getLogger("shahr.access")


def current_request_id() -> str | None:
    return REQUEST_ID.get()


def route_template(scope: dict[str, Any]) -> str:
    """The matched route's path template (/collections/{collection_id}/items), so metrics
    and logs group requests without one series per URL; `unmatched` when nothing matched."""
    route = scope.get("route")
    path = getattr(route, "path", None) if route is not None else None
    return path if isinstance(path, str) else "unmatched"


# Made ids: 16 random hex digits per process, then a counter (unique, and cheaper than a
# uuid4 per request: no system call).
_PREFIX = os.urandom(8).hex()
_counter = itertools.count(1)


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            if SANE_ID.fullmatch(value):
                return value.decode()
            break
    return f"{_PREFIX}{next(_counter):016x}"


class RequestContext:
    """Request id, caps context, access log line and metrics for each HTTP request."""

    def __init__(self, app: Any, *, caps: Caps) -> None:
        from api.query import CAPS  # api.query -> api.problems -> here

        self.app = app
        self.caps = caps
        self.caps_var = CAPS

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope["headers"])
        rid_header = (b"x-request-id", rid.encode())
        token = REQUEST_ID.set(rid)
        self.caps_var.set(self.caps)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            metrics.observe_request(scope["method"], route, status, seconds)
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access_log.info(
                    "%s %s %s %.1fms", scope["method"], scope["path"], status, seconds * 1000,
                    extra={"fields": {
                        "method": scope["method"], "path": scope["path"], "route": route,
                        "status": status, "duration_ms": round(seconds * 1000, 2),
                        "client": client[0] if client else None}})
            REQUEST_ID.reset(token)


# ---- formatting -------------------------------------------------------------------------------

class RequestIdFilter(logging.Filter):
    """Stamp every record with the request id of the request it was written in (if any)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id, and the record's
    `fields` (the access line's method, route, status, ...); exceptions as text."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        rid = getattr(record, "request_id", None)
        if rid:
            obj["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            obj.update(fields)
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger message [request id]` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{text} [{rid}]" if rid else text


def cli_log_choice(settings: Any, log_format: str | None, log_level: str | None
                   ) -> tuple[str, str]:
    """(format, level) of a CLI command's --log-format/--log-level, else the settings';
    a bad one is a usage error naming the option (`shahr serve` and `shahr worker`)."""
    import typer

    fmt, level = log_format or settings.log_format, (log_level or settings.log_level).lower()
    if fmt not in ("text", "json"):
        raise typer.BadParameter(f"{fmt!r}; accepted: text, json", param_hint="--log-format")
    if level not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter(f"{level!r}; accepted: debug, info, warning, error",
                                 param_hint="--log-level")
    return fmt, level


def log_config(fmt: str = "text", level: str = "info") -> dict[str, Any]:
    """A logging.config dict for uvicorn (`log_config=`), applied in every worker: our
    lines and uvicorn's in one format on stdout; uvicorn's own access log is replaced by
    the access lines RequestContext writes."""
    lvl = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "api.logs.RequestIdFilter"}},
        "formatters": {"json": {"()": "api.logs.JsonFormatter"},
                       "text": {"()": "api.logs.TextFormatter"}},
        "handlers": {"out": {"class": "logging.StreamHandler", "formatter": fmt,
                             "filters": ["request_id"], "stream": "ext://sys.stdout"}},
        "root": {"handlers": ["out"], "level": lvl},
        "loggers": {
            "uvicorn": {"handlers": [], "level": lvl, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": lvl, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            # psycopg_pool says "connection requested/given" at INFO for every request
            "psycopg.pool": {"level": lvl if lvl == "DEBUG" else "WARNING"},
        },
    }
