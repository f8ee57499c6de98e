"""Twisted AMI client: one named, reconnecting, logged-in connection per Asterisk server; actions -> Deferreds.

A thin shell around the sans-I/O session in ``cti.ami.session`` (banner, login, Ping, ActionID
correlation and timeouts live there; parsing and encoding in ``cti.ami.protocol``): it feeds the session
the bytes it reads and the clock's time, writes what the session has to send, keeps one timer at the
session's next deadline, and turns the session's events into Deferreds, ``on_message`` and
``on_connection`` calls. Must not import the engines (acd, dialer, ivr, ...) or read the wall clock:
timers go through the ``clock`` it is given, TCP/TLS through ``connector``.

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
it is back tells how long it was down. ``state`` is the client's phase (stopped, connecting, waiting,
stopping) or, while a socket is open, its session's state (banner, challenge, login, ready, closing, closed).
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IConnector, IDelayedCall, IReactorTime, ITCPTransport
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.python.failure import Failure

from cti.ami.message import AMIMessage
from cti.ami.session import ERRORS as SESSION_ERRORS
from cti.ami.session import (
    ActionFailed,
    ActionSucceeded,
    AfterLogoff,
    AMISession,
    Closed,
    CloseReason,
    InputDropped,
    Ready,
    SessionEvent,
    SessionState,
    UnmatchedResponse,
)
from cti.ami.settings import AsteriskServer
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
    "LinkPhase",
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
                    pem = fh.read()
                try:
                    trust = ssl.Certificate.loadPEM(pem)
                except Exception as exc:  # OpenSSL's own error says "no start line", not which file or why
                    raise ValueError(f"tls.ca_file {tls.ca_file}: not a PEM certificate") from exc
            options = ssl.optionsForClientTLS(tls.server_name or server.host, trustRoot=trust)
        wrapped = TLSMemoryBIOFactory(options, True, factory)
        return reactor.connectTCP(server.host, server.port, wrapped, timeout=server.connect_timeout)  # type: ignore[attr-defined]
    return reactor.connectTCP(server.host, server.port, factory, timeout=server.connect_timeout)  # type: ignore[attr-defined]


class AMIProtocol(Protocol):
    """Bytes in -> the client's session; bytes out, held while a read is handled; nothing else."""

    def __init__(self, client: AMIClient) -> None:
        self.client = client
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
        outer = self.held is None
        if outer:
            self.held = []
        try:
            self.client._received(self, data)
        finally:
            if outer:
                held, self.held = self.held, None
                if held and self.client._proto is self:
                    self.write(b"".join(held))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.client._lost(self, reason)


class _Factory(ClientFactory):
    def __init__(self, client: AMIClient) -> None:
        self.client = client

    def buildProtocol(self, addr: IAddress) -> Protocol:
        return AMIProtocol(self.client)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self.client._failed(connector, reason)


class LinkPhase(StrEnum):
    """The client's side of the lifecycle; while ``CONNECTED`` the session's state says more."""

    STOPPED = "stopped"
    CONNECTING = "connecting"
    CONNECTED = "connected"  # a socket is open: the session logs in, is ready, or has ended
    WAITING = "waiting"  # for the next attempt
    STOPPING = "stopping"


