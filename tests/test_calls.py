"""Call tracker behaviours on hand-written AMI events: user events, variables, bad input, resync, memory bounds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cti.ami.message import AMIMessage
from cti.ami.protocol import AMIParser
from cti.calls import VANISHED_TXT, CallTracker, device_of
from cti.events import (
    AmdResult,
    CallBridged,
    CallEnded,
    CallQueued,
    CallReturnedToHold,
    CallStarted,
    CallTransferred,
    ChannelAnswered,
    ChannelHungup,
    ChannelRinging,
    DeviceStateChanged,
    DialEnded,
    DialStarted,
    DomainEvent,
    VariableSet,
)

S = "pbx1"


def ev(name: str, *headers: tuple[str, str], **fields: str) -> AMIMessage:
    return AMIMessage([("Event", name), *headers, *fields.items()])


def snap(
    name: str, uid: str, lid: str | None = None, chan: str | None = None, state: int = 6, **extra: str
) -> AMIMessage:
    """A channel event shaped like Asterisk 22's (snapshot headers, then the event's own)."""
    desc = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}.get(state, "Unknown")
    headers = [
        ("Event", name),
        ("Privilege", "call,all"),
        ("Channel", chan or f"PJSIP/{uid}-0000"),
        ("ChannelState", str(state)),
        ("ChannelStateDesc", desc),
        ("CallerIDNum", extra.pop("CallerIDNum", "+15551230001")),
        ("CallerIDName", extra.pop("CallerIDName", "Jane Customer")),
        ("ConnectedLineNum", "<unknown>"),
        ("ConnectedLineName", "<unknown>"),
        ("Language", "en"),
        ("AccountCode", ""),
        ("Context", extra.pop("Context", "cti-inbound")),
        ("Exten", extra.pop("Exten", "5000")),
        ("Priority", "1"),
        ("Uniqueid", uid),
        ("Linkedid", lid or uid),
    ]
    headers.extend(extra.items())
    return AMIMessage(headers)


def feed(tracker: CallTracker, *messages: AMIMessage, now: float = 0.0) -> list[DomainEvent]:
    out: list[DomainEvent] = []
    for msg in messages:
        out.extend(tracker.handle(S, msg, now))
    return out


def of(events: list[DomainEvent], cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


def simple_call(t: CallTracker, caller: str, agent: str, now: float = 0.0) -> list[DomainEvent]:
    """A caller channel dials an agent, they talk in a bridge, the agent hangs up."""
    bridge = f"bridge-{caller}"
    return feed(
        t,
        snap("Newchannel", caller, state=4),
        snap("Newstate", caller, state=6),
        snap("Newchannel", agent, caller, state=0, Context="agents"),
        snap("DialBegin", caller, DestUniqueid=agent, DestLinkedid=caller, DestChannel=f"PJSIP/{agent}-0000"),
        snap("Newstate", agent, caller, state=5),
        snap("Newstate", agent, caller, state=6),
        snap("DialEnd", caller, DestUniqueid=agent, DestLinkedid=caller, DialStatus="ANSWER"),
        snap("BridgeEnter", agent, caller, BridgeUniqueid=bridge),
        snap("BridgeEnter", caller, BridgeUniqueid=bridge),
        snap("BridgeLeave", agent, caller, BridgeUniqueid=bridge),
        snap("Hangup", agent, caller, **{"Cause": "16", "Cause-txt": "Normal Clearing"}),
        snap("BridgeLeave", caller, BridgeUniqueid=bridge),
        snap("Hangup", caller, **{"Cause": "16", "Cause-txt": "Normal Clearing"}),
        now=now,
    )


CTI_QUEUED_BYTES = (
    b"Event: UserEvent\r\nPrivilege: user,all\r\nChannel: PJSIP/trunk-00000007\r\nChannelState: 6\r\n"
    b"ChannelStateDesc: Up\r\nCallerIDNum: +15551230001\r\nCallerIDName: Jane Customer\r\n"
    b"ConnectedLineNum: <unknown>\r\nConnectedLineName: <unknown>\r\nLanguage: en\r\nAccountCode: \r\n"
    b"Context: cti-hold\r\nExten: s\r\nPriority: 3\r\nUniqueid: 1795442980.7\r\nLinkedid: 1795442980.7\r\n"
    b"UserEvent: CTIQueued\r\nQueue: billing\r\nSkills: billing:3 french:2\r\nPriority: 5\r\n"
    b"Language: fr\r\nDNIS: 8005550100\r\n\r\n"
)


def parse(data: bytes) -> AMIMessage:
    (msg,) = AMIParser(expect_banner=False).feed(data)
    assert isinstance(msg, AMIMessage)
    return msg


def test_cti_queued_reads_the_dialplan_headers_not_the_snapshot() -> None:
    """CallQueued takes Queue/Skills/Priority/Language/DNIS from the headers after ``UserEvent:`` (the snapshot's
    own Language "en" and Priority 3 are ignored) and carries the channel's CTI_* variables as data."""
    t = CallTracker()
    feed(
        t,
        snap("VarSet", "1795442980.7", chan="PJSIP/trunk-00000007", Variable="__CTI_DNIS", Value="8005550100"),
        snap("VarSet", "1795442980.7", chan="PJSIP/trunk-00000007", Variable="CTI_ACCOUNT", Value="42"),
    )
    (queued,) = of(feed(t, parse(CTI_QUEUED_BYTES)), CallQueued)
    assert queued.call_id == "1795442980.7" and queued.channel == "PJSIP/trunk-00000007"
    assert (queued.queue, queued.skills, queued.priority, queued.language, queued.dnis) == (
        "billing",
        "billing:3 french:2",
        5,
        "fr",
        "8005550100",
    )
    assert (queued.caller_num, queued.caller_name) == ("+15551230001", "Jane Customer")
    assert queued.data == {"CTI_DNIS": "8005550100", "CTI_ACCOUNT": "42"}


