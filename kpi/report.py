"""Interval reports from the stored records, pure: per queue, agent, team, campaign or disposition and per
period (15/30/60 minutes from local midnight, the local day, the ISO week from Monday's local midnight), the
live statistics' figures (``kpi.definitions``: the same counting rules, ``*_counts``, and the same figures).
No I/O, no clock: the application reads the records (``centre.report_store``) and feeds them here in chunks
of time, in order; ``flush(until)`` hands back the periods that ended, so that a year's report holds only
the periods still open (a day, or a week) in memory.

Periods are in the centre's time zone: a 23-hour day (spring forward) has 92 quarter hours, a 25-hour day
(fall back) 100, the hour repeated twice told apart by its UTC offset (``ReportRow.start`` is epoch seconds).

Each record counts at its event's time, as live (``kpi.definitions``): a call is offered when it enters the
queue, answered when answered, abandoned or overflowed, handled (handle time, transfer) when its record is
written; an agent state's seconds go to the periods they fall in (split at the periods' bounds).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dialer.figures import Tally
from kpi import definitions as d
from kpi.settings import KpiSettings

PERIODS: dict[str, float] = {"15m": 900.0, "30m": 1800.0, "60m": 3600.0, "day": 86400.0, "week": 7 * 86400.0}
KINDS = ("queue", "agent", "team", "campaign", "disposition")
STAFFED = d.Q_FIELDS  # a queue report's extra field: its members' seconds logged in and working
C_DIALS, C_ANSWERS, C_LIVE, C_CONTACTS, C_ABANDONS, C_MACHINES = range(6)


class Periods:
    """The period holding an instant, in a time zone (the local day cached: records come in time order)."""

    __slots__ = ("zone", "period", "step", "ds", "de")

    def __init__(self, timezone: str, period: str) -> None:
        if period not in PERIODS:
            raise ValueError(f"unknown period {period!r}: expected one of {', '.join(PERIODS)}")
        self.zone = ZoneInfo(timezone)
        self.period = period
        self.step = PERIODS[period]
        self.ds = self.de = 0.0

    def day(self, ts: float) -> tuple[float, float]:
        """The local day holding ``ts``: (its midnight, the next midnight), epoch seconds."""
        if not self.ds <= ts < self.de:
            midnight = datetime.fromtimestamp(ts, self.zone).replace(hour=0, minute=0, second=0, microsecond=0)
            self.ds = midnight.timestamp()
            self.de = (midnight.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=self.zone).timestamp()
        return self.ds, self.de

    def bounds(self, ts: float) -> tuple[float, float]:
        """The period holding ``ts``: (start, end), epoch seconds."""
        ds, de = self.day(ts)
        if self.period == "day":
            return ds, de
        if self.period == "week":
            local = datetime.fromtimestamp(ds, self.zone).replace(tzinfo=None)
            monday = local - timedelta(days=local.weekday())
            return (monday.replace(tzinfo=self.zone).timestamp(),
                    (monday + timedelta(days=7)).replace(tzinfo=self.zone).timestamp())
        start = ds + ((ts - ds) // self.step) * self.step
        return start, min(de, start + self.step)

    def label(self, ts: float) -> str:
        """The local time of ``ts`` with its UTC offset (ISO 8601): the repeated hour of a fall-back day is
        told apart."""
        return datetime.fromtimestamp(ts, self.zone).isoformat()


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One entity's figures over one period [start, end) (epoch seconds)."""

    kind: str
    entity: str
    start: float
    end: float
    figures: Mapping[str, Any]


@dataclass(slots=True)
class _Open:
    """An agent's state since ``since`` (the segment not yet counted)."""

    state: str
    reason: str
    since: float


