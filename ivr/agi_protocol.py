"""AGI wire codec, sans-I/O: the ``agi_*`` environment block, command lines out, replies in. No sockets.

Server side of FastAGI (Asterisk connects to us). Feed received bytes to ``AgiServerCodec.receive_data``;
it returns events (``AgiEnvironment`` once, then ``AgiReply`` per command and ``HangupNotice`` when
Asterisk sends its unsolicited ``HANGUP`` line). ``encode_command`` turns an ``AgiCommand`` into bytes.

Wire rules followed (see ../tests/fixtures/asterisk/fastagi.txt and README):
- environment: ``agi_key: value\\n`` lines ended by an empty line; values may be empty (``agi_accountcode: ``);
- replies: ``200 result=<n>[ (<data>)][ endpos=<n>]``; ``GET DATA`` may answer ``200 result= (timeout)``;
  ``510 ...``/``511 ...`` one line; ``520-...`` multi-line usage ending with ``520 End of proper usage.``;
- ``HANGUP`` arrives on its own line after the reply of the command that was running;
- bytes: Asterisk passes values through unchanged (a latin-1 trunk's caller name, a latin-1 variable), so
  each line is decoded on its own, as UTF-8 when it is valid UTF-8, else as latin-1 (every byte one
  character: the raw bytes stay reachable with ``AgiReply.data_bytes`` / ``AgiEnvironment.raw``);
- ``agi_network_script`` is the URL's path and query exactly as the dialplan wrote them (res_agi does
  not decode them): ``main%20menu`` is the flow ``main menu``.

Errors (one tree, one root):
    AgiError
     +-- AgiProtocolError   the peer sent something that is not AGI (junk, binary, oversized line,
                            a reply nobody asked for); the connection must be closed.
Limits: one line at most ``max_line_bytes``; at most ``max_env_lines`` environment lines and
``max_usage_lines`` lines of ``520`` usage text. Past a limit: ``AgiProtocolError``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

Encoding = Literal["utf-8", "latin-1"]


def decode_line(raw: bytes) -> tuple[str, Encoding]:
    """One AGI line as text: UTF-8 when it is valid UTF-8, else latin-1 (which keeps every byte)."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


class AgiError(Exception):
    """Root of the IVR's AGI errors."""


class AgiProtocolError(AgiError):
    """The peer broke the AGI protocol; ``reason`` is safe to log (never echoes more than 40 bytes)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# --- values -------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AgiEnvironment:
    """The ``agi_*`` variables Asterisk sends first, with the parts the IVR uses."""

    values: Mapping[str, str]
    latin1: frozenset[str] = frozenset()  # keys whose line was not UTF-8 and was decoded as latin-1

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)

    def raw(self, key: str) -> bytes:
        """The value's bytes as Asterisk sent them."""
        return self.get(key).encode("latin-1" if key in self.latin1 else "utf-8")

    @property
    def uniqueid(self) -> str:
        return self.get("agi_uniqueid")

    @property
    def channel(self) -> str:
        return self.get("agi_channel")

    @property
    def ani(self) -> str:
        """Caller number; Asterisk writes ``unknown`` when there is none."""
        value = self.get("agi_callerid")
        return "" if value in ("unknown", "") else value

    @property
    def language(self) -> str:
        return self.get("agi_language", "en") or "en"

    @property
    def script(self) -> str:
        """``agi_network_script`` (path and query of the AGI URL), or the path of ``agi_request``."""
        script = self.get("agi_network_script")
        if not script:
            request = self.get("agi_request")
            parts = urlsplit(request) if "://" in request else None
            script = (parts.path + (f"?{parts.query}" if parts.query else "")) if parts else request
        return script

    @property
    def flow_name(self) -> str:
        """The AGI URL path, URL-decoded: ``agi://host:4573/main%20menu?k=v`` -> ``main menu``."""
        return unquote(self.script.split("?", 1)[0]).strip("/")

    @property
    def params(self) -> dict[str, str]:
        """Query parameters of the AGI URL (last one wins)."""
        query = self.script.split("?", 1)[1] if "?" in self.script else ""
        # Not parse_qsl: the dialplan writes ?dnis=${EXTEN} unencoded and "+1555..." must keep its "+".
        out: dict[str, str] = {}
        for pair in query.split("&"):
            if pair:
                key, _, value = pair.partition("=")
                out[unquote(key)] = unquote(value)
        return out

    @property
    def args(self) -> tuple[str, ...]:
        """Dialplan arguments ``agi_arg_1``, ``agi_arg_2``, ... in order."""
        out: list[str] = []
        while f"agi_arg_{len(out) + 1}" in self.values:
            out.append(self.values[f"agi_arg_{len(out) + 1}"])
        return tuple(out)

    @property
    def dnis(self) -> str:
        """Dialled number: ``?dnis=`` of the URL (the shipped dialplan passes it), else agi_dnid/agi_extension."""
        if self.params.get("dnis"):
            return self.params["dnis"]
        dnid = self.get("agi_dnid")
        return dnid if dnid not in ("", "unknown") else self.get("agi_extension")


