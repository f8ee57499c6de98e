"""The ACD's news for people: each agent's ``state`` frame on its console, the ACD's warnings in the log, the
dialer's warnings for the supervisors' wallboard (a campaign running out of leads, a store failure),
and the agent state history and queue results to the recorder (``acd.recorder``). Bus engines."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from acd.events import AcdWarning, AgentStateChanged, QueueCallFinished
from acd.recorder import Recorder
from acd.service import AcdService
from cti.bus import Outputs, Reactive
from cti.commands import PushToAgent
from dialer.events import DialerWarning

log = logging.getLogger("centre.server")

WARNINGS_KEPT = 20  # the dialer's latest warnings the wallboard shows
STATE_FRAME = "state"  # the ref of the state-frame pushes


def state_message(acd: AcdService, agent_id: str) -> dict[str, Any]:
    """The console's ``state`` frame of an agent (``AcdError`` for an unknown agent)."""
    snap = acd.agent_snapshot(agent_id)
    frame = {"type": "state", "agent_id": agent_id, "state": snap.state.value, "reason": snap.reason or None,
             "since": snap.since, "endpoint": snap.endpoint, "call_id": snap.call.call_id if snap.call else None}
    if snap.by:  # a supervisor forced this state: the console says who
        frame["by"] = snap.by
    return frame


class AgentFeed(Reactive):
    """``AgentStateChanged`` -> the agent's ``state`` frame (only when there are consoles: ``has_consoles``);
    ``AcdWarning`` -> a warning in the log; ``DialerWarning`` -> kept for the wallboard (``warnings``)."""

    subscriptions = (AgentStateChanged, AcdWarning, DialerWarning)

    def __init__(self, acd: AcdService, has_consoles: Callable[[], bool]) -> None:
        self.acd = acd
        self.has_consoles = has_consoles
        self._warnings: deque[dict[str, Any]] = deque(maxlen=WARNINGS_KEPT)

    def warnings(self) -> list[dict[str, Any]]:
        """The dialer's latest warnings, oldest first, as the wallboard shows them."""
        return list(self._warnings)

    def handle(self, event: object, now: float) -> Outputs:
        if isinstance(event, AgentStateChanged):
            if self.has_consoles():  # no consoles (virtual runs): no snapshot to build
                return [PushToAgent(STATE_FRAME, event.agent_id, state_message(self.acd, event.agent_id))]
        elif isinstance(event, AcdWarning):
            log.warning("acd: %s: %s", event.code, event.message)
        elif isinstance(event, DialerWarning):
            self._warnings.append({"ts": event.ts, "campaign": event.campaign, "code": event.code,
                                   "message": event.message[:300]})
        return ()


class RecorderFeed(Reactive):
    """Agent state changes and finished queue calls to the recorder (None until the database is open)."""

    subscriptions = (QueueCallFinished, AgentStateChanged)

    def __init__(self) -> None:
        self.recorder: Recorder | None = None

    def handle(self, event: object, now: float) -> Outputs:
        if self.recorder is not None:
            self.recorder.record(event)
        return ()
