"""``cti whatif``: a recorded range replayed through the simulator, in virtual time, under the configuration
it ran with and under a changed one, measured side by side with what really happened (docs/whatif.md).

* ``replay``: the whole centre (``centre.demo.build_virtual``: the simulated PBX, the real server) on a
  virtual clock that starts at the range's start; no random callers: the recorded ones
  (``sim.recorded_traffic.RecordedArrivals`` over ``centre.whatif_records.arrivals``); the agents log in, go
  ready and not ready, and log out when the records say they did (``StaffingReplay``), an agent the changed
  configuration adds is logged in and ready for the whole range, an agent it removes is gone; after a
  ring-no-answer an agent is back to ready after the recorded median delay. After the range's end the calls
  still in progress finish (no new callers) and their records are written.
* ``measure``: the same figures, by ``kpi.definitions``, for the records and for each replay: per queue and
  in all, ``service_level``, ``asa``, ``abandon_rate`` (short abandons apart, as the live statistics count
  them) and the agents' ``occupancy``; a call counts in the range (and in the interval) it entered its queue.
* ``check``: whether the unchanged replay reproduces the records within the stated tolerance.
* ``table_lines`` and ``write_charts`` (matplotlib, Agg, imported when a chart is drawn): the output.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from acd.events import AgentStateChanged, QueueCallFinished
from acd.states import AcdError
from centre.demo import build_virtual
from centre.server import CtiServer
from centre.whatif_records import ArrivalModel, RecordedRange, Staffing, Step, arrivals, staffing
from config.schema import CtiConfig
from kpi import definitions as d
from kpi.settings import AbandonsInServiceLevel, KpiSettings, Target
from sim.recorded_traffic import CallerEndsCalls, RecordedArrivals

DRAIN_LIMIT = 4 * 3600.0  # seconds after the range's end for the calls in progress to finish
WHATIF_BY = "whatif"


def kpi_settings(cfg: CtiConfig) -> KpiSettings:
    """The statistics' settings of a configuration (targets, short abandons, how abandons count in the SL)."""
    st = cfg.statistics
    return KpiSettings(timezone=cfg.acd.timezone, interval=st.interval_minutes * 60.0, short_abandon=st.short_abandon,
                       abandons=AbandonsInServiceLevel(st.service_level_abandons),
                       targets={q.name: Target(q.service_level.percent, q.service_level.seconds)
                                for q in cfg.acd.queues})


def wrapup_timer(cfg: CtiConfig) -> Callable[[str, str], float | None]:
    """``(queue, agent) -> seconds``: the wrap-up the ACD gives an agent's call of a queue (the agent's own
    ``wrapup``, else the queue's; None for a queue the configuration does not have)."""
    queues = {q.name: float(q.wrapup) for q in cfg.acd.queues}
    agents = {a.id: float(a.wrapup) for a in cfg.acd.agents if a.wrapup is not None}

    def timer(queue: str, agent_id: str) -> float | None:
        return agents.get(agent_id, queues.get(queue))

    return timer


# ---------------------------------------------------------------------------------------------------
# measuring

@dataclass
class Figures:
    """One side's figures: per queue and ``all`` (``kpi.definitions.queue_figures``), the occupancy of all
    the agents, and the service level per interval (``intervals``: their starts)."""

    queues: dict[str, dict[str, Any]]
    occupancy: float | None
    intervals: list[float]
    sl_by_interval: dict[str, list[float | None]]
    stays: int = 0
    runs: int = 1  # replays pooled (``offered`` per run is ``offered / runs``)


def _count(c: list[float], s: QueueCallFinished, settings: KpiSettings) -> None:
    """One queue stay into a counter vector, as ``kpi.core.KpiCore`` counts its events."""
    target = settings.target(s.queue)
    c[d.Q_OFFERED] += 1
    if s.outcome == "answered":
        c[d.Q_ANSWERED] += 1
        c[d.Q_WAIT_ANSWERED] += s.wait
        if d.in_target(s.wait, target):
            c[d.Q_ANSWERED_IN_SL] += 1
        c[d.Q_HANDLED] += 1
        c[d.Q_HANDLE] += s.talk + s.wrapup
    elif s.outcome == "abandoned":
        if s.wait < settings.short_abandon:
            c[d.Q_SHORT_ABANDONED] += 1
        else:
            c[d.Q_ABANDONED] += 1
            if d.in_target(s.wait, target):
                c[d.Q_ABANDONED_IN_SL] += 1
    else:
        c[d.Q_OVERFLOWED] += 1


