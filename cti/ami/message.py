"""AMI message value: an ordered list of headers with dict-like access. No I/O.

Asterisk repeats some keys (``Output:`` of the Command action, ``Variable:`` of Originate,
``ChanVariable`` ...), so a message keeps every header in order; ``msg["Key"]`` returns the
first value and ``msg.getall("Key")`` returns them all. Key look-up is case-insensitive,
as Asterisk's own ``astman_get_header`` is.

Decoding: the parser decodes each header line on its own, as UTF-8 when its bytes are valid UTF-8
and as Latin-1 otherwise (a Latin-1 trunk's caller name next to a UTF-8 ``VarSet`` value), so no
byte is ever lost or replaced. ``msg.decoding("Key")`` says which one was used for the first value
of a key and ``msg.raw("Key")`` gives back its bytes exactly as they came off the wire.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

MessageKind = Literal["response", "event", "action"]
Decoding = Literal["utf-8", "latin-1"]


class AMIMessage:
    """One AMI packet: a Response, an Event, or an Action (what a client sends)."""

    __slots__ = ("_index", "headers", "kind")

    _latin1: frozenset[int] = frozenset()
    """Positions in ``headers`` of the lines decoded as Latin-1; the parser sets it (a subclass slot)
    on the rare messages that have such lines, every other message shares this empty default."""

    def __init__(self, headers: list[tuple[str, str]], kind: MessageKind | None = None) -> None:
        self.headers = headers
        index: dict[str, str] = {}
        for key, value in headers:
            index.setdefault(key.lower(), value)
        self._index = index
        if kind is None:
            # Classify by Event: before Response: (ChallengeResponseFailed carries a Response: header).
            if "event" in index:
                kind = "event"
            elif "response" in index:
                kind = "response"
            else:
                kind = "action"
        self.kind: MessageKind = kind

    @classmethod
    def action(cls, name: str, fields: dict[str, str | list[str]] | None = None) -> AMIMessage:
        """Build an action; list values become repeated headers (e.g. several ``Variable:``)."""
        headers: list[tuple[str, str]] = [("Action", name)]
        for key, value in (fields or {}).items():
            if isinstance(value, list):
                headers.extend((key, v) for v in value)
            else:
                headers.append((key, value))
        return cls(headers, "action")

    # dict-like access -------------------------------------------------------------------
    def __getitem__(self, key: str) -> str:
        return self._index[key.lower()]

    def get(self, key: str, default: str | None = None) -> str | None:
        return self._index.get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._index

    def decoding(self, key: str) -> Decoding | None:
        """How the first value of ``key`` was decoded from the wire (None if there is no such key)."""
        low = key.lower()
        for pos, (k, _) in enumerate(self.headers):
            if k.lower() == low:
                return "latin-1" if pos in self._latin1 else "utf-8"
        return None

    def raw(self, key: str) -> bytes | None:
        """The first value of ``key`` as the bytes that arrived (None if there is no such key).

        Both decodings are lossless, so this is exact; a message built in code (an action) gives its
        UTF-8 encoding, which is what ``encode()`` sends."""
        low = key.lower()
        for pos, (k, value) in enumerate(self.headers):
            if k.lower() == low:
                return value.encode("latin-1" if pos in self._latin1 else "utf-8")
        return None

    def getall(self, key: str) -> list[str]:
        low = key.lower()
        return [v for k, v in self.headers if k.lower() == low]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.headers)

    def __len__(self) -> int:
        return len(self.headers)

    # convenience ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Event name, Response value, or Action name."""
        if self.kind == "event":
            return self._index["event"]
        if self.kind == "response":
            return self._index["response"]
        return self._index.get("action", "")

    @property
    def action_id(self) -> str | None:
        return self._index.get("actionid")

    def as_dict(self) -> dict[str, str]:
        """First value of each key, original key spelling."""
        out: dict[str, str] = {}
        for key, value in self.headers:
            out.setdefault(key, value)
        return out

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AMIMessage)
            and self.kind == other.kind
            and self.headers == other.headers
            and self._latin1 == other._latin1
        )

    def __hash__(self) -> int:
        return hash((self.kind, tuple(self.headers)))

    def __repr__(self) -> str:
        return f"AMIMessage({self.kind}, {self.headers!r})"
