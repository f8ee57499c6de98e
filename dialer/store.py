"""Dialer records that must never be lost: scheduled callbacks (from the IVR and from agents).

SQLAlchemy 2.0 models on ``cti.db.Base`` and a small synchronous store used from a worker thread.
The outbound campaign engine (pacing, leads) builds on this table. No event-loop code here.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Engine, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from cti.db import Base


class Callback(Base):
    """A promise to call someone back: due time, number, and where it came from."""

    __tablename__ = "callbacks"
    __table_args__ = (Index("ix_callbacks_status_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(40))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    queue: Mapped[str] = mapped_column(String(80), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    agent_id: Mapped[str] = mapped_column(String(64), default="")
    call_id: Mapped[str] = mapped_column(String(160), default="")
    lead_id: Mapped[str] = mapped_column(String(64), default="")
    source: Mapped[str] = mapped_column(String(16))  # ivr | agent
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | dialled | done | cancelled
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CallbackStore:
    """Synchronous access to the callbacks table (call it from a thread pool)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, *, number: str, due: float, source: str, queue: str = "", notes: str = "", agent_id: str = "",
            call_id: str = "", lead_id: str = "", now: float) -> int:
        if len(notes) > 4000:
            raise ValueError("notes are limited to 4000 characters")
        row = Callback(number=number[:40], due_at=datetime.fromtimestamp(due, UTC), queue=queue[:80], notes=notes,
                       agent_id=agent_id[:64], call_id=call_id[:160], lead_id=lead_id[:64], source=source,
                       status="pending", created_at=datetime.fromtimestamp(now, UTC))
        with Session(self.engine) as session, session.begin():
            session.add(row)
            session.flush()
            return int(row.id)

    def pending(self, limit: int = 100) -> list[Callback]:
        with Session(self.engine) as session:
            rows = session.scalars(
                select(Callback).where(Callback.status == "pending").order_by(Callback.due_at).limit(limit))
            return list(rows)
