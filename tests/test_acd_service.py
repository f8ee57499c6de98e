"""AcdService behaviour, sans-I/O: routing, every offer outcome, timers, requests, stats and explanations."""

from __future__ import annotations

import json

import pytest

from acd.events import (
    AcdWarning,
    AgentNotReadyPending,
    AgentStateChanged,
    CallAbandoned,
    CallOverflowed,
    CallSkillsExpanded,
    CallWaiting,
    OfferNotAnswered,
)
from acd.states import AcdError
from cti.commands import CommandFailed, OfferCall, Redirect, Setvar
from cti.events import CallEnded, CallQueued
from cti.kept import Kept
from tests.test_acd_support import SERVER, Harness, agent, of_type

BASIC = {
    "agents": [agent("a1", {"billing": 5}), agent("a2", {"billing": 8}), agent("a3", {"sales": 5})],
    "queues": [{"name": "billing", "skills": {"billing": 3}, "wrapup": 10, "ring_timeout": 15},
               {"name": "sales", "skills": {"sales": 3}, "priority": 5, "wrapup": 0}],
}


def test_call_goes_to_longest_idle_eligible_agent_with_offer_fields() -> None:
    """An arriving call is offered to the eligible ready agent idle longest; OfferCall carries the dialplan inputs."""
    h = Harness(BASIC)
    h.ready("a2")
    h.now += 5
    h.ready("a1", "a3")
    h.now += 1
    out = h.queued("u1", "billing")
    offer = of_type(out, OfferCall)[0]
    assert (offer.agent_id, offer.endpoint, offer.ring_timeout, offer.queue) == ("a2", "PJSIP/a2", 15, "billing")
    assert (offer.server, offer.uniqueid, offer.channel, offer.call_id) == (SERVER, "u1", "PJSIP/trunk-u1", "Lu1")
    assert h.state("a2") == "reserved"
    assert h.acd.explain((SERVER, "u1"))["last_decision"]["agent"] == "a2"


def test_a_decision_that_cannot_be_kept_for_explanations_does_not_stop_the_offer() -> None:
    def refuse(_: object) -> bytes:
        raise TypeError("not encodable (test)")

    h = Harness(BASIC)
    h.acd._decisions = Kept(10, refuse, json.loads)
    h.ready("a1")
    out = h.queued("u1", "billing")
    assert [o.agent_id for o in of_type(out, OfferCall)] == ["a1"] and h.state("a1") == "reserved"
    (warning,) = [w for w in of_type(out, AcdWarning) if w.code == "decision-not-kept"]
    assert warning.details == {"server": SERVER, "uniqueid": "u1"}
    assert "last_decision" not in h.acd.explain((SERVER, "u1"))


def test_most_skilled_strategy_prefers_higher_level() -> None:
    """most_skilled offers to the agent with the highest level in the queue's skill, not the longest idle."""
    cfg = {**BASIC, "queues": [{"name": "billing", "skills": {"billing": 3}, "strategy": "most_skilled"}]}
    h = Harness(cfg)
    h.ready("a1")
    h.now += 10
    h.ready("a2")
    assert h.offers(h.queued("u1", "billing")) == [("u1", "a2")]


def test_least_talk_time_strategy() -> None:
    """least_talk_time prefers the agent who talked least today even if another was idle longer."""
    cfg = {"agents": [agent("a1", {"s": 1}), agent("a2", {"s": 1})],
           "queues": [{"name": "q", "skills": {"s": 1}, "strategy": "least_talk_time", "wrapup": 0}]}
    h = Harness(cfg)
    h.ready("a1")
    h.queued("u1", "q")
    h.answer("u1", "a1")
    h.now += 100
    h.hangup("u1")  # a1 talked 100 s and is ready again (no wrap-up)
    h.now += 1
    h.ready("a2")  # a2 ready later, no talk
    h.now += 50
    assert h.offers(h.queued("u2", "q")) == [("u2", "a2")]


def test_round_robin_rotates_in_configuration_order() -> None:
    """round_robin offers to the next agent after the last one offered, wrapping around."""
    cfg = {"agents": [agent(f"a{i}", {"s": 1}) for i in range(1, 4)],
           "queues": [{"name": "q", "skills": {"s": 1}, "strategy": "round_robin", "wrapup": 0}]}
    h = Harness(cfg)
    h.ready("a3", "a1", "a2")
    got = []
    for n in range(5):
        out = h.queued(f"u{n}", "q")
        got.append(h.offers(out)[0][1])
        h.answer(f"u{n}", got[-1])
        h.hangup(f"u{n}")
    assert got == ["a1", "a2", "a3", "a1", "a2"]
    decision = json.loads(json.dumps(h.acd.explain((SERVER, "u4"))))["last_decision"]  # JSON-ready
    assert decision["agent"] == "a2" and decision["strategy"] == "round_robin"


