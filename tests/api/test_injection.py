"""SQL injection: CQL2 filters (text and JSON), sort keys, property names, property values,
search text, bbox, CRS, datetimes, CKAN queries and path segments crafted to break SQL are
refused with a 400 (or 404) or treated as plain data. A canary table and the published data
survive every attempt, no answer is a 5xx, none leaks SQL or driver internals, and no
payload makes the database sleep."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

import httpx
import psycopg
import pytest

from catalog.database import libpq_dsn

pytestmark = pytest.mark.usefixtures("demo_loaded")
PROBLEM = "application/problem+json"
CANARY = "public.shahr_canary"
# What a database or driver error would show; our own messages never contain these
# (unless they quote what the request itself sent).
LEAKS = ("at or near", "LINE 1", "psycopg", "sqlstate", "SQLSTATE", "sqlalchemy",
         "Traceback", "pg_catalog", "SELECT ", "select ", "ST_AsGeoJSON", "string_agg",
         "json_build_object", "data.t_", "statement", "current_user")

DROP = "'; DROP TABLE public.shahr_canary; --"
SLEEP = "'||pg_sleep(3)||'"
ITEMS = "/collections/crashes/items"

TEXT_FILTERS = [
    f"severity = '{DROP}",  # unbalanced quote: a syntax error
    "severity = 'x'' OR ''1''=''1'",  # a quote inside the literal: data
    "severity = 'x') OR (1=1",
    "severity = 'x'; DROP TABLE public.shahr_canary",
    '"severity; DROP TABLE public.shahr_canary; --" = 1',
    "severity = 'a' OR pg_sleep(3) = 1",
    "pg_sleep(3)",
    "1 = 1; DELETE FROM catalog.datasets",
    "vehicles > (SELECT count(*) FROM catalog.datasets)",
    "severity IN ('a', (SELECT 'b'))",
    "severity LIKE '%' || (SELECT current_user) || '%'",
    "CASEI(severity) = CASEI('x'' OR 1=1 --')",
    "S_INTERSECTS(geometry, POINT(0 0)); DROP TABLE public.shahr_canary",
    "S_INTERSECTS(geometry, POINT(0 0)) OR 1=1",
    "S_INTERSECTS(geometry, BBOX(0, 0, 1, 1)) --",
    "T_AFTER(date, DATE('2020-01-01'' OR 1=1'))",
    "severity = 'x' /* comment */ OR 1 = 1",
    "severity = $$x$$",
    "severity = E'\\x27'",
    "vehicles = 1e999999",
    "\"geom\" IS NULL OR 1=1",
]
JSON_FILTERS: list[Any] = [
    {"op": "=", "args": [{"property": "severity\"; DROP TABLE public.shahr_canary; --"}, "a"]},
    {"op": "=", "args": [{"property": "severity"}, DROP]},
    {"op": "pg_sleep", "args": [3]},
    {"op": "= 1; DROP TABLE public.shahr_canary; --", "args": [1, 1]},
    {"op": "like", "args": [{"property": "severity"}, f"%{DROP}%"]},
    {"op": "in", "args": [{"property": "severity"}, [DROP, SLEEP]]},
    {"op": "s_intersects", "args": [{"property": "geometry"},
                                    {"type": "Point", "coordinates": [f"0{DROP}", 0]}]},
    {"op": "s_intersects", "args": [{"property": "geometry"},
                                    {"type": f"Point{DROP}", "coordinates": [0, 0]}]},
    {"op": "t_after", "args": [{"property": "date"}, {"date": f"2020-01-01{DROP}"}]},
    {"op": "=", "args": [{"property": "vehicles"}, {"op": "+", "args": [1, DROP]}]},
    {"op": "casei", "args": [{"property": "severity"}]},
    {"op": "and", "args": [True, {"op": "=", "args": [{"property": "id"}, f"1{DROP}"]}]},
]


def _param_cases() -> Iterator[tuple[str, dict[str, str]]]:
    for f in TEXT_FILTERS:
        yield ITEMS, {"filter": f}
        yield "/datasets/crashes/download", {"format": "csv", "filter": f}
    for j in JSON_FILTERS:
        yield ITEMS, {"filter": json.dumps(j), "filter-lang": "cql2-json"}
    for evil in (DROP, SLEEP, "1; DROP TABLE public.shahr_canary", "severity desc; --",
                 "-severity,(SELECT 1)", "+\"severity\"", "severity\x00", "id; SELECT 1"):
        yield ITEMS, {"sortby": evil}
        yield ITEMS, {"properties": f"severity,{evil}"}
        yield ITEMS, {f"severity{evil}": "fatal"}  # a property name that is not one
        yield ITEMS, {"severity": evil}  # a property value: data
        yield ITEMS, {"vehicles": evil}
        yield ITEMS, {"bbox": f"51,35,52,36{evil}"}
        yield ITEMS, {"bbox-crs": f"EPSG:4326{evil}", "bbox": "51,35,52,36"}
        yield ITEMS, {"crs": f"EPSG:4326{evil}"}
        yield ITEMS, {"filter-crs": evil, "filter": "vehicles = 1"}
        yield ITEMS, {"datetime": f"2020-01-01{evil}"}
        yield ITEMS, {"intersects": f"POINT(51.4 35.7){evil}"}
        yield ITEMS, {"near": f"51.4,35.7{evil}", "radius": "100"}
        yield ITEMS, {"after": evil}
        yield "/datasets", {"q": evil}
        yield "/datasets", {"q": f"school {evil}", "sort": evil}
        yield "/datasets", {"theme": evil, "keyword": evil, "organisation": evil}
        yield "/datasets", {"bbox": evil}
        yield "/api/3/action/package_search", {"q": evil}
        yield "/api/3/action/package_search", {"fq": f"tags:{evil}"}
        yield "/api/3/action/package_search", {"fq": f"organization:x{evil}", "sort": evil}
        yield "/api/3/action/package_show", {"id": evil}
        yield "/datasets/crashes/download", {"format": f"csv{evil}"}
        yield "/datasets/crashes/download", {"format": "geojson", "version": evil}
        yield "/datasets/crashes/download", {"format": "csv", "properties": evil}


@pytest.fixture(scope="module")
def canary(database_url: str) -> Iterator[dict[str, Any]]:
    """A table no request may touch, and the published data's row counts before."""
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as db:
        db.execute(f"CREATE TABLE IF NOT EXISTS {CANARY} (note text)")
        db.execute(f"INSERT INTO {CANARY} VALUES ('still here')")
        before = _state(db)
    yield before
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as db:
        db.execute(f"DROP TABLE IF EXISTS {CANARY}")


