"""The ACD's supervisor requests, sans-I/O: skills changed live (every router index follows: the walk, the
vectorised pass, the anchors, the queues an agent works), forced not ready and log-out through the state
table (after the call's work when on a call; the agent cannot cancel them)."""

from __future__ import annotations

import pytest

from acd.events import AgentNotReadyPending, AgentStateChanged
from acd.states import AcdError
from cti.commands import Redirect
from tests.test_acd_support import Harness, agent, of_type

CFG = {
    "agents": [agent("a1", {"sales": 5}), agent("a2", {"sales": 2}), agent("a3", {"sales": 4})],
    "queues": [{"name": "sales", "skills": {"sales": 1}, "wrapup": 10},
               {"name": "french", "skills": {"french": 3}, "wrapup": 0},
               {"name": "talk", "skills": {"sales": 3}, "strategy": "least_talk_time", "wrapup": 0}],
}


def test_a_new_skill_takes_a_waiting_call_at_once_and_the_indexes_follow() -> None:
    h = Harness(CFG)
    h.ready("a1", "a2")
    assert h.offers(h.queued("u1", "french")) == []
    assert h.acd.eligible_agents("french") == ()
    out = h.request("set_skills", "a2", {"sales": 2, "french": 4})
    assert h.offers(out) == [("u1", "a2")]  # the waiting call, in the same step
    snap = h.acd.agent_snapshot("a2")
    assert dict(snap.skills) == {"sales": 2, "french": 4} and snap.queues == ("sales", "french")
    assert h.acd.eligible_agents("french") == ("a2",)
    assert h.acd.queue_stats(h.now)["french"].agents["reserved"] == 1

    # the vectorised pass (least_talk_time) sees a raised level; a lowered one is no longer eligible
    h.request("set_skills", "a1", {"sales": 2})
    h.ready("a3")
    assert h.offers(h.queued("u2", "talk")) == [("u2", "a3")]
    h.request("set_skills", "a1", {"sales": 9})
    assert h.acd.eligible_agents("talk") == ("a1", "a3")
    assert h.acd.agent_snapshot("a1").state == "ready"  # nothing waits for it: back in the index, still idle
    assert h.offers(h.queued("u3", "talk")) == [("u3", "a1")]


def test_skills_of_a_busy_agent_change_without_an_offer_and_bad_levels_change_nothing() -> None:
    h = Harness(CFG)
    h.ready("a1")
    h.queued("u1", "sales")
    h.answer("u1", "a1")
    assert h.offers(h.request("set_skills", "a1", {"french": 5})) == []
    assert h.acd.agent_snapshot("a1").queues == ("french",)
    with pytest.raises(AcdError) as err:
        h.request("set_skills", "a1", {"french": 11})
    assert err.value.error_id == "bad-skill" and dict(h.acd.agent_snapshot("a1").skills) == {"french": 5}


def test_forced_not_ready_waits_for_the_wrap_up_and_wins_over_the_agent() -> None:
    h = Harness(CFG)
    h.ready("a1")
    h.queued("u1", "sales")
    h.answer("u1", "a1")
    out = h.request("force_not_ready", "a1", "meeting", "sup")
    assert of_type(out, AgentNotReadyPending)[0].reason == "meeting" and h.state("a1") == "on_call"
    h.request("not_ready", "a1", "lunch")  # the agent's own reason does not replace it
    h.hangup("u1")
    assert h.state("a1") == "wrap_up"
    out = h.request("ready", "a1")  # the agent's "ready" ends the wrap-up into the forced not ready
    changed = of_type(out, AgentStateChanged)[-1]
    assert (changed.state, changed.reason) == ("not_ready", "meeting")
    assert h.acd.agent_snapshot("a1").by == "sup"
    h.request("ready", "a1")
    assert h.acd.agent_snapshot("a1").by == ""  # the agent's own change: no supervisor named
    with pytest.raises(AcdError) as err:
        h.request("force_not_ready", "a1", "nap", "sup")
    assert err.value.error_id == "unknown-reason"


def test_forced_log_out_withdraws_a_ringing_offer_and_waits_for_a_call() -> None:
    h = Harness(CFG)
    h.ready("a1", "a2")
    assert h.offers(h.queued("u1", "sales")) == [("u1", "a1")]
    out = h.request("force_logout", "a1", "sup")
    assert h.state("a1") == "logged_out" and of_type(out, Redirect)  # the caller goes back to the queue
    h.queued("u2", "sales")
    h.answer("u2", "a2")
    assert h.request("force_logout", "a2", "sup") == [] and h.state("a2") == "on_call"
    h.hangup("u2")
    assert h.state("a2") == "wrap_up"
    h.advance(10)  # the wrap-up ends on its own
    snap = h.acd.agent_snapshot("a2")
    assert (snap.state, snap.by) == ("logged_out", "sup")


def test_a_forced_not_ready_pending_on_a_ringing_offer_is_met_by_ring_no_answer() -> None:
    """Ringing when forced: a ring-no-answer makes the agent not ready anyway; nothing stale is left pending
    (the agent's own not ready afterwards is its own)."""
    h = Harness(CFG)
    h.ready("a1")
    h.queued("u1", "sales")
    h.request("force_not_ready", "a1", "meeting", "sup")
    assert h.acd.agent_snapshot("a1").pending_by == "sup"
    h.dial("u1", "a1")
    h.dial_end("u1", "a1", "NOANSWER")
    snap = h.acd.agent_snapshot("a1")
    assert (snap.state, snap.reason, snap.pending_by) == ("not_ready", "ring-no-answer", "")
    h.request("ready", "a1")  # offered the same caller again (reserved): the agent's own not ready is pending
    h.request("not_ready", "a1", "lunch")
    snap = h.acd.agent_snapshot("a1")
    assert (snap.state, snap.pending_not_ready, snap.pending_by) == ("reserved", "lunch", "")
