"""Console websocket faults over real TCP (issue 19): a reconnect storm. (Clients that never read, send
garbage or floods are in test_console_hub and test_hub_failure_paths.)

An agent's console reconnects 60 times in waves of 20 at once while a call rings it: some connections are
dropped before the websocket handshake ends, some right after the hello, some are closed cleanly (logins past
the hub's limit of password checks at once are refused with ``auth-throttled``, by design). Afterwards
the hub holds exactly the sessions that are open, the call still rings that agent (it was offered once), the
last console gets the state and the pop back, and another agent's console was served throughout."""

from __future__ import annotations

import asyncio

from tests.console_stack import PASSWORDS, open_client, run, running


def test_a_reconnect_storm_leaves_one_session_the_call_where_it_was_and_others_served() -> None:
    async def body() -> None:
        async with running() as stack:
            steady = await open_client(stack, "1002")
            first = await open_client(stack, "1001")
            stack.add_ada()
            await first.request("login", endpoint="PJSIP/1001")
            await first.request("ready")
            caller = stack.arrive()
            await first.wait_push("pop")
            dials = len([a for a in stack.sender.actions() if a[0] in ("Redirect", "Originate")])
            first.ws.transport.abort()

            async def once(i: int) -> None:
                if i % 3 == 0:  # gone during the handshake
                    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
                    writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
                    writer.transport.abort()
                    return
                client = await open_client(stack)
                reply = await client.request("hello", agent_id="1001", password=PASSWORDS["1001"])
                answers.append(reply.get("error_id", reply["type"]))  # a storm of logins is throttled
                if i % 3 == 1:
                    client.ws.transport.abort()  # the network drops right after the hello
                else:
                    await client.ws.close()

            answers: list[str] = []
            for wave in range(3):
                await asyncio.gather(*(once(20 * wave + i) for i in range(20)))
                stack.hub.push_to_agent("1002", {"type": "pop", "call_id": f"steady-{wave}"})
                assert (await steady.wait_push("pop", lambda m, w=wave: m["call_id"] == f"steady-{w}"))

            assert set(answers) <= {"result", "auth-throttled"} and "result" in answers, answers
            last = await open_client(stack, "1001")
            state = await last.wait_push("state")
            assert state["state"] == "reserved" and state["call_id"] == caller.linkedid
            assert (await last.wait_push("pop"))["call_id"] == caller.linkedid
            await stack.until(lambda: stack.hub.stats()["connections"] == 2, "the storm's connections closed")
            stats = stack.hub.stats()
            assert (stats["agents"], stats["authenticating"], stats["password_checks"]) == (2, 0, 0), stats
            assert stack.state("1001") == "reserved"
            again = len([a for a in stack.sender.actions() if a[0] in ("Redirect", "Originate")])
            assert again == dials, "the storm made the call be offered again"
            await last.request("not_ready", reason="break")  # the surviving console still acts
            assert stack.state("1001") in ("reserved", "not_ready")

    run(body)
