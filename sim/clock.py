"""The simulator's clocks: virtual time (as fast as the CPU allows, deterministic) and scaled real time.
Imports Twisted's time interfaces only: no reactor is installed or imported here, no sockets, no sim module.

Both clocks are ``IReactorTime`` providers built on one event queue (``_EventQueue``): a heap of
Twisted ``DelayedCall`` objects ordered by (time, scheduling order), so calls due at the same moment
always run in the order they were scheduled. As in SimPy (``simpy/core.py`` vs ``simpy/rt.py``) the
two clocks differ in one place, ``step()``:

- ``VirtualClock.step()`` jumps time to the next call and runs it at once;
- ``ScaledClock.step()`` runs the calls the wall clock (times ``speed``) has reached, and is driven by
  one timer armed on the real reactor for the next call.

A driver flushes in-memory transports between steps with ``add_idle_hook(hook)``: hooks run before
each step until none reports work (``hook() -> bool``), so bytes written by one call are delivered
before time moves on.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence

from twisted.internet import task
from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

IdleHook = Callable[[], object]

# ScaledClock: seconds of scaled time within which a due call counts as reached.
SLACK = 1e-6

# A hook that keeps reporting work after this many rounds in one idle pass is a livelock.
MAX_IDLE_ROUNDS = 100_000
COMPACT_MIN = 4096  # heap entries before cancelled and fired calls are first dropped


class _EventQueue:
    """Heap of delayed calls shared by both clocks. Subclasses define ``seconds()`` and ``step()``."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, DelayedCall]] = []
        self._seq = itertools.count()
        self._live = 0
        self._compact_at = COMPACT_MIN  # heap entries past which dead ones are dropped (``_compact``)
        self._hooks: list[IdleHook] = []
        self.fired = 0  # how many delayed calls have run (for benchmarks and tests)

    def seconds(self) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- IReactorTime -----------------------------------------------------------------------------
    def callLater(self, delay: float, callable: Callable[..., object], *args: object,
                  **kw: object) -> IDelayedCall:
        """Schedule ``callable(*args, **kw)`` ``delay`` seconds from now (negative delays mean now)."""
        when = self.seconds() + max(0.0, float(delay))
        call = DelayedCall(when, callable, args, kw, self._cancelled, self._reset, self.seconds)
        self._live += 1
        self._push(call, when)
        return call

    def getDelayedCalls(self) -> Sequence[IDelayedCall]:
        """Pending calls, earliest first."""
        seen: set[int] = set()
        out: list[DelayedCall] = []
        for _when, _seq, call in sorted(self._heap, key=lambda e: (e[0], e[1])):
            if call.cancelled or call.called or id(call) in seen:
                continue
            seen.add(id(call))
            out.append(call)
        out.sort(key=lambda c: c.getTime())
        return out

    # -- idle hooks -------------------------------------------------------------------------------
    def add_idle_hook(self, hook: IdleHook) -> None:
        """Run ``hook()`` between steps until it returns a false value (e.g. a transport flush)."""
        self._hooks.append(hook)

    def remove_idle_hook(self, hook: IdleHook) -> None:
        self._hooks.remove(hook)

    def run_idle(self) -> None:
        """Run the idle hooks until none of them reports work."""
        for _ in range(MAX_IDLE_ROUNDS):
            busy = False
            for hook in list(self._hooks):
                if hook():
                    busy = True
            if not busy:
                return
        raise RuntimeError(f"idle hooks still busy after {MAX_IDLE_ROUNDS} rounds (livelock?)")

    # -- queue internals --------------------------------------------------------------------------
    def _push(self, call: DelayedCall, when: float) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), call))
        if len(self._heap) > self._compact_at:
            self._compact()
        self._queue_changed(when)

    def _compact(self) -> None:
        """Drop the entries of cancelled and fired calls. Lazy deletion leaves them in the heap until their time
        comes, so a long virtual run that cancels far-off timers (a caller's patience, a max wait) would grow
        the heap with them; run when the heap doubled since the last compaction, amortised O(1) a call."""
        self._heap = [e for e in self._heap if not (e[2].cancelled or e[2].called)]
        heapq.heapify(self._heap)
        self._compact_at = max(COMPACT_MIN, 2 * len(self._heap))

    def _queue_changed(self, when: float) -> None:
        """Hook for ``ScaledClock``: a call was queued for ``when``."""

    def _cancelled(self, call: DelayedCall) -> None:
        # Lazy deletion: the heap entry stays and is skipped when it comes up.
        self._live -= 1

    def _reset(self, call: DelayedCall) -> None:
        # DelayedCall.reset() to an earlier time lands here; later times are handled via delayed_time.
        self._push(call, call.time)

    def _head(self) -> float | None:
        """Time of the earliest pending call, dropping dead heap entries on the way."""
        heap = self._heap
        while heap:
            when, _seq, call = heap[0]
            if call.cancelled or call.called or when != call.time:
                # done, or a stale entry of a call reset to an earlier time (its new entry is queued)
                heapq.heappop(heap)
                continue
            if call.delayed_time:
                # reset()/delay() to a later time: DelayedCall parks the difference in delayed_time
                heapq.heappop(heap)
                call.activate_delay()
                self._push(call, call.time)
                continue
            return when
        return None

    def _fire_head(self) -> None:
        """Run the earliest pending call (the caller has checked that one exists)."""
        _when, _seq, call = heapq.heappop(self._heap)
        call.called = 1
        self._live -= 1
        self.fired += 1
        call.func(*call.args, **call.kw)

    def pending(self) -> int:
        """Number of pending delayed calls."""
        return self._live


