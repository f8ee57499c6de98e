"""Tests of the simulated AMI server (sim/ami_server.py, sim/ami_actions.py): sessions driven in virtual
time, by the client's own sans-I/O AMI session (cti/ami/session.py) joined to them in memory (``Pair``,
h11's ConnectionPair), or with raw bytes (``Conn``) where the test is about what a client would not send
(actions before login, no ActionID, junk); and one run over a real TCP socket on 127.0.0.1."""

from __future__ import annotations

import hashlib
import socket

from cti.ami.message import AMIMessage
from cti.ami.protocol import AMIParser
from cti.ami.session import (
    ActionFailed,
    ActionSucceeded,
    Closed,
    CloseReason,
    Ready,
    SessionEvent,
)
from cti.ami.session import AMISession as ClientSession
from sim.ami_server import AMIServer, AMIServerFactory, AMISession
from sim.clock import VirtualClock
from sim.dialplan import dialplan_from_data
from sim.pbx import Pbx

PLAN = {"contexts": {
    "sim": {"hold": ["Answer()", "Wait(120)", "Hangup()"], "busy": ["Busy(5)"]},
    "inbound": {"park": ["Answer()", "Wait(120)", "Hangup()"]},
    "redirected": {"s": ["NoOp(r)", "Wait(60)", "Hangup()"]},
}}


class Conn:
    """One in-memory manager connection: bytes written by the server are parsed as they come."""

    def __init__(self, server: AMIServer) -> None:
        self.parser = AMIParser(expect_banner=True)
        self.items: list[object] = []
        self.closed = False
        self.session: AMISession = server.open_session(self._recv, self._close)

    def _recv(self, data: bytes) -> None:
        self.items.extend(self.parser.feed(data))

    def _close(self) -> None:
        self.closed = True

    def send(self, action: str, **fields: str) -> None:
        lines = [f"Action: {action}"] + [f"{k}: {v}" for k, v in fields.items()]
        self.session.data_received(("\r\n".join(lines) + "\r\n\r\n").encode())

    def messages(self) -> list[AMIMessage]:
        return [m for m in self.items if isinstance(m, AMIMessage)]

    def responses(self) -> list[AMIMessage]:
        return [m for m in self.messages() if m.kind == "response"]

    def events(self, name: str | None = None) -> list[AMIMessage]:
        return [m for m in self.messages() if m.kind == "event" and (name is None or m.name == name)]


class Pair:
    """The client's AMI session joined in memory to a session of the simulated server: what one sends the
    other receives, at the virtual clock's time, until both are quiet."""

    def __init__(self, server: AMIServer, clock: VirtualClock, *, auth: str = "plain", secret: str = "cti-secret",
                 events: bool = True) -> None:
        self.clock = clock
        self.client = ClientSession(username="cti", secret=secret, now=clock.seconds(), auth=auth,  # type: ignore[arg-type]
                                    events=events, ping_interval=None, action_id_prefix="pair")
        self.events: list[SessionEvent] = []
        self._inbox: list[bytes] = []
        self._eof = False
        self._pumping = False
        self.server_side: AMISession = server.open_session(self._from_server, self._server_closed)
        self.pump()

    def _from_server(self, data: bytes) -> None:
        self._inbox.append(data)
        self.pump()

    def _server_closed(self) -> None:
        self._eof = True
        self.pump()

    def pump(self) -> None:
        if self._pumping or not hasattr(self, "server_side"):
            return  # the server writes from inside our call (or open_session): the running pump takes it
        self._pumping = True
        try:
            while True:
                if self._inbox:
                    data = b"".join(self._inbox)
                    self._inbox.clear()
                    self.client.receive_data(data, self.clock.seconds())
                elif out := self.client.data_to_send():
                    self.server_side.data_received(out)
                elif self._eof:
                    self._eof = False
                    self.client.receive_eof("the simulated server closed the connection")
                else:
                    break
            self.events.extend(self.client.events_received())
        finally:
            self._pumping = False

    def run_for(self, seconds: float) -> None:
        """Virtual time passes for both sides."""
        self.clock.run_for(seconds)
        self.client.tick(self.clock.seconds())
        self.pump()

    def send(self, action: str, **fields: str) -> ActionSucceeded | ActionFailed | None:
        """Send ``action``; its result if it came while the pair was pumping, else None (see ``result``)."""
        action_id = self.client.send_action(action, dict(fields), now=self.clock.seconds(), timeout=10.0)
        self.pump()
        return self.result(action_id)

    def result(self, action_id: str) -> ActionSucceeded | ActionFailed | None:
        for e in self.events:
            if isinstance(e, ActionSucceeded | ActionFailed) and e.action_id == action_id:
                return e
        return None

    def messages(self, name: str | None = None) -> list[AMIMessage]:
        return [e for e in self.events if isinstance(e, AMIMessage) and (name is None or e.name == name)]

    def closed(self) -> Closed | None:
        return next((e for e in self.events if isinstance(e, Closed)), None)