def test_cti_queued_priority_defaults_and_variable_fallback() -> None:
    """An empty or non-numeric Priority gives 0; empty headers fall back to the channel's CTI_* variables."""
    t = CallTracker()
    feed(t, snap("VarSet", "u1", Variable="CTI_QUEUE", Value="sales"))
    for raw in ("", "high", " "):
        msg = snap("UserEvent", "u1", UserEvent="CTIQueued", Queue="", Skills="", Priority=raw, Language="", DNIS="")
        (queued,) = of(feed(t, msg), CallQueued)
        assert queued.priority == 0
        assert queued.queue == "sales"


def test_cti_returned_and_amd_user_events() -> None:
    """CTIReturned becomes CallReturnedToHold, CTIAmd becomes AmdResult; other user events are ignored."""
    t = CallTracker()
    feed(t, snap("Newchannel", "u1"))
    returned = feed(t, snap("UserEvent", "u1", UserEvent="CTIReturned", Queue="sales", Agent="a7", DialStatus="BUSY"))
    assert returned == [CallReturnedToHold(server=S, ts=0.0, call_id="u1", uniqueid="u1", channel="PJSIP/u1-0000",
                                           queue="sales", agent_id="a7", dial_status="BUSY")]
    amd = feed(
        t,
        snap(
            "UserEvent",
            "u1",
            UserEvent="CTIAmd",
            Status="MACHINE",
            Cause="INITIALSILENCE-2500-2500",
            Lead="L9",
            Campaign="spring",
        ),
    )
    assert amd == [
        AmdResult(server=S, ts=0.0, call_id="u1", uniqueid="u1", channel="PJSIP/u1-0000", status="MACHINE",
                  cause="INITIALSILENCE-2500-2500", lead_id="L9", campaign="spring")
    ]
    assert feed(t, snap("UserEvent", "u1", UserEvent="SomethingElse", Queue="x")) == []


def test_varset_keeps_only_cti_variables_and_strips_inheritance_underscores() -> None:
    """Only CTI_* variables are kept (``__CTI_X`` is stored as ``CTI_X``); global VarSet (Channel none) is ignored."""
    t = CallTracker()
    events = feed(
        t,
        snap("Newchannel", "u1"),
        snap("VarSet", "u1", Variable="DIALSTATUS", Value="ANSWER"),
        snap("VarSet", "u1", Variable="__CTI_FLOW", Value="main"),
        snap("VarSet", "u1", Variable="_CTI_LANGUAGE", Value="en"),
        ev("VarSet", Channel="none", Uniqueid="none", Variable="CTI_GLOBAL", Value="1"),
    )
    assert [(v.name, v.value) for v in of(events, VariableSet)] == [("CTI_FLOW", "main"), ("CTI_LANGUAGE", "en")]
    assert t.variables(S, "u1") == {"CTI_FLOW": "main", "CTI_LANGUAGE": "en"}
    assert t.variables(S, "nope") == {}
    custom = CallTracker(cti_prefix="ACME_")
    feed(custom, snap("VarSet", "u1", Variable="ACME_X", Value="1"), snap("VarSet", "u1", Variable="CTI_X", Value="2"))
    assert custom.variables(S, "u1") == {"ACME_X": "1"}


def test_simple_call_lifecycle_events() -> None:
    """A dialled agent answers and hangs up: started, ringing once, answered, dial, bridged, hung up, ended."""
    t = CallTracker()
    events = simple_call(t, "c1", "a1")
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "CallStarted",
        "ChannelAnswered",
        "DialStarted",
        "ChannelRinging",
        "ChannelAnswered",
        "DialEnded",
        "CallBridged",
        "ChannelHungup",
        "ChannelHungup",
        "CallEnded",
    ]
    (dial,) = of(events, DialStarted)
    assert (dial.uniqueid, dial.dest_uniqueid) == ("c1", "a1")
    assert of(events, ChannelRinging)[0].uniqueid == "a1"
    (bridged,) = of(events, CallBridged)
    assert bridged.uniqueids == ("a1", "c1")
    (ended,) = of(events, CallEnded)
    assert (ended.answered, ended.up, ended.hung_up_by, ended.cause) == (True, True, "PJSIP/a1-0000", 16)
    assert t.stats()["channels"] == 0 and t.call(S, "c1") is None


