"""ACD domain events published to consoles, the wallboard and the recorder. Frozen values; no I/O.

Call events name the caller channel by ``server`` and ``uniqueid`` (the ACD's call key) and carry the
tracker's ``call_id`` (Linkedid). ``ts`` is the ACD's ``now`` when it happened. Must not import the
service or the router.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class AcdEvent:
    ts: float


@dataclass(frozen=True, slots=True)
class AgentStateChanged(AcdEvent):
    """An agent changed state. ``since`` is when ``previous`` began; ``reason`` explains not-ready states."""

    agent_id: str
    state: str
    previous: str
    reason: str
    since: float
    queue: str = ""
    uniqueid: str = ""


@dataclass(frozen=True, slots=True)
class AgentNotReadyPending(AcdEvent):
    """The agent asked for not-ready during a call; it takes effect when the call's work ends."""

    agent_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class CallEvent(AcdEvent):
    server: str
    uniqueid: str
    call_id: str
    queue: str


@dataclass(frozen=True, slots=True)
class CallWaiting(CallEvent):
    """A call entered a queue (or came back to it). ``position`` 1 is next; ``ewt`` is None if unknown."""

    priority: int
    position: int
    ewt: float | None


@dataclass(frozen=True, slots=True)
class CallOffered(CallEvent):
    agent_id: str
    endpoint: str
    wait: float
    attempt: int


@dataclass(frozen=True, slots=True)
class CallAnswered(CallEvent):
    agent_id: str
    wait: float


@dataclass(frozen=True, slots=True)
class OfferNotAnswered(CallEvent):
    """An offer ended without a conversation (DialStatus, or ``offer-failed``/``withdrawn``); the call waits again."""

    agent_id: str
    status: str


@dataclass(frozen=True, slots=True)
class CallSkillsExpanded(CallEvent):
    stage: int
    rule: str


@dataclass(frozen=True, slots=True)
class CallAbandoned(CallEvent):
    wait: float
    while_ringing: bool
    agent_id: str = ""


@dataclass(frozen=True, slots=True)
class CallOverflowed(CallEvent):
    """Max wait reached: ``action`` is overflow (to queue ``target``), voicemail (box) or callback (flow)."""

    wait: float
    action: str
    target: str


@dataclass(frozen=True, slots=True)
class QueueCallFinished(CallEvent):
    """The record row of one queued call (one row per queue a caller waited in)."""

    entered: float
    outcome: str  # answered | abandoned | overflowed
    wait: float
    agent_id: str = ""
    answered_at: float | None = None
    talk: float = 0.0
    wrapup: float = 0.0
    offers: int = 0
    overflow_action: str = ""
    overflow_target: str = ""
    caller_num: str = ""
    dnis: str = ""
    priority: int = 0
    data: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AcdWarning(AcdEvent):
    """Something the ACD could not do or ignored (a failed overflow Redirect, an unknown queue, ...)."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
