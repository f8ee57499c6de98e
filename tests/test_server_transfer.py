"""Blind transfer to a queue through the real server and the simulated PBX (issue 11, item 6).

The transferring agent's part of the call ends (wrap-up, then a disposition of that part); the caller is
queued again as a new offer, with a full pop and call frames, to whichever agent the ACD picks; the
transferring agent is not offered the call while in wrap-up for it."""

from __future__ import annotations

from pathlib import Path

from acd.events import CallAnswered, CallOffered, QueueCallFinished
from tests.virtual_calls import CallBench


def _answered_by(bench: CallBench, agent: str) -> str:
    chan = bench.arrive(keys=("1",))
    bench.run(20)
    assert bench.state(agent) == "on_call", bench.server.acd.agent_snapshot(agent)
    return chan.uniqueid


def test_a_call_transferred_to_a_queue_is_offered_again_with_a_pop(tmp_path: Path) -> None:
    bench = CallBench(tmp_path)
    bench.ready("1003")  # sales only: takes the sales call
    uid = _answered_by(bench, "1003")
    call_id = bench.server.call_for_agent("1003").queued.call_id
    bench.ready("1002")  # support 3: a support agent
    mark = len(bench.pushed.frames)
    bench.act("1003", "transfer", call_id=call_id, to="queue", target="support")
    bench.run(5)
    offers = bench.of(CallOffered, uniqueid=uid)
    assert [o.agent_id for o in offers] == ["1003", "1002"]
    assert offers[-1].queue == "support"
    pops = bench.pushed.to("1002", "pop", mark)
    assert len(pops) == 1 and pops[0]["uniqueid"] == uid and pops[0]["queue"] == "support"
    calls = bench.pushed.to("1002", "call", mark)
    assert calls and calls[0]["status"] == "ringing" and calls[0]["call_id"] == call_id
    assert [c["status"] for c in bench.pushed.to("1003", "call", mark)] == ["ended"]
    assert bench.state("1003") == "wrap_up" and bench.state("1002") == "on_call"

    # the transferring agent disposes of the part of the call they handled
    reply = bench.act("1003", "dispose", call_id=call_id, disposition="resolved")
    assert reply["recorded"] is True and reply["state"]["state"] == "ready"
    [first] = bench.of(QueueCallFinished, uniqueid=uid)  # the queue record of the first agent's part
    assert (first.outcome, first.agent_id, first.queue) == ("answered", "1003", "sales")
    assert (first.overflow_action, first.overflow_target) == ("transferred", "support")
    assert bench.state("1002") == "on_call"  # the second agent's call goes on
    assert bench.server.call_for_agent("1002") is not None
    bench.act("1002", "hangup", call_id=call_id)
    bench.run(3)
    assert bench.state("1002") == "wrap_up"
    reply = bench.act("1002", "dispose", call_id=call_id, disposition="sale")
    assert reply["recorded"] is True

    store = bench.server.store
    parts = [store.get_interaction(f"sim/{call_id}"), store.get_interaction(f"sim/{call_id}/2")]
    assert [(p.agent_id, p.queue, p.disposition) for p in parts if p] == [
        ("1003", "sales", "resolved"), ("1002", "support", "sale")]
    bench.close()


def test_the_transferring_agent_is_not_offered_the_call_during_wrap_up(tmp_path: Path) -> None:
    """With nobody else for the queue, the call waits while its transferring agent is in wrap-up for it;
    once that agent is ready again it is offered like any call, with its pop."""
    bench = CallBench(tmp_path)
    bench.ready("1003")
    uid = _answered_by(bench, "1003")
    call_id = bench.server.call_for_agent("1003").queued.call_id
    mark = len(bench.pushed.frames)
    bench.act("1003", "transfer", call_id=call_id, to="queue", target="sales")
    bench.run(60)
    assert bench.state("1003") == "wrap_up"
    assert [o.agent_id for o in bench.of(CallOffered, uniqueid=uid)] == ["1003"]
    assert [c.uniqueid for q in ("sales",) for c in bench.server.acd.waiting_calls(q, bench.server.now())] == [uid]

    reply = bench.act("1003", "dispose", call_id=call_id, disposition="resolved")
    assert reply["recorded"] is True
    bench.run(5)
    assert [o.agent_id for o in bench.of(CallOffered, uniqueid=uid)] == ["1003", "1003"]
    pops = bench.pushed.to("1003", "pop", mark)
    assert len(pops) == 1 and pops[0]["uniqueid"] == uid
    assert [c["status"] for c in bench.pushed.to("1003", "call", mark)][-2:] == ["ringing", "connected"]
    assert len(bench.of(CallAnswered, uniqueid=uid)) == 2
    # the wrap-up timer of the first part does not end the second
    bench.run(200)
    assert bench.state("1003") == "on_call"
    assert bench.server.call_for_agent("1003") is not None
    bench.close()


def test_an_overflowed_call_is_offered_and_recorded_in_the_queue_it_overflowed_to(tmp_path: Path) -> None:
    """sales overflows to support after 20 s: the support agent's call frame and pop name support, not sales,
    and the answered interaction is support's."""
    from acd.settings import MaxWaitAction
    from tests.virtual_calls import bench_config

    url = f"sqlite:///{tmp_path / 'cti.sqlite3'}"
    cfg = bench_config(url)
    queues = [q.model_copy(update={"max_wait": 20.0, "on_max_wait": MaxWaitAction(overflow="support")})
              if q.name == "sales" else q for q in cfg.acd.queues]
    cfg = cfg.model_copy(update={"acd": cfg.acd.model_copy(update={"queues": queues})})
    bench = CallBench(tmp_path, url=url, cfg=cfg)
    chan = bench.arrive(keys=("1",))  # sales
    bench.run(30)  # nobody ready: overflowed to support
    mark = len(bench.pushed.frames)
    bench.ready("1002")  # sales 8, support 3
    bench.run(10)
    [offer] = bench.of(CallOffered, uniqueid=chan.uniqueid)
    assert (offer.agent_id, offer.queue) == ("1002", "support")
    calls = bench.pushed.to("1002", "call", mark)
    assert calls and {c["queue"] for c in calls} == {"support"}
    pops = bench.pushed.to("1002", "pop", mark)
    assert pops and pops[-1]["queue"] == "support"
    assert bench.state("1002") == "on_call"
    call_id = bench.server.call_for_agent("1002").queued.call_id
    bench.act("1002", "hangup", call_id=call_id)
    bench.run(3)
    assert bench.act("1002", "dispose", call_id=call_id, disposition="resolved")["recorded"] is True
    rows = bench.of(QueueCallFinished, uniqueid=chan.uniqueid)
    assert [(r.queue, r.outcome) for r in rows] == [("sales", "overflowed"), ("support", "answered")]
    part = bench.server.store.get_interaction(f"sim/{call_id}")
    assert part is not None and part.queue == "support"
    bench.close()
