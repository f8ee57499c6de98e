"""Counters by period, incremental: since local midnight, the current interval, and sliding buckets for the
last 15 and 30 minutes. Pure; time is passed in. Adding is O(1); reading a sliding window sums its buckets
(reads are coalesced by the feed, events are not).

``Calendar`` knows the periods at ``now`` (the day's and the interval's bounds in the centre's time zone,
recomputed only when ``now`` leaves the cached interval). ``Windows`` holds one counter vector per period;
an event whose time is before the current day (or interval) counts only in the windows it falls in.
A ``Windows`` made with ``history=True`` also keeps one vector per interval of the current day (by its index
from local midnight, the event's time deciding), for the day's curve (a wallboard's sparkline).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

SLIDING = {"15m": 900.0, "30m": 1800.0}
WINDOW_NAMES = ("day", "interval", "15m", "30m")


class Calendar:
    """The day and interval at the latest ``now`` it was told (``advance``)."""

    __slots__ = ("zone", "interval", "bucket", "span", "day_start", "day_end", "iv_start", "iv_end", "now",
                 "bucket_now")

    def __init__(self, timezone: str, interval: float, bucket: float) -> None:
        self.zone = ZoneInfo(timezone)
        self.interval = interval
        self.bucket = bucket
        self.span = int(max(SLIDING.values()) // bucket)  # buckets kept: the longest sliding window's
        self.day_start = self.day_end = self.iv_start = self.iv_end = 0.0
        self.now = float("-inf")
        self.bucket_now = 0

    def advance(self, now: float) -> None:
        """Move to ``now`` (time never goes back: an earlier ``now`` is ignored)."""
        if now < self.now:
            return
        self.now = now
        self.bucket_now = int(now // self.bucket)
        if self.iv_start <= now < self.iv_end:
            return
        local = datetime.fromtimestamp(now, self.zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        self.day_start = midnight.timestamp()
        self.day_end = (midnight.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=self.zone).timestamp()
        k = int((now - self.day_start) // self.interval)
        self.iv_start = self.day_start + k * self.interval
        self.iv_end = min(self.day_end, self.iv_start + self.interval)


class Windows:
    """One counter vector per period for one queue, agent or campaign. The sliding windows keep running
    sums (added to as events come, the buckets that leave subtracted as time passes), so reading one is
    O(fields); max fields are taken over the buckets on reading."""

    __slots__ = ("cal", "n", "maxes", "day", "day_key", "iv", "iv_key", "buckets", "runs", "firsts", "at",
                 "last_max", "history", "hist_key", "hist_changed")

    def __init__(self, cal: Calendar, n: int, maxes: tuple[int, ...] = (), *, history: bool = False) -> None:
        """``history``: keep the day's per-interval vectors too (``intervals``)."""
        self.cal = cal
        self.n = n
        self.maxes = maxes
        self.day = [0.0] * n
        self.day_key = cal.day_start
        self.iv = [0.0] * n
        self.iv_key = cal.iv_start
        self.buckets: dict[int, list[float]] = {}
        self.runs = [[0.0] * n for _ in SLIDING]  # per sliding window: the sums of its buckets
        self.at = cal.bucket_now  # the bucket the running sums are up to
        self.firsts = [self.at - int(span // cal.bucket) + 1 for span in SLIDING.values()]
        self.last_max = -1  # the latest bucket a max field was set in
        # interval index from local midnight -> its counters (None: no history kept); the day it is of; the
        # indices changed since the reader last took them (``take_changed``: it makes only those again)
        self.history: dict[int, list[float]] | None = {} if history else None
        self.hist_key = cal.day_start
        self.hist_changed: set[int] = set()

    def _expire(self) -> None:
        """Bring the running sums to the calendar's now: subtract the buckets that left each window."""
        cal = self.cal
        now = cal.bucket_now
        self.at = now
        buckets = self.buckets
        for w, span in enumerate(SLIDING.values()):
            first = now - int(span // cal.bucket) + 1
            old = self.firsts[w]
            if first <= old:
                continue
            run = self.runs[w]
            if first - old <= len(buckets):
                gone = [buckets[b] for b in range(old, first) if b in buckets]
            else:
                gone = [vec for b, vec in buckets.items() if old <= b < first]
            for vec in gone:
                for i, v in enumerate(vec):
                    if v:
                        run[i] -= v
            self.firsts[w] = first
        if len(buckets) > 2 * cal.span:
            self.prune()

    def add(self, ts: float, field: int, value: float = 1.0) -> None:
        """Count ``value`` in ``field`` at time ``ts`` (<= the calendar's now)."""
        cal = self.cal
        if ts >= cal.day_start:
            if self.day_key != cal.day_start:
                self.day, self.day_key = [0.0] * self.n, cal.day_start
            self.day[field] += value
            if self.history is not None:
                self._add_history(ts, field, value)
            if ts >= cal.iv_start:
                if self.iv_key != cal.iv_start:
                    self.iv, self.iv_key = [0.0] * self.n, cal.iv_start
                self.iv[field] += value
        b = int(ts // cal.bucket)
        if b > cal.bucket_now - cal.span:
            if self.at != cal.bucket_now:
                self._expire()
            vec = self.buckets.get(b)
            if vec is None:
                vec = self.buckets[b] = [0.0] * self.n
            vec[field] += value
            firsts = self.firsts
            runs = self.runs
            for w in range(len(firsts)):
                if b >= firsts[w]:
                    runs[w][field] += value

    def _add_history(self, ts: float, field: int, value: float) -> None:
        cal, hist = self.cal, self.history
        assert hist is not None
        if self.hist_key != cal.day_start:
            hist.clear()
            self.hist_changed.clear()
            self.hist_key = cal.day_start
        k = int((ts - cal.day_start) // cal.interval)
        vec = hist.get(k)
        if vec is None:
            vec = hist[k] = [0.0] * self.n
        vec[field] += value
        self.hist_changed.add(k)

    def take_changed(self) -> set[int]:
        """The intervals of today changed since the last call (for the one reader that caches their figures)."""
        changed, self.hist_changed = self.hist_changed, set()
        return changed if self.hist_key == self.cal.day_start else set()

    def intervals(self) -> dict[int, list[float]]:
        """Today's intervals that counted something (by index from local midnight; sum fields only, the max
        fields are not kept per interval): the vectors themselves, not copies."""
        if self.history is None or self.hist_key != self.cal.day_start:
            return {}
        return self.history

    def add_max(self, ts: float, field: int, value: float) -> None:
        """Keep the largest ``value`` of ``field`` (a max field) at time ``ts``."""
        cal = self.cal
        if ts >= cal.day_start:
            if self.day_key != cal.day_start:
                self.day, self.day_key = [0.0] * self.n, cal.day_start
            self.day[field] = max(self.day[field], value)
            if ts >= cal.iv_start:
                if self.iv_key != cal.iv_start:
                    self.iv, self.iv_key = [0.0] * self.n, cal.iv_start
                self.iv[field] = max(self.iv[field], value)
        b = int(ts // cal.bucket)
        if b > cal.bucket_now - cal.span:
            if self.at != cal.bucket_now:
                self._expire()
            vec = self.buckets.get(b)
            if vec is None:
                vec = self.buckets[b] = [0.0] * self.n
            vec[field] = max(vec[field], value)
            self.last_max = max(self.last_max, b)

    def prune(self) -> None:
        """Drop buckets older than the longest window."""
        first = min(self.firsts)
        for b in [b for b in self.buckets if b < first]:
            del self.buckets[b]

    def window(self, name: str) -> list[float]:
        """The counters of window ``name`` (``WINDOW_NAMES``) at the calendar's now."""
        cal = self.cal
        if name == "day":
            return list(self.day) if self.day_key == cal.day_start else [0.0] * self.n
        if name == "interval":
            return list(self.iv) if self.iv_key == cal.iv_start else [0.0] * self.n
        if self.at != cal.bucket_now:
            self._expire()
        w = SLIDING_INDEX[name]
        out = list(self.runs[w])
        if self.maxes:
            first = self.firsts[w]
            for i in self.maxes:
                out[i] = 0.0 if self.last_max < first else \
                    max((vec[i] for b, vec in self.buckets.items() if b >= first), default=0.0)
        return out


SLIDING_INDEX = {name: i for i, name in enumerate(SLIDING)}
