"""FastAGI client (sim/fastagi_client.py): what it sends a FastAGI server is what Asterisk 22 sent in
fixtures/asterisk/fastagi.txt, byte for byte; media take simulated time; hang-ups, limits and garbage
end sessions the way res_agi does.

The golden tests replay fastagi.sent.txt from a small FastAGI server written here against the client,
once in virtual time over the in-memory network (no normalisation at all: the test channel carries
the capture's channel names, uniqueids and caller ids, and virtual time makes endpos exact), and once
over real TCP on 127.0.0.1 with a sped-up real clock, where the numbers after ``endpos=`` are
normalised because they depend on when the real reactor fired the hang-up.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial import unittest

from sim.agi_channel import AGI_RESULT_TEXT, AgiChannel
from sim.clock import ScaledClock, VirtualClock
from sim.fastagi_client import (
    FastAGIClient,
    c_int,
    find_command,
    parse_agi_url,
    parse_args,
    played_samples,
    say_number_files,
)
from sim.memory_transport import MemoryNetwork
from sim.settings import AgiSettings

T0 = 1795443026.0  # the capture's epoch, so float rounding at real-world magnitudes is exercised


class ScriptedChannel:
    """A small concrete AgiChannel that records what the client does to it."""

    def __init__(self, clock: Any, *, name: str = "Local/dtmfcaller@sim-00000000;1", uniqueid: str = "1795443026.0",
                 caller_num: str = "+15551230002", caller_name: str = "IVR Caller", exten: str = "s",
                 keys: list[tuple[str, float] | None] | None = None, variables: dict[str, str] | None = None,
                 hangup_after: dict[str, float] | None = None, state: int = 6) -> None:
        self.clock = clock
        self.name, self.uniqueid, self.linkedid = name, uniqueid, uniqueid
        self.context, self.exten, self.priority = "ivr", exten, 3
        self.caller_num, self.caller_name = caller_num, caller_name
        self.dnis = self.rdnis = self.accountcode = ""
        self.language = "en"
        self.state = state
        self.hungup = False
        self.vars = dict(variables or {})
        self.keys: deque[tuple[str, float] | None] = deque(keys or [])
        self.hangup_after = hangup_after or {}
        self.log: list[tuple[Any, ...]] = []
        self._cbs: list[Callable[[], None]] = []
        self.dtmf_listeners: list[Callable[[str], None]] = []  # as sim.pbx.Channel has

    def get_var(self, name: str) -> str | None:
        builtins = {"CHANNEL": self.name, "UNIQUEID": self.uniqueid, "EXTEN": self.exten,
                    "CONTEXT": self.context, "PRIORITY": str(self.priority)}
        return builtins.get(name, self.vars.get(name))

    def set_var(self, name: str, value: str) -> None:
        self.vars[name] = value
        self.log.append(("VarSet", name, value))

    def substitute(self, text: str) -> str:
        def one(m: re.Match[str]) -> str:
            expr = m.group(1)
            if expr == "CALLERID(num)":
                return self.caller_num
            if expr == "CALLERID(name)":
                return self.caller_name
            return self.get_var(expr) or ""

        return re.sub(r"\$\{([^}]*)\}", one, text)

    def answer(self) -> None:
        self.state = 6
        self.log.append(("Answer",))

    def hangup(self, cause: int = 16) -> None:
        self.log.append(("Hangup", cause))
        self.caller_hangs_up()

    def exec_app(self, app: str, data: str) -> Deferred[int]:
        self.log.append(("Exec", app, data))
        if app.lower() == "set":
            name, _, value = data.partition("=")
            self.set_var(name, value)
            return succeed(0)
        if app.lower() == "wait":
            d: Deferred[int] = Deferred()
            self.clock.callLater(float(data), d.callback, 0)
            return d
        if app.lower() == "broken":
            return defer.fail(RuntimeError("app exploded"))
        return succeed(-2)

    def next_keys(self) -> tuple[str, float] | None:
        self.log.append(("next_keys",))
        return self.keys.popleft() if self.keys else None

    def receive_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        self.log.append(("DTMF", digit, round(self.clock.seconds() - T0, 3)))
        for listener in list(self.dtmf_listeners):
            listener(digit)

    def on_hangup(self, cb: Callable[[], None]) -> None:
        if self.hungup:
            cb()
        else:
            self._cbs.append(cb)

    def emit_agi_exec(self, start: bool, command: str, result_code: int = 200, result: str = "") -> None:
        if start:
            self.log.append(("AGIExecStart", command))
            if command in self.hangup_after:
                self.clock.callLater(self.hangup_after[command], self.caller_hangs_up)
        else:
            self.log.append(("AGIExecEnd", command, result_code, result or AGI_RESULT_TEXT[result_code]))

    def caller_hangs_up(self) -> None:
        if not self.hungup:
            self.hungup = True
            for cb in self._cbs:
                cb()

    def events(self, kind: str) -> list[tuple[Any, ...]]:
        return [e[1:] for e in self.log if e[0] == kind]


class AgiServer(Protocol):
    """A scripted FastAGI server: after the environment block it sends each command once the previous
    one's final response line (``NNN ...``) arrived, then closes. ``pipeline`` sends all at once;
    ``@sleep N`` waits N simulated seconds before the next command."""

    def __init__(self, commands: list[bytes], clock: Any, pipeline: bool = False, close: str = "full") -> None:
        self.commands = deque(commands)
        self.clock = clock
        self.pipeline = pipeline
        self.close_how = close
        self.received = bytearray()
        self.buf = bytearray()
        self.env_done = False
        self.response_times: list[float] = []
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.buf += data
        while b"\n" in self.buf:
            line, _, rest = bytes(self.buf).partition(b"\n")
            self.buf = bytearray(rest)
            if not self.env_done:
                if line == b"":
                    self.env_done = True
                    self.next()
            elif re.match(rb"^\d{3} ", line):
                self.response_times.append(self.clock.seconds())
                if not self.pipeline:
                    self.next()

    def next(self) -> None:
        if self.commands and self.commands[0].startswith(b"@sleep "):
            self.clock.callLater(float(self.commands.popleft()[7:]), self.next)
            return
        if self.pipeline:
            self.transport.write(b"".join(self.commands))
            self.commands.clear()
        if self.commands:
            self.transport.write(self.commands.popleft())
        elif self.close_how == "half":
            self.transport.loseWriteConnection()
        elif self.close_how == "full":
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if not self.lost.called:
            self.lost.callback(None)


class ServerFactory(Factory):
    def __init__(self, make: Callable[[], AgiServer]) -> None:
        self.make = make
        self.servers: list[AgiServer] = []

    def buildProtocol(self, addr: IAddress) -> AgiServer:
        server = self.make()
        server.factory = self
        self.servers.append(server)
        return server


def sessions(fixtures_dir: Path) -> tuple[list[bytes], list[bytes], bytes, bytes]:
    sent = (fixtures_dir / "fastagi.sent.txt").read_bytes().splitlines(keepends=True)
    received = (fixtures_dir / "fastagi.txt").read_bytes()
    return sent[:14], sent[14:], received[:992], received[992:]


def channel_one(clock: Any) -> ScriptedChannel:
    return ScriptedChannel(clock, keys=[("5", 3.22), ("1234", 3.45)], variables={"CTI_TICKET": "IVR-1795443026.0"})


def channel_two(clock: Any) -> ScriptedChannel:
    return ScriptedChannel(clock, name="Local/hangupcaller@sim-00000001;1", uniqueid="1795443038.2",
                       caller_num="+15551230003", caller_name="Impatient Caller", exten="hup",
                       variables={"CTI_TICKET": "IVR-1795443038.2"},
                       hangup_after={'STREAM FILE demo-congrats ""': 3.02})


def ami_view(fixtures_dir: Path, channel: str) -> dict[str, list[tuple[Any, ...]]]:
    """AGIExecEnd (command, code, result), DTMFEnd digits and VarSet pairs of one channel in fastagi_ami.txt,
    leaving out the variables the dialplan sets around AGI() (CTI_TICKET before, AGISTATUS after)."""
    text = (fixtures_dir / "fastagi_ami.txt").read_bytes().decode("latin-1")
    out: dict[str, list[tuple[Any, ...]]] = {"exec": [], "dtmf": [], "vars": []}
    for block in text.split("\r\n\r\n"):
        h = dict(line.split(": ", 1) for line in block.split("\r\n") if ": " in line)
        if h.get("Channel") != channel:
            continue
        if h.get("Event") == "AGIExecEnd":
            out["exec"].append((h["Command"], int(h["ResultCode"]), h["Result"]))
        elif h.get("Event") == "DTMFEnd":
            out["dtmf"].append((h["Digit"],))
        elif h.get("Event") == "VarSet" and h["Variable"] not in ("CTI_TICKET", "AGISTATUS"):
            out["vars"].append((h["Variable"], h["Value"]))
    return out


def run_memory(commands: list[bytes], channel_factory: Callable[[VirtualClock], ScriptedChannel], *,
               url: str = "agi://127.0.0.1:4573/ivr?lang=en", args: list[str] | None = None,
               settings: AgiSettings | None = None, pipeline: bool = False, close: str = "full",
               max_chunk: int | None = None, until: float = 3600.0
               ) -> tuple[bytes, list[str], ScriptedChannel, AgiServer, VirtualClock]:
    """One session in virtual time over the memory network; returns (bytes the server got, results,
    channel, server, clock)."""
    clock = VirtualClock(start=T0)
    network = MemoryNetwork(clock, max_chunk=max_chunk)
    factory = ServerFactory(lambda: AgiServer(commands, clock, pipeline=pipeline, close=close))
    network.listen("127.0.0.1", 4573, factory)
    client = FastAGIClient(clock, network.connect, settings)
    channel = channel_factory(clock)
    results: list[str] = []
    client.run(channel, url, args or []).addCallback(results.append)
    clock.run_until(T0 + until)
    server = factory.servers[0] if factory.servers else AgiServer([], clock)
    return bytes(server.received), results, channel, server, clock


# --- golden ------------------------------------------------------------------------------------------

def test_golden_session_one_in_virtual_time(fixtures_dir: Path) -> None:
    """Session 1 (ANSWER ... GET DATA usage) produces fastagi.txt's first 992 bytes exactly, the same
    AGIExecEnd codes, DTMF and variables as fastagi_ami.txt, plausible timing, and leaves no timer."""
    one, _two, expected, _ = sessions(fixtures_dir)
    got, results, chan, server, clock = run_memory(one, channel_one)
    assert got == expected
    assert results == ["SUCCESS"]
    ami = ami_view(fixtures_dir, chan.name)
    assert chan.events("AGIExecEnd") == ami["exec"]
    assert [(d,) for d, _t in chan.events("DTMF")] == ami["dtmf"]
    assert chan.events("VarSet") == ami["vars"]
    # simulated times of the responses follow the capture's timeline (fastagi.timeline.jsonl)
    timeline = [json.loads(line) for line in (fixtures_dir / "fastagi.timeline.jsonl").read_text().splitlines()]
    real = [e["t"] for e in timeline if e["conn"] == "agi1" and e["dir"] == "recv"
            for line in e["data"].split("\n") if re.match(r"^\d{3} ", line)]
    start = real[0]
    assert len(server.response_times) == len(real)
    for ours, theirs in zip(server.response_times, real, strict=True):
        assert abs((ours - T0) - (theirs - start)) < 0.6
    assert clock.getDelayedCalls() == []


def test_golden_session_two_hangup_in_virtual_time(fixtures_dir: Path) -> None:
    """Session 2 (caller hangs up 3.02 s into STREAM FILE) produces fastagi.txt's last 770 bytes exactly:
    200 result=-1 endpos=24160, the unsolicited HANGUP, GET VARIABLE still works, 511 twice, NOOP 200;
    the result is HANGUP."""
    _one, two, _, expected = sessions(fixtures_dir)
    got, results, chan, _server, clock = run_memory(two, channel_two, url="agi://127.0.0.1:4573/hup?lang=en",
                                                     args=["welcome", "42"])
    assert got == expected
    assert results == ["HANGUP"]
    ami = ami_view(fixtures_dir, chan.name)
    assert chan.events("AGIExecEnd") == ami["exec"]
    assert chan.events("VarSet") == ami["vars"]
    assert clock.getDelayedCalls() == []


def test_golden_survives_one_byte_reads(fixtures_dir: Path) -> None:
    """Delivered one byte at a time, both sessions' bytes are unchanged."""
    one, two, exp_one, exp_two = sessions(fixtures_dir)
    assert run_memory(one, channel_one, max_chunk=1)[0] == exp_one
    assert run_memory(two, channel_two, url="agi://127.0.0.1:4573/hup?lang=en", args=["welcome", "42"],
                      max_chunk=1)[0] == exp_two


