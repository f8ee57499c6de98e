"""FastAGI client: Asterisk's side of a FastAGI session for a simulated channel, byte-faithful to
Asterisk 22 (fixtures/asterisk/fastagi.txt). Imports Twisted and sim.agi_channel/sim.settings only; no
reactor at import time, no sockets of its own (connections come from the injected ``connect``).

``FastAGIClient(clock, connect).run(channel, url, args)`` connects to the AGI server, sends the
``agi_*`` environment block, then answers the server's commands one at a time as res_agi does:

- ``200 result=<n>[ (<data>)][ endpos=<n>]``; ``510 Invalid or unknown command``; ``511 Command Not
  Permitted on a dead channel or intercept routine``; ``520-Invalid command syntax.  Proper usage
  follows:`` + usage text + ``520 End of proper usage.``. Arguments are split like res_agi's
  ``parse_args`` (double quotes group, backslash escapes, ``""`` is an empty argument) and command
  words match case-insensitively, extra words being arguments.
- Prompts: only ``AgiSettings.known_prompts`` (default: Asterisk's core English sounds, sim/core_sounds.py)
  exist. ``STREAM FILE <missing>`` answers ``200 result=-1 endpos=<offset>`` at once and fails the
  command (AGISTATUS=FAILURE at the end, the session goes on); ``GET DATA <missing>`` answers
  ``200 result=-1`` at once, reads no digit and is a success; ``GET DATA ""`` plays nothing and listens.
- Simulated media take simulated time on the injected clock: ``STREAM FILE`` lasts the prompt's
  length (``AgiSettings.prompts``, then ``PROMPT_SECONDS``, else ``default_prompt_s``), ``SAY *``
  ``SAY_FILE_SECONDS`` per sound file, ``GET DATA`` plays its prompt then waits up to its timeout for
  the first and each next digit, ``WAIT FOR DIGIT`` waits up to its timeout. ``endpos`` counts 8 kHz
  samples played.
- The caller's digits come from ``channel.next_keys()``, asked once by each command that listens for
  digits while no earlier answer is still pending; digits arrive ``DIGIT_GAP_SECONDS`` apart and are
  reported with ``channel.receive_dtmf`` whether or not a command is listening (as DTMF frames are).
  A channel that has a ``dtmf_listeners`` list (sim.pbx.Channel) is also heard when digits reach it
  from elsewhere (its Local peer's SendDTMF, AMI PlayDTMF).
- Caller hang-up: the running command ends with its hang-up result (``200 result=-1[ endpos=...]``),
  then the unsolicited ``HANGUP`` line; from then on only the dead-channel commands run (GET/SET
  VARIABLE, GET FULL VARIABLE, EXEC, VERBOSE, NOOP, DATABASE *, ASYNCAGI BREAK), the others get 511.
  ``AGISIGHUP=no`` suppresses the ``HANGUP`` line; ``AGIEXITONHANGUP=yes`` ends the session.
- The session ends when the server closes (result ``SUCCESS``, or ``HANGUP`` if the caller hung up, or
  ``FAILURE`` if a command failed other than by hang-up), or on our limits: a line longer than
  ``max_line_bytes`` without a newline, a NUL byte, more than ``max_commands`` commands, a line
  starting with ``failure`` (res_agi's own rule): ``FAILURE``, a final ``HANGUP`` line, close. A
  connection that fails or takes longer than ``connect_timeout_s`` gives ``FAILURE``.

The caller of ``run()`` (the AGI() application) sets ``AGISTATUS`` from the result. Known gaps: RECORD
FILE, CONTROL STREAM FILE, SET CONTEXT/EXTENSION/PRIORITY/CALLERID/AUTOHANGUP, SEND *, RECEIVE *,
SAY DATE/TIME/DATETIME/PHONETIC, TDD MODE and SPEECH * are not simulated and answer 510; only GET
DATA's usage text is confirmed by a capture (the others follow res_agi's XML docs, one line per
``<para>``); Asterisk's own 2048-byte command buffer is not reproduced (lines up to
``max_line_bytes`` are accepted whole).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol, IProtocol, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from sim.agi_channel import AgiChannel
from sim.settings import AgiSettings

log = logging.getLogger(__name__)

AGI_PORT = 4573
MAX_ARGS = 128
SAMPLE_RATE = 8000  # endpos counts 8 kHz samples (GSM/ulaw prompts)
FRAME_SAMPLES = 160  # played in 20 ms frames: the captured endpos values (25760, 24160) are multiples
THREAD_ID = 140280187893440  # agi_threadid as in the capture (one PBX thread served both sessions)
DIGIT_GAP_SECONDS = 0.35  # SendDTMF: 100 ms tone + 250 ms pause between digits
DTMF_DURATION_MS = 100
SAY_FILE_SECONDS = 0.79  # fastagi.timeline.jsonl: SAY DIGITS 42 took 1.58 s
RTIMEOUT_S = 10.0  # GET DATA with no timeout: pbx rtimeoutms for the first digit
DTIMEOUT_S = 5.0  # ... and dtimeoutms between digits (also GET OPTION's default)
MAX_PENDING_BYTES = 65536  # commands pipelined by the server beyond this are garbage
DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")

# Approximate lengths (seconds) of Asterisk core sounds (en, 8 kHz); a setting can override any.
PROMPT_SECONDS: dict[str, float] = {
    "beep": 0.27, "demo-congrats": 13.4, "demo-thanks": 3.4, "vm-goodbye": 0.9, "goodbye": 0.8,
    "silence/1": 1.0, "pls-hold-while-try": 2.4, "queue-thankyou": 1.6,
    "queue-callswaiting": 1.9, "queue-holdtime": 2.2, "pbx-invalid": 1.6, "vm-enter-num-to-call": 2.0,
    "please-try-again": 1.0, "agent-loginok": 1.0, "hello-world": 1.3,
    # the example flows' prompts, from Debian's core sound files (GSM: 33 bytes per 20 ms frame)
    "basic-pbx-ivr-main": 25.4, "number": 0.92, "astcc-followed-by-the-pound-key": 1.52, "auth-thankyou": 0.96,
    "confbridge-pin": 5.14, "im-sorry": 1.04, "sorry": 1.24, "pm-invalid-option": 3.22, "privacy-incorrect": 2.66,
    "vm-intro": 5.66, "vm-nobodyavail": 2.8,
    # the lab's people (tests/lab/extensions_lab.conf)
    "hello": 0.8,
}

# res_agi: EVERY usage text is the XML <description>, one line per <para> (markup kept, whitespace
# folded). GET DATA's is confirmed byte for byte by fastagi.txt; the rest follow the same rule.
_R = "<replaceable>{}</replaceable>"
_L = "<literal>{}</literal>"
_SAY = ("Say a given {what}, returning early if any of the given DTMF digits{sep}are received on the channel."
        "{gap}Returns <literal>0</literal> if playback completes without a digit being pressed, or the ASCII"
        " numerical value of the digit if one was pressed or <literal>-1</literal> on error/hangup.")
USAGE: dict[str, str] = {
    "channel status": f"Returns the status of the specified {_R.format('channelname')}. If no channel name is"
                      " given then returns the status of the current channel.\nReturn values:",
    "database del": f"Deletes an entry in the Asterisk database for a given {_R.format('family')} and"
                    f" {_R.format('key')}.\nReturns {_L.format(1)} if successful, {_L.format(0)} otherwise.",
    "database deltree": f"Deletes a {_R.format('family')} or specific {_R.format('keytree')} within a"
                        f" {_R.format('family')} in the Asterisk database.\nReturns {_L.format(1)} if successful,"
                        f" {_L.format(0)} otherwise.",
    "database get": f"Retrieves an entry in the Asterisk database for a given {_R.format('family')} and"
                    f" {_R.format('key')}.\nReturns {_L.format(0)} if {_R.format('key')} is not set. Returns"
                    f" {_L.format(1)} if {_R.format('key')} is set and returns the variable in parenthesis.\n"
                    "Example return code: 200 result=1 (testvariable)",
    "database put": f"Adds or updates an entry in the Asterisk database for a given {_R.format('family')},"
                    f" {_R.format('key')}, and {_R.format('value')}.\nReturns {_L.format(1)} if successful,"
                    f" {_L.format(0)} otherwise.",
    "exec": f"Executes {_R.format('application')} with given {_R.format('options')}.\nReturns whatever the"
            f" {_R.format('application')} returns, or {_L.format(-2)} on failure to find"
            f" {_R.format('application')}.",
    "get data": f"Stream the given {_R.format('file')}, and receive DTMF data.\n"
                "Returns the digits received from the channel at the other end.",
    "get full variable": f"Evaluates the given {_R.format('expression')} against the channel specified by"
                         f" {_R.format('channelname')}, or the current channel if {_R.format('channelname')} is"
                         f" not provided.\nUnlike GET VARIABLE, the {_R.format('expression')} is processed in a"
                         " manner similar to dialplan evaluation, allowing complex and built-in variables to be"
                         f" accessed, e.g. {_L.format('The time is ${EPOCH}')}\nReturns {_L.format(0)} if no"
                         f" channel matching {_R.format('channelname')} exists, {_L.format(1)} otherwise.\n"
                         "Example return code: 200 result=1 (The time is 1578493800)",
    "get option": "Behaves similar to STREAM FILE but used with a timeout option.",
    "get variable": f"Returns {_L.format(0)} if {_R.format('variablename')} is not set. Returns {_L.format(1)} if"
                    f" {_R.format('variablename')} is set and returns the variable in parentheses.\n"
                    "Example return code: 200 result=1 (testvariable)",
    "hangup": "Hangs up the specified channel. If no channel name is given, hangs up the current channel",
    "say alpha": _SAY.format(what="character string", sep=" ", gap=" "),
    "say digits": _SAY.format(what="digit string", sep=" ", gap=" "),
    "say number": _SAY.format(what="number", sep=" ", gap="  "),
    "set music": f"Enables/Disables the music on hold generator. If {_R.format('class')} is not specified, then"
                 f" the {_L.format('default')} music on hold class will be used. This generator will be stopped"
                 f" automatically when playing a file.\nAlways returns {_L.format(0)}.",
    "set variable": "Sets a variable to the current channel.",
    "stream file": "Send the given file, allowing playback to be interrupted by the given digits, if any."
                   f" Returns {_L.format(0)} if playback completes without a digit being pressed, or the ASCII"
                   f" numerical value of the digit if one was pressed, or {_L.format(-1)} on error or if the"
                   " channel was disconnected. If musiconhold is playing before calling stream file it will be"
                   " automatically stopped and will not be restarted after completion.\n"
                   "It sets the following channel variables upon completion:",
    "verbose": f"Sends {_R.format('message')} to the console via verbose message system. {_R.format('level')}"
               f" is the verbose level (1-4). Always returns {_L.format(1)}",
    "wait for digit": f"Waits up to {_R.format('timeout')} milliseconds for channel to receive a DTMF digit."
                      f" Returns {_L.format(-1)} on channel failure, {_L.format(0)} if no digit is received in"
                      " the timeout, or the numerical value of the ascii of the digit if one is received. Use"
                      f" {_L.format(-1)} for the {_R.format('timeout')} value if you desire the call to block"
                      " indefinitely.",
}

R_510 = "510 Invalid or unknown command\n"
R_511_TEXT = "Command Not Permitted on a dead channel or intercept routine"


# --- pure helpers --------------------------------------------------------------------------------

def parse_args(line: str) -> list[str]:
    """Split an AGI command line exactly like res_agi's ``parse_args``: blanks separate words unless
    quoted or escaped; ``"`` toggles quoting (a quote after a blank starts a word, so ``""`` is an
    empty argument); ``\\`` makes the next character literal; at most MAX_ARGS - 1 words."""
    argv: list[str] = []
    cur: list[str] | None = None
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                if len(argv) < MAX_ARGS - 1:
                    cur = []
                    argv.append("")
                    whitespace = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            if cur is not None:
                argv[-1] = "".join(cur)
                cur = None
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            if len(argv) >= MAX_ARGS - 1:
                continue  # "Too many arguments, truncating": the character is dropped
            cur = []
            argv.append("")
            whitespace = False
        if cur is not None:
            cur.append(ch)
        escaped = False
    if cur is not None:
        argv[-1] = "".join(cur)
    return argv


def c_int(text: str) -> int | None:
    """``sscanf(text, "%d")``: the leading integer (after blanks, with a sign), or None."""
    m = re.match(r"[ \t\n\r\f\v]*([+-]?\d+)", text)
    return int(m.group(1)) if m else None


def c_atoi(text: str) -> int:
    """``atoi(text)``: the leading integer, or 0."""
    value = c_int(text)
    return 0 if value is None else value


def ast_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("yes", "true", "y", "t", "1", "on")


def ast_false(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("no", "false", "n", "f", "0", "off")


def parse_agi_url(url: str) -> tuple[str, int, str]:
    """``agi://host[:port][/script]`` -> (host, port, script). Raises ValueError otherwise."""
    if url[:6].lower() != "agi://":
        raise ValueError(f"not a FastAGI URL: {url!r}")
    rest = url[6:]
    hostport, _, script = rest.partition("/")
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        raise ValueError(f"no host in FastAGI URL {url!r}")
    port = AGI_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"bad port in FastAGI URL {url!r}")
        port = int(port_text)
    return host, port, script


