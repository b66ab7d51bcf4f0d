"""API keys for writing: `shahr_<prefix>_<secret>`. The prefix is stored in clear to find the
row; only a SHA-256 of the secret is kept. The secret is 256 random bits, so a fast hash with
a constant-time comparison is enough (a slow password hash protects low-entropy secrets, which
these are not)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from catalog.models import KEY_ROLES, ApiKey

TOKEN_RE = re.compile(r"^shahr_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})$")
ORG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
TOUCH_EVERY = timedelta(minutes=1)  # last_used is written at most this often per key


class ApiKeyError(ValueError):
    """A key cannot be created or changed; the message names the parameter."""


@dataclass(frozen=True)
class Writer:
    """Who is writing: the checked key's identity (never its secret)."""

    key_id: int
    prefix: str
    role: str
    organisation: str | None
    label: str | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_publish_for(self, organisation: str) -> bool:
        return self.is_admin or self.organisation == organisation


@dataclass(frozen=True)
class Refusal:
    """Why a presented token was not accepted (said to the client in general terms)."""

    reason: str  # malformed | unknown | revoked | expired
    prefix: str | None = None
    key_id: int | None = None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> tuple[str, str, str]:
    """(token, prefix, sha256 of the secret) for a fresh key."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"shahr_{prefix}_{secret}", prefix, hash_secret(secret)


def parse_token(token: str) -> tuple[str, str] | None:
    m = TOKEN_RE.match(token.strip())
    return (m.group(1), m.group(2)) if m else None


def create_key(s: Session, *, role: str, organisation: str | None = None,
               label: str | None = None, expires: datetime | None = None) -> tuple[ApiKey, str]:
    """Make a key; returns the row and the token (shown once, never stored)."""
    if role not in KEY_ROLES:
        raise ApiKeyError(f"--role must be one of {', '.join(KEY_ROLES)}, not {role!r}")
    if role == "publisher":
        if not organisation:
            raise ApiKeyError("--organisation is required for a publisher key (the "
                            "organisation's slug, e.g. nemuneh-municipality)")
        if not ORG_RE.match(organisation):
            raise ApiKeyError(f"--organisation {organisation!r} is not a slug: use lower-case "
                            "letters, digits and '-'")
    elif organisation:
        raise ApiKeyError("--organisation is only for publisher keys; an admin key may write "
                        "every organisation's datasets")
    if expires is not None and expires <= datetime.now(UTC):
        raise ApiKeyError("--expires must be in the future")
    token, prefix, digest = new_token()
    key = ApiKey(prefix=prefix, secret_sha256=digest, role=role, organisation=organisation,
                 label=label, expires=expires)
    s.add(key)
    s.flush()
    return key, token


def check_token(s: Session, token: str, *, now: datetime | None = None) -> Writer | Refusal:
    """The writer a token belongs to, or why it is refused. A valid key's last_used is
    refreshed, at most once a minute (one cheap conditional UPDATE)."""
    now = now or datetime.now(UTC)
    parsed = parse_token(token)
    if parsed is None:
        return Refusal("malformed")
    prefix, secret = parsed
    key = s.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or not hmac.compare_digest(key.secret_sha256, hash_secret(secret)):
        return Refusal("unknown", prefix=prefix, key_id=key.id if key else None)
    if key.revoked is not None:
        return Refusal("revoked", prefix=prefix, key_id=key.id)
    if key.expires is not None and key.expires <= now:
        return Refusal("expired", prefix=prefix, key_id=key.id)
    if key.last_used is None or key.last_used < now - TOUCH_EVERY:
        s.execute(update(ApiKey).where(ApiKey.id == key.id, or_(
            ApiKey.last_used.is_(None), ApiKey.last_used < now - TOUCH_EVERY))
            .values(last_used=now))
    return Writer(key.id, key.prefix, key.role, key.organisation, key.label)


def find_key(s: Session, ident: str) -> ApiKey | None:
    """A key by id, prefix, or whole token."""
    parsed = parse_token(ident)
    if parsed:
        ident = parsed[0]
    if ident.isdigit():
        return s.get(ApiKey, int(ident))
    return s.scalar(select(ApiKey).where(ApiKey.prefix == ident))


def revoke_key(s: Session, ident: str) -> ApiKey:
    key = find_key(s, ident)
    if key is None:
        raise ApiKeyError(f"no key {ident!r}; give its id or prefix (`shahr keys list`)")
    if key.revoked is None:
        key.revoked = datetime.now(UTC)
    return key


def key_state(key: ApiKey, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    if key.revoked is not None:
        return "revoked"
    if key.expires is not None and key.expires <= now:
        return "expired"
    return "active"


def list_keys(s: Session, *, include_inactive: bool = False) -> list[ApiKey]:
    keys = list(s.scalars(select(ApiKey).order_by(ApiKey.id)))
    return keys if include_inactive else [k for k in keys if key_state(k) == "active"]
