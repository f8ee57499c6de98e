"""AMI message value: an ordered list of headers with dict-like access. No I/O.

Asterisk repeats some keys (``Output:`` of the Command action, ``Variable:`` of Originate,
``ChanVariable`` ...), so a message keeps every header in order; ``msg["Key"]`` returns the
first value and ``msg.getall("Key")`` returns them all. Key look-up is case-insensitive,
as Asterisk's own ``astman_get_header`` is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

MessageKind = Literal["response", "event", "action"]


class AMIMessage:
    """One AMI packet: a Response, an Event, or an Action (what a client sends)."""

    __slots__ = ("_index", "headers", "kind")

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
        return isinstance(other, AMIMessage) and self.kind == other.kind and self.headers == other.headers

    def __hash__(self) -> int:
        return hash((self.kind, tuple(self.headers)))

    def __repr__(self) -> str:
        return f"AMIMessage({self.kind}, {self.headers!r})"
