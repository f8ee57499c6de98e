"""Erlang C queueing formulas (M/M/N): probability of waiting, service level, average speed of answer,
agents needed. Pure numpy; no I/O. Used for staffing figures and to check the ACD against theory.
"""

from __future__ import annotations

import numpy as np


def erlang_c(traffic: float, agents: int) -> float:
    """Probability that a caller waits, for ``traffic`` Erlangs offered to ``agents`` servers.

    Uses the Erlang B recursion B(k) = a B(k-1) / (k + a B(k-1)), which stays stable for thousands of
    agents, then C = N B / (N - a (1 - B)). Returns 1.0 when traffic >= agents (the queue grows forever).
    """
    if agents <= 0 or traffic >= agents:
        return 1.0
    if traffic <= 0:
        return 0.0
    b = np.float64(1.0)
    for k in range(1, agents + 1):
        b = traffic * b / (k + traffic * b)
    return float(agents * b / (agents - traffic * (1.0 - b)))


def service_level(rate: float, aht: float, agents: int, target_seconds: float) -> float:
    """Fraction of callers answered within ``target_seconds`` (``rate`` calls/s, ``aht`` seconds handle time)."""
    traffic = rate * aht
    if traffic >= agents:
        return 0.0
    c = erlang_c(traffic, agents)
    return float(1.0 - c * np.exp(-(agents - traffic) * target_seconds / aht))


def average_speed_of_answer(rate: float, aht: float, agents: int) -> float:
    """Mean wait over all callers (those answered at once count 0); inf if overloaded."""
    traffic = rate * aht
    if traffic >= agents:
        return float("inf")
    return erlang_c(traffic, agents) * aht / (agents - traffic)


def agents_for_service_level(rate: float, aht: float, percent: float, target_seconds: float,
                             max_agents: int = 100_000) -> int:
    """Fewest agents reaching ``percent`` answered within ``target_seconds``."""
    agents = max(1, int(np.floor(rate * aht)) + 1)
    while agents <= max_agents:
        if service_level(rate, aht, agents, target_seconds) * 100.0 >= percent:
            return agents
        agents += 1
    raise ValueError("no staffing up to max_agents reaches the target")
