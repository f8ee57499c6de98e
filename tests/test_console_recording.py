"""Call recording end to end through the hub, the production backend, the real server and the simulated PBX
(tests/console_stack.py): a recorded queue's call gets AMI MixMonitor on the caller's channel when the agent
answers, the console follows the recording's state from Asterisk's MixMonitor events, pause/resume send
MixMonitorMute (both directions) and keep the intervals on the interaction; only the agent on the call may
pause it; a ``none`` queue's call is not recorded; a refused MixMonitor is ``failed``."""

from __future__ import annotations

import asyncio

from twisted.internet import defer

from cti.recording import decide
from tests.console_stack import Client, Stack, open_client, run, running

RECORDED = {"queues": {"sales": "all", "support": "none"},
            "path": "/var/spool/asterisk/monitor/cti/{date}/{call_id}-{part}.wav"}


async def _on_call(stack: Stack, agent_id: str = "1001", **arrival: object) -> tuple[Client, object]:
    c = await open_client(stack, agent_id)
    await c.request("login")
    await c.request("ready")
    caller = await stack.connect(agent_id, **arrival)
    await c.wait_push("call", lambda m: m["status"] == "connected")
    return c, caller


def test_recorded_queue_starts_mixmonitor_on_answer_and_pauses_for_a_card_number() -> None:
    async def body() -> None:
        async with running(recording=RECORDED) as stack:
            sup = await open_client(stack, "sup", role="supervisor")
            c, caller = await _on_call(stack)
            live = stack.live("1001")
            assert live is not None
            call_id = live.queued.call_id
            starts = [f for a, f in stack.sender.actions() if a == "MixMonitor"]
            assert len(starts) == 1
            path = starts[0]["File"]
            assert starts[0] == {"Channel": caller.name, "File": path, "Options": "b"}
            assert path.startswith("/var/spool/asterisk/monitor/cti/") and path.endswith(f"/{call_id}-1.wav")
            assert "ADA" not in path and "+1555" not in path  # nothing the caller controls
            frame = await c.wait_push("recording", lambda m: m["state"] == "recording")  # MixMonitorStart seen
            assert frame["call_id"] == call_id and "path" not in frame
            assert caller.mixmonitors == [path]  # the simulated PBX records that file
            seen = await sup.wait_push("recording", lambda m: m["state"] == "recording")
            assert (seen["agent_id"], seen["path"]) == ("1001", path)
            # a wallboard opened now sees it too, in the agent's call (not only from the next push)
            [agent] = [a for a in stack.server.wallboard()["agents"] if a["agent_id"] == "1001"]
            assert agent["call"]["recording"] == "recording"

            mark = len(stack.sender.sent)
            reply = await c.request("recording_pause")
            assert reply["type"] == "result" and reply["recording"] == "paused"
            assert stack.sender.actions(mark) == [
                ("MixMonitorMute", {"Channel": caller.name, "Direction": "both", "State": "1"})]
            await c.wait_push("recording", lambda m: m["state"] == "paused")
            mark = len(stack.sender.sent)
            assert (await c.request("recording_pause"))["recording"] == "paused"  # already: nothing sent
            assert stack.sender.actions(mark) == []
            await stack.advance(20)  # the customer reads the card number
            reply = await c.request("recording_resume", call_id=call_id)
            assert reply["recording"] == "recording"
            assert stack.sender.actions(mark) == [
                ("MixMonitorMute", {"Channel": caller.name, "Direction": "both", "State": "0"})]
            resumed = await c.wait_push("recording", lambda m: m["state"] == "recording" and m["paused_total"] > 0)
            assert resumed["paused_total"] >= 20

            key = live.queued.server + "/" + call_id
            await stack.record(key)  # flush the interaction writes
            assert stack.server.store is not None
            stored = stack.server.store.recording_of(key)
            assert stored is not None and stored.path == path and stored.purged_at is None
            assert len(stored.pauses or []) == 1
            (pause,) = stored.pauses or []
            assert pause["by"] == "1001" and pause["to"] - pause["from"] >= 20

            await stack.caller_hangs_up(caller)
            await c.wait_push("recording", lambda m: m["state"] == "stopped")

    run(body)


def test_only_the_agent_on_a_recorded_call_may_pause_it() -> None:
    """Another agent naming the call: unknown-call; an agent with no call: no-active-call; a supervisor:
    refused by role; nothing is sent to the PBX for any of them."""

    async def body() -> None:
        async with running(recording=RECORDED) as stack:
            c, caller = await _on_call(stack)
            call_id = stack.live("1001").queued.call_id  # type: ignore[union-attr]
            other = await open_client(stack, "1002")
            await other.request("login")
            sup = await open_client(stack, "sup", role="supervisor")
            mark = len(stack.sender.sent)
            assert (await other.request("recording_pause", call_id=call_id))["error_id"] == "no-active-call"
            assert (await other.request("recording_pause"))["error_id"] == "no-active-call"
            assert (await sup.request("recording_pause", call_id=call_id))["type"] == "error"
            assert (await c.request("recording_pause", call_id="pbx1-other"))["error_id"] == "unknown-call"
            assert stack.sender.actions(mark) == []
            assert (await c.request("recording_pause"))["recording"] == "paused"

    run(body)