def test_abandoned_call_is_up_but_not_answered_and_hung_up_by_the_caller() -> None:
    """A caller who hangs up while an agent still rings: not answered, hung up by the caller, ringing leg cancelled."""
    t = CallTracker()
    events = feed(
        t,
        snap("Newchannel", "c1", state=6),
        snap("Newchannel", "a1", "c1", state=0),
        snap("Newstate", "a1", "c1", state=5),
        snap("Hangup", "c1", **{"Cause": "16", "Cause-txt": "Normal Clearing"}),
        snap("Hangup", "a1", "c1", state=5, **{"Cause": "0", "Cause-txt": "Unknown"}),
    )
    (ended,) = of(events, CallEnded)
    assert (ended.answered, ended.up, ended.hung_up_by, ended.cause) == (False, True, "PJSIP/c1-0000", 16)


def test_ringing_is_emitted_once_per_channel() -> None:
    """DialBegin, DialState RINGING and Newstate Ringing for the same leg give one ChannelRinging."""
    t = CallTracker()
    events = feed(
        t,
        snap("Newchannel", "c1"),
        snap("Newchannel", "a1", "c1", state=0),
        snap("DialBegin", "c1", DestUniqueid="a1", DestLinkedid="c1"),
        snap("Newstate", "a1", "c1", state=5),
        snap("DialState", "c1", DestUniqueid="a1", DestLinkedid="c1", DialStatus="RINGING"),
    )
    assert len(of(events, ChannelRinging)) == 1


def test_local_pair_is_one_logical_leg() -> None:
    """Both halves of a Local pair in one bridge are not a conversation; a second leg entering is."""
    t = CallTracker()
    feed(
        t,
        snap("Newchannel", "l1", chan="Local/x@ctx-00000001;1"),
        snap("Newchannel", "l2", "l1", chan="Local/x@ctx-00000001;2"),
    )
    assert t.channel(S, "l1").local_peer == "l2" and t.channel(S, "l2").local_peer == "l1"  # paired by name
    assert t.channel(S, "l1").device == "Local/x@ctx"
    events = feed(
        t,
        snap("BridgeEnter", "l1", chan="Local/x@ctx-00000001;1", BridgeUniqueid="b"),
        snap("BridgeEnter", "l2", "l1", chan="Local/x@ctx-00000001;2", BridgeUniqueid="b"),
    )
    assert of(events, CallBridged) == []
    events = feed(t, snap("Newchannel", "p1", "l1"), snap("BridgeEnter", "p1", "l1", BridgeUniqueid="b"))
    assert len(of(events, CallBridged)) == 1


def test_local_bridge_event_pairs_channels_with_unusual_names() -> None:
    """LocalBridge pairs the halves it names even when names do not reveal it."""
    t = CallTracker()
    feed(t, snap("Newchannel", "x1"), snap("Newchannel", "x2", "x1"))
    feed(t, ev("LocalBridge", LocalOneUniqueid="x1", LocalTwoUniqueid="x2"))
    assert t.channel(S, "x1").local_peer == "x2"
    assert t.channel(S, "x1").leg == t.channel(S, "x2").leg


def test_malformed_and_unknown_events_never_raise_and_are_counted() -> None:
    """Events without Uniqueid, for unknown channels, or with junk values are counted, not fatal."""
    t = CallTracker()
    events = feed(
        t,
        ev("Newstate", Channel="PJSIP/x"),
        ev("Hangup", Uniqueid="ghost", Cause="x"),
        ev("BridgeEnter", Uniqueid="", BridgeUniqueid="b"),
        ev("LocalBridge", LocalOneUniqueid="a"),
        ev("BlindTransfer", TransfererUniqueid="nobody"),
        ev("AttendedTransfer"),
        ev("DeviceStateChange", Device="PJSIP/1"),
        ev("DialEnd", DestUniqueid="nobody"),
        AMIMessage([("Response", "Success"), ("ActionID", "1")]),
        ev("SomeFutureEvent", Uniqueid="u"),
    )
    assert events == []
    stats = t.stats()
    assert stats["malformed"] == 3 and stats["unknown_channel"] == 5 and stats["ignored"] == 2
    assert stats["channels"] == 0


