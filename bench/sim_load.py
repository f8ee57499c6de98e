"""Benchmark: the highest arrival rate (new calls/s) the server sustains in real time with no call lost,
and the server's CPU milliseconds per call. Parent orchestration plus the two child roles (the parent
imports only the screen pop's demo-data loader, once, to prepare the customer database).

Run: ``.venv/bin/python bench/sim_load.py [--quick] [--rates 5,10,20,40,80] [--window 10] [--profile DIR]``
(about 3 minutes by default, 1 with ``--quick``)

Per step, two fresh processes on loopback:

- the SERVER (``--role server``): what ``cti serve`` runs (``centre.process.Runtime`` on the asyncio reactor:
  AMI client, FastAGI IVR, ACD, consoles hub, screen pop look-ups, SQLite recorder) plus the demo's
  ``AgentBots`` logging every agent in and ``CallLedger`` following every call. Its CPU (user + system, all
  threads, ``getrusage``) is the measured cost; the simulator's work does not count;
- the SIMULATOR (``--role sim``): ``centre.sim_pbx.build_sim`` + ``listen`` (what ``cti sim`` runs) at speed 1,
  inbound ``rate_per_hour`` set to the step's rate, the demo IVR flow and caller scripts; it times each
  FastAGI turnaround (its reply written -> the server's next command read) and each offer (the
  ``CTIQueued`` UserEvent emitted -> the caller's channel entering ``[cti-agent]`` after the server's
  Redirect).

Arrivals run for ``--window`` seconds, then stop; the step drains until the simulated PBX has no channel
left and the server has ended every call (at most ``--drain`` s). A step passes when: every call the
simulator created reached the server's ledger and none is lost, no caller fell back because the IVR could
not run, no call is still open after the drain, the server read at least every event the PBX emitted, and
p99 FastAGI turnaround and p99 offer latency are under ``--p99-ms`` (default 500 ms). Steps go up until
the first failure, then ``--refine`` steps bisect between the last pass and it. ``srv%`` is the server's
peak share of one core over any second: near 100% its single event loop is saturated; ``sim%`` likewise
tells whether the simulator was the limit.

Agents are generated so that they are not the bottleneck: 8 x rate + 20 agents with every skill, 2 s talk
(median), 1 s wrap-up. There is no external baseline for this benchmark; the ratio printed is to the
demo configuration's own arrival rate (210 calls/h). Ends with
``BENCH sim_load max_calls_per_s=<n> cpu_ms_per_call=<x>`` (CPU of the highest passing step).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._procs import Child, ChildError, emit, emit_when_ami_up, free_port, serve_control  # noqa: E402

DEMO = ROOT / "config" / "examples" / "demo.yaml"
HANDLE_S = 4.0  # answer delay + talk + wrap-up of a generated agent, roughly
DEFAULT_RATES = (5, 10, 20, 40, 80, 160, 320)
QUICK_RATES = (10, 40, 80)
STILL_OPEN = ("in_ivr", "waiting", "talking")  # the ledger's counts of calls that have not ended


# --- configuration --------------------------------------------------------------------------------------

def demo_rate_per_s() -> float:
    import yaml

    doc = yaml.safe_load(DEMO.read_text())
    return sum(n["rate_per_hour"] for n in doc["sim"]["inbound"]) / 3600.0


def agents_for(rate: float) -> int:
    return int(math.ceil(2 * HANDLE_S * rate)) + 20


def step_config(rate: float, tmp: Path, *, seed: int) -> dict[str, Any]:
    """The demo configuration without its outbound campaign, with free loopback ports, a SQLite file in ``tmp``,
    enough generated agents
    and the inbound rate set to ``rate`` calls/s (split over the demo's numbers as the demo splits it)."""
    import yaml

    doc = yaml.safe_load(DEMO.read_text())
    doc.pop("dialer", None)  # inbound calls only: an outbound campaign would add its own load and agents' time
    doc["asterisk"][0]["port"] = free_port()
    doc["database"] = {"url": f"sqlite:///{tmp / 'bench.sqlite3'}"}
    doc["listen"] = {"fastagi": {"host": "127.0.0.1", "port": free_port()},
                     "http": {"host": "127.0.0.1", "port": free_port()}}
    for q in doc["acd"]["queues"]:
        q["wrapup"], q["ring_timeout"] = 1, 8  # a ring-no-answer (2% of offers) costs 8 s, not 15
    doc["acd"]["agents"] = [
        {"id": f"{2000 + i}", "name": f"Bench agent {i}", "endpoint": f"PJSIP/{2000 + i}",
         "skills": {"sales": 5 + i % 5, "support": 5 + (i + 1) % 5, "billing": 5 + (i + 2) % 5}}
        for i in range(agents_for(rate))]
    total = sum(n["rate_per_hour"] for n in doc["sim"]["inbound"])
    for n in doc["sim"]["inbound"]:
        n["rate_per_hour"] = rate * 3600.0 * n["rate_per_hour"] / total
    sim = doc["sim"]
    sim["seed"] = seed
    sim["callers"]["think_time_s"] = 1.0
    sim["agents"] = {"answer_delay_s": {"mean_s": 1.0, "sd_s": 0.3, "min_s": 0.3}, "no_answer_prob": 0.02,
                     "talk_time": {"median_s": 2.0, "sigma": 0.3}}
    sim["agi"] = {"default_prompt_s": 1.0}
    return doc


# --- child: the server ----------------------------------------------------------------------------------

def role_server(config: str, profile: str | None = None) -> int:
    """What ``cti serve`` runs, plus simulated agents and the ledger; answers ``cpu`` and ``report``."""
    import asyncio
    import resource

    from twisted.internet import defer

    from centre.cli_common import setup_logging
    from centre.demo import CallLedger, log_in_agents
    from centre.process import Runtime
    from config.load import load_config
    from cti.reactor import install_reactor

    cfg = load_config(config)
    setup_logging(cfg.log.level)
    reactor: Any = install_reactor()
    runtime = Runtime(cfg, reactor)
    ledger = CallLedger()
    runtime.server.subscribe(ledger)
    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def loop_cpu() -> float:  # the reactor's thread only (the handlers run on it); Linux
        r = resource.getrusage(resource.RUSAGE_THREAD)
        return r.ru_utime + r.ru_stime

    def on_ami_up() -> dict[str, Any]:
        bots = log_in_agents(runtime.server, exclude=())
        return {"agents": len(bots.agents), "fastagi": runtime.fastagi_address[1], "http": runtime.http_port}

    def report(_: list[str]) -> dict[str, Any]:
        account = ledger.account(runtime.server)
        return {"cpu": cpu(), "loop_cpu": loop_cpu(), "counts": account["counts"], "lost": account["lost"][:10],
                "counters": dict(runtime.server.counters),
                "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                "open": [f"{live.queued.uniqueid} {live.state.value}" + (
                    f" agent {live.agent_id} {runtime.server.acd.agent_snapshot(live.agent_id).state.value}"
                    if live.agent_id else "")
                    for live in list(runtime.server.sessions)[:3] if live.queued.uniqueid not in ledger.final]}

    def start() -> None:
        d = defer.Deferred.fromFuture(asyncio.ensure_future(runtime.start()))
        d.addCallbacks(lambda _: emit_when_ami_up(reactor, runtime, on_ami_up, 20.0),
                       lambda f: (emit({"error": f"start: {f.getErrorMessage()}"}), reactor.stop()))

    def shutdown() -> defer.Deferred[Any]:
        return defer.Deferred.fromFuture(asyncio.ensure_future(runtime.stop()))

    serve_control(reactor, {"cpu": lambda _: {"cpu": cpu(), "loop_cpu": loop_cpu()}, "report": report})
    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    if profile:
        import cProfile

        with cProfile.Profile() as prof:
            reactor.run()
        prof.dump_stats(profile)
    else:
        reactor.run()
    return 0


