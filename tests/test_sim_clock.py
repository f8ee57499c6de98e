"""Simulator clocks (sim/clock.py): virtual time is deterministic and orders calls like Twisted's own
Clock; scaled time follows a real clock times the speed; both flush idle hooks between steps."""

from __future__ import annotations

import numpy as np
import pytest
from twisted.internet import task
from twisted.internet.interfaces import IReactorTime
from twisted.trial import unittest

from sim.clock import ScaledClock, VirtualClock


def test_calls_run_in_time_order_ties_in_scheduling_order() -> None:
    """Calls run by due time; calls due at the same time run in the order they were scheduled; inside a
    call, seconds() is that call's due time."""
    clock = VirtualClock(start=1000.0)
    seen: list[tuple[str, float]] = []
    for name, delay in (("c", 3.0), ("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("now", 0.0), ("neg", -5.0)):
        clock.callLater(delay, lambda n=name: seen.append((n, clock.seconds())))
    assert clock.run() == 6
    assert seen == [("now", 1000.0), ("neg", 1000.0), ("a", 1001.0), ("b1", 1002.0), ("b2", 1002.0), ("c", 1003.0)]
    assert clock.getDelayedCalls() == []
    assert IReactorTime.providedBy(clock)


def test_cancel_reset_and_delay() -> None:
    """Cancelled calls never run; reset() moves a call earlier or later; delay() pushes it back."""
    clock = VirtualClock()
    seen: list[tuple[str, float]] = []
    a = clock.callLater(5, lambda: seen.append(("a", clock.seconds())))
    b = clock.callLater(2, lambda: seen.append(("b", clock.seconds())))
    c = clock.callLater(3, lambda: seen.append(("c", clock.seconds())))
    d = clock.callLater(4, lambda: seen.append(("d", clock.seconds())))
    a.reset(1)
    b.delay(4)
    c.cancel()
    d.reset(7)
    assert [call.getTime() for call in clock.getDelayedCalls()] == [1.0, 6.0, 7.0]
    clock.run()
    assert seen == [("a", 1.0), ("b", 6.0), ("d", 7.0)]
    assert clock.pending() == 0 and clock.getDelayedCalls() == []


def test_run_until_run_for_and_step() -> None:
    """run_until runs calls due up to and including t and then sets the time to t; later calls wait;
    step() returns False once nothing is pending."""
    clock = VirtualClock()
    seen: list[float] = []
    for t in (1.0, 2.0, 2.5, 4.0):
        clock.callLater(t, lambda: seen.append(clock.seconds()))
    assert clock.run_until(2.5) == 3
    assert seen == [1.0, 2.0, 2.5] and clock.seconds() == 2.5
    assert clock.run_for(1.0) == 0 and clock.seconds() == 3.5
    assert clock.next_time() == 4.0
    assert clock.step() is True and clock.seconds() == 4.0
    assert clock.step() is False
    clock.advance(10)
    assert clock.seconds() == 14.0


def test_calls_scheduled_while_running_are_honoured() -> None:
    """A call that schedules more calls (including zero-delay ones) sees them run at the right times."""
    clock = VirtualClock()
    seen: list[tuple[str, float]] = []

    def first() -> None:
        seen.append(("first", clock.seconds()))
        clock.callLater(0, lambda: seen.append(("zero", clock.seconds())))
        clock.callLater(1.5, lambda: seen.append(("later", clock.seconds())))

    clock.callLater(1, first)
    clock.callLater(2, lambda: seen.append(("two", clock.seconds())))
    clock.run_until(10)
    assert seen == [("first", 1.0), ("zero", 1.0), ("two", 2.0), ("later", 2.5)]


def test_same_order_as_twisted_clock() -> None:
    """On a random workload (ties, cancels, resets) VirtualClock fires calls in exactly the order
    Twisted's task.Clock does."""
    rng = np.random.default_rng(42)
    orders: list[list[int]] = []
    for clock in (task.Clock(), VirtualClock()):
        fired: list[int] = []
        calls = [clock.callLater(float(rng.integers(0, 50)), fired.append, i) for i in range(500)]
        for i in rng.choice(500, size=80, replace=False):
            calls[int(i)].cancel()
        live = [c for c in calls if c.active()]
        for call in rng.choice(len(live), size=60, replace=False):
            live[int(call)].reset(float(rng.uniform(0.1, 49.9)))  # distinct times: no ambiguous ties
        clock.advance(100)
        orders.append(fired)
        rng = np.random.default_rng(42)
    assert orders[0] == orders[1]
    assert len(orders[0]) == 420


def test_same_seed_same_event_stream() -> None:
    """A seeded simulation that schedules calls from inside calls produces the same trace twice."""

    def simulate() -> list[tuple[float, int]]:
        clock = VirtualClock(start=1_700_000_000.0)
        rng = np.random.default_rng(7)
        trace: list[tuple[float, int]] = []

        def event(n: int) -> None:
            trace.append((clock.seconds(), n))
            if n < 2000:
                clock.callLater(float(rng.exponential(3.0)), event, n * 2 + 1)
                if rng.random() < 0.5:
                    clock.callLater(float(rng.exponential(3.0)), event, n * 2 + 2)

        clock.callLater(0, event, 0)
        clock.run_until(1_700_000_000.0 + 3600)
        return trace

    first, second = simulate(), simulate()
    assert first == second and len(first) > 100


def test_idle_hooks_flush_between_steps() -> None:
    """Idle hooks run before every step until they report no work, so what one call produced is
    delivered before the next call (even one due at the same instant) runs."""
    clock = VirtualClock()
    outbox: list[str] = []
    delivered: list[tuple[str, float]] = []
    observed: list[list[str]] = []

    def flush() -> bool:
        if not outbox:
            return False
        delivered.append((outbox.pop(0), clock.seconds()))
        return True

    clock.add_idle_hook(flush)
    clock.callLater(1, lambda: outbox.extend(["x", "y"]))
    clock.callLater(1, lambda: observed.append([d for d, _ in delivered]))
    clock.callLater(2, lambda: outbox.append("z"))
    clock.run()
    assert observed == [["x", "y"]]
    assert delivered == [("x", 1.0), ("y", 1.0), ("z", 2.0)]
    clock.remove_idle_hook(flush)


def test_livelocked_idle_hook_is_reported() -> None:
    """A hook that always claims work is stopped with an error instead of hanging the simulation."""
    clock = VirtualClock()
    clock.add_idle_hook(lambda: True)
    with pytest.raises(RuntimeError, match="livelock"):
        clock.step()


def test_scaled_clock_over_a_fake_real_clock() -> None:
    """Driven by a (task.Clock) real clock, ScaledClock at speed 10 shows 10x the elapsed time, fires a
    call scheduled 5 s ahead after 0.5 real seconds, and reports getTime() in scaled time."""
    real = task.Clock()
    real.advance(500.0)
    clock = ScaledClock(real, speed=10.0, start=1000.0)
    seen: list[float] = []
    call = clock.callLater(5.0, lambda: seen.append(clock.seconds()))
    clock.callLater(2.0, lambda: seen.append(clock.seconds()))
    assert call.getTime() == 1005.0
    assert [c.getTime() for c in real.getDelayedCalls()] == [500.2]  # one timer, for the earliest call
    real.advance(0.2)
    assert seen == [1002.0] and clock.seconds() == 1002.0
    real.advance(0.29)
    assert seen == [1002.0]
    real.advance(0.01)
    assert seen == [1002.0, pytest.approx(1005.0)]
    assert real.getDelayedCalls() == [] and clock.getDelayedCalls() == []


def test_scaled_clock_rearms_for_earlier_calls_and_cancels() -> None:
    """A call scheduled earlier than the armed one re-arms the real timer; cancelling everything leaves
    the real clock with nothing that fires anything."""
    real = task.Clock()
    clock = ScaledClock(real, speed=2.0, start=0.0)
    seen: list[str] = []
    late = clock.callLater(10.0, seen.append, "late")
    clock.callLater(1.0, seen.append, "early")
    real.advance(0.5)
    assert seen == ["early"]
    late.cancel()
    real.advance(10)
    assert seen == ["early"]
    with pytest.raises(ValueError):
        ScaledClock(real, speed=0)


class ScaledClockOnRealReactor(unittest.TestCase):
    """ScaledClock on the running reactor (real sockets-free timing)."""

    def test_fast_forward_on_real_reactor(self) -> object:
        """At speed 1000 a call 2 simulated seconds ahead fires within real milliseconds, in order."""
        from twisted.internet import reactor

        clock = ScaledClock(reactor, speed=1000.0)  # type: ignore[arg-type]
        start = clock.seconds()
        seen: list[float] = []
        from twisted.internet.defer import Deferred

        done: Deferred[None] = Deferred()
        clock.callLater(2.0, lambda: seen.append(clock.seconds() - start))
        clock.callLater(3.0, lambda: (seen.append(clock.seconds() - start), done.callback(None)))

        def check(_: object) -> None:
            assert len(seen) == 2
            assert 2.0 <= seen[0] < seen[1]
            assert seen[1] >= 3.0

        return done.addCallback(check)


def test_cancelled_far_off_calls_do_not_grow_the_heap_and_live_ones_still_fire_in_order() -> None:
    """Every simulated caller arms a patience timer far ahead and most are cancelled when the call is answered:
    with lazy deletion alone the heap held every one until its time (12,000 after two minutes of the soak's
    traffic). Dead entries are dropped when the heap doubles; the live calls fire as before."""
    from sim.clock import COMPACT_MIN

    clock = VirtualClock(start=0.0)
    fired: list[int] = []
    sizes = []
    for i in range(50_000):
        clock.callLater(3600.0, fired.append, -1).cancel()  # a patience timer, cancelled at once
        if i % 1000 == 0:
            clock.callLater(10.0 + i / 1000, fired.append, i // 1000)  # a live one now and then
        sizes.append(len(clock._heap))
    assert max(sizes) <= 2 * COMPACT_MIN + 1 and clock.pending() == 50
    clock.run_until(100.0)
    assert fired == list(range(50))