def test_agent_ready_takes_highest_priority_then_longest_waiting_across_queues() -> None:
    """An agent in several queues gets the highest-priority caller, and within a priority the oldest one."""
    cfg = {"agents": [agent("a1", {"billing": 5, "sales": 5})],
           "queues": [{"name": "billing", "skills": {"billing": 1}},
                      {"name": "sales", "skills": {"sales": 1}, "priority": 2}]}
    h = Harness(cfg)
    h.queued("b1", "billing")
    h.now += 1
    h.queued("s1", "sales")
    h.now += 1
    h.queued("b2", "billing", priority=5)  # VIP boost beats the sales queue's base priority
    h.now += 1
    h.queued("s2", "sales")
    assert h.offers(h.ready("a1")) == [("b2", "a1")]
    decision = h.acd.explain((SERVER, "b2"))["last_decision"]
    assert decision["trigger"] == "agent-ready" and decision["calls_considered"]


def test_skills_from_ivr_restrict_eligibility_and_bad_tokens_are_reported() -> None:
    """CTI_SKILLS adds requirements (french:4 excludes an agent without it); junk tokens become warnings."""
    cfg = {"agents": [agent("a1", {"billing": 5}), agent("a2", {"billing": 5, "french": 6})],
           "queues": [{"name": "billing", "skills": {"billing": 3}}]}
    h = Harness(cfg)
    h.ready("a1")
    h.now += 1
    h.ready("a2")
    out = h.queued("u1", "billing", skills="french:4 bad:99 ;drop")
    assert h.offers(out) == [("u1", "a2")]
    info = h.acd.explain((SERVER, "u1"))
    assert len(info["input_warnings"]) == 2


def test_expansion_steps_lower_level_then_add_skill_then_add_queue_agents() -> None:
    """Expansion widens eligibility at each step's time: lower levels, another skill, another queue's agents."""
    cfg = {"agents": [agent("low", {"billing": 3}), agent("gen", {"general": 2}), agent("sal", {"sales": 7})],
           "queues": [{"name": "billing", "skills": {"billing": 6},
                       "expansion": [{"after": 10, "lower_min_level_by": 3}, {"after": 20, "add_skill": {"general": 2}},
                                     {"after": 30, "add_queue_agents": "sales"}]},
                      {"name": "sales", "skills": {"sales": 5}}]}
    for agent_id, expected_at in (("low", 10), ("gen", 20), ("sal", 30)):
        h = Harness(cfg)
        h.ready(agent_id)
        start = h.now
        assert h.offers(h.queued("u1", "billing")) == []
        assert h.acd.next_deadline() == start + 10
        while not h.offers():
            deadline = h.acd.next_deadline()
            assert deadline is not None and deadline <= start + 30
            h.advance(deadline - h.now)
        assert h.now - start == expected_at and h.offers() == [("u1", agent_id)]
        assert of_type(h.log, CallSkillsExpanded)


def test_ring_no_answer_sets_not_ready_and_requeues_call_at_head() -> None:
    """NOANSWER: agent not ready (ring-no-answer), the call goes back ahead of later callers and to the next agent."""
    h = Harness(BASIC)
    h.ready("a1")
    h.queued("u1", "billing")
    h.now += 1
    h.queued("u2", "billing")
    h.dial("u1", "a1")
    h.now += 15
    out = h.dial_end("u1", "a1", "NOANSWER")
    assert h.state("a1") == "not_ready"
    assert h.acd.agent_snapshot("a1").reason == "ring-no-answer"
    assert of_type(out, OfferNotAnswered)[0].status == "NOANSWER"
    change = [x for x in of_type(out, AgentStateChanged) if x.agent_id == "a1"][0]
    assert (change.state, change.reason, change.uniqueid, change.queue) == ("not_ready", "ring-no-answer", "u1",
                                                                              "billing")
    assert h.offers(h.ready("a2")) == [("u1", "a2")]
    # the dialplan's CTIReturned for the old offer arrives late and changes nothing
    assert h.returned("u1", "a1", "NOANSWER") == []


