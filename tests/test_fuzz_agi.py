"""Fuzz (issue 19): the AGI codec, the IVR interpreter and the FastAGI server on random and mutated input.

The codec raises only ``AgiProtocolError`` (with a reason) and holds at most ``max_line_bytes``; the
interpreter, fed whatever replies the codec lets through, ends every call within a bounded number of
commands and never raises; the server, after a series of junk connections, still serves a good caller.
(Flow validity properties are tests/test_ivr_properties.py; the transcript replays tests/test_ivr_fastagi.py.)
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ivr.agi_peer import fastagi_environment
from ivr.agi_protocol import (
    AgiEnvironment,
    AgiError,
    AgiProtocolError,
    AgiReply,
    AgiServerCodec,
    HangupNotice,
    answer,
    parse_reply_line,
)
from ivr.flow import IvrSection
from ivr.interpreter import EmitEvent, EndSession, IvrSession, LookupCustomer, SendCommand
from ivr.ports import LookupResult
from tests.conftest import FIXTURES
from tests.fuzzing import fuzz_settings, junk, mutated
from tests.test_ivr_fastagi import FLOWS, Pbx, Server, finish, scripted

TRANSCRIPT = (Path(FIXTURES) / "fastagi.txt").read_bytes()
ENV_BLOCK = TRANSCRIPT[: TRANSCRIPT.index(b"\n\n") + 2]
REPLY_LINES = [line for line in TRANSCRIPT[len(ENV_BLOCK):].split(b"\n") if line][:40]
MAX_LINE = 256

pytestmark = pytest.mark.timeout(60)


def feed(codec: AgiServerCodec, data: bytes, cuts: list[int]) -> tuple[list[object], str | None]:
    """Feed ``data`` cut at ``cuts``, keeping one command outstanding; return the events and the error."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    events: list[object] = []
    for a, b in zip(points, points[1:], strict=False):
        if codec.state == "commands" and codec.pending is None:
            codec.send(answer())
        try:
            events += codec.receive_data(data[a:b])
        except AgiProtocolError as exc:
            assert exc.reason.strip() and str(exc) == exc.reason
            assert codec.state == "closed" and codec.buffered == 0
            return events, exc.reason
        assert codec.buffered <= codec.max_line_bytes
    return events, None


@fuzz_settings(300)
@given(data=st.one_of(junk(), mutated([TRANSCRIPT[:3000], ENV_BLOCK], 6)),
       cuts=st.lists(st.integers(0, 5000), max_size=10), env=st.booleans())
@example(data=ENV_BLOCK + b"200 result=1 endpos=" + b"9" * 5000 + b"\n", cuts=[], env=True)  # int() ValueError
@example(data=ENV_BLOCK + b"200 result=1 endpos=" + b"9" * 5000 + b"\n", cuts=[len(ENV_BLOCK)], env=True)
def test_codec_raises_only_protocol_errors_and_holds_at_most_a_line(data: bytes, cuts: list[int], env: bool) -> None:
    codec = AgiServerCodec(max_line_bytes=MAX_LINE, max_env_lines=64, max_usage_lines=20, expect_environment=env)
    events, _error = feed(codec, data, cuts)
    for event in events:
        assert isinstance(event, AgiEnvironment | AgiReply | HangupNotice)
        if isinstance(event, AgiEnvironment):  # every derived property of a hostile environment is readable
            _ = (event.flow_name, event.params, event.args, event.dnis, event.ani, event.language, event.script)
        if isinstance(event, AgiReply):
            _ = (event.number, event.data_bytes, event.ok)
    if codec.state == "closed":  # after a protocol error the codec reads nothing more
        assert codec.receive_data(b"more\n") == []


@fuzz_settings(300)
@given(line=st.one_of(st.binary(max_size=80), mutated(REPLY_LINES, 3)))
@example(line=b"200 result=1 endpos=" + b"9" * 5000)
@example(line=b"200 result=x endpos=" + b"9" * 5000)
def test_reply_line_parses_or_is_refused_with_a_reason(line: bytes) -> None:
    text = line.decode("latin-1")
    try:
        reply = parse_reply_line(text)
    except AgiProtocolError as exc:
        assert exc.reason.strip()
        return
    assert 0 <= reply.code <= 999 and (reply.endpos is None or abs(reply.endpos) < 10**20)


def test_an_endless_line_is_refused_at_the_limit() -> None:
    """Bytes without a line end are refused as soon as they pass max_line_bytes, not buffered on."""
    codec = AgiServerCodec(max_line_bytes=1024)
    for _ in range(3):
        codec.receive_data(b"agi_x: " + b"v" * 300)
        assert codec.buffered <= 1024
    try:
        codec.receive_data(b"v" * 300)
    except AgiProtocolError as exc:
        assert "longer than 1024 bytes" in exc.reason
    else:
        raise AssertionError("no error past the line limit")


# --- the interpreter under hostile replies ------------------------------------------------------------

SECTION = IvrSection.model_validate(FLOWS)
ENV = AgiEnvironment(fastagi_environment("ivr"))
reply_bytes = st.one_of(st.sampled_from(REPLY_LINES), mutated(REPLY_LINES, 3), st.binary(max_size=40),
                        st.sampled_from([b"HANGUP", b"200 result=-1", b"511 Command Not Permitted", b"520-Usage",
                                         b"200 result=53", b"200 result= (timeout)"]))
