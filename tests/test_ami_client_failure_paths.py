"""More of the AMI client's failure paths over real loopback TCP (timers on a task.Clock), beyond
tests/test_ami_client_failures.py: TLS set-ups that must fail without the secret leaving, a banner that
never completes, peers that are not AMI servers, an MD5 challenge nobody answers, stop() before the login
completed, and an ``on_connection`` handler that raises on every call (passed in as a real owner would)."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import task
from twisted.internet.protocol import Factory, Protocol

from cti.ami.client import ActionTimeout, AMIClient, AuthenticationFailed, ConnectionLost, NotConnected, ProtocolError
from cti.ami.message import AMIMessage
from cti.ami.protocol import BANNER_MAX_BYTES
from cti.ami.settings import AsteriskServer
from tests.amiserver import AMIServerFactory, listen, reactor, run_until, wait
from tests.test_ami_client import SECRET, Harness


class Scripted(Protocol):
    """A peer that writes ``greeting`` on connect, then records what it reads and says nothing more."""

    greeting = b""

    def __init__(self, received: list[bytes], made: list[Protocol]) -> None:
        self.received = received
        self.made = made

    def connectionMade(self) -> None:
        self.made.append(self)
        if self.greeting:
            assert self.transport is not None
            self.transport.write(self.greeting)

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)


class Peer:
    """A listening scripted peer: what it was sent, its connections, its port."""

    def __init__(self, greeting: bytes) -> None:
        self.received: list[bytes] = []
        self.made: list[Protocol] = []
        received, made = self.received, self.made

        class Greeter(Scripted):
            def __init__(self) -> None:
                super().__init__(received, made)

        Greeter.greeting = greeting
        self.port = listen(Factory.forProtocol(Greeter))
        self.number: int = self.port.getHost().port

    def close(self) -> None:
        wait(self.port.stopListening())
        for proto in self.made:
            if proto.transport is not None:
                proto.transport.abortConnection()  # type: ignore[attr-defined]

    @property
    def sent_to_it(self) -> bytes:
        return b"".join(self.received)


@pytest.fixture
def peer() -> Iterator[Callable[[bytes], Peer]]:
    peers: list[Peer] = []

    def make(greeting: bytes) -> Peer:
        peers.append(Peer(greeting))
        return peers[-1]

    yield make
    for p in peers:
        p.close()


# ---------------------------------------------------------------- banner timeout
def test_a_banner_that_never_ends_times_out_from_the_connection_not_the_last_byte(peer: Callable[[bytes], Peer]
                                                                                  ) -> None:
    """The peer sends the start of a banner (no line end) and stops: the banner timeout counts from the
    connection, so the attempt fails at ``connect_timeout`` as a ProtocolError, nothing was sent to the peer
    (no Login, no secret), and the only timer left is the retry."""
    p = peer(b"Asterisk Call Man")
    h = Harness(p.number, connect_timeout=5.0)
    h.client.start()
    run_until(lambda: bool(p.made) and h.client.state == "banner")
    h.clock.advance(4.0)
    assert h.client.state == "banner"
    h.clock.advance(1.0)
    run_until(lambda: h.client.state == "waiting")
    assert isinstance(h.client.last_error, ProtocolError)
    assert "sent no AMI banner within 5 s" in str(h.client.last_error)
    assert p.sent_to_it == b""
    assert len(h.clock.getDelayedCalls()) == 1
    h.stop()


# ---------------------------------------------------------------- peers that do not speak AMI
@pytest.mark.parametrize("greeting", [
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    b"220 mail.example.org ESMTP Postfix\r\n",
    b"Asterisk 22.1.0 Call Something Else\r\n",
])
def test_a_peer_that_greets_with_another_protocol_is_not_logged_into(greeting: bytes,
                                                                     peer: Callable[[bytes], Peer]) -> None:
    """An HTTP server, a mail server, a line that merely mentions Asterisk: each is a ProtocolError at once
    (not at the banner timeout) quoting what it said, the connection is dropped, the secret never leaves, and
    the client retries later (the address may be right and the service on it wrong for now)."""
    p = peer(greeting)
    h = Harness(p.number)
    h.client.start()
    run_until(lambda: h.client.state == "waiting")
    error = h.client.last_error
    assert isinstance(error, ProtocolError) and "does not speak AMI" in str(error)
    assert greeting.split(b"\r\n")[0].decode()[:20] in str(error)
    assert h.links == [("pbx1", False, str(error).removeprefix(f"{h.client.where}: "))]
    assert p.sent_to_it == b"" and SECRET not in str(error)
    (retry,) = h.clock.getDelayedCalls()
    h.stop()


def test_a_peer_that_floods_without_a_line_end_is_dropped_before_the_banner_timeout(peer: Callable[[bytes], Peer]
                                                                                    ) -> None:
    """Binary noise with no line end (a TLS server, a database port): after ``BANNER_MAX_BYTES`` the client
    gives up at once, without waiting for the banner timeout, and sends nothing."""
    p = peer(b"\x16\x03\x01\x00" * (BANNER_MAX_BYTES // 2))
    h = Harness(p.number, connect_timeout=60.0)
    h.client.start()
    run_until(lambda: h.client.state == "waiting")
    assert h.clock.seconds() == 0.0  # no virtual time passed: it was not the timeout
    assert isinstance(h.client.last_error, ProtocolError)
    assert f"no AMI banner line within {BANNER_MAX_BYTES} bytes" in str(h.client.last_error)
    assert p.sent_to_it == b""
    h.stop()


# ---------------------------------------------------------------- a login that times out
def test_an_md5_challenge_nobody_answers_times_out_without_sending_the_login() -> None:
    """MD5 auth: the server takes the Challenge and never answers. After ``action_timeout`` the attempt fails
    with ActionTimeout naming the Challenge; no Login (and no key derived from the secret) was sent."""
    factory = AMIServerFactory()
    factory.handlers["challenge"] = lambda proto, action: None
    port = listen(factory)
    try:
        h = Harness(port.getHost().port, auth="md5", action_timeout=7.0)
        h.client.start()
        run_until(lambda: factory.names() == ["Challenge"])
        h.clock.advance(6.9)
        assert h.client.state == "challenge"
        h.clock.advance(0.1)
        run_until(lambda: h.client.state == "waiting")
        assert isinstance(h.client.last_error, ActionTimeout)
        assert str(h.client.last_error).endswith("no response to Challenge within 7 s")
        assert factory.names() == ["Challenge"]
        h.stop()
    finally:
        wait(port.stopListening())
        run_until(lambda: factory.closed == len(factory.connections))


def test_events_before_the_login_answer_do_not_stretch_the_login_timeout() -> None:
    """The server sends events but never answers the Login: the login still times out at ``action_timeout``
    (a chatty server is not a logged-in one), and those events reach nobody."""
    factory = AMIServerFactory()
    factory.handlers["login"] = lambda proto, action: proto.send(b"Event: FullyBooted\r\nStatus: x\r\n\r\n")
    port = listen(factory)
    try:
        h = Harness(port.getHost().port, action_timeout=5.0)
        h.client.start()
        run_until(lambda: factory.names() == ["Login"])
        h.clock.advance(4.0)
        factory.last.send(b"Event: Newchannel\r\nChannel: PJSIP/x-1\r\n\r\n")
        h.clock.advance(1.0)
        run_until(lambda: h.client.state == "waiting")
        assert isinstance(h.client.last_error, ActionTimeout) and not h.client.connected
        assert [up for _, up, _ in h.links] == [False]
        h.stop()
    finally:
        wait(port.stopListening())
        run_until(lambda: factory.closed == len(factory.connections))


# ---------------------------------------------------------------- a close before login
@pytest.mark.parametrize("phase", ["banner", "login"])
def test_stop_before_the_login_completed_closes_at_once_and_sends_no_logoff(phase: str) -> None:
    """stop() while waiting for the banner, or for the Login's answer: the Deferred fires once the socket is
    closed, no Logoff is sent (there is no session to end), no timer is left, on_connection never said up,
    and a Login answer arriving late changes nothing."""
    factory = AMIServerFactory(banner=b"" if phase == "banner" else AMIServerFactory().banner)
    held: list[Any] = []
    factory.handlers["login"] = lambda proto, action: held.append((proto, action))
    port = listen(factory)
    try:
        h = Harness(port.getHost().port)
        h.client.start()
        run_until(lambda: h.client.state == phase and (phase == "banner" or bool(held)))
        wait(h.client.stop())
        assert h.client.state == "stopped" and not h.client.connected
        assert h.clock.getDelayedCalls() == []
        run_until(lambda: factory.closed == 1)
        assert "Logoff" not in factory.names()
        assert h.links == []
        h.clock.advance(3600)
        assert h.client.state == "stopped" and len(factory.connections) == 1  # no reconnect
    finally:
        wait(port.stopListening())


def test_the_server_closing_right_after_its_banner_is_a_handshake_failure() -> None:
    """The server writes its banner and hangs up before reading anything (a PBX restarting): the attempt is
    "closed before login", reported once, retried with backoff."""
    factory = AMIServerFactory()
    original = factory.buildProtocol

    def closing(addr: Any) -> Any:
        proto = original(addr)
        made = proto.connectionMade

        def then_close() -> None:
            made()
            proto.transport.loseConnection()

        proto.connectionMade = then_close
        return proto

    factory.buildProtocol = closing  # type: ignore[method-assign]
    port = listen(factory)
    try:
        h = Harness(port.getHost().port)
        h.client.start()
        run_until(lambda: h.client.state == "waiting")
        assert isinstance(h.client.last_error, ConnectionLost)
        assert "connection closed before login completed" in str(h.client.last_error)
        assert [up for _, up, _ in h.links] == [False]
        (retry,) = h.clock.getDelayedCalls()
        h.stop()
    finally:
        wait(port.stopListening())
        run_until(lambda: factory.closed == len(factory.connections))


# ---------------------------------------------------------------- an on_connection handler that raises
def _client(port: int, on_connection: Callable[[str, bool, str], None], **overrides: Any) -> tuple[AMIClient,
                                                                                                     task.Clock]:
    clock = task.Clock()
    settings: dict[str, Any] = {"name": "pbx1", "host": "127.0.0.1", "port": port, "username": "cti",
                                "secret": SECRET, "auth": "plain", **overrides}
    client = AMIClient(AsteriskServer(**settings), clock=clock, on_message=lambda name, msg: None,
                       on_connection=on_connection, rng=random.Random(3))
    return client, clock


def test_an_on_connection_handler_that_always_raises_is_logged_once_per_call_and_changes_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    """The owner's handler raises on every call, from the first refused connection on: each call's failure
    is logged exactly once (one ERROR with the traceback, nothing else at ERROR, never the secret); the client
    retries, logs in when the server comes, answers actions, reconnects after a drop and stops cleanly."""
    calls: list[tuple[bool, str]] = []

    def broken(name: str, up: bool, detail: str) -> None:
        calls.append((up, detail))
        raise RuntimeError(f"owner bug #{len(calls)}")

    closed = listen(Factory.forProtocol(Protocol))
    number = closed.getHost().port
    wait(closed.stopListening())
    caplog.set_level(logging.DEBUG, logger="cti.ami.client")
    client, clock = _client(number, broken)
    client.start()
    run_until(lambda: client.state == "waiting")
    assert [up for up, _ in calls] == [False]
    factory = AMIServerFactory()
    port = reactor.listenTCP(number, factory, interface="127.0.0.1")
    try:
        (retry,) = clock.getDelayedCalls()
        clock.advance(retry.getTime() - clock.seconds())
        run_until(lambda: client.connected)
        assert wait(client.send("Ping")).response["Ping"] == "Pong"
        factory.last.transport.loseConnection()  # type: ignore[union-attr]
        run_until(lambda: client.state == "waiting")
        (retry,) = clock.getDelayedCalls()
        clock.advance(retry.getTime() - clock.seconds())
        run_until(lambda: client.connected)
        wait(client.stop())
        assert clock.getDelayedCalls() == []
    finally:
        wait(port.stopListening())
        run_until(lambda: factory.closed == len(factory.connections))
    assert [up for up, _ in calls] == [False, True, False, True]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [f"{client.where}: on_connection handler failed"] * 4
    assert [str(r.exc_info[1]) for r in errors if r.exc_info] == [f"owner bug #{n}" for n in range(1, 5)]
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_an_on_connection_handler_that_raises_on_auth_failure_keeps_the_hard_backoff(
        caplog: pytest.LogCaptureFixture) -> None:
    """A refused login whose notification raises still waits the long auth backoff (>= 30 s), not the short
    one: the handler's failure does not skip the client's own bookkeeping."""
    factory = AMIServerFactory(users={"cti": "another-secret"})
    port = listen(factory)
    calls: list[bool] = []

    def broken(name: str, up: bool, detail: str) -> None:
        calls.append(up)
        raise ValueError("owner bug")

    try:
        client, clock = _client(port.getHost().port, broken)
        client.start()
        run_until(lambda: client.state == "waiting")
        assert isinstance(client.last_error, AuthenticationFailed)
        (retry,) = clock.getDelayedCalls()
        assert retry.getTime() - clock.seconds() >= 30.0
        assert calls == [False]
        wait(client.stop())
    finally:
        wait(port.stopListening())
        run_until(lambda: factory.closed == len(factory.connections))


# ---------------------------------------------------------------- TLS set-ups that must fail
pytest.importorskip("OpenSSL", reason="TLS needs pyOpenSSL (twisted[tls])")


@pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")
def test_tls_with_verification_and_no_ca_file_refuses_a_self_signed_server(
        tls_ami: tuple[AMIServerFactory, int]) -> None:
    """``tls.verify`` on (the default) without a CA file trusts the system's CAs only: a self-signed PBX
    certificate fails the handshake, the client reports it and retries, and nothing reached the server."""
    factory, port = tls_ami
    h = Harness(port, tls={"server_name": "localhost"})
    h.client.start()
    run_until(lambda: h.client.state == "waiting")
    assert isinstance(h.client.last_error, ConnectionLost) and not h.client.connected
    assert factory.actions == []
    h.stop()


@pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")
def test_tls_with_a_ca_file_that_is_not_a_certificate_is_a_failed_attempt_that_says_so(
        tls_ami: tuple[AMIServerFactory, int], tmp_path: Path) -> None:
    """A CA file that exists but holds no PEM certificate (a key, a typo'd path to another file): reported
    like a failed connection naming the file, retried, never raised out of start()."""
    _, port = tls_ami
    bogus = tmp_path / "not-a-cert.pem"
    bogus.write_text("this is not a certificate\n")
    h = Harness(port, tls={"ca_file": str(bogus)})
    h.client.start()
    assert h.client.state == "waiting"
    error = h.client.last_error
    assert isinstance(error, NotConnected)
    assert "not-a-cert.pem" in str(error) and "certificate" in str(error)
    h.stop()


@pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")
def test_a_plain_client_at_a_tls_port_times_out_on_the_banner(tls_ami: tuple[AMIServerFactory, int]) -> None:
    """TLS forgotten in the settings of a TLS-only AMI port: the server waits for a ClientHello and the client
    for a banner, so the banner timeout ends it as a ProtocolError; the secret is never sent in clear."""
    factory, port = tls_ami
    h = Harness(port, connect_timeout=3.0)
    h.client.start()
    run_until(lambda: h.client.state == "banner")
    h.clock.advance(3.0)
    run_until(lambda: h.client.state == "waiting")
    assert isinstance(h.client.last_error, ProtocolError) and "banner" in str(h.client.last_error)
    assert factory.actions == []
    h.stop()


def test_a_tls_client_at_a_plain_port_fails_the_handshake_without_leaking_the_secret() -> None:
    """TLS configured for a plain-text AMI port: the server's clear-text banner breaks the handshake; the
    attempt fails before login and the server never sees a Login (only the ClientHello's bytes)."""
    factory = AMIServerFactory()
    raw: list[bytes] = []
    original = factory.buildProtocol

    def recording(addr: Any) -> Any:
        proto = original(addr)
        feed = proto.dataReceived

        def keep(data: bytes) -> None:
            raw.append(data)
            try:
                feed(data)
            except AssertionError:  # the scripted server's parser does not expect TLS records
                pass

        proto.dataReceived = keep
        return proto

    factory.buildProtocol = recording  # type: ignore[method-assign]
    port = listen(factory)
    try:
        h = Harness(port.getHost().port, tls={"verify": False})
        h.client.start()
        run_until(lambda: h.client.state == "waiting")
        assert not h.client.connected and isinstance(h.client.last_error, ConnectionLost | ProtocolError)
        assert [m.name for m in factory.actions if isinstance(m, AMIMessage)] == []
        assert SECRET.encode() not in b"".join(raw)
        h.stop()
    finally:
        wait(port.stopListening())
        for conn in factory.connections:
            if conn.transport is not None:
                conn.transport.abortConnection()  # type: ignore[attr-defined]
        run_until(lambda: factory.closed == len(factory.connections))
