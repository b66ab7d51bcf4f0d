"""`shahr keys ...`: make, list and revoke the API keys that write, and read the audit log.
A key's secret is printed once, on stdout alone (so `KEY=$(shahr keys create ...)` works);
only its SHA-256 is stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from catalog.audit import recent
from catalog.bootstrap import ensure_postgis, resolve_database
from catalog.database import DatabaseUnavailable, session_scope
from catalog.keys import ApiKeyError, create_key, find_key, key_state, list_keys, revoke_key
from catalog.migrate import upgrade
from catalog.settings import get_settings

keys_app = typer.Typer(help="API keys for the publishing API, and its audit log.",
                       no_args_is_help=True)
console = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def plain_errors(fn: F) -> F:
    """A user's mistake or an unreachable database: one red line, exit code 1."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (DatabaseUnavailable, ApiKeyError) as exc:
            err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
            raise typer.Exit(1) from None
    return wrapper  # type: ignore[return-value]


def database_url() -> str:
    """The database, with PostGIS and the migrations (API keys need 0003) in place."""
    choice = resolve_database(get_settings())
    ensure_postgis(choice.url)
    upgrade(choice.url)
    return choice.url


def _when(d: datetime | None) -> str:
    return d.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if d else ""


@keys_app.command("create")
@plain_errors
def keys_create(
    role: Annotated[str, typer.Option(help="admin (writes everything) or publisher (its "
                                      "organisation's datasets)")],
    organisation: Annotated[str | None, typer.Option(
        help="The publisher's organisation (slug)")] = None,
    label: Annotated[str | None, typer.Option(help="Who or what holds the key")] = None,
    expires_in_days: Annotated[int, typer.Option(
        help="Days until the key expires (0: never)", min=0)] = 365,
    expires: Annotated[str | None, typer.Option(
        help="Expiry date YYYY-MM-DD (instead of --expires-in-days)")] = None,
) -> None:
    """Make a key; its secret is printed once."""
    if expires is not None:
        try:
            until: datetime | None = datetime.combine(date.fromisoformat(expires),
                                                      datetime.min.time(), UTC)
        except ValueError:
            raise typer.BadParameter(f"{expires!r} is not a date YYYY-MM-DD",
                                     param_hint="--expires") from None
    else:
        until = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    with session_scope(database_url()) as s:
        key, token = create_key(s, role=role, organisation=organisation, label=label,
                                expires=until)
        who = "admin" if key.role == "admin" else f"publisher for {key.organisation}"
        err.print(f"key {key.id} ({who}, prefix {key.prefix}, "
                  f"{'expires ' + _when(until) if until else 'never expires'}). "
                  "Keep the secret below now: it is not shown again.", soft_wrap=True)
    print(token)


@keys_app.command("list")
@plain_errors
def keys_list(
    all_keys: Annotated[bool, typer.Option("--all", help="Also revoked and expired keys")] = False,
) -> None:
    """The keys (never their secrets), with when each was last used."""
    table = Table("id", "prefix", "role", "organisation", "label", "created", "expires",
                  "last used", "state")
    with session_scope(database_url()) as s:
        for k in list_keys(s, include_inactive=all_keys):
            state = key_state(k)
            colour = {"active": "green", "expired": "yellow", "revoked": "red"}[state]
            table.add_row(str(k.id), k.prefix, k.role, k.organisation or "", k.label or "",
                          _when(k.created), _when(k.expires) or "never",
                          _when(k.last_used) or "never", f"[{colour}]{state}[/]")
    console.print(table)


@keys_app.command("revoke")
@plain_errors
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id or prefix (`shahr keys list`)")],
) -> None:
    """Revoke a key: it is refused from the next request on."""
    with session_scope(database_url()) as s:
        k = revoke_key(s, key)
        console.print(f"key {k.id} ({k.prefix}) revoked at {_when(k.revoked)}")


@keys_app.command("audit")
@plain_errors
def keys_audit(
    limit: Annotated[int, typer.Option(min=1, help="How many entries, newest first")] = 50,
    key: Annotated[str | None, typer.Option(help="Only this key (id or prefix)")] = None,
    target: Annotated[str | None, typer.Option(help="Only writes to this dataset or run")] = None,
) -> None:
    """The audit log: every write request, accepted or refused."""
    table = Table("at", "key", "role", "action", "target", "status", "result", "client")
    with session_scope(database_url()) as s:
        key_id = None
        if key is not None:
            found = find_key(s, key)
            if found is None:
                raise ApiKeyError(f"--key: no key {key!r}; `shahr keys list --all` shows them")
            key_id = found.id
        for e in recent(s, limit=limit, key_id=key_id, target=target):
            colour = "green" if e.status < 300 else ("yellow" if e.status < 500 else "red")
            table.add_row(e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                          e.key_prefix or "-", e.role or "", f"{e.method} {e.path}",
                          e.target or "", f"[{colour}]{e.status}[/]", e.result[:60],
                          e.client_ip or "")
    console.print(table)
