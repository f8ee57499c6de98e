"""Several nodes, one centre (#18): the ``node:`` section, ``cti serve --redis/--node``, and the leases wired into
the server: a single node holds every lease at start; with Redis, a dead node's PBX connection (resynced: its
holding callers queued again) and campaigns are taken over by another node."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from centre.cli import build_parser, serve_overrides
from centre.demo import DEMO_EPOCH, build_virtual, with_demo_callers
from centre.node_leases import lease_names
from centre.ops_http import Readiness
from centre.server import CtiServer
from centre.sim_pbx import build_sim
from config.load import ConfigError, load_config, load_config_text
from config.schema import CtiConfig, NodeSettings, RedisSettings
from cti.events import CallQueued
from cti.leases import Lease, LeaseStore, LeaseStoreDown
from dialer.events import AttemptFinished, AttemptStarted
from ivr.fastagi import FastAgiFactory
from sim.ami_server import AMIServerFactory
from sim.clock import VirtualClock
from sim.memory_transport import MemoryConnector, MemoryNetwork
from tests.conftest import REDIS_URL

DEMO = Path(__file__).resolve().parent.parent / "config" / "examples" / "demo.yaml"
SERVER = """asterisk:
  - {name: a, username: u, secret: s}
  - {name: b, username: u, secret: s, port: 5039}
