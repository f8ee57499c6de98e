"""The campaign engine, pure: leads and attempts through AMI-derived events, with time passed in."""

from __future__ import annotations

from typing import Any

from cti.commands import CommandFailed, Originate, Redirect
from cti.events import (
    AmdResult,
    CallEnded,
    CallQueued,
    ChannelHungup,
    DialEnded,
    DialStarted,
    OriginateResult,
    VariableSet,
)
from dialer.campaign import TRANSITIONS, AttemptState, Campaign, Lead
from dialer.events import AttemptAnswered, AttemptFinished, AttemptStarted, DialerWarning
from dialer.settings import CampaignSettings

T0 = 1_767_261_600.0  # 2026-01-01 10:00 UTC
SRV = "pbx"


def make(n: int = 3, **kw: Any) -> Campaign:
    settings = CampaignSettings(name="renewals", queue="sales", leads="demo", **kw)
    c = Campaign(settings, server=SRV, dial_template="PJSIP/{number}@trunk")
    c.load([Lead(f"L{i}", f"+1555000{i:04d}", {"name": f"N{i}"}) for i in range(n)], T0)
    return c


def start(c: Campaign, now: float = T0, idle: int = 1) -> list[Originate]:
    """Pace, persist every started attempt, return the Originates."""
    out = c.pace(now, idle)
    assert all(isinstance(e, AttemptStarted) for e in out)
    origs: list[Originate] = []
    for e in out:
        assert isinstance(e, AttemptStarted)
        origs.extend(o for o in c.persisted(e.ref, now) if isinstance(o, Originate))
    return origs


def bind(c: Campaign, o: Originate, uid: str, now: float) -> list[Any]:
    return c.handle(VariableSet(server=SRV, ts=now, call_id=uid, uniqueid=uid, channel=f"PJSIP/trunk-{uid}",
                                name="CTI_ATTEMPT", value=o.ref), now)


def answered(c: Campaign, o: Originate, uid: str, now: float) -> list[Any]:
    out = bind(c, o, uid, now)
    out += c.handle(OriginateResult(server=SRV, ts=now, action_id=o.ref, success=True, reason=4,
                                    channel=f"PJSIP/trunk-{uid}", uniqueid=uid), now)
    return out


def amd(c: Campaign, uid: str, status: str, now: float, lead: str = "") -> list[Any]:
    return c.handle(AmdResult(server=SRV, ts=now, call_id=uid, uniqueid=uid, channel=f"PJSIP/trunk-{uid}",
                              status=status, cause="", lead_id=lead, campaign="renewals"), now)


def hangup(c: Campaign, uid: str, now: float) -> list[Any]:
    return c.handle(ChannelHungup(server=SRV, ts=now, call_id=uid, uniqueid=uid, channel=f"PJSIP/trunk-{uid}",
                                  cause=16, cause_txt="Normal Clearing"), now)


def person(**kw: Any) -> Campaign:
    """A campaign whose only lead answered at T0+5 (channel u1) and was found HUMAN by AMD at T0+6."""
    c = make(1, **kw)
    (o,) = start(c)
    answered(c, o, "u1", T0 + 5)
    amd(c, "u1", "HUMAN", T0 + 6)
    return c


def agent_dial(c: Campaign, now: float, status: str | None = None) -> list[Any]:
    """The person's channel dials agent 1002 (DialBegin), or that dial ends with ``status`` (DialEnd)."""
    if status is None:
        return c.handle(DialStarted(server=SRV, ts=now, call_id="u1", uniqueid="u1", channel="PJSIP/trunk-u1",
                                    dest_uniqueid="a1", dest_channel="PJSIP/1002-1", dial_string="PJSIP/1002"), now)
    return c.handle(DialEnded(server=SRV, ts=now, call_id="u1", uniqueid="u1", channel="PJSIP/trunk-u1",
                              dest_uniqueid="a1", dest_channel="PJSIP/1002-1", status=status), now)


def finished(out: list[Any]) -> list[AttemptFinished]:
    return [e for e in out if isinstance(e, AttemptFinished)]


