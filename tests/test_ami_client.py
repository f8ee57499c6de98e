"""Tests of the Twisted AMI client over real loopback TCP, asyncio reactor, timers on a task.Clock."""

from __future__ import annotations

import hashlib
import logging
import random
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import task
from twisted.internet.protocol import Factory, Protocol

from cti.ami.client import (
    ActionError,
    ActionResult,
    ActionTimeout,
    AMIClient,
    AMIClientPool,
    AuthenticationFailed,
    ConnectionLost,
    NotConnected,
    ProtocolError,
    backoff_delay,
)
from cti.ami.message import AMIMessage
from cti.ami.settings import AsteriskServer
from tests.amiserver import AMIServerFactory, AMIServerProtocol, listen, response, run_until, wait

SECRET = "cti-secret"


class Harness:
    """One client with recorded callbacks, a Clock for its timers and the real reactor for sockets."""

    def __init__(self, port: int, name: str = "pbx1", on_message: Callable[[str, AMIMessage], None] | None = None,
                 **overrides: Any) -> None:
        self.clock = task.Clock()
        self.messages: list[tuple[str, AMIMessage]] = []
        self.links: list[tuple[str, bool, str]] = []
        settings: dict[str, Any] = {
            "name": name,
            "host": "127.0.0.1",
            "port": port,
            "username": "cti",
            "secret": SECRET,
            "auth": "plain",
        }
        settings.update(overrides)
        self.server = AsteriskServer(**settings)
        self.client = AMIClient(
            self.server,
            clock=self.clock,
            on_message=on_message or (lambda n, m: self.messages.append((n, m))),
            on_connection=lambda *a: self.links.append(a),
            rng=random.Random(7),
        )

    def start(self) -> None:
        self.client.start()
        run_until(lambda: self.client.connected)

    def stop(self) -> None:
        wait(self.client.stop())
        assert self.clock.getDelayedCalls() == [], "client leaked timers"


@pytest.fixture
def ami() -> Iterator[tuple[AMIServerFactory, int]]:
    factory = AMIServerFactory()
    port = listen(factory)
    yield factory, port.getHost().port
    wait(port.stopListening())
    for conn in factory.connections:
        if conn.transport is not None:
            conn.transport.abortConnection()  # type: ignore[attr-defined]
    run_until(lambda: factory.closed == len(factory.connections))


