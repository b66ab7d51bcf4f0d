"""Limits that keep the service up, over real HTTP against the demo city: rate limits (per
address, per API key, exempt networks, trusted proxies), caps on `limit`, filter size,
vertices and request bodies, the statement timeout on every public query (items, tiles,
downloads, the catalogue), CORS and the security headers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import morecantile
import psycopg
import pytest
import shapely
from serving import served
from shapely.geometry import mapping

from api.app import create_app
from api.ratelimit import Buckets
from catalog.database import libpq_dsn
from catalog.settings import Settings
from support import current_table

pytestmark = pytest.mark.usefixtures("demo_loaded")
PROBLEM = "application/problem+json"
CENTRE = (51.40, 35.70)


@pytest.fixture
def client_for(settings: Settings) -> Callable[..., Any]:
    """client_for(**settings changes) -> a context manager giving an httpx client on the
    app built with those settings, served over HTTP."""

    @contextmanager
    def make(**changes: Any) -> Iterator[httpx.Client]:
        app = create_app(settings.model_copy(update=changes))
        with served(app) as base, httpx.Client(base_url=base, timeout=30) as client:
            yield client

    return make


def problem(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, (r.request.url, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    for w in words:
        assert w.lower() in body["detail"].lower(), (w, body["detail"])
    assert body["request_id"] == r.headers["x-request-id"]
    return body


# ---- rate limits ------------------------------------------------------------------------------

def test_bucket_refills_at_the_per_minute_rate() -> None:
    b = Buckets(60)  # one a second, a minute's worth at once
    t = 1000.0
    assert [b.hit("x", t)[1] for _ in range(60)] == list(range(59, -1, -1))
    ok, left, wait = b.hit("x", t)
    assert not ok and left == 0 and wait == pytest.approx(1.0)
    assert not b.hit("x", t + 0.5)[0]
    assert b.hit("x", t + 1.0)[0]  # one request's worth came back after a second
    assert not b.hit("x", t + 1.0)[0]
    ok, left, full_in = b.hit("y", t)  # other clients have their own bucket
    assert ok and left == 59 and full_in == pytest.approx(1.0)
    assert b.hit("x", t + 120)[1] == 59  # idle long enough: full again
    b.sweep(t + 1000)
    assert "x" not in b and "y" not in b


def test_rate_limit_per_address(client_for: Callable[..., Any]) -> None:
    with client_for(rate_limit_per_minute=5, rate_limit_exempt=[]) as c:
        rs = [c.get("/datasets") for _ in range(5)]
        assert [r.status_code for r in rs] == [200] * 5
        assert [int(r.headers["ratelimit-remaining"]) for r in rs] == [4, 3, 2, 1, 0]
        assert {r.headers["ratelimit-limit"] for r in rs} == {"5"}
        assert {r.headers["ratelimit-policy"] for r in rs} == {"5;w=60"}
        assert 0 < int(rs[0].headers["ratelimit-reset"]) <= 60
        r = c.get("/collections/crashes/items")
        body = problem(r, 429, "5 requests a minute", "address")
        assert body["title"] == "Too many requests"
        assert 11 <= int(r.headers["retry-after"]) <= 12  # one request's worth: 60 s / 5
        assert r.headers["ratelimit-remaining"] == "0"
        assert c.get("/no/such/page").status_code == 429  # every path counts
        # health checks and metrics are never limited
        assert {c.get(p).status_code for p in ["/healthz", "/readyz", "/metrics"] * 4} == {200}


def test_rate_limit_per_api_key(client_for: Callable[..., Any]) -> None:
    key_a = {"Authorization": "Bearer shahr_aaaaaaaa_secret"}
    key_b = {"Authorization": "Bearer shahr_bbbbbbbb_secret"}
    with client_for(rate_limit_per_minute=3, rate_limit_key_per_minute=6,
                    rate_limit_exempt=[]) as c:
        assert c.get("/datasets").status_code == 200  # address: 2 left
        assert c.get("/datasets").status_code == 200  # address: 1 left
        r = c.get("/datasets", headers=key_a)  # the key's own bucket (its first use costs
        assert r.status_code == 200            # the address its last request)
        assert (r.headers["ratelimit-limit"], r.headers["ratelimit-remaining"]) == ("6", "5")
        problem(c.get("/datasets"), 429, "address")
        left = [c.get("/datasets", headers=key_a).headers["ratelimit-remaining"]
                for _ in range(5)]
        assert left == ["4", "3", "2", "1", "0"]
        problem(c.get("/datasets", headers=key_a), 429, "6 requests a minute", "API key")
        # an invented token is a new bucket, paid for by the address, which has none left
        problem(c.get("/datasets", headers=key_b), 429, "address")


def test_exempt_networks_and_zero_turn_limits_off(client_for: Callable[..., Any]) -> None:
    with client_for(rate_limit_per_minute=2) as c:  # the default exempts loopback
        rs = [c.get("/datasets") for _ in range(6)]
        assert {r.status_code for r in rs} == {200}
        assert "ratelimit-limit" not in rs[0].headers
    with client_for(rate_limit_per_minute=0, rate_limit_exempt=[]) as c:
        assert {c.get("/datasets").status_code for _ in range(6)} == {200}


def test_forwarded_for_is_believed_only_from_trusted_proxies(
        client_for: Callable[..., Any]) -> None:
    def via(ip: str) -> dict[str, str]:
        return {"X-Forwarded-For": ip}

    with client_for(rate_limit_per_minute=2, rate_limit_exempt=[]) as c:
        codes = [c.get("/datasets", headers=via(f"203.0.113.{i}")).status_code
                 for i in range(3)]
        assert codes == [200, 200, 429]  # one bucket: the proxy's (the real peer)
    with client_for(rate_limit_per_minute=2, rate_limit_exempt=["198.51.100.0/24"],
                    trusted_proxies=["127.0.0.1"]) as c:
        codes = [c.get("/datasets", headers=via("203.0.113.7")).status_code
                 for _ in range(3)]
        assert codes == [200, 200, 429]
        assert c.get("/datasets", headers=via("203.0.113.8")).status_code == 200
        # the client behind the proxy is what the exemption looks at
        assert {c.get("/datasets", headers=via("198.51.100.4")).status_code
                for _ in range(4)} == {200}


# ---- caps -------------------------------------------------------------------------------------

def _ring(n: int, decimals: int = 4) -> shapely.Polygon:
    """A polygon of n vertices around the city centre, coordinates rounded."""
    ring = shapely.Point(*CENTRE).buffer(0.05, quad_segs=max(1, (n - 1) // 4))
    return shapely.set_precision(ring, 10**-decimals)


def test_filter_vertex_and_body_caps(client_for: Callable[..., Any]) -> None:
    items = "/collections/crashes/items"
    tile = morecantile.tms.get("WebMercatorQuad").tile(*CENTRE, 12)
    with client_for(max_filter_bytes=4096, max_vertices=100, max_body_bytes=8192) as c:
        # filter text in a URL
        long = "severity = 'x'" + " OR severity = 'y'" * 300
        assert len(long) > 4096
        problem(c.get(items, params={"filter": long}), 400, "4,096 accepted", "POST")
        short = "severity = 'x'" + " OR severity = 'y'" * 100
        assert c.get(items, params={"filter": short}).status_code == 200
        # vertices, in every place a shape can be given
        big, small = _ring(150), _ring(60)
        assert len(big.exterior.coords) > 100 >= len(small.exterior.coords)
        def search(g: shapely.Geometry) -> dict[str, Any]:
            return {"op": "s_intersects", "args": [{"property": "geometry"}, mapping(g)]}

        tile_url = f"/collections/crashes/tiles/WebMercatorQuad/12/{tile.x}/{tile.y}"
        cases: list[tuple[str, str, Callable[[shapely.Geometry], dict[str, Any]], bool]] = [
            ("GET", items, lambda g: {"filter": f"S_INTERSECTS(geometry, {g.wkt})"}, False),
            ("GET", items, lambda g: {"intersects": g.wkt}, False),
            ("GET", items, lambda g: {"intersects": shapely.to_geojson(g)}, False),
            ("POST", f"{items}/search", lambda g: {}, True),
            ("GET", "/datasets/crashes/download",
             lambda g: {"format": "csv", "intersects": g.wkt}, False),
            ("GET", tile_url, lambda g: {"filter": f"S_INTERSECTS(geometry, {g.wkt})"}, False),
        ]
        for method, url, params, in_body in cases:
            r = c.request(method, url, params=params(big), json=search(big) if in_body else None)
            problem(r, 400, "more than 100 vertices")
            ok = c.request(method, url, params=params(small),
                           json=search(small) if in_body else None)
            assert ok.status_code in (200, 204), (url, ok.status_code, ok.text[:300])
        # two shapes of 60 count together
        both = f"S_INTERSECTS(geometry, {small.wkt}) OR S_WITHIN(geometry, {small.wkt})"
        problem(c.get(items, params={"filter": both}), 400, "vertices")
        # a request body over the cap: 413
        huge = {"op": "s_intersects", "args": [{"property": "geometry"},
                                               mapping(_ring(400, decimals=7))]}
        r = c.post(f"{items}/search", json=huge)
        assert r.status_code == 413 and r.headers["content-type"].startswith(PROBLEM)
        assert "8,192 bytes" in r.json()["detail"]


def test_limit_is_capped(client_for: Callable[..., Any]) -> None:
    with client_for(max_limit=7) as c:
        body = c.get("/collections/crashes/items", params={"limit": 10**9}).json()
        assert body["numberReturned"] == 7
        assert any(link["rel"] == "next" for link in body["links"])
        problem(c.get("/datasets", params={"limit": 10**6}), 400, "limit")


# ---- statement timeout ------------------------------------------------------------------------

@contextmanager
def locked(database_url: str, table: str) -> Iterator[None]:
    """Hold an ACCESS EXCLUSIVE lock on `table`: queries on it wait, as a slow one would."""
    with psycopg.connect(libpq_dsn(database_url)) as conn:
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def test_every_public_query_runs_under_the_statement_timeout(
        client_for: Callable[..., Any], database_url: str) -> None:
    tile = morecantile.tms.get("WebMercatorQuad").tile(*CENTRE, 13)
    urls = ["/collections/crashes/items", "/collections/crashes/items/1",
            "/collections/crashes/items?count=exact&severity=fatal",
            f"/collections/crashes/tiles/WebMercatorQuad/13/{tile.x}/{tile.y}",
            "/datasets/crashes/download?format=csv",
            "/datasets/crashes/download?format=geojson&severity=fatal",
            "/maps/crashes?f=json"]
    with client_for(statement_timeout_ms=300) as c:
        assert c.get("/collections/crashes/items").status_code == 200  # caches warm
        with psycopg.connect(libpq_dsn(database_url)) as db:
            table = current_table(db, "crashes")
        with locked(database_url, table):
            for url in urls:
                r = c.get(url)
                assert r.elapsed.total_seconds() < 5, url
                if url.startswith("/maps/") and r.status_code == 404:
                    continue  # no map pages in this build
                problem(r, 503, "timeout")
                assert r.headers["retry-after"]
        with locked(database_url, "catalog.datasets"):
            for url in ["/datasets", "/datasets?q=crash", "/datasets/crashes"]:
                r = c.get(url)
                problem(r, 503)
                assert r.elapsed.total_seconds() < 5
        # and everything works again once the lock is gone
        for url in [*urls[:5], "/datasets"]:
            assert c.get(url).status_code in (200, 204), url


# ---- CORS and security headers ----------------------------------------------------------------

def test_cors_is_open_for_reading_by_default(http: httpx.Client) -> None:
    origin = {"Origin": "https://news.example"}
    pre = http.options("/collections/crashes/items", headers={
        **origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization, x-request-id"})
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "*"
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    r = http.get("/collections/crashes/items", headers=origin)
    assert r.headers["access-control-allow-origin"] == "*"
    exposed = r.headers["access-control-expose-headers"].lower()
    for name in ("ratelimit-remaining", "retry-after", "x-request-id", "link", "etag"):
        assert name in exposed
    write = http.options("/datasets/crashes", headers={
        **origin, "Access-Control-Request-Method": "DELETE"})
    assert write.status_code == 400  # publishing is not offered to other sites' pages


def test_cors_origins_can_be_restricted(client_for: Callable[..., Any]) -> None:
    with client_for(cors_origins=["https://city.example"]) as c:
        ok = c.get("/datasets", headers={"Origin": "https://city.example"})
        assert ok.headers["access-control-allow-origin"] == "https://city.example"
        other = c.get("/datasets", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers


def _csp(r: httpx.Response) -> dict[str, str]:
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1] if " " in part else ""
            for part in (p.strip() for p in r.headers["content-security-policy"].split(";"))}


def test_security_headers(client_for: Callable[..., Any]) -> None:
    with client_for(basemap="osm") as c:
        data = c.get("/collections/crashes/items")
        assert data.headers["x-content-type-options"] == "nosniff"
        assert data.headers["referrer-policy"] == "strict-origin-when-cross-origin"
        page = c.get("/datasets", headers={"Accept": "text/html"})
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["x-content-type-options"] == "nosniff"
        csp = _csp(page)
        assert csp["default-src"] == "'self'"
        assert csp["script-src"] == "'self' 'unsafe-inline'"  # nothing from elsewhere
        assert csp["object-src"] == "'none'"
        assert csp["frame-ancestors"] == "'self'"
        assert page.headers["x-frame-options"] == "SAMEORIGIN"
        assert "https://tile.openstreetmap.org" in csp["img-src"].split()
        # maps are made to be embedded by other sites
        m = c.get("/maps/crashes", headers={"Accept": "text/html"})
        if m.status_code != 404:  # map pages are part of the web UI
            assert m.status_code == 200, m.text[:300]
            assert _csp(m)["frame-ancestors"] == "*"
            assert "x-frame-options" not in m.headers
            tiles = "https://{s}.tiles.example.org/{z}/{x}/{y}.png"
            other = c.get("/maps/crashes", params={"basemap": tiles},
                          headers={"Accept": "text/html"})
            assert "https://*.tiles.example.org" in _csp(other)["img-src"].split()
    with client_for(basemap="https://tiles.example.net/{z}/{x}/{y}.png") as c:
        page = c.get("/datasets", headers={"Accept": "text/html"})
        assert "https://tiles.example.net" in _csp(page)["img-src"].split()
        assert "https://tile.openstreetmap.org" not in _csp(page)["img-src"]