class IntervalReport:
    """Accumulates one report over [start, end). Feed records in time order, chunk by chunk (all the events
    of a chunk, any order within it), then ``close_chunk(chunk_end)`` and take ``flush(chunk_end)``."""

    def __init__(self, kind: str, settings: KpiSettings, period: str, start: float, end: float) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown report {kind!r}: expected one of {', '.join(KINDS)}")
        if end <= start:
            raise ValueError("the report's end must be after its start")
        self.kind = kind
        self.settings = settings
        self.periods = Periods(settings.timezone, period)
        self.start, self.end = start, end
        self.vecs: dict[tuple[float, str], list[float]] = {}  # (period start, entity) -> counters
        self.times: dict[tuple[float, str], dict[str, float]] = {}  # agent/team/queue-staffing: seconds by state
        self.ends: dict[float, float] = {}  # period start -> its end
        self.open: dict[str, _Open] = {}  # agent -> its state not yet counted
        self.member_of: dict[str, tuple[str, ...]] = {}
        groups = settings.members if kind == "queue" else settings.teams if kind == "team" else {}
        for group, ids in groups.items():
            for a in ids:
                self.member_of[a] = (*self.member_of.get(a, ()), group)
        self.size = {"queue": d.Q_FIELDS + 1, "agent": d.A_FIELDS, "team": d.A_FIELDS, "campaign": 6,
                     "disposition": 1}[kind]
        self.rows = 0

    # ------------------------------------------------------------------ counting
    def _vec(self, ts: float, entity: str) -> list[float]:
        start, end = self.periods.bounds(ts)
        key = (start, entity)
        vec = self.vecs.get(key)
        if vec is None:
            vec = self.vecs[key] = [0.0] * self.size
            self.ends[start] = end
        return vec

    def _add(self, ts: float, entity: str, counts: d.Counts) -> None:
        if self.start <= ts < self.end:
            vec = self._vec(ts, entity)
            for i, v in counts:
                vec[i] += v

    def _entities(self, agent: str, queue: str) -> tuple[str, ...]:
        """Who an agent's event counts for in this report: the agent, or its teams."""
        if self.kind == "agent":
            return (agent,) if agent else ()
        return self.member_of.get(agent, ()) if self.kind == "team" else ()

    def offered(self, ts: float, queue: str) -> None:
        """A caller entered ``queue``."""
        if self.kind == "queue":
            self._add(ts, queue, ((d.Q_OFFERED, 1.0),))

    def answered(self, ts: float, queue: str, agent: str, wait: float) -> None:
        if self.kind == "queue":
            self._add(ts, queue, d.answered_counts(wait, self.settings.target(queue)))
        for e in self._entities(agent, queue):
            self._add(ts, e, ((d.A_ANSWERED, 1.0),))

    def ended(self, ts: float, queue: str, agent: str, outcome: str, wait: float, talk: float, wrapup: float,
              overflow_action: str) -> None:
        """A queue-call record written at ``ts`` (its end): an abandon or overflow then, or an answered call
        handled."""
        if outcome == "answered":
            if self.kind == "queue":
                self._add(ts, queue, d.handled_counts(talk, wrapup, overflow_action))
            for e in self._entities(agent, queue):
                self._add(ts, e, d.agent_handled_counts(talk, wrapup))
        elif self.kind == "queue":
            if outcome == "abandoned":
                self._add(ts, queue, d.abandoned_counts(wait, self.settings.short_abandon, self.settings.target(queue)))
            else:
                self._add(ts, queue, d.overflowed_counts(overflow_action or "overflow"))

    def holds(self, ts: float, queue: str, agent: str, seconds: float, count: int, longest: float) -> None:
        """An agent's part of a call ended at ``ts`` with ``count`` holds (``seconds`` in all)."""
        if count <= 0 or not self.start <= ts < self.end:
            return
        if self.kind == "queue":
            vec = self._vec(ts, queue)
            vec[d.Q_HOLDS] += count
            vec[d.Q_HOLD] += seconds
            vec[d.Q_HOLD_MAX] = max(vec[d.Q_HOLD_MAX], longest)
        for e in self._entities(agent, queue):
            self._add(ts, e, ((d.A_HOLDS, float(count)), (d.A_HOLD, seconds)))

    def transferred_out(self, ts: float, queue: str) -> None:
        if self.kind == "queue":
            self._add(ts, queue, ((d.Q_TRANSFERS, 1.0),))

    def callback(self, ts: float, queue: str) -> None:
        """A callback requested for ``queue`` (from the IVR, or by an agent on a call of it)."""
        if self.kind == "queue" and queue:
            self._add(ts, queue, ((d.Q_CALLBACKS, 1.0),))

    def attempt(self, ts: float, campaign: str, step: str, result: str = "", late: bool = False) -> None:
        """A dial attempt's ``step``: ``started``, ``answered`` (a person) or ``finished`` (with its result),
        by the dialer's own definitions (``dialer.figures.Tally``)."""
        if self.kind != "campaign":
            return
        if step == "started":
            self._add(ts, campaign, ((C_DIALS, 1.0),))
        elif step == "answered":
            self._add(ts, campaign, ((C_LIVE, 1.0),))
        else:
            t = Tally()
            t.finished(result, late)
            self._add(ts, campaign, tuple((i, float(v)) for i, v in ((C_ANSWERS, t.answers), (C_CONTACTS, t.contacts),
                                                                     (C_ABANDONS, t.abandons),
                                                                     (C_MACHINES, t.machines)) if v))

    def disposition(self, ts: float, disposition: str) -> None:
        if self.kind == "disposition" and disposition:
            self._add(ts, disposition, ((0, 1.0),))

    def state(self, ts: float, agent: str, state: str, previous: str, reason: str, previous_seconds: float) -> None:
        """An agent's state change at ``ts`` (a row of the state log): the state it leaves is counted."""
        if self.kind not in ("agent", "team", "queue"):
            return
        o = self.open.get(agent)
        if o is None:  # the first change seen: the state it leaves began ``previous_seconds`` before
            o = _Open(previous, "", ts - previous_seconds)
        self._segment(agent, o.state, o.reason, o.since, ts)
        self.open[agent] = _Open(state, reason if state == "not_ready" else "", ts)

    def prime(self, agent: str, state: str, reason: str, since: float) -> None:
        """An agent's state at the report's start (its last change before it, at ``since``)."""
        self.open[agent] = _Open(state, reason if state == "not_ready" else "", since)

    def _segment(self, agent: str, state: str, reason: str, start: float, end: float) -> None:
        """Seconds of ``state`` over [start, end), split at the periods' bounds (clipped to the report)."""
        if state == "logged_out":
            return
        start, end = max(start, self.start), min(end, self.end)
        if end <= start:
            return
        key = f"not_ready:{reason}" if state == "not_ready" else state
        if self.kind == "queue":
            if key not in d.WORKING_STATES:
                return
            entities = self.member_of.get(agent, ())
        else:
            entities = self._entities(agent, "")
        if not entities:
            return
        t = start
        while t < end:
            p_start, p_end = self.periods.bounds(t)
            upto = min(end, p_end)
            for e in entities:
                if self.kind == "queue":
                    self._vec(t, e)[STAFFED] += upto - t
                else:
                    self._vec(t, e)
                    times = self.times.setdefault((p_start, e), {})
                    times[key] = times.get(key, 0.0) + upto - t
            t = upto

    def close_chunk(self, until: float) -> None:
        """Every agent's state so far is counted up to ``until`` (the end of the chunk just fed)."""
        for agent, o in self.open.items():
            if o.since < until:
                self._segment(agent, o.state, o.reason, o.since, until)
                o.since = until

    # ------------------------------------------------------------------ figures out
    def flush(self, until: float) -> Iterator[ReportRow]:
        """The rows of the periods that ended by ``until`` (all of them once ``until`` >= the report's end), in
        order of period then entity; they are forgotten."""
        done = sorted(s for s, e in self.ends.items() if e <= until or until >= self.end)
        if not done:
            return
        ready = set(done)
        keys = sorted(k for k in self.vecs if k[0] in ready)
        for key in keys:
            vec = self.vecs.pop(key)
            times = self.times.pop(key, {})
            start = key[0]
            yield ReportRow(self.kind, key[1], start, self.ends[start], self._figures(key[1], vec, times, start))
            self.rows += 1
        for s in done:
            del self.ends[s]

    def _figures(self, entity: str, vec: list[float], times: dict[str, float], start: float) -> dict[str, Any]:
        if self.kind == "queue":
            span = self.ends[start] - start
            target = self.settings.target(entity)
            return {**d.queue_figures(vec, self.settings), "staffed": round(vec[STAFFED] / span, 3),
                    "target_percent": target.percent, "target_seconds": target.seconds}
        if self.kind in ("agent", "team"):
            return d.agent_figures(vec, times)
        if self.kind == "campaign":
            return Tally(dials=int(vec[C_DIALS]), answers=int(vec[C_ANSWERS]), live_answers=int(vec[C_LIVE]),
                         contacts=int(vec[C_CONTACTS]), abandons=int(vec[C_ABANDONS]),
                         machines=int(vec[C_MACHINES])).as_dict()
        return {"calls": int(vec[0])}
