"""Domain events between nodes on Redis Streams: ``StreamsTransport``, the bus's transport for several nodes.

``StreamsTransport`` is a ``cti.bus.Transport``: ``send`` delivers an event in this process at once (as
``LocalTransport`` does) and, when its type is one of ``shared`` (or a subclass of one), queues it for the
stream ``<prefix>:events:<shard>``. The shard comes from the event's ``call_id``, else its ``agent_id``, else its
``uniqueid`` (crc32, the same on every node), so that the events of one call and of one agent stay in order with
``shards`` > 1; an event with none of these goes to shard 0. Writes are batched: the queue is flushed on the
loop's next turn, one pipeline per batch, and the events of a batch bound for one stream go in as few entries
as they fit (``pack`` events or ``PACK_BYTES`` at most an entry): the entry ``{origin, seq, events}``, where
``events`` is the JSON list ``[[type, body], ...]`` (``body``: ``cti.event_codec``'s dict) and ``seq`` is this
transport's run and the count of the entry's last event (its events are numbered on from the one before),
which lets a reader drop events written twice when a connection broke mid-pipeline. A busy node thus writes
one entry for many events (Redis and every reader handle an entry, not an event, per command); a quiet one an
entry per event. (An entry ``{origin, type, body, seq}`` of one event, the format before packing, is read too.)
Streams are trimmed with ``MAXLEN ~``: about ``maxlen`` events a shard, turned into entries by the events an
entry held in this transport's recent writes.

Reading: every node has its own consumer group on every stream (group and consumer = the node id; created
at ``$``, so a new node starts from now; created again at ``0`` when a later session finds it gone, Redis
having restarted empty, so that what nodes back before this one wrote is not skipped), so every node sees every
event. A session first reads the
group's pending entries (delivered to this node but never acknowledged: a crash, or an XACK lost with the
connection), then blocks on new ones (XREADGROUP BLOCK). Entries of this node are skipped; the others are
decoded and handed to ``EventBus.deliver_remote(event, origin, clock())`` (only the engines with
``remote_subscriptions`` take them), then acknowledged. An entry or an event in it that does not decode, or
whose engines raise, is logged and acknowledged: one bad event never stops the reader. Delivery is at least
once across a crash between delivery and XACK, exactly once otherwise.

Outage: while Redis cannot be reached, the node goes on (local delivery never waits for Redis); the shared
events wait in an in-order outbox of at most ``outbox_limit`` (past it the oldest are dropped, counted in
``stats["dropped"]`` and logged once per outage). A reconnect loop retries with ``backoff`` (0.5 s doubling to
30 s), logs once when Redis goes down and once when it is back, and reports it through ``up`` and
``on_change(up)`` (for ``/healthz`` and the wallboard). Back, it flushes the outbox in order first, then reads
on from its group's position: nothing the other nodes wrote meanwhile is missed, as long as the stream's
``MAXLEN`` (about ``maxlen`` events per shard) did not trim it before this node read it; entries trimmed
while still pending are counted in ``stats["trimmed"]``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from cti.db import retry_backoff
from cti.event_codec import CodecError, EventCodec

log = logging.getLogger(__name__)

DeliverRemote = Callable[[object, str, float], None]
T = TypeVar("T")
PACK_BYTES = 16_384  # an entry's events' bodies at most (a larger single event is an entry of its own)


def default_codec() -> EventCodec:
    """A codec of every event class of the kernel, the ACD, the dialer and the IVR."""
    import acd.events
    import cti.events
    import dialer.events
    import ivr.events

    codec = EventCodec()
    for module in (cti.events, acd.events, dialer.events, ivr.events):
        codec.register_module(module)
    return codec


def shard_key(event: object) -> str:
    """What keeps an event in order with its kin: its call (``call_id``), else its agent, else its channel."""
    for name in ("call_id", "agent_id", "uniqueid"):
        value = getattr(event, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


def shard_of(event: object, shards: int) -> int:
    """The shard of ``event`` among ``shards`` (crc32 of ``shard_key``: the same on every node)."""
    if shards <= 1:
        return 0
    key = shard_key(event)
    return zlib.crc32(key.encode()) % shards if key else 0


def stream_names(prefix: str, shards: int) -> tuple[str, ...]:
    return tuple(f"{prefix}:events:{i}" for i in range(shards))


@dataclass(frozen=True, slots=True)
class _Queued:
    """An event waiting to be written: its number in this transport's count, its stream and its encoding."""

    n: int
    stream: str
    item: bytes  # ``["Type",{body}]``: an element of an entry's ``events``


