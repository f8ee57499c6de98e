"""The simulated PBX's attended transfer behaves as Asterisk 22.10.1 was seen to (tests/lab, issue 11):
Dial option ``t`` gives the transfer features to the called party (the agent) and ``T`` to the caller;
the AMI ``Atxfer`` only queues the atxfer code and its ``Exten`` as DTMF, so the extension must be
digits that exist in the transfer context; the atxfer code is empty unless configured, and a code set
after the channel joined its bridge is not heard. Driven through the AMI server in virtual time."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cti.ami.message import AMIMessage
from sim.ami_server import AMIServer
from sim.clock import VirtualClock
from sim.dialplan import DEFAULT_DIALPLAN, Dialplan, dialplan_from_data
from sim.far_end import FarEnd, FixedFarEnds
from sim.pbx import Pbx
from sim.transfers import INVALID_TRANSFER_SECONDS
from tests.test_sim_ami_server import Conn

SHIPPED_DIAL = "Dial(${CTI_AGENT_ENDPOINT},${CTI_RING_TIMEOUT},mtb(cti-agent-leg^s^1(${CTI_CAMPAIGN})))"
# From the Atxfer to the consulted target talking: the code's digits are read (0.26 s), the one-digit
# extension is dialled after transferdigittimeout (3 s), the target answers in 1 s.
CONSULT_TALKING = 5


def _shipped_plan(dial: str = SHIPPED_DIAL) -> Dialplan:
    """The shipped dialplan, with [cti-agent]'s Dial replaced (to rebuild older, broken ones)."""
    text = Path(DEFAULT_DIALPLAN).read_text(encoding="utf-8")
    assert SHIPPED_DIAL in text
    return dialplan_from_data(yaml.safe_load(text.replace(SHIPPED_DIAL, dial)))


def _call_with_agent(plan: Dialplan) -> tuple[VirtualClock, Pbx, Conn, list[AMIMessage], object, object]:
    """A caller in [cti-agent] whose agent 1001 answered; consultation target 2002 answers in 1 s."""
    clock = VirtualClock()
    phones = FixedFarEnds({"1001": FarEnd("answer", ring_time=1.0), "2002": FarEnd("answer", ring_time=1.0)})
    pbx = Pbx(clock, plan, far_ends=phones)
    events: list[AMIMessage] = []
    pbx.add_listener(events.append)
    conn = Conn(AMIServer(pbx, {"cti": "cti-secret"}))
    conn.send("Login", ActionID="l", Username="cti", Secret="cti-secret", Events="off")
    caller = pbx.inbound_call("+15550100", "+15551230001", "Jane")
    clock.run_for(5)
    pbx.set_var(caller, "CTI_AGENT_ENDPOINT", "PJSIP/1001")
    pbx.set_var(caller, "CTI_RING_TIMEOUT", "15")
    pbx.async_goto(caller, "cti-agent", "1001", 1)
    clock.run_for(3)
    agent = pbx.find_channel("PJSIP/1001-00000001")
    assert agent is not None and agent.bridge is not None and agent.bridge is caller.bridge
    return clock, pbx, conn, events, caller, agent


def _atxfer(conn: Conn, agent: object, exten: str = "0") -> AMIMessage:
    name = agent.name  # type: ignore[attr-defined]
    conn.send("Setvar", ActionID="v", Channel=name, Variable="__CTI_CONSULT_DIAL", Value="PJSIP/2002")
    conn.send("Atxfer", ActionID="x", Channel=name, Context="cti-consult", Exten=exten)
    return conn.responses()[-1]


def test_shipped_dialplan_gives_the_agent_leg_the_transfer_features_and_the_caller_none() -> None:
    """[cti-agent] dials with ``t`` and the pre-dial handler [cti-agent-leg] sets FEATUREMAP(atxfer) on
    the agent's leg: the agent's leg has the atxfer hook, the caller none."""
    _, pbx, _, _, caller, agent = _call_with_agent(_shipped_plan())
    assert agent.atxfer_hook == "*2" and agent.xfer_features  # type: ignore[attr-defined]
    assert caller.atxfer_hook == "" and not caller.xfer_features  # type: ignore[attr-defined]
    assert pbx.read_function(agent, "FEATUREMAP", "atxfer") == "*2"  # type: ignore[arg-type]


