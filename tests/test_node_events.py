"""Several nodes on the real Redis (centre/node_bus.py, centre/console_relay.py): two ``CtiServer`` nodes in one
process, each with its own simulated PBX, hub and websocket consoles, their buses joined by Redis Streams. An
agent's console on node A gets the pop, state and call of a call node B's PBX carries; node A's statistics count
node B's calls, once; a console that moves from A to B gets its state and current pop on hello; and with Redis cut
in front of node A the node goes on alone, its health says so, and what the other node relayed meanwhile arrives
once it is back.

The shared agent pool (an agent's state on every node's ACD) is another piece of work: here the agent is logged in
and made ready on the ACD of the node whose PBX carries its calls, as that pool would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from acd.events import CallWaiting
from acd.service import AcdService
from centre.node_bus import SHARED, shared_of
from centre.ops_http import ops_endpoint
from centre.wiring import kpi_engine
from config.schema import MetricsSettings
from cti.events import ConsolePushRelayed
from kpi.core import KpiCore
from kpi.engine import OtherNodes
from tests.conftest import REDIS_URL
from tests.console_stack import Client, Stack, make_settings, open_client, stack_config
from tests.tcp_proxy import TcpProxy

B_EPOCH_SHIFT = 100_000.0  # node B's PBX names its channels apart from node A's (uniqueids from its clock)


@contextlib.asynccontextmanager
async def nodes(prefix: str, url_a: str = REDIS_URL) -> AsyncIterator[tuple[Stack, Stack]]:
    """Nodes A and B on the Redis keys under ``prefix`` (A through ``url_a``); the keys deleted afterwards."""
    raw = aioredis.from_url(REDIS_URL)
    with tempfile.TemporaryDirectory(prefix="node-a-") as da, tempfile.TemporaryDirectory(prefix="node-b-") as db:
        a = Stack(make_settings(), Path(da), redis={"url": url_a, "prefix": prefix}, node_id="A",
                  pbx="pbx-a")
        b = Stack(make_settings(), Path(db), redis={"url": REDIS_URL, "prefix": prefix}, node_id="B",
                  pbx="pbx-b")
        b.pbx.epoch_offset += B_EPOCH_SHIFT
        started: list[Stack] = []
        try:
            for stack in (a, b):
                await stack.start()
                started.append(stack)
            await until(lambda: all(transport(s).up for s in (a, b)), "both nodes on the bus")
            yield a, b
        finally:
            for stack in started:
                await stack.stop()
            keys = [key async for key in raw.scan_iter(match=f"{prefix}:*")]
            if keys:
                await raw.delete(*keys)
            await raw.aclose()


def transport(stack: Stack) -> Any:
    t = stack.server.components.transport
    assert t is not None
    return t


async def until(check: Callable[[], object], what: str, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.005)


def ready_on(stack: Stack, agent_id: str) -> None:
    """The agent logged in and ready on ``stack``'s ACD (as the shared agent pool would make it)."""
    acd, now = stack.server.acd, stack.server.now()
    stack.server.apply(acd.login(agent_id, f"PJSIP/{agent_id}", now))
    stack.server.apply(acd.ready(agent_id, stack.server.now()))


def day(stack: Stack) -> dict[str, Any]:
    kpi = stack.server.components.kpi
    assert kpi is not None
    figures: dict[str, Any] = kpi.core.figures("queue:sales", stack.server.now())["windows"]["day"]
    return figures


async def settled(sender: Stack, receiver: Stack) -> None:
    """Everything ``sender`` shared so far has been handled at ``receiver``: a marker relayed after it arrived
    (one stream, in order per node)."""
    relay = receiver.server.relay
    assert relay is not None
    before = relay.counters["received"]
    sender.server.push_to_agent("1002", {"type": "notice", "notice": "marker", "message": "marker"})
    await until(lambda: relay.counters["received"] > before, "the marker at the other node")


