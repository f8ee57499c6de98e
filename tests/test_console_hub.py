"""Console hub over real TCP: auth, validation, roles, routing, resume, heartbeats, flood, slow clients.

The backend is the production one over the real server and the simulated PBX (tests/console_stack.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from websockets.exceptions import ConnectionClosed

from agent_console import protocol
from agent_console.auth import issue_token
from centre.call_log import call_key
from tests.console_stack import HASHES, PBX, SAMPLE_POP, SECRET, make_settings, open_client, run, running


def test_password_login_gets_hello_result_and_state() -> None:
    """An agent with the right password gets a result naming it, the dispositions, then its state."""

    async def body() -> None:
        async with running() as stack:
            client = await open_client(stack)
            reply = await client.request("hello", agent_id="1001", password="pw-1001")
            assert reply["type"] == "result" and reply["agent_id"] == "1001" and reply["role"] == "agent"
            assert reply["v"] == 1 and [d["code"] for d in reply["dispositions"]][0] == "resolved"
            assert "break" in reply["not_ready_reasons"]
            state = await client.wait_push("state")
            assert state["state"] == "logged_out" and state["agent_id"] == "1001"
            assert stack.hub.stats()["agents"] == 1

    run(body)


def test_wrong_password_is_refused_and_closed_4001() -> None:
    """A wrong password gets error auth-failed (without echoing the password) and close code 4001."""

    async def body() -> None:
        async with running() as stack:
            client = await open_client(stack)
            await client.send_raw(json.dumps({"v": 1, "type": "hello", "id": 1, "agent_id": "1001",
                                              "password": "guess-123"}))
            msg = await client.recv()
            assert msg["type"] == "error" and msg["error_id"] == "auth-failed" and msg["re"] == 1
            assert "guess-123" not in json.dumps(msg)
            assert await client.closed() == protocol.CLOSE_UNAUTHENTICATED
            assert stack.hub.stats()["auth_failures"] == 1

    run(body)


def test_token_login_and_supervisor_role_from_token() -> None:
    """A token from `cti agent-token` logs in; its role (supervisor) decides what the session may do."""

    async def body() -> None:
        supervisors = [{"id": "sup", "password_hash": HASHES["sup"]}, {"id": "boss"}]  # boss: tokens only
        async with running(make_settings(supervisors=supervisors)) as stack:
            token = issue_token(SECRET, "boss", "supervisor", 3600, time.time())
            client = await open_client(stack, "boss", token=token)
            wall = await client.wait_push("wallboard")
            assert {q["name"] for q in wall["queues"]} == {"sales", "support"}
            snap = await client.request("snapshot")
            assert snap["type"] == "result" and len(snap["agents"]) == 2
            refused = await client.request("ready")
            assert refused["type"] == "error" and refused["error_id"] == "forbidden"

    run(body)


def test_expired_or_foreign_token_is_refused() -> None:
    """An expired token, or one issued for another agent id, is refused with a stable error id."""

    async def body() -> None:
        async with running() as stack:
            old = issue_token(SECRET, "1001", "agent", 60, time.time() - 3600)
            client = await open_client(stack)
            reply = await client.request("hello", agent_id="1001", token=old)
            assert reply["error_id"] == "token-expired"
            other = issue_token(SECRET, "1002", "agent", 60, time.time())
            client = await open_client(stack)
            reply = await client.request("hello", agent_id="1001", token=other)
            assert reply["error_id"] == "bad-token"

    run(body)


def test_unauthenticated_action_is_refused_and_closed() -> None:
    """Any message before a hello gets error unauthenticated and the connection is closed with 4001."""

    async def body() -> None:
        async with running() as stack:
            client = await open_client(stack)
            reply = await client.request("ready")
            assert reply["error_id"] == "unauthenticated"
            assert await client.closed() == protocol.CLOSE_UNAUTHENTICATED
            assert stack.state("1001") == "logged_out"

    run(body)


def test_hello_timeout_closes_silent_connection() -> None:
    """A connection that sends nothing is told hello-timeout and closed within hello_timeout."""

    async def body() -> None:
        async with running(make_settings(hello_timeout=0.2)) as stack:
            client = await open_client(stack)
            msg = await client.recv()
            assert msg["error_id"] == "hello-timeout"
            assert await client.closed() == protocol.CLOSE_UNAUTHENTICATED

    run(body)


def test_bad_json_unknown_type_and_bad_params_keep_the_connection() -> None:
    """Bad JSON, a non-object, a wrong version, an unknown type and invalid fields each get their own
    error id, and the connection stays usable afterwards."""

    async def body() -> None:
        async with running() as stack:
            client = await open_client(stack, "1001")
            await client.send_raw("{not json")
            assert (await client.reply(None))["error_id"] == "bad-json"
            await client.send_raw("[1,2]")
            assert (await client.reply(None))["error_id"] == "bad-message"
            await client.send_raw(json.dumps({"v": 2, "type": "ready", "id": "x"}))
            assert (await client.reply("x"))["error_id"] == "unsupported-version"
            await client.send_raw(json.dumps({"v": 1, "type": "launch_missiles", "id": "y"}))
            assert (await client.reply("y"))["error_id"] == "unknown-type"
            await client.send_raw(b"\x00\x01binary")
            assert (await client.reply(None))["error_id"] == "bad-frame"
            bad = await client.request("login", endpoint="no slash here", extra=1)
            assert bad["error_id"] == "invalid-params"
            assert {f["field"] for f in bad["fields"]} == {"endpoint", "extra"}
            ok = await client.request("login", endpoint="PJSIP/1001")
            assert ok["type"] == "result" and ok["state"]["state"] == "not_ready"

    run(body)


def test_second_hello_is_refused() -> None:
    """A hello on an authenticated connection gets already-authenticated and changes nothing."""

    async def body() -> None:
        async with running() as stack:
            client = await open_client(stack, "1001")
            again = await client.request("hello", agent_id="1002", password="pw-1002")
            assert again["error_id"] == "already-authenticated"
            assert stack.hub.is_connected("1001") and not stack.hub.is_connected("1002")

    run(body)


def test_oversized_frame_closes_with_1009() -> None:
    """A frame larger than console.max_message_bytes closes the connection with 1009 (message too big)."""

    async def body() -> None:
        async with running(make_settings(max_message_bytes=1024)) as stack:
            client = await open_client(stack, "1001")
            await client.send_raw(json.dumps({"v": 1, "type": "ping", "id": "p", "pad": "x" * 5000}))
            assert await client.closed() == 1009

    run(body)


def test_flood_gets_rate_limited_error_then_close_4008() -> None:
    """More messages than the burst allows: one rate-limited error, then close code 4008."""

    async def body() -> None:
        async with running(make_settings(rate_burst=5, rate_per_second=1.0)) as stack:
            client = await open_client(stack, "1001")
            for i in range(50):
                await client.send_raw(json.dumps({"v": 1, "type": "ping", "id": i}))
            errors = []
            with contextlib.suppress(ConnectionClosed):
                async for raw in client.ws:
                    msg = json.loads(raw)
                    if msg["type"] == "error":
                        errors.append(msg["error_id"])
            assert errors == ["rate-limited"]
            assert client.ws.close_code == protocol.CLOSE_RATE_LIMITED
            assert stack.hub.stats()["rate_limited"] == 1

    run(body)


def test_pop_goes_only_to_its_agent() -> None:
    """push_to_agent delivers to that agent's console only; another agent sees nothing of it."""

    async def body() -> None:
        async with running() as stack:
            a = await open_client(stack, "1001")
            b = await open_client(stack, "1002")
            await a.wait_push("state")
            await b.wait_push("state")
            stack.hub.push_to_agent("1001", {"type": "pop", "call_id": "c1", **SAMPLE_POP})
            pop = await a.wait_push("pop")
            assert pop["customer"]["profile"]["name"] == "Ada Lovelace" and pop["v"] == 1
            pong = await b.request("ping")  # b's stream up to now holds no pop
            assert pong["type"] == "result"
            assert not [m for m in b.pushes if m["type"] == "pop"]
            stack.hub.push_to_agent("nobody", {"type": "pop", "call_id": "c2"})
            assert stack.hub.stats()["undelivered"] == 1

    run(body)


