"""Statistics survive a restart (issue #16, item 1): the figures rebuilt from the stored records (written by
the real recorder to SQLite and PostgreSQL, read back by ``centre.kpi_restore``) are the figures counted
live, for every queue, team and campaign, across an interval boundary; and the server rebuilds them when it
opens its database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from acd.events import QueueCallFinished
from acd.recorder import Recorder
from centre.call_log import InteractionWrite, call_key, interaction_change
from centre.database import upgrade
from centre.kpi_restore import recorded_events
from cti.db import make_engine
from cti.events import CallHoldChanged
from dialer.events import AttemptAnswered, AttemptFinished, AttemptStarted
from dialer.store import CallbackStore, DialerAttempt
from kpi.core import KpiCore
from kpi.rebuild import replay, since
from kpi.settings import KpiSettings, Target
from screenpop.store import CustomerStore
from tests.test_acd_support import SERVER, Harness, agent
from tests.test_server_agent_restore import restart
from tests.virtual_calls import CallBench

T0 = 1_772_445_600.0  # 2026-03-02 10:00 UTC: an interval starts here
CFG = {"agents": [agent("a1", {"s": 1}, teams=["red"]), agent("a2", {"s": 1}, teams=["red"])],
       "queues": [{"name": "q", "skills": {"s": 1}, "wrapup": 5}]}


class Recording(Harness):
    """The ACD harness, keeping the events it was given too (the statistics count both)."""

    def __init__(self) -> None:
        super().__init__(CFG, now=T0 - 100)
        self.seen: list[Any] = []

    def event(self, ev: object) -> list[Any]:
        self.seen.append(ev)
        return super().event(ev)

    def _keep(self, out: list[Any]) -> list[Any]:
        self.seen.extend(out)
        return super()._keep(out)


def hold(uid: str, ts: float, held: bool) -> CallHoldChanged:
    return CallHoldChanged(server=SERVER, ts=ts, call_id=f"L{uid}", uniqueid=uid, queue="q", agent_id="a2",
                           held=held)


def new_core() -> KpiCore:
    settings = KpiSettings(targets={"q": Target(80, 20)}, members={"q": ("a1", "a2")}, teams={"red": ("a1", "a2")})
    return KpiCore(settings, queues=["q"], agents=["a1", "a2"])


def scenario() -> Recording:
    h = Recording()
    h.ready("a1")
    h.request("login", "a2", None)  # not ready yet
    h.queued("u1", "q")
    h.advance(2)
    h.answer("u1", "a1")
    h.queued("u2", "q")  # nobody free
    h.advance(25)
    h.ready("a2")
    h.answer("u2", "a2")  # after 25 s: outside the 20 s target
    h.queued("u3", "q")
    h.queued("u4", "q")
    h.advance(2)
    h.hangup("u4")  # a short abandon
    h.advance(6)
    h.hangup("u3")  # abandoned after 8 s
    h.advance(60)  # past 10:00: the next interval
    h.hangup("u1")
    h.advance(5)  # wrap-up ends: u1's record
    h.request("not_ready", "a1", "break")
    h.advance(20)
    h.seen.append(hold("u2", h.now, True))  # a2 holds u2 until the caller hangs up (the console's hold)
    h.advance(20)
    h.hangup("u2")
    h.advance(5)
    h.advance(30)
    h.request("ready", "a1")
    h.advance(10)
    return h


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kpi.sqlite3'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def test_the_figures_rebuilt_from_the_records_are_those_counted_live(db_url: str) -> None:
    h = scenario()
    live = new_core()
    for ev in h.seen:
        if hasattr(ev, "ts"):
            live.observe(ev, ev.ts)
    now = h.now
    assert live.figures("queue:q", now)["windows"]["day"]["handled"] == 2
    held_at = next(ev.ts for ev in h.seen if isinstance(ev, CallHoldChanged))
    ended_at = next(ev.answered_at + ev.talk for ev in h.seen
                    if isinstance(ev, QueueCallFinished) and ev.uniqueid == "u2")
    upgrade(db_url)
    recorder = Recorder(db_url, linger=0)
    recorder.record_all(h.log)
    assert recorder.flush(10) and recorder.close()
    engine = make_engine(db_url)
    try:
        # u2's part as the server writes it (centre.call_sessions): answered, ended on hold, its holds
        key = call_key(SERVER, "Lu2")
        CustomerStore(engine).write_interactions([interaction_change(w) for w in (
            InteractionWrite(key, {"direction": "inbound", "queue": "q", "agent_id": "a2"}, started_at=held_at - 60),
            InteractionWrite(key, {"ended_at": ended_at, "outcome": "answered"}),
            InteractionWrite(key, {"hold_seconds": ended_at - held_at, "hold_count": 1,
                                   "hold_max": ended_at - held_at}))])
        records = recorded_events(engine, since(now, "UTC", 900.0, 10.0))
    finally:
        engine.dispose()
    rebuilt = new_core()
    assert replay(rebuilt, records, now) > 0
    for topic in live.topics():
        assert rebuilt.figures(topic, now) == live.figures(topic, now), topic
    day = live.figures("queue:q", now)["windows"]
    assert (day["day"]["offered"], day["day"]["answered"], day["day"]["abandoned"], day["day"]["short_abandoned"]) \
        == (4, 2, 1, 1)
    assert (day["interval"]["offered"], day["interval"]["handled"]) == (0, 2)  # offered before 10:00, ended after
    assert day["day"]["service_level"] == 0.333333  # 1 in target / (2 answered + 1 abandoned)
    assert (day["day"]["holds"], day["day"]["avg_hold"], day["day"]["max_hold"]) == (1, 20.0, 20.0)


def test_a_restarted_server_shows_the_figures_it_had(tmp_path: Path) -> None:
    """The whole server on the simulated PBX: calls answered, a hold (console), one abandon; stopped and
    started again on the same database, the new server's figures since midnight are the old one's, holds
    the callbacks the agent scheduled on its call and a blind transfer to a number included."""
    bench = CallBench(tmp_path, customers=50, wrapup=5.0, talk=40.0)
    try:
        bench.ready("1003")
        bench.arrive(keys=("1",))  # sales -> 1003
        bench.run(20)
        live = bench.server.call_for_agent("1003")
        assert live is not None
        bench.act("1003", "hold", call_id=live.queued.call_id)
        bench.run(5)
        bench.act("1003", "retrieve", call_id=live.queued.call_id)
        later = datetime.fromtimestamp(bench.server.now() + 3600, UTC).isoformat()
        bench.act("1003", "schedule_callback", at=later, number="+15550009", call_id=live.queued.call_id)
        bench.run(60)  # talk ends, wrap-up ends
        # on the last call, once it is over; and one on no call (no queue: not counted)
        bench.act("1003", "schedule_callback", at=later, number="+15550010", call_id=live.queued.call_id)
        bench.act("1003", "schedule_callback", at=later, number="+15550011")
        bench.arrive(keys=("1",), patience=15.0)
        bench.ready("1002")
        bench.run(120)
        bench.arrive(keys=("1",))  # taken by an agent, who sends the caller on to an outside number
        bench.run(20)
        agent_on_call = next(a for a in ("1002", "1003") if bench.server.call_for_agent(a) is not None)
        out = bench.server.call_for_agent(agent_on_call)
        assert out is not None
        bench.act(agent_on_call, "transfer", call_id=out.queued.call_id, to="number", target="2001")
        bench.run(60)
        old = bench.server.kpi
        assert old is not None
        now = bench.server.now()
        before = old.core.figures("queue:sales", now)["windows"]["day"]
        assert before["handled"] >= 1 and before["holds"] == 1 and before["avg_hold"] is not None
        assert before["callbacks"] == 2  # the agent's, on its call (the console's), counted for the call's queue
        assert before["transfers"] == 1  # the blind transfer to a number
        fresh = restart(bench)
        assert fresh.kpi is not None
        after = fresh.kpi.core.figures("queue:sales", now)["windows"]["day"]
        assert after == before  # the holds too (stored with the agent's part)
        assert after["offered"] >= 2 and after["answered"] >= 1
    finally:
        bench.close()


def test_campaign_figures_and_ivr_callbacks_rebuilt_from_their_records(db_url: str) -> None:
    """The dialer's attempts as stored (started, a person answered, ended with a result) give the campaign
    figures its events gave live; the callbacks callers asked for in the IVR count for their queue again."""
    def utc(ts: float) -> datetime:
        return datetime.fromtimestamp(ts, UTC)

    live = KpiCore(KpiSettings(), queues=[], agents=[], campaigns=["renewals"])
    rows = []
    outcomes = [("connected", True, False), ("connected", True, True), ("machine", False, False),
                ("busy", False, False), ("abandoned", True, False), ("", False, False)]  # the last: still ringing
    for i, (result, person, late) in enumerate(outcomes):
        start = T0 - 600 + 120 * i  # across 10:00
        live.observe(AttemptStarted(start, "renewals", f"l{i}", f"r{i}", 1, "+15550001"), start)
        answered = start + 10 if person else None
        if answered is not None:
            live.observe(AttemptAnswered(answered, "renewals", f"l{i}", f"r{i}", f"u{i}"), answered)
        ended = start + 40 if result else None
        if ended is not None:
            live.observe(AttemptFinished(ended, "renewals", f"l{i}", f"r{i}", 1, result, "done", None, late=late),
                         ended)
        rows.append(DialerAttempt(ref=f"r{i}", campaign="renewals", lead_id=f"l{i}", attempt=1, number="+15550001",
                                  started_at=utc(start), answered_at=None if answered is None else utc(answered),
                                  ended_at=None if ended is None else utc(ended), result=result, late=late,
                                  person=person))
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with Session(engine) as session, session.begin():
            session.add_all(rows)
        callbacks = CallbackStore(engine)
        callbacks.add(number="+15550002", due=T0 + 3600, source="ivr", queue="q", call_id="u9", now=T0 - 30)
        callbacks.add(number="+15550003", due=T0 + 3600, source="agent", queue="q", agent_id="a1", now=T0 - 20)
        now = T0 + 300
        rebuilt = KpiCore(KpiSettings(), queues=["q"], agents=[], campaigns=["renewals"])
        replay(rebuilt, recorded_events(engine, since(now, "UTC", 900.0, 10.0)), now)
    finally:
        engine.dispose()
    assert rebuilt.figures("campaign:renewals", now) == live.figures("campaign:renewals", now)
    assert rebuilt.figures("queue:q", now)["windows"]["day"]["callbacks"] == 1  # the IVR's (as counted live)
    day = live.figures("campaign:renewals", now)["windows"]["day"]
    assert (day["dials"], day["answers"], day["live_answers"], day["contacts"], day["abandons"]) == (6, 4, 3, 2, 2)
