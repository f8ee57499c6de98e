"""Tests of the simulated PBX core (sim/pbx.py, sim/outgoing.py, sim/apps.py) driven in virtual time."""

from __future__ import annotations

from cti.ami.message import AMIMessage
from sim.channel_requests import REASON_ANSWERED, REASON_BUSY, REASON_FAILURE, REASON_TIMEOUT, OriginateResult
from sim.clock import VirtualClock
from sim.dialplan import DEFAULT_DIALPLAN, dialplan_from_data, load_dialplan
from sim.far_end import FarEnd, FixedFarEnds
from sim.outgoing import OriginateRequest, originate
from sim.pbx import Pbx

CUSTOMERS = {
    "contexts": {
        "customers": {
            "answer": ["Ringing()", "Wait(1)", "Answer()", "Wait(15)", "Hangup()"],
            "busy": ["Busy(5)"],
            "ring": ["Ringing()", "Wait(60)", "Hangup()"],
        },
        "inbound": {"6000": ["Answer()", "Wait(10)", "Hangup()"]},
    }
}


def _pbx(plan: dict | None = None, **kw: object) -> tuple[VirtualClock, Pbx, list[AMIMessage]]:
    clock = VirtualClock()
    pbx = Pbx(clock, dialplan_from_data(plan or CUSTOMERS), **kw)  # type: ignore[arg-type]
    events: list[AMIMessage] = []
    pbx.add_listener(events.append)
    return clock, pbx, events


def _names(events: list[AMIMessage], channel: str) -> list[str]:
    return [e.name for e in events if e.get("Channel") == channel and e.name != "Cdr"]


def test_originate_answered_runs_dialplan_and_hangs_up_both_halves() -> None:
    """An answered Local originate reports Reason 4, runs the target dialplan on ;1, and every
    channel is gone (no leaked timers) once the dialplan ends."""
    clock, pbx, events = _pbx()
    results: list[OriginateResult] = []
    originate(pbx, OriginateRequest("Local/answer@customers", "inbound", "6000", caller_id='"A" <100>')).addCallback(
        results.append)
    clock.run_for(60)
    assert results[0].reason == REASON_ANSWERED
    one = "Local/answer@customers-00000000;1"
    assert _names(events, one)[:3] == ["Newchannel", "Newexten", "NewCallerid"]
    assert _names(events, one)[-2:] == ["SoftHangupRequest", "Hangup"]
    assert pbx.channels == {} and clock.getDelayedCalls() == []
    uids = [e["Uniqueid"] for e in events if e.name == "Newchannel"]
    assert uids == ["1795443000.0", "1795443000.1"]


def test_originate_failures_give_asterisk_reason_codes() -> None:
    """Busy -> 5, ring timeout -> 3 (cause 19 on both halves), missing extension -> 0, unknown tech -> 0."""
    clock, pbx, events = _pbx()
    got: dict[str, int] = {}
    for key, chan, timeout in (("busy", "Local/busy@customers", 20.0), ("ring", "Local/ring@customers", 3.0),
                               ("none", "Local/nope@customers", 5.0), ("tech", "PJSIP/nobody", 5.0)):
        originate(pbx, OriginateRequest(chan, "inbound", "6000", timeout=timeout)).addCallback(
            lambda r, k=key: got.__setitem__(k, r.reason))
        clock.run_for(10)
    assert got == {"busy": REASON_BUSY, "ring": REASON_TIMEOUT, "none": REASON_FAILURE, "tech": REASON_FAILURE}
    hangups = {e["Channel"]: e["Cause"] for e in events if e.name == "Hangup"}
    assert hangups["Local/busy@customers-00000000;2"] == "17"
    assert hangups["Local/ring@customers-00000001;1"] == "19"
    assert hangups["Local/ring@customers-00000001;2"] == "19"
    assert pbx.channels == {}