def test_originate_carries_the_contract() -> None:
    """The Originate is Async to cti-outbound,s,1 through the trunk template, ActionID = ref, with CTI_CAMPAIGN,
    CTI_LEAD_ID, CTI_CAMPAIGN_QUEUE (and CTI_ATTEMPT to bind the channel), caller ID and timeout."""
    c = make(1, caller_id='"Renewals" <+18005550100>', originate_timeout=25, safe_harbour_message="cti-sorry")
    (o,) = start(c)
    assert (o.server, o.channel, o.context, o.exten, o.priority) == (SRV, "PJSIP/+15550000000@trunk",
                                                                     "cti-outbound", "s", 1)
    assert o.ref.startswith("dial:renewals/L0/1")
    assert o.variables["CTI_CAMPAIGN"] == "renewals"
    assert o.variables["CTI_LEAD_ID"] == "L0"
    assert o.variables["CTI_CAMPAIGN_QUEUE"] == "sales"
    assert o.variables["CTI_ATTEMPT"] == o.ref
    assert o.variables["CTI_SAFE_HARBOUR"] == "cti-sorry"
    assert o.caller_id == '"Renewals" <+18005550100>' and o.timeout_ms == 25000


def test_no_originate_before_the_attempt_is_persisted() -> None:
    """Pacing only announces attempts; the Originate comes from ``persisted``, and a failed write puts the
    lead back untouched (attempt count restored) without dialling."""
    c = make(1)
    (started,) = c.pace(T0, 1)
    assert isinstance(started, AttemptStarted) and started.attempt == 1
    assert c.pace(T0, 5) == []  # the only lead is taken, not re-offered
    out = c.not_persisted(started.ref, T0, "disk full")
    assert [type(e) for e in out] == [DialerWarning]
    assert c.leads["L0"].status == "pending" and c.leads["L0"].attempts == 0
    assert c.persisted(started.ref, T0) == []  # a late confirmation of a withdrawn attempt dials nothing


def test_a_lead_is_never_dialled_twice_at_once() -> None:
    """However many agents are idle, a lead with an open attempt is not picked again; 2 leads -> 2 calls."""
    c = make(2)
    origs = start(c, idle=10)
    assert len(origs) == 2
    assert start(c, T0 + 1, idle=10) == []
    assert len({o.variables["CTI_LEAD_ID"] for o in origs}) == 2


def test_progressive_pacing_counts_in_flight() -> None:
    """With one idle agent and one call ringing, no second call is placed."""
    c = make(5)
    assert len(start(c, idle=1)) == 1
    assert start(c, T0 + 1, idle=1) == []
    assert len(start(c, T0 + 2, idle=3)) == 2


def test_human_connected_to_agent_is_done() -> None:
    """answered -> AMD HUMAN -> queued -> agent rings -> agent answers -> hangup: result connected, lead done,
    the person's wait for the agent measured from the AMD verdict."""
    c = make(1)
    (o,) = start(c)
    answered(c, o, "u1", T0 + 10)
    out = amd(c, "u1", "HUMAN", T0 + 11.6)
    assert [type(e) for e in out] == [AttemptAnswered]
    c.handle(CallQueued(server=SRV, ts=T0 + 11.6, call_id="u1", uniqueid="u1", channel="PJSIP/trunk-u1", queue="sales",
                        skills="", priority=0, language="", caller_num="", caller_name="", dnis="",
                        data={"CTI_ATTEMPT": o.ref}), T0 + 11.6)
    agent_dial(c, T0 + 11.7)
    assert c.tick(T0 + 14) == []  # the agent is ringing: no safe-harbour Redirect
    agent_dial(c, T0 + 13, "ANSWER")
    assert c.in_flight == 0
    (fin,) = finished(hangup(c, "u1", T0 + 100))
    assert (fin.result, fin.lead_status, fin.late) == ("connected", "done", False)
    assert fin.agent_wait is not None and abs(fin.agent_wait - 1.4) < 1e-6
    assert c.leads["L0"].status == "done" and c.attempts == {}


