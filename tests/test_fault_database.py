"""The database unreachable for 30 s (issue 19): a real PostgreSQL behind a TCP proxy the test cuts (every
connection dropped, new ones closed at once), under the real server and the simulated PBX in virtual time.
Routing goes on; the call records and the ACD's records wait in memory and are all written, once each, when
the database is back; the outage is logged once and shown on the wallboard's health meanwhile.

The outage lasts 30 s of virtual time (the writers' retries run on the server's clock); the ACD recorder's
thread retries on real time, and the test waits for it with ``flush``, not a sleep. A private database in
the shared PostgreSQL (the ``pg_url`` fixture): the shared server itself is never stopped."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from acd.events import CallAbandoned, CallAnswered
from cti.events import CallEnded
from tests.tcp_proxy import TcpProxy
from tests.virtual_calls import CallBench


@pytest.fixture
def proxied_pg(pg_url: str) -> Iterator[tuple[TcpProxy, str, str]]:
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), pg_url
    proxy.close()


def rows(url: str, sql: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


@pytest.mark.timeout(60)
def test_thirty_seconds_without_the_database_routing_goes_on_and_every_record_is_written_once(
        tmp_path: Path, proxied_pg: tuple[TcpProxy, str, str], caplog: pytest.LogCaptureFixture) -> None:
    proxy, url, direct = proxied_pg
    caplog.set_level(logging.INFO)
    bench = CallBench(tmp_path, url=url, customers=20, wrapup=2.0, talk=6000.0)
    server = bench.server
    bench.ready("1003")
    before = bench.arrive(keys=("1",))  # answered before the outage, ends during it
    bench.run(20)
    assert bench.of(CallAnswered, uniqueid=before.uniqueid)
    first = server.call_for_agent("1003").queued.call_id

    proxy.cut()
    bench.act("1003", "hangup", call_id=first)
    bench.run(0.5)
    assert bench.act("1003", "dispose", call_id=first, disposition="resolved", notes="during the outage")[
        "recorded"], "the disposition made while the database is down was not kept"
    bench.run(5)
    during = bench.arrive(keys=("1",))  # routed and answered while the database is down
    bench.run(15)
    assert bench.of(CallAnswered, uniqueid=during.uniqueid), "routing stopped without the database"
    gone = bench.arrive(keys=("1",), patience=5.0)  # the agent is busy: this caller gives up
    bench.run(10)
    assert bench.of(CallAbandoned, uniqueid=gone.uniqueid)
    assert server.interactions is not None and server.interactions.down
    recorder = server.recorder
    assert recorder is not None
    # the recorder's thread writes on real time: asked to write now, it tries (and fails) within the second
    assert not recorder.flush(timeout=1.0) and recorder.metrics["db_down"]
    assert server.wallboard()["health"]["db"] is False, "the wallboard does not show the database down"
    assert proxy.refused > 0, "nothing tried the database during the outage"

    proxy.restore()
    second = server.call_for_agent("1003").queued.call_id
    bench.act("1003", "hangup", call_id=second)
    bench.run(60)  # the writers' next retry (backoff at most 30 s)
    assert bench.of(CallEnded, call_id=second)
    assert recorder.flush(timeout=30), "ACD records left unwritten"
    assert not server.interactions.down and server.interactions.pending == 0
    assert server.wallboard()["health"]["db"] is True

    calls = {first: "answered", second: "answered", gone.uniqueid: "abandoned"}
    found = rows(direct, "select call_key, outcome, ended_at is not null from customer_interactions "
                         "where call_key not like '%/%/%'")
    assert sorted(found) == sorted((f"sim/{c}", o, True) for c, o in calls.items()), found
    queue_calls = rows(direct, "select call_id, outcome from acd_queue_calls")
    assert sorted(queue_calls) == sorted(calls.items()), queue_calls  # one each: none lost, none twice
    assert rows(direct, f"select disposition, notes from customer_interactions where call_key = 'sim/{first}'") \
        == [("resolved", "during the outage")]
    states = rows(direct, "select count(*), count(distinct record_uid) from acd_agent_states where agent_id='1003'")
    assert states[0][0] == states[0][1] >= 6  # ready, ringing, on call, wrap-up, ... twice: each once

    outage = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert len([m for m in outage if "interaction writes" in m]) == 1, outage  # once, not per retry
    assert len([m for m in outage if "ACD records" in m]) == 1, outage
    assert not [r for r in caplog.records if "not written" in r.getMessage()], "a record was given up"
    bench.close()


T0 = 1_767_261_600.0


def test_the_dialer_holds_its_results_through_an_outage_dials_nothing_and_catches_up(
        proxied_pg: tuple[TcpProxy, str, str], caplog: pytest.LogCaptureFixture) -> None:
    """An attempt's result that comes while the store is unreachable is kept and written when it is back
    (not lost, leaving the attempt open); no attempt starts meanwhile (it could not be written first); the
    outage is logged once and ``store_down`` says so (the wallboard's health)."""
    from centre.database import upgrade
    from cti.commands import Originate
    from cti.db import make_engine
    from cti.events import OriginateResult
    from dialer.events import AttemptStarted
    from dialer.store import LeadStore
    from tests.test_dialer_store import ManualRunner, _dialer

    proxy, url, direct = proxied_pg
    caplog.set_level(logging.INFO)
    upgrade(url)
    sink: list[object] = []
    now = [T0]
    runner = ManualRunner()
    dialer = _dialer(sink, now)
    dialer.open_store(LeadStore(make_engine(url)), runner, T0)
    (started,) = [e for e in dialer.tick(T0) if isinstance(e, AttemptStarted)]
    runner.run_all()
    assert [o for o in sink if isinstance(o, Originate)], "the first attempt was not dialled"

    proxy.cut()
    now[0] = T0 + 5
    dialer.handle(OriginateResult(server="pbx", ts=T0 + 5, action_id=started.ref, success=False, reason=5,
                                  channel="PJSIP/x", uniqueid=None), T0 + 5)
    runner.run_all()
    assert dialer.store_down
    for t in range(6, 36):  # 30 s without the store: ticks, retries, upkeep reads
        now[0] = T0 + t
        assert not [e for e in dialer.tick(T0 + t) if isinstance(e, AttemptStarted)], "dialled without the store"
        runner.run_all()
    assert dialer.store_down and proxy.refused > 1

    proxy.restore()
    for t in range(36, 70):
        now[0] = T0 + t
        dialer.tick(T0 + t)
        runner.run_all()
    assert not dialer.store_down
    found = rows(direct, f"select result, ended_at is not null from dialer_attempts where ref = '{started.ref}'")
    assert found == [("busy", True)], found  # the result of the outage, written once it was back
    open_ = rows(direct, "select lead_id, count(*) from dialer_attempts where ended_at is null group by lead_id")
    assert all(n == 1 for _, n in open_)
    assert rows(direct, "select count(*) from dialer_attempts")[0][0] >= 2, "dialling did not resume"
    said = [r.getMessage() for r in caplog.records if r.name == "dialer" and "store" in r.getMessage()]
    assert len([m for m in said if "unavailable" in m]) == 1, said
    assert len([m for m in said if "is back after" in m]) == 1, said
    assert not [m for m in said if "write failed" in m or "reading the store failed" in m], said