def test_same_seed_same_events_byte_for_byte() -> None:
    """Two runs with the same seed and inputs produce identical event streams."""
    def run() -> list[list[tuple[str, str]]]:
        clock, pbx, events = _pbx(seed=7)
        originate(pbx, OriginateRequest("Local/answer@customers", "inbound", "6000"))
        clock.run_for(30)
        return [m.headers for m in events]

    assert run() == run()


def test_inbound_call_through_shipped_dialplan_without_agi_goes_to_fallback_hold() -> None:
    """With no FastAGI client, AGISTATUS=FAILURE sends the caller to cti-fallback then cti-hold, which
    emits UserEvent CTIQueued with the fallback queue and starts music on hold."""
    clock = VirtualClock()
    pbx = Pbx(clock, load_dialplan(DEFAULT_DIALPLAN))
    events: list[AMIMessage] = []
    pbx.add_listener(events.append)
    chan = pbx.inbound_call("+15550100", "+15551230001", "Jane")
    clock.run_for(5)
    queued = [e for e in events if e.name == "UserEvent"]
    assert queued and queued[0]["UserEvent"] == "CTIQueued" and queued[0]["Queue"] == "general"
    assert queued[0]["DNIS"] == "+15550100"
    assert chan.name == "PJSIP/trunk-00000000"
    assert [e.name for e in events if e.name.startswith("MusicOnHold")] == ["MusicOnHoldStart"]
    pbx.far_hangup(chan)
    clock.run_for(1)
    assert _names(events, chan.name)[-4:] == ["HangupRequest", "MusicOnHoldStop", "SoftHangupRequest", "Hangup"]


def test_redirect_to_agent_dials_pjsip_and_bridges() -> None:
    """Setvar + Redirect of a held caller into cti-agent dials the agent's PJSIP endpoint with music
    for the caller, bridges on answer, and ends both legs when the agent hangs up."""
    clock = VirtualClock()
    phones = FixedFarEnds({"1001": FarEnd("answer", ring_time=2.0, talk_time=5.0)})
    pbx = Pbx(clock, load_dialplan(DEFAULT_DIALPLAN), far_ends=phones)
    events: list[AMIMessage] = []
    pbx.add_listener(events.append)
    chan = pbx.inbound_call("+15550100", "+15551230001", "Jane")
    clock.run_for(5)
    pbx.set_var(chan, "CTI_AGENT_ENDPOINT", "PJSIP/1001")
    pbx.set_var(chan, "CTI_RING_TIMEOUT", "15")
    pbx.async_goto(chan, "cti-agent", "1001", 1)
    clock.run_for(4)
    agent = "PJSIP/1001-00000001"
    assert "BridgeEnter" in _names(events, agent)
    ends = [e for e in events if e.name == "DialEnd"]
    assert ends[-1]["DialStatus"] == "ANSWER" and ends[-1]["DestChannel"] == agent
    clock.run_for(10)
    assert pbx.channels == {}
    assert _names(events, chan.name)[-2:] == ["SoftHangupRequest", "Hangup"]
    assert clock.getDelayedCalls() == []


def _shipped(far: FixedFarEnds) -> tuple[VirtualClock, Pbx, list[AMIMessage]]:
    clock = VirtualClock()
    pbx = Pbx(clock, load_dialplan(DEFAULT_DIALPLAN), far_ends=far)
    events: list[AMIMessage] = []
    pbx.add_listener(events.append)
    return clock, pbx, events


def _offer(pbx: Pbx, chan: object, endpoint: str, timeout: str = "15") -> None:
    pbx.set_var(chan, "CTI_AGENT_ENDPOINT", endpoint)  # type: ignore[arg-type]
    pbx.set_var(chan, "CTI_RING_TIMEOUT", timeout)  # type: ignore[arg-type]
    pbx.async_goto(chan, "cti-agent", "1001", 1)  # type: ignore[arg-type]


