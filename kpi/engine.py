"""The KPI engine on the bus: it subscribes to the events it counts and hands them to the pure core
(``kpi.core.KpiCore``); nobody calls it. No outputs: the figures leave through the feed (``kpi.feed``),
which the application's shell drives on its timer. ``OtherNodes``: with several nodes, the other nodes' shared
events into the same core."""

from __future__ import annotations

from collections.abc import Iterable

from cti.bus import Outputs, Reactive
from kpi.core import KpiCore
from kpi.rebuild import replay


class KpiEngine(Reactive):
    """``core``: the statistics; ``subscriptions``: the event types it counts (this node's events). The other
    nodes' come through ``OtherNodes``. ``rebuilt_at``: when the figures were last rebuilt from the records."""

    def __init__(self, core: KpiCore) -> None:
        self.core = core
        self.subscriptions = KpiCore.SUBSCRIPTIONS
        self.rebuilt_at = -float("inf")

    def handle(self, event: object, now: float) -> Outputs:
        self.core.observe(event, now)
        return ()

    def rebuild(self, events: Iterable[object], now: float) -> int:
        """Count the events the stored records stand for (``kpi.rebuild.replay``), before live ones."""
        self.rebuilt_at = now
        return replay(self.core, events, now)


class OtherNodes(Reactive):
    """Several nodes: the other nodes' events of ``kinds`` (the shared ones the statistics count), counted in
    ``engine``'s core as this node's are, so that every node's figures are the whole centre's. A node never gets
    its own events back, so nothing of its own is counted twice. Nor is another node's: an event from before the
    figures were rebuilt from the records (``KpiEngine.rebuild``: the nodes share the database, whose records hold
    it) is skipped, which is what a restarted node reads first (what its group kept while it was away)."""

    subscriptions: tuple[type, ...] = ()

    def __init__(self, engine: KpiEngine, kinds: tuple[type, ...]) -> None:
        self.engine = engine
        self.remote_subscriptions = kinds
        self.skipped = 0  # events already in the records

    def handle(self, event: object, now: float) -> Outputs:
        ts = getattr(event, "ts", None)
        if isinstance(ts, (int, float)) and ts < self.engine.rebuilt_at:
            self.skipped += 1
            return ()
        self.engine.core.observe(event, now)
        return ()
