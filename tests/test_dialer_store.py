"""Campaign progress that must never be lost: the leads/attempts tables (migration 0005), the write-before-
Originate rule, and a restart after a crash mid-attempt (the lead is neither lost nor dialled twice)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from twisted.internet import defer

from centre.database import alembic_config, import_models, upgrade
from centre.demo_leads import demo_leads
from cti.commands import Originate
from cti.db import Base, make_engine
from cti.events import AmiConnectionChanged, OriginateResult
from dialer.campaign import Lead
from dialer.events import AttemptStarted, DialerWarning
from dialer.settings import CampaignSettings, DialerSection
from dialer.shell import Dialer
from dialer.store import LeadStore

T0 = 1_767_261_600.0
TABLES = {"dialer_leads", "dialer_attempts"}


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'dialer.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database: a SQLite file, or a PostgreSQL database of its own (``pg_url``, dropped after
    the test), so the store's SQL is checked on both and parallel runs never share rows."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


@pytest.mark.parametrize("which", ["sqlite", "postgresql"])
def test_migration_matches_models_and_downgrades(which: str, request: pytest.FixtureRequest) -> None:
    """0005_dialer_leads creates exactly the models' tables, indexes and constraints on SQLite and PostgreSQL;
    downgrading to 0004_dialer removes them and keeps the callbacks table."""
    url = request.getfixturevalue("sqlite_url" if which == "sqlite" else "pg_url")
    upgrade(url)
    import_models()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            diffs = [d for d in diffs if "dialer_" in str(d)]
            assert diffs == []
            assert TABLES <= set(inspect(conn).get_table_names())
        command.downgrade(alembic_config(url), "0004_dialer")  # type: ignore[arg-type]
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            assert not TABLES & names and "callbacks" in names
    finally:
        engine.dispose()


def _store(url: str) -> LeadStore:
    upgrade(url)
    return LeadStore(make_engine(url))


def test_import_keeps_progress(db_url: str) -> None:
    """Importing the list again adds only new leads; a lead already tried keeps its attempts and status."""
    store = _store(db_url)
    assert store.import_leads("c", [Lead("a", "+15550001"), Lead("b", "+15550002", {"name": "Bo"})], T0) == 2
    store.apply([AttemptStarted(T0, "c", "a", "dial:c/a/1", 1, "+15550001")])
    assert store.import_leads("c", [Lead("a", "+15550001"), Lead("z", "+15550009")], T0 + 1) == 1
    leads = {lead.lead_id: lead for lead in store.load("c")}
    assert (leads["a"].status, leads["a"].attempts) == ("active", 1)
    assert leads["b"].fields == {"name": "Bo"} and leads["z"].status == "pending"
    assert store.load("other") == []


def test_nodes_importing_the_same_leads_at_once_add_each_once(pg_url: str) -> None:
    """Several nodes starting together on one new database (docs/scaling.md) import the campaign's leads at once:
    every one of them starts (the import that collides with another's reads the leads again), each lead is stored
    once, and the additions add up to the list. Before, the node whose insert collided failed to start."""
    upgrade(pg_url)
    leads = [Lead(f"l{i}", f"+1555{i:07d}") for i in range(3000)]
    stores = [LeadStore(make_engine(pg_url)) for _ in range(3)]
    start = threading.Barrier(len(stores))
    added: list[int] = []
    errors: list[BaseException] = []

    def run(store: LeadStore) -> None:
        start.wait(10)
        try:
            added.append(store.import_leads("c", leads, T0))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(store,)) for store in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sum(added) == len(leads) and len(added) == len(stores), added
    assert len(stores[0].load("c")) == len(leads)
    for store in stores:
        store.engine.dispose()


class ManualRunner:
    """run_in_thread whose work runs only when the test says so (to see what happens in between)."""

    def __init__(self) -> None:
        self.queue: list[tuple[Callable[[], Any], defer.Deferred[Any]]] = []

    def __call__(self, fn: Callable[[], Any]) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.queue.append((fn, d))
        return d

    def run_all(self) -> None:
        while self.queue:
            fn, d = self.queue.pop(0)
            try:
                result = fn()
            except Exception as exc:
                d.errback(exc)
            else:
                d.callback(result)


def _dialer(sink: list[Any], now: list[float], idle: int = 1, **kw: Any) -> Dialer:
    section = DialerSection(campaigns=[CampaignSettings(name="c", queue="sales", leads="demo", demo_leads=3, **kw)],
                            pace_interval=1.0)
    dialer = Dialer(section, servers=["pbx"], dial_template="PJSIP/{number}@trunk", idle_agents=lambda q: idle,
                    sink=sink.extend, clock=lambda: now[0], demo_leads=demo_leads)
    dialer.handle(AmiConnectionChanged(server="pbx", ts=now[0], connected=True, detail="logged in"), now[0])
    return dialer


def test_originate_waits_for_the_write_and_a_crash_loses_nothing(db_url: str) -> None:
    """The Originate leaves only after AttemptStarted is committed. After a crash with the call in progress,
    a new server resolves that attempt as unknown and dials the lead again only after retry_after.unknown,
    as attempt 2 (no lead lost, none dialled twice at once)."""
    sink: list[Any] = []
    now = [T0]
    runner = ManualRunner()
    dialer = _dialer(sink, now)
    dialer.open_store(_store(db_url), runner, T0)
    out = dialer.tick(T0)
    (started,) = [e for e in out if isinstance(e, AttemptStarted)]
    assert not any(isinstance(o, Originate) for o in out) and sink == []
    lead = LeadStore(make_engine(db_url))
    assert {x.lead_id: x.status for x in lead.load("c")}[started.lead_id] == "pending"  # not written yet
    runner.run_all()
    (orig,) = sink
    assert isinstance(orig, Originate) and orig.ref == started.ref
    rows = {x.lead_id: x for x in lead.load("c")}
    assert (rows[started.lead_id].status, rows[started.lead_id].attempts) == ("active", 1)

    # crash: the dialer is gone with the call up; a new one opens the same database
    sink2: list[Any] = []
    later = [T0 + 30]
    dialer2 = _dialer(sink2, later, idle=5, retry_after={"unknown": 600})
    recovered = dialer2.open_store(LeadStore(make_engine(db_url)), ManualRunner(), T0 + 30)
    assert [(e.lead_id, e.result) for e in recovered if hasattr(e, "result")] == [(started.lead_id, "unknown")]
    (attempt,) = lead.attempts("c", started.lead_id)
    assert attempt.result == "unknown" and attempt.ended_at is not None
    firsts = [e.lead_id for e in dialer2.tick(T0 + 30) if isinstance(e, AttemptStarted)]
    assert started.lead_id not in firsts
    campaign = dialer2.campaigns["c"]
    assert len(firsts) == 2 and campaign.leads[started.lead_id].next_at == T0 + 630
    assert [e for e in dialer2.tick(T0 + 629) if isinstance(e, AttemptStarted)] == []
    again = [e for e in dialer2.tick(T0 + 630) if isinstance(e, AttemptStarted)]
    assert [(e.lead_id, e.attempt) for e in again] == [(started.lead_id, 2)]


def test_failed_write_dials_nothing(db_url: str) -> None:
    """When the store cannot record the attempt, no Originate goes out and the lead stays pending."""
    sink: list[Any] = []
    now = [T0]
    runner = ManualRunner()
    dialer = _dialer(sink, now)
    store = _store(db_url)
    dialer.open_store(store, runner, T0)

    def broken(events: Any) -> None:
        raise OSError("disk full")

    store.apply = broken  # type: ignore[method-assign]
    dialer.tick(T0)
    runner.run_all()
    assert not any(isinstance(o, Originate) for o in sink)
    assert any(isinstance(o, DialerWarning) and o.code == "store-failed" for o in sink)
    assert all(lead.status == "pending" and lead.attempts == 0 for lead in dialer.campaigns["c"].leads.values())


def test_results_are_written_in_order(db_url: str) -> None:
    """An attempt's end is written after its start even when both are queued before either runs."""
    sink: list[Any] = []
    now = [T0]
    runner = ManualRunner()
    dialer = _dialer(sink, now)
    dialer.open_store(_store(db_url), runner, T0)
    (started,) = [e for e in dialer.tick(T0) if isinstance(e, AttemptStarted)]
    runner.run_all()
    dialer.handle(OriginateResult(server="pbx", ts=T0 + 5, action_id=started.ref, success=False, reason=5,
                                  channel="PJSIP/x", uniqueid=None), T0 + 5)
    dialer.handle(OriginateResult(server="pbx", ts=T0 + 5, action_id=started.ref, success=False, reason=5,
                                  channel="PJSIP/x", uniqueid=None), T0 + 5)  # duplicate
    runner.run_all()
    (row,) = LeadStore(make_engine(db_url)).attempts("c", started.lead_id)
    assert row.result == "busy"
    lead = {x.lead_id: x for x in LeadStore(make_engine(db_url)).load("c")}[started.lead_id]
    assert (lead.status, lead.last_result, lead.next_at) == ("pending", "busy", T0 + 5 + 300)


def test_no_dialling_while_the_pbx_is_unreachable() -> None:
    """With the campaign's AMI connection down nothing is dialled (no attempt used up); once it is back,
    dialling resumes."""
    sink: list[Any] = []
    now = [T0]
    dialer = _dialer(sink, now)
    dialer.load_memory(T0)
    dialer.handle(AmiConnectionChanged(server="pbx", ts=T0, connected=False, detail="connection refused"), T0)
    assert dialer.tick(T0) == [] and dialer.tick(T0 + 5) == []
    assert all(lead.attempts == 0 for lead in dialer.campaigns["c"].leads.values())
    dialer.handle(AmiConnectionChanged(server="pbx", ts=T0 + 6, connected=True, detail="logged in"), T0 + 6)
    assert any(isinstance(o, Originate) for o in dialer.tick(T0 + 6))
