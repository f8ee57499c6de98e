"""The statistics core: events and ``now`` in, figures out. Pure (no I/O, no clock of its own), incremental:
each event updates a few counters (``kpi.windows``) and marks the topics whose figures changed; figures
are made only when asked (``figures(topic, now)``), by the feed at its coalesced pace.

Topics: ``queue:<name>``, ``team:<name>``, ``campaign:<name>``. The definitions are ``kpi.definitions``'s.

Fed live by ``kpi.engine.KpiEngine`` (the bus) and, after a restart, by ``kpi.rebuild`` with the events the
stored records stand for, through the same ``observe``: the figures rebuilt are those counted live.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from acd.events import (
    AGENT_STATES,
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallOffered,
    CallOverflowed,
    CallWaiting,
    QueueCallFinished,
)
from cti.events import AgentCallbackScheduled, CallHoldChanged, CallQueued, CallTransferredOut
from dialer.events import AttemptAnswered, AttemptFinished, AttemptStarted
from dialer.figures import Tally
from ivr.events import CallbackRequested
from kpi import definitions as d
from kpi.settings import KpiSettings, Target
from kpi.windows import SLIDING, WINDOW_NAMES, Calendar, StateSeconds, Windows

CallKey = tuple[str, str]  # (server, caller's uniqueid)
IDLE_STATES = frozenset({"ready", "not_ready", "logged_out"})
C_DIALS, C_ANSWERS, C_LIVE, C_CONTACTS, C_ABANDONS, C_MACHINES = range(6)
C_FIELDS = 6


def queue_topic(name: str) -> str:
    return f"queue:{name}"


def team_topic(name: str) -> str:
    return f"team:{name}"


def campaign_topic(name: str) -> str:
    return f"campaign:{name}"


@dataclass(slots=True)
class QueueLive:
    name: str
    topic: str
    target: Target
    counters: Windows
    waiting: dict[CallKey, float] = field(default_factory=dict)  # caller -> when it entered
    agents: dict[str, int] = field(default_factory=dict)  # state -> agents of the queue in it
    # the day's history as last made (interval index as a string -> its figures), of the day that began at
    # ``history_day``: only the intervals changed since are made again
    history_made: dict[str, dict[str, Any]] = field(default_factory=dict)
    history_day: float | None = None


@dataclass(slots=True)
class AgentLive:
    agent_id: str
    counters: Windows
    topics: tuple[str, ...]  # the queue and team topics this agent's changes touch
    queues: tuple[QueueLive, ...]
    state: str = "logged_out"
    reason: str = ""
    since: float = 0.0
    seen: bool = False  # a state change was seen (before it, ``state`` is a guess)
    call: dict[str, Any] | None = None
    day_times: dict[str, float] = field(default_factory=dict)
    day_key: float = 0.0
    iv_times: dict[str, float] = field(default_factory=dict)
    iv_key: float = 0.0
    # seconds by state per bucket of the sliding windows (their times in state; made by ``KpiCore``)
    sliding: StateSeconds | None = None
    figures: dict[str, Any] | None = None  # the agent's figures as last made (``KpiCore.agent_figures``)
    figures_at: float = 0.0
    stale: bool = True  # something happened to the agent since

    @property
    def key(self) -> str:
        return f"not_ready:{self.reason}" if self.state == "not_ready" else self.state


@dataclass(slots=True)
class Talking:
    """An answered call (for its holds): its queue and agent; the hold's start while held."""

    queue: str
    agent_id: str
    held_since: float | None = None


@dataclass(frozen=True, slots=True)
class HoldsRecorded:
    """An agent's part of a call, as stored (``kpi.rebuild``): its holds, counted as their ends were live
    (``count`` holds, ``seconds`` on hold in all, the longest ``longest``), at ``ts`` (the part's end)."""

    ts: float
    queue: str
    agent_id: str
    seconds: float
    count: int
    longest: float


