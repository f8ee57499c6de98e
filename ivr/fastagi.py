"""Twisted FastAGI server: a thin shell feeding sockets to ``AgiServerCodec`` and ``IvrSession``.

Owns the I/O policy only: who may connect (``allow_from``), how many sessions at once
(``max_sessions``), how long to wait (``env_timeout`` for the environment, ``idle_timeout`` per AGI
reply, ``lookup_timeout`` per customer look-up), and what to do with junk (log it, close that one
connection, keep serving). Time comes from the ``clock`` argument (``IReactorTime``; the reactor by
default). Protocol rules live in ``ivr.agi_protocol``, flow logic in ``ivr.interpreter``.

Logging: refused connections and timeouts can come in floods (a scanner, a PBX with a wrong address),
so they go through ``WarningDigest``: one line per kind per minute with a count. A prompt the PBX cannot
play (``PromptMissing``) is logged once per PBX and prompt, naming the flow and node where it was seen.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
from collections.abc import Mapping
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IReactorTCP,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.python.failure import Failure

from cti.immediate import ImmediateWriter
from ivr.agi_protocol import (
    AgiCommand,
    AgiEnvironment,
    AgiProtocolError,
    AgiReply,
    AgiServerCodec,
    HangupNotice,
)
from ivr.events import PromptMissing
from ivr.flow import IvrSection
from ivr.interpreter import Action, EmitEvent, EndSession, IvrSession, LookupCustomer, SendCommand
from ivr.ports import CustomerLookup, IvrEventSink, LookupResult
from ivr.warning_digest import WarningDigest

log = logging.getLogger("ivr.fastagi")


def as_deferred(value: Any) -> defer.Deferred[Any]:
    """A Deferred for whatever a ``CustomerLookup`` returned: Deferred, coroutine, asyncio future, value."""
    if isinstance(value, defer.Deferred):
        return value
    if inspect.iscoroutine(value):
        return defer.Deferred.fromCoroutine(value)
    if isinstance(value, asyncio.Future):
        return defer.Deferred.fromFuture(value)
    if inspect.isawaitable(value):
        async def wait() -> Any:
            return await value
        return defer.Deferred.fromCoroutine(wait())
    return defer.succeed(value)


class FastAgiSession(Protocol):
    """One Asterisk FastAGI connection: one caller walking one flow."""

    factory: FastAgiFactory

    def __init__(self) -> None:
        self.codec: AgiServerCodec | None = None
        self.session: IvrSession | None = None
        self.peer = "?"
        self.counted = False
        self._timer: IDelayedCall | None = None
        self._timer_at = 0.0  # when _timer fires (kept here: the hot path need not touch the DelayedCall)
        self._deadline: float | None = None
        self._waiting_for: AgiCommand | None = None  # None: the environment
        self._waiting_seconds = 0.0
        self._lookup: defer.Deferred[Any] | None = None
        self._closing = False
        self._writer: ImmediateWriter | None = None

    # --- connection lifecycle --------------------------------------------------------------------------

    def connectionMade(self) -> None:
        f = self.factory
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.peer = getattr(peer, "host", str(peer))
        if not f.allowed(self.peer):
            f.stats["refused"] += 1
            f.warnings.warn("refusal", "FastAGI connection from %s refused: not in ivr.allow_from", self.peer)
            self._close(abort=True)
            return
        if f.active >= f.section.max_sessions:
            f.stats["refused"] += 1
            f.warnings.warn("refusal", "FastAGI connection from %s refused: %d sessions already (ivr.max_sessions)",
                            self.peer, f.active)
            self._close(abort=True)
            return
        f.active += 1
        self.counted = True
        transport = self.transport
        if ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        self._writer = ImmediateWriter(transport)  # type: ignore[arg-type]
        self.codec = AgiServerCodec(max_line_bytes=f.section.max_line_bytes)
        self._arm(f.section.env_timeout, None)

    def dataReceived(self, data: bytes) -> None:
        if self.codec is None or self._closing:
            return
        try:
            events = self.codec.receive_data(data)
        except AgiProtocolError as exc:
            self.factory.stats["protocol_errors"] += 1
            log.warning("FastAGI connection from %s closed: %s", self.peer, exc.reason)
            self._fail(f"protocol error: {exc.reason}", abort=True)
            return
        for event in events:
            if self._closing:
                return
            if isinstance(event, AgiEnvironment):
                self._start(event)
            elif isinstance(event, AgiReply):
                self._disarm()
                if self.session is not None:
                    self._apply(self.session.on_reply(event, self.factory.now()))
            elif isinstance(event, HangupNotice) and self.session is not None:
                self._apply(self.session.on_hangup(self.factory.now()))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closing = True
        self._stop_timer()
        if self._lookup is not None:
            lookup, self._lookup = self._lookup, None
            lookup.cancel()
        if self.counted:
            self.counted = False
            self.factory.active -= 1
        session = self.session
        if session is not None and not session.done:
            if self.codec is not None and self.codec.hung_up:
                self._apply(session.on_hangup(self.factory.now()))
            else:
                self._apply(session.on_failure("connection closed by the PBX", self.factory.now()))

    # --- the flow --------------------------------------------------------------------------------------

    def _start(self, env: AgiEnvironment) -> None:
        f = self.factory
        self._disarm()
        name = env.flow_name or (f.section.default_flow or "")
        flow = f.section.flows.get(name)
        if flow is None:
            f.stats["unknown_flow"] += 1
            log.warning("FastAGI request from %s for unknown flow %r (channel %s); closing so the dialplan "
                        "falls back", self.peer, name[:64], env.channel[:80])
            self._close()
            return
        f.stats["sessions"] += 1
        self.session = IvrSession(name, flow, env, server=f.server_names.get(self.peer, self.peer))
        self._apply(self.session.start(f.now()))

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, EmitEvent):
                self.factory.emit(action.event)
            elif isinstance(action, SendCommand):
                if self._closing or self.codec is None or self._writer is None:
                    return
                self._writer.write(self.codec.send(action.command))
                self._arm(self.factory.section.idle_timeout, action.command)
            elif isinstance(action, LookupCustomer):
                self._start_lookup(action)
            elif isinstance(action, EndSession):
                self.factory.stats["ended"] += 1
                self._close()

    def _start_lookup(self, action: LookupCustomer) -> None:
        f = self.factory
        try:
            d = as_deferred(f.lookup.lookup(action.by, action.value)) if f.lookup else defer.succeed(None)
        except Exception:  # a broken store must not end the call: the flow takes its "unavailable" branch
            log.exception("customer lookup by %s raised", action.by)
            d = defer.succeed(None)
        self._lookup = d
        timer = f.clock.callLater(f.section.lookup_timeout, d.cancel)

        def done(result: Any) -> None:
            if timer.active():
                timer.cancel()
            if self._lookup is not d or self.session is None:
                return
            self._lookup = None
            if isinstance(result, Failure):
                if not result.check(defer.CancelledError):
                    log.warning("customer lookup by %s failed: %s", action.by, result.getErrorMessage()[:200])
                result = None
            if not isinstance(result, LookupResult):
                result = LookupResult("unavailable")
            self._apply(self.session.on_lookup(result, f.now()))

        d.addBoth(done)

    # --- timers and closing ----------------------------------------------------------------------------

    # One DelayedCall per connection, moved lazily: replies only clear the deadline, so the hot path
    # (one command, one reply) creates and cancels no timers.

    def _arm(self, seconds: float, waiting_for: AgiCommand | None) -> None:
        """Expect the reply to ``waiting_for`` (None: the environment) within ``seconds``."""
        deadline = self.factory.now() + seconds
        self._deadline = deadline
        self._waiting_for = waiting_for
        self._waiting_seconds = seconds
        if self._timer is None:
            self._timer = self.factory.clock.callLater(seconds, self._check_deadline)
            self._timer_at = deadline
        elif self._timer_at > deadline:
            self._timer.reset(seconds)
            self._timer_at = deadline

    def _disarm(self) -> None:
        self._deadline = None

    def _stop_timer(self) -> None:
        self._deadline = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _check_deadline(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        left = self._deadline - self.factory.now()
        if left > 0:
            self._timer = self.factory.clock.callLater(left, self._check_deadline)
            self._timer_at = self._deadline
            return
        command, seconds = self._waiting_for, self._waiting_seconds
        what = "no AGI environment" if command is None else f"no reply to {command.verb}"
        self.factory.stats["timeouts"] += 1
        self.factory.warnings.warn("timeout", "FastAGI session from %s timed out: %s within %.0f s",
                                   self.peer, what, seconds)
        self._fail(f"timeout: {what}", abort=True)

    def _fail(self, reason: str, abort: bool = False) -> None:
        if self.session is not None and not self.session.done:
            self._apply(self.session.on_failure(reason, self.factory.now()))
        self._close(abort=abort)

    def _close(self, abort: bool = False) -> None:
        if self._closing:
            return
        self._closing = True
        self._stop_timer()
        if abort:
            self.transport.abortConnection()  # type: ignore[union-attr]
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]


class FastAgiFactory(ServerFactory):
    """Shared state of the FastAGI listener: settings, the look-up port, the event sink, the clock."""

    protocol = FastAgiSession

    def __init__(self, section: IvrSection, sink: IvrEventSink, lookup: CustomerLookup | None = None,
                 clock: IReactorTime | None = None, server_names: Mapping[str, str] | None = None) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        self.section = section
        self.sink = sink
        self.lookup = lookup
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.server_names = dict(server_names or {})
        self.active = 0
        self.stats = {"sessions": 0, "ended": 0, "refused": 0, "protocol_errors": 0, "timeouts": 0,
                      "unknown_flow": 0, "sink_errors": 0, "missing_prompts": 0}
        self.warnings = WarningDigest(log, self.clock)
        self.missing_prompts: set[tuple[str, str]] = set()  # (PBX, prompt) already logged
        self._networks = section.allowed_networks()

    def stopFactory(self) -> None:
        """The listener stops: log the warnings still being counted, leave no timer behind."""
        self.warnings.flush()

    def now(self) -> float:
        return self.clock.seconds()

    def allowed(self, host: str) -> bool:
        if not self._networks:
            return True
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self._networks)

    def emit(self, event: Any) -> None:
        if isinstance(event, PromptMissing):
            self._prompt_missing(event)
        try:
            self.sink(event)
        except Exception:  # one broken consumer must not break the call
            self.stats["sink_errors"] += 1
            log.exception("IVR event sink failed on %s", type(event).__name__)


    def _prompt_missing(self, event: PromptMissing) -> None:
        self.stats["missing_prompts"] += 1
        key = (event.server, event.prompt)
        if key in self.missing_prompts:
            return
        self.missing_prompts.add(key)
        log.warning("IVR flow %r node %r: PBX %s cannot play prompt %r (no such sound file?); skipped. "
                    "Logged once per prompt", event.flow, event.node, event.server, event.prompt)


def listen_fastagi(section: IvrSection, sink: IvrEventSink, *, host: str = "127.0.0.1", port: int = 4573,
                   lookup: CustomerLookup | None = None, reactor: IReactorTCP | None = None,
                   clock: IReactorTime | None = None, server_names: Mapping[str, str] | None = None,
                   backlog: int = 1024) -> tuple[IListeningPort, FastAgiFactory]:
    """Listen for FastAGI on ``host:port`` (the config's ``listen.fastagi``; port 0 picks a free port).

    ``backlog`` is the kernel's accept queue: a burst of calls must not overflow it (Twisted's default is 50).
    Returns the listening port and the factory (``factory.stats``, ``factory.active``).
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor  # type: ignore[assignment]
    factory = FastAgiFactory(section, sink, lookup, clock=clock or reactor,  # type: ignore[arg-type]
                             server_names=server_names)
    listening = reactor.listenTCP(port, factory, backlog=backlog, interface=host)  # type: ignore[union-attr]
    log.debug("FastAGI listening on %s:%d (%d flows)", host, listening.getHost().port, len(section.flows))
    return listening, factory
