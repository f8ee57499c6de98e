"""Every call that reached us has a record with its end (issue 11, item 7), through the real server and
the simulated PBX: ``customer_interactions`` holds one row per call (IVR outcomes included) with its
``ended_at``, and outbound calls are recorded under the customer's number, not the campaign's caller ID."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from acd.events import CallAnswered
from cti.events import CallEnded
from dialer.events import AttemptFinished
from ivr.events import IvrCompleted
from tests.virtual_calls import CallBench

FLOWS = {
    "xfer": {"start": "out", "nodes": {"out": {"kind": "transfer", "dial": "PJSIP/+15557770000@trunk"}}},
    "vm": {"start": "box", "nodes": {"box": {"kind": "voicemail", "box": "100@default"}}},
    "bye": {"start": "end", "nodes": {"end": {"kind": "hangup"}}},
}


def _end(bench: CallBench, uid: str, within: float = 120.0) -> None:
    """Let the call run; the caller hangs up if it is still there after ``within`` seconds."""
    bench.run(within)
    chan = next((c for c in bench.stack.sim.pbx.ordered_channels() if c.uniqueid == uid), None)
    if chan is not None and not chan.dead:
        bench.stack.sim.pbx.far_hangup(chan, 16)
    bench.run(10)
    assert bench.of(CallEnded, call_id=uid), "the call did not end"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'records.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))


def test_ivr_outcomes_answered_and_abandoned_calls_have_rows_with_their_end(tmp_path: Path, db_url: str) -> None:
    bench = CallBench(tmp_path, url=db_url, flows=FLOWS, customers=50)
    store = bench.server.store
    uids = {}
    for flow in FLOWS:
        chan = bench.arrive(keys=(), flow=flow, caller="+15550002222")
        uids[flow] = chan.uniqueid
        bench.run(30)
        assert bench.of(IvrCompleted, uniqueid=chan.uniqueid), f"the {flow} flow did not finish"
        _end(bench, chan.uniqueid)
    for flow, outcome in (("xfer", "ivr:transfer"), ("vm", "ivr:voicemail"), ("bye", "ivr:hangup")):
        row = store.get_interaction(f"sim/{uids[flow]}")
        assert row is not None, f"no record of the call the IVR sent to {outcome}"
        assert (row.outcome, row.direction, row.ani) == (outcome, "inbound", "+15550002222")
        assert row.ended_at is not None and row.ended_at >= row.started_at

    abandoned = bench.arrive(keys=("1",), patience=20.0)  # nobody is ready: the caller gives up
    bench.run(60)
    bench.ready("1003")
    answered = bench.arrive(keys=("1",))
    bench.run(20)
    assert bench.of(CallAnswered, uniqueid=answered.uniqueid)
    call_id = bench.server.call_for_agent("1003").queued.call_id
    bench.act("1003", "hangup", call_id=call_id)
    bench.run(5)
    row = store.get_interaction(f"sim/{abandoned.uniqueid}")
    assert row is not None and row.outcome == "abandoned" and row.ended_at is not None
    row = store.get_interaction(f"sim/{call_id}")
    assert row is not None and (row.outcome, row.agent_id, row.queue) == ("answered", "1003", "sales")
    assert row.ended_at is not None
    ivr_started = min(e.ts for e in bench.events if getattr(e, "uniqueid", None) == answered.uniqueid
                      and type(e).__name__ == "IvrStarted")
    assert abs(row.started_at.timestamp() - ivr_started) < 1e-3  # the call's start, not its queueing
    bench.close()


def test_a_call_transferred_to_a_number_by_its_agent_is_recorded_so(tmp_path: Path) -> None:
    bench = CallBench(tmp_path, customers=50)
    bench.ready("1003")
    chan = bench.arrive(keys=("1",))
    bench.run(20)
    call_id = bench.server.call_for_agent("1003").queued.call_id
    bench.act("1003", "transfer", call_id=call_id, to="number", target="+15557770001")
    _end(bench, chan.uniqueid)
    row = bench.server.store.get_interaction(f"sim/{call_id}")
    assert row is not None and (row.outcome, row.agent_id) == ("transferred", "1003")
    assert row.ended_at is not None
    bench.close()


def test_outbound_calls_are_recorded_under_the_customers_number(tmp_path: Path, db_url: str) -> None:
    bench = CallBench(tmp_path, url=db_url, campaigns=True, talk=30.0, wrapup=0.0, customers=50)
    bench.ready("1003")
    bench.run(600)
    dialled = {e.uniqueid: e for e in bench.events if isinstance(e, AttemptFinished) and e.uniqueid}
    answered = [e for e in bench.of(CallAnswered) if e.uniqueid in dialled]
    assert answered, "no outbound call reached the agent"
    campaign = bench.cfg.dialer.campaigns[0]
    numbers = {}
    for e in answered:
        lead = dialled[e.uniqueid].lead_id
        numbers[e.uniqueid] = bench.server.dialer.lead_fields(campaign.name, lead)["phone"]
    store = bench.server.store
    for e in answered:
        row = store.get_interaction(f"sim/{e.call_id}")
        assert row is not None and row.direction == "outbound" and row.campaign == campaign.name
        assert row.ani == numbers[e.uniqueid]
        assert row.ended_at is not None
    assert bench.server.recorder.flush(10.0)
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT uniqueid, caller_num FROM acd_queue_calls WHERE outcome = 'answered'"))
                    .all())
    engine.dispose()
    assert {uid: rows.get(uid) for uid in numbers} == numbers
    assert "+18005550100" not in rows.values()  # the campaign's caller ID
    bench.close()