def state_seconds(states: Iterable[AgentStateChanged], start: float, end: float,
                  before: Iterable[AgentStateChanged] = ()) -> dict[str, float]:
    """Seconds all agents spent in each state in ``[start, end)``, from one run's state log (``before``: each
    agent's last change before ``start``)."""
    seconds: dict[str, float] = {}
    last: dict[str, AgentStateChanged] = {c.agent_id: c for c in before}

    def add(state: str, lo: float, hi: float) -> None:
        lo, hi = max(lo, start), min(hi, end)
        if hi > lo:
            seconds[state] = seconds.get(state, 0.0) + hi - lo

    for c in states:
        add(c.previous, c.since, c.ts)
        last[c.agent_id] = c
    for c in last.values():
        add(c.state, c.ts, end)
    return seconds


def occupancy(seconds: dict[str, float]) -> float | None:
    """Busy (reserved, on call, wrap-up) over working (those and ready) seconds (``kpi.definitions``)."""
    return d.agent_figures([0.0] * d.A_FIELDS, seconds)["occupancy"]


def measure(stays: Iterable[QueueCallFinished], state_runs: Sequence[Iterable[AgentStateChanged]],
            settings: KpiSettings, start: float, end: float, queues: Sequence[str],
            before: Iterable[AgentStateChanged] = ()) -> Figures:
    """The figures of the queue stays that entered a queue in ``[start, end)`` and of the agents' states, one
    state log per run (several replays pooled: their figures are the pooled ratios)."""
    zone = ZoneInfo(settings.timezone)
    local = datetime.fromtimestamp(start, zone)
    midnight = datetime(local.year, local.month, local.day, tzinfo=zone).timestamp()
    first = midnight + (start - midnight) // settings.interval * settings.interval
    intervals = [first + i * settings.interval for i in range(int((end - first) // settings.interval) + 1)
                 if first + i * settings.interval < end]
    names = ["all", *queues]
    totals = {n: [0.0] * d.Q_FIELDS for n in names}
    per_interval = {n: [[0.0] * d.Q_FIELDS for _ in intervals] for n in names}
    n_stays = 0
    for s in stays:
        if not start <= s.entered < end:
            continue
        n_stays += 1
        i = min(int((s.entered - first) // settings.interval), len(intervals) - 1)
        for name in ("all", s.queue):
            if name in totals:
                _count(totals[name], s, settings)
                _count(per_interval[name][i], s, settings)
    figures = {n: d.queue_figures(c, settings) for n, c in totals.items()}
    sl = {n: [d.service_level(c, settings.abandons) for c in rows] for n, rows in per_interval.items()}
    seconds: dict[str, float] = {}
    for states in state_runs:
        for state, secs in state_seconds(states, start, end, before).items():
            seconds[state] = seconds.get(state, 0.0) + secs
    return Figures(figures, occupancy(seconds), intervals, sl, n_stays, max(1, len(state_runs)))


# ---------------------------------------------------------------------------------------------------
# replaying

class StaffingReplay:
    """The agents' recorded steps on a replay's server, at their times; the agents ``added`` logged in and
    ready at the start; after a ring-no-answer (the ACD's not ready) an agent is back after ``return_after``.

    A step the replay's ACD cannot take at its time because the agent is on a call there (and was not in the
    records) waits for it: a log-in until a deferred log-out has happened, a ready until the agent's work ends
    in a (deferred) not ready; the agent's next recorded step replaces a step that waits. Other refused steps
    are counted (``refused``) and dropped."""

    def __init__(self, server: CtiServer, staffing: Staffing, start: float, added: Iterable[str] = ()) -> None:
        self.server = server
        self.known = set(server.acd.agent_ids())
        self.return_after = staffing.return_after
        self.refused = 0
        self.deferred = 0
        self._waiting: dict[str, list[str]] = {}  # agent -> the steps ("login", "ready") waiting for its work to end
        steps = [s for s in staffing.steps if s.agent_id in self.known]
        steps += [Step(start, a, action) for a in sorted(set(added) & self.known) for action in ("login", "ready")]
        steps.sort(key=lambda s: s.at)
        self._calls = [server.clock.callLater(max(0.0, at - server.now()), self._steps, list(group))
                       for at, group in itertools.groupby(steps, key=lambda s: s.at)]
        server.subscribe(self._on_event)

    def stop(self) -> None:
        for call in self._calls:
            if call.active():
                call.cancel()

    def _steps(self, steps: list[Step]) -> None:
        for step in steps:
            self._do(step.agent_id, step.action, step.reason)

    def _do(self, agent_id: str, action: str, reason: str = "") -> None:
        acd, now = self.server.acd, self.server.now()
        before = self._waiting.pop(agent_id, [])  # a later step replaces those that wait
        try:
            if action == "login":
                out = acd.login(agent_id, None, now)
            elif action == "ready":
                out = acd.ready(agent_id, now)
            elif action == "logout":
                out = acd.force_logout(agent_id, WHATIF_BY, now)  # on a call: when its work ends
            elif reason in acd.section.not_ready_reasons:
                out = acd.not_ready(agent_id, reason, now)
            else:  # a supervisor's not ready, or a reason this configuration does not have
                out = acd.force_not_ready(agent_id, "supervisor", WHATIF_BY, now)
        except AcdError:
            if action in ("login", "ready") and str(acd.agent_snapshot(agent_id).state) in ("reserved", "on_call"):
                # a ready right after a log-in that waits: both wait
                self._waiting[agent_id] = ["login", "ready"] if before == ["login"] and action == "ready" else [action]
                self.deferred += 1
            else:
                self.refused += 1
            return
        self.server.apply(out)

    def _on_event(self, event: object) -> None:
        if not isinstance(event, AgentStateChanged):
            return
        agent_id = event.agent_id
        waiting = self._waiting.get(agent_id, [""])[0]
        if event.state == "not_ready" and event.previous == "reserved":
            self._waiting.pop(agent_id, None)
            self._calls.append(self.server.clock.callLater(self.return_after, self._do, agent_id, "ready"))
        elif (waiting == "login" and event.state == "logged_out") \
                or (waiting == "ready" and event.state == "not_ready"):
            self._calls.append(self.server.clock.callLater(0.0, self._resume, agent_id))
        elif waiting == "ready" and event.state == "ready":
            self._waiting.pop(agent_id, None)

    def _resume(self, agent_id: str) -> None:
        """The steps that waited for the agent's work to end, now."""
        for action in self._waiting.pop(agent_id, []):
            self._do(agent_id, action)


class EarlyWrapups:
    """A call whose agent ended its wrap-up before the timer in the records (``RecordedCall.wrapup``): its
    wrap-up in the replay, whoever's it is, ends as soon (into the agent's pending not ready, if any)."""

    def __init__(self, server: CtiServer, callers: RecordedArrivals) -> None:
        self.server = server
        self.callers = callers
        self.ended = 0
        server.subscribe(self._on_event)

    def _on_event(self, event: object) -> None:
        if isinstance(event, AgentStateChanged) and event.state == "wrap_up":
            call = self.callers.by_uniqueid.get(event.uniqueid)
            if call is not None and call.wrapup is not None:
                self.server.clock.callLater(call.wrapup, self._end, event.agent_id, event.ts)

    def _end(self, agent_id: str, since: float) -> None:
        acd = self.server.acd
        snap = acd.agent_snapshot(agent_id)
        if str(snap.state) == "wrap_up" and snap.since == since:  # the same wrap-up, not over yet
            self.ended += 1
            self.server.apply(acd.end_wrapup(agent_id, self.server.now()))


@dataclass
class Replay:
    """What one replay produced: its queue stays and agent state changes, and the callers' counts."""

    stays: list[QueueCallFinished] = field(default_factory=list)
    states: list[AgentStateChanged] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    left_waiting: int = 0


def replay(cfg: CtiConfig, model: ArrivalModel, staffing: Staffing, start: float, end: float, *,
           added: Iterable[str] = (), seed: int = 0) -> Replay:
    """Run ``cfg``'s centre over ``[start, end)`` in virtual time with the recorded callers and agents."""
    quiet = cfg.sim.model_copy(update={"inbound": []})
    cfg = cfg.model_copy(update={"sim": quiet})
    stack = build_virtual(cfg, seed=seed, login_agents=False, start=start)
    out = Replay()

    def keep(event: object) -> None:
        if isinstance(event, QueueCallFinished):
            out.stays.append(event)
        elif isinstance(event, AgentStateChanged):
            out.states.append(event)

    stack.server.subscribe(keep)
    pbx = stack.sim.pbx
    pbx.far_ends = CallerEndsCalls(pbx.far_ends)
    callers = RecordedArrivals(pbx, [c for c in model.calls if start <= c.at < end])
    EarlyWrapups(stack.server, callers)
    staff = StaffingReplay(stack.server, staffing, start, added)
    callers.start()
    stack.clock.run_until(end)
    while callers.people and stack.clock.seconds() < end + DRAIN_LIMIT:
        stack.clock.run_for(60.0)
    wrapup = max((q.wrapup for q in cfg.acd.queues), default=0.0)
    stack.clock.run_for(wrapup + 30.0)  # the last wrap-ups end: their records
    out.left_waiting = len(callers.people)
    out.counts = dict(callers.counts)
    out.refused = staff.refused
    staff.stop()
    callers.stop()
    stack.sim.stop()
    stack.server.stop()
    stack.clock.run_for(5.0)
    return out


@dataclass
class WhatIf:
    """The three sides of a what-if and what they were made of."""

    recorded: Figures
    unchanged: Figures
    changed: Figures
    model: ArrivalModel  # the first run's
    staffing: Staffing
    added: frozenset[str]  # agents the changed configuration adds (logged in and ready all along)
    replays: list[Replay]  # unchanged and changed, run by run


def what_if(rec: RecordedRange, base: CtiConfig, changed: CtiConfig, *, seed: int = 0, runs: int = 1) -> WhatIf:
    """The records' figures, and those of ``runs`` replays of ``base`` and of ``changed`` (run ``i`` with seed
    ``seed + i``, both configurations on the same callers: the same patience and talk draws)."""
    staff = staffing(rec)
    settings = kpi_settings(base)
    queues = [q.name for q in base.acd.queues]
    queues += [q for q in sorted({s.queue for s in rec.stays}) if q not in queues]
    recorded = measure(rec.stays, [rec.states], settings, rec.start, rec.end, queues, before=rec.before.values())
    added = frozenset({a.id for a in changed.acd.agents} - {a.id for a in base.acd.agents})
    same: list[Replay] = []
    other: list[Replay] = []
    models = [arrivals(rec, seed=seed + i, wrapup_timer=wrapup_timer(base)) for i in range(runs)]
    for i, model in enumerate(models):
        same.append(replay(base, model, staff, rec.start, rec.end, seed=seed + i))
        other.append(replay(changed, model, staff, rec.start, rec.end, added=added, seed=seed + i))

    def pooled(side: list[Replay]) -> Figures:  # by the base configuration's targets: one yardstick for all
        return measure([s for r in side for s in r.stays], [r.states for r in side], settings,
                       rec.start, rec.end, queues)

    return WhatIf(recorded, pooled(same), pooled(other), models[0], staff, added,
                  [x for pair in zip(same, other, strict=True) for x in pair])


# ---------------------------------------------------------------------------------------------------
# the comparison

@dataclass(frozen=True)
class Check:
    sl_diff: float | None  # percentage points, |unchanged - recorded|
    abandon_diff: float | None
    sl_tolerance: float
    abandon_tolerance: float

    @property
    def ok(self) -> bool:
        return (self.sl_diff is None or self.sl_diff <= self.sl_tolerance) \
            and (self.abandon_diff is None or self.abandon_diff <= self.abandon_tolerance)

    def line(self) -> str:
        def pts(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.1f} pts"
        verdict = "OK" if self.ok else "NOT within tolerance"
        return (f"check: the unchanged replay reproduces the recorded SL within {pts(self.sl_diff)} (tolerance "
                f"{self.sl_tolerance:g} pts), abandonment within {pts(self.abandon_diff)} (tolerance "
                f"{self.abandon_tolerance:g} pts): {verdict}")


def _pct_diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(abs(a - b) * 100.0, 3)


def check(recorded: Figures, unchanged: Figures, sl_tolerance: float, abandon_tolerance: float) -> Check:
    """Whether the unchanged replay's SL and abandonment (in all) are within the tolerances (points) of the
    records'."""
    r, u = recorded.queues["all"], unchanged.queues["all"]
    return Check(_pct_diff(r["service_level"], u["service_level"]), _pct_diff(r["abandon_rate"], u["abandon_rate"]),
                 sl_tolerance, abandon_tolerance)


COLUMNS = ("recorded", "unchanged", "changed")


def _fmt(value: float | None, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.1f}"


def table_lines(sides: Sequence[Figures], names: Sequence[str] = COLUMNS) -> list[str]:
    """The side-by-side table: per queue and in all, offered, SL, ASA, abandonment, AHT; then occupancy."""
    head = f"{'queue':<12} {'figure':<12}" + "".join(f"{n:>12}" for n in names)
    lines = [head, "-" * len(head)]
    rows = (("offered", "offered", None), ("SL %", "service_level", 100.0), ("ASA s", "asa", 1.0),
            ("abandon %", "abandon_rate", 100.0), ("AHT s", "aht", 1.0))
    for queue in sides[0].queues:
        for i, (label, key, scale) in enumerate(rows):
            cells = [side.queues.get(queue, {}).get(key) for side in sides]
            if key == "offered":  # per run
                cells = [None if c is None else round(c / side.runs, 1) for c, side in zip(cells, sides, strict=True)]
            text = [("-" if c is None else f"{c:g}") if scale is None else _fmt(c, scale) for c in cells]
            lines.append(f"{queue if i == 0 else '':<12} {label:<12}" + "".join(f"{t:>12}" for t in text))
    lines.append(f"{'agents':<12} {'occupancy %':<12}" + "".join(f"{_fmt(s.occupancy, 100.0):>12}" for s in sides))
    return lines


def write_charts(out: Path, sides: Sequence[Figures], names: Sequence[str] = COLUMNS,
                 timezone: str = "UTC") -> list[Path]:
    """The charts, PNG files in ``out``: ``sl_per_interval.png`` (the service level per interval, in all and
    per queue, one line per side) and ``summary.png`` (SL, abandonment and occupancy in all, one bar per side).
    Returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    panels = list(sides[0].sl_by_interval)
    zone = ZoneInfo(timezone)
    times = [datetime.fromtimestamp(t, zone) for t in sides[0].intervals]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.6 * len(panels)), sharex=True, squeeze=False)
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        for side, name in zip(sides, names, strict=True):
            values = [float("nan") if v is None else v * 100.0 for v in side.sl_by_interval.get(panel, [])]
            ax.plot(times[:len(values)], values, marker="o", markersize=3, label=name)
        ax.set_title(f"service level per interval: {panel}")
        ax.set_ylabel("SL %")
        ax.set_ylim(0, 105)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="lower left")
    fig.autofmt_xdate()
    fig.tight_layout()
    per_interval = out / "sl_per_interval.png"
    fig.savefig(per_interval, dpi=100)
    plt.close(fig)

    figures = (("SL %", lambda f: f.queues["all"]["service_level"]),
               ("abandon %", lambda f: f.queues["all"]["abandon_rate"]), ("occupancy %", lambda f: f.occupancy))
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(sides)
    for i, (side, name) in enumerate(zip(sides, names, strict=True)):
        values = [(get(side) or 0.0) * 100.0 for _, get in figures]
        bars = ax.bar([x + i * width for x in range(len(figures))], values, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks([x + width * (len(sides) - 1) / 2 for x in range(len(figures))], [label for label, _ in figures])
    ax.set_ylim(0, 110)
    ax.set_title("in all")
    ax.legend()
    fig.tight_layout()
    summary = out / "summary.png"
    fig.savefig(summary, dpi=100)
    plt.close(fig)
    return [per_interval, summary]
