"""The simulated Asterisk Manager Interface: sessions (banner, Login plain/MD5, security events,
permission checks, event delivery, one action at a time) as a sans-I/O core, plus a thin Twisted
Protocol/Factory. Parses with cti/ami/protocol.py; call-control actions live in sim/ami_actions.py.
Imports no reactor: time comes from the injected clock, randomness from the PBX's seeded RNG.

Behaviour copied from login.txt and friends: a failed login is answered after ``auth_fail_delay``
(1 s) with ``Message: Authentication failed`` and the connection is closed; other sessions get
InvalidPassword / InvalidAccountID / ChallengeResponseFailed; actions before login get
``Permission denied`` (+ RequestNotAllowed); unknown actions ``Invalid/unknown command``
(+ RequestBadFormat). While a synchronous action (Originate without Async) runs, the session
processes nothing else and its events are held, then sent after the response, as Asterisk does.

Limits: an action larger than ``MAX_ACTION_BYTES`` is dropped with an error response; a session
that has not logged in after ``auth_timeout`` seconds is closed; at most ``max_sessions`` at once; a
TCP client that stops reading is dropped once ``MAX_HELD_OUTPUT`` bytes wait for it.
Secrets never reach logs: only user names are logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IPushProducer, IReactorTime, ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from cti.ami.message import AMIMessage
from cti.ami.protocol import AMIParser, ParseError, encode
from sim.ami_actions import ACTIONS
from sim.ami_read_classes import event_classes, event_mask
from sim.pbx import Pbx

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
MAX_ACTION_BYTES = 65_536
AUTH_FAIL_DELAY = 1.0
AUTH_TIMEOUT = 30.0
MAX_SESSIONS = 1000
MAX_PENDING_ACTIONS = 10_000  # actions queued behind a synchronous one before the session is cut
MAX_HELD_OUTPUT = 16 * 1024 * 1024  # bytes held for a client that does not read before it is dropped

Fields = Sequence[tuple[str, str]]
# An action handler: answer with ``session.respond``; return a Deferred to hold the session until done.
ActionHandler = Callable[["AMISession", AMIMessage], "Deferred[None] | None"]


@dataclass(frozen=True, slots=True)
class AmiUser:
    """A manager.conf user: name, secret and ``read`` classes (None: every class; write = all)."""

    username: str
    secret: str
    read: frozenset[str] | None = None


def _tv(epoch: float) -> str:
    t = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(epoch * 1000) % 1000:03d}+0000"


class AMIServer:
    """All AMI sessions of one simulated PBX: authentication, security events, event fan-out."""

    def __init__(self, pbx: Pbx, users: list[AmiUser] | dict[str, str], *, clock: IReactorTime | None = None,
                 auth_fail_delay: float = AUTH_FAIL_DELAY, auth_timeout: float = AUTH_TIMEOUT,
                 max_sessions: int = MAX_SESSIONS, actions: dict[str, ActionHandler] | None = None) -> None:
        self.pbx = pbx
        self.clock = clock or pbx.clock
        if isinstance(users, dict):
            users = [AmiUser(k, v) for k, v in users.items()]
        self.users = {u.username: u for u in users}
        self.auth_fail_delay = auth_fail_delay
        self.auth_timeout = auth_timeout
        self.max_sessions = max_sessions
        self.actions: dict[str, ActionHandler] = {k.lower(): v for k, v in (actions or ACTIONS).items()}
        self.sessions: list[AMISession] = []
        pbx.add_listener(self.broadcast)

    def close(self) -> None:
        self.pbx.remove_listener(self.broadcast)
        for session in list(self.sessions):
            session.close()

    def open_session(self, send: Callable[[bytes], None], close: Callable[[], None],
                     local: tuple[str, int] = ("127.0.0.1", 5038),
                     remote: tuple[str, int] = ("127.0.0.1", 0)) -> AMISession:
        session = AMISession(self, send, close, local, remote)
        if len(self.sessions) >= self.max_sessions:
            log.warning("AMI: refusing connection from %s:%d (max %d sessions)", *remote, self.max_sessions)
            session.close()
            return session
        self.sessions.append(session)
        session.start()
        return session

    def broadcast(self, msg: AMIMessage) -> None:
        for session in list(self.sessions):
            session.deliver(msg)

    def security_event(self, name: str, session: AMISession, fields: Fields) -> None:
        self.broadcast(AMIMessage([("Event", name), ("Privilege", "security,all"),
                                   ("EventTV", _tv(self.pbx.now_epoch())), *fields], "event"))

    def detach(self, session: AMISession) -> None:
        if session in self.sessions:
            self.sessions.remove(session)


class AMISession:
    """One manager connection, sans-I/O: ``data_received(bytes)`` in, ``send(bytes)`` out."""

    def __init__(self, server: AMIServer, send: Callable[[bytes], None], close: Callable[[], None],
                 local: tuple[str, int], remote: tuple[str, int]) -> None:
        self.server = server
        self.pbx = server.pbx
        self._send = send
        self._close = close
        self.local = local
        self.remote = remote
        self.parser = AMIParser(max_message_bytes=MAX_ACTION_BYTES, expect_banner=False)
        self.username = ""
        self.authenticated = False
        self.events_on = True
        self.event_mask: frozenset[str] | None = None  # Events: classes (None: every class)
        self.closed = False
        self.challenge = ""
        self.session_id = f"0x{self.pbx.rng.getrandbits(44):x}"
        self.session_tv = 0.0
        self._busy = False  # a synchronous action is running
        self._dying = False  # failed login: waiting to answer and close
        self._queue: list[AMIMessage] = []
        self._held: list[bytes] = []
        self._auth_timer: IDelayedCall | None = None

    # lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self._send(BANNER)
        if self.server.auth_timeout > 0:
            self._auth_timer = self.server.clock.callLater(self.server.auth_timeout, self._auth_expired)

    def _auth_expired(self) -> None:
        self._auth_timer = None
        if not self.authenticated and not self.closed:
            log.info("AMI: %s:%d did not log in within %.0f s, closing", *self.remote, self.server.auth_timeout)
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None
        self.server.detach(self)
        self._close()

    def connection_lost(self) -> None:
        self.closed = True
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None
        self.server.detach(self)

    # output -----------------------------------------------------------------------------------
    def write(self, msg: AMIMessage) -> None:
        if self.closed:
            return
        try:
            data = encode(msg)
        except ValueError as exc:
            log.warning("AMI: not sending a malformed message: %s", exc)
            return
        self._send(data)

    def respond(self, msg: AMIMessage, response: str, fields: Fields = ()) -> None:
        """``Response: X`` + the request's ActionID (if any) + ``fields``."""
        headers: list[tuple[str, str]] = [("Response", response)]
        if msg.action_id is not None:
            headers.append(("ActionID", msg.action_id))
        headers.extend(fields)
        self.write(AMIMessage(headers, "response"))

    def error(self, msg: AMIMessage, message: str) -> None:
        self.respond(msg, "Error", [("Message", message)])

    def success(self, msg: AMIMessage, message: str | None = None, fields: Fields = ()) -> None:
        self.respond(msg, "Success", ([("Message", message)] if message is not None else []) + list(fields))

    def list_item(self, msg: AMIMessage, event: str, fields: Fields, privilege: str | None = None) -> None:
        headers: list[tuple[str, str]] = [("Event", event)]
        if privilege is not None:
            headers.append(("Privilege", privilege))
        if msg.action_id is not None:
            headers.append(("ActionID", msg.action_id))
        headers.extend(fields)
        self.write(AMIMessage(headers, "event"))

    def list_complete(self, msg: AMIMessage, event: str, count: int, extra: Fields = ()) -> None:
        self.list_item(msg, event, [("EventList", "Complete"), ("ListItems", str(count)), *extra])

    def deliver(self, msg: AMIMessage) -> None:
        """A PBX-wide event: send it if this session is logged in with events on."""
        if self.closed or not self.authenticated or not self.events_on:
            return
        classes = event_classes(msg)
        if classes:
            # manager.c: a session gets an event only if its user may read every class of it and its
            # Events mask asks for them.
            user = self.server.users.get(self.username)
            if user is not None and user.read is not None and not classes <= user.read:
                return
            if self.event_mask is not None and not classes <= self.event_mask:
                return
        if self._busy:
            try:
                self._held.append(encode(msg))
            except ValueError:
                return
            return
        self.write(msg)

    # input ------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        for item in self.parser.feed(data):
            if isinstance(item, ParseError):
                log.warning("AMI: %s:%d sent an unparseable request (%s, %d bytes dropped)",
                            *self.remote, item.reason, item.discarded)
                self.write(AMIMessage([("Response", "Error"),
                                       ("Message", f"Request dropped: {item.reason}")], "response"))
                continue
            if not isinstance(item, AMIMessage):
                continue
            if self._busy or self._dying:
                if len(self._queue) >= MAX_PENDING_ACTIONS:
                    log.warning("AMI: %s:%d queued too many actions, closing", *self.remote)
                    self.close()
                    return
                self._queue.append(item)
                continue
            self._process(item)
            if self.closed:
                return

    def _process(self, msg: AMIMessage) -> None:
        action = (msg.get("Action") or "").strip()
        if not action:
            self.error(msg, "Missing action in request")
            return
        low = action.lower()
        if not self.authenticated and low not in ("login", "logoff", "challenge"):
            self.server.security_event("RequestNotAllowed", self, [
                ("Severity", "Error"), ("Service", "AMI"), ("EventVersion", "1"), ("AccountID", ""),
                *self._addr(), ("RequestType", f"Action: {action}"), ("SessionTV", _tv(0.0))])
            self.error(msg, "Permission denied")
            return
        if low == "login":
            self._login(msg)
            return
        if low == "challenge":
            self._challenge(msg)
            return
        if low == "logoff":
            self.respond(msg, "Goodbye", [("Message", "Thanks for all the fish.")])
            self.close()
            return
        handler = self.server.actions.get(low)
        if handler is None:
            self.server.security_event("RequestBadFormat", self, [
                ("Severity", "Error"), ("Service", "AMI"), ("EventVersion", "1"), *self._addr(),
                ("RequestType", f"Action: {action}"), ("SessionTV", _tv(self.session_tv)),
                ("AccountID", self.username)])
            self.error(msg, f"Invalid/unknown command: {action}. Use Action: ListCommands to show available commands.")
            return
        # Events the action causes reach this session after its response, as in Asterisk (the
        # session thread writes the response, then the queued events).
        self._busy = True
        try:
            result = handler(self, msg)
        except Exception:
            log.exception("AMI action %s failed", action)
            self.error(msg, "Internal error")
            result = None
        if isinstance(result, Deferred):
            result.addBoth(self._sync_done)
        else:
            self._busy = False
            self._flush_held()

    def _flush_held(self) -> None:
        held, self._held = self._held, []
        for data in held:
            if not self.closed:
                self._send(data)

    def _sync_done(self, result: object) -> None:
        if isinstance(result, Failure):
            log.error("AMI synchronous action failed: %s", result.getErrorMessage())
        self._busy = False
        self._flush_held()
        self._drain()

    def _drain(self) -> None:
        while self._queue and not self._busy and not self._dying and not self.closed:
            self._process(self._queue.pop(0))

    # authentication ---------------------------------------------------------------------------
    def _addr(self) -> Fields:
        return [("SessionID", self.session_id),
                ("LocalAddress", f"IPV4/TCP/{self.local[0]}/{self.local[1]}"),
                ("RemoteAddress", f"IPV4/TCP/{self.remote[0]}/{self.remote[1]}")]

    def _challenge(self, msg: AMIMessage) -> None:
        if (msg.get("AuthType") or "").lower() != "md5":
            self.error(msg, "Must specify AuthType")
            return
        if not self.challenge:
            self.challenge = str(self.pbx.rng.randrange(100_000_000, 999_999_999))
        self.success(msg, None, [("Challenge", self.challenge)])

    def _login(self, msg: AMIMessage) -> None:
        if self.authenticated:
            self.success(msg, "Already authenticated")
            return
        username = msg.get("Username") or ""
        user = self.server.users.get(username)
        md5 = (msg.get("AuthType") or "").lower() == "md5"
        if user is None:
            self.server.security_event("InvalidAccountID", self, [
                ("Severity", "Error"), ("Service", "AMI"), ("EventVersion", "1"), ("AccountID", username),
                *self._addr(), ("SessionTV", _tv(0.0))])
            self._fail_login(msg, username)
            return
        if md5:
            key = (msg.get("Key") or "").lower()
            expected = hashlib.md5((self.challenge + user.secret).encode()).hexdigest() if self.challenge else ""
            ok = bool(self.challenge) and hmac.compare_digest(key, expected)
            if not ok:
                self.server.security_event("ChallengeResponseFailed", self, [
                    ("Severity", "Error"), ("Service", "AMI"), ("EventVersion", "1"), ("AccountID", ""),
                    *self._addr(), ("Challenge", self.challenge), ("Response", msg.get("Key") or ""),
                    ("ExpectedResponse", expected), ("SessionTV", _tv(0.0))])
                self._fail_login(msg, username)
                return
        else:
            secret = msg.get("Secret") or ""
            if not hmac.compare_digest(secret.encode(), user.secret.encode()):
                self.server.security_event("InvalidPassword", self, [
                    ("Severity", "Error"), ("Service", "AMI"), ("EventVersion", "2"), ("AccountID", username),
                    *self._addr(), ("SessionTV", _tv(0.0))])
                self._fail_login(msg, username)
                return
        self.authenticated = True
        self.username = username
        self.session_tv = self.pbx.now_epoch()
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None
        events = (msg.get("Events") or "on").strip().lower()
        self.event_mask = event_mask(events)
        self.events_on = self.event_mask != frozenset()
        log.info("AMI: %s logged in from %s:%d", username, *self.remote)
        self.success(msg, "Authentication accepted")
        if self.events_on:
            uptime = str(max(int(self.pbx.now_epoch() - self.pbx.started), 1))
            self.write(AMIMessage([("Event", "FullyBooted"), ("Privilege", "system,all"), ("Uptime", uptime),
                                   ("LastReload", uptime), ("Status", "Fully Booted")], "event"))
        self.server.security_event("SuccessfulAuth", self, [
            ("Severity", "Informational"), ("Service", "AMI"), ("EventVersion", "1"), ("AccountID", username),
            *self._addr(), ("UsingPassword", "0"), ("SessionTV", _tv(self.session_tv))])

    def _fail_login(self, msg: AMIMessage, username: str) -> None:
        log.info("AMI: failed login for user %r from %s:%d", username[:64], *self.remote)
        self._dying = True

        def answer() -> None:
            if self.closed:
                return
            self.error(msg, "Authentication failed")
            self.close()

        self.server.clock.callLater(self.server.auth_fail_delay, answer)


