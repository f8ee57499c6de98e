"""Auto-answer for outbound agents (issue 15, item 2) on the simulated PBX with the shipped dialplan:
[cti-agent] hands the caller's CTI_CAMPAIGN to the pre-dial handler [cti-agent-leg] as its Gosub
argument; on a campaign's call to a PJSIP phone the handler adds the auto-answer headers and the phone
answers at once; an inbound call, or a phone that is not PJSIP, gets no header and rings as before.
The Gosub argument's VarSets follow what a real Asterisk 22.10.1 showed for the same Dial on Local
channels (LOCAL(ARG1), LOCAL(ARGC), the handler's priorities 1, 2, 3 and 6, then ARGC, ARG1 and
GOSUB_RETVAL cleared)."""

from __future__ import annotations

from pathlib import Path

import yaml

from cti.ami.message import AMIMessage
from cti.contract import AGENT_CONTEXT, AGENT_LEG_CONTEXT, CTI_AGENT_ENDPOINT, CTI_CAMPAIGN, CTI_RING_TIMEOUT
from sim.channel import Channel
from sim.clock import VirtualClock
from sim.dialplan import DEFAULT_DIALPLAN, dialplan_from_data
from sim.far_end import FarEnd, FixedFarEnds, asks_auto_answer
from sim.pbx import Pbx

RING = 4.0  # the agent's phone answers after this many seconds when nobody asks it to auto-answer


def _pbx() -> tuple[VirtualClock, Pbx, list[AMIMessage]]:
    data = yaml.safe_load(Path(DEFAULT_DIALPLAN).read_text(encoding="utf-8"))
    # A phone reached through a Local channel (as the lab's): it answers after RING seconds.
    data["contexts"]["lab-phone"] = {"_X.": ["Ringing()", f"Wait({RING:g})", "Answer()", "Wait(600)"]}
    clock = VirtualClock()
    pbx = Pbx(clock, dialplan_from_data(data), far_ends=FixedFarEnds({"1001": FarEnd("answer", ring_time=RING)}))
    events: list[AMIMessage] = []
    pbx.add_listener(events.append)
    return clock, pbx, events


def _offer(pbx: Pbx, clock: VirtualClock, endpoint: str, campaign: str) -> Channel:
    """A caller on hold whose call the ACD offers to agent 1001 at ``endpoint`` (Setvar + Redirect)."""
    caller = pbx.inbound_call("+15550100", "+15551230001", "Jane")
    clock.run_for(5)
    if campaign:
        pbx.set_var(caller, CTI_CAMPAIGN, campaign)
    pbx.set_var(caller, CTI_AGENT_ENDPOINT, endpoint)
    pbx.set_var(caller, CTI_RING_TIMEOUT, "15")
    pbx.async_goto(caller, AGENT_CONTEXT, "1001", 1)
    return caller


def _answered_after(clock: VirtualClock, caller: Channel) -> float:
    start = clock.seconds()
    for _ in range(200):
        if caller.bridge is not None:
            return clock.seconds() - start
        clock.advance(0.05)
    raise AssertionError("the agent never answered")


def test_a_campaign_call_to_a_pjsip_phone_carries_the_headers_and_is_answered_at_once() -> None:
    clock, pbx, _ = _pbx()
    caller = _offer(pbx, clock, "PJSIP/1001", "spring")
    waited = _answered_after(clock, caller)
    agent = pbx.find_channel("PJSIP/1001-00000001")
    assert agent is not None
    assert [name for name, _ in agent.sip_headers] == ["Call-Info", "Alert-Info"]
    assert dict(agent.sip_headers)["Call-Info"] == "<sip:cti-auto-answer>;answer-after=0"
    assert asks_auto_answer(agent.sip_headers)
    assert waited < 0.5
    assert agent.atxfer_hook == "*2"  # the handler's first job still done


def test_an_inbound_call_rings_the_phone_as_before() -> None:
    clock, pbx, _ = _pbx()
    caller = _offer(pbx, clock, "PJSIP/1001", "")
    waited = _answered_after(clock, caller)
    agent = pbx.find_channel("PJSIP/1001-00000001")
    assert agent is not None and agent.sip_headers == []
    assert waited >= RING


def test_a_campaign_call_to_a_local_phone_skips_the_headers_as_a_real_asterisk_does() -> None:
    """The handler's steps and the Gosub argument's VarSets as Asterisk 22.10.1 showed them for
    ``Dial(Local/1001@cti-lab-phone,10,mtb(cti-agent-leg^s^1(demo)))``."""
    clock, pbx, events = _pbx()
    caller = _offer(pbx, clock, "Local/1001@lab-phone", "demo")
    waited = _answered_after(clock, caller)
    assert waited >= RING  # a Local channel is not a phone that reads headers
    seen = []
    for e in events:
        if not e.get("Channel", "").startswith("Local/1001@lab-phone-") or not e.get("Channel", "").endswith(";1"):
            continue
        if e.name == "Newexten" and e.get("Context") == AGENT_LEG_CONTEXT:
            seen.append(("Newexten", e.get("Priority"), e.get("Application")))
        elif e.name == "VarSet" and e.get("Variable") in ("LOCAL(ARG1)", "LOCAL(ARGC)", "ARGC", "ARG1"):
            seen.append(("VarSet", e.get("Variable"), e.get("Value")))
    assert seen == [
        ("VarSet", "LOCAL(ARG1)", "demo"), ("VarSet", "LOCAL(ARGC)", "1"),
        ("Newexten", "1", "Set"), ("Newexten", "2", "GotoIf"), ("Newexten", "3", "GotoIf"),
        ("Newexten", "6", "Return"), ("VarSet", "ARGC", ""), ("VarSet", "ARG1", ""),
    ]


def test_headers_phones_read_as_auto_answer() -> None:
    assert asks_auto_answer([("Call-Info", "<sip:x>;answer-after=0")])
    assert asks_auto_answer([("Alert-Info", "<http://x>;info=alert-autoanswer;delay=0")])
    assert asks_auto_answer([("Alert-Info", "Ring Answer")])
    assert not asks_auto_answer([("Call-Info", "<sip:x>;answer-after=5")])
    assert not asks_auto_answer([("Alert-Info", "<http://x>;info=ring2")])
