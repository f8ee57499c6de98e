"""The customer store: SQLAlchemy models (customers, phones, accounts, interactions) and ``CustomerStore``.

Blocking database I/O: every ``CustomerStore`` method is synchronous and meant to run in a thread
pool (``screenpop.lookup`` does that), never on the event loop. Must not import Twisted, asyncio or
any engine package. Phone numbers are stored normalised to E.164 (``screenpop.phone``); account
numbers are matched on a canonical key (upper case, no spaces, dashes, dots or slashes).

For SQLite use a file URL: ``sqlite:///:memory:`` gives every thread its own empty database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, cast

from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    Row,
    Select,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    case,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, selectinload

from cti.db import Base
from screenpop.records import (
    AccountRecord,
    CustomerInput,
    CustomerRecord,
    InteractionChange,
    InteractionRecord,
    OutcomeKind,
    PhoneRecord,
    UpsertOutcome,
)

__all__ = [
    "Account", "AccountRecord", "Customer", "CustomerInput", "CustomerPhone", "CustomerRecord", "CustomerStore",
    "History", "Interaction", "InteractionChange", "InteractionRecord", "PhoneRecord", "StoreInputError",
    "UpsertOutcome", "WrittenInteraction", "account_key", "interaction_add", "interaction_update",
]

MAX_NAME = 100
MAX_NOTES = 4000
MAX_KEY = 64
MAX_SHORT = 64
MAX_ATTRIBUTE_VALUE = 1000
MAX_RECORDING_PATH = 255


class StoreInputError(ValueError):
    """A value given to the store breaks one of its limits; nothing was written."""


def account_key(number: str) -> str:
    """Canonical form of an account number for matching: ``acc-1001`` and ``ACC 1001`` are the same."""
    return re.sub(r"[\s\-./]", "", number).upper()


def _utc(value: datetime | None) -> datetime | None:
    """Aware UTC datetime; naive values (SQLite returns those) are taken as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- models --------------------------------------------------------------------------------------

