"""Hypothesis stateful test of the ACD's routing invariants under random interleavings of calls, agents,
phones, timers, AMI outages and hostile or stale events.

Checked at every offer: the call is not already offered, the agent holds no other call, the agent
meets the skills required at the call's current expansion stage (an oracle written independently of
acd.requirements), and no other waiting call the agent could take ranks before it (priority, then
first come first served). Checked after every step: no ready agent with a usable phone is left idle
while a call it may take waits (on a connected PBX). At the end: every call finishes answered,
abandoned or overflowed, and no timer of a call is left behind.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from acd.events import (
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallOffered,
    CallOverflowed,
    CallWaiting,
    OfferNotAnswered,
    QueueCallFinished,
)
from acd.states import AcdError
from cti.commands import CommandFailed, OfferCall
from cti.events import CallReturnedToHold
from tests.test_acd_support import SERVER, Harness, agent, of_type

AGENTS = {"a1": {"billing": 7}, "a2": {"billing": 4, "fr": 5}, "a3": {"sales": 6}, "a4": {"general": 3},
          "a5": {"billing": 2, "sales": 2}}
QUEUES: list[dict[str, Any]] = [
    {"name": "billing", "skills": {"billing": 6}, "wrapup": 3, "ring_timeout": 10, "strategy": "most_skilled",
     "max_wait": 120, "on_max_wait": {"overflow": "general"},
     "expansion": [{"after": 10, "lower_min_level_by": 2}, {"after": 25, "add_skill": {"general": 3}},
                   {"after": 40, "add_queue_agents": "sales"}]},
    {"name": "sales", "skills": {"sales": 5}, "priority": 2, "wrapup": 0, "ring_timeout": 8,
     "strategy": "round_robin", "expansion": [{"after": 15, "lower_min_level_by": 4}]},
    {"name": "general", "skills": {}, "wrapup": 1, "ring_timeout": 5, "strategy": "least_talk_time",
     "max_wait": 200, "on_max_wait": {"voicemail": "100@default"}},
]
CONFIG = {"agents": [agent(a, s) for a, s in AGENTS.items()], "queues": QUEUES, "offer_grace": 5}
QUEUE_BY_NAME = {q["name"]: q for q in QUEUES}
OK_DEVICE = {"NOT_INUSE", "UNKNOWN"}
FINAL = {"answered", "abandoned", "overflowed"}


def oracle_eligible(agent_skills: dict[str, int], queue: str, call_skills: dict[str, int], waited: float) -> bool:
    """Independent statement of the expansion rules: may this agent take this call after ``waited`` seconds?"""
    q = QUEUE_BY_NAME[queue]
    steps = [s for s in q.get("expansion", []) if waited >= s["after"]]
    lower = sum(s.get("lower_min_level_by", 0) for s in steps)
    need = {**q["skills"], **call_skills}
    sets = [{k: max(1, v - lower) for k, v in need.items()}]
    for s in steps:
        if "add_skill" in s:
            sets.append(s["add_skill"])
        if "add_queue_agents" in s:
            sets.append(QUEUE_BY_NAME[s["add_queue_agents"]]["skills"])
    return any(all(agent_skills.get(k, 0) >= v for k, v in req.items()) for req in sets)


class AcdMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(CONFIG, now=5000.0)
        self.n = 0
        self.calls: dict[str, dict[str, Any]] = {}  # uid -> queue, skills, boost, first, entered, status, agent
        self.agent_call: dict[str, str] = {}
        self.devices: dict[str, str] = {}
        self.down = False

    # ---- feeding outputs through the checks ------------------------------------------------
    def _apply(self, out: list[Any]) -> None:
        for item in out:
            if isinstance(item, CallOffered):
                self._check_offer(item)
            elif isinstance(item, CallAnswered):
                self.calls[item.uniqueid]["status"] = "talking"
            elif isinstance(item, CallWaiting):
                self.calls[item.uniqueid]["status"] = "waiting"
            elif isinstance(item, OfferNotAnswered):
                c = self.calls[item.uniqueid]
                c["status"] = "returning"  # waiting again once the ACD says so (CallWaiting)
                self.agent_call.pop(c["agent"], None)
            elif isinstance(item, CallAbandoned):
                self._end(item.uniqueid)
            elif isinstance(item, CallOverflowed):
                c = self.calls[item.uniqueid]
                if item.action == "overflow":
                    c["queue"], c["entered"] = item.target, item.ts
                else:
                    self._end(item.uniqueid)
            elif isinstance(item, AgentStateChanged) and item.state in ("ready", "not_ready", "logged_out"):
                uid = self.agent_call.pop(item.agent_id, None)
                if uid is not None and self.calls[uid]["status"] == "talking":
                    raise AssertionError(f"agent {item.agent_id} left a call in progress")
            elif isinstance(item, AgentStateChanged) and item.state == "wrap_up":
                uid = self.agent_call.pop(item.agent_id)
                self._end(uid)
            elif isinstance(item, QueueCallFinished):
                assert item.outcome in FINAL

    def _end(self, uid: str) -> None:
        c = self.calls[uid]
        if c["status"] in ("offered", "talking") and self.agent_call.get(c["agent"]) == uid:
            del self.agent_call[c["agent"]]
        c["status"] = "ended"

    def _rank(self, uid: str) -> tuple[int, float, int]:
        c = self.calls[uid]
        return (-(QUEUE_BY_NAME[c["queue"]].get("priority", 0) + c["boost"]), c["first"], c["n"])

    def _check_offer(self, o: CallOffered) -> None:
        c = self.calls[o.uniqueid]
        now = self.h.now
        assert c["status"] == "waiting", f"{o.uniqueid} offered while {c['status']}"
        assert o.agent_id not in self.agent_call, f"{o.agent_id} already has {self.agent_call.get(o.agent_id)}"
        assert not self.down
        assert oracle_eligible(AGENTS[o.agent_id], c["queue"], c["skills"], now - c["entered"]), \
            f"{o.agent_id} not eligible for {o.uniqueid} in {c['queue']} after {now - c['entered']}s"
        for uid, other in self.calls.items():
            if uid != o.uniqueid and other["status"] == "waiting" and \
                    oracle_eligible(AGENTS[o.agent_id], other["queue"], other["skills"], now - other["entered"]):
                assert self._rank(o.uniqueid) < self._rank(uid), \
                    f"{uid} {self._rank(uid)} should go to {o.agent_id} before {o.uniqueid} {self._rank(o.uniqueid)}"
        c["status"], c["agent"] = "offered", o.agent_id
        self.agent_call[o.agent_id] = o.uniqueid

    def _do(self, fn: Any, *args: Any) -> None:
        try:
            out = fn(*args)
        except AcdError as exc:
            assert exc.error_id in ("illegal-transition", "endpoint-in-use")
            return
        self._apply(out)

    def _active(self, *statuses: str) -> list[str]:
        return sorted(u for u, c in self.calls.items() if c["status"] in statuses)

    # ---- rules ------------------------------------------------------------------------------
    @rule(queue=st.sampled_from([q["name"] for q in QUEUES]), boost=st.sampled_from([0, 0, 0, 3]),
          skills=st.sampled_from(["", "", "fr:4", "billing:9 junk:"]))
    def arrive(self, queue: str, boost: int, skills: str) -> None:
        self.n += 1
        uid = f"c{self.n}"
        parsed = {k: int(v) for k, v in (t.split(":") for t in skills.split() if t.split(":")[1])}
        self.calls[uid] = {"queue": queue, "skills": parsed, "boost": boost, "first": self.h.now,
                           "entered": self.h.now, "status": "queued", "agent": "", "n": self.n}
        self._do(self.h.queued, uid, queue, skills, boost)

    @rule(agent_id=st.sampled_from(sorted(AGENTS)))
    def get_ready(self, agent_id: str) -> None:
        if self.h.state(agent_id) == "logged_out":
            self._do(self.h.request, "login", agent_id, None)
        self._do(self.h.request, "ready", agent_id)

    @rule(agent_id=st.sampled_from(sorted(AGENTS)), reason=st.sampled_from(["break", "lunch"]))
    def not_ready(self, agent_id: str, reason: str) -> None:
        self._do(self.h.request, "not_ready", agent_id, reason)

    @rule(agent_id=st.sampled_from(sorted(AGENTS)))
    def logout(self, agent_id: str) -> None:
        self._do(self.h.request, "logout", agent_id)

    @rule(agent_id=st.sampled_from(sorted(AGENTS)))
    def end_wrapup(self, agent_id: str) -> None:
        self._do(self.h.request, "end_wrapup", agent_id)

    @rule(dt=st.sampled_from([0.5, 2.0, 6.0, 12.0, 30.0, 90.0]))
    def advance(self, dt: float) -> None:
        self._apply(self.h.advance(dt))

    @precondition(lambda self: self._active("offered"))
    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        uid = data.draw(st.sampled_from(self._active("offered")))
        self._apply(self.h.answer(uid, self.calls[uid]["agent"]))

    @precondition(lambda self: self._active("offered"))
    @rule(data=st.data(), status=st.sampled_from(["NOANSWER", "BUSY", "CHANUNAVAIL", "CANCEL", "CONGESTION"]),
          via_return=st.booleans())
    def not_answered(self, data: st.DataObject, status: str, via_return: bool) -> None:
        uid = data.draw(st.sampled_from(self._active("offered")))
        agent_id = self.calls[uid]["agent"]
        if via_return:
            self._apply(self.h.returned(uid, agent_id, status, self.calls[uid]["queue"]))
        else:
            self._apply(self.h.dial(uid, agent_id))
            self._apply(self.h.dial_end(uid, agent_id, status))

    @precondition(lambda self: self._active("queued", "waiting", "returning", "offered", "talking"))
    @rule(data=st.data())
    def caller_hangs_up(self, data: st.DataObject) -> None:
        uid = data.draw(st.sampled_from(self._active("queued", "waiting", "returning", "offered", "talking")))
        self._apply(self.h.hangup(uid))

    @precondition(lambda self: self._active("talking"))
    @rule(data=st.data())
    def agent_hangs_up(self, data: st.DataObject) -> None:
        uid = data.draw(st.sampled_from(self._active("talking")))
        self._apply(self.h.agent_hangup(uid))

    @precondition(lambda self: self._active("queued", "waiting", "returning", "offered", "talking"))
    @rule(data=st.data(), agent_id=st.sampled_from(sorted(AGENTS)),
          status=st.sampled_from(["NOANSWER", "ANSWER", "CANCEL"]))
    def stale_events(self, data: st.DataObject, agent_id: str, status: str) -> None:
        """Dial results and CTIReturned naming an agent the call is not offered to change nothing.

        (A CTIReturned for a call the ACD no longer knows re-queues it, by design: not exercised here.)
        """
        uid = data.draw(st.sampled_from(self._active("queued", "waiting", "returning", "offered", "talking")))
        if self.calls[uid]["status"] == "offered" and self.calls[uid]["agent"] == agent_id:
            return
        self._apply(self.h.event(CallReturnedToHold(server=SERVER, ts=self.h.now, call_id=f"L{uid}", uniqueid=uid,
                                                    channel=self.h.channels[uid],
                                                    queue="", agent_id=agent_id, dial_status=status)))
        self._apply(self.h.dial_end(uid, agent_id, status))

    @rule(agent_id=st.sampled_from(sorted(AGENTS)),
          state=st.sampled_from(["NOT_INUSE", "INUSE", "UNAVAILABLE", "RINGING", "NOT_INUSE"]))
    def phone(self, agent_id: str, state: str) -> None:
        self.devices[agent_id] = state
        self._apply(self.h.device(agent_id, state))

    @rule()
    def ami_toggle(self) -> None:
        self.down = not self.down
        self._apply(self.h.ami(not self.down))

    @precondition(lambda self: self._active("offered"))
    @rule(data=st.data(), reason=st.sampled_from(["No such channel", "AMI connection lost"]))
    def offer_command_fails(self, data: st.DataObject, reason: str) -> None:
        uid = data.draw(st.sampled_from(self._active("offered")))
        offers = [o for o in of_type(self.h.log, OfferCall) if o.uniqueid == uid]
        self._apply(self.h.event(CommandFailed(offers[-1].ref, offers[-1], reason)))

    # ---- invariants -------------------------------------------------------------------------
    @invariant()
    def no_idle_agent_beside_a_call_it_may_take(self) -> None:
        if self.down:
            return
        now = self.h.now
        for agent_id, skills in AGENTS.items():
            snap = self.h.acd.agent_snapshot(agent_id)
            phone_ok = self.devices.get(agent_id, "UNKNOWN") in OK_DEVICE
            assert snap.available == (snap.state == "ready" and phone_ok)
            if not snap.available:
                continue
            for uid, c in self.calls.items():
                assert not (c["status"] == "waiting" and self.h.acd.explain((SERVER, uid))["status"] == "waiting"
                            and oracle_eligible(skills, c["queue"], c["skills"], now - c["entered"])), \
                    f"{agent_id} idle while {uid} waits"

    @invariant()
    def agents_hold_at_most_one_call(self) -> None:
        holders: dict[str, str] = {}
        for agent_id in AGENTS:
            call = self.h.acd.agent_snapshot(agent_id).call
            if call is not None:
                assert call.uniqueid not in holders, f"{call.uniqueid} held by two agents"
                holders[call.uniqueid] = agent_id

    def teardown(self) -> None:
        if self.down:
            self.down = False
            self._apply(self.h.ami(True))
        for uid in self._active("queued", "waiting", "returning", "offered", "talking"):
            self._apply(self.h.hangup(uid))
        self._apply(self.h.advance(3600.0))
        for uid in list(self.calls):  # recalled calls whose caller we never hung up above
            self._apply(self.h.hangup(uid))
        rows: dict[str, list[str]] = {}
        for row in self.h.rows():
            rows.setdefault(row.uniqueid, []).append(row.outcome)
        for uid in self.calls:
            outcomes = rows.get(uid, [])
            assert outcomes and outcomes[-1] in FINAL and all(o == "overflowed" for o in outcomes[:-1]), \
                f"{uid} ended with {outcomes}"
        acd = self.h.acd
        assert not acd._calls and not acd._parked and len(acd.router.calls) == 0
        assert acd.next_deadline() == acd._next_midnight(self.h.now)


AcdMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=40, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow])
TestAcdInvariants = AcdMachine.TestCase
