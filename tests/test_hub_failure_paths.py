"""The console hub's failure paths over real loopback websockets: a malformed first frame, a client that goes
away before (or while) saying hello, and a backend that raises while a console resumes. The hub runs with a
small backend of this file (``FaultyBackend``: the ``ConsoleBackend`` protocol, raising where told) so the
hub's own handling is what is tested."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from agent_console import protocol
from agent_console.auth import Authenticator, hash_password, issue_token
from agent_console.backend import ConsoleBackend, ConsoleError, SessionInfo
from agent_console.hub import RESUME_FAILED, ConsoleHub
from agent_console.settings import ConsoleSection

SECRET = "hub-failure-secret-0123456789"
AGENTS = ("1001", "1002")
PASSWORD = "pw-1001"
CHEAP = hash_password(PASSWORD, n=2**4)
SLOW = hash_password(PASSWORD, n=2**15)  # ~0.1 s of scrypt: long enough to hang up during the check


class BackendFault(RuntimeError):
    """What the test backend raises when told to."""


class FaultyBackend:
    """A ``ConsoleBackend`` that answers ``ping``-like actions and resumes with a state, and raises from
    ``resume_messages`` / ``supervisor_snapshot`` / ``session_changed`` / ``handle`` when the test says so."""

    def __init__(self) -> None:
        self.fail_resume: BaseException | None = None
        self.fail_snapshot = False
        self.fail_session_changed = False
        self.resume_result: Any = None  # returned instead of the state when set (e.g. something unencodable)
        self.sessions: list[tuple[str, str, bool]] = []  # (agent id, session id, connected)
        self.resumes: list[str] = []

    async def handle(self, session: SessionInfo, action: str, params: dict[str, Any]) -> dict[str, Any]:
        if action == "not_ready":
            raise ConsoleError("illegal-transition", "not now")
        return {"done": action}

    def resume_messages(self, agent_id: str) -> list[dict[str, Any]]:
        self.resumes.append(agent_id)
        if self.fail_resume is not None:
            raise self.fail_resume
        if self.resume_result is not None:
            return self.resume_result  # type: ignore[no-any-return]
        return [{"type": "state", "agent_id": agent_id, "state": "logged_out", "reason": "", "since": 0.0}]

    def supervisor_snapshot(self) -> dict[str, Any]:
        if self.fail_snapshot:
            raise BackendFault("snapshot broke")
        return {"queues": [], "agents": [], "health": {}}

    def session_changed(self, session: SessionInfo, connected: bool) -> None:
        self.sessions.append((session.agent_id, session.session_id, connected))
        if self.fail_session_changed:
            raise BackendFault("session_changed broke")


def _settings(**overrides: Any) -> ConsoleSection:
    base: dict[str, Any] = {"token_secret": SECRET, "hello_timeout": 2.0,
                            "supervisors": [{"id": "sup", "password_hash": CHEAP}]}
    base.update(overrides)
    return ConsoleSection.model_validate(base)


class Hub:
    """A running hub on 127.0.0.1:0 with ``FaultyBackend``."""

    def __init__(self, settings: ConsoleSection, hashes: dict[str, str]) -> None:
        self.settings = settings
        self.backend = FaultyBackend()
        backend: ConsoleBackend = self.backend
        self.hub = ConsoleHub(settings, backend, Authenticator(settings, hashes, agent_ids=AGENTS))
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.settings.path}"

    async def connect(self) -> ClientConnection:
        return await connect(self.url, open_timeout=5, max_size=2**22)

    async def login(self, agent_id: str = "1001", role: str = "agent") -> tuple[ClientConnection, dict[str, Any]]:
        """Connect with a token; the hello's result."""
        ws = await self.connect()
        token = issue_token(SECRET, agent_id, role, 600, time.time())  # type: ignore[arg-type]
        await ws.send(json.dumps({"v": 1, "type": "hello", "id": "h", "agent_id": agent_id, "token": token,
                                  **({"role": role} if role != "agent" else {})}))
        reply = await recv(ws)
        assert reply["type"] == "result" and reply["re"] == "h", reply
        return ws, reply

    async def settled(self) -> None:
        """Wait until no connection is open or authenticating."""
        async with asyncio.timeout(5):
            while self.hub.stats()["connections"] or self.hub.stats()["unauthenticated"]:
                await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(settings: ConsoleSection | None = None, hashes: dict[str, str] | None = None
                  ) -> AsyncIterator[Hub]:
    h = Hub(settings or _settings(), hashes or {a: CHEAP for a in AGENTS})
    h.port = await h.hub.start("127.0.0.1", 0)
    try:
        yield h
    finally:
        await h.hub.stop()


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        return json.loads(await ws.recv())  # type: ignore[no-any-return]


