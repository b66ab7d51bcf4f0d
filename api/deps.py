"""Request dependencies: the connection pool and the published collections, cached and
refreshed when the catalogue changes (checked at most once a second)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import Depends, Path, Request
from psycopg_pool import AsyncConnectionPool

from api.problems import bad_request, not_found
from catalog.collections import CATALOGUE_STAMP, Collection, load_collections_async


class CollectionCache:
    """slug -> Collection, reloaded when a load publishes (max(modified) or count change)."""

    def __init__(self, ttl: float = 1.0) -> None:
        self.ttl = ttl
        self._stamp: str | None = None
        self._checked = 0.0
        self._items: dict[str, Collection] = {}
        self._lock = asyncio.Lock()

    async def get(self, pool: AsyncConnectionPool) -> dict[str, Collection]:
        if time.monotonic() - self._checked < self.ttl and self._stamp is not None:
            return self._items
        async with self._lock:
            if time.monotonic() - self._checked < self.ttl and self._stamp is not None:
                return self._items
            async with pool.connection() as conn:
                cur = await conn.execute(CATALOGUE_STAMP)
                row = await cur.fetchone()
                stamp = row[0] if row else ""
                if stamp != self._stamp:
                    self._items = await load_collections_async(conn)
                    self._stamp = stamp
            self._checked = time.monotonic()
        return self._items

    def invalidate(self) -> None:
        self._stamp = None


def single_params(request: Request) -> dict[str, str]:
    """The query parameters as a dict, each given once: a repeated one is a 400 (every
    route reads one value per name, so a second would be silently ignored)."""
    params: dict[str, str] = {}
    for k, v in request.query_params.multi_items():
        if k in params:
            raise bad_request(f"parameter {k!r} is given more than once", parameter=k)
        params[k] = v
    return params


async def get_pool(request: Request) -> AsyncConnectionPool:
    # async on purpose: FastAPI runs a plain `def` dependency in a thread, a hop that cost
    # 10-30% of a small request's time.
    return request.app.state.pool


PoolDep = Annotated[AsyncConnectionPool, Depends(get_pool)]


async def get_collections(request: Request) -> dict[str, Collection]:
    return await request.app.state.collections.get(request.app.state.pool)


CollectionsDep = Annotated[dict[str, Collection], Depends(get_collections)]


CollectionId = Annotated[str, Path(description="The dataset's slug")]


async def get_collection(request: Request, collection_id: CollectionId) -> Collection:
    return await collection_of(request, collection_id)


async def collection_of(request: Request, collection_id: str) -> Collection:
    """The published collection `collection_id`, or a 404 naming the ones there are. (The
    busiest routes call this directly rather than through `CollectionDep`: FastAPI's
    dependency solving is a tenth of a small request's time.)"""
    collections = await get_collections(request)
    found = collections.get(collection_id)
    if found is None:
        known = ", ".join(sorted(collections)) or "none yet"
        raise not_found(f"no collection {collection_id!r}; collections: {known}")
    return found


CollectionDep = Annotated[Collection, Depends(get_collection)]
