"""The sliding windows' storage (kpi.windows): counters and agents' times in state are rings of fixed size,
so memory does not grow with traffic or time (issue #19's soak), and their sums equal a brute-force count
over the same buckets, with the oldest bucket of a time-in-state window counted pro rata."""

from __future__ import annotations

import random

import pytest

from kpi.windows import SLIDING, Calendar, StateSeconds, Windows

T0 = 1_772_445_600.0  # 2026-03-02 10:00 UTC, a bucket and interval boundary
BUCKET = 10.0


def calendar(now: float) -> Calendar:
    cal = Calendar("UTC", 900.0, BUCKET)
    cal.advance(now)
    return cal


def test_counter_windows_equal_a_brute_force_count_for_hours_in_a_ring_of_fixed_size() -> None:
    rng = random.Random(7)
    cal = calendar(T0)
    w = Windows(cal, 3, maxes=(2,))
    ring_bytes = w.ring.buffer_info()[1] * w.ring.itemsize
    events: list[tuple[float, int, float]] = []
    now = T0
    for _ in range(6000):  # ~3.5 hours of events, a window read now and then
        now += rng.expovariate(1 / 2.0)
        cal.advance(now)
        ts = now - rng.choice([0.0, 0.0, 3.0, 25.0])  # some events counted a little late
        if rng.random() < 0.2:
            v = rng.uniform(0, 100)
            w.add_max(ts, 2, v)
            events.append((ts, 2, v))
        else:
            f, v = rng.choice([0, 1]), rng.choice([1.0, 2.5])
            w.add(ts, f, v)
            events.append((ts, f, v))
        if rng.random() < 0.05:
            bnow = int(now // BUCKET)
            for name, span in SLIDING.items():
                first = bnow - int(span // BUCKET) + 1
                inside = [(f, v) for ts, f, v in events if first <= int(ts // BUCKET) <= bnow]
                got = w.window(name)
                assert got[0] == pytest.approx(sum(v for f, v in inside if f == 0), abs=1e-6)
                assert got[1] == pytest.approx(sum(v for f, v in inside if f == 1), abs=1e-6)
                assert got[2] == max((v for f, v in inside if f == 2), default=0.0)
            events = [e for e in events if int(e[0] // BUCKET) > bnow - cal.span - 1]
    assert w.ring.buffer_info()[1] * w.ring.itemsize == ring_bytes == 8 * 3 * cal.span


def test_time_in_state_is_exact_within_the_buckets_and_pro_rata_at_the_windows_edge() -> None:
    cal = calendar(T0)
    s = StateSeconds(cal)
    s.add("ready", T0, T0 + 15)  # 10 s in bucket 0, 5 s in bucket 1
    s.add("busy", T0 + 15, T0 + 40)
    cal.advance(T0 + 40)
    assert s.window(900, T0 + 40) == {"ready": 15.0, "busy": 25.0}
    # 15 minutes later the window starts at T0 + 45 - ... : at T0 + 905 it begins at T0 + 5, half of bucket 0
    cal.advance(T0 + 905)
    assert s.window(900, T0 + 905) == pytest.approx({"ready": 10.0, "busy": 25.0})
    cal.advance(T0 + 917)  # begins at T0 + 17: bucket 1 (5 ready, 5 busy) cut 70%: 1.5 + 1.5 left
    assert s.window(900, T0 + 917) == pytest.approx({"ready": 1.5, "busy": 1.5 + 20.0})
    assert s.window(1800, T0 + 917) == pytest.approx({"ready": 15.0, "busy": 25.0})
    cal.advance(T0 + 1815)  # the 30 minutes begin at T0 + 15: half of bucket 1
    assert s.window(1800, T0 + 1815) == pytest.approx({"ready": 2.5, "busy": 22.5})
    cal.advance(T0 + 1900)
    assert s.window(900, T0 + 1900) == {} == s.window(1800, T0 + 1900)


def test_time_in_state_memory_is_fixed_however_many_changes() -> None:
    rng = random.Random(3)
    cal = calendar(T0)
    s = StateSeconds(cal)
    now = T0
    keys = ("ready", "ringing", "busy", "wrap_up")
    spans: list[tuple[str, float, float]] = []
    for i in range(50_000):  # ~a day of a busy agent's states
        d = rng.uniform(0.5, 4.0)
        spans.append((keys[i % 4], now, now + d))
        s.add(keys[i % 4], now, now + d)
        now += d
        cal.advance(now)
    assert set(s.ring) == set(keys) and all(len(a) == cal.span + 1 for a in s.ring.values())
    lo = now - 1800.0
    # bucket-exact: whole buckets after the edge's, and the edge's pro rata
    edge = int(lo // BUCKET) * BUCKET
    for key in keys:
        inside = sum(max(0.0, e - max(b, edge + BUCKET)) for k, b, e in spans if k == key and e > edge + BUCKET)
        in_edge = sum(max(0.0, min(e, edge + BUCKET) - max(b, edge)) for k, b, e in spans if k == key)
        want = inside + in_edge * (1 - (lo - edge) / BUCKET)
        assert s.window(1800.0, now)[key] == pytest.approx(want, abs=1e-6)
