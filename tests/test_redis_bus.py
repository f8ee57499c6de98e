"""Events between nodes on the real Redis (centre/redis_bus.py): each node's shared events reach the other nodes'
engines through ``remote_subscriptions`` only, in order per call with several shards, never back to their own
node; what a node read but never acknowledged comes again after a restart; and across a Redis outage (a TCP
proxy cut in front of it) nothing is lost, nothing comes twice, and the order holds."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis

from acd.events import AcdEvent, AgentStateChanged, CallWaiting
from centre.redis_bus import PACK_BYTES, StreamsTransport, _packs, _Queued, default_codec, shard_of
from centre.redis_link import redis_client
from config.schema import RedisSettings
from cti.bus import EventBus, Outputs, Reactive
from cti.events import DeviceStateChanged
from tests.conftest import REDIS_URL
from tests.tcp_proxy import TcpProxy

NOW = 42.0


class Seen(Reactive):
    """Records the events it is given: remote ones (``now`` is the transport's clock, ``NOW``) and local ones
    (published with another ``now``) apart."""

    def __init__(self, local: tuple[type, ...], remote: tuple[type, ...]) -> None:
        self.subscriptions, self.remote_subscriptions = local, remote
        self.local: list[object] = []
        self.remote: list[object] = []

    def handle(self, event: object, now: float) -> Outputs:
        (self.remote if now == NOW else self.local).append(event)
        return ()


class Node:
    """One node: a bus, its transport and an engine that takes ACD events locally and remotely."""

    def __init__(self, name: str, prefix: str, *, url: str = REDIS_URL, shards: int = 1, **options: Any) -> None:
        self.name = name
        self.changes: list[bool] = []
        settings = RedisSettings(url=url)
        self.transport = StreamsTransport(name, lambda: redis_client(settings, timeout=5.0), prefix, (AcdEvent,),
                                          clock=lambda: NOW, shards=shards, backoff=lambda attempt: 0.05,
                                          on_change=self.changes.append, **options)
        self.bus = EventBus(lambda command: None, transport=self.transport)
        self.engine = Seen((AcdEvent, DeviceStateChanged), (AcdEvent, DeviceStateChanged))
        self.acd = Seen((AcdEvent,), ())  # like the ACD: this node's events only
        self.bus.add(self.engine)
        self.bus.add(self.acd)
        self.origins: list[str] = []
        self.bus.subscribe_remote(lambda event, origin: self.origins.append(origin))


def waiting(call: str, n: int, ts: float = 1.0) -> CallWaiting:
    return CallWaiting(ts=ts, server="pbx1", uniqueid=f"u-{call}", call_id=call, queue="sales", priority=0,
                       position=n, ewt=None)


def agent(agent_id: str, state: str = "ready", ts: float = 1.0) -> AgentStateChanged:
    return AgentStateChanged(ts=ts, agent_id=agent_id, state=state, previous="not_ready", reason="", since=0.0)


async def until(check: Callable[[], bool], what: str, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def redis_keys(prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A raw client for the test; every key under ``prefix`` deleted afterwards."""
    client = aioredis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def started(*nodes: Node) -> None:
    for node in nodes:
        node.transport.start()
    await until(lambda: all(n.transport.up for n in nodes), "every node connected")


def run(body: Callable[[str], Awaitable[None]]) -> None:
    prefix = f"test-bus-{uuid.uuid4().hex[:10]}"
    asyncio.run(asyncio.wait_for(body(prefix), 25))


def test_shared_events_reach_the_other_nodes_engines_through_remote_subscriptions_only() -> None:
    async def body(prefix: str) -> None:
        async with redis_keys(prefix):
            a, b, c = (Node(name, prefix) for name in ("A", "B", "C"))
            try:
                await started(a, b, c)
                a.bus.publish(waiting("L1", 1), 1.0)
                a.bus.publish(DeviceStateChanged(server="pbx1", ts=1.0, device="PJSIP/1", state="INUSE"), 1.0)
                b.bus.publish(agent("agent-7"), 2.0)
                await until(lambda: len(b.engine.remote) == 1 and len(c.engine.remote) == 2
                            and len(a.engine.remote) == 1, "A's and B's shared events at the other nodes")
                assert b.engine.remote == [waiting("L1", 1)] and b.origins == ["A"]
                # (no order between two nodes' events: each node's own are in order)
                assert sorted(zip(c.origins, map(repr, c.engine.remote), strict=True)) == [
                    ("A", repr(waiting("L1", 1))), ("B", repr(agent("agent-7")))]
                assert a.engine.remote == [agent("agent-7")]  # not its own back
                # Only what was published on the node itself went to its local subscriptions; the
                # DeviceStateChanged is not shared: it never left node A.
                assert [type(e) for e in a.engine.local] == [CallWaiting, DeviceStateChanged]
                assert b.engine.local == [agent("agent-7")] and c.engine.local == []
                # An engine without remote_subscriptions (node B's ACD) never sees node A's call.
                assert b.acd.local == [agent("agent-7")] and b.acd.remote == [] and c.acd.remote == []
                assert a.acd.local == [waiting("L1", 1)] and a.acd.remote == []
                await until(lambda: a.transport.stats["own"] >= 1, "A read its own entry and skipped it")
                assert a.transport.stats["received"] == 1 and b.bus.counters["remote_events"] == 1
            finally:
                for node in (a, b, c):
                    await node.transport.close()

    run(body)


def test_the_events_of_one_call_and_of_one_agent_keep_their_order_over_several_shards() -> None:
    async def body(prefix: str) -> None:
        async with redis_keys(prefix) as raw:
            a, b = Node("A", prefix, shards=4), Node("B", prefix, shards=4)
            calls = [f"call-{i}" for i in range(8)]
            assert len({shard_of(waiting(call, 1), 4) for call in calls}) > 1  # they do spread
            try:
                await started(a, b)
                for n in range(1, 26):
                    for call in calls:
                        a.bus.publish(waiting(call, n), 1.0)
                    a.bus.publish(agent("agent-1", "ready" if n % 2 else "not_ready", ts=float(n)), 1.0)
                await until(lambda: len(b.engine.remote) == 25 * 9, "every event at B")
                for call in calls:
                    got = [e.position for e in b.engine.remote if isinstance(e, CallWaiting) and e.call_id == call]
                    assert got == list(range(1, 26)), call
                assert [e.ts for e in b.engine.remote if isinstance(e, AgentStateChanged)] == \
                       [float(n) for n in range(1, 26)]
                per_shard = [[len(json.loads(fields[b"events"])) for _, fields in
                              await raw.xrange(f"{prefix}:events:{i}")] for i in range(4)]
                assert sum(map(sum, per_shard)) == 25 * 9 and sum(1 for n in per_shard if n) > 1
                assert sum(map(len, per_shard)) < 25 * 9  # packed: entries hold several events
            finally:
                await a.transport.close()
                await b.transport.close()

    run(body)


def test_what_a_node_read_but_never_acknowledged_comes_again_after_a_restart() -> None:
    async def body(prefix: str) -> None:
        async with redis_keys(prefix) as raw:
            a, b = Node("A", prefix), Node("B", prefix)
            stream = f"{prefix}:events:0"
            try:
                await started(a, b)
                await b.transport.close()  # B stops; its group stays where it was
                for n in (1, 2, 3):  # an entry each (written one by one: not packed together)
                    a.bus.publish(waiting("L1", n), 1.0)
                    assert await a.transport.drain(5.0)
                # B "crashes" right after reading two of them: they are pending in its group, unacknowledged.
                read = await raw.xreadgroup("B", "B", {stream: ">"}, count=2)
                assert len(read[0][1]) == 2
                assert (await raw.xpending(stream, "B"))["pending"] == 2
                again = Node("B", prefix)  # the same node, a new process
                await started(again)
                await until(lambda: len(again.engine.remote) == 3, "the pending two and the unread one")
                assert [e.position for e in again.engine.remote] == [1, 2, 3]  # type: ignore[attr-defined]
                await until(lambda: again.transport.stats["received"] == 3, "counted")
                pending = await raw.xpending(stream, "B")
                deadline = time.monotonic() + 5
                while pending["pending"] and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                    pending = await raw.xpending(stream, "B")
                assert pending["pending"] == 0
                assert b.engine.remote == []  # the first B object was gone before A published
                await again.transport.close()
            finally:
                await a.transport.close()

    run(body)


def test_across_an_outage_a_node_keeps_going_and_catches_up_with_nothing_lost_or_twice(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="centre.redis_bus")
    proxy = TcpProxy("127.0.0.1", 6379)

    async def body(prefix: str) -> None:
        async with redis_keys(prefix):
            url = f"redis://127.0.0.1:{proxy.port}/15"
            a, b = Node("A", prefix, url=url, shards=2), Node("B", prefix, shards=2)
            try:
                await started(a, b)
                a.bus.publish(waiting("L1", 1), 1.0)
                await until(lambda: len(b.engine.remote) == 1, "the first event, through the proxy")
                # (B can read it before A has read Redis's reply to the write: cut before that, A keeps it in its
                # outbox and writes it again, which B's reader drops as a duplicate)
                await until(lambda: a.transport.outbox == 0, "A's first write answered")
                proxy.cut()
                await until(lambda: not a.transport.up, "A sees Redis down")
                for n in range(2, 12):
                    a.bus.publish(waiting("L1", n), 1.0)
                    b.bus.publish(agent("agent-2", ts=float(n)), 1.0)
                assert len(a.engine.local) == 11  # A's own engines did not wait for Redis
                assert a.transport.outbox == 10
                refused = proxy.refused
                await until(lambda: proxy.refused >= refused + 2, "A retrying while it is down")
                proxy.restore()
                await until(lambda: len(b.engine.remote) == 11 and len(a.engine.remote) == 10,
                            "both caught up")
                assert [e.position for e in b.engine.remote] == list(range(1, 12))  # type: ignore[attr-defined]
                assert [e.ts for e in a.engine.remote] == [float(n) for n in range(2, 12)]
                assert a.changes == [True, False, True] and a.transport.outbox == 0
                assert a.transport.stats["dropped"] == 0
            finally:
                await a.transport.close()
                await b.transport.close()
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("redis bus")]
        assert len([m for m in said if "unreachable" in m]) == 1, said
        assert len([m for m in said if "connected (node A" in m]) == 2, said  # at start, then once back

    try:
        run(body)
    finally:
        proxy.close()


