"""``cti demo``: the server and the simulated PBX together, with an account of every call.

Two ways to run the same stack:

* real time (``--speed N``, default 1): the server and the simulator on loopback TCP on the asyncio
  reactor, time scaled N times, the console hub serving the agent console and the wallboard, and a live
  one-line summary until Ctrl-C or ``--duration``;
* virtual time (``--speed max``, and the tests): everything in one process over in-memory transports
  on a ``VirtualClock``, as fast as the CPU allows and deterministic (same seed, same event stream).

``CallLedger`` (``centre.demo_account``) follows every simulated caller from arrival to its end and every
outbound attempt, so that a run can say that no call was lost and give the account of every call; the
live line and the final account are the same figures, counted there once (docs/demo.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from acd.events import AgentStateChanged
from acd.states import AcdError
from centre.cli_common import setup_logging
from centre.demo_account import (
    CallLedger,
    DemoFigures,
    account_lines,
    call_rows,
    calls_csv,
    format_call_lines,
    server_known_calls,
)
from centre.demo_account import summary_line as figures_line
from centre.process import Runtime
from centre.server import CtiServer
from centre.sim_pbx import SimRuntime, build_sim, listen
from centre.wiring import ensure_demo_customers
from config.schema import CtiConfig
from cti.db import describe_url
from cti.reactor import install_reactor
from ivr.fastagi import FastAgiFactory
from ivr.ports import InMemoryCustomerLookup
from screenpop.demo_data import demo_callers
from sim.ami_server import AMIServerFactory
from sim.clock import ScaledClock, VirtualClock
from sim.memory_transport import MemoryConnector, MemoryNetwork

log = logging.getLogger("centre.demo")

DEMO_EPOCH = 1_767_261_600.0  # 2026-01-01 10:00 UTC: a fixed start keeps virtual runs reproducible
HUMAN_AGENTS = ("1001",)  # left for a person at the browser in real-time demos


# ---------------------------------------------------------------------------------------------------
# virtual time

@dataclass
class VirtualStack:
    clock: VirtualClock
    net: MemoryNetwork
    sim: SimRuntime
    server: CtiServer
    fastagi: FastAgiFactory
    ledger: CallLedger


def demo_customers_lookup(n: int = 3000, seed: int = 1) -> InMemoryCustomerLookup:
    """The demo customers for the IVR's look-ups without a database (virtual runs)."""
    return InMemoryCustomerLookup(
        {"id": c.external_id, "name": c.name, "phone": f"{c.e164} {c.national}", "account": c.account}
        for c in demo_callers(n, seed))


def with_demo_callers(cfg: CtiConfig, n: int = 3000, seed: int = 1) -> CtiConfig:
    """The config with the simulator's known callers set to the demo customers' numbers."""
    if cfg.sim.callers.known_customers:
        return cfg
    numbers = [c.e164 for c in demo_callers(n, seed)]
    callers = cfg.sim.callers.model_copy(update={"known_customers": numbers})
    return cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"callers": callers})})


def build_virtual(cfg: CtiConfig, *, seed: int | None = None, login_agents: bool = True,
                  start: float = DEMO_EPOCH) -> VirtualStack:
    """The whole contact centre in one process on a VirtualClock (no sockets, no database), its clock at
    ``start`` (epoch seconds)."""
    cfg = with_demo_callers(cfg)
    if cfg.redis is not None:  # a virtual centre is one node alone: no bus between nodes, no consoles' relay
        cfg = cfg.model_copy(update={"redis": None})
    clock = VirtualClock(start=start)
    net = MemoryNetwork(clock)
    sim = build_sim(cfg, clock, agi_connect=net.connect, seed=seed)
    pbx_cfg = sim.server or cfg.asterisk[0]
    net.listen(pbx_cfg.host, pbx_cfg.port, AMIServerFactory(sim.ami))
    server = CtiServer(cfg, clock=clock, ami_connector=lambda s, f: MemoryConnector(net, s, f))
    ledger = CallLedger.for_config(cfg)
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


def run_virtual(cfg: CtiConfig, duration: float, *, seed: int | None = None, drain: float = 0.0,
                live: list[str] | None = None) -> dict[str, Any]:
    """Run ``duration`` simulated seconds (then, with ``drain``, stop arrivals and let calls finish).
    ``live``: gets the live line of every simulated second, as the real-time demo shows it."""
    stack = build_virtual(cfg, seed=seed)
    end = DEMO_EPOCH + duration
    ticker: list[Any] = []
    if live is not None:
        def tick() -> None:
            live.append(summary_line(stack.server, stack.ledger, stack.clock.seconds() - DEMO_EPOCH))
            ticker[:] = [stack.clock.callLater(1.0, tick)]
        ticker.append(stack.clock.callLater(1.0, tick))
    stack.clock.run_until(end)
    if drain > 0:
        stack.sim.driver.stop_arrivals()  # no new arrivals; people already in calls carry on
        stack.clock.run_until(end + drain)
    for call in ticker:
        if call.active():
            call.cancel()
    elapsed = stack.clock.seconds() - DEMO_EPOCH
    report = stack.ledger.account(stack.server)
    report["summary"] = figures_line(report["figures"], elapsed)
    report["account"] = account_lines(report["figures"], elapsed)
    report["calls"] = call_rows(stack.ledger, stack.server.now())
    report["stats"] = dict(stack.server.counters)
    stack.sim.stop()
    stack.server.stop()
    stack.clock.run_for(5.0)
    return report


# ---------------------------------------------------------------------------------------------------
# the live summary

