"""The ACD's failure paths, sans-I/O in virtual time: a caller re-entering the holding context while the ACD
already tracks it, a return to hold for a call the ACD never saw (the server restarted during an offer), and
an overflow whose Setvar or Redirect the PBX refused (``CommandFailed``)."""

from __future__ import annotations

from acd.events import (
    AcdWarning,
    AgentStateChanged,
    CallOverflowed,
    CallWaiting,
    QueueCallFinished,
)
from cti.commands import CommandFailed, OfferCall, Redirect, Setvar
from tests.test_acd_support import SERVER, Harness, agent, of_type

CFG = {
    "agents": [agent("a1", {"billing": 5}), agent("a2", {"billing": 5})],
    "queues": [{"name": "billing", "skills": {"billing": 1}, "wrapup": 10, "ring_timeout": 15},
               {"name": "sales", "skills": {"sales": 1}, "wrapup": 0}],
}
OVERFLOW = {
    "agents": [agent("a1", {"x": 1})],
    "queues": [{"name": "q1", "skills": {"x": 1}, "max_wait": 30, "on_max_wait": {"overflow": "q2"}},
               {"name": "q2", "skills": {"x": 1}, "max_wait": 60, "on_max_wait": {"voicemail": "100@default"}},
               {"name": "q3", "skills": {"x": 1}, "max_wait": 5, "on_max_wait": {"callback": "cb"}}],
}


# ---------------------------------------------------------------- re-entry to hold while tracked
def test_a_waiting_caller_queued_again_for_another_queue_moves_there_once() -> None:
    """The IVR sends a caller who is already waiting in billing back through the holding context for sales:
    one ``overflowed`` row (action ``requeued``, target sales) closes the billing wait, and the caller waits in
    sales, once, with the wait counted from now."""
    h = Harness(CFG)
    h.queued("u1", "billing")
    h.now += 20
    out = h.queued("u1", "sales")
    (row,) = of_type(out, QueueCallFinished)
    assert (row.queue, row.outcome, row.overflow_action, row.overflow_target, row.wait) == \
        ("billing", "overflowed", "requeued", "sales", 20)
    assert [w.queue for w in of_type(out, CallWaiting)] == ["sales"]
    assert [c.uniqueid for c in h.acd.waiting_calls("sales", h.now)] == ["u1"]
    assert h.acd.waiting_calls("billing", h.now) == []
    assert h.acd.queue_stats(h.now)["billing"].overflowed == 1


def test_an_offered_caller_back_in_hold_frees_the_ringing_agent() -> None:
    """A caller whose offer is ringing at a1 re-enters cti-hold (CTIQueued again, e.g. a PBX-side transfer):
    the offer is off, a1 is released (not left reserved for a call that is no longer coming) and the caller
    is offered afresh: one agent reserved for it, the other ready."""
    h = Harness(CFG)
    h.ready("a1")
    h.now += 1
    h.ready("a2")
    assert h.offers(h.queued("u1", "billing")) == [("u1", "a1")]
    h.now += 3
    out = h.queued("u1", "billing")  # same queue, but the call was being offered, not waiting: re-entry
    assert [r.outcome for r in of_type(out, QueueCallFinished)] == ["overflowed"]
    ((_, chosen),) = h.offers(out)
    other = "a2" if chosen == "a1" else "a1"
    assert h.state(chosen) == "reserved" and h.state(other) == "ready"
    assert h.acd.explain((SERVER, "u1"))["agent"] == chosen and h.acd.explain((SERVER, "u1"))["offers"] == 1


def test_a_caller_an_agent_sends_back_to_hold_is_requeued_and_the_agent_wraps_up() -> None:
    """The agent talking to u1 transfers it back into the holding context (CTIQueued for sales while the ACD
    has it on call): the talk ends (a1 wraps up, the answered row says where the caller went) and the caller
    waits again as a new queued call."""
    h = Harness(CFG)
    h.ready("a1")
    h.queued("u1", "billing")
    h.now += 2
    h.answer("u1", "a1")
    h.now += 40
    out = h.queued("u1", "sales")
    assert h.state("a1") == "wrap_up"
    assert [w.queue for w in of_type(out, CallWaiting)] == ["sales"]
    h.advance(10)  # wrap-up ends: the answered row is written
    answered = [r for r in h.rows() if r.outcome == "answered"]
    assert len(answered) == 1
    assert (answered[0].agent_id, answered[0].talk, answered[0].overflow_action, answered[0].overflow_target) == \
        ("a1", 40, "transferred", "sales")
    assert h.acd.tracks(SERVER, "u1") and h.acd.explain((SERVER, "u1"))["queue"] == "sales"