def test_agent_no_answer_returns_caller_to_hold_with_dialstatus() -> None:
    """RONA: the agent's phone rings out; DialEnd NOANSWER, the caller goes to cti-hold,return with
    UserEvent CTIReturned DialStatus NOANSWER and music again; the agent leg is gone."""
    clock, pbx, events = _shipped(FixedFarEnds({"1001": FarEnd("noanswer")}))
    chan = pbx.inbound_call("+15550100", "+15551230001", "Jane")
    clock.run_for(5)
    _offer(pbx, chan, "PJSIP/1001", "4")
    clock.run_for(10)
    assert [e["DialStatus"] for e in events if e.name in ("DialState", "DialEnd")] == ["RINGING", "NOANSWER"]
    returned = [e for e in events if e.name == "UserEvent" and e["UserEvent"] == "CTIReturned"]
    assert returned and returned[0]["DialStatus"] == "NOANSWER" and returned[0]["Agent"] == "1001"
    assert list(pbx.channels) == [chan.name] and chan.moh


def test_busy_and_unavailable_agents() -> None:
    """A busy phone gives DIALSTATUS BUSY; an unregistered one CHANUNAVAIL without DialBegin."""
    for outcome, status in (("busy", "BUSY"), ("unavailable", "CHANUNAVAIL")):
        clock, pbx, events = _shipped(FixedFarEnds({"1001": FarEnd(outcome, ring_time=1.0)}))  # type: ignore[arg-type]
        chan = pbx.inbound_call("+15550100", "+15551230001", "Jane")
        clock.run_for(5)
        _offer(pbx, chan, "PJSIP/1001")
        clock.run_for(5)
        returned = [e for e in events if e.name == "UserEvent" and e["UserEvent"] == "CTIReturned"]
        assert returned[0]["DialStatus"] == status


def test_caller_hangs_up_while_agent_rings_cancels_the_agent_leg() -> None:
    """The caller abandons during the offer: DialEnd CANCEL, both legs gone, no timers left."""
    clock, pbx, events = _shipped(FixedFarEnds({"1001": FarEnd("noanswer")}))
    chan = pbx.inbound_call("+15550100", "+15551230001", "Jane")
    clock.run_for(5)
    _offer(pbx, chan, "PJSIP/1001")
    clock.run_for(2)
    pbx.far_hangup(chan)
    clock.run_for(1)
    assert [e["DialStatus"] for e in events if e.name == "DialEnd"] == ["CANCEL"]
    assert pbx.channels == {} and clock.getDelayedCalls() == []


def test_outbound_originate_into_cti_outbound_runs_amd() -> None:
    """The dialer's Originate to the trunk: a human is AMD HUMAN and queued for the campaign queue; a
    machine is AMD MACHINE and hung up (no message configured)."""
    for number, machine in (("+15557654321", False), ("+15550000000", True)):
        far = FixedFarEnds({}, {number: FarEnd("answer", ring_time=2.0, machine=machine)})
        far.by_endpoint["trunk"] = FarEnd("busy")
        clock, pbx, events = _shipped(far)
        results: list[OriginateResult] = []
        originate(pbx, OriginateRequest(f"PJSIP/{number}@trunk", "cti-outbound", "s", variables=(
            ("CTI_CAMPAIGN", "spring"), ("CTI_LEAD_ID", "42"), ("CTI_CAMPAIGN_QUEUE", "sales")))).addCallback(
            results.append)
        clock.run_for(10)
        assert results[0].reason == REASON_ANSWERED
        amd = [e for e in events if e.name == "UserEvent" and e["UserEvent"] == "CTIAmd"][0]
        assert (amd["Status"], amd["Lead"], amd["Campaign"]) == ("MACHINE" if machine else "HUMAN", "42", "spring")
        queued = [e for e in events if e.name == "UserEvent" and e["UserEvent"] == "CTIQueued"]
        assert bool(queued) != machine
        if queued:
            assert queued[0]["Queue"] == "sales"
        else:
            assert pbx.channels == {}