# ---------------------------------------------------------------------------------------------
# Twisted glue
@implementer(IPushProducer)
class AMIServerProtocol(Protocol):
    """Feeds a TCP connection into an AMISession. Output flow control: while the transport asks us to
    pause (its buffer is full) output is held; past ``MAX_HELD_OUTPUT`` bytes the client is too slow
    and the connection is aborted (Asterisk drops such a session after ``writetimeout``)."""

    def __init__(self, server: AMIServer) -> None:
        self.server = server
        self.session: AMISession | None = None
        self.paused = False
        self.held: list[bytes] = []
        self.held_bytes = 0

    def connectionMade(self) -> None:
        assert self.transport is not None
        peer: IAddress = self.transport.getPeer()
        host: IAddress = self.transport.getHost()
        if ITCPTransport.providedBy(self.transport):
            # Events leave as they happen, as from a real Asterisk (the recorded transcripts show no Nagle
            # stalls): without this, a small event waits for the client's delayed ACK (up to 40 ms).
            self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
        self.transport.registerProducer(self, True)
        self.session = self.server.open_session(
            self._write, self.transport.loseConnection,
            (getattr(host, "host", "127.0.0.1"), getattr(host, "port", 5038)),
            (getattr(peer, "host", "127.0.0.1"), getattr(peer, "port", 0)))

    def _write(self, data: bytes) -> None:
        if self.transport is None:
            return
        if not self.paused:
            self.transport.write(data)
            return
        self.held.append(data)
        self.held_bytes += len(data)
        if self.held_bytes > MAX_HELD_OUTPUT:
            log.warning("AMI: a client reads too slowly (%d bytes waiting), dropping it", self.held_bytes)
            self.held.clear()
            self.held_bytes = 0
            if self.session is not None:
                self.session.connection_lost()
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # IPushProducer
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        held, self.held, self.held_bytes = self.held, [], 0
        for data in held:
            self._write(data)

    def stopProducing(self) -> None:
        self.held.clear()
        self.held_bytes = 0

    def dataReceived(self, data: bytes) -> None:
        if self.session is not None:
            self.session.data_received(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.session is not None:
            self.session.connection_lost()


class AMIServerFactory(Factory):
    """``reactor.listenTCP(port, AMIServerFactory(server))``."""

    def __init__(self, server: AMIServer) -> None:
        self.server = server

    def buildProtocol(self, addr: IAddress) -> AMIServerProtocol:
        return AMIServerProtocol(self.server)
