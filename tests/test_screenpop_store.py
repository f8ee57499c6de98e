"""The customer store against real SQLite and real PostgreSQL (a throw-away schema per module)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from centre.database import alembic_config, upgrade
from cti.db import Base, make_engine
from screenpop.store import (
    SCREENPOP_TABLES,
    Account,
    AccountRecord,
    Customer,
    CustomerInput,
    CustomerPhone,
    CustomerRecord,
    CustomerStore,
    Interaction,
    InteractionRecord,
    PhoneRecord,
    StoreInputError,
    account_key,
)
from tests.conftest import POSTGRES_URL
from tests.screenpop_db import database_fixtures

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
    """centre.database.upgrade creates exactly the tables, columns, indexes and constraints of the models (in the
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


# --- the Core read and write paths, against the ORM queries they replaced -------------------------

def _orm_record(c: Customer) -> CustomerRecord:
    return CustomerRecord(
        id=c.id, external_id=c.external_id, first_name=c.first_name, last_name=c.last_name,
        company=c.company, email=c.email, language=c.language, segment=c.segment, notes=c.notes,
        phones=tuple(PhoneRecord(p.e164, p.kind) for p in c.phones),
        accounts=tuple(AccountRecord(a.number, a.product, a.status) for a in c.accounts),
        attributes=dict(c.attributes or {}),
    )


def _orm_interaction(i: Interaction) -> InteractionRecord:
    def utc(v: datetime | None) -> datetime | None:
        return None if v is None else v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
    return InteractionRecord(
        id=i.id, call_key=i.call_key, customer_id=i.customer_id, started_at=utc(i.started_at),
        ended_at=utc(i.ended_at), direction=i.direction, ani=i.ani, dnis=i.dnis, queue=i.queue,
        campaign=i.campaign, lead_id=i.lead_id, agent_id=i.agent_id, outcome=i.outcome,
        disposition=i.disposition, notes=i.notes,
    )


LOAD = (selectinload(Customer.phones), selectinload(Customer.accounts))


class OrmReference:
    """The store's read paths as they were written with the ORM (the behaviour the Core ones must keep)."""

    def __init__(self, store: CustomerStore) -> None:
        self.engine = store.engine

    def find_by_phone(self, e164: str, limit: int = 20) -> list[CustomerRecord]:
        with Session(self.engine) as s:
            ids = select(CustomerPhone.customer_id).where(CustomerPhone.e164 == e164)
            return [_orm_record(c) for c in s.scalars(select(Customer).where(Customer.id.in_(ids)).options(*LOAD)
                                                      .order_by(Customer.id).limit(limit))]

    def find_by_account(self, number: str) -> CustomerRecord | None:
        key = account_key(number)
        if not key or len(key) > 64:
            return None
        with Session(self.engine) as s:
            c = s.scalars(select(Customer).join(Account).where(Account.number_key == key).options(*LOAD)).first()
            return _orm_record(c) if c else None

    def find_by_external_id(self, external_id: str) -> CustomerRecord | None:
        if not external_id or len(external_id) > 64:
            return None
        with Session(self.engine) as s:
            c = s.scalars(select(Customer).where(Customer.external_id == external_id).options(*LOAD)).first()
            return _orm_record(c) if c else None

    def get_customer(self, customer_id: int) -> CustomerRecord | None:
        with Session(self.engine) as s:
            c = s.scalars(select(Customer).where(Customer.id == customer_id).options(*LOAD)).first()
            return _orm_record(c) if c else None

    def recent_interactions(self, customer_id: int, limit: int = 5) -> list[InteractionRecord]:
        if limit <= 0:
            return []
        with Session(self.engine) as s:
            return [_orm_interaction(i) for i in s.scalars(
                select(Interaction).where(Interaction.customer_id == customer_id)
                .order_by(Interaction.started_at.desc(), Interaction.id.desc()).limit(limit))]

    def get_interaction(self, call_key: str) -> InteractionRecord | None:
        with Session(self.engine) as s:
            i = s.scalars(select(Interaction).where(Interaction.call_key == call_key)).first()
            return _orm_interaction(i) if i else None


SHARED = "+12015550123"


def populate(store: CustomerStore) -> list[int]:
    """Five customers (three share a number, one has two phones and two accounts, one has NULL attributes)
    and interactions: several per customer with a tie on started_at, none for one, some for unknown callers."""
    ids = [o.customer_id for o in store.upsert_customers([
        ann(),
        CustomerInput("C2", "Bob", "Lee", phones=(PhoneRecord(SHARED),), accounts=(AccountRecord("ACC-2002"),)),
        CustomerInput("C3", "Cy", phones=(PhoneRecord("+12125550100", "mobile"), PhoneRecord(SHARED, "home")),
                      accounts=(AccountRecord("77-3", "loan"), AccountRecord("77-4", "card", "closed")),
                      attributes=(("vip", "yes"), ("city", "Trenton"))),
        CustomerInput("C4", company="Acme", phones=(PhoneRecord("+13135550100"),)),
        CustomerInput("C5", "Di", phones=(PhoneRecord("+14155550100"),)),
    ])]
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE customers SET attributes = 'null' WHERE external_id = 'C5'"))
    c1, c2, _c3, c4, _c5 = ids
    for n in range(7):  # pbx1/c1-1 and pbx1/c1-2 start at the same time: the later id comes first
        store.add_interaction(f"pbx1/c1-{n}", started_at=T0 + timedelta(hours=1 if n == 2 else n),
                              direction="inbound", customer_id=c1, queue="sales", agent_id=f"a{n}")
    store.update_interaction("pbx1/c1-6", disposition="sale", notes="n", ended_at=T0 + timedelta(hours=7))
    store.add_interaction("pbx1/c2-0", started_at=T0 - timedelta(days=3), direction="outbound", customer_id=c2,
                          campaign="renewals", lead_id="L1")
    store.add_interaction("pbx1/c4-0", started_at=T0, direction="inbound", customer_id=c4)
    store.add_interaction("pbx1/c4-1", started_at=T0 + timedelta(minutes=1), direction="inbound", customer_id=c4)
    store.add_interaction("pbx1/anon", started_at=T0 + timedelta(days=1), direction="inbound", ani="+12015550123")
    store.update_interaction("pbx1/early", disposition="callback")
    return [i for i in ids if i is not None]


def test_core_reads_match_the_orm_queries_they_replace(store):
    """find_by_phone, find_by_account, find_by_external_id, get_customer, recent_interactions and
    get_interaction give exactly what the ORM queries gave: order, limits, phones, accounts, attributes
    (a JSON null is {}), aware UTC datetimes, and None or [] for whatever finds nothing."""
    ids = populate(store)
    orm = OrmReference(store)
    for e164, limit in itertools.product([SHARED, "+12125550100", "+13135550100", "+19995550100"], [0, 1, 2, 20]):
        assert store.find_by_phone(e164, limit) == orm.find_by_phone(e164, limit), (e164, limit)
    assert [c.external_id for c in store.find_by_phone(SHARED)] == ["C1", "C2", "C3"]
    for cid in [*ids, max(ids) + 100]:
        assert store.get_customer(cid) == orm.get_customer(cid)
    assert store.get_customer(ids[4]).attributes == {}
    assert store.get_customer(ids[2]).phones == (PhoneRecord("+12125550100", "mobile"), PhoneRecord(SHARED, "home"))
    for number in ["ACC-1001", "acc 2002", "77-4", "773", "nope", "", "9" * 500]:
        assert store.find_by_account(number) == orm.find_by_account(number), number
    for ext in ["C1", "C3", "C5", "C9", "", "C" * 65]:
        assert store.find_by_external_id(ext) == orm.find_by_external_id(ext), ext
    for cid, limit in itertools.product([*ids, max(ids) + 100], [-1, 0, 1, 2, 3, 10]):
        assert store.recent_interactions(cid, limit) == orm.recent_interactions(cid, limit), (cid, limit)
    assert [i.call_key for i in store.recent_interactions(ids[0], 6)] == [
        "pbx1/c1-6", "pbx1/c1-5", "pbx1/c1-4", "pbx1/c1-3", "pbx1/c1-2", "pbx1/c1-1"]
    for key in ["pbx1/c1-6", "pbx1/c2-0", "pbx1/anon", "pbx1/early", "pbx1/none"]:
        assert store.get_interaction(key) == orm.get_interaction(key), key
    row = store.get_interaction("pbx1/c1-6")
    assert row.ended_at == T0 + timedelta(hours=7) and row.ended_at.tzinfo is UTC and row.started_at.tzinfo is UTC
    assert store.count_customers() == 5


def test_lookups_with_history_match_the_separate_calls(store):
    """find_by_phone_with_history and find_with_history give the customers of find_by_phone / get_customer /
    find_by_account / find_by_external_id and, for each of them in that order, recent_interactions(id,
    history): the one-query window over several customers keeps the per-customer order and limit."""
    ids = populate(store)

    def separate(customers: list[CustomerRecord], history: int) -> tuple[list[CustomerRecord], dict]:
        return customers, {c.id: tuple(store.recent_interactions(c.id, history)) for c in customers}

    for e164, limit, history in itertools.product([SHARED, "+13135550100", "+19995550100"], [1, 2, 20],
                                                  [0, 1, 2, 3, 10]):
        customers, found = store.find_by_phone_with_history(e164, limit, history)
        assert (customers, found) == separate(store.find_by_phone(e164, limit), history), (e164, limit, history)
        assert list(found) == [c.id for c in customers]
    customers, found = store.find_by_phone_with_history(SHARED, 20, 3)
    assert [[i.call_key for i in found[c.id]] for c in customers] == [
        ["pbx1/c1-6", "pbx1/c1-5", "pbx1/c1-4"], ["pbx1/c2-0"], []]
    assert [i.call_key for i in store.find_by_phone_with_history(SHARED, 20, 6)[1][ids[0]][4:]] == [
        "pbx1/c1-2", "pbx1/c1-1"]
    for history in (0, 1, 5):
        for cid in [*ids, max(ids) + 100]:
            one = store.get_customer(cid)
            assert store.find_with_history("id", cid, history) == separate([one] if one else [], history)
            assert store.find_with_history("id", str(cid), history) == separate([one] if one else [], history)
        for number in ["ACC-1001", "77 4", "nope", "", "9" * 500]:
            one = store.find_by_account(number)
            assert store.find_with_history("account", number, history) == separate([one] if one else [], history)
        for ext in ["C1", "C4", "C9", "", "C" * 65]:
            one = store.find_by_external_id(ext)
            assert store.find_with_history("external_id", ext, history) == separate([one] if one else [], history)
    with pytest.raises(ValueError):
        store.find_with_history("id", "not-a-number")
    with pytest.raises(ValueError):
        store.find_with_history("email", "ann@example.com")  # type: ignore[arg-type]


def _written(store: CustomerStore, call_key: str) -> datetime:
    with Session(store.engine) as s:
        return s.scalars(select(Interaction.updated_at).where(Interaction.call_key == call_key)).one()


def test_interaction_writes_keep_their_semantics(store):
    """add_interaction sets only the non-empty fields and keeps the first start once the direction is known;
    update_interaction sets every field given (an empty string clears), creates a row (started now, direction
    unknown) when there is none, and every write moves updated_at; a customer that does not exist is refused."""
    cid = store.upsert_customers([ann()])[0].customer_id
    first = store.add_interaction("pbx1/1", started_at=T0, direction="inbound", customer_id=cid, queue="sales",
                                  notes="first")
    before = _written(store, "pbx1/1")
    again = store.add_interaction("pbx1/1", started_at=T0 + timedelta(hours=1), direction="inbound", agent_id="a2",
                                  queue="")
    row = store.get_interaction("pbx1/1")
    assert again == first
    assert (row.started_at, row.queue, row.agent_id, row.notes, row.customer_id) == (T0, "sales", "a2", "first", cid)
    assert _written(store, "pbx1/1") >= before
    assert store.update_interaction("pbx1/1", notes="", outcome="answered") == first
    row = store.get_interaction("pbx1/1")
    assert (row.notes, row.outcome, row.queue) == ("", "answered", "sales")

    made = datetime.now(UTC)
    orphan = store.update_interaction("pbx1/2")
    row = store.get_interaction("pbx1/2")
    assert orphan != first and row.id == orphan
    assert (row.direction, row.disposition, row.customer_id, row.ended_at) == ("", "", None, None)
    assert made - timedelta(seconds=5) <= row.started_at <= datetime.now(UTC) + timedelta(seconds=5)
    store.add_interaction("pbx1/2", started_at=T0, direction="", queue="q")  # direction still unknown: start taken
    assert store.get_interaction("pbx1/2").started_at == T0
    store.add_interaction("pbx1/2", started_at=T0 + timedelta(minutes=1), direction="outbound")
    store.add_interaction("pbx1/2", started_at=T0 + timedelta(minutes=2), direction="inbound")
    row = store.get_interaction("pbx1/2")
    assert (row.started_at, row.direction, row.queue) == (T0 + timedelta(minutes=1), "inbound", "q")

    with pytest.raises(IntegrityError):
        store.add_interaction("pbx1/3", started_at=T0, direction="inbound", customer_id=cid + 1000)
    assert store.get_interaction("pbx1/3") is None
    with pytest.raises(IntegrityError):
        store.update_interaction("pbx1/1", customer_id=cid + 1000)
    assert store.get_interaction("pbx1/1").customer_id == cid


def test_interaction_writes_without_update_returning(store, monkeypatch):
    """On a database without UPDATE ... RETURNING the writes find the row's id with a SELECT instead."""
    monkeypatch.setattr(store.engine.dialect, "update_returning", False)
    early = store.update_interaction("pbx1/7", disposition="callback")
    assert store.add_interaction("pbx1/7", started_at=T0, direction="inbound", queue="sales") == early
    assert store.update_interaction("pbx1/7", notes="later") == early
    row = store.get_interaction("pbx1/7")
    assert (row.started_at, row.direction, row.queue, row.disposition, row.notes) == (
        T0, "inbound", "sales", "callback", "later")
    assert store.add_interaction("pbx1/8", started_at=T0, direction="inbound") != early


def test_a_concurrent_first_write_of_the_same_call_is_retried_as_an_update(store, db_url):
    """When another writer inserts the call's row between this write's UPDATE (no row yet) and its INSERT,
    the INSERT's unique violation makes the write go round again and update that row (PostgreSQL: SQLite
    serialises writers, so the race cannot happen there)."""
    if store.engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: the other writer would wait for this transaction")
    other = CustomerStore(make_engine(db_url))
    raced: list[int] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def insert_first(conn: object, cursor: object, statement: str, parameters: object, context: object,
                     executemany: bool) -> None:
        if statement.startswith("INSERT INTO customer_interactions") and not raced:
            raced.append(other.update_interaction("pbx1/9", disposition="callback"))

    try:
        iid = store.add_interaction("pbx1/9", started_at=T0, direction="inbound", queue="sales")
    finally:
        event.remove(store.engine, "before_cursor_execute", insert_first)
        other.engine.dispose()
    assert raced == [iid]
    row = store.get_interaction("pbx1/9")
    assert (row.started_at, row.direction, row.queue, row.disposition) == (T0, "inbound", "sales", "callback")
