"""Counters by period, incremental: since local midnight, the current interval, and sliding buckets for the
last 15 and 30 minutes. Pure; time is passed in. Adding is O(1); reading a sliding window sums its buckets
(reads are coalesced by the feed, events are not).

``Calendar`` knows the periods at ``now`` (the day's and the interval's bounds in the centre's time zone,
recomputed only when ``now`` leaves the cached interval). ``Windows`` holds one counter vector per period;
an event whose time is before the current day (or interval) counts only in the windows it falls in.
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
    """One counter vector per period for one queue, agent or campaign."""

    __slots__ = ("cal", "n", "maxes", "day", "day_key", "iv", "iv_key", "buckets")

    def __init__(self, cal: Calendar, n: int, maxes: tuple[int, ...] = ()) -> None:
        self.cal = cal
        self.n = n
        self.maxes = maxes
        self.day = [0.0] * n
        self.day_key = cal.day_start
        self.iv = [0.0] * n
        self.iv_key = cal.iv_start
        self.buckets: dict[int, list[float]] = {}

    def add(self, ts: float, field: int, value: float = 1.0) -> None:
        """Count ``value`` in ``field`` at time ``ts`` (<= the calendar's now)."""
        cal = self.cal
        if ts >= cal.day_start:
            if self.day_key != cal.day_start:
                self.day, self.day_key = [0.0] * self.n, cal.day_start
            self.day[field] += value
            if ts >= cal.iv_start:
                if self.iv_key != cal.iv_start:
                    self.iv, self.iv_key = [0.0] * self.n, cal.iv_start
                self.iv[field] += value
        b = int(ts // cal.bucket)
        if b > cal.bucket_now - cal.span:
            vec = self.buckets.get(b)
            if vec is None:
                vec = self.buckets[b] = [0.0] * self.n
                if len(self.buckets) > 2 * cal.span:
                    self.prune()
            vec[field] += value

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
            vec = self.buckets.get(b)
            if vec is None:
                vec = self.buckets[b] = [0.0] * self.n
            vec[field] = max(vec[field], value)

    def prune(self) -> None:
        """Drop buckets older than 30 minutes."""
        first = self.cal.bucket_now - self.cal.span + 1
        for b in [b for b in self.buckets if b < first]:
            del self.buckets[b]

    def window(self, name: str) -> list[float]:
        """The counters of window ``name`` (``WINDOW_NAMES``) at the calendar's now."""
        cal = self.cal
        if name == "day":
            return list(self.day) if self.day_key == cal.day_start else [0.0] * self.n
        if name == "interval":
            return list(self.iv) if self.iv_key == cal.iv_start else [0.0] * self.n
        first = cal.bucket_now - int(SLIDING[name] / cal.bucket) + 1
        out = [0.0] * self.n
        top = {i: 0.0 for i in self.maxes}
        for b, vec in self.buckets.items():
            if first <= b <= cal.bucket_now:
                out = [x + y for x, y in zip(out, vec, strict=True)]
                for i in top:
                    top[i] = max(top[i], vec[i])
        for i, v in top.items():
            out[i] = v
        return out
