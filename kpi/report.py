"""Interval reports from the stored records, pure: per queue, agent, team, campaign or disposition and per
period (15/30/60 minutes from local midnight, the local day, the ISO week from Monday's local midnight), the
live statistics' figures (``kpi.definitions``: the same counting rules, ``*_counts``, and the same figures).
No I/O, no clock: the application reads the records (``centre.report_store``) and feeds them here in chunks
of time, in order; ``flush(until)`` hands back the periods that ended, so that a year's report holds only
the periods still open (a day, or a week) in memory.

Periods are in the centre's time zone: a 23-hour day (spring forward) has 92 quarter hours, a 25-hour day
(fall back) 100, the hour repeated twice told apart by its UTC offset (``ReportRow.start`` is epoch seconds).

The records come in as columns (numpy arrays, a chunk's rows at once) and the counting rules of
``kpi.definitions`` are applied to whole columns (they are written as arithmetic for that).

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

import numpy as np

from dialer.figures import Tally
from kpi import definitions as d
from kpi.settings import KpiSettings

PERIODS: dict[str, float] = {"15m": 900.0, "30m": 1800.0, "60m": 3600.0, "day": 86400.0, "week": 7 * 86400.0}
KINDS = ("queue", "agent", "team", "campaign", "disposition")
STAFFED = d.Q_FIELDS  # a queue report's extra field: its members' seconds logged in and working
C_DIALS, C_ANSWERS, C_LIVE, C_CONTACTS, C_ABANDONS, C_MACHINES = range(6)


NOT_READY = "not_ready:"


def state_key(state: str, reason: str) -> str:
    """What an agent's seconds are counted under: its state, or ``not_ready:<reason>`` (``agent_figures``)."""
    return NOT_READY + reason if state == "not_ready" else state


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


Column = Any  # a numpy array: one value per record


def _objects(values: Any) -> np.ndarray:
    return values if isinstance(values, np.ndarray) else np.array(list(values), dtype=object)


class _Sums:
    """Sums by (entity, period, column) for the periods of one chunk, growing as entities and columns appear."""

    __slots__ = ("data",)

    def __init__(self, entities: int, periods: int, columns: int) -> None:
        self.data = np.zeros((max(8, entities), periods, max(1, columns)))

    def fit(self, entities: int, columns: int) -> None:
        e, p, c = self.data.shape
        if entities > e or columns > c:
            grown = np.zeros((max(e, 2 * entities), p, max(c, columns + 4)))
            grown[:e, :, :c] = self.data
            self.data = grown


