"""Leases for several nodes: the lease, the store protocol, the in-memory store and the per-node keeper."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

# Why a node stopped counting a lease held (``Lost.reason``).
EXPIRED = "expired"  # not renewed in time: the node stopped at until minus the safety margin
REFUSED = "refused"  # the store refused the renewal (another holder, or a newer epoch: fenced off)
RELEASED = "released"  # given up on purpose (shutdown)
UNWANTED = "unwanted"  # no longer in the node's wanted set
HANDED_BACK = "handed back"  # its home node, up again, asked for it (``LeaseStore.ask``)


class LeaseStoreDown(Exception):
    """The lease store could not be reached (or answered with an error): the message names no secret."""


@dataclass(frozen=True)
class Lease:
    """``name`` held by ``node`` until ``until`` (exclusive: at ``until`` it is free). ``epoch`` increases on
    every change of holder: a fencing token that a stale holder's renew or release cannot match."""

    name: str
    node: str
    until: float
    epoch: int


class LeaseStore(Protocol):
    """Leases shared by the nodes. Synchronous; the caller's ``now`` judges expiry (the nodes' clocks must
    agree to within a keeper's safety margin). Unavailability is raised as ``LeaseStoreDown``."""

    def acquire(self, name: str, node: str, now: float, until: float) -> Lease | None:
        """Take ``name`` if free, expired at ``now`` or already ours (then renew it, same epoch); a new holder
        gets the previous epoch + 1. None: someone else holds it."""
        ...

    def renew(self, name: str, node: str, epoch: int, now: float, until: float) -> Lease | None:
        """Extend to ``until``, only for the current holder with this epoch whose lease has not expired."""
        ...

    def release(self, name: str, node: str, epoch: int) -> bool:
        """Give ``name`` up (only the current holder with this epoch); the epoch counter is kept."""
        ...

    def holder(self, name: str, now: float) -> Lease | None:
        """The live lease on ``name`` at ``now``, if any."""
        ...

    def leases(self, prefix: str, now: float) -> list[Lease]:
        """The live leases whose names start with ``prefix``, by name."""
        ...

    def ask(self, name: str, node: str, now: float, until: float) -> None:
        """``node``, the home of ``name``, asks for it back until ``until`` (another node holds it: it took it
        over while ``node`` was down); nothing if nobody holds ``name``."""
        ...

    def asked(self, name: str, now: float) -> str | None:
        """The node that asks for ``name`` back at ``now``, if any."""
        ...


def check_span(now: float, until: float) -> None:
    """A lease must end after it is taken (and at a finite time)."""
    if not (math.isfinite(now) and math.isfinite(until) and until > now):
        raise ValueError(f"a lease must end after now (now={now!r}, until={until!r})")


class MemoryLeases:
    """The embedded store (one process): the reference semantics every ``LeaseStore`` keeps."""

    def __init__(self) -> None:
        self._leases: dict[str, Lease] = {}
        self._epochs: dict[str, int] = {}  # kept after a release, so that epochs never repeat
        self._asks: dict[str, tuple[str, float]] = {}  # name -> (the home node asking for it back, until)

    def acquire(self, name: str, node: str, now: float, until: float) -> Lease | None:
        check_span(now, until)
        current = self._leases.get(name)
        if current is not None and now < current.until:
            if current.node != node:
                return None
            lease = replace(current, until=until)
        else:
            lease = Lease(name, node, until, self._epochs.get(name, 0) + 1)
            self._epochs[name] = lease.epoch
            self._asks.pop(name, None)  # a new holder: whoever asked has it, or asks again
        self._leases[name] = lease
        return lease

    def renew(self, name: str, node: str, epoch: int, now: float, until: float) -> Lease | None:
        check_span(now, until)
        current = self._leases.get(name)
        if current is None or current.node != node or current.epoch != epoch or now >= current.until:
            return None
        lease = replace(current, until=until)
        self._leases[name] = lease
        return lease

    def release(self, name: str, node: str, epoch: int) -> bool:
        current = self._leases.get(name)
        if current is None or current.node != node or current.epoch != epoch:
            return False
        del self._leases[name]
        return True

    def holder(self, name: str, now: float) -> Lease | None:
        current = self._leases.get(name)
        return current if current is not None and now < current.until else None

    def leases(self, prefix: str, now: float) -> list[Lease]:
        return sorted((lease for name, lease in self._leases.items() if name.startswith(prefix)
                       and now < lease.until), key=lambda lease: lease.name)

    def ask(self, name: str, node: str, now: float, until: float) -> None:
        if self.holder(name, now) is not None:
            self._asks[name] = (node, until)

    def asked(self, name: str, now: float) -> str | None:
        ask = self._asks.get(name)
        return ask[0] if ask is not None and now < ask[1] else None


