"""The simulated PBX runs the lab's people (tests/lab/extensions_lab.conf) beside the shipped dialplan as
Asterisk 22.10.1 was seen to run them (issue 11): the AstDB over AMI and DB(), ExecIf + SendDTMF from a
Local ;2 to its ;1, Busy/Congestion, and AMD on a Local channel deciding from what the ;2 plays. Driven
through the AMI server in virtual time; the expected texts, values and timings are the reference PBX's."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti.ami.message import AMIMessage
from sim.amd import SHIPPED_AMD_CONF, AmdConfigError, AmdSettings, LocalAmd, load_amd_conf, parse_amd_conf
from sim.ami_server import AMIServer
from sim.clock import VirtualClock
from sim.dialplan import DialplanError, dialplan_from_data, load_dialplans, merge_dialplans
from sim.pbx import Pbx
from tests.test_sim_ami_server import Conn

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "asterisk" / "extensions_cti.conf"
LAB = ROOT / "tests" / "lab" / "extensions_lab.conf"


class Lab:
    """A PBX with the shipped dialplan and the lab's people, one AMI session, every event with its time."""

    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.pbx = Pbx(self.clock, load_dialplans([SHIPPED, LAB]), amd=load_amd_conf())
        self.events: list[tuple[float, AMIMessage]] = []
        self.pbx.add_listener(lambda m: self.events.append((self.clock.seconds(), m)))
        self.conn = Conn(AMIServer(self.pbx, {"cti": "s3cret"}))
        self.conn.send("Login", ActionID="l", Username="cti", Secret="s3cret", Events="off")

    def action(self, name: str, **fields: str) -> AMIMessage:
        self.conn.send(name, ActionID=f"a{len(self.conn.items)}", **fields)
        return self.conn.responses()[-1]

    def named(self, event: str, channel: str = "", **headers: str) -> list[tuple[float, AMIMessage]]:
        return [(t, m) for t, m in self.events if m.name == event and (m.get("Channel") or "").startswith(channel)
                and all(m.get(k) == v for k, v in headers.items())]

    def var(self, channel: str, variable: str) -> tuple[float, str] | None:
        found = self.named("VarSet", channel, Variable=variable)
        return (found[-1][0], found[-1][1].get("Value") or "") if found else None


# --- dialplan files ----------------------------------------------------------------------------
def test_the_lab_people_load_beside_the_shipped_dialplan_as_include_does() -> None:
    """Both files make one dialplan: the shipped contexts and globals and the lab's people."""
    plan = load_dialplans([SHIPPED, LAB])
    for context in ("cti-inbound", "cti-agent", "cti-outbound", "cti-lab-caller", "cti-lab-phone",
                    "cti-lab-target", "cti-lab-customer"):
        assert context in plan.contexts
    assert plan.globals["CTI_FASTAGI"] == "agi://127.0.0.1:4573"
    assert plan.exists("cti-lab-customer", "5552001") and plan.exists("cti-lab-target", "2899")


def test_a_context_in_two_files_holds_both_and_a_priority_twice_is_an_error() -> None:
    """A context named in two files gets the extensions of both; the same priority twice is refused with
    the file that repeats it."""
    a = dialplan_from_data({"contexts": {"c": {"1": ["NoOp(a)"]}}})
    b = dialplan_from_data({"contexts": {"c": {"2": ["NoOp(b)"]}}})
    merged = merge_dialplans([a, b])
    assert merged.exists("c", "1") and merged.exists("c", "2")
    with pytest.raises(DialplanError, match=r"second\.conf: duplicate priority 1 for 1@c"):
        merge_dialplans([a, a], ["first.conf", "second.conf"])


