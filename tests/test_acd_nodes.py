"""Several ACD nodes, one agent pool: two and three AcdServices in one process share one store (MemoryState, and
RedisState on the real Redis through a TCP proxy the test can cut), in virtual time, their agents' state changes
relayed to each other (with lag). Random concurrent load never gives an agent two calls nor a call two agents and
every call ends; a dead node's agents come back after the claim TTL; an unreachable pool stops offers and they
resume when it is back."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from acd.events import AcdWarning, AgentStateChanged, QueueCallFinished, SharedStateHealth
from acd.remote_waiting import DEFER
from acd.service import AcdService, Output
from acd.shared_state import MemoryState, SharedState, SharedStateDown
from acd.states import AcdError
from centre.redis_link import redis_sync_client
from centre.redis_state import RedisState
from config.schema import RedisSettings
from cti.commands import OfferCall
from tests.conftest import REDIS_URL
from tests.tcp_proxy import TcpProxy
from tests.test_acd_support import Harness, agent, of_type

T0 = 1000.0
TTL = 10.0


class FlakyMemory(MemoryState):
    """The embedded pool with a switch that makes every request fail as an unreachable Redis would."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if callable(value) and not name.startswith("_") and super().__getattribute__("broken"):
            def down(*args: Any, **kw: Any) -> Any:
                raise SharedStateDown("shared state unreachable (test)")
            return down
        return value


@dataclass
class Pool:
    """The store every node shares, and how to cut it off and bring it back."""

    state: SharedState
    cut: Any
    restore: Any
    wipe: Any = None  # the store loses everything (a Redis restarted without persistence)
    round_trips: Any = None


@pytest.fixture(params=["memory", "redis"])
def pool(request: pytest.FixtureRequest) -> Iterator[Pool]:
    if request.param == "memory":
        mem = FlakyMemory()
        yield Pool(mem, lambda: setattr(mem, "broken", True), lambda: setattr(mem, "broken", False),
                   lambda: MemoryState.__init__(mem))
        return
    host, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].split(":")
    db = REDIS_URL.rsplit("/", 1)[1]
    proxy = TcpProxy(host, int(port))
    prefix = f"test-nodes-{uuid.uuid4().hex[:12]}"
    client = redis_sync_client(RedisSettings(url=f"redis://127.0.0.1:{proxy.port}/{db}", prefix=prefix), timeout=2.0)
    state = RedisState(client, prefix)
    try:
        yield Pool(state, proxy.cut, proxy.restore, lambda: client.delete(*state.keys()), lambda: state.round_trips)
    finally:
        proxy.restore()
        keys = state.keys()
        if keys:
            client.delete(*keys)
        client.close()
        proxy.close()


def config(n_agents: int, wrapup: float = 5) -> dict[str, Any]:
    return {"agents": [agent(f"a{i}", {"billing": 5}) for i in range(1, n_agents + 1)],
            "queues": [{"name": "billing", "skills": {"billing": 3}, "wrapup": wrapup, "ring_timeout": 15}]}


class Node(Harness):
    """One `cti serve` node: an AcdService on its own PBX (``server``), attached to the shared pool."""

    def __init__(self, name: str, cfg: dict[str, Any], shared: SharedState, now: float) -> None:
        super().__init__(cfg, now)
        self.name = name
        self.server = f"pbx-{name}"
        self.acd = AcdService(self.section, now, node=name, shared=shared, claim_ttl=TTL)

    def remote(self, ev: object, origin: str) -> list[Output]:
        out = self.acd.handle_remote(ev, origin, self.now)
        self.log.extend(out)
        return out

    # the Harness's PBX events, on this node's PBX
    def queued(self, uid: str, queue: str, skills: str = "", priority: int = 0, server: str = "",
               data: dict[str, str] | None = None) -> list[Output]:
        return super().queued(uid, queue, skills, priority, self.server, data)

    def dial(self, uid: str, agent_id: str, server: str = "") -> list[Output]:
        return super().dial(uid, agent_id, self.server)

    def dial_end(self, uid: str, agent_id: str, status: str, server: str = "") -> list[Output]:
        return super().dial_end(uid, agent_id, status, self.server)

    def hangup(self, uid: str, server: str = "") -> list[Output]:
        return super().hangup(uid, self.server)


