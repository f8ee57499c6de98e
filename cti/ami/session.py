"""AMI client session, sans-I/O: banner, login, keepalive and ActionID correlation as a pure class. No I/O, no clock.

Bytes in (``receive_data(data, now)``, ``receive_eof()``), bytes out (``data_to_send()``), events out
(``events_received()``), time in (``now`` arguments, ``tick(now)``, ``next_deadline()``): the h11 /
websockets shape. The Twisted client (``cti.ami.client``) feeds it from a socket; tests and ``sim/``
feed it from memory. Parsing and encoding are the codec's (``cti.ami.protocol``). Must not import
Twisted, the engines or the clock.

Lifecycle (``TRANSITIONS``, an illegal move raises ``AMISessionError('illegal-transition')`` and
changes nothing)::

    banner --md5--> challenge --> login --> ready --logoff()--> closing --EOF--> closed
       \\--plain-------------------^     any state but closed --error/EOF--> closed

The server's first line must be an AMI banner (``Asterisk Call Manager/11.0.0``) within
``banner_timeout``; then ``md5``: ``Challenge`` (``AuthType: MD5``) and ``Login`` with ``Key =
md5(challenge + secret)``; ``plain``: ``Login`` with ``Secret``. Each login step must be answered within
``login_timeout``. Once logged in, a ``Ping`` goes out ``ping_interval`` after the last answer and must
be answered (Success or Error: either shows the link is alive) within ``ping_timeout``. The secret
never appears in an error, an event or the repr.

Actions: ``send_action()`` allocates an ActionID (or takes the caller's), encodes the action into
``data_to_send()`` and keeps it pending until its response (``ActionSucceeded`` / ``ActionFailed``
with ``error-response``), or, for a list action (``EventList: start``), until the list's ``Complete``
event: the result carries the item events and the closing one. An action unanswered by its deadline
fails with ``timeout``; when the session closes every pending action fails with ``closed``.

Events out (frozen values), in the order things happened::

    AMIMessage          an Event from the server (list items too, before their action's result)
    Ready               logged in (carries the banner)
    ActionSucceeded     a caller's action answered (list actions: with their events)
    ActionFailed        error-response | timeout | closed
    UnmatchedResponse   a response for no pending action (unknown or missing ActionID, or too late)
    InputDropped        bytes the codec could not read, or a message that is neither Event nor Response
    AfterLogoff         input that crossed our logoff() and means nothing now (a banner in flight)
    Closed              the session ended; ``reason`` (``CloseReason``) says why; nothing follows it

Errors (``AMISessionError``, with a stable ``error_id``)::

    AMISessionError        illegal-transition, not-ready
    +-- ActionRejected     (also a ValueError) bad-action-id, duplicate-action-id, bad-field
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from cti.ami.message import AMIMessage
from cti.ami.protocol import BANNER_MAX_BYTES, ActionIdAllocator, AMIParser, Banner, EventListCollector, encode

__all__ = [
    "AMISession",
    "AMISessionError",
    "ActionFailed",
    "ActionRejected",
    "ActionSucceeded",
    "AfterLogoff",
    "CloseReason",
    "Closed",
    "InputDropped",
    "Ready",
    "SessionEvent",
    "SessionState",
    "Trigger",
    "UnmatchedResponse",
]

Fields = dict[str, str | list[str]]


class AMISessionError(Exception):
    """A request the session refuses in its state. ``error_id`` is stable; the message never holds the secret."""

    def __init__(self, error_id: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message
        self.details = details


class ActionRejected(AMISessionError, ValueError):
    """An action that cannot be sent as given (bad or duplicate ActionID, CR/LF in a field); nothing was sent."""


class SessionState(StrEnum):
    BANNER = "banner"  # connected, waiting for the server's first line
    CHALLENGE = "challenge"  # MD5: Challenge sent
    LOGIN = "login"  # Login sent
    READY = "ready"  # logged in: actions may be sent
    CLOSING = "closing"  # logoff() asked for the end; waiting for EOF
    CLOSED = "closed"


class Trigger(StrEnum):
    CHALLENGE = "challenge"  # a good banner, md5 auth: Challenge sent
    LOGIN = "login"  # Login sent (after the banner, or after the challenge)
    LOGGED_IN = "logged_in"
    LOGOFF = "logoff"
    CLOSE = "close"  # EOF, or an error that ends the session


S = SessionState
T = Trigger

#: TRANSITIONS[state][trigger] -> new state. Anything missing is illegal.
TRANSITIONS: dict[SessionState, dict[Trigger, SessionState]] = {
    S.BANNER: {T.CHALLENGE: S.CHALLENGE, T.LOGIN: S.LOGIN, T.LOGOFF: S.CLOSING, T.CLOSE: S.CLOSED},
    S.CHALLENGE: {T.LOGIN: S.LOGIN, T.LOGOFF: S.CLOSING, T.CLOSE: S.CLOSED},
    S.LOGIN: {T.LOGGED_IN: S.READY, T.LOGOFF: S.CLOSING, T.CLOSE: S.CLOSED},
    S.READY: {T.LOGOFF: S.CLOSING, T.CLOSE: S.CLOSED},
    S.CLOSING: {T.CLOSE: S.CLOSED},
    S.CLOSED: {},
}


class CloseReason(StrEnum):
    LOGOFF = "logoff"  # we asked for it (logoff()), then the stream ended
    CONNECTION_LOST = "connection-lost"  # the stream ended while logged in
    CLOSED_BEFORE_LOGIN = "closed-before-login"  # the stream ended during banner or login
    BANNER_TIMEOUT = "banner-timeout"
    NOT_AMI = "not-ami"  # the first line is not an AMI banner
    LOGIN_TIMEOUT = "login-timeout"
    AUTH_FAILED = "auth-failed"  # Challenge or Login answered with an error
    PING_TIMEOUT = "ping-timeout"


#: Close reasons that are the session's own verdict (the caller should drop the connection).
ERRORS = frozenset({CloseReason.BANNER_TIMEOUT, CloseReason.NOT_AMI, CloseReason.LOGIN_TIMEOUT,
                    CloseReason.AUTH_FAILED, CloseReason.PING_TIMEOUT})

FailureKind = Literal["error-response", "timeout", "closed"]


@dataclass(frozen=True, slots=True)
class Ready:
    """Logged in; actions may be sent."""

    banner: str


@dataclass(frozen=True, slots=True)
class ActionSucceeded:
    """The response to a caller's action; for a list action, its item events then the closing event."""

    action_id: str
    action: str
    response: AMIMessage
    events: tuple[AMIMessage, ...] = ()