def test_safe_harbour_when_no_agent_in_time() -> None:
    """A person still waiting with no agent ringing ``safe_harbour_after`` seconds after AMD is Redirected to
    cti-safe-harbour,s,1 and counts as abandoned; the lead is retried after retry_after.abandoned."""
    c = person(safe_harbour_after=2.0)
    assert c.next_deadline() == T0 + 8
    assert c.tick(T0 + 7.9) == []
    (r,) = c.tick(T0 + 8)
    assert isinstance(r, Redirect)
    assert (r.channel, r.context, r.exten, r.priority) == ("PJSIP/trunk-u1", "cti-safe-harbour", "s", 1)
    (fin,) = finished(hangup(c, "u1", T0 + 12))
    assert (fin.result, fin.lead_status) == ("abandoned", "pending")
    assert fin.next_at == T0 + 12 + c.settings.retry_after.abandoned
    assert c.abandon_rate() == 1.0


def test_agent_missed_after_window_goes_to_safe_harbour() -> None:
    """An agent rang but did not answer and the window is over: the person goes to safe harbour at once."""
    c = person()
    agent_dial(c, T0 + 6.1)
    assert c.tick(T0 + 8) == []
    out = agent_dial(c, T0 + 9, "NOANSWER")
    assert [type(e) for e in out] == [Redirect]


def test_late_connection_counts_as_abandoned() -> None:
    """A person connected after the window is ``connected`` (lead done) but ``late``, and the abandon rate
    counts it."""
    c = person()
    agent_dial(c, T0 + 6.5)
    agent_dial(c, T0 + 9, "ANSWER")
    (fin,) = finished(hangup(c, "u1", T0 + 60))
    assert (fin.result, fin.late, fin.lead_status) == ("connected", True, "done")
    assert c.abandon_rate() == 1.0


def test_person_hanging_up_in_the_silence_is_an_abandon() -> None:
    """A person (AMD said HUMAN) who hangs up before any agent, even inside the safe-harbour seconds, got
    neither an agent nor a message: ``abandoned`` (the law's reading; the dialer cannot see when the greeting
    ended, the verdict comes after it), in the campaign's rate, and retried after ``retry_after.abandoned``."""
    c = person()
    (fin,) = finished(hangup(c, "u1", T0 + 7))
    assert (fin.result, fin.person, fin.message_in_time) == ("abandoned", True, False)
    assert fin.next_at == T0 + 7 + c.settings.retry_after.abandoned
    assert c.abandon_rate() == 1.0


def test_originate_failures_by_reason_and_retry() -> None:
    """OriginateResponse Failure reasons 5/8/3/0 end the attempt as busy/congestion/noanswer/failed and
    schedule the lead per retry_after; the channel's Hangup arriving first changes nothing."""
    c = make(4, retry_after={"busy": 60, "congestion": 30, "noanswer": 600, "failed": 900})
    origs = start(c, idle=4)
    expect = {5: ("busy", 60), 8: ("congestion", 30), 3: ("noanswer", 600), 0: ("failed", 900)}
    for o, (reason, (result, delay)) in zip(origs, expect.items(), strict=True):
        uid = "u" + o.variables["CTI_LEAD_ID"]
        bind(c, o, uid, T0 + 1)
        assert hangup(c, uid, T0 + 2) == []
        (fin,
         ) = finished(c.handle(OriginateResult(server=SRV, ts=T0 + 2, action_id=o.ref, success=False, reason=reason,
                                               channel=o.channel, uniqueid=None), T0 + 2))
        assert (fin.result, fin.lead_status, fin.next_at) == (result, "pending", T0 + 2 + delay)


def test_busy_lead_is_redialled_when_due_until_attempts_run_out() -> None:
    """A busy lead comes back after retry_after.busy, not before; after max_attempts it is exhausted."""
    c = make(1, max_attempts=2, retry_after={"busy": 60})
    (o,) = start(c)
    c.handle(OriginateResult(server=SRV, ts=T0 + 3, action_id=o.ref, success=False, reason=5, channel=o.channel,
                             uniqueid=None), T0 + 3)
    assert start(c, T0 + 62) == []
    assert c.next_due() == T0 + 63
    (o2,) = start(c, T0 + 63)
    assert o2.ref.endswith("/2")
    (fin,
     ) = finished(c.handle(OriginateResult(server=SRV, ts=T0 + 70, action_id=o2.ref, success=False, reason=5,
                                           channel=o2.channel, uniqueid=None), T0 + 70))
    assert (fin.lead_status, fin.next_at) == ("exhausted", None)
    assert c.next_due() is None


