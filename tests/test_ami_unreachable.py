"""An unreachable PBX over real loopback TCP, timers on a task.Clock: the log stays quiet (one WARNING when
the outage starts, the retries at DEBUG) but says at 1 min, 5 min and then every 15 min that the PBX is
still unreachable and for how long, and how long it was down once it is back."""

from __future__ import annotations

import logging
import random

import pytest
from twisted.internet.protocol import Factory, Protocol

from cti.ami.client import AMIClient, format_duration
from cti.ami.settings import AsteriskServer
from tests.amiserver import AMIServerFactory, reactor, run_until, wait


def _free_port() -> int:
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    number = int(port.getHost().port)
    wait(port.stopListening())
    return number


def test_format_duration() -> None:
    """Outage lengths read as a person says them."""
    assert [format_duration(s) for s in (0, 44.6, 60, 299, 1200, 3600, 4800)] == [
        "0 s", "45 s", "1 min", "4 min", "20 min", "1 h", "1 h 20 min"]


def test_unreachable_pbx_is_reported_at_a_growing_interval_then_back(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listens on the AMI port for 36 minutes: one WARNING at the first failure, then "still
    unreachable after 1 min / 5 min / 20 min / 35 min" (on the first retry at or after each) with the
    attempts so far and the last error, nothing else above DEBUG; when the PBX listens again, the login
    line says how long it was down, the reminders stop, and stop() leaves no timer behind."""
    caplog.set_level(logging.DEBUG, logger="cti.ami.client")
    number = _free_port()
    links: list[tuple[str, bool, str]] = []
    from twisted.internet import task

    clock = task.Clock()
    client = AMIClient(
        AsteriskServer(name="pbx1", host="127.0.0.1", port=number, username="cti", secret="cti-secret",
                       auth="plain", reconnect_initial=1.0, reconnect_max=60.0),
        clock=clock, on_message=lambda *a: None, on_connection=lambda *a: links.append(a), rng=random.Random(3))
    client.start()
    warned_at: list[tuple[float, str]] = []

    def warnings() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.levelno >= logging.WARNING]

    seen = 1  # the first failure's warning
    while clock.seconds() < 36 * 60:
        run_until(lambda: client.state == "waiting")  # this attempt failed (real TCP, refused)
        warned_at.extend((clock.seconds(), r.getMessage()) for r in warnings()[seen:])
        seen = len(warnings())
        clock.advance(min(c.getTime() for c in clock.getDelayedCalls()) - clock.seconds())
    first = warnings()[0].getMessage()
    assert first.startswith(f"AMI pbx1 (127.0.0.1:{number}): cannot connect: ") and "refused" in first
    # each reminder rides on the first retry at or after its time (retries here are at most 60 s apart)
    assert len(warned_at) == 4, warned_at
    for (t, message), due in zip(warned_at, (60, 300, 1200, 2100), strict=True):
        assert due <= t < due + 60
        assert message.startswith(f"AMI pbx1 (127.0.0.1:{number}): still unreachable after {format_duration(t)} (")
        assert "failed attempt(s); last: cannot connect: " in message and "; retrying in " in message
    assert len(warnings()) == 5  # the first failure and the four reminders: the ~40 retries stay at DEBUG
    assert [up for _, up, _ in links] == [False]  # the wallboard heard of the outage once, at once

    run_until(lambda: client.state == "waiting")
    factory = AMIServerFactory()
    port = reactor.listenTCP(number, factory, interface="127.0.0.1")
    try:
        clock.advance(min(c.getTime() for c in clock.getDelayedCalls()) - clock.seconds())
        run_until(lambda: client.connected)
        back = [r.getMessage() for r in caplog.records if "logged in" in r.getMessage()]
        assert len(back) == 1 and back[0].endswith(f", unreachable for {format_duration(clock.seconds())}"), back
        assert ": logged in after " in back[0]  # never logged in before: not "again"
        assert 36 * 60 <= clock.seconds() < 38 * 60
        clock.advance(3600)  # no reminder once connected
        assert len(warnings()) == 5
        wait(client.stop())
        assert clock.getDelayedCalls() == []
    finally:
        wait(port.stopListening())
        for conn in factory.connections:
            if conn.transport is not None:
                conn.transport.abortConnection()  # type: ignore[attr-defined]


def test_reminder_times() -> None:
    """The reminders are due 1 min, 5 min, then every 15 min into an outage."""
    from cti.ami.client import still_down_due

    assert [still_down_due(k) for k in range(5)] == [60.0, 300.0, 1200.0, 2100.0, 3000.0]