ENDPOS = re.compile(rb"endpos=\d+")


class GoldenOverRealTcp(unittest.TestCase):
    """Both sessions over real TCP on 127.0.0.1 (port 0) with a real clock sped up 25 times."""

    timeout = 30

    @defer.inlineCallbacks
    def test_golden_over_tcp(self) -> Any:
        """The client's bytes over real sockets equal fastagi.txt once endpos values are normalised."""
        from twisted.internet import reactor

        from tests.conftest import FIXTURES

        one, two, exp_one, exp_two = sessions(FIXTURES)
        clock = ScaledClock(reactor, speed=25.0, start=T0)  # type: ignore[arg-type]
        scripts = deque([one, two])
        factory = ServerFactory(lambda: AgiServer(scripts.popleft(), clock))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        client = FastAGIClient(clock)
        host = port.getHost()
        r1 = yield client.run(channel_one(clock), f"agi://127.0.0.1:{host.port}/ivr?lang=en", [])
        yield factory.servers[0].lost
        r2 = yield client.run(channel_two(clock), f"agi://127.0.0.1:{host.port}/hup?lang=en", ["welcome", "42"])
        yield factory.servers[1].lost
        clock.stop()
        assert (r1, r2) == ("SUCCESS", "HANGUP")
        exp_one = exp_one.replace(b"4573/ivr", b"%d/ivr" % host.port)
        exp_two = exp_two.replace(b"4573/hup", b"%d/hup" % host.port)
        assert bytes(factory.servers[0].received) == exp_one
        assert ENDPOS.sub(b"endpos=N", bytes(factory.servers[1].received)) == ENDPOS.sub(b"endpos=N", exp_two)

    @defer.inlineCallbacks
    def test_connection_refused_is_failure(self) -> Any:
        """Nothing listening on the port: the session result is FAILURE."""
        from twisted.internet import reactor

        factory = ServerFactory(lambda: AgiServer([], None))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        number = port.getHost().port
        yield port.stopListening()
        clock = ScaledClock(reactor, speed=1.0)  # type: ignore[arg-type]
        result = yield FastAGIClient(clock).run(channel_one(clock), f"agi://127.0.0.1:{number}/x", [])
        clock.stop()
        assert result == "FAILURE"