def _state(db: psycopg.Connection) -> dict[str, Any]:
    counts = {}
    for slug, table in db.execute(
            "SELECT d.slug, v.table_name FROM catalog.datasets d "
            "JOIN catalog.versions v ON v.id = d.current_version_id").fetchall():
        counts[slug] = db.execute(f'SELECT count(*) FROM data."{table}"').fetchone()[0]  # type: ignore[index]
    canary = db.execute(f"SELECT note FROM {CANARY}").fetchall()
    datasets = db.execute("SELECT count(*), max(modified) FROM catalog.datasets").fetchone()
    return {"counts": counts, "canary": canary, "datasets": datasets}


def _check(r: httpx.Response, what: object) -> None:
    assert r.status_code < 500, (what, r.status_code, r.text[:300])
    assert r.elapsed.total_seconds() < 2.5, (what, "slow: did something sleep?")
    if r.status_code >= 400 and r.headers.get("content-type", "").startswith(PROBLEM):
        sent = unquote_plus(str(r.request.url)) + r.request.content.decode("utf-8", "replace")
        detail = json.dumps(r.json(), ensure_ascii=False)
        for leak in LEAKS:
            assert leak not in detail or leak in sent, (what, leak, detail[:400])


def test_crafted_parameters_are_refused_or_data(http: httpx.Client, canary: dict[str, Any],
                                                database_url: str) -> None:
    seen: dict[int, int] = {}
    for path, params in _param_cases():
        r = http.get(path, params=params)
        _check(r, (path, params))
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
    assert seen.get(400, 0) > 100  # most are refused outright
    assert seen.get(200, 0) > 20   # the rest were plain data
    with psycopg.connect(libpq_dsn(database_url)) as db:
        assert _state(db) == canary


def test_crafted_values_are_plain_data(http: httpx.Client) -> None:
    """Where a payload is a value, it is compared as a value: nothing matches it."""
    for value in (DROP, "' OR '1'='1", "x' OR 1=1 --", SLEEP):
        r = http.get(ITEMS, params={"severity": value, "count": "exact"})
        assert r.status_code == 200 and r.json()["numberMatched"] == 0, value
        text = f"severity = '{value.replace(chr(39), chr(39) * 2)}'"
        r = http.get(ITEMS, params={"filter": text, "count": "exact"})
        assert r.status_code == 200 and r.json()["numberMatched"] == 0, value
        body = {"op": "=", "args": [{"property": "severity"}, value]}
        r = http.post(f"{ITEMS}/search", json=body, params={"count": "exact"})
        assert r.status_code == 200 and r.json()["numberMatched"] == 0, value
        r = http.get("/api/3/action/package_show", params={"id": value})
        assert r.status_code == 404 and r.json()["success"] is False


def test_crafted_bodies_and_paths(http: httpx.Client, canary: dict[str, Any],
                                  database_url: str) -> None:
    for body in JSON_FILTERS:
        r = http.post(f"{ITEMS}/search", json=body)
        _check(r, body)
        r = http.post(f"{ITEMS}/search", json={"filter": body})
        _check(r, body)
    for raw in (b"{\"op\": \"=\", \"args\": [1, 1]}; DROP TABLE x", b"\x00\x01",
                b'{"op": "=", "args": [{"property": "severity"}, "\\u0000"]}'):
        r = http.post(f"{ITEMS}/search", content=raw,
                      headers={"content-type": "application/json"})
        _check(r, raw)
    for action, payload in [("package_search", {"q": DROP, "fq": f"tags:{DROP}"}),
                            ("package_show", {"id": DROP}),
                            ("organization_show", {"id": DROP}),
                            ("tag_list", {"query": DROP})]:
        r = http.post(f"/api/3/action/{action}", json=payload)
        _check(r, (action, payload))
    for segment in ("crashes'; DROP TABLE public.shahr_canary; --", "crashes\" OR \"1",
                    "..%2F..%2Fetc%2Fpasswd", "crashes%00"):
        for path in (f"/collections/{segment}/items", f"/collections/crashes/items/{segment}",
                     f"/datasets/{segment}", f"/datasets/{segment}/download?format=csv",
                     f"/collections/{segment}/tiles/WebMercatorQuad/12/1/1"):
            r = http.get(path)
            _check(r, path)
            assert r.status_code in (400, 404), (path, r.status_code)
    with psycopg.connect(libpq_dsn(database_url)) as db:
        assert _state(db) == canary