@dataclass(frozen=True, slots=True)
class AgiReply:
    """One reply: ``code`` 200/510/511/520/...; for 200 the ``result`` text, optional data and endpos."""

    code: int
    result: str = ""
    data: str | None = None
    endpos: int | None = None
    text: str = ""  # the line after the code (for 520: the usage lines joined by newlines)
    encoding: Encoding = "utf-8"  # how the line was decoded (latin-1 when it was not valid UTF-8)

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def data_bytes(self) -> bytes | None:
        """The parenthesised data as Asterisk sent it (``GET VARIABLE`` of a latin-1 value keeps its bytes)."""
        return None if self.data is None else self.data.encode(self.encoding)

    @property
    def number(self) -> int | None:
        """``result`` as an integer, or None when it is empty or not a number (GET DATA digits are text)."""
        try:
            return int(self.result)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class HangupNotice:
    """Asterisk's unsolicited ``HANGUP`` line: the caller is gone."""


AgiEvent = AgiEnvironment | AgiReply | HangupNotice


@dataclass(frozen=True, slots=True)
class AgiCommand:
    """One AGI command: a verb (``STREAM FILE``) and its arguments, quoted on the way out."""

    verb: str
    args: tuple[str, ...] = field(default=())

    def line(self) -> str:
        return " ".join([self.verb, *map(quote_arg, self.args)]) if self.args else self.verb

    def __str__(self) -> str:
        return self.line()