def test_chanunavail_reported_only_by_return_event() -> None:
    """An endpoint that cannot be dialled (no Dial events, only CTIReturned CHANUNAVAIL) makes the agent unreachable."""
    h = Harness(BASIC)
    h.ready("a1")
    h.queued("u1", "billing")
    h.returned("u1", "a1", "CHANUNAVAIL", "billing")
    assert h.acd.agent_snapshot("a1").reason == "unreachable"
    assert h.acd.explain((SERVER, "u1"))["status"] == "waiting"


def test_busy_endpoint_goes_not_ready_busy() -> None:
    """DialStatus BUSY puts the agent not ready with reason busy."""
    h = Harness(BASIC)
    h.ready("a1")
    h.queued("u1", "billing")
    h.dial("u1", "a1")
    h.dial_end("u1", "a1", "BUSY")
    assert h.acd.agent_snapshot("a1").reason == "busy"


def test_abandon_while_waiting_records_wait_time() -> None:
    """A caller hanging up while waiting is abandoned with its wait time and a record row."""
    h = Harness(BASIC)
    h.queued("u1", "billing")
    h.now += 42
    out = h.hangup("u1")
    ab = of_type(out, CallAbandoned)[0]
    assert (ab.wait, ab.while_ringing) == (42, False)
    assert [(r.outcome, r.wait) for r in h.rows()] == [("abandoned", 42)]
    assert h.acd.next_deadline() == h.acd._next_midnight(h.now)  # no timer of the call is left


def test_abandon_while_ringing_frees_agent() -> None:
    """Caller hangs up while the agent's phone rings: abandoned while ringing, agent ready again, no wrap-up."""
    h = Harness(BASIC)
    h.ready("a1")
    h.queued("u1", "billing")
    h.dial("u1", "a1")
    h.now += 3
    h.dial_end("u1", "a1", "CANCEL")
    out = h.hangup("u1")
    assert of_type(out, CallAbandoned)[0].while_ringing
    assert h.state("a1") == "ready"
    assert h.rows()[0].outcome == "abandoned" and h.rows()[0].agent_id == "a1"


def test_logout_while_reserved_withdraws_offer_and_requeues() -> None:
    """Logging out during an offer sends the caller back to hold and re-offers on CTIReturned; never two offers."""
    h = Harness(BASIC)
    h.ready("a1")
    h.queued("u1", "billing")
    out = h.request("logout", "a1")
    redirect = of_type(out, Redirect)[0]
    assert (redirect.context, redirect.exten, redirect.channel) == ("cti-hold", "return", "PJSIP/trunk-u1")
    h.ready("a2")
    assert h.offers() == [("u1", "a1")]  # not re-offered before the caller is confirmed back on hold
    h.dial_end("u1", "a1", "CANCEL")
    out = h.returned("u1", "a1", "CANCEL")
    assert h.offers(out) == [("u1", "a2")]


def test_answer_then_talk_then_wrapup_then_ready() -> None:
    """Answered call: on call, caller hangs up, wrap-up for the queue's seconds, then ready; one answered row."""
    h = Harness(BASIC)
    h.ready("a1")
    h.now += 2
    h.queued("u1", "billing")
    h.now += 4
    h.answer("u1", "a1")
    assert h.state("a1") == "on_call"
    h.now += 60
    h.hangup("u1")
    assert h.state("a1") == "wrap_up"
    assert h.acd.next_deadline() == h.now + 10
    h.advance(10)
    assert h.state("a1") == "ready"
    (row,) = h.rows()
    assert (row.outcome, row.wait, row.talk, row.wrapup, row.agent_id) == ("answered", 4, 60, 10, "a1")


def test_agent_leg_hangup_ends_talk_for_transfer() -> None:
    """Agent's leg hangs up first (transfer): the agent goes to wrap-up; the caller's later hangup is ignored."""
    h = Harness(BASIC)
    h.ready("a1")
    h.queued("u1", "billing")
    h.answer("u1", "a1")
    h.now += 30
    h.agent_hangup("u1")
    assert h.state("a1") == "wrap_up"
    assert h.hangup("u1") == []


def test_pending_not_ready_applies_after_wrapup_and_end_wrapup() -> None:
    """not_ready during a call is deferred; end_wrapup then goes to not ready with that reason."""
    h = Harness(BASIC)
    h.ready("a1")
    h.queued("u1", "billing")
    h.answer("u1", "a1")
    out = h.request("not_ready", "a1", "lunch")
    assert of_type(out, AgentNotReadyPending)
    h.hangup("u1")
    h.request("end_wrapup", "a1")
    snap = h.acd.agent_snapshot("a1")
    assert (snap.state, snap.reason) == ("not_ready", "lunch")
    assert h.rows()[0].outcome == "answered"