def test_past_its_limit_the_outbox_drops_the_oldest_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    proxy = TcpProxy("127.0.0.1", 6379)
    proxy.cut()  # down from the start

    async def body(prefix: str) -> None:
        async with redis_keys(prefix):
            a = Node("A", prefix, url=f"redis://127.0.0.1:{proxy.port}/15", outbox_limit=3)
            b = Node("B", prefix)
            try:
                await started(b)
                a.transport.start()
                await until(lambda: a.changes == [False], "A down from the start")
                for n in range(1, 6):
                    a.bus.publish(waiting("L1", n), 1.0)
                assert a.transport.outbox == 3 and a.transport.stats["dropped"] == 2
                proxy.restore()
                await until(lambda: len(b.engine.remote) == 3, "the three kept")
                assert [e.position for e in b.engine.remote] == [3, 4, 5]  # type: ignore[attr-defined]
            finally:
                await a.transport.close()
                await b.transport.close()
        assert len([r for r in caplog.records if "outbox full" in r.getMessage()]) == 1

    try:
        run(body)
    finally:
        proxy.close()


def test_an_entry_that_does_not_decode_is_skipped_and_acknowledged_and_the_reader_goes_on() -> None:
    async def body(prefix: str) -> None:
        async with redis_keys(prefix) as raw:
            a, b = Node("A", prefix), Node("B", prefix)
            stream = f"{prefix}:events:0"
            try:
                await started(a, b)
                await raw.xadd(stream, {"origin": "X", "type": "NoSuchEvent", "body": "{}", "seq": "r:1"})
                await raw.xadd(stream, {"origin": "X", "type": "CallWaiting", "body": "{not json", "seq": "r:2"})
                a.bus.publish(waiting("L1", 1), 1.0)
                await until(lambda: len(b.engine.remote) == 1, "the good event after the bad ones")
                assert b.transport.stats["undecodable"] == 2
                await until(lambda: b.transport.stats["received"] == 1, "counted")
            finally:
                await a.transport.close()
                await b.transport.close()
            assert (await raw.xpending(stream, "B"))["pending"] == 0

    run(body)


