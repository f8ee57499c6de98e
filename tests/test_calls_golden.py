"""Golden tests: the call tracker replays the real Asterisk 22 transcripts and rebuilds their calls exactly.

Expected values come from the scenario descriptions in the fixtures' README.md and from the bytes
(uniqueids, channel names, hangup causes) and are written out as literals.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cti.ami.message import AMIMessage
from cti.ami.protocol import AMIParser, ParseError
from cti.calls import VANISHED_TXT, CallTracker
from cti.events import (
    CallBridged,
    CallEnded,
    CallStarted,
    CallTransferred,
    ChannelHungup,
    DeviceStateChanged,
    DialEnded,
    DomainEvent,
    OriginateResult,
    VariableSet,
)
from tests.transcripts import AMI_TRANSCRIPTS, load_ami_messages

SERVER = "pbx1"


def replay(messages: list[AMIMessage], tracker: CallTracker | None = None) -> tuple[CallTracker, list[DomainEvent]]:
    tracker = tracker or CallTracker()
    events: list[DomainEvent] = []
    for i, msg in enumerate(messages):
        events.extend(tracker.handle(SERVER, msg, float(i)))
    return tracker, events


def of(events: list[DomainEvent], cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


def outcome(ended: list[CallEnded]) -> dict[str, tuple[bool, bool, str | None, int, str]]:
    """call id -> (answered, up, hung_up_by, cause, cause_txt)."""
    return {e.call_id: (e.answered, e.up, e.hung_up_by, e.cause, e.cause_txt) for e in ended}


def index_of(messages: list[AMIMessage], event: str, action_id: str) -> int:
    return next(i for i, m in enumerate(messages) if m.name == event and m.action_id == action_id)


def list_items(messages: list[AMIMessage], action_id: str) -> list[AMIMessage]:
    return [m for m in messages if m.name == "CoreShowChannel" and m.action_id == action_id]


@pytest.mark.parametrize("name", AMI_TRANSCRIPTS)
def test_every_transcript_replays_cleanly_and_leaves_nothing_behind(fixtures_dir: Path, name: str) -> None:
    """Every transcript parses; the tracker sees no malformed or unknown-channel event, creates no channel
    lazily, pairs every CallStarted with one CallEnded, and ends with no live channel, call or bridge."""
    messages = load_ami_messages(fixtures_dir / f"{name}.txt")
    assert messages
    tracker, events = replay(messages)
    started = [e.call_id for e in of(events, CallStarted)]
    ended = [e.call_id for e in of(events, CallEnded)]
    assert sorted(started) == sorted(ended)
    assert len(set(started)) == len(started)
    stats = tracker.stats()
    assert stats["events"] == len(messages)
    assert (stats["channels"], stats["calls"], stats["bridges"]) == (0, 0, 0)
    assert (stats["malformed"], stats["unknown_channel"], stats["lazy_created"], stats["refused"]) == (0, 0, 0, 0)


def test_calls_per_transcript(fixtures_dir: Path) -> None:
    """How many calls (Linkedids) and channels each scenario has."""
    counts = {}
    for name in AMI_TRANSCRIPTS:
        _, events = replay(load_ami_messages(fixtures_dir / f"{name}.txt"))
        counts[name] = (len(of(events, CallStarted)), len(of(events, ChannelHungup)))
    assert counts == {
        "login": (0, 0),
        "inbound_queue": (1, 6),
        "queue_member_ops": (0, 0),
        "originate_outbound": (9, 20),
        "fastagi_ami": (2, 4),
        "hangup_redirect": (4, 12),
        "burst": (50, 180),
    }


def test_inbound_queue_call(fixtures_dir: Path) -> None:
    """The queued caller rings agent1 (no answer, cancelled), is answered by agent2 and the agent hangs up."""
    tracker, events = replay(load_ami_messages(fixtures_dir / "inbound_queue.txt"))
    assert outcome(of(events, CallEnded)) == {
        "1795442980.0": (True, True, "Local/agent2@agents-00000002;2", 16, "Normal Clearing"),
    }
    (ended,) = of(events, CallEnded)
    assert ended.channels == (
        "Local/caller@sim-00000000;1",
        "Local/caller@sim-00000000;2",
        "Local/agent1@agents-00000001;1",
        "Local/agent1@agents-00000001;2",
        "Local/agent2@agents-00000002;1",
        "Local/agent2@agents-00000002;2",
    )
    assert [(d.dest_channel, d.status) for d in of(events, DialEnded)] == [
        ("Local/caller@sim-00000000;1", "ANSWER"),
        ("Local/agent1@agents-00000001;1", "NOANSWER"),
        ("Local/agent1@agents-00000001;1", "CANCEL"),
        ("Local/agent2@agents-00000002;1", "ANSWER"),
    ]
    (bridged,) = of(events, CallBridged)
    assert bridged.call_id == "1795442980.0"
    assert bridged.channels == ("Local/agent2@agents-00000002;1", "Local/caller@sim-00000000;1")
    assert [(v.uniqueid, v.name, v.value) for v in of(events, VariableSet)] == [
        ("1795442980.0", "CTI_SOURCE", "pstn"),
        ("1795442980.1", "CTI_SOURCE", "pstn"),
        ("1795442980.0", "CTI_TICKET", "T-1795442980.0"),
    ]
    (orig,) = of(events, OriginateResult)
    assert (orig.action_id, orig.success, orig.reason, orig.uniqueid) == ("orig-inbound-005", True, 4, "1795442980.0")
    assert [e.cause for e in of(events, ChannelHungup)] == [0, 0, 16, 16, 16, 16]
    assert tracker.device_state("Local/agent2@agents") == "NOT_INUSE"


def test_inbound_queue_state_while_connected(fixtures_dir: Path) -> None:
    """While the caller talks to agent2: 4 live channels (agent1's pair is gone), one call, one bridge;
    the caller's channel has its CTI_* variables, its Local peer, the queue's context and the agent's connected line."""
    messages = load_ami_messages(fixtures_dir / "inbound_queue.txt")
    upto = index_of(messages, "QueueStatusComplete", "queuestatus-008")
    tracker, _ = replay(messages[:upto])
    stats = tracker.stats()
    assert (stats["channels"], stats["calls"], stats["bridges"]) == (4, 1, 1)
    caller = tracker.find_channel_by_name(SERVER, "Local/caller@sim-00000000;1")
    assert caller is not None and caller.uniqueid == "1795442980.0"
    assert tracker.variables(SERVER, "1795442980.0") == {"CTI_SOURCE": "pstn", "CTI_TICKET": "T-1795442980.0"}
    assert caller.local_peer == "1795442980.1"
    assert (caller.context, caller.exten, caller.state, caller.state_desc) == ("inbound", "support", 6, "Up")
    assert (caller.caller_num, caller.caller_name) == ("+15551230001", "Jane Customer")
    assert caller.bridge_id == "0f8871da-900c-4efb-92d9-3c4ae042855f"
    agent = tracker.channel(SERVER, "1795442985.4")
    assert agent is not None and agent.dialed_by == "1795442980.0" and agent.device == "Local/agent2@agents"
    call = tracker.call(SERVER, "1795442980.0")
    assert call is not None and call.answered is not None and len(call.channels) == 4
    assert tracker.device_state("Local/agent2@agents") == "INUSE"


def test_originate_outbound_calls(fixtures_dir: Path) -> None:
    """Each dialer-style Originate becomes one call with the right answer flags, hang-up side and cause."""
    _, events = replay(load_ami_messages(fixtures_dir / "originate_outbound.txt"))
    assert outcome(of(events, CallEnded)) == {
        # dial-ok-6000: customer answers, 6000 waits 10 s then hangs up
        "1795443000.0": (False, True, "Local/5551234@customers-00000000;1", 16, "Normal Clearing"),
        # dial-ok-queue: agent5 answers from Queue(sales) and hangs up
        "1795443001.2": (True, True, "Local/agent5@agents-00000002;2", 16, "Normal Clearing"),
        "1795443006.6": (False, False, "Local/5550000@customers-00000003;2", 17, "User busy"),  # dial-busy
        "1795443006.8": (False, False, "Local/5550001@customers-00000004;2", 34, "Circuit/channel congestion"),
        "1795443006.10": (False, False, "Local/5559999@customers-00000005;2", 19, "User alerting, no answer"),
        "1795443009.12": (False, False, "Local/5550404@customers-00000006;2", 0, "Unknown"),  # dial-noexten
        "1795443009.14": (False, True, "Local/5551234@customers-00000007;1", 0, "Unknown"),  # dial-app: Playback ends
        "1795443010.16": (False, True, "Local/5551234@customers-00000008;1", 16, "Normal Clearing"),  # dial-sync-ok
        "1795443011.18": (False, False, "Local/5550000@customers-00000009;2", 17, "User busy"),  # dial-sync-busy
    }
    results = {o.action_id: (o.success, o.reason, o.channel, o.uniqueid) for o in of(events, OriginateResult)}
    assert results == {
        "dial-ok-6000": (True, 4, "Local/5551234@customers-00000000;1", "1795443000.0"),
        "dial-ok-queue": (True, 4, "Local/5551234@customers-00000001;1", "1795443001.2"),
        "dial-busy": (False, 5, "Local/5550000@customers", None),
        "dial-congestion": (False, 8, "Local/5550001@customers", None),
        "dial-noanswer": (False, 3, "Local/5559999@customers", None),
        "dial-noexten": (False, 0, "Local/5550404@customers", None),
        "dial-app": (True, 4, "Local/5551234@customers-00000007;1", "1795443009.14"),
        "dial-bad-tech": (False, 0, "PJSIP/nobody", None),
    }


def test_fastagi_calls(fixtures_dir: Path) -> None:
    """The IVR caller is hung up by the dialplan after the AGI; the second caller hangs up mid-script."""
    _, events = replay(load_ami_messages(fixtures_dir / "fastagi_ami.txt"))
    assert outcome(of(events, CallEnded)) == {
        "1795443026.0": (False, True, "Local/dtmfcaller@sim-00000000;1", 16, "Normal Clearing"),
        "1795443038.2": (False, True, "Local/hangupcaller@sim-00000001;2", 16, "Normal Clearing"),
    }
    assert [(v.name, v.value) for v in of(events, VariableSet)] == [
        ("CTI_TICKET", "IVR-1795443026.0"),
        ("CTI_CHOICE", "1234"),
        ("CTI_EXEC", "done"),
        ("CTI_TICKET", "IVR-1795443038.2"),
    ]


def test_hangup_redirect_calls_and_transfers(fixtures_dir: Path) -> None:
    """AMI Hangup, AMI Bridge of two held calls (Asterisk moves held 3's ;1 into held 2's call), a blind and an
    attended transfer, and the final regex Hangup: four calls with their transfers, answers and hang-ups."""
    _, events = replay(load_ami_messages(fixtures_dir / "hangup_redirect.txt"))
    assert outcome(of(events, CallEnded)) == {
        "1795443046.0": (False, True, "Local/hold@sim-00000000;1", 16, "Normal Clearing"),
        "1795443048.2": (True, True, "Local/hold@sim-00000002;1", 16, "Normal Clearing"),
        "1795443048.4": (True, True, "Local/hold@sim-00000002;2", 16, "Normal Clearing"),
        "1795443052.8": (True, True, "Local/7000@redirected-00000005;1", 16, "Normal Clearing"),
    }
    transfers = [
        (t.call_id, t.kind, t.channel, t.target, t.result, t.transferee_channel) for t in of(events, CallTransferred)
    ]
    assert transfers == [
        (
            "1795443048.2",
            "blind",
            "Local/hold@sim-00000001;1",
            "7000@redirected",
            "Success",
            "Local/hold@sim-00000002;1",
        ),
        (
            "1795443052.8",
            "attended",
            "Local/longagent@agents-00000004;1",
            "Local/7000@redirected-00000005;1",
            "Success",
            "Local/hold@sim-00000003;1",
        ),
    ]
    assert [(b.call_id, b.channels) for b in of(events, CallBridged)] == [
        ("1795443048.2", ("Local/hold@sim-00000001;1", "Local/hold@sim-00000002;1")),
        ("1795443052.8", ("Local/longagent@agents-00000004;1", "Local/hold@sim-00000003;1")),
        ("1795443052.8", ("Local/7000@redirected-00000005;1", "Local/longagent@agents-00000004;1")),
        ("1795443052.8", ("Local/hold@sim-00000003;1", "Local/7000@redirected-00000005;1")),
    ]
    (var,) = of(events, VariableSet)
    assert (var.uniqueid, var.name, var.value) == ("1795443046.0", "CTI_NOTE", "vip")


def test_hangup_redirect_live_state_matches_core_show_channels(fixtures_dir: Path) -> None:
    """At every CoreShowChannels answer, the tracker's live channels are exactly the listed ones, with the
    listed Linkedids (after the AMI Bridge, held 3's ;1 belongs to held 2's call) and names."""
    messages = load_ami_messages(fixtures_dir / "hangup_redirect.txt")
    action_ids = sorted({m.action_id for m in messages if m.name == "CoreShowChannelsComplete"})
    assert len(action_ids) == 6
    for action_id in action_ids:
        tracker, _ = replay(messages[: index_of(messages, "CoreShowChannelsComplete", action_id)])
        listed = {(m["Uniqueid"], m["Linkedid"], m["Channel"]) for m in list_items(messages, action_id)}
        live = {(c.uniqueid, c.linkedid, c.name) for c in tracker.channels(SERVER)}
        assert live == listed, action_id


def test_hangup_redirect_attended_transfer_state(fixtures_dir: Path) -> None:
    """During the attended transfer the agent's channel is on hold and in the consultation bridge with 7000."""
    messages = load_ami_messages(fixtures_dir / "hangup_redirect.txt")
    tracker, _ = replay(messages[: index_of(messages, "CoreShowChannelsComplete", "coreshowchannels-023")])
    agent = tracker.find_channel_by_name(SERVER, "Local/longagent@agents-00000004;1")
    target = tracker.find_channel_by_name(SERVER, "Local/7000@redirected-00000005;1")
    assert agent is not None and target is not None
    assert agent.on_hold is True
    assert agent.bridge_id == target.bridge_id == "cef828db-d624-4ee8-ab48-f746a019b529"
    assert (agent.caller_num, agent.exten) == ("xferdial", "")


def test_burst_fifty_calls(fixtures_dir: Path) -> None:
    """burst.txt: 50 calls, 40 answered by the five agents (who hang up), 10 callers abandon after 20 s."""
    _, events = replay(load_ami_messages(fixtures_dir / "burst.txt"))
    ended = of(events, CallEnded)
    assert len(ended) == 50
    summary = Counter(
        (
            e.answered,
            e.up,
            e.hung_up_by.split("-")[0] + e.hung_up_by[-2:] if e.hung_up_by else None,
            e.cause,
            len(e.channels),
        )
        for e in ended
    )
    assert summary == Counter(
        {
            (False, True, "Local/impatient@sim;2", 16, 2): 10,
            (True, True, "Local/bagent1@agents;2", 16, 4): 8,
            (True, True, "Local/bagent2@agents;2", 16, 4): 8,
            (True, True, "Local/bagent3@agents;2", 16, 4): 8,
            (True, True, "Local/bagent4@agents;2", 16, 4): 8,
            (True, True, "Local/bagent5@agents;2", 16, 4): 8,
        }
    )
    assert len(of(events, CallBridged)) == 40
    assert len(of(events, OriginateResult)) == 50


def test_burst_mid_state_matches_core_show_channels(fixtures_dir: Path) -> None:
    """Mid-burst, the tracker's live channels are exactly the 90 that CoreShowChannels lists."""
    messages = load_ami_messages(fixtures_dir / "burst.txt")
    at = index_of(messages, "CoreShowChannelsComplete", "coreshowchannels-009")
    tracker, _ = replay(messages[:at])
    listed = {m["Uniqueid"] for m in list_items(messages, "coreshowchannels-009")}
    assert len(listed) == 90
    assert {c.uniqueid for c in tracker.channels(SERVER)} == listed


def test_burst_resync_after_outage_ends_vanished_calls(fixtures_dir: Path) -> None:
    """Connection lost mid-burst and the reconnect finds no channel (e.g. Asterisk restarted): every live channel
    ends "Vanished during AMI outage", every live call ends once with cause 0; the old calls' later events are
    late and resurrect nothing; memory is back to empty."""
    messages = load_ami_messages(fixtures_dir / "burst.txt")
    at = index_of(messages, "CoreShowChannelsComplete", "coreshowchannels-009")
    tracker, before = replay(messages[:at])
    live_calls = {c.linkedid for c in tracker.calls(SERVER)}
    assert len(live_calls) == 40
    assert tracker.connection_lost(SERVER, 1000.0) == []
    assert tracker.stats()["stale"] == 90
    events = tracker.resync(SERVER, [], 1001.0)
    hungup = of(events, ChannelHungup)
    assert len(hungup) == 90 and {(h.cause, h.cause_txt) for h in hungup} == {(0, VANISHED_TXT)}
    ended = of(events, CallEnded)
    assert {e.call_id for e in ended} == live_calls and len(ended) == 40
    assert {(e.cause, e.cause_txt, e.hung_up_by) for e in ended} == {(0, VANISHED_TXT, None)}
    assert tracker.stats()["channels"] == 0
    _, after = replay(messages[at:], tracker)
    vanished = {h.uniqueid for h in hungup}
    assert not vanished & {h.uniqueid for h in of(after, ChannelHungup)}
    assert sorted(e.call_id for e in of(after, CallStarted)) == sorted(e.call_id for e in of(after, CallEnded))
    stats = tracker.stats()
    assert (stats["channels"], stats["calls"], stats["bridges"], stats["lazy_created"]) == (0, 0, 0, 0)
    assert stats["late"] > 100


def test_burst_resync_with_everything_alive_changes_nothing(fixtures_dir: Path) -> None:
    """A reconnect whose CoreShowChannels lists every channel we knew keeps them all and emits nothing."""
    messages = load_ami_messages(fixtures_dir / "burst.txt")
    at = index_of(messages, "CoreShowChannelsComplete", "coreshowchannels-009")
    tracker, _ = replay(messages[:at])
    tracker.connection_lost(SERVER, 1000.0)
    assert tracker.resync(SERVER, list_items(messages, "coreshowchannels-009"), 1001.0) == []
    stats = tracker.stats()
    assert (stats["channels"], stats["stale"], stats["vanished"]) == (90, 0, 0)
    _, after = replay(messages[at:], tracker)
    assert len(of(after, CallEnded)) == 40
    assert tracker.stats()["channels"] == 0


def test_hangup_redirect_resync_ends_only_the_vanished_agent(fixtures_dir: Path) -> None:
    """Outage during the attended transfer: the agent's Local pair is gone when we come back (listed by the
    next CoreShowChannels without it), so only those two channels end as vanished; the call goes on, and
    then ends normally with the later events."""
    messages = load_ami_messages(fixtures_dir / "hangup_redirect.txt")
    lost_at = index_of(messages, "CoreShowChannelsComplete", "coreshowchannels-023")
    back_at = index_of(messages, "CoreShowChannelsComplete", "coreshowchannels-026")
    tracker, _ = replay(messages[:lost_at])
    tracker.connection_lost(SERVER, 500.0)
    events = tracker.resync(SERVER, list_items(messages, "coreshowchannels-026"), 501.0)
    assert [(type(e).__name__, getattr(e, "channel", None)) for e in events] == [
        ("ChannelHungup", "Local/longagent@agents-00000004;1"),
        ("ChannelHungup", "Local/longagent@agents-00000004;2"),
    ]
    assert tracker.stats()["channels"] == 6
    _, after = replay(messages[back_at:], tracker)
    assert sorted(e.call_id for e in of(after, CallEnded)) == ["1795443048.2", "1795443048.4", "1795443052.8"]
    assert tracker.stats()["channels"] == 0


def test_queue_member_ops_device_states(fixtures_dir: Path) -> None:
    """Custom:agent3 is driven INUSE, RINGING, NOT_INUSE, UNAVAILABLE, NOT_INUSE; no calls appear."""
    tracker, events = replay(load_ami_messages(fixtures_dir / "queue_member_ops.txt"))
    states = [d.state for d in of(events, DeviceStateChanged) if d.device == "Custom:agent3"]
    assert states == ["INUSE", "RINGING", "NOT_INUSE", "UNAVAILABLE", "NOT_INUSE"]
    assert tracker.device_state("Custom:agent3") == "NOT_INUSE"
    assert tracker.device_state("Queue:sales_avail") == "INUSE"
    assert tracker.device_state("PJSIP/none") is None
    assert of(events, CallStarted) == []


def test_burst_through_the_parser_at_real_tcp_boundaries_and_times(fixtures_dir: Path) -> None:
    """Fed through AMIParser chunk by chunk as the bytes arrived, with the capture's clock as ``now``, the
    burst rebuilds the same 50 outcomes; abandoned callers lasted their 20 s in queue, answered calls at
    least the agent's 0.5 s ring plus 3 s talk."""
    tracker, parser = CallTracker(), AMIParser()
    events: list[DomainEvent] = []
    for line in (fixtures_dir / "burst.timeline.jsonl").read_text().splitlines():
        chunk = json.loads(line)
        if chunk["dir"] != "recv":
            continue
        for item in parser.feed(chunk["data"].encode("latin-1")):
            assert not isinstance(item, ParseError)
            if isinstance(item, AMIMessage):
                events.extend(tracker.handle(SERVER, item, chunk["t"]))
    ended = of(events, CallEnded)
    _, whole = replay(load_ami_messages(fixtures_dir / "burst.txt"))
    assert outcome(ended) == outcome(of(whole, CallEnded))
    abandoned = [e.duration for e in ended if not e.answered]
    answered = [e.duration for e in ended if e.answered]
    assert len(abandoned) == 10 and all(20.0 <= d < 20.5 for d in abandoned)
    assert len(answered) == 40 and all(3.5 <= d < 60.0 for d in answered)
