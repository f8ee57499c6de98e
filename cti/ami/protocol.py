"""AMI codec, sans-I/O: bytes -> Banner/AMIMessage/ParseError, messages -> bytes, ActionIDs, event lists.

Pure: no sockets, no clock, no Twisted. Both sides use it: the client parses what Asterisk sends
(``AMIParser()``), the simulator parses actions from clients (``AMIParser(expect_banner=False)``).

Wire format (as the transcripts in ``tests/fixtures/asterisk`` show): the server first sends one
banner line ``Asterisk Call Manager/11.0.0\\r\\n`` with no blank line after it; then every message is
``Key: Value\\r\\n`` lines ended by an empty line (``\\r\\n\\r\\n``). Only CRLF ends a line; a bare LF
can occur inside a value and is kept. A header's key is everything before the first ``:`` and one
space after it is dropped (as Asterisk's ``astman_get_header`` reads it): further spaces and colons
belong to the value (``Output:`` lines of CLI commands start with spaces, ``AppData`` holds URLs).
``Key:value`` and ``Key:`` are accepted; a line with no ``:`` at all, or with nothing before it, is
dropped with a ``ParseError`` (which never echoes the line: it may hold a secret). Blank lines
between messages are ignored.

Read boundaries never matter: the same bytes give the same items however they are split into
``feed()`` calls (tests/test_ami_split_invariance.py checks it on constructed streams and on every
transcript).

Speed: ``feed()`` splits whole regions on ``\r\n\r\n`` and reads only each message's first line
(kind and name); the header list and case-insensitive index are built on first use. Consumers that
dispatch on ``msg.name`` and skip most events (VarSet, Newexten, ...) never pay for the rest. That
fast path takes only regions that are valid UTF-8 and where every line's first ``:`` is followed by
a space and preceded by a key (checked for the whole region at C speed: ``bytes.translate`` and a few
counts); anything else goes line by line, with the same result. An incomplete message grows in place
and only the new bytes are searched for the blank line, so a long message fed in tiny pieces costs
linear time.

Decoding: each header line is decoded on its own: as UTF-8 (strict) when its bytes are valid UTF-8,
else as Latin-1, which maps every byte to one character, so no byte is ever lost or replaced and
decoding never raises. ``msg.decoding(key)`` tells which one a value got and ``msg.raw(key)`` gives
its original bytes back (see ``cti.ami.message``).

Limits: a message (or the banner line) longer than ``max_message_bytes`` is dropped; the parser
reports one ``ParseError`` with the number of bytes dropped when it has resynchronised at the next
blank line, and parsing continues (the connection survives). Memory stays bounded while discarding.

End of stream: ``feed_eof()`` reports an unterminated message (or Command output, or discarded
bytes) left when the connection closed as one ``ParseError``, instead of dropping it silently.

Legacy Command output (Asterisk < 14): ``Response: Follows`` + ``Privilege: Command`` (+ ``ActionID``)
then raw CLI text and ``--END COMMAND--\\r\\n\\r\\n``. The raw text may even contain blank lines. It
is returned in the modern shape: one ``Output`` header per line of text.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from cti.ami.message import AMIMessage, MessageKind

__all__ = [
    "ActionIdAllocator",
    "Banner",
    "EventListCollector",
    "AMIParser",
    "ParseError",
    "encode",
    "is_list_start",
]

_SEP = b"\r\n\r\n"
_SEP_S = "\r\n\r\n"
_FOLLOWS = b"Response: Follows\r\n"
_FOLLOWS_S = "Response: Follows\r\n"
_END_COMMAND = b"--END COMMAND--"
_LEGACY_HEADERS = frozenset({"response", "privilege", "actionid"})
BANNER_MAX_BYTES = 1024
"""A banner line longer than this is not an AMI banner (junk on the port)."""

# The fast path reads a line with ``partition(": ")``, which splits where the line-by-line path
# (``partition(":")`` then one space dropped) does only if the line's first ':' has a key before it and
# a space after it. To check every line of a region at C speed, everything but ':', ' ' and LF is
# deleted: each line must then start with ": " (a key with spaces or a bare LF in a value only sends
# the region down the slow path, which is never wrong).
_KEEP_FOR_CHECK = b": \n"
_DELETE_FOR_CHECK = bytes(b for b in range(256) if b not in _KEEP_FOR_CHECK)
_NO_LATIN1: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Banner:
    """The server's greeting line, e.g. ``Asterisk Call Manager/11.0.0``."""

    text: str

    @property
    def version(self) -> str:
        """Protocol version after the last ``/`` (``11.0.0``), or ``""``."""
        _, sep, version = self.text.rpartition("/")
        return version.strip() if sep else ""