class IntervalReport:
    """Accumulates one report over [start, end). Feed it the records chunk by chunk in time order, a chunk
    within one local day (``begin_chunk``; every event of the chunk, as columns: numpy arrays, one value per
    record, any order; the agent states in time order), then ``end_chunk`` and take ``flush``."""

    def __init__(self, kind: str, settings: KpiSettings, period: str, start: float, end: float) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown report {kind!r}: expected one of {', '.join(KINDS)}")
        if end <= start:
            raise ValueError("the report's end must be after its start")
        self.kind = kind
        self.settings = settings
        self.periods = Periods(settings.timezone, period)
        self.start, self.end = start, end
        self.size = {"queue": d.Q_FIELDS + 1, "agent": d.A_FIELDS, "team": d.A_FIELDS, "campaign": 6,
                     "disposition": 1}[kind]
        self.names: list[str] = []  # entity index -> name
        self.index: dict[str, int] = {}
        self.keys: list[str] = []  # times column -> state key (``not_ready:<reason>`` for not ready)
        self.key_index: dict[str, int] = {}
        groups = settings.members if kind == "queue" else settings.teams if kind == "team" else {}
        self.member_of: dict[str, list[str]] = {}
        for group, ids in groups.items():
            for a in ids:
                self.member_of.setdefault(a, []).append(group)
        self.open: dict[str, tuple[str, float]] = {}  # agent -> (its state key, since): not yet counted
        self.target_seconds: dict[str, float] = {}
        self.agent_codes: dict[str, int] = {}
        self.code_groups: list[list[int]] = []  # agent code -> the entities its events count for
        self.code_count = self.code_offset = self.code_flat = np.zeros(0, dtype=np.int64)
        # the chunk: its bounds, its local day, its periods' bounds, its sums
        self.lo = self.hi = self.ds = 0.0
        self.step = self.periods.step
        self.starts = self.ends = np.zeros(0)
        self.sums = _Sums(0, 1, self.size)
        self.times = _Sums(0, 1, 0)
        # periods counted, not yet flushed: start -> (end, counters by entity, times by entity)
        self.pending: dict[float, tuple[float, np.ndarray, np.ndarray]] = {}
        self.rows = 0

    # ------------------------------------------------------------------ chunks
    def begin_chunk(self, lo: float, hi: float) -> None:
        """The next records are those of [lo, hi), within one local day, after the last chunk's."""
        self.lo, self.hi = lo, hi
        self.ds, de = self.periods.day(lo)
        if hi > de:
            raise ValueError("a chunk must lie within one local day")
        if self.periods.period in ("day", "week"):
            ps, pe = self.periods.bounds(lo)
            self.starts, self.ends, self.step = np.array([ps]), np.array([pe]), float("inf")
        else:
            self.starts = self.ds + self.periods.step * np.arange(int(np.ceil((de - self.ds) / self.periods.step)))
            self.ends = np.minimum(self.starts + self.periods.step, de)
        n = len(self.starts)
        self.sums = _Sums(len(self.names), n, self.size)
        self.times = _Sums(len(self.names), n, len(self.keys))

    def end_chunk(self) -> None:
        """Count every agent's state up to the chunk's end and keep the chunk's periods for ``flush``."""
        if self.open:
            agents = list(self.open)
            keys = [self.open[a][0] for a in agents]
            since = np.array([self.open[a][1] for a in agents])
            self._segments(_objects(agents), since, np.full(len(agents), self.hi), keys)
            for a in agents:
                self.open[a] = (self.open[a][0], max(self.open[a][1], self.hi))
        e = len(self.names)
        for p, start in enumerate(self.starts.tolist()):
            sums = self.sums.data[:e, p, :]
            times = self.times.data[:e, p, :len(self.keys)]
            if not sums.any() and not times.any():
                continue
            old = self.pending.get(start)
            if old is None:
                self.pending[start] = (float(self.ends[p]), sums.copy(), times.copy())
            else:
                merged_s = np.zeros((e, self.size))
                merged_s[:old[1].shape[0]] = old[1]
                merged_s += sums
                merged_t = np.zeros((e, len(self.keys)))
                merged_t[:old[2].shape[0], :old[2].shape[1]] = old[2]
                merged_t += times
                if self.kind == "queue":  # the longest hold is a max, not a sum
                    merged_s[:old[1].shape[0], d.Q_HOLD_MAX] = np.maximum(old[1][:, d.Q_HOLD_MAX],
                                                                         sums[:old[1].shape[0], d.Q_HOLD_MAX])
                self.pending[start] = (old[0], merged_s, merged_t)

    # ------------------------------------------------------------------ counting
    def _entity(self, names: np.ndarray) -> np.ndarray:
        """Entity indices of ``names`` (new names get new indices): a dict look-up per record, cheaper than
        sorting strings."""
        index = self.index
        get = index.get
        idx = [get(n, -1) for n in names.tolist()]
        if -1 in idx:
            for i, n in enumerate(names.tolist()):
                if idx[i] == -1:
                    k = index.get(n)
                    if k is None:
                        k = index[n] = len(self.names)
                        self.names.append(n)
                    idx[i] = k
        self.sums.fit(len(self.names), self.size)
        self.times.fit(len(self.names), len(self.keys))
        return np.array(idx, dtype=np.int64)

    def _period(self, ts: np.ndarray) -> np.ndarray:
        if self.step == float("inf"):
            return np.zeros(len(ts), dtype=np.int64)
        return np.minimum(((ts - self.ds) // self.step).astype(np.int64), len(self.starts) - 1)

    def _inside(self, ts: np.ndarray) -> np.ndarray:
        return (ts >= max(self.lo, self.start)) & (ts < min(self.hi, self.end))

    def _count(self, ts: Column, names: Column, counts: d.Counts) -> None:
        """Add ``counts`` (``kpi.definitions``' pairs of field and value, per record or for all) at ``ts`` for
        the entities ``names`` (or their indices)."""
        ts = np.asarray(ts, dtype=float)
        keep = self._inside(ts)
        if not keep.any():
            return
        if isinstance(names, np.ndarray) and names.dtype.kind == "i":  # entity indices already (``_by_member``)
            e = names[keep]
        else:
            e = self._entity(_objects(names)[keep])
        p = self._period(ts[keep])
        for field, value in counts:
            v = value[keep] if isinstance(value, np.ndarray) else value
            np.add.at(self.sums.data, (e, p, field), v)

    def _by_member(self, agents: Column, *columns: Column) -> tuple[np.ndarray, ...]:
        """The records of ``agents`` once per entity an agent's event counts for in this report (the agent,
        or each of its teams or queues): (entity indices, columns...). Looked up once per distinct agent,
        then by numpy."""
        agents = _objects(agents)
        codes_of = self.agent_codes
        codes = np.array([codes_of.setdefault(a, len(codes_of)) for a in agents.tolist()], dtype=np.int64)
        if len(self.code_groups) < len(codes_of):  # the agents seen first now: their entities
            for a in list(codes_of)[len(self.code_groups):]:
                groups = ([a] if a else []) if self.kind == "agent" else self.member_of.get(a, [])
                self.code_groups.append([int(i) for i in self._entity(_objects(groups))] if groups else [])
            self.code_count = np.array([len(g) for g in self.code_groups], dtype=np.int64)
            self.code_offset = np.cumsum(self.code_count) - self.code_count
            self.code_flat = np.array([i for g in self.code_groups for i in g], dtype=np.int64)
        counts = self.code_count[codes]
        take = np.repeat(np.arange(len(codes)), counts)
        within = np.arange(len(take)) - np.repeat(np.cumsum(counts) - counts, counts)
        ent = self.code_flat[np.repeat(self.code_offset[codes], counts) + within]
        return (ent, *(np.asarray(c)[take] for c in columns))

    def offered(self, ts: Column, queue: Column) -> None:
        """Callers entered ``queue``."""
        if self.kind == "queue":
            self._count(ts, queue, ((d.Q_OFFERED, 1.0),))

    def answered(self, ts: Column, queue: Column, agent: Column, wait: Column) -> None:
        if self.kind == "queue":
            wait = np.asarray(wait, dtype=float)
            self._count(ts, queue, d.answered_counts(wait, self._targets(queue)))
        elif self.kind in ("agent", "team"):
            names, t = self._by_member(agent, ts)
            self._count(t, names, ((d.A_ANSWERED, 1.0),))

    def _targets(self, queue: Column) -> np.ndarray:
        """Each record's queue's service-level threshold, seconds."""
        seconds = self.target_seconds
        out = []
        for name in _objects(queue).tolist():
            t = seconds.get(name)
            if t is None:
                t = seconds[name] = self.settings.target(name).seconds
            out.append(t)
        return np.array(out, dtype=float)

    def ended(self, ts: Column, queue: Column, agent: Column, outcome: Column, wait: Column, talk: Column,
              wrapup: Column, overflow_action: Column) -> None:
        """Queue-call records written at ``ts`` (their ends): abandons and overflows then, or answered calls
        handled."""
        ts, outcome = np.asarray(ts, dtype=float), _objects(outcome)
        talk, wrapup = np.asarray(talk, dtype=float), np.asarray(wrapup, dtype=float)
        action = _objects(overflow_action)
        done = outcome == "answered"
        if self.kind == "queue":
            q, w = _objects(queue), np.asarray(wait, dtype=float)
            self._count(ts[done], q[done], d.handled_counts(talk[done], wrapup[done], action[done]))
            ab = outcome == "abandoned"
            self._count(ts[ab], q[ab], d.abandoned_counts(w[ab], self.settings.short_abandon, self._targets(q[ab])))
            over = ~done & ~ab
            act = np.where(action[over] == "", "overflow", action[over])
            self._count(ts[over], q[over], d.overflowed_counts(act))
        elif self.kind in ("agent", "team"):
            names, t, tk, wr = self._by_member(_objects(agent)[done], ts[done], talk[done], wrapup[done])
            self._count(t, names, d.agent_handled_counts(tk, wr))

    def holds(self, ts: Column, queue: Column, agent: Column, seconds: Column, count: Column, longest: Column) -> None:
        """Agents' parts of calls that ended at ``ts`` with ``count`` holds (``seconds`` in all)."""
        ts, count = np.asarray(ts, dtype=float), np.asarray(count, dtype=float)
        seconds, longest = np.asarray(seconds, dtype=float), np.asarray(longest, dtype=float)
        some = count > 0
        if self.kind == "queue":
            q = _objects(queue)[some]
            self._count(ts[some], q, ((d.Q_HOLDS, count[some]), (d.Q_HOLD, seconds[some])))
            keep = self._inside(ts[some])
            if keep.any():
                e = self._entity(q[keep])
                np.maximum.at(self.sums.data, (e, self._period(ts[some][keep]), d.Q_HOLD_MAX), longest[some][keep])
        elif self.kind in ("agent", "team"):
            names, t, c, s = self._by_member(_objects(agent)[some], ts[some], count[some], seconds[some])
            self._count(t, names, ((d.A_HOLDS, c), (d.A_HOLD, s)))

    def transferred_out(self, ts: Column, queue: Column) -> None:
        if self.kind == "queue":
            self._count(ts, queue, ((d.Q_TRANSFERS, 1.0),))

    def callback(self, ts: Column, queue: Column) -> None:
        """Callbacks requested for ``queue`` (from the IVR, or by an agent on a call of it)."""
        if self.kind == "queue":
            q = _objects(queue)
            self._count(np.asarray(ts, dtype=float)[q != ""], q[q != ""], ((d.Q_CALLBACKS, 1.0),))

    def attempts_started(self, ts: Column, campaign: Column) -> None:
        if self.kind == "campaign":
            self._count(ts, campaign, ((C_DIALS, 1.0),))

    def attempts_answered(self, ts: Column, campaign: Column) -> None:
        """Attempts a person answered (live answers)."""
        if self.kind == "campaign":
            self._count(ts, campaign, ((C_LIVE, 1.0),))

    def attempts_finished(self, ts: Column, campaign: Column, result: Column, late: Column) -> None:
        """Attempts' ends, by the dialer's own definitions (``dialer.figures.Tally``, once per distinct result)."""
        if self.kind != "campaign":
            return
        combos = np.array([f"{r}|{int(bool(x))}" for r, x in zip(_objects(result).tolist(), np.asarray(late).tolist(),
                                                                    strict=True)], dtype=object)
        ts, camp = np.asarray(ts, dtype=float), _objects(campaign)
        for combo in set(combos.tolist()):
            r, _, x = combo.partition("|")
            t = Tally()
            t.finished(r, x == "1")
            sel = combos == combo
            self._count(ts[sel], camp[sel], tuple((i, float(v)) for i, v in (
                (C_ANSWERS, t.answers), (C_CONTACTS, t.contacts), (C_ABANDONS, t.abandons),
                (C_MACHINES, t.machines)) if v))

    def dispositions(self, ts: Column, disposition: Column) -> None:
        if self.kind == "disposition":
            names = _objects(disposition)
            self._count(np.asarray(ts, dtype=float)[names != ""], names[names != ""], ((0, 1.0),))

    def prime(self, agent: str, state: str, reason: str, since: float) -> None:
        """An agent's state at the report's start (its last change before it, at ``since``)."""
        self.open[agent] = (state_key(state, reason), since)

    def first_seen(self, agent: str, previous: str, since: float) -> None:
        """An agent not seen yet (not primed): the state its first change in the chunk leaves (the reason of
        a not-ready one unknown), since ``since``."""
        self.open.setdefault(agent, (state_key(previous, ""), since))

    def states(self, ts: Column, agent: Column, key: Column) -> None:
        """Agents' state changes (rows of the state log, in time order, each with the ``state_key`` it moves
        to): each ends the state the agent was in (as the live core counts it: the state the last change put
        it in; ``prime`` or ``first_seen`` says where an agent came from, else its first change only starts
        its count)."""
        if self.kind not in ("agent", "team", "queue") or not len(ts):
            return
        ts = np.asarray(ts, dtype=float)
        agents, keys = _objects(agent), _objects(key)
        codes_of = self.agent_codes
        codes = np.array([codes_of.setdefault(a, len(codes_of)) for a in agents.tolist()], dtype=np.int64)
        order = np.lexsort((np.arange(len(ts)), codes))  # by agent, then as given (time order)
        ts, agents, keys, codes = ts[order], agents[order], keys[order], codes[order]
        first = np.ones(len(ts), dtype=bool)
        first[1:] = codes[1:] != codes[:-1]
        seg_start = np.empty(len(ts))
        seg_start[1:] = ts[:-1]
        seg_key = np.empty(len(ts), dtype=object)
        seg_key[1:] = keys[:-1]
        for i in np.nonzero(first)[0].tolist():
            seg_key[i], seg_start[i] = self.open.get(agents[i], ("logged_out", ts[i]))
        self._segments(agents, seg_start, ts, seg_key.tolist())
        last = np.ones(len(ts), dtype=bool)
        last[:-1] = first[1:]
        for i in np.nonzero(last)[0].tolist():
            self.open[agents[i]] = (keys[i], float(ts[i]))

    def _segments(self, agents: np.ndarray, start: np.ndarray, end: np.ndarray, keys: list[str]) -> None:
        """Seconds of each state key over [start, end), split at the periods' bounds, clipped to the chunk
        (and the report)."""
        k = np.array(keys, dtype=object)
        keep = k != "logged_out"
        if self.kind == "queue":
            keep &= np.isin(k, d.WORKING_STATES)
        start = np.maximum(start, max(self.lo, self.start))
        end = np.minimum(end, min(self.hi, self.end))
        keep &= end > start
        if not keep.any():
            return
        ent, s, e, kk = self._by_member(agents[keep], start[keep], end[keep], k[keep])
        if not len(ent):
            return
        if self.kind == "queue":
            col = np.full(len(ent), STAFFED)
            target = self.sums
        else:
            index = self.key_index
            for key in set(kk.tolist()) - index.keys():
                index[key] = len(self.keys)
                self.keys.append(key)
            col = np.array([index[key] for key in kk.tolist()], dtype=np.int64)
            self.times.fit(len(self.names), len(self.keys))
            target = self.times
        p0 = self._period(s)
        p1 = np.maximum(self._period(np.nextafter(e, -np.inf)), p0)
        for step in range(int((p1 - p0).max()) + 1):
            on = p0 + step <= p1
            p = p0[on] + step
            piece = np.minimum(e[on], self.ends[p]) - np.maximum(s[on], self.starts[p])
            np.add.at(target.data, (ent[on], p, col[on]), piece)

    # ------------------------------------------------------------------ figures out
    def flush(self, until: float) -> Iterator[ReportRow]:
        """The rows of the periods that ended by ``until`` (all of them once ``until`` >= the report's end), in
        order of period then entity; they are forgotten."""
        done = sorted(s for s, (e, _, _) in self.pending.items() if e <= until or until >= self.end)
        for start in done:
            end, sums, times = self.pending.pop(start)
            rows = []
            for i in range(sums.shape[0]):
                t = times[i] if i < times.shape[0] else np.zeros(0)
                if not sums[i].any() and not t.any():
                    continue
                by_key = {self.keys[j]: float(v) for j, v in enumerate(t.tolist()) if v}
                rows.append(ReportRow(self.kind, self.names[i], start, end,
                                      self._figures(self.names[i], sums[i].tolist(), by_key, end - start)))
            rows.sort(key=lambda r: r.entity)
            self.rows += len(rows)
            yield from rows

    def _figures(self, entity: str, vec: list[float], times: dict[str, float], span: float) -> dict[str, Any]:
        if self.kind == "queue":
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