@dataclass
class Cluster:
    """Nodes in one virtual time; each node's events the ACD takes from other nodes (its agents' states, its waiting
    calls) reach the others ``lag`` seconds later."""

    nodes: dict[str, Node]
    lag: float = 0.0
    now: float = T0
    dead: set[str] = field(default_factory=set)
    mail: list[tuple[float, int, str, str, object]] = field(default_factory=list)
    seq: int = 0
    engaged: dict[str, tuple[str, str]] = field(default_factory=dict)  # agent -> (node, uid) its phone is busy with
    ringing: dict[str, tuple[str, str]] = field(default_factory=dict)  # uid -> (node, agent) offered now
    offers: list[tuple[str, str, str]] = field(default_factory=list)  # (node, uid, agent)
    violations: list[str] = field(default_factory=list)

    def take(self, name: str, out: list[Output]) -> list[Output]:
        """A node's outputs: check each offer against those outstanding, post its agents' changes to the others."""
        for item in out:
            if isinstance(item, OfferCall):
                if item.agent_id in self.engaged:
                    self.violations.append(f"{name} offers {item.uniqueid} to {item.agent_id}, busy with "
                                           f"{self.engaged[item.agent_id]}")
                if item.uniqueid in self.ringing:
                    self.violations.append(f"{name} offers {item.uniqueid} to {item.agent_id} while it rings "
                                           f"{self.ringing[item.uniqueid]}")
                self.engaged[item.agent_id] = (name, item.uniqueid)
                self.ringing[item.uniqueid] = (name, item.agent_id)
                self.offers.append((name, item.uniqueid, item.agent_id))
            elif isinstance(item, AcdService.remote_subscriptions):  # what the bus carries to the other nodes
                for other in self.nodes:
                    if other != name:
                        self.seq += 1
                        self.mail.append((self.now + self.lag, self.seq, name, other, item))
        return out

    def event(self, name: str, fn: str, *args: Any) -> list[Output]:
        node = self.nodes[name]
        node.now = self.now
        return self.take(name, getattr(node, fn)(*args))

    def request(self, name: str, method: str, *args: Any) -> list[Output]:
        node = self.nodes[name]
        node.now = self.now
        return self.take(name, node.request(method, *args))

    def step(self, dt: float) -> None:
        """Advance time by ``dt``: deliver the mail that is due, tick every live node."""
        self.now += dt
        self.mail.sort()
        while self.mail and self.mail[0][0] <= self.now:
            _, _, origin, target, ev = self.mail.pop(0)
            if target not in self.dead:
                node = self.nodes[target]
                node.now = self.now
                self.take(target, node.remote(ev, origin))
        for name, node in self.nodes.items():
            if name not in self.dead:
                node.now = self.now
                self.take(name, node.advance(0))

    def free(self, agent_id: str) -> None:
        self.engaged.pop(agent_id, None)

    def hang_up(self, name: str, uid: str, agent_id: str, then: float = 0.4) -> None:
        """The agent's call ``uid`` on node ``name`` ends (its phone free again); ``then`` seconds go by."""
        self.free(agent_id)
        self.event(name, "hangup", uid, f"pbx-{name}")
        for _ in range(round(then / 0.1)):
            self.step(0.1)


def cluster(pool: Pool, names: tuple[str, ...], cfg: dict[str, Any], lag: float = 0.0) -> Cluster:
    return Cluster({n: Node(n, cfg, pool.state, T0) for n in names}, lag=lag)


def login_ready(c: Cluster, name: str, *agents: str) -> None:
    for aid in agents:
        c.request(name, "login", aid, None)
        c.request(name, "ready", aid)


# ------------------------------------------------------------------------------------------- two nodes, one agent

def test_one_agent_two_nodes_one_call_at_a_time_and_the_other_waits(pool: Pool) -> None:
    """Both nodes see a1 ready and each has a caller: one claims a1, the other's call stays queued (its replica
    learns a1 is taken), and gets a1 when the first call's work is done."""
    c = cluster(pool, ("A", "B"), config(1), lag=2.0)
    login_ready(c, "A", "a1")
    c.step(2.5)  # B learns a1 is ready
    assert c.nodes["B"].state("a1") == "ready"
    out_a = c.event("A", "queued", "u1", "billing", "", 0, "pbx-A")
    out_b = c.event("B", "queued", "u2", "billing", "", 0, "pbx-B")
    assert [o.agent_id for o in of_type(out_a, OfferCall)] == ["a1"] and of_type(out_b, OfferCall) == []
    assert c.nodes["B"].state("a1") == "reserved"  # the refused claim told B's replica
    c.event("A", "answer", "u1", "a1")
    c.step(3)
    assert c.nodes["B"].state("a1") == "on_call"
    c.free("a1")
    c.event("A", "hangup", "u1", "pbx-A")
    assert c.nodes["A"].state("a1") == "wrap_up"
    for _ in range(10):
        c.step(1)
    assert ("B", "u2", "a1") in c.offers and not c.violations
    (row,) = of_type(c.nodes["A"].log, QueueCallFinished)
    assert row.outcome == "answered" and of_type(c.nodes["B"].log, QueueCallFinished) == []  # A's record only


def test_remote_changes_only_touch_the_replica(pool: Pool) -> None:
    """handle_remote writes no record and arms no timer, moves the router's index, and a stale event (older
    than what the node knows) is ignored."""
    c = cluster(pool, ("A", "B"), config(2))
    login_ready(c, "A", "a1")
    c.step(0.5)
    b = c.nodes["B"]
    assert b.state("a1") == "ready" and b.acd.agent_snapshot("a1").available
    stale = AgentStateChanged(ts=T0 - 100, agent_id="a1", state="not_ready", previous="ready", reason="x", since=0)
    assert b.remote(stale, "A") == [] and b.state("a1") == "ready"
    c.request("A", "not_ready", "a1", "break")
    c.step(0.5)
    assert b.state("a1") == "not_ready" and not b.acd.agent_snapshot("a1").available
    assert of_type(b.log, QueueCallFinished) == [] and of_type(b.log, AgentStateChanged) == []
    assert b.acd.next_deadline() == b.acd.pool.deadline() or b.acd.next_deadline() is not None


