"""The OpenAPI document says what errors look like: RFC 9457 problem documents.

FastAPI documents a 422 with its own error shape for every operation with parameters, but
Shahr answers invalid input with a 400 problem document (api/problems.py), so that entry
would lie to clients and to contract tests (tests/api/test_fuzz.py). It is replaced by the
problem responses every operation may give: 400 (bad parameter), 404, 413 (body too large,
where there is a body), 429 (rate limit, with Retry-After) and 503 (database away or query
too slow), and a `default` problem for anything else. The CKAN action API answers its own
errors as CKAN does (`{"success": false, "error": {...}}`, application/json): documented so."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

PROBLEM = "application/problem+json"
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details; `parameter` names the parameter at fault.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "parameter": {"type": "string"},
    },
    "additionalProperties": True,
}
REF = {"$ref": "#/components/schemas/Problem"}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again",
                               "schema": {"type": "integer"}}}
RESPONSES: dict[str, str] = {
    "400": "Bad request: a parameter is wrong; the problem says which and what is accepted",
    "404": "No such resource",
    "429": "Too many requests from this client (see the RateLimit-* headers)",
    "503": "The database is not reachable, or the query took too long",
    "default": "Any other error, as a problem document",
}
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
CKAN_PREFIX = "/api/3/action/"
CKAN_ERROR: dict[str, Any] = {
    "type": "object",
    "title": "CkanError",
    "description": "A CKAN action API error: success is false, error says why.",
    "required": ["success", "error"],
    "properties": {"help": {"type": "string"}, "success": {"const": False},
                   "error": {"type": "object", "required": ["__type"],
                             "properties": {"__type": {"type": "string"},
                                            "message": {"type": "string"}}}},
}
CKAN_RESPONSES = {"400": "Unknown action or bad parameter", "403": "A write action",
                  "404": "Not found", "409": "Validation or search query error"}


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {PROBLEM: {"schema": REF}}}
    if headers:
        response["headers"] = headers
    return response


def _ckan(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/CkanError"}}}}


def add_problems(doc: dict[str, Any]) -> dict[str, Any]:
    """Put the problem responses into an OpenAPI document (in place) and return it."""
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method not in HTTP_METHODS or not isinstance(op, dict):
                continue
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            if path.startswith(CKAN_PREFIX):
                for code, description in CKAN_RESPONSES.items():
                    responses.setdefault(code, _ckan(description))
            for code, description in RESPONSES.items():
                headers = RETRY_AFTER if code in ("429", "503") else None
                responses.setdefault(code, _problem(description, headers))
            if "requestBody" in op:
                responses.setdefault("413", _problem("The request body is too large"))
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Problem", PROBLEM_SCHEMA)
    if any(p.startswith(CKAN_PREFIX) for p in doc.get("paths", {})):
        schemas.setdefault("CkanError", CKAN_ERROR)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return doc


def install(app: FastAPI) -> None:
    """Wrap `app.openapi` (whatever builds it) so the document carries the problems."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_problems(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