def agi_environment(channel: AgiChannel, url: str, script: str, args: list[str], version: str,
                    thread_id: int = THREAD_ID) -> str:
    """The bytes (as latin-1 text) Asterisk sends first: network lines, then setup_env's block."""
    lines = ["agi_network: yes"]
    if script:
        lines.append(f"agi_network_script: {script}")
    tech = channel.name.split("/", 1)[0]
    lines += [
        f"agi_request: {url}",
        f"agi_channel: {channel.name}",
        f"agi_language: {channel.language}",
        f"agi_type: {tech}",
        f"agi_uniqueid: {channel.uniqueid}",
        f"agi_version: {version}",
        f"agi_callerid: {channel.caller_num or 'unknown'}",
        f"agi_calleridname: {channel.caller_name or 'unknown'}",
        "agi_callingpres: 0",
        "agi_callingani2: 0",
        "agi_callington: 0",
        "agi_callingtns: 0",
        f"agi_dnid: {channel.dnis or 'unknown'}",
        f"agi_rdnis: {channel.rdnis or 'unknown'}",
        f"agi_context: {channel.context}",
        f"agi_extension: {channel.exten}",
        f"agi_priority: {channel.priority}",
        "agi_enhanced: 0.0",
        f"agi_accountcode: {channel.accountcode or ''}",
        f"agi_threadid: {thread_id}",
    ]
    lines += [f"agi_arg_{i}: {arg}" for i, arg in enumerate(args, start=1)]
    return "\n".join(lines) + "\n\n"