def test_a_late_return_from_an_earlier_offer_does_not_withdraw_the_current_one() -> None:
    """a1 lets u1 ring out (DialEnded NOANSWER), the call goes to a2; the dialplan's CTIReturned of a1's offer
    arrives only now: it is about an offer that is over, so a2's offer stands and nothing is recorded twice."""
    h = Harness(CFG)
    h.ready("a1")
    h.now += 1
    h.ready("a2")
    h.queued("u1", "billing")
    h.dial("u1", "a1")
    h.now += 15
    out = h.dial_end("u1", "a1", "NOANSWER")
    assert h.offers(out) == [("u1", "a2")]
    rows_before = len(h.rows())
    assert h.returned("u1", "a1", "NOANSWER", "billing") == []
    assert h.state("a2") == "reserved" and h.acd.explain((SERVER, "u1"))["agent"] == "a2"
    assert len(h.rows()) == rows_before


def test_a_waiting_caller_returned_to_hold_again_is_not_queued_twice() -> None:
    """A CTIReturned for a caller the ACD has waiting (a duplicate, or one from before it was re-queued)
    changes nothing: the caller keeps its place, once."""
    h = Harness(CFG)
    h.queued("u0", "billing")
    h.now += 1
    h.queued("u1", "billing")
    assert h.returned("u1", "a1", "NOANSWER", "billing") == []
    assert [c.uniqueid for c in h.acd.waiting_calls("billing", h.now)] == ["u0", "u1"]


# ---------------------------------------------------------------- unknown call returned after a restart
def test_a_return_to_hold_for_a_call_unknown_after_a_restart_is_queued_and_offered() -> None:
    """The server restarted while u7 rang at an agent; the agent did not answer and the dialplan returned the
    caller to cti-hold. The new ACD never saw u7: it takes the caller as waiting in the queue the channel
    names and offers it to a ready agent, instead of leaving the caller on music on hold forever."""
    h = Harness(CFG)
    h.ready("a2")
    h.channels["u7"] = "PJSIP/trunk-u7"
    out = h.returned("u7", "a1", "NOANSWER", "billing")
    assert [w.queue for w in of_type(out, CallWaiting)] == ["billing"]
    assert h.offers(out) == [("u7", "a2")]
    assert not of_type(out, AcdWarning)
    (offer,) = of_type(out, OfferCall)
    assert (offer.channel, offer.call_id) == ("PJSIP/trunk-u7", "Lu7")


def test_a_return_to_hold_unknown_and_without_a_queue_goes_to_the_default_queue_with_a_warning() -> None:
    """The same after a restart, with the channel's CTI_QUEUE lost: the default queue takes the caller and a
    warning says so (naming the call); the caller is not dropped."""
    h = Harness({**CFG, "default_queue": "billing"})
    h.ready("a1")
    h.channels["u8"] = "PJSIP/trunk-u8"
    out = h.returned("u8", "a2", "CHANUNAVAIL", "")
    (warning,) = of_type(out, AcdWarning)
    assert warning.code == "unknown-queue" and warning.details == {"server": SERVER, "uniqueid": "u8",
                                                                   "used": "billing"}
    assert h.offers(out) == [("u8", "a1")]


def test_a_return_to_hold_after_a_restart_then_the_caller_hangs_up_is_an_abandon() -> None:
    """The re-adopted caller is tracked like any other: hanging up while waiting is an abandoned call with its
    wait counted from the return (the first wait is in the old process's records)."""
    h = Harness(CFG)
    h.channels["u9"] = "PJSIP/trunk-u9"
    h.returned("u9", "a1", "NOANSWER", "billing")
    h.now += 12
    h.hangup("u9")
    (row,) = h.rows()
    assert (row.uniqueid, row.outcome, row.wait, row.queue) == ("u9", "abandoned", 12, "billing")
    assert not h.acd.tracks(SERVER, "u9")


