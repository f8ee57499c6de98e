"""Tests of the people wired to the PBX (sim/traffic.py), the FastAGI path of the shipped dialplan and
the runtime wiring (centre/sim_pbx.py), all in virtual time with in-memory connections."""

from __future__ import annotations

from twisted.internet.protocol import Factory, Protocol

from centre.sim_pbx import build_sim
from config.schema import CtiConfig
from cti.ami.message import AMIMessage
from sim.clock import VirtualClock
from sim.dialplan import DEFAULT_DIALPLAN, load_dialplan
from sim.fastagi_client import FastAGIClient
from sim.memory_transport import MemoryNetwork
from sim.outgoing import OriginateRequest, originate
from sim.pbx import Pbx
from sim.people import AgentPhones, InboundArrival, OutboundCustomers, root_rng
from sim.settings import SimSection
from sim.traffic import InboundCaller, PeopleFarEnds, TrafficDriver


class _Ivr(Protocol):
    """A tiny FastAGI server: after the environment it sends ``commands`` one per answer, then closes."""

    def __init__(self, commands: list[str]) -> None:
        self.commands = list(commands)
        self.buf = b""
        self.env = False
        self.env_lines: list[str] = []

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if not self.env:
                self.env_lines.append(line.decode())
                if line == b"":
                    self.env = True
                    self._next()
            elif line[:4] in (b"200 ", b"510 ", b"511 ", b"520 "):
                self._next()

    def _next(self) -> None:
        assert self.transport is not None
        if self.commands:
            self.transport.write((self.commands.pop(0) + "\n").encode())
        else:
            self.transport.loseConnection()


class _IvrFactory(Factory):
    def __init__(self, commands: list[str]) -> None:
        self.commands = commands
        self.built: list[_Ivr] = []

    def buildProtocol(self, addr: object) -> _Ivr:
        p = _Ivr(self.commands)
        self.built.append(p)
        return p


def _pbx_with_ivr(commands: list[str]) -> tuple[VirtualClock, Pbx, list[AMIMessage], _IvrFactory]:
    clock = VirtualClock()
    net = MemoryNetwork(clock)
    factory = _IvrFactory(commands)
    net.listen("127.0.0.1", 4573, factory)
    pbx = Pbx(clock, load_dialplan(DEFAULT_DIALPLAN), agi=FastAGIClient(clock, net.connect))
    events: list[AMIMessage] = []
    pbx.add_listener(events.append)
    return clock, pbx, events, factory


def _arrival(**kw: object) -> InboundArrival:
    base = {"at": 0.0, "did": "+15550100", "caller_num": "+15551230001", "caller_name": "Jane Smith",
            "patience": 30.0, "keys": ("1",), "think_time": 1.0, "hangup_in_ivr_after": None}
    base.update(kw)
    return InboundArrival(**base)  # type: ignore[arg-type]


def test_ivr_decision_queues_the_caller_with_its_variables() -> None:
    """The FastAGI flow sets CTI_NEXT=queue and CTI_QUEUE; AGISTATUS=SUCCESS sends the caller to
    cti-hold, whose UserEvent CTIQueued carries the queue and the DNIS; the AGI URL names the flow."""
    clock, pbx, events, factory = _pbx_with_ivr(["ANSWER", "SET VARIABLE CTI_NEXT queue",
                                                 "SET VARIABLE CTI_QUEUE sales"])
    chan = pbx.inbound_call("+15550100", "+15551230001", "Jane", variables=[("CTI_FLOW", "support")])
    clock.run_for(10)
    env = factory.built[0].env_lines
    assert "agi_request: agi://127.0.0.1:4573/support?dnis=+15550100" in env
    assert "agi_channel: PJSIP/trunk-00000000" in env
    status = [e["Value"] for e in events if e.name == "VarSet" and e["Variable"] == "AGISTATUS"]
    assert status == ["SUCCESS"]
    queued = [e for e in events if e.name == "UserEvent"]
    assert queued[0]["Queue"] == "sales" and queued[0]["DNIS"] == "+15550100"
    assert [e["Command"] for e in events if e.name == "AGIExecEnd"] == [
        "ANSWER", "SET VARIABLE CTI_NEXT queue", "SET VARIABLE CTI_QUEUE sales"]
    assert not chan.dead


def test_caller_keys_reach_the_ivr_and_impatient_callers_abandon_on_hold() -> None:
    """The caller's key presses answer GET DATA; on hold the caller hangs up after their patience."""
    clock, pbx, events, _ = _pbx_with_ivr(["ANSWER", "GET DATA beep 3000 1", "SET VARIABLE CTI_NEXT queue"])
    driver = TrafficDriver(pbx, None)
    chan = driver.arrive(_arrival(keys=("7",), patience=20.0))
    assert chan is not None
    clock.run_for(10)
    assert [e["Digit"] for e in events if e.name == "DTMFEnd"] == ["7"]
    assert [e.name for e in events if e.name == "UserEvent"] == ["UserEvent"]
    clock.run_for(30)
    assert chan.dead and driver.counts["abandoned_hold"] == 1
    assert [e.name for e in events if e.get("Channel") == chan.name and e.name != "Cdr"][-3:] == [
        "MusicOnHoldStop", "SoftHangupRequest", "Hangup"]


def test_caller_hanging_up_in_the_ivr_ends_agi_with_hangup() -> None:
    """A caller who gives up during a prompt makes AGISTATUS=HANGUP and the dialplan stops there."""
    clock, pbx, events, _ = _pbx_with_ivr(["ANSWER", "STREAM FILE demo-congrats \"\"", "NOOP"])
    driver = TrafficDriver(pbx, None)
    chan = driver.arrive(_arrival(hangup_in_ivr_after=2.0))
    assert chan is not None
    clock.run_for(30)
    assert chan.dead and driver.counts["abandoned_ivr"] == 1
    status = [e["Value"] for e in events if e.name == "VarSet" and e["Variable"] == "AGISTATUS"]
    assert status == ["HANGUP"]
    assert not [e for e in events if e.name == "UserEvent"]


