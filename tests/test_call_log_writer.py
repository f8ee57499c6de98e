"""The call records' writer (``centre.call_log.InteractionWriter``) over a real store (SQLite and PostgreSQL):
the writes of ``linger`` seconds share one worker-thread job and one transaction, a row's writes land in
the order they were made, a batch that fails is retried write by write (only the bad write is lost, and
logged), ``flush`` writes what waits at once, and a database that cannot be reached (a PostgreSQL URL where
nothing listens) loses nothing: the writes wait in order and are retried with backoff. Worker-thread jobs
go through ``JobQueue`` (run when the test says so); the linger is timed by ``task.Clock``; transactions
are counted by SQLAlchemy's ``commit`` event on the store's engine."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import event
from twisted.internet.task import Clock

from centre.call_log import InteractionWrite, InteractionWriter
from screenpop.compose import LookupKey
from screenpop.lookup import LookupOutcome, PopLookup
from screenpop.store import CustomerInput, CustomerStore, PhoneRecord
from tests.conftest import POSTGRES_URL
from tests.screenpop_db import database_fixtures
from tests.test_screenpop_lookup import JobQueue

db_url, empty_store = database_fixtures(POSTGRES_URL)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC).timestamp()


def make(store: CustomerStore, linger: float = 0.25) -> tuple[InteractionWriter, JobQueue, Clock, list[int]]:
    jobs, clock = JobQueue(), Clock()
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda conn: commits.append(1))
    lookup = PopLookup(store, jobs, clock)
    return InteractionWriter(lookup, linger=linger), jobs, clock, commits


def opened(key: str, ts: float = T0, **fields: object) -> InteractionWrite:
    return InteractionWrite(key, {"direction": "inbound", **fields}, started_at=ts)


def test_writes_within_the_linger_share_one_job_and_one_transaction(empty_store: CustomerStore) -> None:
    writer, jobs, clock, commits = make(empty_store)
    writer.write(opened("sim/1", ani="+15550001111", queue="sales"))
    writer.write(opened("sim/2", ani="+15550002222"))
    writer.write(InteractionWrite("sim/1", {"agent_id": "1003", "outcome": "answered"}))
    writer.write(InteractionWrite("sim/1", {"ended_at": T0 + 60, "outcome": "answered"}))
    clock.advance(0.2)
    assert not jobs.jobs, "a write went out before the linger ended"
    clock.advance(0.05)
    assert len(jobs.jobs) == 1
    jobs.run()
    assert len(commits) == 1 and writer.batches == 1 and writer.pending == 0
    row = empty_store.get_interaction("sim/1")
    assert row is not None
    assert (row.direction, row.ani, row.queue, row.agent_id, row.outcome) == (
        "inbound", "+15550001111", "sales", "1003", "answered")
    assert row.started_at.timestamp() == T0 and row.ended_at is not None and row.ended_at.timestamp() == T0 + 60
    assert empty_store.get_interaction("sim/2") is not None


def test_a_rows_writes_land_in_the_order_they_were_made_across_batches(empty_store: CustomerStore) -> None:
    """While a batch is being written the next writes wait for it, even past their linger."""
    writer, jobs, clock, commits = make(empty_store)
    writer.write(opened("sim/7", outcome="queued"))
    clock.advance(0.25)
    assert len(jobs.jobs) == 1  # the first batch is in the worker, not done yet
    writer.write(InteractionWrite("sim/7", {"outcome": "abandoned", "ended_at": T0 + 5}))
    clock.advance(1.0)
    assert len(jobs.jobs) == 1, "a second batch started while the first was still being written"
    jobs.run()
    row = empty_store.get_interaction("sim/7")
    assert row is not None and row.outcome == "queued"
    clock.advance(0.25)
    jobs.run()
    row = empty_store.get_interaction("sim/7")
    assert row is not None and (row.outcome, row.direction) == ("abandoned", "inbound")
    assert row.ended_at is not None and len(commits) == 2 and writer.pending == 0


def test_a_failed_batch_is_written_one_by_one_and_only_the_bad_write_is_lost(
        empty_store: CustomerStore, caplog: pytest.LogCaptureFixture) -> None:
    writer, jobs, clock, commits = make(empty_store)
    writer.write(opened("sim/1", queue="sales"))
    writer.write(opened("sim/2", queue="q" * 200))  # longer than the column allows: the store refuses it
    writer.write(InteractionWrite("sim/1", {"ended_at": T0 + 30, "outcome": "abandoned"}))
    writer.write(InteractionWrite("sim/3", {"no_such_field": "x"}))  # not a field the store knows
    with caplog.at_level(logging.INFO, logger="centre.call_log"):
        clock.advance(0.25)
        jobs.run()
    row = empty_store.get_interaction("sim/1")
    assert row is not None and (row.queue, row.outcome) == ("sales", "abandoned") and row.ended_at is not None
    assert empty_store.get_interaction("sim/2") is None and empty_store.get_interaction("sim/3") is None
    assert writer.failed == 2 and writer.pending == 0
    lost = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lost) == 2 and "interaction sim/2 not written" in lost[0] and "sim/3" in lost[1]
    writer.write(opened("sim/4"))  # the writer goes on
    clock.advance(0.25)
    jobs.run()
    assert empty_store.get_interaction("sim/4") is not None


def test_flush_writes_what_waits_at_once_and_fires_when_all_is_written(empty_store: CustomerStore) -> None:
    writer, jobs, clock, commits = make(empty_store)
    done = writer.flush()
    assert done.called  # nothing to write
    writer.write(opened("sim/1"))
    writer.write(opened("sim/2"))
    done = writer.flush()
    assert len(jobs.jobs) == 1 and not done.called  # no linger
    writer.write(opened("sim/3"))  # made while the batch is written: the flush waits for it too
    jobs.run()
    assert done.called and writer.pending == 0 and writer.batches == 2
    assert all(empty_store.get_interaction(f"sim/{n}") is not None for n in (1, 2, 3))


def test_every_customer_a_batch_touches_leaves_the_look_up_cache(empty_store: CustomerStore) -> None:
    """A write names the customer (the agent's part) or finds it on the row (the call's end): either way
    that customer's cached pops are dropped, so the next pop shows the new interaction."""
    (added,) = empty_store.upsert_customers([CustomerInput("C9", "Ann", "Lee", phones=(PhoneRecord("+12015550199"),))])
    cid = added.customer_id
    writer, jobs, clock, commits = make(empty_store)
    lookup = writer.lookup
    lookup.cache.put("by-customer", lookup_outcome_for(empty_store, cid), clock.seconds())
    writer.write(opened("sim/1", customer_id=cid))
    clock.advance(0.25)
    jobs.run()
    assert lookup.cache.get("by-customer", clock.seconds()) is None
    lookup.cache.put("by-customer", lookup_outcome_for(empty_store, cid), clock.seconds())
    writer.write(InteractionWrite("sim/1", {"ended_at": T0 + 9, "outcome": "answered"}))  # no customer named
    clock.advance(0.25)
    jobs.run()
    assert lookup.cache.get("by-customer", clock.seconds()) is None


