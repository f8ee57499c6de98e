"""Root of the typed configuration: Asterisk servers, database, Redis, listen addresses, and the
sections each engine owns (``ivr``, ``acd``, ``screenpop``, ``console``, ``dialer``, ``sim``).

Each engine's section model lives in its own package so that the engine owns its schema; this
module only assembles them. No I/O.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Literal

from pydantic import Field, SecretStr

from acd.settings import AcdSection
from agent_console.settings import ConsoleSection
from cti.ami.settings import AsteriskServer
from cti.config_types import ConfigModel, HostPort, Loc, PositiveSeconds, expected
from cti.recording import RecordingSection
from cti.tls import ServerTls
from dialer.settings import DialerSection
from ivr.flow import IvrSection
from kpi.settings import StatsSection
from screenpop.settings import ScreenpopSection
from sim.settings import SimSection


class DatabaseSettings(ConfigModel):
    """SQLAlchemy URL: SQLite file by default, ``postgresql+psycopg://...`` for PostgreSQL."""

    url: str = "sqlite:///var/cti.sqlite3"
    echo: bool = False


class RedisSettings(ConfigModel):
    """Optional shared state and event bus for several server nodes (``centre.redis_link`` makes the client).

    ``password`` (Redis ``requirepass`` / an ACL user's, with ``username``) is a secret: take it from the
    environment (``${REDIS_PASSWORD}``); it is never logged. Every key the server writes starts with
    ``prefix:``, so several centres (or other applications) can share one Redis."""

    url: str = expected("a redis:// or rediss:// URL (without the password: see redis.password)",
                        pattern=r"^rediss?://")
    username: str | None = expected("a Redis ACL user name", default=None, min_length=1, max_length=128,
                                    pattern=r"^[^\s:@/]+$")
    password: SecretStr | None = expected("the Redis password (use ${ENV_VAR} to keep it out of the file)",
                                          default=None)
    prefix: str = expected("a key prefix: letters, digits, _ . - (1-64 characters)", default="cti",
                           pattern=r"^[A-Za-z0-9_.-]{1,64}$")


NODE_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MIN_LEASE_TTL, MAX_LEASE_TTL = 2.0, 300.0


