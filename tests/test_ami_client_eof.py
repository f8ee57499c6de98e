"""The AMI client at end of stream over real loopback TCP: an unterminated message is logged once, not dropped."""

from __future__ import annotations

import logging

import pytest

from tests.amiserver import AMIServerFactory, listen, run_until, wait
from tests.test_ami_client import Harness


def test_unterminated_message_at_eof_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """When Asterisk closes the socket in the middle of a message, the client logs one warning that says so
    and how many bytes were lost (never their content), then reconnects as for any lost connection."""
    factory = AMIServerFactory()
    port = listen(factory)
    caplog.set_level(logging.DEBUG, logger="cti.ami.client")
    h = Harness(port.getHost().port)
    h.start()
    partial = b"Event: Hangup\r\nChannel: PJSIP/1001-00000001\r\nSecret: s3cret\r\n"
    factory.last.send(b"Event: Newchannel\r\nChannel: PJSIP/1001-00000001\r\n\r\n" + partial)
    run_until(lambda: [m.name for _, m in h.messages][-1:] == ["Newchannel"])
    factory.last.transport.loseConnection()  # type: ignore[union-attr]
    run_until(lambda: not h.client.connected)
    eof = [r for r in caplog.records if "stream ended" in r.getMessage()]
    assert len(eof) == 1 and eof[0].levelno == logging.WARNING
    text = eof[0].getMessage()
    assert "pbx1" in text and f"({len(partial)} bytes dropped)" in text and "s3cret" not in text
    assert [m.name for _, m in h.messages] == ["FullyBooted", "Newchannel"]
    h.stop()
    wait(port.stopListening())
    for conn in factory.connections:
        if conn.transport is not None:
            conn.transport.abortConnection()  # type: ignore[attr-defined]
    run_until(lambda: factory.closed == len(factory.connections))


def test_clean_close_logs_no_unterminated_message(caplog: pytest.LogCaptureFixture) -> None:
    """A connection closed between messages logs nothing about an unterminated message."""
    factory = AMIServerFactory()
    port = listen(factory)
    caplog.set_level(logging.DEBUG, logger="cti.ami.client")
    h = Harness(port.getHost().port)
    h.start()
    factory.last.transport.loseConnection()  # type: ignore[union-attr]
    run_until(lambda: not h.client.connected)
    assert not [r for r in caplog.records if "stream ended" in r.getMessage()]
    h.stop()
    wait(port.stopListening())
    run_until(lambda: factory.closed == len(factory.connections))
