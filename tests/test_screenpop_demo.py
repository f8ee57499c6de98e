"""Demo customers: deterministic, valid for the importer, seeded into a real store, callable by the simulator."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import phonenumbers

from cti.db import make_engine
from screenpop.demo_data import (
    CSV_COLUMNS,
    customers_csv,
    demo_callers,
    demo_phone_numbers,
    generate_customers,
    seed_store,
)
from screenpop.importer import import_csv
from screenpop.store import CustomerStore
from tests.conftest import POSTGRES_URL
from tests.screenpop_db import temporary_database

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_generation_is_deterministic_and_valid():
    """The same n and seed give the same rows; another seed differs; every number is a valid, distinct
    fictional 555-01XX number, and a few households share one so some pops are a choice."""
    rows = generate_customers(3000, 7)
    assert rows == generate_customers(3000, 7)
    assert rows != generate_customers(3000, 8)
    assert list(rows[0]) == list(CSV_COLUMNS)
    numbers = demo_phone_numbers(3000, 7)
    assert len(numbers) == len(set(numbers)) > 3000
    for number in numbers:
        parsed = phonenumbers.parse(number)
        assert phonenumbers.is_valid_number(parsed), number
        assert number[5:9] == "5550" and 100 <= int(number[8:]) <= 199, number
    shared = [n for n, count in Counter(r["phone"] for r in rows).items() if count > 1]
    assert 30 < len(shared) < 300
    assert len({r["external_id"] for r in rows}) == 3000


def test_generated_csv_imports_cleanly_and_callers_are_found(tmp_path):
    """`cti customers generate` output imports with no bad row, and each demo caller's number and account
    find that customer in the store."""
    path = tmp_path / "demo.csv"
    path.write_text(customers_csv(generate_customers(400, 3)), encoding="utf-8")
    with temporary_database("sqlite", tmp_path, POSTGRES_URL) as url:
        store = CustomerStore(make_engine(url))
        report = import_csv(path, store)
        assert (report.imported, report.bad_rows) == (400, [])
        for caller in demo_callers(400, 3)[:50]:
            assert caller.external_id in {c.external_id for c in store.find_by_phone(caller.e164)}
            assert store.find_by_account(caller.account).external_id == caller.external_id
            assert phonenumbers.format_number(phonenumbers.parse(caller.national, "US"),
                                              phonenumbers.PhoneNumberFormat.E164) == caller.e164
        store.engine.dispose()


def test_seed_store_loads_customers_with_history_once(tmp_path):
    """seed_store writes the customers and some past interactions (all before `now`) into PostgreSQL, and
    does nothing the second time when the store is not empty."""
    with temporary_database("postgresql", tmp_path, POSTGRES_URL) as url:
        store = CustomerStore(make_engine(url))
        assert seed_store(store, NOW, n=300, seed=5) == 300
        assert store.count_customers() == 300
        histories = [store.recent_interactions(c.id, 10) for c in (store.find_by_external_id(f"C{i:06d}")
                                                                    for i in range(1, 301))]
        calls = [i for h in histories for i in h]
        assert 100 < len(calls) < 600
        assert all(i.started_at < NOW and i.disposition for i in calls)
        assert seed_store(store, NOW, n=300, seed=5) == 0
        store.engine.dispose()
