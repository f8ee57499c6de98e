"""Dialer records that must never be lost: scheduled callbacks (from the IVR and from agents), and the
outbound campaigns' leads and attempts (which lead was dialled when, with what result).

SQLAlchemy 2.0 models on ``cti.db.Base`` and small synchronous stores used from a worker thread.
No event-loop code here; must not import the dialer's shell (``dialer.shell``) or the server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
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
    # pending | queued (a campaign will dial it: ``campaign``, ``lead_id``) | dialled | done | cancelled
    status: Mapped[str] = mapped_column(String(16), default="pending")
    campaign: Mapped[str] = mapped_column(String(64), default="", server_default="")  # the campaign dialling it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class CallbackStore:
    """Synchronous access to the callbacks table (call it from a thread pool)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, *, number: str, due: float, source: str, queue: str = "", notes: str = "", agent_id: str = "",
            call_id: str = "", lead_id: str = "", campaign: str = "", now: float) -> int:
        """A callback, pending. ``campaign`` with ``lead_id``: that campaign's lead (an agent's callback on a
        campaign call); ``agent_id``: the agent who owns it (the campaign offers it to that agent first)."""
        if len(notes) > 4000:
            raise ValueError("notes are limited to 4000 characters")
        row = Callback(number=number[:40], due_at=datetime.fromtimestamp(due, UTC), queue=queue[:80], notes=notes,
                       agent_id=agent_id[:64], call_id=call_id[:160], lead_id=lead_id[:64], source=source,
                       status="pending", campaign=campaign[:64], created_at=datetime.fromtimestamp(now, UTC))
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
        Index("ix_dialer_leads_campaign_number", "campaign", "number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign: Mapped[str] = mapped_column(String(64))
    lead_id: Mapped[str] = mapped_column(String(64))
    number: Mapped[str] = mapped_column(String(40))
    fields: Mapped[str] = mapped_column(Text, default="{}")  # JSON object of strings
    timezone: Mapped[str] = mapped_column(Text, default="")  # IANA zones, space-separated (0007_dialer_dnc)
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
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    result: Mapped[str] = mapped_column(String(16), default="")
    uniqueid: Mapped[str] = mapped_column(String(64), default="")
    agent_wait: Mapped[float | None] = mapped_column(Float, nullable=True)
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    # the compliance evidence (revision 0006_dialer_compliance; dialer.compliance)
    person: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    amd: Mapped[str] = mapped_column(String(16), default="", server_default="")
    ring_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    message_in_time: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


class DncNumber(Base):
    """A number on the internal do-not-call list (revision 0007_dialer_dnc): never dialled by any campaign.
    ``source``: where it came from (``import:FILE``, ``disposition:AGENT``, ...)."""

    __tablename__ = "dialer_dnc"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    source: Mapped[str] = mapped_column(String(120), default="")
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DncStore:
    """Synchronous access to the do-not-call list (call it from a thread pool, or from the CLI)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, numbers: Iterable[str], source: str, now: float) -> int:
        """Add the numbers not on the list yet, in one transaction; returns how many were added."""
        wanted = list(dict.fromkeys(n[:40] for n in numbers if n))
        if not wanted:
            return 0
        with Session(self.engine) as session, session.begin():
            known: set[str] = set()
            for i in range(0, len(wanted), IN_CHUNK):
                part = wanted[i:i + IN_CHUNK]
                known.update(session.scalars(select(DncNumber.number).where(DncNumber.number.in_(part))))
            rows = [DncNumber(number=n, source=source[:120], added_at=_ts(now)) for n in wanted if n not in known]
            session.add_all(rows)
            return len(rows)

    def numbers(self) -> set[str]:
        with Session(self.engine) as session:
            return set(session.scalars(select(DncNumber.number)))

    def blocked(self, numbers: Iterable[str]) -> set[str]:
        """Which of ``numbers`` are on the list."""
        wanted = list(dict.fromkeys(numbers))
        found: set[str] = set()
        with Session(self.engine) as session:
            for i in range(0, len(wanted), IN_CHUNK):
                part = wanted[i:i + IN_CHUNK]
                found.update(session.scalars(select(DncNumber.number).where(DncNumber.number.in_(part))))
        return found


IN_CHUNK = 500  # values per SQL IN (...) list
CLAIM_LIMIT = 500  # callbacks looked at per claim
IMPORT_TRIES = 3  # tries of a start-up lead import that collided with another node's (LeadStore.import_leads)


@dataclass(frozen=True, slots=True)
class ClaimedCallback:
    """A scheduled callback a campaign is to dial: its lead, when it is due, the agent who owns it ("" none:
    any agent of the campaign) and its notes."""

    campaign: str
    lead: Lead
    due: float
    owner: str = ""
    notes: str = ""


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What one import chunk did: leads added, and those skipped with why (lead id -> reason)."""

    added: int
    known: list[str]  # lead ids the campaign has already (a re-import): not an error
    skipped: dict[str, str]  # lead id -> reason (a number already in the campaign, on the do-not-call list)


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
        twice is added once (the first). Returns how many were added. Several nodes starting together on one
        database import the same leads at once: the one whose insert collides with another's (a unique lead id)
        reads the leads again and adds what is still missing (up to ``IMPORT_TRIES`` times)."""
        leads = list(leads)
        for tries_left in range(IMPORT_TRIES - 1, -1, -1):
            try:
                return self._import_leads(campaign, leads, now)
            except IntegrityError:
                if not tries_left:
                    raise
        raise AssertionError("unreachable")

    def _import_leads(self, campaign: str, leads: list[Lead], now: float) -> int:
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

    def import_chunk(self, campaign: str, leads: list[Lead], now: float) -> ChunkResult:
        """Add one chunk of leads in one transaction (all or nothing: a crash leaves whole chunks, and running
        the import again adds only what is missing). Skipped: a lead id the campaign has (``known``), a number
        the campaign has under another id or earlier in the chunk, a number on the do-not-call list."""
        ids = [lead.lead_id for lead in leads]
        numbers = list(dict.fromkeys(lead.number for lead in leads))
        with Session(self.engine) as session, session.begin():
            known_ids: set[str] = set()
            owner: dict[str, str] = {}
            blocked: set[str] = set()
            for i in range(0, max(len(ids), len(numbers)), IN_CHUNK):
                part_ids, part_numbers = ids[i:i + IN_CHUNK], numbers[i:i + IN_CHUNK]
                if part_ids:
                    known_ids.update(session.scalars(select(DialerLead.lead_id).where(
                        DialerLead.campaign == campaign, DialerLead.lead_id.in_(part_ids))))
                if part_numbers:
                    for number, lead_id in session.execute(select(DialerLead.number, DialerLead.lead_id).where(
                            DialerLead.campaign == campaign, DialerLead.number.in_(part_numbers))):
                        owner.setdefault(number, lead_id)
                    blocked.update(session.scalars(select(DncNumber.number).where(
                        DncNumber.number.in_(part_numbers))))
            rows: list[DialerLead] = []
            known: list[str] = []
            skipped: dict[str, str] = {}
            for lead in leads:
                if lead.lead_id in known_ids:
                    known.append(lead.lead_id)
                elif lead.number in blocked:
                    skipped[lead.lead_id] = f"{lead.number} is on the do-not-call list"
                elif lead.number in owner:
                    skipped[lead.lead_id] = f"{lead.number} is already in campaign {campaign!r} (lead " \
                                            f"{owner[lead.number]!r})"
                else:
                    owner[lead.number] = lead.lead_id
                    known_ids.add(lead.lead_id)
                    rows.append(DialerLead(campaign=campaign, lead_id=lead.lead_id, number=lead.number,
                                           fields=json.dumps(lead.fields, ensure_ascii=False),
                                           timezone=lead.timezone, status="pending", attempts=0, unknowns=0,
                                           next_at=0.0, last_result="", updated_at=_ts(now)))
            session.add_all(rows)
            return ChunkResult(len(rows), known, skipped)

    def load(self, campaign: str, limit: int | None = None) -> list[Lead]:
        """Every lead of the campaign as last written (in insertion order); with ``limit``, the hopper's start:
        the leads with an attempt open, then at most ``limit`` pending leads, earliest due first."""
        with Session(self.engine) as session:
            q = select(DialerLead).where(DialerLead.campaign == campaign)
            if limit is None:
                return [_lead(r) for r in session.scalars(q.order_by(DialerLead.id))]
            pending = session.scalars(q.where(DialerLead.status == "pending", _not_dnc())
                                      .order_by(DialerLead.next_at, DialerLead.id).limit(limit))
            return _open_leads(session, campaign) + [_lead(r) for r in pending]

    def open_leads(self, campaign: str) -> list[Lead]:
        """The campaign's leads with an attempt open (``active``), in insertion order."""
        with Session(self.engine) as session:
            return _open_leads(session, campaign)

    def refill(self, campaign: str, limit: int, until: float) -> tuple[list[Lead], int]:
        """The hopper's refill: at most ``limit`` pending leads not on the do-not-call list (those never come back
        to take room), earliest due first; and how many of them are due by ``until`` (the supply the run-out
        warning weighs)."""
        with Session(self.engine) as session:
            rows = session.scalars(select(DialerLead).where(DialerLead.campaign == campaign,
                                                            DialerLead.status == "pending", _not_dnc())
                                   .order_by(DialerLead.next_at, DialerLead.id).limit(limit))
            leads = [_lead(r) for r in rows]
            due = session.scalar(select(func.count()).select_from(DialerLead).where(
                DialerLead.campaign == campaign, DialerLead.status == "pending", DialerLead.next_at <= until,
                _not_dnc()))
            return leads, int(due or 0)

    def dnc_numbers(self) -> set[str]:
        """The do-not-call list."""
        with Session(self.engine) as session:
            return set(session.scalars(select(DncNumber.number)))

    def add_dnc(self, number: str, source: str, now: float) -> bool:
        """Put a number on the do-not-call list (an agent's disposition); False if it was there."""
        return DncStore(self.engine).add([number], source, now) == 1

    def claim_callbacks(self, queues: dict[str, str], until: float, now: float) -> list[ClaimedCallback]:
        """Scheduled callbacks for the campaigns (campaign -> its ACD queue): those queued for them already
        (a restart), and the pending ones due by ``until`` for a lead of a campaign or for a campaign's queue,
        now claimed. A callback's lead is the campaign's lead of that id, else a new lead ``cb<id>``; it is
        stored before it is returned. A callback an agent scheduled (``agent_id``) is that agent's own: the
        campaign offers it to its owner first (``ClaimedCallback.owner``)."""
        by_queue = {q: c for c, q in queues.items()}
        out: list[ClaimedCallback] = []
        with Session(self.engine) as session, session.begin():
            rows = session.scalars(select(Callback).where(
                ((Callback.status == "queued") & Callback.campaign.in_(list(queues)))
                | ((Callback.status == "pending") & (Callback.due_at <= _ts(until))
                   & (Callback.queue.in_(list(by_queue)) | (Callback.lead_id != ""))))
                .order_by(Callback.due_at).limit(CLAIM_LIMIT))
            for cb in rows:
                # queued: the campaign dialling it; pending: the campaign of its lead, when it was scheduled on
                # a campaign's call
                campaign = cb.campaign if cb.status == "queued" or (cb.lead_id and cb.campaign in queues) else ""
                row: DialerLead | None = None
                if not campaign and cb.lead_id:
                    row = session.scalars(select(DialerLead).where(DialerLead.lead_id == cb.lead_id,
                                                                   DialerLead.campaign.in_(list(queues)))
                                          .order_by(DialerLead.id)).first()
                    campaign = row.campaign if row is not None else ""
                campaign = campaign or by_queue.get(cb.queue, "")
                if not campaign:
                    continue  # not a campaign's (an inbound queue's, or an agent's own): left to others
                if row is None:
                    lead_id = cb.lead_id if cb.status == "queued" else (cb.lead_id or f"cb{cb.id}")
                    row = session.scalars(select(DialerLead).where(DialerLead.campaign == campaign,
                                                                   DialerLead.lead_id == lead_id)).one_or_none()
                if row is None:
                    fields = {"callback_notes": cb.notes, "callback_agent": cb.agent_id, "callback_source": cb.source}
                    row = DialerLead(campaign=campaign, lead_id=cb.lead_id or f"cb{cb.id}", number=cb.number,
                                     fields=json.dumps(fields, ensure_ascii=False), timezone="", status="pending",
                                     attempts=0, unknowns=0, next_at=0.0, last_result="", updated_at=_ts(now))
                    session.add(row)
                due = cb.due_at.replace(tzinfo=cb.due_at.tzinfo or UTC).timestamp()
                if row.status != "active":
                    row.status, row.next_at, row.updated_at = "pending", due, _ts(now)
                cb.status, cb.campaign, cb.lead_id = "queued", campaign, row.lead_id
                session.flush()
                out.append(ClaimedCallback(campaign, _lead(row), due, cb.agent_id,
                                           cb.notes or ""))
        return out

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
        session.execute(update(Callback).where(Callback.status == "queued", Callback.campaign == e.campaign,
                                               Callback.lead_id == e.lead_id).values(status="dialled"))
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


def _not_dnc() -> Any:
    """A lead whose number is not on the do-not-call list (a WHERE clause)."""
    return ~DialerLead.number.in_(select(DncNumber.number))


def _open_leads(session: Session, campaign: str) -> list[Lead]:
    """The campaign's leads with an attempt open (``active``), in insertion order."""
    return [_lead(r) for r in session.scalars(select(DialerLead).where(
        DialerLead.campaign == campaign, DialerLead.status == "active").order_by(DialerLead.id))]


def _lead(r: DialerLead) -> Lead:
    return Lead(r.lead_id, r.number, _fields(r.fields), r.timezone, r.status, r.attempts, r.unknowns, r.next_at,
                r.last_result, last_at=_epoch(r.updated_at) if r.last_result else 0.0)


def _fields(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