async def close_code(ws: ClientConnection, timeout: float = 5.0) -> int | None:
    """Read until the server closes; its close code."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout):
            async for _ in ws:
                pass
    return ws.close_code


async def request(ws: ClientConnection, kind: str, rid: str, **fields: Any) -> dict[str, Any]:
    """Send a request; its reply (pushes before it are skipped)."""
    await ws.send(json.dumps({"v": 1, "type": kind, "id": rid, **fields}))
    while True:
        msg = await recv(ws)
        if msg.get("re") == rid:
            return msg


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 30))  # type: ignore[arg-type]


async def still_serves(h: Hub, agent_id: str = "1002") -> None:
    """The hub still logs a console in and answers it (nothing above broke it)."""
    ws, _ = await h.login(agent_id)
    assert (await request(ws, "ping", "p"))["type"] == "result"
    await ws.close()


# ---------------------------------------------------------------- malformed first frames
MALFORMED = [
    ("{not json", "bad-json", None),
    ("[1, 2, 3]", "bad-message", None),
    ('"hello"', "bad-message", None),
    ('{"v": 2, "type": "hello", "id": 7, "agent_id": "1001", "token": "x"}', "unsupported-version", 7),
    ('{"v": 1, "id": 8}', "bad-message", 8),
    ('{"v": 1, "type": "shout", "id": 9}', "unknown-type", 9),
    ('{"v": 1, "type": "hello", "agent_id": "1001", "token": "x"}', "bad-message", None),
    ('{"v": 1, "type": "hello", "id": "h1"}', "invalid-params", "h1"),
    ('{"v": 1, "type": "hello", "id": "h2", "agent_id": "1001", "token": 5}', "invalid-params", "h2"),
    ("[" * 5000 + "]" * 5000, "bad-json", None),
    ('{"v": 1, "type": "ready", "id": "r1"}', "unauthenticated", "r1"),
]


@pytest.mark.parametrize(("frame", "error_id", "re"), MALFORMED, ids=[m[1] + f"-{i}" for i, m in enumerate(MALFORMED)])
def test_a_malformed_first_frame_is_refused_with_its_error_and_4001(frame: str, error_id: str, re: Any) -> None:
    """Whatever is wrong with the first frame, the client gets one error naming it (with the request id when
    the frame had one), the connection closes with 4001, the backend never hears of a session, the hub's
    counts go back to zero and the next console logs in."""

    async def body() -> None:
        async with running() as h:
            ws = await h.connect()
            await ws.send(frame)
            reply = await recv(ws)
            assert (reply["type"], reply["error_id"], reply.get("re")) == ("error", error_id, re)
            assert await close_code(ws) == protocol.CLOSE_UNAUTHENTICATED
            await h.settled()
            assert h.backend.sessions == [] and h.backend.resumes == []
            await still_serves(h)

    run(body)


def test_a_binary_first_frame_is_refused() -> None:
    """A binary frame is not part of the protocol: refused with bad-frame and 4001."""

    async def body() -> None:
        async with running() as h:
            ws = await h.connect()
            await ws.send(b'{"v": 1, "type": "hello"}')
            reply = await recv(ws)
            assert (reply["type"], reply["error_id"]) == ("error", "bad-frame")
            assert await close_code(ws) == protocol.CLOSE_UNAUTHENTICATED
            await still_serves(h)

    run(body)


def test_an_oversized_first_frame_closes_1009_and_the_hub_goes_on() -> None:
    """A first frame over ``max_message_bytes`` is not read at all: close 1009 (message too big), nothing
    registered, and the hub serves the next console."""

    async def body() -> None:
        async with running(_settings(max_message_bytes=1024)) as h:
            ws = await h.connect()
            await ws.send(json.dumps({"v": 1, "type": "hello", "id": 1, "agent_id": "1001", "token": "x" * 5000}))
            assert await close_code(ws) == 1009
            await h.settled()
            assert h.backend.sessions == []
            await still_serves(h)

    run(body)


# ---------------------------------------------------------------- closed before hello
def test_a_client_that_closes_before_hello_leaves_nothing_behind(caplog: pytest.LogCaptureFixture) -> None:
    """Clients that open the websocket and go away without a hello, cleanly (close frame) or not (the TCP
    connection dropped), are forgotten: no session, no backend call, no error logged, counts back to zero."""

    async def body() -> None:
        async with running() as h:
            polite = await h.connect()
            await polite.close()
            rude = await h.connect()
            rude.transport.abort()
            await h.settled()
            stats = h.hub.stats()
            assert (stats["agents"], stats["connections_opened"], stats["connections_closed"]) == (0, 2, 2)
            assert h.backend.sessions == []
            await still_serves(h)

    caplog.set_level(logging.WARNING)
    run(body)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_client_that_closes_before_the_websocket_handshake_is_uncounted() -> None:
    """TCP connections that close before (or half-way through) the HTTP upgrade are counted as not logged in
    while they last and uncounted when they go: none lingers to use up the per-address limit."""

    async def body() -> None:
        async with running(_settings(max_unauthenticated_per_address=3)) as h:
            for prefix in (b"", b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"\x16\x03\x01"):
                for _ in range(4):  # more than the per-address limit, one after the other
                    reader, writer = await asyncio.open_connection("127.0.0.1", h.port)
                    writer.write(prefix)
                    await writer.drain()
                    writer.close()
                    with contextlib.suppress(ConnectionError):
                        await writer.wait_closed()
            await h.settled()
            assert h.hub.stats()["unauthenticated"] == 0 and h.backend.sessions == []
            await still_serves(h)

    run(body)


def test_a_client_that_hangs_up_during_its_password_check_is_not_registered() -> None:
    """The hello arrives, the (slow) password check runs in a worker thread, and the client drops the
    connection meanwhile: when the check ends the hub registers nothing and tells the backend nothing."""

    async def body() -> None:
        async with running(hashes={"1001": SLOW, "1002": CHEAP}) as h:
            ws = await h.connect()
            await ws.send(json.dumps({"v": 1, "type": "hello", "id": 1, "agent_id": "1001", "password": PASSWORD}))
            async with asyncio.timeout(5):
                while h.hub.stats()["password_checks"] == 0:
                    await asyncio.sleep(0.001)
            ws.transport.abort()
            await h.settled()
            async with asyncio.timeout(5):
                while h.hub.stats()["password_checks"]:
                    await asyncio.sleep(0.005)
            assert h.backend.sessions == [] and not h.hub.is_connected("1001")
            assert h.hub.stats()["agents"] == 0
            await still_serves(h)

    run(body)


# ---------------------------------------------------------------- the backend raising on resume
@pytest.mark.parametrize("fault", [BackendFault("resume broke"), KeyError("1001"), RecursionError("deep")],
                         ids=["runtime", "key", "recursion"])
def test_resume_messages_raising_keeps_the_console_and_says_so(fault: BaseException,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """``resume_messages`` raises: the agent is still logged in, gets a ``resume-failed`` notice (a clear
    message, no internals), the backend is still told of the session (and of its end), the error is logged
    once with its traceback, and the connection and the hub keep working."""

    async def body() -> None:
        async with running() as h:
            h.backend.fail_resume = fault
            ws, _ = await h.login("1001")
            notice = await recv(ws)
            assert (notice["type"], notice["notice"]) == ("notice", RESUME_FAILED)
            assert "restore" in notice["message"] and type(fault).__name__ not in notice["message"]
            assert h.hub.is_connected("1001")
            assert (await request(ws, "ping", "p1"))["type"] == "result"
            assert (await request(ws, "ready", "p2"))["done"] == "ready"
            h.hub.push_to_agent("1001", {"type": "state", "agent_id": "1001", "state": "ready"})
            assert (await recv(ws))["state"] == "ready"
            h.backend.fail_resume = None
            await still_serves(h)
            await ws.close()
            await h.settled()
            assert [(a, up) for a, _, up in h.backend.sessions] == \
                [("1001", True), ("1002", True), ("1002", False), ("1001", False)]

    caplog.set_level(logging.ERROR, logger="agent_console.hub")
    run(body)
    failures = [r for r in caplog.records if "resume" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None and failures[0].exc_info[1] is fault


def test_resume_messages_returning_something_unencodable_is_a_resume_failure() -> None:
    """A resume message that cannot be encoded (a backend bug) is handled like a raising backend: none of
    the resume is sent half-way, the notice says it failed, and the session works."""

    async def body() -> None:
        async with running() as h:
            h.backend.resume_result = [{"type": "state", "agent_id": "1001", "state": "ready"},
                                       {"type": "call", "started": object()}]
            ws, _ = await h.login("1001")
            notice = await recv(ws)
            assert (notice["type"], notice["notice"]) == ("notice", RESUME_FAILED)
            assert (await request(ws, "ping", "p"))["type"] == "result"

    run(body)


def test_a_supervisor_snapshot_raising_keeps_the_wallboard_session() -> None:
    """The wallboard's first snapshot raises: the supervisor is logged in, told the resume failed, and gets
    later wallboard pushes."""

    async def body() -> None:
        async with running() as h:
            h.backend.fail_snapshot = True
            ws, reply = await h.login("sup", role="supervisor")
            assert reply["role"] == "supervisor"
            assert (await recv(ws))["notice"] == RESUME_FAILED
            h.hub.push_to_supervisors({"type": "wallboard", "queues": [], "agents": [], "health": {}})
            assert (await recv(ws))["type"] == "wallboard"

    run(body)


def test_session_changed_raising_is_logged_and_the_resume_still_arrives(caplog: pytest.LogCaptureFixture) -> None:
    """The backend's ``session_changed`` raises at login and at the end: the console still gets its state,
    works, and the hub logs each failure and stays up."""

    async def body() -> None:
        async with running() as h:
            h.backend.fail_session_changed = True
            ws, _ = await h.login("1001")
            assert (await recv(ws))["type"] == "state"
            assert (await request(ws, "ping", "p"))["type"] == "result"
            await ws.close()
            await h.settled()
            h.backend.fail_session_changed = False
            await still_serves(h)

    caplog.set_level(logging.ERROR, logger="agent_console.hub")
    run(body)
    assert len([r for r in caplog.records if "session_changed failed" in r.getMessage()]) == 2


def test_a_backend_action_raising_is_an_internal_error_and_a_console_error_is_its_own() -> None:
    """After a resume failure the session's actions still go to the backend: a ConsoleError comes back with its
    error id; the connection stays open."""

    async def body() -> None:
        async with running() as h:
            h.backend.fail_resume = BackendFault("resume broke")
            ws, _ = await h.login("1001")
            await recv(ws)
            reply = await request(ws, "not_ready", "n", reason="break")
            assert (reply["type"], reply["error_id"]) == ("error", "illegal-transition")
            assert (await request(ws, "ping", "p"))["type"] == "result"

    run(body)
