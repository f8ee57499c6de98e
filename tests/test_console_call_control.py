"""Call control from the console through the hub, the production backend, the real server and the simulated
PBX (tests/console_stack.py): blind transfers to a queue and to a number, the attended transfer (start,
back to the caller, complete), callbacks, and what the agent is told when the PBX refuses an action
(action-failed, nothing changed). Each test checks the AMI actions the dispatcher sent and the states
reached, on the server and on the simulated PBX."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.console_stack import Client, Stack, open_client, run, running


async def _on_call(stack: Stack, agent_id: str = "1001", **arrival: object) -> tuple[Client, object]:
    """A console for ``agent_id``, ready, with a caller answered: (client, caller channel)."""
    c = await open_client(stack, agent_id)
    await c.request("login")
    await c.request("ready")
    caller = await stack.connect(agent_id, **arrival)
    await c.wait_push("call", lambda m: m["status"] == "connected")
    return c, caller


def test_blind_transfer_to_a_queue_requeues_the_caller_for_another_agent() -> None:
    """Transfer to the support queue: Setvar CTI_QUEUE on the caller's channel and a Redirect to cti-hold; the
    caller is queued again (a new time in a queue) and offered to 1002, while 1001 is in wrap-up with the
    call ended on its console. An unknown queue is refused before any action."""

    async def body() -> None:
        async with running() as stack:
            other = await open_client(stack, "1002")
            await other.request("login")
            await other.request("not_ready", reason="break")
            c, caller = await _on_call(stack)
            mark = len(stack.sender.sent)
            assert (await c.request("transfer", to="queue", target="nowhere"))["error_id"] == "unknown-queue"
            assert stack.sender.actions(mark) == []
            reply = await c.request("transfer", to="queue", target="support")
            assert reply["status"] == "ended"
            assert stack.sender.actions(mark) == [
                ("Setvar", {"Channel": caller.name, "Variable": "CTI_QUEUE", "Value": "support"}),
                ("Redirect", {"Channel": caller.name, "Context": "cti-hold", "Exten": "s", "Priority": "1"})]
            await c.wait_push("state", lambda m: m["state"] == "wrap_up")
            assert not caller.dead
            await other.request("ready")
            await stack.ringing("1002")
            pop = await other.wait_push("pop")
            assert pop["call_id"] == caller.linkedid and pop["queue"] == "support"
            assert stack.state("1002") == "reserved" and stack.state("1001") == "wrap_up"

    run(body)


def test_blind_transfer_to_a_number_joins_the_caller_with_it() -> None:
    """Transfer to 2001: Setvar CTI_TRANSFER_DIAL (the configured dial string) and a Redirect to cti-transfer;
    the PBX dials 2001, who answers and talks to the caller; the agent is in wrap-up and the call's record
    says transferred."""

    async def body() -> None:
        async with running() as stack:
            c, caller = await _on_call(stack)
            call_id = caller.linkedid
            mark = len(stack.sender.sent)
            reply = await c.request("transfer", to="number", target="2001")
            assert reply["status"] == "ended"
            assert stack.sender.actions(mark) == [
                ("Setvar", {"Channel": caller.name, "Variable": "CTI_TRANSFER_DIAL", "Value": "PJSIP/2001"}),
                ("Redirect", {"Channel": caller.name, "Context": "cti-transfer", "Exten": "s", "Priority": "1"})]
            await c.wait_push("state", lambda m: m["state"] == "wrap_up")
            await stack.advance(2)  # 2001 rings for a second, then answers
            await stack.until(lambda: caller.bridge is not None and any(
                ch.name.startswith("PJSIP/2001-") for ch in caller.bridge.channels), "the caller talking to 2001")
            assert stack.server.call_log.open[("pbx1", call_id)].outcome == "transferred"

    run(body)


def test_attended_transfer_consults_goes_back_then_completes() -> None:
    """Consult 2001: Setvar __CTI_CONSULT_DIAL on the agent's leg and Atxfer of that leg (never the caller's)
    into cti-consult with a digit extension; the console says consulting, the target ringing then talking,
    while the caller hears music. Back to the caller: CancelAtxfer, connected again. Consult again and
    complete: Hangup of the agent's leg; the caller talks to 2001 and the agent is in wrap-up."""

    async def body() -> None:
        async with running() as stack:
            c, caller = await _on_call(stack)
            leg = stack.live("1001").agent_channel
            mark = len(stack.sender.sent)
            assert (await c.request("attended_transfer", number="2001"))["status"] == "consulting"
            assert stack.sender.actions(mark) == [
                ("Setvar", {"Channel": leg, "Variable": "__CTI_CONSULT_DIAL", "Value": "PJSIP/2001"}),
                ("Atxfer", {"Channel": leg, "Context": "cti-consult", "Exten": "0"})]
            ringing = await c.wait_push("call", lambda m: m["status"] == "consulting")
            assert ringing["consult"] == {"number": "2001", "state": "ringing"}
            await stack.advance(5)  # Asterisk dials the consult extension 3.26 s after the Atxfer
            await c.wait_push("call", lambda m: (m.get("consult") or {}).get("state") == "talking")
            assert caller.moh
            mark = len(stack.sender.sent)
            assert (await c.request("attended_cancel"))["status"] == "connected"
            assert stack.sender.actions(mark) == [("CancelAtxfer", {"Channel": leg})]
            await stack.until(lambda: not caller.moh, "the caller back with the agent")

            assert (await c.request("attended_transfer", number="2001"))["status"] == "consulting"
            await stack.advance(5)
            await c.wait_push("call", lambda m: (m.get("consult") or {}).get("state") == "talking")
            mark = len(stack.sender.sent)
            assert (await c.request("attended_complete"))["status"] == "ended"
            assert stack.sender.actions(mark) == [("Hangup", {"Channel": leg, "Cause": "16"})]
            await c.wait_push("state", lambda m: m["state"] == "wrap_up")
            await stack.until(lambda: not caller.moh and caller.bridge is not None, "the caller joined to 2001")
            assert not caller.dead

    run(body)