def test_amd_can_be_wrong_about_the_far_end() -> None:
    """FarEnd.amd_wrong: a person AMD takes for a machine is MACHINE (after a machine's 2.5 s) and hung up; a
    machine taken for a person is HUMAN (after 1.6 s) and queued for the campaign's agents."""
    for number, machine in (("+15557654321", False), ("+15550000000", True)):
        far = FixedFarEnds({}, {number: FarEnd("answer", ring_time=2.0, machine=machine, amd_wrong=True)})
        clock, pbx, events = _shipped(far)
        originate(pbx, OriginateRequest(f"PJSIP/{number}@trunk", "cti-outbound", "s", variables=(
            ("CTI_CAMPAIGN", "spring"), ("CTI_LEAD_ID", "42"), ("CTI_CAMPAIGN_QUEUE", "sales"))))
        clock.run_for(10)
        amd = [e for e in events if e.name == "UserEvent" and e["UserEvent"] == "CTIAmd"]
        assert [e["Status"] for e in amd] == ["HUMAN" if machine else "MACHINE"]
        queued = [e for e in events if e.name == "UserEvent" and e["UserEvent"] == "CTIQueued"]
        assert bool(queued) == machine


def test_amd_off_queues_every_answer_at_once() -> None:
    """CTI_USE_AMD=0 (a campaign with amd: false): cti-outbound skips AMD() as the shipped dialplan does, so
    no CTIAmd and no AMD wait: a person and a machine alike are queued for the campaign's agents as soon as
    they answer; any other value (and none) runs AMD()."""
    for number, machine in (("+15557654321", False), ("+15550000000", True)):
        far = FixedFarEnds({}, {number: FarEnd("answer", ring_time=2.0, machine=machine)})
        clock, pbx, events = _shipped(far)
        originate(pbx, OriginateRequest(f"PJSIP/{number}@trunk", "cti-outbound", "s", variables=(
            ("CTI_CAMPAIGN", "spring"), ("CTI_LEAD_ID", "42"), ("CTI_CAMPAIGN_QUEUE", "sales"),
            ("CTI_USE_AMD", "0"))))
        clock.run_for(2.1)
        assert not [e for e in events if e.name == "UserEvent" and e["UserEvent"] == "CTIAmd"]
        queued = [e for e in events if e.name == "UserEvent" and e["UserEvent"] == "CTIQueued"]
        assert [e["Queue"] for e in queued] == ["sales"]
    far = FixedFarEnds({}, {"+15550000000": FarEnd("answer", ring_time=2.0, machine=True)})
    clock, pbx, events = _shipped(far)
    originate(pbx, OriginateRequest("PJSIP/+15550000000@trunk", "cti-outbound", "s", variables=(
        ("CTI_CAMPAIGN", "spring"), ("CTI_LEAD_ID", "42"), ("CTI_CAMPAIGN_QUEUE", "sales"), ("CTI_USE_AMD", "1"))))
    clock.run_for(10)
    assert [e["Status"] for e in events if e.name == "UserEvent" and e["UserEvent"] == "CTIAmd"] == ["MACHINE"]


def test_blind_transfer_of_a_bridged_call() -> None:
    """BlindTransfer of the agent leg sends the caller to the target extension; the agent leg hangs up."""
    from sim.transfers import blind_transfer

    clock, pbx, events = _shipped(FixedFarEnds({"1001": FarEnd("answer", ring_time=1.0)}))
    chan = pbx.inbound_call("+15550100", "+15551230001", "Jane")
    clock.run_for(5)
    _offer(pbx, chan, "PJSIP/1001")
    clock.run_for(3)
    agent = pbx.find_channel("PJSIP/1001-00000001")
    assert agent is not None and agent.bridge is not None
    blind_transfer(pbx, agent, "cti-hold", "s")
    clock.run_for(2)
    assert agent.dead and not chan.dead and chan.context == "cti-hold"
    assert [e.name for e in events if e.name == "BlindTransfer"] == ["BlindTransfer"]


