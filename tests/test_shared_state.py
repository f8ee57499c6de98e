"""The shared agent pool: one suite over the embedded ``MemoryState`` and ``RedisState`` on the real Redis; and
four OS processes claiming one Redis pool at once, whose merged history must show no agent given two calls and
no call given two agents."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from pydantic import SecretStr

from acd.shared_state import (
    AVAILABLE,
    RESERVED,
    AgentEntry,
    Claim,
    MemoryState,
    SharedState,
    SharedStateDown,
    StateWrite,
    WaitingEntry,
)
from centre.redis_link import redis_sync_client
from centre.redis_state import RedisState
from config.schema import RedisSettings
from tests.conftest import REDIS_URL
from tests.shared_state_contenders import NOW, UNTIL, Event, contend, violations
from tests.tcp_proxy import TcpProxy

T0 = 1_000.0


def redis_state() -> Iterator[RedisState]:
    """A RedisState on the test Redis under a prefix of its own; its keys deleted afterwards."""
    prefix = f"test-shared-{uuid.uuid4().hex[:12]}"
    client = redis_sync_client(RedisSettings(url=REDIS_URL, prefix=prefix), timeout=5.0)
    state = RedisState(client, prefix)
    try:
        yield state
    finally:
        keys = state.keys()
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(params=["memory", "redis"])
def pool(request: pytest.FixtureRequest) -> Iterator[SharedState]:
    if request.param == "memory":
        yield MemoryState()
    else:
        yield from redis_state()


@pytest.fixture
def rpool() -> Iterator[RedisState]:
    yield from redis_state()


def ready(pool: SharedState, *agents: str, node: str = "n1") -> None:
    for agent in agents:
        pool.set_agent(agent, AVAILABLE, T0, node)


# --- agents ---------------------------------------------------------------------------------------------------

def test_agents_are_set_read_one_by_one_and_all_at_once(pool: SharedState) -> None:
    assert pool.agents() == {} and pool.agent("a1") is None
    pool.set_agent("a1", AVAILABLE, T0, "n1")
    pool.set_agent("a2", "not_ready", T0 + 0.125, "n2")
    pool.set_agent("a1", "busy", T0 + 1.5, "n2")
    assert pool.agent("a1") == AgentEntry("a1", "busy", T0 + 1.5, "n2")
    assert pool.agents() == {"a1": AgentEntry("a1", "busy", T0 + 1.5, "n2"),
                             "a2": AgentEntry("a2", "not_ready", T0 + 0.125, "n2")}
    assert pool.agent("a3") is None


def test_add_agent_writes_only_an_agent_the_pool_has_not(pool: SharedState) -> None:
    pool.set_agent("a1", "on_call", T0, "n1")
    assert pool.add_agent("a1", AVAILABLE, T0 - 5, "n2") is False  # its writer's word stands
    assert pool.add_agent("a2", "wrap_up", T0 + 0.5, "n3") is True
    assert pool.agents() == {"a1": AgentEntry("a1", "on_call", T0, "n1"),
                             "a2": AgentEntry("a2", "wrap_up", T0 + 0.5, "n3")}


def test_replace_agent_writes_only_over_the_entry_expected_and_no_live_claim(pool: SharedState) -> None:
    """The end of a dead node's wrap-up: only over the entry the caller saw, once, and never under a claim."""
    pool.set_agent("a1", "wrap_up", T0 + 0.1, "dead")
    seen = AgentEntry("a1", "wrap_up", T0 + 0.1, "dead")
    for other in (AgentEntry("a1", "wrap_up", T0 + 0.2, "dead"), AgentEntry("a1", "wrap_up", T0 + 0.1, "n2"),
                  AgentEntry("a1", "not_ready", T0 + 0.1, "dead"), AgentEntry("a9", "wrap_up", T0 + 0.1, "dead")):
        assert pool.replace_agent(other, AVAILABLE, T0 + 40, "n2") is False
    assert pool.replace_agent(seen, AVAILABLE, T0 + 40, "n2") is True
    assert pool.agent("a1") == AgentEntry("a1", AVAILABLE, T0 + 40, "n2")
    assert pool.replace_agent(seen, AVAILABLE, T0 + 41, "n3") is False  # a second node, too late: no change
    assert pool.agent("a1") == AgentEntry("a1", AVAILABLE, T0 + 40, "n2")
    assert pool.claim("a1", "c1", "n3", T0 + 50, T0 + 60) is not None
    held = pool.agent("a1")
    assert held is not None and pool.replace_agent(held, AVAILABLE, T0 + 55, "n2") is False  # claimed: no
    assert pool.replace_agent(held, AVAILABLE, T0 + 61, "n2") is True  # the claim lapsed


