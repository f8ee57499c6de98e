"""``cti demo``: the server and the simulated PBX together, with an account of every call.

Two ways to run the same stack:

* real time (``--speed N``, default 1): the server and the simulator on loopback TCP on the asyncio
  reactor, time scaled N times, the console hub serving the agent console and the wallboard, and a live
  one-line summary until Ctrl-C or ``--duration``;
* virtual time (``--speed max``, and the tests): everything in one process over in-memory transports
  on a ``VirtualClock``, as fast as the CPU allows and deterministic (same seed, same event stream).

``CallLedger`` follows every simulated caller from arrival to its end so that a run can say that no
call was lost: each is answered, abandoned, overflowed, ended in the IVR, or still in progress.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from acd.events import AgentStateChanged, CallAbandoned, CallAnswered, CallOverflowed, QueueCallFinished
from config.schema import CtiConfig
from cti.events import CallEnded, CallQueued, CallStarted
from cti.server import CtiServer
from dialer.events import AttemptFinished, AttemptStarted
from ivr.events import IvrCompleted, IvrStarted

log = logging.getLogger("cti.demo")

DEMO_EPOCH = 1_767_261_600.0  # 2026-01-01 10:00 UTC: a fixed start keeps virtual runs reproducible
HUMAN_AGENTS = ("1001",)  # left for a person at the browser in real-time demos


@dataclass
class CallLedger:
    """Where every inbound call is: keyed by the trunk channel's uniqueid."""

    started: dict[str, float] = field(default_factory=dict)
    ivr_open: set[str] = field(default_factory=set)
    ivr_outcome: dict[str, str] = field(default_factory=dict)
    queued: set[str] = field(default_factory=set)
    final: dict[str, str] = field(default_factory=dict)  # answered | abandoned | overflowed | ivr:<outcome>
    ended: set[str] = field(default_factory=set)
    answered_in: dict[str, float] = field(default_factory=dict)
    # outbound (dialer) attempts, kept apart from the inbound calls above: dialled, then results by name
    outbound: dict[str, int] = field(default_factory=lambda: {"dialled": 0})

    def __call__(self, event: object) -> None:
        if isinstance(event, AttemptStarted | AttemptFinished):
            key = "dialled" if isinstance(event, AttemptStarted) else event.result
            self.outbound[key] = self.outbound.get(key, 0) + 1
            if isinstance(event, AttemptFinished) and event.late:
                self.outbound["late"] = self.outbound.get("late", 0) + 1
        elif isinstance(event, CallStarted):
            if event.channel.startswith("PJSIP/trunk-") and event.context == "cti-inbound":
                self.started.setdefault(event.uniqueid, event.ts)
        elif isinstance(event, IvrStarted):
            self.ivr_open.add(event.uniqueid)
        elif isinstance(event, IvrCompleted):
            self.ivr_open.discard(event.uniqueid)
            self.ivr_outcome[event.uniqueid] = event.outcome
        elif isinstance(event, CallQueued):
            self.queued.add(event.uniqueid)
        elif isinstance(event, CallAnswered):
            self.answered_in[event.uniqueid] = event.wait
        elif isinstance(event, QueueCallFinished):
            self.final[event.uniqueid] = event.outcome
        elif isinstance(event, CallAbandoned):
            self.final[event.uniqueid] = "abandoned"
        elif isinstance(event, CallOverflowed) and event.action != "overflow":
            self.final[event.uniqueid] = "overflowed"
        elif isinstance(event, CallEnded) and event.call_id in self.started:
            self.ended.add(event.call_id)

    def account(self, server: CtiServer) -> dict[str, Any]:
        """Classify every call; ``lost`` lists calls that ended nowhere or sit nowhere."""
        waiting = {c["uniqueid"] for q in server.acd.queue_stats(server.now())
                   for c in server.acd.waiting_calls(q, server.now())}
        with_agent = {live.queued.uniqueid for live in server.calls.values() if live.status != "waiting"}
        counts: dict[str, int] = {"offered": len(self.started), "answered": 0, "abandoned": 0, "overflowed": 0,
                                  "ended_in_ivr": 0, "in_ivr": 0, "waiting": 0, "with_agent": 0,
                                  "queued_ended": 0}
        lost: list[str] = []
        for uid in self.started:
            if uid in self.final:
                counts[self.final[uid]] = counts.get(self.final[uid], 0) + 1
            elif uid in self.ivr_open:
                counts["in_ivr"] += 1
            elif uid in waiting:
                counts["waiting"] += 1
            elif uid in with_agent:
                counts["with_agent"] += 1
            elif uid in self.ivr_outcome and uid not in self.queued:
                counts["ended_in_ivr"] += 1
            elif uid in self.queued and uid in self.ended:
                counts["queued_ended"] += 1  # e.g. hung up in the instant between hold and the ACD
            else:
                lost.append(uid)
        counts["lost"] = len(lost)
        return {"counts": counts, "lost": lost, "outbound": dict(self.outbound)}


# ---------------------------------------------------------------------------------------------------
# virtual time