# --- AstDB --------------------------------------------------------------------------------------
def test_astdb_actions_answer_with_asterisk_22s_texts() -> None:
    """DBPut/DBGet/DBDel/DBDelTree answer exactly as the reference PBX did (texts, full stops, list)."""
    lab = Lab()
    got = [lab.action("DBPut", Family="probe", Key="x/1", Val="v1")]
    lab.conn.send("DBGet", ActionID="g", Family="probe", Key="x/1")
    items = [(m.name or m.get("Response"), m.get("Val")) for m in lab.conn.messages()[-3:]]
    assert items == [("Success", None), ("DBGetResponse", "v1"), ("DBGetComplete", None)]
    got += [lab.action("DBDel", Family="probe", Key="x/1"), lab.action("DBDel", Family="probe", Key="x/1"),
            lab.action("DBGet", Family="probe", Key="x/1"), lab.action("DBPut", Key="x/2", Val="1"),
            lab.action("DBDelTree", Family="probe"), lab.action("DBPut", Family="probe", Key="b/c", Val="1"),
            lab.action("DBDelTree", Family="probe", Key="b")]
    assert [(m.get("Response"), m.get("Message")) for m in got] == [
        ("Success", "Updated database successfully"), ("Success", "Key deleted successfully"),
        ("Error", "Database entry could not be deleted"), ("Error", "Database entry not found"),
        ("Error", "No family specified"), ("Error", "Database entry not found"),
        ("Success", "Updated database successfully"), ("Success", "Key tree deleted successfully")]
    assert lab.pbx.astdb == {}


def test_db_function_reads_the_astdb_and_leaves_db_result() -> None:
    """${DB(family/key)} reads what DBPut wrote (and sets DB_RESULT); a missing key reads as "";
    Set(DB(family/key)=v) writes."""
    lab = Lab()
    lab.action("DBPut", Family="lab", Key="answer_after/1001", Val="3")
    chan = lab.pbx.inbound_call("+18005550100", "+15551230001", "Lab")
    assert lab.pbx.substitute(chan, "${DB(lab/answer_after/1001)}|${DB(lab/noanswer/1001)}") == "3|"
    assert lab.pbx.get_var(chan, "DB_RESULT") == "3"
    lab.pbx.set_var(chan, "DB(lab/noanswer/1002)", "1")
    assert lab.pbx.astdb[("lab", "noanswer/1002")] == "1"


def test_an_agent_phone_steered_by_the_astdb_never_answers_then_answers_after_one_second() -> None:
    """Local/1001@cti-lab-phone with lab/noanswer/1001=1 rings and never answers (the originate times out);
    with the key deleted it answers one second after ringing."""
    lab = Lab()
    lab.action("DBPut", Family="lab", Key="noanswer/1001", Val="1")
    lab.action("Originate", Channel="Local/1001@cti-lab-phone", Application="Wait", Data="1", Timeout="6000",
               Async="true")
    lab.clock.run_for(10)
    assert [m.get("Reason") for _, m in lab.named("OriginateResponse")] == ["3"]
    assert lab.named("Newexten", "Local/1001@cti-lab-phone", Application="Wait", AppData="120")
    lab.action("DBDel", Family="lab", Key="noanswer/1001")
    start = lab.clock.seconds()
    lab.action("Originate", Channel="Local/1001@cti-lab-phone", Application="Wait", Data="1", Async="true")
    lab.clock.run_for(5)
    answered = [(t, m) for t, m in lab.named("OriginateResponse") if m.get("Reason") == "4"]
    assert len(answered) == 1 and answered[0][0] - start == pytest.approx(1.0)


# --- the caller keys DTMF ------------------------------------------------------------------------
def test_a_lab_caller_keys_its_digits_to_the_local_one_through_execif_senddtmf() -> None:
    """[cti-lab-caller] answers, waits LAB_DTMF_AFTER, then ExecIf(...?SendDTMF(${LAB_DTMF},250)): the
    ;1 (the trunk channel the server sees) receives each digit, 100 ms + 250 ms apart; without LAB_DTMF
    nothing is sent."""
    lab = Lab()
    for n, dtmf in (("100", "12"), ("101", "")):
        lab.conn.send("Originate", ActionID=f"o{n}", Channel=f"Local/{n}@cti-lab-caller", Application="Wait",
                      Data="10", Async="true", Variable=f"LAB_DTMF={dtmf},LAB_DTMF_AFTER=0.5,LAB_STAY=3")
    lab.clock.run_for(8)
    ends = [(t, m.get("Digit")) for t, m in lab.named("DTMFEnd", "Local/100@cti-lab-caller-")
            if m.get("Direction") == "Received"]
    assert [d for _, d in ends] == ["1", "2"]
    assert all((m.get("Channel") or "").endswith(";1") for _, m in lab.named("DTMFEnd", "Local/100@"))
    assert ends[1][0] - ends[0][0] == pytest.approx(0.35)
    assert not lab.named("DTMFEnd", "Local/101@")
    assert lab.named("Newexten", "Local/101@cti-lab-caller", Application="ExecIf")