def test_a_node_says_it_runs_until_a_time_and_says_it_again(pool: SharedState) -> None:
    assert pool.present_until("n1") is None
    pool.present("n1", T0 + 10.25)
    pool.present("n2", T0 + 3)
    pool.present("n1", T0 + 13.5)
    assert (pool.present_until("n1"), pool.present_until("n2"), pool.present_until("n3")) == (T0 + 13.5, T0 + 3, None)


# --- claims ---------------------------------------------------------------------------------------------------

def test_a_claim_reserves_an_available_agent_for_the_call_on_both_sides(pool: SharedState) -> None:
    ready(pool, "a1")
    claim = pool.claim("a1", "c1", "n2", T0 + 1, T0 + 31)
    assert claim is not None and (claim.agent, claim.call, claim.node, claim.until) == ("a1", "c1", "n2", T0 + 31)
    assert claim.version > 0 and pool.last_version == claim.version
    assert pool.agent("a1") == AgentEntry("a1", RESERVED, T0 + 1, "n2")
    assert pool.holder("a1", T0 + 2) == claim and pool.claim_of_call("c1", T0 + 2) == claim
    assert pool.holder("a2", T0 + 2) is None and pool.claim_of_call("c2", T0 + 2) is None


@pytest.mark.parametrize("state", ["not_ready", "ringing", "busy", "wrapup", "logged_out", RESERVED])
def test_a_claim_is_refused_unless_the_agent_is_available(pool: SharedState, state: str) -> None:
    pool.set_agent("a1", state, T0, "n1")
    assert pool.claim("a1", "c1", "n1", T0, T0 + 30) is None
    assert pool.agent("a1") == AgentEntry("a1", state, T0, "n1")
    assert pool.holder("a1", T0) is None and pool.claim_of_call("c1", T0) is None
    assert pool.claim("nobody", "c1", "n1", T0, T0 + 30) is None and pool.agent("nobody") is None


def test_a_claimed_agent_is_refused_to_another_call_until_its_lease_lapses(pool: SharedState) -> None:
    ready(pool, "a1")
    first = pool.claim("a1", "c1", "n1", T0, T0 + 30)
    assert first is not None
    pool.set_agent("a1", AVAILABLE, T0 + 1, "n1")  # even if its state said available again
    assert pool.claim("a1", "c2", "n2", T0 + 1, T0 + 31) is None
    assert pool.claim("a1", "c1", "n1", T0 + 1, T0 + 31) is None  # not twice for the same call either
    assert pool.claim("a1", "c2", "n2", T0 + 30, T0 + 60) is None  # until == now: still live
    assert pool.holder("a1", T0 + 30) == first
    second = pool.claim("a1", "c2", "n2", T0 + 30.5, T0 + 60)  # lapsed: claimable again
    assert second is not None and second.version > first.version
    assert pool.holder("a1", T0 + 31) == second and pool.claim_of_call("c2", T0 + 31) == second
    assert pool.claim_of_call("c1", T0 + 31) is None  # the lapsed side is gone
    assert pool.release("a1", "c1", AVAILABLE, T0 + 31) is False  # and cannot end the new claim
    assert pool.holder("a1", T0 + 31) == second


def test_a_call_holding_an_agent_cannot_claim_another_until_that_lapses(pool: SharedState) -> None:
    ready(pool, "a1", "a2")
    first = pool.claim("a1", "c1", "n1", T0, T0 + 30)
    assert first is not None
    assert pool.claim("a2", "c1", "n2", T0 + 1, T0 + 31) is None
    assert pool.agent("a2") == AgentEntry("a2", AVAILABLE, T0, "n1") and pool.holder("a2", T0 + 1) is None
    moved = pool.claim("a2", "c1", "n2", T0 + 40, T0 + 70)  # c1's claim on a1 lapsed
    assert moved is not None and pool.claim_of_call("c1", T0 + 40) == moved
    assert pool.holder("a1", T0 + 40) is None  # lapsed, not live; a1 stays reserved until expire
    assert [c.agent for c in pool.expire(T0 + 40)] == ["a1"]
    assert pool.claim_of_call("c1", T0 + 40) == moved  # expiring a1's claim left c1's new one alone
    assert pool.agent("a1") == AgentEntry("a1", AVAILABLE, T0 + 40, "n1")