def _consulting() -> tuple[VirtualClock, Pbx, list[AMIMessage], object, object]:
    """A caller bridged to agent 1001 whose agent started a consultation (Atxfer) with 2002."""
    from sim.transfers import attended_transfer

    phones = FixedFarEnds({"1001": FarEnd("answer", ring_time=1.0), "2002": FarEnd("answer", ring_time=1.0)})
    clock, pbx, events = _shipped(phones)
    chan = pbx.inbound_call("+15550100", "+15551230001", "Jane")
    clock.run_for(5)
    _offer(pbx, chan, "PJSIP/1001")
    clock.run_for(3)
    agent = pbx.find_channel("PJSIP/1001-00000001")
    assert agent is not None
    pbx.set_var(agent, "__CTI_CONSULT_DIAL", "PJSIP/2002")
    attended_transfer(pbx, agent, "cti-consult", "0")
    clock.run_for(4)
    return clock, pbx, events, chan, agent


def test_consult_attended_transfer_joins_caller_and_target() -> None:
    """Atxfer of the agent leg into cti-consult dials __CTI_CONSULT_DIAL; when the agent hangs up the
    caller and the consulted party end up in one bridge (BridgeMerge + AttendedTransfer)."""
    clock, pbx, events, chan, agent = _consulting()
    consulted = pbx.find_channel("PJSIP/2002-00000002")
    assert consulted is not None and consulted.bridge is not None
    pbx.softhangup(agent, 16)  # type: ignore[arg-type]
    clock.run_for(1)
    assert [e.name for e in events if e.name in ("BridgeMerge", "AttendedTransfer")] == [
        "BridgeMerge", "AttendedTransfer"]
    assert chan.bridge is not None  # type: ignore[attr-defined]
    assert chan.bridge is pbx.find_channel("Local/0@cti-consult-00000000;1").bridge  # type: ignore[attr-defined, union-attr]


def test_cancelled_attended_transfer_returns_agent_to_caller() -> None:
    """CancelAtxfer hangs up the consultation leg and puts the agent back with the caller (music stops)."""
    from sim.transfers import cancel_attended_transfer

    clock, pbx, events, chan, agent = _consulting()
    assert chan.moh  # type: ignore[attr-defined]
    cancel_attended_transfer(pbx, agent)  # type: ignore[arg-type]
    clock.run_for(2)
    assert not chan.moh and agent.bridge is not None  # type: ignore[attr-defined]
    assert agent.bridge is chan.bridge  # type: ignore[attr-defined]
    assert pbx.find_channel("PJSIP/2002-00000002") is None
    assert [e.name for e in events if e.name == "AttendedTransfer"] == []


def test_callback_overflow_of_a_call_without_a_dialled_number_reaches_the_ivr() -> None:
    """The ACD's callback overflow sends the caller to cti-inbound with its DNIS as the extension, or ``s``
    when the call has none (an outbound call, one found after a restart): ``s`` exists and runs the flow
    named by CTI_FLOW in cti-ivr (before, cti-inbound had only the DID pattern and the Redirect failed)."""
    clock, pbx, events = _shipped(FixedFarEnds({}))
    chan = pbx.inbound_call("s", "+15551230001", "Jane", context="cti-hold", variables=[("CTI_QUEUE", "sales")])
    clock.run_for(3)
    pbx.set_var(chan, "CTI_FLOW", "cb")
    pbx.async_goto(chan, "cti-inbound", "s", 1)
    clock.run_for(3)
    agi = [e["AppData"] for e in events if e.name == "Newexten" and e.get("Application") == "AGI"
           and e.get("Channel") == chan.name]
    assert agi and agi[-1].endswith("/cb?dnis=")