def test_illegal_request_raises_stable_error_and_changes_nothing() -> None:
    """ready while logged out, an unknown agent and an unknown reason raise AcdError with stable ids."""
    h = Harness(BASIC)
    with pytest.raises(AcdError) as info:
        h.request("ready", "a1")
    assert info.value.error_id == "illegal-transition" and h.state("a1") == "logged_out"
    with pytest.raises(AcdError) as info:
        h.request("ready", "nobody")
    assert info.value.error_id == "unknown-agent"
    h.ready("a1")
    with pytest.raises(AcdError) as info:
        h.request("not_ready", "a1", "ring-no-answer")
    assert info.value.error_id == "unknown-reason" and h.state("a1") == "ready"


def test_refused_request_keeps_timer_outputs_for_the_next_call() -> None:
    """Timer outputs produced before a refused request are returned by the next call, not lost."""
    h = Harness(BASIC)
    h.ready("a1")
    h.queued("u1", "billing")
    h.answer("u1", "a1")
    h.hangup("u1")
    h.now += 11  # wrap-up ended at +10; the request below runs that timer first, then is refused
    with pytest.raises(AcdError):
        h.request("end_wrapup", "a1")
    out = h.advance(0)
    assert any(isinstance(x, AgentStateChanged) and x.state == "ready" for x in out)


def test_endpoint_in_use_and_bad_endpoint_at_login() -> None:
    """Two agents cannot log in on one phone; a malformed endpoint is refused."""
    h = Harness(BASIC)
    h.request("login", "a1", "PJSIP/desk9")
    with pytest.raises(AcdError) as info:
        h.request("login", "a2", "pjsip/DESK9")
    assert info.value.error_id == "endpoint-in-use"
    with pytest.raises(AcdError) as info:
        h.request("login", "a3", "no slash")
    assert info.value.error_id == "bad-endpoint"
    assert h.state("a2") == "logged_out" and h.state("a3") == "logged_out"


def test_device_unavailable_or_in_use_gets_no_offer() -> None:
    """An agent whose phone is UNAVAILABLE or INUSE gets no offer; NOT_INUSE makes it take the waiting call."""
    h = Harness(BASIC)
    h.ready("a1")
    h.device("a1", "UNAVAILABLE")
    assert h.offers(h.queued("u1", "billing")) == []
    assert h.acd.explain((SERVER, "u1"))["eligible_agents"]["ready_phone_busy"]["count"] == 1
    h.device("a1", "INUSE")
    out = h.device("a1", "NOT_INUSE")
    assert h.offers(out) == [("u1", "a1")]


def test_ami_down_parks_calls_and_reconnect_resumes_routing() -> None:
    """While a PBX's AMI is down its callers get no offers; on reconnect they are routed in order."""
    h = Harness(BASIC)
    h.queued("u1", "billing")
    h.ami(False)
    assert h.offers(h.ready("a1")) == []
    assert "down" in h.acd.explain((SERVER, "u1"))["summary"]
    assert h.offers(h.ami(True)) == [("u1", "a1")]


def test_ami_lost_during_offer_watchdog_waits_then_trusts_device_state() -> None:
    """An offer whose events were lost with the AMI link is kept while down, then resolved from device state."""
    h = Harness(BASIC)
    h.ready("a1")
    h.queued("u1", "billing")
    h.ami(False)
    h.advance(30)  # ring timeout + grace passed while down: still reserved
    assert h.state("a1") == "reserved"
    h.ami(True)
    h.device("a1", "INUSE")
    h.advance(10)
    assert h.state("a1") == "on_call"


def test_watchdog_without_any_news_requeues_and_agent_not_ready() -> None:
    """No Dial events at all for ring timeout + grace: the call is re-queued and the agent set not ready."""
    h = Harness(BASIC)
    h.ready("a1")
    h.queued("u1", "billing")
    out = h.advance(25)
    assert of_type(out, OfferNotAnswered)[0].status == "TIMEOUT"
    assert h.acd.agent_snapshot("a1").reason == "offer-failed"


