"""Liveness and readiness: is the process up; can it serve (database, PostGIS, migrations)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from catalog.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable and migrated to head")
def readyz(request: Request) -> JSONResponse:
    url: str = request.app.state.database_url
    checks: dict[str, object] = {}
    try:
        with request.app.state.engine.connect() as conn:
            checks["postgis"] = conn.execute(text("SELECT postgis_lib_version()")).scalar()
            checks["datasets"] = conn.execute(text(
                "SELECT count(*) FROM catalog.datasets WHERE current_version_id IS NOT NULL"
            )).scalar()
        current, head = current_revision(url), head_revision()
        checks["migration"] = current
        checks["migration_head"] = head
        ready = current == head
    except SQLAlchemyError as exc:
        checks["error"] = f"database unreachable: {type(exc.orig or exc).__name__}"
        ready = False
    pool = request.app.state.pool
    checks["pool"] = "up" if pool.healthy else "database away"
    checks["public_queries_as"] = pool.identity
    status = "ready" if ready else "not ready"
    return JSONResponse({"status": status, **checks}, status_code=200 if ready else 503)
