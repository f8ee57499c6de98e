"""The progressive pacer: pure arithmetic of lines per idle agent, calls in flight and the abandon cap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.pacer import WindowFigures, pace, step_of, window_spent


def _pace(idle: int, flying: int, rate: float | None = None, ratio: float = 1.0, cap: float = 0.03,
          max_lines: int = 50) -> tuple[int, str]:
    d = pace(idle_agents=idle, in_flight=flying, ratio=ratio, abandon_rate=rate, max_abandon_rate=cap,
             max_lines=max_lines)
    return d.dial, d.reason


def test_one_line_per_idle_agent() -> None:
    """Progressive (ratio 1): three idle agents and nothing in flight give three calls."""
    assert _pace(3, 0) == (3, "paced")


def test_calls_in_flight_use_the_budget() -> None:
    """Calls already dialled count against the idle agents: 3 idle, 2 in flight -> 1 more; 3 in flight -> 0."""
    assert _pace(3, 2) == (1, "paced")
    assert _pace(3, 3) == (0, "full")
    assert _pace(3, 7) == (0, "full")


def test_no_idle_agent_no_call() -> None:
    """Nobody idle: nothing is dialled, whatever the ratio."""
    assert _pace(0, 0, ratio=3.0) == (0, "no-agents")


def test_ratio_above_one_over_dials() -> None:
    """A ratio of 1.5 gives floor(idle x 1.5) lines."""
    assert _pace(4, 0, ratio=1.5) == (6, "paced")


def test_abandon_rate_over_cap_throttles() -> None:
    """An abandon rate at twice the cap halves the lines (and never lets a ratio above 1 through)."""
    assert _pace(10, 0, rate=0.06, ratio=2.0) == (5, "throttled")
    assert _pace(10, 0, rate=0.03, ratio=2.0) == (20, "paced")  # at the cap is not over it


def test_throttled_campaign_keeps_one_line() -> None:
    """Far over the cap, a campaign with nothing in flight still keeps one line up while its window can afford
    it; with one in flight, none."""
    assert _pace(2, 0, rate=0.9) == (1, "throttled")
    assert _pace(2, 1, rate=0.9) == (0, "throttled")


def test_a_spent_window_steps_down_to_preview() -> None:
    """The policy window full (rolling) at 32 abandoned of 1000 live answers, cap 3%: even with no further
    abandon (and the 5% more answers a full rolling window still takes) it ends over the cap: nothing is
    dialled, whatever the recent rate or the ratio, and every idle agent is to get a preview instead (the
    throttle's one line too). At 32 of 1000 with half the window to come, or at 31 of 1000 when full (2.95%
    with the answers still to come), the campaign paces as usual."""
    spent = WindowFigures(live=1000, abandoned=32, cap=0.03, elapsed_fraction=1.0)
    for ratio, rate in ((1.0, 0.0), (2.5, 0.01), (1.0, 0.9)):
        d = pace(idle_agents=4, in_flight=2, ratio=ratio, abandon_rate=rate, max_abandon_rate=0.03, max_lines=50,
                 window=spent)
        assert (d.dial, d.reason, d.previews, d.target) == (0, "preview-fallback", 4, 2)
    for room in (WindowFigures(1000, 32, 0.03, 0.5), WindowFigures(1000, 31, 0.03, 1.0)):
        d = pace(idle_agents=4, in_flight=0, ratio=1.0, abandon_rate=0.0, max_abandon_rate=0.03, max_lines=50,
                 window=room)
        assert (d.dial, d.reason, d.previews) == (4, "paced", 0)
    assert not window_spent(WindowFigures(0, 0, 0.03, 0.0))
    assert window_spent(WindowFigures(100, 4, 0.03, 1.0)) and not window_spent(WindowFigures(20, 1, 0.03, 0.01))


def test_steps_name_the_mode_a_decision_paces_in() -> None:
    assert step_of("predictive", "predicted") == "predictive"
    assert step_of("predictive", "progressive-fallback") == "progressive"
    assert step_of("predictive", "warm-up") == "progressive"
    assert step_of("predictive", "preview-fallback") == "preview"
    assert step_of("ratio", "throttled") == "ratio"
    assert step_of("progressive", "preview-fallback") == "preview"


def test_max_lines_caps() -> None:
    """``max_lines`` bounds the lines up at once."""
    assert _pace(100, 0, max_lines=8) == (8, "max-lines")
    assert _pace(100, 8, max_lines=8) == (0, "max-lines")


def test_bad_ratio_is_refused() -> None:
    """A zero ratio is a programming error, not a silent zero."""
    with pytest.raises(ValueError):
        pace(idle_agents=1, in_flight=0, ratio=0.0, abandon_rate=None, max_abandon_rate=0.03, max_lines=1)


@given(idle=st.integers(0, 500), flying=st.integers(0, 500), ratio=st.floats(0.1, 5.0),
       rate=st.none() | st.floats(0.0, 1.0), cap=st.floats(0.0, 0.5), max_lines=st.integers(1, 1000))
def test_never_more_than_idle_times_ratio(idle: int, flying: int, ratio: float, rate: float | None, cap: float,
                                          max_lines: int) -> None:
    """Whatever the inputs, lines up after dialling never exceed max(idle x ratio, 1 when throttled), nor
    max_lines, and nothing is dialled without an idle agent."""
    d = pace(idle_agents=idle, in_flight=flying, ratio=ratio, abandon_rate=rate, max_abandon_rate=cap,
             max_lines=max_lines)
    assert d.dial >= 0
    if idle == 0:
        assert d.dial == 0
        return
    bound = max(int(idle * ratio + 1e-9), 1 if d.reason == "throttled" else 0)
    assert flying + d.dial <= max(flying, min(bound, max_lines))
    if d.reason == "preview-fallback":
        assert d.dial == 0 and d.previews == idle
    else:
        assert d.previews == 0