def test_wrap_up_ended_on_another_node_closes_the_record_and_cancels_the_timer(pool: Pool) -> None:
    """a1's console is on B; A's call ends and a1 wraps up (A's timer, 60 s). a1 ends the wrap-up on B: A writes
    its record of the call at once, its wrap-up timer is dead, and A's next caller gets a1."""
    c = cluster(pool, ("A", "B"), config(1, wrapup=60))
    login_ready(c, "B", "a1")
    c.step(0.5)
    c.event("A", "queued", "u1", "billing")
    c.event("A", "answer", "u1", "a1")
    c.step(10)
    c.free("a1")
    c.event("A", "hangup", "u1")
    c.step(0.5)
    assert c.nodes["B"].state("a1") == "wrap_up" and of_type(c.nodes["A"].log, QueueCallFinished) == []
    c.request("B", "end_wrapup", "a1")
    c.event("A", "queued", "u2", "billing")
    c.step(0.5)
    (row,) = of_type(c.nodes["A"].log, QueueCallFinished)
    assert (row.uniqueid, row.outcome, row.wrapup) == ("u1", "answered", 1.0)
    assert c.offers[-1] == ("A", "u2", "a1")
    for _ in range(130):  # past the 60 s the wrap-up timer would have fired
        c.step(0.5)
    a_changes = [e for e in of_type(c.nodes["A"].log, AgentStateChanged) if e.previous == "wrap_up"]
    assert a_changes == [] and not c.violations


def test_an_agent_freed_on_one_node_goes_to_the_caller_who_came_first_on_another(pool: Pool) -> None:
    """First come first served across nodes: a1 talks on A; v1 arrives on B, then u2 on A. When a1 is free, A
    leaves a1 to B (v1 came first) instead of offering u2; B claims a1 for v1. u2 gets a1 after v1."""
    c = cluster(pool, ("A", "B"), config(1, wrapup=0), lag=0.1)
    login_ready(c, "A", "a1")
    c.event("A", "queued", "u1", "billing", "", 0, "pbx-A")
    c.event("A", "answer", "u1", "a1")
    c.step(5)
    c.event("B", "queued", "v1", "billing", "", 0, "pbx-B")
    c.step(5)
    c.event("A", "queued", "u2", "billing", "", 0, "pbx-A")
    c.step(5)
    c.hang_up("A", "u1", "a1")
    assert c.offers[1:] == [("B", "v1", "a1")] and not c.violations
    c.event("B", "answer", "v1", "a1")
    c.step(5)
    c.hang_up("B", "v1", "a1")
    assert c.offers[2:] == [("A", "u2", "a1")] and not c.violations


def test_another_nodes_caller_is_waited_for_only_once_its_expansion_makes_the_agent_eligible(pool: Pool) -> None:
    """v1 on B asks billing:8 (a1 has 5) until its queue lowers levels by 5 after 10 s. Freed before that, a1 takes
    A's u2 at once; freed after it, a1 is left to B for v1 (the step followed on A's own timers)."""
    cfg = config(1, wrapup=0)
    cfg["queues"][0]["expansion"] = [{"after": 10, "lower_min_level_by": 5}]
    c = cluster(pool, ("A", "B"), cfg, lag=0.1)
    login_ready(c, "A", "a1")
    c.event("A", "queued", "u1", "billing", "", 0, "pbx-A")
    c.event("A", "answer", "u1", "a1")
    c.event("B", "queued", "v1", "billing", "billing:8", 0, "pbx-B")
    c.step(1)
    c.event("A", "queued", "u2", "billing", "", 0, "pbx-A")
    c.event("A", "queued", "u3", "billing", "", 0, "pbx-A")
    c.step(1)
    c.hang_up("A", "u1", "a1", then=0.1)
    assert c.offers[1:] == [("A", "u2", "a1")]  # v1 is not a1's yet: no waiting for B
    c.event("A", "answer", "u2", "a1")
    c.step(10)
    c.hang_up("A", "u2", "a1")
    assert c.offers[2:] == [("B", "v1", "a1")] and not c.violations


