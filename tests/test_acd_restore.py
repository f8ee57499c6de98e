"""The restart plan (acd/restore.py) and the RESTORE move of the state table, without I/O."""

from __future__ import annotations

import pytest

from acd.restore import AgentLeg, LastState, plan_restore
from acd.states import AcdError, AgentState, restored_state

NOW = 10_000.0


def _leg(agent: str, status: str = "connected", uid: str = "c1") -> AgentLeg:
    return AgentLeg(server="pbx", agent_id=agent, status=status, caller_uniqueid=uid, caller_channel="PJSIP/t-1",
                    call_id=uid, since=NOW - 30, entered=NOW - 90)


def test_the_pbx_wins_over_the_state_log() -> None:
    """An agent the log shows ready (the on_call row lost in a crash) but the PBX shows talking is on that
    call, not ready: a restored agent is never offered a second call."""
    last = {"a": LastState("a", "ready", "", NOW - 100)}
    [r] = plan_restore(last, [_leg("a")], lambda a, q: 10.0, NOW)
    assert (r.state, r.since, r.leg) == (AgentState.ON_CALL, NOW - 30, _leg("a"))


def test_each_logged_state_comes_back() -> None:
    last = {"r": LastState("r", "ready", "", NOW - 50), "n": LastState("n", "not_ready", "lunch", NOW - 60),
            "o": LastState("o", "reserved", "", NOW - 5), "c": LastState("c", "on_call", "", NOW - 70, "q", "u1"),
            "w": LastState("w", "wrap_up", "", NOW - 4, "q", "u2"), "x": LastState("x", "wrap_up", "", NOW - 40),
            "l": LastState("l", "logged_out", "logout", NOW - 9)}
    plan = {r.agent_id: r for r in plan_restore(last, [_leg("g", "ringing"), _leg("h", "held", "c2")],
                                                lambda a, q: 10.0, NOW)}
    assert {a: r.state.value for a, r in plan.items()} == {
        "r": "ready", "n": "not_ready", "o": "ready", "c": "wrap_up", "w": "wrap_up", "x": "ready",
        "g": "reserved", "h": "on_call"}
    assert plan["n"].reason == "lunch" and plan["r"].since == NOW - 50
    assert (plan["c"].wrapup_left, plan["c"].last_uniqueid, plan["c"].since) == (10.0, "u1", NOW)
    assert (plan["w"].wrapup_left, plan["w"].since) == (6.0, NOW - 4)


def test_only_a_logged_out_agent_is_restored() -> None:
    assert restored_state(AgentState.LOGGED_OUT, AgentState.ON_CALL, "a") == AgentState.ON_CALL
    with pytest.raises(AcdError) as err:
        restored_state(AgentState.READY, AgentState.ON_CALL, "a")
    assert err.value.error_id == "illegal-transition"
    with pytest.raises(AcdError):
        restored_state(AgentState.LOGGED_OUT, AgentState.LOGGED_OUT, "a")