@dataclass
class VirtualStack:
    clock: Any
    net: Any
    sim: Any
    server: CtiServer
    fastagi: Any
    ledger: CallLedger


def demo_customers_lookup(n: int = 3000, seed: int = 1) -> Any:
    """The demo customers for the IVR's look-ups without a database (virtual runs)."""
    from ivr.ports import InMemoryCustomerLookup
    from screenpop.demo_data import demo_callers

    return InMemoryCustomerLookup(
        {"id": c.external_id, "name": c.name, "phone": f"{c.e164} {c.national}", "account": c.account}
        for c in demo_callers(n, seed))


def with_demo_callers(cfg: CtiConfig, n: int = 3000, seed: int = 1) -> CtiConfig:
    """The config with the simulator's known callers set to the demo customers' numbers."""
    from screenpop.demo_data import demo_callers

    if cfg.sim.callers.known_customers:
        return cfg
    numbers = [c.e164 for c in demo_callers(n, seed)]
    callers = cfg.sim.callers.model_copy(update={"known_customers": numbers})
    return cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"callers": callers})})


def build_virtual(cfg: CtiConfig, *, seed: int | None = None, login_agents: bool = True) -> VirtualStack:
    """The whole contact centre in one process on a VirtualClock (no sockets, no database)."""
    from ivr.fastagi import FastAgiFactory
    from sim.ami_server import AMIServerFactory
    from sim.clock import VirtualClock
    from sim.memory_transport import MemoryConnector, MemoryNetwork
    from sim.runner import build_sim

    cfg = with_demo_callers(cfg)
    clock = VirtualClock(start=DEMO_EPOCH)
    net = MemoryNetwork(clock)
    sim = build_sim(cfg, clock, agi_connect=net.connect, seed=seed)
    pbx_cfg = sim.server or cfg.asterisk[0]
    net.listen(pbx_cfg.host, pbx_cfg.port, AMIServerFactory(sim.ami))
    server = CtiServer(cfg, clock=clock, ami_connector=lambda s, f: MemoryConnector(net, s, f))
    ledger = CallLedger()
    server.subscribe(ledger)
    fastagi = FastAgiFactory(cfg.ivr, server.ivr_sink, lookup=demo_customers_lookup(), clock=clock)
    net.listen(cfg.listen.fastagi.host, cfg.listen.fastagi.port, fastagi)
    server.start()
    if login_agents:
        log_in_agents(server, exclude=())
    sim.driver.start()
    return VirtualStack(clock, net, sim, server, fastagi, ledger)


class AgentBots:
    """The simulated agents' side of the console: log in, go ready, and come back to ready a while after
    the ACD made them not ready for a missed call (ring-no-answer), as a person at the desk would."""

    def __init__(self, server: CtiServer, agents: list[str], back_after: float = 20.0) -> None:
        self.server = server
        self.agents = set(agents)
        self.back_after = back_after
        self.returns = 0
        server.subscribe(self._on_event)

    def start(self) -> None:
        for agent_id in sorted(self.agents):
            now = self.server.now()
            self.server.apply(self.server.acd.login(agent_id, None, now))
            self.server.apply(self.server.acd.ready(agent_id, now))

    def _on_event(self, event: object) -> None:
        if isinstance(event, AgentStateChanged) and event.agent_id in self.agents \
                and event.state == "not_ready" and event.reason != "login":
            self.server.clock.callLater(self.back_after, self._ready, event.agent_id)

    def _ready(self, agent_id: str) -> None:
        from acd.states import AcdError

        try:
            self.server.apply(self.server.acd.ready(agent_id, self.server.now()))
            self.returns += 1
        except AcdError:
            pass  # busy with something else by now: the next not-ready brings it back


def log_in_agents(server: CtiServer, exclude: tuple[str, ...]) -> AgentBots:
    """Start the simulated agents (every configured agent but ``exclude``)."""
    bots = AgentBots(server, [a for a in server.acd.agent_ids() if a not in exclude])
    bots.start()
    return bots


def run_virtual(cfg: CtiConfig, duration: float, *, seed: int | None = None, drain: float = 0.0) -> dict[str, Any]:
    """Run ``duration`` simulated seconds (then, with ``drain``, stop arrivals and let calls finish)."""
    stack = build_virtual(cfg, seed=seed)
    end = DEMO_EPOCH + duration
    stack.clock.run_until(end)
    if drain > 0:
        stack.sim.driver.stop_arrivals()  # no new arrivals; people already in calls carry on
        stack.clock.run_until(end + drain)
    report = stack.ledger.account(stack.server)
    report["summary"] = summary_line(stack.server, stack.ledger, stack.clock.seconds() - DEMO_EPOCH)
    report["stats"] = dict(stack.server.counters)
    stack.sim.stop()
    stack.server.stop()
    stack.clock.run_for(5.0)
    return report


# ---------------------------------------------------------------------------------------------------
# the live summary