def test_atxfer_of_the_agent_leg_consults_with_music_for_the_caller_and_completes_on_hangup() -> None:
    """Atxfer Exten 0 into cti-consult: the caller hears music while the target rings and talks; the
    agent's leg hanging up joins caller and target (BridgeMerge + AttendedTransfer)."""
    clock, pbx, conn, events, caller, agent = _call_with_agent(_shipped_plan())
    reply = _atxfer(conn, agent)
    assert (reply["Response"], reply["Message"]) == ("Success", "Atxfer successfully queued")
    clock.run_for(CONSULT_TALKING)
    assert caller.moh  # type: ignore[attr-defined]
    consult = pbx.find_channel("Local/0@cti-consult-00000000;1")
    target = pbx.find_channel("PJSIP/2002-00000002")
    assert consult is not None and target is not None and target.bridge is not None
    assert consult.bridge is agent.bridge and agent.bridge is not caller.bridge  # type: ignore[attr-defined]
    pbx.softhangup(agent, 16)  # type: ignore[arg-type]
    clock.run_for(1)
    assert [e.name for e in events if e.name in ("BridgeMerge", "AttendedTransfer")] == [
        "BridgeMerge", "AttendedTransfer"]
    assert not caller.moh and caller.bridge is pbx.find_channel("Local/0@cti-consult-00000000;1").bridge  # type: ignore[attr-defined, union-attr]


def test_with_dial_option_T_the_atxfer_digits_reach_the_caller_and_nothing_starts() -> None:
    """The old ``Dial(...,mT)`` gave the features to the caller: Atxfer of the agent's leg is accepted,
    but its digits are plain DTMF passed to the caller; no consultation, no hold, no music."""
    plan = _shipped_plan("Dial(${CTI_AGENT_ENDPOINT},${CTI_RING_TIMEOUT},mTb(cti-agent-leg^s^1))")
    clock, pbx, conn, events, caller, agent = _call_with_agent(plan)
    assert caller.xfer_features and not agent.xfer_features  # type: ignore[attr-defined]
    assert _atxfer(conn, agent)["Response"] == "Success"
    clock.run_for(5)
    sent = [e["Digit"] for e in events if e.name == "DTMFEnd" and e.get("Channel") == caller.name]  # type: ignore[attr-defined]
    assert sent == ["*", "2", "0"]
    assert not any(e.name in ("Hold", "MusicOnHoldStart") for e in events[-20:])
    assert pbx.find_channel("Local/0@cti-consult-00000000;1") is None
    assert agent.bridge is caller.bridge  # type: ignore[attr-defined]


def test_atxfer_without_an_atxfer_code_is_refused() -> None:
    """Asterisk's default atxfer code is empty: without the pre-dial handler the action answers
    "No attended transfer feature code found"."""
    plan = _shipped_plan("Dial(${CTI_AGENT_ENDPOINT},${CTI_RING_TIMEOUT},mt)")
    _, _, conn, _, _, agent = _call_with_agent(plan)
    reply = _atxfer(conn, agent)
    assert (reply["Response"], reply["Message"]) == ("Error", "No attended transfer feature code found")


def test_a_code_set_after_the_bridge_formed_is_not_heard() -> None:
    """FEATUREMAP(atxfer) set by AMI once the agent is talking does not install the hook: digits pass."""
    plan = _shipped_plan("Dial(${CTI_AGENT_ENDPOINT},${CTI_RING_TIMEOUT},mt)")
    clock, pbx, conn, _, caller, agent = _call_with_agent(plan)
    conn.send("Setvar", ActionID="f", Channel=agent.name, Variable="FEATUREMAP(atxfer)", Value="*2")  # type: ignore[attr-defined]
    assert _atxfer(conn, agent)["Response"] == "Success"
    clock.run_for(5)
    assert pbx.find_channel("Local/0@cti-consult-00000000;1") is None and not caller.moh  # type: ignore[attr-defined]


def test_exten_s_never_dials_and_the_agent_is_back_with_the_caller_after_the_retries() -> None:
    """``Exten: s`` is played as DTMF and never matches: nothing is dialled; after the invalid-transfer
    retries (19.8 s on Asterisk 22.10.1) the agent is back with the caller and the music stops."""
    clock, pbx, conn, events, caller, agent = _call_with_agent(_shipped_plan())
    assert _atxfer(conn, agent, exten="s")["Response"] == "Success"
    clock.run_for(3)
    assert caller.moh and pbx.find_channel("Local/s@cti-consult-00000000;1") is None  # type: ignore[attr-defined]
    clock.run_for(INVALID_TRANSFER_SECONDS)
    assert not caller.moh and agent.bridge is caller.bridge  # type: ignore[attr-defined]
    assert [e.name for e in events if e.name in ("Hold", "Unhold")] == ["Hold", "Unhold"]