@dataclass(frozen=True, slots=True)
class ActionFailed:
    """A caller's action failed: ``error-response`` (``response`` holds it), ``timeout`` or ``closed``."""

    action_id: str
    action: str
    error_id: FailureKind
    detail: str
    response: AMIMessage | None = None


@dataclass(frozen=True, slots=True)
class UnmatchedResponse:
    """A response for no pending action: no ActionID, an unknown one, or an answer after its timeout."""

    message: AMIMessage


@dataclass(frozen=True, slots=True)
class InputDropped:
    """Input the session could not use; ``discarded`` bytes were dropped (0: a whole message was ignored)."""

    reason: str
    discarded: int


@dataclass(frozen=True, slots=True)
class AfterLogoff:
    """Input that crossed our ``logoff()`` (``what``: ``banner``): expected, and ignored."""

    what: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The session ended. ``detail`` is for people (never holds the secret); nothing follows this event."""

    reason: CloseReason
    detail: str


SessionEvent = (AMIMessage | Ready | ActionSucceeded | ActionFailed | UnmatchedResponse | InputDropped | AfterLogoff
                | Closed)

_CHALLENGE = "challenge"
_LOGIN = "login"
_PING = "ping"


class _Pending:
    """One action waiting for its response. ``purpose`` is None for the caller's actions."""

    __slots__ = ("action", "deadline", "purpose", "timeout")

    def __init__(self, action: str, deadline: float, timeout: float, purpose: str | None) -> None:
        self.action = action
        self.deadline = deadline
        self.timeout = timeout
        self.purpose = purpose


