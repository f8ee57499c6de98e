"""FastAGI server over real loopback TCP: the recorded Asterisk transcript replays against it, junk and
timeouts close one connection while the server lives on. Sockets on the asyncio reactor, timers on a Clock."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from ivr.agi_peer import ScriptedCaller, fastagi_environment
from ivr.agi_protocol import (
    AgiProtocolError,
    AgiReply,
    AgiServerCodec,
    answer,
    parse_reply_line,
    parse_reply_line_general,
)
from ivr.events import CallbackRequested, IvrCompleted, IvrEvent, IvrStarted, PromptMissing
from ivr.fastagi import FastAgiFactory, ImmediateWriter, listen_fastagi
from ivr.flow import IvrSection
from ivr.ports import InMemoryCustomerLookup, LookupResult
from tests.amiserver import reactor, run_until, wait

FLOWS = yaml.safe_load("""
ivr:
  flows:
    ivr:
      start: menu
      nodes:
        menu: {kind: menu, prompt: demo-congrats, options: {"5": code}}
        code: {kind: collect, name: code, prompt: beep, max_digits: 4, next: q}
        q: {kind: queue, queue: support}
    hup:
      start: hello
      nodes:
        hello: {kind: play, prompts: demo-congrats, next: q}
        q: {kind: queue, queue: support}
    who:
      start: look
      nodes:
        look: {kind: lookup, by: ani, found: vip, not_found: std, unavailable: down}
        vip: {kind: queue, queue: vip}
        std: {kind: callback, queue: support, next: q}
        q: {kind: queue, queue: support}
        down: {kind: queue, queue: fallback}
""")["ivr"]


class Pbx(Protocol):
    """Asterisk's side of one FastAGI connection: a ScriptedCaller, or replayed recorded chunks."""

    def __init__(self, env: list[bytes], caller: ScriptedCaller | None = None,
                 replies: list[list[bytes]] | None = None) -> None:
        self.env = env
        self.caller = caller
        self.replies = list(replies or [])
        self.lines: list[str] = []
        self.buffer = b""
        self.closed: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        for chunk in self.env:
            self.transport.write(chunk)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            raw, self.buffer = self.buffer.split(b"\n", 1)
            line = raw.decode()
            self.lines.append(line)
            if self.caller is not None:
                self.transport.write(self.caller.reply_to(line))  # type: ignore[union-attr]
            elif self.replies:
                for chunk in self.replies.pop(0):
                    self.transport.write(chunk)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


class Server:
    """A FastAGI listener on an ephemeral port with recorded events and a Clock for its timers."""

    def __init__(self, lookup: Any = None, **settings: Any) -> None:
        self.events: list[IvrEvent] = []
        self.clock = task.Clock()
        self.section = IvrSection.model_validate({**FLOWS, **settings})
        self.port, self.factory = listen_fastagi(self.section, self.events.append, host="127.0.0.1", port=0,
                                                 lookup=lookup, reactor=reactor, clock=self.clock,
                                                 server_names={"127.0.0.1": "pbx1"})
        self.number = self.port.getHost().port
        self.sessions: list[Protocol] = []
        build = self.factory.buildProtocol

        def track(addr: Any) -> Protocol | None:
            proto = build(addr)
            if proto is not None:
                self.sessions.append(proto)
            return proto

        self.factory.buildProtocol = track  # type: ignore[method-assign]

    def connect(self, pbx: Pbx) -> Pbx:
        wait(connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.number), pbx))
        return pbx

    def completed(self) -> list[IvrCompleted]:
        return [e for e in self.events if isinstance(e, IvrCompleted)]

    def stop(self) -> None:
        """Stop listening and close every session still open, so no test leaves sockets to the next."""
        wait(defer.maybeDeferred(self.port.stopListening))
        open_ = [p.transport for p in self.sessions
                 if p.transport is not None and not getattr(p.transport, "disconnected", True)]
        for transport in open_:
            transport.abortConnection()  # type: ignore[attr-defined]
        run_until(lambda: all(t.disconnected for t in open_))  # type: ignore[attr-defined]


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.stop()


