"""Per-client rate limits, as pure ASGI middleware, with the IETF RateLimit headers.

Each client has a bucket that holds a minute's worth of requests and refills steadily
(GCRA: one number per client, the time its bucket will be full again), so a client may
burst up to its quota and then go on at the per-minute rate. A request with
`Authorization: Bearer <token>` is counted against its token (keyed by a hash of it; the
key is not looked up: the auth layer decides whether it is valid), any other request
against its address. Making a token's bucket costs its address one request, so inventing
tokens does not escape the address limit. Nothing touches the database, and a request
costs a dictionary lookup and a few additions.

Limits hold per service worker process: with `--workers N` a client may get up to N times
the quota if its connections land on different workers (a reverse proxy in front can
enforce a global one). Responses carry `RateLimit-Limit`, `RateLimit-Remaining`,
`RateLimit-Reset` and `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers); a refusal is
a 429 problem document with `Retry-After`."""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from functools import lru_cache
from typing import Any

from api import metrics
from api.problems import problem_response

WINDOW_S = 60.0
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
MAX_BUCKETS = 200_000  # beyond this, full buckets are dropped (they hold nothing anyway)


class Buckets:
    """GCRA: `tat[key]` is when the key's bucket will be full again (theoretical arrival
    time); a request is allowed while that stays within one window from now."""

    def __init__(self, per_minute: int) -> None:
        self.limit = per_minute
        self.interval = WINDOW_S / per_minute
        self.tat: dict[Any, float] = {}
        self.fixed_headers = [(b"ratelimit-limit", str(per_minute).encode()),
                              (b"ratelimit-policy", f"{per_minute};w={int(WINDOW_S)}".encode())]

    def __contains__(self, key: Any) -> bool:
        return key in self.tat

    def hit(self, key: Any, now: float) -> tuple[bool, int, float]:
        """(allowed, remaining, seconds): seconds until the bucket is full again when
        allowed, until one more request is allowed when refused."""
        tat = self.tat.get(key, now)
        if tat < now:
            tat = now
        new_tat = tat + self.interval
        if new_tat - now > WINDOW_S + 1e-9:
            return False, 0, new_tat - now - WINDOW_S
        if key not in self.tat and len(self.tat) >= MAX_BUCKETS:
            self.sweep(now)
        self.tat[key] = new_tat
        remaining = int((WINDOW_S - (new_tat - now)) / self.interval + 1e-9)
        return True, remaining, new_tat - now

    def sweep(self, now: float) -> None:
        """Forget full buckets; if too many are still in use, the oldest half."""
        self.tat = {k: t for k, t in self.tat.items() if t > now}
        if len(self.tat) >= MAX_BUCKETS:
            keep = list(self.tat.items())[len(self.tat) // 2:]
            self.tat = dict(keep)


def _bearer(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None


class RateLimit:
    """The middleware. `per_minute` per address (0: no limits at all), `key_per_minute`
    per bearer token (0: tokens are limited by address like everyone else); addresses in
    `exempt` (IPs or networks) and the health and metrics endpoints are never limited."""

    def __init__(self, app: Any, *, per_minute: int, key_per_minute: int,
                 exempt: list[str]) -> None:
        self.app = app
        self.by_address = Buckets(per_minute) if per_minute > 0 else None
        self.by_key = Buckets(key_per_minute) if per_minute > 0 and key_per_minute > 0 \
            else None
        networks = [ipaddress.ip_network(n, strict=False) for n in exempt]
        self.exempt = lru_cache(maxsize=4096)(lambda host: _in_networks(host, networks))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (self.by_address is None or scope["type"] != "http"
                or scope["path"] in EXEMPT_PATHS or scope["method"] == "OPTIONS"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        host = client[0] if client else "unknown"
        if self.exempt(host):
            await self.app(scope, receive, send)
            return
        now = time.monotonic()
        token = _bearer(scope["headers"]) if self.by_key is not None else None
        buckets, key, by = self.by_address, host, "address"
        if token is not None and self.by_key is not None:
            key = hashlib.blake2b(token, digest_size=16).digest()
            if key not in self.by_key:  # a new token costs its address one request
                ok, _left, wait = self.by_address.hit(host, now)
                if not ok:
                    await self._refuse(scope, receive, send, self.by_address, wait, "address")
                    return
            buckets, by = self.by_key, "API key"
        ok, left, seconds = buckets.hit(key, now)
        if not ok:
            await self._refuse(scope, receive, send, buckets, seconds, by)
            return
        headers = _headers(buckets, left, seconds)

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, scope: Any, receive: Any, send: Any, buckets: Buckets,
                      wait: float, by: str) -> None:
        metrics.RATE_LIMITED.labels("key" if by == "API key" else "address").inc()
        retry = max(1, math.ceil(wait))
        response = problem_response(
            None, 429, "Too many requests",
            f"more than {buckets.limit} requests a minute from this {by}; try again in "
            f"{retry} s", instance=scope.get("path"), limit_per_minute=buckets.limit,
            retry_after_s=retry)
        response.headers["Retry-After"] = str(retry)
        for name, value in _headers(buckets, 0, wait + WINDOW_S - buckets.interval):
            response.headers[name.decode()] = value.decode()
        await response(scope, receive, send)


def _headers(buckets: Buckets, remaining: int, reset_s: float) -> list[tuple[bytes, bytes]]:
    return [*buckets.fixed_headers, (b"ratelimit-remaining", b"%d" % remaining),
            (b"ratelimit-reset", b"%d" % max(0, math.ceil(reset_s)))]


def _in_networks(host: str, networks: list[Any]) -> bool:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(addr in n for n in networks)
