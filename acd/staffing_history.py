"""A staffing forecast made of past records: per queue and interval, the calls that entered, their mean
handle time and the callers' patience; and the agents logged in per interval. Pure: record values in,
forecast intervals out (``centre.staffing_records`` reads the rows). ``docs/staffing.md``.

Patience is estimated per queue over the whole period, by the maximum-likelihood estimate for an
exponential patience with censoring: total time every caller spent waiting (answered and overflowed
callers are censored at their wait) / number of abandons. No abandons: no estimate (None)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from acd.staffing import ForecastInterval


@dataclass(frozen=True, slots=True)
class PastCall:
    """What the forecast needs of one ``acd_queue_calls`` row (times in epoch seconds)."""

    queue: str
    entered: float
    wait: float
    outcome: str  # answered | abandoned | overflowed
    handle: float  # talk + wrap-up (answered calls)


@dataclass(frozen=True, slots=True)
class StateChange:
    """What the logged-in count needs of one ``acd_agent_states`` row."""

    agent_id: str
    at: float
    state: str
    previous: str
    previous_seconds: float


LOGGED_OUT = "logged_out"


def interval_label(ts: float, interval_seconds: int, zone: ZoneInfo) -> str:
    """``YYYY-MM-DD HH:MM`` of the interval holding ``ts``, aligned on local midnight."""
    local = datetime.fromtimestamp(ts, zone)
    minutes = (local.hour * 60 + local.minute) // (interval_seconds // 60) * (interval_seconds // 60)
    return f"{local:%Y-%m-%d} {minutes // 60:02d}:{minutes % 60:02d}"


def patience_estimate(calls: Iterable[PastCall]) -> float | None:
    """Mean patience (seconds): total waiting time of all callers / abandons; None without abandons."""
    waited, abandons = 0.0, 0
    for c in calls:
        waited += max(c.wait, 0.0)
        abandons += c.outcome == "abandoned"
    return waited / abandons if abandons else None


def forecast_from_calls(calls: Sequence[PastCall], interval_seconds: int, zone: ZoneInfo,
                        default_aht: float | None = None) -> dict[str, list[ForecastInterval]]:
    """Per queue, one interval per interval with calls: calls entered, mean handle time of the answered ones
    (the queue's mean over the period where an interval has none answered, else ``default_aht``; without
    either the interval is left out) and the queue's patience estimate."""
    by_queue: dict[str, list[PastCall]] = defaultdict(list)
    for c in calls:
        by_queue[c.queue].append(c)
    out: dict[str, list[ForecastInterval]] = {}
    for queue in sorted(by_queue):
        rows = by_queue[queue]
        patience = patience_estimate(rows)
        answered = [c.handle for c in rows if c.outcome == "answered"]
        queue_aht = sum(answered) / len(answered) if answered and sum(answered) > 0 else default_aht
        slots: dict[str, list[PastCall]] = defaultdict(list)
        for c in rows:
            slots[interval_label(c.entered, interval_seconds, zone)].append(c)
        intervals = []
        for label in sorted(slots):
            handled = [c.handle for c in slots[label] if c.outcome == "answered"]
            aht = sum(handled) / len(handled) if handled and sum(handled) > 0 else queue_aht
            if aht is not None:
                intervals.append(ForecastInterval(label, float(len(slots[label])), aht, patience, queue))
        out[queue] = intervals
    return out


def _spans(changes: Sequence[StateChange], start: float, end: float) -> Iterator[tuple[float, float]]:
    """The logged-in spans of one agent (its changes in time order, the last one before ``start`` included)
    clipped to [start, end)."""
    if not changes:
        return
    first = changes[0]
    since = None if first.previous == LOGGED_OUT else first.at - first.previous_seconds
    spans = []
    for ch in changes:
        if ch.state == LOGGED_OUT:
            if since is not None:
                spans.append((since, ch.at))
            since = None
        elif since is None:
            since = ch.at
    if since is not None:
        spans.append((since, end))
    for lo, hi in spans:
        lo, hi = max(lo, start), min(hi, end)
        if hi > lo:
            yield lo, hi


def logged_in_per_interval(changes: Iterable[StateChange], start: float, end: float, interval_seconds: int,
                           zone: ZoneInfo, agents: frozenset[str] | None = None) -> dict[str, float]:
    """Mean number of agents logged in (any state but logged out) per interval label, over [start, end);
    ``agents``: count only these (a queue's members), else all."""
    by_agent: dict[str, list[StateChange]] = defaultdict(list)
    for ch in changes:
        if agents is None or ch.agent_id in agents:
            by_agent[ch.agent_id].append(ch)
    seconds: dict[str, float] = defaultdict(float)
    for rows in by_agent.values():
        rows.sort(key=lambda r: r.at)
        for lo, hi in _spans(rows, start, end):
            t = lo
            while t < hi:
                # the interval boundary after t: local-midnight aligned, in epoch steps of the interval
                offset = datetime.fromtimestamp(t, zone).utcoffset()
                local = t + (offset.total_seconds() if offset else 0.0)
                boundary = (local // interval_seconds + 1) * interval_seconds - (local - t)
                step_end = min(hi, boundary)
                seconds[interval_label(t, interval_seconds, zone)] += step_end - t
                t = step_end
    return {label: s / interval_seconds for label, s in seconds.items()}
