"""Leases: the store's rules (in memory and on a real Redis) and LeaseKeepers of several nodes in virtual time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from centre.redis_leases import RedisLeases
from cti.leases import (
    EXPIRED,
    HANDED_BACK,
    REFUSED,
    RELEASED,
    UNWANTED,
    Gained,
    KeeperTimings,
    Lease,
    LeaseChange,
    LeaseKeeper,
    LeaseStore,
    LeaseStoreDown,
    Lost,
    MemoryLeases,
    StoreDown,
    StoreUp,
)
from tests.conftest import REDIS_URL
from tests.tcp_proxy import TcpProxy


class FailingStore:
    """A ``LeaseStore`` in front of another that raises ``LeaseStoreDown`` while ``down`` (the memory case's
    outage; the Redis case cuts a real connection)."""

    def __init__(self, inner: LeaseStore) -> None:
        self.inner = inner
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise LeaseStoreDown("lease store: down (test)")

    def acquire(self, name: str, node: str, now: float, until: float) -> Lease | None:
        self._check()
        return self.inner.acquire(name, node, now, until)

    def renew(self, name: str, node: str, epoch: int, now: float, until: float) -> Lease | None:
        self._check()
        return self.inner.renew(name, node, epoch, now, until)

    def release(self, name: str, node: str, epoch: int) -> bool:
        self._check()
        return self.inner.release(name, node, epoch)

    def holder(self, name: str, now: float) -> Lease | None:
        self._check()
        return self.inner.holder(name, now)

    def leases(self, prefix: str, now: float) -> list[Lease]:
        self._check()
        return self.inner.leases(prefix, now)

    def ask(self, name: str, node: str, now: float, until: float) -> None:
        self._check()
        self.inner.ask(name, node, now, until)

    def asked(self, name: str, now: float) -> str | None:
        self._check()
        return self.inner.asked(name, now)


@dataclass
class Backend:
    """A store under test and a switch for an outage of it."""

    store: LeaseStore
    outage: Any  # cut() / restore()


class MemoryOutage:
    def __init__(self, store: FailingStore) -> None:
        self.store = store

    def cut(self) -> None:
        self.store.down = True

    def restore(self) -> None:
        self.store.down = False


def _redis_client(url: str) -> Any:
    # No retries: a failed call must come back at once (a keeper's tick must not sleep in a backoff).
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2, retry=Retry(NoBackoff(), 0))


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        failing = FailingStore(MemoryLeases())
        yield Backend(failing, MemoryOutage(failing))
        return
    direct = _redis_client(REDIS_URL)
    try:
        direct.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not usable: {exc.__class__.__name__}")
    prefix = f"test-leases-{uuid.uuid4().hex[:12]}"
    url = redis.connection.parse_url(REDIS_URL)
    proxy = TcpProxy(url.get("host", "127.0.0.1"), int(url.get("port", 6379)))
    client = _redis_client(f"redis://127.0.0.1:{proxy.port}/{url.get('db', 15)}")
    try:
        yield Backend(RedisLeases(client, prefix), proxy)
    finally:
        proxy.close()
        client.close()
        keys = list(direct.scan_iter(match=f"{prefix}:*"))
        if keys:
            direct.delete(*keys)
        direct.close()


# ------------------------------------------------------------------------------------------ the store's rules
def test_acquire_takes_a_free_lease_and_refuses_a_live_one(backend: Backend) -> None:
    store = backend.store
    lease = store.acquire("ami:pbx1", "n1", 0.0, 10.0)
    assert lease == Lease("ami:pbx1", "n1", 10.0, 1)
    assert store.acquire("ami:pbx1", "n2", 9.999, 20.0) is None
    assert store.holder("ami:pbx1", 9.999) == lease


def test_acquire_by_the_holder_renews_with_the_same_epoch(backend: Backend) -> None:
    store = backend.store
    store.acquire("ami:pbx1", "n1", 0.0, 10.0)
    assert store.acquire("ami:pbx1", "n1", 5.0, 15.5) == Lease("ami:pbx1", "n1", 15.5, 1)
    assert store.acquire("ami:pbx1", "n2", 12.0, 20.0) is None


def test_a_lease_expires_at_until_and_a_new_holder_gets_the_next_epoch(backend: Backend) -> None:
    store = backend.store
    store.acquire("pacer:c1", "n1", 0.0, 10.0)
    assert store.holder("pacer:c1", 10.0) is None  # expired at until exactly
    assert store.acquire("pacer:c1", "n2", 10.0, 20.0) == Lease("pacer:c1", "n2", 20.0, 2)
    # The old holder taking it back after its own expiry is a change of holder too.
    assert store.acquire("pacer:c1", "n1", 20.0, 30.0) == Lease("pacer:c1", "n1", 30.0, 3)


def test_renew_only_for_the_live_holder_with_its_epoch(backend: Backend) -> None:
    store = backend.store
    store.acquire("ami:pbx1", "n1", 0.0, 10.0)
    assert store.renew("ami:pbx1", "n2", 1, 1.0, 11.0) is None  # not the holder
    assert store.renew("ami:pbx1", "n1", 2, 1.0, 11.0) is None  # wrong epoch
    assert store.renew("ami:pbx1", "n1", 1, 1.0, 11.0) == Lease("ami:pbx1", "n1", 11.0, 1)
    assert store.renew("ami:pbx1", "n1", 1, 11.0, 21.0) is None  # expired at now
    assert store.renew("nothing", "n1", 1, 1.0, 11.0) is None


def test_a_stale_holder_is_fenced_off_after_a_takeover(backend: Backend) -> None:
    store = backend.store
    old = store.acquire("ami:pbx1", "n1", 0.0, 10.0)
    assert old is not None
    new = store.acquire("ami:pbx1", "n2", 10.0, 20.0)
    assert new is not None and new.epoch == old.epoch + 1
    assert store.renew("ami:pbx1", "n1", old.epoch, 10.5, 20.5) is None
    assert store.release("ami:pbx1", "n1", old.epoch) is False
    # Same node name, old epoch (a restarted process reusing the name): still refused.
    again = store.acquire("ami:pbx1", "n1", 20.0, 30.0)
    assert again is not None and again.epoch == new.epoch + 1
    assert store.release("ami:pbx1", "n1", old.epoch) is False
    assert store.holder("ami:pbx1", 25.0) == again


def test_release_frees_the_lease_and_keeps_the_epoch_counting(backend: Backend) -> None:
    store = backend.store
    lease = store.acquire("pacer:c1", "n1", 0.0, 10.0)
    assert lease is not None
    assert store.release("pacer:c1", "n2", lease.epoch) is False
    assert store.release("pacer:c1", "n1", lease.epoch) is True
    assert store.release("pacer:c1", "n1", lease.epoch) is False
    assert store.holder("pacer:c1", 1.0) is None
    assert store.renew("pacer:c1", "n1", lease.epoch, 1.0, 11.0) is None
    assert store.acquire("pacer:c1", "n1", 1.0, 11.0) == Lease("pacer:c1", "n1", 11.0, 2)


def test_leases_lists_the_live_ones_under_a_prefix(backend: Backend) -> None:
    store = backend.store
    store.acquire("ami:b", "n2", 0.0, 10.0)
    store.acquire("ami:a", "n1", 0.0, 10.0)
    store.acquire("ami:old", "n1", 0.0, 2.0)
    store.acquire("pacer:c1", "n1", 0.0, 10.0)
    store.acquire("ami*[x]", "n3", 0.0, 10.0)  # glob characters are names, not patterns
    assert [(x.name, x.node) for x in store.leases("ami:", 5.0)] == [("ami:a", "n1"), ("ami:b", "n2")]
    assert [x.name for x in store.leases("ami*", 5.0)] == ["ami*[x]"]
    assert [x.name for x in store.leases("", 1.0)] == ["ami*[x]", "ami:a", "ami:b", "ami:old", "pacer:c1"]
    assert store.leases("ami:", 10.0) == []


def test_a_lease_must_end_after_now(backend: Backend) -> None:
    with pytest.raises(ValueError):
        backend.store.acquire("ami:pbx1", "n1", 10.0, 10.0)
    with pytest.raises(ValueError):
        backend.store.renew("ami:pbx1", "n1", 1, 10.0, float("inf"))


def test_an_outage_is_lease_store_down(backend: Backend) -> None:
    backend.store.acquire("ami:pbx1", "n1", 0.0, 10.0)
    backend.outage.cut()
    for call in (lambda s: s.acquire("ami:pbx1", "n1", 1.0, 11.0), lambda s: s.renew("ami:pbx1", "n1", 1, 1.0, 11.0),
                 lambda s: s.release("ami:pbx1", "n1", 1), lambda s: s.holder("ami:pbx1", 1.0),
                 lambda s: s.leases("ami:", 1.0)):
        with pytest.raises(LeaseStoreDown):
            call(backend.store)
    backend.outage.restore()
    assert backend.store.holder("ami:pbx1", 1.0) == Lease("ami:pbx1", "n1", 10.0, 1)


# ------------------------------------------------------------------------------------------ Redis specifics
def test_redis_keys_are_collected_well_after_until_and_errors_name_no_secret() -> None:
    client = _redis_client(REDIS_URL)
    prefix = f"test-leases-{uuid.uuid4().hex[:12]}"
    try:
        store = RedisLeases(client, prefix, gc_after=600.0)
        store.acquire("ami:pbx1", "n1", 1_000.0, 1_010.0)
        ttl_ms = client.pttl(f"{prefix}:ami:pbx1")
        assert 600_000 < ttl_ms <= 610_000  # relative to now: a virtual clock's small numbers work too
        store.renew("ami:pbx1", "n1", 1, 1_005.0, 1_035.0)
        assert 620_000 < client.pttl(f"{prefix}:ami:pbx1") <= 630_000
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
    proxy = TcpProxy("127.0.0.1", 6379)
    proxy.cut()
    secret = "s3cret-" + uuid.uuid4().hex
    down = _redis_client(f"redis://:{secret}@127.0.0.1:{proxy.port}/15")
    try:
        with pytest.raises(LeaseStoreDown) as caught:
            RedisLeases(down, prefix).acquire("ami:pbx1", "n1", 0.0, 10.0)
        assert secret not in str(caught.value) and "acquire" in str(caught.value)
    finally:
        down.close()
        proxy.close()


def test_the_sync_client_factory_makes_a_working_store() -> None:
    from centre.redis_link import redis_sync_client
    from config.schema import RedisSettings

    client = redis_sync_client(RedisSettings(url=REDIS_URL), timeout=2.0)
    prefix = f"test-leases-{uuid.uuid4().hex[:12]}"
    try:
        store = RedisLeases(client, prefix)
        assert store.acquire("x", "n1", 0.0, 1.0) == Lease("x", "n1", 1.0, 1)
    finally:
        client.delete(f"{prefix}:x")
        client.close()


# ------------------------------------------------------------------------------------------ keepers, virtual time
TTL = 1.0
TIMINGS = KeeperTimings.for_ttl(TTL)  # renew 1/3, acquire 0.5, safety 0.1, prefer 0.125, defer 0.1875
STEP = 0.005  # the grid the no-overlap check runs on (ticks land on it too: up to STEP late)
EAGER = KeeperTimings.for_ttl(TTL, acquire_every=STEP, defer=0.0)  # others take a lease as soon as it is free


def takeover(timings: KeeperTimings) -> float:
    """A dead node's lease is taken by then (after it stopped ticking)."""
    return timings.ttl + timings.acquire_every + timings.defer + 2 * STEP