@dataclass(frozen=True)
class Gained:
    """This node now holds ``name`` (act on it: connect, resync, pace)."""

    name: str
    lease: Lease


@dataclass(frozen=True)
class Lost:
    """This node no longer holds ``name``: stop acting on it now (``reason``: EXPIRED, REFUSED, ...)."""

    name: str
    reason: str


@dataclass(frozen=True)
class StoreDown:
    """The store failed (reported once per outage); held leases are kept only until their safe end."""

    error: str


@dataclass(frozen=True)
class StoreUp:
    """The store answered again after a ``StoreDown``."""


LeaseChange = Gained | Lost | StoreDown | StoreUp


@dataclass(frozen=True)
class KeeperTimings:
    """A keeper's clock, in seconds. ``ttl``: each lease's length; ``renew_every`` (ttl/3); ``acquire_every``
    (ttl/2): how often free leases are tried; ``safety`` (ttl/10): a lease counts as held only until
    ``until - safety`` (covers clock skew between nodes and a tick's lateness); ``prefer_every``
    (ttl/8): how often the preferred (home) leases are tried while someone else holds them; ``defer``
    (1.5 prefer_every): how long a lease must be seen free before a node that is not its home takes it,
    so that a live home wins; ``retry_every`` (renew_every/2): after a store failure, when to try again. A home
    node asks for its leases held by others back (``LeaseStore.ask``) once it has run for a ``ttl`` (a home
    that fails again at once does not pull its PBXs back and forth); the holder gives one back at its next
    renewal."""

    ttl: float
    renew_every: float
    acquire_every: float
    safety: float
    prefer_every: float
    defer: float
    retry_every: float

    @classmethod
    def for_ttl(cls, ttl: float, *, renew_every: float | None = None, acquire_every: float | None = None,
                safety: float | None = None, prefer_every: float | None = None, defer: float | None = None,
                retry_every: float | None = None) -> KeeperTimings:
        renew = ttl / 3 if renew_every is None else renew_every
        prefer = ttl / 8 if prefer_every is None else prefer_every
        timings = cls(ttl=ttl, renew_every=renew,
                      acquire_every=ttl / 2 if acquire_every is None else acquire_every,
                      safety=ttl / 10 if safety is None else safety, prefer_every=prefer,
                      defer=1.5 * prefer if defer is None else defer,
                      retry_every=renew / 2 if retry_every is None else retry_every)
        timings.check()
        return timings

    def check(self) -> None:
        positive = (self.ttl, self.renew_every, self.acquire_every, self.prefer_every, self.retry_every)
        if not all(math.isfinite(v) and v > 0 for v in positive) or self.safety < 0 or self.defer < 0:
            raise ValueError("lease timings must be positive (safety and defer: not negative)")
        if self.renew_every + self.safety >= self.ttl:
            raise ValueError("renew_every + safety must be shorter than the ttl, or a lease lapses between "
                             "renewals")