def test_a_none_queue_is_not_recorded_and_a_refused_mixmonitor_is_failed() -> None:
    async def body() -> None:
        async with running(recording=RECORDED) as stack:
            c, caller = await _on_call(stack, "1002", queue="support")
            assert [a for a, _ in stack.sender.actions() if a.startswith("MixMonitor")] == []
            reply = await c.request("recording_pause")
            assert reply["error_id"] == "not-recording"
            await stack.caller_hangs_up(caller)

        async with running(recording=RECORDED) as stack:
            stack.sender.refuse("MixMonitor", "Could not start monitoring channel")
            c, caller = await _on_call(stack)
            frame = await c.wait_push("recording", lambda m: m["state"] == "failed")
            assert frame["call_id"] == caller.linkedid
            assert (await c.request("recording_pause"))["error_id"] == "not-recording"
            assert caller.mixmonitors == []

    run(body)


def test_percent_policy_records_the_calls_its_hash_picks() -> None:
    """percent 50: the call is recorded exactly when the pure decision (hash of the call id) says so, the
    same answer a restarted server gives."""

    async def body() -> None:
        async with running(recording={"queues": {"sales": "percent 50"}}) as stack:
            c, caller = await _on_call(stack)
            call_id = stack.live("1001").queued.call_id  # type: ignore[union-attr]
            recorded = any(a == "MixMonitor" for a, _ in stack.sender.actions())
            assert recorded == decide("percent 50", call_id)

    run(body)


def test_a_transfer_stops_the_first_part_and_the_next_agent_gets_a_file_of_its_own() -> None:
    """1001 (recording paused) transfers the caller to the support queue: StopMixMonitor on the caller's
    channel (the caller goes on), the open pause closes; 1002 answers: a new MixMonitor, ``-2.wav``, on the
    second part's interaction. A reconnecting console is told its call's recording state."""

    async def body() -> None:
        async with running(recording={"queues": {"sales": "all", "support": "all"}}) as stack:
            other = await open_client(stack, "1002")
            await other.request("login")
            await other.request("not_ready", reason="break")
            c, caller = await _on_call(stack)
            await c.wait_push("recording", lambda m: m["state"] == "recording")
            assert (await c.request("recording_pause"))["recording"] == "paused"
            resumed = stack.backend.resume_messages("1001")
            assert {"type": "recording", "call_id": caller.linkedid, "state": "paused"}.items() <= \
                next(m for m in resumed if m["type"] == "recording").items()
            mark = len(stack.sender.sent)
            await c.request("transfer", to="queue", target="support")
            await c.wait_push("recording", lambda m: m["state"] == "stopped")
            assert ("StopMixMonitor", {"Channel": caller.name}) in stack.sender.actions(mark)
            await stack.until(lambda: caller.mixmonitors == [], "the first part's MixMonitor to stop")
            await other.request("ready")
            await stack.ringing("1002")
            await stack.answer("1002")
            frame = await other.wait_push("recording", lambda m: m["state"] == "recording")
            assert frame["call_id"] == caller.linkedid
            starts = [f["File"] for a, f in stack.sender.actions(mark) if a == "MixMonitor"]
            assert len(starts) == 1 and starts[0].endswith(f"/{caller.linkedid}-2.wav")
            assert caller.mixmonitors == starts
            first = stack.server.store.recording_of(f"pbx1/{caller.linkedid}")  # type: ignore[union-attr]
            await stack.record(f"pbx1/{caller.linkedid}/2")
            first = stack.server.store.recording_of(f"pbx1/{caller.linkedid}")  # type: ignore[union-attr]
            second = stack.server.store.recording_of(f"pbx1/{caller.linkedid}/2")  # type: ignore[union-attr]
            assert first is not None and first.path.endswith("-1.wav") and first.pauses[0]["to"] is not None
            assert second is not None and second.path == starts[0] and not second.pauses

    run(body)


def test_a_mute_seen_on_the_channel_is_kept_as_a_pause_by_the_pbx() -> None:
    """Someone else muted the recording (another AMI client, a dialplan): the MixMonitorMute event pauses it
    on the console and on the interaction, with ``by`` ``pbx``; the agent's resume then closes it."""

    async def body() -> None:
        async with running(recording=RECORDED) as stack:
            c, caller = await _on_call(stack)
            await c.wait_push("recording", lambda m: m["state"] == "recording")
            assert stack.sender.target is not None
            await defer.Deferred.asFuture(stack.sender.target.send(
                "pbx1", "MixMonitorMute", {"Channel": caller.name, "Direction": "both", "State": "1"}),
                asyncio.get_running_loop())
            await c.wait_push("recording", lambda m: m["state"] == "paused")
            assert (await c.request("recording_resume"))["recording"] == "recording"
            key = f"pbx1/{caller.linkedid}"
            await stack.record(key)
            stored = stack.server.store.recording_of(key)  # type: ignore[union-attr]
            assert stored is not None and [p["by"] for p in stored.pauses or []] == ["pbx"]
            assert stored.pauses[0]["to"] is not None  # type: ignore[index]

    run(body)
