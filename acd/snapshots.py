"""Read models of the ACD: frozen snapshots of an agent, a queue's figures and a waiting caller. No I/O.

``AcdService.agent_snapshot``, ``queue_stats`` and ``waiting_calls`` return these; the console, the
wallboard and tools turn them into JSON at their edge (``centre/server.py``), so the console protocol's
shape is written in one place. Values only: tuples and read-only mappings, never the service's own
records. Must not import the service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from acd.states import AgentState


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentCall:
    """The caller an agent holds (offered, talking or in wrap-up)."""

    server: str
    uniqueid: str
    call_id: str
    queue: str
    caller_num: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSnapshot:
    """An agent as the ACD sees it now. ``available``: ready with a free phone, in the router's index."""

    id: str
    name: str
    state: AgentState
    reason: str
    since: float
    endpoint: str
    device_state: str
    available: bool
    pending_not_ready: str | None
    talk_today: float
    skills: Mapping[str, int]
    teams: tuple[str, ...]
    queues: tuple[str, ...]
    call: AgentCall | None
    by: str = ""  # the supervisor who forced the current state (not ready, logged out), else ""
    pending_by: str = ""  # the supervisor whose not ready or log-out waits for the call's work to end


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceLevelTarget:
    """``percent`` of calls answered within ``seconds``."""

    percent: float
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStats:
    """A queue's figures of the day. Rates are in percent (None before any answered or abandoned call);
    ``agents`` counts the queue's agents by state value; ``ewt`` is None while no agent works the queue;
    ``arrival_rate``: callers entering the queue per second lately (a campaign's people not counted)."""

    name: str
    waiting: int
    longest_wait: float
    service_level: float | None
    service_level_target: ServiceLevelTarget
    abandon_rate: float | None
    answered: int
    abandoned: int
    overflowed: int
    average_wait: float | None
    average_handle_time: float
    agents: Mapping[str, int]
    ewt: float | None
    arrival_rate: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitingCall:
    """A caller in a queue's line, in service order: ``position`` 1 is next."""

    server: str
    uniqueid: str
    position: int
    priority: int
    waited: float
    caller_num: str
    ewt: float | None
