"""Customer-store values as plain frozen dataclasses, detached from any database session. Pure; no I/O.

``screenpop.store`` produces and consumes them; ``screenpop.compose`` reads them without touching SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class PhoneRecord:
    e164: str
    kind: str = "main"


@dataclass(frozen=True, slots=True)
class AccountRecord:
    number: str
    product: str = ""
    status: str = ""


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    """A customer as a plain value, detached from any session (safe to pass between threads)."""

    id: int
    external_id: str | None
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    email: str = ""
    language: str = ""
    segment: str = ""
    notes: str = ""
    phones: tuple[PhoneRecord, ...] = ()
    accounts: tuple[AccountRecord, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or self.company

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "external_id": self.external_id, "name": self.name,
            "first_name": self.first_name, "last_name": self.last_name, "company": self.company,
            "email": self.email, "language": self.language, "segment": self.segment, "notes": self.notes,
            "phones": [{"e164": p.e164, "kind": p.kind} for p in self.phones],
            "accounts": [{"number": a.number, "product": a.product, "status": a.status} for a in self.accounts],
            "attributes": dict(self.attributes),
        }


@dataclass(frozen=True, slots=True)
class InteractionRecord:
    id: int
    call_key: str
    customer_id: int | None
    started_at: datetime
    ended_at: datetime | None = None
    direction: str = ""
    ani: str = ""
    dnis: str = ""
    queue: str = ""
    campaign: str = ""
    lead_id: str = ""
    agent_id: str = ""
    outcome: str = ""
    disposition: str = ""
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "call_key": self.call_key, "customer_id": self.customer_id,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "direction": self.direction, "ani": self.ani, "dnis": self.dnis, "queue": self.queue,
            "campaign": self.campaign, "lead_id": self.lead_id, "agent_id": self.agent_id,
            "outcome": self.outcome, "disposition": self.disposition, "notes": self.notes,
        }


@dataclass(frozen=True, slots=True)
class InteractionChange:
    """One write of an interaction row for ``CustomerStore.write_interactions`` (built by ``screenpop.store``'s
    ``interaction_add`` and ``interaction_update``): ``values`` are the columns to set. With ``started_at`` it
    is an add (creates the row, or completes one an early update created); without, an update (which creates
    a row started now when there is none, so that nothing is lost)."""

    call_key: str
    values: Mapping[str, Any]
    started_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CustomerInput:
    """What an import row says a customer is (already validated and normalised by the importer).

    The row is the truth: on update, phones, accounts and attributes are replaced by these.
    """

    external_id: str | None
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    email: str = ""
    language: str = ""
    segment: str = ""
    notes: str = ""
    phones: tuple[PhoneRecord, ...] = ()
    accounts: tuple[AccountRecord, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()


OutcomeKind = Literal["created", "updated", "unchanged", "rejected"]


@dataclass(frozen=True, slots=True)
class UpsertOutcome:
    kind: OutcomeKind
    customer_id: int | None = None
    reason: str = ""