# --- child: the simulator -------------------------------------------------------------------------------

@dataclass
class SimProbe:
    """What the simulator side sees of the server: FastAGI turnarounds and offer latencies (seconds)."""

    agi: list[float]
    offers: list[float]
    events: int = 0
    fallback: int = 0

    def __init__(self) -> None:
        self.agi, self.offers = [], []
        self.counted: Any = lambda msg: True  # which PBX events reach the server (its AMI user's read classes)
        self._queued: dict[str, float] = {}

    def on_event(self, msg: Any) -> None:
        if self.counted(msg):
            self.events += 1  # an event the server's AMI user may read (no agi class: no AGIExec events)
        name = msg.name
        if name == "UserEvent" and msg.get("UserEvent") == "CTIQueued":
            self._queued.setdefault(msg.get("Channel") or "", time.perf_counter())
        elif name == "Newexten":
            context = msg.get("Context")
            if context == "cti-agent":
                t0 = self._queued.pop(msg.get("Channel") or "", None)
                if t0 is not None:
                    self.offers.append(time.perf_counter() - t0)
            elif context == "cti-fallback" and msg.get("Priority") == "1":
                self.fallback += 1
        elif name == "Hangup":
            self._queued.pop(msg.get("Channel") or "", None)

    def timed_connector(self, connect: Any) -> Any:
        """A FastAGI connector that timestamps each write of the simulated Asterisk and the server's next
        bytes on that connection (the server's turnaround, including both event loops' delays)."""

        def wrapped(host: str, port: int, protocol: Any) -> Any:
            send, received = protocol.send, protocol.dataReceived
            sent_at: list[float] = []

            def timed_send(data: bytes) -> None:
                sent_at[:] = [time.perf_counter()]
                send(data)

            def timed_received(data: bytes) -> None:
                if sent_at:
                    self.agi.append(time.perf_counter() - sent_at.pop())
                received(data)

            protocol.send, protocol.dataReceived = timed_send, timed_received
            return connect(host, port, protocol)

        return wrapped


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def role_sim(config: str, seed: int) -> int:
    """What ``cti sim`` runs at speed 1, probed; answers ``start``, ``stop-arrivals`` and ``report``."""
    import resource

    from centre.cli_common import setup_logging
    from centre.demo import with_demo_callers
    from centre.sim_pbx import build_sim, listen
    from config.load import load_config
    from cti.reactor import install_reactor
    from sim.ami_read_classes import event_classes
    from sim.fastagi_client import tcp_connector

    cfg = with_demo_callers(load_config(config))
    setup_logging("WARNING")
    reactor: Any = install_reactor()
    probe = SimProbe()
    runtime = build_sim(cfg, reactor, agi_connect=probe.timed_connector(tcp_connector(reactor)), seed=seed)
    user = runtime.ami.users.get(runtime.server.username) if runtime.server is not None else None
    readable = user.read if user is not None else None
    if readable is not None:
        probe.counted = lambda msg: event_classes(msg) <= readable
    runtime.pbx.add_listener(probe.on_event)
    port = listen(runtime, reactor)

    def stop_arrivals(_: list[str]) -> dict[str, Any]:
        runtime.driver.stop_arrivals()  # as centre.demo.run_virtual drains: people already in calls carry on
        return {"arrived": runtime.driver.counts["arrived"]}

    def report(_: list[str]) -> dict[str, Any]:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return {"cpu": r.ru_utime + r.ru_stime, "arrived": runtime.driver.counts["arrived"],
                "channels": len(runtime.pbx.channels), "events": probe.events, "fallback": probe.fallback,
                "agi_n": len(probe.agi), "offers": len(probe.offers),
                "agi_p50": percentile(probe.agi, 0.5), "agi_p99": percentile(probe.agi, 0.99),
                "offer_p50": percentile(probe.offers, 0.5), "offer_p99": percentile(probe.offers, 0.99),
                "counts": dict(runtime.driver.counts)}

    def start(_: list[str]) -> dict[str, Any]:
        runtime.driver.start()
        return {"started": True}

    serve_control(reactor, {"start": start, "stop-arrivals": stop_arrivals, "report": report})
    reactor.callWhenRunning(lambda: emit({"ready": True, "ami": port.getHost().port}))
    try:
        reactor.run()
    finally:
        runtime.stop()
    return 0


