"""Twisted AMI client: one named, reconnecting, logged-in connection per Asterisk server; actions -> Deferreds.

A thin shell around the sans-I/O codec in ``cti.ami.protocol`` (all parsing and encoding happens
there). Must not import the engines (acd, dialer, ivr, ...) or read the wall clock: timers go through
the ``clock`` it is given, TCP/TLS through ``connector``.

Errors (all derive from ``AMIError``)::

    AMIError
    +-- ActionError           Asterisk answered "Response: Error" (``.response`` holds it)
    +-- ActionTimeout         no (complete) response within the action's timeout
    +-- NotConnected          send() while the connection is not logged in
    +-- ConnectionLost        the connection dropped before the response arrived
    +-- AuthenticationFailed  the server refused the login (names the server, never the secret)
    +-- ProtocolError         the peer is not an AMI server (no banner)

Lifecycle: ``start()`` connects; after the banner it logs in (``md5``: Challenge then Login with
``Key = md5(challenge + secret)``; ``plain``: Login with the secret), then ``connected`` is true and
``on_connection(name, True, detail)`` runs (the owner resyncs with CoreShowChannels). A Ping every
``ping_interval`` seconds must be answered within ``ping_timeout`` or the connection is dropped.
When the connection drops, pending actions fail with ``ConnectionLost``, ``on_connection(name, False,
reason)`` runs and the client reconnects with exponential backoff and jitter
(``reconnect_initial`` .. ``reconnect_max``). A refused login waits at least ``AUTH_FAILURE_BACKOFF``
seconds before the next try. Failures are logged once per streak (WARNING), repeats at DEBUG; while the
server stays unreachable (connections fail), the failure 1 min, 5 min and then every 15 min into the outage
(``STILL_DOWN_AFTER``, ``STILL_DOWN_EVERY``) is a WARNING that says for how long, and the line that says
it is back tells how long it was down.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IConnector, IDelayedCall, IReactorTime, ITCPTransport
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.python.failure import Failure

from config.schema import AsteriskServer
from cti.ami.message import AMIMessage
from cti.ami.protocol import ActionIdAllocator, AMIParser, Banner, EventListCollector, ParseError, encode
from cti.immediate import ImmediateWriter

__all__ = [
    "AMIClient",
    "AMIClientPool",
    "AMIError",
    "ActionError",
    "ActionResult",
    "ActionTimeout",
    "AuthenticationFailed",
    "ConnectionLost",
    "NotConnected",
    "ProtocolError",
    "backoff_delay",
]

log = logging.getLogger(__name__)

AUTH_FAILURE_BACKOFF = 30.0
"""Minimum seconds before retrying after the server refused our credentials."""
STOP_GRACE = 2.0
"""Seconds stop() waits for the socket to close after Logoff before aborting it."""
STILL_DOWN_AFTER = (60.0, 300.0)
"""Seconds into an outage at which a WARNING says the server is still unreachable..."""
STILL_DOWN_EVERY = 900.0
"""...and then every this many seconds, for as long as it lasts."""


def still_down_due(k: int) -> float:
    """Seconds into an outage at which reminder ``k`` (0-based) is due: 60, 300, 1200, 2100, ..."""
    if k < len(STILL_DOWN_AFTER):
        return STILL_DOWN_AFTER[k]
    return STILL_DOWN_AFTER[-1] + STILL_DOWN_EVERY * (k - len(STILL_DOWN_AFTER) + 1)


def format_duration(seconds: float) -> str:
    """``45 s``, ``5 min``, ``1 h 20 min``: how long an outage has lasted, for people."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"

OnMessage = Callable[[str, AMIMessage], None]
OnConnection = Callable[[str, bool, str], None]
Connector = Callable[[AsteriskServer, ClientFactory], IConnector]


class AMIError(Exception):
    """Root of the AMI client's errors."""