TAKEOVER = takeover(TIMINGS)
NAMES = ("ami:pbx1", "ami:pbx2", "pacer:c1", "pacer:c2", "pacer:c3")
HOMES = {"n1": {"ami:pbx1"}, "n2": {"ami:pbx2"}, "n3": set[str]()}


@dataclass
class Cluster:
    """Keepers of several nodes on one store, ticked at their deadlines on a fine grid of virtual time; every
    instant, each lease is counted held by at most one node (``overlaps`` collects any that is not)."""

    store: LeaseStore
    keepers: dict[str, LeaseKeeper]
    alive: set[str]
    skew: dict[str, float] = field(default_factory=dict)  # a node's clock ahead (+) or behind (-)
    log: list[tuple[float, str, LeaseChange]] = field(default_factory=list)
    overlaps: list[tuple[float, str, list[str]]] = field(default_factory=list)
    step_index: int = 0
    home_last: bool = False  # at an instant, tick the nodes in reverse order (n1, a home, last)

    @classmethod
    def of(cls, store: LeaseStore, nodes: tuple[str, ...] = ("n1", "n2", "n3"),
           timings: KeeperTimings = TIMINGS) -> Cluster:
        keepers = {n: LeaseKeeper(store, n, NAMES, timings, prefer=HOMES[n]) for n in nodes}
        return cls(store, keepers, set(nodes))

    def local(self, node: str, t: float) -> float:
        return t + self.skew.get(node, 0.0)

    def run_until(self, end: float) -> None:
        while self.step_index * STEP < end - 1e-9:
            t = self.step_index * STEP
            for node in sorted(self.alive, reverse=self.home_last):
                self.tick(node, t)
            for name in NAMES:
                holding = self.holding(name, t)
                if len(holding) > 1:
                    self.overlaps.append((t, name, holding))
            self.step_index += 1

    def tick(self, node: str, t: float) -> list[LeaseChange]:
        keeper, now = self.keepers[node], self.local(node, t)
        deadline = keeper.next_deadline()
        if deadline is None or deadline > now:
            return []
        changes = keeper.tick(now)
        self.log.extend((t, node, c) for c in changes)
        after = keeper.next_deadline()
        assert after is None or after > now, (node, t, after)  # no busy loop
        return changes

    def holding(self, name: str, t: float) -> list[str]:
        return [n for n, k in self.keepers.items() if k.holds(name, self.local(n, t))]

    def owner(self, name: str, t: float) -> str | None:
        holding = self.holding(name, t)
        return holding[0] if len(holding) == 1 else None

    def changes(self, node: str, since: float = 0.0) -> list[tuple[float, LeaseChange]]:
        return [(t, c) for t, n, c in self.log if n == node and t >= since]