# --- protocol rules ----------------------------------------------------------------------------------

def test_environment_block_and_args() -> None:
    """The env block follows res_agi's order: network lines, request, channel..., threadid, agi_arg_N;
    no agi_network_script without a script path; unknown caller id reads 'unknown'."""
    got, results, *_ = run_memory([], lambda c: ScriptedChannel(c, caller_num="", caller_name=""),
                                  url="agi://127.0.0.1:4573", args=["a b", "", "3"])
    text = got.decode()
    assert text.startswith("agi_network: yes\nagi_request: agi://127.0.0.1:4573\nagi_channel: ")
    assert "agi_network_script" not in text
    assert "agi_callerid: unknown\nagi_calleridname: unknown\n" in text
    assert text.endswith("agi_threadid: 140280187893440\nagi_arg_1: a b\nagi_arg_2: \nagi_arg_3: 3\n\n")
    assert results == ["SUCCESS"]


@pytest.mark.parametrize(("line", "argv"), [
    ('STREAM FILE demo-congrats "0123456789*#"', ["STREAM", "FILE", "demo-congrats", "0123456789*#"]),
    ('SAY DIGITS 42 ""', ["SAY", "DIGITS", "42", ""]),
    ('VERBOSE "two  words" 1', ["VERBOSE", "two  words", "1"]),
    ('SET VARIABLE X a\\ b\\"c', ["SET", "VARIABLE", "X", 'a b"c']),
    ("  GET   VARIABLE\tX  ", ["GET", "VARIABLE", "X"]),
    ('EXEC Dial "PJSIP/1000,20"x', ["EXEC", "Dial", "PJSIP/1000,20x"]),
    ("ANSWER\r", ["ANSWER\r"]),
    ("", []),
])
def test_parse_args_like_res_agi(line: str, argv: list[str]) -> None:
    """Arguments split like res_agi: quotes group, "" is an empty argument, backslash escapes, blanks
    collapse, a stray CR stays part of the word."""
    assert parse_args(line) == argv


