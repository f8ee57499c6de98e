"""Issue #18's integration test: three ``CtiServer`` nodes (A, B, C) in one process, each with its own simulated
PBX (pbxa, pbxb, pbxc) and a small campaign on it, one agent pool and one event bus on a private ``redis-server``
of the test's own on loopback. Scripted callers arrive on the three PBXs at once; the agents' phones are the
simulator's people (they answer, talk, hang up). From what the PBXs saw (their AMI events): no agent ever has two
calls at once, no caller is ever dialled to two agents at once (nor twice), every caller ends answered or hangs up
of its own accord. Node A is killed mid-call: another node takes pbxa's lease within the ttl and the keeper's
intervals, connects, queues again the callers holding there (with their wait so far), keeps the calls in progress
with their agents, and paces A's campaign. Redis is stopped for 10 virtual seconds and restarted empty: no offer
meanwhile (calls stay queued, each PBX still tracked by one node, health says the pool, the bus and the leases are
down), afterwards the nodes write every agent again (the dead node's too), take their leases back, every caller is
served, and every node's replica agrees with the pool.

Time: the nodes and the PBXs share one virtual clock, moved in small steps by the test; between the steps the
asyncio loop runs the Redis Streams transport (real time), so the agents' states reach the other nodes' replicas
within a step or two. The decisions (claims, leases) are judged on the virtual clock."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from acd.events import CallOffered
from acd.states import AgentState
from centre.demo import DEMO_EPOCH, with_demo_callers
from centre.redis_state import RedisState
from centre.server import CtiServer
from centre.sim_pbx import SimRuntime, build_sim
from config.load import load_config
from config.schema import CtiConfig, NodeSettings, RedisSettings
from cti.ami.message import AMIMessage
from cti.contract import CTI_FLOW, CTI_IVR_PATH, CTI_QUEUE, CTI_SKILLS, HOLD_CONTEXT, START_EXTEN
from cti.events import CallQueued
from dialer.events import AttemptStarted
from sim.ami_server import AMIServerFactory
from sim.channel import Channel
from sim.clock import VirtualClock
from sim.memory_transport import MemoryConnector, MemoryNetwork
from sim.settings import LogNormal

DEMO = Path(__file__).resolve().parent.parent / "config" / "examples" / "demo.yaml"
NODES = ("A", "B", "C")
PBXS = {"A": "pbxa", "B": "pbxb", "C": "pbxc"}
AGENTS = {"A": ("1001", "1002", "1003", "1004"), "B": ("1005", "1006", "1007", "1008"),
          "C": ("1009", "1010", "1011", "1012")}
QUEUES = (("sales", "sales:3"), ("support", "support:3"), ("billing", "billing:4"))
TTL = 6.0  # node.lease_ttl (and the claims' ttl)
STEP = 0.1  # virtual seconds per step of the pump
AGENT_CHANNEL = re.compile(r"^PJSIP/(1\d{3})-")


# ------------------------------------------------------------------------------------------------ private Redis
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A ``redis-server`` of this test's own on a free loopback port, persistence off (a restart comes back
    empty); ``stop`` and ``start`` it again on the same port."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(self.directory)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        deadline = time.monotonic() + 10
        for raw in proc.stdout:  # until it says it accepts connections
            if b"Ready to accept connections" in raw or time.monotonic() > deadline:
                break
        self.proc = proc

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary")
    server = PrivateRedis(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ the centre
def node_config(base: CtiConfig, url: str, prefix: str, node: str) -> CtiConfig:
    """The demo centre with three PBXs and a small campaign on each, over Redis; this node at home on its PBX."""
    a = base.asterisk[0]
    servers = [a.model_copy(update={"name": PBXS[n], "port": 15038 + i}) for i, n in enumerate(NODES)]
    campaign = base.dialer.campaigns[0].model_copy(update={"demo_leads": 8, "max_attempts": 1})
    campaigns = [campaign.model_copy(update={"name": f"camp-{n.lower()}", "server": PBXS[n]}) for n in NODES]
    agents = base.sim.agents.model_copy(update={"no_answer_prob": 0.0,  # (a missed call: nobody to make it ready)
                                                "talk_time": LogNormal(median_s=20.0, sigma=0.3)})
    return base.model_copy(update={
        "asterisk": servers, "redis": RedisSettings(url=url, prefix=prefix),
        "node": NodeSettings(id=node, home=[PBXS[node]], lease_ttl=TTL),
        "sim": base.sim.model_copy(update={"agents": agents}),
        "dialer": base.dialer.model_copy(update={"campaigns": campaigns})})


@dataclass
class Caller:
    """One scripted caller: on which PBX, when, whether it gives up (and after how long)."""

    pbx: str
    chan: Channel
    arrived: float
    patience: float | None
    answered_by: str = ""
    gave_up: bool = False

    @property
    def done(self) -> bool:
        return self.chan.dead and (bool(self.answered_by) or self.gave_up)


@dataclass
class PbxLog:
    """What one PBX saw, from its AMI events: agents' channels (created, hung up), dials (caller -> agent)."""

    name: str
    clock: VirtualClock
    agent_chans: dict[str, tuple[str, float, float | None]] = field(default_factory=dict)  # uid -> agent, t0, t1
    dials: list[tuple[str, str]] = field(default_factory=list)  # (caller uid, agent channel uid)
    answered: dict[str, str] = field(default_factory=dict)  # caller uid -> agent
    answered_at: dict[str, float] = field(default_factory=dict)  # agent channel uid -> when it answered

    def __call__(self, msg: AMIMessage) -> None:
        now = self.clock.seconds()
        name = msg.name
        if name == "Newchannel":
            m = AGENT_CHANNEL.match(msg.get("Channel", "") or "")
            if m:
                self.agent_chans[msg["Uniqueid"]] = (m.group(1), now, None)
        elif name == "Hangup":
            uid = msg.get("Uniqueid", "") or ""
            if uid in self.agent_chans:
                agent, t0, _ = self.agent_chans[uid]
                self.agent_chans[uid] = (agent, t0, now)
        elif name == "DialBegin":
            dest = msg.get("DestUniqueid", "") or ""
            if dest in self.agent_chans:
                self.dials.append((msg.get("Uniqueid", "") or "", dest))
        elif name == "DialEnd" and msg.get("DialStatus") == "ANSWER":
            dest = msg.get("DestUniqueid", "") or ""
            if dest in self.agent_chans:
                self.answered[msg.get("Uniqueid", "") or ""] = self.agent_chans[dest][0]
                self.answered_at[dest] = now


