"""Runs a ``CtiServer`` on the asyncio reactor with its listeners: FastAGI, the console hub, the DB pool.

``Runtime`` is what ``cti serve`` and ``cti demo`` start; it owns the sockets and threads, the server
owns the logic.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.threadpool import ThreadPool

from agent_console.auth import Authenticator
from agent_console.hub import ConsoleHub
from centre.console_backend import ServerConsoleBackend
from centre.node_bus import DRAIN_TIMEOUT
from centre.ops_http import OpsEndpoint, ops_endpoint
from centre.server import CtiServer
from config.schema import CtiConfig
from cti import __version__
from cti.ami.client import Connector
from cti.db import describe_url
from cti.gc_policy import LongLivedPolicy, PauseWatch, space_full_collections
from cti.reactor import install_reactor
from cti.threads import end_of_pass_runner
from cti.tls import server_context
from ivr.fastagi import FastAgiFactory, listen_fastagi

log = logging.getLogger("centre.process")

GC_TICK = 1.0  # seconds between looks at the console connections (cti.gc_policy)
INTERACTIONS_FLUSH_TIMEOUT = 10.0  # seconds a stop waits for the call records still to be written


class Runtime:
    """Listeners and threads around one CtiServer."""

    def __init__(self, cfg: CtiConfig, reactor: Any, *, clock: IReactorTime | None = None,
                 ami_connector: Connector | None = None, http: bool = True) -> None:
        self.cfg = cfg
        self.reactor = reactor
        self.clock = clock or reactor
        self.server = CtiServer(cfg, clock=self.clock, ami_connector=ami_connector)
        self.threadpool = ThreadPool(minthreads=1, maxthreads=8, name="cti-db")
        self.fastagi_port: IListeningPort | None = None
        self.fastagi_factory: FastAgiFactory | None = None
        self.hub: ConsoleHub | None = None
        self.http_port: int | None = None
        self._http = http
        self.ops: OpsEndpoint | None = None  # /metrics, /healthz, /readyz (the ``metrics:`` section)
        self.ops_port: int | None = None
        self.gc_policy = LongLivedPolicy()
        self._gc_loop: LoopingCall | None = None
        self.gc_pauses: PauseWatch | None = None

    async def start(self) -> None:
        cfg = self.cfg
        self.threadpool.start()
        run_in_thread = end_of_pass_runner(self.reactor, self.threadpool)
        await asyncio.get_running_loop().run_in_executor(None, self.server.open_database, run_in_thread)
        fa = cfg.listen.fastagi
        self.fastagi_port, self.fastagi_factory = listen_fastagi(
            cfg.ivr, self.server.ivr_sink, host=fa.host, port=fa.port, lookup=self.server.pop_lookup,
            reactor=self.reactor, clock=self.clock)
        if self._http:
            hashes = {a.id: a.password_hash for a in cfg.acd.agents if a.password_hash}
            clock = self.clock.seconds
            auth = Authenticator(cfg.console, hashes, clock=clock, agent_ids=[a.id for a in cfg.acd.agents])
            self.hub = ConsoleHub(cfg.console, ServerConsoleBackend(self.server), auth, clock,
                                  not_ready_reasons=cfg.acd.not_ready_reasons)
            http = cfg.listen.http
            tls = server_context(http.tls, "listen.http.tls") if http.tls is not None else None
            self.http_port = await self.hub.start(http.host, http.port, tls=tls)
            self.server.pusher = self.hub
        if cfg.metrics is not None:
            self.ops = ops_endpoint(self.server, cfg.metrics, redis=cfg.redis,
                                    hub_stats=self.hub.stats if self.hub is not None else None,
                                    fastagi=self.fastagi_factory)
            tls = server_context(cfg.metrics.tls, "metrics.tls") if cfg.metrics.tls is not None else None
            self.ops_port = await self.ops.start(cfg.metrics.host, cfg.metrics.port, tls=tls)
        transport = self.server.components.transport
        if transport is not None:  # several nodes: the bus's events to and from the others (centre.node_bus)
            transport.start()
        self.server.start()
        # Start-up objects (config, flows, modules) live as long as the process: keep them out of the
        # garbage collector's full passes, which otherwise stall the loop for 100+ ms under load.
        gc.freeze()
        space_full_collections()
        self.gc_pauses = PauseWatch().install()  # a full collection that holds the loop is logged with its size
        if self.hub is not None:  # console connections are long-lived too: freeze them once they settle
            self._gc_loop = LoopingCall(self._gc_tick)
            self._gc_loop.clock = self.clock
            self._gc_loop.start(GC_TICK, now=False)
        self._log_startup()

    def _log_startup(self) -> None:
        """The few start-up lines a person reads: what runs where (libraries' own lines stay at DEBUG)."""
        cfg = self.cfg
        before, after = self.server.schema
        schema = (f"schema {after}" if before == after else f"schema created ({after})" if before is None
                  else f"schema upgraded from {before} to {after}")
        log.info("cti %s: database %s, %s", __version__, describe_url(cfg.database.url), schema)
        pbxs = ", ".join(f"{s.name} at {s.host}:{s.port}" for s in cfg.asterisk) or "none configured"
        log.info("cti: AMI to %s", pbxs)
        flows = len(cfg.ivr.flows)
        scheme = "https" if cfg.listen.http.tls is not None else "http"
        consoles = f"{scheme}://{cfg.listen.http.host}:{self.http_port}/" if self.http_port is not None else "off"
        assert self.fastagi_port is not None
        log.info("cti: FastAGI on %s:%d (%d flow%s), consoles on %s", cfg.listen.fastagi.host,
                 self.fastagi_port.getHost().port, flows, "" if flows == 1 else "s", consoles)
        if cfg.metrics is not None:
            log.info("cti: metrics on %s://%s:%d/metrics, health checks on /healthz and /readyz",
                     "https" if cfg.metrics.tls is not None else "http", cfg.metrics.host, self.ops_port)

    def _gc_tick(self) -> None:
        stats = self.hub.stats()
        self.gc_policy.tick(stats["connections_opened"], stats["connections_closed"], self.clock.seconds())

    @property
    def fastagi_address(self) -> tuple[str, int]:
        assert self.fastagi_port is not None
        host = self.fastagi_port.getHost()
        return host.host, host.port

    async def stop(self) -> None:
        if self._gc_loop is not None and self._gc_loop.running:
            self._gc_loop.stop()
        if self.gc_pauses is not None:
            self.gc_pauses.uninstall()
        await defer.Deferred.asFuture(self.server.stop(), asyncio.get_running_loop())
        transport = self.server.components.transport
        if transport is not None:  # what this node's engines said last reaches the other nodes, then it leaves
            if not await transport.drain(DRAIN_TIMEOUT):
                log.warning("redis bus: %d event(s) not written to the other nodes at shutdown", transport.outbox)
            await transport.close()
        if self.server.interactions is not None:  # the call records still lingering for their batch
            flushed = self.server.interactions.flush().addTimeout(INTERACTIONS_FLUSH_TIMEOUT, self.reactor)
            flushed.addErrback(lambda f: log.error("call records not all written at shutdown (%d left): %s",
                                                   self.server.interactions.pending, f.getErrorMessage()))
            await defer.Deferred.asFuture(flushed, asyncio.get_running_loop())
        if self.hub is not None:
            await self.hub.stop()
        if self.ops is not None:
            await self.ops.stop()
        if self.fastagi_port is not None:
            await defer.Deferred.asFuture(defer.maybeDeferred(self.fastagi_port.stopListening),
                                          asyncio.get_running_loop())
        self.threadpool.stop()


def start_error(exc: BaseException) -> str:
    """What stopped the start, in a line: a database error as its driver's first line (not the statement and
    its parameters SQLAlchemy appends: customer data, a whole schema)."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError) and exc.orig is not None:
        first = (str(exc.orig).strip().splitlines() or [""])[0]
        return f"database: {type(exc.orig).__name__}: {first[:300]}"
    return str(exc) or type(exc).__name__


def run_server(cfg: CtiConfig) -> int:
    """``cti serve``: run until SIGINT/SIGTERM."""
    reactor = install_reactor()
    runtime = Runtime(cfg, reactor)
    status = {"code": 0}

    def started_failed(failure: Any) -> None:
        log.error("cti serve could not start: %s", start_error(failure.value))
        status["code"] = 1
        reactor.stop()

    def begin() -> None:
        d = defer.Deferred.fromFuture(asyncio.ensure_future(runtime.start()))
        d.addErrback(started_failed)

    def shutdown() -> defer.Deferred[Any]:
        return defer.Deferred.fromFuture(asyncio.ensure_future(runtime.stop()))

    reactor.callWhenRunning(begin)
    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
    reactor.run()
    return status["code"]