def test_find_command_rules() -> None:
    """Command words match case-insensitively; extra words are arguments; a prefix is not a command."""
    assert find_command(["get", "DATA"]) is not None
    assert find_command(["Wait", "For", "Digit", "100"]) is not None
    assert find_command(["GET"]) is None
    assert find_command(["ANSWER\r"]) is None
    assert find_command(["GETDATA"]) is None


def test_helpers() -> None:
    """sscanf-like integers, URL parsing, SAY NUMBER file counts and 20 ms frame endpos."""
    assert c_int(" 42abc") == 42 and c_int("-7") == -7 and c_int("x1") is None
    assert parse_agi_url("agi://h/x?y=1") == ("h", 4573, "x?y=1")
    assert parse_agi_url("AGI://[::1]:99/s/t") == ("::1", 99, "s/t")
    for bad in ("http://h/x", "agi://:1/x", "agi://h:0/x", "agi://h:99999/", "agi://h:a/"):
        with pytest.raises(ValueError):
            parse_agi_url(bad)
    assert [say_number_files(n) for n in (0, 7, 20, 42, 100, 342, 1000, 1234, -5)] == [1, 1, 1, 2, 2, 4, 2, 6, 2]
    assert played_samples(3.22) == 25760 and played_samples(0.019) == 0


def lines(got: bytes) -> list[str]:
    """Response lines after the environment block."""
    return got.decode("latin-1").split("\n\n", 1)[1].splitlines()