def test_release_only_by_the_call_holding_the_claim_and_it_sets_the_state(pool: SharedState) -> None:
    ready(pool, "a1")
    claim = pool.claim("a1", "c1", "n2", T0, T0 + 30)
    assert claim is not None
    assert pool.release("a1", "c2", AVAILABLE, T0 + 5) is False
    assert pool.release("a2", "c1", AVAILABLE, T0 + 5) is False
    assert pool.holder("a1", T0 + 5) == claim and pool.agent("a1") == AgentEntry("a1", RESERVED, T0, "n2")
    assert pool.last_version == claim.version
    assert pool.release("a1", "c1", "wrapup", T0 + 6) is True
    assert pool.last_version > claim.version
    assert pool.agent("a1") == AgentEntry("a1", "wrapup", T0 + 6, "n2")
    assert pool.holder("a1", T0 + 6) is None and pool.claim_of_call("c1", T0 + 6) is None
    assert pool.release("a1", "c1", AVAILABLE, T0 + 7) is False  # once
    assert pool.claim("a1", "c2", "n1", T0 + 7, T0 + 37) is None  # wrapup: not available
    pool.set_agent("a1", AVAILABLE, T0 + 8, "n2")
    again = pool.claim("a1", "c2", "n1", T0 + 8, T0 + 38)
    assert again is not None and again.version == pool.last_version and again.version > claim.version
    # a lapsed claim not yet expired is still its call's to release
    assert pool.release("a1", "c2", AVAILABLE, T0 + 100) is True and pool.expire(T0 + 100) == []


def test_apply_makes_writes_in_order_releasing_claims_by_their_call(pool: SharedState) -> None:
    ready(pool, "a1", "a2", "a3")
    c1 = pool.claim("a1", "c1", "n2", T0, T0 + 30)
    c2 = pool.claim("a2", "c2", "n3", T0, T0 + 30)
    assert c1 is not None and c2 is not None
    versions = pool.apply([
        StateWrite("a1", "on_call", T0 + 1, "n2"),  # a plain write: the claim stays
        StateWrite("a1", "wrap_up", T0 + 2, "n2", call="c1"),  # releases c1's claim (the entry's node kept)
        # c9 holds nothing and c2's live claim holds a2: dropped, the agent is c2's claimer's
        StateWrite("a2", AVAILABLE, T0 + 2, "n9", call="c9"),
        StateWrite("a3", "not_ready", T0 + 3, "n4"),
    ], T0 + 3)
    assert versions[0] == 0 and versions[1] > c2.version and versions[2:] == [0, 0]
    assert pool.last_applied == versions and pool.last_version == versions[1]
    assert pool.holder("a1", T0 + 3) is None and pool.agent("a1") == AgentEntry("a1", "wrap_up", T0 + 2, "n2")
    assert pool.holder("a2", T0 + 3) == c2 and pool.agent("a2") == AgentEntry("a2", RESERVED, T0, "n3")
    assert pool.agent("a3") == AgentEntry("a3", "not_ready", T0 + 3, "n4")
    # a release whose claim lapsed and was expired, with no other claim: a plain write
    assert pool.expire(T0 + 40) == [c2]
    assert pool.apply([StateWrite("a2", "wrap_up", T0 + 41, "n3", call="c2")], T0 + 41) == [0]
    assert pool.agent("a2") == AgentEntry("a2", "wrap_up", T0 + 41, "n3")
    assert pool.apply([], T0 + 42) == [] and pool.last_applied == []


def test_a_claim_with_writes_makes_them_first(pool: SharedState) -> None:
    """The agent freed by the writes can be claimed by the same request."""
    ready(pool, "a1")
    first = pool.claim("a1", "c1", "n1", T0, T0 + 30)
    assert first is not None
    again = pool.claim("a1", "c2", "n1", T0 + 1, T0 + 31, writes=[StateWrite("a1", AVAILABLE, T0 + 1, "n1", "c1")])
    assert again is not None and again.call == "c2" and pool.last_applied[0] > first.version
    assert again.version > pool.last_applied[0] == pool.last_version - 1 and pool.last_version == again.version
    assert pool.agent("a1") == AgentEntry("a1", RESERVED, T0 + 1, "n1")
    refused = pool.claim("a1", "c3", "n1", T0 + 2, T0 + 32, writes=[StateWrite("a9", "not_ready", T0 + 2, "n1")])
    assert refused is None and pool.agent("a9") == AgentEntry("a9", "not_ready", T0 + 2, "n1")  # written anyway


