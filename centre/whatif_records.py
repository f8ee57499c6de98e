"""What ``cti whatif`` reads of a recorded range, and the models it makes of it.

``read_range`` (SQLAlchemy Core, rows streamed): the queue stays (``acd_queue_calls``) that entered a queue in
``[start, end)`` and the agent state log (``acd_agent_states``) of the range, with each agent's last change in
the ``lookback`` before it (its state when the range begins). Blocking; SQLite and PostgreSQL alike.

The models are pure:

* ``arrivals``: one ``sim.recorded_traffic.RecordedCall`` per inbound call (a call's first queue stay; the
  dialer's calls are left to the dialer of the configuration replayed): when it entered the queue, its DID,
  number, queue and priority; its talk time (answered: as recorded; otherwise drawn from that queue's recorded
  talk times, seeded); its patience. Patience is exponential, its mean estimated from the range (maximum
  likelihood with censoring: the waits of all first stays over the number that abandoned); an abandoned call's
  patience is its wait; an answered or overflowed caller would have waited at least its wait, so its patience
  is that wait plus a draw of the exponential beyond it (memoryless), seeded. A wrap-up the agent ended
  before the queue's timer is kept with the call (the replay ends it as soon); others are the timer's.
* ``staffing``: the agents' own steps as recorded (log in, ready, not ready with its reason, log out) at their
  times, and how long an agent took to come back to ready after a ring-no-answer made it not ready (the
  median). What the ACD did to them (offers, calls, wrap-ups, a ring-no-answer) is not a step: the replay's
  ACD does it again.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Engine, select

from acd.events import AgentStateChanged, QueueCallFinished
from acd.service import campaign_person
from acd.tables import AgentStateRecord, QueueCallRecord, utc
from sim.recorded_traffic import RecordedCall

DEFAULT_TALK = 180.0  # seconds, when a queue has no recorded talk time at all
DEFAULT_RETURN = 20.0  # seconds back to ready after a ring-no-answer, when the range shows none
STREAM_ROWS = 2000
EARLY = 0.5  # seconds: a wrap-up this much shorter than the queue's was ended by the agent


def epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


@dataclass
class RecordedRange:
    """The records of ``[start, end)``."""

    start: float
    end: float
    stays: list[QueueCallFinished] = field(default_factory=list)
    outbound: set[tuple[str, str]] = field(default_factory=set)  # (server, call id) of the dialer's calls
    states: list[AgentStateChanged] = field(default_factory=list)  # in the range, in order
    before: dict[str, AgentStateChanged] = field(default_factory=dict)  # each agent's last change before it


def read_range(engine: Engine, start: float, end: float, lookback: float = 86400.0) -> RecordedRange:
    """The queue stays entered in ``[start, end)`` and the agent state changes of the range (blocking)."""
    out = RecordedRange(start, end)
    q, a = QueueCallRecord, AgentStateRecord
    with engine.connect() as conn:
        rows = conn.execution_options(yield_per=STREAM_ROWS).execute(
            select(q).where(q.entered_at >= utc(start), q.entered_at < utc(end)).order_by(q.entered_at, q.id))
        for r in rows.mappings():
            stay = QueueCallFinished(
                ts=epoch(r["ended_at"]), server=r["server"], uniqueid=r["uniqueid"], call_id=r["call_id"],
                queue=r["queue"], entered=epoch(r["entered_at"]), outcome=r["outcome"], wait=r["wait"],
                agent_id=r["agent_id"], answered_at=None if r["answered_at"] is None else epoch(r["answered_at"]),
                talk=r["talk"], wrapup=r["wrapup"], offers=r["offers"], overflow_action=r["overflow_action"],
                overflow_target=r["overflow_target"], caller_num=r["caller_num"], dnis=r["dnis"],
                priority=r["priority"])
            out.stays.append(stay)
            if campaign_person(r["ivr_data"] or {}):
                out.outbound.add((stay.server, stay.call_id))
        rows = conn.execution_options(yield_per=STREAM_ROWS).execute(
            select(a).where(a.changed_at >= utc(start - lookback), a.changed_at < utc(end))
            .order_by(a.changed_at, a.id))
        for r in rows.mappings():
            ts = epoch(r["changed_at"])
            change = AgentStateChanged(ts=ts, agent_id=r["agent_id"], state=r["state"], previous=r["previous"],
                                       reason=r["reason"], since=ts - r["previous_seconds"], queue=r["queue"],
                                       uniqueid=r["uniqueid"])
            if ts < start:
                out.before[change.agent_id] = change
            else:
                out.states.append(change)
    return out


# ---------------------------------------------------------------------------------------------------
# arrivals

@dataclass(frozen=True)
class ArrivalModel:
    calls: list[RecordedCall]
    patience_mean: float | None  # seconds (None: nobody abandoned, nobody gives up)
    abandons: int


def first_stays(stays: Iterable[QueueCallFinished], outbound: set[tuple[str, str]]) -> list[QueueCallFinished]:
    """Each inbound call's first queue stay (a later one is an overflow or a transfer: the replay makes its own)."""
    first: dict[tuple[str, str], QueueCallFinished] = {}
    for s in stays:
        key = (s.server, s.call_id or s.uniqueid)
        if key in outbound:
            continue
        if key not in first or s.entered < first[key].entered:
            first[key] = s
    return sorted(first.values(), key=lambda s: (s.entered, s.uniqueid))