def test_event_for_unseen_channel_creates_it_lazily() -> None:
    """A Newstate for a channel whose Newchannel we missed creates it (and its call) from the snapshot."""
    t = CallTracker()
    events = feed(t, snap("Newstate", "u9", state=5, CallerIDNum="+1555"))
    assert [type(e) for e in events] == [CallStarted, ChannelRinging]
    assert t.channel(S, "u9").caller_num == "+1555"
    assert t.stats()["lazy_created"] == 1
    feed(t, snap("Newchannel", "u9", state=5))  # the late Newchannel refreshes, does not duplicate
    assert t.stats()["channels"] == 1 and t.stats()["calls"] == 1


def test_late_events_do_not_resurrect_ended_channels() -> None:
    """NewCallerid or DialEnd arriving after a channel's Hangup (as Asterisk does) are dropped as late."""
    t = CallTracker()
    simple_call(t, "c1", "a1")
    events = feed(
        t,
        snap("NewCallerid", "a1", "c1"),
        snap("DialEnd", "c1", DestUniqueid="a1", DestLinkedid="c1", DialStatus="ANSWER"),
    )
    assert events == []
    assert t.stats()["channels"] == 0 and t.stats()["late"] >= 2


def test_dial_end_after_dest_hangup_still_reports_the_status() -> None:
    """DialEnd for a dest channel that already hung up still reports the dial result for the live caller."""
    t = CallTracker()
    feed(t, snap("Newchannel", "c1"), snap("Newchannel", "a1", "c1", state=0), snap("Hangup", "a1", "c1", Cause="17"))
    (ended,) = of(
        feed(t, snap("DialEnd", "c1", DestUniqueid="a1", DestChannel="PJSIP/a1-0000", DialStatus="BUSY")), DialEnded
    )
    assert (ended.call_id, ended.dest_uniqueid, ended.dest_channel, ended.status) == (
        "c1",
        "a1",
        "PJSIP/a1-0000",
        "BUSY",
    )


def test_linkedid_change_moves_the_channel_and_ends_the_emptied_call_as_merged() -> None:
    """When Asterisk gives a channel another Linkedid, it moves there; its old call, left empty, ends as merged."""
    t = CallTracker()
    feed(t, snap("Newchannel", "a"), snap("Newchannel", "b"))
    events = feed(t, snap("BridgeEnter", "a", BridgeUniqueid="br"), snap("BridgeEnter", "b", "a", BridgeUniqueid="br"))
    (merged,) = of(events, CallEnded)
    assert (merged.call_id, merged.merged_into, merged.cause_txt, merged.hung_up_by) == (
        "b",
        "a",
        "Merged into call a",
        None,
    )
    assert merged.answered is True
    assert t.channel(S, "b").linkedid == "a" and set(t.call(S, "a").channels) == {"a", "b"}
    assert t.stats()["calls"] == 1


def test_resync_keeps_live_creates_new_and_ends_vanished() -> None:
    """After a reconnect: a listed known channel is kept (and reports that it went Up meanwhile), an unknown
    listed channel starts its call, and a stale unlisted one ends with the outage cause, ending its call."""
    t = CallTracker()
    feed(t, snap("Newchannel", "keep", state=4), snap("Newchannel", "gone"))
    t.connection_lost(S, 10.0)
    listed = [
        AMIMessage(list(snap("CoreShowChannel", "keep", state=6).headers) + [("BridgeId", "")]),
        AMIMessage(list(snap("CoreShowChannel", "new", state=6).headers) + [("BridgeId", "")]),
    ]
    events = t.resync(S, listed, 11.0)
    assert [type(e) for e in events] == [ChannelAnswered, CallStarted, ChannelAnswered, ChannelHungup, CallEnded]
    hung = of(events, ChannelHungup)[0]
    assert (hung.uniqueid, hung.cause, hung.cause_txt) == ("gone", 0, VANISHED_TXT)
    ended = of(events, CallEnded)[0]
    assert (ended.call_id, ended.cause, ended.cause_txt, ended.duration) == ("gone", 0, VANISHED_TXT, 11.0)
    assert {c.uniqueid for c in t.channels(S)} == {"keep", "new"}
    assert t.stats()["stale"] == 0


def test_resync_rebuilds_bridges() -> None:
    """CoreShowChannel BridgeId values rebuild bridge membership and mark the call answered."""
    t = CallTracker()
    listed = [
        AMIMessage(list(snap("CoreShowChannel", "a").headers) + [("BridgeId", "br1")]),
        AMIMessage(list(snap("CoreShowChannel", "b", "a").headers) + [("BridgeId", "br1")]),
    ]
    t.resync(S, listed, 0.0)
    assert t.stats()["bridges"] == 1 and t.channel(S, "b").bridge_id == "br1"
    (ended,) = of(feed(t, snap("Hangup", "a", Cause="16"), snap("Hangup", "b", "a", Cause="16")), CallEnded)
    assert ended.answered is True
    assert t.stats()["bridges"] == 0


def test_an_event_after_reconnect_clears_staleness() -> None:
    """A channel that speaks after the reconnect is alive even if a racing CoreShowChannels missed it."""
    t = CallTracker()
    feed(t, snap("Newchannel", "u1"))
    t.connection_lost(S, 1.0)
    feed(t, snap("Newexten", "u1"))
    assert t.resync(S, [], 2.0) == []
    assert t.channel(S, "u1") is not None