class AMISession:
    """One AMI connection's protocol state, client side. See the module docstring."""

    __slots__ = (
        "_auth",
        "_banner_bytes",
        "_banner_deadline",
        "_banner_timeout",
        "_deadlines",
        "_due",
        "_due_known",
        "_events",
        "_events_on",
        "_ids",
        "_lists",
        "_login_timeout",
        "_out",
        "_parser",
        "_pending",
        "_ping_due",
        "_ping_interval",
        "_ping_timeout",
        "_secret",
        "_state",
        "banner",
        "username",
    )

    def __init__(
        self,
        *,
        username: str,
        secret: str,
        now: float,
        auth: Literal["md5", "plain"] = "md5",
        events: bool | None = True,
        banner_timeout: float = 10.0,
        login_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float = 10.0,
        action_id_prefix: str = "cti",
        next_action_id: Callable[[], str] | None = None,
        max_message_bytes: int = 1_048_576,
    ) -> None:
        """A session whose connection opened at ``now``. ``ping_interval=None``: no keepalive. ``events``: the
        Login's ``Events: on``/``off``; None sends no Events header (the AMI user's default applies).

        ActionIDs are ``{action_id_prefix}-{n}``, unique in the process, unless ``next_action_id`` gives them
        (a replay of a recorded conversation uses the recorded ones)."""
        if auth not in ("md5", "plain"):
            raise ValueError(f"auth must be 'md5' or 'plain', not {auth!r}")
        self.username = username
        self._secret = secret
        self._auth = auth
        self._events_on = events
        self._login_timeout = login_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._ids = next_action_id or ActionIdAllocator(action_id_prefix).next
        self._parser = AMIParser(max_message_bytes=max_message_bytes)
        self._lists = EventListCollector()
        self._pending: dict[str, _Pending] = {}
        self._deadlines: list[tuple[float, str]] = []  # heap; entries whose action is gone are skipped
        self._out: list[bytes] = []
        self._events: list[SessionEvent] = []
        self._state = S.BANNER
        self._banner_timeout = banner_timeout
        self._banner_bytes = 0  # read while waiting for the banner
        self._banner_deadline: float | None = now + banner_timeout
        self._ping_due: float | None = None
        self._due: float | None = None  # next_deadline(), remembered until a deadline changes
        self._due_known = False
        self.banner: str | None = None

    def __repr__(self) -> str:
        return f"<AMISession {self.username!r} {self._state.value}, {len(self._pending)} pending>"

    # state ------------------------------------------------------------------------------
    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def ready(self) -> bool:
        return self._state is S.READY

    @property
    def pending(self) -> int:
        """Actions waiting for a response (the session's own login steps and Ping included)."""
        return len(self._pending)

    def _move(self, trigger: Trigger) -> None:
        try:
            self._state = TRANSITIONS[self._state][trigger]
        except KeyError:
            raise AMISessionError("illegal-transition", f"AMI session cannot {trigger.value} while {self._state.value}",
                                  state=self._state.value, request=trigger.value) from None

    # output -----------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """Bytes to write to the server, in order; empty if none. Each call takes them."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def events_received(self) -> list[SessionEvent]:
        """What happened since the last call, in order. Each call takes them."""
        events = self._events
        if events:
            self._events = []
        return events

    def next_deadline(self) -> float | None:
        """When ``tick()`` next has something to do (a timeout or the next Ping), or None."""
        if self._due_known:  # the shell asks after every read: most reads change no deadline
            return self._due
        due = self._banner_deadline
        ping = self._ping_due
        if ping is not None and (due is None or ping < due):
            due = ping
        heap = self._deadlines
        pending = self._pending
        while heap:
            deadline, action_id = heap[0]
            entry = pending.get(action_id)
            if entry is None or entry.deadline != deadline:
                heapq.heappop(heap)  # answered, cancelled or re-sent: a stale entry
                continue
            if due is None or deadline < due:
                due = deadline
            break
        self._due = due
        self._due_known = True
        return due

    # time -------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Apply what is due at ``now``: timeouts (actions fail, or the session closes) and the keepalive Ping."""
        if self._state is S.CLOSED:
            return
        self._due_known = False
        if self._banner_deadline is not None and now >= self._banner_deadline:
            self._close(CloseReason.BANNER_TIMEOUT, f"sent no AMI banner within {self._banner_timeout:g} s")
            return
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, action_id = heapq.heappop(heap)
            entry = self._pending.get(action_id)
            if entry is None or entry.deadline != deadline:
                continue
            del self._pending[action_id]
            self._lists.discard(action_id)
            if entry.purpose is None:
                self._events.append(ActionFailed(action_id, entry.action, "timeout",
                                                 f"no response to {entry.action} within {entry.timeout:g} s"))
            elif entry.purpose == _PING:
                self._close(CloseReason.PING_TIMEOUT, f"no answer to Ping within {entry.timeout:g} s")
                return
            else:
                self._close(CloseReason.LOGIN_TIMEOUT, f"no response to {entry.action} within {entry.timeout:g} s")
                return
        if self._ping_due is not None and now >= self._ping_due and self._state is S.READY:
            self._ping_due = None
            self._queue("Ping", {}, now, self._ping_timeout, _PING)

    # input ------------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the server, read at ``now`` (any split). Ignored once closed (bytes in flight)."""
        if self._state is S.CLOSED:
            return
        events = self._events
        lists = self._lists
        items = self._parser.feed(data)
        if self._state is S.BANNER and not items:
            # The codec stops looking for the banner past BANNER_MAX_BYTES and discards up to a blank line
            # that a non-AMI peer may never send: say so now rather than at the banner timeout.
            self._banner_bytes += len(data)
            if self._banner_bytes > BANNER_MAX_BYTES:
                self._close(CloseReason.NOT_AMI, f"does not speak AMI: no AMI banner line within "
                            f"{BANNER_MAX_BYTES} bytes")
            return
        collecting = len(lists) > 0
        for item in items:
            if isinstance(item, AMIMessage):
                kind = item.kind
                if kind == "event":  # the hot path: most of the stream
                    events.append(item)
                    if collecting:
                        done = lists.add(item)
                        if done is not None:
                            response, list_items = done
                            self._complete(response.action_id, response, list_items, now)  # type: ignore[arg-type]
                            collecting = len(lists) > 0
                    continue
                if kind == "response":
                    self._response(item, now)
                    collecting = len(lists) > 0
                else:
                    events.append(InputDropped(
                        f"ignored a message with neither Event nor Response ({len(item)} headers)", 0))
            elif isinstance(item, Banner):
                self._banner(item, now)
            elif self._state is S.BANNER:
                self._close(CloseReason.NOT_AMI, f"does not speak AMI: {item.reason}")
            else:
                events.append(InputDropped(item.reason, item.discarded))
            if self._state is S.CLOSED:
                return

    def receive_eof(self, detail: str = "the server closed the connection") -> None:
        """The stream ended (``detail`` says how, for people). Ends the session unless it already ended."""
        if self._state is S.CLOSED:
            return
        for error in self._parser.feed_eof():  # an unterminated message is reported, not dropped silently
            self._events.append(InputDropped(error.reason, error.discarded))
        if self._state is S.CLOSING:
            self._close(CloseReason.LOGOFF, detail)
        elif self._state is S.READY:
            self._close(CloseReason.CONNECTION_LOST, detail)
        else:
            self._close(CloseReason.CLOSED_BEFORE_LOGIN, detail)

    # requests ---------------------------------------------------------------------------
    def send_action(self, name: str, fields: Fields | None = None, *, now: float, timeout: float) -> str:
        """Queue action ``name`` (answer due by ``now + timeout``); return its ActionID.

        ``fields`` may carry the caller's own ``ActionID`` (to match e.g. a later OriginateResponse).
        Raises ``AMISessionError('not-ready')`` before login or after close, ``ActionRejected`` for a bad
        or pending ActionID or a field with CR/LF (nothing is sent then)."""
        if self._state is not S.READY:
            raise AMISessionError("not-ready", f"AMI session is {self._state.value}; {name} not sent",
                                  state=self._state.value)
        return self._queue(name, fields, now, timeout, None)

    def forget(self, action_id: str) -> bool:
        """Stop waiting for ``action_id`` (the caller gave up on it): no event will come for it."""
        entry = self._pending.pop(action_id, None)
        self._lists.discard(action_id)
        self._due_known = False
        return entry is not None

    def logoff(self) -> None:
        """End the session: sends Logoff if logged in; pending actions fail when the stream ends."""
        was_ready = self._state is S.READY
        self._move(T.LOGOFF)
        self._due_known = False
        self._banner_deadline = None
        self._ping_due = None
        if was_ready:
            self._out.append(encode(AMIMessage.action("Logoff", {"ActionID": self._ids()})))

    # internals --------------------------------------------------------------------------
    def _queue(self, name: str, fields: Fields | None, now: float, timeout: float, purpose: str | None) -> str:
        body = dict(fields) if fields else {}
        action_id: str | None = None
        for key in [k for k in body if k.lower() == "actionid"]:
            value = body.pop(key)
            if not isinstance(value, str) or not value:
                raise ActionRejected("bad-action-id", "ActionID must be a non-empty string")
            action_id = value
        if action_id is None:
            action_id = self._ids()
        elif action_id in self._pending:
            raise ActionRejected("duplicate-action-id", f"ActionID {action_id!r} is already waiting for a response",
                                 action_id=action_id)
        try:
            data = encode(AMIMessage.action(name, {"ActionID": action_id, **body}))
        except ValueError as exc:
            raise ActionRejected("bad-field", str(exc), action=name) from None
        deadline = now + timeout
        self._pending[action_id] = _Pending(name, deadline, timeout, purpose)
        heapq.heappush(self._deadlines, (deadline, action_id))
        self._due_known = False
        self._out.append(data)
        return action_id

    def _banner(self, banner: Banner, now: float) -> None:
        if self._state is not S.BANNER:
            if self._state is S.CLOSING:  # logoff() came while the banner was on its way: not a proxy's restart
                self._events.append(AfterLogoff("banner"))
            else:
                self._events.append(InputDropped(f"unexpected banner {banner.text[:80]!r} in the middle of the stream",
                                                 0))
            return
        if "Call Manager/" not in banner.text:
            self._close(CloseReason.NOT_AMI, f"does not speak AMI (banner {banner.text[:80]!r})")
            return
        self._banner_deadline = None
        self._due_known = False
        self.banner = banner.text
        if self._auth == "md5":
            self._move(T.CHALLENGE)
            self._queue("Challenge", {"AuthType": "MD5"}, now, self._login_timeout, _CHALLENGE)
        else:
            self._move(T.LOGIN)
            self._queue("Login", self._with_events({"Username": self.username, "Secret": self._secret}),
                        now, self._login_timeout, _LOGIN)

    def _with_events(self, fields: Fields) -> Fields:
        if self._events_on is not None:
            fields["Events"] = "on" if self._events_on else "off"
        return fields

    def _response(self, response: AMIMessage, now: float) -> None:
        action_id = response.action_id
        entry = self._pending.get(action_id) if action_id is not None else None
        if entry is None:
            self._events.append(UnmatchedResponse(response))
            return
        if entry.purpose is None and self._lists.start(response):
            return  # the items and the Complete event follow
        self._complete(action_id, response, [], now)  # type: ignore[arg-type]

    def _complete(self, action_id: str, response: AMIMessage, items: list[AMIMessage], now: float) -> None:
        entry = self._pending.pop(action_id, None)
        if entry is None:
            return
        self._due_known = False
        failed = response.name.lower() == "error"
        purpose = entry.purpose
        if purpose is None:
            if failed:
                self._events.append(ActionFailed(action_id, entry.action, "error-response",
                                                 response.get("Message") or "error", response))
            else:
                self._events.append(ActionSucceeded(action_id, entry.action, response, tuple(items)))
        elif self._state is S.CLOSING:
            return  # a login step or Ping answered after logoff(): nothing to do
        elif purpose == _PING:
            if self._state is S.READY and self._ping_interval is not None:
                self._ping_due = now + self._ping_interval  # an Error answer shows a live link all the same
        elif failed:
            self._close(CloseReason.AUTH_FAILED, f"login as {self.username!r} refused "
                        f"({response.get('Message') or 'error'}); check username and secret")
        elif purpose == _CHALLENGE:
            if self._state is not S.CHALLENGE:
                return
            challenge = response.get("Challenge") or ""
            key = hashlib.md5((challenge + self._secret).encode("utf-8")).hexdigest()
            self._move(T.LOGIN)
            self._queue("Login", self._with_events({"AuthType": "MD5", "Username": self.username, "Key": key}),
                        now, self._login_timeout, _LOGIN)
        elif self._state is S.LOGIN:
            self._move(T.LOGGED_IN)
            if self._ping_interval is not None:
                self._ping_due = now + self._ping_interval
            self._events.append(Ready(self.banner or ""))

    def _close(self, reason: CloseReason, detail: str) -> None:
        """End the session: every pending caller's action fails with ``closed``, then ``Closed``."""
        self._move(T.CLOSE)
        self._due_known = False
        self._banner_deadline = None
        self._ping_due = None
        pending, self._pending = self._pending, {}
        self._deadlines.clear()
        self._lists.clear()
        for action_id, entry in pending.items():
            if entry.purpose is None:
                self._events.append(ActionFailed(action_id, entry.action, "closed", detail))
        self._events.append(Closed(reason, detail))