def test_callbacks_are_stored_for_the_agents_own_calls_in_the_future() -> None:
    """schedule_callback: a time in the past is bad-callback-time; another agent's call is unknown-call;
    one for the agent's own call in the future is stored (the real store) with the agent and the call; a
    callback given with the disposition is stored too. Nothing is stored for a refused one."""

    async def body() -> None:
        async with running() as stack:
            nosy = await open_client(stack, "1002")
            await nosy.request("login")
            c, caller = await _on_call(stack)
            future = datetime.fromtimestamp(stack.server.now() + 3600, UTC).isoformat()
            past = await c.request("schedule_callback", at="2001-01-01T00:00:00Z", number="+15550000")
            assert past["error_id"] == "bad-callback-time"
            theirs = await nosy.request("schedule_callback", at=future, number="+15550000", call_id=caller.linkedid)
            assert theirs["error_id"] == "unknown-call"
            assert stack.server.callback_store.pending() == []
            mine = await c.request("schedule_callback", at=future, number="+15550000", call_id=caller.linkedid,
                                   notes="wants a quote")
            assert mine["type"] == "result" and mine["callback_id"]
            await stack.caller_hangs_up(caller)
            await c.wait_push("state", lambda m: m["state"] == "wrap_up")
            done = await c.request("dispose", call_id=caller.linkedid, disposition="callback",
                                   callback={"at": future, "number": "+15551112222"})
            assert done["state"]["state"] == "ready"
            stored = stack.server.callback_store.pending()
            assert sorted((cb.number, cb.agent_id, cb.call_id) for cb in stored) == [
                ("+15550000", "1001", caller.linkedid), ("+15551112222", "1001", caller.linkedid)]

    run(body)


def test_a_refused_action_is_action_failed_and_changes_nothing() -> None:
    """The PBX answers Error (scripted on the recording sender): hold, retrieve, a transfer, a consultation
    and hang-up each come back action-failed "the PBX refused: ..." and leave the call and the agent as they
    were; the refusal is fed back to the engines as CommandFailed."""

    async def body() -> None:
        async with running() as stack:
            c, caller = await _on_call(stack)
            calls_before = len([m for m in c.pushes if m["type"] == "call"])
            failed = stack.server.counters["failed"]

            async def refused(action: str, ami: str, **params: object) -> None:
                stack.sender.refuse(ami, "No such channel")
                mark = len(stack.sender.sent)
                reply = await c.request(action, **params)
                assert reply["error_id"] == "action-failed", reply
                assert reply["message"] == "the PBX refused: No such channel"
                assert [a for a, _ in stack.sender.actions(mark)][-1] == ami

            await refused("hold", "Redirect")
            assert stack.live("1001").state == "connected" and not caller.moh
            await refused("transfer", "Redirect", to="queue", target="support")
            await refused("transfer", "Setvar", to="number", target="2001")
            await refused("attended_transfer", "Atxfer", number="2001")
            assert stack.live("1001").consult is None
            await refused("hangup", "Hangup")
            assert stack.live("1001").state == "connected" and stack.state("1001") == "on_call"
            assert stack.server.counters["failed"] == failed + 5
            assert (await c.request("ping"))["type"] == "result"
            assert len([m for m in c.pushes if m["type"] == "call"]) == calls_before  # no call frame changed
            assert caller.bridge is not None and not caller.dead

            assert (await c.request("hold"))["status"] == "held"
            await refused("retrieve", "Bridge")
            assert stack.live("1001").state == "held" and stack.state("1001") == "on_call"

    run(body)