def summary_line(server: CtiServer, ledger: CallLedger, elapsed: float) -> str:
    stats = server.acd.queue_stats(server.now())
    waiting = sum(q["waiting"] for q in stats.values())
    answered = sum(q["answered"] for q in stats.values())
    abandoned = sum(q["abandoned"] for q in stats.values())
    talking = sum(1 for live in server.calls.values() if live.status in ("connected", "held"))
    sls = [(q["service_level"], q["answered"] + q["abandoned"]) for q in stats.values()
           if q["service_level"] is not None]
    weight = sum(w for _, w in sls)
    sl = f"{sum(v * w for v, w in sls) / weight:.0f}%" if weight else "-"
    ab = f"{100.0 * abandoned / (answered + abandoned):.1f}%" if answered + abandoned else "-"
    h, rem = divmod(int(elapsed), 3600)
    m, s = divmod(rem, 60)
    return (f"[{h:02d}:{m:02d}:{s:02d}] offered {len(ledger.started)} | in IVR {len(ledger.ivr_open)} | "
            f"waiting {waiting} | talking {talking} | answered {answered} | SL {sl} | abandoned {ab}")


# ---------------------------------------------------------------------------------------------------
# real time

def run_demo(cfg: CtiConfig, args: argparse.Namespace) -> int:
    from cti.cli import setup_logging

    setup_logging("WARNING" if not getattr(args, "verbose", False) else "INFO")
    if args.speed == "max":
        return _run_max(cfg, args)
    return _run_realtime(cfg, args, float(args.speed))


def _run_max(cfg: CtiConfig, args: argparse.Namespace) -> int:
    duration = args.duration if args.duration is not None else 600.0
    report = run_virtual(cfg, duration, seed=args.seed)
    counts = report["counts"]
    print(report["summary"])
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    if report["outbound"]["dialled"]:
        print("outbound: " + " ".join(f"{k}={v}" for k, v in report["outbound"].items()))
    if counts["lost"]:
        print(f"LOST calls: {', '.join(report['lost'][:20])}", file=sys.stderr)
        return 1
    return 0


def _run_realtime(cfg: CtiConfig, args: argparse.Namespace, speed: float) -> int:
    import asyncio

    from cti.reactor import install_reactor
    from cti.runtime import Runtime
    from screenpop.service import ensure_demo_customers
    from sim.clock import ScaledClock
    from sim.runner import build_sim, listen

    reactor = install_reactor()
    cfg = with_demo_callers(cfg)
    try:
        written = ensure_demo_customers(cfg.database.url, datetime.now(UTC))
    except Exception as exc:
        print(f"cti demo: cannot prepare the database {cfg.database.url.split('://')[0]}: {exc}", file=sys.stderr)
        return 1
    if written:
        print(f"demo: {written} customers loaded into {cfg.database.url}")
    clock: IReactorTime = reactor if speed == 1 else ScaledClock(reactor, speed)
    sim = build_sim(cfg, clock, seed=args.seed, speed=speed)
    try:
        port = listen(sim, reactor)
    except Exception as exc:
        print(f"cti demo: cannot listen for the simulated PBX's AMI: {exc}", file=sys.stderr)
        return 1
    runtime = Runtime(cfg, reactor, clock=clock)
    ledger = CallLedger()
    runtime.server.subscribe(ledger)
    status = {"code": 0}
    started_at = clock.seconds()

    def show() -> None:
        line = summary_line(runtime.server, ledger, clock.seconds() - started_at)
        if not args.quiet:
            sys.stdout.write("\r" + line.ljust(110))
            sys.stdout.flush()
        reactor.callLater(1.0, show)

    async def start() -> None:
        await runtime.start()
        log_in_agents(runtime.server, exclude=HUMAN_AGENTS)
        sim.driver.start()
        http = cfg.listen.http
        print(f"demo: agent console  http://{http.host}:{runtime.http_port}/   (agent 1001, password demo-password)")
        print(f"demo: wallboard      http://{http.host}:{runtime.http_port}/wallboard   (supervisor sup)")
        print(f"demo: simulated PBX  AMI {sim.server.host}:{sim.server.port}, speed x{speed:g}; Ctrl-C stops"
              if sim.server else "demo: simulated PBX running")
        show()
        if args.duration is not None:
            reactor.callLater(args.duration / speed, reactor.stop)

    def failed(failure: Any) -> None:
        print(f"\ncti demo: could not start: {failure.getErrorMessage()}", file=sys.stderr)
        status["code"] = 1
        reactor.stop()

    async def shutdown() -> None:
        sim.stop()
        await runtime.stop()
        await defer.Deferred.asFuture(defer.maybeDeferred(port.stopListening), asyncio.get_running_loop())

    reactor.callWhenRunning(lambda: defer.Deferred.fromFuture(asyncio.ensure_future(start())).addErrback(failed))
    reactor.addSystemEventTrigger("before", "shutdown",
                                  lambda: defer.Deferred.fromFuture(asyncio.ensure_future(shutdown())))
    reactor.run()
    report = ledger.account(runtime.server)
    print("\n" + " ".join(f"{k}={v}" for k, v in report["counts"].items()))
    if report["outbound"]["dialled"]:
        print("outbound: " + " ".join(f"{k}={v}" for k, v in report["outbound"].items()))
    return status["code"]
