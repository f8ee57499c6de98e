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
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, selectinload

from cti.db import Base
from screenpop.records import (
    AccountRecord,
    CustomerInput,
    CustomerRecord,
    InteractionRecord,
    OutcomeKind,
    PhoneRecord,
    UpsertOutcome,
)

__all__ = [
    "Account", "AccountRecord", "Customer", "CustomerInput", "CustomerPhone", "CustomerRecord", "CustomerStore",
    "Interaction", "InteractionRecord", "PhoneRecord", "StoreInputError", "UpsertOutcome", "account_key",
]

MAX_NAME = 100
MAX_NOTES = 4000
MAX_KEY = 64
MAX_SHORT = 64
MAX_ATTRIBUTE_VALUE = 1000


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
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
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


SCREENPOP_TABLES = ("customers", "customer_phones", "customer_accounts", "customer_interactions")


def _record(c: Customer) -> CustomerRecord:
    return CustomerRecord(
        id=c.id, external_id=c.external_id, first_name=c.first_name, last_name=c.last_name,
        company=c.company, email=c.email, language=c.language, segment=c.segment, notes=c.notes,
        phones=tuple(PhoneRecord(p.e164, p.kind) for p in c.phones),
        accounts=tuple(AccountRecord(a.number, a.product, a.status) for a in c.accounts),
        attributes=dict(c.attributes or {}),
    )


def _interaction(i: Interaction) -> InteractionRecord:
    return InteractionRecord(
        id=i.id, call_key=i.call_key, customer_id=i.customer_id, started_at=_utc(i.started_at),  # type: ignore[arg-type]
        ended_at=_utc(i.ended_at), direction=i.direction, ani=i.ani, dnis=i.dnis, queue=i.queue,
        campaign=i.campaign, lead_id=i.lead_id, agent_id=i.agent_id, outcome=i.outcome,
        disposition=i.disposition, notes=i.notes,
    )


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
                       ("direction", 8), ("ani", 32), ("dnis", 32))

_CUSTOMER_LOAD = (selectinload(Customer.phones), selectinload(Customer.accounts))


# --- the store -----------------------------------------------------------------------------------

class CustomerStore:
    """Synchronous access to customers and interactions. Thread-safe: one session per call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # look-ups ------------------------------------------------------------------------------------

    def find_by_phone(self, e164: str, limit: int = 20) -> list[CustomerRecord]:
        """Customers having this E.164 number (several people may share one), oldest first."""
        with Session(self.engine) as s:
            ids = select(CustomerPhone.customer_id).where(CustomerPhone.e164 == e164)
            rows = s.scalars(select(Customer).where(Customer.id.in_(ids)).options(*_CUSTOMER_LOAD)
                             .order_by(Customer.id).limit(limit))
            return [_record(c) for c in rows]

    def find_by_account(self, number: str) -> CustomerRecord | None:
        key = account_key(number)
        if not key or len(key) > MAX_KEY:
            return None
        with Session(self.engine) as s:
            c = s.scalars(select(Customer).join(Account).where(Account.number_key == key)
                          .options(*_CUSTOMER_LOAD)).first()
            return _record(c) if c else None

    def find_by_external_id(self, external_id: str) -> CustomerRecord | None:
        if not external_id or len(external_id) > MAX_KEY:
            return None
        with Session(self.engine) as s:
            c = s.scalars(select(Customer).where(Customer.external_id == external_id)
                          .options(*_CUSTOMER_LOAD)).first()
            return _record(c) if c else None

    def get_customer(self, customer_id: int) -> CustomerRecord | None:
        with Session(self.engine) as s:
            c = s.scalars(select(Customer).where(Customer.id == customer_id).options(*_CUSTOMER_LOAD)).first()
            return _record(c) if c else None

    def count_customers(self) -> int:
        with Session(self.engine) as s:
            return int(s.scalar(select(func.count()).select_from(Customer)) or 0)

    def recent_interactions(self, customer_id: int, limit: int = 5) -> list[InteractionRecord]:
        """The customer's last ``limit`` interactions, newest first."""
        if limit <= 0:
            return []
        with Session(self.engine) as s:
            rows = s.scalars(select(Interaction).where(Interaction.customer_id == customer_id)
                             .order_by(Interaction.started_at.desc(), Interaction.id.desc()).limit(limit))
            return [_interaction(i) for i in rows]

    def get_interaction(self, call_key: str) -> InteractionRecord | None:
        with Session(self.engine) as s:
            i = s.scalars(select(Interaction).where(Interaction.call_key == call_key)).first()
            return _interaction(i) if i else None

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
        values: dict[str, Any] = {
            "customer_id": customer_id, "direction": direction, "ani": ani, "dnis": dnis, "queue": queue,
            "campaign": campaign, "lead_id": lead_id, "agent_id": agent_id, "outcome": outcome,
            "disposition": disposition, "notes": notes,
        }
        return self._upsert_interaction(call_key, _utc(started_at), {k: v for k, v in values.items() if v})

    def update_interaction(
        self, call_key: str, *, disposition: str | None = None, notes: str | None = None,
        agent_id: str | None = None, outcome: str | None = None, ended_at: datetime | None = None,
        customer_id: int | None = None,
    ) -> int:
        """Set what the agent or the call's end decided; None leaves a field as it is.

        A disposition must never be lost: if no interaction exists for ``call_key`` one is created
        (started now, direction unknown). Returns the interaction id.
        """
        values: dict[str, Any] = {"disposition": disposition, "notes": notes, "agent_id": agent_id,
                                  "outcome": outcome, "ended_at": _utc(ended_at), "customer_id": customer_id}
        return self._upsert_interaction(call_key, None, {k: v for k, v in values.items() if v is not None})

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

    def _upsert_interaction(self, call_key: str, started_at: datetime | None, values: dict[str, Any]) -> int:
        _check_len("call_key", call_key, 128)
        if not call_key:
            raise StoreInputError("call_key is empty")
        for name, limit in _INTERACTION_LIMITS:
            value = values.get(name)
            _check_len(name, value if isinstance(value, str) else None, limit)
        for attempt in (1, 2):
            try:
                with Session(self.engine) as s, s.begin():
                    row = s.scalars(select(Interaction).where(Interaction.call_key == call_key)).first()
                    if row is None:
                        row = Interaction(call_key=call_key, started_at=started_at or datetime.now(UTC))
                        s.add(row)
                    elif started_at is not None and row.direction == "":
                        row.started_at = started_at  # created by an early disposition: the real start wins
                    for name, value in values.items():
                        setattr(row, name, value)
                    row.updated_at = datetime.now(UTC)
                    s.flush()
                    return row.id
            except IntegrityError:
                if attempt == 2:
                    raise
                # another thread inserted the same call_key first: go round again and update it
        raise AssertionError("unreachable")

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
