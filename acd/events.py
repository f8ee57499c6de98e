"""ACD domain events published to consoles, the wallboard and the recorder. Frozen values; no I/O.

Call events name the caller channel by ``server`` and ``uniqueid`` (the ACD's call key) and carry the
tracker's ``call_id`` (Linkedid). ``ts`` is the ACD's ``now`` when it happened. Must not import the
service or the router.

Events are built with keyword arguments only and check on construction what is cheap to check
(non-empty ids, known states, outcomes and actions): a bad one raises ``ValueError``. They hold no
mutable container: ``QueueCallFinished.data`` and ``AcdWarning.details`` are read-only mappings over
a copy (``cti.events.frozen_mapping``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from acd.states import AgentState
from cti.events import EMPTY_MAPPING, frozen_mapping, no_mapping, refuse_empty

AGENT_STATES = frozenset(s.value for s in AgentState)
OUTCOMES = frozenset({"answered", "abandoned", "overflowed"})
OVERFLOW_ACTIONS = frozenset({"overflow", "voicemail", "callback"})


def _unknown(event: object, name: str, allowed: frozenset[str]) -> NoReturn:
    raise ValueError(f"{type(event).__name__}.{name} must be one of {', '.join(sorted(allowed))}, "
                     f"got {getattr(event, name)!r:.40}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AcdEvent:
    ts: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStateChanged(AcdEvent):
    """An agent changed state. ``since`` is when ``previous`` began; ``reason`` explains not-ready states."""

    agent_id: str
    state: str
    previous: str
    reason: str
    since: float
    queue: str = ""
    uniqueid: str = ""

    def __post_init__(self) -> None:
        if not self.agent_id:
            refuse_empty(self, "agent_id")
        if self.state not in AGENT_STATES:
            _unknown(self, "state", AGENT_STATES)
        if self.previous not in AGENT_STATES:
            _unknown(self, "previous", AGENT_STATES)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentNotReadyPending(AcdEvent):
    """The agent asked for not-ready during a call; it takes effect when the call's work ends."""

    agent_id: str
    reason: str

    def __post_init__(self) -> None:
        if not (self.agent_id and self.reason):
            refuse_empty(self, "agent_id", "reason")


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedStateHealth(AcdEvent):
    """The shared agent pool became unreachable (``up`` false: no offers, calls stay queued) or reachable again."""

    up: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEvent(AcdEvent):
    server: str
    uniqueid: str
    call_id: str
    queue: str

    def __post_init__(self) -> None:
        if not (self.server and self.uniqueid and self.queue):
            refuse_empty(self, "server", "uniqueid", "queue")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallWaiting(CallEvent):
    """A call entered a queue (or came back to it). ``position`` 1 is next; ``ewt`` is None if unknown.
    ``entered`` (this queue: its expansion steps count from then), ``first_entered`` (the ACD: it orders the
    callers of one priority) and ``skills`` (the caller's own, as ``CTI_SKILLS`` says them) let another node's ACD
    know whom the caller may go to and before whom (several nodes: ``acd.remote_waiting``)."""

    priority: int
    position: int
    ewt: float | None
    entered: float | None = None
    first_entered: float | None = None
    skills: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallOffered(CallEvent):
    agent_id: str
    endpoint: str
    wait: float
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered(CallEvent):
    agent_id: str
    wait: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferNotAnswered(CallEvent):
    """An offer ended without a conversation (DialStatus, or ``offer-failed``/``withdrawn``); the call waits again."""

    agent_id: str
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSkillsExpanded(CallEvent):
    stage: int
    rule: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAbandoned(CallEvent):
    wait: float
    while_ringing: bool
    agent_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallOverflowed(CallEvent):
    """Max wait reached: ``action`` is overflow (to queue ``target``), voicemail (box) or callback (flow)."""

    wait: float
    action: str
    target: str

    def __post_init__(self) -> None:
        if not (self.server and self.uniqueid and self.queue):
            refuse_empty(self, "server", "uniqueid", "queue")
        if self.action not in OVERFLOW_ACTIONS:
            _unknown(self, "action", OVERFLOW_ACTIONS)


@dataclass(frozen=True, slots=True, kw_only=True)
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
    data: Mapping[str, str] = field(default_factory=no_mapping)

    def __post_init__(self) -> None:
        if not (self.server and self.uniqueid and self.queue):
            refuse_empty(self, "server", "uniqueid", "queue")
        if self.outcome not in OUTCOMES:
            _unknown(self, "outcome", OUTCOMES)
        if self.data is not EMPTY_MAPPING:  # the default needs no copy
            object.__setattr__(self, "data", frozen_mapping(self.data))


@dataclass(frozen=True, slots=True, kw_only=True)
class AcdWarning(AcdEvent):
    """Something the ACD could not do or ignored (a failed overflow Redirect, an unknown queue, ...)."""

    code: str
    message: str
    details: Mapping[str, Any] = field(default_factory=no_mapping)

    def __post_init__(self) -> None:
        if not self.code:
            refuse_empty(self, "code")
        if self.details is not EMPTY_MAPPING:  # the default needs no copy
            object.__setattr__(self, "details", frozen_mapping(self.details))