def _setup() -> tuple[VirtualClock, Pbx, AMIServer]:
    clock = VirtualClock()
    pbx = Pbx(clock, dialplan_from_data(PLAN))
    return clock, pbx, AMIServer(pbx, {"cti": "cti-secret"})


def _login(conn: Conn) -> None:
    conn.send("Login", ActionID="l1", Username="cti", Secret="cti-secret")


def test_login_then_fullybooted_and_own_successfulauth() -> None:
    """The client's session logs in with a plain secret; FullyBooted then this session's own
    SuccessfulAuth follow."""
    clock, _, server = _setup()
    pair = Pair(server, clock)
    assert pair.client.ready and isinstance(pair.events[0], Ready)
    assert [m.name for m in pair.messages()[:2]] == ["FullyBooted", "SuccessfulAuth"]


def test_wrong_secret_is_refused_after_a_second_and_closed_and_reported_elsewhere() -> None:
    """A wrong secret: nothing for ~1 s, then Authentication failed (the client's session closes with
    auth-failed) and the server closes; a logged-in session sees InvalidPassword at once. The secret never
    appears in any output."""
    clock, _, server = _setup()
    watcher = Pair(server, clock)
    bad = Pair(server, clock, secret="wrong-secret")
    assert bad.closed() is None and bad.client.state == "login"
    assert [e["AccountID"] for e in watcher.messages("InvalidPassword")] == ["cti"]
    bad.run_for(0.99)
    assert bad.closed() is None
    bad.run_for(0.02)
    closed = bad.closed()
    assert closed is not None and closed.reason is CloseReason.AUTH_FAILED and "Authentication failed" in closed.detail
    assert bad.server_side.closed
    everything = "".join(repr(e) for e in watcher.events + bad.events)
    assert "wrong-secret" not in everything


def test_md5_challenge_login_and_bad_key() -> None:
    """Challenge + MD5 key of challenge+secret logs in; a wrong key gives ChallengeResponseFailed to the
    others and, after the delay, Authentication failed and the close."""
    clock, _, server = _setup()
    watcher = Pair(server, clock)
    good = Pair(server, clock, auth="md5", events=False)
    assert good.client.ready and good.messages() == []  # Events: off
    bad = Pair(server, clock, auth="md5", secret="not-it")
    key = hashlib.md5((bad.server_side.challenge + "not-it").encode()).hexdigest()
    assert watcher.messages("ChallengeResponseFailed")[0]["Response"] == key
    bad.run_for(2)
    closed = bad.closed()
    assert closed is not None and closed.reason is CloseReason.AUTH_FAILED and bad.server_side.closed


def test_actions_before_login_are_denied_and_unknown_actions_refused() -> None:
    """Before login: Permission denied (+RequestNotAllowed). After: unknown action -> Invalid/unknown
    command with Asterisk's exact text, and Queues is unknown as in Asterisk 22."""
    clock, _, server = _setup()
    watcher = Conn(server)
    _login(watcher)
    conn = Conn(server)
    conn.send("Ping", ActionID="p")
    assert conn.responses()[0]["Message"] == "Permission denied"
    assert watcher.events("RequestNotAllowed")[0]["RequestType"] == "Action: Ping"
    _login(conn)
    conn.send("Queues", ActionID="q")
    assert conn.responses()[-1]["Message"] == (
        "Invalid/unknown command: Queues. Use Action: ListCommands to show available commands.")
    conn.session.data_received(b"Foo: bar\r\n\r\n")
    assert conn.responses()[-1]["Message"] == "Missing action in request"
    conn.send("Ping")
    last = conn.responses()[-1]
    assert last["Ping"] == "Pong" and "ActionID" not in last


def test_oversized_action_is_dropped_with_an_error_and_session_survives() -> None:
    """An action over the size limit is dropped with an error; the next action still works."""
    clock, _, server = _setup()
    conn = Conn(server)
    _login(conn)
    conn.session.data_received(b"Action: Ping\r\nX: " + b"a" * 70_000 + b"\r\n\r\n")
    conn.send("Ping", ActionID="after")
    assert conn.responses()[-2]["Response"] == "Error"
    assert conn.responses()[-1]["ActionID"] == "after"


