"""The FastAPI application factory. The database engine is opened in the lifespan and kept
on `app.state` (as tipg does), so tests can build apps against their own databases."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api import metrics, openapi, problems, security
from api.deps import CollectionCache
from api.logs import RequestContext
from api.pool import PublicPool
from api.query import Caps
from api.ratelimit import RateLimit
from api.routes import analytics as analytics_routes
from api.routes import (
    ckan,
    datasets,
    downloads,
    features,
    health,
    participation,
    standards,
    tiles,
    versions,
)
from api.routes import maps as map_pages
from api.routes import publish as publishing
from catalog.bootstrap import resolve_database
from catalog.database import get_engine, libpq_dsn
from catalog.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = resolve_database(settings, start=False).url
        app.state.database_url = url
        app.state.engine = get_engine(url)
        # Public queries: read-only role, statement timeout, quick 503s (api/pool.py).
        app.state.pool = PublicPool(
            libpq_dsn(settings.reader_database_url or url),
            role=None if settings.reader_database_url else settings.reader_role,
            statement_timeout_ms=settings.statement_timeout_ms, max_size=settings.pool_size,
            timeout=settings.pool_timeout_s)
        await app.state.pool.open(wait=False)
        app.state.collections = CollectionCache()
        # Everything loaded so far (the modules, settings, tile matrix sets, ...) lives as
        # long as the process: out of the garbage collector's sight, a full collection no
        # longer walks it, which took 100 ms and more in the middle of requests (p99).
        gc.collect()
        gc.freeze()
        yield
        await app.state.pool.close()
        app.state.engine.dispose()

    app = FastAPI(
        title="Shahr",
        summary="Municipal open data: catalogue, OGC API Features and maps (fa/en).",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    problems.install(app)
    # Limits and operations (docs/operations.md); added inner first, so the request context
    # (id, access log, metrics) is the outermost and sees every response, 429s included.
    app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute,
                       key_per_minute=settings.rate_limit_key_per_minute,
                       exempt=settings.rate_limit_exempt)
    security.install(app, settings)
    app.add_middleware(RequestContext, caps=Caps(settings.max_filter_bytes, settings.max_vertices))
    if settings.trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    openapi.install(app)
    app.include_router(metrics.router)
    app.include_router(health.router)
    app.include_router(datasets.router)
    app.include_router(features.router)
    app.include_router(tiles.router)
    app.include_router(downloads.router)
    app.include_router(versions.router)
    app.include_router(standards.router)
    app.include_router(ckan.router)
    app.include_router(publishing.router)  # write access (docs/publishing.md)
    app.include_router(map_pages.router)
    app.include_router(analytics_routes.router)  # spatial analyses (docs/analytics.md)
    app.include_router(participation.router)  # requests and reports (docs/participation.md)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static", check_dir=False),
              name="static")  # vendored map libraries (make assets) and the pages' CSS/JS
    return app