def test_routine_frames_share_one_write_and_a_pop_goes_at_once_in_order() -> None:
    """State and call frames wait for the end of the loop pass and then go out in one socket write per
    console; a pop is written at once, with the frames pushed before it ahead of it; the client reads
    everything in push order."""

    async def body() -> None:
        async with running() as stack:
            a = await open_client(stack, "1001")
            await a.wait_push("state")
            transport = stack.hub._agents["1001"].ws.transport
            writes: list[bytes] = []
            write = transport.write

            def counted(data: bytes) -> None:
                writes.append(data)
                write(data)

            transport.write = counted  # type: ignore[method-assign]
            framed = stack.hub.stats()["messages_out"]
            for i in range(3):
                stack.hub.push_to_agent("1001", {"type": "call", "call_id": f"c{i}", "status": "ringing"})
            assert writes == []  # routine frames: not written yet
            assert stack.hub.stats()["messages_out"] == framed  # nor even encoded and framed
            stack.hub.push_to_agent("1001", {**SAMPLE_POP, "type": "pop", "call_id": "c2"})
            assert len(writes) == 1  # the three call frames and the pop, one write
            assert stack.hub.stats()["messages_out"] == framed + 4
            stack.hub.push_to_agent("1001", {"type": "state", "state": "ringing"})
            stack.hub.push_to_agent("1001", {"type": "call", "call_id": "c2", "status": "connected"})
            assert len(writes) == 1
            await asyncio.sleep(0)  # the end of this loop pass
            assert len(writes) == 2
            got = [await a.recv() for _ in range(6)]
            assert [(m["type"], m.get("call_id")) for m in got] == [
                ("call", "c0"), ("call", "c1"), ("call", "c2"), ("pop", "c2"), ("state", None), ("call", "c2")]

    run(body)


