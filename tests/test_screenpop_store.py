"""The customer store against real SQLite and real PostgreSQL (a throw-away schema per module)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from cti.db import Base, alembic_config, make_engine, upgrade
from screenpop.store import (
    SCREENPOP_TABLES,
    AccountRecord,
    CustomerInput,
    PhoneRecord,
    StoreInputError,
    account_key,
)
from screenpop.testing import database_fixtures
from tests.conftest import POSTGRES_URL

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


db_url, store = database_fixtures(POSTGRES_URL)


def ann(**changes) -> CustomerInput:
    base = dict(external_id="C1", first_name="Ann", last_name="Lee", email="ann@example.com",
                phones=(PhoneRecord("+12015550123"), PhoneRecord("+12125550100", "mobile")),
                accounts=(AccountRecord("ACC-1001", "checking", "active"),), attributes=(("city", "Newark"),))
    base.update(changes)
    return CustomerInput(**base)


def _ours(obj, name, type_) -> bool:
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table in SCREENPOP_TABLES


def test_migration_matches_models_and_downgrades(db_url):
    """cti.db.upgrade creates exactly the tables, columns, indexes and constraints of the models (in the
    test's own schema on PostgreSQL); downgrading below 0003_screenpop removes them, upgrading restores them."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            opts = {"include_object": lambda obj, name, type_, reflected, other: _ours(obj, name, type_)}
            diff = compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)
            assert diff == []
            names = set(inspect(conn).get_table_names())
            assert set(SCREENPOP_TABLES) <= names
            if engine.dialect.name == "postgresql":
                assert conn.exec_driver_sql("SHOW search_path").scalar().startswith("screenpop_test_")
        command.downgrade(alembic_config(db_url), "0002_acd")  # type: ignore[arg-type]
        with engine.connect() as conn:
            assert not set(SCREENPOP_TABLES) & set(inspect(conn).get_table_names())
        upgrade(db_url)
        with engine.connect() as conn:
            assert set(SCREENPOP_TABLES) <= set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_upsert_is_idempotent_and_updates_in_place(store):
    """Importing the same customer twice creates it once; a changed row updates it and replaces its phones,
    accounts and attributes."""
    first = store.upsert_customers([ann()])
    assert [o.kind for o in first] == ["created"]
    again = store.upsert_customers([ann()])
    assert [(o.kind, o.customer_id) for o in again] == [("unchanged", first[0].customer_id)]
    changed = store.upsert_customers([ann(last_name="Lee-Smith", phones=(PhoneRecord("+12015550123", "home"),),
                                          attributes=())])
    assert [(o.kind, o.customer_id) for o in changed] == [("updated", first[0].customer_id)]
    assert store.count_customers() == 1
    rec = store.get_customer(first[0].customer_id)
    assert rec is not None
    assert rec.name == "Ann Lee-Smith"
    assert rec.phones == (PhoneRecord("+12015550123", "home"),)
    assert rec.attributes == {}
    assert store.find_by_phone("+12125550100") == []


def test_find_by_phone_returns_every_customer_sharing_the_number(store):
    """A number shared by two customers finds both, oldest first, with their phones and accounts."""
    store.upsert_customers([ann(), CustomerInput("C2", "Bob", "Lee", phones=(PhoneRecord("+12015550123"),),
                                                 accounts=(AccountRecord("ACC-2002"),))])
    found = store.find_by_phone("+12015550123")
    assert [c.external_id for c in found] == ["C1", "C2"]
    assert found[0].accounts == (AccountRecord("ACC-1001", "checking", "active"),)
    assert found[0].attributes == {"city": "Newark"}
    assert [c.external_id for c in store.find_by_phone("+12015550123", limit=1)] == ["C1"]
    assert store.find_by_phone("+19999999999") == []


def test_find_by_account_matches_the_canonical_number(store):
    """Account numbers match whatever their spacing, dashes or case; unknown or over-long ones find nobody."""
    store.upsert_customers([ann()])
    for typed in ("ACC-1001", "acc 1001", "ACC1001", " acc-10-01 "):
        found = store.find_by_account(typed)
        assert found is not None and found.external_id == "C1", typed
    assert store.find_by_account("1001") is None
    assert store.find_by_account("") is None
    assert store.find_by_account("9" * 500) is None
    assert account_key("acc-10.01/x") == "ACC1001X"


def test_customer_known_only_by_account_is_updated_by_account(store):
    """Without an external id the first account number is the key: re-importing updates that customer, and
    a later row with an external id adopts it instead of duplicating it."""
    anon = CustomerInput(None, "Dee", accounts=(AccountRecord("77-1"),))
    created = store.upsert_customers([anon])[0]
    renamed = CustomerInput(None, "Deirdre", accounts=(AccountRecord("77-1"),))
    assert store.upsert_customers([renamed])[0].kind == "updated"
    adopted = store.upsert_customers([CustomerInput("C9", "Deirdre", accounts=(AccountRecord("77-1"),))])[0]
    assert (adopted.kind, adopted.customer_id) == ("updated", created.customer_id)
    assert store.count_customers() == 1
    assert store.find_by_external_id("C9").first_name == "Deirdre"


