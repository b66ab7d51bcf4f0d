"""Write access: who may change what, and a record of every attempt.

Reading is public; every write needs an API key (`Authorization: Bearer shahr_...`, made with
`shahr keys create`). No key, a malformed, unknown, revoked or expired key: 401 with
`WWW-Authenticate: Bearer` (RFC 6750). A publisher key writes only its organisation's
datasets: 403 for another's. `AuditedRoute` writes every write request — accepted or
refused — to the audit log (catalog/audit.py) with its key, target and status."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from api.logs import current_request_id
from api.problems import Problem, problem_response
from catalog.audit import AuditRecord, record
from catalog.database import session_scope
from catalog.keys import Refusal, Writer, check_token

log = logging.getLogger("shahr.audit")
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
REALM = 'Bearer realm="shahr"'
REFUSALS = {
    "malformed": "the bearer token is not a Shahr API key (shahr_<prefix>_<secret>)",
    "unknown": "the API key is not valid",
    "revoked": "the API key has been revoked",
    "expired": "the API key has expired",
}

bearer = HTTPBearer(
    auto_error=False, scheme_name="apiKey", bearerFormat="shahr_<prefix>_<secret>",
    description="An API key from `shahr keys create`, sent as `Authorization: Bearer "
                "shahr_...`. Admin keys write everything; publisher keys their organisation's "
                "datasets.")


class AuthProblem(Problem):
    """A refused request, with the headers RFC 6750 asks for."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str]) -> None:
        super().__init__(status, title, detail)
        self.headers = headers


def unauthorised(detail: str, *, invalid: bool = False) -> AuthProblem:
    challenge = REALM
    if invalid:
        challenge += f', error="invalid_token", error_description="{detail}"'
    return AuthProblem(401, "Unauthorized", detail, {"WWW-Authenticate": challenge})


def forbidden(detail: str) -> AuthProblem:
    return AuthProblem(403, "Forbidden", detail,
                       {"WWW-Authenticate": f'{REALM}, error="insufficient_scope"'})


def _check(url: str, token: str) -> Writer | Refusal:
    with session_scope(url) as s:
        return check_token(s, token)


async def current_writer(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Writer:
    """The key's holder, or 401."""
    if credentials is None:
        raise unauthorised("this endpoint changes data and needs an API key: send "
                           "`Authorization: Bearer <key>` (an administrator makes keys with "
                           "`shahr keys create`)")
    found = await run_in_threadpool(_check, request.app.state.database_url,
                                    credentials.credentials)
    if isinstance(found, Refusal):
        request.state.refused_key = found
        raise unauthorised(REFUSALS[found.reason], invalid=True)
    request.state.writer = found
    return found


WriterDep = Annotated[Writer, Depends(current_writer)]


async def require_admin(writer: WriterDep) -> Writer:
    if not writer.is_admin:
        raise forbidden("this needs an admin key; publisher keys write their organisation's "
                        "datasets only")
    return writer


AdminDep = Annotated[Writer, Depends(require_admin)]


def require_publisher_of(writer: Writer, organisation: str) -> None:
    """403 unless `writer` is an admin or publishes for `organisation`."""
    if not writer.may_publish_for(organisation):
        raise forbidden(f"this key publishes for organisation {writer.organisation!r}; this "
                        f"dataset belongs to {organisation!r}")


def set_target(request: Request, target: str) -> None:
    """Name what a write acts on, for the audit log (default: the path's parameters)."""
    request.state.audit_target = target


class AuditedRoute(APIRoute):
    """Answers refusals with their WWW-Authenticate header, and logs every write request
    (who, what, when, status) after it is answered or refused."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()
        audited = bool(self.methods & WRITE_METHODS)
        action = self.name

        async def route(request: Request) -> Response:
            status, result = 500, "internal error"
            try:
                response = await handler(request)
                status, result = response.status_code, "ok"
                return response
            except AuthProblem as exc:
                status, result = exc.status, exc.detail
                response = problem_response(request, exc.status, exc.title, exc.detail)
                response.headers.update(exc.headers)
                return response
            except Problem as exc:
                status, result = exc.status, exc.detail
                raise
            except RequestValidationError as exc:
                status, result = 400, f"invalid request: {_first_error(exc)}"
                raise
            except HTTPException as exc:
                status, result = exc.status_code, str(exc.detail)
                raise
            finally:
                if audited:
                    try:
                        await _audit(request, action, status, result)
                    except Exception:  # the answer stands; the log says the record is missing
                        log.exception("audit record of %s %s (status %s) was not written",
                                      request.method, request.url.path, status)

        return route


def _first_error(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "?"
    e = errors[0]
    return f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"


async def _audit(request: Request, action: str, status: int, result: str) -> None:
    writer: Writer | None = getattr(request.state, "writer", None)
    refused: Refusal | None = getattr(request.state, "refused_key", None)
    params: dict[str, Any] = request.path_params
    target = getattr(request.state, "audit_target", None) or (
        ",".join(f"{v}" for v in params.values()) or None)
    entry = AuditRecord(
        action=action, method=request.method, path=request.url.path, status=status,
        result=result, target=target,
        key_id=writer.key_id if writer else (refused.key_id if refused else None),
        key_prefix=writer.prefix if writer else (refused.prefix if refused else None),
        role=writer.role if writer else None,
        organisation=writer.organisation if writer else None,
        request_id=current_request_id() or request.headers.get("x-request-id"),
        client_ip=request.client.host if request.client else None)
    await run_in_threadpool(record, request.app.state.engine, entry)