def test_routine_frames_pushed_before_a_replacing_login_reach_the_old_console_first() -> None:
    """Routine pushes still waiting for the end of the pass when a newer session replaces the console go out
    ahead of the 'replaced' notice and the close."""

    async def body() -> None:
        async with running() as stack:
            old = await open_client(stack, "1001")
            await old.wait_push("state")
            stack.hub.push_to_agent("1001", {"type": "call", "call_id": "c9", "status": "ringing"})
            await open_client(stack, "1001")  # replaces the first session
            seen = [*old.pushes]
            while not seen or seen[-1]["type"] != "notice":
                seen.append(await old.recv())
            assert [(m["type"], m.get("call_id")) for m in seen][-2:] == [("call", "c9"), ("notice", None)]
            assert seen[-1]["notice"] == "replaced"
            assert await old.closed() == protocol.CLOSE_REPLACED

    run(body)


def test_agent_actions_enforce_state_rules() -> None:
    """Illegal actions get errors and change nothing; the legal path login, ready, offer, answer,
    hold, retrieve, hang up, dispose returns the agent to ready and records the disposition. (The real ACD
    says illegal-transition for ready while logged out, where the old in-memory test backend said
    not-logged-in.)"""

    async def body() -> None:
        async with running() as stack:
            stack.add_ada()
            c = await open_client(stack, "1001")
            assert (await c.request("ready"))["error_id"] == "illegal-transition"
            assert (await c.request("login", endpoint="PJSIP/1001"))["state"]["state"] == "not_ready"
            assert (await c.request("not_ready", reason="nap"))["error_id"] == "unknown-reason"
            assert (await c.request("hold"))["error_id"] == "no-active-call"
            assert (await c.request("ready"))["state"]["state"] == "ready"
            caller = stack.arrive()
            pop = await c.wait_push("pop")
            assert pop["call_id"] == caller.linkedid and pop["customer"]["profile"]["name"] == "Ada Lovelace"
            await stack.answer("1001")
            await c.wait_push("state", lambda m: m["state"] == "on_call")
            assert (await c.request("logout"))["error_id"] == "illegal-transition"  # (allowed while reserved)
            assert (await c.request("retrieve"))["error_id"] == "illegal-transition"
            mark = len(stack.sender.sent)
            assert (await c.request("hold"))["status"] == "held"
            leg = stack.live("1001").agent_channel
            assert stack.sender.actions(mark) == [("Redirect", {
                "Channel": caller.name, "Context": "cti-onhold", "Exten": "s", "Priority": "1",
                "ExtraChannel": leg, "ExtraContext": "cti-agent-onhold", "ExtraExten": "s", "ExtraPriority": "1"})]
            await stack.until(lambda: caller.moh, "music on hold for the caller")
            mark = len(stack.sender.sent)
            assert (await c.request("retrieve"))["status"] == "connected"
            assert stack.sender.actions(mark) == [("Bridge", {"Channel1": leg, "Channel2": caller.name, "Tone": "no"})]
            await stack.until(lambda: not caller.moh, "the caller back with the agent")
            wrong = await c.request("dispose", call_id=caller.linkedid, disposition="sale")
            assert wrong["error_id"] == "illegal-transition"
            mark = len(stack.sender.sent)
            assert (await c.request("hangup"))["status"] == "ended"
            assert stack.sender.actions(mark) == [("Hangup", {"Channel": leg, "Cause": "16"})]
            await c.wait_push("state", lambda m: m["state"] == "wrap_up")
            bad = await c.request("dispose", call_id=caller.linkedid, disposition="bogus")
            assert bad["error_id"] == "unknown-disposition"
            key = call_key(PBX, caller.linkedid)
            assert stack.state("1001") == "wrap_up" and (await stack.record(key)).disposition == ""
            done = await c.request("dispose", call_id=caller.linkedid, disposition="sale", notes="two licences")
            assert done["state"]["state"] == "ready" and done["recorded"] is True
            record = await stack.record(key)
            assert (record.disposition, record.notes, record.agent_id) == ("sale", "two licences", "1001")

    run(body)