def _packs(batch: list[_Queued], most: int) -> list[list[_Queued]]:
    """``batch`` cut into entries: runs of consecutive events bound for one stream, at most ``most`` events and
    about ``PACK_BYTES`` each (the order within a stream is the order of the batch)."""
    packs: list[list[_Queued]] = []
    size = 0
    for q in batch:
        last = packs[-1] if packs else None
        if last is None or last[0].stream != q.stream or len(last) >= most or size + len(q.item) > PACK_BYTES:
            packs.append([q])
            size = len(q.item)
        else:
            last.append(q)
            size += len(q.item)
    return packs


def _entry_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _text(raw: object) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _quiet(task: asyncio.Future[Any]) -> None:
    """Retrieve a left-behind command's outcome (its failure was reported by the session that gave up on it)."""
    if not task.cancelled():
        task.exception()


async def _cancel(tasks: list[asyncio.Task[Any]], grace: float = 2.0) -> None:
    """Cancel ``tasks`` and wait for them, at most ``grace`` seconds (a client stuck on a dead socket must
    not hold the transport's teardown)."""
    for task in tasks:
        task.cancel()
    _, stuck = await asyncio.wait(tasks, timeout=grace)
    if stuck:
        log.warning("redis bus: %d task(s) did not stop within %.0f s of being cancelled", len(stuck), grace)


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis could not be reached (then the node is down and retries)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError))


