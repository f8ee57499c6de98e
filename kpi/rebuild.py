"""After a restart: the statistics rebuilt from the stored records, not reset.

The records (``acd_queue_calls``: one row per time a caller spent in a queue, ``acd_agent_states``: the
agent state log, ``dialer_attempts``) come in as the events that wrote them (``QueueCallFinished``,
``AgentStateChanged``) or that they stand for (the dialer's attempts); ``events_of_record`` turns each
queue-call record back into the live events it summarises (the caller entering the queue, being answered,
abandoning or overflowing, the record itself), at the times they happened; ``replay`` feeds them to the
core in time order, through the same ``observe`` as live events: the figures rebuilt are those counted
live (the IVR's callback requests come from the ``callbacks`` table, created when they were asked for).
Holds (``CallHoldChanged`` live) come back as ``HoldsRecorded``: an agent's part's holds as stored with
it, counted at the part's end (the same day's figures; a hold that ended in an earlier interval or sliding
bucket than its part is counted in the part's). What the records do not hold is not rebuilt: callers still
waiting (the ACD queues them again from the PBX, and the core counts them then).

``since(now, settings)``: how far back the records are needed (local midnight, or 30 minutes back when
that is earlier).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from acd.events import CallAbandoned, CallAnswered, CallOverflowed, CallWaiting, QueueCallFinished
from kpi.core import KpiCore
from kpi.windows import SLIDING, Calendar


def since(now: float, timezone: str, interval: float, bucket: float) -> float:
    """The earliest time the windows at ``now`` reach back to."""
    cal = Calendar(timezone, interval, bucket)
    cal.advance(now)
    return min(cal.day_start, now - max(SLIDING.values()) - bucket)


def events_of_record(r: QueueCallFinished) -> Iterator[object]:
    """The live events a queue-call record stands for, in order."""
    common = {"server": r.server, "uniqueid": r.uniqueid, "call_id": r.call_id, "queue": r.queue}
    yield CallWaiting(ts=r.entered, priority=r.priority, position=1, ewt=None, **common)
    if r.outcome == "answered":
        at = r.answered_at if r.answered_at is not None else r.entered + r.wait
        yield CallAnswered(ts=at, agent_id=r.agent_id, wait=r.wait, **common)
    elif r.outcome == "abandoned":
        yield CallAbandoned(ts=r.ts, wait=r.wait, while_ringing=bool(r.agent_id), agent_id=r.agent_id, **common)
    else:
        yield CallOverflowed(ts=r.ts, wait=r.wait, action=r.overflow_action or "overflow", target=r.overflow_target,
                             **common)
    yield r


def replay(core: KpiCore, records: Iterable[object], now: float) -> int:
    """Feed the events of ``records`` (``QueueCallFinished``, ``AgentStateChanged`` and the dialer's events)
    to ``core`` in time order; returns how many events were counted."""
    timed: list[tuple[float, int, object]] = []
    n = 0
    for record in records:
        for event in events_of_record(record) if isinstance(record, QueueCallFinished) else (record,):
            timed.append((float(event.ts), n, event))  # type: ignore[attr-defined]
            n += 1
    timed.sort(key=lambda t: (t[0], t[1]))
    for ts, _, event in timed:
        core.observe(event, min(ts, now))
    core.cal.advance(now)
    return len(timed)