def test_unknown_command_and_usage_errors() -> None:
    """Unknown commands get 510; wrong arguments get the 520 usage block; AGIExecEnd says 510/520."""
    cmds = [b"NO SUCH COMMAND\n", b"STREAM FILE\n", b"WAIT FOR DIGIT abc\n", b"SET VARIABLE X\n", b"\n",
            b"SAY NUMBER x \"\"\n"]
    got, results, chan, *_ = run_memory(cmds, ScriptedChannel)
    out = lines(got)
    assert out[0] == "510 Invalid or unknown command"
    assert out[1:5] == ["520-Invalid command syntax.  Proper usage follows:", out[2],
                        "It sets the following channel variables upon completion:", "520 End of proper usage."]
    assert out[2].startswith("Send the given file, allowing playback to be interrupted")
    assert out[5].startswith("520-") and out[6].startswith("Waits up to <replaceable>timeout</replaceable>")
    assert out[7] == "520 End of proper usage."
    assert out[8:11] == ["520-Invalid command syntax.  Proper usage follows:",
                         "Sets a variable to the current channel.", "520 End of proper usage."]
    assert out[11] == "510 Invalid or unknown command"  # the empty line
    assert [e[1] for e in chan.events("AGIExecEnd")] == [510, 520, 520, 520, 510, 520]
    assert results == ["SUCCESS"]


def test_stream_file_plays_its_length_and_ignores_other_digits() -> None:
    """STREAM FILE lasts the prompt length; a digit not in the escape set does not stop it; the full
    play reports endpos = length in samples and PLAYBACKSTATUS=SUCCESS."""
    settings = AgiSettings(prompts={"menu": 4.0})
    got, _results, chan, server, _clock = run_memory([b'STREAM FILE menu "12"\n'],
                                                     lambda c: ScriptedChannel(c, keys=[("9", 1.0)]), settings=settings)
    assert lines(got) == ["200 result=0 endpos=32000"]
    assert server.response_times == [T0 + 4.0]
    assert chan.events("DTMF") == [("9", 1.0)]
    assert chan.events("VarSet") == [("PLAYBACKSTATUS", "SUCCESS")]


def test_keys_wait_for_a_listening_command() -> None:
    """A silent STREAM FILE does not consume the caller's keys; the next listening command gets them,
    timed from its own start."""
    cmds = [b'STREAM FILE hello-world ""\n', b"WAIT FOR DIGIT 5000\n"]
    got, _r, chan, server, _c = run_memory(cmds, lambda c: ScriptedChannel(c, keys=[("3", 2.0)]))
    assert lines(got) == ["200 result=0 endpos=10400", "200 result=51"]
    assert chan.events("DTMF") == [("3", 3.3)]
    assert server.response_times == [T0 + 1.3, T0 + 3.3]


def test_get_data_variants() -> None:
    """GET DATA: '#' ends input (not included), '#' first gives an empty result, too few digits time out
    with '(timeout)', no keys at all time out after prompt + timeout, max digits ends early."""
    cmds = [b"GET DATA beep 3000 10\n", b"GET DATA beep 3000 10\n", b"GET DATA beep 2000 10\n",
            b"GET DATA beep 1500\n", b"GET DATA beep 3000 2\n"]
    keys = [("12#", 1.0), ("#", 0.5), ("7", 0.5), None]
    got, _r, _chan, server, _c = run_memory(cmds, lambda c: ScriptedChannel(c, keys=list(keys)))
    assert lines(got)[:4] == ["200 result=12", "200 result=", "200 result=7 (timeout)", "200 result= (timeout)"]
    assert lines(got)[4] == "200 result= (timeout)"
    gaps = [round(b - a, 2) for a, b in zip([T0, *server.response_times], server.response_times, strict=False)]
    assert gaps[3] == round(0.27 + 1.5, 2)  # prompt, then the full first-digit timeout


def test_wait_for_digit_forever_and_say() -> None:
    """WAIT FOR DIGIT -1 waits until the caller presses; SAY NUMBER/DIGITS/ALPHA take 0.79 s per file and
    can be interrupted by an escape digit."""
    cmds = [b"WAIT FOR DIGIT -1\n", b'SAY NUMBER 1234 ""\n', b'SAY DIGITS 42 "5"\n', b'SAY ALPHA abc "" n\n']
    got, _r, _chan, server, _c = run_memory(cmds, lambda c: ScriptedChannel(c, keys=[("*", 100.0), ("5", 1.0)]))
    assert lines(got) == ["200 result=42", "200 result=0", "200 result=53", "200 result=0"]
    assert server.response_times[0] == T0 + 100.0
    assert round(server.response_times[1] - server.response_times[0], 2) == round(6 * 0.79, 2)
    assert round(server.response_times[2] - server.response_times[1], 2) == 1.0