def test_steady_state_each_lease_held_by_exactly_one_node(backend: Backend) -> None:
    cluster = Cluster.of(backend.store)
    cluster.run_until(TIMINGS.defer + 2 * STEP)
    assert cluster.owner("ami:pbx1", 0.0) == "n1" and cluster.owner("ami:pbx2", 0.0) == "n2"  # home at once
    settled = TIMINGS.defer + 2 * STEP
    cluster.run_until(10 * TTL)
    assert cluster.overlaps == []
    for name in NAMES:
        owners = {cluster.owner(name, settled + k * 0.01) for k in range(int((10 * TTL - settled) / 0.01))}
        assert len(owners) == 1 and None not in owners, (name, owners)  # held throughout, never moved
        lease = backend.store.holder(name, 10 * TTL - STEP)
        assert lease is not None and lease.node == owners.pop() and lease.epoch == 1
    gained = [c for _, _, c in cluster.log if isinstance(c, Gained)]
    assert sorted(c.name for c in gained) == sorted(NAMES)
    assert not [c for _, _, c in cluster.log if not isinstance(c, Gained)]


@pytest.mark.parametrize("timings", [TIMINGS, EAGER], ids=["default", "eager"])
def test_a_dead_nodes_leases_are_taken_over_without_overlap(backend: Backend, timings: KeeperTimings) -> None:
    """n1 stops ticking; its leases go to the others within the takeover time, never while n1 still counts them
    held (eager: the others try to take it on the very grid step it is free)."""
    cluster = Cluster.of(backend.store, timings=timings)
    within = takeover(timings)
    cluster.run_until(3 * TTL)
    dead_held = cluster.keepers["n1"].held
    assert "ami:pbx1" in dead_held and len(dead_held) >= 2
    killed = 3 * TTL
    cluster.alive.discard("n1")  # stops ticking: a crash, or a process frozen
    cluster.run_until(killed + within)
    assert cluster.overlaps == []
    for name, old in dead_held.items():
        assert cluster.owner(name, killed + within - STEP) in {"n2", "n3"}, name
        taken = [(t, c) for t, n, c in cluster.log if n != "n1" and isinstance(c, Gained) and c.name == name]
        assert len(taken) == 1
        t, gained = taken[0]
        assert old.until <= t <= killed + within  # not before the store freed it: after n1 stopped at until-safety
        assert gained.lease.epoch == old.epoch + 1
    # Ticked again, late: n1 first reports every lease lost, and acts on none of them.
    late = killed + within + 0.3
    cluster.run_until(late)
    first = cluster.tick("n1", late)
    assert first[:len(dead_held)] == [Lost(name, EXPIRED) for name in sorted(dead_held)]
    assert not [c for c in first if isinstance(c, Gained)]
    cluster.alive.add("n1")
    cluster.run_until(late + 5 * TTL)
    assert cluster.overlaps == []
    # none was free again: n1 gets back only its home, which it asks for and its holder hands back
    assert {c.name for _, c in cluster.changes("n1", late) if isinstance(c, Gained)} == HOMES["n1"]
    handed = [(n, c.name) for t, n, c in cluster.log if isinstance(c, Lost) and c.reason == HANDED_BACK and t > late]
    assert handed and all(n != "n1" and name in HOMES["n1"] for n, name in handed), handed
    assert cluster.owner("ami:pbx1", late + 5 * TTL - STEP) == "n1"