def played_samples(seconds: float) -> int:
    """Samples of a prompt played in ``seconds``: whole 20 ms frames (a hair of float slack, so 3.22 s
    after a start at epoch 1.8e9 still counts 161 frames)."""
    return int(seconds * SAMPLE_RATE / FRAME_SAMPLES + 1e-3) * FRAME_SAMPLES


def say_number_files(n: int) -> int:
    """How many sound files English ``SAY NUMBER`` plays for ``n`` (digits/N, hundred, thousand...)."""
    if n < 0:
        return 1 + say_number_files(-n)
    if n == 0:
        return 1
    files = 0
    for size in (1_000_000_000, 1_000_000, 1000):
        if n >= size:
            files += say_number_files(n // size) + 1
            n %= size
    if n >= 100:
        files += 2
        n %= 100
    if n >= 20:
        files += 1 + (1 if n % 10 else 0)
    elif n:
        files += 1
    return files


# --- the session -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Outcome:
    """How a command ended: ``kind`` picks the AGIExecEnd code (success 200, failure -1, usage 520,
    unknown 200 'Unknown Result'); ``response`` is written first; ``after`` runs after it."""

    kind: str
    response: str = ""
    after: Callable[[], None] | None = None


_OK = "success"
_FAIL = "failure"
_USAGE = "usage"
_UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class _Heard:
    """End of a listening stretch: ``how`` is "digit", "timeout" or "hangup"; ``elapsed`` seconds."""

    how: str
    elapsed: float
    digit: str = ""


class _Listen:
    """Play or wait for ``seconds`` (None: forever) while listening for ``accept`` digits."""

    def __init__(self, session: AgiSession, seconds: float | None, accept: str, start: float | None) -> None:
        self.session = session
        self.accept = accept
        # one start instant shared with the key schedule, so a scaled real clock gives exact endpos
        self.start = session.clock.seconds() if start is None else start
        self.d: Deferred[_Heard] = Deferred()
        self.timer: IDelayedCall | None = None
        if seconds is not None:
            self.timer = session.clock.callLater(max(0.0, seconds), self._end, "timeout", max(0.0, seconds))

    def digit(self, digit: str, at: float) -> None:
        if digit in self.accept:
            self._end("digit", at - self.start, digit)

    def hangup(self) -> None:
        self._end("hangup", self.session.clock.seconds() - self.start)

    def _end(self, how: str, elapsed: float, digit: str = "") -> None:
        if self.d.called:
            return
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.session.listener is self:
            self.session.listener = None
        self.d.callback(_Heard(how, max(0.0, elapsed), digit))


_ALL_DIGITS = "0123456789*#ABCD"

# (command words, dead-channel allowed, handler name)
_COMMANDS: list[tuple[tuple[str, ...], bool, str]] = [
    (("answer",), False, "answer"),
    (("asyncagi", "break"), True, "noop"),
    (("channel", "status"), False, "channel_status"),
    (("database", "del"), True, "db_del"),
    (("database", "deltree"), True, "db_deltree"),
    (("database", "get"), True, "db_get"),
    (("database", "put"), True, "db_put"),
    (("exec",), True, "exec"),
    (("get", "data"), False, "get_data"),
    (("get", "full", "variable"), True, "get_full_variable"),
    (("get", "option"), False, "get_option"),
    (("get", "variable"), True, "get_variable"),
    (("hangup",), False, "hangup"),
    (("noop",), True, "noop"),
    (("say", "alpha"), False, "say_alpha"),
    (("say", "digits"), False, "say_digits"),
    (("say", "number"), False, "say_number"),
    (("set", "music"), False, "set_music"),
    (("set", "variable"), True, "set_variable"),
    (("stream", "file"), False, "stream_file"),
    (("verbose",), True, "verbose"),
    (("wait", "for", "digit"), False, "wait_for_digit"),
]


def find_command(argv: list[str]) -> tuple[tuple[str, ...], bool, str] | None:
    """res_agi's find_command(argv, 0): every command word must match (case-insensitively); any
    further words are arguments."""
    for entry in _COMMANDS:
        words = entry[0]
        if len(argv) >= len(words) and all(w == a.lower() for w, a in zip(words, argv, strict=False)):
            return entry
    return None


class AgiSession:
    """One FastAGI session: the protocol rules, with bytes in (``data_received``) and out (``send``).
    Time comes from ``clock``; the channel is driven through the AgiChannel protocol."""

    def __init__(self, clock: IReactorTime, channel: AgiChannel, settings: AgiSettings,
                 send: Callable[[bytes], None], close: Callable[[], None], db: dict[tuple[str, str], str]) -> None:
        self.clock = clock
        self.channel = channel
        self.settings = settings
        self._send = send
        self._close = close
        self._db = db
        self.status = "SUCCESS"
        self.result: Deferred[str] = Deferred()
        self.listener: _Listen | None = None
        self.ended = False
        self.dead = channel.hungup  # AGI() on an already hung-up channel runs dead from the start
        self._needhup = False
        self._connected = False
        self._writable = False
        self._server_closed = False
        self._busy = False
        self._pumping = False
        self._buffer = bytearray()
        self._lines: deque[bytes] = deque()
        self._pending_bytes = 0
        self.commands = 0
        self._presses: deque[tuple[float, IDelayedCall]] = deque()
        self._keys_done = False
        self._sighup = not ast_false(channel.get_var("AGISIGHUP"))
        self._exit_on_hangup = ast_true(channel.get_var("AGIEXITONHANGUP"))
        self._press_at: float | None = None
        # A channel with ``dtmf_listeners`` (sim.pbx.Channel) reports every digit that reaches it, also
        # digits sent by its Local peer's SendDTMF or by AMI PlayDTMF; without it, only the caller
        # model's keys (next_keys) are heard.
        listeners = getattr(channel, "dtmf_listeners", None)
        self._hooked = isinstance(listeners, list)
        if self._hooked:
            listeners.append(self._dtmf_arrived)
        if not self.dead:
            channel.on_hangup(self._channel_hung_up)

    # -- transport events ---------------------------------------------------------------------------
    def connected(self, environment: str) -> None:
        """The TCP connection is up: send the environment block, then a pending HANGUP if any."""
        self._connected = self._writable = True
        if self.ended:
            self._close()
            return
        self._write(environment)
        self._after_command()

    def data_received(self, data: bytes) -> None:
        if self.ended:
            return
        self._buffer += data
        cap = self.settings.max_line_bytes
        pos = 0
        while True:
            nl = self._buffer.find(b"\n", pos)
            if nl < 0:
                break
            if nl - pos > cap:
                self._garbage(f"line longer than {cap} bytes")
                return
            self._lines.append(bytes(self._buffer[pos:nl]))
            self._pending_bytes += nl + 1 - pos
            pos = nl + 1
            if self._pending_bytes > MAX_PENDING_BYTES:
                self._garbage(f"more than {MAX_PENDING_BYTES} bytes of commands queued")
                return
        del self._buffer[:pos]
        if len(self._buffer) > cap:
            self._garbage(f"line longer than {cap} bytes")
            return
        self._pump()

    def server_closed(self, can_still_write: bool = False) -> None:
        """The server closed (EOF). Commands already received still run, then the session ends."""
        self._server_closed = True
        self._writable = can_still_write
        self._pump()

    # -- command loop -------------------------------------------------------------------------------
    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while not self.ended and not self._busy and self._lines:
                line = self._lines.popleft()
                self._pending_bytes -= len(line) + 1
                self._command(line)
            if not self.ended and not self._busy and self._server_closed and not self._lines:
                self._end(self.status)
        finally:
            self._pumping = False

    def _command(self, raw: bytes) -> None:
        if b"\x00" in raw:
            self._garbage("NUL byte in a command")
            return
        text = raw.decode("latin-1")
        if text[:7].lower() == "failure":
            self._end("FAILURE")  # res_agi: "Special case for inability to execute child process"
            return
        self.commands += 1
        if self.commands > self.settings.max_commands:
            self._garbage(f"more than {self.settings.max_commands} commands")
            return
        self.channel.emit_agi_exec(True, text)
        argv = parse_args(text)
        entry = find_command(argv)
        if entry is None:
            self._write(R_510)
            self.channel.emit_agi_exec(False, text, 510)
            return
        words, dead_ok, handler = entry
        if self.dead and not dead_ok:
            self._write(f"511 {R_511_TEXT}\n")
            self.channel.emit_agi_exec(False, text, 511)
            return
        self._busy = True
        try:
            result = getattr(self, "_do_" + handler)(argv)
        except Exception:  # a handler bug must not wedge the call: report it as a failed command
            log.exception("AGI command %r failed on %s", text, self.channel.name)
            result = _Outcome(_FAIL, "200 result=-1\n")
        if isinstance(result, Deferred):
            result.addErrback(self._handler_failed, text)
            result.addCallback(self._complete, text, " ".join(words))
        else:
            self._complete(result, text, " ".join(words))

    def _handler_failed(self, failure: Failure, text: str) -> _Outcome:
        log.error("AGI command %r failed on %s: %s", text, self.channel.name, failure.getErrorMessage())
        return _Outcome(_FAIL, "200 result=-1\n")

    def _complete(self, outcome: _Outcome, text: str, name: str) -> None:
        if outcome.response:
            self._write(outcome.response)
        if outcome.after is not None:
            outcome.after()
        if outcome.kind == _USAGE:
            self.channel.emit_agi_exec(False, text, 520)
            usage = USAGE.get(name, "")
            if usage:
                self._write(f"520-Invalid command syntax.  Proper usage follows:\n{usage}\n520 End of proper usage.\n")
            else:
                self._write("520 Invalid command syntax.  Proper usage not available.\n")
        elif outcome.kind == _FAIL:
            self.channel.emit_agi_exec(False, text, -1)
            if self.dead or not self.channel.hungup:
                self.status = "FAILURE"  # "The failure was not because of a hangup."
        elif outcome.kind == _UNKNOWN:
            self.channel.emit_agi_exec(False, text, 200, "Unknown Result")
        else:
            self.channel.emit_agi_exec(False, text, 200)
        self._busy = False
        self._after_command()
        self._pump()

    def _after_command(self) -> None:
        """res_agi's loop head: report a hang-up noticed meanwhile (HANGUP line, dead mode)."""
        if self.ended or self._busy or not self._needhup or not self._connected:
            return
        self._needhup = False
        self.dead = True
        if self._sighup:
            self._write("HANGUP\n")
        if self._exit_on_hangup:
            self._end(self.status)

    # -- hang-up and endings ------------------------------------------------------------------------
    def _channel_hung_up(self) -> None:
        if self.ended or self.dead or self._needhup:
            return
        self._needhup = True
        if self.status == "SUCCESS":
            self.status = "HANGUP"
        self._cancel_presses()
        if self.listener is not None:
            self.listener.hangup()
        elif not self._busy:
            self._after_command()

    def _garbage(self, why: str) -> None:
        log.warning("FastAGI session of %s ended: %s", self.channel.name, why)
        self._end("FAILURE")

    def _end(self, status: str) -> None:
        """End the session as run_agi does after its loop: a final HANGUP line (which only reaches a
        server that has not fully closed), then close."""
        if self._sighup and self._writable:
            self._write("HANGUP\n")
        self._finish(status)

    def _finish(self, status: str) -> None:
        if self.ended:
            return
        self.ended = True
        listeners = getattr(self.channel, "dtmf_listeners", None)
        if self._hooked and isinstance(listeners, list) and self._dtmf_arrived in listeners:
            listeners.remove(self._dtmf_arrived)
        self._cancel_presses()
        if self.listener is not None:
            listener, self.listener = self.listener, None
            if listener.timer is not None and listener.timer.active():
                listener.timer.cancel()
        self._lines.clear()
        self._buffer.clear()
        if self._connected:
            self._close()
        self.result.callback(status)

    def connect_failed(self, why: str) -> None:
        if not self.ended:
            log.warning("FastAGI connection for %s failed: %s", self.channel.name, why)
            self._finish("FAILURE")

    def _write(self, text: str) -> None:
        if self._writable and not self.ended:
            self._send(text.encode("latin-1", "replace"))

    # -- the caller's keys --------------------------------------------------------------------------
    def _want_keys(self, now: float) -> None:
        """A command starts listening at ``now``: ask the caller for keys unless an earlier answer is
        still pending."""
        if self._presses or self._keys_done or self.channel.hungup:
            return
        answer = self.channel.next_keys()
        if answer is None:
            self._keys_done = True
            return
        digits, delay = answer
        delay = delay if delay == delay and delay >= 0 else 0.0  # NaN / negative -> now
        for i, digit in enumerate(d for d in digits if d in DTMF_DIGITS):
            at = now + delay + i * DIGIT_GAP_SECONDS
            self._presses.append((at, self.clock.callLater(at - self.clock.seconds(), self._press, digit.upper(), at)))

    def _press(self, digit: str, at: float) -> None:
        if self._presses:
            self._presses.popleft()
        self._press_at = at
        try:
            self.channel.receive_dtmf(digit, DTMF_DURATION_MS)
        finally:
            self._press_at = None
        if not self._hooked:
            self._heard(digit, at)

    def _dtmf_arrived(self, digit: str) -> None:
        """A DTMF digit reached the channel (ours, or from SendDTMF / PlayDTMF elsewhere in the PBX)."""
        self._heard(digit, self.clock.seconds() if self._press_at is None else self._press_at)

    def _heard(self, digit: str, at: float) -> None:
        if self.listener is not None and not self.ended:
            self.listener.digit(digit.upper(), at)

    def _cancel_presses(self) -> None:
        while self._presses:
            _at, call = self._presses.popleft()
            if call.active():
                call.cancel()

    def _listen(self, seconds: float | None, accept: str, start: float | None = None) -> Deferred[_Heard]:
        """Listen from ``start`` (default now) for ``seconds``; a hung-up channel hears "hangup" at once."""
        if self.channel.hungup:
            listen = _Listen(self, 0.0, "", start)
            listen.hangup()
            return listen.d
        self.listener = _Listen(self, seconds, accept, start)
        return self.listener.d

    def prompt_seconds(self, name: str) -> float:
        if name in self.settings.prompts:
            return self.settings.prompts[name]
        if name in PROMPT_SECONDS:
            return PROMPT_SECONDS[name]
        if name.startswith("silence/") and name[8:].isdigit():
            return float(name[8:])
        if name.startswith("digits/"):
            return SAY_FILE_SECONDS
        return self.settings.default_prompt_s

    # -- handlers (argv[0..] are the command words and arguments) -----------------------------------
    def _do_answer(self, argv: list[str]) -> _Outcome:
        if self.channel.state != 6:
            self.channel.answer()
        return _Outcome(_OK, "200 result=0\n")

    def _do_noop(self, argv: list[str]) -> _Outcome:
        return _Outcome(_OK, "200 result=0\n")

    def _do_channel_status(self, argv: list[str]) -> _Outcome:
        if len(argv) == 2:
            return _Outcome(_OK, f"200 result={self.channel.state}\n")
        if len(argv) == 3:
            state = self.channel.state if argv[2] == self.channel.name else -1
            return _Outcome(_OK, f"200 result={state}\n")
        return _Outcome(_USAGE)

    def _do_set_variable(self, argv: list[str]) -> _Outcome:
        if len(argv) != 4:
            return _Outcome(_USAGE)
        self.channel.set_var(argv[2], argv[3])
        return _Outcome(_OK, "200 result=1\n")

    def _do_get_variable(self, argv: list[str]) -> _Outcome:
        if len(argv) != 3:
            return _Outcome(_USAGE)
        name = argv[2]
        value = self.channel.substitute("${" + name + "}") if name.endswith(")") else self.channel.get_var(name)
        return _Outcome(_OK, "200 result=0\n" if value is None else f"200 result=1 ({value})\n")

    def _do_get_full_variable(self, argv: list[str]) -> _Outcome:
        if len(argv) not in (4, 5):
            return _Outcome(_USAGE)
        if len(argv) == 5 and argv[4] != self.channel.name:
            return _Outcome(_OK, "200 result=0\n")
        return _Outcome(_OK, f"200 result=1 ({self.channel.substitute(argv[3])})\n")

    def _do_verbose(self, argv: list[str]) -> _Outcome:
        if len(argv) < 2:
            return _Outcome(_USAGE)
        log.debug("%s: AGI verbose: %s", self.channel.name, argv[1])
        return _Outcome(_OK, "200 result=1\n")

    def _do_set_music(self, argv: list[str]) -> _Outcome:
        if len(argv) < 3:
            return _Outcome(_USAGE)
        return _Outcome(_OK, "200 result=0\n")

    def _do_hangup(self, argv: list[str]) -> _Outcome:
        if len(argv) > 2:
            return _Outcome(_USAGE)
        if len(argv) == 2 and argv[1] != self.channel.name:
            return _Outcome(_OK, "200 result=-1\n")
        self.channel.hangup(16)
        return _Outcome(_OK, "200 result=1\n")

    def _db_args(self, argv: list[str], want: int) -> tuple[str, str] | None:
        return (argv[2], argv[3]) if len(argv) == want else None

    def _do_db_get(self, argv: list[str]) -> _Outcome:
        key = self._db_args(argv, 4)
        if key is None:
            return _Outcome(_USAGE)
        value = self._db.get(key)
        return _Outcome(_OK, "200 result=0\n" if value is None else f"200 result=1 ({value})\n")

    def _do_db_put(self, argv: list[str]) -> _Outcome:
        if len(argv) != 5:
            return _Outcome(_USAGE)
        self._db[(argv[2], argv[3])] = argv[4]
        return _Outcome(_OK, "200 result=1\n")

    def _do_db_del(self, argv: list[str]) -> _Outcome:
        key = self._db_args(argv, 4)
        if key is None:
            return _Outcome(_USAGE)
        return _Outcome(_OK, "200 result=1\n" if self._db.pop(key, None) is not None else "200 result=0\n")

    def _do_db_deltree(self, argv: list[str]) -> _Outcome:
        if len(argv) not in (3, 4):
            return _Outcome(_USAGE)
        family, prefix = argv[2], argv[3] if len(argv) == 4 else None
        doomed = [k for k in self._db if k[0] == family and (prefix is None or k[1].startswith(prefix))]
        for k in doomed:
            del self._db[k]
        # res_agi prints '0' when something was deleted: "num_deleted > 0 ? '0' : '1'"
        return _Outcome(_OK, f"200 result={'0' if doomed else '1'}\n")

    def _do_exec(self, argv: list[str]) -> _Outcome | Deferred[_Outcome]:
        if len(argv) < 2:
            return _Outcome(_USAGE)
        data = argv[2] if len(argv) >= 3 else ""
        if len(argv) >= 3 and ast_true(self.channel.get_var("AGIEXECFULL")):
            data = self.channel.substitute(data)
        d: Deferred[int] = self.channel.exec_app(argv[1], data)

        def done(res: int) -> _Outcome:
            # res_agi returns the application's result as the handler result ("users are depending
            # upon this"): 0 success, 1 usage, 2 failure, 3 async break (success), other "Unknown Result"
            kind = {0: _OK, 1: _USAGE, 2: _FAIL, 3: _OK}.get(res, _UNKNOWN)
            return _Outcome(kind, f"200 result={res}\n")

        def failed(failure: Failure) -> int:
            log.error("EXEC %s on %s failed: %s", argv[1], self.channel.name, failure.getErrorMessage())
            return -1

        return d.addErrback(failed).addCallback(done)

    @inlineCallbacks
    def _play(self, seconds: float, escape: str) -> Generator[Deferred[Any], Any, _Heard]:
        now = self.clock.seconds()
        if escape:
            self._want_keys(now)
        heard: _Heard = yield self._listen(seconds, escape, now)
        return heard

    def _do_stream_file(self, argv: list[str]) -> _Outcome | Deferred[_Outcome]:
        if not 4 <= len(argv) <= 5:
            return _Outcome(_USAGE)
        offset = 0
        if len(argv) == 5:
            parsed = c_int(argv[4])
            if parsed is None:
                return _Outcome(_USAGE)
            offset = max(0, parsed)
        if not self.settings.has_prompt(argv[2]):
            # res_agi handle_streamfile: ast_openstream() failed -> "200 result=-1 endpos=<sample_offset>",
            # RESULT_FAILURE (run_agi then ends with AGI_RESULT_FAILURE, as the channel is alive)
            return _Outcome(_FAIL, f"200 result=-1 endpos={offset}\n")
        total = int(round(self.prompt_seconds(argv[2]) * SAMPLE_RATE))
        remaining = max(0, total - offset) / SAMPLE_RATE

        def done(heard: _Heard) -> _Outcome:
            if heard.how == "timeout":
                res, endpos = 0, total
            else:
                res = ord(heard.digit) if heard.how == "digit" else -1
                endpos = min(total, offset + played_samples(heard.elapsed))
            status = "FAILED" if res else "SUCCESS"
            return _Outcome(_OK if res >= 0 else _FAIL, f"200 result={res} endpos={endpos}\n",
                            lambda: self.channel.set_var("PLAYBACKSTATUS", status))

        return self._play(remaining, argv[3]).addCallback(done)

    def _do_get_option(self, argv: list[str]) -> _Outcome | Deferred[_Outcome]:
        if not 4 <= len(argv) <= 5:
            return _Outcome(_USAGE)
        timeout = c_atoi(argv[4]) / 1000.0 if len(argv) == 5 else DTIMEOUT_S
        if not self.settings.has_prompt(argv[2]):
            return _Outcome(_FAIL, "200 result=-1 endpos=0\n")  # handle_getoption, like handle_streamfile
        total = int(round(self.prompt_seconds(argv[2]) * SAMPLE_RATE))
        return self._get_option(argv[3], timeout, total)

    @inlineCallbacks
    def _get_option(self, escape: str, timeout: float, total: int) -> Generator[Deferred[Any], Any, _Outcome]:
        now = self.clock.seconds()
        self._want_keys(now)
        heard: _Heard = yield self._listen(total / SAMPLE_RATE, escape, now)
        endpos = total if heard.how == "timeout" else min(total, played_samples(heard.elapsed))
        res = ord(heard.digit) if heard.how == "digit" else (-1 if heard.how == "hangup" else 0)
        if heard.how == "timeout":
            waited: _Heard = yield self._listen(timeout if timeout > 0 else None, _ALL_DIGITS)
            res = -1 if waited.how == "hangup" else (ord(waited.digit) if waited.digit in escape else 0)
        return _Outcome(_OK if res >= 0 else _FAIL, f"200 result={res} endpos={endpos}\n")

    def _say(self, files: int, escape: str) -> Deferred[_Outcome]:
        def done(heard: _Heard) -> _Outcome:
            res = ord(heard.digit) if heard.how == "digit" else (-1 if heard.how == "hangup" else 0)
            return _Outcome(_OK if res >= 0 else _FAIL, f"200 result={res}\n")

        return self._play(files * SAY_FILE_SECONDS, escape).addCallback(done)

    def _do_say_digits(self, argv: list[str]) -> _Outcome | Deferred[_Outcome]:
        if len(argv) != 4 or c_int(argv[2]) is None:
            return _Outcome(_USAGE)
        return self._say(sum(1 for ch in argv[2] if ch in "0123456789*#-"), argv[3])

    def _do_say_number(self, argv: list[str]) -> _Outcome | Deferred[_Outcome]:
        if not 4 <= len(argv) <= 5:
            return _Outcome(_USAGE)
        number = c_int(argv[2])
        if number is None:
            return _Outcome(_USAGE)
        return self._say(say_number_files(number), argv[3])

    def _do_say_alpha(self, argv: list[str]) -> _Outcome | Deferred[_Outcome]:
        if not 4 <= len(argv) <= 5 or (len(argv) == 5 and argv[4][:1] not in ("", *"aAlLnNuU")):
            return _Outcome(_USAGE)
        return self._say(sum(1 for ch in argv[2] if not ch.isspace()), argv[3])

    def _do_wait_for_digit(self, argv: list[str]) -> _Outcome | Deferred[_Outcome]:
        if len(argv) != 4:
            return _Outcome(_USAGE)
        timeout_ms = c_int(argv[3])
        if timeout_ms is None:
            return _Outcome(_USAGE)
        now = self.clock.seconds()
        self._want_keys(now)

        def done(heard: _Heard) -> _Outcome:
            res = ord(heard.digit) if heard.how == "digit" else (-1 if heard.how == "hangup" else 0)
            return _Outcome(_OK if res >= 0 else _FAIL, f"200 result={res}\n")

        return self._listen(None if timeout_ms < 0 else timeout_ms / 1000.0, _ALL_DIGITS, now).addCallback(done)

    def _do_get_data(self, argv: list[str]) -> _Outcome | Deferred[_Outcome]:
        if len(argv) < 3:
            return _Outcome(_USAGE)
        timeout = c_atoi(argv[3]) if len(argv) >= 4 else 0
        max_digits = c_atoi(argv[4]) if len(argv) >= 5 else 1024
        if max_digits == 0:
            return _Outcome(_OK, "200 result=-1\n")  # ast_readstring_full refuses a zero-length buffer
        max_digits = 1 if max_digits < 0 else min(max_digits, 1023)
        if timeout > 0:
            first_wait = next_wait = timeout / 1000.0
        elif timeout == 0:
            first_wait, next_wait = RTIMEOUT_S, DTIMEOUT_S
        else:
            first_wait = next_wait = None  # "block indefinitely"
        if argv[2] and not self.settings.has_prompt(argv[2]):
            # app.c ast_app_getdata_full: ast_streamfile() < 0 returns before reading; handle_getdata
            # then writes "200 result=-1" and returns RESULT_SUCCESS. An empty prompt is not played.
            return _Outcome(_OK, "200 result=-1\n")
        prompt = self.prompt_seconds(argv[2]) if argv[2] else 0.0
        return self._get_data(prompt, first_wait, next_wait, max_digits)

    @inlineCallbacks
    def _get_data(self, prompt: float, first_wait: float | None, next_wait: float | None,
                  max_digits: int) -> Generator[Deferred[Any], Any, _Outcome]:
        now = self.clock.seconds()
        self._want_keys(now)
        heard: _Heard = yield self._listen(prompt, _ALL_DIGITS, now)
        if heard.how == "timeout":  # the prompt played to its end: wait for the first digit
            heard = yield self._listen(first_wait, _ALL_DIGITS)
        digits = ""
        while True:
            if heard.how == "hangup":
                return _Outcome(_OK, "200 result=-1\n")
            if heard.how == "timeout":
                return _Outcome(_OK, f"200 result={digits} (timeout)\n")
            if heard.digit == "#":
                return _Outcome(_OK, f"200 result={digits}\n")
            digits += heard.digit
            if len(digits) >= max_digits:
                return _Outcome(_OK, f"200 result={digits}\n")
            heard = yield self._listen(next_wait, _ALL_DIGITS)


# --- Twisted adapter and the client ----------------------------------------------------------------

@implementer(IHalfCloseableProtocol)
class FastAGIClientProtocol(Protocol):
    """Feeds bytes to an ``AgiSession`` and writes what it sends; nothing else."""

    def __init__(self, session: AgiSession, environment: str) -> None:
        self.session = session
        self.environment = environment
        self._lost = False

    def connectionMade(self) -> None:
        self.session.connected(self.environment)

    def dataReceived(self, data: bytes) -> None:
        self.session.data_received(data)

    def readConnectionLost(self) -> None:
        # half close by the server: res_agi's final HANGUP can still reach it
        self.session.server_closed(can_still_write=True)

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure | None = None) -> None:
        if not self._lost:
            self._lost = True
            self.session.server_closed(can_still_write=False)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self._lost:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self._lost:
            self.transport.loseConnection()


