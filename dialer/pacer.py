"""Pure pacing: how many calls a campaign should place now. No I/O, no clock, no engine state.

Progressive pacing dials at most ``ratio`` lines per idle eligible agent (1.0: one line per agent),
counting calls already in flight against that budget. When the measured abandon rate is over the cap,
the ratio is cut to ``min(ratio, 1) * cap / rate``; a throttled campaign still keeps one line going
when nothing is in flight and an agent is idle, so that it keeps measuring and keeps moving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PacingDecision:
    """``dial``: calls to place now; ``target``: lines the campaign should have up; ``reason`` says why."""

    dial: int
    target: int
    ratio: float
    reason: str  # no-agents | full | throttled | paced | max-lines


def pace(*, idle_agents: int, in_flight: int, ratio: float, abandon_rate: float | None,
         max_abandon_rate: float, max_lines: int) -> PacingDecision:
    """The pacing decision for one campaign.

    ``idle_agents``: ready agents who could take the campaign's call right now; ``in_flight``: calls
    dialled or answered and not yet with an agent; ``abandon_rate``: recent abandoned / answered by a
    person (None until measured).
    """
    if ratio <= 0 or max_lines <= 0:
        raise ValueError("ratio and max_lines must be > 0")
    idle = max(0, idle_agents)
    flying = max(0, in_flight)
    if idle == 0:
        return PacingDecision(0, 0, 0.0, "no-agents")
    effective = ratio
    throttled = abandon_rate is not None and abandon_rate > max_abandon_rate
    if throttled:
        assert abandon_rate is not None
        effective = min(ratio, 1.0) * (max_abandon_rate / abandon_rate)
    target = math.floor(idle * effective + 1e-9)
    if throttled and target == 0 and flying == 0:
        target = 1
    reason = "throttled" if throttled else "paced"
    if target > max_lines:
        target, reason = max_lines, "max-lines"
    dial = max(0, target - flying)
    if dial == 0 and reason == "paced":
        reason = "full"
    return PacingDecision(dial, target, effective, reason)