def test_the_overlap_check_catches_a_clock_behind_by_more_than_the_safety_margin() -> None:
    """The same crash with n1's clock 0.2 s behind (safety is 0.1 s): its stale lease overlaps the new holder
    (it judges its lease's end by its own clock; others take it as soon as it is free). Within the margin
    (0.05 s) there is none. The check can fail; the nodes' clocks must agree to within the safety margin."""
    for skew, overlapping in ((-0.05, False), (-0.2, True)):
        cluster = Cluster.of(MemoryLeases(), timings=EAGER)
        cluster.skew["n1"] = skew
        cluster.run_until(3 * TTL)
        cluster.alive.discard("n1")
        cluster.run_until(3 * TTL + TAKEOVER)
        assert bool(cluster.overlaps) is overlapping, (skew, cluster.overlaps[:3])
        assert not overlapping or {name for _, name, _ in cluster.overlaps} <= set(cluster.keepers["n1"].held)


def test_store_down_is_reported_once_and_leases_are_lost_at_their_safe_end(backend: Backend) -> None:
    cluster = Cluster.of(backend.store, ("n1", "n2"))
    cluster.run_until(2 * TTL)
    held = {n: k.held for n, k in cluster.keepers.items()}
    down = 2 * TTL
    backend.outage.cut()
    cluster.run_until(down + 2 * TTL)
    assert cluster.overlaps == []
    for node, leases in held.items():
        seen = cluster.changes(node, down)
        assert [c for _, c in seen if isinstance(c, StoreDown)] == [seen[0][1]]  # first, and once
        for name, lease in leases.items():
            lost = [(t, c) for t, c in seen if isinstance(c, Lost) and c.name == name]
            assert len(lost) == 1 and lost[0][1].reason == EXPIRED
            # not renewed since the outage: lost at until - safety (ticked on the grid: less than a STEP late)
            stop = lease.until - TIMINGS.safety
            assert stop <= lost[0][0] < stop + STEP, (name, lost, lease)
        assert cluster.keepers[node].held == {}
    backend.outage.restore()
    back = down + 2 * TTL
    cluster.run_until(back + TIMINGS.retry_every + TIMINGS.acquire_every + TIMINGS.defer + 2 * STEP)
    assert cluster.overlaps == []
    for node in ("n1", "n2"):
        seen = cluster.changes(node, back)
        assert seen and seen[0][1] == StoreUp()
    assert cluster.owner("ami:pbx1", cluster.step_index * STEP - STEP) == "n1"  # home again
    assert cluster.owner("ami:pbx2", cluster.step_index * STEP - STEP) == "n2"
    assert all(cluster.owner(name, cluster.step_index * STEP - STEP) for name in NAMES)


