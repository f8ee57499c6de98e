"""A server restart (or an AMI outage that swallowed the CTIQueued UserEvent) leaves no caller holding
forever: callers found in ``cti-hold`` by the resync are queued again and reach agents."""

from __future__ import annotations

from pathlib import Path

from acd.events import CallAbandoned, CallAnswered
from centre.demo import DEMO_EPOCH, CallLedger, build_virtual, log_in_agents, with_demo_callers
from centre.server import CtiServer
from config.load import load_config
from cti.events import CallQueued
from sim.memory_transport import MemoryConnector

DEMO = Path(__file__).resolve().parent.parent / "config" / "examples" / "demo.yaml"


def test_callers_holding_across_a_server_restart_are_routed() -> None:
    """With no agent logged in, callers pile up in cti-hold. The server is stopped and a new one started
    against the same PBX: it finds them in CoreShowChannels, reads their CTI_* variables with Getvar,
    queues them with their wait so far, and once agents log in every one of them is answered or abandons."""
    cfg = with_demo_callers(load_config(DEMO))
    cfg = cfg.model_copy(update={"dialer": cfg.dialer.model_copy(update={"campaigns": []})})
    stack = build_virtual(cfg, seed=9, login_agents=False)
    stack.clock.run_until(DEMO_EPOCH + 240)
    holding = {c.uniqueid for q in stack.server.acd.queue_stats(stack.server.now())
               for c in stack.server.acd.waiting_calls(q, stack.server.now())}
    assert len(holding) >= 2
    stack.server.stop()
    stack.clock.run_for(2.0)

    fresh = CtiServer(cfg, clock=stack.clock, ami_connector=lambda s, f: MemoryConnector(stack.net, s, f))
    seen: list[object] = []
    fresh.subscribe(seen.append)
    fresh.subscribe(CallLedger())
    fresh.start()
    stack.clock.run_for(5.0)
    requeued = {e.uniqueid: e for e in seen if isinstance(e, CallQueued)}
    still_there = holding & set(requeued)
    assert still_there, "no holding caller was queued again after the restart"
    for uid in still_there:
        event = requeued[uid]
        assert event.queue in ("sales", "support", "billing")
        assert event.ts < stack.clock.seconds() - 5.0  # the wait so far counts
    log_in_agents(fresh, exclude=())
    stack.clock.run_for(900.0)
    done = {e.uniqueid for e in seen if isinstance(e, CallAnswered | CallAbandoned)}
    assert still_there <= done
