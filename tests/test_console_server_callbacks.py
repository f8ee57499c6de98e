"""Callbacks through the real console backend (centre/console_backend.py) over a real websocket (issue 13,
item 8): an agent cannot attach a callback to another agent's call, and a time that does not exist in
UTC is a clean error, not an internal one."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent_console.auth import Authenticator, issue_token
from agent_console.hub import ConsoleHub
from centre.console_backend import ServerConsoleBackend
from centre.demo import build_virtual, with_demo_callers
from config.load import load_config
from tests.console_stack import SECRET, Client, make_settings, run
from tests.test_server_pops import DEMO, inline


def _virtual_server(tmp_path: Path) -> Any:
    """The demo contact centre in virtual time with a SQLite callback store, run until an agent is on a call."""
    cfg = with_demo_callers(load_config(DEMO))
    url = f"sqlite:///{tmp_path / 'cb.db'}"
    cfg = cfg.model_copy(update={"dialer": cfg.dialer.model_copy(update={"campaigns": []}),
                                 "database": cfg.database.model_copy(update={"url": url})})
    stack = build_virtual(cfg, seed=3)
    stack.server.open_database(inline)
    for _ in range(120):
        stack.clock.run_for(5.0)
        busy = [a for a in stack.server.acd.agent_ids() if stack.server.call_for_agent(a) is not None]
        if busy:
            return stack, busy[0]
    raise AssertionError("no agent got a call")


def test_callbacks_are_limited_to_the_agents_own_calls_and_valid_times(tmp_path: Path) -> None:
    """Another agent's call_id is refused with unknown-call and stores nothing; the agent's own current call
    is accepted; 9999-12-31T23:59:59-23:59 (year 10000 in UTC) is invalid-params, not internal-error."""
    stack, busy = _virtual_server(tmp_path)
    server = stack.server
    other = next(a for a in server.acd.agent_ids() if a != busy and server.call_for_agent(a) is None)
    theirs = server.call_for_agent(busy).queued.call_id
    settings = make_settings()
    auth = Authenticator(settings, {}, agent_ids=server.acd.agent_ids())

    async def body() -> None:
        from websockets.asyncio.client import connect

        hub = ConsoleHub(settings, ServerConsoleBackend(server), auth)
        port = await hub.start("127.0.0.1", 0)
        try:
            async def console(agent_id: str) -> Client:
                client = Client(await connect(f"ws://127.0.0.1:{port}/ws"))
                token = issue_token(SECRET, agent_id, "agent", 600, time.time())
                assert (await client.request("hello", agent_id=agent_id, token=token))["type"] == "result"
                return client

            at = datetime.fromtimestamp(server.now() + 3600, UTC).isoformat()
            intruder = await console(other)
            reply = await intruder.request("schedule_callback", at=at, number="5551234", call_id=theirs)
            assert reply.get("error_id") == "unknown-call", reply
            reply = await intruder.request("schedule_callback", at="9999-12-31T23:59:59-23:59", number="5551234")
            assert reply.get("error_id") == "invalid-params" and reply["fields"][0]["field"] == "at", reply
            owner = await console(busy)
            reply = await owner.request("schedule_callback", at=at, number="5551234", call_id=theirs)
            assert reply["type"] == "result" and reply["callback_id"], reply
        finally:
            await hub.stop()

    run(body)
    stored = server.callback_store.pending()
    assert [(c.call_id, c.agent_id) for c in stored] == [(theirs, busy)]  # only the owner's callback
