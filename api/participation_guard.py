"""What keeps citizen submissions honest without accounts: a per-address submission limit
(stricter than the general one, api/ratelimit.py's buckets), a honeypot field, and the signed
supporter cookie that lets a person support a request once.

The cookie holds a random id and its HMAC-SHA256 under SHAHR_SECRET_KEY; when that is unset a
secret is generated once into SHAHR_DATA_DIR/secret_key (mode 0600) and reused, so cookies
survive restarts. Supports are stored under a hash of the id, never the id itself."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request

from api.problems import Problem
from api.ratelimit import Buckets, _in_networks
from catalog.settings import Settings

COOKIE = "shahr_supporter"
COOKIE_MAX_AGE = 2 * 365 * 24 * 3600
HONEYPOT = "website"  # a field people never see (hidden by CSS); bots fill it in


class SubmissionLimit:
    """`per_minute` submissions per client address (0: none), exempt networks aside."""

    def __init__(self, per_minute: int, exempt: list[str]) -> None:
        self.buckets = Buckets(per_minute) if per_minute > 0 else None
        networks = [ipaddress.ip_network(n, strict=False) for n in exempt]
        self.exempt = lru_cache(maxsize=4096)(lambda host: _in_networks(host, networks))

    def check(self, request: Request) -> None:
        """Count one submission from the request's address, or refuse it with a 429."""
        if self.buckets is None:
            return
        host = request.client.host if request.client else "unknown"
        if self.exempt(host):
            return
        ok, _left, wait = self.buckets.hit(host, time.monotonic())
        if not ok:
            retry = max(1, math.ceil(wait))
            raise Problem(429, "Too many submissions",
                          f"more than {self.buckets.limit} submissions (requests, reports, "
                          f"supports) a minute from this address; try again in {retry} s",
                          retry_after_s=retry, limit_per_minute=self.buckets.limit)


def submission_limit(request: Request) -> SubmissionLimit:
    state = request.app.state
    limit: SubmissionLimit | None = getattr(state, "submission_limit", None)
    if limit is None:
        settings: Settings = state.settings
        limit = SubmissionLimit(settings.submissions_per_minute, settings.rate_limit_exempt)
        state.submission_limit = limit
    return limit


def refuse_spam(fields: dict[str, Any]) -> None:
    """A filled-in honeypot field is a bot's: refused with a 400 that says so."""
    if str(fields.get(HONEYPOT) or "").strip():
        raise Problem(400, "Bad request", f"{HONEYPOT}: this field must be left empty (it "
                      "is a trap for automated spam)", parameter=HONEYPOT)


# ---- the supporter cookie ------------------------------------------------------------------------

def secret_key(settings: Settings) -> bytes:
    """SHAHR_SECRET_KEY, else the generated one in the data folder (made on first use)."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path = Path(settings.data_dir) / "secret_key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode()
    try:
        with path.open("xb") as f:  # another worker may have made it meanwhile
            path.chmod(0o600)
            f.write(value)
    except FileExistsError:
        return path.read_bytes().strip()
    return value


def _key(request: Request) -> bytes:
    state = request.app.state
    key: bytes | None = getattr(state, "secret_key", None)
    if key is None:
        key = secret_key(state.settings)
        state.secret_key = key
    return key


def _sign(key: bytes, ident: str) -> str:
    return hmac.new(key, ident.encode(), hashlib.sha256).hexdigest()


def supporter(request: Request) -> tuple[str, str | None]:
    """(supporter hash, cookie value to set or None): the id from a valid signed cookie, or
    a new one (a forged or altered cookie counts as none)."""
    key = _key(request)
    raw = request.cookies.get(COOKIE, "")
    ident, _, mac = raw.partition(".")
    if ident and mac and hmac.compare_digest(_sign(key, ident), mac):
        return _hash(ident), None
    ident = secrets.token_urlsafe(18)
    return _hash(ident), f"{ident}.{_sign(key, ident)}"


def _hash(ident: str) -> str:
    return hashlib.sha256(ident.encode()).hexdigest()
