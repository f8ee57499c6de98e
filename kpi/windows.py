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

from array import array
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
    O(fields); max fields are taken over the buckets on reading. The buckets of the longest sliding window
    are a ring allocated once (``cal.span`` slots of ``n`` counters): memory does not grow with time or
    traffic."""

    __slots__ = ("cal", "n", "maxes", "day", "day_key", "iv", "iv_key", "ring", "held", "runs", "firsts", "at",
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
        # slot b % span holds bucket ``held[slot]``'s counters (-1: none yet); zero-filled now, so the whole
        # ring is resident from the start
        self.ring = array("d", bytes(8 * n * cal.span))
        self.held = array("q", [-1]) * cal.span
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
        ring, held, n, span = self.ring, self.held, self.n, cal.span
        for w, window in enumerate(SLIDING.values()):
            first = now - int(window // cal.bucket) + 1
            old = self.firsts[w]
            if first <= old:
                continue
            run = self.runs[w]
            for b in range(max(old, first - span), first):  # older buckets are no longer in the ring
                slot = b % span
                if held[slot] != b:
                    continue
                base = slot * n
                for i in range(n):
                    v = ring[base + i]
                    if v:
                        run[i] -= v
            self.firsts[w] = first

    def _slot(self, b: int) -> int:
        """The ring's offset of bucket ``b``'s counters, taking its slot over from an older bucket (which has
        left every window by then) if need be."""
        slot = b % self.cal.span
        base = slot * self.n
        if self.held[slot] != b:
            self.held[slot] = b
            ring = self.ring
            for i in range(base, base + self.n):
                ring[i] = 0.0
        return base

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
            self.ring[self._slot(b) + field] += value
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
            i = self._slot(b) + field
            self.ring[i] = max(self.ring[i], value)
            self.last_max = max(self.last_max, b)

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
            if self.last_max < first:
                for i in self.maxes:
                    out[i] = 0.0
            else:
                ring, held, n = self.ring, self.held, self.n
                live = [slot * n for slot, b in enumerate(held) if b >= first]
                for i in self.maxes:
                    out[i] = max((ring[base + i] for base in live), default=0.0)
        return out


class StateSeconds:
    """An agent's seconds in each state (by key) per bucket over the longest sliding window, in a ring of
    fixed size: memory does not grow with the number of state changes. Reading a sliding window sums its
    buckets; the oldest one, which the window's edge cuts, counts pro rata, so a window's times are exact to
    within one bucket's mix of states (the counters' own resolution)."""

    __slots__ = ("cal", "size", "ring", "at")

    def __init__(self, cal: Calendar) -> None:
        self.cal = cal
        self.size = cal.span + 1  # a window's edge cuts a bucket: the longest window touches span + 1 of them
        self.ring: dict[str, array[float]] = {}  # key -> seconds per slot (bucket b in slot b % size)
        self.at = cal.bucket_now  # the newest bucket; the slots hold buckets (at - size, at]

    def _advance(self, b: int) -> None:
        """Make bucket ``b`` the newest: the slots of the buckets between are emptied for every key."""
        at = self.at
        if b <= at:
            return
        size = self.size
        if b - at >= size:
            for arr in self.ring.values():
                arr[:] = array("d", bytes(8 * size))
        else:
            for bucket in range(at + 1, b + 1):
                slot = bucket % size
                for arr in self.ring.values():
                    arr[slot] = 0.0
        self.at = b

    def add(self, key: str, start: float, end: float) -> None:
        """``end - start`` seconds in state ``key``, spread over the buckets they fall in."""
        width = self.cal.bucket
        last = int(end // width)
        self._advance(max(last, self.cal.bucket_now))
        arr = self.ring.get(key)
        if arr is None:
            arr = self.ring[key] = array("d", bytes(8 * self.size))
        size = self.size
        for b in range(max(int(start // width), self.at - size + 1), last + 1):
            secs = min(end, (b + 1) * width) - max(start, b * width)
            if secs > 0:
                arr[b % size] += secs

    def window(self, span: float, now: float) -> dict[str, float]:
        """Seconds by key in (now - span, now], of the states that ended (the current one is the caller's)."""
        width = self.cal.bucket
        newest = int(now // width)
        self._advance(newest)
        lo = now - span
        oldest = max(int(lo // width), self.at - self.size + 1)
        cut = min(1.0, max(0.0, (lo - oldest * width) / width))  # the share of the oldest bucket before ``lo``
        i, j = oldest % self.size, newest % self.size
        out: dict[str, float] = {}
        for key, arr in self.ring.items():
            total = sum(arr[i:j + 1]) if i <= j else sum(arr[i:]) + sum(arr[:j + 1])
            total -= cut * arr[i]
            if total > 1e-6:
                out[key] = total
        return out


SLIDING_INDEX = {name: i for i, name in enumerate(SLIDING)}