def recorded(fixtures_dir: Path, conn: str) -> tuple[list[bytes], list[list[bytes]]]:
    """The env chunks and, per command, the reply chunks Asterisk sent on one recorded connection."""
    rows = [json.loads(line) for line in (fixtures_dir / "fastagi.timeline.jsonl").read_text().splitlines()]
    env: list[bytes] = []
    replies: list[list[bytes]] = []
    for row in rows:
        if row["conn"] != conn:
            continue
        data = row["data"].encode("latin-1")
        if row["dir"] == "send":
            replies.append([])
        elif not replies:
            env.append(data)
        else:
            replies[-1].append(data)
    return env, replies


def scripted(flow: str, keys: list[str | None], ani: str = "+15551230002", uniqueid: str = "1.1") -> Pbx:
    caller = ScriptedCaller(fastagi_environment(flow, uniqueid=uniqueid, ani=ani), keys=keys)
    return Pbx([caller.environment()], caller=caller)


def finish(pbx: Pbx) -> None:
    wait(pbx.closed)


# --- golden: Asterisk's recorded bytes against our server ----------------------------------------------

def test_golden_session_1_replays_to_a_queued_call(server: Server, fixtures_dir: Path) -> None:
    """Session 1 of fastagi.txt (env in its two real chunks, replies in order) walks menu -> collect -> queue."""
    env, replies = recorded(fixtures_dir, "agi1")
    pbx = server.connect(Pbx(env, replies=replies))
    finish(pbx)
    assert pbx.lines[:3] == ["ANSWER", "STREAM FILE demo-congrats 0123456789*#", "GET DATA beep 5000 4"]
    assert pbx.lines[-1] == "SET VARIABLE CTI_NEXT queue" and "SET VARIABLE CTI_CODE 1234" in pbx.lines
    done = server.completed()[0]
    assert (done.outcome, done.queue, done.collected, done.server) == ("queue", "support", {"code": "1234"}, "pbx1")
    assert done.uniqueid == "1795443026.0" and done.channel == "Local/dtmfcaller@sim-00000000;1"
    started = [e for e in server.events if isinstance(e, IvrStarted)]
    assert started[0].flow == "ivr" and started[0].ani == "+15551230002"
    assert server.factory.active == 0 and server.clock.getDelayedCalls() == []


def test_golden_session_2_hangup_mid_prompt(server: Server, fixtures_dir: Path) -> None:
    """Session 2: result=-1, then HANGUP in its own chunk, then 511: the flow ends as caller_hangup."""
    env, replies = recorded(fixtures_dir, "agi2")
    pbx = server.connect(Pbx(env, replies=[replies[0], replies[1], replies[3]]))
    finish(pbx)
    assert pbx.lines[:2] == ["ANSWER", 'STREAM FILE demo-congrats ""']
    assert all(not line.startswith("SET VARIABLE CTI_NEXT") for line in pbx.lines)
    done = server.completed()[0]
    assert done.outcome == "caller_hangup" and done.flow == "hup"


@pytest.mark.parametrize("index, reason", [(12, "answered 510"), (13, "answered 520")])
def test_golden_510_and_multiline_520_end_the_flow(server: Server, fixtures_dir: Path, index: int,
                                                   reason: str) -> None:
    """The recorded 510 line and the 520 usage block (split over two reads) end the flow with outcome error."""
    env, replies = recorded(fixtures_dir, "agi1")
    pbx = server.connect(Pbx(env, replies=[replies[0], replies[index]]))
    finish(pbx)
    done = server.completed()[0]
    assert done.outcome == "error" and reason in done.reason
    assert server.factory.stats["protocol_errors"] == 0


# --- simulated callers ----------------------------------------------------------------------------------

def test_concurrent_callers_walk_flows_over_tcp() -> None:
    """Twenty callers at once: look-up found / not found (with a callback request) / every path completes."""
    srv = Server(lookup=InMemoryCustomerLookup([{"id": "c1", "phone": "+1000"}]))
    try:
        pbxs = [srv.connect(scripted("who", [], ani="+1000" if i % 2 else "+2000", uniqueid=f"9.{i}"))
                for i in range(20)]
        for pbx in pbxs:
            finish(pbx)
        done = {e.uniqueid: e for e in srv.completed()}
        assert len(done) == 20
        assert {done[f"9.{i}"].queue for i in range(1, 20, 2)} == {"vip"}
        assert {done[f"9.{i}"].queue for i in range(0, 20, 2)} == {"support"}
        assert len([e for e in srv.events if isinstance(e, CallbackRequested)]) == 10
        assert srv.factory.active == 0 and srv.factory.stats["sessions"] == 20
    finally:
        srv.stop()


