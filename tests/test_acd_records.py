"""ACD records on SQLite and PostgreSQL: the 0002_acd migration matches the models, the recorder writes
every row from a background thread, survives a database outage without losing or duplicating rows,
bounds its buffer and keeps passwords out of its logs."""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.engine import make_url

from acd.events import AgentStateChanged, QueueCallFinished
from acd.recorder import Recorder
from acd.tables import AgentStateRecord, QueueCallRecord
from centre.database import import_models, upgrade
from cti.db import Base, make_engine
from tests.conftest import POSTGRES_URL
from tests.test_acd_support import Harness, agent

CFG = {"agents": [agent("a1", {"s": 1})], "queues": [{"name": "q", "skills": {"s": 1}, "wrapup": 5}]}


def _scenario() -> list[object]:
    """Three calls: one answered (talk 30 s, wrap-up 5 s), one abandoned, one still waiting."""
    h = Harness(CFG)
    h.ready("a1")
    h.queued("u1", "q", data={"CTI_ACCOUNT": "42"})
    h.now += 2
    h.answer("u1", "a1")
    h.queued("u2", "q")
    h.now += 30
    h.hangup("u1")
    h.hangup("u2")
    h.advance(5)
    return list(h.log)


def _fast(attempt: int) -> float:
    return 0.01


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'acd.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database: a SQLite file, or a PostgreSQL database of its own (``pg_url``, dropped after
    the test), so the recorder's SQL is checked on both and parallel runs never share rows."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


def _check_migration(url: str) -> None:
    upgrade(url)  # head: 0012_report_indexes indexes two of its time columns
    import_models()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            diffs = [d for d in compare_metadata(MigrationContext.configure(conn), Base.metadata) if "acd_" in str(d)]
        assert diffs == []
        assert {"acd_queue_calls", "acd_agent_states"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _check_rows(url: str) -> None:
    events = _scenario()
    upgrade(url)
    rec = Recorder(url, backoff=_fast)
    rec.record_all(events)
    assert rec.flush(timeout=20)
    assert rec.close()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = {r.uniqueid: r for r in conn.execute(select(QueueCallRecord))}
            states = conn.execute(select(func.count()).select_from(AgentStateRecord)).scalar_one()
    finally:
        engine.dispose()
    assert set(rows) == {"u1", "u2"}
    answered = rows["u1"]
    assert (answered.outcome, answered.wait, answered.talk, answered.wrapup, answered.agent_id) == \
        ("answered", 2, 30, 5, "a1")
    assert answered.ivr_data == {"CTI_ACCOUNT": "42"}
    assert rows["u2"].outcome == "abandoned" and rows["u2"].wait == 30
    assert states == sum(isinstance(e, AgentStateChanged) for e in events) == 6


def test_sqlite_migration_matches_models(sqlite_url: str) -> None:
    """On SQLite, 0002_acd creates exactly what acd.tables declares."""
    _check_migration(sqlite_url)


def test_postgres_migration_matches_models(pg_url: str) -> None:
    """On PostgreSQL, 0002_acd creates exactly what acd.tables declares."""
    _check_migration(pg_url)


def test_postgres_several_upgrading_one_new_database_at_once_all_succeed(pg_url: str) -> None:
    """Several nodes started together on a new database (docs/scaling.md) migrate it one after the other: one
    creates the schema, the others find it at its head. Without the lock one of them failed to start on
    ``alembic_version``'s unique type name."""
    results: list[tuple[str | None, str | None]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(upgrade(pg_url))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    head = results[0][1]
    assert sorted(results, key=str) == sorted([(None, head), (head, head), (head, head)], key=str), results


def test_sqlite_recorder_writes_call_and_state_rows(sqlite_url: str) -> None:
    """Every queued call and agent state change of a scenario is written to SQLite with its figures."""
    _check_rows(sqlite_url)


def test_postgres_recorder_writes_call_and_state_rows(pg_url: str) -> None:
    """Every queued call and agent state change of a scenario is written to PostgreSQL with its figures."""
    _check_rows(pg_url)


def test_outage_buffers_retries_and_loses_nothing(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """With the schema missing (writes fail) rows stay buffered; once it exists all are written, logged once."""
    events = _scenario()
    caplog.set_level(logging.WARNING, logger="acd.recorder")
    rec = Recorder(db_url, backoff=_fast)
    rec.record_all(events)
    assert not rec.flush(timeout=0.3)
    m = rec.metrics
    assert m["failures"] >= 2 and m["db_down"] and m["pending"] == 8
    upgrade(db_url)
    assert rec.flush(timeout=20)
    assert rec.metrics["written"] == 8 and not rec.metrics["db_down"]
    rec.close()
    unavailable = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(unavailable) == 1 and any("is back" in r.getMessage() for r in caplog.records)


def test_postgres_database_appearing_later_and_password_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A PostgreSQL database that does not exist yet is retried until it does; the URL password never shows."""
    name = f"acd_late_{uuid.uuid4().hex[:12]}"
    url = make_url(POSTGRES_URL).set(database=name, password="pw-Zz9-secret").render_as_string(hide_password=False)
    caplog.set_level(logging.WARNING, logger="acd.recorder")
    rec = Recorder(url, backoff=_fast)
    rec.record_all(_scenario())
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        assert not rec.flush(timeout=0.3)
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        upgrade(url)
        assert rec.flush(timeout=20)
        assert rec.close()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    assert "pw-Zz9-secret" not in caplog.text and "unavailable" in caplog.text


def test_replayed_row_is_stored_once(db_url: str) -> None:
    """The same QueueCallFinished recorded twice (a retry after a lost acknowledgement) gives one row."""
    upgrade(db_url)
    row = QueueCallFinished(ts=10.0, server="pbx", uniqueid="u9", call_id="L9", queue="q", entered=1.0,
                            outcome="abandoned", wait=9.0)
    rec = Recorder(db_url)
    rec.record(row)
    rec.record(row)
    assert rec.flush(timeout=20) and rec.close()
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(QueueCallRecord)).scalar_one() == 1
    engine.dispose()


def test_buffer_is_bounded_and_drops_are_counted(db_url: str) -> None:
    """Past max_pending rows (database down) new rows are refused and counted, never blocking the caller."""
    rec = Recorder(db_url, max_pending=2, backoff=_fast)
    results = [rec.record(QueueCallFinished(ts=10.0 + i, server="pbx", uniqueid=f"u{i}", call_id="L", queue="q",
                                            entered=1.0, outcome="abandoned", wait=9.0))
               for i in range(3)]
    assert results == [True, True, False]
    assert rec.metrics["dropped"] == 1 and rec.metrics["pending"] == 2
    assert not rec.close(timeout=0.1)


def test_rows_recorded_together_share_one_transaction(db_url: str) -> None:
    """Rows recorded in a burst wait ``linger`` for each other and go in one transaction (the writer
    thread wakes once, not once per row); flush() does not wait out the linger."""
    from sqlalchemy import event

    upgrade(db_url)
    engine = make_engine(db_url)
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    events = _scenario()
    rec = Recorder(db_url, engine=engine, linger=5.0)
    try:
        rec.record_all(events)
        assert rec.flush(timeout=2.0)  # well before the 5 s linger
        assert len(commits) == 1
        assert rec.written == len([e for e in events if isinstance(e, AgentStateChanged | QueueCallFinished)])
    finally:
        assert rec.close()
        engine.dispose()
