"""The record of every call that reached us (``customer_interactions``): events in, row writes out.

``CallLog`` is pure (no I/O, no clock: times come from the events). A call is opened by the first of
``IvrStarted`` (inbound through the IVR), ``CallQueued`` (the IVR's fallback path, a caller re-queued
after a restart) or ``AmdResult`` (an outbound call a person or machine answered), and closed by the
``CallEnded`` of its call id (the Linkedid; a call merged into another follows it). Each open and
close is one ``InteractionWrite`` on the call's row, keyed ``<server>/<call id>`` like the screen pop's
interactions: opened with its start, direction and numbers (so a crash mid-call still leaves a row),
closed with its end and outcome. The agents' parts (``<key>`` for the first agent who answered,
``<key>/<n>`` after a transfer) are written by the server with the pop's customer; the agent's
disposition goes on their part.

Outcomes, the last one reached wins: ``ivr:<outcome>`` (``transfer``, ``voicemail``, ``hangup``,
``caller_hangup``, ``error``), ``queued``, ``answered``, ``abandoned`` (also a queued caller gone
before any agent took it), ``overflowed``, ``transferred`` (the agent sent it on to a number, blind or
attended), ``machine``.

``InteractionWriter`` is the I/O shell: it applies the writes through the pop look-up's store calls in
batches (the writes of ``linger`` seconds share one worker-thread job and one transaction, as the ACD
recorder's rows do), one batch at a time and in order, so that a later write never lands before an earlier one.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from acd.events import CallAbandoned, CallAnswered, CallOverflowed
from cti.contract import CTI_CAMPAIGN, CTI_LEAD_ID, is_outbound
from cti.db import is_unavailable, retry_backoff
from cti.events import AmdResult, CallEnded, CallQueued
from screenpop.records import InteractionChange
from screenpop.store import interaction_add, interaction_update

log = logging.getLogger(__name__)

#: Open calls kept at most: a call whose end never comes (its PBX's AMI never showed it) is dropped oldest first.
MAX_OPEN = 100_000


def call_key(server: str, call_id: str) -> str:
    """The interaction key of a call across servers (the screen pop's ``call_key``): server/Linkedid."""
    return f"{server}/{call_id}"


@dataclass(frozen=True, slots=True)
class InteractionWrite:
    """One write of an interaction row: with ``started_at`` it creates (or completes) the row, without it
    it updates the fields given."""

    key: str
    fields: dict[str, Any]
    started_at: float | None = None


@dataclass
class CallRecord:
    key: str
    started_at: float
    direction: str
    outcome: str = ""
    queue: str = ""
    answered: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class CallLog:
    """Open calls by (server, call id), and the writes that keep their rows true."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str], CallRecord] = {}

    def started(self, server: str, call_id: str) -> float | None:
        """When the call reached us (None: not a call we record)."""
        rec = self.open.get((server, call_id))
        return rec.started_at if rec is not None else None

    def ivr_started(self, server: str, call_id: str, ts: float, ani: str, dnis: str) -> list[InteractionWrite]:
        return self._open(server, call_id, ts, "inbound", {"ani": ani, "dnis": dnis}, "in-ivr")

    def ivr_completed(self, server: str, call_id: str, outcome: str) -> list[InteractionWrite]:
        rec = self.open.get((server, call_id))
        if rec is not None and outcome != "queue":
            rec.outcome = f"ivr:{outcome}"
        return []

    def adopted(self, server: str, call_id: str, ts: float, direction: str, fields: dict[str, Any],
                outcome: str) -> list[InteractionWrite]:
        """A call found with an agent after a restart (its start: when its first channel was created)."""
        out = self._open(server, call_id, ts, direction, fields, outcome)
        rec = self.open[(server, call_id)]
        rec.answered = outcome == "answered"
        if rec.outcome == "unknown":  # known as left open by the last run (``left_open``): now we know more
            rec.outcome = outcome
        return out

    def left_open(self, server: str, call_id: str, started_at: float) -> None:
        """A call whose row the last run opened and never closed, still on the PBX after a restart: its end
        closes the row (outcome ``unknown`` unless this run learns more). Writes nothing now: the row exists."""
        if (server, call_id) not in self.open:
            self.open[(server, call_id)] = CallRecord(call_key(server, call_id), started_at, "", "unknown")

    def transferred(self, server: str, call_id: str) -> list[InteractionWrite]:
        """An agent sent the call on to someone outside the queues (a blind transfer to a number, or a
        consultation completed as an attended transfer)."""
        rec = self.open.get((server, call_id))
        if rec is not None:
            rec.outcome = "transferred"
        return []

    def handle(self, event: object, customer_number: str = "") -> list[InteractionWrite]:
        """Feed a domain or ACD event. ``customer_number``: for an outbound call, the number dialled."""
        if isinstance(event, CallQueued):
            outbound = is_outbound(event.data)
            fields = {"ani": customer_number or event.caller_num, "dnis": event.dnis, "queue": event.queue,
                      "campaign": event.data.get(CTI_CAMPAIGN, ""), "lead_id": event.data.get(CTI_LEAD_ID, "")}
            out = self._open(event.server, event.call_id, event.ts, "outbound" if outbound else "inbound", fields,
                             "queued")
            rec = self.open[(event.server, event.call_id)]
            rec.queue, rec.outcome = event.queue, "queued"
            return out
        if isinstance(event, AmdResult):
            fields = {"ani": customer_number, "campaign": event.campaign, "lead_id": event.lead_id}
            out = self._open(event.server, event.call_id, event.ts, "outbound", fields, "")
            self.open[(event.server, event.call_id)].outcome = \
                "machine" if event.status.upper() == "MACHINE" else "human"
            return out
        if isinstance(event, CallAnswered):
            rec = self.open.get((event.server, event.call_id))
            if rec is not None:
                rec.outcome, rec.answered, rec.queue = "answered", True, event.queue
        elif isinstance(event, CallAbandoned):
            rec = self.open.get((event.server, event.call_id))
            if rec is not None:
                rec.outcome = "abandoned"
        elif isinstance(event, CallOverflowed) and event.action != "overflow":
            rec = self.open.get((event.server, event.call_id))
            if rec is not None:
                rec.outcome = "overflowed"
        elif isinstance(event, CallEnded):
            return self._ended(event)
        return []

    def _open(self, server: str, call_id: str, ts: float, direction: str, fields: dict[str, Any],
              outcome: str) -> list[InteractionWrite]:
        if (server, call_id) in self.open:
            return []
        rec = self.open[(server, call_id)] = CallRecord(call_key(server, call_id), ts, direction, outcome)
        if len(self.open) > MAX_OPEN:
            del self.open[next(iter(self.open))]
        values = {k: v for k, v in fields.items() if v}
        return [InteractionWrite(rec.key, {"direction": direction, **values}, started_at=ts)]

    def _ended(self, e: CallEnded) -> list[InteractionWrite]:
        rec = self.open.pop((e.server, e.call_id), None)
        if rec is None:
            return []
        if e.merged_into:  # Asterisk moved the call's last channel into another call: follow it
            self.open.setdefault((e.server, e.merged_into), rec)
            return []
        outcome = rec.outcome
        if outcome in ("queued", "human", "in-ivr"):
            outcome = "abandoned"  # gone before an agent (or the IVR) was done with it
        fields: dict[str, Any] = {"ended_at": e.ts, "outcome": outcome}
        return [InteractionWrite(rec.key, fields)]


def interaction_change(w: InteractionWrite) -> InteractionChange:
    """The store's change for a write (times are epoch seconds in the write, aware datetimes in the store).
    Raises ``TypeError`` for a field the store does not know."""
    fields = {k: (datetime.fromtimestamp(v, UTC) if k in ("ended_at", "transferred_at") else v)
              for k, v in w.fields.items()}
    if w.started_at is not None:
        return interaction_add(w.key, started_at=datetime.fromtimestamp(w.started_at, UTC), **fields)
    return interaction_update(w.key, **fields)


class InteractionWriter:
    """Applies ``InteractionWrite``s through a ``screenpop.lookup.PopLookup`` in batches: the writes that come
    within ``linger`` seconds of the first one waiting (at most ``max_batch``) go in one worker-thread job and
    one transaction (``PopLookup.write_interactions``), instead of a job and a commit each (whose CPU, through
    the GIL, is the event loop's too). One batch runs at a time and each applies its writes in order, so a
    row's writes land in the order they were made. A batch that fails is retried write by write, each in its
    own transaction; a write that still fails is logged, and the writes after it still run.

    ``flush()`` writes what waits at once and tells when everything written so far is done (at shutdown)."""

    def __init__(self, lookup: Any, clock: IReactorTime | None = None, *, linger: float = 0.25,
                 max_batch: int = 500, max_pending: int = 100_000,
                 backoff: Callable[[int], float] = retry_backoff) -> None:
        self.lookup = lookup
        self.clock: IReactorTime = clock if clock is not None else lookup.clock
        self.linger = linger
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.backoff = backoff
        self._waiting: deque[InteractionWrite] = deque()
        self._timer: IDelayedCall | None = None
        self._busy = False  # a batch is being written
        self._flushed: list[defer.Deferred[None]] = []  # flush() callers waiting for all writes to be done
        self._retry: IDelayedCall | None = None  # the next try while the database is unreachable
        self._attempt = 0  # failed tries in this outage
        self._down_since: float | None = None
        self.batches = 0
        self.failed = 0
        self.dropped = 0

    @property
    def down(self) -> bool:
        """The database could not be reached at the last try (writes are waiting for it)."""
        return self._down_since is not None

    def write(self, w: InteractionWrite) -> None:
        if len(self._waiting) >= self.max_pending:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("interaction writes: %d waiting for the database, %d dropped so far", self.max_pending,
                          self.dropped)
            return
        self._waiting.append(w)
        if self._busy or self._retry is not None:
            return
        if len(self._waiting) >= self.max_batch or self.linger <= 0:
            self._start()
        elif self._timer is None:
            self._timer = self.clock.callLater(self.linger, self._start)

    def flush(self) -> defer.Deferred[None]:
        """Write what waits now (no lingering); fires when every write made so far is written or logged."""
        d: defer.Deferred[None] = defer.Deferred()
        if not self._waiting and not self._busy:
            d.callback(None)
            return d
        self._flushed.append(d)
        if self._retry is not None:  # do not wait for the backoff: try now, once
            self._retry.cancel()
            self._retry = None
        if not self._busy:
            self._start()
        return d

    @property
    def pending(self) -> int:
        """Writes not applied yet (waiting, or in the batch being written)."""
        return len(self._waiting) + (1 if self._busy else 0)

    def _start(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._busy or not self._waiting:
            return
        batch = [self._waiting.popleft() for _ in range(min(len(self._waiting), self.max_batch))]
        self._busy = True
        self.batches += 1
        d = self._apply(batch)
        d.addCallbacks(self._reached, self._batch_failed, errbackArgs=(batch,))
        d.addBoth(self._done)

    def _apply(self, batch: list[InteractionWrite]) -> defer.Deferred[Any]:
        try:
            return self.lookup.write_interactions([interaction_change(w) for w in batch])
        except Exception:
            return defer.fail()

    def _reached(self, _: object) -> None:
        if self._down_since is not None:
            log.warning("database back for interaction writes after %.1f s and %d failed tries",
                        self.clock.seconds() - self._down_since, self._attempt)
        self._down_since, self._attempt = None, 0

    def _batch_failed(self, failure: Failure, batch: list[InteractionWrite]) -> defer.Deferred[None] | None:
        if is_unavailable(failure.value):
            self._unreachable(failure, batch)
            return None
        if len(batch) > 1:
            return self._one_by_one(failure, batch)
        self._failed(failure, batch[0])
        return None

    def _unreachable(self, failure: Failure, writes: list[InteractionWrite]) -> None:
        """The database could not be reached: ``writes`` go back to the head of the queue, in order."""
        self._waiting.extendleft(reversed(writes))
        self._attempt += 1
        if self._down_since is None:
            self._down_since = self.clock.seconds()
            log.warning("database unavailable for interaction writes (%s: %s); keeping them and retrying",
                        failure.type.__name__ if failure.type else "error",
                        failure.getErrorMessage().splitlines()[0][:200] if failure.getErrorMessage() else "")
        if self._flushed:  # shutting down: the try flush() asked for failed too; say what is left
            left = len(self._waiting)
            self._waiting.clear()
            self.failed += left
            log.error("%d interaction writes not written: the database is unavailable", left)
            return
        self._retry = self.clock.callLater(self.backoff(self._attempt), self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        if not self._busy:
            self._start()

    def _one_by_one(self, failure: Failure, batch: list[InteractionWrite]) -> defer.Deferred[None]:
        log.info("%d interaction writes failed together (%s); writing them one by one", len(batch),
                 failure.getErrorMessage())
        cut: list[bool] = []  # set once the database turned out unreachable: the rest went back to the queue
        d: defer.Deferred[Any] = defer.succeed(None)
        for i, w in enumerate(batch):
            d.addCallback(lambda _, i=i, w=w: None if cut else self._apply([w]).addErrback(self._one_failed, batch,
                                                                                           i, cut))
        return d

    def _one_failed(self, failure: Failure, batch: list[InteractionWrite], i: int, cut: list[bool]) -> None:
        if is_unavailable(failure.value):
            cut.append(True)
            self._unreachable(failure, batch[i:])
        else:
            self._failed(failure, batch[i])

    def _failed(self, failure: Failure, w: InteractionWrite) -> None:
        self.failed += 1
        log.warning("interaction %s not written: %s", w.key, failure.getErrorMessage())

    def _done(self, _: object) -> None:
        self._busy = False
        if self._retry is not None:
            return  # the database is unreachable: the retry timer starts the next batch
        if self._waiting:
            if self._flushed or len(self._waiting) >= self.max_batch or self.linger <= 0:
                self._start()
            elif self._timer is None:
                self._timer = self.clock.callLater(self.linger, self._start)
            return
        flushed, self._flushed = self._flushed, []
        for d in flushed:
            d.callback(None)