# --- parent ---------------------------------------------------------------------------------------------

@dataclass
class StepResult:
    rate: float
    agents: int
    arrived: int
    offered: int
    answered: int
    lost: int
    left: int
    cpu_s: float  # server CPU (all threads) from the first arrival to the end of the drain
    loop_cpu_s: float  # the part of it on the reactor thread (the rest: database and look-up threads)
    busy: float  # the server's peak share of one core over 1 s (near 100%: it cannot keep up)
    sim_busy: float  # the same for the simulator (near 100%: the simulator, not the server, is the limit)
    agi_p99_ms: float | None
    offer_p99_ms: float | None
    failures: list[str]

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000.0 * self.cpu_s / self.offered if self.offered else float("nan")

    @property
    def loop_ms_per_call(self) -> float:
        return 1000.0 * self.loop_cpu_s / self.offered if self.offered else float("nan")


class PeakCpu:
    """Samples the CPU time of some processes every ``PERIOD`` s; ``peak``: each one's highest share of one
    core over any ``SPAN`` s (a single-threaded event loop near 100% cannot keep up)."""

    PERIOD, SPAN = 0.25, 1.0

    def __init__(self, *pids: int) -> None:
        import psutil

        self.procs = [psutil.Process(pid) for pid in pids]
        self.samples: list[tuple[float, list[float]]] = []
        self.peak = [0.0] * len(pids)
        self._sample()

    def _sample(self) -> None:
        now = time.monotonic()
        cpus = [sum(p.cpu_times()[:2]) for p in self.procs]
        self.samples.append((now, cpus))
        for then, old in reversed(self.samples):
            if now - then >= self.SPAN:
                self.peak = [max(pk, (c - o) / (now - then)) for pk, c, o in zip(self.peak, cpus, old, strict=True)]
                break

    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(self.PERIOD, left))
            self._sample()