def test_servers_are_isolated() -> None:
    """The same Uniqueid on two Asterisk servers is two channels; a resync of one leaves the other alone."""
    t = CallTracker()
    t.handle("a", snap("Newchannel", "u1"), 0.0)
    t.handle("b", snap("Newchannel", "u1"), 0.0)
    t.connection_lost("a", 1.0)
    t.resync("a", [], 2.0)
    assert t.channel("a", "u1") is None and t.channel("b", "u1") is not None


def test_nothing_grows_with_many_calls() -> None:
    """Thousands of completed calls leave no channel, call, bridge or name behind; only the last
    ``max_ended_kept`` ended calls stay readable."""
    t = CallTracker(max_ended_kept=5)
    for i in range(3000):
        simple_call(t, f"c{i}", f"a{i}", now=float(i))
    stats = t.stats()
    assert (stats["channels"], stats["calls"], stats["bridges"], stats["ended_kept"]) == (0, 0, 0, 5)
    kept = t.call(S, "c2999")
    assert kept is not None and kept.end_event is not None and kept.end_event.answered is True
    assert (kept.cause, kept.cause_txt, kept.hung_up_by, kept.ended) == (
        16,
        "Normal Clearing",
        "PJSIP/a2999-0000",
        2999.0,
    )
    assert t.call(S, "c2994") is None
    assert t.find_channel_by_name(S, "PJSIP/c1-0000") is None


def test_caps_on_devices_variables_channels_and_late_window() -> None:
    """Device table, per-channel variables, live channels and the recently-ended set are bounded."""
    t = CallTracker(max_devices=10, max_channels=3, late_window=4)
    for i in range(50):
        feed(t, ev("DeviceStateChange", Device=f"Local/{i}@c", State="INUSE"))
    assert t.stats()["devices"] == 10 and t.stats()["devices_evicted"] == 40
    assert t.device_state("Local/49@c") == "INUSE" and t.device_state("Local/0@c") is None
    for i in range(200):
        feed(t, snap("VarSet", "v", Variable=f"CTI_V{i}", Value="x"))
    assert len(t.variables(S, "v")) == 128 and t.stats()["vars_dropped"] == 72
    feed(t, snap("Newchannel", "n1"), snap("Newchannel", "n2"), snap("Newchannel", "n3"))
    assert t.stats()["channels"] == 3 and t.stats()["refused"] == 1
    t = CallTracker(late_window=4)
    for i in range(10):
        feed(t, snap("Newchannel", f"e{i}"), snap("Hangup", f"e{i}", Cause="16"))
    assert list(t._servers[S].recently_ended) == ["e6", "e7", "e8", "e9"]


def test_device_state_changes_only_on_change() -> None:
    """A repeated DeviceStateChange with the same state emits nothing."""
    t = CallTracker()
    events = feed(
        t,
        ev("DeviceStateChange", Device="PJSIP/1001", State="INUSE"),
        ev("DeviceStateChange", Device="PJSIP/1001", State="INUSE"),
        ev("DeviceStateChange", Device="PJSIP/1001", State="NOT_INUSE"),
    )
    assert [(d.device, d.state) for d in of(events, DeviceStateChanged)] == [
        ("PJSIP/1001", "INUSE"),
        ("PJSIP/1001", "NOT_INUSE"),
    ]


def test_one_device_name_on_two_pbxs_is_two_devices() -> None:
    """PJSIP/1001 on pbx2 going NOT_INUSE is news even if PJSIP/1001 on pbx1 was NOT_INUSE already (a node that
    took pbx2 over follows the agent's phone there)."""
    t = CallTracker()
    out = t.handle("pbx1", ev("DeviceStateChange", Device="PJSIP/1001", State="NOT_INUSE"), 0.0)
    out += t.handle("pbx2", ev("DeviceStateChange", Device="PJSIP/1001", State="INUSE"), 1.0)
    out += t.handle("pbx2", ev("DeviceStateChange", Device="PJSIP/1001", State="NOT_INUSE"), 2.0)
    assert [(d.server, d.state) for d in of(out, DeviceStateChanged)] == [
        ("pbx1", "NOT_INUSE"), ("pbx2", "INUSE"), ("pbx2", "NOT_INUSE")]
    assert t.device_state("PJSIP/1001", "pbx1") == "NOT_INUSE" and t.device_state("PJSIP/1001") == "NOT_INUSE"
    t.handle("pbx1", ev("DeviceStateChange", Device="PJSIP/1001", State="RINGING"), 3.0)
    assert t.device_state("PJSIP/1001") == "RINGING" and t.device_state("PJSIP/1001", "pbx2") == "NOT_INUSE"


