"""The statistics' definitions, in one place (the live engine and the interval reports, ``kpi.report``, use these): what
each counter counts, and the figures made of them. Pure functions over counter vectors.

A *counter vector* is a list of floats indexed by the ``Q_*`` (queue) or ``A_*`` (agent) constants below;
a window (``kpi.windows``) holds one per period. Fields listed in ``Q_MAXES``/``A_MAXES`` combine by
``max``, all others by sum.

When a call counts (its *event time*): a call is *offered* to a queue when it enters it (first
``CallWaiting`` of that time in the queue; a ring-no-answer that puts it back is the same time);
*answered*, *abandoned* or *overflowed* when that happens; its handle time, transfer and hold when they
end (handle time: when the wrap-up ends and the ACD writes its record). So a call that spans an interval
(or midnight) is offered in the first and answered in the second. The windows are *since midnight* (the
centre's time zone), the *current interval* (``interval`` seconds from local midnight), and the *last 15
and 30 minutes* (sliding, at ``bucket`` resolution: the current partial bucket and the whole ones before
it, as many as make the span).

Queue figures:

* ``offered``, ``answered``, ``overflowed``; ``abandoned`` (callers who hung up after ``short_abandon``
  seconds) and ``short_abandoned`` (within it: counted apart, in no rate);
* ``service_level`` = answered within the target / denominator, the denominator by
  ``settings.abandons`` (``kpi.settings.AbandonsInServiceLevel``); None when the denominator is 0;
* ``abandon_rate`` = abandoned / (answered + abandoned);
* ``asa`` = total wait of the answered calls / answered;
* ``aht`` = (talk + hold + wrap-up) / handled, where talk + hold is answer to hang-up (the ACD's ``talk``)
  and wrap-up the agent's after it; a call is *handled* when its record is written (wrap-up over);
* ``history``: the same ``offered``, ``answered``, ``abandoned`` and ``service_level`` per interval of the
  day (``interval_figures``; by the event's time, so a call is offered in one interval and answered in the
  next as above);
* ``avg_hold`` = hold seconds / holds, ``max_hold`` the longest single hold;
* ``transfers``: answered calls the agent sent on to a queue (the record's ``overflow_action``
  ``transferred``); ``callbacks``: callbacks requested (the IVR's ``CallbackRequested`` naming the queue,
  and callers overflowed to a callback flow).

Agent figures: ``handled``, ``aht`` as above; ``occupancy`` = (reserved + on call + wrap-up) seconds /
(ready + reserved + on call + wrap-up) seconds; ``not_ready``: seconds by reason; ``adherence`` (day):
1 - seconds beyond the reasons' daily allowances / not-ready seconds (None without not-ready time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kpi.settings import AbandonsInServiceLevel, KpiSettings, Target

# ---- queue counters
(Q_OFFERED, Q_ANSWERED, Q_ANSWERED_IN_SL, Q_ABANDONED, Q_ABANDONED_IN_SL, Q_SHORT_ABANDONED, Q_OVERFLOWED,
 Q_WAIT_ANSWERED, Q_HANDLED, Q_HANDLE, Q_HOLDS, Q_HOLD, Q_HOLD_MAX, Q_TRANSFERS, Q_CALLBACKS) = range(15)
Q_FIELDS = 15
Q_MAXES = (Q_HOLD_MAX,)

# ---- agent counters
A_HANDLED, A_HANDLE, A_HOLDS, A_HOLD, A_ANSWERED = range(5)
A_FIELDS = 5
A_MAXES: tuple[int, ...] = ()

BUSY_STATES = ("reserved", "on_call", "wrap_up")
WORKING_STATES = ("ready", *BUSY_STATES)


def ratio(num: float, den: float) -> float | None:
    """``num / den`` to 6 decimals (sums taken in another order, as a rebuild does, agree), None when ``den`` is 0."""
    return round(num / den, 6) if den else None


def service_level(c: Sequence[float], how: AbandonsInServiceLevel) -> float | None:
    """Answered within the target over the denominator ``how`` says (a fraction 0..1)."""
    answered, in_sl = c[Q_ANSWERED], c[Q_ANSWERED_IN_SL]
    if how is AbandonsInServiceLevel.COUNTED:
        return ratio(in_sl, answered + c[Q_ABANDONED])
    if how is AbandonsInServiceLevel.EXCLUDED:
        return ratio(in_sl, answered)
    return ratio(in_sl, answered + c[Q_ABANDONED] - c[Q_ABANDONED_IN_SL])


def queue_figures(c: Sequence[float], settings: KpiSettings) -> dict[str, Any]:
    """One window's queue figures from its counters."""
    answered, abandoned = c[Q_ANSWERED], c[Q_ABANDONED]
    return {
        "offered": int(c[Q_OFFERED]), "answered": int(answered), "abandoned": int(abandoned),
        "short_abandoned": int(c[Q_SHORT_ABANDONED]), "overflowed": int(c[Q_OVERFLOWED]),
        "service_level": service_level(c, settings.abandons), "abandon_rate": ratio(abandoned, answered + abandoned),
        "asa": ratio(c[Q_WAIT_ANSWERED], answered), "handled": int(c[Q_HANDLED]),
        "aht": ratio(c[Q_HANDLE], c[Q_HANDLED]), "holds": int(c[Q_HOLDS]), "avg_hold": ratio(c[Q_HOLD], c[Q_HOLDS]),
        "max_hold": round(c[Q_HOLD_MAX], 3) if c[Q_HOLDS] else None,
        "transfers": int(c[Q_TRANSFERS]), "callbacks": int(c[Q_CALLBACKS]),
    }