def test_execif_runs_the_true_or_the_false_application_and_an_unknown_one_hangs_up() -> None:
    """ExecIf(expr?app(args):app(args)) as app_exec.c splits it; an application that does not exist ends
    the channel's dialplan."""
    plan = dialplan_from_data({"contexts": {"t": {
        "1": ["ExecIf($[1 = 1]?Set(A=yes(really)):Set(A=no))", "ExecIf(0?Set(B=yes):Set(B=no))",
              "ExecIf(1?NoSuchApp(x))", "Set(C=never)"]}}})
    clock = VirtualClock()
    pbx = Pbx(clock, plan)
    chan = pbx.inbound_call("1", "", "", context="t")
    clock.run_for(1)
    assert (chan.variables.get("A"), chan.variables.get("B"), chan.variables.get("C")) == ("yes(really)", "no", None)
    assert chan.dead


# --- busy, congestion ------------------------------------------------------------------------------
def test_busy_and_congestion_customers_fail_the_originate_with_reasons_5_and_8() -> None:
    """555300X is Busy(5), 555400X Congestion(5): the originate fails at once with Reason 5 and 8 and the
    ;2 hangs up with cause 17 and 34."""
    lab = Lab()
    for number in ("5553009", "5554009"):
        lab.conn.send("Originate", ActionID=number, Channel=f"Local/{number}@cti-lab-customer", Application="Wait",
                      Data="1", Async="true")
    lab.clock.run_for(1)
    assert [(m.get("ActionID"), m.get("Response"), m.get("Reason")) for _, m in lab.named("OriginateResponse")] == [
        ("5553009", "Failure", "5"), ("5554009", "Failure", "8")]
    assert [m.get("Cause") for _, m in lab.named("Hangup") if (m.get("Channel") or "").endswith(";2")] == ["17", "34"]


# --- AMD on a Local channel -------------------------------------------------------------------------
def _amd(number: str) -> tuple[Lab, float]:
    """Originate Local/<number>@cti-lab-customer with Application AMD (as the probe of the reference PBX
    did); returns the lab and when the customer answered."""
    lab = Lab()
    lab.conn.send("Originate", ActionID="amd", Channel=f"Local/{number}@cti-lab-customer", Application="AMD",
                  Data="", Async="true")
    lab.clock.run_for(12)
    answered = lab.named("OriginateResponse", Reason="4")
    assert answered, "the customer never answered"
    return lab, answered[0][0]


def test_amd_on_a_local_person_who_says_hello_then_waits_is_notsure_after_the_analysis_time() -> None:
    """555100X answers, says "hello" (0.8 s) and waits: a ;2 in Wait() sends no frames, so app_amd never
    sees silence and gives up after amd.conf's total_analysis_time (4000 ms): NOTSURE (the reference PBX:
    NOTSURE TOOLONG-3800 after 4.04 s; the dialer takes NOTSURE as a person)."""
    lab, answered = _amd("5551009")
    status = lab.var("Local/5551009@cti-lab-customer-00000000;1", "AMDSTATUS")
    cause = lab.var("Local/5551009@cti-lab-customer-00000000;1", "AMDCAUSE")
    assert status is not None and cause is not None
    assert (status[1], cause[1]) == ("NOTSURE", "TOOLONG-4000")
    assert status[0] - answered == pytest.approx(4.0)
    hello = lab.named("Newexten", "Local/5551009@cti-lab-customer-00000000;2", Application="Playback")
    after = lab.named("Newexten", "Local/5551009@cti-lab-customer-00000000;2", Application="Wait", AppData="300")
    assert after[0][0] - hello[0][0] == pytest.approx(0.8)  # hello.gsm: 1320 bytes of GSM = 0.8 s