class StreamsTransport:
    """The bus's transport across nodes (see the module's docstring). ``start()`` on the running loop,
    ``close()`` to stop; ``drain()`` waits for the outbox to be written.

    ``client_factory`` makes a ``redis.asyncio.Redis`` (``centre.redis_link.redis_client``) for each session
    (a new one after each outage); its reply timeout, if any, must exceed ``block_ms`` (the reader's XREADGROUP
    BLOCK), or the reader's wait would read as an outage. Whatever the client does, no command waits longer
    than ``reply_timeout`` seconds (past ``block_ms`` for the reader): a connection that stops answering
    counts as Redis down and the session starts again on a new client. ``clock`` gives the ``now`` of remote
    deliveries."""

    def __init__(self, node: str, client_factory: Callable[[], Any], prefix: str, shared: Iterable[type], *,
                 clock: Callable[[], float], shards: int = 1, maxlen: int = 100_000, pack: int = 64,
                 codec: EventCodec | None = None, outbox_limit: int = 100_000, batch: int = 500,
                 block_ms: int = 1000, reply_timeout: float = 5.0, backoff: Callable[[int], float] = retry_backoff,
                 on_change: Callable[[bool], None] | None = None) -> None:
        if not node:
            raise ValueError("a node needs a non-empty id")
        if min(shards, maxlen, pack, outbox_limit, batch, block_ms) < 1:  # (BLOCK 0 would wait for ever)
            raise ValueError("shards, maxlen, pack, outbox_limit, batch and block_ms must be at least 1")
        self.node = node
        self.streams = stream_names(prefix, shards)
        self.shared = tuple(shared)
        self.on_change = on_change
        self._client_factory = client_factory
        self._clock = clock
        self._maxlen = maxlen
        self._pack = pack
        self._per_entry = 1.0  # events an entry held, recently (a moving average): MAXLEN in entries
        self._codec = codec if codec is not None else default_codec()
        self._outbox_limit = outbox_limit
        self._batch = batch
        self._block_ms = block_ms
        self._reply_timeout = reply_timeout
        self._backoff = backoff
        self._deliver: Callable[[object, float], None] | None = None
        self._deliver_remote: DeliverRemote | None = None
        self._is_shared: dict[type, bool] = {}
        self._outbox: deque[_Queued] = deque()
        self._count = 0
        self._run_id = uuid.uuid4().hex[:12]
        self._wake = asyncio.Event()
        self._up: bool | None = None  # None: not tried yet
        self._attempt = 0  # reconnect attempts since Redis was last reached
        self._joined = False  # the groups were made once (a later session recreating one starts it at 0)
        self._overflow_said = False
        self._bad_types_said: set[str] = set()
        self._delivered: dict[str, tuple[int, int]] = {}  # per stream: the last entry handled in this object
        self._seen: dict[tuple[str, str], tuple[str, int]] = {}  # per (stream, origin): its run and last seq
        self._task: asyncio.Task[None] | None = None
        # events sent, entries written, events received, entries of this node's read back (skipped), events
        # read twice, events (or entries) that did not decode, events the engines failed on, pending entries
        # trimmed, events dropped from a full outbox, events that could not be encoded
        self.stats = dict.fromkeys(("sent", "entries", "received", "own", "duplicates", "undecodable", "failed",
                                    "trimmed", "dropped", "unencodable"), 0)

    # -- cti.bus.Transport ----------------------------------------------------------------------------------

    def attach(self, deliver: Callable[[object, float], None]) -> None:
        self._deliver = deliver

    def attach_remote(self, deliver_remote: DeliverRemote) -> None:
        self._deliver_remote = deliver_remote

    def send(self, event: object, now: float) -> None:
        """Queue ``event`` for the other nodes (if shared), then deliver it here at once: the queue keeps
        the order of publication (an event before those its engines emit)."""
        if self._deliver is None:
            raise RuntimeError("transport not attached to a bus")
        if self._shares(type(event)):
            self._queue(event)
        self._deliver(event, now)

    # -- state ----------------------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """Whether Redis is reachable (False until the first connection)."""
        return bool(self._up)

    @property
    def outbox(self) -> int:
        """How many shared events wait to be written."""
        return len(self._outbox)

    def start(self) -> None:
        """Connect and run (on the running loop) until ``close``."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"redis-bus-{self.node}")

    async def drain(self, timeout: float) -> bool:
        """Wait until every queued event is written (False if not within ``timeout`` seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._outbox:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def close(self) -> None:
        """Stop reading and writing; what is still in the outbox is not written (``drain`` first)."""
        task, self._task = self._task, None
        if task is not None:
            await _cancel([task])

    # -- writing --------------------------------------------------------------------------------------------

    def _shares(self, kind: type) -> bool:
        shared = self._is_shared.get(kind)
        if shared is None:
            mro = kind.__mro__
            shared = self._is_shared[kind] = any(t in mro for t in self.shared)
        return shared

    def _queue(self, event: object) -> None:
        try:
            name, body = self._codec.encode(event)
        except CodecError as exc:
            self.stats["unencodable"] += 1
            kind = type(event).__name__
            if kind not in self._bad_types_said:
                self._bad_types_said.add(kind)
                log.error("redis bus: %s cannot go to the other nodes: %s", kind, exc)
            return
        if len(self._outbox) >= self._outbox_limit:
            self._outbox.popleft()
            self.stats["dropped"] += 1
            if not self._overflow_said:
                self._overflow_said = True
                log.error("redis bus: outbox full (%d events): dropping the oldest until Redis is back",
                          self._outbox_limit)
        self._count += 1
        stream = self.streams[shard_of(event, len(self.streams))]
        self._outbox.append(_Queued(self._count, stream, b'["%s",%s]' % (name.encode(), body)))
        self._wake.set()  # the writer runs on the loop's next turn: one pipeline for what was sent meanwhile

    async def _flush(self, client: Any) -> None:
        """Write the outbox in order, a pipeline of at most ``batch`` entries at a time; an event leaves it only
        once written."""
        while self._outbox:
            packs = _packs(list(itertools.islice(self._outbox, self._batch * self._pack)), self._pack)[:self._batch]
            events = sum(map(len, packs))
            self._per_entry += 0.1 * (events / len(packs) - self._per_entry)
            maxlen = max(1, round(self._maxlen / self._per_entry))
            pipe = client.pipeline(transaction=False)
            for pack in packs:
                fields = {"origin": self.node, "seq": f"{self._run_id}:{pack[-1].n}",
                          "events": b"[" + b",".join(q.item for q in pack) + b"]"}
                pipe.xadd(pack[0].stream, fields, maxlen=maxlen, approximate=True)
            await self._bounded(pipe.execute())
            last = packs[-1][-1].n
            while self._outbox and self._outbox[0].n <= last:  # (events may have been dropped meanwhile)
                self._outbox.popleft()
            self.stats["sent"] += events
            self.stats["entries"] += len(packs)
        self._overflow_said = False

    async def _write(self, client: Any) -> None:
        while True:
            self._wake.clear()
            await self._flush(client)
            await self._wake.wait()

    # -- reading --------------------------------------------------------------------------------------------

    async def _groups(self, client: Any) -> None:
        """This node's group on every stream: created at ``$`` at the first session (a new node starts from
        now). A later session that finds it gone (Redis restarted empty) creates it at ``0``: everything in the
        stream was written since, some of it perhaps by a node back before this one, which ``$`` would skip;
        entries this object handled already are skipped by ``_take``."""
        from redis.exceptions import ResponseError

        start = "0" if self._joined else "$"
        for stream in self.streams:
            try:
                await self._bounded(client.xgroup_create(stream, self.node, id=start, mkstream=True))
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._joined = True

    async def _read(self, client: Any) -> None:
        cursor = dict.fromkeys(self.streams, "0")  # pending first: delivered to this node, never acknowledged
        while cursor:
            got = self._entries(await self._bounded(
                client.xreadgroup(self.node, self.node, cursor, count=self._batch)))
            for stream in list(cursor):
                entries = got.get(stream)
                if entries:
                    cursor[stream] = _text(entries[-1][0])
                else:
                    del cursor[stream]
            await self._take(client, got)
        latest = dict.fromkeys(self.streams, ">")
        acking: asyncio.Future[None] | None = None
        try:
            while True:
                got = self._entries(await self._bounded(
                    client.xreadgroup(self.node, self.node, latest, count=self._batch, block=self._block_ms),
                    self._block_ms / 1000))
                acks = self._handle_all(got)
                if acking is not None:
                    await acking  # (done by now, as a rule; raises what ended it: the session starts again)
                # the acknowledgements go while the next read waits: a round trip less between two reads
                acking = asyncio.ensure_future(self._ack(client, acks))
        finally:
            if acking is not None and not acking.done():
                acking.cancel()

    @staticmethod
    def _entries(reply: Any) -> dict[str, list[Any]]:
        """XREADGROUP's reply as {stream: [(id, fields), ...]} (RESP2: a list of pairs; RESP3: a dict of
        one-element lists)."""
        if not reply:
            return {}
        if isinstance(reply, dict):
            return {_text(stream): list(value[0]) if value else [] for stream, value in reply.items()}
        return {_text(stream): list(entries) for stream, entries in reply}

    async def _take(self, client: Any, got: dict[str, list[Any]]) -> None:
        await self._ack(client, self._handle_all(got))

    def _handle_all(self, got: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """Hand the entries read to the engines; the ids to acknowledge, by stream."""
        acks: dict[str, list[Any]] = {}
        for stream, entries in got.items():
            if not entries:
                continue
            ids = acks[stream] = []
            for raw_id, fields in entries:
                ids.append(raw_id)
                entry_id = _entry_id(raw_id)
                if entry_id <= self._delivered.get(stream, (-1, -1)):
                    continue  # handled by this object already; its XACK was lost with the connection
                self._delivered[stream] = entry_id
                self._handle(stream, fields)
        return acks

    async def _ack(self, client: Any, acks: dict[str, list[Any]]) -> None:
        if not acks:
            return
        pipe = client.pipeline(transaction=False)
        for stream, ids in acks.items():
            pipe.xack(stream, self.node, *ids)
        await self._bounded(pipe.execute())

    def _handle(self, stream: str, raw: dict[Any, Any] | None) -> None:
        if not raw:
            self.stats["trimmed"] += 1  # a pending entry MAXLEN trimmed before it was acknowledged
            return
        fields = {_text(k): v for k, v in raw.items()}
        origin = _text(fields.get("origin", ""))
        if origin == self.node:
            self.stats["own"] += 1
            return
        items = self._items(origin, fields)
        fresh = self._fresh(stream, origin, _text(fields.get("seq", "")), len(items))
        self.stats["duplicates"] += len(items) - fresh
        for kind, body in items[len(items) - fresh:]:
            try:
                event = self._codec.from_dict(kind, body)
            except CodecError as exc:
                self._undecodable(kind, origin, exc)
                continue
            self.stats["received"] += 1
            if self._deliver_remote is None:
                continue
            try:
                self._deliver_remote(event, origin, self._clock())
            except Exception:
                self.stats["failed"] += 1
                log.exception("redis bus: the engines failed on %s from %s", type(event).__name__, origin)

    def _items(self, origin: str, fields: dict[str, Any]) -> list[tuple[str, Any]]:
        """The entry's events as (type name, body) pairs, undecoded; a malformed entry is counted and gives none
        (one event of an unreadable entry: the numbering goes on past it all the same)."""
        try:
            if "events" in fields:
                items = json.loads(fields["events"])
                if not isinstance(items, list) or not all(
                        isinstance(i, list) and len(i) == 2 and isinstance(i[0], str) for i in items):
                    raise ValueError("not a list of [type, body] pairs")
                return [(i[0], i[1]) for i in items]
            return [(_text(fields.get("type", "")), json.loads(fields.get("body", "")))]  # one event, unpacked
        except (UnicodeDecodeError, ValueError, TypeError) as exc:
            self._undecodable(_text(fields.get("type", "entry")), origin, CodecError(f"malformed payload: {exc}"))
            return []

    def _undecodable(self, kind: str, origin: str, exc: CodecError) -> None:
        self.stats["undecodable"] += 1
        name = kind[:60]
        if name not in self._bad_types_said:
            self._bad_types_said.add(name)
            log.error("redis bus: an entry of %s from %s does not decode (%s); skipped", name, origin, exc)

    def _fresh(self, stream: str, origin: str, seq: str, count: int) -> int:
        """How many of an entry's ``count`` events (numbered up to ``seq``'s count) this reader has not had
        from ``origin``'s run yet: the entry's last ones (a retried pipeline writes again what a cut one wrote)."""
        run, _, number = seq.partition(":")
        if not number.isdigit():
            return count
        n = int(number)
        last = self._seen.get((stream, origin))
        if last is not None and last[0] == run:
            if n <= last[1]:
                return 0
            count = min(count, n - last[1])
        self._seen[(stream, origin)] = (run, n)
        return count

    # -- the connection -------------------------------------------------------------------------------------

    def _set_up(self, up: bool, why: str = "") -> None:
        if self._up is up:
            return
        self._up = up
        if up:
            self._attempt = 0
            log.info("redis bus: connected (node %s, %d stream(s))", self.node, len(self.streams))
        else:
            log.warning("redis bus: Redis unreachable (%s); events wait in the outbox", why)
        if self.on_change is not None:
            self.on_change(up)

    async def _bounded(self, command: Awaitable[T], extra: float = 0.0) -> T:
        """``command``'s reply, or ``asyncio.TimeoutError`` past ``reply_timeout`` (+ ``extra``) seconds. A
        command past its time is cancelled and left behind, not waited for: a redis.asyncio read on a
        connection that stopped answering may not end when cancelled (it ends when the client is closed)."""
        task = asyncio.ensure_future(command)
        task.add_done_callback(_quiet)
        try:
            done, _ = await asyncio.wait({task}, timeout=self._reply_timeout + extra)
        finally:
            if not task.done():
                task.cancel()
        if not done:
            raise TimeoutError(f"no reply within {self._reply_timeout + extra:.1f} s")
        return task.result()

    async def _session(self, client: Any) -> None:
        await self._bounded(client.ping())
        await self._groups(client)
        self._set_up(True)
        await self._flush(client)  # what waited, in order, before reading on
        tasks = [asyncio.ensure_future(self._write(client)), asyncio.ensure_future(self._read(client))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # raises what ended the session
        finally:
            await _cancel(tasks)

    async def _run(self) -> None:
        while True:
            client = self._client_factory()
            try:
                await self._session(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if _unreachable(exc):
                    self._set_up(False, type(exc).__name__)
                else:
                    log.error("redis bus: %s: %s; starting the session again", type(exc).__name__, exc)
            finally:
                try:
                    await asyncio.wait_for(client.aclose(), 1.0)
                except Exception:  # closing a broken client: nothing more to learn
                    pass
            self._attempt += 1
            await asyncio.sleep(self._backoff(self._attempt))
