"""What the IVR needs from the rest of the system (Protocols), plus small in-memory implementations.

The screen-pop package implements ``CustomerLookup`` over the customer database; the server passes an
``IvrEventSink`` that routes IVR events (store ``IvrCompleted`` by uniqueid, hand ``CallbackRequested``
to the dialer). No sockets, no database, no clock here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from twisted.internet.defer import Deferred, succeed

from cti.kept import Kept
from ivr.events import IvrCompleted, IvrEvent

LookupStatus = Literal["found", "not_found", "unavailable"]


@dataclass(frozen=True, slots=True)
class LookupResult:
    """Answer of a customer look-up; ``customer`` holds id, name, tier, vip, ... as strings."""

    status: LookupStatus
    customer: dict[str, str] = field(default_factory=dict)


class CustomerLookup(Protocol):
    def lookup(self, by: Literal["ani", "account"], value: str) -> Awaitable[LookupResult] | Deferred[LookupResult]:
        """Find one customer by caller number (``ani``) or by an account number the caller entered."""
        ...


IvrEventSink = Callable[[IvrEvent], None]


class InMemoryCustomerLookup:
    """Customers in a dict, for tests, demos and script mode without a database.

    ``by_ani`` and ``by_account`` map a number to the customer's fields. ``available=False`` makes every
    look-up answer ``unavailable`` (a store that is down).
    """

    def __init__(self, customers: Iterable[Mapping[str, str]] = (), available: bool = True) -> None:
        self.available = available
        self.by_ani: dict[str, dict[str, str]] = {}
        self.by_account: dict[str, dict[str, str]] = {}
        for customer in customers:
            self.add(customer)

    def add(self, customer: Mapping[str, str]) -> None:
        """Index a customer by its ``phone`` (may hold several numbers separated by spaces) and ``account``."""
        record = {k: str(v) for k, v in customer.items()}
        for number in record.get("phone", "").split():
            self.by_ani[number] = record
        if record.get("account"):
            self.by_account[record["account"]] = record

    def find(self, by: Literal["ani", "account"], value: str) -> LookupResult:
        """The answer, synchronously."""
        if not self.available:
            return LookupResult("unavailable")
        record = (self.by_ani if by == "ani" else self.by_account).get(value)
        return LookupResult("not_found") if record is None else LookupResult("found", dict(record))

    def lookup(self, by: Literal["ani", "account"], value: str) -> Deferred[LookupResult]:
        """Answer at once (an already fired Deferred)."""
        return succeed(self.find(by, value))


class RecentCompletions:
    """An ``IvrEventSink`` keeping the last ``limit`` ``IvrCompleted`` events by uniqueid (oldest dropped).

    The screen pop asks ``get(uniqueid)`` for the path; other events are passed to ``forward``. Also an
    engine on the server's bus (``cti.bus.Engine``: ``subscriptions``, ``handle``), with no timers.
    """

    subscriptions: tuple[type, ...] = (IvrCompleted,)

    def __init__(self, limit: int = 10000, forward: IvrEventSink | None = None) -> None:
        self.limit = limit
        self.forward = forward
        self._items: Kept[str, IvrCompleted] = Kept(limit)  # pickled: one untracked object per call

    def __call__(self, event: IvrEvent) -> None:
        if isinstance(event, IvrCompleted):
            self._keep(event)
        if self.forward is not None:
            self.forward(event)

    def handle(self, event: object, now: float) -> list[object]:
        if isinstance(event, IvrCompleted):
            self._keep(event)
        return []

    def tick(self, now: float) -> list[object]:
        return []

    def next_deadline(self) -> float | None:
        return None

    def _keep(self, event: IvrCompleted) -> None:
        self._items.put(event.uniqueid, event)

    def get(self, uniqueid: str) -> IvrCompleted | None:
        return self._items.get(uniqueid)

    def __len__(self) -> int:
        return len(self._items)
