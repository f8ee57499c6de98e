"""bench/stats.py: its quick mode runs as one command (simulator, server and supervisor in three processes)
and ends with its BENCH line, every offered caller seen by the supervisor; its matching of callers to deltas."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.stats import match

ROOT = Path(__file__).resolve().parent.parent
BENCH_LINE = re.compile(r"^BENCH stats us_per_event=[0-9.]+ p99_ms=[0-9.]+ ratio=[0-9.]+ feed_core_pct=[0-9.]+ "
                        r"rate=20 samples=(\d+) kept_up=yes$")


def test_quick_run_measures_every_caller_end_to_end() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "stats.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    found = BENCH_LINE.match(lines[-1])
    assert found, done.stdout[-3000:]
    counts = next(line for line in lines if "CTIQueued" in line and "sent" in line)
    assert " 0 callers never seen by the supervisor" in counts and "queues disagreeing 0" in counts, counts
    assert int(found.group(1)) > 0


def test_match_pairs_the_kth_caller_with_the_first_count_reaching_k() -> None:
    entries = [("a", 1.0), ("b", 1.1), ("a", 1.2), ("a", None)]  # the last one not on AMI input
    base = {"queue:a": 5, "queue:b": 0}
    deltas = [("queue:a", 1.3, 6), ("queue:b", 1.4, 1), ("queue:a", 1.5, 8)]
    m = match(entries, base, deltas, {"queue:a": 8, "queue:b": 1})
    assert [round(x, 6) for x in m["samples"]] == [0.3, 0.3, 0.3]
    assert (m["unmatched"], m["untriggered"], m["mismatched"]) == (0, 1, [])
    late = match([*entries, ("b", 2.0)], base, deltas, {"queue:a": 8, "queue:b": 2})
    assert late["unmatched"] == 1 and late["mismatched"] == ["queue:b"]
