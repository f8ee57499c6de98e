"""Erlang C queueing formulas (M/M/N): probability of waiting, service level, average speed of answer,
agents needed; scalar, and vectorised over agent counts (``erlang_c_many``, ``erlang_c_table``). Pure
numpy; no I/O. Used for staffing figures (``acd.staffing``) and to check the ACD against theory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """Steady-state figures of a queue for one staffing level, each over all arrivals (Erlang C or A).

    ``p_wait``: an arrival finds every agent busy; ``p_abandon``: the caller hangs up before an answer (0
    in Erlang C); ``service_level``: answered within the threshold (abandons count against it: the KPI's
    ``counted`` definition); ``asa``: mean wait of the answered callers, seconds; ``mean_wait``: mean time
    in queue of every caller, the abandoning ones until they hang up; ``occupancy``: the agents' busy
    fraction (carried load / agents). An overloaded Erlang C queue (traffic >= agents) has ``p_wait`` 1,
    ``service_level`` 0, waits ``inf`` and occupancy 1."""

    agents: int
    p_wait: float
    p_abandon: float
    service_level: float
    asa: float
    mean_wait: float
    occupancy: float


def erlang_c(traffic: float, agents: int) -> float:
    """Probability that a caller waits, for ``traffic`` Erlangs offered to ``agents`` servers.

    Uses the Erlang B recursion B(k) = a B(k-1) / (k + a B(k-1)), which stays stable for thousands of
    agents, then C = N B / (N - a (1 - B)). Returns 1.0 when traffic >= agents (the queue grows forever).
    """
    if agents <= 0 or traffic >= agents:
        return 1.0
    if traffic <= 0:
        return 0.0
    b = erlang_b(traffic, agents)
    return float(agents * b / (agents - traffic * (1.0 - b)))


def erlang_b(traffic: float, agents: int) -> float:
    """Erlang B blocking probability by the recursion B(k) = a B(k-1) / (k + a B(k-1)) (stable)."""
    b = 1.0
    for k in range(1, agents + 1):
        b = traffic * b / (k + traffic * b)
    return b


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


def erlang_c_many(traffic: float, agents: np.ndarray) -> np.ndarray:
    """``erlang_c(traffic, n)`` for every ``n`` of the integer array ``agents`` at once (one Erlang B
    recursion up to the largest); 1.0 where ``n <= traffic``."""
    counts = np.asarray(agents, dtype=np.int64)
    top = int(counts.max(initial=0))
    blocking = np.ones(top + 1)
    b = 1.0
    for k in range(1, top + 1):
        b = traffic * b / (k + traffic * b)
        blocking[k] = b
    n = counts.astype(np.float64)
    b_n = blocking[np.clip(counts, 0, top)]
    stable = (counts > 0) & (n > traffic)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(stable, n * b_n / (n - traffic * (1.0 - b_n)), 1.0)
    return c if traffic > 0 else np.where(counts > 0, 0.0, 1.0)


def erlang_c_figures(rate: float, aht: float, agents: int, target_seconds: float) -> QueueFigures:
    """Erlang C figures for ``rate`` calls/s, handle time ``aht`` s and ``agents`` agents."""
    traffic = rate * aht
    if agents <= 0 or traffic >= agents:
        return QueueFigures(max(agents, 0), 1.0, 0.0, 0.0, math.inf, math.inf, 1.0)
    c = float(erlang_c_many(traffic, np.array([agents]))[0])
    wait = c * aht / (agents - traffic)
    sl = 1.0 - c * math.exp(-(agents - traffic) * target_seconds / aht)
    return QueueFigures(agents, c, 0.0, sl, wait, wait, traffic / agents)


class ErlangCTable(NamedTuple):
    """Erlang C figures for a range of agent counts, one array each (index i: ``agents[i]``)."""

    agents: np.ndarray
    p_wait: np.ndarray
    service_level: np.ndarray
    asa: np.ndarray
    occupancy: np.ndarray


def erlang_c_table(rate: float, aht: float, agents: np.ndarray, target_seconds: float) -> ErlangCTable:
    """Erlang C for every count of ``agents`` at once (``rate`` calls/s, ``aht`` s): probability of waiting,
    service level within ``target_seconds``, ASA (inf when overloaded) and occupancy (capped at 1)."""
    counts = np.asarray(agents, dtype=np.int64)
    traffic, n = rate * aht, counts.astype(np.float64)
    c = erlang_c_many(traffic, counts)
    stable = n > traffic
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        spare = np.where(stable, n - traffic, 1.0)
        sl = np.where(stable, 1.0 - c * np.exp(-spare * target_seconds / aht), 0.0)
        asa = np.where(stable, c * aht / spare, np.inf)
        occupancy = np.where(n > 0, np.minimum(traffic / np.maximum(n, 1.0), 1.0), 1.0)
    return ErlangCTable(counts, c, sl, asa, occupancy)