def test_preview_without_a_lead_is_refused() -> None:
    """The real server has no preview dialling yet: accepting or skipping a lead is no-preview and changes
    nothing. (The old in-memory test backend simulated previews; nothing in the server offers one.)"""

    async def body() -> None:
        async with running() as stack:
            c = await open_client(stack, "1001")
            await c.request("login", endpoint="PJSIP/1001")
            await c.request("ready")
            assert (await c.request("preview_skip", lead_id="L1"))["error_id"] == "no-preview"
            assert (await c.request("preview_accept", lead_id="L1"))["error_id"] == "no-preview"
            assert stack.state("1001") == "ready"

    run(body)


def test_reconnect_resumes_live_pop_and_state() -> None:
    """After a dropped connection, a new hello re-sends the agent's state and the pop of its ringing call."""

    async def body() -> None:
        async with running() as stack:
            c = await open_client(stack, "1001")
            stack.add_ada()
            await c.request("login", endpoint="PJSIP/1001")
            await c.request("ready")
            caller = stack.arrive()
            await c.wait_push("pop")
            c.ws.transport.abort()  # the network drops
            again = await open_client(stack, "1001")
            state = await again.wait_push("state")
            assert state["state"] == "reserved" and state["call_id"] == caller.linkedid
            pop = await again.wait_push("pop")
            assert pop["call_id"] == caller.linkedid
            assert pop["customer"]["profile"]["accounts"][0]["number"] == "ACC-0042"

    run(body)


def test_newer_session_replaces_older_one() -> None:
    """A second console for the same agent takes over; the first gets a notice and close code 4003."""

    async def body() -> None:
        async with running() as stack:
            first = await open_client(stack, "1001")
            second = await open_client(stack, "1001")
            notice = await first.wait_push("notice")
            assert notice["notice"] == "replaced"
            assert await first.closed() == protocol.CLOSE_REPLACED
            stack.hub.push_to_agent("1001", {"type": "pop", "call_id": "c7"})
            assert (await second.wait_push("pop"))["call_id"] == "c7"
            assert stack.hub.stats()["agents"] == 1

    run(body)


def test_heartbeats_are_sent() -> None:
    """An idle authenticated console receives heartbeat pushes at heartbeat_interval."""

    async def body() -> None:
        async with running(make_settings(heartbeat_interval=0.05)) as stack:
            c = await open_client(stack, "1001")
            beat = await c.wait_push("heartbeat")
            assert isinstance(beat["ts"], float)

    run(body)


def test_heartbeats_are_spread_over_the_interval() -> None:
    """With a 0.4 s interval (four 0.1 s slices), three consoles each get one heartbeat per interval, in
    different slices rather than all in the same loop pass."""

    async def body() -> None:
        async with running(make_settings(heartbeat_interval=0.4)) as stack:
            clients = [await open_client(stack, "1001"), await open_client(stack, "1002"),
                       await open_client(stack, "sup", role="supervisor")]
            arrived = []
            for c in clients:
                await c.wait_push("heartbeat")
                arrived.append(time.monotonic())
            assert max(arrived) - min(arrived) >= 0.15  # a single burst would land within a few ms
            again = [await c.wait_push("heartbeat") for c in clients]  # the next interval reaches everyone
            assert all(isinstance(b["ts"], float) for b in again)

    run(body)


