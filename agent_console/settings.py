"""The ``console:`` configuration section: websocket hub limits, auth, dispositions. No I/O.

Must not import the hub, websockets or anything outside ``config``/``pydantic``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr

from cti.config_types import ConfigModel, Loc, PositiveSeconds, expected

CODE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
ID_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
_HASH_RE = re.compile(r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=_-]+\$[A-Za-z0-9+/=_-]+$")

Code = Annotated[str, Field(pattern=CODE_PATTERN, json_schema_extra={"expected": "a code of 1-64 letters/digits/_.-"})]


class DispositionCode(ConfigModel):
    """One wrap-up result an agent may choose, e.g. ``{code: sale, label: Sale}``."""

    code: Code
    label: str = expected("a label shown on the console", min_length=1, max_length=80)
    callback: bool = False  # the console offers callback scheduling with this code
    dnc: bool = False  # "do not call": the call's number goes on the dialer's do-not-call list


class SupervisorAccount(ConfigModel):
    """A supervisor who may open the wallboard: with a password when ``password_hash`` is set, and with a
    supervisor token (`cti agent-token ID --role supervisor`) either way. A token for an id listed neither
    here nor in ``acd.agents`` is refused."""

    id: str = expected("a supervisor id of 1-64 letters/digits/_.@-", pattern=ID_PATTERN)
    password_hash: SecretStr | None = expected("a hash printed by `cti agent-password`", default=None)
    endpoint: str | None = expected("the supervisor's phone, a dial string such as PJSIP/2001 (monitor, whisper "
                                    "and barge ring it)", default=None,
                                    pattern=r"^[A-Za-z0-9_]{1,20}/[^\s,|&]{1,80}$")


DEFAULT_DISPOSITIONS = (
    DispositionCode(code="resolved", label="Resolved"),
    DispositionCode(code="sale", label="Sale"),
    DispositionCode(code="no-sale", label="No sale"),
    DispositionCode(code="callback", label="Callback requested", callback=True),
    DispositionCode(code="complaint", label="Complaint"),
    DispositionCode(code="wrong-number", label="Wrong number"),
)
DEFAULT_NOT_READY_REASONS = ("break", "lunch", "meeting", "training", "admin")


class ConsoleSection(ConfigModel):
    """Websocket hub settings: endpoint, authentication, limits, agent-facing code lists."""

    path: str = expected("a URL path such as /ws", default="/ws", pattern=r"^/[A-Za-z0-9_./-]*$")
    token_secret: SecretStr | None = expected(
        "a secret of at least 16 characters (use ${CTI_CONSOLE_SECRET})", default=None)
    token_default_ttl: PositiveSeconds = 8 * 3600.0
    token_max_ttl: PositiveSeconds = 7 * 24 * 3600.0
    # The hello result's resume_token lives this long: a reloaded console tab signs itself back in with it.
    resume_ttl: PositiveSeconds = expected("seconds a console's resume token is valid (0 < s)", default=12 * 3600.0)
    supervisors: list[SupervisorAccount] = Field(default_factory=list)
    hello_timeout: PositiveSeconds = 10.0
    heartbeat_interval: PositiveSeconds = 15.0
    ping_interval: PositiveSeconds = 20.0  # websocket-level keepalive ping (dead TCP peers)
    ping_timeout: PositiveSeconds = 20.0
    max_message_bytes: int = expected("an integer 256-1048576", default=16384, ge=256, le=1048576)
    send_queue: int = expected("an integer 1-10000 (messages)", default=256, ge=1, le=10000)
    write_limit: int = expected("an integer 1024-16777216 (bytes)", default=65536, ge=1024, le=16777216)
    rate_per_second: float = expected("a number > 0 (messages per second)", default=10.0, gt=0)
    rate_burst: int = expected("an integer 1-1000", default=30, ge=1, le=1000)
    # Logged-in sessions; connections that have not logged in yet are capped apart (below), so that a
    # flood of idle sockets never keeps an agent out.
    max_connections: int = expected("an integer 1-1000000", default=10000, ge=1, le=1000000)
    max_unauthenticated: int = expected("an integer 1-1000000", default=1024, ge=1, le=1000000)
    max_unauthenticated_per_address: int = expected("an integer 1-100000", default=32, ge=1, le=100000)
    # Failed password logins: after auth_failures for one (id, address), or auth_address_failures from one
    # address, the next check waits auth_delay seconds, doubling per failure up to auth_lockout. Tokens are
    # never throttled.
    auth_failures: int = expected("an integer 1-1000", default=5, ge=1, le=1000)
    auth_address_failures: int = expected("an integer 1-100000", default=30, ge=1, le=100000)
    auth_delay: PositiveSeconds = 1.0
    auth_lockout: PositiveSeconds = 60.0
    # Password checks (scrypt) waiting or running at once, in all and from one address; more: auth-throttled.
    auth_pending: int = expected("an integer 1-10000", default=16, ge=1, le=10000)
    auth_pending_per_address: int = expected("an integer 1-10000", default=2, ge=1, le=10000)
    compression: Literal["none", "deflate"] = "none"
    # Origins (scheme://host[:port]) whose pages may open the websocket besides the server's own; ["*"]
    # allows any site (check-config warns). Clients that send no Origin (not browsers) are not affected.
    allowed_origins: list[str] = expected('origins such as "https://crm.example.com", or ["*"]',
                                          default_factory=list)
    # Reverse proxies (TLS terminators) whose X-Forwarded-For names the client: addresses or networks.
    # Connections from them are counted and throttled under the client's address instead of theirs.
    trusted_proxies: list[str] = expected("IP addresses or networks such as 127.0.0.1 or 10.0.0.0/24",
                                          default_factory=list)
    dispositions: list[DispositionCode] = Field(default_factory=lambda: list(DEFAULT_DISPOSITIONS))
    not_ready_reasons: list[Code] = Field(default_factory=lambda: list(DEFAULT_NOT_READY_REASONS))
    # Hot desking: may an agent log the phone in at another endpoint than its configured one? Off: the
    # console logs the configured endpoint in and shows no field for another.
    allow_endpoint_override: bool = False

    def semantic_errors(self) -> list[tuple[Loc, str]]:
        errors: list[tuple[Loc, str]] = []
        if self.token_secret is not None and len(self.token_secret.get_secret_value()) < 16:
            errors.append((("token_secret",), "too short: use at least 16 characters"))
        if self.token_default_ttl > self.token_max_ttl:
            errors.append((("token_default_ttl",), "must not exceed token_max_ttl"))
        seen: set[str] = set()
        for i, disposition in enumerate(self.dispositions):
            if disposition.code in seen:
                errors.append((("dispositions", i, "code"), f"duplicate disposition code {disposition.code!r}"))
            seen.add(disposition.code)
        for i, origin in enumerate(self.allowed_origins):
            if origin != "*" and not _ORIGIN_RE.match(origin):
                errors.append((("allowed_origins", i), 'expected an origin such as "https://crm.example.com" '
                               '(scheme://host[:port], no path) or "*"'))
        for i, proxy in enumerate(self.trusted_proxies):
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                errors.append((("trusted_proxies", i), "expected an IP address or network such as 10.0.0.0/24"))
        if not self.dispositions:
            errors.append((("dispositions",), "at least one disposition code is needed"))
        if len(set(self.not_ready_reasons)) != len(self.not_ready_reasons):
            errors.append((("not_ready_reasons",), "duplicate reason"))
        ids: set[str] = set()
        for i, account in enumerate(self.supervisors):
            if account.id in ids:
                errors.append((("supervisors", i, "id"), f"duplicate supervisor id {account.id!r}"))
            ids.add(account.id)
            if account.password_hash is not None and not _HASH_RE.match(account.password_hash.get_secret_value()):
                errors.append((("supervisors", i, "password_hash"),
                               "not a hash made by `cti agent-password` (scrypt$n$r$p$salt$hash)"))
        return errors

    def disposition(self, code: str) -> DispositionCode | None:
        """The configured disposition with this code, if any."""
        for item in self.dispositions:
            if item.code == code:
                return item
        return None