def test_an_entry_written_twice_by_a_retried_pipeline_is_delivered_once() -> None:
    """A pipeline cut after Redis took some of its XADDs is written again: the entries' ``seq`` (the writer's
    run and count) lets the reader drop the second copy."""
    async def body(prefix: str) -> None:
        async with redis_keys(prefix) as raw:
            b = Node("B", prefix)
            stream = f"{prefix}:events:0"
            try:
                await started(b)
                name, data = default_codec().encode(waiting("L1", 1))
                first = {"origin": "X", "type": name, "body": data, "seq": "run1:1"}
                for fields in (first, first, {**first, "seq": "run1:2"}, {**first, "seq": "run2:1"}):
                    await raw.xadd(stream, fields)  # type: ignore[arg-type]
                await until(lambda: b.transport.stats["received"] == 3, "three distinct entries")
                assert b.transport.stats["duplicates"] == 1 and len(b.engine.remote) == 3
            finally:
                await b.transport.close()

    run(body)


def test_a_busy_node_packs_its_events_into_few_entries_each_bounded_in_events_and_bytes() -> None:
    q = [_Queued(n, "s0" if n < 8 else "s1", b"x" * (PACK_BYTES if n == 11 else 10)) for n in range(1, 16)]
    packs = _packs(q, 3)
    assert [[e.n for e in pack] for pack in packs] == [[1, 2, 3], [4, 5, 6], [7], [8, 9, 10], [11], [12, 13, 14],
                                                       [15]]
    big = [_Queued(n, "s0", b"x" * (PACK_BYTES // 3)) for n in range(1, 8)]
    assert [len(pack) for pack in _packs(big, 64)] == [3, 3, 1]  # (3 fit in PACK_BYTES, not 4)
    huge = [_Queued(1, "s0", b"x" * (2 * PACK_BYTES))]
    assert [len(pack) for pack in _packs(huge, 64)] == [1]  # an event larger than the bound: an entry alone


def test_a_packed_entry_written_again_with_more_events_delivers_only_the_new_ones() -> None:
    """A retried pipeline packs the outbox afresh: an entry may hold events an entry before it held already
    (numbered by ``seq``, its last event's count); the reader delivers each event once, in order."""
    async def body(prefix: str) -> None:
        async with redis_keys(prefix) as raw:
            b = Node("B", prefix)
            stream = f"{prefix}:events:0"
            codec = default_codec()

            def entry(seq: str, *positions: int) -> dict[str, bytes | str]:
                items = [[type(e).__name__, codec.to_dict(e)] for e in (waiting("L1", n) for n in positions)]
                return {"origin": "X", "seq": seq, "events": json.dumps(items)}
            try:
                await started(b)
                for fields in (entry("run1:3", 1, 2, 3), entry("run1:5", 2, 3, 4, 5), entry("run1:5", 4, 5),
                               entry("run1:6", 6)):
                    await raw.xadd(stream, fields)  # type: ignore[arg-type]
                await until(lambda: b.transport.stats["received"] == 6, "six distinct events")
                assert [e.position for e in b.engine.remote] == [1, 2, 3, 4, 5, 6]  # type: ignore[attr-defined]
                assert b.transport.stats["duplicates"] == 4
            finally:
                await b.transport.close()

    run(body)


def test_a_bad_event_in_a_packed_entry_is_skipped_the_others_delivered_and_a_malformed_entry_goes_by() -> None:
    async def body(prefix: str) -> None:
        async with redis_keys(prefix) as raw:
            a, b = Node("A", prefix), Node("B", prefix)
            stream = f"{prefix}:events:0"
            good = default_codec().to_dict(waiting("L1", 1))
            try:
                await started(a, b)
                await raw.xadd(stream, {"origin": "X", "seq": "r:2", "events": json.dumps(
                    [["CallWaiting", good], ["NoSuchEvent", {}], ["CallWaiting", {"position": "two"}],
                     ["CallWaiting", {**good, "position": 2}]])})
                for bad in ("{not json", '{"a": 1}', '[["CallWaiting"]]', "[[1, {}]]"):
                    await raw.xadd(stream, {"origin": "X", "seq": "s:1", "events": bad})
                a.bus.publish(waiting("L1", 3), 1.0)
                await until(lambda: len(b.engine.remote) == 3, "the good events around the bad ones")
                assert [e.position for e in b.engine.remote] == [1, 2, 3]  # type: ignore[attr-defined]
                assert b.transport.stats["undecodable"] == 2 + 4
            finally:
                await a.transport.close()
                await b.transport.close()
            assert (await raw.xpending(stream, "B"))["pending"] == 0

    run(body)


def test_a_redis_that_stops_answering_counts_as_down_and_holds_nothing_up() -> None:
    """A server that takes the connection and never answers (a hung Redis, a dead link without a reset): no
    command is waited on past ``reply_timeout``, the node says Redis is down, its events still go round here,
    and ``close`` returns at once."""
    silent = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody ever reads or answers

    async def body(prefix: str) -> None:
        a = Node("A", prefix, url=f"redis://127.0.0.1:{silent.getsockname()[1]}/15", reply_timeout=0.3)
        a.transport.start()
        started_at = time.monotonic()
        await until(lambda: a.changes == [False], "A sees Redis down", timeout=4.0)
        assert time.monotonic() - started_at < 3.0  # the reply timeout, not the client's 5 s
        a.bus.publish(waiting("L1", 1), 1.0)
        assert a.engine.local == [waiting("L1", 1)] and a.transport.outbox == 1
        closing = time.monotonic()
        await a.transport.close()
        assert time.monotonic() - closing < 2.5

    try:
        run(body)
    finally:
        silent.close()


def test_settings_that_cannot_work_are_refused() -> None:
    for bad in ({"shards": 0}, {"block_ms": 0}, {"maxlen": 0}, {"outbox_limit": 0}):
        with pytest.raises(ValueError, match="at least 1"):
            StreamsTransport("A", lambda: None, "p", (AcdEvent,), clock=lambda: 0.0, **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="node"):
        StreamsTransport("", lambda: None, "p", (AcdEvent,), clock=lambda: 0.0)


def test_after_redis_restarted_empty_a_node_back_later_still_gets_what_another_wrote_before_it_came_back() -> None:
    """Redis restarts with nothing (persistence off): every group is gone. Node A comes back first and writes its
    outbox; node B comes back after: its group, created again, must start before A's entries (at the stream's
    start: everything in it was written since the restart), or B's replica never hears of A's changes."""
    proxy_a, proxy_b = TcpProxy("127.0.0.1", 6379), TcpProxy("127.0.0.1", 6379)

    async def body(prefix: str) -> None:
        async with redis_keys(prefix) as raw:
            a = Node("A", prefix, url=f"redis://127.0.0.1:{proxy_a.port}/15")
            b = Node("B", prefix, url=f"redis://127.0.0.1:{proxy_b.port}/15")
            try:
                await started(a, b)
                a.bus.publish(agent("agent-1", ts=1.0), 1.0)
                await until(lambda: len(b.engine.remote) == 1, "the first event")
                proxy_a.cut()
                proxy_b.cut()
                await until(lambda: not a.transport.up and not b.transport.up, "both see Redis down")
                for key in [k async for k in raw.scan_iter(match=f"{prefix}:*")]:
                    await raw.delete(key)  # restarted empty: the streams and their groups are gone
                for n in range(2, 5):
                    a.bus.publish(agent("agent-1", ts=float(n)), 1.0)
                proxy_a.restore()
                await until(lambda: a.transport.up and a.transport.outbox == 0, "A back, its outbox written")
                proxy_b.restore()
                await until(lambda: len(b.engine.remote) == 4, "B got what A wrote before B was back")
                assert [e.ts for e in b.engine.remote] == [1.0, 2.0, 3.0, 4.0]  # type: ignore[attr-defined]
                a.bus.publish(agent("agent-1", ts=5.0), 1.0)
                await until(lambda: len(b.engine.remote) == 5, "and what A writes next")
                assert b.transport.stats["duplicates"] == 0 and a.engine.remote == []
            finally:
                await a.transport.close()
                await b.transport.close()

    try:
        run(body)
    finally:
        proxy_a.close()
        proxy_b.close()
