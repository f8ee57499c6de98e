"""Explanations for supervisors: why a call went to an agent, or why it is still waiting. Pure; no I/O.

The service keeps each decision raw (the router's choice with what it considered) and this module
turns it, or a waiting call's live situation, into a JSON-ready dict. Reads the service's state through
its public read methods (``agent_records``, ``requirements_of``, ``expected_wait``, ``position``); must not
change it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from acd.call_states import CallState
from acd.live import Call, CallKey, Decision
from acd.requirements import next_stage_after
from acd.router import AgentChoice, Considered
from acd.states import AgentState

if TYPE_CHECKING:
    from acd.service import AcdService

MAX_LISTED = 20


def _considered(items: list[Considered]) -> list[dict[str, Any]]:
    return [{"candidate": c.who, "score": list(c.score) if c.score is not None else None, "note": c.note}
            for c in items]


def decision_dict(decision: Decision) -> dict[str, Any]:
    choice = decision.choice
    out: dict[str, Any] = {"decided_at": decision.at, "trigger": decision.trigger, "agent": decision.agent_id,
                           "strategy": decision.strategy, "rule": choice.alternative.label,
                           "required": dict(choice.alternative.skills)}
    if isinstance(choice, AgentChoice):
        out["score"] = list(choice.score)
        out["summary"] = (f"{decision.trigger}: among available agents meeting the requirements, "
                          f"{decision.agent_id} ranked first by {decision.strategy.replace('_', ' ')} "
                          f"(matched {choice.alternative.label})")
        out["agents_considered"] = [{"rule": label, "candidates": _considered(trace)}
                                    for label, trace in choice.considered]
    else:
        out["score"] = [-choice.sort_key[0], choice.sort_key[1]]
        out["summary"] = (f"{decision.trigger}: agent {decision.agent_id} became available and this call was the "
                          f"highest-priority, longest-waiting call it is eligible for across its queues "
                          f"(matched {choice.alternative.label})")
        out["calls_considered"] = _considered(choice.considered)
    return out


def encode_json(decision: dict[str, Any]) -> bytes:
    """How the service keeps a decision's ``decision_dict``: compact JSON."""
    return json.dumps(decision, separators=(",", ":")).encode()


def decode_json(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(data)
    return out


def explain(service: AcdService, key: CallKey, call: Call | None, decision: dict[str, Any] | None) -> dict[str, Any]:
    """``decision``: the call's last decision as ``decision_dict`` made it (or None)."""
    out: dict[str, Any] = {"server": key[0], "uniqueid": key[1]}
    if decision is not None:
        out["last_decision"] = decision
    if call is None:
        out["status"] = "finished"
        return out
    out.update({"status": call.state.value, "queue": call.queue.name, "priority": call.priority,
                "entered": call.entered, "offers": call.offers, "stage": call.stage})
    if call.warnings:
        out["input_warnings"] = list(call.warnings)
    if call.state in (CallState.OFFERED, CallState.ON_CALL):
        out["agent"] = call.agent_id
        out["summary"] = f"{call.state.value.replace('_', ' ')} with agent {call.agent_id}"
        return out
    out.update(_waiting(service, call))
    return out


def _waiting(service: AcdService, call: Call) -> dict[str, Any]:
    """Live answer to "why is this call still waiting"."""
    q = call.queue
    req = service.requirements_of(call)
    groups: dict[str, list[str]] = {"available": [], "ready_phone_busy": [], "reserved": [], "on_call": [],
                                    "wrap_up": [], "not_ready": [], "logged_out": []}
    for a in service.agent_records():
        if req.eligible(a.cfg.skills) is None:
            continue
        if a.state == AgentState.READY:
            group = "available" if a.ordinal in service.router.agents else "ready_phone_busy"
        else:
            group = a.state.value
        groups[group].append(a.id)
    eligible = sum(len(v) for v in groups.values())
    after = next_stage_after(q, call.stage)
    out: dict[str, Any] = {
        "position": service.position(call.key),
        "requirements": [alt.as_dict() for alt in req.alternatives],
        "eligible_agents": {k: {"count": len(v), "agents": v[:MAX_LISTED]} for k, v in groups.items()},
        "next_expansion_at": call.entered + after if after is not None else None,
        "max_wait_at": call.entered + q.max_wait if q.max_wait is not None else None,
        "ewt": service.expected_wait(q.name, service.position(call.key) or 1),
    }
    if call.state == CallState.PARKED:
        out["summary"] = f"the AMI connection to {call.key[0]} is down; routing resumes when it is back"
    elif call.state == CallState.RECALLING:
        out["summary"] = "an offer was withdrawn or cancelled; waiting to learn whether the caller is back on hold"
    elif eligible == 0:
        out["summary"] = ("no configured agent meets the requirements"
                          + (" yet; the next expansion step widens them" if after is not None else ""))
    elif groups["available"]:
        out["summary"] = "eligible agents are available; an offer is imminent"
    else:
        busy = ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in groups.items() if v)
        out["summary"] = f"all {eligible} eligible agents are busy or away ({busy}); callers ahead: " \
                         f"{(service.position(call.key) or 1) - 1}"
    return out
