"""This node's leases (``cti.leases.LeaseKeeper``): which Asterisk connections and campaigns it holds, and what it
does when that changes (connect or drop a PBX, pace a campaign or stop, the store's health).

Lease names: ``ami:<server>`` for every ``asterisk:`` entry and ``campaign:<name>`` for every enabled campaign.
The node is home of (``prefer``) the servers of ``node.home`` (default: all) and the campaigns that dial through
them. Embedded (no ``redis:``) the store is a ``MemoryLeases`` of the process's own: the first tick, at start,
takes every lease at once, so a single node runs as it always did; with ``redis:`` it is ``RedisLeases`` shared
by the nodes, and a dead node's leases lapse after ``node.lease_ttl`` for another node to take (its PBX
connection with the resync that re-queues the callers found holding, its campaigns).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from centre.pbx_links import PbxLinks
from config.schema import CtiConfig
from cti.leases import (
    Gained,
    KeeperTimings,
    LeaseChange,
    LeaseKeeper,
    LeaseStore,
    LeaseStoreDown,
    Lost,
    MemoryLeases,
    StoreDown,
    StoreUp,
)
from dialer.shell import Dialer

log = logging.getLogger("centre.node_leases")

AMI = "ami:"
CAMPAIGN = "campaign:"


def lease_names(cfg: CtiConfig) -> tuple[list[str], list[str]]:
    """(wanted, preferred) lease names of a configuration: every Asterisk connection and enabled campaign; the
    preferred are those of the node's home servers and of the campaigns dialling through them."""
    servers = [s.name for s in cfg.asterisk]
    home = set(cfg.node.home_of(servers))
    wanted = [AMI + s for s in servers]
    prefer = [AMI + s for s in servers if s in home]
    first = servers[0] if servers else ""
    for c in cfg.dialer.campaigns:
        if c.enabled:
            wanted.append(CAMPAIGN + c.name)
            if (c.server or first) in home:
                prefer.append(CAMPAIGN + c.name)
    return wanted, prefer


def lease_requirements(cfg: CtiConfig) -> dict[str, str]:
    """Each enabled campaign's lease -> its PBX's: a node paces a campaign only while it holds the connection the
    campaign dials through (the dialer dials only through a connected PBX)."""
    first = cfg.asterisk[0].name if cfg.asterisk else ""
    return {CAMPAIGN + c.name: AMI + (c.server or first) for c in cfg.dialer.campaigns if c.enabled}


def lease_store(cfg: CtiConfig) -> LeaseStore:
    """``RedisLeases`` (keys ``<redis.prefix>:lease:<name>``) with ``redis:``, else the process's own
    ``MemoryLeases``."""
    if cfg.redis is None:
        return MemoryLeases()
    from centre.redis_leases import RedisLeases  # only with Redis
    from centre.redis_link import redis_key, redis_sync_client

    return RedisLeases(redis_sync_client(cfg.redis), redis_key(cfg.redis, "lease"))


