"""The statistics' way to the supervisors: the KPI engine (``kpi.engine``) and its feed (``kpi.feed``)
wired to the console hub and the reactor. A timer polls the feed every ``POLL`` seconds while anyone is
subscribed (the feed coalesces: at most one frame per topic per ``min_interval``) and pushes its frames to
the sessions they are for; ``subscribe``/``unsubscribe``/``drop`` are the console's requests."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from agent_console.backend import ConsoleError
from kpi.core import KpiCore
from kpi.feed import Feed

log = logging.getLogger("centre.server")

POLL = 0.01  # seconds between looks at the feed while someone is subscribed (a stream due waits at most this)


class SessionPusher(Protocol):
    def push_to_session(self, session_id: str, message: dict[str, Any]) -> bool: ...


class KpiPush:
    """The feed of ``core`` for the hub's supervisor sessions. ``pusher()``: the hub, or None without one."""

    def __init__(self, core: KpiCore, clock: IReactorTime, pusher: Callable[[], SessionPusher | None], *,
                 min_interval: float = 0.2, refresh: float = 1.0, team_interval: float = 1.0) -> None:
        self.core = core
        self.clock = clock
        self.pusher = pusher
        self.feed = Feed(core.figures, self._known, epoch=uuid.uuid4().hex[:12], min_interval=min_interval,
                         refresh=refresh, intervals={"team": team_interval})
        self._call: IDelayedCall | None = None
        self._topics = frozenset(core.topics())

    def _known(self, topic: str) -> bool:
        return topic in self._topics

    def subscribe(self, session_id: str, topics: list[str], resume: Mapping[str, Mapping[str, Any]] | None
                  ) -> dict[str, Any]:
        """The ``subscribe`` request's result: the topics, and per topic its snapshot or the deltas missed."""
        try:
            frames = self.feed.subscribe(session_id, topics, self.clock.seconds(), resume)
        except KeyError as exc:
            raise ConsoleError("unknown-topic", f"no such topic {str(exc.args[0])[:80]!r}",
                               known=sorted(self._topics)) from None
        self._arm()
        return {"topics": list(dict.fromkeys(topics)), "epoch": self.feed.epoch, "frames": frames}

    def unsubscribe(self, session_id: str, topics: list[str]) -> dict[str, Any]:
        self.feed.unsubscribe(session_id, topics)
        return {"topics": sorted(self.feed.sessions.get(session_id, ()))}

    def drop(self, session_id: str) -> None:
        self.feed.drop(session_id)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _arm(self) -> None:
        if self._call is None or not self._call.active():
            self._call = self.clock.callLater(POLL, self._tick)

    def _tick(self) -> None:
        self._call = None
        if not self.feed.has_subscribers():
            return
        pusher = self.pusher()
        try:
            for session_id, message in self.feed.due(self.clock.seconds(), self.core.dirty):
                if pusher is None or not pusher.push_to_session(session_id, message):
                    self.feed.drop(session_id)  # gone: it resumes when it comes back
        except Exception:
            log.exception("statistics push failed")
        self._arm()