class ActionError(AMIError):
    """Asterisk answered the action with ``Response: Error``."""

    def __init__(self, server: str, action: str, response: AMIMessage) -> None:
        self.server = server
        self.action = action
        self.response = response
        super().__init__(f"AMI {server}: {action} failed: {response.get('Message') or 'error'}")


class ActionTimeout(AMIError):
    """No complete response in time."""


class NotConnected(AMIError):
    """The connection is not logged in."""


class ConnectionLost(AMIError):
    """The connection dropped before the action completed."""


class AuthenticationFailed(AMIError):
    """The server refused the credentials."""


class ProtocolError(AMIError):
    """The peer does not speak AMI."""


@dataclass
class ActionResult:
    """A successful response; for list actions, the item events in order then the ``...Complete`` event."""

    response: AMIMessage
    events: list[AMIMessage] = field(default_factory=list)


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Seconds before reconnect ``attempt`` (1-based): exponential, capped, with "equal jitter"
    (uniform in [d/2, d]) so that many clients that lost the same server do not return in step."""
    base = min(maximum, initial * 2.0 ** min(attempt - 1, 62))
    return base / 2.0 + rng.uniform(0.0, base / 2.0)


def default_connector(server: AsteriskServer, factory: ClientFactory) -> IConnector:
    """TCP (or TLS) connection with the global reactor."""
    from twisted.internet import reactor

    if server.tls is not None and server.tls.enabled:
        try:
            from twisted.internet import ssl
            from twisted.protocols.tls import TLSMemoryBIOFactory
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ProtocolError("TLS to AMI needs pyOpenSSL and service_identity (twisted[tls])") from exc
        tls = server.tls
        if not tls.verify:
            options: Any = ssl.CertificateOptions(verify=False)
        else:
            trust = None
            if tls.ca_file:
                with open(tls.ca_file, "rb") as fh:
                    trust = ssl.Certificate.loadPEM(fh.read())
            options = ssl.optionsForClientTLS(tls.server_name or server.host, trustRoot=trust)
        wrapped = TLSMemoryBIOFactory(options, True, factory)
        return reactor.connectTCP(server.host, server.port, wrapped, timeout=server.connect_timeout)  # type: ignore[attr-defined]
    return reactor.connectTCP(server.host, server.port, factory, timeout=server.connect_timeout)  # type: ignore[attr-defined]


class _AMIProtocol(Protocol):
    """Bytes in -> parser -> client; nothing else."""

    def __init__(self, client: AMIClient) -> None:
        self.client = client
        self.parser = AMIParser()
        self.writer: ImmediateWriter | None = None
        self.held: list[bytes] | None = None  # actions of a batch or of the read being handled, written together

    def connectionMade(self) -> None:
        if ITCPTransport.providedBy(self.transport):
            # An offer is several small actions in a row (Setvar, Setvar, Redirect): with Nagle's algorithm the
            # later ones would wait for Asterisk's delayed ACK of the first, up to 40 ms.
            self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        # Actions sent outside the handling of an AMI read leave at once (no wait for the next loop iteration)
        self.writer = ImmediateWriter(self.transport)  # type: ignore[arg-type]
        self.client._made(self)

    def write(self, data: bytes) -> None:
        if self.held is not None:
            self.held.append(data)
        elif self.writer is not None:
            self.writer.write(data)
        elif self.transport is not None:
            self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        # Actions sent while this read is handled (an offer's Setvar/Setvar/Redirect, for every call the read
        # queued) are held and leave in one write when it is handled: the screen pops those calls trigger go
        # out first (the agent's screen shows the caller before the phone rings), and one write replaces one
        # per offer. The hold lasts the handling of one read (typically well under a millisecond).
        handle = self.client._item
        outer = self.held is None
        if outer:
            self.held = []
        try:
            for item in self.parser.feed(data):
                handle(self, item)
        finally:
            if outer:
                held, self.held = self.held, None
                if held and self.client._proto is self:
                    self.write(b"".join(held))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        for item in self.parser.feed_eof():  # an unterminated message is logged, not dropped silently
            log.warning("%s: %s (%d bytes dropped)", self.client.where, item.reason, item.discarded)
        self.client._lost(self, reason)


class _Factory(ClientFactory):
    def __init__(self, client: AMIClient) -> None:
        self.client = client

    def buildProtocol(self, addr: IAddress) -> Protocol:
        return _AMIProtocol(self.client)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self.client._failed(connector, reason)


@dataclass
class _Pending:
    deferred: defer.Deferred[ActionResult]
    timer: IDelayedCall
    action: str


class AMIClient:
    """One Asterisk server's AMI connection. See the module docstring for the lifecycle."""

    def __init__(
        self,
        server: AsteriskServer,
        *,
        clock: IReactorTime,
        connector: Connector | None = None,
        on_message: OnMessage,
        on_connection: OnConnection,
        rng: random.Random | None = None,
    ) -> None:
        self.server = server
        self.name = server.name
        self._clock = clock
        self._connector_fn = connector or default_connector
        self._on_message = on_message
        self._on_connection = on_connection
        self._rng = rng or random.Random()
        self._ids = ActionIdAllocator(server.name)
        self.connected = False
        self.banner: str | None = None
        self.last_error: AMIError | None = None
        self._state = "stopped"  # stopped | connecting | banner | login | ready | waiting | stopping
        self._proto: _AMIProtocol | None = None
        self._connector: IConnector | None = None
        self._timer: IDelayedCall | None = None  # banner wait, reconnect wait or stop grace
        self._down_since: float | None = None  # first failure of the current outage (clock seconds)
        self._still_down_count = 0  # reminders logged in this outage
        self._ping_call: IDelayedCall | None = None
        self._pending: dict[str, _Pending] = {}
        self._lists = EventListCollector()
        self._failures = 0
        self._streak_kind = ""
        self._auth_failed = False
        self._attempt_error: AMIError | None = None
        self._stop_waiters: list[defer.Deferred[None]] = []

    @property
    def state(self) -> str:
        """stopped, connecting, banner, login, ready, waiting (for the next attempt) or stopping."""
        return self._state

    @property
    def where(self) -> str:
        return f"AMI {self.name} ({self.server.host}:{self.server.port})"

    # public API -----------------------------------------------------------------------
    def start(self) -> None:
        """Connect (and keep reconnecting) until stop()."""
        if self._state != "stopped":
            return
        self._connect()

    def stop(self) -> defer.Deferred[None]:
        """Log off, close the connection, cancel timers; fires when the socket is closed."""
        self._cancel_timer()
        self._cancel_ping()
        self._end_outage()
        if self._proto is not None and self._state != "stopping":
            self._state = "stopping"
            proto = self._proto
            transport = proto.transport
            assert transport is not None
            if self.connected:
                proto.write(encode(AMIMessage.action("Logoff", {"ActionID": self._ids.next()})))
            self.connected = False
            transport.loseConnection()
            self._timer = self._clock.callLater(STOP_GRACE, transport.abortConnection)  # type: ignore[attr-defined]
        if self._state == "stopping":
            d: defer.Deferred[None] = defer.Deferred()
            self._stop_waiters.append(d)
            return d
        connector, self._connector = self._connector, None
        self._state = "stopped"
        if connector is not None:
            try:
                connector.stopConnecting()
            except Exception:  # already connected or failed: nothing left to stop
                log.debug("%s: stopConnecting failed", self.where, exc_info=True)
        return defer.succeed(None)

    def send(
        self, name: str, fields: dict[str, str | list[str]] | None = None, *, timeout: float | None = None
    ) -> defer.Deferred[ActionResult]:
        """Send action ``name``; the Deferred fires with its ActionResult (list actions: with their events).

        ``fields`` may carry its own ``ActionID`` (e.g. to match a later OriginateResponse); otherwise
        a unique one is added. Fails with ActionError, ActionTimeout, NotConnected, ConnectionLost,
        or ValueError for a field with CR/LF in it.
        """
        if not self.connected:
            return defer.fail(NotConnected(f"{self.where} is not connected; {name} not sent"))
        return self._send(name, fields, timeout)

    # internals: actions ------------------------------------------------------------------
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Actions sent inside the block leave in one write when it ends (Asterisk runs them in order); inside
        the handling of an AMI read they leave with the read's other actions, when it is handled."""
        proto = self._proto
        if proto is None or proto.held is not None:
            yield
            return
        proto.held = []
        try:
            yield
        finally:
            held, proto.held = proto.held, None
            if held:
                proto.write(b"".join(held))

    def _send(
        self, name: str, fields: dict[str, str | list[str]] | None, timeout: float | None
    ) -> defer.Deferred[ActionResult]:
        proto = self._proto
        if proto is None or proto.transport is None:
            return defer.fail(NotConnected(f"{self.where} is not connected; {name} not sent"))
        body = dict(fields or {})
        action_id: str | None = None
        for key in list(body):
            if key.lower() == "actionid":
                value = body.pop(key)
                if not isinstance(value, str) or not value:
                    return defer.fail(ValueError("ActionID must be a non-empty string"))
                action_id = value
        if action_id is None:
            action_id = self._ids.next()
        elif action_id in self._pending:
            return defer.fail(ValueError(f"ActionID {action_id!r} is already waiting for a response"))
        message = AMIMessage.action(name, {"ActionID": action_id, **body})
        try:
            data = encode(message)
        except ValueError as exc:
            return defer.fail(exc)
        seconds = timeout if timeout is not None else self.server.action_timeout
        aid = action_id
        d: defer.Deferred[ActionResult] = defer.Deferred(canceller=lambda _d: self._forget(aid))
        timer = self._clock.callLater(seconds, self._timed_out, aid, seconds)
        self._pending[aid] = _Pending(d, timer, name)
        proto.write(data)
        return d

    def _forget(self, action_id: str) -> _Pending | None:
        pending = self._pending.pop(action_id, None)
        if pending is not None and pending.timer.active():
            pending.timer.cancel()
        self._lists.discard(action_id)
        return pending

    def _timed_out(self, action_id: str, seconds: float) -> None:
        pending = self._pending.pop(action_id, None)
        self._lists.discard(action_id)
        if pending is not None:
            pending.deferred.errback(
                ActionTimeout(f"{self.where}: no response to {pending.action} within {seconds:g} s")
            )

    def _complete(self, action_id: str, response: AMIMessage, events: list[AMIMessage]) -> None:
        pending = self._forget(action_id)
        if pending is None:
            return
        if response.name.lower() == "error":
            pending.deferred.errback(ActionError(self.name, pending.action, response))
        else:
            pending.deferred.callback(ActionResult(response, events))

    def _fail_all(self, error_text: str) -> None:
        pending, self._pending = self._pending, {}
        self._lists.clear()
        for p in pending.values():
            if p.timer.active():
                p.timer.cancel()
        for p in pending.values():
            p.deferred.errback(ConnectionLost(f"{error_text}; {p.action} got no response"))

    # internals: incoming ------------------------------------------------------------------
    def _item(self, proto: _AMIProtocol, item: AMIMessage | Banner | ParseError) -> None:
        if proto is not self._proto:
            return
        if isinstance(item, AMIMessage):
            kind = item.kind
            if kind == "event":
                self._event(item)
            elif kind == "response":
                self._response(item)
            else:
                log.warning("%s: ignored a message with neither Event nor Response (%d headers)", self.where, len(item))
        elif isinstance(item, Banner):
            self._banner(item)
        else:
            log.warning("%s: %s (%d bytes dropped)", self.where, item.reason, item.discarded)
            if self._state == "banner":
                self._give_up(ProtocolError(f"{self.where} does not speak AMI: {item.reason}"))

    def _event(self, event: AMIMessage) -> None:
        try:
            self._on_message(self.name, event)
        except Exception:
            log.exception("%s: on_message failed for event %s", self.where, event.name)
        if len(self._lists):
            done = self._lists.add(event)
            if done is not None:
                response, events = done
                action_id = response.action_id
                assert action_id is not None
                self._complete(action_id, response, events)

    def _response(self, response: AMIMessage) -> None:
        action_id = response.action_id
        if action_id is None or action_id not in self._pending:
            log.debug("%s: response %s matches no pending action", self.where, response.name)
            return
        if self._lists.start(response):
            return
        self._complete(action_id, response, [])

    # internals: connection lifecycle ----------------------------------------------------
    def _connect(self) -> None:
        self._timer = None
        self._state = "connecting"
        self._auth_failed = False
        self._attempt_error = None
        try:
            self._connector = self._connector_fn(self.server, _Factory(self))
        except Exception as exc:  # a bad TLS file, ...: same path as a failed connection
            self._connector = None
            self._failed(None, Failure(exc))

    def _failed(self, connector: IConnector | None, reason: Failure) -> None:
        if connector is not None and connector is not self._connector:
            return
        self._connector = None
        if self._state != "connecting":
            return
        text = f"cannot connect: {reason.getErrorMessage()}"
        self.last_error = NotConnected(f"{self.where}: {text}")
        self._retry(text, "connect")

    def _made(self, proto: _AMIProtocol) -> None:
        if self._state != "connecting":
            assert proto.transport is not None
            proto.transport.loseConnection()
            return
        self._connector = None
        self._proto = proto
        self._state = "banner"
        self._timer = self._clock.callLater(self.server.connect_timeout, self._banner_timeout, proto)

    def _banner_timeout(self, proto: _AMIProtocol) -> None:
        self._timer = None
        if proto is self._proto and self._state == "banner":
            self._give_up(ProtocolError(f"{self.where} sent no AMI banner within {self.server.connect_timeout:g} s"))

    def _banner(self, banner: Banner) -> None:
        if self._state == "stopping":
            # stop() came while the banner was on its way (bytes already in flight when we closed): it
            # means nothing now, and is not the mid-stream banner of a proxy reconnecting upstream
            log.debug("%s: banner after stop() ignored", self.where)
            return
        if self._state != "banner":
            log.warning("%s: unexpected banner %r in the middle of the stream", self.where, banner.text[:80])
            return
        self._cancel_timer()
        if "Call Manager/" not in banner.text:
            self._give_up(ProtocolError(f"{self.where} does not speak AMI (banner {banner.text[:80]!r})"))
            return
        self.banner = banner.text
        self._state = "login"
        self._login()

    def _login(self) -> None:
        server = self.server
        secret = server.secret.get_secret_value()
        proto = self._proto
        if server.auth == "md5":
            d = self._send("Challenge", {"AuthType": "MD5"}, None)

            def answer(result: ActionResult) -> defer.Deferred[ActionResult]:
                challenge = result.response.get("Challenge") or ""
                key = hashlib.md5((challenge + secret).encode("utf-8")).hexdigest()
                fields: dict[str, str | list[str]] = {
                    "AuthType": "MD5",
                    "Username": server.username,
                    "Key": key,
                    "Events": "on",
                }
                return self._send("Login", fields, None)

            d.addCallback(answer)
        else:
            d = self._send("Login", {"Username": server.username, "Secret": secret, "Events": "on"}, None)
        d.addCallbacks(self._logged_in, self._login_failed, errbackArgs=(proto,))

    def _logged_in(self, result: ActionResult) -> None:
        if self._state != "login":
            return
        self._state = "ready"
        self.connected = True
        self.last_error = None
        down_for = self._end_outage()
        if self._failures:
            took = f", down for {format_duration(down_for)}" if down_for is not None else ""
            log.info("%s: logged in again after %d failed attempt(s)%s", self.where, self._failures, took)
        else:
            log.info("%s: logged in", self.where)
        self._failures = 0
        self._streak_kind = ""
        self._schedule_ping()
        self._notify(True, f"logged in ({self.banner})")

    def _login_failed(self, failure: Failure, proto: _AMIProtocol | None) -> None:
        if proto is not self._proto or self._state != "login":
            return  # the connection is already gone; _lost handled it
        if failure.check(ActionError):
            self._auth_failed = True
            error: AMIError = AuthenticationFailed(
                f"{self.where}: login as {self.server.username!r} refused "
                f"({failure.value.response.get('Message') or 'error'}); check username and secret"
            )
        elif failure.check(AMIError):
            error = failure.value  # type: ignore[assignment]
        else:
            error = ProtocolError(f"{self.where}: login failed: {failure.getErrorMessage()}")
        self._give_up(error)

    def _give_up(self, error: AMIError) -> None:
        """Close this connection because of ``error``; _lost() then schedules the retry."""
        self.last_error = self._attempt_error = error
        if isinstance(error, AuthenticationFailed):
            self._auth_failed = True
        proto = self._proto
        if proto is not None and proto.transport is not None:
            proto.transport.abortConnection()  # type: ignore[attr-defined]

    def _lost(self, proto: _AMIProtocol, reason: Failure) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        self._cancel_ping()
        self._cancel_timer()
        was_ready = self.connected
        self.connected = False
        detail = reason.getErrorMessage()
        self._fail_all(f"{self.where}: connection lost ({detail})")
        if self._state == "stopping":
            self._state = "stopped"
            waiters, self._stop_waiters = self._stop_waiters, []
            for d in waiters:
                d.callback(None)
            return
        if was_ready:
            kind, text = "lost", f"connection lost: {detail}"
            self.last_error = ConnectionLost(f"{self.where}: {text}")
            self._failures = 0
            self._streak_kind = ""
        elif self._attempt_error is not None:
            kind = "auth" if self._auth_failed else "handshake"
            text = str(self._attempt_error).removeprefix(f"{self.where}: ")
        else:
            kind, text = "handshake", f"connection closed before login completed: {detail}"
            self.last_error = ConnectionLost(f"{self.where}: {text}")
        self._retry(text, kind)

    def _retry(self, text: str, kind: str) -> None:
        """Log once per streak, notify, and schedule the next attempt with backoff."""
        self._failures += 1
        delay = backoff_delay(self._failures, self.server.reconnect_initial, self.server.reconnect_max, self._rng)
        if kind == "auth":
            delay = max(delay, AUTH_FAILURE_BACKOFF * (1.0 + 0.5 * self._rng.random()))
        first_of_streak = kind != self._streak_kind
        self._streak_kind = kind
        reminder = self._still_down(text, kind)
        if first_of_streak:
            log.warning("%s: %s; retrying in %.1f s (further failures logged at DEBUG%s)", self.where, text, delay,
                        ", with a reminder after 1 min, 5 min, then every 15 min" if kind == "connect" else "")
            self._notify(False, text)
        elif reminder is not None:
            log.warning("%s: %s; retrying in %.1f s", self.where, reminder, delay)
        else:
            log.debug("%s: %s (attempt %d); retrying in %.1f s", self.where, text, self._failures, delay)
        self._state = "waiting"
        self._timer = self._clock.callLater(delay, self._connect)

    def _still_down(self, text: str, kind: str) -> str | None:
        """The outage reminder, when one is due: a failure that comes 1 min, 5 min, 20 min, 35 min... into
        the outage is logged at WARNING with how long it has lasted (the retries between stay at DEBUG).
        Riding on the retries keeps it to the one reconnect timer; it comes at most one backoff late."""
        now = self._clock.seconds()
        if self._down_since is None:
            self._down_since = now
            self._still_down_count = 0
            return None
        down_for = now - self._down_since
        if kind != "connect" or down_for < still_down_due(self._still_down_count):
            return None  # refused logins and handshakes keep their one warning per streak (a config matter)
        while still_down_due(self._still_down_count) <= down_for:  # one line even if a backoff jumped several
            self._still_down_count += 1
        return (f"still unreachable after {format_duration(down_for)} ({self._failures} failed attempt(s); "
                f"last: {text})")

    def _end_outage(self) -> float | None:
        """Forget the outage (logged in, or stopped); how long it lasted, if there was one."""
        since, self._down_since = self._down_since, None
        return None if since is None else self._clock.seconds() - since

    def _notify(self, up: bool, detail: str) -> None:
        try:
            self._on_connection(self.name, up, detail)
        except Exception:
            log.exception("%s: on_connection handler failed", self.where)

    # internals: keepalive -------------------------------------------------------------------
    def _schedule_ping(self) -> None:
        self._ping_call = self._clock.callLater(self.server.ping_interval, self._ping)

    def _ping(self) -> None:
        self._ping_call = None
        proto = self._proto
        if self._state != "ready" or proto is None:
            return
        d = self._send("Ping", None, self.server.ping_timeout)
        d.addCallbacks(self._pong, self._ping_failed, errbackArgs=(proto,))

    def _pong(self, _result: ActionResult) -> None:
        if self._state == "ready" and self._ping_call is None:
            self._schedule_ping()

    def _ping_failed(self, failure: Failure, proto: _AMIProtocol) -> None:
        if failure.check(ActionError):  # an answer all the same: the link is alive
            self._pong(None)  # type: ignore[arg-type]
        elif failure.check(ActionTimeout) and proto is self._proto:
            self._give_up(
                ActionTimeout(f"{self.where}: no answer to Ping within {self.server.ping_timeout:g} s; reconnecting")
            )
        # ConnectionLost: _lost() already handled it.

    def _cancel_ping(self) -> None:
        if self._ping_call is not None and self._ping_call.active():
            self._ping_call.cancel()
        self._ping_call = None

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class AMIClientPool:
    """One AMIClient per configured server, started and stopped together; actions addressed by name."""

    def __init__(
        self,
        servers: list[AsteriskServer] | tuple[AsteriskServer, ...],
        *,
        clock: IReactorTime,
        connector: Connector | None = None,
        on_message: OnMessage,
        on_connection: OnConnection,
        rng: random.Random | None = None,
    ) -> None:
        names = [s.name for s in servers]
        if len(set(names)) != len(names):
            raise ValueError(f"Asterisk server names must be unique: {names}")
        self.clients = {
            s.name: AMIClient(
                s, clock=clock, connector=connector, on_message=on_message, on_connection=on_connection, rng=rng
            )
            for s in servers
        }

    def __getitem__(self, name: str) -> AMIClient:
        return self.clients[name]

    def start(self) -> None:
        for client in self.clients.values():
            client.start()

    def stop(self) -> defer.Deferred[None]:
        d = defer.gatherResults([c.stop() for c in self.clients.values()], consumeErrors=True)
        return d.addCallback(lambda _: None)

    def send(
        self,
        server: str,
        name: str,
        fields: dict[str, str | list[str]] | None = None,
        *,
        timeout: float | None = None,
    ) -> defer.Deferred[ActionResult]:
        client = self.clients.get(server)
        if client is None:
            return defer.fail(NotConnected(f"no AMI server named {server!r}"))
        return client.send(name, fields, timeout=timeout)

    def batch(self, server: str) -> contextlib.AbstractContextManager[None]:
        """``AMIClient.batch`` of that server (a no-op for an unknown name: the sends fail on their own)."""
        client = self.clients.get(server)
        return client.batch() if client is not None else contextlib.nullcontext()