def test_variables_exec_and_database() -> None:
    """SET/GET VARIABLE, functions through substitute(), GET FULL VARIABLE for another channel name,
    EXEC results (0, -2 'Unknown Result', AGIEXECFULL expansion, a failing app), DATABASE round trip."""
    cmds = [b"SET VARIABLE AGIEXECFULL yes\n", b"GET VARIABLE CALLERID(num)\n", b"GET VARIABLE NOPE\n",
            b'GET FULL VARIABLE "${EXTEN}" Local/other-1\n', b"EXEC Set X=${CHANNEL}\n", b"EXEC NoSuchApp\n",
            b"EXEC Wait 2.5\n", b"EXEC Broken\n", b"DATABASE PUT fam key val\n", b"DATABASE GET fam key\n",
            b"DATABASE DEL fam key\n", b"DATABASE GET fam key\n", b"EXEC\n"]
    got, results, chan, server, _c = run_memory(cmds, ScriptedChannel)
    assert lines(got)[:12] == [
        "200 result=1", "200 result=1 (+15551230002)", "200 result=0", "200 result=0", "200 result=0",
        "200 result=-2", "200 result=0", "200 result=-1", "200 result=1", "200 result=1 (val)", "200 result=1",
        "200 result=0"]
    assert chan.vars["X"] == "Local/dtmfcaller@sim-00000000;1"
    ends = chan.events("AGIExecEnd")
    assert ends[5] == ("EXEC NoSuchApp", 200, "Unknown Result")
    assert ends[7] == ("EXEC Broken", 200, "Unknown Result")  # res_agi: app results other than 0-3
    assert ends[12][1] == 520
    assert round(server.response_times[6] - server.response_times[5], 2) == 2.5
    assert results == ["SUCCESS"]


def test_hangup_while_idle_then_dead_channel_rules() -> None:
    """A caller hanging up between commands triggers HANGUP at once; afterwards dead-channel commands run
    and others get 511; the result is HANGUP."""
    clock_box: list[VirtualClock] = []

    def chan(c: VirtualClock) -> ScriptedChannel:
        clock_box.append(c)
        ch = ScriptedChannel(c)
        c.callLater(1.0, ch.caller_hangs_up)
        return ch

    cmds = [b"@sleep 2\n", b"ANSWER\n", b"GET VARIABLE CTI_X\n", b"NOOP\n", b"VERBOSE hi\n",
            b"CHANNEL STATUS\n"]
    got, results, channel, *_ = run_memory(cmds, chan)
    dead = "511 Command Not Permitted on a dead channel or intercept routine"
    assert lines(got) == ["HANGUP", dead, "200 result=0", "200 result=0", "200 result=1", dead]
    assert channel.events("AGIExecEnd")[0] == ("ANSWER", 511, dead[4:])
    assert results == ["HANGUP"]


@pytest.mark.parametrize(("command", "response", "code"), [
    (b"GET DATA beep 5000 4\n", "200 result=-1", 200),
    (b"WAIT FOR DIGIT -1\n", "200 result=-1", -1),
    (b'SAY NUMBER 123 "1"\n', "200 result=-1", -1),
    (b'GET OPTION beep "1" 9000\n', "200 result=-1 endpos=2160", -1),
])
def test_hangup_during_media_commands(command: bytes, response: str, code: int) -> None:
    """A caller hanging up mid-command ends it with its hang-up result (GET DATA still 'Success', the
    others 'Failure' as res_agi reports them), then HANGUP; the session result is HANGUP."""
    text = command.decode().strip()
    got, results, chan, *_ = run_memory([command, b"NOOP\n"],
                                        lambda c: ScriptedChannel(c, keys=[None], hangup_after={text: 2.0}))
    assert lines(got) == [response, "HANGUP", "200 result=0"]
    assert chan.events("AGIExecEnd")[0][:2] == (text, code)
    assert results == ["HANGUP"]