def test_an_agent_left_to_a_node_that_does_not_take_it_is_routed_here_after_a_moment(pool: Pool) -> None:
    """B's caller came first but B is dead (its caller's end never told): A waits ``DEFER`` for B, then offers a1
    its own caller, and does not wait for that dead node's caller again."""
    c = cluster(pool, ("A", "B"), config(1, wrapup=0), lag=0.1)
    login_ready(c, "A", "a1")
    c.event("A", "queued", "u1", "billing", "", 0, "pbx-A")
    c.event("A", "answer", "u1", "a1")
    c.event("B", "queued", "v1", "billing", "", 0, "pbx-B")
    c.step(1)
    c.event("A", "queued", "u2", "billing", "", 0, "pbx-A")
    c.event("A", "queued", "u3", "billing", "", 0, "pbx-A")
    c.step(1)
    c.dead.add("B")
    c.free("a1")
    c.event("A", "hangup", "u1", "pbx-A")
    freed = c.now
    while len(c.offers) < 2 and c.now < freed + 5:
        c.step(0.1)
    assert c.offers[1] == ("A", "u2", "a1") and DEFER <= c.now - freed <= DEFER + 0.25
    c.event("A", "answer", "u2", "a1")
    c.step(1)
    c.hang_up("A", "u2", "a1", then=0.1)
    assert c.offers[2] == ("A", "u3", "a1")  # at once: B's caller passed over


def test_a_call_goes_to_the_next_best_agent_when_the_claim_is_refused(pool: Pool) -> None:
    """B's replica lags (a1 looks ready, but A has it): B's decision tries a1, is refused, offers a2."""
    c = cluster(pool, ("A", "B"), config(2), lag=100.0)
    login_ready(c, "A", "a1")
    c.now += 1
    login_ready(c, "A", "a2")
    for aid in ("a1", "a2"):  # B heard both ready (a1 idle longest) before A gave a1 a call
        ev = AgentStateChanged(ts=c.now, agent_id=aid, state="ready", previous="not_ready", reason="", since=T0)
        c.take("B", c.nodes["B"].remote(ev, "A"))
    c.event("A", "queued", "u1", "billing", "", 0, "pbx-A")
    assert c.offers == [("A", "u1", "a1")]
    out = c.event("B", "queued", "u2", "billing", "", 0, "pbx-B")
    assert [(o.uniqueid, o.agent_id) for o in of_type(out, OfferCall)] == [("u2", "a2")]
    assert c.nodes["B"].state("a1") == "reserved" and not c.violations


def test_preview_reservations_claim_too(pool: Pool) -> None:
    c = cluster(pool, ("A", "B"), config(1))
    login_ready(c, "A", "a1")
    c.step(0.5)
    c.request("B", "reserve_preview", "a1", "att-1")
    assert pool.state.holder("a1", c.now) is not None
    c.step(0.5)
    with pytest.raises(AcdError):
        c.request("A", "reserve_preview", "a1", "att-2")
    c.request("B", "end_preview", "a1", "att-1")
    assert pool.state.holder("a1", c.now) is None and pool.state.agent("a1").state == "ready"