def test_amd_on_a_local_answering_machine_is_machine_after_a_long_greeting() -> None:
    """555200X plays vm-intro&vm-intro: 1500 ms of voice is a long greeting -> MACHINE,
    LONGGREETING-1500-1500 (the reference PBX's exact values), 1.5 s after the greeting started."""
    lab, _ = _amd("5552009")
    status = lab.var("Local/5552009@cti-lab-customer-00000000;1", "AMDSTATUS")
    cause = lab.var("Local/5552009@cti-lab-customer-00000000;1", "AMDCAUSE")
    assert status is not None and cause is not None
    assert (status[1], cause[1]) == ("MACHINE", "LONGGREETING-1500-1500")
    greeting = lab.named("Newexten", "Local/5552009@cti-lab-customer-00000000;2", Application="Playback")
    assert status[0] - greeting[0][0] == pytest.approx(1.5)


def test_amd_on_a_silent_local_channel_has_no_audio_data_and_a_hangup_is_hangup() -> None:
    """A ;2 that answers and plays nothing: NOTSURE NOAUDIODATA after the analysis time. Hung up during
    the analysis: AMDSTATUS=HANGUP with an empty AMDCAUSE (as the reference PBX set them)."""
    lab = Lab()
    lab.conn.send("Originate", ActionID="s", Channel="Local/1009@cti-lab-phone", Application="AMD", Data="",
                  Async="true")
    lab.conn.send("Originate", ActionID="h", Channel="Local/1008@cti-lab-phone", Application="AMD", Data="",
                  Async="true")
    lab.clock.run_for(3)
    hung = lab.pbx.find_channel("Local/1008@cti-lab-phone-00000001;2")
    assert hung is not None
    lab.pbx.softhangup(hung, 16)
    lab.clock.run_for(6)
    assert lab.var("Local/1009@cti-lab-phone-00000000;1", "AMDSTATUS") is not None
    assert [lab.var("Local/1009@cti-lab-phone-00000000;1", v)[1] for v in ("AMDSTATUS", "AMDCAUSE")] == [  # type: ignore[index]
        "NOTSURE", "NOAUDIODATA-4000"]
    assert [lab.var("Local/1008@cti-lab-phone-00000001;1", v)[1] for v in ("AMDSTATUS", "AMDCAUSE")] == [  # type: ignore[index]
        "HANGUP", ""]


def test_local_amd_model_follows_app_amd_thresholds() -> None:
    """The model in numbers: AMD()'s arguments over amd.conf; a greeting interrupted before
    ``greeting`` ms keeps its voice; maximum_word_length shorter than the greeting decides first."""
    s = AmdSettings(greeting=1500, total_analysis_time=4000, maximum_word_length=5000)
    amd = LocalAmd(s, 0.0)
    amd.voice(True, 1.0)
    amd.voice(False, 2.0)  # 1000 ms of voice
    assert amd.due(2.0) == pytest.approx(4.0)
    amd.voice(True, 3.0)
    assert amd.due(3.0) == pytest.approx(3.5)
    assert amd.decide(3.5).cause == "LONGGREETING-1500-1500"
    short = LocalAmd(s.with_args(["", "", "", "", "", "", "", "", "1000"]), 0.0)
    short.voice(True, 0.0)
    assert short.due(0.0) == pytest.approx(1.0) and short.decide(1.0).cause == "MAXWORDLENGTH-1000"
    assert s.with_args(["2000", "1000"]).greeting == 1000


def test_the_shipped_amd_conf_is_read_and_a_bad_value_names_file_line_and_key() -> None:
    """config/asterisk/amd.conf's [general] values reach the sim; a non-number is refused with its place."""
    shipped = load_amd_conf(SHIPPED_AMD_CONF)
    assert (shipped.total_analysis_time, shipped.greeting, shipped.maximum_number_of_words) == (4000, 1500, 3)
    with pytest.raises(AmdConfigError, match=r"amd\.conf:2: general\.greeting: expected a whole number of ms"):
        parse_amd_conf("[general]\ngreeting = long\n")