def test_command_failed_no_such_channel_abandons_and_other_failure_requeues() -> None:
    """A failed offer Redirect frees the agent; a vanished channel ends the call, another failure re-queues it."""
    h = Harness(BASIC)
    h.ready("a1")
    offer = of_type(h.queued("u1", "billing"), OfferCall)[0]
    out = h.event(CommandFailed(offer.ref, offer, "AMI connection lost"))
    assert h.state("a1") == "reserved"  # the agent was released and took the re-queued call again
    offer2 = of_type(out, OfferCall)[0]
    out = h.event(CommandFailed(offer2.ref, offer2, "Channel specified does not exist: No such channel"))
    assert of_type(out, CallAbandoned) and h.state("a1") == "ready"


def test_max_wait_overflow_to_queue_voicemail_and_callback() -> None:
    """After max_wait: overflow moves the call to another queue; voicemail and callback Redirect the caller."""
    cfg = {"agents": [agent("a1", {"x": 1})],
           "queues": [{"name": "q1", "skills": {"x": 1}, "max_wait": 30, "on_max_wait": {"overflow": "q2"}},
                      {"name": "q2", "skills": {"x": 1}, "max_wait": 60, "on_max_wait": {"voicemail": "100@default"}},
                      {"name": "q3", "skills": {"x": 1}, "max_wait": 5, "on_max_wait": {"callback": "cb"}}]}
    h = Harness(cfg)
    h.queued("u1", "q1")
    out = h.advance(30)
    assert of_type(out, CallOverflowed)[0].target == "q2"
    assert of_type(out, Setvar)[0].value == "q2"
    assert h.acd.explain((SERVER, "u1"))["queue"] == "q2"
    out = h.advance(60)
    assert [(s.name, s.value) for s in of_type(out, Setvar)] == [("CTI_VOICEMAIL_BOX", "100@default")]
    assert of_type(out, Redirect)[0].context == "cti-voicemail"
    h.queued("u2", "q3")
    out = h.advance(5)
    assert of_type(out, Redirect)[0].context == "cti-inbound"
    assert [r.outcome for r in h.rows()] == ["overflowed"] * 3


def test_unknown_queue_uses_default_and_duplicate_userevent_is_ignored() -> None:
    """A call for an unknown queue goes to default_queue with a warning; a repeated CTIQueued changes nothing."""
    h = Harness({**BASIC, "default_queue": "sales"})
    out = h.queued("u1", "nosuch")
    warning = of_type(out, AcdWarning)[0]
    assert warning.code == "unknown-queue" and warning.details["used"] == "sales"
    assert warning.message == "call queued for unknown queue 'nosuch': routed in 'sales'"  # the log says where
    assert of_type(out, CallWaiting)[0].queue == "sales"
    assert h.queued("u1", "sales") == []
    assert of_type(h.queued("u1", "nosuch"), CallWaiting) == []  # the same unknown-queue event again


def test_hostile_call_fields_are_bounded() -> None:
    """A non-integer priority, a huge skills string and oversized IVR data are cut down and reported."""
    h = Harness(BASIC)
    out = h.event(CallQueued(server=SERVER, ts=h.now, call_id="L9", uniqueid="u9", channel="PJSIP/t-9",
                             queue="billing", skills="x:1 " * 5000, priority="9" * 5000, language="en",
                             caller_num="1" * 500, caller_name="", dnis="",
                             data={f"K{i}": "v" * 9999 for i in range(500)}))
    assert of_type(out, CallWaiting)[0].priority == 0
    info = h.acd.explain((SERVER, "u9"))
    assert any("priority" in w for w in info["input_warnings"])
    assert any("cut" in w for w in info["input_warnings"])
    h.hangup("u9")
    row = h.rows()[0]
    assert len(row.data) == 64 and max(len(v) for v in row.data.values()) == 256 and len(row.caller_num) == 80


def test_call_ended_merged_into_keeps_call_and_final_end_abandons() -> None:
    """CallEnded with merged_into re-keys the call (not an end); the merged call's end then ends it."""
    h = Harness(BASIC)
    h.queued("u1", "billing")
    assert h.event(CallEnded(server=SERVER, ts=h.now, call_id="Lu1", cause=0, cause_txt="", hung_up_by=None,
                             answered=False, duration=1.0, channels=(), up=True, merged_into="M1")) == []
    out = h.event(CallEnded(server=SERVER, ts=h.now, call_id="M1", cause=16, cause_txt="Normal", hung_up_by=None,
                            answered=False, duration=2.0))
    assert of_type(out, CallAbandoned)


