"""The predictive pacer with fixed inputs: the model (free agents, people from calls in flight), the window's
budget, the fallback to progressive, blending's reserve, and properties over random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.measures import CampaignMeasures, Priors
from dialer.pacer import (
    AgentOutlook,
    CallsInFlight,
    DialMeasures,
    Model,
    PredictiveParams,
    WindowFigures,
    abandons_under,
    answer_given_ringing,
    binomial,
    free_probabilities,
    pace_predictive,
    poisson_binomial,
    window_budget,
)

YOUNG = WindowFigures(live=0, abandoned=0, cap=0.03, elapsed_fraction=0.0)


def measures(answer: float = 0.2, human: float = 1.0, talk: float = 120.0, wrap: float = 10.0,
             recent: float | None = None, recent_n: int = 0, results: int = 1000) -> DialMeasures:
    """Fixed measures: every call talks ``talk`` s then wraps ``wrap`` s; answers after 5 s, failures at 30 s."""
    return DialMeasures(answer_prob=answer, human_share=human, answer_times=np.full(50, 5.0),
                        fail_times=np.full(50, 30.0), talk=np.full(50, talk), wrap=np.full(50, wrap), connect=8.0,
                        recent_rate=recent, recent_n=recent_n, results=results,
                        answers=int(results * answer))


def decide(ready: int = 10, talk: tuple[float, ...] = (), wrap: tuple[float, ...] = (), reserve: int = 0,
           flight: CallsInFlight | None = None, m: DialMeasures | None = None, window: WindowFigures = YOUNG,
           max_lines: int = 1000, **params: object) -> tuple[int, str, dict[str, object]]:
    d = pace_predictive(agents=AgentOutlook(ready, talk, wrap, reserve), flight=flight or CallsInFlight(),
                        measures=m or measures(), window=window,
                        params=PredictiveParams(max_lines=max_lines, **params))  # type: ignore[arg-type]
    return d.dial, d.reason, d.explain


# ------------------------------------------------------------------ the model's parts

def test_free_probability_is_conditional_on_the_calls_age() -> None:
    """Calls last 100 s and wrap-ups 10 s: within 20 s, a call of 95 s (5 s talk + 10 s wrap left) is surely
    free, one of 50 s surely not; a wrap-up of 5 s ends within 20 s. A call older than every sample is taken
    as memoryless (0 < p < 1)."""
    talk, wrap = np.full(20, 100.0), np.full(20, 10.0)
    p = free_probabilities([95.0, 50.0, 85.0], talk, wrap, 20.0)
    assert list(p) == [1.0, 0.0, 0.0]  # 85 s: 15 s talk + 10 s wrap = 25 s > 20 s
    assert list(free_probabilities([5.0], wrap, None, 20.0)) == [1.0]
    (old,) = free_probabilities([500.0], talk, wrap, 20.0)
    assert 0.0 < old < 1.0


def test_a_call_ringing_long_is_less_likely_to_be_answered() -> None:
    """Answers come after 5 s and failures at 30 s: at 1 s a call is answered with the prior 20%; after
    10 s of ringing it will not be (every answer would have come by then)."""
    m = measures(answer=0.2)
    early, late = answer_given_ringing([1.0, 10.0], m)
    assert early == pytest.approx(0.2)
    assert late == 0.0


def test_binomial_and_poisson_binomial_are_distributions() -> None:
    off, pmf = binomial(1000, 0.1)
    assert pmf.sum() == pytest.approx(1.0)
    assert ((np.arange(len(pmf)) + off) * pmf).sum() == pytest.approx(100.0, rel=1e-6)
    pb = poisson_binomial(np.array([0.5, 0.5, 1.0]))
    assert list(pb) == pytest.approx([0.0, 0.25, 0.5, 0.25])


def test_abandon_probability_from_the_model() -> None:
    """One free agent, nothing in flight, people answer with 50%: one call never abandons; with two, the second
    person abandons when both answer: E[abandons] = 0.25 over 1 expected person."""
    model = Model(np.array([0.0, 1.0]), np.ones(1), 0.5)
    assert model.forecast(1).abandon_prob == 0.0
    assert model.forecast(2).abandon_prob == pytest.approx(0.25)
    assert model.forecast(2).overflow_prob == pytest.approx(0.25)


# ------------------------------------------------------------------ decisions

def test_predictive_dials_more_lines_than_agents_under_the_cap() -> None:
    """10 free agents and a 20% answer rate: many more lines than agents (progressive would dial 10), fewer
    than agents / answer rate (every agent's person at once), with a predicted abandon rate under the aim."""
    dial, reason, why = decide(ready=10)
    assert reason == "predicted"
    assert 10 < dial < 50
    assert 0.0 < float(why["predicted_abandon"]) <= 0.8 * 0.03  # type: ignore[arg-type]
    assert why["ready"] == 10 and why["dial"] == dial
    # 20% measured over 1000 results: planned at its upper confidence bound, 22%
    assert why["answer_prob"] == 0.2 and why["answer_prob_planned"] == pytest.approx(0.2208, abs=1e-4)


def test_warm_up_is_progressive_until_dials_are_measured() -> None:
    """Before ``warmup`` answers are measured the priors may be far off: one line per ready agent."""
    assert decide(ready=10, m=measures(results=145), warmup=30)[:2] == (10, "warm-up")  # 29 answers
    assert decide(ready=10, m=measures(results=150), warmup=30)[1] == "predicted"


def test_nobody_ready_nobody_expected_free_no_call() -> None:
    """No agent ready and every busy agent far from the end of its call: nothing is dialled."""
    assert decide(ready=0, talk=(1.0, 2.0))[:2] == (0, "no-agents")
    assert decide(ready=0)[:2] == (0, "no-agents")


def test_agents_about_to_free_are_dialled_for() -> None:
    """No agent ready, but three are in their last seconds of wrap-up: the pacer dials ahead for them."""
    dial, reason, why = decide(ready=0, wrap=(8.0, 8.0, 9.0))
    assert dial > 0 and reason == "predicted"
    assert why["expected_free"] == 3.0


def test_calls_in_flight_and_waiting_people_use_the_agents() -> None:
    """The same agents with people already waiting and calls ringing: fewer new calls; as many waiting
    people as agents: none (the next person would be abandoned for sure)."""
    free = decide(ready=5)[0]
    busy = decide(ready=5, flight=CallsInFlight(ringing_ages=(1.0,) * 5, waiting=2))[0]
    assert busy < free
    assert decide(ready=2, flight=CallsInFlight(waiting=2))[:2] == (0, "full")


def test_max_lines_is_respected() -> None:
    """``max_lines`` bounds the lines up, counting the calls in flight."""
    assert decide(ready=50, max_lines=20)[:2] == (20, "max-lines")
    assert decide(ready=50, max_lines=20, flight=CallsInFlight(ringing_ages=(1.0,) * 15))[0] <= 5
    assert decide(ready=50, max_lines=20, flight=CallsInFlight(ringing_ages=(1.0,) * 20))[:2] == (0, "max-lines")


def test_window_near_the_cap_falls_back_to_progressive_then_steps_down_to_preview() -> None:
    """Cap 3%, aim 2.4%. Halfway through the window at 2.3%, the window's 2000 answers may take 46.4 abandons
    (two Poisson deviations under its 60 at the cap, less than the aim's 48): the rest may run at 2.34%:
    predictive. Halfway at 2.9%, the rest must run at 1.74%: fewer lines. Halfway at 4.5%, the rest may run
    at 0.14%, under the fallback share (0.6%): one line per ready agent (no extra lines), less the calls in
    flight; with 90% of the window gone at 2.9%, no budget is left: progressive too (the window would still
    end under the cap). Over the cap in a full rolling window, even with no further abandon: nothing is
    dialled, not even progressively, and the ready agents are to get previews."""
    ok = decide(ready=10, window=WindowFigures(1000, 23, 0.03, 0.5))
    assert ok[1] == "predicted" and ok[0] > 10
    assert abandons_under(60, 2.0) == pytest.approx(46.38, abs=0.01)
    assert ok[2]["budget"] == pytest.approx((abandons_under(60, 2.0) - 23) / 1000, abs=1e-5)
    tight = decide(ready=10, window=WindowFigures(1000, 29, 0.03, 0.5))
    assert tight[1] == "predicted" and 10 < tight[0] < ok[0]
    assert tight[2]["budget"] == pytest.approx((abandons_under(60, 2.0) - 29) / 1000, abs=1e-5)
    low = decide(ready=10, window=WindowFigures(1000, 45, 0.03, 0.5), flight=CallsInFlight(ringing_ages=(1.0, 1.0)))
    assert low[:2] == (8, "progressive-fallback")
    assert low[2]["budget"] == pytest.approx((abandons_under(60, 2.0) - 45) / 1000, abs=1e-5)
    near = decide(ready=10, window=WindowFigures(1000, 29, 0.03, 0.9),
                  flight=CallsInFlight(ringing_ages=(1.0, 1.0)))
    assert near[:2] == (8, "progressive-fallback")
    assert near[2]["budget_basis"] == "window-budget" and near[2]["budget"] == 0.0
    spent = pace_predictive(agents=AgentOutlook(10), flight=CallsInFlight(ringing_ages=(1.0, 1.0)),
                            measures=measures(), window=WindowFigures(1000, 40, 0.03, 1.0),
                            params=PredictiveParams(max_lines=1000))
    assert (spent.dial, spent.reason, spent.previews, spent.target) == (0, "preview-fallback", 10, 2)
    assert spent.explain["previews"] == 10
    over = decide(ready=10, window=WindowFigures(1000, 40, 0.03, 1.0))
    assert over[:2] == (0, "preview-fallback")
    assert over[2]["projected_rate"] == pytest.approx(40 / 1050, abs=1e-5)  # over the cap even with no further abandon
    # the reserve (inbound first) is not given previews either
    assert decide(ready=10, reserve=3, window=WindowFigures(1000, 40, 0.03, 1.0))[2]["previews"] == 7


def test_the_budget_recovering_resumes_pacing() -> None:
    """The pacer keeps no state: a full rolling window at 3.3% (it ends over the cap with no further abandon:
    preview); after 240 more live answers without an abandon (previews connect people) at 2.7%, no budget is
    left under the margin: progressive; 500 more: 2.2%, the rest may run at the cap: predictive."""
    assert decide(ready=10, window=WindowFigures(1000, 33, 0.03, 1.0))[1] == "preview-fallback"
    assert decide(ready=10, window=WindowFigures(1240, 33, 0.03, 1.0))[1] == "progressive-fallback"
    assert decide(ready=10, window=WindowFigures(1500, 33, 0.03, 1.0))[1] == "predicted"


def test_window_well_under_the_cap_affords_more() -> None:
    """A window at 0.5% with half of it left lets the pacer run up to the cap (more lines than the aim)."""
    young = decide(ready=10)[0]
    roomy = decide(ready=10, window=WindowFigures(1000, 5, 0.03, 0.5))[0]
    assert roomy > young


def test_measured_rate_over_the_budget_slows_down() -> None:
    """The recent measured rate at 6% while the budget is 1.6% (a young window): the model is trusted less
    (feedback: budget / rate)."""
    plain = decide(ready=10)
    corrected = decide(ready=10, m=measures(recent=0.06, recent_n=100))
    assert corrected[2]["feedback"] == pytest.approx(plain[2]["budget"] / 0.06, abs=1e-3)
    assert corrected[0] < plain[0]
    assert decide(ready=10, m=measures(recent=0.06, recent_n=5))[0] == plain[0]  # too few to steer


def test_blending_reserve_is_left_to_inbound() -> None:
    """Three agents held for inbound: with three ready, nothing is dialled; with ten, as for seven."""
    assert decide(ready=3, reserve=3)[:2] == (0, "no-agents")
    assert decide(ready=10, reserve=3)[0] == decide(ready=7)[0]


def test_amd_misses_count_against_the_budget() -> None:
    """AMD 99% right: 1% of people are dropped as machines, which the pacing budget pays for; at 98% they
    leave 0.4% of the 2.4% aimed at: progressive; at 90% the dropped people alone are over the cap: progressive
    still, no line ahead (previews would not help: AMD runs on a previewed call too; such a campaign is refused
    at load under a policy that counts AMD's misses, unless it turns AMD off)."""
    assert decide(ready=10, amd_accuracy=0.99)[0] < decide(ready=10)[0]
    assert decide(ready=10, amd_accuracy=0.98)[1] == "progressive-fallback"
    assert decide(ready=10, amd_accuracy=0.9)[:2] == (10, "progressive-fallback")
    assert decide(ready=10, amd_accuracy=0.9, count_amd_misses=False)[1] == "predicted"


def test_priors_until_measured() -> None:
    """Before any measurement the priors speak; measurements take over as they come."""
    cm = CampaignMeasures(Priors(answer_prob=0.3, human_share=0.8, min_samples=10))
    assert cm.snapshot().answer_prob == pytest.approx(0.3)
    for _ in range(10):
        cm.on_dial_result(True, 4.0)
        cm.on_amd(True)
        cm.on_handled(60.0, 5.0)
    snap = cm.snapshot()
    assert (snap.answer_prob, snap.human_share) == (1.0, 1.0)
    assert float(np.median(snap.talk)) == 60.0 and len(snap.talk) == 10


# ------------------------------------------------------------------ properties

@settings(max_examples=60, deadline=None)
@given(agents=st.integers(0, 30), flying=st.integers(0, 20), q0=st.floats(0.01, 1.0),
       busy=st.lists(st.floats(0.0, 1.0), max_size=20))
def test_abandon_probability_is_monotone_in_launches(agents: int, flying: int, q0: float, busy: list[float]) -> None:
    """The predicted abandon probability of the new calls never falls as more are launched."""
    raw = poisson_binomial(np.array(busy))
    agent_pmf = np.concatenate([np.zeros(agents), raw])
    model = Model(agent_pmf, poisson_binomial(np.full(flying, 0.5)), q0)
    rates = [model.forecast(k).abandon_prob for k in range(0, 60, 3)]
    assert all(b >= a - 1e-9 for a, b in zip(rates, rates[1:], strict=False)), rates


@settings(max_examples=60, deadline=None)
@given(ready=st.integers(0, 40), talk=st.lists(st.floats(0.0, 600.0), max_size=30),
       wrap=st.lists(st.floats(0.0, 30.0), max_size=10), ringing=st.lists(st.floats(0.0, 60.0), max_size=30),
       waiting=st.integers(0, 5), answer=st.floats(0.01, 1.0), human=st.floats(0.05, 1.0),
       max_lines=st.integers(1, 200), live=st.integers(0, 2000), abandoned_share=st.floats(0.0, 0.1),
       elapsed=st.floats(0.0, 1.0), reserve=st.integers(0, 5))
def test_predictive_decision_bounds(ready: int, talk: list[float], wrap: list[float], ringing: list[float],
                                    waiting: int, answer: float, human: float, max_lines: int, live: int,
                                    abandoned_share: float, elapsed: float, reserve: int) -> None:
    """Whatever the inputs: never a negative count, never over max_lines, never a call when nobody is ready
    and nobody is expected to be free, and a predicted abandon probability within what was allowed."""
    flight = CallsInFlight(tuple(ringing), 0, waiting)
    window = WindowFigures(live, int(live * abandoned_share), 0.03, elapsed)
    m = measures(answer, human)
    d = pace_predictive(agents=AgentOutlook(ready, tuple(talk), tuple(wrap), reserve), flight=flight, measures=m,
                        window=window, params=PredictiveParams(max_lines=max_lines))
    assert d.dial >= 0
    assert flight.count + d.dial <= max(max_lines, flight.count)
    if d.dial:
        assert flight.count + d.dial <= max_lines
    horizon = m.connect + 2.0
    p = free_probabilities(talk, m.talk, m.wrap, horizon).sum() + free_probabilities(wrap, m.wrap, None, horizon).sum()
    if ready <= reserve and p <= 1e-9:
        assert d.dial == 0
    if d.reason == "predicted":
        assert d.explain["predicted_abandon"] <= d.explain["allowed"] + 1e-9
    if d.reason == "progressive-fallback":
        assert flight.count + d.dial <= max(ready - reserve, flight.count)
    if d.reason == "preview-fallback":
        assert d.dial == 0 and d.previews == max(0, ready - reserve)
        assert d.explain["projected_rate"] >= d.explain["window"]["cap"] - 1e-9
    else:
        assert d.previews == 0


def test_few_answers_leave_room_for_few_abandons() -> None:
    """Abandons are a count: a window of 50 answers at 3% may hold 1.5, so the pacer aims at the 0.34 whose
    Poisson count stays two deviations under it (1.35% for the 25 answers to come, not the aim's 2.4%); after
    one abandon nothing is left (progressive); a young window plans for 10 / cap answers (1.6%); with
    thousands of answers the aim rules."""
    p = PredictiveParams(max_lines=10)
    few, basis = window_budget(WindowFigures(25, 0, 0.03, 0.5), p)
    assert basis == "window-budget" and few == pytest.approx(abandons_under(1.5, 2.0) / 25) and 0.013 < few < 0.014
    assert window_budget(WindowFigures(25, 1, 0.03, 0.5), p)[0] == 0.0
    young, basis = window_budget(WindowFigures(0, 0, 0.03, 0.0), p)
    assert basis == "window-young" and young == pytest.approx(abandons_under(10.0, 2.0) / (10 / 0.03))
    assert window_budget(WindowFigures(100_000, 2400, 0.03, 0.5), p)[0] == pytest.approx(0.024)