def test_async_lookup_and_lookup_timeout() -> None:
    """A coroutine look-up is awaited; one that never answers times out (Clock) into the unavailable branch."""

    class Async:
        async def lookup(self, by: str, value: str) -> LookupResult:
            return LookupResult("found", {"id": "x"})

    srv = Server(lookup=Async())
    try:
        finish(srv.connect(scripted("who", [])))
        assert srv.completed()[0].queue == "vip"
    finally:
        srv.stop()

    class Never:
        asked: list[str] = []

        def lookup(self, by: str, value: str) -> defer.Deferred[LookupResult]:
            self.asked.append(value)
            return defer.Deferred()

    never = Never()
    srv = Server(lookup=never, lookup_timeout=2)
    try:
        pbx = srv.connect(scripted("who", []))
        run_until(lambda: never.asked == ["+15551230002"])
        srv.clock.advance(2)
        finish(pbx)
        assert srv.completed()[0].queue == "fallback"
        assert srv.clock.getDelayedCalls() == []
    finally:
        srv.stop()


def test_pbx_drops_the_connection_mid_session(server: Server) -> None:
    """If the PBX closes the socket without HANGUP the flow ends with outcome error and frees its slot."""
    pbx = server.connect(Pbx([scripted("ivr", []).env[0]]))
    run_until(lambda: pbx.lines == ["ANSWER"])
    pbx.transport.loseConnection()  # type: ignore[union-attr]
    run_until(lambda: bool(server.completed()))
    assert server.completed()[0].outcome == "error"
    assert server.completed()[0].reason == "connection closed by the PBX"
    assert server.factory.active == 0 and server.clock.getDelayedCalls() == []


# --- junk, limits, timeouts -----------------------------------------------------------------------------