def test_preferred_leases_go_home_when_free_and_are_handed_back_once_the_home_has_run_a_ttl(
        backend: Backend) -> None:
    # The others look every step and tick first at an instant: the home wins by its preference (it tries every
    # prefer_every; they wait defer once they see it free), not by luck of the schedule.
    cluster = Cluster.of(backend.store, timings=KeeperTimings.for_ttl(TTL, acquire_every=STEP))
    cluster.home_last = True
    cluster.alive.discard("n1")  # n1 (home of ami:pbx1) not started yet
    cluster.run_until(TTL)
    away = cluster.owner("ami:pbx1", TTL - STEP)
    assert away in {"n2", "n3"}
    cluster.alive.add("n1")
    started = cluster.step_index * STEP
    cluster.run_until(started + TTL - 2 * STEP)
    assert cluster.owner("ami:pbx1", cluster.step_index * STEP - STEP) == away  # the home has not run a ttl yet
    cluster.run_until(started + TTL + TIMINGS.renew_every + 2 * TIMINGS.prefer_every)
    assert cluster.owner("ami:pbx1", cluster.step_index * STEP - STEP) == "n1"  # asked back, handed back
    assert cluster.overlaps == []
    assert [c for _, n, c in cluster.log if n == away and isinstance(c, Lost)] == [Lost("ami:pbx1", HANDED_BACK)]
    cluster.run_until(4 * TTL)
    assert cluster.owner("ami:pbx1", 4 * TTL - STEP) == "n1"
    cluster.alive.discard("n1")  # its home dies again: it goes away, and ...
    cluster.run_until(4 * TTL + TAKEOVER)
    away = cluster.owner("ami:pbx1", 4 * TTL + TAKEOVER - STEP)
    assert away in {"n2", "n3"}
    cluster.alive.add("n1")
    cluster.run_until(6 * TTL)
    assert cluster.owner("ami:pbx1", 6 * TTL - STEP) == "n1"  # ... comes back with it (the same keeper: thawed)
    # Its holder dies: both n1 (home) and the third node see it free; the home takes it.
    cluster.alive.discard("n1")
    cluster.run_until(6 * TTL + TAKEOVER)
    away = cluster.owner("ami:pbx1", 6 * TTL + TAKEOVER - STEP)
    cluster.alive.add("n1")
    cluster.alive.discard(away)
    dead = 6 * TTL + TAKEOVER
    cluster.run_until(dead + TAKEOVER)
    assert cluster.overlaps == []
    assert cluster.owner("ami:pbx1", dead + TAKEOVER - STEP) == "n1"