def test_renew_extends_the_live_claims_of_one_node(pool: SharedState) -> None:
    ready(pool, "a1", "a2", "a3", "a4")
    c1 = pool.claim("a1", "c1", "n1", T0, T0 + 10)
    c2 = pool.claim("a2", "c2", "n1", T0, T0 + 30)
    c3 = pool.claim("a3", "c3", "n2", T0, T0 + 10)
    c4 = pool.claim("a4", "c4", "n1", T0, T0 + 5)
    assert c1 and c2 and c3 and c4
    assert pool.renew("n1", T0 + 6, T0 + 40) == 2  # a1 and a2; a4 lapsed at T0 + 5
    assert pool.holder("a1", T0 + 35) == Claim("a1", "c1", "n1", T0 + 40, c1.version)
    assert pool.claim_of_call("c2", T0 + 35) == Claim("a2", "c2", "n1", T0 + 40, c2.version)
    assert pool.holder("a3", T0 + 11) is None and pool.holder("a4", T0 + 6) is None
    assert pool.renew("n3", T0 + 6, T0 + 40) == 0
    assert [c.agent for c in pool.expire(T0 + 12)] == ["a4", "a3"]  # by until: 5, then 10
    assert pool.holder("a1", T0 + 12) is not None and pool.holder("a2", T0 + 12) is not None


def test_expire_removes_lapsed_claims_and_frees_agents_still_reserved(pool: SharedState) -> None:
    ready(pool, "a1", "a2", "a3")
    c1 = pool.claim("a1", "c1", "n1", T0, T0 + 10)
    c2 = pool.claim("a2", "c2", "n1", T0, T0 + 10)
    c3 = pool.claim("a3", "c3", "n2", T0, T0 + 50)
    assert c1 and c2 and c3
    pool.set_agent("a2", "busy", T0 + 3, "n1")  # answered: its claim lapses but the agent is on the call
    assert pool.expire(T0 + 10) == []  # until == now: live
    gone = pool.expire(T0 + 11)
    assert gone == [c1, c2]
    assert pool.agent("a1") == AgentEntry("a1", AVAILABLE, T0 + 11, "n1")
    assert pool.agent("a2") == AgentEntry("a2", "busy", T0 + 3, "n1")
    assert pool.agent("a3") == AgentEntry("a3", RESERVED, T0, "n2") and pool.holder("a3", T0 + 11) == c3
    assert pool.claim_of_call("c1", T0) is None and pool.claim_of_call("c2", T0) is None  # both sides gone
    assert pool.release("a1", "c1", AVAILABLE, T0 + 12) is False
    assert pool.expire(T0 + 11) == []
    again = pool.claim("a1", "c9", "n2", T0 + 12, T0 + 42)
    assert again is not None and pool.holder("a1", T0 + 12) == again


# --- waiting calls --------------------------------------------------------------------------------------------

def test_waiting_calls_are_served_by_priority_then_age_then_id_and_filtered_by_node(pool: SharedState) -> None:
    entries = [WaitingEntry("c1", "sales", 0, T0 + 1, "n1"), WaitingEntry("c2", "sales", 5, T0 + 3, "n2"),
               WaitingEntry("c3", "sales", 0, T0 + 0.5, "n2"), WaitingEntry("c4", "sales", 5, T0 + 3, "n1"),
               WaitingEntry("c0", "sales", 0, T0 + 1, "n2"), WaitingEntry("c5", "support", 9, T0, "n1")]
    for e in entries:
        pool.enqueue(e)
    assert [e.call for e in pool.waiting("sales")] == ["c2", "c4", "c3", "c0", "c1"]
    assert pool.waiting("support") == [entries[5]] and pool.waiting("billing") == []
    assert [e.call for e in pool.waiting_of_node("n1")] == ["c5", "c4", "c1"]
    assert [e.call for e in pool.waiting_of_node("n2")] == ["c2", "c3", "c0"]
    assert pool.dequeue("c2") is True and pool.dequeue("c2") is False and pool.dequeue("zz") is False
    pool.enqueue(WaitingEntry("c4", "support", 1, T0 + 3, "n1"))  # moved: it leaves sales
    assert [e.call for e in pool.waiting("sales")] == ["c3", "c0", "c1"]
    assert [e.call for e in pool.waiting("support")] == ["c5", "c4"]
    assert pool.waiting("sales")[0] == entries[2]


# --- Redis only: round trips, an unreachable Redis -------------------------------------------------------------

