"""The simulated PBX answers MixMonitor, MixMonitorMute and StopMixMonitor as Asterisk 22.10.1's
app_mixmonitor.c does (``manager_mixmonitor``, ``manager_mute_mixmonitor``, ``manager_stop_mixmonitor``; the
events from main/manager_channels.c): the exact Response lines and error messages in the source's order,
MixMonitorStart/Stop/Mute with a channel snapshot (and Direction/State for Mute) after the response, class
call; a hangup ends a recording with no MixMonitorStop; PauseMonitor (res_monitor, gone since Asterisk 21)
is an unknown command."""

from __future__ import annotations

from sim.ami_events import snapshot
from tests.test_sim_ami_server import Conn, _login, _setup

SNAPSHOT_KEYS = [k for k, _ in snapshot(type("S", (), {
    "name": "", "state": 6, "caller_num": "", "caller_name": "", "conn_num": "", "conn_name": "", "language": "",
    "accountcode": "", "context": "", "exten": "", "priority": 1, "uniqueid": "", "linkedid": ""})())]


def _call(conn: Conn, clock) -> str:  # type: ignore[no-untyped-def]
    conn.send("Originate", ActionID="o", Channel="Local/hold@sim", Context="inbound", Exten="park",
              Priority="1", CallerID='"Held" <+1555>', Async="true")
    clock.run_for(2)
    return conn.events("OriginateResponse")[0]["Channel"]


def _last(conn: Conn) -> list[tuple[str, str]]:
    return list(conn.responses()[-1].headers)


def test_mixmonitor_mute_stop_answer_and_events_as_app_mixmonitor() -> None:
    clock, pbx, server = _setup()
    conn = Conn(server)
    _login(conn)
    name = _call(conn, clock)
    before = len(conn.messages())
    conn.send("MixMonitor", ActionID="m1", Channel=name, File="/var/spool/asterisk/monitor/cti/a-1.wav", Options="b")
    assert _last(conn) == [("Response", "Success"), ("ActionID", "m1")]  # no Message, no MixMonitorID
    after = conn.messages()[before:]
    assert [m.name for m in after if m.kind == "event"] == ["VarSet", "MixMonitorStart"]
    assert after.index(conn.responses()[-1]) == 0  # the events come after the response
    var = conn.events("VarSet")[-1]
    assert (var["Variable"], var["Value"]) == ("MIXMONITOR_FILENAME", "/var/spool/asterisk/monitor/cti/a-1.wav")
    start = conn.events("MixMonitorStart")[0]
    assert [k for k, _ in start.headers] == ["Event", "Privilege", *SNAPSHOT_KEYS]
    assert (start["Privilege"], start["Channel"]) == ("call,all", name)

    conn.send("MixMonitorMute", ActionID="u1", Channel=name, Direction="both", State="1")
    assert _last(conn) == [("Response", "Success"), ("ActionID", "u1")]
    mute = conn.events("MixMonitorMute")[-1]
    assert [k for k, _ in mute.headers] == ["Event", "Privilege", *SNAPSHOT_KEYS, "Direction", "State"]
    assert (mute["Direction"], mute["State"]) == ("both", "1")
    conn.send("MixMonitorMute", ActionID="u2", Channel=name, Direction="Both", State="0")
    assert (conn.events("MixMonitorMute")[-1]["Direction"], conn.events("MixMonitorMute")[-1]["State"]) == ("Both", "0")
    conn.send("MixMonitorMute", ActionID="u3", Channel=name, Direction="read", State="maybe")  # muted, State 0
    assert conn.events("MixMonitorMute")[-1]["State"] == "0"

    conn.send("StopMixMonitor", ActionID="s1", Channel=name)
    assert _last(conn) == [("Response", "Success"), ("ActionID", "s1")]
    assert conn.events("MixMonitorStop")[-1]["Channel"] == name
    conn.send("StopMixMonitor", ActionID="s2", Channel=name)
    assert conn.responses()[-1]["Message"] == "Could not stop monitoring channel"
    # the audiohook list outlives the MixMonitor: muting again is Success with an event (count 0)
    conn.send("MixMonitorMute", ActionID="u4", Channel=name, Direction="both", State="1")
    assert conn.responses()[-1]["Response"] == "Success"


