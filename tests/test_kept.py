"""cti.kept.Kept: the last N values by key, held encoded (one untracked bytes object each)."""

from __future__ import annotations

import gc
import json
import random
from collections import OrderedDict

import pytest

from cti.kept import Kept
from ivr.events import IvrCompleted, PathStep
from ivr.ports import RecentCompletions


def completed(uid: str, steps: int = 4) -> IvrCompleted:
    return IvrCompleted(server="pbx1", ts=1.0, uniqueid=uid, channel="PJSIP/trunk-1", flow="main",
                        path=tuple(PathStep(f"n{i}", "menu", 1.0 + i, "1", "1") for i in range(steps)),
                        collected={"account": "****1234"}, outcome="queue", queue="sales", skills={"sales": 2},
                        customer={"name": "Ann"})


def test_keeps_the_last_limit_values_and_a_key_put_again_becomes_newest() -> None:
    kept: Kept[str, dict[str, int]] = Kept(3)
    for i in range(3):
        kept.put(f"k{i}", {"i": i})
    kept.put("k0", {"i": 10})  # k0 is the newest now: k1 goes first
    kept.put("k3", {"i": 3})
    assert len(kept) == 3 and "k1" not in kept and kept.get("k1") is None
    assert [kept.get(k) for k in ("k0", "k2", "k3")] == [{"i": 10}, {"i": 2}, {"i": 3}]


def test_a_value_read_back_is_a_copy_not_the_object_put() -> None:
    kept: Kept[str, dict[str, list[int]]] = Kept(2)
    value = {"a": [1]}
    kept.put("k", value)
    value["a"].append(2)  # a later change to the caller's object does not reach what was kept
    got = kept.get("k")
    assert got == {"a": [1]}
    assert got is not None
    got["a"].append(3)
    assert kept.get("k") == {"a": [1]}


def test_custom_encoding() -> None:
    kept: Kept[tuple[str, str], dict[str, object]] = Kept(5, lambda v: json.dumps(v).encode(), json.loads)
    kept.put(("pbx1", "1.1"), {"agent": "a1", "score": [1, 2.5]})
    assert kept.get(("pbx1", "1.1")) == {"agent": "a1", "score": [1, 2.5]}


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Kept(0)


def test_ivr_completions_are_not_objects_the_garbage_collector_walks() -> None:
    """10,000 kept IVR paths: a handful of tracked objects, not the ~60,000 the events and their steps are."""
    recent = RecentCompletions(limit=10_000)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(12_000):
        recent.handle(completed(f"u{i}"), 0.0)
    gc.collect()
    assert len(recent) == 10_000 and recent.get("u0") is None
    assert recent.get("u11999") == completed("u11999")
    assert len(gc.get_objects()) - before < 100


def model_run(kept: Kept[int, bytes], seed: int, puts: int, keys: int) -> list[tuple[int, bytes]]:
    """Random puts (sizes 1-900 bytes, keys reused); the (key, value) puts in order."""
    rng = random.Random(seed)
    done: list[tuple[int, bytes]] = []
    for i in range(puts):
        key = rng.randrange(keys)
        value = bytes([i % 251]) * rng.randint(1, 900)
        kept.put(key, value)
        done.append((key, value))
    return done


def last_distinct(done: list[tuple[int, bytes]]) -> OrderedDict[int, bytes]:
    latest: OrderedDict[int, bytes] = OrderedDict()
    for key, value in done:
        latest.pop(key, None)
        latest[key] = value
    return latest


@pytest.mark.parametrize("seed", range(4))
def test_the_ring_keeps_exactly_the_last_limit_values_when_bytes_allow(seed: int) -> None:
    kept: Kept[int, bytes] = Kept(300, bytes, bytes)
    done = model_run(kept, seed, 5_000, 1_000)
    expected = list(last_distinct(done).items())[-300:]
    assert len(kept) == 300 and [(k, kept.get(k)) for k, _ in expected] == expected
    assert kept.capacity <= 2 * 300 * 900  # doubled only until 300 values fit


@pytest.mark.parametrize("seed", range(4))
def test_a_ring_at_its_byte_bound_keeps_the_newest_values_that_fit(seed: int) -> None:
    kept: Kept[int, bytes] = Kept(1_000, bytes, bytes, max_bytes=20_000)
    done = model_run(kept, seed, 3_000, 400)
    latest = list(last_distinct(done).items())
    held = [(k, v) for k, v in latest if k in kept]
    assert kept.capacity == 20_000 and 0 < len(kept) < 1_000
    assert held == latest[-len(held):]  # the newest ones, nothing older among them
    assert all(kept.get(k) == v for k, v in held)
    assert sum(len(v) for _, v in held) <= 20_000


def test_a_value_larger_than_the_ring_may_grow_is_not_kept() -> None:
    kept: Kept[str, bytes] = Kept(10, bytes, bytes, max_bytes=1_000)
    kept.put("a", b"x" * 10)
    kept.put("b", b"y" * 2_000)
    kept.put("a", b"z" * 1_001)  # and a key put again with a value too large loses its old one
    assert "b" not in kept and "a" not in kept and len(kept) == 0


def test_the_ring_stops_growing_once_it_holds_limit_values() -> None:
    kept: Kept[int, bytes] = Kept(1_000, bytes, bytes)
    for i in range(2_000):
        kept.put(i, b"v" * 500)
    size = kept.capacity
    for i in range(2_000, 50_000):
        kept.put(i, b"w" * (400 + i % 200))
    assert kept.capacity == size and len(kept) == 1_000 and kept.get(49_999) == b"w" * (400 + 49_999 % 200)


def test_a_value_that_cannot_be_encoded_is_refused_not_raised() -> None:
    kept: Kept[str, object] = Kept(10, lambda v: json.dumps(v).encode(), json.loads)
    assert kept.put("a", {"n": 1}) is True
    assert kept.put("a", {"n": {1, 2}}) is False  # a set: not JSON; the key's earlier value goes too
    assert kept.put("b", float("nan")) is True  # (JSON's NaN is Python's json's to read back)
    assert "a" not in kept and kept.refused == 1 and len(kept) == 1
    pickles: Kept[str, object] = Kept(10)
    assert pickles.put("f", lambda: None) is False and pickles.refused == 1
