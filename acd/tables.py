"""ACD tables (queued-call records, agent state log) on ``cti.db.Base`` and the event -> row mapping.

No engine, no session, no I/O: ``acd.recorder`` writes the rows; the schema comes from the Alembic
revision ``0002_acd``. Must not import the service or the router.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from acd.events import AgentStateChanged, QueueCallFinished
from cti.db import Base


class QueueCallRecord(Base):
    """One row per queued call and queue: how long it waited and how it ended."""

    __tablename__ = "acd_queue_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_uid: Mapped[str] = mapped_column(String(200), unique=True)
    server: Mapped[str] = mapped_column(String(64))
    uniqueid: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    queue: Mapped[str] = mapped_column(String(64), index=True)
    entered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    outcome: Mapped[str] = mapped_column(String(16), index=True)  # answered | abandoned | overflowed
    wait: Mapped[float] = mapped_column(Float)
    agent_id: Mapped[str] = mapped_column(String(32), index=True)
    talk: Mapped[float] = mapped_column(Float)
    wrapup: Mapped[float] = mapped_column(Float)
    offers: Mapped[int] = mapped_column(Integer)
    overflow_action: Mapped[str] = mapped_column(String(16))
    overflow_target: Mapped[str] = mapped_column(String(100))
    caller_num: Mapped[str] = mapped_column(String(80))
    dnis: Mapped[str] = mapped_column(String(80))
    priority: Mapped[int] = mapped_column(Integer)
    ivr_data: Mapped[dict[str, str]] = mapped_column(JSON)


class AgentStateRecord(Base):
    """The agent state log: one row per change, with the reason and how long the previous state lasted."""

    __tablename__ = "acd_agent_states"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_uid: Mapped[str] = mapped_column(String(120), unique=True)
    agent_id: Mapped[str] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(16))
    previous: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(40))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    previous_seconds: Mapped[float] = mapped_column(Float)
    queue: Mapped[str] = mapped_column(String(64))
    uniqueid: Mapped[str] = mapped_column(String(64))


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def row_for(event: object, nonce: str) -> tuple[type[Base], dict[str, Any]] | None:
    """The (model, values) to store for an ACD event, or None for events that are not recorded.

    ``nonce`` makes agent-state rows unique (two changes may share a timestamp); queued-call rows
    have a deterministic uid so a replayed event is stored once.
    """
    if isinstance(event, QueueCallFinished):
        e = event
        return QueueCallRecord, {
            "record_uid": f"{e.server}/{e.uniqueid}/{e.queue}/{e.entered:.6f}"[:200],
            "server": e.server[:64], "uniqueid": e.uniqueid[:64], "call_id": e.call_id[:64], "queue": e.queue[:64],
            "entered_at": utc(e.entered), "answered_at": None if e.answered_at is None else utc(e.answered_at),
            "ended_at": utc(e.ts), "outcome": e.outcome, "wait": e.wait, "agent_id": e.agent_id[:32],
            "talk": e.talk, "wrapup": e.wrapup, "offers": e.offers, "overflow_action": e.overflow_action[:16],
            "overflow_target": e.overflow_target[:100], "caller_num": e.caller_num[:80], "dnis": e.dnis[:80],
            "priority": e.priority, "ivr_data": dict(e.data),
        }
    if isinstance(event, AgentStateChanged):
        a = event
        return AgentStateRecord, {
            "record_uid": f"{a.agent_id}/{a.ts:.6f}/{nonce}"[:120], "agent_id": a.agent_id[:32], "state": a.state,
            "previous": a.previous, "reason": a.reason[:40], "changed_at": utc(a.ts),
            "previous_seconds": max(0.0, a.ts - a.since), "queue": a.queue[:64], "uniqueid": a.uniqueid[:64],
        }
    return None
