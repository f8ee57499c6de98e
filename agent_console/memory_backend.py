"""In-memory ``ConsoleBackend``: agent states and calls kept in dicts, with the same state rules the ACD
enforces. Used by the protocol tests, the browser test and ``cti demo`` before the real backend exists.

No I/O and no clock of its own (``clock`` is passed in). Must not import the hub or websockets. Pushes go
to a ``ConsolePusher`` (the hub) attached after construction.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent_console.backend import ConsoleError, ConsolePusher, SessionInfo
from agent_console.settings import ConsoleSection

# Agent-initiated state transitions: TRANSITIONS[action][from_state] -> to_state. Anything missing is
# illegal and changes nothing. Call-level actions (hold, transfer, ...) are checked against the call.
TRANSITIONS: dict[str, dict[str, str]] = {
    "login": {"logged_out": "not_ready"},
    "logout": {"not_ready": "logged_out", "ready": "logged_out"},
    "ready": {"not_ready": "ready"},
    "not_ready": {"ready": "not_ready", "not_ready": "not_ready"},
}
# System transitions driven by call events: SYSTEM[event][from_state] -> to_state.
SYSTEM: dict[str, dict[str, str]] = {
    "offer": {"ready": "reserved"},
    "answer": {"reserved": "on_call"},
    "no_answer": {"reserved": "not_ready"},
    "abandoned": {"reserved": "ready"},
    "ended": {"on_call": "wrap_up"},
}
# Call status changes from call-control actions: CALL_ACTIONS[action][from_status] -> to_status.
CALL_ACTIONS: dict[str, dict[str, str]] = {
    "hangup": {"connected": "ended", "held": "ended", "consulting": "ended"},
    "hold": {"connected": "held"},
    "retrieve": {"held": "connected"},
    "transfer": {"connected": "ended", "held": "ended"},
    "attended_transfer": {"connected": "consulting", "held": "consulting"},
    "attended_complete": {"consulting": "ended"},
    "attended_cancel": {"consulting": "connected"},
}


@dataclass(slots=True)
class AgentRecord:
    agent_id: str
    queues: tuple[str, ...]
    state: str = "logged_out"
    reason: str | None = None
    since: float = 0.0
    endpoint: str | None = None
    home_endpoint: str = ""  # the configured phone, used when login names none
    call_id: str | None = None  # offered, connected or in wrap-up
    preview: dict[str, Any] | None = None


@dataclass(slots=True)
class CallRecord:
    call_id: str
    agent_id: str
    queue: str
    status: str  # ringing | connected | held | consulting | ended
    since: float
    pop: dict[str, Any]
    consult: str | None = None
    answered_at: float | None = None
    held_total: float = 0.0
    transferred_to: str | None = None
    history: list[str] = field(default_factory=list)


class MemoryBackend:
    """A real, small ConsoleBackend. ``agents`` maps agent id -> queue names it serves."""

    def __init__(self, settings: ConsoleSection, agents: Mapping[str, Sequence[str]],
                 clock: Callable[[], float], queues: Sequence[str] = ()) -> None:
        self._settings = settings
        self._clock = clock
        now = clock()
        self.agents: dict[str, AgentRecord] = {
            a: AgentRecord(agent_id=a, queues=tuple(q), since=now, home_endpoint=f"PJSIP/{a}")
            for a, q in agents.items()}
        self.calls: dict[str, CallRecord] = {}
        self.interactions: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        self.lead_results: list[dict[str, Any]] = []
        self.sessions: dict[str, SessionInfo] = {}
        self.queue_stats: dict[str, dict[str, Any]] = {q: {} for q in queues}
        for q in itertools.chain.from_iterable(agents.values()):
            self.queue_stats.setdefault(q, {})
        self.health: dict[str, Any] = {"ami": {}, "db": True, "redis": None}
        self._pusher: ConsolePusher | None = None

    def attach(self, pusher: ConsolePusher) -> None:
        self._pusher = pusher

    # ---- ConsoleBackend -------------------------------------------------------------------------

    async def handle(self, session: SessionInfo, action: str, params: dict[str, Any]) -> dict[str, Any]:
        if action == "snapshot":
            if session.role != "supervisor":
                raise ConsoleError("forbidden", "only supervisors may ask for the wallboard snapshot")
            return self.supervisor_snapshot()
        if session.role != "agent":
            raise ConsoleError("forbidden", f"{action} is an agent action")
        agent = self._agent(session.agent_id)
        if action in TRANSITIONS:
            return self._transition(agent, action, params)
        if action in CALL_ACTIONS:
            return self._call_action(agent, action, params)
        handler = getattr(self, f"_do_{action}", None)
        if handler is None:
            raise ConsoleError("unknown-action", f"{action} is not supported by this backend")
        return handler(agent, params)  # type: ignore[no-any-return]

    def resume_messages(self, agent_id: str) -> list[dict[str, Any]]:
        agent = self.agents.get(agent_id)
        if agent is None:
            return [{"type": "state", "agent_id": agent_id, "state": "logged_out", "reason": None,
                     "since": self._clock(), "endpoint": None, "call_id": None}]
        out = [self._state_message(agent)]
        for call in self.calls.values():  # ringing, connected, or ended and in wrap-up until disposed
            if call.agent_id == agent_id and (call.status != "ended" or call.call_id == agent.call_id):
                out.append({"type": "pop", **call.pop, "call_id": call.call_id})
                out.append(self._call_message(call))
        if agent.preview is not None:
            out.append({"type": "preview", **agent.preview})
        return out

    def supervisor_snapshot(self) -> dict[str, Any]:
        now = self._clock()
        queues = []
        for name, stats in sorted(self.queue_stats.items()):
            by_state: dict[str, int] = {}
            for agent in self.agents.values():
                if name in agent.queues and agent.state != "logged_out":
                    by_state[agent.state] = by_state.get(agent.state, 0) + 1
            queues.append({"name": name, "waiting": 0, "longest_wait": 0.0, "service_level": None,
                           "abandon_rate": None, **stats, "agents": by_state})
        agents = [{"agent_id": a.agent_id, "state": a.state, "reason": a.reason, "since": a.since,
                   "call_id": a.call_id, "queues": list(a.queues)} for a in sorted(self.agents.values(),
                                                                                   key=lambda a: a.agent_id)]
        return {"ts": now, "queues": queues, "agents": agents, "health": self.health}

    def session_changed(self, session: SessionInfo, connected: bool) -> None:
        if connected:
            self.sessions[session.session_id] = session
        else:
            self.sessions.pop(session.session_id, None)

    # ---- call events (what the ACD/AMI side would feed in) ----------------------------------------

    def offer_call(self, agent_id: str, call_id: str, pop: dict[str, Any], queue: str = "") -> None:
        """Offer a call to a ready agent: agent -> reserved, the pop is pushed to that agent only."""
        agent = self._agent(agent_id)
        if call_id in self.calls:
            raise ConsoleError("duplicate-call", f"call {call_id} exists")
        self._system(agent, "offer")
        now = self._clock()
        call = CallRecord(call_id=call_id, agent_id=agent_id, queue=queue, status="ringing", since=now,
                          pop={k: v for k, v in pop.items() if k not in ("type", "v")})
        self.calls[call_id] = call
        agent.call_id = call_id
        self._push_state(agent)
        self._push(agent_id, {"type": "pop", **call.pop, "call_id": call_id})
        self._push(agent_id, self._call_message(call))

    def answer(self, call_id: str) -> None:
        call = self._call(call_id)
        agent = self._agent(call.agent_id)
        self._system(agent, "answer")
        self._set_call(call, "connected")
        self._push_state(agent)

    def caller_hung_up(self, call_id: str) -> None:
        """The far end hung up: a ringing offer is withdrawn (agent ready), a connected call goes to wrap-up."""
        call = self._call(call_id)
        agent = self._agent(call.agent_id)
        self._system(agent, "ended" if agent.state == "on_call" else "abandoned")
        if agent.state == "ready":
            agent.call_id = None
        self._set_call(call, "ended")
        self._push_state(agent)

    def no_answer(self, call_id: str) -> None:
        """Ring-no-answer: the agent goes not-ready (reason "ring-no-answer", as the ACD sets it), the
        call leaves the agent."""
        call = self._call(call_id)
        agent = self._agent(call.agent_id)
        self._system(agent, "no_answer", reason="ring-no-answer")
        agent.call_id = None
        self._set_call(call, "ended")
        self._push_state(agent)

    def offer_preview(self, agent_id: str, lead: dict[str, Any]) -> None:
        """Preview dialling: show a lead to a ready agent, who accepts (we dial) or skips it."""
        agent = self._agent(agent_id)
        if "lead_id" not in lead:
            raise ValueError("lead needs a lead_id")
        self._system(agent, "offer", reason="preview")
        agent.preview = dict(lead)
        self._push_state(agent)
        self._push(agent_id, {"type": "preview", **lead})

    # ---- action handlers ---------------------------------------------------------------------------

    def _transition(self, agent: AgentRecord, action: str, params: dict[str, Any]) -> dict[str, Any]:
        target = TRANSITIONS[action].get(agent.state)
        if target is None:
            raise ConsoleError("not-logged-in" if agent.state == "logged_out" else "illegal-transition",
                               f"cannot {action.replace('_', ' ')} while {agent.state.replace('_', ' ')}",
                               state=agent.state)
        reason = None
        if action == "not_ready":
            reason = params["reason"]
            if reason not in self._settings.not_ready_reasons:
                raise ConsoleError("unknown-reason", f"unknown not-ready reason {reason!r}",
                                   known=list(self._settings.not_ready_reasons))
        if action == "login":
            endpoint = params.get("endpoint") or agent.home_endpoint
            if endpoint.lower() != agent.home_endpoint.lower() and not self._settings.allow_endpoint_override:
                raise ConsoleError("endpoint-fixed", f"your phone is {agent.home_endpoint}; this server does not "
                                   "allow another endpoint", endpoint=agent.home_endpoint)
            agent.endpoint = endpoint
            reason = "login"
        if action == "logout":
            agent.endpoint = None
        self._set_state(agent, target, reason)
        return {"state": agent.state}

    def _call_action(self, agent: AgentRecord, action: str, params: dict[str, Any]) -> dict[str, Any]:
        call = self._current_call(agent, params.get("call_id"))
        target = CALL_ACTIONS[action].get(call.status)
        if target is None:
            raise ConsoleError("illegal-transition", f"cannot {action.replace('_', ' ')} a {call.status} call",
                               call_status=call.status)
        if action == "transfer":
            to, where = params["to"], params["target"]
            if to == "queue" and where not in self.queue_stats:
                raise ConsoleError("unknown-queue", f"unknown queue {where!r}")
            if to == "number" and not where.lstrip("+").isdigit():
                raise ConsoleError("invalid-params", "a transfer number has digits only")
            call.transferred_to = f"{to}:{where}"
        if action == "attended_transfer":
            call.consult = params["number"]
        if action == "attended_complete":
            call.transferred_to = f"number:{call.consult}"
        if action == "attended_cancel":
            call.consult = None
        self._set_call(call, target)
        if target == "ended":
            self._system(agent, "ended")
            self._push_state(agent)
        return {"call_id": call.call_id, "status": call.status}

    def _do_dispose(self, agent: AgentRecord, params: dict[str, Any]) -> dict[str, Any]:
        if agent.state != "wrap_up":
            raise ConsoleError("illegal-transition", f"nothing to dispose while {agent.state.replace('_', ' ')}",
                               state=agent.state)
        if params["call_id"] != agent.call_id:
            raise ConsoleError("unknown-call", "that call is not the one in wrap-up")
        code = self._settings.disposition(params["disposition"])
        if code is None:
            raise ConsoleError("unknown-disposition", f"unknown disposition {params['disposition']!r}",
                               known=[d.code for d in self._settings.dispositions])
        reason = params.get("reason")
        if params["then"] == "not_ready" and reason not in self._settings.not_ready_reasons:
            raise ConsoleError("unknown-reason", "a known not-ready reason is needed after wrap-up")
        callback = params.get("callback")
        if callback is not None:
            self._check_future(callback["at"])
        now = self._clock()
        self.interactions.append({"call_id": agent.call_id, "agent_id": agent.agent_id, "disposition": code.code,
                                  "notes": params["notes"], "ts": now})
        if callback is not None:
            self.callbacks.append({**callback, "agent_id": agent.agent_id, "call_id": agent.call_id})
        self.calls.pop(agent.call_id, None)
        agent.call_id = None
        self._set_state(agent, params["then"], reason if params["then"] == "not_ready" else None)
        return {"state": agent.state, "recorded": True}

    def _do_schedule_callback(self, agent: AgentRecord, params: dict[str, Any]) -> dict[str, Any]:
        if agent.state == "logged_out":
            raise ConsoleError("not-logged-in", "log in first")
        if params.get("call_id") is not None and params["call_id"] != agent.call_id:
            raise ConsoleError("unknown-call", "a callback can name only your current or your last call")
        self._check_future(params["at"])
        entry = {**params, "agent_id": agent.agent_id, "id": f"cb-{len(self.callbacks) + 1}"}
        self.callbacks.append(entry)
        return {"callback_id": entry["id"]}

    def _do_preview_accept(self, agent: AgentRecord, params: dict[str, Any]) -> dict[str, Any]:
        lead = self._preview(agent, params["lead_id"])
        agent.preview = None
        self.lead_results.append({"lead_id": lead["lead_id"], "agent_id": agent.agent_id, "result": "accepted"})
        call_id = f"lead-{lead['lead_id']}"
        now = self._clock()
        call = CallRecord(call_id=call_id, agent_id=agent.agent_id, queue=str(lead.get("campaign", "")),
                          status="connected", since=now, pop={"direction": "outbound", "lead": lead},
                          answered_at=now)
        self.calls[call_id] = call
        agent.call_id = call_id
        self._set_state(agent, "on_call", None)
        self._push(agent.agent_id, {"type": "pop", **call.pop, "call_id": call_id})
        self._push(agent.agent_id, self._call_message(call))
        return {"call_id": call_id}

    def _do_preview_skip(self, agent: AgentRecord, params: dict[str, Any]) -> dict[str, Any]:
        lead = self._preview(agent, params["lead_id"])
        agent.preview = None
        self.lead_results.append({"lead_id": lead["lead_id"], "agent_id": agent.agent_id, "result": "skipped",
                                  "reason": params["reason"]})
        self._set_state(agent, "ready", None)
        return {"state": agent.state}

    def _do_choose_customer(self, agent: AgentRecord, params: dict[str, Any]) -> dict[str, Any]:
        call = self._current_call(agent, params["call_id"])
        matches = call.pop.get("matches") or []
        chosen = next((m for m in matches if str(m.get("customer_id")) == params["customer_id"]), None)
        if chosen is None:
            raise ConsoleError("unknown-customer", "that customer is not one of the matches of this call")
        # Like screenpop's pop_update: the whole pop again, now with the chosen customer.
        call.pop = {**call.pop, "customer": chosen, "new_caller": False, "crm_url": chosen.get("crm_url")}
        self._push(agent.agent_id, {**call.pop, "type": "pop_update", "call_id": call.call_id})
        return {"call_id": call.call_id}

    # ---- internals -------------------------------------------------------------------------------

    def _agent(self, agent_id: str) -> AgentRecord:
        agent = self.agents.get(agent_id)
        if agent is None:
            raise ConsoleError("unknown-agent", f"agent {agent_id} is not configured")
        return agent

    def _call(self, call_id: str) -> CallRecord:
        call = self.calls.get(call_id)
        if call is None:
            raise ConsoleError("unknown-call", f"no call {call_id}")
        return call

    def _current_call(self, agent: AgentRecord, call_id: str | None) -> CallRecord:
        if agent.call_id is None or agent.state not in ("on_call", "reserved"):
            raise ConsoleError("no-active-call", "you have no active call")
        if call_id is not None and call_id != agent.call_id:
            raise ConsoleError("unknown-call", "that call is not yours")
        return self.calls[agent.call_id]

    def _preview(self, agent: AgentRecord, lead_id: str) -> dict[str, Any]:
        if agent.preview is None:
            raise ConsoleError("no-preview", "no lead is being previewed")
        if str(agent.preview["lead_id"]) != lead_id:
            raise ConsoleError("unknown-lead", "that lead is not the one being previewed")
        return agent.preview

    def _check_future(self, at: datetime) -> None:
        if at.timestamp() <= self._clock():
            raise ConsoleError("bad-callback-time", "a callback must be scheduled in the future")

    def _system(self, agent: AgentRecord, event: str, reason: str | None = None) -> None:
        target = SYSTEM[event].get(agent.state)
        if target is None:
            raise ConsoleError("illegal-transition", f"{event} is impossible while {agent.state}", state=agent.state)
        self._set_state(agent, target, reason, push=False)

    def _set_state(self, agent: AgentRecord, state: str, reason: str | None, push: bool = True) -> None:
        agent.state, agent.reason, agent.since = state, reason, self._clock()
        if push:
            self._push_state(agent)

    def _set_call(self, call: CallRecord, status: str) -> None:
        call.history.append(f"{call.status}->{status}")
        now = self._clock()
        if call.status == "held":
            call.held_total += now - call.since
        if status == "connected" and call.answered_at is None:
            call.answered_at = now
        call.status, call.since = status, now
        self._push(call.agent_id, self._call_message(call))

    def _state_message(self, agent: AgentRecord) -> dict[str, Any]:
        return {"type": "state", "agent_id": agent.agent_id, "state": agent.state, "reason": agent.reason,
                "since": agent.since, "endpoint": agent.endpoint or agent.home_endpoint, "call_id": agent.call_id}

    def _call_message(self, call: CallRecord) -> dict[str, Any]:
        return {"type": "call", "call_id": call.call_id, "status": call.status, "since": call.since,
                "consult": call.consult, "queue": call.queue, "answered_at": call.answered_at,
                "held_total": call.held_total}

    def _push_state(self, agent: AgentRecord) -> None:
        self._push(agent.agent_id, self._state_message(agent))
        if self._pusher is not None:
            self._pusher.push_to_supervisors({"type": "wallboard", **self.supervisor_snapshot()})

    def _push(self, agent_id: str, message: dict[str, Any]) -> None:
        if self._pusher is not None:
            self._pusher.push_to_agent(agent_id, message)
