"""The KPI engine on the bus: it subscribes to the events it counts and hands them to the pure core
(``kpi.core.KpiCore``); nobody calls it. No outputs: the figures leave through the feed (``kpi.feed``),
which the application's shell drives on its timer."""

from __future__ import annotations

from collections.abc import Iterable

from cti.bus import Outputs, Reactive
from kpi.core import KpiCore
from kpi.rebuild import replay


class KpiEngine(Reactive):
    """``core``: the statistics; ``subscriptions``: the event types it counts; ``remote_subscriptions``: those of
    them it also counts from the other nodes (several nodes: the types they share), so that every node's figures
    are the whole centre's. A node never gets its own events back, so nothing is counted twice."""

    def __init__(self, core: KpiCore, *, remote_subscriptions: tuple[type, ...] = ()) -> None:
        self.core = core
        self.subscriptions = KpiCore.SUBSCRIPTIONS
        self.remote_subscriptions = remote_subscriptions

    def handle(self, event: object, now: float) -> Outputs:
        self.core.observe(event, now)
        return ()

    def rebuild(self, events: Iterable[object], now: float) -> int:
        """Count the events the stored records stand for (``kpi.rebuild.replay``), before live ones."""
        return replay(self.core, events, now)