class WritesSeen(MemoryState):
    """The embedded pool, keeping every state it was told of an agent (set_agent, claim, release) in order."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def set_agent(self, agent: str, state: str, since: float, node: str) -> None:
        self.seen.append((agent, state))
        super().set_agent(agent, state, since, node)

    def claim(self, agent: str, call: str, node: str, now: float, until: float, writes: Any = ()) -> Any:
        claim = super().claim(agent, call, node, now, until, writes)
        if claim is not None:
            self.seen.append((agent, "reserved"))
        return claim

    def _release(self, agent: str, call: str, state: str, since: float) -> bool:
        done = super()._release(agent, call, state, since)
        if done:
            self.seen.append((agent, state))
        return done


@pytest.mark.parametrize("end", ["NOANSWER", "CANCEL", "answered", "caller-gone"])
def test_one_node_writes_each_change_of_its_agents_once_in_order(end: str) -> None:
    """The embedded centre (one node, the default MemoryState) tells the pool each state its agents go through,
    once and in order, the claim included (an on-call write, which keeps the claim, may be replaced by the next
    write before it is sent); a not-ready asked for while ringing is never written as ready."""
    seen = WritesSeen()
    h = Node("A", config(1), seen, T0)
    h.ready("a1")
    h.queued("u1", "billing")
    h.request("not_ready", "a1", "break")  # pending until the offer is over
    if end == "answered":
        h.answer("u1", "a1")
        h.hangup("u1")
        h.advance(5)
    elif end == "caller-gone":
        h.hangup("u1")
    else:
        h.dial_end("u1", "a1", end)
    states = [e.state for e in of_type(h.log, AgentStateChanged)]
    if end in ("CANCEL", "caller-gone"):  # freed from the offer straight into the pending not-ready: in the pool,
        assert states[-3:] == ["reserved", "ready", "not_ready"]  # never ready for an instant
        del states[-2]
    told = [s for a, s in seen.seen]
    assert [s for s in told if s != "on_call"] == [s for s in states if s != "on_call"]
    assert seen.agent("a1").state == states[-1] == "not_ready"
    assert seen.holder("a1", h.now) is None


# ----------------------------------------------------------------------------------------------- random load

@dataclass
class Caller:
    node: str
    uid: str
    patience: float
    state: str = "waiting"  # waiting | ringing | talking | done
    agent: str = ""
    until: float = 0.0  # when the ringing or talking ends


def drive(c: Cluster, rng: random.Random, calls: int, agents: list[str], seconds: float) -> dict[str, Caller]:
    """Random concurrent load: callers at every node, agents answering or not, talking, going not ready and ready
    again; then the load stops and every call must end."""
    names = [n for n in c.nodes if n not in c.dead]
    callers: dict[str, Caller] = {}
    home = {aid: names[i % len(names)] for i, aid in enumerate(agents)}
    for aid in agents:
        login_ready(c, home[aid], aid)
    arrivals = sorted(rng.uniform(0, seconds) for _ in range(calls))
    t_end = c.now + seconds + 900
    start = c.now
    n = 0
    while c.now < t_end:
        while n < len(arrivals) and start + arrivals[n] <= c.now:
            node = rng.choice(names)
            uid = f"{node}-{n}"
            callers[uid] = Caller(node, uid, c.now + rng.uniform(30, 240))
            c.event(node, "queued", uid, "billing", "", rng.choice([0, 0, 1]), f"pbx-{node}")
            n += 1
        for uid, who in list(c.ringing.items()):  # offers the PBX has not answered for yet
            caller = callers[uid]
            if caller.state == "waiting":
                caller.state, caller.agent = "ringing", who[1]
                caller.until = c.now + rng.uniform(1, 10)
        for caller in callers.values():
            node = caller.node
            if caller.state == "ringing" and c.now >= caller.until:
                del c.ringing[caller.uid]
                aid = caller.agent
                if rng.random() < 0.8:
                    caller.state, caller.until = "talking", c.now + rng.uniform(5, 60)
                    c.event(node, "answer", caller.uid, aid)
                else:
                    caller.state = "waiting"
                    c.free(aid)
                    c.event(node, "dial_end", caller.uid, aid, "NOANSWER", f"pbx-{node}")
            elif caller.state == "talking" and c.now >= caller.until:
                caller.state = "done"
                c.free(caller.agent)
                c.event(node, "hangup", caller.uid, f"pbx-{node}")
            elif caller.state in ("waiting", "ringing") and c.now >= caller.patience:
                if caller.state == "ringing":
                    del c.ringing[caller.uid]
                    c.free(caller.agent)
                caller.state = "done"
                c.event(node, "hangup", caller.uid, f"pbx-{node}")
        if c.now < start + seconds:
            for aid in agents:  # agents take breaks and come back
                state = c.nodes[home[aid]].state(aid)
                try:
                    if state == "ready" and rng.random() < 0.004:
                        c.request(home[aid], "not_ready", aid, "break")
                    elif state == "not_ready" and rng.random() < 0.1:
                        c.request(home[aid], "ready", aid)
                except AcdError:
                    pass  # the home node's replica said otherwise: the console's request is refused
        else:
            for aid in agents:
                if c.nodes[home[aid]].state(aid) == "not_ready":
                    try:
                        c.request(home[aid], "ready", aid)
                    except AcdError:
                        pass
        if n == len(arrivals) and all(x.state == "done" for x in callers.values()):
            break
        c.step(0.5)
    for _ in range(30):  # the last wrap-ups end (an answered call's record is written then)
        c.step(0.5)
    return callers


@pytest.mark.parametrize("names,lag,seed", [(("A", "B"), 0.0, 1), (("A", "B", "C"), 1.5, 2)])
def test_random_concurrent_load_never_double_books_and_every_call_ends(
        pool: Pool, names: tuple[str, ...], lag: float, seed: int) -> None:
    c = cluster(pool, names, config(6), lag=lag)
    agents = [f"a{i}" for i in range(1, 7)]
    callers = drive(c, random.Random(seed), 90, agents, 300)
    assert not c.violations, c.violations[:5]
    assert all(x.state == "done" for x in callers.values())
    rows = {r.uniqueid: r for name in names for r in of_type(c.nodes[name].log, QueueCallFinished)}
    assert set(rows) == set(callers)
    outcomes = [r.outcome for r in rows.values()]
    assert outcomes.count("answered") > len(callers) // 2 and set(outcomes) <= {"answered", "abandoned"}
    assert len({node for node, _, _ in c.offers}) == len(names)  # every node offered calls
    by_agent_nodes = {(aid, node) for node, _, aid in c.offers}
    assert len(by_agent_nodes) > len(agents)  # agents took calls from more than one node: one pool
    for aid in agents:  # in the end the pool and every replica agree, and no claim is left
        assert pool.state.holder(aid, c.now) is None
        assert {c.nodes[name].state(aid) for name in names} == {pool.state.agent(aid).state}


# ------------------------------------------------------------------------------------------------- a dead node

def test_a_dead_nodes_agents_come_back_after_the_claim_ttl(pool: Pool) -> None:
    """A offers a call to a1 (ringing) and one to a2 (answered), then dies; B's callers wait. After the claim
    TTL B expires A's claims and, once the grace for a takeover of A's PBX is over (nobody took their calls up),
    makes a1 and a2 ready (and says so) and offers them its callers."""
    c = cluster(pool, ("A", "B"), config(2), lag=0.5)
    login_ready(c, "A", "a1")
    c.now += 1
    login_ready(c, "A", "a2")
    c.event("A", "queued", "u1", "billing", "", 0, "pbx-A")
    c.event("A", "queued", "u2", "billing", "", 0, "pbx-A")
    c.event("A", "answer", "u2", "a2")
    c.step(1)
    assert {c.nodes["B"].state("a1"), c.nodes["B"].state("a2")} == {"reserved", "on_call"}
    c.dead.add("A")
    c.event("B", "queued", "v1", "billing", "", 0, "pbx-B")
    c.event("B", "queued", "v2", "billing", "", 0, "pbx-B")
    c.engaged.clear()  # A's PBX went with it: the phones are free
    c.ringing.clear()
    t_dead = c.now
    while len([o for o in c.offers if o[0] == "B"]) < 2 and c.now < t_dead + 4 * TTL:
        c.step(0.5)
    b_offers = sorted((uid, aid) for node, uid, aid in c.offers if node == "B")
    assert [uid for uid, _ in b_offers] == ["v1", "v2"] and {aid for _, aid in b_offers} == {"a1", "a2"}
    assert TTL <= c.now - t_dead <= 3.5 * TTL  # the claim (a first one: 1.5 ttl), then the grace (acd.pool_link)
    told = [e for e in of_type(c.nodes["B"].log, AgentStateChanged) if e.state == "ready" and e.ts > t_dead]
    assert {e.agent_id for e in told} == {"a1", "a2"} and not c.violations


def test_a_dead_nodes_agent_left_in_wrap_up_is_made_ready_by_one_other_node(pool: Pool) -> None:
    """a1's call on A ends (30 s of wrap-up, A's timer) and A dies. Once the wrap-up and a claim ttl more are past
    and A no longer says it runs, one of B and C (never both) makes a1 ready, says so, and B's caller gets a1."""
    c = cluster(pool, ("A", "B", "C"), config(1, wrapup=30), lag=0.5)
    login_ready(c, "A", "a1")
    c.step(1)
    c.event("A", "queued", "u1", "billing", "", 0, "pbx-A")
    c.event("A", "answer", "u1", "a1")
    c.step(5)
    c.free("a1")
    c.event("A", "hangup", "u1", "pbx-A")
    t_end = c.now
    c.step(1)
    assert c.nodes["B"].state("a1") == c.nodes["C"].state("a1") == "wrap_up"
    c.dead.add("A")
    c.event("B", "queued", "v1", "billing", "", 0, "pbx-B")
    while not [o for o in c.offers if o[0] == "B"] and c.now < t_end + 30 + 5 * TTL:
        c.step(0.5)
    assert c.offers[-1] == ("B", "v1", "a1") and not c.violations
    assert t_end + 30 + TTL <= c.now <= t_end + 30 + 3 * TTL
    told = [(name, e) for name in ("B", "C") for e in of_type(c.nodes[name].log, AgentStateChanged)
            if e.agent_id == "a1" and e.previous == "wrap_up"]
    assert len(told) == 1 and told[0][1].state == "ready", told
    for _ in range(int(2 * TTL / 0.5)):
        c.step(0.5)
    assert c.nodes["C"].state("a1") in ("reserved", "on_call")  # C heard of it: no second end of that wrap-up


