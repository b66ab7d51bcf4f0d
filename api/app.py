"""The FastAPI application factory. The database engine is opened in the lifespan and kept
on `app.state` (as tipg does), so tests can build apps against their own databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.routes import health
from catalog.bootstrap import resolve_database
from catalog.database import get_engine
from catalog.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = resolve_database(settings, start=False).url
        app.state.database_url = url
        app.state.engine = get_engine(url)
        yield
        app.state.engine.dispose()

    app = FastAPI(
        title="Shahr",
        summary="Municipal open data: catalogue, OGC API Features and maps (fa/en).",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(health.router)
    return app