def test_backoff_delay_grows_caps_and_jitters() -> None:
    """Delays double per attempt up to the cap and stay within [d/2, d] (equal jitter)."""
    rng = random.Random(3)
    for attempt, full in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (50, 60.0), (5000, 60.0)]:
        delays = [backoff_delay(attempt, 1.0, 60.0, rng) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 4  # really jittered


def test_plain_login_ping_and_events(ami: tuple[AMIServerFactory, int]) -> None:
    """Plain login makes the client connected and calls on_connection(name, True, ...); Ping resolves
    with the Pong response; events go to on_message with the server name, in order."""
    factory, port = ami
    h = Harness(port)
    h.start()
    assert h.links == [("pbx1", True, "logged in (Asterisk Call Manager/11.0.0)")]
    login = factory.actions[0]
    assert login.name == "Login" and login["Secret"] == SECRET and login["Events"] == "on"
    result = wait(h.client.send("Ping"))
    assert isinstance(result, ActionResult) and result.response["Ping"] == "Pong" and result.events == []
    factory.last.send(b"Event: Newchannel\r\nChannel: Local/a@b-1;1\r\n\r\nEvent: Hangup\r\nCause: 16\r\n\r\n")
    run_until(lambda: len(h.messages) == 3)
    assert [(n, m.name) for n, m in h.messages] == [("pbx1", "FullyBooted"), ("pbx1", "Newchannel"), ("pbx1", "Hangup")]
    h.stop()
    run_until(lambda: factory.actions[-1].name == "Logoff")


def test_actions_leave_with_one_send_at_once(ami: tuple[AMIServerFactory, int]) -> None:
    """An action is on the wire when send() returns (no wait for the next loop iteration): the client
    never needed Twisted's write buffer, and Nagle's algorithm is off (an offer's second and third action
    must not wait for the PBX's delayed ACK of the first)."""
    factory, port = ami
    h = Harness(port)
    h.start()
    proto = h.client._proto
    assert proto is not None and proto.writer is not None
    sock = proto.transport.getHandle()  # type: ignore[union-attr]
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    pings = [h.client.send("Ping") for _ in range(3)]
    assert proto.writer.direct
    assert proto.transport.dataBuffer == b"" and not proto.transport._tempDataBuffer  # type: ignore[union-attr]
    for d in pings:
        assert wait(d).response["Ping"] == "Pong"
    h.stop()
    run_until(lambda: factory.actions[-1].name == "Logoff")


def test_a_batch_of_actions_leaves_in_one_write(ami: tuple[AMIServerFactory, int]) -> None:
    """Actions sent inside ``batch()`` are held and written together when the block ends; each still gets
    its own response; a batch on a pool names its server."""
    factory, port = ami
    h = Harness(port)
    h.start()
    proto = h.client._proto
    assert proto is not None
    with h.client.batch():
        pings = [h.client.send("Ping") for _ in range(3)]
        assert proto.held is not None and len(proto.held) == 3
    assert proto.held is None
    assert [wait(d).response["Ping"] for d in pings] == ["Pong"] * 3
    assert [a.name for a in factory.actions[-3:]] == ["Ping"] * 3
    h.stop()
    run_until(lambda: factory.actions[-1].name == "Logoff")


def test_actions_sent_while_a_read_is_handled_leave_together_when_it_is_handled(
        ami: tuple[AMIServerFactory, int]) -> None:
    """What the handlers of one AMI read send (an offer for every call the read queued) is held until the
    whole read is handled, then written at once, in order; each action still gets its own response. A
    batch inside the read joins the read's write."""
    factory, port = ami
    sent: list[Any] = []
    held_at_each_event: list[int] = []

    def on_message(_server: str, msg: AMIMessage) -> None:
        if msg.name != "UserEvent":
            return
        assert proto is not None and proto.held is not None  # inside the read: nothing of it has left yet
        held_at_each_event.append(len(proto.held))
        with h.client.batch():
            sent.append(h.client.send("Ping", {"X": msg["N"]}))
            sent.append(h.client.send("Ping", {"X": msg["N"] + "b"}))

    h = Harness(port, on_message=on_message)
    h.start()
    proto = h.client._proto
    before = len(factory.actions)
    factory.last.send(b"".join(b"Event: UserEvent\r\nUserEvent: CTIQueued\r\nN: %d\r\n\r\n" % i for i in range(3)))
    run_until(lambda: len(sent) == 6)
    assert held_at_each_event == [0, 2, 4]
    assert proto.held is None
    assert [wait(d).response["Ping"] for d in sent] == ["Pong"] * 6
    assert [a["X"] for a in factory.actions[before:]] == ["0", "0b", "1", "1b", "2", "2b"]
    h.stop()
    run_until(lambda: factory.actions[-1].name == "Logoff")


def test_md5_login(ami: tuple[AMIServerFactory, int]) -> None:
    """MD5 auth sends Challenge, then Login with Key = md5(challenge + secret) and never the secret."""
    factory, port = ami
    h = Harness(port, auth="md5")
    h.start()
    challenge, login = factory.actions[:2]
    assert challenge.name == "Challenge" and challenge["AuthType"] == "MD5"
    assert login["Key"] == hashlib.md5(("123456789" + SECRET).encode()).hexdigest()
    assert all(SECRET not in v for a in factory.actions for _, v in a)
    h.stop()


def test_list_action_collects_events(ami: tuple[AMIServerFactory, int]) -> None:
    """A list action's Deferred fires with the items and the Complete event; on_message sees them too."""
    factory, port = ami
    factory.channels = 3
    h = Harness(port)
    h.start()
    result = wait(h.client.send("CoreShowChannels"))
    assert [e.name for e in result.events] == ["CoreShowChannel"] * 3 + ["CoreShowChannelsComplete"]
    assert result.response["EventList"] == "start"
    assert [m.name for _, m in h.messages[1:]] == [e.name for e in result.events]
    h.stop()


def test_error_response_fails_with_action_error(ami: tuple[AMIServerFactory, int]) -> None:
    """Response: Error fails the Deferred with ActionError carrying the response; the link stays up."""
    factory, port = ami
    h = Harness(port)
    h.start()
    with pytest.raises(ActionError) as info:
        wait(h.client.send("NoSuchAction"))
    assert info.value.response["Message"] == "Invalid/unknown command"
    assert "pbx1" in str(info.value)
    assert h.client.connected
    h.stop()


def test_action_timeout_and_late_response(ami: tuple[AMIServerFactory, int]) -> None:
    """An unanswered action fails with ActionTimeout after its timeout; a late answer is ignored."""
    factory, port = ami
    held: list[tuple[AMIServerProtocol, AMIMessage]] = []
    factory.handlers["slow"] = lambda proto, action: held.append((proto, action))
    h = Harness(port)
    h.start()
    d = h.client.send("Slow", timeout=3.0)
    run_until(lambda: bool(held))
    failures: list[Any] = []
    d.addErrback(failures.append)
    h.clock.advance(2.9)
    assert not failures
    h.clock.advance(0.2)
    assert failures and failures[0].check(ActionTimeout)
    proto, action = held[0]
    proto.send(response(action))
    result = wait(h.client.send("Ping"))
    assert result.response["Ping"] == "Pong"
    h.stop()


def test_send_before_login_and_bad_fields(ami: tuple[AMIServerFactory, int]) -> None:
    """send() before login fails with NotConnected; a field with CR/LF fails with ValueError and sends nothing."""
    factory, port = ami
    h = Harness(port)
    with pytest.raises(NotConnected):
        wait(h.client.send("Ping"))
    h.start()
    count = len(factory.actions)
    with pytest.raises(ValueError):
        wait(h.client.send("Setvar", {"Variable": "X", "Value": "a\r\nAction: Hangup"}))
    wait(h.client.send("Ping"))
    assert [a.name for a in factory.actions[count:]] == ["Ping"]
    h.stop()


def test_caller_action_id(ami: tuple[AMIServerFactory, int]) -> None:
    """A caller-supplied ActionID is used as is (to match e.g. OriginateResponse later); reusing one that
    is still pending fails."""
    factory, port = ami
    factory.handlers["originate"] = lambda proto, action: None
    h = Harness(port)
    h.start()
    d = h.client.send("Originate", {"ActionID": "dial-42", "Channel": "Local/1@x"}, timeout=5)
    with pytest.raises(ValueError):
        wait(h.client.send("Originate", {"ActionID": "dial-42"}))
    run_until(lambda: factory.actions[-1].name == "Originate")
    assert factory.actions[-1].action_id == "dial-42"
    d.addErrback(lambda f: f.trap(ConnectionLost))
    h.stop()


def test_disconnect_fails_pending_and_reconnects(ami: tuple[AMIServerFactory, int]) -> None:
    """When the server drops the socket, pending actions fail with ConnectionLost, on_connection reports
    the loss once, and the client reconnects after the backoff delay and logs in again."""
    factory, port = ami
    factory.handlers["slow"] = lambda proto, action: None
    h = Harness(port)
    h.start()
    d = h.client.send("Slow")
    run_until(lambda: factory.actions[-1].name == "Slow")
    factory.last.transport.loseConnection()  # type: ignore[union-attr]
    with pytest.raises(ConnectionLost):
        wait(d)
    assert not h.client.connected
    assert h.links[-1][:2] == ("pbx1", False)
    with pytest.raises(NotConnected):
        wait(h.client.send("Ping"))
    (retry,) = h.clock.getDelayedCalls()
    assert 0.5 <= retry.getTime() <= 1.0  # first attempt: reconnect_initial with jitter
    h.clock.advance(1.0)
    run_until(lambda: h.client.connected)
    assert [link[1] for link in h.links] == [True, False, True]
    assert len(factory.connections) == 2
    h.stop()


def test_ping_timeout_forces_reconnect(ami: tuple[AMIServerFactory, int]) -> None:
    """A Ping unanswered within ping_timeout drops the connection and a new one is made."""
    factory, port = ami
    h = Harness(port, ping_interval=20, ping_timeout=5)
    h.start()

    def next_ping_due() -> bool:  # only the next Ping's timer is left once the Pong was handled
        return [c.getTime() for c in h.clock.getDelayedCalls()] == [h.clock.seconds() + 20]

    assert next_ping_due()
    h.clock.advance(20)
    run_until(next_ping_due)
    h.clock.advance(20)
    run_until(next_ping_due)
    assert factory.names().count("Ping") == 2
    factory.answer_ping = False
    h.clock.advance(20)
    run_until(lambda: factory.names().count("Ping") == 3)
    h.clock.advance(4.9)
    assert h.client.connected
    h.clock.advance(0.1)
    run_until(lambda: not h.client.connected and h.links[-1][1] is False)
    assert "connection lost" in h.links[-1][2]
    factory.answer_ping = True
    h.clock.advance(1.0)
    run_until(lambda: h.client.connected)
    assert len(factory.connections) == 2
    h.stop()


def test_bad_credentials_back_off_hard_and_log_once(
    ami: tuple[AMIServerFactory, int], caplog: pytest.LogCaptureFixture
) -> None:
    """A refused login gives AuthenticationFailed naming the server (not the secret), waits >= 30 s
    between tries, and logs one warning for the whole streak."""
    factory, port = ami
    factory.users = {"cti": "other"}
    caplog.set_level(logging.DEBUG, logger="cti.ami.client")
    h = Harness(port)
    h.client.start()
    for attempt in range(1, 4):
        run_until(lambda n=attempt: h.client.state == "waiting" and len(factory.connections) == n)
        (retry,) = h.clock.getDelayedCalls()
        assert retry.getTime() - h.clock.seconds() >= 30.0
        h.clock.advance(retry.getTime() - h.clock.seconds())
    error = h.client.last_error
    assert isinstance(error, AuthenticationFailed)
    assert "pbx1" in str(error) and SECRET not in str(error)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "refused" in warnings[0].getMessage()
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert h.links == [("pbx1", False, str(error).removeprefix(f"{h.client.where}: "))]
    h.stop()


def test_not_an_ami_server() -> None:
    """A peer that greets with something else is reported as ProtocolError and retried later."""
    factory = AMIServerFactory(banner=b"SSH-2.0-OpenSSH_9.2\r\n")
    port = listen(factory)
    h = Harness(port.getHost().port)
    h.client.start()
    run_until(lambda: h.client.state == "waiting")
    assert isinstance(h.client.last_error, ProtocolError) and "SSH-2.0" in str(h.client.last_error)
    assert factory.actions == []
    h.stop()
    wait(port.stopListening())


def test_connection_refused_retries_quietly(caplog: pytest.LogCaptureFixture) -> None:
    """With nothing listening, attempts repeat with growing delays and one warning for the streak."""
    factory = Factory.forProtocol(Protocol)
    port = listen(factory)
    number = port.getHost().port
    wait(port.stopListening())
    caplog.set_level(logging.DEBUG, logger="cti.ami.client")
    h = Harness(number, reconnect_initial=1.0, reconnect_max=8.0)
    h.client.start()
    delays = []
    for _ in range(5):
        run_until(lambda: h.client.state == "waiting")
        (retry,) = h.clock.getDelayedCalls()
        delays.append(retry.getTime() - h.clock.seconds())
        h.clock.advance(delays[-1])
    assert [d <= full and d >= full / 2 for d, full in zip(delays, [1, 2, 4, 8, 8], strict=True)] == [True] * 5
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    assert [link[1] for link in h.links] == [False]
    h.stop()


def test_on_message_exception_does_not_break_link(ami: tuple[AMIServerFactory, int]) -> None:
    """A failing on_message handler is logged; later events and responses still flow."""
    factory, port = ami
    seen: list[str] = []

    def handler(name: str, msg: AMIMessage) -> None:
        seen.append(msg.name)
        if msg.name == "Boom":
            raise RuntimeError("handler bug")

    h = Harness(port)
    h.client._on_message = handler
    h.start()
    factory.last.send(b"Event: Boom\r\n\r\nEvent: After\r\n\r\n")
    run_until(lambda: "After" in seen)
    assert wait(h.client.send("Ping")).response["Ping"] == "Pong"
    h.stop()


def test_stop_while_waiting_to_reconnect(ami: tuple[AMIServerFactory, int]) -> None:
    """stop() during the backoff wait cancels the timer and fires at once; start() works again."""
    factory, port = ami
    h = Harness(port)
    h.start()
    factory.last.transport.loseConnection()  # type: ignore[union-attr]
    run_until(lambda: h.client.state == "waiting")
    h.stop()
    h.start()
    assert len(factory.connections) == 2
    h.stop()


def test_pool_of_named_servers() -> None:
    """Two servers at once: each connection is named, events carry their server's name, actions go to
    the server asked for."""
    factories = [AMIServerFactory(), AMIServerFactory()]
    ports = [listen(f) for f in factories]
    clock = task.Clock()
    messages: list[tuple[str, str]] = []
    links: list[tuple[str, bool, str]] = []
    servers = [
        AsteriskServer(name=n, port=p.getHost().port, username="cti", secret=SECRET, auth="md5")
        for n, p in zip(["east", "west"], ports, strict=True)
    ]
    pool = AMIClientPool(
        servers,
        clock=clock,
        on_message=lambda n, m: messages.append((n, m.name)),
        on_connection=lambda *a: links.append(a),
    )
    pool.start()
    run_until(lambda: pool["east"].connected and pool["west"].connected)
    factories[1].last.send(b"Event: Newchannel\r\n\r\n")
    run_until(lambda: ("west", "Newchannel") in messages)
    wait(pool.send("east", "Ping"))
    assert factories[0].names()[-1] == "Ping" and factories[1].names()[-1] != "Ping"
    with pytest.raises(NotConnected):
        wait(pool.send("north", "Ping"))
    assert sorted(n for n, up, _ in links if up) == ["east", "west"]
    wait(pool.stop())
    assert clock.getDelayedCalls() == []
    for p in ports:
        wait(p.stopListening())
    with pytest.raises(ValueError):
        AMIClientPool([servers[0], servers[0]], clock=clock, on_message=print, on_connection=print)


def test_replayed_transcript_reaches_on_message(ami: tuple[AMIServerFactory, int], fixtures_dir: Path) -> None:
    """The recorded Asterisk byte stream of a real call, replayed after login, reaches on_message event by
    event (README's count), in Asterisk's read chunks."""
    factory, port = ami
    h = Harness(port)
    h.start()
    data = (fixtures_dir / "inbound_queue.txt").read_bytes()
    body = data[data.index(b"\r\n") + 2 :]  # without the banner
    for i in range(0, len(body), 1400):
        factory.last.send(body[i : i + 1400])
    run_until(lambda: sum(1 for _, m in h.messages) == 215 + 1)  # + our own FullyBooted
    names = [m.name for _, m in h.messages[1:]]
    assert names.count("VarSet") == 84 and names.count("AgentConnect") == 1
    h.stop()


def test_getvars_fails_with_the_refused_getvar_itself() -> None:
    """``AMIClientPool.getvars`` of a channel that has gone fails with that Getvar's ActionError (its message is
    Asterisk's), not a FirstError wrapper whose message is a repr with a traceback; a channel that is there
    gives every variable, unset ones as ""."""
    factory = AMIServerFactory()
    port = listen(factory)
    values = {"CTI_QUEUE": "sales"}

    def getvar(proto: AMIServerProtocol, action: AMIMessage) -> None:
        if action.get("Channel") == "PJSIP/gone-00000001":
            proto.send(response(action, "Error", Message="No such channel"))
        else:
            proto.send(response(action, Variable=action.get("Variable", ""),
                                Value=values.get(action.get("Variable", ""), "")))

    factory.handlers["getvar"] = getvar
    clock = task.Clock()
    server = AsteriskServer(name="pbx1", port=port.getHost().port, username="cti", secret=SECRET, auth="plain")
    pool = AMIClientPool([server], clock=clock, on_message=lambda n, m: None, on_connection=lambda *a: None)
    pool.start()
    run_until(lambda: pool["pbx1"].connected)
    assert wait(pool.getvars("pbx1", "PJSIP/here-00000002", ("CTI_QUEUE", "CTI_SKILLS"))) == {
        "CTI_QUEUE": "sales", "CTI_SKILLS": ""}
    with pytest.raises(ActionError) as info:
        wait(pool.getvars("pbx1", "PJSIP/gone-00000001", ("CTI_QUEUE", "CTI_SKILLS")))
    assert info.value.response["Message"] == "No such channel"
    wait(pool.stop())
    wait(port.stopListening())
