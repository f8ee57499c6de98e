"""Keeps long-lived objects out of the garbage collector's full passes.

A server holding 1,000 console connections has a few hundred thousand long-lived objects (websocket
protocol state, transports, tasks); a full (generation 2) collection walks them all and holds the event
loop for 40-100 ms on this class of machine, which is what a screen pop then waits for. ``gc.freeze()``
moves every object alive at that moment into a permanent generation that collections skip, so a full pass
then costs only what is new.

The price of freezing is that cyclic garbage among frozen objects is not reclaimed (reference counting
still frees everything else): a console that disconnects leaves its cycles behind. So after enough
connections have closed since the last freeze (``refreeze_after`` of them, and at least a quarter of the
connections frozen), the policy unfreezes, collects once (one full pause, logged), and freezes again.

Full collections are also spaced out (``space_full_collections``): CPython starts one after 10 collections of
the middle generation (and when the objects surviving since the last full one are a quarter of those it
walked then). A server with frozen start-up objects walks only the live traffic's state, but 10 is soon
reached at 100 calls/s: five full passes in 30 s, each holding the loop 60-130 ms with ~70,000 objects,
which is what a supervisor's update or a screen pop then waits for. After 100 instead, a full pass comes
about once a minute at that rate; young garbage is still collected as often as before, and cycles that
outlive two young collections wait longer to be freed (their memory is small next to the heap).

``LongLivedPolicy`` is pure bookkeeping with the ``gc`` functions passed in (tests pass fakes that count);
``centre.process`` calls ``tick`` every few seconds with the hub's connection counters.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger("cti.gc")

Action = Literal["freeze", "refreeze"]

FULL_AFTER = 100  # middle-generation collections before a full one may run (CPython's default: 10)


def space_full_collections(after: int = FULL_AFTER) -> tuple[int, int, int]:
    """Let a full collection run only after ``after`` middle-generation ones (see the module's docstring);
    returns the thresholds now in force."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, after)
    return gc.get_threshold()


@dataclass
class GcFunctions:
    freeze: Callable[[], None] = gc.freeze
    unfreeze: Callable[[], None] = gc.unfreeze
    collect: Callable[[], int] = gc.collect


@dataclass
class LongLivedPolicy:
    """When to freeze (connections opened and then quiet for ``settle`` seconds) and when to collect what
    closed connections left frozen (see the module's docstring)."""

    settle: float = 2.0
    refreeze_after: int = 50
    functions: GcFunctions = field(default_factory=GcFunctions)
    frozen_opened: int = 0  # connections opened (in total) at the last freeze
    closed_at_collect: int = 0  # connections closed (in total) at the last collection
    _seen_opened: int = 0
    _changed_at: float = 0.0

    def tick(self, opened: int, closed: int, now: float) -> Action | None:
        """``opened`` / ``closed``: connections opened and closed since start; ``now``: a monotonic time."""
        if opened != self._seen_opened:
            self._seen_opened, self._changed_at = opened, now
            return None  # still connecting: wait until it is quiet
        live_frozen = max(0, self.frozen_opened - self.closed_at_collect)
        closed_since = closed - self.closed_at_collect
        if closed_since >= max(self.refreeze_after, live_frozen // 4) and now - self._changed_at >= self.settle:
            started = time.perf_counter()
            self.functions.unfreeze()
            freed = self.functions.collect()
            self.functions.freeze()
            self.frozen_opened, self.closed_at_collect = opened, closed
            log.info("gc: collected what %d closed connections left (%d objects) in %.0f ms; refrozen",
                     closed_since, freed, 1000 * (time.perf_counter() - started))
            return "refreeze"
        if opened > self.frozen_opened and now - self._changed_at >= self.settle:
            self.functions.freeze()
            self.frozen_opened = opened
            return "freeze"
        return None


@dataclass
class PauseWatch:
    """Logs each full collection that held the event loop longer than ``threshold`` seconds (with what it
    walked and freed), so an operator who sees a stall on the wallboard's lag finds its cause in the log.
    ``install`` adds it to ``gc.callbacks``; ``on_gc`` is the callback (tests call it with a fake clock)."""

    threshold: float = 0.2
    clock: Callable[[], float] = time.perf_counter
    longest: float = 0.0  # the longest full pause seen, seconds
    _started: float | None = None

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = self.clock()
            return
        if self._started is None:
            return
        took, self._started = self.clock() - self._started, None
        self.longest = max(self.longest, took)
        if took >= self.threshold:
            log.warning("gc: a full collection held the event loop %.0f ms (%d objects freed, %d frozen, "
                        "%d tracked after it)", 1000 * took, info.get("collected", 0), gc.get_freeze_count(),
                        len(gc.get_objects(2)))

    def install(self) -> PauseWatch:
        gc.callbacks.append(self.on_gc)
        return self

    def uninstall(self) -> None:
        if self.on_gc in gc.callbacks:
            gc.callbacks.remove(self.on_gc)