def test_a_live_nodes_wrap_up_is_left_to_it_however_long(pool: Pool) -> None:
    """B thinks a wrap-up lasts 5 s, A (whose call it was) gives 100: B looks, finds A running, and leaves it."""
    a = Node("A", config(1, wrapup=100), pool.state, T0)
    b = Node("B", config(1, wrapup=5), pool.state, T0)
    c = Cluster({"A": a, "B": b}, lag=0.5)
    login_ready(c, "A", "a1")
    c.event("A", "queued", "u1", "billing", "", 0, "pbx-A")
    c.event("A", "answer", "u1", "a1")
    c.step(1)
    c.free("a1")
    c.event("A", "hangup", "u1", "pbx-A")
    t_end = c.now
    c.event("B", "queued", "v1", "billing", "", 0, "pbx-B")
    while c.now < t_end + 99:
        c.step(0.5)
        assert b.state("a1") == "wrap_up", c.now - t_end
    while not c.offers[1:] and c.now < t_end + 110:
        c.step(0.5)
    assert c.offers[-1] == ("B", "v1", "a1") and not c.violations
    assert [e for e in of_type(b.log, AgentStateChanged) if e.previous == "wrap_up"] == []  # A ended it


def test_claims_are_renewed_while_a_call_lasts(pool: Pool) -> None:
    """A live node's long call keeps its claim: B never gets the agent during the call."""
    c = cluster(pool, ("A", "B"), config(1))
    login_ready(c, "A", "a1")
    c.event("A", "queued", "u1", "billing", "", 0, "pbx-A")
    c.event("A", "answer", "u1", "a1")
    c.event("B", "queued", "v1", "billing", "", 0, "pbx-B")
    for _ in range(int(5 * TTL / 0.5)):
        c.step(0.5)
    assert [o for o in c.offers if o[0] == "B"] == [] and pool.state.holder("a1", c.now) is not None