lookups = st.sampled_from([LookupResult("found", {"id": "c1", "name": "\x00\xff" * 3}), LookupResult("not_found"),
                           LookupResult("unavailable")])
COMMAND_BUDGET = 400


@fuzz_settings(200)
@given(flow=st.sampled_from(sorted(SECTION.flows)), replies=st.lists(reply_bytes, min_size=1, max_size=60),
       lookup=lookups, now=st.floats(0, 4e9))
def test_interpreter_ends_every_call_whatever_the_replies(flow: str, replies: list[bytes], lookup: LookupResult,
                                                          now: float) -> None:
    """Replies as the codec delivers them (junk ends the call through on_failure, as the shell does): the
    session never raises, asks at most COMMAND_BUDGET commands, and ends with one IvrCompleted."""
    session = IvrSession(flow, SECTION.flows[flow], ENV, server="pbx1")
    codec = AgiServerCodec(expect_environment=False)
    actions = session.start(now)
    sent = 0
    feed_replies = iter(replies)
    while not session.done:
        assert actions, "the session waits for nothing"
        last = actions[-1]
        assert isinstance(last, SendCommand | LookupCustomer | EndSession)
        if isinstance(last, LookupCustomer):
            actions = session.on_lookup(lookup, now)
            continue
        assert isinstance(last, SendCommand)
        sent += 1
        assert sent <= COMMAND_BUDGET
        codec.send(last.command)
        raw = next(feed_replies, None)
        if raw is None:  # the PBX says no more: it hangs up
            actions = session.on_hangup(now)
            continue
        try:
            events = codec.receive_data(raw + b"\n")
        except AgiError:
            actions = session.on_failure("protocol error", now)
            continue
        actions = []
        for event in events:
            if isinstance(event, AgiReply):
                actions += session.on_reply(event, now)
            elif isinstance(event, HangupNotice):
                actions += session.on_hangup(now)
        if not events:  # half a 520 block: the rest never comes
            actions = session.on_failure("idle timeout", now)
    done = session.completed
    assert done is not None and done.outcome
    assert done.outcome != "error" or done.reason.strip()  # an error says what went wrong
    assert session.on_reply(AgiReply(200, "1"), now) == [] and session.on_hangup(now) == []


@fuzz_settings(150)
@given(env=mutated([ENV_BLOCK], 4))
def test_a_hostile_environment_starts_a_session_or_is_refused(env: bytes) -> None:
    """Whatever environment gets through the codec, a session on it starts (flow names, params, caller ids
    of any shape) and its first action is a command."""
    codec = AgiServerCodec()
    try:
        events = codec.receive_data(env)
    except AgiProtocolError as exc:
        assert exc.reason
        return
    for event in events:
        if isinstance(event, AgiEnvironment):
            session = IvrSession("ivr", SECTION.flows["ivr"], event)
            actions = session.start(0.0)
            assert isinstance(actions[0], EmitEvent) and isinstance(actions[-1], SendCommand)


# --- the FastAGI server over a real socket ---------------------------------------------------------------

def junk_connections() -> list[bytes]:
    """Fixed junk for the socket test: hand-picked, and mutations of the recorded environment (seeded)."""
    rng = random.Random(19)
    out = [b"\x00" * 64, b"agi_request: agi://x/ivr\n" * 2 + b"\n" + b"200 result=1 endpos=" + b"9" * 5000 + b"\n",
           ENV_BLOCK + b"200 result=0\n" * 3, b"\xff\xfe" + ENV_BLOCK, ENV_BLOCK.replace(b"\n", b"\r\n"),
           b"agi_x: " + b"y" * 10_000 + b"\n", ENV_BLOCK[:200], b"GET / HTTP/1.1\r\n\r\n"]
    for _ in range(12):
        data = bytearray(ENV_BLOCK + b"200 result=0\n200 result=53 endpos=25760\n")
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.4:
                data[pos] ^= 1 << rng.randrange(8)
            elif choice < 0.7:
                data[pos:pos] = rng.choice([b"\x00", b"\r", b"\n\n", b"\xc3", b"9" * 30])
            else:
                del data[pos:pos + rng.randint(1, 40)]
        out.append(bytes(data))
    return out


def test_server_survives_junk_connections_and_then_serves_a_caller() -> None:
    srv = Server(max_line_bytes=512)
    try:
        for data in junk_connections():
            pbx = srv.connect(Pbx([data]))
            # whatever the junk left the session waiting for, its timers (virtual) end it
            srv.clock.advance(srv.section.env_timeout + 1)
            srv.clock.advance(srv.section.idle_timeout + 1)
            finish(pbx)
        assert srv.factory.active == 0 and srv.clock.getDelayedCalls() == []
        assert srv.factory.stats["protocol_errors"] >= 3
        good = srv.connect(scripted("ivr", ["5", "1234#"]))
        finish(good)
        assert srv.completed()[-1].outcome == "queue" and srv.factory.active == 0
    finally:
        srv.stop()
