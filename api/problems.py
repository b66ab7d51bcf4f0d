"""RFC 9457 problem details: every error a client can cause is a `problem+json` document
saying what was wrong and what is accepted. One table maps exceptions to status codes (as
tipg's errors.py does), so no request ends in a bare 500."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.logs import current_request_id

log = logging.getLogger("shahr.api")
PROBLEM = "application/problem+json"


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


def bad_request(detail: str, **extra: Any) -> Problem:
    return Problem(400, "Bad request", detail, **extra)


def not_found(detail: str) -> Problem:
    return Problem(404, "Not found", detail)


def problem_response(request: Request | None, status: int, title: str, detail: str,
                     **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            **({"instance": str(request.url.path)} if request is not None else {}), **extra}
    rid = current_request_id()  # the X-Request-ID of this request (api/logs.py)
    if rid is not None:
        body["request_id"] = rid
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        where = loc[-1] if loc else "request"
        kind = loc[0] if loc else ""
        errors.append({"parameter": where, "in": kind, "message": e.get("msg", "invalid"),
                       "input": str(e.get("input"))[:200] if e.get("input") is not None
                       else None})
    detail = "; ".join(f"{e['parameter']}: {e['message']}" for e in errors)
    return detail or "invalid request", errors


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc.status, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _validation_detail(exc)
        return problem_response(request, 400, "Bad request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed", 406: "Not acceptable",
                 413: "Content too large"}.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no resource at {request.url.path}; the landing page / lists what is here"
        return problem_response(request, exc.status_code, title, detail)

    @app.exception_handler(psycopg.DataError)
    async def _bad_value(request: Request, exc: psycopg.Error) -> JSONResponse:
        # A value the database cannot take (a NUL character, an overflow, ...): the
        # request's fault wherever it was not caught more precisely.
        message = (exc.diag.message_primary if isinstance(exc, psycopg.errors.DataError)
                   else None) or str(exc).splitlines()[0]
        log.info("value refused by the database: %s", message)
        return problem_response(request, 400, "Bad request",
                                f"a value in the request cannot be used: {message}")

    @app.exception_handler(psycopg.errors.QueryCanceled)
    async def _timeout(request: Request, exc: psycopg.Error) -> JSONResponse:
        response = problem_response(request, 503, "Query took too long",
                                    "the query was stopped by the statement timeout; narrow "
                                    "it with bbox, filter or a smaller limit")
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(psycopg.OperationalError)
    async def _db_down(request: Request, exc: psycopg.Error) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        response = problem_response(request, 503, "Service unavailable",
                                    "the database is not reachable right now; try again "
                                    "shortly")
        response.headers["Retry-After"] = "5"
        return response

    app.add_middleware(CatchAll)


class CatchAll:
    """Last resort, as pure ASGI: log an unexpected error and answer with a problem document
    instead of letting it reach the server (which would reset the client's connection)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unexpected error on %s", scope.get("path"))
            if started:
                raise
            response = problem_response(None, 500, "Internal error",
                                        "an unexpected error happened; it has been logged",
                                        instance=scope.get("path"))
            await response(scope, receive, send)