# --------------------------------------------------------------------------------------- the pool unreachable

@pytest.mark.parametrize("wiped", [False, True])
def test_pool_unreachable_no_offers_one_health_event_and_recovery(pool: Pool, wiped: bool) -> None:
    """Cut off: no offers (the calls keep their order), one SharedStateHealth(up=False), a probe at 1, 2, 4, 8,
    10 s; back: the writes kept meanwhile are made, the agents the store lost are written anew, calls offered."""
    c = cluster(pool, ("A",), config(2))
    a = c.nodes["A"]
    login_ready(c, "A", "a1")
    pool.cut()
    t_cut = c.now
    c.request("A", "login", "a2", None)
    c.request("A", "ready", "a2")  # a local change while down: kept, written on recovery
    assert not a.acd.shared_up
    c.event("A", "queued", "u1", "billing", "", 0, "pbx-A")
    c.event("A", "queued", "u2", "billing", "", 0, "pbx-A")
    for _ in range(8):
        c.step(0.5)
    assert c.offers == [] and [w.position for w in a.acd.waiting_calls("billing", c.now)] == [1, 2]
    downs = [e for e in of_type(a.log, SharedStateHealth)]
    assert [e.up for e in downs] == [False]
    # the probe backs off: at 1 s after the cut, then 2, 4, 8, 10, 10 s later (the first two were in the steps)
    probes = []
    for _ in range(5):
        d = a.acd.next_deadline()
        assert d is not None
        probes.append(d - t_cut)
        c.step(d - c.now)
    assert probes == [7, 15, 25, 35, 45] and not a.acd.shared_up
    pool.restore()
    if wiped:
        pool.wipe()
    c.step(a.acd.next_deadline() - c.now)
    assert a.acd.shared_up and [e.up for e in of_type(a.log, SharedStateHealth)] == [False, True]
    assert sorted(c.offers) == [("A", "u1", "a1"), ("A", "u2", "a2")] or \
        sorted(c.offers) == [("A", "u1", "a2"), ("A", "u2", "a1")]
    assert c.offers[0][1] == "u1"  # in order
    assert pool.state.agent("a2") is not None and pool.state.agent("a2").state == "reserved"


def test_a_node_that_stalled_past_its_lease_says_its_claim_lapsed(pool: Pool) -> None:
    """A node that did not tick for longer than the claim TTL lost its claim (another node may have the agent
    now): it forgets the claim and warns, rather than renewing what is no longer its."""
    c = cluster(pool, ("A", "B"), config(1))
    login_ready(c, "B", "a1")
    c.step(0.5)
    c.event("A", "queued", "u1", "billing")
    assert c.offers == [("A", "u1", "a1")]
    c.event("A", "answer", "u1", "a1")
    a = c.nodes["A"]
    a.now = c.now + 3 * TTL  # stalled: no tick for three leases
    out = a.advance(0)
    (warning,) = [w for w in of_type(out, AcdWarning) if w.code == "claim-lapsed"]
    assert warning.details["agent_id"] == "a1" and a.acd.pool.held == {}
    assert pool.state.holder("a1", a.now) is None


def test_a_node_restarted_under_its_name_does_not_keep_its_previous_runs_claims(pool: Pool) -> None:
    """A holds a1 for a call and restarts (same node name, nothing remembered) and claims a2 at once: its renewals
    keep a2's claim but not the previous run's on a1, which lapses; B frees a1 and gives it its caller."""
    c = cluster(pool, ("A", "B"), config(2))
    login_ready(c, "B", "a1", "a2")
    c.step(0.5)
    c.event("A", "queued", "u1", "billing")
    c.event("A", "answer", "u1", "a1")
    c.step(3)  # A's old run renews once more, then is gone
    c.nodes["A"] = Node("A", config(2), pool.state, c.now)
    c.engaged.pop("a1")
    c.ringing.clear()
    c.event("A", "queued", "u2", "billing")
    assert c.offers[-1] == ("A", "u2", "a2")
    c.event("A", "answer", "u2", "a2")
    c.event("B", "queued", "v1", "billing")
    t_restart = c.now
    while not any(node == "B" for node, _, _ in c.offers) and c.now < t_restart + 5 * TTL:
        c.step(0.5)
    assert c.offers[-1] == ("B", "v1", "a1") and c.now - t_restart <= 3.5 * TTL  # claim ttl, then the grace
    assert pool.state.holder("a2", c.now) is not None and not c.violations


