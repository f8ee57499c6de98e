"""Erlang A (Palm's M/M/n+M queue: Poisson arrivals, exponential handle times, exponential patience):
probability of waiting, abandonment, service level, average speed of answer, occupancy. Pure numpy; no
I/O, no clock. ``docs/staffing.md`` derives the formulas; the tests check them against a brute-force
birth-death solution, against Erlang C (patience without end) and against the ACD in virtual time.

Notation: arrival rate ``lam`` (calls/s), handle rate ``mu = 1/aht``, abandonment rate ``theta =
1/patience``, ``n`` agents; ``x = n mu / theta``, ``y = lam / theta``. With ``j`` callers ahead in the
queue an arrival moves up at rate ``n mu + j theta``; relative to the probability of ``n`` busy agents and
an empty queue, the probability of ``j`` waiting is ``w_j = prod_{i=1..j} y / (x + i)`` (Mandelbaum and
Zeltyn, "Service engineering in action: the Palm/Erlang-A queue", 2007). Everything below is a sum over
``j`` of ``w_j`` times what an arrival behind ``j`` waiting callers gets, with ``w_j`` kept in logs.
"""

from __future__ import annotations

import math

import numpy as np

from acd.erlang import QueueFigures, erlang_b

MAX_QUEUE_STATES = 2_000_000
"""The most queue lengths one evaluation sums over (memory ~ 50 bytes each): a finite but huge patience
with more calls than the agents can take makes the queue grow to ``(lam - n mu) / theta``; past this, treat
the patience as endless (Erlang C) or check the units."""


def _log_weights(x: float, y: float) -> np.ndarray:
    """log w_j for j = 0..J, with J past the peak far enough that the rest is below e^-40 of it."""
    peak = max(0.0, y - x)
    states = int(math.ceil(peak + 10.0 * math.sqrt(y + 1.0) + 30.0))
    if states > MAX_QUEUE_STATES:
        raise ValueError(f"the queue would grow to about {peak:.0f} callers before they abandon: treat the "
                         "patience as endless (Erlang C) or check the units (seconds)")
    i = np.arange(1, states, dtype=np.float64)
    return np.concatenate(([0.0], np.cumsum(np.log(y) - np.log(x + i))))


def erlang_a(rate: float, aht: float, patience: float, agents: int, target_seconds: float) -> QueueFigures:
    """Erlang A figures for ``rate`` calls/s, handle time ``aht`` s, mean patience ``patience`` s (exponential),
    ``agents`` agents and a service-level threshold of ``target_seconds``."""
    if rate < 0 or aht <= 0 or patience <= 0 or target_seconds < 0:
        raise ValueError("expected rate >= 0, aht > 0, patience > 0 and target_seconds >= 0")
    if rate == 0:
        return QueueFigures(agents, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    if agents <= 0:
        return QueueFigures(max(agents, 0), 1.0, 1.0, 0.0, math.nan, patience, math.nan)
    mu, theta, a = 1.0 / aht, 1.0 / patience, rate * aht
    x, y = agents * mu / theta, rate / theta
    blocking = erlang_b(a, agents)
    if blocking == 0.0:  # so few callers per agent that no one waits (B underflows)
        return QueueFigures(agents, 0.0, 0.0, 1.0, 0.0, 0.0, a / agents)
    logw = _log_weights(x, y)
    top = float(logw.max())  # >= 0 (w_0 = 1)
    # pi_{n+j} = w_j / (sum_{k<n} pi_k/pi_n + sum_j w_j); the first sum is 1/B - 1 (Erlang B).
    log_norm = top + math.log((1.0 / blocking - 1.0) * math.exp(-top) + float(np.exp(logw - top).sum()))
    p = np.exp(logw - log_norm)  # P(an arrival finds n busy agents and j waiting)
    j = np.arange(len(p), dtype=np.float64)
    served_j = x / (x + j + 1.0)  # behind j waiting callers, answered before hanging up
    p_wait = float(p.sum())
    p_abandon = float((p * (1.0 - served_j)).sum())
    p_served = 1.0 - p_abandon
    # Behind j, the time to an answer is a sum of exponentials of rates theta (x+1), ..., theta (x+j+1):
    # P(S_j > t) is the negative-binomial sum sum_{m<=j} C(x+m, m) e^{-(x+1) theta t} (1 - e^{-theta t})^m.
    t = float(target_seconds)
    q = -math.expm1(-theta * t)
    if q > 0:
        m = np.arange(1, len(p), dtype=np.float64)
        steps = np.cumsum(math.log(q) + np.log(x + m) - np.log(m))
        log_terms = -(agents * mu + theta) * t + np.concatenate(([0.0], steps))
        late_j = np.minimum(np.cumsum(np.exp(log_terms)), 1.0)
    else:
        late_j = np.ones(len(p))
    service_level = p_served - float((p * served_j * late_j).sum())
    # Behind j, the expected time spent behind each i <= j callers is 1 / (theta (x + j + 1)); from behind i
    # the caller is answered with probability x / (x + i + 1).
    stay = 1.0 / (theta * (x + j + 1.0))
    mean_wait = float((p * (j + 1.0) * stay).sum())
    answered_wait = float((p * stay * x * np.cumsum(1.0 / (x + j + 1.0))).sum())
    asa = answered_wait / p_served if p_served > 0 else math.nan
    return QueueFigures(agents, min(p_wait, 1.0), min(p_abandon, 1.0), min(max(service_level, 0.0), 1.0), asa,
                        mean_wait, min(a * p_served / agents, 1.0))