def arrivals(rec: RecordedRange, seed: int = 0, wrapup_timer: Callable[[str, str], float | None] | None = None
             ) -> ArrivalModel:
    """The recorded callers as the simulator replays them (see the module's docstring). ``wrapup_timer(queue,
    agent)``: the wrap-up seconds of the configuration the range ran with; an answered call whose wrap-up
    ended sooner (the agent ended it) keeps its wrap-up, to be ended as soon in the replay."""
    stays = first_stays(rec.stays, rec.outbound)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    abandons = sum(1 for s in stays if s.outcome == "abandoned")
    exposure = sum(s.wait for s in stays)
    mean = exposure / abandons if abandons else None
    talks: dict[str, list[float]] = {}
    for s in stays:
        if s.outcome == "answered":
            talks.setdefault(s.queue, []).append(s.talk)
    every = [t for ts in talks.values() for t in ts]
    calls = []
    for s in stays:
        # each caller takes the same number of variates whatever its outcome (common random numbers)
        extra, pick = float(rng.exponential(1.0)), float(rng.random())
        if s.outcome == "abandoned":
            patience: float | None = s.wait
        else:
            patience = None if mean is None else s.wait + extra * mean
        if s.outcome == "answered":
            talk = s.talk
        else:
            pool = talks.get(s.queue) or every
            talk = pool[min(int(pick * len(pool)), len(pool) - 1)] if pool else DEFAULT_TALK
        timer = wrapup_timer(s.queue, s.agent_id) if wrapup_timer is not None else None
        early = s.wrapup if s.outcome == "answered" and timer is not None and s.wrapup < timer - EARLY else None
        calls.append(RecordedCall(at=s.entered, did=s.dnis, caller_num=s.caller_num, queue=s.queue,
                                  priority=s.priority, patience=patience, talk=max(0.5, talk), wrapup=early))
    return ArrivalModel(calls, mean, abandons)


# ---------------------------------------------------------------------------------------------------
# staffing

@dataclass(frozen=True, slots=True)
class Step:
    """An agent's own step: ``login``, ``ready``, ``not_ready`` (with ``reason``) or ``logout``."""

    at: float
    agent_id: str
    action: str
    reason: str = ""


@dataclass(frozen=True)
class Staffing:
    steps: list[Step]
    agents: frozenset[str]  # every agent the records show logged in during the range
    return_after: float  # seconds back to ready after a ring-no-answer


_WORKING = ("ready", "reserved", "on_call", "wrap_up")


def staffing(rec: RecordedRange) -> Staffing:
    """The agents' own steps of the range (see the module's docstring)."""
    steps: list[Step] = []
    agents: set[str] = set()
    for agent_id, last in sorted(rec.before.items()):
        if last.state in _WORKING:
            steps += [Step(rec.start, agent_id, "login"), Step(rec.start, agent_id, "ready")]
            agents.add(agent_id)
        elif last.state == "not_ready":
            steps.append(Step(rec.start, agent_id, "login"))
            if last.reason != "login" and last.previous != "reserved":
                steps.append(Step(rec.start, agent_id, "not_ready", last.reason))
            agents.add(agent_id)
    fault: dict[str, bool] = {a: last.state == "not_ready" and last.previous == "reserved"
                              for a, last in rec.before.items()}
    returns: list[float] = []
    for c in rec.states:
        a = c.agent_id
        if c.state == "not_ready" and c.previous == "logged_out":
            steps.append(Step(c.ts, a, "login"))
            agents.add(a)
            fault[a] = False
        elif c.state == "logged_out":
            steps.append(Step(c.ts, a, "logout"))
        elif c.state == "not_ready":
            fault[a] = c.previous == "reserved"  # the ACD's doing: a ring-no-answer, a busy or unreachable phone
            if not fault[a] and c.reason != "login":
                steps.append(Step(c.ts, a, "not_ready", c.reason))
        elif c.state == "ready" and c.previous == "not_ready":
            if fault.get(a):
                returns.append(c.ts - c.since)
            else:
                steps.append(Step(c.ts, a, "ready"))
            fault[a] = False
        # a ready after wrap-up, offers, calls, wrap-ups: the replay's ACD does them
    steps.sort(key=lambda s: s.at)  # stable: a login stays before its ready
    return Staffing(steps, frozenset(agents), statistics.median(returns) if returns else DEFAULT_RETURN)