def test_async_originate_redirect_setvar_getvar_hangup() -> None:
    """Originate (Async) gives OriginateResponse Reason 4; Getvar/Setvar/Redirect/Hangup act on the
    channel and answer with Asterisk's messages; unknown channels give its error texts."""
    clock, pbx, server = _setup()
    conn = Conn(server)
    _login(conn)
    conn.send("Originate", ActionID="o", Channel="Local/hold@sim", Context="inbound", Exten="park",
              Priority="1", CallerID='"Held" <+1555>', Async="true")
    clock.run_for(2)
    resp = conn.events("OriginateResponse")[0]
    assert (resp["Response"], resp["Reason"], resp["ActionID"]) == ("Success", "4", "o")
    name = resp["Channel"]
    conn.send("Getvar", ActionID="g", Channel=name, Variable="CALLERID(num)")
    assert conn.responses()[-1]["Value"] == "+1555"
    conn.send("Setvar", ActionID="s", Channel=name, Variable="CTI_NOTE", Value="vip")
    assert conn.responses()[-1]["Message"] == "Variable Set"
    conn.send("Redirect", ActionID="r", Channel=name, Context="redirected", Exten="s", Priority="1")
    assert conn.responses()[-1]["Message"] == "Redirect successful"
    clock.run_for(1)
    assert any(e["Context"] == "redirected" for e in conn.events("Newexten") if e["Channel"] == name)
    conn.send("Redirect", ActionID="r2", Channel="Local/nosuch-00000000;1", Context="x", Exten="s", Priority="1")
    assert conn.responses()[-1]["Message"] == "Channel does not exist: Local/nosuch-00000000;1"
    conn.send("Hangup", ActionID="h", Channel=name, Cause="16")
    assert conn.responses()[-1]["Message"] == "Channel Hungup"
    clock.run_for(1)
    assert pbx.channels == {}
    conn.send("Hangup", ActionID="h2", Channel=name)
    assert conn.responses()[-1]["Message"] == "No such channel"


def test_sync_originate_holds_events_until_the_response() -> None:
    """Without Async the response comes when the call is answered (or Error: Originate failed), and
    the session's events are held until after it, as Asterisk does; no OriginateResponse event."""
    clock, _, server = _setup()
    conn = Conn(server)
    _login(conn)
    before = len(conn.messages())
    conn.send("Originate", ActionID="sync", Channel="Local/hold@sim", Context="inbound", Exten="park")
    conn.send("Ping", ActionID="after")
    assert len(conn.messages()) == before  # nothing yet: the session is busy, events are held
    clock.run_for(2)
    new = conn.messages()[before:]
    assert new[0].kind == "response" and new[0]["ActionID"] == "sync" and new[0]["Response"] == "Success"
    assert new[1].name == "Newchannel"
    assert conn.responses()[-1]["ActionID"] == "after"
    assert conn.events("OriginateResponse") == []
    conn.send("Originate", ActionID="busy", Channel="Local/busy@sim", Context="inbound", Exten="park")
    clock.run_for(2)
    assert [r["Message"] for r in conn.responses() if r["ActionID"] == "busy"] == ["Originate failed"]
    conn.send("Originate", ActionID="nochan", Context="inbound", Exten="park")
    assert conn.responses()[-1]["Message"] == "Channel not specified"


def test_core_show_channels_list_and_command() -> None:
    """CoreShowChannels is an event list with Asterisk's shapes (the client's session collects it);
    Command core show version answers with one Output line; an unknown CLI command is an Error of the
    same shape; Logoff says goodbye and closes."""
    clock, _, server = _setup()
    pair = Pair(server, clock)
    pair.send("Originate", Channel="Local/hold@sim", Context="inbound", Exten="park", Async="1")
    pair.run_for(2)
    listing = pair.send("CoreShowChannels")
    assert isinstance(listing, ActionSucceeded)
    assert listing.response["EventList"] == "start" and listing.response["Message"] == "Channels will follow"
    assert [m.name for m in listing.events] == ["CoreShowChannel", "CoreShowChannel", "CoreShowChannelsComplete"]
    assert listing.events[-1]["ListItems"] == "2" and "Privilege" not in listing.events[0]
    version = pair.send("Command", Command="core show version")
    assert isinstance(version, ActionSucceeded) and version.response.getall("Output")[0].startswith("Asterisk 22.10.1")
    unknown = pair.send("Command", Command="core show nosuchthing")
    assert isinstance(unknown, ActionFailed) and unknown.error_id == "error-response"
    pair.client.logoff()
    pair.pump()
    assert pair.closed() == Closed(CloseReason.LOGOFF, "the simulated server closed the connection")
    assert pair.server_side.closed


def test_logoff_says_goodbye_and_closes() -> None:
    """Logoff answers Goodbye with Asterisk's message and closes the connection."""
    clock, _, server = _setup()
    conn = Conn(server)
    _login(conn)
    conn.send("Logoff", ActionID="bye")
    assert conn.responses()[-1]["Message"] == "Thanks for all the fish." and conn.closed


