"""Benchmark: routing decisions across several nodes sharing one agent pool in Redis (issue #18).

Run: ``.venv/bin/python bench/scaleout.py [--seconds 8] [--agents 120] [--waiting 20] [--redis URL]``

Each node is its own process: an ``AcdService`` on the Redis pool (``centre.redis_state.RedisState``: a claim per
offer, in Lua) and an ``EventBus`` whose transport is the Redis Streams one (``centre.redis_bus``), sharing the
agents' state changes as the server does; each node logs its share of the agents in, keeps ``--waiting`` callers
of its own PBX queued (one queue every agent serves), and answers and ends every offer at once (zero talk, zero
wrap-up: the agent is ready again at once), so that every agent is always the object of a decision and the
figure is how many decisions the nodes make, not how long calls last. Measured from the first to the last second
of ``--seconds``:

- decisions/s: offers made by all the nodes together;
- offer latency (``p50 ms``, ``p99 ms``): what one decision takes, the router's choice and the claim in Redis, up
  to the offer command: from the start of the bus operation that led to it (a caller queued, an agent back to
  ready, another node's event, a timer), or from the operation's previous offer when one operation makes several
  (a timer that brings ten agents back makes ten decisions one after the other); ``event p99``: from the start of
  the operation in every case (the tenth offer waits for the nine before it);
- Redis round trips per decision: the pool's requests (claims, state writes, releases, renewals) per offer; the
  events between nodes are written in batches and are counted apart (entries written and read per decision);
- the invariant, checked in the same run: every claim and release takes the next number of one counter in Redis
  (``Claim.version``), so all the nodes' claims and releases sorted by it are the order Redis applied them; replayed,
  no agent may be claimed while claimed and no call may hold two agents. Any violation fails the run.

The baseline is the same loop on one node with the embedded pool (``MemoryState``, no Redis): what one process does
alone. The table gives 1, 2 and 3 nodes on Redis and the scaling ratio to one node. These machines have 2 cores
(and Redis takes one): nodes beyond the cores share them, so the ratio says what the design costs here, not what
separate machines would give; ``docs/scaling.md`` reads the figures. Ends with
``BENCH scaleout nodes=3 decisions_per_s=<n> p99_ms=<x>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from acd.events import AgentStateChanged  # noqa: E402
from acd.service import AcdService  # noqa: E402
from acd.settings import AcdSection  # noqa: E402
from acd.shared_state import Claim, MemoryState, StateWrite  # noqa: E402
from bench._offers import answered_and_ended  # noqa: E402
from centre.redis_bus import StreamsTransport  # noqa: E402
from centre.redis_link import redis_client, redis_sync_client  # noqa: E402
from centre.redis_state import RedisState  # noqa: E402
from config.schema import RedisSettings  # noqa: E402
from cti.bus import EventBus, LocalTransport  # noqa: E402
from cti.commands import OfferCall  # noqa: E402
from cti.events import CallQueued  # noqa: E402

DEFAULT_REDIS = "redis://127.0.0.1:6379/14"


def centre_config(agents: int) -> dict[str, Any]:
    return {"agents": [{"id": f"ag{i:04d}", "name": f"Agent {i}", "endpoint": f"PJSIP/ag{i:04d}",
                        "skills": {"sales": 1 + i % 10}} for i in range(agents)],
            "queues": [{"name": "sales", "skills": {"sales": 1}, "wrapup": 0, "ring_timeout": 15}]}


class Logged:
    """Records every claim and release the pool made with its version (Redis's order of the pool's changes)."""

    log: list[tuple[int, str, str, str]]

    def claim(self, agent: str, call: str, node: str, now: float, until: float,
              writes: Sequence[StateWrite] = ()) -> Claim | None:
        got = super().claim(agent, call, node, now, until, writes)  # type: ignore[misc]
        self._released(writes)
        if got is not None:
            self.log.append((got.version, "claim", agent, call))
        return got

    def apply(self, writes: Sequence[StateWrite], now: float) -> list[int]:
        versions: list[int] = super().apply(writes, now)  # type: ignore[misc]
        self._released(writes)
        return versions

    def release(self, agent: str, call: str, state: str, since: float) -> bool:
        done = super().release(agent, call, state, since)  # type: ignore[misc]
        if done:
            self.log.append((self.last_version, "release", agent, call))  # type: ignore[attr-defined]
        return done

    def _released(self, writes: Sequence[StateWrite]) -> None:
        """The releases among ``writes`` (a write's version, 0 when it released nothing)."""
        for w, version in zip(writes, self.last_applied, strict=False):  # type: ignore[attr-defined]
            if version:
                self.log.append((version, "release", w.agent, w.call))

    def expire(self, now: float) -> list[Claim]:
        gone = super().expire(now)  # type: ignore[misc]
        self.log.extend((0, "expired", c.agent, c.call) for c in gone)
        return gone


class LoggedRedis(Logged, RedisState):
    def __init__(self, client: Any, prefix: str) -> None:
        RedisState.__init__(self, client, prefix)
        self.log = []


class LoggedMemory(Logged, MemoryState):
    def __init__(self) -> None:
        MemoryState.__init__(self)
        self.log = []
        self.round_trips = 0


# ----------------------------------------------------------------------------------------------------- one node
class Node:
    def __init__(self, args: argparse.Namespace) -> None:
        self.name = f"n{args.index}"
        self.server = f"pbx-{self.name}"
        self.args = args
        settings = RedisSettings(url=args.redis, prefix=args.prefix)
        now = time.time()
        if args.store == "redis":
            self.pool: Any = LoggedRedis(redis_sync_client(settings), args.prefix)
            transport: Any = StreamsTransport(self.name, lambda: redis_client(settings, timeout=7.0), args.prefix,
                                              (AgentStateChanged,), clock=time.time)
        else:
            self.pool = LoggedMemory()
            transport = LocalTransport()
        self.transport = transport
        self.acd = AcdService(AcdSection.model_validate(centre_config(args.agents)), now, node=self.name,
                              shared=self.pool, claim_ttl=10.0)
        self.offers: list[OfferCall] = []
        self.lat_ns: list[int] = []  # from the start of the operation that led to the offer
        self.dec_ns: list[int] = []  # from the previous offer of the same operation (or its start): one decision
        self.offer_at: list[float] = []
        self.lag: list[tuple[float, float]] = []  # another node's event heard here: (when, how long after its ts)
        self.op_start = self.last_offer = 0
        self.bus = EventBus(self._command, transport=transport)
        self.bus.add(self.acd)
        if hasattr(transport, "attach_remote"):
            transport.attach_remote(self._remote)
        self.seq = 0
        self.waiting: set[str] = set()

    def _command(self, command: object) -> None:
        if isinstance(command, OfferCall):
            t = time.perf_counter_ns()
            self.lat_ns.append(t - self.op_start)
            self.dec_ns.append(t - max(self.op_start, self.last_offer))
            self.last_offer = t
            self.offer_at.append(time.time())
            self.offers.append(command)

    def _remote(self, event: object, origin: str, now: float) -> None:
        self.op_start = time.perf_counter_ns()
        self.lag.append((now, now - getattr(event, "ts", now)))
        self.bus.deliver_remote(event, origin, now)

    def publish(self, event: object) -> None:
        self.op_start = time.perf_counter_ns()
        self.bus.publish(event, time.time())

    def tick(self) -> None:
        self.op_start = time.perf_counter_ns()
        self.bus.tick(time.time())

    def queue_caller(self) -> None:
        self.seq += 1
        u = f"{self.name}.{self.seq}"
        self.waiting.add(u)
        self.publish(CallQueued(server=self.server, ts=time.time(), call_id=u, uniqueid=u,
                                channel=f"PJSIP/trunk-{u}", queue="sales", skills="", priority=0, language="en",
                                caller_num="+15550000", caller_name="", dnis="100"))

    def settle(self) -> None:
        """Answer and end each offered call at once (the agent is ready again: zero wrap-up)."""
        while self.offers:
            o = self.offers.pop(0)
            self.waiting.discard(o.uniqueid)
            for event in answered_and_ended(o, time.time()):
                self.publish(event)

    async def run(self) -> dict[str, Any]:
        args = self.args
        if args.store == "redis":
            self.transport.start()
        now = time.time()
        for i in range(args.index, args.agents, args.nodes):  # this node's share of the agents logs in here
            agent = f"ag{i:04d}"
            self.bus.apply(self.acd.login(agent, None, now), now)
            self.bus.apply(self.acd.ready(agent, now), now)
        await asyncio.sleep(max(0.0, args.start - time.time()))
        self.lat_ns.clear()
        self.dec_ns.clear()
        self.offer_at.clear()
        self.lag.clear()
        trips0 = self.pool.round_trips
        end = args.start + args.seconds
        lo, hi = window(args.start, args.seconds)
        cpu: dict[str, float] = {}
        while time.time() < end:
            at = time.time()
            if "lo" not in cpu and at >= lo:
                cpu["lo"], cpu["lo_at"] = time.process_time(), at
            if at < hi:
                cpu["hi"], cpu["hi_at"] = time.process_time(), at
            before = len(self.offer_at)
            if args.pace:  # callers arrive at the pace asked: each finds an agent ready, one decision each
                for _ in range(int(args.pace * (at - args.start)) - self.seq):
                    self.queue_caller()
            else:
                while len(self.waiting) < args.waiting:
                    self.queue_caller()
            self.tick()
            self.settle()
            # the transport writes and reads; a node with nothing to do this turn waits a little (a server's
            # loop sleeps until its next event: a node that spun would take the other nodes' CPU)
            await asyncio.sleep(0 if len(self.offer_at) > before and not args.pace else 0.0005)
        trips = self.pool.round_trips - trips0
        stats = dict(getattr(self.transport, "stats", {}))
        if args.store == "redis":
            await self.transport.drain(3.0)
            await self.transport.close()
        return {"node": self.name, "lat_ns": self.lat_ns, "dec_ns": self.dec_ns, "offer_at": self.offer_at,
                "lag": self.lag, "cpu_s": (cpu["hi"] - cpu["lo"]) / (cpu["hi_at"] - cpu["lo_at"]),
                "round_trips": trips, "log": self.pool.log, "stats": stats, "shared_up": self.acd.shared_up}


def node_main(args: argparse.Namespace) -> int:
    result = asyncio.run(Node(args).run())
    Path(args.out).write_text(json.dumps(result))
    return 0


# ----------------------------------------------------------------------------------------------------- the runs
def replay(logs: list[list[tuple[int, str, str, str]]]) -> tuple[int, list[str]]:
    """All the nodes' claims and releases in Redis's order: (changes replayed, violations)."""
    entries = sorted((tuple(e) for log in logs for e in log), key=lambda e: e[0])
    holder: dict[str, str] = {}  # agent -> call
    holds: dict[str, str] = {}  # call -> agent
    bad: list[str] = []
    for version, kind, agent, call in entries:
        if kind == "expired":
            bad.append(f"a claim expired during the run: {agent} for {call}")
        elif kind == "claim":
            if agent in holder:
                bad.append(f"v{version}: {agent} claimed for {call} while held for {holder[agent]}")
            if call in holds:
                bad.append(f"v{version}: {call} claimed {agent} while holding {holds[call]}")
            holder[agent], holds[call] = call, agent
        else:
            if holder.get(agent) != call:
                bad.append(f"v{version}: {agent} released by {call}, held by {holder.get(agent)}")
            holder.pop(agent, None)
            holds.pop(call, None)
    versions = [e[0] for e in entries if e[1] != "expired"]
    if len(set(versions)) != len(versions):
        bad.append("two changes of the pool share one version")
    return len(entries), bad


def window(start: float, seconds: float) -> tuple[float, float]:
    """The steady part of a run: its first second and its last half second left out."""
    return start + 1.0, start + seconds - 0.5


def redis_cpu(client: Any) -> float:
    """The CPU seconds the Redis server has used (user and system)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run(nodes: int, store: str, args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bench-scaleout-{uuid.uuid4().hex[:8]}"
    start = time.time() + 2.0 + 0.5 * nodes
    with tempfile.TemporaryDirectory(prefix="scaleout-") as tmp:
        procs, outs = [], []
        for i in range(nodes):
            out = str(Path(tmp) / f"n{i}.json")
            outs.append(out)
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "--role", "node", "--index", str(i), "--nodes", str(nodes),
                 "--store", store, "--prefix", prefix, "--redis", args.redis, "--agents", str(args.agents),
                 "--waiting", str(args.waiting), "--seconds", str(args.seconds), "--start", repr(start),
                 "--pace", repr(args.pace),
                 "--out", out], cwd=ROOT))
        lo, hi = window(start, args.seconds)
        watch = redis_sync_client(RedisSettings(url=args.redis))
        time.sleep(max(0.0, lo - time.time()))
        cpu0, at0 = redis_cpu(watch), time.time()
        time.sleep(max(0.0, hi - time.time()))
        redis_share = (redis_cpu(watch) - cpu0) / (time.time() - at0)  # of a core, over the window
        for p in procs:
            if p.wait(timeout=args.seconds + 60) != 0:
                raise SystemExit(f"a node failed (exit {p.returncode})")
        results = [json.loads(Path(o).read_text()) for o in outs]
    if store == "redis":
        client = redis_sync_client(RedisSettings(url=args.redis))
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    lat = sorted(ns for r in results for ns, at in zip(r["lat_ns"], r["offer_at"], strict=True) if lo <= at < hi)
    dec = sorted(ns for r in results for ns, at in zip(r["dec_ns"], r["offer_at"], strict=True) if lo <= at < hi)
    decisions = sum(1 for r in results for at in r["offer_at"] if lo <= at < hi)
    every = sum(len(r["offer_at"]) for r in results)
    replayed, bad = replay([r["log"] for r in results])

    def pct(xs: list[int], p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))] / 1e6 if xs else float("nan")

    lag = sorted(d for r in results for at, d in r["lag"] if lo <= at < hi)
    sent = sum(r["stats"].get("sent", 0) for r in results)
    received = sum(r["stats"].get("received", 0) for r in results)
    return {"nodes": nodes, "store": store, "decisions_per_s": decisions / (hi - lo), "p50_ms": pct(dec, 0.50),
            "p99_ms": pct(dec, 0.99),
            "event_p99_ms": pct(lat, 0.99),
            "lag_p99_ms": lag[int(0.99 * len(lag))] * 1e3 if lag else float("nan"),
            "round_trips": sum(r["round_trips"] for r in results) / max(1, every),
            "events": (sent + received) / max(1, every),
            "entries": sum(r["stats"].get("entries", 0) for r in results) / max(1, every), "replayed": replayed,
            "violations": bad, "node_cpu": sum(r["cpu_s"] for r in results), "redis_cpu": redis_share,
            "pool_up": all(r["shared_up"] for r in results)}


def cpu_ms(r: dict[str, Any]) -> float:
    """CPU milliseconds a decision took, the nodes' and Redis's."""
    return (r["node_cpu"] + r["redis_cpu"]) / r["decisions_per_s"] * 1000 if r["decisions_per_s"] else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds each configuration runs (default 8)")
    ap.add_argument("--agents", type=int, default=120, help="agents in the pool, shared out among the nodes")
    ap.add_argument("--waiting", type=int, default=20, help="callers each node keeps queued")
    ap.add_argument("--pace", type=float, default=0.0,
                    help="callers a second arriving at each node, each a decision (default 0: as many as the nodes "
                         "can decide, callers always waiting); the latencies and the replicas' lag at a load below "
                         "saturation")
    ap.add_argument("--redis", default=os.environ.get("CTI_BENCH_REDIS", DEFAULT_REDIS))
    ap.add_argument("--role", default="main", choices=["main", "node"], help=argparse.SUPPRESS)
    for hidden in ("--index", "--nodes"):
        ap.add_argument(hidden, type=int, default=0, help=argparse.SUPPRESS)
    for hidden in ("--store", "--prefix", "--out"):
        ap.add_argument(hidden, default="", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "node":
        return node_main(args)
    load = f"{args.pace:g} callers/s arriving at each node" if args.pace else f"{args.waiting} callers queued per node"
    print(f"scaleout: {args.agents} agents, {load}, {args.seconds:g} s per run, "
          f"Redis {args.redis.split('@')[-1]}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    runs = [run(1, "memory", args)] + [run(n, "redis", args) for n in (1, 2, 3)]
    one = runs[1]["decisions_per_s"]
    print(f"{'nodes':>5} {'pool':>6} {'decisions/s':>12} {'x 1 node':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'event p99':>9} {'pool RTT/dec':>12} {'events/dec':>10} {'entries/dec':>11} {'lag p99':>8} "
          f"{'cores used':>11} {'CPU ms/dec':>10} {'changes':>8} {'violations':>10}")
    print("-" * 152)
    for r in runs:
        ratio = r["decisions_per_s"] / one if r["store"] == "redis" else float("nan")
        print(f"{r['nodes']:>5} {r['store']:>6} {r['decisions_per_s']:>12.0f} {ratio:>9.2f} {r['p50_ms']:>8.3f} "
              f"{r['p99_ms']:>8.3f} {r['event_p99_ms']:>9.3f} {r['round_trips']:>12.2f} {r['events']:>10.2f} "
              f"{r['entries']:>11.2f} {r['lag_p99_ms']:>8.1f} {r['node_cpu']:>5.2f}+{r['redis_cpu']:<5.2f} "
              f"{cpu_ms(r):>10.3f} "
              f"{r['replayed']:>8} {len(r['violations']):>10}")
        for v in r["violations"][:5]:
            print("   VIOLATION", v)
    three = runs[3]
    memory = runs[0]["decisions_per_s"]
    cores = os.cpu_count() or 1
    alone = runs[1]["node_cpu"] + runs[1]["redis_cpu"]
    print(f"CPU: one node on Redis keeps {alone:.2f} of the {cores} cores busy (node {runs[1]['node_cpu']:.2f} + "
          f"Redis {runs[1]['redis_cpu']:.2f}), so no number of nodes can make more than {cores / alone:.2f}x its "
          f"decisions/s on this machine; at the three nodes' {cpu_ms(three):.3f} CPU ms a decision, "
          f"{cores} cores make at most {cores / cpu_ms(three) * 1000:.0f}/s")
    print(f"3 nodes on Redis: {three['decisions_per_s'] / one:.2f}x one node on Redis, "
          f"{three['decisions_per_s'] / memory:.2f}x one node alone (embedded pool)")
    ok = all(not r["violations"] and r["pool_up"] for r in runs)
    print("invariant: " + ("never an agent with two calls nor a call with two agents (every claim and release "
                           "replayed in Redis's order)" if ok else "VIOLATED (see above)"))
    if args.pace:  # (the BENCH line is the saturated run's)
        print(f"paced at {args.pace:g} callers/s a node: 3 nodes decided {three['decisions_per_s']:.0f}/s, p99 "
              f"{three['p99_ms']:.3f} ms, replicas' lag p99 {three['lag_p99_ms']:.1f} ms")
    else:
        print(f"BENCH scaleout nodes=3 decisions_per_s={three['decisions_per_s']:.0f} p99_ms={three['p99_ms']:.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