def test_a_local_two_whose_one_already_plays_gets_media_at_once() -> None:
    """Originate Application=Playback: the ;1 plays while its ;2 is in Answer(); the ;2's wait for media
    ends with the first frame instead of lasting 500 ms (the recorded originate_outbound shows it)."""
    plan = dialplan_from_data({"contexts": {"c": {"5551234": ["Ringing()", "Wait(1)", "Answer()", "Wait(15)"]}}})
    clock = VirtualClock()
    pbx = Pbx(clock, plan)
    times: dict[str, float] = {}
    pbx.add_listener(lambda m: times.setdefault(f"{m.name}:{m.get('Application')}({m.get('AppData')})",
                                                 clock.seconds()))
    conn = Conn(AMIServer(pbx, {"cti": "s3cret"}))
    conn.send("Login", ActionID="l", Username="cti", Secret="s3cret", Events="off")
    conn.send("Originate", ActionID="o", Channel="Local/5551234@c", Application="Playback", Data="beep", Async="true")
    clock.run_for(3)
    assert times["Newexten:Wait(15)"] - times["Newexten:Answer()"] == pytest.approx(0.0)


# --- event details of the reference PBX's lab recordings -------------------------------------------
def _offer_to_1003(lab: Lab) -> None:
    """A customer (555100X) put through [cti-agent] to agent 1003's lab phone, as the ACD's Redirect does."""
    lab.conn.send("Originate", ActionID="o", Channel="Local/5551001@cti-lab-customer", Context="cti-agent",
                  Exten="1003", Priority="1", Async="true",
                  Variable="__CTI_DNIS=+18005550100,CTI_AGENT_ENDPOINT=Local/1003@cti-lab-phone,CTI_RING_TIMEOUT=15")
    lab.clock.run_for(4)


def test_the_pre_dial_handler_runs_as_a_gosub_at_its_own_location() -> None:
    """Dial option b(cti-agent-leg^s^1()) on an inbound call's agent leg (no CTI_CAMPAIGN, no argument):
    LOCAL(ARGC)=0, the handler's priorities at cti-agent-leg,s,N (1, 2, then the jump to 6, as a real
    22.10.1 showed), then ARGC and GOSUB_RETVAL cleared; the leg is back at its own location, which its
    next Newstate publishes again as a Newexten (AppDial); the ;2 gets GOSUB_RETVAL with the variables,
    in the ;1's list order (the reference PBX: GOSUB_RETVAL, DIALEDPEERNUMBER, the inherited __CTI_DNIS)."""
    lab = Lab()
    _offer_to_1003(lab)
    one = "Local/1003@cti-lab-phone-00000001;1"
    seq = [(m.name, m.get("Context"), m.get("Priority"),
            m.get("Application") or m.get("Variable") or m.get("ChannelStateDesc"))
           for _, m in lab.events if m.get("Channel") == one and m.name in ("VarSet", "Newexten", "Newstate")]
    assert seq[:11] == [
        ("VarSet", "cti-lab-phone", "1", "DIALEDPEERNUMBER"), ("VarSet", "cti-lab-phone", "1", "__CTI_DNIS"),
        ("Newexten", "cti-lab-phone", "1", "AppDial"), ("VarSet", "cti-lab-phone", "1", "LOCAL(ARGC)"),
        ("Newexten", "cti-agent-leg", "1", "Set"), ("Newexten", "cti-agent-leg", "2", "GotoIf"),
        ("Newexten", "cti-agent-leg", "6", "Return"),
        ("VarSet", "cti-agent-leg", "6", "ARGC"), ("VarSet", "cti-agent-leg", "6", "GOSUB_RETVAL"),
        ("Newstate", "cti-lab-phone", "1", "Ringing"), ("Newexten", "cti-lab-phone", "1", "AppDial")]
    two = [m.get("Variable") for _, m in lab.events
           if m.get("Channel") == "Local/1003@cti-lab-phone-00000001;2" and m.name == "VarSet"]
    # Set inserts at the head of the ;1's list, inheritance at its tail; the Local call copies the list.
    assert two[:3] == ["GOSUB_RETVAL", "DIALEDPEERNUMBER", "__CTI_DNIS"]


