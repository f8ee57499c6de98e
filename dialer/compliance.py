"""The law as numbers: a per-campaign ledger of live answers, abandons, AMD verdicts and ring times, its
windows (rolling 30 days, rolling 24 hours, the calendar day in the campaign's zone) and a forecast of how
many more abandons a window can take. Pure: no I/O, no clock (``now`` is passed in), no engine state.

Fed with the ``AttemptFinished`` events the campaigns produce (``record``), or rebuilt on start-up from the
stored attempts (``rebuild`` with ``dialer.store.LeadStore.ledger_entries``). Read by the pacer
(``window(campaign, now) -> WindowFigures``) and by ``cti compliance`` (``figures``, ``entries``).

What counts (docs/dialer.md, "The law"):

* a **live** call: a person answered (AMD HUMAN or NOTSURE, or the call reached the queue);
* an **abandoned** call: a person answered and no agent was connected within the safe-harbour time
  (result ``abandoned``, or ``connected`` but ``late``);
* under ``uk_ofcom`` (and ``custom`` with ``count_false_machines``) the people the AMD took for machines are
  estimated and counted both as live and as abandoned (``false_machines``);
* the rate is abandoned / live; ``cap`` the policy's (3% for us_tsr and uk_ofcom).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dialer.events import AttemptFinished
from dialer.pacer import WindowFigures
from dialer.settings import LAW_CAP, CampaignSettings, WindowKind

DAY = 86400.0
WINDOW_SECONDS: dict[str, float] = {"rolling_30d": 30 * DAY, "rolling_24h": DAY}
POLICY_WINDOW: dict[str, WindowKind] = {"us_tsr": "rolling_30d", "uk_ofcom": "rolling_24h"}
WINDOWS: tuple[WindowKind, ...] = ("rolling_30d", "rolling_24h", "calendar_day")
RETAIN = 32 * DAY  # entries older than this (before the latest) are dropped: no window reaches them


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules a campaign is held to, as ``dialer.settings`` configures them."""

    name: str
    cap: float
    window: WindowKind
    min_ring: float
    message_within: float
    count_false_machines: bool
    amd_accuracy: float | None
    redial_after_abandon: float

    @classmethod
    def of(cls, s: CampaignSettings) -> Policy:
        if s.policy == "custom":
            return cls("custom", s.max_abandon_rate, s.custom.window, s.min_ring(), s.message_within(),
                       s.counts_amd_misses() and s.amd, s.amd_accuracy, s.redial_after_abandon())
        return cls(s.policy, LAW_CAP, POLICY_WINDOW[s.policy], s.min_ring(), s.message_within(),
                   s.counts_amd_misses() and s.amd, s.amd_accuracy, s.redial_after_abandon())


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One finished attempt as evidence. ``ts``: when it ended (epoch seconds)."""

    ts: float
    ref: str
    lead_id: str
    number: str
    result: str
    person: bool
    machine: bool
    abandoned: bool
    message_in_time: bool | None
    ring_seconds: float | None
    amd: str = ""

    @classmethod
    def of(cls, e: AttemptFinished, number: str = "") -> LedgerEntry:
        return cls(e.ts, e.ref, e.lead_id, number, e.result, e.person or e.late, e.result == "machine",
                   e.result == "abandoned" or e.late, e.message_in_time, e.ring_seconds, e.amd)


@dataclass(frozen=True, slots=True)
class Figures:
    """One window of one campaign. ``live``/``abandoned`` include ``false_machines`` (the estimate, a real
    number) when the policy counts them; ``short_rings``: unanswered calls that rang under the minimum;
    ``late_messages``: abandons whose message did not start in time."""

    campaign: str
    window: WindowKind
    start: float
    end: float
    elapsed_fraction: float
    attempts: int
    live_answers: int
    abandons: int
    machines: int
    false_machines: float
    live: float
    abandoned: float
    rate: float | None
    cap: float
    short_rings: int
    late_messages: int

    @property
    def over_cap(self) -> bool:
        return self.rate is not None and self.rate > self.cap + 1e-12


@dataclass(frozen=True, slots=True)
class Forecast:
    """How many more abandons the window can take until ``until``, given ``expected_live`` more live calls
    by then (0 when it is over the cap already, or would be once old entries leave a rolling window)."""

    until: float
    expected_live: float
    allowed_abandons: int


def false_machines(live: int, machines: int, accuracy: float | None) -> float:
    """Estimated people among ``machines`` AMD verdicts, for an AMD that classifies a share ``accuracy`` of
    calls correctly, people and machines alike. With H people and M machines answering, the verdicts are
    ``live = aH + (1-a)M`` and ``machines = (1-a)H + aM``; so ``H = (a*live - (1-a)*machines) / (2a-1)`` and
    the people taken for machines are ``(1-a)H``, within ``[0, machines]``."""
    if accuracy is None or accuracy >= 1.0 or machines <= 0:
        return 0.0
    a = accuracy
    people = (a * live - (1 - a) * machines) / (2 * a - 1)
    return min(float(machines), max(0.0, (1 - a) * people))


class _Series:
    """One campaign's entries in time order with prefix sums (live, abandoned, machines, attempts, short
    rings, late messages), so that any window's counts are two bisections."""

    FIELDS = 6

    def __init__(self) -> None:
        self.ts: list[float] = []
        self.entries: list[LedgerEntry] = []
        self.cum: list[tuple[int, ...]] = [(0,) * self.FIELDS]
        self.first: float | None = None

    def add(self, e: LedgerEntry, min_ring: float) -> None:
        self.first = e.ts if self.first is None else min(self.first, e.ts)
        if self.ts and e.ts < self.ts[-1]:
            i = bisect_right(self.ts, e.ts)
            self.ts.insert(i, e.ts)
            self.entries.insert(i, e)
            del self.cum[i + 1:]
            for x in self.entries[i:]:
                self._push(x, min_ring)
            return
        self.ts.append(e.ts)
        self.entries.append(e)
        self._push(e, min_ring)

    def _push(self, e: LedgerEntry, min_ring: float) -> None:
        short = e.ring_seconds is not None and not e.person and not e.machine and e.result == "noanswer" \
            and e.ring_seconds < min_ring - 1e-6
        row = (int(e.person), int(e.abandoned), int(e.machine), 1, int(short),
               int(e.abandoned and e.message_in_time is not True))
        last = self.cum[-1]
        self.cum.append(tuple(a + b for a, b in zip(last, row, strict=True)))

    def span(self, start: float, end: float, *, after: bool = False, through: bool = False) -> tuple[int, int]:
        """Indices of the entries from ``start`` (``after``: excluded) to ``end`` (``through``: included)."""
        i = bisect_right(self.ts, start) if after else bisect_left(self.ts, start)
        j = bisect_right(self.ts, end) if through else bisect_left(self.ts, end)
        return i, max(i, j)

    def counts(self, start: float, end: float, *, after: bool = False, through: bool = False) -> tuple[int, ...]:
        """Sums over the entries from ``start`` to ``end`` (by default ``start <= ts < end``)."""
        i, j = self.span(start, end, after=after, through=through)
        return tuple(b - a for a, b in zip(self.cum[i], self.cum[j], strict=True))

    def prune(self, before: float, min_ring: float) -> None:
        i = bisect_left(self.ts, before)
        if i > 1024 and i * 2 > len(self.ts):
            keep = self.entries[i:]
            self.ts, self.entries, self.cum = [], [], [(0,) * self.FIELDS]
            for e in keep:
                self.ts.append(e.ts)
                self.entries.append(e)
                self._push(e, min_ring)