def test_the_server_wiring_shares_the_pool_in_redis_when_redis_is_configured() -> None:
    """``centre.wiring.agent_pool``: none (the embedded pool) without ``redis:``; with it, the ACD of a node
    writes its agents to Redis under the centre's prefix, where another node's ACD reads them."""
    from centre.wiring import agent_pool
    from config.schema import CtiConfig

    prefix = f"t{uuid.uuid4().hex[:10]}"
    base = {"acd": config(2)}
    assert agent_pool(CtiConfig.model_validate(base)) is None
    cfg = CtiConfig.model_validate({**base, "redis": {"url": REDIS_URL, "prefix": prefix}, "node": {"id": "n1"}})
    shared = agent_pool(cfg)
    assert isinstance(shared, RedisState)
    try:
        acd = AcdService(cfg.acd, T0, node=cfg.node.id, shared=shared)
        acd.login("a1", None, T0)
        acd.ready("a1", T0 + 1)
        other = RedisState(redis_sync_client(RedisSettings(url=REDIS_URL)), prefix)
        entry = other.agent("a1")
        assert entry is not None and (entry.state, entry.node, entry.since) == ("ready", "n1", T0 + 1)
    finally:
        client = redis_sync_client(RedisSettings(url=REDIS_URL))
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)


# ------------------------------------------------------------------------------------ writes batched with claims

class Requests(MemoryState):
    """The embedded pool, counting the requests a node makes of it (what a round trip to Redis would be each)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    def claim(self, agent: str, call: str, node: str, now: float, until: float, writes: Any = ()) -> Any:
        self.requests.append(f"claim+{len(writes)}" if writes else "claim")
        return super().claim(agent, call, node, now, until, writes)

    def apply(self, writes: Any, now: float) -> list[int]:
        self.requests.append(f"apply{len(writes)}")
        return super().apply(writes, now)

    def set_agent(self, agent: str, state: str, since: float, node: str) -> None:
        if not self.requests or self.requests[-1] != "inside":
            self.requests.append("set_agent")
        super().set_agent(agent, state, since, node)

    def _apply(self, writes: Any, now: float) -> list[int]:
        self.requests.append("inside")  # set_agent calls made by apply are part of its request
        try:
            return super()._apply(writes, now)
        finally:
            self.requests.pop()


def test_state_writes_ride_with_the_next_claim_and_urgent_ones_leave_before_the_events() -> None:
    """A decision costs one request: the answered agent's on-call write (which keeps the claim) waits for the next
    request, the release at the end of the call goes with the claim of the next waiting call; a write that frees
    an agent reaches the pool within its own operation (before the event that says so leaves the node)."""
    from acd.pool_link import FLUSH_DELAY

    pool = Requests()
    h = Node("A", config(1, wrapup=0), pool, T0)
    h.ready("a1")
    pool.requests.clear()
    h.queued("u1", "billing")
    h.queued("u2", "billing")
    assert pool.requests == ["claim"] and h.offers() == [("u1", "a1")]
    h.answer("u1", "a1")
    assert pool.requests == ["claim"] and pool.agent("a1").state == "reserved"  # on call: waits, claim held
    h.hangup("u1")  # no wrap-up: a1 is ready and u2 claims it, the release of u1's claim in the same request
    assert pool.requests == ["claim", "claim+1"] and h.offers()[-1] == ("u2", "a1")
    assert pool.holder("a1", h.now).call == AcdService.claim_name((h.server, "u2"))
    h.answer("u2", "a1")
    assert pool.agent("a1").state == "reserved" and h.acd.next_deadline() <= h.now + FLUSH_DELAY
    h.advance(FLUSH_DELAY)  # nothing to ride with: sent on its own
    assert pool.requests[-1] == "apply1" and pool.agent("a1").state == "on_call"
    h.hangup("u2")  # nothing waits: the release goes at the end of the operation, before AgentStateChanged leaves
    assert pool.requests[-1] == "apply1" and pool.agent("a1").state == "ready" and pool.holder("a1", h.now) is None
    h.request("not_ready", "a1", "lunch")
    assert pool.requests[-1] == "apply1" and pool.agent("a1").state == "not_ready"
    assert "set_agent" not in pool.requests


class CountedFlaky(FlakyMemory):
    def __init__(self) -> None:
        super().__init__()
        self.applied: list[list[tuple[str, str]]] = []

    def apply(self, writes: Any, now: float) -> list[int]:
        self.applied.append([(w.agent, w.state) for w in writes])
        return super().apply(writes, now)


def test_writes_kept_while_the_pool_is_down_go_in_one_request_when_it_is_back() -> None:
    """The last write per agent, in the order of those last writes, in one request."""
    flaky = CountedFlaky()
    h = Node("A", config(3), flaky, T0)
    h.ready("a1", "a2", "a3")
    flaky.broken = True
    h.request("not_ready", "a1", "lunch")
    h.request("not_ready", "a2", "lunch")
    h.request("ready", "a1")
    assert not h.acd.shared_up
    flaky.broken, flaky.applied = False, []
    h.advance(1.0)
    assert h.acd.shared_up and flaky.applied == [[("a2", "not_ready"), ("a1", "ready")]]
    assert flaky.agent("a1").state == "ready" and flaky.agent("a2").state == "not_ready"