class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(MAX_KEY), unique=True)
    first_name: Mapped[str] = mapped_column(String(MAX_NAME), default="")
    last_name: Mapped[str] = mapped_column(String(MAX_NAME), default="")
    company: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    language: Mapped[str] = mapped_column(String(16), default="")
    segment: Mapped[str] = mapped_column(String(MAX_SHORT), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    attributes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    phones: Mapped[list[CustomerPhone]] = relationship(
        back_populates="customer", cascade="all, delete-orphan", order_by="CustomerPhone.id")
    accounts: Mapped[list[Account]] = relationship(
        back_populates="customer", cascade="all, delete-orphan", order_by="Account.id")


class CustomerPhone(Base):
    __tablename__ = "customer_phones"
    __table_args__ = (UniqueConstraint("customer_id", "e164", name="uq_customer_phones_customer_e164"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    e164: Mapped[str] = mapped_column(String(20), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="main")

    customer: Mapped[Customer] = relationship(back_populates="phones")


class Account(Base):
    __tablename__ = "customer_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(MAX_KEY))
    number_key: Mapped[str] = mapped_column(String(MAX_KEY), unique=True)
    product: Mapped[str] = mapped_column(String(MAX_SHORT), default="")
    status: Mapped[str] = mapped_column(String(32), default="")

    customer: Mapped[Customer] = relationship(back_populates="accounts")


class Interaction(Base):
    """One call with a customer (or an unknown caller): who handled it and how it ended."""

    __tablename__ = "customer_interactions"
    __table_args__ = (Index("ix_customer_interactions_customer_started", "customer_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_key: Mapped[str] = mapped_column(String(128), unique=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    direction: Mapped[str] = mapped_column(String(8), default="")
    ani: Mapped[str] = mapped_column(String(32), default="")
    dnis: Mapped[str] = mapped_column(String(32), default="")
    queue: Mapped[str] = mapped_column(String(MAX_SHORT), default="")
    campaign: Mapped[str] = mapped_column(String(MAX_SHORT), default="")
    lead_id: Mapped[str] = mapped_column(String(MAX_SHORT), default="")
    agent_id: Mapped[str] = mapped_column(String(MAX_SHORT), default="")
    outcome: Mapped[str] = mapped_column(String(32), default="")
    disposition: Mapped[str] = mapped_column(String(MAX_SHORT), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # the call's recording (centre.recording): the file Asterisk writes, the pauses for audit
    # ([{"from", "to", "by"}], epoch seconds) and when the retention purge deleted the file
    recording_path: Mapped[str] = mapped_column(String(MAX_RECORDING_PATH), default="", server_default="")
    recording_pauses: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    recording_purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # the agent's part's holds, written when the part ends (the hold statistics are rebuilt from them):
    # seconds on hold in all, how many holds, the longest
    hold_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    hold_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    hold_max: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # when the agent's part went on to an outside number (the queue's transfers are rebuilt from it)
    transferred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None, index=True)


SCREENPOP_TABLES = ("customers", "customer_phones", "customer_accounts", "customer_interactions")


def _state(c: Customer) -> tuple[Any, ...]:
    return (c.external_id, c.first_name, c.last_name, c.company, c.email, c.language, c.segment, c.notes,
            sorted((p.e164, p.kind) for p in c.phones),
            sorted((a.number, a.product, a.status) for a in c.accounts),
            sorted((c.attributes or {}).items()))


def _wanted(inp: CustomerInput, external_id: str | None) -> tuple[Any, ...]:
    return (external_id, inp.first_name, inp.last_name, inp.company, inp.email, inp.language, inp.segment,
            inp.notes, sorted((p.e164, p.kind) for p in inp.phones),
            sorted((a.number, a.product, a.status) for a in inp.accounts), sorted(inp.attributes))


def _check_len(name: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise StoreInputError(f"{name} is {len(value)} characters long (limit {limit})")
    if value is not None and "\x00" in value:
        raise StoreInputError(f"{name} contains a NUL character")


_INTERACTION_LIMITS = (("call_key", 128), ("notes", MAX_NOTES), ("disposition", MAX_SHORT), ("agent_id", MAX_SHORT),
                       ("queue", MAX_SHORT), ("campaign", MAX_SHORT), ("lead_id", MAX_SHORT), ("outcome", 32),
                       ("direction", 8), ("ani", 32), ("dnis", 32), ("recording_path", MAX_RECORDING_PATH))

_CUSTOMER_LOAD = (selectinload(Customer.phones), selectinload(Customer.accounts))

History = dict[int, tuple[InteractionRecord, ...]]
"""Each found customer's id (in the order the customers were found) -> its last interactions, newest first."""

# --- Core statements for the hot paths -----------------------------------------------------------
# Look-ups and interaction writes run in worker threads for every call, and through the GIL their CPU
# delays the event loop: they use SQLAlchemy Core on the models' tables (no identity map, no unit of
# work), with statements built once here (SQLAlchemy caches their compiled SQL, not their construction).

_CUSTOMERS = cast(Table, Customer.__table__)
_PHONES = cast(Table, CustomerPhone.__table__)
_ACCOUNTS = cast(Table, Account.__table__)
_INTERACTIONS = cast(Table, Interaction.__table__)
_C, _P, _A, _I = _CUSTOMERS.c, _PHONES.c, _ACCOUNTS.c, _INTERACTIONS.c

# In the order _customer unpacks them.
_CUSTOMER_COLUMNS = (_C.id, _C.external_id, _C.first_name, _C.last_name, _C.company, _C.email, _C.language,
                     _C.segment, _C.notes, _C.attributes)
_SELECT_CUSTOMERS = select(*_CUSTOMER_COLUMNS)
_CUSTOMERS_BY_PHONE = (
    _SELECT_CUSTOMERS.where(_C.id.in_(select(_P.customer_id).where(_P.e164 == bindparam("e164"))))
    .order_by(_C.id).limit(bindparam("limit", type_=Integer)))
_CUSTOMER_BY_ACCOUNT = (_SELECT_CUSTOMERS.join_from(_CUSTOMERS, _ACCOUNTS, _A.customer_id == _C.id)
                        .where(_A.number_key == bindparam("key")))
_CUSTOMER_BY_EXTERNAL_ID = _SELECT_CUSTOMERS.where(_C.external_id == bindparam("external_id"))
_CUSTOMER_BY_ID = _SELECT_CUSTOMERS.where(_C.id == bindparam("id", type_=Integer))
# Phones and accounts of several customers at once, in id order (as the ORM relationships are).
_PHONES_OF = (select(_P.customer_id, _P.e164, _P.kind)
              .where(_P.customer_id.in_(bindparam("ids", expanding=True))).order_by(_P.id))
_ACCOUNTS_OF = (select(_A.customer_id, _A.number, _A.product, _A.status)
                .where(_A.customer_id.in_(bindparam("ids", expanding=True))).order_by(_A.id))

# In the order _interaction unpacks them.
_INTERACTION_COLUMNS = (_I.id, _I.call_key, _I.customer_id, _I.started_at, _I.ended_at, _I.direction, _I.ani,
                        _I.dnis, _I.queue, _I.campaign, _I.lead_id, _I.agent_id, _I.outcome, _I.disposition,
                        _I.notes)
_NEWEST_FIRST = (_I.started_at.desc(), _I.id.desc())
_RECENT_INTERACTIONS = (select(*_INTERACTION_COLUMNS).where(_I.customer_id == bindparam("customer_id"))
                        .order_by(*_NEWEST_FIRST).limit(bindparam("limit", type_=Integer)))
# The last ``limit`` interactions of each of several customers in one query (window functions: SQLite
# 3.25+, PostgreSQL), grouped by customer, each newest first.
_RANKED = (select(*_INTERACTION_COLUMNS,
                  func.row_number().over(partition_by=_I.customer_id, order_by=_NEWEST_FIRST).label("pos"))
           .where(_I.customer_id.in_(bindparam("ids", expanding=True))).subquery("ranked"))
_RECENT_INTERACTIONS_OF = (select(*(_RANKED.c[c.name] for c in _INTERACTION_COLUMNS))
                           .where(_RANKED.c.pos <= bindparam("limit", type_=Integer))
                           .order_by(_RANKED.c.customer_id, _RANKED.c.pos))
_INTERACTION_BY_CALL_KEY = select(*_INTERACTION_COLUMNS).where(_I.call_key == bindparam("call_key"))
_COUNT_CUSTOMERS = select(func.count()).select_from(_CUSTOMERS)
_RECORDING_OF = select(_I.call_key, _I.recording_path, _I.recording_pauses, _I.recording_purged_at).where(
    _I.call_key == bindparam("call_key"))


class RecordingRow(NamedTuple):
    """An interaction's recording as stored (reports and the supervisor's agent view read it by call key)."""

    call_key: str
    path: str
    pauses: list[dict[str, Any]] | None
    purged_at: datetime | None

# Interaction writes: the columns to set come from the execute parameters (plus "key_", the call key to
# match, and "start_", a start time that replaces the row's own only while its direction is unknown:
# a row created by an early disposition takes the real start of the call).
_UPDATE_INTERACTION = update(_INTERACTIONS).where(_I.call_key == bindparam("key_"))
_UPDATE_INTERACTION_STARTED = _UPDATE_INTERACTION.values(
    started_at=case((_I.direction == "", bindparam("start_", type_=_I.started_at.type)), else_=_I.started_at))
_UPDATE_INTERACTION_RETURNING = _UPDATE_INTERACTION.returning(_I.id, _I.customer_id)
_UPDATE_INTERACTION_STARTED_RETURNING = _UPDATE_INTERACTION_STARTED.returning(_I.id, _I.customer_id)
_INTERACTION_ID = select(_I.id, _I.customer_id).where(_I.call_key == bindparam("call_key"))
_INSERT_INTERACTION = insert(_INTERACTIONS)


WrittenInteraction = tuple[int, int | None]
"""What ``write_interactions`` answers for each change: the row's id and its customer's (None: not known)."""


def interaction_add(
    call_key: str, *, started_at: datetime, direction: str, customer_id: int | None = None, ani: str = "",
    dnis: str = "", queue: str = "", campaign: str = "", lead_id: str = "", agent_id: str = "", outcome: str = "",
    disposition: str = "", notes: str = "",
) -> InteractionChange:
    """The change ``CustomerStore.add_interaction`` makes: only the non-empty fields are set."""
    values: dict[str, Any] = {
        "customer_id": customer_id, "direction": direction, "ani": ani, "dnis": dnis, "queue": queue,
        "campaign": campaign, "lead_id": lead_id, "agent_id": agent_id, "outcome": outcome,
        "disposition": disposition, "notes": notes,
    }
    return InteractionChange(call_key, {k: v for k, v in values.items() if v}, _utc(started_at))


def interaction_update(
    call_key: str, *, disposition: str | None = None, notes: str | None = None, agent_id: str | None = None,
    outcome: str | None = None, ended_at: datetime | None = None, customer_id: int | None = None,
    recording_path: str | None = None, recording_pauses: list[dict[str, Any]] | None = None,
    hold_seconds: float | None = None, hold_count: int | None = None, hold_max: float | None = None,
    transferred_at: datetime | None = None,
) -> InteractionChange:
    """The change ``CustomerStore.update_interaction`` makes: every field given is set (None leaves one alone)."""
    values: dict[str, Any] = {"disposition": disposition, "notes": notes, "agent_id": agent_id,
                              "outcome": outcome, "ended_at": _utc(ended_at), "customer_id": customer_id,
                              "recording_path": recording_path, "recording_pauses": recording_pauses,
                              "hold_seconds": hold_seconds, "hold_count": hold_count, "hold_max": hold_max,
                              "transferred_at": _utc(transferred_at)}
    return InteractionChange(call_key, {k: v for k, v in values.items() if v is not None})


def _check_change(change: InteractionChange) -> None:
    _check_len("call_key", change.call_key, 128)
    if not change.call_key:
        raise StoreInputError("call_key is empty")
    for name, limit in _INTERACTION_LIMITS:
        value = change.values.get(name)
        _check_len(name, value if isinstance(value, str) else None, limit)


def _customer(row: Row[Any], phones: tuple[PhoneRecord, ...], accounts: tuple[AccountRecord, ...]) -> CustomerRecord:
    cid, external_id, first_name, last_name, company, email, language, segment, notes, attributes = row
    return CustomerRecord(
        id=cid, external_id=external_id, first_name=first_name, last_name=last_name, company=company,
        email=email, language=language, segment=segment, notes=notes, phones=phones, accounts=accounts,
        attributes=dict(attributes or {}),
    )


def _customers(conn: Connection, rows: Sequence[Row[Any]]) -> list[CustomerRecord]:
    """Records for customer rows (``_CUSTOMER_COLUMNS``), with their phones and accounts (one query each)."""
    if not rows:
        return []
    ids = [row[0] for row in rows]
    phones: dict[int, list[PhoneRecord]] = {cid: [] for cid in ids}
    for cid, e164, kind in conn.execute(_PHONES_OF, {"ids": ids}):
        phones[cid].append(PhoneRecord(e164, kind))
    accounts: dict[int, list[AccountRecord]] = {cid: [] for cid in ids}
    for cid, number, product, status in conn.execute(_ACCOUNTS_OF, {"ids": ids}):
        accounts[cid].append(AccountRecord(number, product, status))
    return [_customer(row, tuple(phones[row[0]]), tuple(accounts[row[0]])) for row in rows]


def _one_customer_query(by: Literal["id", "account", "external_id"],
                        value: str | int) -> tuple[Select[Any], dict[str, Any]] | None:
    """The statement and parameters finding one customer, or None when ``value`` cannot match anyone
    (an empty or over-long account number or external id)."""
    if by == "id":
        return _CUSTOMER_BY_ID, {"id": int(value)}
    if by == "account":
        key = account_key(str(value))
        return (_CUSTOMER_BY_ACCOUNT, {"key": key}) if key and len(key) <= MAX_KEY else None
    if by == "external_id":
        text = str(value)
        return (_CUSTOMER_BY_EXTERNAL_ID, {"external_id": text}) if text and len(text) <= MAX_KEY else None
    raise ValueError(f"unknown look-up {by!r}")


def _one_customer(conn: Connection, stmt: Select[Any], params: dict[str, Any]) -> CustomerRecord | None:
    row = conn.execute(stmt, params).first()
    return _customers(conn, [row])[0] if row is not None else None


def _interaction_row(row: Row[Any]) -> InteractionRecord:
    (iid, call_key, customer_id, started_at, ended_at, direction, ani, dnis, queue, campaign, lead_id, agent_id,
     outcome, disposition, notes) = row
    return InteractionRecord(
        id=iid, call_key=call_key, customer_id=customer_id, started_at=_utc(started_at),  # type: ignore[arg-type]
        ended_at=_utc(ended_at), direction=direction, ani=ani, dnis=dnis, queue=queue, campaign=campaign,
        lead_id=lead_id, agent_id=agent_id, outcome=outcome, disposition=disposition, notes=notes,
    )


def _history(conn: Connection, customers: Sequence[CustomerRecord], limit: int) -> History:
    """Each customer's last ``limit`` interactions, newest first (an empty tuple for none)."""
    found: dict[int, list[InteractionRecord]] = {c.id: [] for c in customers}
    if limit > 0 and found:
        if len(found) == 1:
            rows = conn.execute(_RECENT_INTERACTIONS, {"customer_id": customers[0].id, "limit": limit})
        else:
            rows = conn.execute(_RECENT_INTERACTIONS_OF, {"ids": list(found), "limit": limit})
        for row in rows:
            found[row[2]].append(_interaction_row(row))
    return {cid: tuple(items) for cid, items in found.items()}


# --- the store -----------------------------------------------------------------------------------

class CustomerStore:
    """Synchronous access to customers and interactions. Thread-safe: one connection (or session) per call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # look-ups ------------------------------------------------------------------------------------

    def find_by_phone(self, e164: str, limit: int = 20) -> list[CustomerRecord]:
        """Customers having this E.164 number (several people may share one), oldest first."""
        with self.engine.connect() as conn:
            return _customers(conn, conn.execute(_CUSTOMERS_BY_PHONE, {"e164": e164, "limit": limit}).all())

    def find_by_phone_with_history(self, e164: str, limit: int = 20,
                                   history: int = 5) -> tuple[list[CustomerRecord], History]:
        """``find_by_phone`` and each found customer's ``recent_interactions(id, history)``, on one connection
        and with one query for the interactions of all of them."""
        with self.engine.connect() as conn:
            customers = _customers(conn, conn.execute(_CUSTOMERS_BY_PHONE, {"e164": e164, "limit": limit}).all())
            return customers, _history(conn, customers, history)

    def find_with_history(self, by: Literal["id", "account", "external_id"], value: str | int,
                          history: int = 5) -> tuple[list[CustomerRecord], History]:
        """One customer by store id (``get_customer``), account number (``find_by_account``) or external id
        (``find_by_external_id``) as a list of zero or one, with its ``recent_interactions(id, history)``."""
        query = _one_customer_query(by, value)
        if query is None:
            return [], {}
        with self.engine.connect() as conn:
            one = _one_customer(conn, *query)
            customers = [one] if one is not None else []
            return customers, _history(conn, customers, history)

    def find_by_account(self, number: str) -> CustomerRecord | None:
        query = _one_customer_query("account", number)
        if query is None:
            return None
        with self.engine.connect() as conn:
            return _one_customer(conn, *query)

    def find_by_external_id(self, external_id: str) -> CustomerRecord | None:
        query = _one_customer_query("external_id", external_id)
        if query is None:
            return None
        with self.engine.connect() as conn:
            return _one_customer(conn, *query)

    def get_customer(self, customer_id: int) -> CustomerRecord | None:
        with self.engine.connect() as conn:
            return _one_customer(conn, _CUSTOMER_BY_ID, {"id": customer_id})

    def count_customers(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(_COUNT_CUSTOMERS).scalar() or 0)

    def recent_interactions(self, customer_id: int, limit: int = 5) -> list[InteractionRecord]:
        """The customer's last ``limit`` interactions, newest first."""
        if limit <= 0:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(_RECENT_INTERACTIONS, {"customer_id": customer_id, "limit": limit})
            return [_interaction_row(row) for row in rows]

    def get_interaction(self, call_key: str) -> InteractionRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(_INTERACTION_BY_CALL_KEY, {"call_key": call_key}).first()
            return _interaction_row(row) if row is not None else None

    # interactions --------------------------------------------------------------------------------

    def add_interaction(
        self, call_key: str, *, started_at: datetime, direction: str, customer_id: int | None = None,
        ani: str = "", dnis: str = "", queue: str = "", campaign: str = "", lead_id: str = "",
        agent_id: str = "", outcome: str = "", disposition: str = "", notes: str = "",
    ) -> int:
        """Record a call; idempotent on ``call_key`` (a second add updates the non-empty fields).

        ``call_key`` identifies the call across Asterisk servers, e.g. ``"<server>/<linkedid>"``.
        Returns the interaction id.
        """
        change = interaction_add(
            call_key, started_at=started_at, direction=direction, customer_id=customer_id, ani=ani, dnis=dnis,
            queue=queue, campaign=campaign, lead_id=lead_id, agent_id=agent_id, outcome=outcome,
            disposition=disposition, notes=notes)
        return self.write_interactions([change])[0][0]

    def update_interaction(
        self, call_key: str, *, disposition: str | None = None, notes: str | None = None,
        agent_id: str | None = None, outcome: str | None = None, ended_at: datetime | None = None,
        customer_id: int | None = None,
    ) -> int:
        """Set what the agent or the call's end decided; None leaves a field as it is.

        A disposition must never be lost: if no interaction exists for ``call_key`` one is created
        (started now, direction unknown). Returns the interaction id.
        """
        change = interaction_update(call_key, disposition=disposition, notes=notes, agent_id=agent_id,
                                    outcome=outcome, ended_at=ended_at, customer_id=customer_id)
        return self.write_interactions([change])[0][0]

    def write_interactions(self, changes: Sequence[InteractionChange]) -> list[WrittenInteraction]:
        """Apply ``changes`` (``interaction_add``/``interaction_update``) in order in ONE transaction: a batch
        costs one commit instead of one per change. All or nothing: an input over a limit raises
        ``StoreInputError`` before anything is written; a database error rolls the whole batch back.
        Returns each change's row id and customer id."""
        for change in changes:
            _check_change(change)
        if not changes:
            return []
        for attempt in (1, 2):
            try:
                with self.engine.begin() as conn:
                    return [self._write_interaction(conn, c.call_key, c.started_at, dict(c.values)) for c in changes]
            except IntegrityError:
                if attempt == 2:
                    raise
                # another thread inserted one of these call_keys first: go round again and update it
        raise AssertionError("unreachable")

    def add_interactions(self, rows: Sequence[dict[str, Any]]) -> int:
        """Bulk-insert past interactions (history imports, demo data) in one transaction; rows whose
        ``call_key`` already exists are left alone. Keys are those of ``add_interaction``. Returns the
        number inserted."""
        inserted = 0
        for start in range(0, len(rows), 500):
            chunk = rows[start:start + 500]
            for row in chunk:
                for name, limit in _INTERACTION_LIMITS:
                    value = row.get(name)
                    _check_len(name, value if isinstance(value, str) else None, limit)
            with Session(self.engine) as s, s.begin():
                keys = [r["call_key"] for r in chunk]
                existing = set(s.scalars(select(Interaction.call_key).where(Interaction.call_key.in_(keys))))
                for row in chunk:
                    if row["call_key"] in existing:
                        continue
                    existing.add(row["call_key"])
                    values = dict(row)
                    values["started_at"] = _utc(values["started_at"])
                    values["ended_at"] = _utc(values.get("ended_at"))
                    s.add(Interaction(**values))
                    inserted += 1
        return inserted

    @staticmethod
    def _write_interaction(conn: Connection, call_key: str, started_at: datetime | None,
                           values: dict[str, Any]) -> WrittenInteraction:
        """UPDATE the row of ``call_key``; when there is none, INSERT it. Returns its id and customer id."""
        now = datetime.now(UTC)
        params: dict[str, Any] = {**values, "updated_at": now, "key_": call_key}
        returning = conn.dialect.update_returning
        if started_at is None:
            stmt = _UPDATE_INTERACTION_RETURNING if returning else _UPDATE_INTERACTION
        else:
            params["start_"] = started_at  # replaces the start of a row created by an early disposition
            stmt = _UPDATE_INTERACTION_STARTED_RETURNING if returning else _UPDATE_INTERACTION_STARTED
        if returning:
            found = conn.execute(stmt, params).first()
        elif conn.execute(stmt, params).rowcount:
            found = conn.execute(_INTERACTION_ID, {"call_key": call_key}).first()
        else:
            found = None
        if found is not None:
            return int(found[0]), found[1]
        row = {**values, "call_key": call_key, "started_at": started_at or now, "updated_at": now}
        return int(conn.execute(_INSERT_INTERACTION, row).inserted_primary_key[0]), values.get("customer_id")

    # records a previous run left open --------------------------------------------------------------

    def interactions_left_open(self, prefix: str, before: datetime) -> list[tuple[str, datetime]]:
        """(call key, started at) of the interactions whose key starts with ``prefix`` (``<server>/``), started
        before ``before``, that have no end: calls a server that stopped or crashed never saw end."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self.engine.connect() as conn:
            rows = conn.execute(select(_I.call_key, _I.started_at).where(
                _I.ended_at.is_(None), _I.started_at < _utc(before),
                _I.call_key.like(f"{escaped}%", escape="\\")))
            return [(str(k), cast(datetime, _utc(started))) for k, started in rows]

    def close_interactions(self, keys: Sequence[str], ended_at: datetime, outcome: str) -> int:
        """End these interactions at ``ended_at`` (those still open only); ``outcome`` where they have none yet.
        Returns the rows closed."""
        closed = 0
        with self.engine.begin() as conn:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                where = (_I.call_key.in_(chunk), _I.ended_at.is_(None))
                conn.execute(update(_INTERACTIONS).where(*where, _I.outcome == "").values(outcome=outcome))
                closed += conn.execute(update(_INTERACTIONS).where(*where).values(
                    ended_at=_utc(ended_at))).rowcount or 0
        return closed

    # recordings --------------------------------------------------------------------------------------

    def recording_of(self, call_key: str) -> RecordingRow | None:
        """The recording of one interaction: (call key, path, pauses, purged at); None without one."""
        with self.engine.connect() as conn:
            row = conn.execute(_RECORDING_OF, {"call_key": call_key}).first()
        return RecordingRow(*row) if row is not None and row[1] else None

    def mark_recordings_purged(self, paths: Sequence[str], when: datetime) -> int:
        """The retention purge deleted these files: their interactions say so (``recording_purged_at``; the
        path stays, for audit). Returns the rows marked."""
        marked = 0
        with self.engine.begin() as conn:
            for start in range(0, len(paths), 500):
                chunk = list(paths[start:start + 500])
                marked += conn.execute(update(_INTERACTIONS).where(
                    _I.recording_path.in_(chunk), _I.recording_purged_at.is_(None)).values(
                    recording_purged_at=_utc(when))).rowcount or 0
        return marked

    # import ----------------------------------------------------------------------------------------

    def upsert_customers(self, inputs: Sequence[CustomerInput]) -> list[UpsertOutcome]:
        """Create or update each customer (key: external id, else its first account number).

        One transaction for the batch; if the database rejects it (a concurrent writer), each row is
        retried in its own transaction so that only the offending rows are rejected.
        """
        if not inputs:
            return []
        try:
            return self._upsert_batch(inputs)
        except IntegrityError:
            if len(inputs) == 1:
                return [UpsertOutcome("rejected", reason="the database rejected the row (unique constraint)")]
            return [out for inp in inputs for out in self.upsert_customers([inp])]

    def _upsert_batch(self, inputs: Sequence[CustomerInput]) -> list[UpsertOutcome]:
        out: list[UpsertOutcome] = []
        with Session(self.engine) as s, s.begin():
            ext_ids = {i.external_id for i in inputs if i.external_id}
            keys = {account_key(a.number) for i in inputs for a in i.accounts}
            by_ext: dict[str, Customer] = {}
            if ext_ids:
                q = select(Customer).where(Customer.external_id.in_(ext_ids)).options(*_CUSTOMER_LOAD)
                by_ext = {c.external_id: c for c in s.scalars(q) if c.external_id}
            by_acct: dict[str, Customer] = {}
            if keys:
                q = (select(Account).where(Account.number_key.in_(keys))
                     .options(selectinload(Account.customer).selectinload(Customer.phones),
                              selectinload(Account.customer).selectinload(Customer.accounts)))
                by_acct = {a.number_key: a.customer for a in s.scalars(q)}
            applied = [self._apply(s, inp, by_ext, by_acct) for inp in inputs]
            s.flush()
            for kind, customer, reason in applied:
                out.append(UpsertOutcome(kind, customer.id if customer is not None else None, reason))
        return out

    def _apply(self, s: Session, inp: CustomerInput, by_ext: dict[str, Customer],
               by_acct: dict[str, Customer]) -> tuple[OutcomeKind, Customer | None, str]:
        keys = [account_key(a.number) for a in inp.accounts]
        target: Customer | None
        if inp.external_id:
            target = by_ext.get(inp.external_id)
            if target is None and keys:
                # an existing customer known only by this account (no external id yet) is adopted
                owner = by_acct.get(keys[0])
                if owner is not None and owner.external_id is None:
                    target = owner
        else:
            target = by_acct.get(keys[0]) if keys else None
        for key, acct in zip(keys, inp.accounts, strict=True):
            owner = by_acct.get(key)
            if owner is not None and owner is not target:
                who = f"external_id {owner.external_id}" if owner.external_id else f"customer id {owner.id}"
                return "rejected", None, f"account {acct.number} belongs to another customer ({who})"
        external_id = inp.external_id or (target.external_id if target else None)
        if target is not None and _state(target) == _wanted(inp, external_id):
            return "unchanged", target, ""
        created = target is None
        if target is None:
            target = Customer(external_id=external_id, attributes={})
            s.add(target)
        target.external_id = external_id
        for name in ("first_name", "last_name", "company", "email", "language", "segment", "notes"):
            setattr(target, name, getattr(inp, name))
        target.attributes = dict(inp.attributes)
        target.updated_at = datetime.now(UTC)
        _replace_phones(target, inp.phones)
        _replace_accounts(s, target, inp.accounts, by_acct)
        if external_id:
            by_ext[external_id] = target
        return ("created" if created else "updated"), target, ""


def _replace_phones(c: Customer, phones: Iterable[PhoneRecord]) -> None:
    wanted = {p.e164: p.kind for p in phones}
    for p in list(c.phones):
        if p.e164 not in wanted:
            c.phones.remove(p)
        else:
            p.kind = wanted.pop(p.e164)
    for e164, kind in wanted.items():
        c.phones.append(CustomerPhone(e164=e164, kind=kind))


def _replace_accounts(s: Session, c: Customer, accounts: Iterable[AccountRecord],
                      by_acct: dict[str, Customer]) -> None:
    wanted = {account_key(a.number): a for a in accounts}
    dropped = False
    for a in list(c.accounts):
        if a.number_key not in wanted:
            c.accounts.remove(a)
            by_acct.pop(a.number_key, None)
            dropped = True
        else:
            new = wanted.pop(a.number_key)
            a.number, a.product, a.status = new.number, new.product, new.status
    if dropped:
        s.flush()  # the unit of work inserts before it deletes: let a dropped number move to a later row
    for key, a in wanted.items():
        c.accounts.append(Account(number=a.number, number_key=key, product=a.product, status=a.status))
        by_acct[key] = c