class ComplianceLedger:
    """Every campaign's evidence and windows. ``settings``: the campaigns it keeps the ledger of."""

    def __init__(self, settings: list[CampaignSettings], *, retain: float = RETAIN) -> None:
        self.retain = retain  # seconds of entries kept before the latest (the export keeps everything)
        self.settings = {s.name: s for s in settings}
        self.policies = {s.name: Policy.of(s) for s in settings}
        self._series: dict[str, _Series] = {s.name: _Series() for s in settings}
        self._zones: dict[str, ZoneInfo] = {s.name: ZoneInfo(s.timezone) for s in settings}

    # ------------------------------------------------------------------ input
    def record(self, event: AttemptFinished, number: str = "") -> None:
        """One finished attempt (ignored for a campaign the ledger does not know)."""
        self.add(event.campaign, LedgerEntry.of(event, number))

    def add(self, campaign: str, entry: LedgerEntry) -> None:
        series = self._series.get(campaign)
        if series is None:
            return
        policy = self.policies[campaign]
        series.add(entry, policy.min_ring)
        if math.isfinite(self.retain):
            series.prune(entry.ts - self.retain, policy.min_ring)

    def rebuild(self, campaign: str, entries: list[LedgerEntry]) -> None:
        """Start the campaign's ledger afresh from stored evidence (on start-up)."""
        if campaign not in self._series:
            return
        self._series[campaign] = _Series()
        for e in sorted(entries, key=lambda x: x.ts):
            self.add(campaign, e)

    def measured_amd_accuracy(self, campaign: str, accuracy: float) -> None:
        """Use a measured AMD accuracy (a reviewed sample of recordings, a simulator's known model) instead of
        the configured ``amd_accuracy`` from now on; figures are recomputed from the counts, nothing is lost."""
        if not 0.5 < accuracy <= 1.0:
            raise ValueError(f"an AMD accuracy is a fraction over 0.5 and at most 1, not {accuracy!r}")
        if campaign in self.policies:
            self.policies[campaign] = replace(self.policies[campaign], amd_accuracy=accuracy)

    # ------------------------------------------------------------------ reads
    def bounds(self, campaign: str, kind: WindowKind, now: float) -> tuple[float, float]:
        """The window of ``kind`` that ``now`` is judged in: a rolling window ends now; a calendar day runs
        from local midnight to the next (23 or 25 hours on a DST change)."""
        if kind == "calendar_day":
            zone = self._zones[campaign]
            day = datetime.fromtimestamp(now, zone).date()
            start = datetime(day.year, day.month, day.day, tzinfo=zone)
            nxt = day + timedelta(days=1)
            end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
            return start.timestamp(), end.timestamp()
        return now - WINDOW_SECONDS[kind], now

    def figures(self, campaign: str, now: float, kind: WindowKind | None = None) -> Figures:
        """The campaign's figures in the window of ``kind`` (default: its policy's) at ``now``: a rolling
        window holds what ended in ``(now - length, now]``, a calendar day what ended from its midnight to now."""
        policy = self.policies[campaign]
        kind = kind or policy.window
        start, end = self.bounds(campaign, kind, now)
        counts = self._series[campaign].counts(start, now, after=kind != "calendar_day", through=True)
        return self._figures(campaign, kind, start, end, self._elapsed(campaign, kind, start, end, now), counts)

    def figures_between(self, campaign: str, start: float, end: float, kind: WindowKind) -> Figures:
        """Figures of the entries with ``start <= ts < end`` (the export's per-window totals)."""
        counts = self._series[campaign].counts(start, end)
        return self._figures(campaign, kind, start, end, 1.0, counts)

    def _figures(self, campaign: str, kind: WindowKind, start: float, end: float, elapsed: float,
                 counts: tuple[int, ...]) -> Figures:
        policy = self.policies[campaign]
        live, abandons, machines, attempts, short, late = counts
        fm = false_machines(live, machines, policy.amd_accuracy) if policy.count_false_machines else 0.0
        total_live, total_abandoned = live + fm, abandons + fm
        rate = total_abandoned / total_live if total_live > 0 else None
        return Figures(campaign, kind, start, end, elapsed, attempts, live, abandons, machines, fm, total_live,
                       total_abandoned, rate, policy.cap, short, late)

    def _elapsed(self, campaign: str, kind: WindowKind, start: float, end: float, now: float) -> float:
        if kind == "calendar_day":
            return min(1.0, max(0.0, (now - start) / (end - start)))
        first = self._series[campaign].first
        if first is None:
            return 0.0
        return min(1.0, max(0.0, (now - first) / (end - start)))

    def window(self, campaign: str, now: float) -> WindowFigures:
        """The policy window's figures for the pacer (false machines rounded up: the estimate errs on the
        side of the person)."""
        f = self.figures(campaign, now)
        return WindowFigures(live=math.ceil(f.live - 1e-9), abandoned=math.ceil(f.abandoned - 1e-9), cap=f.cap,
                             elapsed_fraction=f.elapsed_fraction)

    def forecast(self, campaign: str, now: float, *, expected_live: float | None = None,
                 horizon: float | None = None) -> Forecast:
        """How many more abandons the policy's window can take between ``now`` and ``now + horizon``
        (default: a calendar day's end; an hour for a rolling window) with ``expected_live`` more live
        calls (default: at the rate of the window so far). Judged both now and at the horizon, when a rolling
        window has dropped its oldest entries."""
        policy = self.policies[campaign]
        f = self.figures(campaign, now)
        if horizon is None:
            horizon = f.end - now if policy.window == "calendar_day" else 3600.0
        until = now + max(0.0, horizon)
        if expected_live is None:
            covered = f.elapsed_fraction * (f.end - f.start)
            expected_live = f.live_answers * (until - now) / covered if covered > 0 else 0.0
        allowed_now = policy.cap * (f.live + expected_live) - f.abandoned
        if policy.window == "calendar_day":
            allowed = allowed_now if until <= f.end else policy.cap * expected_live  # a new day starts afresh
        else:
            counts = self._series[campaign].counts(until - WINDOW_SECONDS[policy.window], now, after=True,
                                                   through=True)
            later = self._figures(campaign, policy.window, until - WINDOW_SECONDS[policy.window], until, 1.0, counts)
            allowed = min(allowed_now, policy.cap * (later.live + expected_live) - later.abandoned)
        if f.over_cap:
            allowed = min(allowed, 0.0)
        return Forecast(until, expected_live, max(0, math.floor(allowed + 1e-9)))

    def entries(self, campaign: str, start: float, end: float) -> list[LedgerEntry]:
        """The entries that ended in ``[start, end)``, in time order."""
        series = self._series[campaign]
        i, j = series.span(start, end)
        return series.entries[i:j]