_PLAIN_ARG = re.compile(r'[^\s"\\\x00-\x1f\x7f]+')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def quote_arg(value: str) -> str:
    """Quote one argument the way Asterisk's ``parse_args`` reads it (double quotes, backslash escapes).

    Control characters (CR, LF, NUL, ...) are replaced by spaces: a value can never end the command
    line and smuggle in a second command.
    """
    if _PLAIN_ARG.fullmatch(value):
        return value
    value = _CONTROL.sub(" ", value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


ALL_DIGITS = "0123456789*#"


def answer() -> AgiCommand:
    return AgiCommand("ANSWER")


def stream_file(name: str, escape_digits: str = "") -> AgiCommand:
    return AgiCommand("STREAM FILE", (name, escape_digits))


def wait_for_digit(timeout_ms: int) -> AgiCommand:
    return AgiCommand("WAIT FOR DIGIT", (str(timeout_ms),))


def get_data(name: str, timeout_ms: int, max_digits: int) -> AgiCommand:
    return AgiCommand("GET DATA", (name, str(timeout_ms), str(max_digits)))


def set_variable(name: str, value: str) -> AgiCommand:
    return AgiCommand("SET VARIABLE", (name, value))


def channel_status() -> AgiCommand:
    return AgiCommand("CHANNEL STATUS")


def hangup() -> AgiCommand:
    return AgiCommand("HANGUP")


def encode_command(command: AgiCommand) -> bytes:
    return (command.line() + "\n").encode("utf-8")


# --- parsing --------------------------------------------------------------------------------------------

_ENV_LINE = re.compile(r"^(agi_[A-Za-z0-9_]{1,64}):(?: (.*))?$")
_ENV_LINES = re.compile(r"^(agi_[A-Za-z0-9_]{1,64}):(?: (.*))?$", re.MULTILINE)  # _ENV_LINE, over a block
_REPLY_LINE = re.compile(r"^(\d{3})([ -])(.*)$")
_RESULT = re.compile(r"^result=(\S*)(?: \((.*)\))?$")
_ENDPOS = re.compile(r"^(.*) endpos=(-?\d+)$")
_MAX_ENDPOS_DIGITS = 20  # an off_t; int() of a longer run is slow and, past 4300 digits, raises ValueError
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # control bytes other than tab, LF, CR


def parse_reply_line(text: str) -> AgiReply:
    """One single-line reply (``200 result=...``, ``510 ...``); raises AgiProtocolError if it is none."""
    if text.startswith("200 result="):  # the common cases, without regular expressions
        rest = text[11:]
        if rest.lstrip("-").isdecimal():  # "200 result=1"
            return AgiReply(200, rest, None, None, text[4:])
        result, sep, pos = rest.partition(" endpos=")  # "200 result=49 endpos=4000" (STREAM FILE)
        if sep and result.lstrip("-").isdecimal() and (pos[1:] if pos[:1] == "-" else pos).isdecimal() \
                and len(pos) <= _MAX_ENDPOS_DIGITS:
            return AgiReply(200, result, None, int(pos), text[4:11 + len(result)])
    return parse_reply_line_general(text)


def parse_reply_line_general(text: str) -> AgiReply:
    """``parse_reply_line`` by regular expressions only: every reply form (its fast paths must agree)."""
    m = _REPLY_LINE.match(text)
    if not m or m.group(2) != " ":
        raise AgiProtocolError(f"unexpected line {_clip(text)}")
    code, rest = int(m.group(1)), m.group(3)
    if code != 200:
        return AgiReply(code, text=rest)
    endpos: int | None = None
    e = _ENDPOS.match(rest)
    if e:
        if len(e.group(2)) > _MAX_ENDPOS_DIGITS:
            raise AgiProtocolError(f"200 reply with an endpos of {len(e.group(2))} digits {_clip(text)}")
        rest, endpos = e.group(1), int(e.group(2))
    r = _RESULT.match(rest)
    if not r:
        raise AgiProtocolError(f"200 reply without result= {_clip(text)}")
    return AgiReply(200, r.group(1), r.group(2), endpos, rest)


def _clip(text: str) -> str:
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


State = Literal["env", "commands", "closed"]


class AgiServerCodec:
    """Incremental parser of what Asterisk sends to a FastAGI server, plus pending-command bookkeeping.

    One command is outstanding at a time (Asterisk reads commands with stdio buffering; pipelining
    several can stall it). A reply while no command is outstanding is a protocol error.
    """

    def __init__(self, max_line_bytes: int = 8192, max_env_lines: int = 256, max_usage_lines: int = 200,
                 expect_environment: bool = True) -> None:
        self.max_line_bytes = max_line_bytes
        self.max_env_lines = max_env_lines
        self.max_usage_lines = max_usage_lines
        # Script mode reads the environment with pyst2 and starts directly with commands.
        self.state: State = "env" if expect_environment else "commands"
        self.pending: AgiCommand | None = None
        self.hung_up = False
        self._buffer = bytearray()
        self._env: dict[str, str] = {}
        self._latin1: set[str] = set()
        self._usage: list[str] | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete line (bounded by ``max_line_bytes``)."""
        return len(self._buffer)

    def send(self, command: AgiCommand) -> bytes:
        """Bytes for ``command``; it becomes the outstanding command."""
        if self.state != "commands":
            raise AgiError(f"cannot send a command in state {self.state}")
        if self.pending is not None:
            raise AgiError(f"command {self.pending.verb} is still waiting for its reply")
        self.pending = command
        return encode_command(command)

    def receive_data(self, data: bytes) -> list[AgiEvent]:
        """Parse ``data``; return the complete events in it. Raises AgiProtocolError on bad input."""
        if self.state == "closed":
            return []
        events: list[AgiEvent] = []
        try:
            if _BINARY.search(data):
                raise AgiProtocolError("binary data")
            if self.state == "env" and not self._env and not self._buffer:
                fast = self._whole_environment(data)
                if fast is not None:
                    return fast
            if not self._buffer and data.find(b"\n") == len(data) - 1 and len(data) <= self.max_line_bytes + 1:
                # the common case: exactly one complete reply line in this read
                raw = data[:-1].rstrip(b"\r")
                encoding: Encoding = "utf-8"
                try:  # decode_line, inlined on the hot path
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text, encoding = raw.decode("latin-1"), "latin-1"
                event = self._line(text, encoding)
                return [event] if event is not None else []
            self._buffer += data
            while True:
                end = self._buffer.find(b"\n")
                if end < 0:
                    if len(self._buffer) > self.max_line_bytes:
                        raise AgiProtocolError(f"line longer than {self.max_line_bytes} bytes")
                    return events
                if end > self.max_line_bytes:
                    raise AgiProtocolError(f"line longer than {self.max_line_bytes} bytes")
                raw = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                event = self._line(*decode_line(raw))
                if event is not None:
                    events.append(event)
        except AgiProtocolError:
            self.state = "closed"
            self._buffer.clear()
            raise

    def _whole_environment(self, data: bytes) -> list[AgiEvent] | None:
        """The common case: the whole environment (and maybe more) in one read, well within the limits.

        Checked and split by two regular expressions over the block instead of one call per line; None
        (nothing consumed) whenever anything is unusual, and the line-by-line path decides, with its errors.
        """
        end = data.find(b"\n\n")
        if end < 0 or end + 1 > self.max_line_bytes or b"\r" in data[:end]:
            return None
        try:
            block = data[: end + 1].decode("utf-8")
        except UnicodeDecodeError:  # some line is latin-1: the line-by-line path decodes each on its own
            return None
        lines = block.count("\n")
        if lines > self.max_env_lines:
            return None
        pairs = _ENV_LINES.findall(block)
        if len(pairs) != lines:  # some line is not an agi_* line
            return None
        self._env = {key: value.strip() for key, value in pairs}
        self.state = "commands"
        events: list[AgiEvent] = [AgiEnvironment(self._env)]
        rest = data[end + 2:]
        if rest:
            events += self.receive_data(rest)
        return events

    def _line(self, text: str, encoding: Encoding = "utf-8") -> AgiEvent | None:
        if self.state == "env":
            if text == "":
                if not self._env:
                    raise AgiProtocolError("empty AGI environment")
                self.state = "commands"
                return AgiEnvironment(self._env, frozenset(self._latin1))
            if len(self._env) >= self.max_env_lines:
                raise AgiProtocolError(f"more than {self.max_env_lines} environment lines")
            m = _ENV_LINE.match(text)
            if not m:
                raise AgiProtocolError(f"not an AGI environment line: {_clip(text)}")
            self._env[m.group(1)] = (m.group(2) or "").strip()
            if encoding == "latin-1":
                self._latin1.add(m.group(1))
            return None
        if self._usage is not None:
            if text.startswith("520 ") or text == "520":
                usage = "\n".join(self._usage)
                self._usage = None
                return self._answered(AgiReply(520, text=usage, encoding=encoding))
            if len(self._usage) >= self.max_usage_lines:
                raise AgiProtocolError(f"520 usage text longer than {self.max_usage_lines} lines")
            self._usage.append(text)
            return None
        if text == "HANGUP":
            self.hung_up = True
            return HangupNotice()
        if self.pending is None:
            raise AgiProtocolError(f"reply without a command: {_clip(text)}")
        if text.startswith("520-"):
            self._usage = [text[4:]]
            return None
        reply = parse_reply_line(text)
        if encoding != "utf-8":
            reply = dataclasses.replace(reply, encoding=encoding)
        return self._answered(reply)

    def _answered(self, reply: AgiReply) -> AgiReply:
        self.pending = None
        return reply


def split_command(line: str) -> list[str]:
    """Split a command line the way Asterisk's ``parse_args`` does (quotes group, backslash escapes)."""
    args: list[str] = []
    cur: list[str] = []
    quoted = escaped = False
    in_word = False
    for ch in line:
        if escaped:
            cur.append(ch)
            escaped = False
            in_word = True
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
            in_word = True
        elif ch in " \t" and not quoted:
            if in_word:
                args.append("".join(cur))
                cur, in_word = [], False
        else:
            cur.append(ch)
            in_word = True
    if in_word:
        args.append("".join(cur))
    return args