Connector = Callable[[str, int, IProtocol], "Deferred[Any]"]


def tcp_connector(reactor: Any = None, timeout: float = 2.0) -> Connector:
    """Connect over real TCP (HostnameEndpoint) on ``reactor`` (the global one by default)."""

    def connect(host: str, port: int, protocol: IProtocol) -> Deferred[Any]:
        from twisted.internet.endpoints import HostnameEndpoint, connectProtocol

        nonlocal reactor
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        return connectProtocol(HostnameEndpoint(reactor, host, port, timeout=timeout), protocol)

    return connect


class FastAGIClient:
    """Runs FastAGI sessions for simulated channels. ``connect(host, port, protocol)`` opens a
    connection (default: real TCP); ``MemoryNetwork.connect`` plugs in for socket-free runs."""

    def __init__(self, clock: IReactorTime, connect: Connector | None = None,
                 settings: AgiSettings | None = None) -> None:
        self.clock = clock
        self.settings = settings or AgiSettings()
        self.connect = connect or tcp_connector(timeout=self.settings.connect_timeout_s)
        self.db: dict[tuple[str, str], str] = {}  # the AstDB shared by this PBX's sessions
        self.sessions = 0


    def sound_ids(self) -> frozenset[str]:
        """The sounds this PBX has (the AGI settings' known prompts)."""
        return self.settings.sound_ids()
    def run(self, channel: AgiChannel, url: str, args: list[str]) -> Deferred[str]:
        """Run ``AGI(url,args...)`` on ``channel``. Fires with "SUCCESS", "FAILURE" or "HANGUP"."""
        self.sessions += 1
        holder: dict[str, FastAGIClientProtocol] = {}

        def send(data: bytes) -> None:
            holder["p"].send(data)

        def close() -> None:
            holder["p"].close()

        session = AgiSession(self.clock, channel, self.settings, send, close, self.db)
        try:
            host, port, script = parse_agi_url(url)
        except ValueError as exc:
            session.connect_failed(str(exc))
            return session.result
        protocol = FastAGIClientProtocol(session, agi_environment(channel, url, script, args, self.settings.version))
        holder["p"] = protocol
        timer = self.clock.callLater(self.settings.connect_timeout_s, self._connect_timeout, session)
        try:
            d = self.connect(host, port, protocol)
        except Exception as exc:  # a connector that raises instead of failing its Deferred
            timer.cancel()
            session.connect_failed(f"{exc.__class__.__name__}: {exc}")
            return session.result

        def connected(_: object) -> None:
            if timer.active():
                timer.cancel()

        def failed(failure: Failure) -> None:
            if timer.active():
                timer.cancel()
            session.connect_failed(failure.getErrorMessage())

        d.addCallbacks(connected, failed)
        return session.result

    @staticmethod
    def _connect_timeout(session: AgiSession) -> None:
        if not session._connected and not session.ended:
            session.connect_failed("connect timed out")