class LeaseKeeper:
    """One node's leases over a wanted set, as a pure state machine: ``tick(now)`` makes the store calls that
    are due and returns what changed. The node acts on a lease only while ``holds(name, now)``: a lease not
    renewed counts as lost at ``until - safety``, before the store lets another node take it at ``until``.
    A free lease is acquired by its home (``prefer``) at once; by any other node only after it has been seen
    free for ``defer``, so a live home wins. A home lease another node holds (it took it over while this node
    was down) is asked back once this node has run for a ``ttl``: that node gives it up (``Lost``,
    ``HANDED_BACK``) at its next renewal and this one takes it. Store failures (``LeaseStoreDown``) are a
    ``StoreDown``; the keeper retries every ``retry_every`` and keeps its leases meanwhile only until their safe
    end."""

    def __init__(self, store: LeaseStore, node: str, wanted: Iterable[str], timings: KeeperTimings, *,
                 prefer: Iterable[str] = (), requires: Mapping[str, str] | None = None) -> None:
        """``requires``: lease -> the lease this node must hold to hold it (a campaign's, its PBX's: a pacer
        dials only through a PBX it is connected to); it is taken only then, and given up when that one is lost."""
        timings.check()
        self._requires = dict(requires or {})
        self.store = store
        self.node = node
        self.timings = timings
        self._wanted: set[str] = set()
        self._prefer: set[str] = set()
        self._held: dict[str, Lease] = {}
        self._renew_at: dict[str, float] = {}
        self._seen_free: dict[str, float] = {}  # not preferred: first seen free at
        self._prefer_at = -math.inf
        self._acquire_at = -math.inf
        self._retry_at: float | None = None  # the store is down: no calls before this
        self._store_up = True
        self._answered = False  # a store call answered during this tick
        self._to_release: dict[str, Lease] = {}  # no longer wanted: to be released
        self._ask_from: float | None = None  # when this node may ask for its home leases back (first tick + ttl)
        self._handed: dict[str, float] = {}  # handed back to their home: not taken again here before then
        self.want(wanted, prefer=prefer)

    # ---- reads
    @property
    def held(self) -> dict[str, Lease]:
        """The leases held as of the last tick (a copy). Act only while ``holds(name, now)``."""
        return dict(self._held)

    @property
    def store_up(self) -> bool:
        return self._store_up

    def holds(self, name: str, now: float) -> bool:
        """Whether this node may act on ``name`` at ``now`` (held, and before its safe end)."""
        lease = self._held.get(name)
        return lease is not None and now < self.stop_at(lease)

    def stop_at(self, lease: Lease) -> float:
        """When this node stops counting ``lease`` held if it is not renewed."""
        return lease.until - self.timings.safety

    def next_deadline(self) -> float | None:
        """When ``tick`` next has work (None: nothing wanted and nothing held)."""
        times = [self.stop_at(lease) for lease in self._held.values()]
        if self._retry_at is not None:
            times.append(self._retry_at)
        else:
            times.extend(self._renew_at.values())
            if self._to_release:
                times.append(-math.inf)
            if self._wanted_free(self._prefer):
                times.append(self._prefer_at)
            others = self._wanted_free(self._wanted - self._prefer)
            if others:
                times.append(self._acquire_at)
                times.extend(self._seen_free[n] + self.timings.defer for n in others if n in self._seen_free)
        return min(times) if times else None

    # ---- changes of what is wanted
    def want(self, wanted: Iterable[str], *, prefer: Iterable[str] = ()) -> list[LeaseChange]:
        """Replace the wanted set (``prefer``: those of it this node is home of; other names are ignored). A
        held lease no longer wanted is lost at once (returned: stop acting on it) and released at the next
        tick."""
        self._wanted = set(wanted)
        self._prefer = set(prefer) & self._wanted
        self._seen_free = {n: t for n, t in self._seen_free.items() if n in self._wanted - self._prefer}
        self._prefer_at = -math.inf
        changes: list[LeaseChange] = []
        for name in sorted(set(self._held) - self._wanted):
            self._to_release[name] = self._held[name]
            self._drop(name)
            changes.append(Lost(name, UNWANTED))
        return changes

    def release_all(self) -> list[LeaseChange]:
        """Give every lease up (shutdown): Lost(RELEASED) for each; store failures are ignored (the leases
        lapse at their ``until``)."""
        changes: list[LeaseChange] = []
        for name in sorted(self._held):
            lease = self._held[name]
            self._drop(name)
            changes.append(Lost(name, RELEASED))
            self._to_release[name] = lease
        self._wanted.clear()
        self._prefer.clear()
        self._seen_free.clear()
        for name, lease in sorted(self._to_release.items()):
            try:
                self.store.release(name, self.node, lease.epoch)
            except LeaseStoreDown:
                pass
        self._to_release.clear()
        return changes

    def take(self, name: str, now: float) -> list[LeaseChange]:
        """Acquire ``name`` now if it is free, as its home would, without waiting for ``defer``: a lease this node
        has the best claim to (a PBX it stayed connected to through a store outage). Nothing if it is not wanted,
        held already, or the store fails (the next tick says so)."""
        changes: list[LeaseChange] = []
        if name in self._wanted and name not in self._held:
            try:
                self._try_acquire(name, now, changes)
            except LeaseStoreDown:
                pass
        return changes

    # ---- the clock
    def tick(self, now: float) -> list[LeaseChange]:
        """First drop (Lost, EXPIRED) every lease past its safe end, before any store call; then, unless
        waiting to retry a failed store, release the unwanted, renew what is due, try the free preferred
        leases, look at (and after ``defer`` take) the free others."""
        changes: list[LeaseChange] = []
        for name in sorted(self._held):
            if now >= self.stop_at(self._held[name]):
                self._drop(name)
                changes.append(Lost(name, EXPIRED))
        if self._retry_at is not None and now < self._retry_at:
            return changes
        if self._ask_from is None:
            self._ask_from = now + self.timings.ttl
        self._answered = False
        try:
            self._release_unwanted(now)
            self._renew_due(now, changes)
            if now >= self._prefer_at and self._wanted_free(self._prefer):
                self._prefer_at = now + self.timings.prefer_every
                for name in sorted(self._wanted_free(self._prefer)):  # (ami: before campaign:, which needs it)
                    if self._may_take(name):
                        self._try_acquire(name, now, changes)
                        if name not in self._held and now >= self._ask_from:  # another node holds it: ask back
                            self.store.ask(name, self.node, now, now + self.timings.ttl)
            self._acquire_others(now, changes)
            self._drop_unsupported(changes)
        except LeaseStoreDown as exc:
            self._retry_at = now + self.timings.retry_every
            self._prefer_at = self._acquire_at = -math.inf  # once it answers, look at everything at once
            if self._store_up:
                self._store_up = False
                changes.append(StoreDown(str(exc) or exc.__class__.__name__))
            return changes
        self._retry_at = None
        if not self._store_up and self._answered:
            self._store_up = True
            changes.insert(0, StoreUp())
        return changes

    # ---- steps
    def _wanted_free(self, names: set[str]) -> set[str]:
        return {n for n in names if n not in self._held}

    def _may_take(self, name: str) -> bool:
        """Whether the lease ``name`` requires (if any) is held by this node."""
        required = self._requires.get(name)
        return required is None or required in self._held

    def _drop_unsupported(self, changes: list[LeaseChange]) -> None:
        """Give up (at the next tick) a held lease whose required lease this node no longer holds."""
        for name in sorted(n for n in self._held if not self._may_take(n)):
            self._to_release[name] = self._held[name]
            self._drop(name)
            changes.append(Lost(name, UNWANTED))

    def _drop(self, name: str) -> None:
        del self._held[name]
        self._renew_at.pop(name, None)

    def _release_unwanted(self, now: float) -> None:
        for name in sorted(self._to_release):
            lease = self._to_release[name]
            if now < lease.until:  # (past until it has lapsed by itself)
                self.store.release(name, self.node, lease.epoch)
                self._answered = True
            del self._to_release[name]

    def _renew_due(self, now: float, changes: list[LeaseChange]) -> None:
        for name in sorted(n for n, at in self._renew_at.items() if now >= at):
            lease = self._held[name]
            renewed = self.store.renew(name, self.node, lease.epoch, now, now + self.timings.ttl)
            self._answered = True
            if renewed is None:
                self._drop(name)
                changes.append(Lost(name, REFUSED))
            elif name not in self._prefer and self.store.asked(name, now) not in (None, self.node):
                self._drop(name)  # its home is back and asks for it
                changes.append(Lost(name, HANDED_BACK))
                self.store.release(name, self.node, renewed.epoch)
                self._handed[name] = now + self.timings.ttl
            else:
                self._held[name] = renewed
                self._renew_at[name] = now + self.timings.renew_every

    def _try_acquire(self, name: str, now: float, changes: list[LeaseChange]) -> None:
        lease = self.store.acquire(name, self.node, now, now + self.timings.ttl)
        self._answered = True
        if lease is not None:
            self._held[name] = lease
            self._renew_at[name] = now + self.timings.renew_every
            self._seen_free.pop(name, None)
            changes.append(Gained(name, lease))

    def _acquire_others(self, now: float, changes: list[LeaseChange]) -> None:
        """Leases this node is not home of: look on each round; take one seen free for ``defer``."""
        for name in [n for n, until in self._handed.items() if now >= until]:
            del self._handed[name]
        others = {n for n in self._wanted_free(self._wanted - self._prefer) if self._may_take(n)
                  and n not in self._handed}
        due = {n for n in others if n in self._seen_free and now >= self._seen_free[n] + self.timings.defer}
        look = now >= self._acquire_at
        if look:
            self._acquire_at = now + self.timings.acquire_every
        for name in sorted(others):
            if name in due:
                self._try_acquire(name, now, changes)
                self._seen_free.pop(name, None)  # taken, or someone else (its home) was quicker
            elif look:
                free = self.store.holder(name, now) is None
                self._answered = True
                if free:
                    self._seen_free.setdefault(name, now)
                    if self.timings.defer <= 0:
                        self._try_acquire(name, now, changes)
                else:
                    self._seen_free.pop(name, None)