def test_rename_updates_name_index() -> None:
    """A Rename (masquerade) moves the channel to its new name for find_channel_by_name."""
    t = CallTracker()
    feed(t, snap("Newchannel", "u1", chan="PJSIP/1001-00000001"))
    feed(t, ev("Rename", Channel="PJSIP/1001-00000001", Newname="PJSIP/1001-00000001<ZOMBIE>", Uniqueid="u1"))
    assert t.find_channel_by_name(S, "PJSIP/1001-00000001") is None
    assert t.find_channel_by_name(S, "PJSIP/1001-00000001<ZOMBIE>").uniqueid == "u1"


def test_device_of() -> None:
    """Channel names map to the device names DeviceStateChange uses."""
    assert device_of("PJSIP/1001-0000000a") == "PJSIP/1001"
    assert device_of("Local/agent1@agents-00000001;2") == "Local/agent1@agents"
    assert device_of("PJSIP/trunk-a-00000001") == "PJSIP/trunk-a"
    assert device_of("Custom") == "Custom"


EVENT_NAMES = [
    "Newchannel",
    "Newstate",
    "Newexten",
    "NewCallerid",
    "NewConnectedLine",
    "VarSet",
    "Hangup",
    "LocalBridge",
    "DialBegin",
    "DialState",
    "DialEnd",
    "BridgeEnter",
    "BridgeLeave",
    "BridgeDestroy",
    "BlindTransfer",
    "AttendedTransfer",
    "DeviceStateChange",
    "OriginateResponse",
    "UserEvent",
    "Rename",
    "Hold",
    "Unhold",
]
KEYS = [
    "Uniqueid",
    "Linkedid",
    "Channel",
    "ChannelState",
    "DestUniqueid",
    "DestLinkedid",
    "BridgeUniqueid",
    "Variable",
    "Value",
    "Cause",
    "LocalOneUniqueid",
    "LocalTwoUniqueid",
    "TransfererUniqueid",
    "OrigTransfererUniqueid",
    "SecondTransfererUniqueid",
    "DestType",
    "DestBridgeUniqueid",
    "UserEvent",
    "Priority",
    "Device",
    "State",
    "Reason",
    "Newname",
    "Result",
    "Context",
    "Exten",
]
VALUES = st.sampled_from(
    [
        "u1",
        "u2",
        "u3",
        "",
        "none",
        "<unknown>",
        "CTI_X",
        "__CTI_Y",
        "6",
        "5",
        "-1",
        "x" * 3,
        "CTIQueued",
        "CTIReturned",
        "CTIAmd",
        "Bridge",
        "Success",
        "Local/a@b-1;1",
        "b1",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(EVENT_NAMES), st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=10)),
        max_size=40,
    )
)
def test_random_events_never_raise_and_stay_consistent(script: list) -> None:
    """Any sequence of known event names with arbitrary headers is handled without an exception, and afterwards
    every live channel belongs to a live call of its Linkedid and every bridge member is a live channel."""
    t = CallTracker(max_ended_kept=2)
    for i, (name, headers) in enumerate(script):
        t.handle(S, AMIMessage([("Event", name), *headers]), float(i))
        if i % 17 == 16:
            t.connection_lost(S, float(i))
    t.resync(S, [AMIMessage([("Event", "CoreShowChannel"), ("Uniqueid", "u1"), ("Linkedid", "u2")])], 99.0)
    server = t._servers.get(S)
    if server is None:
        return
    for uid, ch in server.channels.items():
        assert ch.call is server.calls[ch.linkedid] and uid in ch.call.channels
    for members in server.bridges.values():
        assert members and all(u in server.channels for u in members)
    for call in server.calls.values():
        assert call.channels and all(c.linkedid == call.linkedid for c in call.channels.values())


def test_resync_backdates_a_channel_first_seen_by_its_duration() -> None:
    """A channel first seen in a resync's CoreShowChannel list has lived for its Duration already: its
    call's start (CallStarted time, Call.created) is back-dated by it, so the call's duration counts it;
    a channel known before the outage keeps its real start."""
    t = CallTracker()
    feed(t, snap("Newchannel", "keep", state=6), now=100.0)
    t.connection_lost(S, 200.0)
    listed = [
        AMIMessage(list(snap("CoreShowChannel", "keep").headers) + [("Duration", "00:15:00"), ("BridgeId", "")]),
        AMIMessage(list(snap("CoreShowChannel", "new").headers) + [("Duration", "01:02:05"), ("BridgeId", "")]),
        AMIMessage(list(snap("CoreShowChannel", "new2", "new").headers) + [("Duration", "00:00:40"), ("BridgeId", "")]),
        AMIMessage(list(snap("CoreShowChannel", "odd").headers) + [("Duration", "junk"), ("BridgeId", "")]),
    ]
    events = t.resync(S, listed, 5000.0)
    started = {e.call_id: e.ts for e in of(events, CallStarted)}
    assert started == {"new": 5000.0 - 3725, "odd": 5000.0}
    assert t.call(S, "new").created == 5000.0 - 3725 and t.channel(S, "new2").created == 5000.0 - 40
    assert t.call(S, "keep").created == 100.0
    ended = of(feed(t, snap("Hangup", "new", Cause="16"), snap("Hangup", "new2", "new", Cause="16"),
                    snap("Hangup", "keep", Cause="16"), now=5010.0), CallEnded)
    assert {e.call_id: e.duration for e in ended} == {"new": 3735.0, "keep": 4910.0}