def test_slow_client_is_dropped_and_others_unaffected() -> None:
    """A client that stops reading is disconnected once its send queue is full, and pops to another
    agent keep flowing meanwhile."""

    async def body() -> None:
        settings = make_settings(send_queue=8, write_limit=1024)
        async with running(settings) as stack:
            slow = await open_client(stack, "1001")
            fast = await open_client(stack, "1002")
            slow.ws.transport.pause_reading()  # the slow client's kernel buffers fill up
            big = {"type": "pop", "call_id": "big", "notes": "x" * 60000}
            for i in range(400):
                stack.hub.push_to_agent("1001", big)
                stack.hub.push_to_agent("1002", {"type": "pop", "call_id": f"f{i}"})
                if stack.hub.stats()["dropped_slow"]:
                    break
                await asyncio.sleep(0)
            assert stack.hub.stats()["dropped_slow"] == 1
            got = await fast.wait_push("pop", lambda m: m["call_id"] == "f0")
            assert got["call_id"] == "f0"
            assert (await fast.request("ping"))["type"] == "result"
            slow.ws.transport.resume_reading()
            assert await slow.closed() == 1006  # aborted: no close frame
            while stack.hub.is_connected("1001"):
                await asyncio.sleep(0.001)
            assert stack.hub.is_connected("1002")

    run(body)