class KpiCore:
    """Live statistics of the queues, agents (by team) and campaigns named in ``settings`` and ``campaigns``."""

    def __init__(self, settings: KpiSettings, *, queues: Iterable[str], agents: Iterable[str],
                 campaigns: Iterable[str] = (), agent_refresh: float = 5.0) -> None:
        """``agent_refresh``: an agent's figures are made again on its events, and otherwise every this many
        seconds (its times in state and occupancy move with time: a team of 20 agents would else be made
        afresh at each publication)."""
        self.settings = settings
        self.agent_refresh = agent_refresh
        self.cal = Calendar(settings.timezone, settings.interval, settings.bucket)
        self.queues: dict[str, QueueLive] = {}
        for name in queues:
            self.queues[name] = QueueLive(name, queue_topic(name), settings.target(name),
                                          Windows(self.cal, d.Q_FIELDS, d.Q_MAXES, history=True),
                                          agents=dict.fromkeys(sorted(AGENT_STATES), 0))
        member_of: dict[str, list[str]] = {}
        for q, ids in settings.members.items():
            for a in ids:
                member_of.setdefault(a, []).append(q)
        team_of: dict[str, list[str]] = {}
        for t, ids in settings.teams.items():
            for a in ids:
                team_of.setdefault(a, []).append(t)
        self.teams = {t: tuple(ids) for t, ids in settings.teams.items()}
        self.agents: dict[str, AgentLive] = {}
        for a in agents:
            qs = tuple(self.queues[q] for q in member_of.get(a, ()) if q in self.queues)
            for q in qs:
                q.agents["logged_out"] += 1
            self.agents[a] = AgentLive(a, Windows(self.cal, d.A_FIELDS, d.A_MAXES),
                                       (*(q.topic for q in qs), *(team_topic(t) for t in team_of.get(a, ()))), qs)
        self.campaigns = {c: Windows(self.cal, C_FIELDS) for c in campaigns}
        self.dirty: set[str] = set()
        self._callers: dict[CallKey, str] = {}  # caller -> its number (CallQueued)
        self._where: dict[CallKey, QueueLive] = {}  # caller waiting -> its queue
        self._talking: dict[CallKey, Talking] = {}
        self._handlers: dict[type, Callable[[Any, float], None]] = {
            CallQueued: self._queued, CallWaiting: self._waiting, CallOffered: self._offered,
            CallAnswered: self._answered, CallAbandoned: self._abandoned, CallOverflowed: self._overflowed,
            QueueCallFinished: self._finished, AgentStateChanged: self._agent, CallHoldChanged: self._hold,
            HoldsRecorded: self._holds_recorded, CallTransferredOut: self._transferred_out,
            CallbackRequested: self._callback, AgentCallbackScheduled: self._callback,
            AttemptStarted: self._attempt, AttemptAnswered: self._attempt,
            AttemptFinished: self._attempt,
        }
        self.events = 0

    #: the event types the core counts (the engine subscribes to these)
    SUBSCRIPTIONS: tuple[type, ...] = (
        CallQueued, CallWaiting, CallOffered, CallAnswered, CallAbandoned, CallOverflowed, QueueCallFinished,
        AgentStateChanged, CallHoldChanged, CallbackRequested, AgentCallbackScheduled, CallTransferredOut,
        AttemptStarted, AttemptAnswered, AttemptFinished)

    def topics(self) -> list[str]:
        return [*(q.topic for q in self.queues.values()), *(team_topic(t) for t in self.teams),
                *(campaign_topic(c) for c in self.campaigns)]

    # ------------------------------------------------------------------ events in
    def observe(self, event: object, now: float) -> None:
        """Count ``event`` (one the core does not count is ignored)."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            self.cal.advance(now)
            self.events += 1
            handler(event, now)

    def _queued(self, e: CallQueued, now: float) -> None:
        if e.caller_num:
            self._callers[(e.server, e.uniqueid)] = e.caller_num

    def _waiting(self, e: CallWaiting, now: float) -> None:
        q = self.queues.get(e.queue)
        key = (e.server, e.uniqueid)
        where = self._where.get(key)
        if where is q:
            return  # back in the same queue after an offer: the same time in it
        if where is not None:
            where.waiting.pop(key, None)
            self.dirty.add(where.topic)
        if q is None:
            self._where.pop(key, None)
            return
        self._where[key] = q
        q.waiting[key] = e.ts
        q.counters.add(e.ts, d.Q_OFFERED)
        self.dirty.add(q.topic)

    def _leave(self, key: CallKey) -> None:
        q = self._where.pop(key, None)
        if q is not None:
            q.waiting.pop(key, None)

    def _offered(self, e: CallOffered, now: float) -> None:
        a = self.agents.get(e.agent_id)
        if a is not None:
            a.call = {"call_id": e.call_id, "caller": self._callers.get((e.server, e.uniqueid), ""),
                      "queue": e.queue, "since": e.ts, "status": "ringing"}
            self._touch(a)

    def _answered(self, e: CallAnswered, now: float) -> None:
        key = (e.server, e.uniqueid)
        self._leave(key)
        q = self.queues.get(e.queue)
        if q is not None:
            for i, v in d.answered_counts(e.wait, q.target.seconds):
                if v:
                    q.counters.add(e.ts, i, v)
            self.dirty.add(q.topic)
        self._talking[key] = Talking(e.queue, e.agent_id)
        a = self.agents.get(e.agent_id)
        if a is not None:
            a.counters.add(e.ts, d.A_ANSWERED)
            a.call = {"call_id": e.call_id, "caller": self._callers.get(key, ""), "queue": e.queue, "since": e.ts,
                      "status": "talking"}
            self._touch(a)

    def _abandoned(self, e: CallAbandoned, now: float) -> None:
        key = (e.server, e.uniqueid)
        self._leave(key)
        self._callers.pop(key, None)
        q = self.queues.get(e.queue)
        if q is None:
            return
        for i, v in d.abandoned_counts(e.wait, self.settings.short_abandon, q.target.seconds):
            if v:
                q.counters.add(e.ts, i, v)
        self.dirty.add(q.topic)

    def _overflowed(self, e: CallOverflowed, now: float) -> None:
        self._leave((e.server, e.uniqueid))
        q = self.queues.get(e.queue)
        if q is not None:
            for i, v in d.overflowed_counts(e.action):
                if v:
                    q.counters.add(e.ts, i, v)
            self.dirty.add(q.topic)

    def _finished(self, e: QueueCallFinished, now: float) -> None:
        key = (e.server, e.uniqueid)
        if self._where.get(key) is self.queues.get(e.queue):
            self._leave(key)
        talking = self._talking.get(key)
        if talking is not None and talking.queue == e.queue:
            # a call that ended on hold: the hold ended with the talk (not the wrap-up)
            self._end_hold(key, talking, e.answered_at + e.talk if e.answered_at is not None else e.ts)
            del self._talking[key]
        if key not in self._where and key not in self._talking:
            self._callers.pop(key, None)  # (unless the caller is in a queue again, or with an agent)
        if e.outcome != "answered":
            return
        q = self.queues.get(e.queue)
        if q is not None:
            for i, v in d.handled_counts(e.talk, e.wrapup, e.overflow_action):
                if v:
                    q.counters.add(e.ts, i, v)
            self.dirty.add(q.topic)
        a = self.agents.get(e.agent_id)
        if a is not None:
            for i, v in d.agent_handled_counts(e.talk, e.wrapup):
                a.counters.add(e.ts, i, v)
            self._touch(a)

    def _hold(self, e: CallHoldChanged, now: float) -> None:
        key = (e.server, e.uniqueid)
        talking = self._talking.get(key)
        if talking is None:
            return
        if e.held:
            if talking.held_since is None:
                talking.held_since = e.ts
        else:
            self._end_hold(key, talking, e.ts)

    def _end_hold(self, key: CallKey, talking: Talking, ts: float) -> None:
        if talking.held_since is None:
            return
        held, talking.held_since = max(0.0, ts - talking.held_since), None
        q = self.queues.get(talking.queue)
        if q is not None:
            q.counters.add(ts, d.Q_HOLDS)
            q.counters.add(ts, d.Q_HOLD, held)
            q.counters.add_max(ts, d.Q_HOLD_MAX, held)
            self.dirty.add(q.topic)
        a = self.agents.get(talking.agent_id)
        if a is not None:
            a.counters.add(ts, d.A_HOLDS)
            a.counters.add(ts, d.A_HOLD, held)
            self._touch(a)

    def _transferred_out(self, e: CallTransferredOut, now: float) -> None:
        q = self.queues.get(e.queue)
        if q is not None:
            q.counters.add(e.ts, d.Q_TRANSFERS)
            self.dirty.add(q.topic)

    def _holds_recorded(self, e: HoldsRecorded, now: float) -> None:
        if e.count <= 0:
            return
        q = self.queues.get(e.queue)
        if q is not None:
            q.counters.add(e.ts, d.Q_HOLDS, e.count)
            q.counters.add(e.ts, d.Q_HOLD, e.seconds)
            q.counters.add_max(e.ts, d.Q_HOLD_MAX, e.longest)
            self.dirty.add(q.topic)
        a = self.agents.get(e.agent_id)
        if a is not None:
            a.counters.add(e.ts, d.A_HOLDS, e.count)
            a.counters.add(e.ts, d.A_HOLD, e.seconds)
            self._touch(a)

    def _callback(self, e: CallbackRequested | AgentCallbackScheduled, now: float) -> None:
        q = self.queues.get(e.queue)
        if q is not None:
            q.counters.add(e.ts, d.Q_CALLBACKS)
            self.dirty.add(q.topic)

    def _attempt(self, e: AttemptStarted | AttemptAnswered | AttemptFinished, now: float) -> None:
        w = self.campaigns.get(e.campaign)
        if w is None:
            return
        if isinstance(e, AttemptStarted):
            w.add(e.ts, C_DIALS)
        elif isinstance(e, AttemptAnswered):
            w.add(e.ts, C_LIVE)
        else:
            t = Tally()
            t.finished(e.result, e.late)  # the dialer's own definitions of an answer, contact, abandon
            for i, v in ((C_ANSWERS, t.answers), (C_CONTACTS, t.contacts), (C_ABANDONS, t.abandons),
                         (C_MACHINES, t.machines)):
                if v:
                    w.add(e.ts, i, v)
        self.dirty.add(campaign_topic(e.campaign))

    def _agent(self, e: AgentStateChanged, now: float) -> None:
        a = self.agents.get(e.agent_id)
        if a is None:
            return
        if not a.seen:  # the first change seen: what came before it is the event's word
            a.seen = True
            self._move(a, e.previous, a.reason, e.since)
        self._close(a, e.ts)
        self._move(a, e.state, e.reason if e.state == "not_ready" else "", e.ts)
        if e.state in IDLE_STATES:
            a.call = None
        self._touch(a)

    def _touch(self, a: AgentLive) -> None:
        a.stale = True
        self.dirty.update(a.topics)

    def _move(self, a: AgentLive, state: str, reason: str, since: float) -> None:
        if state != a.state:
            for q in a.queues:
                q.agents[a.state] -= 1
                q.agents[state] += 1
        a.state, a.reason, a.since = state, reason, since

    def _close(self, a: AgentLive, end: float) -> None:
        """The agent's current state ends at ``end``: its seconds go to the windows they fall in."""
        start, key, cal = a.since, a.key, self.cal
        if end <= start:
            return
        if end > cal.day_start:
            if a.day_key != cal.day_start:
                a.day_times, a.day_key = {}, cal.day_start
            a.day_times[key] = a.day_times.get(key, 0.0) + end - max(start, cal.day_start)
            if end > cal.iv_start:
                if a.iv_key != cal.iv_start:
                    a.iv_times, a.iv_key = {}, cal.iv_start
                a.iv_times[key] = a.iv_times.get(key, 0.0) + end - max(start, cal.iv_start)
        if a.sliding is None:
            a.sliding = StateSeconds(cal)
        a.sliding.add(key, start, end)

    # ------------------------------------------------------------------ figures out
    def figures(self, topic: str, now: float) -> dict[str, Any]:
        """The figures of ``topic`` at ``now`` (KeyError for an unknown topic)."""
        self.cal.advance(now)
        kind, _, name = topic.partition(":")
        if kind == "queue":
            return self.queue_figures(self.queues[name], now)
        if kind == "team":
            return self.team_figures(name, now)
        if kind == "campaign":
            return self.campaign_figures(name, now)
        raise KeyError(topic)

    def queue_figures(self, q: QueueLive, now: float) -> dict[str, Any]:
        oldest = min(q.waiting.values(), default=None)
        return {"queue": q.name, "waiting": len(q.waiting), "oldest_since": oldest,
                "longest_wait": None if oldest is None else round(max(0.0, now - oldest), 3),
                "agents": dict(q.agents),
                "target": {"percent": q.target.percent, "seconds": q.target.seconds},
                "windows": {w: d.queue_figures(q.counters.window(w), self.settings) for w in WINDOW_NAMES},
                "history": self.queue_history(q)}

    def queue_history(self, q: QueueLive) -> dict[str, Any]:
        """Today's figures per interval (``d.interval_figures``), for the day's curve: ``interval`` (seconds),
        ``day_start`` (local midnight, epoch seconds) and ``intervals`` by index from midnight (as a string:
        interval k covers ``day_start + k * interval`` on); an interval in which nothing counted is absent.
        An interval's figures are made again only when it changed."""
        c = q.counters
        intervals = c.intervals()
        changed = c.take_changed()
        if q.history_day != self.cal.day_start:  # a new day (or the first look): all of it
            q.history_day, q.history_made, changed = self.cal.day_start, {}, set(intervals)
        if changed:
            out = dict(q.history_made)  # a new dict: the one last published is not changed under the feed
            for k in sorted(changed):
                out[str(k)] = d.interval_figures(intervals[k], self.settings)
            q.history_made = out
        return {"interval": self.cal.interval, "day_start": self.cal.day_start, "intervals": q.history_made}

    def agent_figures(self, agent_id: str, now: float) -> dict[str, Any]:
        """The agent's figures: made again after its events, else every ``agent_refresh`` seconds."""
        a = self.agents[agent_id]
        if a.figures is None or a.stale or not 0 <= now - a.figures_at < self.agent_refresh:
            a.figures, a.figures_at, a.stale = self._agent_figures(a, now), now, False
        return a.figures

    def _agent_figures(self, a: AgentLive, now: float) -> dict[str, Any]:
        agent_id = a.agent_id
        windows = {w: d.agent_figures(a.counters.window(w), self.state_times(a, w, now)) for w in WINDOW_NAMES}
        day_nr = windows["day"]["not_ready"]
        return {"agent_id": agent_id, "at": now, "state": a.state, "reason": a.reason or None, "since": a.since,
                "time_in_state": round(max(0.0, now - a.since), 3), "call": dict(a.call) if a.call else None,
                **d.adherence(day_nr, self.settings.not_ready_limits), "windows": windows}

    def team_figures(self, team: str, now: float) -> dict[str, Any]:
        ids = self.teams[team]
        by_state: dict[str, int] = dict.fromkeys(sorted(AGENT_STATES), 0)
        for a in ids:
            if a in self.agents:
                by_state[self.agents[a].state] += 1
        return {"team": team, "agents_by_state": by_state,
                "agents": {a: self.agent_figures(a, now) for a in ids if a in self.agents}}

    def campaign_figures(self, campaign: str, now: float) -> dict[str, Any]:
        w = self.campaigns[campaign]
        out: dict[str, Any] = {}
        for name in WINDOW_NAMES:
            c = [int(x) for x in w.window(name)]
            out[name] = Tally(dials=c[C_DIALS], answers=c[C_ANSWERS], live_answers=c[C_LIVE], contacts=c[C_CONTACTS],
                              abandons=c[C_ABANDONS], machines=c[C_MACHINES]).as_dict()
        return {"campaign": campaign, "windows": out}

    def state_times(self, a: AgentLive, window: str, now: float) -> dict[str, float]:
        """Seconds by state (``not_ready:<reason>`` for not-ready) in ``window`` at ``now``, the current
        state's time so far included."""
        cal = self.cal
        if window == "day":
            times = dict(a.day_times) if a.day_key == cal.day_start else {}
            lo = cal.day_start
        elif window == "interval":
            times = dict(a.iv_times) if a.iv_key == cal.iv_start else {}
            lo = cal.iv_start
        else:
            lo = now - SLIDING[window]
            times = a.sliding.window(SLIDING[window], now) if a.sliding is not None else {}
        if now > max(a.since, lo):
            times[a.key] = times.get(a.key, 0.0) + now - max(a.since, lo)
        return times