"""


# ---------------------------------------------------------------------------------------------------- config
def issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "n.yaml")
    return [str(i) for i in info.value.issues]


def test_home_naming_an_unknown_server_is_an_error_with_its_key_and_the_known_names() -> None:
    found = issues(SERVER + "node:\n  home: [a, c]\n")
    assert found == ["n.yaml:5 node.home[1]: unknown Asterisk server 'c'; expected one of asterisk[].name (a, b)"]


@pytest.mark.parametrize("ttl", ["0.5", "1000", "fast"])
def test_a_lease_ttl_out_of_bounds_says_what_is_expected(ttl: str) -> None:
    found = issues(SERVER + f"node:\n  lease_ttl: {ttl}\n")
    assert len(found) == 1 and found[0].startswith("n.yaml:5 node.lease_ttl: expected a number of seconds 2-300")


def test_a_bad_node_id_is_refused_and_the_default_is_a_valid_one() -> None:
    assert issues(SERVER + "node:\n  id: 'no spaces'\n")[0].startswith(
        "n.yaml:5 node.id: expected a node id: letters, digits, _ . - (1-64 characters)")
    cfg = load_config_text(SERVER)
    assert cfg.node.home is None and cfg.node.lease_ttl == 10.0
    assert NodeSettings.model_validate({"id": cfg.node.id}).id == cfg.node.id  # hostname-pid is a valid id
    cfg = load_config_text(SERVER + "node: {id: n1, home: [b], lease_ttl: 4}\n")
    assert (cfg.node.id, cfg.node.home, cfg.node.lease_ttl) == ("n1", ["b"], 4.0)


def test_lease_names_prefer_the_home_servers_and_their_campaigns() -> None:
    cfg = load_config(DEMO)
    renewals = cfg.dialer.campaigns[0]
    servers = [cfg.asterisk[0].model_copy(update={"name": n}) for n in ("pa", "pb")]
    campaigns = [renewals, renewals.model_copy(update={"name": "later", "server": "pb"}),
                 renewals.model_copy(update={"name": "off", "enabled": False})]
    cfg = cfg.model_copy(update={"asterisk": servers, "node": NodeSettings(id="n", home=["pb"]),
                                 "dialer": cfg.dialer.model_copy(update={"campaigns": campaigns})})
    wanted, prefer = lease_names(cfg)
    assert wanted == ["ami:pa", "ami:pb", "campaign:renewals", "campaign:later"]  # a disabled campaign: no lease
    assert prefer == ["ami:pb", "campaign:later"]  # renewals dials through the first server, pa


def test_serve_redis_and_node_options_set_the_configuration() -> None:
    cfg = load_config_text(SERVER + "redis: {url: 'redis://h:1/0', prefix: p1}\n")
    args = build_parser().parse_args(["serve", "x.yaml", "--redis", "redis://other:6380/2", "--node", "n-2"])
    out = serve_overrides(cfg, redis_url=args.redis, node_id=args.node)
    assert out.redis is not None and (out.redis.url, out.redis.prefix) == ("redis://other:6380/2", "p1")
    assert out.node.id == "n-2"
    plain = serve_overrides(load_config_text(SERVER), redis_url="redis://h/0", node_id=None)
    assert plain.redis is not None and plain.redis.prefix == "cti" and plain.node == load_config_text(SERVER).node
    for bad in (["--node", "a b"], ["--redis", "http://h"]):
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(["serve", "x.yaml", *bad])
        assert info.value.code == 2


# ---------------------------------------------------------------------------------------------------- embedded
def test_a_single_node_holds_every_lease_at_start_and_connects_at_once() -> None:
    """Embedded (no redis:): the first tick, inside ``start``, takes every lease, so the PBX is being connected
    before any time passes and the campaign is paced as before."""
    stack = build_virtual(load_config(DEMO), seed=3)
    server = stack.server
    assert set(server.leases.keeper.held) == {"ami:sim", "campaign:renewals"}
    assert server.pool["sim"].state != "stopped"  # connecting already, at the start's own instant
    assert server.dialer is not None and server.dialer.paces("renewals")
    stack.clock.run_for(1.0)
    assert server.health.ami["sim"] and server.health.leases == ["ami:sim", "campaign:renewals"]
    assert server.health.lease_store is True and server.health.node == server.cfg.node.id
    stack.clock.run_for(120.0)  # renewed all along (ttl 10 s): never lost
    assert set(server.leases.keeper.held) == {"ami:sim", "campaign:renewals"}
    assert server.dialer.campaigns["renewals"].last_decision is not None  # paced as before
    server.stop()
    assert server.leases.keeper.held == {} and server.health.leases == []


def test_a_pbx_lost_and_gained_again_while_its_connection_closes_reconnects_only_if_still_wanted() -> None:
    stack = build_virtual(load_config(DEMO), seed=3)
    server, clock, pool = stack.server, stack.clock, stack.server.pool
    clock.run_for(2.0)
    assert server.health.ami["sim"]
    pool.stop_server("sim", "lease lost (refused)")
    assert not server.health.ami["sim"] and server.health.ami_detail["sim"] == "lease lost (refused)"  # at once
    assert pool["sim"].state == "stopping"
    pool.start_server("sim")  # gained again before the socket closed: connects once it has
    clock.run_for(5.0)
    assert server.health.ami["sim"]
    pool.stop_server("sim", "lease lost (expired)")
    pool.start_server("sim")
    pool.stop_server("sim", "lease lost (expired)")  # lost again: the start waiting for the close is dropped
    clock.run_for(5.0)
    assert not server.health.ami["sim"] and pool["sim"].state == "stopped"


def test_a_campaign_whose_lease_is_lost_starts_no_new_attempt_and_its_calls_in_flight_finish() -> None:
    stack = build_virtual(load_config(DEMO), seed=3)
    server, clock = stack.server, stack.clock
    seen: list[object] = []
    server.subscribe(seen.append)
    campaign = server.dialer.campaigns["renewals"] if server.dialer is not None else None
    assert campaign is not None
    deadline = clock.seconds() + 300.0
    while campaign.in_flight == 0 and clock.seconds() < deadline:
        clock.run_for(0.5)
    assert campaign.in_flight > 0, "the campaign never dialled"
    wanted, prefer = lease_names(server.cfg)
    keeper = server.leases.keeper
    server.leases.apply(keeper.want([n for n in wanted if n != "campaign:renewals"], prefer=prefer))
    in_flight = {e.ref for e in seen if isinstance(e, AttemptStarted)} - \
        {e.ref for e in seen if isinstance(e, AttemptFinished)}
    assert in_flight and not server.dialer.paces("renewals")  # type: ignore[union-attr]
    seen.clear()
    clock.run_for(180.0)
    assert not [e for e in seen if isinstance(e, AttemptStarted)]  # nothing new dialled
    assert in_flight <= {e.ref for e in seen if isinstance(e, AttemptFinished)}  # those in flight finished
    assert "campaign:renewals" not in keeper.held and "ami:sim" in keeper.held
    server.leases.apply(keeper.want(wanted, prefer=prefer))
    clock.run_for(60.0)  # held again at the next tick: dialled again
    assert "campaign:renewals" in keeper.held and [e for e in seen if isinstance(e, AttemptStarted)]


class Flaky:
    """A lease store that can be made unreachable (the test's switch), over a real one."""

    def __init__(self, store: LeaseStore) -> None:
        self.store = store
        self.down = False

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise LeaseStoreDown("lease store: test outage (ConnectionError)")
            return real(*args, **kwargs)

        return call


def test_a_lease_store_outage_stops_the_campaign_at_the_safe_end_and_keeps_tracking_the_pbx(
        caplog: pytest.LogCaptureFixture) -> None:
    """Redis gone: the campaign stops at the lease's safe end (two pacers must never dial one list), the PBX stays
    connected and its calls tracked (issue #18's degraded mode: routing waits for the shared pool); back, the node
    takes its leases again without reconnecting."""
    stack = build_virtual(load_config(DEMO), seed=3)
    server, clock = stack.server, stack.clock
    assert server.dialer is not None
    flaky = Flaky(server.leases.keeper.store)
    server.leases.keeper.store = flaky  # type: ignore[assignment]
    clock.run_for(30.0)
    assert server.health.ami["sim"] and server.tracker.channels("sim")
    since = server.health.ami_since["sim"]
    caplog.set_level(logging.WARNING, logger="centre.node_leases")
    flaky.down = True
    down_at = clock.seconds()
    clock.run_for(5.0)
    assert server.health.lease_store is False and "test outage" in server.health.lease_error
    report = asyncio.run(Readiness(server.health, engine=None, redis_url=None, timeout=1.0, cache=0.0).check())
    assert "leases" in report.down
    clock.run_for(10.0)  # past the safe end (ttl 10 s, safety 1 s)
    assert server.leases.keeper.held == {} and server.leases.kept == {"sim"}
    assert not server.dialer.paces("renewals")
    assert server.health.ami["sim"] and server.tracker.channels("sim")  # still connected, still tracked
    assert clock.seconds() - down_at < 16.0
    outage_lines = [r for r in caplog.records if "lease store is unreachable (" in r.getMessage()]
    assert len(outage_lines) == 1  # logged once, not at every retry
    flaky.down = False
    clock.run_for(3.0)  # the next retry takes them again (nobody else holds them)
    assert set(server.leases.keeper.held) == {"ami:sim", "campaign:renewals"} and server.health.lease_store
    clock.run_for(2.0)
    assert server.leases.kept == set() and server.dialer.paces("renewals")
    assert server.health.ami["sim"] and server.health.ami_since["sim"] == since  # never dropped


def test_a_pbx_kept_through_an_outage_is_handed_over_if_another_node_took_it_meanwhile() -> None:
    stack = build_virtual(load_config(DEMO), seed=3)
    server, clock = stack.server, stack.clock
    flaky = Flaky(server.leases.keeper.store)
    server.leases.keeper.store = flaky  # type: ignore[assignment]
    clock.run_for(30.0)
    flaky.down = True
    clock.run_for(15.0)
    assert server.leases.kept == {"sim"} and server.tracker.channels("sim")
    now = clock.seconds()  # another node, which still reached Redis, took the PBX after the lease lapsed
    assert flaky.store.acquire("ami:sim", "other", now, now + 60.0) is not None
    flaky.down = False
    clock.run_for(5.0)
    assert server.leases.kept == set() and "ami:sim" not in server.leases.keeper.held
    assert not server.health.ami["sim"] and "lease held by other" in server.health.ami_detail["sim"]
    assert server.tracker.channels("sim") == []  # the other node tracks them now


# ---------------------------------------------------------------------------------------------------- two nodes
@pytest.fixture()
def redis_prefix() -> Iterator[str]:
    prefix = f"test-node-leases-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on loopback")
    yield prefix
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def node_config(base: CtiConfig, prefix: str, node: str, home: str) -> CtiConfig:
    """The demo centre with two PBXs (pbxa, pbxb), a campaign on each, over Redis; this node at home on one."""
    a = base.asterisk[0]
    servers = [a.model_copy(update={"name": "pbxa", "port": 15038}),
               a.model_copy(update={"name": "pbxb", "port": 15039})]
    renewals = base.dialer.campaigns[0].model_copy(update={"server": "pbxa"})
    winback = renewals.model_copy(update={"name": "winback", "server": "pbxb"})
    return base.model_copy(update={
        "asterisk": servers, "redis": RedisSettings(url=REDIS_URL, prefix=prefix),
        "node": NodeSettings(id=node, home=[home], lease_ttl=10.0),
        "dialer": base.dialer.model_copy(update={"campaigns": [renewals, winback]})})