def test_due_retry_goes_before_fresh_leads() -> None:
    """A lead whose retry is due is dialled before leads never tried, so retries are not starved."""
    c = make(5, retry_after={"busy": 60})
    (o,) = start(c)
    c.handle(OriginateResult(server=SRV, ts=T0 + 3, action_id=o.ref, success=False, reason=5, channel=o.channel,
                             uniqueid=None), T0 + 3)
    (again,) = start(c, T0 + 63)
    assert again.variables["CTI_LEAD_ID"] == o.variables["CTI_LEAD_ID"]


def test_machine_waits_for_the_hangup_then_retries() -> None:
    """AMD MACHINE: the attempt stays open (the message plays) until the channel ends; result machine,
    retried after retry_after.machine; no safe-harbour timer for machines."""
    c = make(1, retry_after={"machine": 3600})
    (o,) = start(c)
    answered(c, o, "u1", T0 + 5)
    assert amd(c, "u1", "MACHINE", T0 + 7.5) == []
    assert c.tick(T0 + 30) == [] and c.in_flight == 0
    (fin,) = finished(hangup(c, "u1", T0 + 25))
    assert (fin.result, fin.next_at) == ("machine", T0 + 25 + 3600)


def test_amd_bound_by_lead_when_variable_missed() -> None:
    """Without the VarSet (e.g. missed while reconnecting), the CTIAmd UserEvent's lead and campaign bind the
    channel, and its Hangup ends the attempt."""
    c = make(1)
    (o,) = start(c)
    c.handle(OriginateResult(server=SRV, ts=T0 + 5, action_id=o.ref, success=True, reason=4, channel="PJSIP/trunk-u9",
                             uniqueid=None), T0 + 5)
    amd(c, "u9", "HUMAN", T0 + 6, lead="L0")
    (fin,) = finished(hangup(c, "u9", T0 + 6.5))
    assert fin.result == "abandoned" and fin.uniqueid == "u9"  # a person who got no agent


def test_call_ended_merged_keeps_the_attempt() -> None:
    """A CallEnded that only says the channel moved to another call does not end the attempt."""
    c = person()
    agent_dial(c, T0 + 6.1)
    agent_dial(c, T0 + 7, "ANSWER")
    merged = CallEnded(server=SRV, ts=T0 + 8, call_id="u1", cause=0, cause_txt="Merged into call x", hung_up_by=None,
                       answered=True, duration=3.0, merged_into="x")
    assert finished(c.handle(merged, T0 + 8)) == []
    ended = CallEnded(server=SRV, ts=T0 + 90, call_id="x", cause=16, cause_txt="", hung_up_by=None, answered=True,
                      duration=90.0)
    (fin,) = finished(c.handle(ended, T0 + 90))
    assert fin.result == "connected"


def test_refused_originate_fails_the_attempt() -> None:
    """An Originate that AMI refused (CommandFailed with its ref) ends the attempt as failed."""
    c = make(1)
    (o,) = start(c)
    out = c.handle(CommandFailed(o.ref, o, "AMI not connected"), T0)
    assert finished(out)[0].result == "failed"
    assert c.leads["L0"].status == "pending"


def test_silent_attempt_is_unknown_and_retried_once() -> None:
    """No OriginateResponse at all (AMI lost): after the timeout and a grace the attempt is unknown; the lead
    is retried once more even with no attempts left, and a second unknown exhausts it."""
    c = make(1, max_attempts=1, retry_after={"unknown": 100})
    (o,) = start(c)
    deadline = c.next_deadline()
    assert deadline is not None and deadline > T0 + 30
    out = c.tick(deadline)
    (fin,) = finished(out)
    assert (fin.result, fin.lead_status) == ("unknown", "pending")
    (o2,) = start(c, deadline + 100)
    (fin2,) = finished(c.tick(c.next_deadline() or 0))
    assert (fin2.result, fin2.lead_status) == ("unknown", "exhausted")
    assert o2.ref != o.ref


