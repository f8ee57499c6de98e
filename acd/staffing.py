"""Staffing per interval: the fewest agents that meet a service-level target (and, if given, an abandonment
ceiling) under Erlang C or Erlang A, with the figures that staffing gives. Pure: forecasts in, rows out;
no I/O, no clock. The forecast comes from a CSV (``acd.staffing_forecast``) or from last week's records
(``acd.staffing_history``); ``cti staffing`` prints the rows. ``docs/staffing.md``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from acd.erlang import QueueFigures, erlang_c_figures
from acd.erlang_a import erlang_a

MAX_AGENTS = 10_000
"""The most agents one interval may need (beyond it the numbers are surely a unit mistake)."""


class Model(StrEnum):
    """``erlang-c``: callers wait as long as it takes; ``erlang-a``: they hang up after an exponential
    patience (Palm's M/M/n+M)."""

    ERLANG_C = "erlang-c"
    ERLANG_A = "erlang-a"


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """``percent`` of calls answered within ``seconds`` (abandons count against it), and at most
    ``max_abandon`` percent abandoned when given (Erlang A only abandons)."""

    percent: float = 80.0
    seconds: float = 20.0
    max_abandon: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.percent < 100:
            raise ValueError(f"expected a service-level percent above 0 and below 100, got {self.percent:g}")
        if not 0 <= self.seconds <= 86_400:
            raise ValueError(f"expected a service-level threshold of 0 to 86400 seconds, got {self.seconds:g}")
        if self.max_abandon is not None and not 0 < self.max_abandon < 100:
            raise ValueError(f"expected an abandonment ceiling above 0 and below 100 percent, got {self.max_abandon:g}")

    @classmethod
    def parse(cls, text: str, max_abandon: float | None = None) -> ServiceTarget:
        """``"80/20"``: 80 percent within 20 seconds."""
        percent, sep, seconds = text.partition("/")
        try:
            if not sep:
                raise ValueError
            return cls(float(percent.rstrip("% ")), float(seconds.rstrip("s ")), max_abandon)
        except ValueError as e:
            detail = f": {e}" if str(e) else ""
            raise ValueError(f"expected PERCENT/SECONDS such as 80/20, got {text[:30]!r}{detail}") from None

    def met_by(self, f: QueueFigures) -> bool:
        if f.service_level * 100.0 < self.percent - 1e-9:
            return False
        return self.max_abandon is None or f.p_abandon * 100.0 <= self.max_abandon + 1e-9


@dataclass(frozen=True, slots=True)
class ForecastInterval:
    """One interval of a forecast: ``calls`` offered (may be fractional), mean handle time ``aht`` (talk
    and wrap-up, seconds), mean ``patience`` (seconds; None: unknown), for ``queue`` (may be empty)."""

    start: str
    calls: float
    aht: float
    patience: float | None = None
    queue: str = ""


@dataclass(frozen=True, slots=True)
class StaffingRow:
    """The staffing an interval needs (``figures.agents``) and what it gives; ``logged_in``: mean agents
    logged in during the interval when known (from the records)."""

    interval: ForecastInterval
    figures: QueueFigures
    logged_in: float | None = None


def figures(model: Model, rate: float, aht: float, patience: float | None, agents: int,
            target_seconds: float) -> QueueFigures:
    """The model's figures for one staffing level (``rate`` calls/s)."""
    if model is Model.ERLANG_A:
        if patience is None:
            raise ValueError("Erlang A needs the callers' mean patience")
        return erlang_a(rate, aht, patience, agents, target_seconds)
    if rate == 0:
        return QueueFigures(agents, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    return erlang_c_figures(rate, aht, agents, target_seconds)


def agents_needed(model: Model, rate: float, aht: float, patience: float | None, target: ServiceTarget,
                  max_agents: int = MAX_AGENTS) -> QueueFigures:
    """The figures at the fewest agents meeting ``target`` (0 agents when no calls come). Galloping then
    bisection: the service level rises and abandonment falls with every agent added."""
    if rate <= 0:
        return QueueFigures(0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    cache: dict[int, QueueFigures] = {}

    def at(n: int) -> QueueFigures:
        if n not in cache:
            cache[n] = figures(model, rate, aht, patience, n, target.seconds)
        return cache[n]

    low, high = 0, max(1, math.ceil(rate * aht))  # low fails (0 agents answer no one); find a high that meets
    step = max(1, high // 8)
    while not target.met_by(at(high)):
        if high >= max_agents:
            raise ValueError(f"{rate * aht:.1f} Erlangs need more than {max_agents} agents for "
                             f"{target.percent:g}/{target.seconds:g}; check the calls and the AHT (seconds)")
        low, high, step = high, min(max_agents, high + step), step * 2
    while high - low > 1:
        mid = (low + high) // 2
        if target.met_by(at(mid)):
            high = mid
        else:
            low = mid
    return at(high)


def staffing_plan(intervals: Iterable[ForecastInterval], interval_seconds: float, model: Model,
                  target: ServiceTarget, default_patience: float | None = None,
                  max_agents: int = MAX_AGENTS) -> list[StaffingRow]:
    """One row per forecast interval: the agents needed and the figures at that staffing. Each interval is
    taken as a steady state of its own (the standard per-interval use of the Erlang formulas)."""
    rows = []
    for iv in intervals:
        patience = iv.patience if iv.patience is not None else default_patience
        if model is Model.ERLANG_A and patience is None:
            raise ValueError(f"interval {iv.start} {iv.queue}: Erlang A needs a patience (a patience column "
                             "or --patience SECONDS)".replace("  ", " "))
        rows.append(StaffingRow(iv, agents_needed(model, iv.calls / interval_seconds, iv.aht, patience, target,
                                                  max_agents)))
    return rows