def test_target_hanging_up_returns_the_agent_to_the_caller() -> None:
    """In consultation, the target hanging up puts the agent back with the caller (music stops)."""
    clock, pbx, conn, _, caller, agent = _call_with_agent(_shipped_plan())
    _atxfer(conn, agent)
    clock.run_for(CONSULT_TALKING)
    target = pbx.find_channel("PJSIP/2002-00000002")
    assert target is not None
    pbx.far_hangup(target)
    clock.run_for(2)
    assert not caller.moh and agent.bridge is caller.bridge and not agent.dead  # type: ignore[attr-defined]


def test_cancel_without_a_transfer_is_accepted_and_changes_nothing() -> None:
    """CancelAtxfer answers Success whatever the channel is doing (it only queues the abort code)."""
    clock, _, conn, _, caller, agent = _call_with_agent(_shipped_plan())
    conn.send("CancelAtxfer", ActionID="c", Channel=agent.name)  # type: ignore[attr-defined]
    assert conn.responses()[-1]["Message"] == "CancelAtxfer successfully queued"
    clock.run_for(1)
    assert agent.bridge is caller.bridge  # type: ignore[attr-defined]


def test_hold_then_retrieve_keeps_the_agent_legs_transfer_features() -> None:
    """Console hold (Redirect of both legs) then retrieve (AMI Bridge): the agent's leg keeps the
    features Dial gave it, so an attended transfer still starts, as on the real PBX."""
    clock, pbx, conn, _, caller, agent = _call_with_agent(_shipped_plan())
    conn.send("Redirect", ActionID="h", Channel=caller.name, Context="cti-onhold", Exten="s", Priority="1",  # type: ignore[attr-defined]
              ExtraChannel=agent.name, ExtraContext="cti-agent-onhold", ExtraExten="s", ExtraPriority="1")  # type: ignore[attr-defined]
    clock.run_for(1)
    conn.send("Bridge", ActionID="b", Channel1=agent.name, Channel2=caller.name, Tone="no")  # type: ignore[attr-defined]
    clock.run_for(1)
    assert agent.bridge is caller.bridge  # type: ignore[attr-defined]
    assert _atxfer(conn, agent)["Response"] == "Success"
    clock.run_for(CONSULT_TALKING)
    assert caller.moh and pbx.find_channel("PJSIP/2002-00000002") is not None  # type: ignore[attr-defined]


def test_the_consultation_starts_as_on_the_reference_pbx_bridged_while_the_target_rings() -> None:
    """As the lab's recording of Asterisk 22.10.1 shows: Hold 0.26 s after the Atxfer is answered (the code's
    DTMF is read by the bridge), the one-digit extension dialled 3 s later (grab_transfer waits the digit
    timeout after the digit that interrupted its announcement), and the consultation channel and then the
    agent are in the consultation bridge at once, while the target still rings (DialState RINGING);
    DialEnd ANSWER when it answers. The consultation channel gets TRANSFERERNAME and ATTENDEDTRANSFER,
    then what it inherits from the agent's leg in that leg's list order."""
    clock, pbx, conn, events, caller, agent = _call_with_agent(_shipped_plan())
    times: dict[str, float] = {}
    pbx.add_listener(lambda m: times.setdefault(f"{m.name}:{m.get('Channel') or m.get('DestChannel')}",
                                                clock.seconds()))
    start = clock.seconds()
    _atxfer(conn, agent)
    clock.run_for(3.5)
    consult = pbx.find_channel("Local/0@cti-consult-00000000;1")
    assert consult is not None and consult.state != 6 and consult.bridge is agent.bridge  # type: ignore[attr-defined]
    assert times[f"Hold:{agent.name}"] - start == pytest.approx(0.26)  # type: ignore[attr-defined]
    assert times[f"Newchannel:{consult.name}"] - times[f"Hold:{agent.name}"] == pytest.approx(3.0)  # type: ignore[attr-defined]
    clock.run_for(2)
    dial = [(e.name, e.get("DialStatus")) for e in events if e.get("DestChannel") == consult.name]
    assert dial == [("DialState", "RINGING"), ("DialEnd", "ANSWER")]
    assert consult.state == 6 and consult.bridge is agent.bridge  # type: ignore[attr-defined]
    varsets = [e.get("Variable") for e in events if e.name == "VarSet" and e.get("Channel") == consult.name]
    assert varsets[:4] == ["TRANSFERERNAME", "ATTENDEDTRANSFER", "__CTI_CONSULT_DIAL", "__CTI_DNIS"]
