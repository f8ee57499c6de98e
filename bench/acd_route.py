"""Benchmark: ACD routing decision latency and throughput against a scan-everything baseline.

Run: ``.venv/bin/python bench/acd_route.py [--agents 10000] [--skills 200] [--waiting 2000] [--ops 4000]``

A busy contact centre in virtual time: every agent is logged in, ``--waiting`` callers with mixed
skill requirements wait (150 queues needing 1-3 of ``--skills`` skills with popularity skewed like
real centres, some callers adding an IVR skill or a VIP boost; four strategies; expansion steps), and
agents keep coming back from wrap-up. Each measured operation is one decision through the whole
``AcdService`` (state table, indexes, events, commands, explanation kept):

- agent-ready: ``end_wrapup``/``ready`` of an agent -> the best waiting call over all its queues;
- call-arrives: ``handle(CallQueued)`` -> the best available agent (or the call waits).

After each offer the call is answered and ended (untimed) and a new caller arrives (timed), so the
number waiting stays near ``--waiting``. The baseline, timed on the very same state just before each
sampled decision, does what app_queue does: look at every agent (call-arrives) or every waiting call
(agent-ready), check eligibility and keep the best by the same ranking; its answer must equal ours.
The table repeats the run at 100, 1,000 and 10,000 agents to show how latency grows, and adds a
quiet centre (40% of the agents free, callers served at once) for call-arrives at the full size.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from acd.call_states import CallState  # noqa: E402
from acd.events import CallAnswered  # noqa: E402
from acd.live import AgentRuntime  # noqa: E402
from acd.requirements import Requirements, compile_requirements, parse_call_skills  # noqa: E402
from acd.service import AcdService  # noqa: E402
from acd.settings import AcdSection  # noqa: E402
from acd.states import AgentState  # noqa: E402
from bench._offers import answered_and_ended  # noqa: E402
from cti.commands import OfferCall  # noqa: E402
from cti.events import CallQueued  # noqa: E402

STRATEGIES = ["longest_idle", "most_skilled", "least_talk_time", "round_robin"]


def build_config(rng: np.random.Generator, n_agents: int, n_skills: int, n_queues: int = 150) -> dict[str, Any]:
    skills = [f"s{i:03d}" for i in range(n_skills)]
    weights = 1.0 / np.arange(1, n_skills + 1) ** 0.8
    weights /= weights.sum()
    agents = []
    for i in range(n_agents):
        k = int(rng.integers(3, 7))
        names = rng.choice(skills, size=k, replace=False, p=weights)
        agents.append({"id": f"ag{i:05d}", "name": f"Agent {i}", "endpoint": f"PJSIP/ag{i:05d}",
                       "skills": {str(s): int(rng.integers(1, 11)) for s in names}})
    queues = []
    while len(queues) < n_queues:
        k = int(rng.choice([1, 1, 2, 2, 3]))
        need = {str(s): int(rng.integers(1, 7)) for s in rng.choice(skills, size=k, replace=False, p=weights)}
        # keep queues someone can serve
        if sum(all(a["skills"].get(s, 0) >= lvl for s, lvl in need.items()) for a in agents) < max(2, n_agents // 500):
            continue
        q: dict[str, Any] = {"name": f"q{len(queues):03d}", "skills": need, "wrapup": 600,
                             "priority": int(rng.choice([0, 0, 0, 1, 2])),
                             "strategy": str(rng.choice(STRATEGIES, p=[0.4, 0.3, 0.15, 0.15]))}
        if rng.random() < 0.5:
            q["expansion"] = [{"after": 30, "lower_min_level_by": 2},
                              {"after": 60, "add_skill": {str(rng.choice(skills[:20])): 3}}]
        queues.append(q)
    return {"agents": agents, "queues": queues}


class Run:
    """One benchmark run at one size; returns latencies of ours and of the baseline."""

    def __init__(self, n_agents: int, n_skills: int, n_waiting: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.cfg = build_config(self.rng, n_agents, n_skills)
        self.section = AcdSection.model_validate(self.cfg)
        self.now = 1_000_000.0
        self.acd = AcdService(self.section, self.now)
        self.n_waiting = n_waiting
        self.skills = sorted({s for a in self.cfg["agents"] for s in a["skills"]})
        self.seq = 0
        self.lat: dict[str, list[int]] = {"call-arrives": [], "agent-ready": []}  # whole event
        self.dec: dict[str, list[int]] = {"call-arrives": [], "agent-ready": []}  # routing decision
        self.base: dict[str, list[int]] = {"call-arrives": [], "agent-ready": []}
        self.ticks: list[int] = []
        self.mismatches = 0
        self.req_cache: dict[tuple[str, Any], Requirements] = {}
        self._in_decision = 0
        router = self.acd.router
        for name in ("best_agent", "best_call"):
            setattr(router, name, self._time_decision(getattr(router, name)))

    def _time_decision(self, fn: Any) -> Any:
        def timed_decision(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                self._in_decision += time.perf_counter_ns() - t0
        return timed_decision

    # --- the PBX side -----------------------------------------------------------------------
    def new_call(self) -> CallQueued:
        self.seq += 1
        q = self.cfg["queues"][int(self.rng.integers(len(self.cfg["queues"])))]
        extra = f"{self.skills[int(self.rng.integers(len(self.skills)))]}:2" if self.rng.random() < 0.2 else ""
        boost = 5 if self.rng.random() < 0.1 else 0
        u = f"u{self.seq}"
        return CallQueued(server="pbx", ts=self.now, call_id=f"L{u}", uniqueid=u, channel=f"PJSIP/trunk-{u}",
                          queue=q["name"], skills=extra, priority=boost, language="en",
                          caller_num="+15550000", caller_name="", dnis="100")

    def settle(self, out: list[Any]) -> str | None:
        """Answer and end an offered call at once (untimed); return the offer's call or agent."""
        chosen = None
        for o in out:
            if isinstance(o, OfferCall):
                chosen = (o.uniqueid, o.agent_id)
                dialled, answered, ended = answered_and_ended(o, self.now)
                self.acd.handle(dialled, self.now)
                assert any(isinstance(x, CallAnswered) for x in self.acd.handle(answered, self.now))
                self.acd.handle(ended, self.now)
        return None if chosen is None else f"{chosen[0]}>{chosen[1]}"

    # --- the baseline: look at everything -----------------------------------------------------
    def baseline_agent(self, event: CallQueued) -> str | None:
        """app_queue style: walk every agent, keep the eligible available one ranked best."""
        acd = self.acd
        queue = acd.queue_config(event.queue)
        assert queue is not None
        skills, _ = parse_call_skills(event.skills)
        key = (queue.name, skills)
        req = self.req_cache.get(key)
        if req is None:  # compiled once per kind of call, as ours is: only the scan is compared
            req = self.req_cache[key] = compile_requirements(self.section, queue, skills, 0)
        rr = acd.last_offered(queue.name)
        agents = acd.agent_records()
        n = len(agents)
        best: tuple[Any, ...] | None = None
        winner: AgentRuntime | None = None
        for a in agents:
            if a.state != AgentState.READY or not acd.phone_free(a):
                continue
            for alt in req.alternatives:
                if not alt.met_by(a.cfg.skills):
                    continue
                if queue.strategy == "most_skilled" and alt.skills:
                    key: tuple[Any, ...] = (-a.cfg.skills[alt.skills[0][0]], a.idle_since, a.ordinal)
                elif queue.strategy == "least_talk_time":
                    key = (a.talk_today, a.idle_since, a.ordinal)
                elif queue.strategy == "round_robin":
                    key = ((a.ordinal - rr - 1) % n, a.ordinal)
                else:
                    key = (a.idle_since, a.ordinal)
                if best is None or key < best:
                    best, winner = key, a
        return None if winner is None else f"{event.uniqueid}>{winner.id}"

    def baseline_call(self, a: AgentRuntime) -> str | None:
        """Walk every waiting call, keep the eligible one ranked best (priority, then first come)."""
        best = None
        for call in self.acd.call_records():
            if call.state != CallState.WAITING or call.requirements is None:
                continue
            if call.requirements.eligible(a.cfg.skills) is not None and (best is None or call.sort_key < best.sort_key):
                best = call
        return None if best is None else f"{best.key[1]}>{a.id}"

    # --- the run ------------------------------------------------------------------------------
    def timed(self, kind: str, fn: Any, *args: Any) -> list[Any]:
        self._in_decision = 0
        t0 = time.perf_counter_ns()
        out = fn(*args)
        self.lat[kind].append(time.perf_counter_ns() - t0)
        self.dec[kind].append(self._in_decision)
        return out

    def arrive(self, sample: bool) -> None:
        ev = self.new_call()
        expect = None
        if sample:
            t0 = time.perf_counter_ns()
            expect = self.baseline_agent(ev)
            self.base["call-arrives"].append(time.perf_counter_ns() - t0)
        got = self.settle(self.timed("call-arrives", self.acd.handle, ev, self.now))
        if sample and got != expect:
            self.mismatches += 1

    def agent_ready(self, a: AgentRuntime, sample: bool) -> None:
        expect = None
        if sample:
            t0 = time.perf_counter_ns()
            expect = self.baseline_call(a)
            self.base["agent-ready"].append(time.perf_counter_ns() - t0)
        fn = self.acd.end_wrapup if a.state == AgentState.WRAP_UP else self.acd.ready
        got = self.settle(self.timed("agent-ready", fn, a.id, self.now))
        if sample and got != expect:
            self.mismatches += 1

    def go(self, ops: int, baseline_every: int) -> None:
        acd = self.acd
        for a in acd.agent_records():
            acd.login(a.id, None, self.now)
        for _ in range(self.n_waiting):  # callers arrived over the last two minutes, as in a steady queue
            self.now += 120.0 / self.n_waiting
            acd.handle(self.new_call(), self.now)
        gc.collect()
        gc.disable()
        try:
            for i in range(ops):
                self.now += 0.02
                # due timers (expansion steps...) are their own event in the server: timed apart
                t0 = time.perf_counter_ns()
                out = acd.tick(self.now)
                self.ticks.append(time.perf_counter_ns() - t0)
                self.settle(out)
                sample = i % baseline_every == 0
                agents = acd.agent_records()
                idle = [a for a in (agents[int(j)] for j in self.rng.integers(len(agents), size=8))
                        if a.state in (AgentState.NOT_READY, AgentState.WRAP_UP)]
                if idle:
                    before = len(acd.router.calls)
                    self.agent_ready(idle[0], sample)
                    if len(acd.router.calls) < before:  # it took a caller: another one arrives
                        self.arrive(sample)
                if len(acd.router.calls) < self.n_waiting:
                    self.arrive(sample)
        finally:
            gc.enable()


    def go_idle(self, ops: int, baseline_every: int, available: float) -> None:
        """A quiet centre: ``available`` of the agents are free and callers find one at once."""
        acd = self.acd
        for a in acd.agent_records():
            acd.login(a.id, None, self.now)
        agents = acd.agent_records()
        for j in self.rng.permutation(len(agents))[: int(available * len(agents))]:
            self.now += 0.01
            acd.ready(agents[int(j)].id, self.now)
        busy: list[str] = []
        gc.collect()
        gc.disable()
        try:
            for i in range(ops):
                self.now += 0.02
                self.settle(acd.tick(self.now))
                before = len(acd.router.agents)
                self.arrive(i % baseline_every == 0)
                if len(acd.router.agents) < before:  # an agent took it: another one comes back from wrap-up
                    busy.append(next(a.id for a in agents if a.state == AgentState.WRAP_UP
                                     and a.id not in busy))
                    if len(busy) > 1:
                        acd.end_wrapup(busy.pop(0), self.now)
        finally:
            gc.enable()