def test_dial_sets_ringtime_at_the_first_ringing_before_the_dialstate() -> None:
    """app_dial: RINGTIME and RINGTIME_MS are set on the caller when the first ringing arrives, just
    before the DialState RINGING."""
    lab = Lab()
    _offer_to_1003(lab)
    caller = "Local/5551001@cti-lab-customer-00000000;1"
    names = [(m.name, m.get("Variable") or m.get("DialStatus")) for _, m in lab.events
             if (m.get("Channel") == caller and m.name == "VarSet" and (m.get("Variable") or "").startswith("RINGTIME")
                 and m.get("Value")) or (m.name == "DialState" and m.get("Channel") == caller)]
    assert names == [("VarSet", "RINGTIME"), ("VarSet", "RINGTIME_MS"), ("DialState", "RINGING")]


def test_the_caller_put_out_of_a_dial_bridge_hangs_up_with_the_leavers_cause() -> None:
    """The agent's leg hangs up (cause 16): the caller, put out of the Dial bridge, ends with cause 16 (not
    0), and so does its Local ;2 (HangupRequest and Hangup)."""
    lab = Lab()
    _offer_to_1003(lab)
    agent = lab.pbx.find_channel("Local/1003@cti-lab-phone-00000001;1")
    assert agent is not None and agent.bridge is not None
    lab.action("Hangup", Channel=agent.name)
    lab.clock.run_for(1)
    causes = {(m.name, m.get("Channel")): m.get("Cause") for _, m in lab.events
              if m.name in ("Hangup", "HangupRequest") and "5551001" in (m.get("Channel") or "")}
    assert causes == {("Hangup", "Local/5551001@cti-lab-customer-00000000;1"): "16",
                      ("HangupRequest", "Local/5551001@cti-lab-customer-00000000;2"): "16",
                      ("Hangup", "Local/5551001@cti-lab-customer-00000000;2"): "16"}


def test_a_channel_leaving_a_bridge_clears_its_bridgepeer_first() -> None:
    """bridge_channel_internal_pull() clears BRIDGEPEER as a channel leaves: a VarSet BRIDGEPEER= just
    before its BridgeLeave (every leave in the reference PBX's recordings)."""
    lab = Lab()
    _offer_to_1003(lab)
    agent = lab.pbx.find_channel("Local/1003@cti-lab-phone-00000001;1")
    assert agent is not None
    lab.action("Hangup", Channel=agent.name)
    lab.clock.run_for(1)
    for name in (agent.name, "Local/5551001@cti-lab-customer-00000000;1"):
        seq = [(m.name, m.get("Value")) for _, m in lab.events if m.get("Channel") == name
               and (m.name == "BridgeLeave" or (m.name == "VarSet" and m.get("Variable") == "BRIDGEPEER"))]
        assert seq[-2:] == [("VarSet", ""), ("BridgeLeave", None)], (name, seq)


def test_console_hold_redirect_publishes_the_new_location_as_it_leaves_the_bridge() -> None:
    """Redirect of the bridged caller and agent leg (console hold): as each leaves the bridge, a Newexten
    at the new location with the application it had (Dial, AppDial), then BridgeLeave; the first step
    there makes no Newexten of its own (Newexten only when the location changes); the caller's Dial ends
    with DIALSTATUS=ANSWER again and no ANSWEREDTIME (the bridge did not end)."""
    lab = Lab()
    _offer_to_1003(lab)
    caller, agent = "Local/5551001@cti-lab-customer-00000000;1", "Local/1003@cti-lab-phone-00000001;1"
    mark = len(lab.events)
    lab.action("Redirect", Channel=caller, Context="cti-onhold", Exten="s", Priority="1", ExtraChannel=agent,
               ExtraContext="cti-agent-onhold", ExtraExten="s", ExtraPriority="1")
    lab.clock.run_for(1)

    def seq(name: str) -> list[str]:
        return [f"{m.name} {m.get('Context')},{m.get('Priority')} {m.get('Application') or m.get('Variable') or ''}"
                for _, m in lab.events[mark:] if m.get("Channel") == name
                and m.name in ("Newexten", "BridgeLeave", "VarSet")]

    assert seq(caller) == ["VarSet cti-onhold,1 BRIDGEPEER", "Newexten cti-onhold,1 Dial", "BridgeLeave cti-onhold,1 ",
                           "VarSet cti-onhold,1 DIALSTATUS", "Newexten cti-onhold,2 MusicOnHold"]
    assert seq(agent) == ["VarSet cti-agent-onhold,1 BRIDGEPEER", "Newexten cti-agent-onhold,1 AppDial",
                          "BridgeLeave cti-agent-onhold,1 ", "Newexten cti-agent-onhold,2 Wait"]