def test_inbound_caller_gives_keys_in_order() -> None:
    """next_keys walks the caller's script, then says nothing more."""
    caller = InboundCaller(_arrival(keys=("1", "12345#"), think_time=2.5))
    assert caller.next_keys() == ("1", 2.5)
    assert caller.next_keys() == ("12345#", 2.5)
    assert caller.next_keys() is None


def test_people_far_ends_map_the_models() -> None:
    """Agent phones and outbound customers become FarEnds: no-answer phones ring forever, certain
    busy customers are busy, machines answer as machines; the trunk without a number is refused."""
    settings = SimSection.model_validate({
        "agents": {"no_answer_prob": 1.0},
        "outbound": {"answer": 0.0, "busy": 0.0, "noanswer": 0.0, "congestion": 0.0, "machine": 1.0},
    })
    rng = root_rng(settings)
    far = PeopleFarEnds(AgentPhones(settings, rng), OutboundCustomers(settings, rng))
    assert far.call("1001", "", 0.0).outcome == "noanswer"  # type: ignore[union-attr]
    machine = far.call("trunk", "+15557654321", 0.0)
    assert machine is not None and machine.outcome == "answer" and machine.machine
    assert far.call("trunk", "", 0.0) is None


def test_outbound_person_hangs_up_after_silence_patience() -> None:
    """A person the dialer reached waits in cti-hold with no agent: they hang up ``silence_patience_s`` after
    answering (the driver knows the customer's channel although its Newchannel precedes its far end)."""
    settings = SimSection.model_validate({"outbound": {
        "answer": 1.0, "busy": 0.0, "noanswer": 0.0, "congestion": 0.0, "machine": 0.0,
        "ring_time_s": {"min_s": 5, "max_s": 5}, "silence_patience_s": 2.0}})
    rng = root_rng(settings)
    clock = VirtualClock()
    far = PeopleFarEnds(AgentPhones(settings, rng), OutboundCustomers(settings, rng))
    pbx = Pbx(clock, load_dialplan(DEFAULT_DIALPLAN), far_ends=far)
    driver = TrafficDriver(pbx, None, far)
    events: list[tuple[float, AMIMessage]] = []
    pbx.add_listener(lambda m: events.append((clock.seconds(), m)))
    originate(pbx, OriginateRequest("PJSIP/+15557654321@trunk", "cti-outbound", "s", variables=(
        ("CTI_CAMPAIGN", "spring"), ("CTI_LEAD_ID", "42"), ("CTI_CAMPAIGN_QUEUE", "sales"))))
    clock.run_for(30)
    trunk = [(t, m) for t, m in events if m.get("Channel", "").startswith("PJSIP/trunk-")]
    up = next(t for t, m in trunk if m.name == "Newstate" and m["ChannelState"] == "6")
    gone = next(t for t, m in trunk if m.name == "Hangup")
    assert up == 5.0 and gone == 7.0
    assert driver.counts["outbound_abandoned"] == 1


def test_built_runtime_is_deterministic_for_a_seed() -> None:
    """Ten simulated minutes of default traffic produce the same AMI event stream twice."""
    def run() -> list[list[tuple[str, str]]]:
        clock = VirtualClock()
        net = MemoryNetwork(clock)
        runtime = build_sim(CtiConfig(), clock, agi_connect=net.connect, seed=3)
        events: list[AMIMessage] = []
        runtime.pbx.add_listener(events.append)
        runtime.driver.start()
        clock.run_until(600)
        runtime.stop()
        return [m.headers for m in events]

    first = run()
    assert len(first) > 50
    assert first == run()


def test_ivr_decision_wins_over_agistatus_failure_from_a_missing_prompt() -> None:
    """A prompt the PBX lacks makes res_agi end AGI() with AGISTATUS=FAILURE although the flow went on and
    decided; the shipped dialplan honours CTI_NEXT first, so the caller is transferred, not queued to the
    fallback queue (issue 11, seen on Asterisk 22.10.1)."""
    clock, pbx, events, _ = _pbx_with_ivr(["ANSWER", 'STREAM FILE welcome ""',
                                           "SET VARIABLE CTI_TRANSFER_DIAL Local/2000@x",
                                           "SET VARIABLE CTI_NEXT transfer"])
    pbx.inbound_call("+15550100", "+15551230001", "Jane")
    clock.run_for(10)
    status = [e["Value"] for e in events if e.name == "VarSet" and e["Variable"] == "AGISTATUS"]
    assert status == ["FAILURE"]
    contexts = [e["Context"] for e in events if e.name == "Newexten"]
    assert "cti-transfer" in contexts and "cti-fallback" not in contexts
    assert not [e for e in events if e.name == "UserEvent"]


def test_no_ivr_decision_still_falls_back() -> None:
    """With no CTI_NEXT (the IVR could not run or ended without deciding) the caller goes to cti-fallback
    whatever AGISTATUS says."""
    clock, pbx, events, _ = _pbx_with_ivr(["ANSWER", "NOOP"])
    pbx.inbound_call("+15550100", "+15551230001", "Jane")
    clock.run_for(10)
    assert [e["Value"] for e in events if e.name == "VarSet" and e["Variable"] == "AGISTATUS"] == ["SUCCESS"]
    assert "cti-fallback" in [e["Context"] for e in events if e.name == "Newexten"]
    assert [e["Queue"] for e in events if e.name == "UserEvent"] == ["general"]