def test_recovery_resolves_active_leads_as_unknown() -> None:
    """Loading a lead the store left active (a crash mid-attempt) reports that attempt unknown and schedules
    the lead later (not at once: the old call might still be up)."""
    c = Campaign(CampaignSettings(name="renewals", queue="sales", leads="demo", retry_after={"unknown": 900}),
                 server=SRV, dial_template="PJSIP/{number}@trunk")
    out = c.load([Lead("L0", "+15550000000", status="active", attempts=2),
                  Lead("L1", "+15550000001", status="done", attempts=1)], T0)
    (fin,) = finished(out)
    assert (fin.ref, fin.result, fin.lead_status, fin.next_at) == ("dial:renewals/L0/2", "unknown", "pending",
                                                                   T0 + 900)
    assert start(c, T0 + 10, idle=5) == []
    (o,) = start(c, T0 + 900, idle=5)
    assert o.ref == "dial:renewals/L0/3"


def test_calling_window_defers_leads() -> None:
    """Outside the local calling window nothing is dialled; the lead is due when the window opens, in the
    lead's own time zone when it has one."""
    c = make(0, calling_window={"start": "09:00", "end": "17:00"}, timezone="UTC")
    c.load([Lead("NY", "+12125550100", timezone="America/New_York"), Lead("UT", "+445550100")], T0)
    origs = start(c, T0, idle=5)  # 10:00 UTC = 05:00 in New York
    assert [o.variables["CTI_LEAD_ID"] for o in origs] == ["UT"]
    assert c.next_due() == T0 + 4 * 3600  # 09:00 New York = 14:00 UTC


def test_events_of_other_calls_are_ignored() -> None:
    """Inbound calls' events and foreign OriginateResponses change nothing."""
    c = make(1)
    (o,) = start(c)
    assert c.handle(OriginateResult(server=SRV, ts=T0, action_id="acd-7", success=False, reason=5, channel="x",
                                    uniqueid=None), T0) == []
    assert hangup(c, "inbound-1", T0) == []
    assert c.handle(CallQueued(server=SRV, ts=T0, call_id="i", uniqueid="i", channel="PJSIP/trunk-i", queue="sales",
                               skills="", priority=0, language="", caller_num="", caller_name="", dnis="", data={}),
                               T0) == []
    assert c.in_flight == 1


def test_transition_table_is_closed() -> None:
    """Every state the table names as a target is itself in the table, and FINISHED has no way out."""
    targets = {s for row in TRANSITIONS.values() for s in row.values()}
    assert targets <= set(TRANSITIONS)
    assert TRANSITIONS[AttemptState.FINISHED] == {}


def test_lead_fields_for_the_pop() -> None:
    """The screen pop gets the lead's fields with ``phone`` = the number dialled (the channel's caller ID
    is our own); an unknown lead gives nothing."""
    c = make(1)
    assert c.lead_fields("L0") == {"name": "N0", "phone": "+15550000000", "lead_id": "L0"}
    assert c.lead_fields("nope") == {}


def test_acd_offer_holds_off_safe_harbour() -> None:
    """Once the ACD has offered the person to an agent (its Redirect may still be in flight), the safe-harbour
    timer does not Redirect them away; if the offer fails after the window, they go to safe harbour then."""
    from acd.events import CallOffered, OfferNotAnswered

    c = person()
    c.handle(CallOffered(ts=T0 + 7, server=SRV, uniqueid="u1", call_id="u1", queue="sales", agent_id="1002",
                         endpoint="PJSIP/1002", wait=1.0, attempt=1), T0 + 7)
    assert c.tick(T0 + 8) == []
    out = c.handle(OfferNotAnswered(ts=T0 + 9, server=SRV, uniqueid="u1", call_id="u1", queue="sales", agent_id="1002",
                                    status="offer-failed"), T0 + 9)
    assert [type(e) for e in out] == [Redirect]
