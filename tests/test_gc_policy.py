"""cti.gc_policy: freeze once console connections settle; collect what closed ones left, now and then."""

from __future__ import annotations

import gc
import logging
import weakref

import pytest

from cti.gc_policy import GcFunctions, LongLivedPolicy, PauseWatch


class Counting:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def functions(self) -> GcFunctions:
        return GcFunctions(freeze=lambda: self.calls.append("freeze"),
                           unfreeze=lambda: self.calls.append("unfreeze"),
                           collect=lambda: self.calls.append("collect") or 0)


def test_freezes_only_after_connections_settle() -> None:
    c = Counting()
    p = LongLivedPolicy(settle=2.0, functions=c.functions())
    assert p.tick(0, 0, 0.0) is None  # nothing opened
    assert p.tick(500, 0, 1.0) is None  # connecting
    assert p.tick(1000, 0, 2.0) is None  # still connecting
    assert p.tick(1000, 0, 3.0) is None  # quiet for 1 s only
    assert p.tick(1000, 0, 4.0) == "freeze"
    assert p.tick(1000, 0, 9.0) is None  # nothing new: no second freeze
    assert c.calls == ["freeze"]


def test_collects_after_enough_connections_closed_then_refreezes() -> None:
    c = Counting()
    p = LongLivedPolicy(settle=1.0, refreeze_after=50, functions=c.functions())
    p.tick(1000, 0, 0.0)
    assert p.tick(1000, 0, 1.0) == "freeze"
    # 100 agents reconnect: fewer than a quarter of 1,000 frozen -> new sessions frozen, no collection
    p.tick(1100, 100, 2.0)
    assert p.tick(1100, 100, 3.0) == "freeze"
    assert "collect" not in c.calls
    # a quarter of the frozen connections have closed since: one collection, then frozen again
    p.tick(1300, 300, 4.0)
    assert p.tick(1300, 300, 5.0) == "refreeze"
    assert c.calls[-3:] == ["unfreeze", "collect", "freeze"]
    assert p.tick(1300, 300, 6.0) is None


class Node:
    """A cycle-capable object the test can watch through a weak reference."""

    def __init__(self) -> None:
        self.me: Node | None = self


def test_real_gc_functions_are_the_default_and_do_what_the_policy_says() -> None:
    """With the real ``gc`` functions: a freeze moves the objects alive then out of the collector's generations
    (a cycle that becomes garbage afterwards survives a plain ``gc.collect()``); a refreeze after enough closed
    connections unfreezes, collects (that cycle is gone) and freezes again."""
    gc.unfreeze()  # start from nothing frozen, whatever ran before
    try:
        p = LongLivedPolicy(settle=0.0, refreeze_after=1)
        cycle = Node()
        watch = weakref.ref(cycle)
        assert gc.get_freeze_count() == 0 and gc.is_tracked(cycle)
        p.tick(1, 0, 0.0)
        assert p.tick(1, 0, 0.0) == "freeze"
        frozen = gc.get_freeze_count()
        assert frozen > 0
        assert not any(o is cycle for o in gc.get_objects())  # in the permanent generation, out of collections
        del cycle  # the connection's cycle is garbage now, but frozen
        gc.collect()
        assert watch() is not None, "a frozen cycle was collected: the freeze did nothing"
        assert p.tick(1, 0, 1.0) is None  # nothing closed, nothing opened: no action
        assert p.tick(1, 1, 2.0) == "refreeze"
        assert watch() is None, "the refreeze did not collect what the closed connection left"
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_full_collections_are_spaced_out_and_young_ones_untouched() -> None:
    """After ``space_full_collections`` a full collection needs 100 middle-generation ones before it (not
    CPython's 10); the young thresholds stay as they were."""
    import gc

    from cti.gc_policy import FULL_AFTER, space_full_collections

    before = gc.get_threshold()
    try:
        assert space_full_collections() == (before[0], before[1], FULL_AFTER) and FULL_AFTER >= 50
        assert gc.get_threshold()[2] == FULL_AFTER
    finally:
        gc.set_threshold(*before)


def test_a_long_full_collection_is_logged_with_its_size_and_a_short_one_is_not(
        caplog: pytest.LogCaptureFixture) -> None:
    t = [0.0]
    watch = PauseWatch(threshold=0.2, clock=lambda: t[0])
    with caplog.at_level(logging.WARNING, logger="cti.gc"):
        for gen, took in ((0, 5.0), (2, 0.05), (2, 0.35), (1, 9.0)):
            watch.on_gc("start", {"generation": gen})
            t[0] += took
            watch.on_gc("stop", {"generation": gen, "collected": 7})
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "held the event loop 350 ms (7 objects freed" in lines[0]
    assert watch.longest == pytest.approx(0.35)
    real = PauseWatch(threshold=10.0).install()
    try:
        gc.collect()  # a real full collection reaches the callback and is timed
        assert real.longest > 0
    finally:
        real.uninstall()
    assert real.on_gc not in gc.callbacks
