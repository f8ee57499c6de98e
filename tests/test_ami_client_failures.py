"""The AMI client's failure paths through its Twisted shell, over real loopback TCP with timers on a
task.Clock: a silent peer (banner timeout), a login nobody answers, a close before login, and an
``on_connection`` handler that raises. The session's own rules are in tests/test_ami_session.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from twisted.internet.protocol import Factory, Protocol

from cti.ami.client import ActionTimeout, ConnectionLost, ProtocolError
from cti.ami.message import AMIMessage
from tests.amiserver import AMIServerFactory, AMIServerProtocol, listen, run_until, wait
from tests.test_ami_client import Harness


class Silent(Protocol):
    """Accepts the connection and never says a word."""


@pytest.fixture
def silent() -> Iterator[tuple[Factory, int, list[Protocol]]]:
    made: list[Protocol] = []

    class Recorded(Silent):
        def connectionMade(self) -> None:
            made.append(self)

    factory = Factory.forProtocol(Recorded)
    port = listen(factory)
    yield factory, port.getHost().port, made
    wait(port.stopListening())
    for proto in made:
        if proto.transport is not None:
            proto.transport.abortConnection()  # type: ignore[attr-defined]


def test_banner_timeout_drops_the_connection_and_retries(silent: tuple[Factory, int, list[Protocol]],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A peer that accepts and stays silent: after ``connect_timeout`` the client gives up on it with a
    ProtocolError, says so once, and waits to try again; its only timer is then the retry."""
    _, port, made = silent
    caplog.set_level(logging.WARNING, logger="cti.ami.client")
    h = Harness(port, connect_timeout=4.0)
    h.client.start()
    run_until(lambda: h.client.state == "banner")
    assert [c.getTime() for c in h.clock.getDelayedCalls()] == [4.0]
    h.clock.advance(3.9)
    assert h.client.state == "banner"
    h.clock.advance(0.1)
    run_until(lambda: h.client.state == "waiting")
    assert isinstance(h.client.last_error, ProtocolError)
    assert str(h.client.last_error).endswith("sent no AMI banner within 4 s")
    assert h.links == [("pbx1", False, "sent no AMI banner within 4 s")]
    assert len(h.clock.getDelayedCalls()) == 1 and len(made) == 1
    h.stop()


def test_a_login_nobody_answers_times_out(caplog: pytest.LogCaptureFixture) -> None:
    """The banner comes, the Login is never answered: after ``action_timeout`` the attempt fails with
    ActionTimeout (named after the Login, never the secret) and the client waits to retry."""
    factory = AMIServerFactory()
    factory.handlers["login"] = lambda proto, action: None
    port = listen(factory)
    h = Harness(port.getHost().port, action_timeout=6.0)
    h.client.start()
    run_until(lambda: factory.names() == ["Login"])
    h.clock.advance(6.0)
    run_until(lambda: h.client.state == "waiting")
    assert isinstance(h.client.last_error, ActionTimeout)
    assert str(h.client.last_error).endswith("no response to Login within 6 s")
    assert "cti-secret" not in str(h.client.last_error)
    h.stop()
    wait(port.stopListening())
    run_until(lambda: factory.closed == len(factory.connections))


def test_close_before_login_is_a_handshake_failure() -> None:
    """The server closes right after its banner: the attempt is reported as closed before login, and
    the next one (after the backoff) logs in."""
    factory = AMIServerFactory()
    closing = {"on": True}

    def drop(proto: AMIServerProtocol, action: AMIMessage) -> None:
        if closing["on"]:
            proto.transport.loseConnection()  # type: ignore[union-attr]
        else:
            proto.do_login(action)

    factory.handlers["login"] = drop
    port = listen(factory)
    h = Harness(port.getHost().port)
    h.client.start()
    run_until(lambda: h.client.state == "waiting")
    assert isinstance(h.client.last_error, ConnectionLost)
    assert "connection closed before login completed" in h.links[-1][2]
    closing["on"] = False
    (retry,) = h.clock.getDelayedCalls()
    h.clock.advance(retry.getTime() - h.clock.seconds())
    run_until(lambda: h.client.connected)
    assert [up for _, up, _ in h.links] == [False, True]
    h.stop()
    wait(port.stopListening())
    run_until(lambda: factory.closed == len(factory.connections))


def test_an_on_connection_handler_that_raises_does_not_take_the_client_down(
        caplog: pytest.LogCaptureFixture) -> None:
    """The owner's ``on_connection`` raising at login and at loss is logged with its traceback; the
    client stays logged in, answers actions, and after the server drops it reconnects as usual."""
    factory = AMIServerFactory()
    port = listen(factory)
    caplog.set_level(logging.ERROR, logger="cti.ami.client")
    h = Harness(port.getHost().port)
    calls: list[bool] = []

    def broken(name: str, up: bool, detail: str) -> None:
        calls.append(up)
        raise RuntimeError("owner bug")

    h.client._on_connection = broken
    h.start()
    assert wait(h.client.send("Ping")).response["Ping"] == "Pong"
    factory.last.transport.loseConnection()  # type: ignore[union-attr]
    run_until(lambda: h.client.state == "waiting")
    (retry,) = h.clock.getDelayedCalls()
    h.clock.advance(retry.getTime() - h.clock.seconds())
    run_until(lambda: h.client.connected)
    assert calls == [True, False, True]
    failures = [r for r in caplog.records if "on_connection handler failed" in r.getMessage()]
    assert len(failures) == 3 and all(r.exc_info and r.exc_info[0] is RuntimeError for r in failures)
    assert wait(h.client.send("Ping")).response["Ping"] == "Pong"
    h.stop()
    wait(port.stopListening())
    run_until(lambda: factory.closed == len(factory.connections))
