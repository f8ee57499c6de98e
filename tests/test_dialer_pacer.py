"""The progressive pacer: pure arithmetic of lines per idle agent, calls in flight and the abandon cap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.pacer import WindowFigures, pace, step_of, window_over_cap


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


def test_throttled_to_less_than_a_line_steps_down_to_preview() -> None:
    """Far over the cap, the throttle leaves less than one line: with nothing in flight the campaign steps down
    to preview (no line dialled, each idle agent gets a lead to accept) instead of keeping one line going; with
    one in flight, it waits for it."""
    d = pace(idle_agents=2, in_flight=0, ratio=1.0, abandon_rate=0.9, max_abandon_rate=0.03, max_lines=50)
    assert (d.dial, d.reason, d.previews) == (0, "preview-fallback", 2)
    assert _pace(2, 1, rate=0.9) == (0, "throttled")


def test_a_window_over_the_cap_steps_down_to_preview() -> None:
    """The policy window measured over its cap (31 abandoned of 1000 live answers, cap 3%): nothing is dialled,
    whatever the recent rate or the ratio, and every idle agent is to get a preview; at the cap exactly, the
    campaign paces as usual."""
    over = WindowFigures(live=1000, abandoned=31, cap=0.03, elapsed_fraction=1.0)
    for ratio in (1.0, 2.5):
        d = pace(idle_agents=4, in_flight=2, ratio=ratio, abandon_rate=0.0, max_abandon_rate=0.03, max_lines=50,
                 window=over)
        assert (d.dial, d.reason, d.previews, d.target) == (0, "preview-fallback", 4, 2)
    at_cap = WindowFigures(live=1000, abandoned=30, cap=0.03, elapsed_fraction=1.0)
    d = pace(idle_agents=4, in_flight=0, ratio=1.0, abandon_rate=0.0, max_abandon_rate=0.03, max_lines=50,
             window=at_cap)
    assert (d.dial, d.reason, d.previews) == (4, "paced", 0)
    assert not window_over_cap(WindowFigures(0, 0, 0.03, 0.0))


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
    """Whatever the inputs, lines up after dialling never exceed idle x ratio, nor max_lines, nothing is
    dialled without an idle agent, and a step down to preview dials nothing and previews every idle agent."""
    d = pace(idle_agents=idle, in_flight=flying, ratio=ratio, abandon_rate=rate, max_abandon_rate=cap,
             max_lines=max_lines)
    assert d.dial >= 0
    if idle == 0:
        assert d.dial == 0
        return
    bound = int(idle * ratio + 1e-9)
    assert flying + d.dial <= max(flying, min(bound, max_lines))
    if d.reason == "preview-fallback":
        assert d.dial == 0 and d.previews == idle
    else:
        assert d.previews == 0
