"""Test harness for the console hub: a real hub on 127.0.0.1:0 with the in-memory backend, and a small
websocket client that speaks protocol v1. Used by tests/test_console_*.py and integration tests.

Not imported by the server; may import the websockets client. No ACD, AMI or database code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from agent_console.auth import Authenticator, hash_password
from agent_console.hub import ConsoleHub
from agent_console.memory_backend import MemoryBackend
from agent_console.settings import ConsoleSection

SECRET = "test-secret-0123456789abcdef"
# Cheap scrypt parameters keep the tests fast; the format and the code path are the real ones.
PASSWORDS = {"1001": "pw-1001", "1002": "pw-1002", "sup": "pw-sup"}
HASHES = {agent: hash_password(pw, n=2**4) for agent, pw in PASSWORDS.items()}
AGENTS = {"1001": ["sales"], "1002": ["sales", "support"]}

# A pop in the shape screenpop.compose.compose_pop produces (one customer found by ANI).
_ADA = {
    "customer_id": 42,
    "profile": {"id": 42, "external_id": "C-42", "name": "Ada Lovelace", "first_name": "Ada",
                "last_name": "Lovelace", "company": "", "email": "ada@example.com", "language": "en",
                "segment": "gold", "notes": "", "phones": [{"e164": "+15551234567", "kind": "mobile"}],
                "accounts": [{"number": "ACC-0042", "product": "broadband", "status": "active"}],
                "attributes": {}},
    "interactions": [{"id": 7, "call_key": "pbx1/1700000000.1", "customer_id": 42,
                      "started_at": "2025-01-05T10:00:00+00:00", "ended_at": "2025-01-05T10:04:00+00:00",
                      "direction": "inbound", "ani": "+15551234567", "dnis": "100", "queue": "sales",
                      "campaign": "", "lead_id": "", "agent_id": "1002", "outcome": "answered",
                      "disposition": "resolved", "notes": "billing question"}],
    "crm_url": "https://crm.example.com/customers/C-42",
}
SAMPLE_POP: dict[str, Any] = {
    "call_id": "1700000100.5", "call_key": "pbx1/1700000100.5", "uniqueid": "1700000100.5", "server": "pbx1",
    "direction": "inbound", "ani": "+15551234567", "ani_e164": "+15551234567", "caller_name": "ADA L",
    "dnis": "100", "queue": "sales", "wait_seconds": 12.0, "agent_id": "1001", "complete": True,
    "lookup": {"status": "found", "by": "ani", "value": "+15551234567"}, "new_caller": False,
    "customer": _ADA, "matches": [_ADA],
    "ivr": {"path": ["main", "billing"], "collected": {"account": "0042", "pin": "****"}},
    "outbound": None, "crm_url": "https://crm.example.com/customers/C-42",
}


def make_settings(**overrides: Any) -> ConsoleSection:
    base: dict[str, Any] = {
        "token_secret": SECRET,
        "supervisors": [{"id": "sup", "password_hash": HASHES["sup"]}],
        "hello_timeout": 2.0,
    }
    base.update(overrides)
    return ConsoleSection.model_validate(base)


class Stack:
    """Hub + in-memory backend on an ephemeral port."""

    def __init__(self, settings: ConsoleSection, clock: Callable[[], float] = time.time,
                 hashes: dict[str, str] | None = None, **hub_options: Any) -> None:
        """``hashes``: the agents' password hashes (default ``HASHES``, cheap scrypt parameters)."""
        self.settings = settings
        self.backend = MemoryBackend(settings, AGENTS, clock, queues=["sales", "support"])
        auth = Authenticator(settings, hashes or {a: HASHES[a] for a in AGENTS}, clock=clock)
        self.hub = ConsoleHub(settings, self.backend, auth, clock, **hub_options)
        self.backend.attach(self.hub)
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.settings.path}"


@contextlib.asynccontextmanager
async def running(settings: ConsoleSection | None = None, clock: Callable[[], float] = time.time,
                  hashes: dict[str, str] | None = None, **hub_options: Any) -> AsyncIterator[Stack]:
    stack = Stack(settings or make_settings(), clock, hashes, **hub_options)
    stack.port = await stack.hub.start("127.0.0.1", 0)
    try:
        yield stack
    finally:
        await stack.hub.stop()


class Client:
    """A protocol-v1 client: ``request`` sends and waits for the reply; pushes are kept in ``pushes``."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pushes: list[dict[str, Any]] = []
        self._n = 0

    async def send_raw(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            return json.loads(await self.ws.recv())  # type: ignore[no-any-return]

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        self._n += 1
        rid = f"r{self._n}"
        await self.ws.send(json.dumps({"v": 1, "type": kind, "id": rid, **fields}))
        return await self.reply(rid)

    async def reply(self, rid: str | int | None) -> dict[str, Any]:
        while True:
            msg = await self.recv()
            if msg.get("type") in ("result", "error") and msg.get("re") == rid:
                return msg
            self.pushes.append(msg)

    async def wait_push(self, kind: str, pred: Callable[[dict[str, Any]], bool] = lambda m: True
                        ) -> dict[str, Any]:
        for i, msg in enumerate(self.pushes):
            if msg.get("type") == kind and pred(msg):
                return self.pushes.pop(i)
        while True:
            msg = await self.recv()
            if msg.get("type") == kind and pred(msg):
                return msg
            self.pushes.append(msg)

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; returns the close code."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                async for _ in self.ws:
                    pass
        return self.ws.close_code


async def open_client(stack: Stack, agent_id: str | None = None, *, source: str | None = None,
                      **hello: Any) -> Client:
    """Connect (from the loopback address ``source``, e.g. "127.0.0.2", when given) and, with an
    ``agent_id``, log in (its test password unless a password or token is given)."""
    local = {"local_addr": (source, 0)} if source else {}
    ws = await connect(stack.url, max_size=2**22, open_timeout=5, **local)
    client = Client(ws)
    if agent_id is not None:
        if "token" not in hello and "password" not in hello:
            hello["password"] = PASSWORDS[agent_id]
        reply = await client.request("hello", agent_id=agent_id, **hello)
        if reply["type"] != "result":
            raise AssertionError(f"hello refused: {reply}")
    return client


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    """Run one async test body on a fresh event loop."""
    asyncio.run(asyncio.wait_for(coro_fn(), 30))  # type: ignore[arg-type]