def test_banner_login_ping_logoff_over_a_real_socket() -> None:
    """Banner, Login (split across writes), Ping and Logoff over TCP on 127.0.0.1 (ephemeral port), the
    server on the project's asyncio reactor and an asyncio client on the same loop; TCP_NODELAY is on."""
    import asyncio

    from twisted.internet import reactor

    pbx = Pbx(reactor, dialplan_from_data(PLAN))  # type: ignore[arg-type]
    server = AMIServer(pbx, {"cti": "cti-secret"})
    factory = AMIServerFactory(server)
    nodelay: list[int] = []
    build = factory.buildProtocol

    def built(addr: object) -> object:
        proto = build(addr)  # type: ignore[arg-type]
        made = proto.connectionMade

        def made_and_checked() -> None:
            made()
            nodelay.append(proto.transport.getHandle().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        proto.connectionMade = made_and_checked  # type: ignore[method-assign]
        return proto

    factory.buildProtocol = built  # type: ignore[method-assign]
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]

    async def client() -> tuple[bytes, bytes, bytes]:
        r, w = await asyncio.open_connection("127.0.0.1", port.getHost().port)
        banner = await r.readuntil(b"\r\n")
        login = b"Action: Login\r\nUsername: cti\r\nSecret: cti-secret\r\n\r\nAction: Ping\r\nActionID: p\r\n\r\n"
        w.write(login[:17])
        await w.drain()
        w.write(login[17:])
        replies = await r.readuntil(b"Ping: Pong\r\n")
        w.write(b"Action: Logoff\r\n\r\n")
        goodbye = await r.read()  # until the server closes
        w.close()
        return banner, replies, goodbye

    loop = getattr(reactor, "_asyncioEventloop", None) or asyncio.get_event_loop()
    try:
        banner, replies, goodbye = loop.run_until_complete(asyncio.wait_for(client(), 10))
    finally:
        loop.run_until_complete(asyncio.ensure_future(port.stopListening().asFuture(loop)))
        server.close()
    assert banner == b"Asterisk Call Manager/11.0.0\r\n"
    assert b"Message: Authentication accepted" in replies and b"ActionID: p" in replies
    assert b"Response: Goodbye" in goodbye
    assert nodelay and nodelay[0]  # events leave as they happen (no Nagle delay), as from a real Asterisk


def test_hostile_input_gets_errors_and_loses_nothing() -> None:
    """Binary junk, a catastrophic regex, absurd Originate fields: clear errors, the session lives on."""
    clock, pbx, server = _setup()
    conn = Conn(server)
    _login(conn)
    conn.session.data_received(bytes(range(256)) + b"\r\n\r\n")
    conn.send("Hangup", ActionID="rx", Channel="/(a+)+$/")
    assert conn.responses()[-1]["Message"] == "Regex too complex"
    conn.send("Originate", ActionID="t", Channel="Local/hold@sim", Context="inbound", Exten="park", Timeout="soon")
    assert conn.responses()[-1]["Message"] == "Invalid timeout"
    conn.send("Originate", ActionID="c", Channel="nonsense", Exten="park")
    assert conn.responses()[-1]["Message"] == "Invalid channel"
    conn.send("Ping", ActionID="alive")
    assert conn.responses()[-1]["Ping"] == "Pong"
    assert pbx.channels == {}


def test_unauthenticated_session_is_closed_after_auth_timeout() -> None:
    """A connection that never logs in is closed after the auth timeout (30 s)."""
    clock, _, server = _setup()
    conn = Conn(server)
    clock.run_for(29)
    assert not conn.closed
    clock.run_for(2)
    assert conn.closed and server.sessions == []


def test_client_that_stops_reading_is_dropped() -> None:
    """While the transport is paused output is held; past the limit the connection is aborted."""
    from twisted.internet.testing import StringTransport

    import sim.ami_server as ami_server

    clock, pbx, server = _setup()
    proto = AMIServerFactory(server).buildProtocol(None)  # type: ignore[arg-type]
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"Action: Login\r\nUsername: cti\r\nSecret: cti-secret\r\n\r\n")
    assert b"Authentication accepted" in transport.value()
    proto.pauseProducing()
    before = len(transport.value())
    limit = ami_server.MAX_HELD_OUTPUT
    ami_server.MAX_HELD_OUTPUT = 2000
    try:
        for _ in range(20):
            proto.dataReceived(b"Action: Ping\r\n\r\n")
        assert len(transport.value()) == before and proto.held_bytes > 0
        proto.resumeProducing()
        assert transport.value().count(b"Pong") == 20
        proto.pauseProducing()
        for _ in range(100):
            proto.dataReceived(b"Action: Ping\r\n\r\n")
    finally:
        ami_server.MAX_HELD_OUTPUT = limit
    assert transport.disconnecting or getattr(transport, "disconnected", False)
    assert server.sessions == []