def live_figures(server: CtiServer, ledger: CallLedger) -> DemoFigures:
    """The figures now, cross-checked with what the server holds."""
    return ledger.figures(server.now(), server_known_calls(server))


def summary_line(server: CtiServer, ledger: CallLedger, elapsed: float) -> str:
    """The live line: ``centre.demo_account.summary_line`` of the figures now."""
    return figures_line(live_figures(server, ledger), elapsed)


# ---------------------------------------------------------------------------------------------------
# real time

def run_demo(cfg: CtiConfig, args: argparse.Namespace) -> int:
    setup_logging("WARNING" if not getattr(args, "verbose", False) else "INFO")
    if args.speed == "max":
        return _run_max(cfg, args)
    return _run_realtime(cfg, args, float(args.speed))


def _run_max(cfg: CtiConfig, args: argparse.Namespace) -> int:
    duration = args.duration if args.duration is not None else 600.0
    report = run_virtual(cfg, duration, seed=args.seed)
    if not write_calls(report["calls"], getattr(args, "calls", None)):
        return 1
    for line in report["account"]:
        print(line)
    if report["counts"]["lost"]:
        print(f"LOST calls: {', '.join(report['lost'][:20])}", file=sys.stderr)
        return 1
    return 0


def write_calls(rows: list[dict[str, str]], target: str | None) -> bool:
    """The account of every call: one line per call on stdout, or a CSV file (``-``: CSV on stdout) that
    the output names. False (after a message) if the file cannot be written."""
    inbound = sum(1 for r in rows if r["direction"] == "in")
    if target is None:
        for line in format_call_lines(rows):
            print(line)
        return True
    if target == "-":
        sys.stdout.write(calls_csv(rows))
        return True
    path = Path(target)
    try:
        path.write_text(calls_csv(rows), encoding="utf-8")
    except OSError as exc:
        print(f"cti demo: cannot write {path}: {exc.strerror or exc.__class__.__name__}", file=sys.stderr)
        return False
    print(f"account of every call: {path.resolve()} ({inbound} inbound calls, {len(rows) - inbound} "
          "outbound attempts, one CSV row each)")
    return True


def _run_realtime(cfg: CtiConfig, args: argparse.Namespace, speed: float) -> int:

    reactor = install_reactor()
    cfg = with_demo_callers(cfg)
    try:
        written = ensure_demo_customers(cfg.database.url, datetime.now(UTC))
    except Exception as exc:
        print(f"cti demo: cannot prepare the database {cfg.database.url.split('://')[0]}: {exc}", file=sys.stderr)
        return 1
    if written:
        print(f"demo: {written} customers loaded into {describe_url(cfg.database.url)}")
    clock: IReactorTime = reactor if speed == 1 else ScaledClock(reactor, speed)
    sim = build_sim(cfg, clock, seed=args.seed, speed=speed)
    try:
        port = listen(sim, reactor)
    except Exception as exc:
        print(f"cti demo: cannot listen for the simulated PBX's AMI: {exc}", file=sys.stderr)
        return 1
    runtime = Runtime(cfg, reactor, clock=clock)
    ledger = CallLedger.for_config(cfg)
    runtime.server.subscribe(ledger)
    status: dict[str, Any] = {"code": 0, "show": None, "final": None}
    started_at = clock.seconds()

    def show() -> None:
        line = summary_line(runtime.server, ledger, clock.seconds() - started_at)
        if not args.quiet:
            sys.stdout.write("\r" + line.ljust(110))
            sys.stdout.flush()
        status["show"] = reactor.callLater(1.0, show)

    async def start() -> None:
        await runtime.start()
        log_in_agents(runtime.server, exclude=HUMAN_AGENTS)
        sim.driver.start()
        http = cfg.listen.http
        base = f"{'https' if http.tls is not None else 'http'}://{http.host}:{runtime.http_port}"
        print(f"demo: agent console  {base}/   (agent 1001, password demo-password)")
        print(f"demo: wallboard      {base}/wallboard   (supervisor sup)")
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
        # The final account is taken now, before anything stops, and its first line is the last live line:
        # both are the same figures of the same moment.
        if status["show"] is not None and status["show"].active():
            status["show"].cancel()
        if status["code"]:  # it never ran: there is nothing to account for
            sim.stop()
            await runtime.stop()
            return
        figures = live_figures(runtime.server, ledger)
        elapsed = clock.seconds() - started_at
        status["final"] = (account_lines(figures, elapsed), call_rows(ledger, runtime.server.now()),
                           ledger.lost(runtime.server.now(), server_known_calls(runtime.server)))
        if not args.quiet:
            sys.stdout.write("\r" + figures_line(figures, elapsed).ljust(110) + "\n")
            sys.stdout.flush()
        sim.stop()
        await runtime.stop()
        await defer.Deferred.asFuture(defer.maybeDeferred(port.stopListening), asyncio.get_running_loop())

    reactor.callWhenRunning(lambda: defer.Deferred.fromFuture(asyncio.ensure_future(start())).addErrback(failed))
    reactor.addSystemEventTrigger("before", "shutdown",
                                  lambda: defer.Deferred.fromFuture(asyncio.ensure_future(shutdown())))
    reactor.run()
    if status["final"] is None:
        return status["code"]
    lines, rows, lost = status["final"]
    if args.calls is not None and not write_calls(rows, args.calls):
        return 1
    print("final account:")
    for line in lines:
        print(line)
    if lost:
        print(f"LOST calls: {', '.join(lost[:20])}", file=sys.stderr)
    return status["code"]