# --- manager read classes and the Events filter -------------------------------------------------------
def test_sessions_get_only_the_classes_their_user_may_read_and_their_events_mask_asks_for() -> None:
    """manager.c: an event goes to a session only if its user's ``read`` covers every class of it and the
    Login ``Events:`` mask asks for them (the lab's own connection logs in with ``call,dtmf,user``; the
    shipped manager_cti.conf gives the server no ``agi``, so no AGIExecStart reaches it)."""
    from sim.ami_read_classes import manager_conf_read
    from sim.ami_server import AmiUser

    clock = VirtualClock()
    pbx = Pbx(clock, load_dialplans([SHIPPED, LAB]))
    read = manager_conf_read((ROOT / "config" / "asterisk" / "manager_cti.conf").read_text(), "cti")
    assert read is not None and "agi" not in read and {"call", "dialplan", "user"} <= read
    server = AMIServer(pbx, [AmiUser("cti", "s3cret", read)])
    sessions = {}
    for events in ("on", "call,dtmf,user", "off"):
        conn = Conn(server)
        conn.send("Login", ActionID="l", Username="cti", Secret="s3cret", Events=events)
        sessions[events] = conn
    pbx.emit("AGIExecStart", "agi,all", [("Channel", "x")])
    pbx.emit("VarSet", "dialplan,all", [("Channel", "x")])
    pbx.emit("Newchannel", "call,all", [("Channel", "x")])
    pbx.emit("UserEvent", "user,all", [("Channel", "x")])
    got = {k: [m.name for m in c.events() if m.name not in ("FullyBooted", "SuccessfulAuth")]
           for k, c in sessions.items()}
    assert got == {"on": ["VarSet", "Newchannel", "UserEvent"], "call,dtmf,user": ["Newchannel", "UserEvent"],
                   "off": []}


def test_build_sim_gives_its_ami_user_the_shipped_read_classes() -> None:
    """The simulated PBX is installed as docs/asterisk.md says: its AMI user reads what manager_cti.conf
    lets ``cti`` read."""
    from centre.sim_pbx import build_sim
    from config.load import load_config

    cfg = load_config(ROOT / "config" / "examples" / "demo.yaml")
    sim = build_sim(cfg, VirtualClock(), inbound=False)
    user = sim.ami.users[cfg.asterisk[0].username]
    assert user.read is not None and "agi" not in user.read and "call" in user.read


def test_dial_stops_the_callers_music_after_dialend_as_the_two_are_bridged() -> None:
    """Dial(...,m): the caller's music stops after the DIALSTATUS/DIALEDPEER* variables and the DialEnd
    ANSWER, just before the bridge (the reference PBX's order)."""
    lab = Lab()
    _offer_to_1003(lab)
    caller = "Local/5551001@cti-lab-customer-00000000;1"
    seq = [m.name if m.name != "VarSet" else m.get("Variable") for _, m in lab.events
           if (m.get("Channel") == caller and m.name in ("VarSet", "MusicOnHoldStop", "BridgeEnter", "DialEnd"))]
    start = seq.index("DIALSTATUS", seq.index("RINGTIME_MS"))
    assert seq[start:start + 6] == ["DIALSTATUS", "DIALEDPEERNAME", "DIALEDPEERNUMBER", "DialEnd",
                                    "MusicOnHoldStop", "BridgeEnter"]