def test_queue_stats_service_level_abandon_and_ewt() -> None:
    """queue_stats: one answered within 20 s and one abandoned give 50% service level and 50% abandons."""
    h = Harness(BASIC)
    h.queued("u1", "billing")
    h.now += 5
    h.hangup("u1")
    h.ready("a1")
    h.queued("u2", "billing")
    h.answer("u2", "a1")
    h.queued("u3", "billing")
    h.now += 3
    stats = h.acd.queue_stats(h.now)["billing"]
    assert stats.service_level == 50.0 and stats.abandon_rate == 50.0
    assert stats.waiting == 1 and stats.longest_wait == 3
    assert stats.agents["on_call"] == 1 and stats.ewt is not None
    assert h.acd.waiting_calls("billing", h.now)[0].position == 1


def test_a_preview_holds_the_agent_for_its_lead_and_ends_to_ready_or_not_ready() -> None:
    """reserve_preview: reserved with reason preview, offered nothing else; the call queued with the held
    attempt goes to that agent even though another is ready and idle longer; end_preview frees an agent
    still held (ready, or not ready with the reason) and does nothing for a hold already used or stale."""
    h = Harness(BASIC)
    h.ready("a1", "a2")
    h.now += 5
    h.ready("a3")
    h.request("reserve_preview", "a3", "dial:c/L1/1")
    assert (h.state("a3"), h.acd.agent_snapshot("a3").reason) == ("reserved", "preview")
    assert h.acd.preview_hold("a3") == "dial:c/L1/1"
    with pytest.raises(AcdError, match="cannot preview while reserved"):
        h.request("reserve_preview", "a3", "dial:c/L2/1")
    out = h.queued("u1", "billing", data={"CTI_ATTEMPT": "dial:c/L1/1"})
    assert h.offers(out) == [("u1", "a3")]  # not a2, who has waited longest
    assert h.acd.preview_hold("a3") is None
    assert h.request("end_preview", "a3", "dial:c/L1/1") == []  # the hold was used by the offer
    assert h.state("a3") == "reserved" and h.acd.agent_snapshot("a3").reason == ""

    h.request("reserve_preview", "a1", "dial:c/L2/1")
    out = h.queued("u2", "billing")  # an inbound call: not to the held agent
    assert h.offers(out) == [("u2", "a2")]
    h.acd.end_preview("a1", "dial:c/L2/1", h.now, reason="preview-timeout")
    assert (h.state("a1"), h.acd.agent_snapshot("a1").reason) == ("not_ready", "preview-timeout")
    h.request("ready", "a1")
    h.request("reserve_preview", "a1", "dial:c/L3/1")
    h.request("end_preview", "a1", "dial:c/L3/1")
    assert h.state("a1") == "ready"


def test_stale_timers_are_dropped_so_the_heap_does_not_grow_with_the_traffic() -> None:
    """Every caller of a queue with a max wait and expansion steps leaves timers that go stale when it is
    answered at once; kept until their deadline (10 minutes on), they would grow with the call rate (#19's soak).
    Timers still live (a caller waiting) survive every compaction and fire on time."""
    from acd.service import TIMERS_COMPACT_MIN

    h = Harness({"agents": [agent("a1", {"billing": 5})],
                 "queues": [{"name": "billing", "skills": {"billing": 3}, "wrapup": 0.01, "max_wait": 600,
                             "on_max_wait": {"overflow": "other"},
                             "expansion": [{"after": 120, "lower_min_level_by": 1}]},
                            {"name": "other", "skills": {"billing": 1}}]})
    h.ready("a1")
    sizes = []
    for i in range(30_000):  # 30,000 calls in 10 minutes (50 a second), each answered at once
        uid = f"c{i}"
        offered = h.offers(h.queued(uid, "billing"))
        assert offered == [(uid, "a1")]
        h.answer(uid, "a1")
        h.advance(0.005)
        h.hangup(uid)
        h.advance(0.015)  # the wrap-up ends: a1 ready again
        sizes.append(len(h.acd._timers))
    assert max(sizes) <= 2 * TIMERS_COMPACT_MIN + 10
    # a caller left waiting keeps its max-wait timer through the compactions above and after
    h.request("not_ready", "a1", "break")
    h.queued("w", "billing")
    for i in range(3 * TIMERS_COMPACT_MIN):
        h.acd._push(h.now + 5000 + i, "maxwait", ("none", f"x{i}"), 0)  # stale at once: no such call
    h.advance(599.0)
    assert not of_type(h.log[-50:], CallOverflowed)
    out = h.advance(2.0)
    assert [e.uniqueid for e in of_type(out, CallOverflowed)] == ["w"]