@dataclass(frozen=True, slots=True)
class ParseError:
    """Input that could not be parsed; ``discarded`` bytes were dropped while resynchronising."""

    reason: str
    discarded: int


ParsedItem = AMIMessage | Banner | ParseError


def _decode(raw: bytes) -> str:
    """UTF-8, or Latin-1 when the bytes are not valid UTF-8 (never raises, loses no byte)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _decode_lines(lines: list[bytes]) -> tuple[list[str], frozenset[int]]:
    """Each line decoded on its own (UTF-8 if valid, else Latin-1) and the positions of the Latin-1 ones."""
    out: list[str] = []
    latin1: set[int] = set()
    for pos, line in enumerate(lines):
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(line.decode("latin-1"))
            latin1.add(pos)
    return out, frozenset(latin1)


def _looks_like_banner(line: str) -> bool:
    return ":" not in line and "Call Manager/" in line


class _DecodedMessage(AMIMessage):
    """An AMIMessage with some lines decoded as Latin-1 (their positions in ``headers``)."""

    __slots__ = ("_latin1",)


def _message(headers: list[tuple[str, str]], latin1: frozenset[int], kind: MessageKind | None = None) -> AMIMessage:
    if not latin1:
        return AMIMessage(headers, kind)
    msg = _DecodedMessage(headers, kind)
    msg._latin1 = latin1
    return msg


class AMIParser:
    """Incremental AMI parser: feed it bytes as they arrive, get complete items back.

    ``expect_banner``: the first line of the stream is the server's banner (client side). A banner
    line that turns up later at the start of a message (a concatenated capture, a proxy that
    reconnects upstream) is also reported as a ``Banner``. Call ``feed_eof()`` when the stream ends.
    """

    __slots__ = (
        "_discard_reason",
        "_discarded",
        "_discarding",
        "_legacy",
        "_legacy_size",
        "_max",
        "_need_banner",
        "_tail",
    )

    def __init__(self, *, max_message_bytes: int = 1_048_576, expect_banner: bool = True) -> None:
        if max_message_bytes < 64:
            raise ValueError("max_message_bytes must be at least 64")
        self._max = max_message_bytes
        self._need_banner = expect_banner
        # An incomplete tail with no blank line in it: bytes, or a bytearray while it grows by chunks
        # that bring no blank line (a long message in small reads costs linear time, not quadratic).
        self._tail: bytes | bytearray = b""
        self._discarding = False
        self._discarded = 0
        self._discard_reason = ""
        self._legacy: list[bytes] | None = None
        self._legacy_size = 0

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete message (bounded by ``max_message_bytes``)."""
        return len(self._tail) + self._legacy_size

    def feed(self, data: bytes) -> list[ParsedItem]:
        """Consume ``data`` (any split, even inside ``\\r\\n``); return the items it completed."""
        out: list[ParsedItem] = []
        if type(data) is not bytes:
            data = bytes(data)
        tail = self._tail
        if tail and not self._discarding and not self._need_banner:
            # Only the new bytes (and the 3 before them) can hold a blank line: the tail has none.
            end = data.rfind(_SEP)
            if end >= 0:
                end += len(tail)
            else:
                edge = tail[-3:]
                end = (edge + data[:3]).rfind(_SEP)
                if end >= 0:
                    end += len(tail) - len(edge)
                elif len(tail) + len(data) + self._legacy_size <= self._max:
                    if type(tail) is bytes:
                        tail = self._tail = bytearray(tail)
                    tail += data
                    return out
            buf = b"".join((tail, data))
            self._tail = b""
            if end < 0:
                self._keep(buf, out)
            else:
                self._split(buf, end, out)
            return out
        if tail:
            data = b"".join((tail, data))
            self._tail = b""
        buf: bytes | None = data
        if self._discarding:
            buf = self._resync(data, out)
            if buf is None:
                return out
        if self._need_banner:
            buf = self._banner(buf, out)
            if buf is None:
                return out
        end = buf.rfind(_SEP)
        if end < 0:
            self._keep(buf, out)
        else:
            self._split(buf, end, out)
        return out

    def _split(self, buf: bytes, end: int, out: list[ParsedItem]) -> None:
        """Parse ``buf`` up to the blank line at ``end`` (the last one in it) and hold the rest."""
        region = buf[:end]
        if self._legacy is None and len(region) <= self._max:
            self._fast(region, out)
        else:
            self._careful(region, out)
        self._keep(buf[end + 4 :], out)

    def feed_eof(self) -> list[ParseError]:
        """The stream ended: report what is left unfinished (at most one ``ParseError``) and start afresh.

        Left unfinished: a message with no blank line after it, Command output with no ``--END
        COMMAND--``, bytes being discarded (an over-long message), or a missing banner line. Blank lines
        alone are not reported."""
        held = bytes(self._tail)
        self._tail = b""
        out: list[ParseError] = []
        if self._discarding:
            out.append(ParseError(f"{self._discard_reason} (the stream ended first)", self._discarded + len(held)))
        elif self._legacy is not None:
            size = self._legacy_size + len(held)
            out.append(ParseError("the stream ended inside Command output (no --END COMMAND--)", size))
        elif held.strip(b"\r\n"):
            what = "the banner line" if self._need_banner else "a message"
            out.append(ParseError(f"the stream ended inside {what} (no line end or blank line after it)", len(held)))
        self._discarding = False
        self._discarded = 0
        self._legacy = None
        self._legacy_size = 0
        return out

    # internals --------------------------------------------------------------------------
    def _keep(self, rest: bytes, out: list[ParsedItem]) -> None:
        """Hold an incomplete tail, or start discarding if it is already over the limit."""
        if len(rest) + self._legacy_size > self._max:
            self._start_discarding(
                f"message longer than {self._max} bytes dropped; resynchronised at the next blank line",
                self._legacy_size,
            )
            self._legacy = None
            self._legacy_size = 0
            left = self._resync(rest, out)
            if left is not None:  # the tail cannot contain a separator, but stay general
                self._keep(left, out)
            return
        self._tail = rest

    def _start_discarding(self, reason: str, already: int) -> None:
        self._discarding = True
        self._discard_reason = reason
        self._discarded = already

    def _resync(self, buf: bytes, out: list[ParsedItem]) -> bytes | None:
        """Drop bytes up to and including the next blank line; None while still discarding."""
        idx = buf.find(_SEP)
        if idx < 0:
            # Keep 3 bytes: the separator may be split across reads.
            keep = buf[-3:]
            self._discarded += len(buf) - len(keep)
            self._tail = keep
            return None
        self._discarded += idx + 4
        out.append(ParseError(self._discard_reason, self._discarded))
        self._discarding = False
        self._discarded = 0
        return buf[idx + 4 :]

    def _banner(self, buf: bytes, out: list[ParsedItem]) -> bytes | None:
        idx = buf.find(b"\r\n")
        if idx < 0:
            if len(buf) > BANNER_MAX_BYTES:
                self._need_banner = False
                self._start_discarding(
                    f"no AMI banner line within {BANNER_MAX_BYTES} bytes (not an AMI server?); "
                    "resynchronised at the next blank line",
                    0,
                )
                return self._resync(buf, out)
            self._tail = buf
            return None
        self._need_banner = False
        line = _decode(buf[:idx])
        if ":" in line:
            out.append(ParseError("expected the AMI banner line, got a header line; parsing it as a message", 0))
            return buf
        out.append(Banner(line))
        return buf[idx + 2 :]

    def _fast(self, region: bytes, out: list[ParsedItem]) -> None:
        """Common case: UTF-8 messages within the limit whose lines all read ``Key: value``. Each message
        is split off and classified here; its header list is built when first used (``_LazyMessage``)."""
        try:
            text = region.decode("utf-8")
        except UnicodeDecodeError:
            self._careful(region, out)
            return
        if (
            _FOLLOWS_S in text
            or "\r\n\r\n\r\n" in text
            or text.startswith("\r\n")
            or text.endswith("\r\n")
        ):
            self._careful(region, out)
            return
        blocks = text.split(_SEP_S)
        shape = region.translate(None, _DELETE_FOR_CHECK)
        # Every line but the blank ones between messages (one per separator) starts with ": ", no key is empty.
        if (
            not shape.startswith(b": ")
            or shape.count(b"\n: ") != shape.count(b"\n") - (len(blocks) - 1)
            or b"\n:" in region
            or region[:1] == b":"
        ):
            self._careful(region, out)
            return
        append = out.append
        new = object.__new__
        for block in blocks:
            nl = block.find("\r\n")
            key, sep, value = (block if nl < 0 else block[:nl]).partition(": ")
            if not sep:  # cannot happen after the check above; stay safe
                self._lines(block.split("\r\n"), _NO_LATIN1, out)
                continue
            if key == "Event":
                kind = "event"
            elif key in _FIRST_KEYS and "\nevent: " not in block.lower():
                kind = _FIRST_KEYS[key]
                if kind == "action" and "\nresponse: " in block.lower():
                    # An action-first message with a Response: header is a response named by that header.
                    self._lines(block.split("\r\n"), _NO_LATIN1, out)
                    continue
            else:  # unusual header order: classify the eager way
                self._lines(block.split("\r\n"), _NO_LATIN1, out)
                continue
            msg = new(_LazyMessage)
            msg._text = block
            msg._name = value
            msg.kind = kind  # type: ignore[misc]
            append(msg)

    def _careful(self, region: bytes, out: list[ParsedItem]) -> None:
        """Block by block, line by line: legacy output, odd lines, banners, limits, bad bytes."""
        for block in region.split(_SEP):
            if self._legacy is not None:
                self._legacy_block(block, out)
                continue
            while block.startswith(b"\r\n"):
                block = block[2:]
            while block.endswith(b"\r\n"):  # a region cut between overlapping separators ("\r\n" * 3)
                block = block[:-2]
            if not block:
                continue
            if len(block) > self._max:
                out.append(ParseError(f"message longer than {self._max} bytes dropped", len(block) + 4))
                continue
            if block.startswith(_FOLLOWS):
                self._legacy = []
                self._legacy_size = 0
                self._legacy_block(block, out)
                continue
            self._block(block, out)

    def _legacy_block(self, block: bytes, out: list[ParsedItem]) -> None:
        legacy = self._legacy
        assert legacy is not None
        if legacy and block.startswith((b"Event: ", b"Response: ")):
            # No "--END COMMAND--" came: a server that says Follows without the legacy trailer.
            self._legacy = None
            self._legacy_size = 0
            out.append(_legacy_message(_SEP.join(legacy)))
            self._careful(block, out)
            return
        legacy.append(block)
        self._legacy_size += len(block) + 4
        if self._legacy_size > self._max:
            out.append(ParseError(f"Command output longer than {self._max} bytes dropped", self._legacy_size))
            self._legacy = None
            self._legacy_size = 0
            return
        if not block.rstrip(b"\r\n").endswith(_END_COMMAND):
            return
        self._legacy = None
        self._legacy_size = 0
        out.append(_legacy_message(_SEP.join(legacy)))

    def _block(self, block: bytes, out: list[ParsedItem]) -> None:
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            lines, latin1 = _decode_lines(block.split(b"\r\n"))
            self._lines(lines, latin1, out)
            return
        self._lines(text.split("\r\n"), _NO_LATIN1, out)

    def _lines(self, lines: list[str], latin1: frozenset[int], out: list[ParsedItem]) -> None:
        """One message, line by line: banner in front, 'Key:value' without space, lines without ':'.
        ``latin1``: positions in ``lines`` of lines that were decoded as Latin-1."""
        first = 0
        if _looks_like_banner(lines[0]):
            out.append(Banner(lines[0]))
            first = 1
        headers: list[tuple[str, str]] = []
        positions: list[int] = []
        for pos in range(first, len(lines)):
            line = lines[pos]
            if not line:
                continue
            key, sep, value = line.partition(":")
            if not sep or not key:
                # Never echo the line: it may be a secret sent by a broken client.
                size = len(line) if pos in latin1 else len(line.encode("utf-8"))
                out.append(
                    ParseError(
                        f"line {pos - first + 1} of a message has no 'Key:' ({len(line)} characters dropped)",
                        size + 2,
                    )
                )
                continue
            if pos in latin1:
                positions.append(len(headers))
            headers.append((key, value[1:] if value[:1] == " " else value))
        if headers:
            out.append(_message(headers, frozenset(positions)))