def test_a_graceful_release_hands_over_to_the_home_node(backend: Backend) -> None:
    cluster = Cluster.of(backend.store)
    cluster.alive.discard("n1")
    cluster.run_until(TTL)
    away = cluster.owner("ami:pbx1", TTL - STEP)
    assert away is not None
    cluster.alive.add("n1")
    cluster.run_until(2 * TTL)
    cluster.alive.discard(away)
    released = cluster.keepers[away].release_all()
    assert Lost("ami:pbx1", RELEASED) in released
    assert cluster.keepers[away].holds("ami:pbx1", 2 * TTL) is False
    cluster.run_until(2 * TTL + TIMINGS.prefer_every + 2 * STEP)  # no need to wait for the ttl
    assert cluster.owner("ami:pbx1", cluster.step_index * STEP - STEP) == "n1"
    assert cluster.overlaps == []


def test_a_home_asks_for_a_lease_back_only_while_another_node_holds_it(backend: Backend) -> None:
    store = backend.store
    store.ask("ami:pbx1", "n1", 0.0, 10.0)
    assert store.asked("ami:pbx1", 0.0) is None  # nobody holds it: nothing to ask back
    assert store.acquire("ami:pbx1", "n2", 0.0, 5.0) is not None
    store.ask("ami:pbx1", "n1", 1.0, 3.0)
    assert (store.asked("ami:pbx1", 2.0), store.asked("ami:pbx1", 3.0)) == ("n1", None)  # until 3.0
    store.ask("ami:pbx1", "n1", 3.0, 9.0)
    lease = store.holder("ami:pbx1", 3.0)
    assert lease is not None and store.release("ami:pbx1", "n2", lease.epoch)
    assert store.acquire("ami:pbx1", "n1", 3.5, 8.0) is not None
    assert store.asked("ami:pbx1", 4.0) is None  # a new holder: the ask is spent
    assert store.release("ami:pbx1", "n1", store.holder("ami:pbx1", 4.0).epoch)  # type: ignore[union-attr]
    store.ask("ami:pbx1", "n3", 4.5, 9.0)
    assert store.asked("ami:pbx1", 5.0) is None  # released: held by nobody


