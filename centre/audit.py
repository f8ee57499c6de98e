"""The supervisors' audit trail: one row per supervisor action (who, what with its parameters, on whom,
when, and whether it was carried out or refused and why). Append-only: this module writes rows and reads
them, it has no update and no delete, and no console action reaches anything else of the table.

``AuditStore`` is blocking SQLAlchemy (run it in a thread, as the other stores); ``AuditEntry`` is the
value the console backend builds. Parameters are stored as JSON exactly as the validated request carried
them (supervisor actions take no secret; ``redact`` drops any key named like one, should a later action
carry one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from cti.db import Base

#: Parameter names never written to the audit trail (no supervisor action takes them today).
SECRET_KEYS = frozenset({"password", "token", "secret", "password_hash", "resume_token"})


class SupervisorAction(Base):
    """One supervisor action as it was asked for and how it ended (``result``: ok | refused)."""

    __tablename__ = "supervisor_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    supervisor_id: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(128), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(400))


def redact(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters without anything named like a secret."""
    return {k: v for k, v in params.items() if k.lower() not in SECRET_KEYS}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What the console backend records: ``at`` in epoch seconds; ``reason`` empty when ``result`` is ok,
    else the error id and message it was refused with."""

    at: float
    supervisor_id: str
    action: str
    target: str
    params: dict[str, Any] = field(default_factory=dict)
    result: str = "ok"
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "supervisor_id": self.supervisor_id, "action": self.action, "target": self.target,
                "params": self.params, "result": self.result, "reason": self.reason}


class AuditStore:
    """Append and read supervisor actions (blocking; call from a thread pool)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, entry: AuditEntry) -> int:
        """Write one row; returns its id."""
        row = SupervisorAction(at=datetime.fromtimestamp(entry.at, UTC), supervisor_id=entry.supervisor_id[:64],
                               action=entry.action[:40], target=entry.target[:128], params=redact(entry.params),
                               result=entry.result[:16], reason=entry.reason[:400])
        with Session(self.engine) as session, session.begin():
            session.add(row)
            session.flush()
            return int(row.id)

    def entries(self, *, supervisor_id: str | None = None, target: str | None = None,
                limit: int = 1000) -> list[AuditEntry]:
        """The latest rows first (by id), optionally of one supervisor or one target."""
        query = select(SupervisorAction).order_by(SupervisorAction.id.desc()).limit(limit)
        if supervisor_id is not None:
            query = query.where(SupervisorAction.supervisor_id == supervisor_id)
        if target is not None:
            query = query.where(SupervisorAction.target == target)
        with Session(self.engine) as session:
            return [AuditEntry(at=_epoch(r.at), supervisor_id=r.supervisor_id, action=r.action, target=r.target,
                               params=dict(r.params or {}), result=r.result, reason=r.reason)
                    for r in session.scalars(query)]


def _epoch(value: datetime) -> float:
    """Epoch seconds of a stored time (SQLite hands back naive datetimes: they are UTC)."""
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()