def test_static_pages_and_traversal() -> None:
    """GET / serves the console HTML, /static/console.js has a JS content type, traversal and unknown
    paths are 404."""

    async def body() -> None:
        async with running() as stack:
            async def get(path: str) -> tuple[int, dict[str, str], bytes]:
                reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
                writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                data = await reader.read()
                writer.close()
                head, _, bodyb = data.partition(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
                return int(lines[0].split()[1]), headers, bodyb

            status, headers, page = await get("/")
            assert status == 200 and headers["content-type"].startswith("text/html")
            assert b'data-testid="login-form"' in page
            status, headers, _ = await get("/static/console.js")
            assert status == 200 and headers["content-type"].startswith("text/javascript")
            assert (await get("/wallboard"))[0] == 200
            for bad in ("/static/../hub.py", "/static/%2e%2e/hub.py", "/etc/passwd", "/static/"):
                assert (await get(bad))[0] == 404, bad
            status, _, health = await get("/healthz")
            assert status == 200 and json.loads(health)["connections"] == 0

    run(body)


def test_junk_on_the_port_does_not_disturb_consoles() -> None:
    """Garbage bytes on the listening port are dropped; a connected console keeps working."""

    async def body() -> None:
        async with running() as stack:
            c = await open_client(stack, "1001")
            reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
            writer.write(b"\x16\x03\x01\x02\x00junk\r\n\r\n")
            await reader.read()
            writer.close()
            assert (await c.request("ping"))["type"] == "result"

    run(body)


def test_server_full_closes_4013() -> None:
    """Past console.max_connections logged-in sessions a further login gets server-full and close 4013;
    the agent already logged in may still replace its own session."""

    async def body() -> None:
        async with running(make_settings(max_connections=1)) as stack:
            await open_client(stack, "1001")
            extra = await open_client(stack)
            reply = await extra.request("hello", agent_id="1002", password="pw-1002")
            assert reply["error_id"] == "server-full"
            assert await extra.closed() == protocol.CLOSE_SERVER_FULL
            again = await open_client(stack, "1001")
            assert (await again.request("ping"))["type"] == "result"

    run(body)


def test_multi_match_choice_sends_pop_update() -> None:
    """With two matching customers, choose_customer picks one and the agent gets the whole pop again as a
    pop_update naming that customer; a customer that is not a match is refused."""

    async def body() -> None:
        async with running() as stack:
            c = await open_client(stack, "1001")
            stack.add_ada()
            charles = stack.add_customer("C-43", "Charles", "Babbage", SAMPLE_POP["ani"])  # the same phone
            await c.request("login", endpoint="PJSIP/1001")
            await c.request("ready")
            m1 = stack.arrive().linkedid
            pop = await c.wait_push("pop")
            assert pop["lookup"]["status"] == "multiple" and len(pop["matches"]) == 2
            assert (await c.request("choose_customer", call_id=m1, customer_id="99"))["error_id"] == \
                "unknown-customer"
            assert (await c.request("choose_customer", call_id=m1, customer_id=str(charles)))["type"] == "result"
            update = await c.wait_push("pop_update")
            assert update["customer"]["profile"]["name"] == "Charles Babbage" and update["call_id"] == m1
            assert update["ani"] == SAMPLE_POP["ani"] and update["complete"] is True

    run(body)


def test_supervisor_password_login_and_session_events() -> None:
    """A supervisor logs in with the password of console.supervisors; agent-only actions are forbidden to it
    and change nothing; its wallboard follows the agents' states (the server pushes it every second); the
    hub counts each session connecting and going away."""

    async def body() -> None:
        async with running() as stack:
            sup = await open_client(stack, "sup", role="supervisor")
            await sup.wait_push("wallboard")
            assert stack.hub.stats()["supervisors"] == 1
            assert (await sup.request("login", endpoint="PJSIP/9"))["error_id"] == "forbidden"
            agent = await open_client(stack, "1001")
            assert (await agent.request("snapshot"))["error_id"] == "forbidden"
            await agent.request("login", endpoint="PJSIP/1001")
            wall = await sup.wait_push("wallboard", lambda m: any(a["state"] == "not_ready" for a in m["agents"]))
            sales = next(q for q in wall["queues"] if q["name"] == "sales")
            assert sales["agents"].get("not_ready") == 1, sales
            await agent.ws.close()
            while stack.hub.stats()["agents"]:
                await asyncio.sleep(0.001)
            assert stack.hub.stats()["supervisors"] == 1 and stack.state("1001") == "not_ready"

    run(body)


def test_dispose_to_not_ready_and_reason_override() -> None:
    """Dispose with then=not_ready needs a reason the ACD knows and leaves the agent not ready with it; the
    hub offers the not-ready reasons it was given in the hello result. (Without a reason the real backend
    says invalid-params; an unknown one is the ACD's unknown-reason; neither records the disposition.)"""

    async def body() -> None:
        async with running(not_ready_reasons=["coffee"]) as stack:
            c = await open_client(stack)
            hello = await c.request("hello", agent_id="1001", password="pw-1001")
            assert hello["not_ready_reasons"] == ["coffee"]
            await c.request("login", endpoint="PJSIP/1001")
            await c.request("ready")
            caller = await stack.connect("1001")
            await stack.caller_hangs_up(caller)
            await c.wait_push("state", lambda m: m["state"] == "wrap_up")
            d1 = caller.linkedid
            refused = await c.request("dispose", call_id=d1, disposition="resolved", then="not_ready")
            assert refused["error_id"] == "invalid-params"
            refused = await c.request("dispose", call_id=d1, disposition="resolved", then="not_ready", reason="nap")
            assert refused["error_id"] == "unknown-reason"
            assert (await stack.record(call_key(PBX, d1))).disposition == ""
            assert stack.state("1001") == "wrap_up"
            done = await c.request("dispose", call_id=d1, disposition="resolved", then="not_ready", reason="lunch")
            assert done["state"]["state"] == "not_ready" and done["state"]["reason"] == "lunch"

    run(body)


def test_push_rejects_unknown_types_and_compression_is_a_setting() -> None:
    """push_to_agent refuses a type that is not a documented push; permessage-deflate is negotiated only
    when console.compression is deflate."""

    async def body() -> None:
        async with running() as stack:
            try:
                stack.hub.push_to_agent("1001", {"type": "result", "re": 1})
            except ValueError as exc:
                assert "push type" in str(exc)
            else:
                raise AssertionError("accepted a reply type as a push")
            c = await open_client(stack, "1001")
            assert c.ws.response.headers.get("Sec-WebSocket-Extensions") is None
        async with running(make_settings(compression="deflate")) as stack:
            c = await open_client(stack, "1001")
            assert "permessage-deflate" in c.ws.response.headers["Sec-WebSocket-Extensions"]

    run(body)


def test_backend_crash_is_internal_error_and_session_survives() -> None:
    """An unexpected exception in the backend becomes error internal-error (no traceback to the client)
    and the connection keeps working."""

    async def body() -> None:
        async with running() as stack:
            async def broken(session, action, params):
                raise RuntimeError("db password is hunter2")

            stack.backend.handle = broken  # type: ignore[method-assign]
            c = await open_client(stack, "1001")
            reply = await c.request("ready")
            assert reply["error_id"] == "internal-error" and "hunter2" not in json.dumps(reply)
            assert (await c.request("ping"))["type"] == "result"

    run(body)
