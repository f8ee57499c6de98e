"""bench/dialer.py: its quick mode runs as one command and ends with its BENCH line; its figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.dialer import DAY, false_machines, worst_day, worst_window

ROOT = Path(__file__).resolve().parent.parent
BENCH_LINE = re.compile(r"^BENCH dialer agents=8 answer_rate=0\.15 abandon_pct=[0-9.]+ occupancy=[0-9.]+ "
                        r"ratio_vs_progressive=[0-9.]+( mode=\w+)?$")


def test_quick_run_prints_the_table_and_the_bench_line() -> None:
    """One command (`python bench/dialer.py --quick`): progressive and ratio run on the same leads, the table
    has a row per mode (unavailable ones say why) and the last line is the BENCH line."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "dialer.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert BENCH_LINE.match(lines[-1]), lines[-1]
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in
            ("progressive", "ratio", "predictive", "preview")}
    assert set(rows) == {"progressive", "ratio", "predictive", "preview"}
    for mode in ("progressive", "ratio"):
        dials, contacts = (int(x) for x in rows[mode].split()[1:3])
        assert dials > 50 and contacts > 5, rows[mode]
    for mode in ("predictive", "preview"):
        assert "unavailable" in rows[mode] or rows[mode].split()[1].isdigit()
    assert "both are the whole run" in done.stdout


def test_bad_answer_rate_is_refused() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "dialer.py"), "--answer-rate", "0.99"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--answer-rate must be 0-0.95" in done.stderr


def test_false_machines_estimate() -> None:
    """People AMD took for machines, from the verdicts: 1000 answers of which 100 machines, AMD 90% right ->
    180 MACHINE verdicts, of which 90 people."""
    assert false_machines(180, 1000, 0.9, 0.1) == pytest.approx(90.0)
    assert false_machines(100, 1000, 1.0, 0.1) == pytest.approx(0.0)
    assert false_machines(500, 1000, 0.5, 0.1) == pytest.approx(450.0)  # no information: the given share
    assert false_machines(0, 0, 0.9, 0.1) == 0.0


def test_worst_window_and_day() -> None:
    """A run of a day or less is one window; longer runs take the worst rolling 24 h and the worst day."""
    humans = [(float(t), False) for t in range(0, 3600, 36)] + [(100.0, True)]
    assert worst_window(humans, 0.0, 3600.0, DAY, 0.0) == pytest.approx(1 / 101)
    two_days = [(t, False) for t in range(0, 2 * 86400, 864)] + [(90000.0 + i, True) for i in range(10)]
    rolling = worst_window([(float(t), a) for t, a in two_days], 0.0, 2 * DAY, DAY, 0.0)
    daily = worst_day([(float(t), a) for t, a in two_days], 0.0, 2 * DAY, 0.0)
    assert daily == pytest.approx(10 / 110) and rolling == pytest.approx(10 / 110)
    assert worst_day([(10.0, True), (DAY + 10, False)], 0.0, 2 * DAY, 0.0) == 1.0
