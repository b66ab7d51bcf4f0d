"""The audit log: every write request, accepted or refused — who (key), what (action and
target), when, and the result. Written in its own transaction, so a write that fails and
rolls back is still on record."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from catalog.models import AuditEntry


@dataclass(frozen=True)
class AuditRecord:
    action: str
    method: str
    path: str
    status: int
    result: str
    target: str | None = None
    key_id: int | None = None
    key_prefix: str | None = None
    role: str | None = None
    organisation: str | None = None
    request_id: str | None = None
    client_ip: str | None = None


def record(engine: Engine, entry: AuditRecord) -> None:
    with engine.begin() as conn:
        conn.execute(insert(AuditEntry).values(
            action=entry.action[:64], method=entry.method[:8], path=entry.path,
            target=entry.target, status=entry.status, result=entry.result[:1000],
            key_id=entry.key_id, key_prefix=entry.key_prefix, role=entry.role,
            organisation=entry.organisation, request_id=entry.request_id,
            client_ip=entry.client_ip))


def recent(s: Session, *, limit: int = 50, key_id: int | None = None,
           target: str | None = None) -> list[AuditEntry]:
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if key_id is not None:
        q = q.where(AuditEntry.key_id == key_id)
    if target is not None:
        q = q.where(AuditEntry.target == target)
    return list(s.scalars(q))