@pytest.mark.parametrize("junk", [
    b"GET / HTTP/1.1\r\nHost: pbx\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
    b"agi_network: yes\n" + b"x" * 400,
])
def test_junk_closes_that_connection_and_the_server_lives_on(junk: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """Not-AGI bytes, binary and oversized lines close that one connection with a log line; others go on."""
    srv = Server(max_line_bytes=256)
    try:
        bad = srv.connect(Pbx([junk]))
        finish(bad)
        assert srv.factory.stats["protocol_errors"] == 1
        assert any("closed" in r.getMessage() for r in caplog.records if r.name == "ivr.fastagi")
        good = srv.connect(scripted("ivr", ["5", "1234#"]))
        finish(good)
        assert srv.completed()[-1].outcome == "queue" and srv.factory.active == 0
    finally:
        srv.stop()


def test_environment_and_idle_timeouts(server: Server) -> None:
    """A silent connection is closed after env_timeout; an unanswered command after idle_timeout."""
    silent = server.connect(Pbx([]))
    run_until(lambda: server.factory.active == 1)
    server.clock.advance(server.section.env_timeout)
    finish(silent)
    assert server.factory.stats["timeouts"] == 1 and server.completed() == []
    stuck = server.connect(Pbx([scripted("ivr", []).env[0]]))
    run_until(lambda: stuck.lines == ["ANSWER"])
    server.clock.advance(server.section.idle_timeout - 1)
    assert not stuck.closed.called
    server.clock.advance(1)
    finish(stuck)
    done = server.completed()[0]
    assert done.outcome == "error" and done.reason == "timeout: no reply to ANSWER"
    server.clock.advance(60)  # the timeout warnings' summary interval ends
    assert server.clock.getDelayedCalls() == [] and server.factory.active == 0


def test_session_cap_refuses_extra_connections() -> None:
    """Past max_sessions a new connection is closed at once; a freed slot is usable again."""
    srv = Server(max_sessions=2)
    try:
        waiting = [srv.connect(Pbx([scripted("ivr", []).env[0]])) for _ in range(2)]
        run_until(lambda: all(p.lines == ["ANSWER"] for p in waiting))
        extra = srv.connect(scripted("ivr", []))
        finish(extra)
        assert extra.lines == [] and srv.factory.stats["refused"] == 1
        waiting[0].transport.loseConnection()  # type: ignore[union-attr]
        finish(waiting[0])
        run_until(lambda: srv.factory.active == 1)
        finish(srv.connect(scripted("ivr", ["5", "1234#"])))
        assert srv.completed()[-1].outcome == "queue"
    finally:
        srv.stop()


def test_allow_list_and_unknown_flow() -> None:
    """A peer outside allow_from is refused; an unknown flow name closes without a session."""
    srv = Server(allow_from=["10.0.0.0/8"])
    try:
        refused = srv.connect(scripted("ivr", []))
        finish(refused)
        assert refused.lines == [] and srv.factory.stats["refused"] == 1
    finally:
        srv.stop()
    srv = Server(allow_from=["127.0.0.1"])
    try:
        lost = srv.connect(scripted("nosuchflow", []))
        finish(lost)
        assert lost.lines == [] and srv.factory.stats["unknown_flow"] == 1 and srv.events == []
    finally:
        srv.stop()


def test_broken_event_sink_does_not_break_the_call(caplog: pytest.LogCaptureFixture) -> None:
    """A sink that raises is logged and counted; the caller still reaches the queue."""
    srv = Server()

    def broken(event: IvrEvent) -> None:
        raise RuntimeError("sink down")

    srv.factory.sink = broken
    try:
        pbx = srv.connect(scripted("ivr", ["5", "1234#"]))
        finish(pbx)
        assert pbx.lines[-1] == "SET VARIABLE CTI_NEXT queue" and srv.factory.stats["sink_errors"] == 2
    finally:
        srv.stop()


def test_allowed_matches_ipv4_mapped_addresses() -> None:
    """allow_from entries match IPv4 peers seen as IPv4-mapped IPv6 addresses; hostnames never match."""
    factory = FastAgiFactory(IvrSection(allow_from=["192.0.2.0/24"]), lambda e: None, clock=task.Clock())
    assert factory.allowed("192.0.2.7") and factory.allowed("::ffff:192.0.2.7")
    assert not factory.allowed("198.51.100.1") and not factory.allowed("pbx.example")


# --- immediate writes ------------------------------------------------------------------------------------

class Sink(Protocol):
    """Collects what it receives; starts paused so the sender's socket buffer fills."""

    def __init__(self) -> None:
        self.data = bytearray()

    def connectionMade(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data


def test_immediate_writer_keeps_order_after_a_short_send() -> None:
    """A write the socket cannot take at once goes on through Twisted's buffer, and so do later writes:
    the peer gets every byte in order."""
    accepted: list[Protocol] = []

    class Accept(ServerFactory):
        def buildProtocol(self, addr: Any) -> Protocol:
            proto = Protocol()
            accepted.append(proto)
            return proto

    port = reactor.listenTCP(0, Accept(), interface="127.0.0.1")
    try:
        sink = wait(connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Sink()))
        run_until(lambda: bool(accepted) and accepted[0].transport is not None)
        transport = accepted[0].transport
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # type: ignore[union-attr]
        writer = ImmediateWriter(transport)  # type: ignore[arg-type]
        writer.write(b"ANSWER\n")
        assert writer.direct
        big = bytes(range(256)) * 8192  # 2 MiB: more than the socket buffers hold
        writer.write(big)
        assert not writer.direct
        writer.write(b"HANGUP\n")
        sink.transport.resumeProducing()  # type: ignore[union-attr]
        run_until(lambda: len(sink.data) == 7 + len(big) + 7)
        assert bytes(sink.data) == b"ANSWER\n" + big + b"HANGUP\n"
        transport.loseConnection()  # type: ignore[union-attr]
        run_until(lambda: transport.disconnected)  # type: ignore[union-attr]
    finally:
        wait(defer.maybeDeferred(port.stopListening))


def test_immediate_writer_without_a_socket_uses_the_transport() -> None:
    """A transport with no socket handle (here an in-memory one) gets every write through transport.write."""
    transport = StringTransport()
    writer = ImmediateWriter(transport)
    writer.write(b"ANSWER\n")
    assert not writer.direct and transport.value() == b"ANSWER\n"


def test_sessions_write_commands_directly(server: Server) -> None:
    """A normal session never needs Twisted's write buffer: every command left with one send()."""
    pbx = server.connect(scripted("ivr", ["5", "1234#"]))
    finish(pbx)
    assert pbx.lines[-1] == "SET VARIABLE CTI_NEXT queue"
    session = server.sessions[0]
    assert session._writer is not None and session._writer.direct  # type: ignore[attr-defined]


# --- reply parsing fast paths ----------------------------------------------------------------------------

REPLY_PARTS = st.sampled_from(["200", "510", "520", "200 ", "result=", "-", "1", "49", "٣", "*#", " ", "\t",
                               "\xa0", "(timeout)", " (", ")", " endpos=", "endpos=", "4000", "-1", "x"])


@given(st.lists(REPLY_PARTS, max_size=8).map("".join))
@settings(max_examples=400, deadline=None)
def test_reply_fast_paths_agree_with_the_general_parser(tail: str) -> None:
    """The regex-free fast paths for the common replies give exactly what the general parser gives (or
    both refuse the line)."""
    text = "200 result=" + tail

    def parse(fn: Any) -> AgiReply | str:
        try:
            return fn(text)  # type: ignore[no-any-return]
        except AgiProtocolError:
            return "refused"

    assert parse(parse_reply_line) == parse(parse_reply_line_general)


def test_stream_file_reply_parsed_with_endpos() -> None:
    """STREAM FILE's ``200 result=49 endpos=4000`` gives the key code, the position and no data."""
    assert parse_reply_line("200 result=49 endpos=4000") == AgiReply(200, "49", None, 4000, "result=49")
    assert parse_reply_line("200 result=0 endpos=-1").endpos == -1


ENV_LINES = st.sampled_from(["agi_request: agi://pbx/ivr", "agi_channel: PJSIP/1-0001", "agi_accountcode: ",
                             "agi_accountcode:", "agi_language:  fr ", "agi_callerid: \u00e9\t+1", "agi_x:y",
                             "bogus: 1", "agi_: 1", "agi_arg_1: a: b", "agi_channel: again", "\r", "agi_x: 1\r",
                             "agi_" + "k" * 70 + ": 1", "agi_note: " + "v" * 40])


@given(st.lists(ENV_LINES, max_size=12), st.sampled_from([b"", b"200 result=0\n", b"HANGUP\n", b"junk\n"]),
       st.sampled_from([8192, 64]), st.sampled_from([256, 3]))
@settings(max_examples=300, deadline=None)
def test_environment_in_one_read_parses_like_line_by_line(lines: list[str], after: bytes, max_line: int,
                                                          max_env: int) -> None:
    """An environment block arriving in one read (parsed as a block) gives the same events, or the same
    protocol error, as the same bytes arriving one byte at a time (parsed line by line)."""
    data = "".join(f"{line}\n" for line in lines).encode() + b"\n" + after

    def run(chunks: list[bytes]) -> tuple[list[object], str | None]:
        codec = AgiServerCodec(max_line_bytes=max_line, max_env_lines=max_env)
        codec.pending = answer()  # a command is outstanding, so a reply after the environment is legal
        events: list[object] = []
        try:
            for chunk in chunks:
                events += codec.receive_data(chunk)
        except AgiProtocolError as exc:
            return events, exc.reason
        return events, None

    whole_events, whole_error = run([data])
    byte_events, byte_error = run([data[i:i + 1] for i in range(len(data))])
    assert whole_error == byte_error
    if whole_error is None:
        assert whole_events == byte_events


def test_idle_timeout_shorter_than_the_environment_timeout() -> None:
    """When idle_timeout is shorter than env_timeout, the connection's one timer is pulled in: an
    unanswered first command still times out after idle_timeout, and no timer is left behind."""
    srv = Server(env_timeout=30, idle_timeout=5)
    try:
        stuck = srv.connect(Pbx([scripted("ivr", []).env[0]]))
        run_until(lambda: stuck.lines == ["ANSWER"])
        srv.clock.advance(4.9)
        assert not stuck.closed.called
        srv.clock.advance(0.1)
        finish(stuck)
        assert srv.completed()[0].reason == "timeout: no reply to ANSWER"
        srv.clock.advance(60)  # the timeout warnings' summary interval ends
        assert srv.clock.getDelayedCalls() == [] and srv.factory.active == 0
    finally:
        srv.stop()


# --- floods of warnings, missing prompts, URL-encoded flow names ---------------------------------------

def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ivr.fastagi" and r.levelname == "WARNING"]


def test_silent_connections_make_one_timeout_line_per_minute(caplog: pytest.LogCaptureFixture) -> None:
    """200 connections that never send their environment time out together: one WARNING at once, one
    summary with the count when the minute ends, nothing after a quiet minute, and no timer left."""
    srv = Server()
    try:
        caplog.set_level("WARNING", logger="ivr.fastagi")
        silent = [srv.connect(Pbx([])) for _ in range(200)]
        run_until(lambda: srv.factory.active == 200)
        srv.clock.advance(srv.section.env_timeout)
        for pbx in silent:
            finish(pbx)
        assert srv.factory.stats["timeouts"] == 200
        lines = _warnings(caplog)
        assert len(lines) == 1 and "timed out: no AGI environment" in lines[0]
        srv.clock.advance(60)
        lines = _warnings(caplog)
        assert len(lines) == 2 and lines[1].startswith("199 more FastAGI timeout warnings in the last 60 s")
        srv.clock.advance(60)
        assert len(_warnings(caplog)) == 2 and srv.clock.getDelayedCalls() == []
    finally:
        srv.stop()


def test_refusals_are_counted_per_minute_and_flushed_when_the_listener_stops(
        caplog: pytest.LogCaptureFixture) -> None:
    """Refused connections (allow_from) make one line at once; the rest are counted, and a listener that
    stops logs the count it still holds instead of losing it."""
    srv = Server(allow_from=["10.0.0.0/8"])
    caplog.set_level("WARNING", logger="ivr.fastagi")
    try:
        for _ in range(30):
            finish(srv.connect(Pbx([])))
        assert srv.factory.stats["refused"] == 30
        assert _warnings(caplog) == ["FastAGI connection from 127.0.0.1 refused: not in ivr.allow_from"]
    finally:
        srv.stop()
    lines = _warnings(caplog)
    assert len(lines) == 2 and lines[1].startswith("29 more FastAGI refusal warnings")
    assert srv.clock.getDelayedCalls() == []


MISSING_FLOWS = {"flows": {"main menu": {"start": "acct", "nodes": {
    "acct": {"kind": "collect", "name": "acct", "prompt": "please-enter-your", "max_digits": 4, "next": "q"},
    "q": {"kind": "queue", "queue": "support"}}}}}


def test_missing_prompt_is_logged_once_and_digits_are_still_collected(caplog: pytest.LogCaptureFixture) -> None:
    """Two callers of the flow ``main menu`` (AGI URL path ``main%20menu``) reach a collect node whose prompt
    the PBX lacks: both still enter their digits and are queued; the log names flow, node and prompt once;
    each call emits its own PromptMissing event."""
    srv = Server(**MISSING_FLOWS)
    caplog.set_level("WARNING", logger="ivr.fastagi")
    try:
        for uniqueid, keys in (("1.1", "1234#"), ("1.2", "4321#")):
            caller = ScriptedCaller(fastagi_environment("main%20menu", uniqueid=uniqueid), keys=[keys],
                                    missing_prompts=frozenset({"please-enter-your"}))
            finish(srv.connect(Pbx([caller.environment()], caller=caller)))
        done = srv.completed()
        assert [(d.flow, d.outcome, d.collected) for d in done] == [
            ("main menu", "queue", {"acct": "1234"}), ("main menu", "queue", {"acct": "4321"})]
        assert len([e for e in srv.events if isinstance(e, PromptMissing)]) == 2
        lines = [m for m in _warnings(caplog) if "please-enter-your" in m]
        assert lines == ["IVR flow 'main menu' node 'acct': PBX pbx1 cannot play prompt 'please-enter-your' "
                         "(no such sound file?); skipped. Logged once per prompt"]
    finally:
        srv.stop()
