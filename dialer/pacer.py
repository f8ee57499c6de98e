"""Pure pacing: how many calls a campaign should place now. No I/O, no clock, no engine state.

Two pacers:

``pace`` (modes ``progressive`` and ``ratio``) dials at most ``ratio`` lines per idle eligible agent
(progressive: 1.0), counting calls already in flight against that budget. When the measured abandon
rate is over the cap, the ratio is cut to ``min(ratio, 1) * cap / rate``; a throttled campaign keeps one
line going when nothing is in flight and an agent is idle, so that it keeps measuring, as long as its
policy window can afford it. When the window cannot (``window_spent``: it would end at or over its cap
even if nothing more were abandoned), the campaign steps down to preview (``preview-fallback``): nothing
is dialled, each idle agent is given a lead to accept instead. Why preview rather than that one throttled
line: a line no agent is held for can still be abandoned (its agent taken by another call, or slow to
answer), and with the window spent every further abandon is one over the law; a previewed lead is dialled
only when its agent accepts it, and that agent is held for the call, so it cannot be abandoned for want
of an agent. Previews still measure (their answers are live answers), and every person they connect brings
the window's rate down, so it recovers sooner than under a throttled line. While the window has budget
left, a high recent rate only throttles: the window absorbs the one line, and stepping down on a few early
abandons (1 in 20 is 5%) would stall a campaign for nothing. (People AMD takes for machines are dropped in
every mode while the dialplan runs AMD on every call: the step down cannot help with those.)

``pace_predictive`` (mode ``predictive``) forecasts, from what the campaign has measured, how many of
the people its calls reach will find no agent free, and launches the largest number of calls whose
predicted abandon probability keeps the policy window's projected rate under its cap:

* agents: ``F = ready + sum(Bernoulli(p_i)) - reserve``, where ``p_i`` is the probability that the
  agent busy for ``a_i`` seconds (talk, or wrap-up) is free within the horizon ``h``, from the empirical
  talk and wrap-up times (``P(T + W <= a + h | T > a)``); ``reserve``: agents inbound takes first;
* people: ``D = sum(Bernoulli(q_j)) + Binomial(k, q0)``: each call in flight becomes a person needing
  an agent with ``q_j`` (ringing at age ``r``: ``P(answer | no answer by r) x P(human | answer)``; AMD
  running: ``P(human | answer)``; a person waiting: 1), each new call with ``q0 = P(answer) P(human)``
  (``P(answer)`` at its upper confidence bound over the results measured: a few lucky results do not
  launch a flood);
* the ``k`` new calls' abandon probability is ``(E[(D_k - F)+] - E[(D_0 - F)+]) / (k q0)`` (they come
  after the calls in flight): increasing in ``k``, so the largest ``k`` under the target is a bisection;
* the target is what the window can still afford: with ``live`` answers and ``abandoned`` so far, a
  fraction ``elapsed`` of the window gone and the cap ``c``, the rest of the window may abandon at
  ``(t c (live + rest) - abandoned) / rest`` (``t``: the share of the cap aimed at, ``rest`` the live
  answers expected in the rest of the window, at most ``live`` again, or ``10 / c`` while fewer: the campaign
  may stop well before its window ends, so early abandons are paid back soon; and the window's expected
  abandons ``cap_z`` Poisson deviations under its cap's count: few answers, few abandons), at most ``c``, less the
  abandons AMD makes by taking a person for a machine, and cut further when the recently measured rate
  runs over it (feedback);
* when that budget is nearly gone the pacer falls back to progressive (one line per agent ready now,
  no extra lines), and with nobody ready and nobody expected free it dials nothing; until ``warmup``
  answers are measured it paces progressively too (the priors may be far off);
* when the window is spent (``window_spent``: it would end at or over the cap even with no further abandon)
  it steps down to preview (``preview-fallback``): no line is dialled ahead or progressively, each ready
  agent (beyond the reserve) is given a lead to accept instead. A budget that is merely used up (the window
  at its aim, or AMD's dropped people using it) falls back to progressive, whose lines each have an agent
  ready now. The pacer keeps no state: each decision reads the window afresh, so
  when the budget recovers (previews add live answers without abandons; a rolling window drops old ones)
  progressive, then predictive pacing resume by themselves;
* the horizon ``h`` is a low quantile of the measured dial-to-person times (``DialMeasures.connect``)
  plus the safe-harbour seconds: people who answer early meet fewer freed agents; the people earlier still
  (that quantile's share of them) are weighed at their own horizons (``person_horizons``), so that an agent
  whose wrap-up ends just before ``h`` is not counted on for a person who answers in a few seconds.

Every decision carries its explanation (``PacingDecision.explain``), loggable like the ACD router's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


#: The reason of a decision that steps down to preview: nothing is dialled, ready agents get previews.
PREVIEW_FALLBACK = "preview-fallback"
#: The reason of a predictive decision that paces progressively (the budget nearly gone; the warm-up).
PROGRESSIVE_REASONS = frozenset({"progressive-fallback", "warm-up"})


@dataclass(frozen=True, slots=True)
class PacingDecision:
    """``dial``: calls to place now; ``target``: lines the campaign should have up; ``reason`` says why;
    ``explain``: the inputs and the predictions behind it (empty for the progressive pacer);
    ``previews``: ready agents to give a lead as a preview instead (``preview-fallback``); ``step``: the
    mode this decision paces in (the campaign's mode, or the one it stepped down to; "" unknown)."""

    dial: int
    target: int
    ratio: float
    reason: str  # no-agents | full | throttled | paced | max-lines | predicted | progressive-fallback | ...
    explain: dict[str, Any] = field(default_factory=dict, compare=False)
    previews: int = 0
    step: str = ""


def step_of(mode: str, reason: str) -> str:
    """The mode a decision of a campaign in ``mode`` paces in: ``preview`` after a step down to preview,
    ``progressive`` after a predictive campaign's fall back, else the campaign's own mode."""
    if reason == PREVIEW_FALLBACK:
        return "preview"
    if mode == "predictive" and reason in PROGRESSIVE_REASONS:
        return "progressive"
    return mode


def window_spent(w: WindowFigures) -> bool:
    """The policy window would end at or over its cap even if nothing more were abandoned (its abandons
    over its live answers so far and those the rest of it should bring at the pace so far): one more abandon
    is one over the law."""
    projected = window_projection(w)
    return projected is not None and w.abandoned > 0 and projected >= w.cap - 1e-12


def pace(*, idle_agents: int, in_flight: int, ratio: float, abandon_rate: float | None,
         max_abandon_rate: float, max_lines: int, window: WindowFigures | None = None) -> PacingDecision:
    """The pacing decision for one campaign.

    ``idle_agents``: ready agents who could take the campaign's call right now; ``in_flight``: calls
    dialled or answered and not yet with an agent; ``abandon_rate``: recent abandoned / answered by a
    person (None until measured); ``window``: the policy window's figures (None: not known). Steps down
    to preview (``preview-fallback``, ``previews`` = the idle agents) when the window is spent (see the
    module's docstring).
    """
    if ratio <= 0 or max_lines <= 0:
        raise ValueError("ratio and max_lines must be > 0")
    idle = max(0, idle_agents)
    flying = max(0, in_flight)
    if window is not None and window_spent(window):
        return PacingDecision(0, flying, 0.0, PREVIEW_FALLBACK, previews=idle)
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


# ---------------------------------------------------------------------------------------------------
# predictive pacing: inputs


@dataclass(frozen=True, slots=True)
class WindowFigures:
    """The abandonment so far in the policy's window: ``live`` answers by a person, ``abandoned`` of them,
    the ``cap`` (a fraction: 0.03), and how much of the window has gone (0 at its start, 1 at its end;
    a rolling window that is full stays at 1)."""

    live: int
    abandoned: int
    cap: float
    elapsed_fraction: float


@dataclass(frozen=True, slots=True)
class AgentOutlook:
    """The campaign queue's agents as outbound may count them now: ``ready`` (free now), the ages of the
    calls (``talk_ages``, an agent whose phone rings for a call counts as a call of age 0) and wrap-ups
    (``wrap_ages``) of the agents busy now, and ``reserve``: agents the inbound side takes first (inbound
    callers waiting for these agents in other queues, and blending's threshold while inbound is at risk)."""

    ready: int
    talk_ages: tuple[float, ...] = ()
    wrap_ages: tuple[float, ...] = ()
    reserve: int = 0
    blended: int = 0  # agents that also take inbound calls (for the explanation)
    queue_waiting: int = 0  # callers waiting in the campaign queue itself (the campaign's own people among them)

    @classmethod
    def idle_only(cls, ready: int) -> AgentOutlook:
        """What a bare count of idle agents says (no busy agent known)."""
        return cls(ready=max(0, ready))


@dataclass(frozen=True, slots=True)
class CallsInFlight:
    """The campaign's calls that need a line and no agent yet: ``ringing_ages`` (dialled, no answer yet:
    seconds since dialled), ``detecting`` (answered, AMD running), ``waiting`` (a person waiting for an
    agent). Calls an agent's phone already rings for count only as lines (``offered``, for ``max_lines``):
    their agent is not free either."""

    ringing_ages: tuple[float, ...] = ()
    detecting: int = 0
    waiting: int = 0
    offered: int = 0  # people an agent's phone rings for: they use a line (``max_lines``), not a free agent

    @property
    def count(self) -> int:
        return len(self.ringing_ages) + self.detecting + self.waiting


@dataclass(frozen=True, slots=True)
class DialMeasures:
    """What the campaign has measured (priors mixed in until there are enough samples).

    ``answer_prob``: P(a dial is answered); ``human_share``: P(AMD says person | answered); ``answer_times``:
    seconds from dial to answer of answered calls; ``fail_times``: seconds from dial to the end of calls
    nobody answered; ``talk`` and ``wrap``: talk and wrap-up durations of the queue's calls; ``connect``:
    seconds from dial to a person waiting (answer + AMD); ``recent_rate``: abandoned / persons over the
    campaign's recent answers (None before any), ``recent_n`` how many."""

    answer_prob: float
    human_share: float
    answer_times: FloatArray
    fail_times: FloatArray
    talk: FloatArray
    wrap: FloatArray
    connect: float
    recent_rate: float | None = None
    recent_n: int = 0
    results: int = 0  # dials with a result measured so far (the priors' weight fades with them)
    answers: int = 0  # of them answered
    # the dial-to-person times ``connect`` is a quantile of (empty: only ``connect`` is known), and that quantile
    connect_times: FloatArray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    connect_quantile: float = 0.25


@dataclass(frozen=True, slots=True)
class PredictiveParams:
    """The knobs (``dialer.settings.PredictiveSettings``): aim at ``target_share`` of the cap, fall back to
    progressive when the budget is under ``fallback_share`` of the cap, ``safe_harbour`` seconds a person
    waits for an agent, the ``amd_accuracy`` (a person AMD takes for a machine is dropped: an abandon
    under policies that count it, when ``count_amd_misses``), at most ``max_lines`` lines."""

    max_lines: int
    safe_harbour: float = 2.0
    target_share: float = 0.8
    fallback_share: float = 0.2
    amd_accuracy: float = 1.0
    count_amd_misses: bool = True
    feedback_min: int = 20  # recent answers before the measured rate corrects the budget
    warmup: int = 30  # answers to measure (progressive) before the model dials ahead
    confidence_z: float = 1.64  # plan for the answer probability this many standard errors over the measured
    cap_z: float = 2.0  # keep the window's abandons this many standard deviations (Poisson) under the cap


# ---------------------------------------------------------------------------------------------------
# the model


def free_probabilities(ages: Sequence[float], durations: FloatArray, then: FloatArray | None,
                       horizon: float) -> FloatArray:
    """For each activity of age ``a`` (a call, or a wrap-up), P(it and the activity after it (``then``: its
    durations; None: nothing after) are over within ``horizon`` | it has lasted ``a``), from the empirical
    ``durations``. An activity older than every sample is taken as memoryless with the samples' mean."""
    d = np.sort(np.asarray(durations, dtype=np.float64))
    nxt = None if then is None or len(then) == 0 else np.sort(np.asarray(then, dtype=np.float64))
    out = np.empty(len(ages), dtype=np.float64)
    mean = float(d.mean()) if len(d) else 60.0
    for i, a in enumerate(ages):
        alive = d[np.searchsorted(d, a, side="right"):]
        if len(alive) == 0:  # older than every sample: the rest is exponential with the samples' mean
            after = np.zeros(1) if nxt is None else nxt
            slack = horizon - after[after < horizon]
            out[i] = float((1.0 - np.exp(-slack / max(mean, 1e-9))).sum()) / len(after)
            continue
        remaining = alive - a
        if nxt is None:
            out[i] = float(np.count_nonzero(remaining <= horizon)) / len(remaining)
        else:
            counts = np.searchsorted(nxt, horizon - remaining, side="right")
            out[i] = float(counts.sum()) / (len(remaining) * len(nxt))
    return out


EARLY_POINTS = 4  # quantiles of the dial-to-person times under the planned one that the agents' outlook weighs


def person_horizons(m: DialMeasures, safe_harbour: float) -> list[tuple[float, float]]:
    """(horizon, weight) pairs over which a busy agent's chance to be free for a new call's person is averaged:
    a person comes ``T`` seconds after the dial and needs an agent by ``T + safe_harbour``. The pacer plans for
    the ``connect_quantile`` of ``T`` (``connect``); the people who come earlier than that (that share of
    them) are weighed at ``EARLY_POINTS`` quantiles under it, so an agent freed just before the planned horizon
    is not counted on for them. Without the measured times: the planned horizon alone."""
    planned = max(0.0, m.connect) + safe_harbour
    q = min(max(m.connect_quantile, 0.0), 1.0)
    if len(m.connect_times) == 0 or q <= 0.0:
        return [(planned, 1.0)]
    levels = q * (np.arange(EARLY_POINTS) + 0.5) / EARLY_POINTS
    early = np.minimum(np.quantile(m.connect_times, levels), max(0.0, m.connect)) + safe_harbour
    return [(float(h), q / EARLY_POINTS) for h in early] + [(planned, 1.0 - q)]


def answer_given_ringing(ages: Sequence[float], m: DialMeasures) -> FloatArray:
    """P(a call still ringing at age r is answered), by Bayes on the answer and failure times."""
    r = np.asarray(ages, dtype=np.float64)
    if len(r) == 0:
        return r
    ans = np.sort(m.answer_times)
    fail = np.sort(m.fail_times)
    s_ans = 1.0 - np.searchsorted(ans, r, side="right") / max(len(ans), 1) if len(ans) else np.ones_like(r)
    s_fail = 1.0 - np.searchsorted(fail, r, side="right") / max(len(fail), 1) if len(fail) else np.ones_like(r)
    num = m.answer_prob * s_ans
    den = num + (1.0 - m.answer_prob) * s_fail
    return np.where(den > 1e-12, num / np.maximum(den, 1e-12), 0.0)


def poisson_binomial(probs: FloatArray) -> FloatArray:
    """The pmf of a sum of independent Bernoullis (index = count)."""
    pmf = np.ones(1, dtype=np.float64)
    for p in probs:
        p = float(min(max(p, 0.0), 1.0))
        if p == 0.0:
            continue
        nxt = np.zeros(len(pmf) + 1, dtype=np.float64)
        nxt[:-1] += pmf * (1.0 - p)
        nxt[1:] += pmf * p
        pmf = nxt
    return pmf


def binomial(k: int, p: float) -> tuple[int, FloatArray]:
    """(offset, pmf) of Binomial(k, p) over the counts that carry its mass (mean +- 9 sd)."""
    if k <= 0 or p <= 0.0:
        return 0, np.ones(1, dtype=np.float64)
    if p >= 1.0:
        return k, np.ones(1, dtype=np.float64)
    mean, sd = k * p, math.sqrt(k * p * (1.0 - p))
    lo, hi = max(0, int(mean - 9 * sd - 2)), min(k, int(mean + 9 * sd + 2))
    i = np.arange(lo, hi + 1, dtype=np.float64)
    log_c = np.array([math.lgamma(k + 1) - math.lgamma(x + 1) - math.lgamma(k - x + 1) for x in i])
    log_pmf = log_c + i * math.log(p) + (k - i) * math.log1p(-p)
    pmf = np.exp(log_pmf - log_pmf.max())
    return lo, pmf / pmf.sum()


@dataclass(frozen=True, slots=True)
class Forecast:
    """The model's view of one launch count ``k``."""

    k: int
    abandon_prob: float  # of a person the k new calls reach
    overflow_prob: float  # P(more people than free agents), all calls counted
    expected_people: float
    expected_abandons: float  # E[(D - F)+]


class Model:
    """People and agents for one decision; ``forecast(k)`` for any launch count."""

    def __init__(self, agent_pmf: FloatArray, flight_pmf: FloatArray, q0: float) -> None:
        self.agent_pmf = agent_pmf  # free agents (after the reserve), index = count
        self.flight_pmf = flight_pmf  # people from the calls in flight
        self.q0 = q0
        self._base = self._excess(0)  # (E[(D_0 - F)+], P(D_0 > F), E[D_0])

    def _excess(self, k: int) -> tuple[float, float, float]:
        """(E[(D_k - F)+], P(D_k > F), E[D_k])."""
        off, new = binomial(k, self.q0)
        demand = np.convolve(self.flight_pmf, new)  # index + off = people
        # Z = D - F: pmf over z = (i + off) - j
        z = np.convolve(demand, self.agent_pmf[::-1])  # index t <-> z = t + off - (len(agent_pmf) - 1)
        zs = np.arange(len(z)) + off - (len(self.agent_pmf) - 1)
        pos = zs > 0
        e_excess = float((z[pos] * zs[pos]).sum())
        p_over = float(z[pos].sum())
        e_demand = float((demand * (np.arange(len(demand)) + off)).sum())
        return e_excess, p_over, e_demand

    def forecast(self, k: int) -> Forecast:
        e, p_over, e_d = self._excess(k)
        if k <= 0 or self.q0 <= 0:
            rate = 0.0
        else:
            people = e_d - self._base[2]  # = k q0 but for the binomial's truncated tails
            rate = max(0.0, e - self._base[0]) / people if people > 1e-12 else 0.0
        return Forecast(k, min(1.0, rate), p_over, e_d, e)


PAYBACK_ABANDONS = 10.0  # the window budget pays early abandons back within max(live, this / cap) answers


def abandons_under(cap_count: float, z: float) -> float:
    """The mean number of abandons ``m`` whose Poisson count stays under ``cap_count`` with ``z`` standard
    deviations to spare (``m + z sqrt(m) = cap_count``)."""
    if cap_count <= 0:
        return 0.0
    root = (-z + math.sqrt(z * z + 4.0 * cap_count)) / 2.0
    return max(0.0, root) ** 2


def window_budget(w: WindowFigures, params: PredictiveParams) -> tuple[float, str]:
    """The abandon rate the rest of the window may run at (before AMD's share and the feedback), and why.

    Abandons are a count: a window with few live answers (a small team, a low answer rate) goes over the cap
    with one unlucky abandon, so the window's expected abandons are kept ``cap_z`` Poisson standard deviations
    under the cap's count (``abandons_under``) as well as under the aim; with thousands of answers the aim rules."""
    aim = params.target_share * w.cap
    e = min(max(w.elapsed_fraction, 0.0), 1.0)
    if e < 1e-6 or w.live <= 0:
        total = PAYBACK_ABANDONS / max(w.cap, 1e-6)  # nothing measured: as many answers as measure the cap
        return min(aim, abandons_under(w.cap * total, params.cap_z) / total), "window-young"
    # the live answers still to come, at the pace so far, but never more than as many again as so far (or than
    # it takes to measure the cap at all, ``PAYBACK_ABANDONS`` abandons' worth): the campaign may stop (end of
    # the shift, leads used up) long before its window ends, so abandons already made are paid back soon, not
    # spread over days that may not come
    rest = min(w.live * (1.0 - e) / e, max(float(w.live), PAYBACK_ABANDONS / max(w.cap, 1e-6)))
    rest = max(rest, 0.05 * w.live, 1.0)  # a full (rolling) window still takes new answers
    total = w.live + rest
    target = min(aim * total, abandons_under(w.cap * total, params.cap_z))
    budget = (target - w.abandoned) / rest
    return min(max(budget, 0.0), w.cap), "window-budget"


def window_projection(w: WindowFigures) -> float | None:
    """The window's rate at its end if nothing more were abandoned (None: nothing measured yet)."""
    e = min(max(w.elapsed_fraction, 0.0), 1.0)
    if e < 1e-6 or w.live <= 0:
        return None
    rest = max(w.live * (1.0 - e) / e, 0.05 * w.live, 1.0)
    return w.abandoned / (w.live + rest)


def pace_predictive(*, agents: AgentOutlook, flight: CallsInFlight, measures: DialMeasures,
                    window: WindowFigures, params: PredictiveParams) -> PacingDecision:
    """The predictive decision for one campaign (see the module's docstring)."""
    if params.max_lines <= 0:
        raise ValueError("max_lines must be > 0")
    m = measures
    horizon = max(0.0, m.connect) + params.safe_harbour
    busy_p = np.zeros(len(agents.talk_ages) + len(agents.wrap_ages), dtype=np.float64)
    for h, weight in person_horizons(m, params.safe_harbour):
        busy_p += weight * np.concatenate([free_probabilities(agents.talk_ages, m.talk, m.wrap, h),
                                           free_probabilities(agents.wrap_ages, m.wrap, None, h)])
    expected_free = float(busy_p.sum())
    # free agents at the horizon, less those inbound takes first
    raw = poisson_binomial(busy_p)
    total = np.zeros(agents.ready + len(raw), dtype=np.float64)
    total[agents.ready:] = raw
    # inbound callers waiting in the campaign queue itself (those not the campaign's own) come first too
    reserve = max(0, agents.reserve) + max(0, agents.queue_waiting - flight.waiting)
    agent_pmf = np.concatenate([[total[:reserve + 1].sum()], total[reserve + 1:]]) if reserve else total
    q_ring = answer_given_ringing(flight.ringing_ages, m) * m.human_share
    q_flight = np.concatenate([q_ring, np.full(flight.detecting, m.human_share), np.ones(flight.waiting)])
    # plan for more answers than measured while few are: the measured rate's upper confidence bound
    n = max(m.results, 1)
    answer_prob = min(1.0, m.answer_prob + params.confidence_z * math.sqrt(m.answer_prob * (1 - m.answer_prob) / n
                                                                            + 1.0 / (4.0 * n * n)))
    q0 = answer_prob * m.human_share
    acc = min(max(params.amd_accuracy, 0.5), 1.0)
    # the true share of persons among answers, from AMD's verdicts and its accuracy
    person = 1.0 if acc >= 1.0 else min(1.0, max(0.0, (m.human_share - (1.0 - acc)) / (2.0 * acc - 1.0)))
    amd_rate = (1.0 - acc) if params.count_amd_misses else 0.0  # persons AMD drops as machines
    budget, basis = window_budget(window, params)
    projected = window_projection(window)
    feedback = 1.0
    if m.recent_rate is not None and m.recent_n >= params.feedback_min and m.recent_rate > budget > 0:
        feedback = max(0.25, budget / m.recent_rate)
    allowed = budget * feedback - amd_rate * person
    room = max(0, params.max_lines - flight.count - flight.offered)
    explain: dict[str, Any] = {
        "mode": "predictive", "ready": agents.ready, "busy": len(busy_p), "expected_free": round(expected_free, 3),
        "reserve": reserve, "blended": agents.blended, "horizon": round(horizon, 2),
        "in_flight": flight.count, "ringing": len(flight.ringing_ages), "detecting": flight.detecting,
        "waiting": flight.waiting, "expected_people_in_flight": round(float(q_flight.sum()), 3),
        "answer_prob": round(m.answer_prob, 4), "answer_prob_planned": round(answer_prob, 4),
        "human_share": round(m.human_share, 4), "q0": round(q0, 4),
        "amd_accuracy": acc, "window": {"live": window.live, "abandoned": window.abandoned, "cap": window.cap,
                                        "elapsed": round(window.elapsed_fraction, 4)},
        "budget": round(budget, 5), "budget_basis": basis, "feedback": round(feedback, 3),
        "recent_rate": m.recent_rate, "results": m.results, "answers": m.answers, "allowed": round(allowed, 5),
        "room": room, "projected_rate": None if projected is None else round(projected, 5),
        "amd_share": round(amd_rate * person, 5),
    }

    def decided(dial: int, reason: str, fc: Forecast | None) -> PacingDecision:
        if fc is not None:
            explain.update(predicted_abandon=round(fc.abandon_prob, 5), p_overflow=round(fc.overflow_prob, 5),
                           expected_people=round(fc.expected_people, 3))
        explain.update(dial=dial, reason=reason)
        lines = flight.count + dial
        ratio = lines / max(agents.ready + expected_free, 1e-9) if lines else 0.0
        return PacingDecision(dial, lines, round(ratio, 3), reason, explain)

    free_now = max(0, agents.ready - reserve)
    if window_spent(window):
        # the window would end over its cap even with no further abandon: no line the agents are not held
        # for; ready agents get previews instead (a budget merely used up falls back to progressive below)
        explain["previews"] = free_now
        explain.update(dial=0, reason=PREVIEW_FALLBACK)
        return PacingDecision(0, flight.count, 0.0, PREVIEW_FALLBACK, explain, previews=free_now)
    if free_now == 0 and expected_free - reserve <= 1e-9:
        return decided(0, "no-agents", None)
    if room == 0:
        return decided(0, "max-lines", None)
    warm = m.answers >= params.warmup
    if allowed < params.fallback_share * window.cap or q0 <= 0 or not warm:
        # the window's budget is nearly gone (or too little measured yet): one line per agent ready now
        dial = max(0, min(room, free_now - flight.count))
        return decided(dial, "progressive-fallback" if warm else "warm-up", None)
    model = Model(agent_pmf, poisson_binomial(q_flight), q0)
    lo, hi = 0, room
    # beyond people = three times every agent we could have, the answer is surely no
    hi = min(hi, int(math.ceil((3 * (agents.ready + len(busy_p)) + 3) / q0)))
    best = model.forecast(0)
    first = model.forecast(1) if hi >= 1 else best
    if hi < 1 or first.abandon_prob > allowed:
        return decided(0, "full" if flight.count else "risky", first)
    lo, best = 1, first
    while lo < hi:
        mid = (lo + hi + 1) // 2
        fc = model.forecast(mid)
        if fc.abandon_prob <= allowed:
            lo, best = mid, fc
        else:
            hi = mid - 1
    reason = "max-lines" if lo == room else "predicted"
    return decided(lo, reason, best)
