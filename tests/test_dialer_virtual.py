"""The dialer end to end in virtual time: demo config + simulated PBX (AMD, busy, machines) + server + ACD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from centre.demo import DEMO_EPOCH, build_virtual
from config.load import load_config
from config.schema import CtiConfig
from cti.commands import Originate
from dialer.events import AttemptFinished, AttemptStarted

DEMO = Path(__file__).resolve().parent.parent / "config" / "examples" / "demo.yaml"


def _config(**campaign: Any) -> CtiConfig:
    """The demo config with quick retries and more busy numbers and machines than the defaults."""
    cfg = load_config(DEMO)
    c = cfg.dialer.campaigns[0]
    retry = c.retry_after.model_copy(update={"busy": 30.0, "machine": 60.0, "noanswer": 45.0, "congestion": 20.0})
    c = c.model_copy(update={"retry_after": retry, "max_attempts": 4, **campaign})
    outbound = cfg.sim.outbound.model_copy(update={"answer": 0.45, "busy": 0.2, "noanswer": 0.1, "congestion": 0.05,
                                                   "machine": 0.2})
    return cfg.model_copy(update={"dialer": cfg.dialer.model_copy(update={"campaigns": [c]}),
                                  "sim": cfg.sim.model_copy(update={"outbound": outbound})})


def test_campaign_runs_end_to_end() -> None:
    """In 15 virtual minutes the campaign dials, people reach sales agents, busies and machines are retried
    no sooner than retry_after says, no lead ever has two attempts at once, and inbound loses no call."""
    cfg = _config()
    stack = build_virtual(cfg, seed=3)
    events: list[Any] = []
    originates: list[Originate] = []
    stack.server.subscribe(lambda e: events.append(e) if isinstance(e, AttemptStarted | AttemptFinished) else None)
    apply = stack.server.dispatcher.apply

    def spy(command: Any) -> Any:
        if isinstance(command, Originate):
            originates.append(command)
        return apply(command)

    stack.server.dispatcher.apply = spy  # type: ignore[method-assign]
    stack.clock.run_until(DEMO_EPOCH + 900)

    started = [e for e in events if isinstance(e, AttemptStarted)]
    finished = [e for e in events if isinstance(e, AttemptFinished)]
    results = {e.result for e in finished}
    assert len(started) >= 20
    assert {"connected", "busy", "machine"} <= results, results
    # every Originate follows its AttemptStarted and goes to cti-outbound with the lead's variables
    assert [o.ref for o in originates] == [s.ref for s in started][:len(originates)]
    assert all(o.context == "cti-outbound" and o.variables["CTI_CAMPAIGN_QUEUE"] == "sales" for o in originates)
    # humans reached agents of the campaign's queue
    connected = [e for e in finished if e.result == "connected"]
    assert connected and all(e.agent_wait is not None and e.agent_wait >= 0 for e in connected)
    # never two attempts of one lead at once; retries respect retry_after
    open_now: set[str] = set()
    last_end: dict[str, AttemptFinished] = {}
    retried: set[str] = set()
    delays = cfg.dialer.campaigns[0].retry_after
    for e in events:
        if isinstance(e, AttemptStarted):
            assert e.lead_id not in open_now, f"lead {e.lead_id} dialled twice at once"
            open_now.add(e.lead_id)
            prev = last_end.get(e.lead_id)
            if prev is not None:
                assert e.ts >= prev.ts + delays.seconds(prev.result) - 1e-6
                retried.add(prev.result)
        else:
            open_now.discard(e.lead_id)
            last_end[e.lead_id] = e
    assert {"busy", "machine"} <= retried, retried
    # the campaign's queue calls went through the ACD; inbound accounting is untouched
    report = stack.ledger.account(stack.server)
    assert report["counts"]["lost"] == 0
    assert report["outbound"]["dialled"] == len(started)
    stack.sim.stop()
    stack.server.stop()


def test_agents_take_outbound_people_from_the_campaign_queue() -> None:
    """Every outbound person connected was answered by an agent meeting the sales queue's own requirement
    (people wait seconds, never long enough for the queue's expansion steps)."""
    from acd.events import CallAnswered

    cfg = _config()
    stack = build_virtual(cfg, seed=4)
    answered: list[CallAnswered] = []
    stack.server.subscribe(lambda e: answered.append(e) if isinstance(e, CallAnswered) else None)
    stack.clock.run_until(DEMO_EPOCH + 600)
    outbound = [a for a in answered if a.queue == "sales" and a.uniqueid in _outbound_uids(stack)]
    assert outbound
    sales = {a.id for a in cfg.acd.agents if a.skills.get("sales", 0) >= 3}  # the queue's own requirement
    assert {a.agent_id for a in outbound} <= sales
    stack.sim.stop()
    stack.server.stop()


def _outbound_uids(stack: Any) -> set[str]:
    return {uid for uid in stack.ledger.queued if uid not in stack.ledger.started}
