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

``InteractionWriter`` is the I/O shell: it applies the writes through the pop look-up's store calls,
one at a time per row, so that a later write never lands before an earlier one.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from twisted.internet import defer

from acd.events import CallAbandoned, CallAnswered, CallOverflowed
from cti.contract import CTI_CAMPAIGN, CTI_LEAD_ID, is_outbound
from cti.events import AmdResult, CallEnded, CallQueued

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
        self.open[(server, call_id)].answered = outcome == "answered"
        return out

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


class InteractionWriter:
    """Applies ``InteractionWrite``s through a ``screenpop.lookup.PopLookup`` (store calls in a worker
    thread), one at a time per row and in order. A failed write is logged; the row's next one still runs."""

    def __init__(self, lookup: Any) -> None:
        self.lookup = lookup
        self._pending: dict[str, deque[InteractionWrite]] = {}  # row -> writes waiting for the one running

    def write(self, w: InteractionWrite) -> None:
        pending = self._pending.get(w.key)
        if pending is not None:
            pending.append(w)
            return
        self._pending[w.key] = deque()
        self._run(w)

    def _run(self, w: InteractionWrite) -> None:
        fields = {k: (datetime.fromtimestamp(v, UTC) if k == "ended_at" else v) for k, v in w.fields.items()}
        try:
            if w.started_at is not None:
                d: defer.Deferred[Any] = self.lookup.record_interaction(
                    w.key, started_at=datetime.fromtimestamp(w.started_at, UTC), **fields)
            else:
                d = self.lookup.set_disposition(w.key, **fields)
        except Exception as exc:
            d = defer.fail(exc)
        d.addErrback(lambda f: log.warning("interaction %s not written: %s", w.key, f.getErrorMessage()))
        d.addBoth(lambda _: self._next(w.key))

    def _next(self, key: str) -> None:
        pending = self._pending[key]
        if pending:
            self._run(pending.popleft())
        else:
            del self._pending[key]
