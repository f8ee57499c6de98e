"""Live statistics over the console websocket (issue #16, item 2), on the real stack (hub, server, ACD,
simulated PBX): only supervisors subscribe; a subscriber gets a snapshot, then deltas with sequence numbers
that follow the calls and agents; a reconnecting supervisor resumes from its last sequence number."""

from __future__ import annotations

import copy
from typing import Any

from kpi.feed import apply_delta
from tests.console_stack import open_client, run, running


def test_only_supervisors_subscribe_and_topics_must_exist() -> None:
    async def body() -> None:
        async with running() as stack:
            agent = await open_client(stack, "1001")
            reply = await agent.request("subscribe", topics=["queue:sales"])
            assert reply["type"] == "error" and reply["error_id"] == "forbidden"
            assert (await agent.request("unsubscribe", topics=["queue:sales"]))["error_id"] == "forbidden"
            sup = await open_client(stack, "sup", role="supervisor")
            reply = await sup.request("subscribe", topics=["queue:sales", "queue:nope"])
            assert reply["error_id"] == "unknown-topic" and "queue:sales" in reply["details"]["known"]
            assert (await sup.request("subscribe", topics=["bogus"]))["error_id"] == "invalid-params"
            assert stack.server.kpi is not None and not stack.server.kpi.feed.has_subscribers()

    run(body)


def test_snapshot_then_deltas_follow_agents_and_calls_and_resume_after_a_reconnect() -> None:
    async def body() -> None:
        async with running() as stack:
            sup = await open_client(stack, "sup", role="supervisor")
            reply = await sup.request("subscribe", topics=["queue:sales"])
            assert reply["type"] == "result" and reply["topics"] == ["queue:sales"]
            (snap,) = reply["frames"]
            assert snap["type"] == "stats_snapshot" and snap["topic"] == "queue:sales"
            figures: dict[str, Any] = copy.deepcopy(snap["figures"])
            seq, epoch = snap["seq"], snap["epoch"]
            assert figures["windows"]["day"]["offered"] == 0

            def take(m: dict[str, Any]) -> None:
                nonlocal seq
                assert m["seq"] == seq + 1, "a gap"
                apply_delta(figures, m)
                seq = m["seq"]

            agent = await open_client(stack, "1001")
            await agent.request("login", endpoint="PJSIP/1001")
            await agent.request("ready")
            while figures["agents"]["ready"] != 1:
                take(await sup.wait_push("stats_delta"))
            caller = await stack.connect("1001")
            while figures["windows"]["day"]["answered"] != 1:
                take(await sup.wait_push("stats_delta"))
            assert figures["windows"]["day"]["offered"] == 1 and figures["agents"]["on_call"] == 1
            assert figures["windows"]["day"]["service_level"] == 1.0
            await stack.caller_hangs_up(caller)

            await sup.ws.close()  # the supervisor goes away (its subscriptions with it); the call ends meanwhile
            await stack.until(lambda: not stack.server.kpi.feed.sessions, "the subscriptions dropped")  # type: ignore[union-attr]
            await agent.request("ready")  # (ends wrap-up: the call's record, its handle time)
            sup2 = await open_client(stack, "sup", role="supervisor")
            reply = await sup2.request("subscribe", topics=["queue:sales"],
                                       resume={"queue:sales": {"epoch": epoch, "seq": seq}})
            for m in reply["frames"]:  # the deltas missed (none yet if the feed has not published)
                assert m["type"] == "stats_delta"
                take(m)
            while figures["windows"]["day"]["handled"] != 1:
                take(await sup2.wait_push("stats_delta"))
            assert figures["windows"]["day"]["aht"] is not None
            stream = stack.server.kpi.feed.streams["queue:sales"]  # type: ignore[union-attr]
            if stream.seq == seq:  # (else a delta is on its way)
                assert figures == stream.figures

    run(body)