def run_step(rate: float, args: argparse.Namespace, workdir: Path) -> StepResult:
    """One step: fresh simulator and server, ``args.window`` s of arrivals at ``rate``, then the drain."""
    import yaml

    tmp = Path(tempfile.mkdtemp(prefix=f"rate{rate:g}-", dir=workdir))
    shutil.copy(workdir / "template.sqlite3", tmp / "bench.sqlite3")
    cfg_path = tmp / "cti.yaml"
    cfg_path.write_text(yaml.safe_dump(step_config(rate, tmp, seed=args.seed), sort_keys=False))
    me = [sys.executable, str(Path(__file__).resolve()), "--config", str(cfg_path)]
    profile = ["--profile", str(Path(args.profile) / f"server-{rate:g}.prof")] if args.profile else []
    sim = Child("sim", [*me, "--role", "sim", "--seed", str(args.seed)], tmp / "sim.log")
    server: Child | None = None
    try:
        sim.read(60.0)
        server = Child("server", [*me, "--role", "server", *profile], tmp / "server.log")
        ready = server.read(90.0)
        meter = PeakCpu(server.proc.pid, sim.proc.pid)
        cpu0 = server.request("cpu")
        sim.request("start")
        meter.run_for(args.window)
        sim.request("stop-arrivals")
        deadline = time.monotonic() + args.drain
        while True:  # until the PBX is empty, the server has read all it emitted and every call has ended
            s, srv = sim.request("report"), server.request("report")
            if s["channels"] == 0 and srv["counters"]["ami_messages"] >= s["events"] \
                    and not sum(srv["counts"][k] for k in STILL_OPEN) or time.monotonic() > deadline:
                break
            meter.run_for(0.5)
    finally:
        sim.stop()
        if server is not None:
            server.stop()
    counts = srv["counts"]
    left = sum(counts[k] for k in STILL_OPEN)
    agi_p99 = None if s["agi_p99"] is None else 1000 * s["agi_p99"]
    offer_p99 = None if s["offer_p99"] is None else 1000 * s["offer_p99"]
    failures = []
    if counts["lost"]:
        failures.append(f"{counts['lost']} lost ({', '.join(srv['lost'][:3])})")
    if counts["offered"] != s["arrived"]:
        failures.append(f"server saw {counts['offered']} of {s['arrived']} calls")
    if left:
        where = ", ".join(f"{counts[k]} {k}" for k in STILL_OPEN if counts[k])
        failures.append(f"{where} {args.drain:g} s after arrivals stopped (PBX channels {s['channels']}; "
                        f"{', '.join(srv['open']) or '-'})")
    if s["fallback"]:
        failures.append(f"{s['fallback']} callers fell back (IVR did not run)")
    if srv["counters"]["ami_messages"] < s["events"]:
        failures.append(f"server read {srv['counters']['ami_messages']} of {s['events']} AMI events")
    for what, value in (("FastAGI", agi_p99), ("offer", offer_p99)):
        if value is None:
            failures.append(f"no {what} measured")
        elif value > args.p99_ms:
            failures.append(f"p99 {what} {value:.0f} ms > {args.p99_ms:g} ms")
    return StepResult(rate, ready["agents"], s["arrived"], counts["offered"], counts["answered"], counts["lost"],
                      left, srv["cpu"] - cpu0["cpu"], srv["loop_cpu"] - cpu0["loop_cpu"], meter.peak[0],
                      meter.peak[1], agi_p99, offer_p99, failures)


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


HEAD = (f"{'calls/s':>8} {'agents':>6} {'offered':>7} {'answered':>8} {'lost':>4} {'left':>4} {'srv CPU s':>9} "
        f"{'srv%':>5} {'sim%':>5} {'ms/call':>7} {'loop ms':>7} {'AGI p99 ms':>10} {'offer p99 ms':>12}  result")


def row(r: StepResult) -> str:
    verdict = "ok" if not r.failures else "FAIL: " + "; ".join(r.failures)
    return (f"{r.rate:>8g} {r.agents:>6} {r.offered:>7} {r.answered:>8} {r.lost:>4} {r.left:>4} {r.cpu_s:>9.2f} "
            f"{100 * r.busy:>4.0f}% {100 * r.sim_busy:>4.0f}% {r.cpu_ms_per_call:>7.2f} {r.loop_ms_per_call:>7.2f} "
            f"{fmt_ms(r.agi_p99_ms):>10} {fmt_ms(r.offer_p99_ms):>12}  {verdict}")