def lookup_outcome_for(store: CustomerStore, customer_id: int | None) -> LookupOutcome:
    customer = store.get_customer(int(customer_id or 0))
    assert customer is not None
    return LookupOutcome(LookupKey("id", str(customer.id)), (customer,))


def unreachable() -> CustomerStore:
    """A store whose PostgreSQL cannot be reached (nothing listens on port 1): every call is refused."""
    from sqlalchemy import create_engine

    return CustomerStore(create_engine("postgresql+psycopg://cti@127.0.0.1:1/test",
                                       connect_args={"connect_timeout": 2}))


def test_writes_made_while_the_database_is_unreachable_wait_in_order_and_are_retried_with_backoff(
        empty_store: CustomerStore, caplog: pytest.LogCaptureFixture) -> None:
    """Refused connections: nothing is lost, the writes keep their order, tries come 0.5, 1, 2 s apart, the
    outage is logged once when it starts and once when it ends, ``down`` says so meanwhile."""
    writer, jobs, clock, _ = make(empty_store)
    writer.lookup.store = unreachable()
    with caplog.at_level(logging.INFO, logger="centre.call_log"):
        writer.write(opened("sim/1", outcome="queued"))
        writer.write(InteractionWrite("sim/1", {"outcome": "answered", "agent_id": "1003"}))
        clock.advance(0.25)
        for n, wait in enumerate((0.5, 1.0, 2.0)):
            jobs.run()
            assert writer.down and writer.pending == 2 + n and not jobs.jobs
            writer.write(InteractionWrite("sim/1", {"ended_at": T0 + 60}))  # made during the outage: after them
            clock.advance(wait - 0.01)
            assert not jobs.jobs, "tried again before its backoff"
            clock.advance(0.01)
        writer.lookup.store = empty_store
        jobs.run()
    assert not writer.down and writer.pending == 0 and writer.failed == 0
    row = empty_store.get_interaction("sim/1")
    assert row is not None and (row.outcome, row.agent_id) == ("answered", "1003") and row.ended_at is not None
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 2 and "unavailable" in said[0] and "back" in said[1] and "3 failed tries" in said[1], said


def test_a_flush_while_the_database_is_unreachable_tries_once_then_says_what_was_not_written(
        empty_store: CustomerStore, caplog: pytest.LogCaptureFixture) -> None:
    """At shutdown the writer does not wait out its backoff: it tries at once; still refused, it logs how many
    writes it could not make and the flush fires (the process can stop). Past ``max_pending`` the newest
    writes are dropped and counted."""
    writer, jobs, clock, _ = make(empty_store)
    writer.max_pending = 2
    writer.lookup.store = unreachable()
    writer.write(opened("sim/1"))
    clock.advance(0.25)
    jobs.run()
    assert writer.down
    writer.write(opened("sim/2"))
    writer.write(opened("sim/3"))  # over the limit: dropped
    assert writer.dropped == 1 and writer.pending == 2
    with caplog.at_level(logging.INFO, logger="centre.call_log"):
        done = writer.flush()
        assert len(jobs.jobs) == 1 and not done.called
        jobs.run()
    assert done.called and writer.pending == 0 and writer.failed == 2
    assert any("2 interaction writes not written" in r.getMessage() for r in caplog.records)
    assert clock.getDelayedCalls() == []