def test_hangup_while_connecting_is_reported_after_the_environment() -> None:
    """A caller gone before the connection is up: the server gets the environment, then HANGUP."""
    clock = VirtualClock(start=T0)
    network = MemoryNetwork(clock)
    factory = ServerFactory(lambda: AgiServer([b"NOOP\n"], clock))
    network.listen("127.0.0.1", 4573, factory)

    def slow_connect(host: str, port: int, protocol: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        clock.callLater(0.5, lambda: network.connect(host, port, protocol).chainDeferred(d))
        return d

    chan = ScriptedChannel(clock)
    clock.callLater(0.2, chan.caller_hangs_up)
    results: list[str] = []
    FastAGIClient(clock, slow_connect).run(chan, "agi://127.0.0.1:4573/x", []).addCallback(results.append)
    clock.run()
    assert lines(bytes(factory.servers[0].received)) == ["HANGUP", "200 result=0"]
    assert results == ["HANGUP"] and clock.getDelayedCalls() == []


def test_agi_hangup_command_and_sighup_off() -> None:
    """HANGUP hangs the channel up, answers 200 result=1, then (AGISIGHUP=no) sends no HANGUP line."""
    got, results, chan, *_ = run_memory([b"HANGUP\n", b"NOOP\n"],
                                        lambda c: ScriptedChannel(c, variables={"AGISIGHUP": "no"}))
    assert lines(got) == ["200 result=1", "200 result=0"]
    assert ("Hangup", 16) in chan.log and results == ["HANGUP"]
    got, _results, _chan, *_ = run_memory([b"HANGUP\n", b"NOOP\n"], ScriptedChannel)
    assert lines(got) == ["200 result=1", "HANGUP", "200 result=0"]


def test_exit_on_hangup_ends_the_session() -> None:
    """With AGIEXITONHANGUP=yes the session ends after the HANGUP line (plus res_agi's final HANGUP)."""
    got, results, _chan, server, _c = run_memory(
        [b'STREAM FILE long ""\n', b"NOOP\n"],
        lambda c: ScriptedChannel(c, variables={"AGIEXITONHANGUP": "yes"}, hangup_after={'STREAM FILE long ""': 1.0}),
        settings=AgiSettings(prompts={"long": 2.0}))
    assert lines(got) == ["200 result=-1 endpos=8000", "HANGUP", "HANGUP"]
    assert results == ["HANGUP"] and server.lost.called


def test_channel_already_dead_runs_in_dead_mode() -> None:
    """AGI() on a hung-up channel: no HANGUP line, dead-channel rules from the start, result SUCCESS."""

    def chan(c: VirtualClock) -> ScriptedChannel:
        ch = ScriptedChannel(c)
        ch.hungup = True
        return ch

    got, results, *_ = run_memory([b"NOOP\n", b"ANSWER\n"], chan)
    assert lines(got) == ["200 result=0", "511 Command Not Permitted on a dead channel or intercept routine"]
    assert results == ["SUCCESS"]


@pytest.mark.parametrize(("payload", "why"), [
    (b"x" * 9000, "long line"),
    (b"NOOP " + b"x" * 9000 + b"\nNOOP\n", "long line with its newline"),
    (b"NOOP\n" * 20000, "flood of pipelined commands"),
    (b"NOOP\x00\n", "NUL"),
    (b"NOOP\n" * 6, "too many commands"),
    (b"failure\n", "res_agi failure line"),
])
def test_garbage_ends_session_with_failure(payload: bytes, why: str) -> None:
    """Garbage from the server ends the AGI: FAILURE, a final HANGUP line, connection closed."""
    got, results, _chan, server, clock = run_memory([payload], ScriptedChannel, settings=AgiSettings(max_commands=5))
    assert results == ["FAILURE"], why
    assert got.endswith(b"HANGUP\n") and server.lost.called
    assert clock.getDelayedCalls() == []


def test_pipelined_commands_and_server_close_mid_command() -> None:
    """Commands sent all at once run one after the other; closing (half) the socket while they run lets
    them finish in simulated time before the session ends with SUCCESS."""
    cmds = [b"NOOP\n", b'STREAM FILE beep ""\n', b"NOOP\n"]
    got, results, chan, server, _c = run_memory(cmds, ScriptedChannel, pipeline=True, close="half")
    assert lines(got) == ["200 result=0", "200 result=0 endpos=2160", "200 result=0", "HANGUP"]
    assert server.response_times == [T0, T0 + 0.27, T0 + 0.27]
    assert results == ["SUCCESS"]
    assert [e[0] for e in chan.events("AGIExecEnd")] == ["NOOP", 'STREAM FILE beep ""', "NOOP"]


def test_half_close_receives_final_hangup() -> None:
    """A server that only half-closes still reads res_agi's closing HANGUP line."""
    got, results, *_ = run_memory([b"NOOP\n"], ScriptedChannel, close="half")
    assert lines(got) == ["200 result=0", "HANGUP"]
    assert results == ["SUCCESS"]


def test_connect_failures() -> None:
    """Nothing listening (refused), a bad URL, and a connect that never completes (timeout) all give
    FAILURE without leaving timers behind."""
    clock = VirtualClock(start=T0)
    network = MemoryNetwork(clock)
    results: list[str] = []
    client = FastAGIClient(clock, network.connect)
    client.run(ScriptedChannel(clock), "agi://127.0.0.1:4573/x", []).addCallback(results.append)
    client.run(ScriptedChannel(clock), "agi://127.0.0.1:notaport/x", []).addCallback(results.append)
    never = FastAGIClient(clock, lambda host, port, proto: Deferred(), AgiSettings(connect_timeout_s=2.0))
    never.run(ScriptedChannel(clock), "agi://10.0.0.1/x", []).addCallback(results.append)
    clock.run()
    assert results == ["FAILURE", "FAILURE", "FAILURE"]
    assert clock.seconds() == T0 + 2.0 and clock.getDelayedCalls() == []


class PlainChannel(ScriptedChannel):
    """A channel without ``dtmf_listeners``: only the caller model's keys reach the client."""

    def __getattribute__(self, name: str) -> Any:
        if name == "dtmf_listeners":
            raise AttributeError(name)
        return super().__getattribute__(name)

    def receive_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        self.log.append(("DTMF", digit, round(self.clock.seconds() - T0, 3)))


def test_digits_from_elsewhere_and_plain_channels(fixtures_dir: Path) -> None:
    """Digits that reach the channel from the PBX (a peer's SendDTMF) interrupt a prompt like the
    caller model's own; a channel without dtmf_listeners still hears the caller model's keys (the
    golden session is unchanged) and the client leaves no listener behind."""

    def chan(c: VirtualClock) -> ScriptedChannel:
        ch = ScriptedChannel(c, keys=[None])
        c.callLater(1.5, ch.receive_dtmf, "7")
        return ch

    got, _r, ch, *_ = run_memory([b'STREAM FILE menu "7"\n'], chan, settings=AgiSettings(prompts={"menu": 2.0}))
    assert lines(got) == ["200 result=55 endpos=12000"]
    assert ch.dtmf_listeners == []
    one, _two, expected, _ = sessions(fixtures_dir)
    assert run_memory(one, lambda c: PlainChannel(c, keys=[("5", 3.22), ("1234", 3.45)],
                                                  variables={"CTI_TICKET": "IVR-1795443026.0"}))[0] == expected


def test_same_seedless_run_is_deterministic(fixtures_dir: Path) -> None:
    """Running the golden session twice gives identical bytes, event logs and timings."""
    one, *_ = sessions(fixtures_dir)
    first = run_memory(one, channel_one)
    second = run_memory(one, channel_one)
    assert first[0] == second[0] and first[2].log == second[2].log
    assert first[3].response_times == second[3].response_times


def test_protocol_conformance() -> None:
    """The test channel really is an AgiChannel (so these tests use the real contract)."""
    assert isinstance(ScriptedChannel(VirtualClock()), AgiChannel)


# --- prompts the PBX does not have ----------------------------------------------------------------------

def test_stream_file_of_a_missing_prompt_fails_at_once_and_the_session_goes_on() -> None:
    """res_agi's handle_streamfile: ast_openstream fails -> ``200 result=-1 endpos=<offset>`` at once, no
    PLAYBACKSTATUS, RESULT_FAILURE (AGIExecEnd -1 'Failure'); the session keeps serving commands but
    AGI() ends with AGISTATUS=FAILURE. ``welcome`` is not an Asterisk core sound."""
    cmds = [b'STREAM FILE welcome ""\n', b'STREAM FILE welcome "" 800\n', b"SET VARIABLE CTI_NEXT transfer\n"]
    got, results, chan, server, _c = run_memory(cmds, lambda c: ScriptedChannel(c, keys=[("3", 0.5)]))
    assert lines(got) == ["200 result=-1 endpos=0", "200 result=-1 endpos=800", "200 result=1"]
    assert server.response_times == [T0, T0, T0]
    assert [e[1:] for e in chan.events("AGIExecEnd")] == [(-1, "Failure"), (-1, "Failure"), (200, "Success")]
    assert chan.events("VarSet") == [("CTI_NEXT", "transfer")] and chan.events("next_keys") == []
    assert results == ["FAILURE"]


def test_get_data_of_a_missing_prompt_answers_minus_one_and_an_empty_prompt_listens() -> None:
    """res_agi's handle_getdata over ast_app_getdata_full: a prompt that cannot be opened returns -1 before
    any digit is read -> ``200 result=-1`` at once, RESULT_SUCCESS (the session result stays SUCCESS);
    the caller's keys wait for the next listening command. ``GET DATA ""`` plays nothing and reads digits."""
    cmds = [b"GET DATA please-enter-your 3000 8\n", b'GET DATA "" 3000 8\n']
    got, results, chan, server, _c = run_memory(cmds, lambda c: ScriptedChannel(c, keys=[("1234#", 1.0)]))
    assert lines(got) == ["200 result=-1", "200 result=1234"]
    assert server.response_times[0] == T0
    assert [e[1] for e in chan.events("AGIExecEnd")] == [200, 200]
    assert results == ["SUCCESS"]


def test_known_prompts_are_configurable() -> None:
    """``AgiSettings.known_prompts`` (default: Asterisk's core English sounds) says what exists; a prompt
    given a length in ``prompts`` exists too; ``"any"`` makes every name play."""
    assert "beep" in AgiSettings().known_prompts and "welcome" not in AgiSettings().known_prompts
    cmds = [b'STREAM FILE custom/hello ""\n', b'STREAM FILE custom/menu ""\n', b'STREAM FILE beep ""\n']
    settings = AgiSettings(known_prompts=["custom/hello"], prompts={"custom/menu": 1.0})
    got, results, *_ = run_memory(cmds, ScriptedChannel, settings=settings)
    assert lines(got) == ["200 result=0 endpos=16000", "200 result=0 endpos=8000", "200 result=-1 endpos=0"]
    got, results, *_ = run_memory(cmds, ScriptedChannel, settings=AgiSettings(known_prompts="any"))
    assert [line.split()[1] for line in lines(got)] == ["result=0"] * 3 and results == ["SUCCESS"]