def test_a_dead_nodes_pbx_and_campaigns_are_taken_over_and_its_holding_callers_queued(redis_prefix: str) -> None:
    """Node A (home pbxa) and node B (home pbxb) share one Redis. Callers reach pbxa, go through A's IVR and
    wait (no agent is logged in). A dies (no lease released). Within ttl + the keeper's look and defer B holds
    ``ami:pbxa``, connects, resyncs and queues the callers still holding there; it holds A's campaign too."""
    base = with_demo_callers(load_config(DEMO))
    cfg_a = node_config(base, redis_prefix, "node-a", "pbxa")
    cfg_b = node_config(base, redis_prefix, "node-b", "pbxb")
    clock = VirtualClock(start=DEMO_EPOCH)
    net = MemoryNetwork(clock)
    sim_a = build_sim(cfg_a, clock, agi_connect=net.connect, pbx_name="pbxa", seed=4)
    sim_b = build_sim(cfg_b, clock, agi_connect=net.connect, pbx_name="pbxb", seed=5, inbound=False)
    net.listen("127.0.0.1", 15038, AMIServerFactory(sim_a.ami))
    net.listen("127.0.0.1", 15039, AMIServerFactory(sim_b.ami))

    def node(cfg: CtiConfig) -> tuple[CtiServer, list[object]]:
        server = CtiServer(cfg, clock=clock, ami_connector=lambda s, f: MemoryConnector(net, s, f))
        seen: list[object] = []
        server.subscribe(seen.append)
        return server, seen

    a, seen_a = node(cfg_a)
    b, seen_b = node(cfg_b)
    agi = cfg_a.listen.fastagi
    ivr_a = net.listen(agi.host, agi.port, FastAgiFactory(cfg_a.ivr, a.ivr_sink, clock=clock))
    a.start()
    b.start()
    try:
        assert set(a.leases.keeper.held) == {"ami:pbxa", "campaign:renewals"}
        assert set(b.leases.keeper.held) == {"ami:pbxb", "campaign:winback"}
        sim_a.driver.start()
        clock.run_for(90.0)
        # each node connected only to the PBX it holds, each paces only its campaign
        assert a.health.ami == {"pbxa": True, "pbxb": False} and b.health.ami == {"pbxa": False, "pbxb": True}
        assert a.health.ami_here == {"pbxa"} and b.health.ami_here == {"pbxb"}
        for n in (a, b):  # each is ready with the one link it holds (the other node's PBX is not its to hold)
            report = asyncio.run(Readiness(n.health, engine=None, redis_url=None, timeout=1.0, cache=0.0).check())
            assert report.ready and len(report.ami) == 1, report
        assert a.dialer is not None and b.dialer is not None
        assert (a.dialer.paces("renewals"), a.dialer.paces("winback")) == (True, False)
        assert (b.dialer.paces("renewals"), b.dialer.paces("winback")) == (False, True)
        now = clock.seconds()
        holding = {c.uniqueid for q in a.acd.queue_stats(now) for c in a.acd.waiting_calls(q, now)}
        assert len(holding) >= 2, "no caller is waiting at node A"
        assert not any(isinstance(e, CallQueued) and e.server == "pbxa" for e in seen_b)

        a.halt()  # killed: no lease released; its AMI socket closes, its IVR goes away with it
        ivr_a.stopListening()
        net.listen(agi.host, agi.port, FastAgiFactory(cfg_b.ivr, b.ivr_sink, clock=clock))
        died = clock.seconds()
        timings = b.leases.keeper.timings
        bound = timings.ttl + timings.acquire_every + timings.defer + 2.0
        seen_b.clear()
        while clock.seconds() < died + bound and not (
                b.health.ami.get("pbxa") and {"campaign:renewals", "ami:pbxa"} <= set(b.leases.keeper.held)
                and holding & {e.uniqueid for e in seen_b if isinstance(e, CallQueued)}):
            clock.run_for(0.5)
        took = clock.seconds() - died
        assert b.health.ami["pbxa"], f"node B did not connect to pbxa within {bound:.1f} s"
        assert set(b.leases.keeper.held) == {"ami:pbxa", "ami:pbxb", "campaign:renewals", "campaign:winback"}
        assert b.dialer.paces("renewals") and b.health.ami_here == {"pbxa", "pbxb"}
        assert took > timings.ttl - timings.renew_every - 1.0  # not before A's lease could have lapsed
        requeued = {e.uniqueid: e for e in seen_b if isinstance(e, CallQueued) and e.server == "pbxa"}
        still_there = holding & set(requeued)
        assert still_there, "no caller holding on pbxa was queued at node B"
        for uid in still_there:
            assert requeued[uid].ts < died  # their wait so far counts
        now = clock.seconds()
        waiting_b = {c.uniqueid for q in b.acd.queue_stats(now) for c in b.acd.waiting_calls(q, now)}
        assert still_there <= waiting_b
        lease = b.leases.keeper.held["ami:pbxa"]
        assert isinstance(lease, Lease) and lease.node == "node-b" and lease.epoch == 2  # a new holder: fenced
    finally:
        b.stop()
        a.stop()
        clock.run_for(5.0)