def test_a_lease_no_longer_wanted_is_released(backend: Backend) -> None:
    store = backend.store
    keeper = LeaseKeeper(store, "n1", ["pacer:c1", "ami:pbx1"], TIMINGS, prefer=["ami:pbx1", "pacer:c1"])
    assert [c for c in keeper.tick(0.0)] == [Gained("ami:pbx1", Lease("ami:pbx1", "n1", TTL, 1)),
                                             Gained("pacer:c1", Lease("pacer:c1", "n1", TTL, 1))]
    assert keeper.want(["ami:pbx1"], prefer=["ami:pbx1"]) == [Lost("pacer:c1", UNWANTED)]
    assert not keeper.holds("pacer:c1", 0.1) and keeper.holds("ami:pbx1", 0.1)
    assert store.holder("pacer:c1", 0.1) is not None  # released at the next tick, which is due now
    deadline = keeper.next_deadline()
    assert deadline is not None and deadline <= 0.1
    assert keeper.tick(0.1) == []
    assert store.holder("pacer:c1", 0.1) is None
    assert keeper.want([]) == [Lost("ami:pbx1", UNWANTED)]
    keeper.tick(TTL)  # past until: it lapsed by itself, nothing to release
    assert keeper.next_deadline() is None and store.holder("ami:pbx1", 0.2) is not None


def test_a_renewal_refused_is_lost_at_once(backend: Backend) -> None:
    store = backend.store
    keeper = LeaseKeeper(store, "n1", ["ami:pbx1"], TIMINGS, prefer=["ami:pbx1"])
    keeper.tick(0.0)
    assert store.release("ami:pbx1", "n1", 1)  # someone (an operator) freed it under the keeper
    store.acquire("ami:pbx1", "n2", 0.2, 5.0)
    deadline = keeper.next_deadline()
    assert deadline is not None and deadline == pytest.approx(TIMINGS.renew_every)
    assert keeper.tick(deadline) == [Lost("ami:pbx1", REFUSED)]
    assert not keeper.holds("ami:pbx1", deadline)


