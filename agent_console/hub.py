"""The console websocket hub: one ``websockets`` server for the /ws endpoint and the static pages,
authentication, per-agent routing, heartbeats, resume and slow-client protection.

I/O shell only: message rules live in ``protocol``, credentials in ``auth``, actions in the backend.
Must not import the ACD, AMI or database code. Runs on the asyncio loop that Twisted's asyncio reactor
also uses (cti/reactor.py).

Outbound delivery: ``push_to_agent`` is O(1) (dict by agent id) and never awaits. When nothing is queued
ahead of a frame and the socket's buffer is under ``console.write_limit``, the frame is framed at once; an
urgent frame (a pop, a pop update, a notice, a reply) is then written to the socket at once, together with
whatever routine frames (state, call, heartbeat, wallboard) that connection has pending, in one write; routine
frames otherwise wait for the end of the event loop's pass, when each connection's pending frames go out in
one write. A routine push to one agent is not even encoded before then (or before that connection's next
urgent frame): during an AMI read it costs one append. So a burst of AMI events costs one socket write per
console touched, not one per frame, and a pop never waits behind the rest of an AMI read. Frames always
reach a client in the order they were pushed. Otherwise a frame waits in the connection's bounded FIFO,
drained by one sender task that exists only while the FIFO is non-empty. A client whose FIFO reaches
``console.send_queue`` frames is too slow: it is aborted (no close frame; the client sees 1006 and
reconnects, getting its state and live pops again), so it never delays anyone else.

Supervisors' statistics subscriptions (``subscribe``/``unsubscribe``, answered by the backend) are pushed to
one session each: ``push_to_session`` (routine frames, like the wallboard).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import ipaddress
import itertools
import json
import logging
import re
import socket
import ssl
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from agent_console import protocol
from agent_console.auth import Authenticator, AuthError, Identity, PendingChecks
from agent_console.backend import ConsoleBackend, ConsoleError, SessionInfo
from agent_console.protocol import ALLOWED, PUSH_TYPES, Hello, ProtocolError, RateLimiter, encode
from agent_console.settings import ConsoleSection
from agent_console.static_site import StaticSite, security_headers

log = logging.getLogger("agent_console.hub")


class _NoFrameLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger handed to websockets. At DEBUG websockets logs every frame (``< TEXT '{"type": "hello",
    ... "password": ...}'``), token signatures and pops included: its DEBUG level is never enabled, whatever
    the configured level, so frame contents never reach a log. Its INFO and higher lines (no contents) go
    to ``agent_console.websockets``."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        return None


_WS_LOG = _NoFrameLogger(logging.getLogger("agent_console.websockets"), {})
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")

_Item = str | tuple[int, str]  # an encoded frame, or (close code, reason) as the last item

HEARTBEAT_SLICE = 0.1  # seconds: heartbeats go out to a slice of the connections this often

# Pushes written at once (with the connection's pending routine frames ahead of them); every other push
# type waits for the end of the loop pass. Replies to requests are always urgent.
URGENT_PUSHES = frozenset({"pop", "pop_update", "notice", "preview"})

# The notice a console gets when the backend could not say what it needs on (re)connecting.
RESUME_FAILED = "resume-failed"
RESUME_FAILED_MESSAGE = "the server could not restore this console's state; it shows what changes from now on"


class _Session:
    """Per-connection state, kept small: the benchmark target is <= 30 KiB per idle connection."""

    __slots__ = ("ws", "info", "queue", "sender", "closing", "limiter", "slot", "routine")

    def __init__(self, ws: ServerConnection, info: SessionInfo, limiter: RateLimiter, slot: int = 0) -> None:
        self.ws = ws
        self.slot = slot  # which slice of the heartbeat interval this connection's heartbeat goes out in
        self.info = info
        self.queue: deque[_Item] = deque()
        self.sender: asyncio.Task[None] | None = None
        self.closing = False
        self.limiter = limiter
        self.routine: list[dict[str, Any]] | None = None  # routine pushes not yet encoded (end of the pass)


class ConsoleHub:
    """Websocket hub. Construct, ``await start(host, port)``, push with ``push_to_agent``/``push_to_supervisors``,
    ``await stop()``. Implements ``backend.ConsolePusher``."""

    def __init__(self, settings: ConsoleSection, backend: ConsoleBackend, authenticator: Authenticator,
                 clock: Callable[[], float] = time.time, *, not_ready_reasons: Sequence[str] | None = None) -> None:
        """``not_ready_reasons``: the list the consoles offer (pass ``acd.not_ready_reasons`` when the ACD
        enforces them); default ``console.not_ready_reasons``."""
        self._settings = settings
        self._backend = backend
        self._auth = authenticator
        self._clock = clock
        self._site = StaticSite(ws_path=settings.path)
        self._agents: dict[str, _Session] = {}
        self._supervisors: dict[str, _Session] = {}
        self._open = 0
        self._unauthenticated = 0  # connections not logged in (TCP accept to hello result), in all
        self._unauthenticated_by_address: dict[str, int] = {}
        self._pending = PendingChecks(settings.auth_pending, settings.auth_pending_per_address)
        self._allowed_origins = frozenset(settings.allowed_origins)
        self._trusted_proxies = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._auth_pool: ThreadPoolExecutor | None = None
        self._unflushed: set[_Session] = set()  # connections with framed, unwritten routine frames
        self._unframed: set[_Session] = set()  # connections with routine pushes not yet encoded
        self._flush_scheduled = False
        self._counters = dict.fromkeys(
            ("messages_in", "messages_out", "dropped_slow", "rate_limited", "auth_failures", "undelivered",
             "replaced", "rejected_full", "connections_opened", "connections_closed", "rejected_unauthenticated",
             "rejected_origin", "auth_throttled"), 0)
        self._hello_payload = {
            "heartbeat_interval": settings.heartbeat_interval,
            "dispositions": [d.model_dump() for d in settings.dispositions],
            "not_ready_reasons": list(settings.not_ready_reasons if not_ready_reasons is None else not_ready_reasons),
            "protocol": protocol.PROTOCOL_VERSION,
            "endpoint_override": settings.allow_endpoint_override,
        }

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self, host: str, port: int, *, tls: ssl.SSLContext | None = None) -> int:
        """Listen on host:port (0 = ephemeral), with ``tls`` https:// and wss:// only; returns the bound port."""
        s = self._settings
        # Exact Origin values; auth is a message, not a cookie, so cross-site hijacking gains nothing anyway.
        self._auth_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="console-auth")
        hub = self

        class _Connection(ServerConnection):
            """Counts connections that have not logged in, per address and in all, from the TCP accept on;
            past either cap the socket is reset at once (before any byte is read)."""

            cti_address = ""
            cti_counted = False

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                hub._admit(self, transport)

            def connection_lost(self, exc: Exception | None) -> None:
                hub._uncount(self)
                super().connection_lost(exc)

        self._server = await serve(
            self._handle_connection, host, port,
            process_request=self._process_request,
            create_connection=_Connection,
            logger=_WS_LOG,
            compression="deflate" if s.compression == "deflate" else None,
            # The Origin is checked in _process_request (the server's own origin by default).
            max_size=s.max_message_bytes,
            max_queue=8,
            write_limit=s.write_limit,
            ping_interval=s.ping_interval,
            ping_timeout=s.ping_timeout,
            close_timeout=5,
            server_header=None,
            ssl=tls,
            ssl_handshake_timeout=10 if tls is not None else None,  # as the websocket handshake's own cap
        )
        self._heartbeat = asyncio.create_task(self._heartbeats())
        bound: int = self._server.sockets[0].getsockname()[1]
        log.debug("console hub listening on %s:%d (websocket %s)", host, bound, s.path)
        return bound

    async def stop(self) -> None:
        """Close every connection (1001 going away) and stop listening."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._auth_pool is not None:
            self._auth_pool.shutdown(wait=False, cancel_futures=True)
            self._auth_pool = None

    # ---- pushes (ConsolePusher) ------------------------------------------------------------------

    def push_to_agent(self, agent_id: str, message: dict[str, Any]) -> None:
        """Send ``message`` (a server push, see protocol.PUSH_TYPES) to this agent's console only.
        Non-blocking; call it on the event loop's thread. No console connected: counted as undelivered
        (resume re-sends what matters). ValueError for a type that is not a push."""
        self._check_push(message)
        session = self._agents.get(agent_id)
        if session is None:
            self._counters["undelivered"] += 1
            return
        if message["type"] in URGENT_PUSHES:
            self._enqueue(session, encode(message))
        elif not session.closing:
            # Encoded and framed at the end of the pass (or ahead of this connection's next urgent frame),
            # so that routine pushes cost the rest of an AMI read nothing but this append.
            if session.routine is None:
                session.routine = []
            session.routine.append(message)
            self._unframed.add(session)
            self._schedule_flush()

    def push_to_supervisors(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for every supervisor connection (encoded once)."""
        self._check_push(message)
        if not self._supervisors:
            return
        frame = encode(message)
        urgent = message["type"] in URGENT_PUSHES
        for session in list(self._supervisors.values()):
            self._enqueue(session, frame, urgent)

    def push_to_session(self, session_id: str, message: dict[str, Any]) -> bool:
        """Queue ``message`` for one supervisor session (the statistics it subscribed to); routine, written
        at the end of the loop's pass. False when that session is gone."""
        self._check_push(message)
        session = self._supervisors.get(session_id)
        if session is None or session.closing:
            return False
        self._enqueue(session, encode(message), False)
        return True

    def is_connected(self, agent_id: str) -> bool:
        return agent_id in self._agents

    def has_supervisors(self) -> bool:
        """Whether any wallboard is connected (so the server builds wallboard pushes only when watched)."""
        return bool(self._supervisors)

    def stats(self) -> dict[str, Any]:
        registered = len(self._agents) + len(self._supervisors)
        return {"connections": self._open, "agents": len(self._agents), "supervisors": len(self._supervisors),
                "authenticating": max(0, self._open - registered), "unauthenticated": self._unauthenticated,
                "password_checks": self._pending.total, **self._counters}

    @staticmethod
    def _check_push(message: dict[str, Any]) -> None:
        if message.get("type") not in PUSH_TYPES:
            raise ValueError(f"not a console push type: {message.get('type')!r}; known: {sorted(PUSH_TYPES)}")

    # ---- HTTP ------------------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        host = _request_host(request)
        if path == self._settings.path:
            if getattr(connection, "cti_counted", False) and not connection.cti_address:  # type: ignore[attr-defined]
                self._uncount(connection)  # from a trusted proxy: count it under the client it names now
                if not self._count(connection, self._forwarded_client(request)):
                    self._counters["rejected_unauthenticated"] += 1
                    return self._response(503, "text/plain; charset=utf-8", b"Too many connections\n", host)
            if not self._origin_allowed(request.headers.get("Origin"), host):
                self._counters["rejected_origin"] += 1
                log.info("console websocket from %s refused: Origin not allowed", _peer(connection))
                return self._response(403, "text/plain; charset=utf-8", b"Origin not allowed\n", host)
            return None  # websocket handshake
        if path == "/healthz":
            return self._response(200, "application/json", json.dumps(self.stats()).encode(), host)
        page = self._site.lookup(path)
        if page is None:
            return self._response(404, "text/plain; charset=utf-8", b"Not Found\n", host)
        return self._response(200, page.content_type, page.body, host)

    def _origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """A browser always sends the Origin of the page opening a websocket: accept the server's own
        (the page came from this host), the configured ``allowed_origins``, or any with ``"*"``. No Origin
        at all is a client that is not a browser (a page cannot leave it out), which gains nothing from it."""
        if origin is None or "*" in self._allowed_origins or origin in self._allowed_origins:
            return True
        scheme, sep, rest = origin.partition("://")
        return bool(sep) and scheme in ("http", "https") and host is not None and rest.lower() == host.lower()

    @staticmethod
    def _response(status: int, content_type: str, body: bytes, host: str | None) -> Response:
        headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                           ("Connection", "close"), *security_headers(host)])
        return Response(status, http.HTTPStatus(status).phrase, headers, body)

    # ---- websocket connections -------------------------------------------------------------------

    def _admit(self, conn: Any, transport: asyncio.BaseTransport) -> None:
        """TCP accept: count the connection as not logged in, or reset it past the caps. A connection from a
        trusted proxy counts in the total only until its request names the client (``_process_request``)."""
        peer = transport.get_extra_info("peername")
        proxy = self._is_trusted_proxy(peer)
        if not self._count(conn, "" if proxy else _address_key(peer)):
            self._counters["rejected_unauthenticated"] += 1
            transport.abort()  # type: ignore[attr-defined]

    def _count(self, conn: Any, address: str) -> bool:
        """Count ``conn`` as not logged in from ``address`` ("": not known yet, total cap only)."""
        mine = self._unauthenticated_by_address.get(address, 0) if address else 0
        if (self._unauthenticated >= self._settings.max_unauthenticated
                or mine >= self._settings.max_unauthenticated_per_address):
            return False
        conn.cti_address = address
        conn.cti_counted = True
        self._unauthenticated += 1
        if address:
            self._unauthenticated_by_address[address] = mine + 1
        return True

    def _uncount(self, conn: Any) -> None:
        """The connection logged in or went away: it no longer counts against the unauthenticated caps."""
        if not conn.cti_counted:
            return
        conn.cti_counted = False
        self._unauthenticated -= 1
        if not conn.cti_address:
            return
        left = self._unauthenticated_by_address.get(conn.cti_address, 1) - 1
        if left > 0:
            self._unauthenticated_by_address[conn.cti_address] = left
        else:
            self._unauthenticated_by_address.pop(conn.cti_address, None)

    def _is_trusted_proxy(self, peer: Any) -> bool:
        if not self._trusted_proxies:
            return False
        try:
            ip = ipaddress.ip_address(peer[0])
        except (TypeError, ValueError, IndexError):
            return False
        return any(ip in network for network in self._trusted_proxies)

    def _forwarded_client(self, request: Request) -> str:
        """The client address a trusted proxy names: the right-most X-Forwarded-For entry that is not
        itself a trusted proxy (entries further left are whatever the client chose to send)."""
        hops = [hop.strip() for value in request.headers.get_all("X-Forwarded-For") for hop in value.split(",")]
        for hop in reversed(hops):
            if not self._is_trusted_proxy((hop,)):
                return _address_key((hop,))
        return "?"

    async def _handle_connection(self, ws: ServerConnection) -> None:
        self._open += 1
        self._counters["connections_opened"] += 1
        try:
            session = await self._authenticate(ws)
            if session is None:
                return
            try:
                await self._serve(session)
            finally:
                self._unregister(session)
        finally:
            self._open -= 1
            self._counters["connections_closed"] += 1

    async def _authenticate(self, ws: ServerConnection) -> _Session | None:
        remote = _peer(ws)
        try:
            async with asyncio.timeout(self._settings.hello_timeout):
                frame = await ws.recv()
        except TimeoutError:
            await self._refuse(ws, None, "hello-timeout", "no hello within the time limit")
            return None
        except ConnectionClosed:
            return None
        self._counters["messages_in"] += 1
        try:
            hello = protocol.decode(frame)
        except ProtocolError as exc:
            await self._refuse(ws, exc.re, exc.error_id, f"{exc.message} (expected a hello)", exc.fields)
            return None
        if not isinstance(hello, Hello):
            await self._refuse(ws, hello.id, "unauthenticated", "the first message must be a hello")
            return None
        try:
            identity = await self._verify(hello, getattr(ws, "cti_address", "") or remote)
        except AuthError as exc:
            if exc.error_id == "auth-throttled":
                self._counters["auth_throttled"] += 1
            else:
                self._counters["auth_failures"] += 1
                log.info("console login refused for %s from %s: %s", hello.agent_id, remote, exc.error_id)
            await self._refuse(ws, hello.id, exc.error_id, exc.message)
            return None
        if ws.state.name != "OPEN":
            return None
        replacing = identity.role == "agent" and identity.user_id in self._agents
        if not replacing and len(self._agents) + len(self._supervisors) >= self._settings.max_connections:
            self._counters["rejected_full"] += 1
            with contextlib.suppress(ConnectionClosed):
                await ws.send(encode(protocol.error(hello.id, "server-full", "the server is full; retry later")))
                await ws.close(protocol.CLOSE_SERVER_FULL, "server full")
            return None
        self._uncount(ws)
        now = self._clock()
        number = next(self._ids)
        info = SessionInfo(session_id=f"s{number}", agent_id=identity.user_id, role=identity.role,
                           remote=remote, connected_at=now)
        session = _Session(ws, info, RateLimiter(self._settings.rate_per_second, self._settings.rate_burst, now),
                           slot=number)
        self._register(session)
        resume = self._auth.resume_token(identity, self._settings.resume_ttl)
        self._enqueue(session, encode(protocol.result(
            hello.id, agent_id=info.agent_id, role=info.role, session_id=info.session_id, server_time=now,
            **({"resume_token": resume} if resume else {}), **self._hello_payload)))
        try:
            if info.role == "agent":
                resume = [encode(message) for message in self._backend.resume_messages(info.agent_id)]
            else:
                resume = [encode({"type": "wallboard", **self._backend.supervisor_snapshot()})]
        except Exception:  # the session stays usable; the console shows what later pushes bring, and says so
            log.exception("console resume for %s %s failed", info.role, info.agent_id)
            resume = [encode({"type": "notice", "notice": RESUME_FAILED, "message": RESUME_FAILED_MESSAGE})]
        for frame in resume:
            self._enqueue(session, frame)
        try:
            self._backend.session_changed(info, True)  # told even when the resume failed: it is told of the end
        except Exception:
            log.exception("backend session_changed failed for %s %s", info.role, info.agent_id)
        log.info("console %s %s connected from %s (%s)", info.role, info.agent_id, remote, info.session_id)
        return session

    async def _verify(self, hello: Hello, address: str) -> Identity:
        if hello.token is not None:  # HMAC: cheap, stays on the loop, never waits behind password checks
            return self._auth.verify(hello.agent_id, token=hello.token, role=hello.role)
        # A password costs a scrypt in a worker thread: refuse at once, without queueing it, when this
        # (id, address) or address must wait after failures, or too many checks are already pending.
        if self._auth.password_wait(hello.agent_id, address) > 0:
            raise AuthError("auth-throttled", "too many failed logins from your address; try again later")
        if not self._pending.acquire(address):
            raise AuthError("auth-throttled", "too many logins are being checked; try again in a moment")
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._auth_pool, lambda: self._auth.verify(
                hello.agent_id, password=hello.password, role=hello.role, address=address))
        finally:
            self._pending.release(address)

    async def _refuse(self, ws: ServerConnection, re: protocol.RequestId | None, error_id: str, message: str,
                      fields: list[dict[str, str]] | None = None) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(encode(protocol.error(re, error_id, message, fields=fields)))
            await ws.close(protocol.CLOSE_UNAUTHENTICATED, error_id)

    def _register(self, session: _Session) -> None:
        info = session.info
        if info.role == "supervisor":
            self._supervisors[info.session_id] = session
            return
        old = self._agents.get(info.agent_id)
        if old is not None:
            self._counters["replaced"] += 1
            self._enqueue(old, encode({"type": "notice", "notice": "replaced",
                                       "message": "this agent signed in from another console"}))
            self._close(old, protocol.CLOSE_REPLACED, "replaced by a newer session")
        self._agents[info.agent_id] = session

    def _unregister(self, session: _Session) -> None:
        info = session.info
        if info.role == "supervisor":
            self._supervisors.pop(info.session_id, None)
        elif self._agents.get(info.agent_id) is session:
            del self._agents[info.agent_id]
        session.closing = True
        session.queue.clear()
        session.routine = None
        if session.sender is not None:
            session.sender.cancel()
        try:
            self._backend.session_changed(info, False)
        except Exception:
            log.exception("backend session_changed failed for %s %s", info.role, info.agent_id)
        log.info("console %s %s disconnected (%s, close %s)", info.role, info.agent_id, info.session_id,
                 session.ws.close_code)

    async def _serve(self, session: _Session) -> None:
        ws, info = session.ws, session.info
        allowed = ALLOWED[info.role]
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                if session.closing:
                    continue  # keep reading (and discarding) so the closing handshake can complete
                now = self._clock()
                self._counters["messages_in"] += 1
                if not session.limiter.allow(now):
                    self._counters["rate_limited"] += 1
                    log.warning("console %s %s flooding: closing", info.role, info.agent_id)
                    self._enqueue(session, encode(protocol.error(
                        None, "rate-limited", f"more than {self._settings.rate_burst} messages at once or "
                        f"{self._settings.rate_per_second:g}/s sustained")))
                    self._close(session, protocol.CLOSE_RATE_LIMITED, "rate limited")
                    continue
                reply = await self._answer(session, frame, allowed, now)
                self._enqueue(session, encode(reply))
        sender = session.sender
        if sender is not None and session.closing:
            with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
                await sender  # deliver the final error and close frame before the handler returns

    async def _answer(self, session: _Session, frame: str | bytes, allowed: frozenset[str],
                      now: float) -> dict[str, Any]:
        try:
            message = protocol.decode(frame)
        except ProtocolError as exc:
            return exc.to_message()
        kind: str = message.type  # type: ignore[attr-defined]
        rid: protocol.RequestId = message.id  # type: ignore[attr-defined]
        if kind == "hello":
            return protocol.error(rid, "already-authenticated", "this connection is already authenticated")
        if kind not in allowed:
            return protocol.error(rid, "forbidden", f"{kind} is not allowed for role {session.info.role}")
        if kind == "ping":
            return protocol.result(rid, ts=now)
        try:
            payload = await self._backend.handle(session.info, kind, protocol.params_of(message))
        except ConsoleError as exc:
            return protocol.error(rid, exc.error_id, exc.message, details=exc.details or None)
        except Exception:
            log.exception("console action %s of %s failed", kind, session.info.agent_id)
            return protocol.error(rid, "internal-error", "the server could not carry out this action")
        return protocol.result(rid, **payload)

    # ---- outbound queue --------------------------------------------------------------------------

    def _enqueue(self, session: _Session, frame: str, urgent: bool = True) -> None:
        if session.routine:
            self._frame_routine(session)
        if session.closing:
            return
        ws = session.ws
        if (session.sender is None and ws.protocol.state is State.OPEN
                and ws.transport.get_write_buffer_size() < self._settings.write_limit):
            # Fast path: nothing queued ahead and the socket keeps up: frame it now (the first step
            # websockets' send() takes) instead of waking a task; write it now or at the end of the pass.
            ws.protocol.send_text(frame.encode("utf-8"))
            self._counters["messages_out"] += 1
            if urgent:
                self._unflushed.discard(session)
                _write_out(ws)
            else:
                self._unflushed.add(session)
                self._schedule_flush()
            return
        if len(session.queue) >= self._settings.send_queue:
            self._drop_slow(session)
            return
        session.queue.append(frame)
        self._counters["messages_out"] += 1
        if session.sender is None:
            session.sender = asyncio.get_running_loop().create_task(self._drain(session))

    def _frame_routine(self, session: _Session) -> None:
        """Encode and frame the connection's routine pushes (in order, ahead of anything pushed after them)."""
        messages, session.routine = session.routine, None
        self._unframed.discard(session)
        for message in messages or ():
            self._enqueue(session, encode(message), False)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """End of the loop pass: frame every connection's routine pushes and write its pending routine
        frames, one write each."""
        self._flush_scheduled = False
        unframed, self._unframed = self._unframed, set()
        for session in unframed:
            if session.routine:
                self._frame_routine(session)
        sessions, self._unflushed = self._unflushed, set()
        for session in sessions:
            if not session.closing:
                _write_out(session.ws)

    def _close(self, session: _Session, code: int, reason: str) -> None:
        """Send what is queued, then close with ``code``; nothing more is queued after this."""
        if session.closing:
            return
        if session.routine:
            self._frame_routine(session)  # what was pushed before the close goes out before it
        session.closing = True
        session.queue.append((code, reason))
        if session.sender is None:
            session.sender = asyncio.get_running_loop().create_task(self._drain(session))

    def _drop_slow(self, session: _Session) -> None:
        self._counters["dropped_slow"] += 1
        log.warning("console %s %s too slow (%d frames queued): disconnecting", session.info.role,
                    session.info.agent_id, len(session.queue))
        session.closing = True
        session.queue.clear()
        session.routine = None
        transport = session.ws.transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # linger 0: reset now and free the kernel send buffer too, do not drain it
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    async def _drain(self, session: _Session) -> None:
        ws = session.ws
        try:
            while session.queue:
                item = session.queue.popleft()
                if isinstance(item, str):
                    await ws.send(item)
                else:
                    await ws.close(*item)
                    break
        except ConnectionClosed:
            session.queue.clear()
        finally:
            session.sender = None

    async def _heartbeats(self) -> None:
        """Every connection gets a heartbeat every ``heartbeat_interval``, spread over the interval in slices
        of about ``HEARTBEAT_SLICE`` seconds (1,000 writes at once would hold the loop for tens of ms)."""
        interval = self._settings.heartbeat_interval
        slices = max(1, int(interval / HEARTBEAT_SLICE))
        turn = 0
        while True:
            await asyncio.sleep(interval / slices)
            frame = encode({"type": "heartbeat", "ts": self._clock()})
            for session in [*self._agents.values(), *self._supervisors.values()]:
                if session.slot % slices == turn:
                    self._enqueue(session, frame, False)
            turn = (turn + 1) % slices


def _write_out(ws: ServerConnection) -> None:
    """Write what the connection's protocol has framed, as one socket write (websockets' ``send_data``
    writes each frame on its own)."""
    chunks = ws.protocol.data_to_send()
    if not chunks or ws.transport.is_closing():
        return
    if all(chunks):
        ws.transport.write(b"".join(chunks))
        return
    for data in chunks:
        if data:
            ws.transport.write(data)
        else:  # the end of the stream (a close): let websockets half-close as it does
            if ws.transport.can_write_eof():
                with contextlib.suppress(Exception):
                    ws.transport.write_eof()
            else:
                ws.transport.close()


def _address_key(peername: Any) -> str:
    """The source address a connection is counted and throttled under: the IP, or its /64 for IPv6 (one
    host usually holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(peername[0])
    except (TypeError, ValueError, IndexError):
        return "?"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _request_host(request: Request) -> str | None:
    """The request's Host header when it is a plain host[:port] (anything else is ignored)."""
    host = request.headers.get("Host")
    return host if host is not None and _HOST_RE.match(host) else None


def _peer(ws: ServerConnection) -> str:
    try:
        host, port = ws.remote_address[:2]
    except (TypeError, ValueError):
        return "?"
    return f"{host}:{port}"