def _agent_call(t: CallTracker) -> None:
    """Caller c (in the cti-agent Dial) talks to agent a in bridge br1 (the shape of a real offer)."""
    feed(
        t,
        snap("Newchannel", "c", state=6, Context="cti-agent"),
        snap("Newchannel", "a", "c", state=0, chan="PJSIP/agent-0001", Context="agents"),
        snap("Newstate", "a", "c", chan="PJSIP/agent-0001", Context="agents"),
        snap("BridgeEnter", "a", "c", chan="PJSIP/agent-0001", BridgeUniqueid="br1"),
        snap("BridgeEnter", "c", BridgeUniqueid="br1"),
    )


def _attended_transfer(c: str = "c", a: str = "a", target: str = "t") -> AMIMessage:
    """AttendedTransfer as Asterisk 22 writes it (hangup_redirect.txt): both transferer snapshots name the agent."""
    headers = [("Event", "AttendedTransfer"), ("Privilege", "call,all"), ("Result", "Success")]
    for prefix in ("OrigTransferer", "SecondTransferer"):
        headers += [(prefix + "Channel", "PJSIP/agent-0001"), (prefix + "ChannelState", "6"),
                    (prefix + "Uniqueid", a), (prefix + "Linkedid", c)]
    headers += [("TransfereeChannel", f"PJSIP/{c}-0000"), ("TransfereeUniqueid", c), ("TransfereeLinkedid", c),
                ("TransferTargetChannel", f"PJSIP/{target}-0000"), ("TransferTargetUniqueid", target),
                ("DestType", "Bridge"), ("DestBridgeUniqueid", "br1")]
    return AMIMessage(headers)


def test_transferer_hanging_up_before_the_attended_transfer_event_did_not_end_the_call() -> None:
    """Asterisk sends the transferer's Hangup BEFORE the AttendedTransfer event. The agent who completed the
    transfer is still not the party who ended the call (the target who hangs up later is), and the transfer
    is still reported though the agent's channel is gone."""
    t = CallTracker()
    _agent_call(t)
    events = feed(
        t,
        snap("Hold", "a", "c", chan="PJSIP/agent-0001"),
        snap("Newchannel", "t", "c", state=0, Context="cti-consult"),
        snap("Newstate", "t", "c"),
        snap("BridgeEnter", "t", "c", BridgeUniqueid="br2"),
        snap("BridgeLeave", "a", "c", chan="PJSIP/agent-0001", BridgeUniqueid="br1"),
        snap("BridgeEnter", "a", "c", chan="PJSIP/agent-0001", BridgeUniqueid="br2"),
        # the agent completes: its channel leaves and hangs up, the target joins the caller, then the event
        snap("BridgeLeave", "a", "c", chan="PJSIP/agent-0001", BridgeUniqueid="br2"),
        snap("Hangup", "a", "c", chan="PJSIP/agent-0001", Cause="16", **{"Cause-txt": "Normal Clearing"}),
        snap("BridgeLeave", "t", "c", BridgeUniqueid="br2"),
        snap("BridgeEnter", "t", "c", BridgeUniqueid="br1"),
        _attended_transfer(),
        snap("BridgeLeave", "t", "c", BridgeUniqueid="br1"),
        snap("Hangup", "t", "c", Cause="16", **{"Cause-txt": "Normal Clearing"}),
        snap("BridgeLeave", "c", BridgeUniqueid="br1"),
        snap("Hangup", "c", Cause="16", **{"Cause-txt": "Normal Clearing"}),
    )
    (transfer,) = of(events, CallTransferred)
    assert (transfer.call_id, transfer.kind, transfer.uniqueid, transfer.channel, transfer.result) == (
        "c", "attended", "a", "PJSIP/agent-0001", "Success")
    (ended,) = of(events, CallEnded)
    assert (ended.hung_up_by, ended.answered, ended.cause) == ("PJSIP/t-0000", True, 16)