def interval_figures(c: Sequence[float], settings: KpiSettings) -> dict[str, Any]:
    """One interval of the day's history (the wallboard's sparkline): offered, answered, abandoned and the
    service level, by the definitions above."""
    return {"offered": int(c[Q_OFFERED]), "answered": int(c[Q_ANSWERED]), "abandoned": int(c[Q_ABANDONED]),
            "service_level": service_level(c, settings.abandons)}


def in_target(wait: float, target: Target) -> bool:
    return wait <= target.seconds


# ---- what an event adds to a queue's (or agent's) counters: (field, value) pairs, for the live core and the
# interval reports alike (one implementation of the counting rules). Written as arithmetic (a condition is
# ``1.0 * (test)``) so that the same function counts one event (floats: a value of 0 adds nothing) or a
# whole column of stored records at once (numpy arrays, ``kpi.report``).
Counts = tuple[tuple[int, Any], ...]


def answered_counts(wait: Any, target_seconds: Any) -> Counts:
    """A caller answered after ``wait`` seconds in the queue (within the target: ``in_target``)."""
    return ((Q_ANSWERED, 1.0), (Q_WAIT_ANSWERED, wait), (Q_ANSWERED_IN_SL, 1.0 * (wait <= target_seconds)))


def abandoned_counts(wait: Any, short_abandon: float, target_seconds: Any) -> Counts:
    """A caller who hung up after ``wait`` seconds: a short abandon within ``short_abandon``, else an abandon
    (and one within the target, for ``AbandonsInServiceLevel.AFTER_TARGET``)."""
    short = 1.0 * (wait < short_abandon)
    return ((Q_SHORT_ABANDONED, short), (Q_ABANDONED, 1.0 - short),
            (Q_ABANDONED_IN_SL, (1.0 - short) * (wait <= target_seconds)))


def overflowed_counts(action: Any) -> Counts:
    """A caller sent out of the queue (``action`` ``callback``: also a callback)."""
    return ((Q_OVERFLOWED, 1.0), (Q_CALLBACKS, 1.0 * (action == "callback")))


def handled_counts(talk: Any, wrapup: Any, overflow_action: Any) -> Counts:
    """An answered call's record written (wrap-up over): handled, its handle time (talk + hold + wrap-up), a
    transfer to a queue."""
    return ((Q_HANDLED, 1.0), (Q_HANDLE, talk + wrapup), (Q_TRANSFERS, 1.0 * (overflow_action == "transferred")))


def agent_handled_counts(talk: Any, wrapup: Any) -> Counts:
    return ((A_HANDLED, 1.0), (A_HANDLE, talk + wrapup))


def agent_figures(c: Sequence[float], times: Mapping[str, float]) -> dict[str, Any]:
    """One window's agent figures: counters and seconds by state (``not_ready:<reason>`` for not-ready)."""
    busy = sum(times.get(s, 0.0) for s in BUSY_STATES)
    working = busy + times.get("ready", 0.0)
    not_ready = {k.partition(":")[2]: round(v, 3) for k, v in sorted(times.items()) if k.startswith("not_ready:")}
    return {"handled": int(c[A_HANDLED]), "aht": ratio(c[A_HANDLE], c[A_HANDLED]), "holds": int(c[A_HOLDS]),
            "occupancy": ratio(busy, working), "ready_seconds": round(times.get("ready", 0.0), 3),
            "busy_seconds": round(busy, 3), "not_ready": not_ready}


def adherence(not_ready: Mapping[str, float], limits: Mapping[str, float]) -> dict[str, Any]:
    """Today's adherence to the not-ready allowances: seconds over each reason's allowance, and 1 - the
    excess over all not-ready seconds (None without not-ready time)."""
    total = sum(not_ready.values())
    over = {r: round(s - limits[r], 3) for r, s in sorted(not_ready.items()) if r in limits and s > limits[r]}
    return {"adherence": None if not total else 1.0 - sum(over.values()) / total, "over": over}