def test_errors_in_the_order_of_the_source() -> None:
    clock, pbx, server = _setup()
    conn = Conn(server)
    _login(conn)
    name = _call(conn, clock)
    gone = "Local/nosuch-00000000;1"
    cases = [
        ("MixMonitor", {"File": "x.wav"}, "No channel specified"),
        ("MixMonitor", {"Channel": gone, "File": "x.wav"}, "No such channel"),
        ("MixMonitor", {"Channel": name}, "Could not start monitoring channel"),
        ("MixMonitorMute", {"Channel": name, "State": "1"}, "No direction specified. Must be read, write or both"),
        ("MixMonitorMute", {"Channel": name, "Direction": "up", "State": "1"},
         "Invalid direction specified. Must be read, write or both"),
        ("MixMonitorMute", {"Direction": "both", "State": "1"}, "No channel specified"),
        ("MixMonitorMute", {"Channel": name, "Direction": "both"}, "No state specified"),
        ("MixMonitorMute", {"Channel": gone, "Direction": "both", "State": "1"}, "No such channel"),
        ("MixMonitorMute", {"Channel": name, "Direction": "both", "State": "1"}, "Cannot set mute flag"),
        ("StopMixMonitor", {}, "No channel specified"),
        ("StopMixMonitor", {"Channel": gone}, "No such channel"),
        ("StopMixMonitor", {"Channel": name}, "Could not stop monitoring channel"),
    ]
    for i, (action, fields, message) in enumerate(cases):
        conn.send(action, ActionID=f"e{i}", **fields)
        assert _last(conn) == [("Response", "Error"), ("ActionID", f"e{i}"), ("Message", message)], (action, fields)
    assert not conn.events("MixMonitorStart") and not conn.events("MixMonitorMute")
    conn.send("PauseMonitor", ActionID="p", Channel=name)
    assert conn.responses()[-1]["Message"].startswith("Invalid/unknown command: PauseMonitor.")


def test_relative_file_goes_under_the_monitor_directory_and_hangup_sends_no_stop() -> None:
    clock, pbx, server = _setup()
    conn = Conn(server)
    _login(conn)
    name = _call(conn, clock)
    conn.send("MixMonitor", ActionID="m", Channel=name, File="call.wav49")
    assert conn.events("VarSet")[-1]["Value"] == "/var/spool/asterisk/monitor/call.WAV"
    conn.send("Hangup", ActionID="h", Channel=name)
    clock.run_for(1)
    assert conn.events("Hangup") and not conn.events("MixMonitorStop")


def test_dialplan_mixmonitor_and_core_show_applications() -> None:
    """The dialplan applications of the same module (MixMonitor(file,options), StopMixMonitor()) publish the
    same events; ``core show applications`` lists both, as the real PBX does with app_mixmonitor loaded."""
    from cti.ami.message import AMIMessage as Msg
    from sim.ami_server import AMIServer
    from sim.clock import VirtualClock
    from sim.dialplan import dialplan_from_data
    from sim.pbx import Pbx

    clock = VirtualClock()
    plan = {"contexts": {"sim": {"hold": ["Answer()", "Wait(120)"]},
                         "rec": {"s": ["Answer()", "MixMonitor(/var/spool/asterisk/monitor/x.wav,b)", "Wait(1)",
                                       "StopMixMonitor()", "Wait(60)"]}}}
    pbx = Pbx(clock, dialplan_from_data(plan))
    server = AMIServer(pbx, {"cti": "cti-secret"})
    conn = Conn(server)
    _login(conn)
    conn.send("Originate", ActionID="o", Channel="Local/hold@sim", Context="rec", Exten="s", Priority="1",
              Async="true")
    clock.run_for(3)
    assert [e.name for e in conn.messages() if isinstance(e, Msg) and e.name.startswith("MixMonitor")] == [
        "MixMonitorStart", "MixMonitorStop"]
    conn.send("Command", ActionID="c", Command="core show applications")
    lines = conn.responses()[-1].getall("Output")
    names = {line.split(":")[0].strip().lower() for line in lines}  # the sim lists its names in lower case
    assert {"mixmonitor", "stopmixmonitor"} <= names
