"""Live records of the ACD: calls it tracks, agents' runtime state, and raw routing decisions.

Mutable slotted dataclasses owned by ``acd.service`` (the only writer); ``acd.explain`` reads them.
A call's ``state`` moves only by the table in ``acd.call_states``.
No I/O, no clock; must not import the service.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from acd.call_states import CallState
from acd.requirements import Requirements, SkillSet
from acd.router import AgentChoice, CallChoice, SortKey
from acd.settings import Agent, Queue
from acd.states import AgentState

CallKey = tuple[str, str]  # (server, uniqueid of the caller channel)

AVAILABLE_DEVICE_STATES = frozenset({"NOT_INUSE", "UNKNOWN"})
BUSY_DEVICE_STATES = frozenset({"INUSE", "BUSY", "ONHOLD"})
RINGING_DEVICE_STATES = frozenset({"RINGING", "RINGINUSE"})
STAFFED = frozenset({AgentState.READY, AgentState.RESERVED, AgentState.ON_CALL, AgentState.WRAP_UP})


@dataclass(slots=True)
class Call:
    key: CallKey
    call_id: str
    channel: str
    queue: Queue
    skills: SkillSet
    boost: int
    entered: float  # entered this queue
    first_entered: float  # entered the ACD; orders callers within a priority
    seq: int
    caller_num: str = ""
    dnis: str = ""
    data: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    state: CallState = CallState.NEW  # changed only through acd.call_states.next_call_state
    gen: int = 0
    stage: int = 0
    requirements: Requirements | None = None
    agent_id: str = ""
    offer_ref: str = ""
    offered_at: float = 0.0
    offers: int = 0
    failures: int = 0
    dest_uniqueid: str = ""
    answered_at: float | None = None
    talk_end: float | None = None
    requeued_to: str = ""  # the queue the caller went back to while talking (a blind transfer to a queue)

    @property
    def priority(self) -> int:
        return self.queue.priority + self.boost

    @property
    def sort_key(self) -> SortKey:
        return (-self.priority, self.first_entered, self.seq)


@dataclass(slots=True)
class AgentRuntime:
    cfg: Agent
    ordinal: int
    endpoint: str
    state: AgentState = AgentState.LOGGED_OUT
    reason: str = ""
    since: float = 0.0
    idle_since: float = 0.0
    call: Call | None = None
    talk_today: float = 0.0
    pending: str | None = None
    gen: int = 0
    queues: tuple[str, ...] = ()
    by: str = ""  # the supervisor who put the agent in its current state ("" : the agent or the ACD)
    pending_by: str = ""  # the supervisor whose not ready is pending (``pending``): the agent cannot cancel it
    pending_logout: str = ""  # the supervisor whose log-out is pending until the call's work ends
    node: str = ""  # the node that set the current state (this one, or another node of the shared pool)

    @property
    def id(self) -> str:
        return self.cfg.id


@dataclass(slots=True)
class Decision:
    """What the router did, kept raw on the hot path and formatted by ``acd.explain`` on request."""

    trigger: str
    at: float
    agent_id: str
    strategy: str
    choice: AgentChoice | CallChoice