P = LinkPhase


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
        self.banner: str | None = None
        self.last_error: AMIError | None = None
        self._phase = P.STOPPED
        self._proto: AMIProtocol | None = None
        self._session: AMISession | None = None
        self._was_ready = False  # this connection's session logged in
        self._deferreds: dict[str, defer.Deferred[ActionResult]] = {}  # the session's pending actions, by ActionID
        self._due_call: IDelayedCall | None = None  # the session's next deadline (a timeout or the next Ping)
        self._due: float | None = None
        self._connector: IConnector | None = None
        self._timer: IDelayedCall | None = None  # reconnect wait or stop grace
        self._down_since: float | None = None  # first failure of the current outage (clock seconds)
        self._still_down_count = 0  # reminders logged in this outage
        self._failures = 0
        self._streak_kind = ""
        self._auth_failed = False
        self._attempt_error: AMIError | None = None
        self._stop_waiters: list[defer.Deferred[None]] = []

    @property
    def connected(self) -> bool:
        """Logged in (actions may be sent)."""
        session = self._session
        return session is not None and session.ready and self._phase is P.CONNECTED

    @property
    def state(self) -> str:
        """stopped, connecting, waiting (for the next attempt) or stopping; while connected, the session's
        state: banner, challenge, login, ready, closing or closed (an error ended it; the socket is closing)."""
        session = self._session
        if self._phase is P.CONNECTED and session is not None:
            return session.state.value
        return self._phase.value

    @property
    def where(self) -> str:
        return f"AMI {self.name} ({self.server.host}:{self.server.port})"

    # public API -----------------------------------------------------------------------
    def start(self) -> None:
        """Connect (and keep reconnecting) until stop()."""
        if self._phase is not P.STOPPED:
            return
        self._connect()

    def stop(self, *, lost: str | None = None) -> defer.Deferred[None]:
        """Log off, close the connection, cancel timers; fires when the socket is closed. ``lost``: the owner
        is told (``on_connection(name, False, lost)``, at once) if the connection was logged in, as when it
        drops (a stop at shutdown tells nobody)."""
        was_connected = self.connected
        self._cancel_timer()
        self._end_outage()
        proto = self._proto
        if proto is not None and self._phase is not P.STOPPING:
            self._phase = P.STOPPING
            transport = proto.transport
            assert transport is not None
            session = self._session
            if session is not None and session.state not in (SessionState.CLOSING, SessionState.CLOSED):
                session.logoff()  # writes Logoff if logged in
                data = session.data_to_send()
                if data:
                    proto.write(data)
                self._sync_due()
            transport.loseConnection()
            self._timer = self._clock.callLater(STOP_GRACE, transport.abortConnection)  # type: ignore[attr-defined]
        if lost is not None and was_connected:
            self._notify(False, lost)
        if self._phase is P.STOPPING:
            d: defer.Deferred[None] = defer.Deferred()
            self._stop_waiters.append(d)
            return d
        connector, self._connector = self._connector, None
        self._phase = P.STOPPED
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
        or ValueError for a field with CR/LF in it or an ActionID already pending.
        """
        session = self._session
        proto = self._proto
        if session is None or proto is None or not session.ready or self._phase is not P.CONNECTED:
            return defer.fail(NotConnected(f"{self.where} is not connected; {name} not sent"))
        seconds = timeout if timeout is not None else self.server.action_timeout
        try:
            now = self._clock.seconds()
            action_id = session.send_action(name, fields, now=now, timeout=seconds)
        except ValueError as exc:  # ActionRejected: bad or pending ActionID, CR/LF in a field; nothing sent
            return defer.fail(exc)
        d: defer.Deferred[ActionResult] = defer.Deferred(canceller=lambda _d: self._forget(action_id))
        self._deferreds[action_id] = d
        proto.write(session.data_to_send())
        due = self._due
        if due is None or due > now + seconds:  # else the timer already fires no later than this deadline
            self._sync_due()
        return d

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

    # internals: the session ------------------------------------------------------------------
    def _forget(self, action_id: str) -> None:
        """The caller cancelled the Deferred: stop waiting for the response."""
        self._deferreds.pop(action_id, None)
        if self._session is not None:
            self._session.forget(action_id)
            self._sync_due()

    def _received(self, proto: AMIProtocol, data: bytes) -> None:
        session = self._session
        if proto is not self._proto or session is None:
            return
        session.receive_data(data, self._clock.seconds())
        self._pump(session)

    def _pump(self, session: AMISession) -> None:
        """Write what the session has to send, act on what it reports, re-arm its timer."""
        data = session.data_to_send()
        if data and self._proto is not None:
            self._proto.write(data)
        events = session.events_received()
        while events:
            self._dispatch(events)
            events = session.events_received()
        if session is self._session:
            self._sync_due()

    def _dispatch(self, events: list[SessionEvent]) -> None:
        on_message = self._on_message
        name = self.name
        for event in events:
            if isinstance(event, AMIMessage):
                try:
                    on_message(name, event)
                except Exception:
                    log.exception("%s: on_message failed for event %s", self.where, event.name)
            elif type(event) is ActionSucceeded:
                d = self._deferreds.pop(event.action_id, None)
                if d is not None:
                    d.callback(ActionResult(event.response, list(event.events)))
            elif type(event) is ActionFailed:
                self._action_failed(event)
            elif type(event) is UnmatchedResponse:
                log.debug("%s: response %s matches no pending action", self.where, event.message.name)
            elif type(event) is InputDropped:
                if event.discarded:
                    log.warning("%s: %s (%d bytes dropped)", self.where, event.reason, event.discarded)
                else:
                    log.warning("%s: %s", self.where, event.reason)
            elif type(event) is Ready:
                self._logged_in(event)
            elif type(event) is AfterLogoff:
                log.debug("%s: %s after stop() ignored", self.where, event.what)
            elif type(event) is Closed:
                self._session_closed(event)

    def _action_failed(self, event: ActionFailed) -> None:
        d = self._deferreds.pop(event.action_id, None)
        if d is None:
            return
        error: AMIError
        if event.error_id == "error-response":
            assert event.response is not None
            error = ActionError(self.name, event.action, event.response)
        elif event.error_id == "timeout":
            error = ActionTimeout(f"{self.where}: {event.detail}")
        else:
            error = ConnectionLost(f"{self.where}: connection lost ({event.detail}); {event.action} got no response")
        d.errback(error)

    def _session_closed(self, event: Closed) -> None:
        """The session ended itself (timeout, refused login, not AMI): drop the connection; _lost() retries."""
        if event.reason not in SESSION_ERRORS:
            return  # the stream ended: _lost() is handling it
        if event.reason is CloseReason.PING_TIMEOUT:
            error: AMIError = ActionTimeout(f"{self.where}: {event.detail}; reconnecting")
        elif event.reason is CloseReason.AUTH_FAILED:
            error = AuthenticationFailed(f"{self.where}: {event.detail}")
        elif event.reason is CloseReason.LOGIN_TIMEOUT:
            error = ActionTimeout(f"{self.where}: {event.detail}")
        else:
            error = ProtocolError(f"{self.where}: {event.detail}")
        self._give_up(error)

    def _sync_due(self) -> None:
        """Keep one timer at the session's next deadline (none when it has none)."""
        session = self._session
        due = session.next_deadline() if session is not None else None
        if due == self._due:
            return
        call = self._due_call
        if call is not None and call.active():
            call.cancel()
        self._due_call = None
        self._due = due
        if due is not None:
            self._due_call = self._clock.callLater(max(0.0, due - self._clock.seconds()), self._on_due, due)

    def _on_due(self, due: float) -> None:
        self._due_call = None
        self._due = None
        session = self._session
        if session is None:
            return
        session.tick(max(self._clock.seconds(), due))  # the timer was set for ``due``: float rounding aside
        self._pump(session)

    def _cancel_due(self) -> None:
        if self._due_call is not None and self._due_call.active():
            self._due_call.cancel()
        self._due_call = None
        self._due = None

    # internals: connection lifecycle ----------------------------------------------------
    def _connect(self) -> None:
        self._timer = None
        self._phase = P.CONNECTING
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
        if self._phase is not P.CONNECTING:
            return
        text = f"cannot connect: {reason.getErrorMessage()}"
        self.last_error = NotConnected(f"{self.where}: {text}")
        self._retry(text, "connect")

    def _made(self, proto: AMIProtocol) -> None:
        if self._phase is not P.CONNECTING:
            assert proto.transport is not None
            proto.transport.loseConnection()
            return
        server = self.server
        self._connector = None
        self._proto = proto
        self._phase = P.CONNECTED
        self._was_ready = False
        self._session = AMISession(
            username=server.username,
            secret=server.secret.get_secret_value(),
            now=self._clock.seconds(),
            auth=server.auth,
            banner_timeout=server.connect_timeout,
            login_timeout=server.action_timeout,
            ping_interval=server.ping_interval,
            ping_timeout=server.ping_timeout,
            action_id_prefix=server.name,
        )
        self._sync_due()

    def _logged_in(self, event: Ready) -> None:
        self.banner = event.banner
        again = self._was_ready  # (the first login after failures at start is not "again")
        self._was_ready = True
        self.last_error = None
        down_for = self._end_outage()
        if self._failures:
            took = f", {'down' if again else 'unreachable'} for {format_duration(down_for)}" \
                if down_for is not None else ""
            log.info("%s: logged in %safter %d failed attempt(s)%s", self.where, "again " if again else "",
                     self._failures, took)
        else:
            log.info("%s: logged in", self.where)
        self._failures = 0
        self._streak_kind = ""
        self._notify(True, f"logged in ({self.banner})")

    def _give_up(self, error: AMIError) -> None:
        """Close this connection because of ``error``; _lost() then schedules the retry."""
        self.last_error = self._attempt_error = error
        if isinstance(error, AuthenticationFailed):
            self._auth_failed = True
        proto = self._proto
        if proto is not None and proto.transport is not None:
            proto.transport.abortConnection()  # type: ignore[attr-defined]

    def _lost(self, proto: AMIProtocol, reason: Failure) -> None:
        if proto is not self._proto:
            return
        session = self._session
        self._proto = None
        self._session = None
        self._cancel_due()
        self._cancel_timer()
        was_ready = self._was_ready and self._phase is P.CONNECTED
        detail = reason.getErrorMessage()
        if session is not None:
            session.receive_eof(detail)  # pending actions fail (ConnectionLost); an unterminated message is logged
            events = session.events_received()
            if events:
                self._dispatch(events)
        left, self._deferreds = self._deferreds, {}
        for action_id, d in left.items():  # none expected: the session failed each one it held
            d.errback(ConnectionLost(f"{self.where}: connection lost ({detail}); {action_id} got no response"))
        if self._phase is P.STOPPING:
            self._phase = P.STOPPED
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
        self._phase = P.WAITING
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
        self._started: set[str] = set()  # the servers ``start_server`` asked for (and no ``stop_server`` since)

    def __getitem__(self, name: str) -> AMIClient:
        return self.clients[name]

    def start(self) -> None:
        for client in self.clients.values():
            client.start()

    def stop(self) -> defer.Deferred[None]:
        d = defer.gatherResults([c.stop() for c in self.clients.values()], consumeErrors=True)
        return d.addCallback(lambda _: None)

    def start_server(self, name: str) -> None:
        """Connect to ``name`` (and keep reconnecting) until ``stop_server`` or ``stop``: the server's lease is
        held (``centre.node_leases``). A connection still closing after ``stop_server`` is let close first."""
        client = self.clients[name]
        self._started.add(name)
        if client.state == LinkPhase.STOPPING.value:
            client.stop().addCallback(lambda _: client.start() if name in self._started else None)
        else:
            client.start()

    def stop_server(self, name: str, reason: str) -> defer.Deferred[None]:
        """Disconnect from ``name`` now, for ``reason`` (its lease is lost): ``on_connection(name, False,
        reason)`` runs at once if it was logged in, so that its tracked channels end here."""
        self._started.discard(name)
        return self.clients[name].stop(lost=reason)

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

    def getvars(self, server: str, channel: str, names: tuple[str, ...]) -> defer.Deferred[dict[str, str]]:
        """The values of ``names`` on ``channel`` (one AMI ``Getvar`` each; an unset variable is ""); fails
        with the first failure."""
        reads = [self.send(server, "Getvar", {"Channel": channel, "Variable": name}) for name in names]

        def first_failure(failure: Failure) -> Failure:
            """The failed Getvar itself (``gatherResults`` wraps it in a FirstError, whose message is a repr)."""
            return failure.value.subFailure if failure.check(defer.FirstError) else failure

        return defer.gatherResults(reads, consumeErrors=True).addCallbacks(
            lambda results: {n: str(r.response.get("Value") or "") for n, r in zip(names, results, strict=True)},
            first_failure)

    def batch(self, server: str) -> contextlib.AbstractContextManager[None]:
        """``AMIClient.batch`` of that server (a no-op for an unknown name: the sends fail on their own)."""
        client = self.clients.get(server)
        return client.batch() if client is not None else contextlib.nullcontext()