class Centre:
    """Three nodes and their PBXs on one virtual clock and one memory network; the test's callers."""

    def __init__(self, url: str, prefix: str, seed: int = 18) -> None:
        base = with_demo_callers(load_config(DEMO))
        self.prefix = prefix
        self.url = url
        self.clock = VirtualClock(start=DEMO_EPOCH)
        self.net = MemoryNetwork(self.clock)
        self.cfgs = {n: node_config(base, url, prefix, n) for n in NODES}
        self.sims: dict[str, SimRuntime] = {}
        self.logs: dict[str, PbxLog] = {}
        for i, n in enumerate(NODES):
            pbx = PBXS[n]
            sim = build_sim(self.cfgs[n], self.clock, agi_connect=self.net.connect, pbx_name=pbx, seed=seed + i,
                            inbound=False)
            sim.pbx.epoch_offset += 100_000.0 * i  # each PBX names its channels apart (uniqueids from the clock)
            self.net.listen("127.0.0.1", 15038 + i, AMIServerFactory(sim.ami))
            self.logs[pbx] = PbxLog(pbx, self.clock)
            sim.pbx.add_listener(self.logs[pbx])
            self.sims[pbx] = sim
        self.servers: dict[str, CtiServer] = {}
        self.seen: dict[str, list[object]] = {}
        for n in NODES:
            server = CtiServer(self.cfgs[n], clock=self.clock,
                               ami_connector=lambda s, f: MemoryConnector(self.net, s, f))
            self.seen[n] = []
            server.subscribe(self.seen[n].append)
            self.servers[n] = server
        self.alive = set(NODES)
        self.callers: list[Caller] = []
        self.rng = random.Random(seed)

    # -- time --------------------------------------------------------------------------------------------------
    async def run_for(self, seconds: float) -> None:
        """Move the virtual clock ``seconds`` ahead in steps, the loop (the bus) running between them."""
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end - 1e-9:
            self.clock.run_for(min(STEP, end - self.clock.seconds()))
            await asyncio.sleep(0.001)

    async def run_until(self, check: Callable[[], object], what: str, limit: float) -> float:
        """Run until ``check()`` holds, at most ``limit`` virtual seconds; how long it took."""
        start = self.clock.seconds()
        while not check():
            if self.clock.seconds() - start > limit:
                raise AssertionError(f"not within {limit} virtual s: {what}")
            await self.run_for(STEP)
        return self.clock.seconds() - start

    async def real_until(self, check: Callable[[], object], what: str, timeout: float = 10.0) -> None:
        """Wait in real time (the virtual clock still) until ``check()`` holds."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what}")
            await asyncio.sleep(0.005)

    # -- nodes -------------------------------------------------------------------------------------------------
    def transport(self, n: str) -> Any:
        t = self.servers[n].components.transport
        assert t is not None
        return t

    async def start(self) -> None:
        for n in NODES:
            self.transport(n).start()
            self.servers[n].start()
        await self.real_until(lambda: all(self.transport(n).up for n in NODES), "the three nodes on the bus")
        await self.run_for(1.0)
        for n in NODES:
            assert self.servers[n].health.ami_here == {PBXS[n]}, (n, self.servers[n].health.ami_here)
            for agent in AGENTS[n]:
                server = self.servers[n]
                server.apply(server.acd.login(agent, None, server.now()))
                server.apply(server.acd.ready(agent, server.now()))
        every = [a for n in NODES for a in AGENTS[n]]
        await self.run_until(lambda: all(self.servers[n].acd.agent_snapshot(a).state == AgentState.READY
                                         for n in NODES for a in every), "every node sees every agent ready", 5.0)

    async def kill(self, n: str) -> None:
        """Node ``n`` dies: timers stop, its AMI connections drop, its bus connection goes; no lease released."""
        self.alive.discard(n)
        self.servers[n].halt()
        await self.transport(n).close()

    async def stop(self) -> None:
        for n in NODES:
            if n in self.alive:
                self.servers[n].stop()
        self.clock.run_for(2.0)
        for n in NODES:
            await self.transport(n).close()
        for sim in self.sims.values():
            sim.stop()

    def live(self) -> list[CtiServer]:
        return [self.servers[n] for n in NODES if n in self.alive]

    # -- callers -----------------------------------------------------------------------------------------------
    def arrive(self, pbx: str, patience: float | None = None) -> Caller:
        """A caller the IVR queued: it enters ``cti-hold`` with the IVR's variables; with ``patience`` it hangs
        up after that long unless an agent answered by then."""
        queue, skills = self.rng.choice(QUEUES)
        sim = self.sims[pbx]
        chan = sim.pbx.inbound_call(START_EXTEN, f"+1555{self.rng.randrange(10**7):07d}", "CALLER",
                                    context=HOLD_CONTEXT)
        for variable, value in ((CTI_QUEUE, queue), (CTI_SKILLS, skills), (CTI_FLOW, "main"),
                                (CTI_IVR_PATH, f"menu:{queue}")):
            sim.pbx.set_var(chan, variable, value)
        caller = Caller(pbx, chan, self.clock.seconds(), patience)
        self.callers.append(caller)
        if patience is not None:
            self.clock.callLater(patience, self._give_up, caller)
        return caller

    def _give_up(self, caller: Caller) -> None:
        if not caller.chan.dead and not self.answered_by(caller):
            caller.gave_up = True
            self.sims[caller.pbx].pbx.far_hangup(caller.chan)

    def answered_by(self, caller: Caller) -> str:
        agent = self.logs[caller.pbx].answered.get(caller.chan.uniqueid, "")
        if agent:
            caller.answered_by = agent
        return agent

    def schedule(self, pbxs: tuple[str, ...], count: int, within: float, abandon_share: float) -> None:
        """``count`` callers on each of ``pbxs`` at random moments of the next ``within`` seconds."""
        for pbx in pbxs:
            for _ in range(count):
                patience = self.rng.uniform(10.0, 25.0) if self.rng.random() < abandon_share else None
                self.clock.callLater(self.rng.uniform(0.0, within), self.arrive, pbx, patience)

    def settled(self) -> bool:
        """Every caller answered or gone of its own accord, and hung up."""
        for c in self.callers:
            self.answered_by(c)
        return all(c.done for c in self.callers)

    def waiting_on(self, pbx: str) -> list[Caller]:
        return [c for c in self.callers if c.pbx == pbx and not c.chan.dead and not self.answered_by(c)
                and not any(caller == c.chan.uniqueid for caller, _ in self.logs[pbx].dials)]

    def talking_on(self, pbx: str, since: float = 0.0) -> dict[str, str]:
        """Agent -> its channel uid, for the agents whose call on ``pbx`` is up (answered from ``since`` on)."""
        log = self.logs[pbx]
        return {agent: uid for uid, (agent, _, t1) in log.agent_chans.items()
                if t1 is None and log.answered_at.get(uid, -1.0) >= since}

    # -- invariants --------------------------------------------------------------------------------------------
    def check_pbx_invariants(self) -> None:
        """From what the PBXs saw: an agent's channels (over the three PBXs) never overlap; a caller is never
        dialled to two agents at once, nor twice at all (the agents' phones always answer here: a second offer
        could only be a call offered again by mistake, by two nodes, or lost and found again)."""
        by_agent: dict[str, list[tuple[float, float, str]]] = {}
        end = self.clock.seconds()
        for pbx, log in self.logs.items():
            for uid, (agent, t0, t1) in log.agent_chans.items():
                by_agent.setdefault(agent, []).append((t0, end if t1 is None else t1, f"{pbx}/{uid}"))
        assert sum(len(v) for v in by_agent.values()) > 20, "too few calls reached the agents to judge"
        for agent, spans in by_agent.items():
            spans.sort()
            for (_, e1, c1), (s2, _, c2) in zip(spans, spans[1:], strict=False):
                assert s2 >= e1, f"agent {agent} had two calls at once: {c1} until {e1:.1f}, {c2} from {s2:.1f}"
        for pbx, log in self.logs.items():
            per_caller: dict[str, list[tuple[float, float, str]]] = {}
            for caller, dest in log.dials:
                _, t0, t1 = log.agent_chans[dest]
                per_caller.setdefault(caller, []).append((t0, end if t1 is None else t1, dest))
            for caller, spans in per_caller.items():
                assert len(spans) == 1, f"{pbx} caller {caller} offered {len(spans)} times"
                spans.sort()
                for (_, e1, d1), (s2, _, d2) in zip(spans, spans[1:], strict=False):
                    assert s2 >= e1, f"{pbx} caller {caller} dialled to two agents at once: {d1}, {d2}"


def run(body: Callable[[Centre], Any], url: str) -> None:
    prefix = f"test-three-{uuid.uuid4().hex[:10]}"

    async def main() -> None:
        centre = Centre(url, prefix)
        try:
            await centre.start()
            await body(centre)
        finally:
            await centre.stop()

    asyncio.run(asyncio.wait_for(main(), 50))


def offers_between(centre: Centre, t0: float, t1: float) -> list[CallOffered]:
    return [e for n in NODES for e in centre.seen[n] if isinstance(e, CallOffered) and t0 <= e.ts <= t1]


# ------------------------------------------------------------------------------------------------ the test
def test_three_nodes_one_pool_a_node_killed_mid_call_and_redis_restarted(private_redis: PrivateRedis) -> None:
    async def body(centre: Centre) -> None:
        pbxs = tuple(PBXS.values())
        # 1. Concurrent load on the three PBXs: more callers than agents, some give up.
        centre.schedule(pbxs, count=9, within=30.0, abandon_share=0.2)
        await centre.run_for(30.0)
        for pbx in pbxs:  # each node routed its own PBX's callers, to agents of the whole pool
            server = next(s for s in centre.servers.values() if s.health.ami_here == {pbx})
            assert any(isinstance(e, CallQueued) and e.server == pbx for e in centre.seen[server.cfg.node.id])
        served_by = {e.agent_id for n in NODES for e in centre.seen[n] if isinstance(e, CallOffered)}
        assert served_by >= {"1001", "1005", "1009"}, served_by

        # 2. Node A dies mid-call, with callers holding on its PBX.
        for _ in range(3):
            centre.arrive("pbxa")
        await centre.run_for(1.0)  # queued at A
        await centre.run_until(lambda: centre.talking_on("pbxa", since=centre.clock.seconds() - 1.0)
                               and centre.waiting_on("pbxa"), "an agent just answered and callers holding on pbxa",
                               30.0)
        talking = centre.talking_on("pbxa")
        holding = {c.chan.uniqueid for c in centre.waiting_on("pbxa")}
        for n in ("B", "C"):  # camp-a dials through pbxa: paced by A alone so far
            dialer = centre.servers[n].dialer
            assert dialer is not None and dialer.campaigns["camp-a"].last_decision is None
        died = centre.clock.seconds()
        marks = {n: len(centre.seen[n]) for n in NODES}
        await centre.kill("A")
        b, c = centre.servers["B"], centre.servers["C"]
        timings = b.leases.keeper.timings
        bound = timings.ttl + timings.acquire_every + timings.defer + 2 * STEP
        took = await centre.run_until(
            lambda: any(s.health.ami.get("pbxa") and s.health.ami_here >= {"pbxa"} for s in (b, c)),
            "another node connected to pbxa", bound + 1.0)
        assert took <= bound, f"pbxa taken over after {took:.1f} s (bound {bound:.1f} s)"
        assert took > timings.ttl - timings.renew_every - 1.0  # not before A's lease could have lapsed
        taker = b if b.health.ami.get("pbxa") else c
        other = c if taker is b else b
        assert not other.health.ami.get("pbxa")  # one node at a time
        assert "ami:pbxa" in taker.leases.keeper.held
        await centre.run_for(1.0)  # the resync
        tid = taker.cfg.node.id
        requeued = {e.uniqueid for e in centre.seen[tid][marks[tid]:] if isinstance(e, CallQueued)
                    and e.server == "pbxa" and e.ts <= died}  # with their wait so far
        still_holding = {c.chan.uniqueid for c in centre.waiting_on("pbxa")}
        assert still_holding <= requeued, "a caller holding on pbxa was not queued again by the new node"
        going_on = [agent for agent, uid in talking.items() if centre.logs["pbxa"].agent_chans[uid][2] is None]
        assert going_on, "no call in progress at the kill lasted until the takeover"
        for agent in going_on:  # the calls in progress keep their agents
            snapshot = taker.acd.agent_snapshot(agent)
            assert snapshot.state == AgentState.ON_CALL, (agent, snapshot)
        # A's campaign: paced by a live node once its lease lapsed
        await centre.run_until(lambda: any(s.dialer is not None and s.dialer.paces("camp-a") for s in (b, c)),
                               "camp-a paced by another node", bound)
        pacer = next(s for s in (b, c) if s.dialer is not None and s.dialer.paces("camp-a"))
        assert "campaign:camp-a" in pacer.leases.keeper.held and pacer is taker  # (it dials through pbxa)
        await centre.run_for(2.0)
        assert pacer.dialer is not None and pacer.dialer.campaigns["camp-a"].last_decision is not None
        # 3. Everyone served: the callers who held on pbxa by the pool's agents
        await centre.run_until(centre.settled, "every caller answered or gone", 240.0)
        assert holding & {c.chan.uniqueid for c in centre.callers if c.answered_by}, \
            "no caller holding on pbxa at the kill was answered"
        assert not [e for n in ("B", "C") if centre.servers[n] is not pacer for e in centre.seen[n]
                    if isinstance(e, AttemptStarted) and e.campaign == "camp-a"]  # one pacer at a time
        for agent in going_on:  # the new node let them go once their call ended: no agent left on a call gone
            talks = any(t1 is None and who == agent for log in centre.logs.values()
                        for who, _, t1 in log.agent_chans.values())
            assert talks or taker.acd.agent_snapshot(agent).state != AgentState.ON_CALL, agent

        # 4. Redis stops for 10 s and comes back empty.
        before = len(centre.callers)
        private_redis.stop()
        down_at = centre.clock.seconds()
        for pbx in pbxs:
            centre.arrive(pbx)
        await centre.run_for(5.0)
        await centre.real_until(lambda: all(not s.health.redis_bus for s in centre.live()), "the bus seen down")
        for s in centre.live():
            assert s.acd.shared_up is False and s.health.agent_pool is False
            assert s.wallboard()["health"]["agent_pool"] is False
        for pbx in pbxs:
            centre.arrive(pbx)
        await centre.run_for(5.0)
        up_at = centre.clock.seconds()
        assert not offers_between(centre, down_at, up_at), "an offer made without the shared pool"
        new = centre.callers[before:]
        assert all(not c.chan.dead and not centre.answered_by(c) for c in new)
        for pbx in pbxs:  # each PBX still connected to the node that holds it, its calls tracked
            holder = [s for s in centre.live() if s.health.ami.get(pbx)]  # (its lease past its safe end: kept)
            assert len(holder) == 1 and holder[0].tracker.channels(pbx), pbx
            assert holder[0].health.lease_store is False
        waiting = {c.uniqueid for s in centre.live() for q in s.acd.queue_stats(up_at)
                   for c in s.acd.waiting_calls(q, up_at)}
        assert {c.chan.uniqueid for c in new} <= waiting  # queued, in order, on the node of their PBX
        private_redis.start()
        await centre.run_until(lambda: all(s.acd.shared_up for s in centre.live()), "the pool back", 15.0)
        await centre.real_until(lambda: all(s.health.redis_bus for s in centre.live()), "the bus back", 15.0)
        pool = RedisState(redis.Redis.from_url(private_redis.url), centre.prefix)
        # the nodes wrote their agents again, and those the dead node A wrote last (or they were lost for good)
        assert set(pool.agents()) == {a for n in NODES for a in AGENTS[n]}, sorted(pool.agents())
        await centre.run_until(lambda: all(s.health.lease_store for s in centre.live()), "the leases back", 5.0)
        held = {name: [s.cfg.node.id for s in centre.live() if name in s.leases.keeper.held] for name in (
            "ami:pbxa", "ami:pbxb", "ami:pbxc", "campaign:camp-a", "campaign:camp-b", "campaign:camp-c")}
        assert held == {"ami:pbxa": [tid], "ami:pbxb": ["B"], "ami:pbxc": ["C"],
                        "campaign:camp-a": [tid], "campaign:camp-b": ["B"], "campaign:camp-c": ["C"]}
        await centre.run_until(centre.settled, "every caller after the outage served", 120.0)
        assert all(c.answered_by for c in new)
        centre.check_pbx_invariants()
        # one pool: once the wrap-ups are over, every live node's replica says of each agent what the pool says
        await centre.run_for(20.0)
        await centre.real_until(lambda: all(centre.transport(s.cfg.node.id).outbox == 0 for s in centre.live()),
                                "the outboxes written")
        entries = pool.agents()

        def agreed() -> bool:
            return all(s.acd.agent_snapshot(a).state.value == e.state
                       for s in centre.live() for a, e in entries.items())

        with contextlib.suppress(AssertionError):  # the last changes still on their way through the bus
            await centre.real_until(agreed, "the replicas agree with the pool", 5.0)
        for s in centre.live():
            seen = {a: s.acd.agent_snapshot(a).state.value for a in entries}
            assert seen == {a: e.state for a, e in entries.items()}, (s.cfg.node.id, seen, entries)
        pool.client.close()

    run(body, private_redis.url)