def default_node_id() -> str:
    """``hostname-pid``, trimmed to what a node id may hold (letters, digits, _ . -; at most 64)."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()) or "node"
    pid = f"-{os.getpid()}"
    return host[:64 - len(pid)] + pid


class NodeSettings(ConfigModel):
    """This process as one node of a contact centre of several (``redis:``, ``centre.node_leases``): its id (the
    holder named on its leases), the Asterisk servers it is home of (it takes their connections, and their
    campaigns, first; the others only when nobody holds them) and how long a lease lasts unless renewed (a dead
    node's PBXs and campaigns are taken over about that long after it stops)."""

    id: str = expected("a node id: letters, digits, _ . - (1-64 characters)", default_factory=default_node_id,
                       pattern=NODE_ID_PATTERN)
    home: list[str] | None = expected("a list of asterisk[].name this node prefers (absent: all of them)",
                                      default=None)
    lease_ttl: float = expected(f"a number of seconds {MIN_LEASE_TTL:g}-{MAX_LEASE_TTL:g} (a lease's life)",
                                default=10.0, ge=MIN_LEASE_TTL, le=MAX_LEASE_TTL)

    def home_of(self, servers: list[str]) -> list[str]:
        """The servers of ``servers`` this node is home of."""
        return list(servers) if self.home is None else [s for s in servers if s in self.home]


class HttpListen(HostPort):
    """The console hub's address; with ``tls`` it serves https:// and wss:// only."""

    tls: ServerTls | None = None


class ListenSettings(ConfigModel):
    """Where the server listens: FastAGI for Asterisk, HTTP+websocket for consoles (both on loopback unless
    told otherwise)."""

    fastagi: HostPort = HostPort(port=4573)
    http: HttpListen = HttpListen(port=8080)


class MetricsSettings(ConfigModel):
    """The operations listener (``centre.ops_http``): Prometheus ``/metrics``, ``/healthz`` and ``/readyz`` on
    a port of its own, on loopback unless told otherwise (the figures are for the monitoring host, not for
    the consoles' network). Absent: no such listener."""

    host: str = expected("an address to listen on, such as 127.0.0.1 or 0.0.0.0", default="127.0.0.1",
                         pattern=r"^[A-Za-z0-9_.:-]{1,253}$")
    port: int = expected("an integer 0-65535 (0: any free port)", default=9188, ge=0, le=65535)
    # /readyz (and each scrape) checks the database and Redis: each check waits at most this long...
    check_timeout: PositiveSeconds = expected("a number of seconds > 0 (a readiness check's wait)", default=2.0)
    # ... and its result is reused for this long (a burst of probes costs the database one query)
    check_cache: float = expected("a number of seconds >= 0 (how long a check's result is reused)", default=1.0,
                                  ge=0, le=300)
    tls: ServerTls | None = None  # https:// only (the monitoring host then scrapes with scheme: https)


class PbxSettings(ConfigModel):
    """How the server turns a number an agent typed into a dial string (transfers, consultations)."""

    internal_pattern: str = expected("a regular expression for internal extensions", default=r"^[0-9]{2,6}$")
    internal_dial: str = expected("a dial string with {number}", default="PJSIP/{number}", pattern=r"\{number\}")
    external_dial: str = expected("a dial string with {number}", default="PJSIP/{number}@trunk",
                                  pattern=r"\{number\}")

    def semantic_errors(self) -> list[tuple[Loc, str]]:
        try:
            re.compile(self.internal_pattern)
        except re.error as exc:
            return [(("internal_pattern",), f"not a valid regular expression: {exc}")]
        return []

    def dial_string(self, number: str) -> str:
        """The dial string for ``number`` (digits, +, * and # only: anything else is refused)."""
        if not re.fullmatch(r"\+?[0-9*#]{1,32}", number):
            raise ValueError("a number is digits, *, # with an optional leading +")
        template = self.internal_dial if re.fullmatch(self.internal_pattern, number) else self.external_dial
        return template.replace("{number}", number)


class LogSettings(ConfigModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class CtiConfig(ConfigModel):
    """The whole configuration file."""

    asterisk: list[AsteriskServer] = Field(default_factory=list)
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings | None = None
    node: NodeSettings = Field(default_factory=NodeSettings)
    listen: ListenSettings = ListenSettings()
    metrics: MetricsSettings | None = None
    pbx: PbxSettings = PbxSettings()
    log: LogSettings = LogSettings()
    ivr: IvrSection = IvrSection()
    acd: AcdSection = AcdSection()
    screenpop: ScreenpopSection = ScreenpopSection()
    console: ConsoleSection = ConsoleSection()
    dialer: DialerSection = DialerSection()
    sim: SimSection = SimSection()
    statistics: StatsSection = StatsSection()
    recording: RecordingSection = RecordingSection()

    def tls_listeners(self) -> list[tuple[Loc, ServerTls]]:
        """The listeners' ``tls`` settings that are set, with where each is in the file."""
        out: list[tuple[Loc, ServerTls]] = []
        if self.listen.http.tls is not None:
            out.append((("listen", "http", "tls"), self.listen.http.tls))
        if self.metrics is not None and self.metrics.tls is not None:
            out.append((("metrics", "tls"), self.metrics.tls))
        return out

    def semantic_errors(self) -> list[tuple[Loc, str]]:
        errors: list[tuple[Loc, str]] = []
        seen: dict[str, int] = {}
        for i, server in enumerate(self.asterisk):
            if server.name in seen:
                errors.append((("asterisk", i, "name"),
                               f"duplicate server name {server.name!r} (also asterisk[{seen[server.name]}])"))
            seen.setdefault(server.name, i)
        for section in ("pbx", "ivr", "acd", "screenpop", "console", "dialer", "sim", "statistics"):
            model = getattr(self, section)
            errors.extend(((section, *loc), msg) for loc, msg in model.semantic_errors())
        errors.extend(cross_section_errors(self))
        return errors


def cross_section_errors(cfg: CtiConfig) -> list[tuple[Loc, str]]:
    """Checks that need two sections at once (e.g. an IVR queue node naming an ACD queue)."""
    errors: list[tuple[Loc, str]] = []
    queue_names = set(cfg.acd.queue_names())
    if queue_names:
        for loc, queue in cfg.ivr.queue_references():
            if queue not in queue_names:
                errors.append((("ivr", *loc), f"unknown queue {queue!r}; known: {', '.join(sorted(queue_names))}"))
    servers = [s.name for s in cfg.asterisk]
    errors.extend(metrics_errors(cfg))
    known = ", ".join(servers) or "none configured"
    for i, name in enumerate(cfg.node.home or ()):
        if name not in servers:
            errors.append((("node", "home", i), f"unknown Asterisk server {name!r}; expected one of asterisk[].name "
                                                f"({known})"))
    errors.extend((("dialer", *loc), msg) for loc, msg in cfg.dialer.reference_errors(sorted(queue_names), servers))
    return errors


def metrics_errors(cfg: CtiConfig) -> list[tuple[Loc, str]]:
    """The operations listener must not take a port the server already listens on."""
    m = cfg.metrics
    if m is None or m.port == 0:
        return []
    for name, where in (("http", cfg.listen.http), ("fastagi", cfg.listen.fastagi)):
        if where.port == m.port and (where.host == m.host or "0.0.0.0" in (where.host, m.host)):
            return [(("metrics", "port"), f"port {m.port} is listen.{name}'s already: choose another")]
    return []
