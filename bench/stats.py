"""Benchmark (issue #16): the statistics engine's CPU per event and the update latency to a supervisor.

Run: ``.venv/bin/python bench/stats.py [--agents 2000] [--queues 100] [--rate 100] [--seconds 120] [--live 30]``
(about a minute; ``--quick`` for a smaller run)

The event stream: the real ACD (``acd.service.AcdService``, sans-I/O, virtual time) with ``--agents`` agents
and ``--queues`` queues (each agent has 5 of the queues' skills; teams of 20 agents), fed by a simulated
centre at ``--rate`` calls/s (Poisson arrivals, caller patience exponential with mean 60 s, the agent's phone
answers after 1 s, talk exponential with mean 12 s, 3 s wrap-up; 10% of the calls put on hold for 5 s; an
agent goes on a 60 s break every second). Every event the KPI engine subscribes to is recorded with its
time; their count is the denominator of the per-event figures. Generating the stream (the ACD's own work)
is not timed.

1. CPU per event (``us_per_event``): the engine (``kpi.core.KpiCore.observe``) over the whole stream,
   best of 3 runs on a fresh core (``time.process_time``). Beside it, the feed's share: one supervisor
   subscribed to every queue and team, ``Feed.due`` every 25 ms of stream time (coalescing to at most 5
   frames per second per topic), amortised per event.
   Baseline, named: **per-event full snapshot**: after each event, the figures of every topic the event
   touched are made at once (a push per event, no coalescing: what a wallboard that recomputes on every
   update costs), on the first ``--baseline-events`` events. Ratio = baseline / ours (engine + feed).
2. Update latency (``p99_ms``): the same centre run live for ``--live`` seconds in real time on one asyncio
   loop: its events go onto a real bus (``cti.bus.EventBus``) carrying the real ACD and, after it, the KPI
   engine, as ``centre.wiring`` orders them; the push shell (``centre.kpi_push.KpiPush``) and the real
   console hub (``agent_console.hub.ConsoleHub``) on loopback, with one supervisor websocket client (same
   process, same loop: its parsing is counted too) subscribed to every queue. Latency = the client's
   receipt of the first ``stats_delta`` whose ``offered`` count includes a caller - the moment that
   caller's ``CallQueued`` (what the call tracker makes of the PBX's ``UserEvent CTIQueued``) was put on
   the bus (``time.perf_counter``). It includes the ACD's routing of every event, coalescing
   (``min_interval`` 0.2 s), the figures, the diff, the hub and loopback. It does not include reading and
   parsing the AMI bytes into that event (bench/ami_parse.py and bench/screenpop.py measure that path:
   microseconds per event, a few ms p99 to the ACD's offer).

Ends with ``BENCH stats us_per_event=<x> p99_ms=<y> ratio=<z> feed_core_pct=<f>``: ``us_per_event`` is the
engine's (what each event costs); the feed's cost is per frame (how many topics are watched, how often
they change), given as the share of one core it took with every topic watched; ``ratio`` = the per-event
full snapshot / (engine + feed) per event.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import heapq
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from acd.service import AcdService  # noqa: E402
from acd.settings import AcdSection  # noqa: E402
from cti.commands import OfferCall  # noqa: E402
from cti.events import CallHoldChanged, CallQueued, ChannelHungup, DialEnded, DialStarted  # noqa: E402
from kpi.core import KpiCore  # noqa: E402
from kpi.feed import Feed, apply_delta  # noqa: E402
from kpi.settings import KpiSettings  # noqa: E402

T0 = 1_772_445_600.0  # 2026-03-02 10:00 UTC
S = "pbx"
TEAM = 20


# --- the event stream -------------------------------------------------------------------------------------

def centre(n_agents: int, n_queues: int, seed: int) -> tuple[dict[str, Any], KpiSettings]:
    rng = random.Random(seed)
    agents = []
    members: dict[str, list[str]] = {f"q{q:03d}": [] for q in range(n_queues)}
    for i in range(n_agents):
        qs = rng.sample(range(n_queues), 5)
        aid = f"a{i:05d}"
        agents.append({"id": aid, "name": f"Agent {i}", "endpoint": f"PJSIP/{aid}",
                       "skills": {f"s{q:03d}": 1 for q in qs}})
        for q in qs:
            members[f"q{q:03d}"].append(aid)
    queues = [{"name": f"q{q:03d}", "skills": {f"s{q:03d}": 1}, "wrapup": 3, "ring_timeout": 15}
              for q in range(n_queues)]
    teams = {f"t{t:03d}": tuple(a["id"] for a in agents[t * TEAM:(t + 1) * TEAM])
             for t in range((n_agents + TEAM - 1) // TEAM)}
    settings = KpiSettings(members={q: tuple(a) for q, a in members.items()}, teams=teams)
    return {"agents": agents, "queues": queues}, settings


class Centre:
    """A simulated centre around the real ACD: arrivals, phones, callers, holds and breaks on a heap of
    timed actions. Virtual (``record``): everything the KPI engine subscribes to is recorded; live
    (``attach``): the inputs go onto a real bus that carries the ACD and the KPI engine."""

    def __init__(self, cfg: dict[str, Any], rate: float, seconds: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.acd = AcdService(AcdSection.model_validate(cfg), T0)
        self.todo: list[tuple[float, int, str, Any]] = []  # (time, seq, what, args)
        self.seq = 0
        self.answered: set[str] = set()
        self.offered: dict[str, str] = {}  # caller -> agent it rings
        self.ids = [a["id"] for a in cfg["agents"]]
        self.queues = [q["name"] for q in cfg["queues"]]
        self.out: list[tuple[object, float]] = []
        self.kinds: tuple[type, ...] = ()
        self.bus: Any = None
        self.injected: Any = None  # called with each event put in (live: the latency's start)
        t, n = T0, 0
        while t < T0 + seconds:
            t += self.rng.expovariate(rate)
            n += 1
            self.at(t, "arrive", f"c{n}", self.rng.choice(self.queues))
        for k in range(int(seconds)):
            self.at(T0 + k + 0.5, "break", None)

    def record(self, kinds: tuple[type, ...]) -> list[tuple[object, float]]:
        self.kinds = kinds
        self.start()
        self.step(float("inf"))
        return self.out

    def attach(self, bus: Any) -> None:
        """Live: inputs onto ``bus`` (with the ACD and the KPI engine on it); its commands come to ``command``."""
        self.bus = bus
        self.start()

    def command(self, command: object) -> None:
        if isinstance(command, OfferCall):
            self.offered[command.uniqueid] = command.agent_id
            self.at(self.now + 1.0, "answer", command.uniqueid, command.agent_id)

    def at(self, t: float, what: str, *args: Any) -> None:
        self.seq += 1
        heapq.heappush(self.todo, (t, self.seq, what, args))

    def outputs(self, outputs: list[object], now: float) -> None:
        if self.bus is not None:
            self.bus.apply(outputs, now)
            return
        for o in outputs:
            if isinstance(o, self.kinds):
                self.out.append((o, now))
            else:
                self.command(o)

    def inject(self, event: object, now: float) -> None:
        if self.bus is not None:
            self.bus.publish(event, now)
            if self.injected is not None:
                self.injected(event)
            return
        if isinstance(event, self.kinds):
            self.out.append((event, now))
        self.outputs(self.acd.handle(event, now), now)

    def start(self) -> None:
        self.now = T0
        for aid in self.ids:
            self.outputs(self.acd.login(aid, None, T0), T0)
            self.outputs(self.acd.ready(aid, T0), T0)

    def step(self, until: float) -> None:
        """Carry out what is due up to ``until`` (the ACD's timers included)."""
        todo, acd, rng = self.todo, self.acd, self.rng
        while todo and todo[0][0] <= until:
            when, _, what, args = heapq.heappop(todo)
            deadline = acd.next_deadline()
            while deadline is not None and deadline <= when:
                self.now = deadline
                if self.bus is not None:
                    self.bus.tick(deadline)
                else:
                    self.outputs(acd.tick(deadline), deadline)
                deadline = acd.next_deadline()
            now = self.now = when
            if what == "arrive":
                uid, q = args
                self.inject(CallQueued(server=S, ts=now, call_id=uid, uniqueid=uid, channel=f"SIP/trunk-{uid}",
                                       queue=q, skills="", priority=0, language="en", caller_num=f"+1555{uid[1:]}",
                                       caller_name="", dnis="100"), now)
                self.at(now + rng.expovariate(1 / 60), "patience", uid)
            elif what == "answer":
                uid, agent = args
                if self.offered.get(uid) != agent:
                    continue
                self.inject(DialStarted(server=S, ts=now, call_id=uid, uniqueid=uid, channel=f"SIP/trunk-{uid}",
                                        dest_uniqueid=f"{uid}-a", dest_channel=f"PJSIP/{agent}-1", dial_string=""),
                            now)
                self.inject(DialEnded(server=S, ts=now, call_id=uid, uniqueid=uid, channel=f"SIP/trunk-{uid}",
                                      dest_uniqueid=f"{uid}-a", dest_channel=f"PJSIP/{agent}-1", status="ANSWER"), now)
                self.answered.add(uid)
                talk = rng.expovariate(1 / 12)
                if rng.random() < 0.1 and talk > 7:
                    self.at(now + 1, "hold", uid, agent, True)
                    self.at(now + 6, "hold", uid, agent, False)
                self.at(now + talk, "hangup", uid)
            elif what == "hold":
                uid, agent, held = args
                self.inject(CallHoldChanged(server=S, ts=now, call_id=uid, uniqueid=uid, queue="", agent_id=agent,
                                            held=held), now)
            elif what == "patience":
                if args[0] not in self.answered:
                    self.at(now, "hangup", args[0])
            elif what == "hangup":
                uid = args[0]
                if self.offered.pop(uid, None) is None and uid in self.answered:
                    continue
                self.inject(ChannelHungup(server=S, ts=now, call_id=uid, uniqueid=uid, channel=f"SIP/trunk-{uid}",
                                          cause=16, cause_txt="Normal Clearing"), now)
            elif what == "break":
                aid = rng.choice(self.ids)
                if acd.agent_snapshot(aid).state == "ready":
                    self.outputs(acd.not_ready(aid, "break", now), now)
                    self.at(now + 60, "back", aid)
            elif what == "back":
                self.outputs(acd.ready(args[0], now), now)


# --- 1. CPU per event -------------------------------------------------------------------------------------

def new_core(settings: KpiSettings, n_queues: int, n_agents: int) -> KpiCore:
    return KpiCore(settings, queues=[f"q{q:03d}" for q in range(n_queues)],
                   agents=[f"a{i:05d}" for i in range(n_agents)])


def engine_cpu(events: list[tuple[object, float]], make: Any) -> float:
    best = float("inf")
    for _ in range(3):
        core = make()
        gc.collect()
        gc.disable()
        t = time.process_time()
        observe = core.observe
        for event, now in events:
            observe(event, now)
        best = min(best, time.process_time() - t)
        gc.enable()
    return best


def feed_cpu(events: list[tuple[object, float]], make: Any) -> tuple[float, int]:
    core = make()
    feed = Feed(core.figures, lambda t: True, epoch="b", min_interval=0.2, refresh=1.0, intervals={"team": 1.0})
    start = events[0][1]
    feed.subscribe("sup", [t for t in core.topics() if t.startswith(("queue:", "team:"))], start)
    frames = 0
    spent = 0.0
    next_due = start
    for event, now in events:
        core.observe(event, now)
        if now >= next_due:
            t = time.process_time()
            frames += len(feed.due(now, core.dirty))
            spent += time.process_time() - t
            next_due = now + 0.025
    return spent, frames


def baseline_cpu(events: list[tuple[object, float]], make: Any, n: int) -> tuple[float, float]:
    """Per-event full snapshot: after each of the ``n`` events from the middle of the stream, every topic's
    figures made afresh (what a server that rebuilds the supervisors' frame on each update costs); and,
    kinder, only the topics the event touched. Seconds per event of each."""
    core = make()
    mid = len(events) // 2
    for event, now in events[:mid]:
        core.observe(event, now)
    core.dirty.clear()
    topics = core.topics()
    sample = events[mid:mid + n]
    t = time.process_time()
    for event, now in sample:
        core.observe(event, now)
        for topic in topics:
            core.figures(topic, now)
    full = (time.process_time() - t) / len(sample)
    touched_events = events[mid + n:mid + 10 * n]
    t = time.process_time()
    for event, now in touched_events:
        core.observe(event, now)
        for topic in core.dirty:
            core.figures(topic, now)
        core.dirty.clear()
    touched = (time.process_time() - t) / max(1, len(touched_events))
    return full, touched


# --- 2. latency -------------------------------------------------------------------------------------------

class LoopClock:
    """Twisted's IReactorTime over the asyncio loop (time: the stream's, running in real time from ``base``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, base: float) -> None:
        self.loop, self.base, self.t0 = loop, base, time.perf_counter()

    def seconds(self) -> float:
        return self.base + time.perf_counter() - self.t0

    def callLater(self, delay: float, fn: Any, *args: Any) -> Any:
        return Delayed(self.loop.call_later(delay, fn, *args))


class Delayed:
    def __init__(self, handle: asyncio.TimerHandle) -> None:
        self.handle = handle

    def active(self) -> bool:
        return not self.handle.cancelled() and self.handle.when() > asyncio.get_running_loop().time()

    def cancel(self) -> None:
        self.handle.cancel()


async def latency(cfg: dict[str, Any], settings: KpiSettings, args: argparse.Namespace
                  ) -> tuple[list[float], dict[str, Any]]:
    from websockets.asyncio.client import connect

    from agent_console.auth import Authenticator, issue_token
    from agent_console.backend import SessionInfo
    from agent_console.hub import ConsoleHub
    from agent_console.settings import ConsoleSection
    from centre.kpi_push import KpiPush
    from cti.bus import EventBus
    from kpi.engine import KpiEngine

    secret = "bench-secret-0123456789abcdef"
    console = ConsoleSection.model_validate({"token_secret": secret, "supervisors": [{"id": "sup"}],
                                             "send_queue": 10000})
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop, T0 - 3.0)  # the centre starts 3 s after the clock (set-up time)
    centre_ = Centre(cfg, args.rate, args.live, args.seed + 1)
    core = new_core(settings, args.queues, args.agents)
    bus = EventBus(centre_.command)
    bus.add(centre_.acd)
    bus.add(KpiEngine(core))  # last, as centre.wiring adds it
    centre_.attach(bus)
    hub_ref: list[ConsoleHub] = []
    push = KpiPush(core, clock, lambda: hub_ref[0] if hub_ref else None)  # type: ignore[arg-type]

    class Backend:
        async def handle(self, session: SessionInfo, action: str, params: dict[str, Any]) -> dict[str, Any]:
            return push.subscribe(session.session_id, params["topics"], params.get("resume"))

        def resume_messages(self, agent_id: str) -> list[dict[str, Any]]:
            return []

        def supervisor_snapshot(self) -> dict[str, Any]:
            return {"queues": [], "agents": [], "campaigns": [], "health": {}}

        def session_changed(self, session: SessionInfo, connected: bool) -> None:
            if not connected:
                push.drop(session.session_id)

    hub = ConsoleHub(console, Backend(), Authenticator(console, {}, agent_ids=[]),  # type: ignore[arg-type]
                     clock=time.time)
    hub_ref.append(hub)
    port = await hub.start("127.0.0.1", 0)
    ws = await connect(f"ws://127.0.0.1:{port}{console.path}", max_size=2**24)
    await ws.send(json.dumps({"v": 1, "type": "hello", "id": 1, "agent_id": "sup", "role": "supervisor",
                              "token": issue_token(secret, "sup", "supervisor", 3600, time.time())}))
    topics = [f"queue:q{q:03d}" for q in range(args.queues)]
    await ws.send(json.dumps({"v": 1, "type": "subscribe", "id": 2, "topics": topics}))
    figures: dict[str, dict[str, Any]] = {}
    while True:
        m = json.loads(await ws.recv())
        if m.get("re") == 2:
            for f in m["frames"]:
                figures[f["topic"]] = copy.deepcopy(f["figures"])
            break
    pending: dict[str, list[tuple[int, float]]] = {t: [] for t in topics}  # topic -> (offered count, published)
    samples: list[float] = []
    deltas = 0

    def injected(event: object) -> None:
        """A caller's CallQueued went onto the bus (the ACD queued it at once: its queue counts it now)."""
        if type(event) is CallQueued:
            q = core.queues[event.queue]
            pending[q.topic].append((int(q.counters.day[0]), stamps[-1]))

    stamps = [0.0]
    centre_.injected = injected
    inject = centre_.inject

    def stamped(event: object, now: float) -> None:
        stamps[-1] = time.perf_counter()
        inject(event, now)

    centre_.inject = stamped  # type: ignore[method-assign]

    async def read() -> None:
        nonlocal deltas
        async for raw in ws:
            got = time.perf_counter()
            m = json.loads(raw)
            if m.get("type") != "stats_delta":
                continue
            deltas += 1
            topic = m["topic"]
            apply_delta(figures[topic], m)
            offered = figures[topic]["windows"]["day"]["offered"]
            waiting = pending[topic]
            while waiting and waiting[0][0] <= offered:
                samples.append(got - waiting.pop(0)[1])

    reader = asyncio.ensure_future(read())
    gc.collect()
    gc.freeze()  # what the server does after start-up (cti.gc_policy): full passes skip what lives long
    cpu = time.process_time()
    lags: list[float] = []
    end = T0 + args.live
    while clock.seconds() < end:
        t = time.perf_counter()
        centre_.step(clock.seconds())
        await asyncio.sleep(0.002)
        lags.append(time.perf_counter() - t - 0.002)
    await asyncio.sleep(1.0)  # the last updates
    cpu = time.process_time() - cpu
    reader.cancel()
    await ws.close()
    push.stop()
    await hub.stop()
    lost = sum(len(v) for v in pending.values())
    return samples, {"events": bus.counters["events"], "deltas": deltas, "unmatched": lost, "cpu_s": cpu,
                     "lag_p99_ms": pct(lags, 99) * 1000}


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=2000)
    ap.add_argument("--queues", type=int, default=100)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--live", type=float, default=30.0)
    ap.add_argument("--baseline-events", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.live, args.baseline_events = 30.0, 10.0, 100
    cfg, settings = centre(args.agents, args.queues, args.seed)
    t = time.perf_counter()
    events = Centre(cfg, args.rate, args.seconds, args.seed).record(KpiCore.SUBSCRIPTIONS)
    gen = time.perf_counter() - t
    kinds: dict[str, int] = {}
    for e, _ in events:
        kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
    print(f"stream: {len(events)} events in {args.seconds:g} s at {args.rate:g} calls/s, {args.agents} agents, "
          f"{args.queues} queues (generated by the ACD in {gen:.1f} s)")
    print("  " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])))

    def make() -> KpiCore:
        return new_core(settings, args.queues, args.agents)

    engine = engine_cpu(events, make)
    feed, frames = feed_cpu(events, make)
    n = len(events)
    span = events[-1][1] - events[0][1]
    ours = (engine + feed) / n * 1e6
    full, touched = baseline_cpu(events, make, args.baseline_events)
    base, touched = full * 1e6, touched * 1e6
    print()
    print(f"{'CPU per event':<58}{'us/event':>10}")
    print(f"{'  engine (KpiCore.observe), best of 3':<58}{engine / n * 1e6:>10.2f}")
    print(f"{'  feed (1 supervisor, every queue and team, 5/s/topic)':<58}{feed / n * 1e6:>10.2f}"
          f"   ({frames} frames)")
    print(f"{'  ours: engine + feed':<58}{ours:>10.2f}")
    print(f"  (the feed: {frames / span:.0f} frames/s, {100 * feed / span:.1f}% of a core; it costs per frame, "
          "not per event)")
    label = f"  baseline: per-event full snapshot, every topic ({args.baseline_events} events)"
    print(f"{label:<58}{base:>10.2f}")
    print(f"{'  (per-event snapshot of the touched topics only)':<58}{touched:>10.2f}")
    print(f"{'  ratio baseline / ours':<58}{base / ours:>10.1f}")
    samples, info = asyncio.run(latency(cfg, settings, args))
    ms = [s * 1000 for s in samples]
    print()
    print(f"latency, a caller's CallQueued on the bus -> the supervisor's stats_delta counting it ({args.live:g} s "
          f"live at {args.rate:g} calls/s: {info['events']} bus events, {info['deltas']} deltas, {len(ms)} callers "
          f"matched, {info['unmatched']} not; loop lag p99 {info['lag_p99_ms']:.1f} ms)")
    print(f"  p50 {pct(ms, 50):.1f} ms   p90 {pct(ms, 90):.1f} ms   p99 {pct(ms, 99):.1f} ms   "
          f"max {max(ms, default=0):.1f} ms   (mean {statistics.fmean(ms) if ms else float('nan'):.1f} ms; "
          f"process CPU {info['cpu_s']:.1f} s)")
    print(f"BENCH stats us_per_event={engine / n * 1e6:.2f} p99_ms={pct(ms, 99):.1f} ratio={base / ours:.1f} "
          f"feed_core_pct={100 * feed / span:.1f}")


if __name__ == "__main__":
    main()