def pct(xs: list[int], p: float) -> float:
    return float(np.percentile(np.array(xs), p)) / 1000.0 if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--skills", type=int, default=200)
    ap.add_argument("--waiting", type=int, default=2_000)
    ap.add_argument("--ops", type=int, default=4_000, help="agent-ready operations at the full size")
    ap.add_argument("--baseline-every", type=int, default=8, help="time the baseline on every Nth decision")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()

    print(f"ACD routing: {args.agents} agents, {args.skills} skills, ~{args.waiting} waiting calls, "
          f"{args.ops} agent-ready operations (+ the arrivals they cause)\n")
    sizes = sorted({100, 1_000, args.agents})
    rows = []
    main_run: Run | None = None
    for n in sizes:
        run = Run(n, args.skills, max(20, args.waiting * n // args.agents), args.seed)
        t0 = time.perf_counter()
        run.go(args.ops if n == args.agents else min(args.ops, 2_000), args.baseline_every)
        rows.append((n, run, time.perf_counter() - t0))
        if n == args.agents:
            main_run = run
    assert main_run is not None
    idle = Run(args.agents, args.skills, 0, args.seed)
    idle.go_idle(min(args.ops, 2_000), args.baseline_every, 0.4)

    print("decision = Router.best_agent / best_call (the routing choice, explanation kept), timed inside the event;")
    print("event = the whole AcdService call (state table, indexes, ACD events, OfferCall); base = scan baseline.")
    print(f"{'agents':>7} {'waiting':>7} {'event':<13} {'count':>6} {'decision p50/p99 us':>20} "
          f"{'event p50/p99 us':>17} {'base p50/p99 us':>16}")
    for n, run, _ in rows:
        for kind in ("call-arrives", "agent-ready"):
            lat, dec, base = run.lat[kind], run.dec[kind], run.base[kind]
            print(f"{n:>7} {len(run.acd.router.calls):>7} {kind:<13} {len(lat):>6} "
                  f"{pct(dec, 50):>9.1f} /{pct(dec, 99):>7.1f}  {pct(lat, 50):>7.1f} /{pct(lat, 99):>7.1f} "
                  f"{pct(base, 50):>7.1f} /{pct(base, 99):>7.1f}")
        print(f"{n:>7} {'':>7} {'timer ticks':<13} {len(run.ticks):>6} {'':>20} "
              f"{pct(run.ticks, 50):>7.1f} /{pct(run.ticks, 99):>7.1f}")

    lat, dec, base = idle.lat["call-arrives"], idle.dec["call-arrives"], idle.base["call-arrives"]
    print(f"{args.agents:>7} {len(idle.acd.router.calls):>7} {'arrive/quiet':<13} {len(lat):>6} "
          f"{pct(dec, 50):>9.1f} /{pct(dec, 99):>7.1f}  {pct(lat, 50):>7.1f} /{pct(lat, 99):>7.1f} "
          f"{pct(base, 50):>7.1f} /{pct(base, 99):>7.1f}   (quiet centre: 40% of agents free, not in BENCH)")

    run = main_run
    decisions = run.dec["call-arrives"] + run.dec["agent-ready"]
    events = run.lat["call-arrives"] + run.lat["agent-ready"]
    ours_per_s = len(decisions) / (sum(decisions) / 1e9)
    events_per_s = len(events) / (sum(events) / 1e9)
    mix = {k: len(run.dec[k]) for k in run.dec}
    base_time = sum(mix[k] * (np.mean(run.base[k]) / 1e9) for k in mix if run.base[k])
    base_per_s = sum(mix.values()) / base_time
    ratio = ours_per_s / base_per_s
    p99 = pct(decisions, 99)
    print(f"\nat {args.agents} agents: decisions {ours_per_s:,.0f}/s "
          f"(p50 {pct(decisions, 50):.1f} us, p99 {p99:.1f} us); "
          f"whole events {events_per_s:,.0f}/s (p50 {pct(events, 50):.1f} us, p99 {pct(events, 99):.1f} us)")
    print(f"baseline decisions {base_per_s:,.0f}/s; ratio {ratio:.1f}x (whole events vs baseline: "
          f"{events_per_s / base_per_s:.1f}x)")
    print(f"baseline answers checked: {sum(len(v) for v in run.base.values()) + len(idle.base['call-arrives'])}, "
          f"disagreements: {run.mismatches + idle.mismatches}")
    print(f"available agents at the end: {len(run.acd.router.agents)}")
    print(f"targets: decision p99 <= 200 us -> {'met' if p99 <= 200 else 'NOT met'}; ratio >= 50x -> "
          f"{'met' if ratio >= 50 else 'NOT met'}; whole-event p99 {pct(events, 99):.1f} us")
    print(f"BENCH acd_route agents={args.agents} p99_us={p99:.1f} decisions_per_s={ours_per_s:.0f} ratio={ratio:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