def test_channels_left_behind_by_a_dual_redirect_did_not_end_the_call() -> None:
    """A Redirect with ExtraChannel moves two channels at once (here the caller and the consulted target,
    out of their bridges with the agent's two legs, to meet elsewhere). Asterisk hangs up the legs left alone
    in those bridges; neither those hang-ups nor the move make anyone the party who ended the call: the one
    who hangs up in the new conversation did."""
    t = CallTracker()
    _agent_call(t)
    events = feed(
        t,
        snap("Newchannel", "a2", "c", chan="PJSIP/agent-0002", Context="cti-consult"),
        snap("Newchannel", "t", "c", state=0, Context="targets"),
        snap("Newstate", "t", "c"),
        snap("BridgeEnter", "a2", "c", chan="PJSIP/agent-0002", BridgeUniqueid="br2"),
        snap("BridgeEnter", "t", "c", BridgeUniqueid="br2"),
        # Redirect Channel=c ExtraChannel=t: both leave their bridges alive; the agent's legs are hung up
        snap("BridgeLeave", "c", BridgeUniqueid="br1"),
        snap("BridgeLeave", "t", "c", BridgeUniqueid="br2"),
        snap("BridgeLeave", "a", "c", chan="PJSIP/agent-0001", BridgeUniqueid="br1"),
        snap("Hangup", "a", "c", chan="PJSIP/agent-0001", Cause="16"),
        snap("BridgeLeave", "a2", "c", chan="PJSIP/agent-0002", BridgeUniqueid="br2"),
        snap("Hangup", "a2", "c", chan="PJSIP/agent-0002", Cause="16"),
        snap("Newexten", "c", Context="cti-joined"),
        snap("Newexten", "t", "c", Context="cti-joined"),
        snap("BridgeEnter", "c", BridgeUniqueid="br3"),
        snap("BridgeEnter", "t", "c", BridgeUniqueid="br3"),
        snap("BridgeLeave", "c", BridgeUniqueid="br3"),
        snap("Hangup", "c", Cause="16"),
        snap("BridgeLeave", "t", "c", BridgeUniqueid="br3"),
        snap("Hangup", "t", "c", Cause="16"),
    )
    (ended,) = of(events, CallEnded)
    assert ended.hung_up_by == "PJSIP/c-0000"


def test_agent_left_behind_by_a_redirect_to_the_queue_did_not_end_the_call() -> None:
    """A caller Redirected back to the queue leaves the agent's leg alone in the Dial bridge and Asterisk hangs
    it up; when the caller then gives up waiting, the caller ended the call, not that agent."""
    t = CallTracker()
    _agent_call(t)
    events = feed(
        t,
        snap("BridgeLeave", "c", BridgeUniqueid="br1"),
        snap("BridgeLeave", "a", "c", chan="PJSIP/agent-0001", BridgeUniqueid="br1"),
        snap("Hangup", "a", "c", chan="PJSIP/agent-0001", Cause="16"),
        snap("Newexten", "c", Context="cti-hold"),
        snap("Hangup", "c", Cause="16"),
    )
    (ended,) = of(events, CallEnded)
    assert (ended.hung_up_by, ended.answered) == ("PJSIP/c-0000", True)


def test_who_hung_up_first_while_connected_ended_the_call_whatever_the_event_order() -> None:
    """The caller hangs up in a call with the agent: whether Asterisk reports the caller's Hangup before or after
    the agent's (who is hung up because the caller left), the caller ended the call."""
    for caller_first in (True, False):
        t = CallTracker()
        _agent_call(t)
        leave_c = snap("BridgeLeave", "c", BridgeUniqueid="br1")
        hang_c = snap("Hangup", "c", Cause="16")
        leave_a = snap("BridgeLeave", "a", "c", chan="PJSIP/agent-0001", BridgeUniqueid="br1")
        hang_a = snap("Hangup", "a", "c", chan="PJSIP/agent-0001", Cause="16")
        order = [leave_c, hang_c, leave_a, hang_a] if caller_first else [leave_c, leave_a, hang_a, hang_c]
        (ended,) = of(feed(t, *order), CallEnded)
        assert ended.hung_up_by == "PJSIP/c-0000", caller_first


def test_hold_by_dual_redirect_then_hangups_on_hold() -> None:
    """Console hold: a Redirect with ExtraChannel moves the caller to music and the agent's leg aside; neither
    move ends anything. Whoever then hangs up first ended the call."""
    for first, second, who in (("a", "c", "PJSIP/agent-0001"), ("c", "a", "PJSIP/c-0000")):
        t = CallTracker()
        _agent_call(t)
        chans = {"a": ("a", "c", "PJSIP/agent-0001"), "c": ("c", "c", None)}
        events = feed(
            t,
            snap("BridgeLeave", "c", BridgeUniqueid="br1"),
            snap("BridgeLeave", "a", "c", chan="PJSIP/agent-0001", BridgeUniqueid="br1"),
            snap("Newexten", "c", Context="cti-onhold"),
            snap("Newexten", "a", "c", chan="PJSIP/agent-0001", Context="cti-agent-onhold"),
            snap("Hangup", chans[first][0], chans[first][1], chan=chans[first][2], Cause="16"),
            snap("Hangup", chans[second][0], chans[second][1], chan=chans[second][2], Cause="16"),
        )
        (ended,) = of(events, CallEnded)
        assert ended.hung_up_by == who