async def first_push(client: Client, kind: str, pred: Callable[[dict[str, Any]], bool] = lambda m: True,
                     timeout: float = 8.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        return await client.wait_push(kind, pred)


async def healthz(port: int) -> dict[str, Any]:
    """``GET /healthz`` of the operations endpoint on ``port``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: monitor\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split()[1] == b"200", head  # alive either way
    doc: dict[str, Any] = json.loads(body)
    return doc


def run(body: Callable[[str], Awaitable[None]]) -> None:
    prefix = f"test-nodes-{uuid.uuid4().hex[:10]}"
    asyncio.run(asyncio.wait_for(body(prefix), 35))


def test_the_shared_set_holds_what_the_statistics_count_and_the_relay() -> None:
    # every type the statistics count is shared (so each node's figures are the centre's), the relay too
    assert shared_of(KpiCore.SUBSCRIPTIONS) == KpiCore.SUBSCRIPTIONS
    assert ConsolePushRelayed in SHARED


def test_another_nodes_events_from_before_the_statistics_were_rebuilt_are_not_counted_again() -> None:
    # A restarted node rebuilds its figures from the records the nodes share, then reads what its group kept
    # while it was away: those events are in the records already.
    cfg = stack_config(make_settings(), "sqlite://")
    engine = kpi_engine(cfg, AcdService(cfg.acd, 1000.0))
    other = OtherNodes(engine, shared_of(KpiCore.SUBSCRIPTIONS))
    engine.rebuild([], 1000.0)

    def waiting(ts: float, n: int) -> CallWaiting:
        return CallWaiting(ts=ts, server="pbx2", uniqueid=f"u{n}", call_id=f"u{n}", queue="sales", priority=0,
                           position=1, ewt=None)

    other.handle(waiting(990.0, 1), 1001.0)
    other.handle(waiting(1001.0, 2), 1001.0)
    assert other.skipped == 1
    assert engine.core.figures("queue:sales", 1002.0)["windows"]["day"]["offered"] == 1


def test_a_console_on_node_a_gets_the_pop_of_a_call_on_node_b_and_moves_to_b_without_a_gap() -> None:
    async def body(prefix: str) -> None:
        async with nodes(prefix) as (a, b):
            b.add_ada()
            agent = await open_client(a, "1001")  # the console is on node A ...
            ready_on(b, "1001")  # ... the agent takes calls of node B's PBX
            state = await first_push(agent, "state", lambda m: m["state"] == "ready")
            assert state["agent_id"] == "1001"  # (node A's hub got node B's state frame)
            b.arrive()  # a caller on node B's PBX, queued and offered on node B
            pop = await first_push(agent, "pop", lambda m: m.get("complete") is True)
            assert pop["customer"]["profile"]["name"] == "Ada Lovelace" and pop["queue"] == "sales"
            live = b.live("1001")
            assert live is not None and pop["call_id"] == live.queued.call_id
            await b.answer("1001")
            call = await first_push(agent, "call", lambda m: m["status"] == "connected")
            assert call["call_id"] == pop["call_id"]
            await first_push(agent, "state", lambda m: m["state"] == "on_call")
            assert a.server.call_for_agent("1001") is None  # node A carries no call: it only relayed
            # node A kept the relayed pop and call frame for a console that resumes there
            assert a.server.agent_pops["1001"]["call_id"] == pop["call_id"]
            assert a.server.relayed_call("1001", pop["call_id"]) is not None

            # The console moves: it leaves node A and says hello to node B; its state, the pop and the call at once.
            await agent.ws.close()
            moved = await open_client(b, "1001")
            resumed: dict[str, dict[str, Any]] = {}
            while not {"state", "pop", "call"} <= resumed.keys():
                msg = await moved.recv(timeout=2.0)
                resumed.setdefault(msg["type"], msg)
            assert resumed["state"]["state"] == "on_call" and resumed["state"]["call_id"] == pop["call_id"]
            assert resumed["pop"]["call_id"] == pop["call_id"]
            assert resumed["pop"]["customer"]["profile"]["name"] == "Ada Lovelace"
            assert resumed["call"]["status"] == "connected"
            # the next push on node B reaches it there, and no longer goes through node A's hub
            await until(lambda: not a.hub.is_connected("1001"), "node A's hub saw the console go")
            delivered = a.server.relay.counters["delivered"]  # type: ignore[union-attr]
            await b.hang_up_phone("1001")
            await first_push(moved, "state", lambda m: m["state"] == "wrap_up")
            await settled(b, a)
            assert a.server.relay.counters["delivered"] == delivered  # type: ignore[union-attr]
            await moved.ws.close()

    run(body)


def test_call_actions_from_a_console_on_node_a_are_carried_out_by_node_b_whose_pbx_carries_the_call() -> None:
    """Hold, retrieve and hang up asked on node A's console for a call node B carries: node B sends the AMI
    actions to its PBX and the console gets node B's answers (an error as node B says it); an action for a call
    no node carries is ``call-unreachable`` after the relay's wait."""
    async def body(prefix: str) -> None:
        async with nodes(prefix) as (a, b):
            b.add_ada()
            agent = await open_client(a, "1001")
            ready_on(b, "1001")
            await first_push(agent, "state", lambda m: m["state"] == "ready")
            caller = b.arrive()
            pop = await first_push(agent, "pop", lambda m: m.get("complete") is True)
            await b.answer("1001")
            await first_push(agent, "call", lambda m: m["status"] == "connected")
            assert a.server.call_for_agent("1001") is None
            mark = len(b.sender.sent)
            held = await agent.request("hold")
            assert held["type"] == "result" and held["status"] == "held" and held["call_id"] == pop["call_id"]
            assert [name for name, _ in b.sender.actions(mark)] == ["Redirect"]
            await b.until(lambda: caller.moh, "music on hold for node B's caller")
            assert (await agent.request("hold"))["error_id"] == "illegal-transition"  # node B's word
            assert (await agent.request("retrieve"))["status"] == "connected"
            await b.until(lambda: not caller.moh, "the caller back with the agent")
            relay = a.server.relay
            assert relay is not None
            relay.ask_timeout = 0.5
            lost = await agent.request("hold", call_id="no-such-call")
            assert lost["error_id"] == "call-unreachable"
            mark = len(b.sender.sent)
            assert (await agent.request("hangup"))["status"] == "ended"
            assert [name for name, _ in b.sender.actions(mark)] == ["Hangup"]
            await first_push(agent, "state", lambda m: m["state"] == "wrap_up")
            again = await agent.request("hangup")  # node B has the call's session through the wrap-up: its answer
            assert again["type"] == "error" and again["error_id"] == "action-failed"
            assert relay.counters["asked"] == 6 and relay.counters["unanswered"] == 1
            assert b.server.relay.counters["carried"] == 5  # type: ignore[union-attr]
            await agent.ws.close()

    run(body)


def test_each_nodes_statistics_count_the_other_nodes_calls_once() -> None:
    async def body(prefix: str) -> None:
        async with nodes(prefix) as (a, b):
            ready_on(b, "1001")
            caller_b = b.arrive()  # one call on each node's PBX
            await b.answer("1001")
            # (1002, who serves sales too, is made ready only now: one pool, so node B could have given it its
            # first caller, had it been idle longer)
            ready_on(a, "1002")
            caller_a = a.arrive(queue="support")  # (1002 serves support; sales' 1001 is busy on node B)
            await a.answer("1002")
            caller_b2 = b.arrive()  # waits on node B: 1001 is busy
            await until(lambda: b.server.acd.queue_stats(b.server.now())["sales"].waiting == 1, "B's caller waits")
            await b.caller_hangs_up(caller_b2)  # abandoned on node B
            await b.caller_hangs_up(caller_b)
            await a.caller_hangs_up(caller_a)
            await settled(b, a)
            await settled(a, b)
            for stack in (a, b):
                figures = day(stack)
                assert (figures["offered"], figures["answered"], figures["abandoned"] + figures["short_abandoned"]) \
                    == (2, 1, 1), figures  # node B's two callers, counted once at each node
            kpi_a, kpi_b = a.server.components.kpi, b.server.components.kpi
            assert kpi_a is not None and kpi_b is not None
            now = a.server.now()
            assert kpi_a.core.figures("queue:support", now)["windows"]["day"]["answered"] == 1
            assert kpi_b.core.figures("queue:support", now)["windows"]["day"]["answered"] == 1
            assert transport(a).stats["own"] > 0 and transport(b).stats["own"] > 0  # read back and skipped
            # A supervisor on node A sees the whole centre: node B's sales calls and node A's support call.
            sup = await open_client(a, "sup", role="supervisor")
            reply = await sup.request("subscribe", topics=["queue:sales", "queue:support"])
            snaps = {f["topic"]: f["figures"]["windows"]["day"] for f in reply["frames"]}
            assert (snaps["queue:sales"]["offered"], snaps["queue:sales"]["answered"]) == (2, 1)
            assert snaps["queue:support"]["answered"] == 1
            await sup.ws.close()

    run(body)


def test_with_redis_cut_a_node_keeps_tracking_routes_nothing_says_so_and_catches_up_once_back() -> None:
    proxy = TcpProxy("127.0.0.1", 6379)
    url = REDIS_URL.replace("127.0.0.1:6379", f"127.0.0.1:{proxy.port}")
    assert url != REDIS_URL

    async def body(prefix: str) -> None:
        async with nodes(prefix, url_a=url) as (a, b):
            b.add_ada()
            away = await open_client(a, "1001")  # 1001's calls come from node B's PBX
            ready_on(b, "1001")
            await first_push(away, "state", lambda m: m["state"] == "ready")
            assert a.server.wallboard()["health"]["redis_bus"] is True
            ops = ops_endpoint(a.server, MetricsSettings(port=0, check_cache=0.0, check_timeout=2.0))
            port = await ops.start("127.0.0.1", 0)
            assert (await healthz(port))["redis_bus"] == "up"
            proxy.cut()
            await until(lambda: a.server.health.redis_bus is False, "node A sees the bus down")
            assert a.server.wallboard()["health"]["redis_bus"] is False
            assert (await healthz(port))["redis_bus"] == "down"
            # Node A goes on tracking its PBX's calls, but makes no routing decision without the shared pool
            # (issue #18: two nodes must never give one agent two calls): its own caller waits, in order.
            a.add_ada()
            local = await open_client(a, "1002")
            await local.request("login", endpoint="PJSIP/1002")
            await local.request("ready")
            caller_a = a.arrive()
            await until(lambda: a.server.acd.shared_up is False, "node A's ACD sees the shared pool down")
            assert a.server.wallboard()["health"]["agent_pool"] is False
            assert (await healthz(port))["agent_pool"] == "down"
            with contextlib.suppress(TimeoutError):
                early = await first_push(local, "pop", timeout=0.3)
                raise AssertionError(f"an offer made without the shared pool: {early}")
            assert a.server.tracker.channels(a.pbx_name)  # still tracked
            assert transport(a).outbox > 0  # its shared events wait for Redis
            # Meanwhile node B offers its caller to 1001, whose console is on node A: relayed, not there yet.
            b.arrive()
            await b.ringing("1001")
            live = b.live("1001")
            assert live is not None
            with contextlib.suppress(TimeoutError):
                early = await first_push(away, "pop", timeout=0.3)
                raise AssertionError(f"a pop came through a cut Redis: {early}")
            proxy.restore()
            await until(lambda: a.server.health.redis_bus is True, "node A back on the bus", timeout=15.0)
            assert (await healthz(port))["redis_bus"] == "up"
            pop = await first_push(away, "pop", lambda m: m.get("complete") is True)
            assert pop["call_id"] == live.queued.call_id
            # the pool back (the ACD probes it), node A routes its waiting caller
            await first_push(local, "pop", lambda m: m.get("complete") is True, timeout=15.0)
            assert (await healthz(port))["agent_pool"] == "up"
            await a.answer("1002")
            # node B's statistics got node A's call once node A's outbox was written
            await until(lambda: transport(a).outbox == 0, "node A's outbox written")
            await settled(a, b)
            assert day(b)["answered"] == 1 and day(b)["offered"] == 2
            assert day(a)["answered"] == 1
            await a.caller_hangs_up(caller_a)
            await ops.stop()

    try:
        run(body)
    finally:
        proxy.close()
