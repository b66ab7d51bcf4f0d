"""The FastAPI application factory. The database engine is opened in the lifespan and kept
on `app.state` (as tipg does), so tests can build apps against their own databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from api import problems
from api.deps import CollectionCache
from api.routes import ckan, datasets, downloads, features, health, standards, tiles, versions
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
        app.state.pool = AsyncConnectionPool(
            libpq_dsn(url), min_size=1, max_size=settings.pool_size, open=False,
            kwargs={"autocommit": True,
                    "options": f"-c statement_timeout={settings.statement_timeout_ms} -c jit=off"})
        await app.state.pool.open(wait=False)
        app.state.collections = CollectionCache()
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
    app.include_router(health.router)
    app.include_router(datasets.router)
    app.include_router(features.router)
    app.include_router(tiles.router)
    app.include_router(downloads.router)
    app.include_router(versions.router)
    app.include_router(standards.router)
    app.include_router(ckan.router)
    return app
