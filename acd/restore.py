"""Putting agents back after a server restart, decided purely from what the PBX and the state log say.

Inputs: the last row of each agent's state log (``LastState``, from ``acd_agent_states``) and the calls
the PBX shows with an agent (``AgentLeg``: a caller in ``[cti-agent]`` dialling the agent, or on hold
in ``[cti-onhold]``, read from ``CoreShowChannels`` and the caller's ``CTI_*`` variables). Output: one
``Restore`` per agent to put back, which ``AcdService.restore`` applies to a logged-out agent.

The PBX wins: an agent it shows with a caller is on that call (or has it ringing) whatever the log says,
so a restored agent is never offered a second call. Otherwise the log's last state: ``ready`` and
``not_ready`` (with its reason) as they were; an offer that was ringing is over (``ready``); a call the
log shows and the PBX no longer has ended while the server was down, so the agent is in wrap-up from
now; a wrap-up goes on for what is left of it (``ready`` if nothing is). No I/O, no clock; must not
import the service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from acd.states import AgentState


@dataclass(frozen=True, slots=True)
class LastState:
    """The last recorded state change of an agent."""

    agent_id: str
    state: str
    reason: str
    changed_at: float
    queue: str = ""
    uniqueid: str = ""


@dataclass(frozen=True, slots=True)
class AgentLeg:
    """A caller the PBX shows with an agent."""

    server: str
    agent_id: str
    status: str  # ringing | connected | held
    caller_uniqueid: str
    caller_channel: str
    call_id: str
    agent_uniqueid: str = ""
    agent_channel: str = ""
    endpoint: str = ""
    since: float = 0.0  # when the agent's leg was created (its Duration), else the caller's
    entered: float = 0.0  # when the caller's channel was created
    queue: str = ""
    skills: str = ""
    priority: int = 0
    language: str = ""
    caller_num: str = ""
    dnis: str = ""
    data: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Restore:
    """Put ``agent_id`` back in ``state`` (since ``since``); with ``leg`` for a call, ``wrapup_left`` for wrap-up."""

    agent_id: str
    state: AgentState
    since: float
    reason: str = ""
    leg: AgentLeg | None = None
    wrapup_left: float = 0.0
    last_uniqueid: str = ""  # the call a wrap-up is for (the agent's disposition refers to it)
    last_queue: str = ""


def plan_restore(last: Mapping[str, LastState], legs: Iterable[AgentLeg], wrapup: Callable[[str, str], float],
                 now: float) -> list[Restore]:
    """What to restore, by agent id. ``wrapup(agent_id, queue)``: that agent's wrap-up seconds for the queue."""
    by_agent: dict[str, AgentLeg] = {}
    for leg in legs:
        held = by_agent.get(leg.agent_id)
        if held is None or (held.status == "ringing" and leg.status != "ringing"):
            by_agent[leg.agent_id] = leg  # a call the agent talks on beats one still ringing
    out: list[Restore] = []
    for agent_id in sorted(set(last) | set(by_agent)):
        leg, row = by_agent.get(agent_id), last.get(agent_id)
        if leg is not None:
            state = AgentState.RESERVED if leg.status == "ringing" else AgentState.ON_CALL
            since = row.changed_at if row is not None and row.state == state.value \
                and row.uniqueid == leg.caller_uniqueid else leg.since
            out.append(Restore(agent_id, state, since, leg=leg))
        elif row is None or row.state == AgentState.LOGGED_OUT.value:
            continue
        elif row.state == AgentState.READY.value:
            out.append(Restore(agent_id, AgentState.READY, row.changed_at))
        elif row.state == AgentState.RESERVED.value:
            out.append(Restore(agent_id, AgentState.READY, now))  # the offer ended while we were away
        elif row.state == AgentState.NOT_READY.value:
            out.append(Restore(agent_id, AgentState.NOT_READY, row.changed_at, reason=row.reason))
        elif row.state == AgentState.ON_CALL.value:
            out.append(Restore(agent_id, AgentState.WRAP_UP, now, wrapup_left=wrapup(agent_id, row.queue),
                               last_uniqueid=row.uniqueid, last_queue=row.queue))
        elif row.state == AgentState.WRAP_UP.value:
            left = row.changed_at + wrapup(agent_id, row.queue) - now
            if left > 0:
                out.append(Restore(agent_id, AgentState.WRAP_UP, row.changed_at, wrapup_left=left,
                                   last_uniqueid=row.uniqueid, last_queue=row.queue))
            else:
                out.append(Restore(agent_id, AgentState.READY, now))
    return out