def test_account_owned_by_another_customer_is_rejected(store):
    """A row claiming an account that belongs to another customer is rejected with a reason; the rest of
    the batch is written."""
    out = store.upsert_customers([ann(), CustomerInput("C2", "Bob", accounts=(AccountRecord("acc 1001"),)),
                                  CustomerInput("C3", "Cy")])
    assert [o.kind for o in out] == ["created", "rejected", "created"]
    assert out[1].reason == "account acc 1001 belongs to another customer (external_id C1)"
    assert store.find_by_external_id("C2") is None
    assert store.find_by_external_id("C3") is not None


def test_an_account_can_move_between_customers_within_one_batch(store):
    """When one row drops an account and a later row of the same batch takes it, both are written."""
    store.upsert_customers([ann()])
    out = store.upsert_customers([ann(accounts=()), CustomerInput("C2", "Bob", accounts=(AccountRecord("ACC-1001"),))])
    assert [o.kind for o in out] == ["updated", "created"]
    assert store.find_by_account("ACC-1001").external_id == "C2"


def test_interactions_newest_first_and_limited(store):
    """recent_interactions returns the customer's last N calls, newest first, with aware UTC times."""
    cid = store.upsert_customers([ann()])[0].customer_id
    for n in range(4):
        store.add_interaction(f"pbx1/{n}", started_at=T0 + timedelta(hours=n), direction="inbound",
                              customer_id=cid, queue="sales", agent_id=f"a{n}")
    store.add_interaction("pbx1/other", started_at=T0, direction="inbound")
    recent = store.recent_interactions(cid, 3)
    assert [i.call_key for i in recent] == ["pbx1/3", "pbx1/2", "pbx1/1"]
    assert recent[0].started_at == T0 + timedelta(hours=3)
    assert recent[0].started_at.tzinfo is not None
    assert recent[0].to_dict()["started_at"] == "2026-03-01T12:00:00+00:00"
    assert store.recent_interactions(cid, 0) == []


def test_add_interaction_is_idempotent_on_call_key(store):
    """Adding the same call twice (a re-offer to another agent) keeps one row and updates what changed."""
    first = store.add_interaction("pbx1/55", started_at=T0, direction="inbound", queue="sales", agent_id="a1")
    second = store.add_interaction("pbx1/55", started_at=T0, direction="inbound", agent_id="a2")
    assert first == second
    row = store.get_interaction("pbx1/55")
    assert (row.queue, row.agent_id) == ("sales", "a2")


def test_update_interaction_sets_disposition_and_never_loses_it(store):
    """A disposition updates the call's row; for a call with no row yet one is created so it is not lost;
    times given with another offset are stored as UTC."""
    cid = store.upsert_customers([ann()])[0].customer_id
    iid = store.add_interaction("pbx1/7", started_at=T0, direction="inbound", customer_id=cid)
    end = datetime(2026, 3, 1, 11, 5, tzinfo=timezone(timedelta(hours=2)))
    assert store.update_interaction("pbx1/7", disposition="sale", notes="upgraded plan", agent_id="a7",
                                    outcome="answered", ended_at=end) == iid
    row = store.get_interaction("pbx1/7")
    assert (row.disposition, row.notes, row.agent_id, row.outcome) == ("sale", "upgraded plan", "a7", "answered")
    assert row.ended_at == datetime(2026, 3, 1, 9, 5, tzinfo=UTC)
    orphan = store.update_interaction("pbx1/unknown", disposition="callback", notes="call back at 5")
    assert store.get_interaction("pbx1/unknown").disposition == "callback"
    assert orphan != iid
    store.add_interaction("pbx1/unknown", started_at=T0, direction="inbound", customer_id=cid)
    late = store.get_interaction("pbx1/unknown")
    assert (late.started_at, late.direction, late.disposition) == (T0, "inbound", "callback")


def test_over_long_or_nul_input_is_refused_and_nothing_written(store):
    """Notes over 4000 characters, a NUL byte or an empty call key raise StoreInputError and write nothing."""
    with pytest.raises(StoreInputError, match="notes is 4001 characters long"):
        store.update_interaction("pbx1/8", notes="x" * 4001)
    with pytest.raises(StoreInputError, match="NUL"):
        store.update_interaction("pbx1/8", disposition="sa\x00le")
    with pytest.raises(StoreInputError, match="call_key is empty"):
        store.update_interaction("", disposition="sale")
    assert store.get_interaction("pbx1/8") is None
