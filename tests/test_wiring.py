"""The one wiring module (centre.wiring): every engine on the bus, in the order that keeps the effects of a
call's events as they were, and the dialer's view of idle agents as a read of the ACD."""

from __future__ import annotations

from pathlib import Path

from acd.events import AgentStateChanged, CallAnswered, CallOffered
from centre.call_log import InteractionWrite
from centre.call_log_feed import CallLogFeed, InteractionSink
from centre.demo import DEMO_EPOCH
from centre.server import CtiServer
from centre.wiring import IdleAgents
from config.load import load_config
from cti.bus import Engine
from cti.commands import CommandFailed
from cti.events import CallQueued
from ivr.events import IvrCompleted
from sim.clock import VirtualClock

DEMO = Path(__file__).resolve().parent.parent / "config" / "examples" / "demo.yaml"


def _server() -> CtiServer:
    cfg = load_config(DEMO)
    assert cfg.dialer.campaigns, "the demo config has a campaign: the dialer is on the bus"
    return CtiServer(cfg, clock=VirtualClock(start=DEMO_EPOCH))


def test_every_engine_is_an_engine_and_each_event_meets_them_in_order() -> None:
    server = _server()
    routes = server.bus.routes
    assert all(isinstance(e, Engine) for e in routes.engines)
    log_feed = next(e for e in routes.engines if isinstance(e, CallLogFeed))
    sink = next(e for e in routes.engines if isinstance(e, InteractionSink))
    kpi = server.components.kpi
    assert kpi is not None
    # the call log and the sessions see a caller before the ACD decides; the pops after the dialer; the
    # statistics after them (they count what the others did)
    assert routes.for_type(CallQueued) == (log_feed, server.sessions, server.acd, server.dialer, server.pops, kpi)
    # the call frame, then the dialer, then the pop (all before the OfferCall that follows CallOffered); the
    # metrics' counters last (they only count)
    assert routes.for_type(CallOffered) == (server.sessions, server.dialer, server.pops, kpi, server.event_counts)
    assert routes.engines[-1] is server.event_counts and server.event_counts not in routes.for_type(CallQueued)
    assert routes.for_type(CallAnswered)[:2] == (log_feed, server.sessions)
    assert routes.for_type(CommandFailed) == (server.acd, server.recordings, server.dialer)
    # the recordings after the sessions: the session numbers the agent's part its file is named by
    answered = routes.for_type(CallAnswered)
    assert answered.index(server.sessions) < answered.index(server.recordings)
    assert routes.for_type(IvrCompleted)[:2] == (server.ivr_sessions, log_feed)
    assert routes.for_type(InteractionWrite) == (sink,)
    assert server.pops in routes.for_type(AgentStateChanged)


def test_idle_agents_counts_the_ready_agents_a_campaign_queue_may_use() -> None:
    server = _server()
    queue = server.cfg.dialer.campaigns[0].queue
    idle = IdleAgents(server.acd)
    assert idle(queue) == 0
    now = server.now()
    counted = 0
    for agent in server.cfg.acd.agents:
        server.apply(server.acd.login(agent.id, None, now))
        assert idle(queue) == counted  # logged in is not ready
        server.apply(server.acd.ready(agent.id, now))
        assert idle(queue) in (counted, counted + 1)
        counted = idle(queue)
    assert 0 < counted <= len(server.cfg.acd.agents)
    assert idle("no-such-queue") == 0