_FIRST_KEYS = {"Response": "response", "Action": "action"}
_HEADERS_SLOT = AMIMessage.__dict__["headers"]
_INDEX_SLOT = AMIMessage.__dict__["_index"]


class _WireMessage(AMIMessage):
    """An AMIMessage cut from the wire; its name was read from the first line when it was split off."""

    __slots__ = ("_name", "_text")

    @property
    def name(self) -> str:
        return self._name


class _ParsedMessage(_WireMessage):
    """A _LazyMessage after its headers were built: plain slot access from then on."""

    __slots__ = ()


class _LazyMessage(_WireMessage):
    """An AMIMessage whose header list and index are built on first use.

    Most events are dispatched on their name alone (``kind`` and ``name`` are set when the message is
    split off) and many are never read further (VarSet, Newexten, ...), so building every header list
    up front is wasted work. The first access to anything else parses the text (every line holds a
    ``:`` after a key, checked by the parser) and turns the object into a ``_ParsedMessage``, which has the same
    layout. Behaviour is the same as an ``AMIMessage`` built from the same headers.
    """

    __slots__ = ()

    def _parse(self) -> None:
        lines = self._text.split("\r\n")
        headers = [line.partition(": ")[::2] for line in lines]
        for i, (key, _) in enumerate(headers):
            if ":" in key:  # "Key:x y": its first ':' has no space after it; read it as the careful path does
                key, _, value = lines[i].partition(":")
                headers[i] = (key, value[1:] if value[:1] == " " else value)
        # Built back to front so that the FIRST value of a repeated key wins (as setdefault would).
        index = {key.lower(): value for key, value in reversed(headers)}
        _HEADERS_SLOT.__set__(self, headers)
        _INDEX_SLOT.__set__(self, index)
        self._text = ""
        self.__class__ = _ParsedMessage

    def _lookup(self, key: str) -> str | None:
        """The first value of ``key`` straight from the text, without building the index.

        Asterisk spells keys consistently, so the exact spelling is tried first (``\r\n`` can only
        precede a key: values never hold CR LF); only when it is absent is the text searched without
        regard to case, and then the message is parsed like any other."""
        text = self._text
        probe = key + ": "
        if text.startswith(probe):
            start = len(probe)
        else:
            pos = text.find("\r\n" + probe)
            if pos < 0:
                low = "\r\n" + text.lower()
                if low.find("\r\n" + key.lower() + ":") < 0:  # not even "Key:x" (no space after ':')
                    return None
                self._parse()
                return self._index.get(key.lower())
            start = pos + len(probe) + 2
        end = text.find("\r\n", start)
        return text[start:] if end < 0 else text[start:end]

    def get(self, key: str, default: str | None = None) -> str | None:
        value = self._lookup(key)
        return default if value is None else value

    def __getitem__(self, key: str) -> str:
        value = self._lookup(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._lookup(key) is not None

    @property  # type: ignore[override]
    def headers(self) -> list[tuple[str, str]]:
        self._parse()
        return self.headers

    @property
    def _index(self) -> dict[str, str]:  # type: ignore[override]
        self._parse()
        return self._index


def _legacy_message(raw: bytes) -> AMIMessage:
    """``Response: Follows`` ... ``--END COMMAND--`` -> Response with one ``Output`` per text line."""
    raw = raw.rstrip(b"\r\n").removesuffix(_END_COMMAND)
    headers: list[tuple[str, str]] = []
    latin1: set[int] = set()
    pos = 0
    while True:
        nl = raw.find(b"\r\n", pos)
        if nl < 0:
            break
        (line,), line_latin1 = _decode_lines([raw[pos:nl]])
        key, sep, value = line.partition(": ")
        if not sep or key.lower() not in _LEGACY_HEADERS:
            break
        if line_latin1:
            latin1.add(len(headers))
        headers.append((key, value))
        pos = nl + 2
    body = raw[pos:]
    if body.endswith(b"\n"):
        body = body[:-1]
    if body.endswith(b"\r"):
        body = body[:-1]
    if body:
        lines, body_latin1 = _decode_lines([line.removesuffix(b"\r") for line in body.split(b"\n")])
        latin1.update(len(headers) + pos for pos in body_latin1)
        headers.extend(("Output", line) for line in lines)
    return _message(headers, frozenset(latin1), "response")


def encode(msg: AMIMessage) -> bytes:
    """Serialise ``msg`` as ``Key: Value\\r\\n`` lines plus the blank line.

    Raises ``ValueError`` for a CR or LF in a key or value (header injection) or a ``:`` in a key;
    the message names the key, never the value (values can be secrets).
    """
    parts: list[str] = []
    for key, value in msg.headers:
        if not key or ":" in key or "\r" in key or "\n" in key:
            raise ValueError(f"invalid AMI header name {key[:40]!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"AMI header {key!r}: value contains CR or LF")
        parts.append(f"{key}: {value}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("utf-8")


_ids = itertools.count(1)


class ActionIdAllocator:
    """ActionIDs ``{prefix}-{n}``; ``n`` comes from one process-wide counter, so IDs never repeat."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = "cti") -> None:
        if not prefix or any(c in prefix for c in "\r\n"):
            raise ValueError("ActionID prefix must be a non-empty single line")
        self.prefix = prefix

    def next(self) -> str:
        return f"{self.prefix}-{next(_ids)}"


def is_list_start(response: AMIMessage) -> bool:
    """True if ``response`` opens an event list (``EventList: start``; older Asterisk: "... will follow")."""
    marker = response.get("EventList")
    if marker is not None:
        return marker.lower() == "start"
    if response.kind != "response" or response.name.lower() != "success":
        return False
    return (response.get("Message") or "").lower().endswith("will follow")


def _is_list_end(event: AMIMessage) -> bool:
    marker = event.get("EventList")
    if marker is not None:
        return marker.lower() == "complete"
    return event.name.endswith("Complete")


class EventListCollector:
    """Collects the item events of list actions (CoreShowChannels, QueueStatus, Status, ...).

    ``start(response)`` registers a response that opens a list; ``add(event)`` files an event with
    that ActionID and, on the closing event (``EventList: Complete``), returns
    ``(response, events)`` where ``events`` are the items in order followed by the closing event.
    """

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: dict[str, tuple[AMIMessage, list[AMIMessage]]] = {}

    def __len__(self) -> int:
        return len(self._open)

    def start(self, response: AMIMessage) -> bool:
        """Register ``response`` if it opens a list; return whether it did."""
        action_id = response.action_id
        if action_id is None or not is_list_start(response):
            return False
        self._open[action_id] = (response, [])
        return True

    def add(self, event: AMIMessage) -> tuple[AMIMessage, list[AMIMessage]] | None:
        """File ``event`` if it belongs to an open list; return the finished list on its last event."""
        if not self._open:
            return None
        action_id = event.action_id
        if action_id is None:
            return None
        entry = self._open.get(action_id)
        if entry is None:
            return None
        entry[1].append(event)
        if _is_list_end(event):
            del self._open[action_id]
            return entry
        return None

    def is_open(self, action_id: str) -> bool:
        return action_id in self._open

    def discard(self, action_id: str) -> None:
        """Forget a list (its action timed out or was cancelled)."""
        self._open.pop(action_id, None)

    def clear(self) -> None:
        self._open.clear()