# ---------------------------------------------------------------- failed overflow commands
def test_a_failed_overflow_setvar_is_reported_and_the_call_still_waits_in_the_new_queue() -> None:
    """The Setvar that records the overflow queue on the channel fails: a warning names the command, the
    call and the reason; the ACD keeps the caller waiting in the overflow queue and routes it there."""
    h = Harness(OVERFLOW)
    h.queued("u1", "q1")
    out = h.advance(30)
    (setvar,) = of_type(out, Setvar)
    out = h.event(CommandFailed(setvar.ref, setvar, "AMI connection lost"))
    (warning,) = of_type(out, AcdWarning)
    assert warning.code == "command-failed" and "Setvar failed: AMI connection lost" in warning.message
    assert warning.details["ref"] == setvar.ref
    assert (warning.details["server"], warning.details["channel"]) == (SERVER, "PJSIP/trunk-u1")
    assert [c.uniqueid for c in h.acd.waiting_calls("q2", h.now)] == ["u1"]
    assert h.offers(h.ready("a1")) == [("u1", "a1")]


def test_a_failed_overflow_redirect_to_voicemail_is_reported_with_the_caller() -> None:
    """The Redirect that sends an overdue caller to voicemail fails (the PBX refused it): the ACD has already
    closed that call (row ``overflowed``), so the failure must reach the operator with the caller's channel,
    once per failed command; it does not raise or disturb other calls."""
    h = Harness(OVERFLOW)
    h.queued("u1", "q2")
    h.now += 1
    h.queued("u2", "q2")
    out = h.advance(59)  # u1 overdue, u2 one second short
    (overflowed,) = of_type(out, CallOverflowed)
    assert (overflowed.uniqueid, overflowed.action, overflowed.target) == ("u1", "voicemail", "100@default")
    (redirect,) = of_type(out, Redirect)
    out = h.event(CommandFailed(redirect.ref, redirect, "Redirect failed: extension not found"))
    (warning,) = of_type(out, AcdWarning)
    assert warning.code == "command-failed" and warning.details["channel"] == "PJSIP/trunk-u1"
    assert "Redirect failed" in warning.message
    assert not of_type(out, AgentStateChanged)
    assert [c.uniqueid for c in h.acd.waiting_calls("q2", h.now)] == ["u2"]
    assert h.event(CommandFailed(redirect.ref, redirect, "again")) != []  # each failure is reported


def test_failed_callback_overflows_are_reported_each_with_its_channel() -> None:
    """Two callers overflow to the callback flow at once and both Redirects fail: each failure is reported with
    its own caller's channel and reason, and neither touches the agents."""
    h = Harness(OVERFLOW)
    h.queued("u1", "q3")
    h.queued("u2", "q3")
    out = h.advance(5)
    redirects = of_type(out, Redirect)
    assert [r.channel for r in redirects] == ["PJSIP/trunk-u1", "PJSIP/trunk-u2"]
    h.ready("a1")
    warned = []
    for redirect, reason in zip(redirects, ["Permission denied", "No such channel"], strict=True):
        (warning,) = h.event(CommandFailed(redirect.ref, redirect, reason))
        assert isinstance(warning, AcdWarning)
        warned.append((warning.details["channel"], warning.message))
    assert warned == [("PJSIP/trunk-u1", "Redirect failed: Permission denied"),
                      ("PJSIP/trunk-u2", "Redirect failed: No such channel")]
    assert h.state("a1") == "ready"


def test_a_failure_for_a_command_the_acd_does_not_know_is_ignored() -> None:
    """A CommandFailed with a reference the ACD never issued (another engine's, or from before a restart)
    changes nothing and says nothing."""
    h = Harness(CFG)
    h.ready("a1")
    h.queued("u1", "billing")
    assert h.event(CommandFailed("dial:c/l/1", Redirect("dial:c/l/1", SERVER, "PJSIP/x", "c", "s"), "x")) == []
    assert h.state("a1") == "reserved"
