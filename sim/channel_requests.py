"""Asking the simulated PBX for a channel (Asterisk's ast_request) and what comes back: the Originate
reason codes, ``OriginateResult``, ``RequestFailed``, and how Dial() reads its targets and arguments. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.channel import Channel
from sim.dialplan import split_args

# Originate Reason codes (AST_CONTROL_*), as OriginateResponse reports them.
REASON_FAILURE, REASON_HANGUP, REASON_TIMEOUT, REASON_ANSWERED, REASON_BUSY, REASON_CONGESTION = 0, 1, 3, 4, 5, 8


@dataclass(frozen=True, slots=True)
class OriginateResult:
    """The outcome an OriginateResponse reports."""

    reason: int
    channel: Channel | None

    @property
    def success(self) -> bool:
        return self.reason == REASON_ANSWERED


class RequestFailed(Exception):
    """ast_request failed: unknown technology/endpoint, or the Local extension does not exist."""

    def __init__(self, cause: int, created: Channel | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.created = created


def parse_dial_targets(data: str) -> list[tuple[str, str]]:
    """``PJSIP/1001&Local/x@y`` -> [(tech, resource), ...]."""
    out = []
    for part in data.split("&"):
        tech, sep, resource = part.strip().partition("/")
        if sep and resource:
            out.append((tech, resource))
    return out


def split_dial_args(data: str) -> tuple[str, float | None, str]:
    args = split_args(data)
    targets = args[0] if args else ""
    timeout: float | None = None
    if len(args) > 1 and args[1].strip():
        try:
            timeout = float(args[1])
        except ValueError:
            timeout = None
    options = args[2] if len(args) > 2 else ""
    return targets, timeout, options
