"""The operations listener: ``/metrics`` (Prometheus), ``/healthz`` (alive) and ``/readyz`` (ready to serve).

A small HTTP/1.1 server on the asyncio loop the whole process shares (``asyncio.start_server``), on a port
of its own (the ``metrics:`` section; loopback by default), not on the consoles' port: the figures are for
the monitoring host, and a scrape must not depend on the console hub being on. Each request is one
GET or HEAD, answered and closed; a request head over 8 KiB or slower than 5 s is dropped.

* ``/healthz``: 200 while the process's loop turns (this very answer needs it), with the loop's lag, the
  node's leases (``centre.node_leases``: held, whether their store answers) and, with several nodes,
  ``redis_bus``: ``up`` or ``down`` (the events between nodes wait in an outbox meanwhile).
* ``/readyz``: 200 when every AMI connection this node holds the lease of (embedded: every configured one) is
  logged in, the leases' store answers, the database answers ``SELECT 1`` and Redis (when configured) answers
  ``PING``; otherwise 503. The JSON body says which is down and why,
  in words that carry no secret (a link's state as the wallboard shows it, an error's class name).
* ``/metrics``: ``centre.metrics``'s registry in the Prometheus text format (the database and Redis are
  checked first, as for ``/readyz``, so ``cti_db_up`` and ``cti_redis_up`` are as fresh as the scrape).

``Readiness`` runs the checks: at most one database and one Redis check at a time, each bounded by
``check_timeout``, a result reused for ``check_cache`` seconds. The database check leaves the loop (a
thread of its own, so a hung database holds one thread, never the loop or the server's pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from sqlalchemy import Engine, text

from centre.metrics import MetricSources, build_registry
from centre.redis_link import redis_client, redis_secrets
from centre.server import CtiServer
from centre.wallboard import Health
from config.schema import MetricsSettings, RedisSettings

log = logging.getLogger("centre.ops_http")

MAX_HEAD = 8192  # bytes of a request's line and headers
REQUEST_TIMEOUT = 5.0  # seconds to send them
LAG_INTERVAL = 1.0  # seconds between looks at the loop's lag
HEALTH_WATCH = 5.0  # seconds between the database and Redis checks made for the wallboard (scrapes and /readyz too)
REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Check:
    up: bool
    detail: str


@dataclass(frozen=True)
class Report:
    """One readiness check: the AMI links (by PBX), the database and Redis (None: not configured)."""

    ami: dict[str, Check]
    database: Check | None
    redis: Check | None
    down: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.down

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"status": "ready" if self.ready else "not ready", "down": list(self.down),
                               "ami": {k: {"up": c.up, "detail": c.detail} for k, c in self.ami.items()}}
        for name, check in (("database", self.database), ("redis", self.redis)):
            if check is not None:
                doc[name] = {"up": check.up, "detail": check.detail}
        return doc


def _failure(exc: BaseException) -> str:
    """An error in words without its message (a driver's message may quote a URL or a user name)."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer in time"
    return f"unreachable ({type(exc).__name__})"


async def _awaitable(run: Callable[[], Any]) -> Any:
    return await run()  # ``run`` may raise at once (a check still hanging) or return an awaitable


class _Probe:
    """One dependency's check: single flight, bounded, its result reused for ``cache`` seconds."""

    def __init__(self, name: str, run: Callable[[], Any], timeout: float, cache: float,
                 hide: tuple[str, ...] = ()) -> None:
        self.name = name
        self.run = run  # returns an awaitable
        self.hide = tuple(h for h in hide if h)  # never in the log, should a driver quote them
        self.timeout = timeout
        self.cache = cache
        self.last: Check | None = None
        self._at = -float("inf")
        self._flight: asyncio.Task[Check] | None = None

    async def check(self) -> Check:
        if self.last is not None and time.monotonic() - self._at < self.cache:
            return self.last
        if self._flight is None:
            self._flight = asyncio.ensure_future(self._once())
        flight = self._flight
        result = await asyncio.shield(flight)
        return result

    async def _once(self) -> Check:
        why = ""
        try:
            await asyncio.wait_for(_awaitable(self.run), self.timeout)
            result = Check(True, "ok")
        except Exception as exc:  # any failure is "down", said without its message (the log has it)
            result = Check(False, _failure(exc))
            why = " ".join(str(exc).split())[:300]
            for secret in self.hide:
                why = why.replace(secret, "***")
        if self.last is None or self.last.up != result.up:
            if result.up:
                log.info("readiness: %s reachable", self.name)
            else:
                log.warning("readiness: %s down: %s%s", self.name, result.detail, f": {why}" if why else "")
        self.last, self._at, self._flight = result, time.monotonic(), None
        return result


async def _checked(probe: _Probe | None) -> Check | None:
    return await probe.check() if probe is not None else None


class Readiness:
    """``check()`` -> ``Report``; ``last``: the latest report (the metrics' ``cti_ready``, ``cti_db_up``)."""

    def __init__(self, health: Health, *, engine: Engine | None, redis_url: str | None, timeout: float,
                 cache: float, redis: RedisSettings | None = None) -> None:
        self.health = health
        self.engine = engine
        self.last: Report | None = None
        self._threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cti-readiness")
        self._redis: Any = None
        self._db_job: asyncio.Future[None] | None = None
        self._db = _Probe("database", self._select_one, timeout, cache,
                          hide=(engine.url.password or "",)) if engine is not None else None
        if redis is None and redis_url:
            redis = RedisSettings(url=redis_url)
        self._redis_probe = _Probe("redis", self._ping, timeout, cache,
                                   hide=redis_secrets(redis)) if redis is not None else None
        self._redis_settings = redis

    async def check(self) -> Report:
        here = self.health.ami_here  # several nodes: only the links this node holds count
        ami = {name: Check(bool(up), self.health.ami_detail.get(name, "not connected yet"))
               for name, up in self.health.ami.items() if here is None or name in here}
        database, redis = await asyncio.gather(_checked(self._db), _checked(self._redis_probe))  # side by side
        down = [f"ami:{name}" for name, c in ami.items() if not c.up]
        if self.health.lease_store is False:
            down.append("leases")
        if self.health.agent_pool is False:
            down.append("agent_pool")
        down += [name for name, c in (("database", database), ("redis", redis)) if c is not None and not c.up]
        self.last = Report(ami, database, redis, down)
        self._show(database, redis)
        return self.last

    def _show(self, database: Check | None, redis: Check | None) -> None:
        """The wallboard's health line: Redis as checked; the database's check beside its writers'."""
        if database is not None:
            self.health.db_check = database.up
        if redis is not None:
            self.health.redis = redis.up

    @property
    def watches(self) -> bool:
        return self._db is not None or self._redis_probe is not None

    async def watch(self, interval: float = HEALTH_WATCH) -> None:
        """Check the database and Redis every ``interval`` s until cancelled, so that the wallboard says when
        one is down (and the log, once when it goes down and once when it is back) even when nobody scrapes
        the metrics and nothing is being written."""
        while True:
            self._show(*await asyncio.gather(_checked(self._db), _checked(self._redis_probe)))
            await asyncio.sleep(interval)

    def _select_one(self) -> Any:
        engine = self.engine
        assert engine is not None
        job = self._db_job
        if job is not None and not job.done():  # the last query still hangs: still down, and no queue of them
            raise TimeoutError("the last check has not returned")

        def query() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        self._db_job = asyncio.get_running_loop().run_in_executor(self._threads, query)
        return asyncio.shield(self._db_job)  # a timeout gives up waiting; the thread's query runs its course

    async def _ping(self) -> None:
        if self._redis is None:
            assert self._redis_settings is not None and self._redis_probe is not None
            self._redis = redis_client(self._redis_settings, timeout=self._redis_probe.timeout)
        await self._redis.ping()

    async def wait_idle(self) -> None:
        """Until the database query in its thread (if one still runs) has returned."""
        if self._db_job is not None:
            with contextlib.suppress(Exception):
                await self._db_job

    async def close(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None
        self._threads.shutdown(wait=False, cancel_futures=True)


class LoopLag:
    """How late the loop runs a timer set ``LAG_INTERVAL`` seconds ahead (its own monotonic clock: this
    measures the real loop, whatever clock the server's engines run on)."""

    def __init__(self, interval: float = LAG_INTERVAL) -> None:
        self.interval = interval
        self.lag: float | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval

        def tick() -> None:
            nonlocal due
            now = loop.time()
            self.lag = max(0.0, now - due)
            due = now + self.interval
            self._handle = loop.call_at(due, tick)

        self._handle = loop.call_at(due, tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def __call__(self) -> float | None:
        return self.lag


class OpsEndpoint:
    """``await start(host, port)`` (0: a free port) -> the bound port; ``await stop()``."""

    def __init__(self, registry: CollectorRegistry, readiness: Readiness, lag: LoopLag) -> None:
        self.registry = registry
        self.readiness = readiness
        self.lag = lag
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, *, tls: ssl.SSLContext | None = None) -> int:
        """Listen on host:port (0: any free port), with ``tls`` https:// only; returns the bound port."""
        try:
            self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD, ssl=tls,
                                                      ssl_handshake_timeout=REQUEST_TIMEOUT if tls else None)
        except OSError as exc:  # said as the configuration names it (``cti serve could not start: ...``)
            raise OSError(exc.errno, f"the metrics listener (metrics.host, metrics.port) cannot listen on "
                                     f"{host}:{port}: {exc.strerror or exc}") from None
        self.lag.start()
        if self.readiness.watches:
            self._watch = asyncio.ensure_future(self.readiness.watch())
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        self.lag.stop()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(BaseException):
                await self._watch
            self._watch = None
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        await self.readiness.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            line, *fields = head.decode("latin-1").split("\r\n")
            parts = line.split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                return
            method, target = parts[0], parts[1]
            accept = next((f.split(":", 1)[1].strip() for f in fields if f.lower().startswith("accept:")), "")
            self.requests += 1
            status, ctype, body = await self._answer(method, target.split("?", 1)[0], accept)
            headers = (f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                       f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                       "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n")
            writer.write(headers.encode("latin-1") + (b"" if method == "HEAD" else body))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, method: str, path: str, accept: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"only GET and HEAD\n"
        if path == "/metrics":
            await self.readiness.check()
            encode, ctype = choose_encoder(accept)  # the Prometheus text format, or OpenMetrics when asked
            return 200, ctype, encode(self.registry)
        if path == "/healthz":
            doc: dict[str, Any] = {"status": "alive", "loop_lag_seconds": self.lag(),
                                   "leases": self.readiness.health.leases_dict()}
            bus = self.readiness.health.redis_bus  # several nodes: the bus between them (alive either way)
            if bus is not None:
                doc["redis_bus"] = "up" if bus else "down"
            pool = self.readiness.health.agent_pool  # several nodes: no routing decision while it is down
            if pool is not None:
                doc["agent_pool"] = "up" if pool else "down"
            return 200, "application/json", _json(doc)
        if path == "/readyz":
            report = await self.readiness.check()
            return (200 if report.ready else 503), "application/json", _json(report.as_dict())
        return 404, "text/plain; charset=utf-8", b"not found: /metrics, /healthz, /readyz\n"


def _json(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, sort_keys=True) + "\n").encode()


def ops_endpoint(server: CtiServer, settings: MetricsSettings, *, redis_url: str | None = None,
                 hub_stats: Callable[[], dict[str, Any]] | None = None, fastagi: Any = None,
                 redis: RedisSettings | None = None) -> OpsEndpoint:
    """The endpoint of one server (after ``open_database``: the database check uses its engine)."""
    readiness = Readiness(server.health, engine=server.database.engine if server.database is not None else None,
                          redis_url=redis_url, timeout=settings.check_timeout, cache=settings.check_cache,
                          redis=redis)
    lag = LoopLag()
    registry = build_registry(MetricSources(server, hub_stats=hub_stats, fastagi=fastagi, checks=readiness,
                                            loop_lag=lag))
    return OpsEndpoint(registry, readiness, lag)
