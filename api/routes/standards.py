"""The catalogue in the open-data metadata standards harvesters read: DCAT-AP 3 as JSON-LD
(``/catalog.jsonld``) and Turtle (``/catalog.ttl``), and DCAT-US 1.1 (``/data.json``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api.routes.features import base_url
from catalog import metadata as md

router = APIRouter(tags=["metadata standards"])


async def _records(request: Request) -> list[dict[str, Any]]:
    async with request.app.state.pool.connection() as conn:
        return await md.load_records(conn)


def _jsonld(records: list[dict[str, Any]], base: str) -> str:
    return md.to_jsonld(md.dcat_graph(records, base))


def _turtle(records: list[dict[str, Any]], base: str) -> str:
    return md.to_turtle(md.dcat_graph(records, base))


@router.get("/catalog.jsonld", summary="The catalogue as DCAT-AP 3 in JSON-LD",
            response_class=Response)
async def catalog_jsonld(request: Request) -> Response:
    # rdflib is pure Python: build and serialise off the event loop.
    text = await run_in_threadpool(_jsonld, await _records(request), base_url(request))
    return Response(text, media_type="application/ld+json")


@router.get("/catalog.ttl", summary="The catalogue as DCAT-AP 3 in Turtle",
            response_class=Response)
async def catalog_turtle(request: Request) -> Response:
    text = await run_in_threadpool(_turtle, await _records(request), base_url(request))
    return Response(text, media_type="text/turtle; charset=utf-8")


@router.get("/data.json", summary="The catalogue as DCAT-US 1.1 (Project Open Data)")
async def data_json(request: Request) -> JSONResponse:
    return JSONResponse(md.dcat_us(await _records(request), base_url(request)))