class NodeLeases:
    """Ticks the keeper on the server's clock (``start``, ``tick``, ``next_deadline``) and acts on its changes:
    ``ami:`` gained -> the pool connects (the on-connect resync is the takeover), lost -> it disconnects at once
    and the PBX's tracked channels end here (``PbxLinks.hand_over``), except when the lease lapsed because the
    store could not be reached: then the PBX stays connected and tracked (``kept``) until the store answers and
    says another node took it meanwhile (handed over then) or this node takes it back; ``campaign:`` -> the
    dialer paces only the campaigns held; the store's outages are logged once and shown in ``health``
    (wallboard, ``/healthz``, ``/readyz``)."""

    def __init__(self, keeper: LeaseKeeper, *, links: PbxLinks, dialer: Dialer | None, shared: bool) -> None:
        self.keeper = keeper
        self.links = links
        self.pool = links.pool
        self.dialer = dialer
        self.health = health = links.health
        self.shared = shared  # several nodes (Redis): a lease gained is worth an INFO line
        # PBXs whose lease lapsed while the store was unreachable: still connected, their calls still tracked
        # (routing waits for the shared pool anyway), until the store answers and says who holds them now
        self.kept: set[str] = set()
        health.node = keeper.node

    @classmethod
    def for_config(cls, cfg: CtiConfig, *, links: PbxLinks, dialer: Dialer | None,
                   store: LeaseStore | None = None) -> NodeLeases:
        wanted, prefer = lease_names(cfg)
        keeper = LeaseKeeper(store if store is not None else lease_store(cfg), cfg.node.id, wanted,
                             KeeperTimings.for_ttl(cfg.node.lease_ttl), prefer=prefer,
                             requires=lease_requirements(cfg))
        return cls(keeper, links=links, dialer=dialer, shared=cfg.redis is not None)

    def holds(self, name: str, now: float) -> bool:
        return self.keeper.holds(name, now)

    def start(self, now: float) -> None:
        """The first tick: take the leases that are free (embedded: all of them) and connect to their PBXs."""
        if self.dialer is not None:
            self.dialer.set_held(())  # nothing is paced before its lease is held
        self.tick(now)

    def tick(self, now: float) -> None:
        self.apply(self.keeper.tick(now))
        if self.kept and self.keeper.store_up:
            self._settle_kept(now)

    def _settle_kept(self, now: float) -> None:
        """The store answers again: a PBX kept through the outage that another node took meanwhile is handed
        over now; one nobody holds this node takes back at once (it is connected to it: no other node, which would
        take it only after seeing it free for a while, must win it and make it change hands)."""
        for server in sorted(self.kept):
            try:
                holder = self.keeper.store.holder(AMI + server, now)
            except LeaseStoreDown:
                return
            if holder is None:
                self.apply(self.keeper.take(AMI + server, now))
            elif holder.node != self.keeper.node:
                self.kept.discard(server)
                log.warning("%s: %s is held by %s now: handing it over", self.keeper.node, server, holder.node)
                self.pool.stop_server(server, f"lease held by {holder.node}")
                self.links.hand_over(server)

    def next_deadline(self) -> float | None:
        return self.keeper.next_deadline()

    def release(self) -> None:
        """Clean shutdown: give every lease up so that another node takes them at once (the pool is stopped by
        the server)."""
        for change in self.keeper.release_all():
            log.debug("%s: released %s", self.keeper.node, getattr(change, "name", ""))
        self._show()

    def apply(self, changes: Iterable[LeaseChange]) -> None:
        node = self.keeper.node
        for change in changes:
            if isinstance(change, Gained):
                log.log(logging.INFO if self.shared else logging.DEBUG, "%s: holds %s (epoch %d)", node,
                        change.name, change.lease.epoch)
                if change.name.startswith(CAMPAIGN) and self.dialer is not None and (
                        self.shared or change.lease.epoch > 1):
                    # if it changed hands, the last holder may have dialled leads this node still takes for pending;
                    # with several nodes, the attempts left open by a node that no longer paces it are resolved here
                    self.dialer.take_over(change.name.removeprefix(CAMPAIGN), changed_hands=change.lease.epoch > 1)
                if change.name.startswith(AMI):
                    server = change.name.removeprefix(AMI)
                    if server in self.kept:  # kept connected through an outage: nothing to start
                        self.kept.discard(server)
                    else:
                        self.pool.start_server(server)
            elif isinstance(change, Lost):
                log.warning("%s: lost %s (%s)%s", node, change.name, change.reason,
                            "" if self.keeper.store_up else ": the lease store is unreachable")
                if change.name.startswith(AMI):
                    server = change.name.removeprefix(AMI)
                    if not self.keeper.store_up:
                        # Redis is gone: no node can take the lease meanwhile unless it still reaches Redis, and
                        # this node makes no routing decision without the shared pool: it goes on tracking the
                        # PBX's calls (issue #18's degraded mode) and settles who holds it when the store is back
                        self.kept.add(server)
                        log.warning("%s: keeps tracking %s's calls while the lease store is unreachable", node,
                                    server)
                        continue
                    self.pool.stop_server(server, f"lease lost ({change.reason})")
                    self.links.hand_over(server)
            elif isinstance(change, StoreDown):
                log.error("%s: the lease store is unreachable (%s); leases held are kept until their safe end, "
                          "retrying", node, change.error)
                self.health.lease_error = change.error
            elif isinstance(change, StoreUp):
                log.warning("%s: the lease store answers again", node)
                self.health.lease_error = ""
        self._show()

    def _show(self) -> None:
        """The held set onto the dialer and the health (wallboard, ``/healthz``, ``/readyz``)."""
        held = sorted(self.keeper.held)
        self.health.leases = held
        self.health.lease_store = self.keeper.store_up
        self.health.ami_here = {n.removeprefix(AMI) for n in held if n.startswith(AMI)}
        if self.dialer is not None:
            self.dialer.set_held(n.removeprefix(CAMPAIGN) for n in held if n.startswith(CAMPAIGN))
