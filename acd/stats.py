"""Per-queue counters of the current day: service level, abandons, waits, handle time. Pure; no I/O, no clock.

The service feeds outcomes in and asks for figures; the day boundary is the service's business.
Must not import the service or the router.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

AHT_SMOOTHING = 0.1  # weight of the newest handle time in the moving average
ARRIVAL_MEMORY = 900.0  # seconds: the time constant of the measured arrival rate
MIN_WATCHED = 60.0  # seconds: a rate over less time reads one early caller as a flood


@dataclass(slots=True)
class ArrivalRate:
    """Arrivals per second, exponentially weighted with time constant ``memory`` (a 15-minute memory
    follows the day's peaks): each arrival counts ``exp(-age / memory)``. Until ``memory`` seconds have been
    watched, the weight is over the time watched (at least a minute), so the first minutes are not read as
    a quiet queue."""

    memory: float = ARRIVAL_MEMORY
    started: float | None = None
    weight: float = 0.0  # the decayed count, as of ``at``
    at: float = 0.0

    def watch(self, now: float) -> None:
        """Start the clock (the first read or arrival starts it otherwise)."""
        if self.started is None:
            self.started, self.at = now, now

    def on_arrival(self, now: float) -> None:
        self._decay(now)
        self.weight += 1.0

    def rate(self, now: float) -> float:
        """Arrivals per second (in the first minute: the arrivals so far, over a minute)."""
        self._decay(now)
        assert self.started is not None
        watched = max(now - self.started, MIN_WATCHED)
        return self.weight / (self.memory * -math.expm1(-watched / self.memory))

    def _decay(self, now: float) -> None:
        self.watch(now)
        if now > self.at:
            self.weight *= math.exp(-(now - self.at) / self.memory)
            self.at = now


@dataclass(slots=True)
class QueueCounters:
    sl_seconds: float
    aht: float  # moving average of talk + wrap-up, seeded with the configured default
    answered: int = 0
    answered_in_sl: int = 0
    abandoned: int = 0
    overflowed: int = 0
    wait_answered: float = 0.0
    arrivals: ArrivalRate = field(default_factory=ArrivalRate)  # callers, not the campaigns' people

    def on_answered(self, wait: float) -> None:
        self.answered += 1
        self.wait_answered += wait
        if wait <= self.sl_seconds:
            self.answered_in_sl += 1

    def on_abandoned(self) -> None:
        self.abandoned += 1

    def on_overflowed(self) -> None:
        self.overflowed += 1

    def on_handled(self, seconds: float) -> None:
        self.aht += AHT_SMOOTHING * (max(0.0, seconds) - self.aht)

    def reset(self) -> None:
        self.answered = self.answered_in_sl = self.abandoned = self.overflowed = 0
        self.wait_answered = 0.0

    def service_level(self) -> float | None:
        """Percent answered within the target over answered + abandoned (abandons count against)."""
        total = self.answered + self.abandoned
        return None if total == 0 else 100.0 * self.answered_in_sl / total

    def abandon_rate(self) -> float | None:
        total = self.answered + self.abandoned
        return None if total == 0 else 100.0 * self.abandoned / total

    def average_wait(self) -> float | None:
        return None if self.answered == 0 else self.wait_answered / self.answered

    def ewt(self, position: int, staffed: int) -> float | None:
        """Expected wait for the caller at ``position`` (1 = next) with ``staffed`` agents working the queue."""
        if staffed <= 0:
            return None
        return position * self.aht / staffed
