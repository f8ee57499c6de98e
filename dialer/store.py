"""Dialer records that must never be lost: scheduled callbacks (from the IVR and from agents), and the
outbound campaigns' leads and attempts (which lead was dialled when, with what result).

SQLAlchemy 2.0 models on ``cti.db.Base`` and small synchronous stores used from a worker thread.
No event-loop code here; must not import the dialer's shell (``dialer.shell``) or the server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from cti.db import Base
from dialer.campaign import Lead
from dialer.compliance import LedgerEntry
from dialer.events import AttemptAnswered, AttemptFinished, AttemptStarted, DialerEvent
from dialer.figures import Tally, tally_attempts


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


# ---------------------------------------------------------------------------------------------------
# outbound campaigns: leads and their attempts (revision 0005_dialer_leads)

class DialerLead(Base):
    """A lead of a campaign and its progress: status pending | active | done | exhausted, attempts made."""

    __tablename__ = "dialer_leads"
    __table_args__ = (
        UniqueConstraint("campaign", "lead_id", name="uq_dialer_leads_campaign_lead"),
        Index("ix_dialer_leads_campaign_status", "campaign", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign: Mapped[str] = mapped_column(String(64))
    lead_id: Mapped[str] = mapped_column(String(64))
    number: Mapped[str] = mapped_column(String(40))
    fields: Mapped[str] = mapped_column(Text, default="{}")  # JSON object of strings
    timezone: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    unknowns: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[float] = mapped_column(Float, default=0.0)  # epoch seconds
    last_result: Mapped[str] = mapped_column(String(16), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DialerAttempt(Base):
    """One dial of a lead: written before its Originate goes out, completed with its result."""

    __tablename__ = "dialer_attempts"
    __table_args__ = (Index("ix_dialer_attempts_campaign_lead", "campaign", "lead_id"),
                      Index("ix_dialer_attempts_campaign_ended", "campaign", "ended_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(200), unique=True)  # the Originate's ActionID
    campaign: Mapped[str] = mapped_column(String(64))
    lead_id: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    number: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    result: Mapped[str] = mapped_column(String(16), default="")
    uniqueid: Mapped[str] = mapped_column(String(64), default="")
    agent_wait: Mapped[float | None] = mapped_column(Float, nullable=True)
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    # the compliance evidence (revision 0006_dialer_compliance; dialer.compliance)
    person: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    amd: Mapped[str] = mapped_column(String(16), default="", server_default="")
    ring_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    message_in_time: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _epoch(value: datetime) -> float:
    """Epoch seconds of a stored time (SQLite hands back naive datetimes: they are UTC)."""
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()


class LeadStore:
    """Synchronous access to the campaign tables (call it from a thread pool, or at start-up)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def import_leads(self, campaign: str, leads: Iterable[Lead], now: float) -> int:
        """Add the leads the campaign does not have yet; known leads keep their progress, and a lead id listed
        twice is added once (the first). Returns how many were added."""
        with Session(self.engine) as session, session.begin():
            known = set(session.scalars(select(DialerLead.lead_id).where(DialerLead.campaign == campaign)))
            rows = []
            for lead in leads:
                if lead.lead_id in known:
                    continue  # stored already, or listed twice in this import (the first one counts)
                known.add(lead.lead_id)
                rows.append(DialerLead(campaign=campaign, lead_id=lead.lead_id, number=lead.number,
                                       fields=json.dumps(lead.fields, ensure_ascii=False), timezone=lead.timezone,
                                       status="pending", attempts=0, unknowns=0, next_at=0.0, last_result="",
                                       updated_at=_ts(now)))
            session.add_all(rows)
            return len(rows)

    def load(self, campaign: str) -> list[Lead]:
        """Every lead of the campaign as last written (in insertion order)."""
        with Session(self.engine) as session:
            rows = session.scalars(select(DialerLead).where(DialerLead.campaign == campaign).order_by(DialerLead.id))
            return [Lead(r.lead_id, r.number, _fields(r.fields), r.timezone, r.status, r.attempts, r.unknowns,
                         r.next_at, r.last_result, last_at=_epoch(r.updated_at) if r.last_result else 0.0)
                    for r in rows]

    def apply(self, events: Iterable[DialerEvent]) -> None:
        """Write dialer events in one transaction (all or nothing)."""
        with Session(self.engine) as session, session.begin():
            for e in events:
                if isinstance(e, AttemptStarted):
                    self._started(session, e)
                elif isinstance(e, AttemptAnswered):
                    session.execute(update(DialerAttempt).where(DialerAttempt.ref == e.ref)
                                    .values(answered_at=_ts(e.ts), uniqueid=e.uniqueid[:64]))
                elif isinstance(e, AttemptFinished):
                    self._finished(session, e)

    def figures(self, campaign: str, start: float, end: float) -> Tally:
        """The campaign's figures over the attempts started in [start, end) (epoch seconds), from the
        records (``dialer.figures``: the same definitions as the wallboard's live ones)."""
        with Session(self.engine) as session:
            rows = session.execute(select(DialerAttempt.result, DialerAttempt.answered_at, DialerAttempt.late)
                                   .where(DialerAttempt.campaign == campaign,
                                          DialerAttempt.started_at >= _ts(start), DialerAttempt.started_at < _ts(end)))
            return tally_attempts((result or "", answered is not None, bool(late)) for result, answered, late in rows)

    def attempts(self, campaign: str, lead_id: str | None = None) -> list[DialerAttempt]:
        with Session(self.engine) as session:
            q = select(DialerAttempt).where(DialerAttempt.campaign == campaign)
            if lead_id is not None:
                q = q.where(DialerAttempt.lead_id == lead_id)
            return list(session.scalars(q.order_by(DialerAttempt.id)))

    def ledger_entries(self, campaign: str, start: float, end: float) -> list[LedgerEntry]:
        """The finished attempts of the campaign that ended in ``[start, end)``, as compliance evidence (in
        the order they ended), to rebuild ``dialer.compliance.ComplianceLedger`` and for ``cti compliance``."""
        with Session(self.engine) as session:
            rows = session.scalars(
                select(DialerAttempt).where(DialerAttempt.campaign == campaign, DialerAttempt.ended_at.is_not(None),
                                            DialerAttempt.ended_at >= _ts(start), DialerAttempt.ended_at < _ts(end))
                .order_by(DialerAttempt.ended_at, DialerAttempt.id))
            out = []
            for r in rows:
                assert r.ended_at is not None
                person = bool(r.person) or bool(r.late)
                out.append(LedgerEntry(_epoch(r.ended_at), r.ref, r.lead_id, r.number, r.result, person,
                                       r.result == "machine", r.result == "abandoned" or bool(r.late),
                                       r.message_in_time, r.ring_seconds, r.amd))
            return out

    @staticmethod
    def _lead(session: Session, campaign: str, lead_id: str) -> DialerLead:
        row = session.scalars(select(DialerLead).where(DialerLead.campaign == campaign,
                                                       DialerLead.lead_id == lead_id)).one_or_none()
        if row is None:
            raise LookupError(f"campaign {campaign!r} has no lead {lead_id!r} in the store")
        return row

    def _started(self, session: Session, e: AttemptStarted) -> None:
        lead = self._lead(session, e.campaign, e.lead_id)
        lead.status, lead.attempts, lead.updated_at = "active", e.attempt, _ts(e.ts)
        session.add(DialerAttempt(ref=e.ref, campaign=e.campaign, lead_id=e.lead_id, attempt=e.attempt,
                                  number=e.number, started_at=_ts(e.ts), result="", uniqueid="", late=False))

    def _finished(self, session: Session, e: AttemptFinished) -> None:
        lead = self._lead(session, e.campaign, e.lead_id)
        lead.status, lead.last_result, lead.updated_at = e.lead_status, e.result, _ts(e.ts)
        if e.next_at is not None:
            lead.next_at = e.next_at
        if e.result == "unknown":
            lead.unknowns += 1
        row = session.scalars(select(DialerAttempt).where(DialerAttempt.ref == e.ref)).one_or_none()
        if row is None:  # an attempt recovered without its row (written by an older version): keep a trace
            row = DialerAttempt(ref=e.ref, campaign=e.campaign, lead_id=e.lead_id, attempt=e.attempt,
                                number=lead.number, started_at=_ts(e.ts))
            session.add(row)
        row.ended_at, row.result, row.late, row.agent_wait = _ts(e.ts), e.result, e.late, e.agent_wait
        row.person, row.amd, row.ring_seconds, row.message_in_time = e.person, e.amd[:16], e.ring_seconds, \
            e.message_in_time
        if e.uniqueid:
            row.uniqueid = e.uniqueid[:64]


def _fields(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
