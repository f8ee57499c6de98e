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