def test_non_home_leases_wait_for_defer_before_being_taken() -> None:
    keeper = LeaseKeeper(MemoryLeases(), "n3", ["pacer:c1"], TIMINGS)
    assert keeper.tick(0.0) == []  # seen free
    assert keeper.next_deadline() == pytest.approx(TIMINGS.defer)
    assert keeper.tick(TIMINGS.defer - 0.001) == []
    changes = keeper.tick(TIMINGS.defer)
    assert [type(c) for c in changes] == [Gained]


def test_a_lease_that_requires_another_is_taken_only_with_it_and_given_up_without_it() -> None:
    """A campaign's lease requires its PBX's: a node that does not hold the PBX never takes the campaign (it could
    not dial through it), and one that loses the PBX gives the campaign up."""
    store = MemoryLeases()
    requires = {"campaign:c1": "ami:pbx1"}
    n2 = LeaseKeeper(store, "n2", ["ami:pbx1", "campaign:c1"], TIMINGS, requires=requires)
    store.acquire("ami:pbx1", "n1", 0.0, 100.0)  # another node holds the PBX; the campaign is free
    for t in (0.0, TIMINGS.defer, 3 * TIMINGS.defer):
        assert n2.tick(t) == []
    assert store.holder("campaign:c1", 3 * TIMINGS.defer) is None
    home = LeaseKeeper(store, "n1", ["ami:pbx1", "campaign:c1"], TIMINGS, prefer=["ami:pbx1", "campaign:c1"],
                       requires=requires)
    assert [c.name for c in home.tick(1.0) if isinstance(c, Gained)] == ["ami:pbx1", "campaign:c1"]  # in one tick
    store.release("ami:pbx1", "n1", 1)
    store.acquire("ami:pbx1", "n2", 1.5, 100.0)  # (an operator moved the PBX)
    assert home.tick(TIMINGS.renew_every + 1.0) == [Lost("ami:pbx1", REFUSED), Lost("campaign:c1", UNWANTED)]


def test_take_acquires_a_free_wanted_lease_at_once() -> None:
    store = MemoryLeases()
    keeper = LeaseKeeper(store, "n3", ["ami:pbx1"], TIMINGS)
    assert keeper.take("ami:other", 0.0) == []  # not wanted
    assert [type(c) for c in keeper.take("ami:pbx1", 0.0)] == [Gained]  # no defer
    assert keeper.take("ami:pbx1", 0.1) == []  # held already


def test_timings_are_checked() -> None:
    with pytest.raises(ValueError):
        KeeperTimings.for_ttl(1.0, renew_every=0.95, safety=0.1)  # would lapse between renewals
    with pytest.raises(ValueError):
        KeeperTimings.for_ttl(0.0)
    with pytest.raises(ValueError):
        KeeperTimings.for_ttl(1.0, safety=-0.1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_crashes_restarts_and_outages_never_overlap(backend: Backend, seed: int) -> None:
    """Nodes crash (stop ticking) and come back (ticked late: their first tick drops what lapsed) and the store
    goes down and up, at random instants for 20 ttl; no lease is ever counted held by two nodes, and once all
    are up again every lease has exactly one holder within the takeover time."""
    import random

    rng = random.Random(seed)
    cluster = Cluster.of(backend.store)
    down = False
    t = 0.0
    while t < 20 * TTL:
        t += rng.uniform(0.1, 1.5) * TTL
        cluster.run_until(t)
        roll = rng.random()
        node = rng.choice(sorted(cluster.keepers))
        if roll < 0.2:
            (backend.outage.restore if down else backend.outage.cut)()
            down = not down
        elif node in cluster.alive and len(cluster.alive) > 1:
            cluster.alive.discard(node)
        else:
            cluster.alive.add(node)
    backend.outage.restore()
    cluster.alive.update(cluster.keepers)
    settled = cluster.step_index * STEP + TAKEOVER + TIMINGS.retry_every
    cluster.run_until(settled)
    assert cluster.overlaps == []
    assert all(cluster.owner(name, settled - STEP) is not None for name in NAMES)
    assert {type(c) for _, _, c in cluster.log} >= {Gained, Lost}