def prepare_template(workdir: Path) -> None:
    """Migrate a SQLite file and load the demo customers once; each step starts from a copy."""
    from datetime import UTC, datetime

    from centre.wiring import ensure_demo_customers

    ensure_demo_customers(f"sqlite:///{workdir / 'template.sqlite3'}", datetime.now(UTC))


def climb(rates: list[float], refine: int, args: argparse.Namespace, workdir: Path) -> tuple[list[StepResult], bool]:
    """Step up until the first failure, then bisect between the last pass and it ``refine`` times.
    Returns the passing steps (in the order run) and whether any step failed."""
    passed: list[StepResult] = []
    failed_at: float | None = None
    queue = list(rates)
    while queue:
        rate = queue.pop(0)
        try:
            r = run_step(rate, args, workdir)
        except ChildError as exc:
            print(f"{rate:>8g}  step could not run: {exc}", flush=True)
            r = None
        if r is not None:
            print(row(r), flush=True)
        if r is not None and not r.failures:
            passed.append(r)
            if failed_at is None:
                continue
        else:
            failed_at = rate if failed_at is None else min(failed_at, rate)
        queue = []
        lo = max((p.rate for p in passed), default=0.0)
        if refine > 0 and failed_at is not None:
            mid = round((lo + failed_at) / 2)
            if lo < mid < failed_at:
                refine -= 1
                queue = [mid]
    return passed, failed_at is not None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--role", choices=("server", "sim"), help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help=f"rates {QUICK_RATES}, 6 s windows, no bisection")
    p.add_argument("--rates", default=None, help=f"comma-separated calls/s steps (default {DEFAULT_RATES})")
    p.add_argument("--window", type=float, default=None, help="seconds of arrivals per step (default 10)")
    p.add_argument("--drain", type=float, default=40.0, help="max seconds to let calls end after arrivals stop")
    p.add_argument("--refine", type=int, default=None, help="bisection steps after the first failure (default 1)")
    p.add_argument("--p99-ms", type=float, default=500.0, help="p99 FastAGI turnaround and offer latency bound")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    p.add_argument("--profile", default=None, metavar="DIR|FILE",
                   help="cProfile the server's event loop; a directory for the stats of each step")
    args = p.parse_args(argv)
    if args.role == "server":
        return role_server(args.config, args.profile)
    if args.role == "sim":
        return role_sim(args.config, args.seed)

    rates = [float(r) for r in args.rates.split(",")] if args.rates else list(QUICK_RATES if args.quick
                                                                              else DEFAULT_RATES)
    if args.window is None:
        args.window = 6.0 if args.quick else 10.0
    refine = args.refine if args.refine is not None else (0 if args.quick else 1)
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cti-sim-load-"))
    print(f"sim_load: server and simulator in separate processes on loopback, {args.window:g} s of arrivals "
          f"per step, drain <= {args.drain:g} s; pass = no call lost or left, p99 <= {args.p99_ms:g} ms")
    print("srv% / sim%: peak CPU (share of one core, any 1 s) of the server / simulator process; ms/call: server CPU "
          "(all threads) from the first arrival to the end of the drain / calls offered; loop ms: the reactor "
          "thread's part of it", flush=True)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start (the server and the "
          "simulator each need a core; other load on the machine lowers the rate found)", flush=True)
    try:
        prepare_template(workdir)
        print(HEAD)
        print("-" * len(HEAD))
        passed, failed = climb(rates, refine, args, workdir)
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    demo = demo_rate_per_s()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if not passed:
        print("no step passed")
        print("BENCH sim_load max_calls_per_s=0 cpu_ms_per_call=nan")
        return 1
    best = max(passed, key=lambda r: r.rate)
    print(f"max sustained: {best.rate:g} new calls/s ({best.rate * 3600:,.0f} calls/h) with "
          f"{best.cpu_ms_per_call:.2f} ms server CPU per call")
    print(f"no external baseline is named for this benchmark; ratio to the demo config's arrival rate "
          f"({demo * 3600:.0f} calls/h = {demo:.3f}/s): x{best.rate / demo:,.0f}")
    if not failed:
        print("(every step passed: the limit is above the last rate tried; raise --rates)")
    print(f"BENCH sim_load max_calls_per_s={best.rate:g} cpu_ms_per_call={best.cpu_ms_per_call:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