def test_each_claim_apply_release_renew_and_expire_is_one_request_to_redis(rpool: RedisState) -> None:
    client, sent = rpool.client, []
    original = client.execute_command

    def counted(*args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        return original(*args, **kwargs)

    ready(rpool, *(f"a{i}" for i in range(3)))
    rpool.claim("a0", "c0", "n1", T0, T0 + 30)  # loads the scripts once
    rpool.release("a0", "c0", AVAILABLE, T0)
    rpool.renew("n1", T0, T0 + 30)
    rpool.expire(T0)
    rpool.apply([StateWrite("a0", AVAILABLE, T0, "n1")], T0)
    rpool.replace_agent(AgentEntry("a0", "x", T0, "n1"), AVAILABLE, T0, "n2")
    client.execute_command = counted
    try:
        writes = [StateWrite("a2", "on_call", T0, "n1"), StateWrite("a2", AVAILABLE, T0, "n1", "cx")]
        for op in (lambda: rpool.apply(writes, T0), lambda: rpool.claim("a0", "c9", "n1", T0, T0 + 30, writes),
                   lambda: rpool.claim("a1", "c1", "n1", T0, T0 + 30), lambda: rpool.claim("a1", "c2", "n1", T0, T0),
                   lambda: rpool.release("a1", "c1", AVAILABLE, T0), lambda: rpool.renew("n1", T0, T0 + 40),
                   lambda: rpool.expire(T0 + 50), lambda: rpool.holder("a1", T0),
                   lambda: rpool.claim_of_call("c1", T0), lambda: rpool.waiting("q"),
                   lambda: rpool.replace_agent(AgentEntry("a0", "x", T0, "n1"), AVAILABLE, T0, "n2"),
                   lambda: rpool.present("n1", T0 + 10), lambda: rpool.present_until("n1")):
            before, trips = len(sent), rpool.round_trips
            op()
            assert len(sent) - before == 1 and rpool.round_trips - trips == 1, sent[before:]
    finally:
        del client.execute_command
    assert set(sent) - {"HMGET", "SET", "GET"} == {"EVALSHA"}


def test_a_claims_keys_outlive_its_lease_by_the_gc_margin_only(rpool: RedisState) -> None:
    """PEXPIRE is garbage collection, relative to the lease (so a virtual clock's epoch does not matter)."""
    ready(rpool, "a1")
    assert rpool.claim("a1", "c1", "n1", T0, T0 + 30) is not None
    keys = (f"{rpool.prefix}:claim:agent:a1", f"{rpool.prefix}:claim:call:c1")
    margin_ms = (30 + rpool.gc_margin) * 1000
    assert all(margin_ms - 5_000 < rpool.client.pttl(k) <= margin_ms for k in keys)
    assert rpool.renew("n1", T0 + 20, T0 + 620) == 1
    renewed_ms = (600 + rpool.gc_margin) * 1000
    assert all(renewed_ms - 5_000 < rpool.client.pttl(k) <= renewed_ms for k in keys)


def test_an_unreachable_redis_raises_shared_state_down_without_the_password() -> None:
    secret = "s3cret-pool-pw"
    settings = RedisSettings(url="redis://127.0.0.1:1/0", password=SecretStr(secret), username="cti-node")
    state = RedisState(redis_sync_client(settings, timeout=0.2), "down")
    for op in (lambda: state.claim("a1", "c1", "n1", T0, T0 + 30), lambda: state.agents(),
               lambda: state.set_agent("a1", AVAILABLE, T0, "n1"), lambda: state.expire(T0)):
        with pytest.raises(SharedStateDown) as info:
            op()
        assert secret not in str(info.value) and secret not in repr(info.value), info.value
        assert info.value.__cause__ is None and info.value.__suppress_context__
    url_secret = RedisState(redis_sync_client(RedisSettings(url=f"redis://u:{secret}@127.0.0.1:1/0"),
                                              timeout=0.2), "down")
    with pytest.raises(SharedStateDown) as info:
        url_secret.renew("n1", T0, T0 + 1)
    assert secret not in str(info.value)


def test_the_pool_client_works_whether_redis_answers_at_the_start_or_only_later_and_after_a_cut() -> None:
    """``redis_sync_client`` keeps one connection when Redis answers at once (and connects it again after a
    failure), a pool that connects on first use when it does not: a node may start before its Redis."""
    upstream = urlsplit(REDIS_URL)
    proxy = TcpProxy(upstream.hostname or "127.0.0.1", upstream.port or 6379)
    prefix = f"test-client-{uuid.uuid4().hex[:8]}"
    settings = RedisSettings(url=urlunsplit(upstream._replace(netloc=f"127.0.0.1:{proxy.port}")), prefix=prefix)
    try:
        proxy.cut()
        late = RedisState(redis_sync_client(settings, timeout=0.5), prefix)  # Redis not there: no error here
        with pytest.raises(SharedStateDown):
            late.agent("a1")
        proxy.restore()
        late.set_agent("a1", AVAILABLE, T0, "n1")
        assert late.agent("a1") == AgentEntry("a1", AVAILABLE, T0, "n1")
        client = redis_sync_client(settings, timeout=0.5)
        assert client.connection is not None  # Redis answered: one connection, no pool
        state = RedisState(client, prefix)
        assert state.agent("a1") == AgentEntry("a1", AVAILABLE, T0, "n1")
        proxy.cut()
        with pytest.raises(SharedStateDown):
            state.agent("a1")
        proxy.restore()
        assert state.agent("a1") == AgentEntry("a1", AVAILABLE, T0, "n1")  # connected again
        assert late.agent("a1") is not None
        for key in state.keys():
            client.delete(key)
    finally:
        proxy.close()


# --- Redis only: several processes claiming at once -----------------------------------------------------------

def test_the_history_check_names_every_kind_of_overlap() -> None:
    """The check below can fail: each rule broken once, in a made-up history, is named."""
    ok = [Event(1, "claim", "a1", "c1", 0, 0), Event(3, "release", "a1", "c1", 0, 1),
          Event(2, "claim", "a2", "c2", 1, 0), Event(4, "claim", "a1", "c3", 1, 1)]
    assert violations(ok) == ([], {"a2": "c2", "a1": "c3"})
    two_calls = [Event(1, "claim", "a1", "c1", 0, 0), Event(2, "claim", "a1", "c2", 1, 0)]
    two_agents = [Event(1, "claim", "a1", "c1", 0, 0), Event(2, "claim", "a2", "c1", 1, 0)]
    wrong_release = [Event(1, "claim", "a1", "c1", 0, 0), Event(2, "release", "a1", "c2", 1, 0)]
    early_release = [Event(2, "claim", "a1", "c1", 0, 0), Event(1, "release", "a1", "c1", 0, 1)]
    twice = [Event(1, "claim", "a1", "c1", 0, 0), Event(1, "claim", "a2", "c2", 1, 0)]
    lost = [Event(1, "claim", "a1", "c1", 0, 0), Event(0, "lost", "a1", "c1", 0, 1)]
    for history, says in ((two_calls, "while held for c1"), (two_agents, "while holding a1"),
                          (wrong_release, "released a1 held by c1"), (early_release, "go back"),
                          (twice, "taken twice"), (lost, "lost its claim")):
        found, _ = violations(history)
        assert any(says in f for f in found), (history, found)


def test_four_processes_claiming_one_pool_never_give_an_agent_two_calls_or_a_call_two_agents(
        rpool: RedisState) -> None:
    processes, attempts, agents, calls = 4, 2_000, 40, 30
    ready(rpool, *(f"a{i}" for i in range(agents)))
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    workers = [ctx.Process(target=contend, args=(REDIS_URL, rpool.prefix, i, attempts, agents, calls, 1000 + i,
                                                 barrier, out), daemon=True) for i in range(processes)]
    for w in workers:
        w.start()
    try:
        results = [out.get(timeout=60) for _ in workers]
    finally:
        for w in workers:
            w.join(10)
    assert all(w.exitcode == 0 for w in workers)
    events = [e for history, _ in results for e in history]
    refused = sum(r for _, r in results)
    claims = sum(1 for e in events if e.kind == "claim")
    assert claims >= 1_000 and refused >= 1_000, (claims, refused)  # both sides of the rule were exercised
    assert len({e.process for e in events if e.kind == "claim"}) == processes
    found, holders = violations(events)
    assert found == [], found[:10]
    # what Redis holds at the end is what the history says
    assert {a: c.call for a in (f"a{i}" for i in range(agents)) if (c := rpool.holder(a, NOW)) is not None} \
        == holders
    assert all(rpool.claim_of_call(call, NOW) == rpool.holder(agent, NOW) for agent, call in holders.items())
    assert {a for a, e in rpool.agents().items() if e.state == RESERVED} == set(holders)
    assert all(c.until == UNTIL for a in holders if (c := rpool.holder(a, NOW)) is not None)