@implementer(IReactorTime)
class VirtualClock(_EventQueue, task.Clock):
    """Deterministic virtual time: ``step()`` jumps to the next call; nothing waits for the wall clock."""

    def __init__(self, start: float = 0.0) -> None:
        _EventQueue.__init__(self)
        self.rightNow = float(start)

    # task.Clock keeps a plain ``calls`` list; ours is derived from the heap.
    @property
    def calls(self) -> list[DelayedCall]:  # type: ignore[override]
        return list(self.getDelayedCalls())  # type: ignore[arg-type]

    @calls.setter
    def calls(self, value: list[DelayedCall]) -> None:
        if value:
            raise AttributeError("VirtualClock.calls is read-only; use callLater")

    def seconds(self) -> float:
        return self.rightNow

    def step(self) -> bool:
        """Flush (idle hooks), then jump to the next pending call and run it. False when none is left."""
        self.run_idle()
        when = self._head()
        if when is None:
            return False
        if when > self.rightNow:
            self.rightNow = when
        self._fire_head()
        return True

    def next_time(self) -> float | None:
        """When the next pending call is due, or None."""
        return self._head()

    def run_until(self, t: float) -> int:
        """Run every call due up to ``t`` (inclusive), then set the time to ``t``. Returns calls run."""
        fired = 0
        while True:
            self.run_idle()
            when = self._head()
            if when is None or when > t:
                break
            self.step()
            fired += 1
        if t > self.rightNow:
            self.rightNow = t
        return fired

    def run_for(self, dt: float) -> int:
        """``run_until(now + dt)``."""
        return self.run_until(self.rightNow + dt)

    def run(self, max_calls: int | None = None) -> int:
        """Step until no call is pending (or ``max_calls`` ran). Returns calls run."""
        fired = 0
        while (max_calls is None or fired < max_calls) and self.step():
            fired += 1
        return fired

    def advance(self, amount: float) -> None:
        """task.Clock compatibility: ``run_for(amount)`` (calls see their own due time as 'now')."""
        self.run_for(amount)


@implementer(IReactorTime)
class ScaledClock(_EventQueue):
    """Real time sped up ``speed`` times: ``seconds() = start + speed * (real elapsed)``.

    ``callLater(d)`` fires after ``d / speed`` real seconds (one reactor timer serves the whole queue);
    the returned ``IDelayedCall.getTime()`` is in scaled time.
    """

    def __init__(self, reactor: IReactorTime, speed: float = 1.0, start: float | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        super().__init__()
        self.reactor = reactor
        self.speed = float(speed)
        self._real0 = reactor.seconds()
        self._start = self._real0 if start is None else float(start)
        self._timer: IDelayedCall | None = None
        self._armed_for: float | None = None
        self._floor = self._start

    def seconds(self) -> float:
        # never behind the due time of a call already run, so a call sees "now >= my due time"
        return max(self._floor, self._start + self.speed * (self.reactor.seconds() - self._real0))

    def step(self) -> bool:
        """Flush (idle hooks) and run the calls the scaled wall clock has reached; then re-arm the timer.
        Returns True if a call ran."""
        ran = False
        while True:
            self.run_idle()
            when = self._head()
            # a call counts as reached within SLACK: float rounding of the real clock must not make the
            # timer fire a hair early forever
            if when is None or when > self.seconds() + SLACK:
                break
            self._floor = max(self._floor, when)
            self._fire_head()
            ran = True
        self._arm()
        return ran

    def _queue_changed(self, when: float) -> None:
        if self._armed_for is None or when < self._armed_for:
            self._arm()

    def _arm(self) -> None:
        when = self._head()
        if when == self._armed_for and self._timer is not None and self._timer.active():
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._armed_for = when
        if when is not None:
            delay = max(0.0, (when - self.seconds()) / self.speed)
            self._timer = self.reactor.callLater(delay, self._wake)

    def _wake(self) -> None:
        self._timer = None
        self._armed_for = None
        self.step()

    def stop(self) -> None:
        """Disarm the reactor timer (pending calls stay queued; ``step()`` re-arms)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._armed_for = None
