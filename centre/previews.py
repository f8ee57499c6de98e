"""Previews in the application (preview mode, a campaign stepped down to preview, an agent's own callbacks):
the dialer's previews become ACD holds and console pushes.

An engine on the bus (``cti.bus.Engine``): on ``PreviewOffered`` it holds the agent in the ACD for the
lead's attempt (``AcdService.reserve_preview``: reserved, reason ``preview``) and pushes the ``preview``
frame to the agent's console; an agent the ACD will not hold (no longer ready) has its preview withdrawn
(the lead goes back at once). On ``PreviewEnded`` it frees the agent (``AcdService.end_preview``: ready,
or not ready with the preview's reason) unless the preview was accepted (the agent stays held for the
call), and tells the console the preview is over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from acd.service import AcdService
from acd.states import AcdError
from dialer.events import PreviewEnded, PreviewOffered
from dialer.shell import Dialer

log = logging.getLogger("cti.previews")


def preview_message(e: PreviewOffered) -> dict[str, Any]:
    """The console's ``preview`` frame for a lead shown to an agent (``callback``: the agent's own scheduled
    callback, with when it was due and its notes; null for a campaign's lead)."""
    callback = None if e.callback_due is None else {"due": e.callback_due, "notes": e.callback_notes}
    return {"type": "preview", "status": "offered", "lead_id": e.lead_id, "campaign": e.campaign,
            "number": e.fields.get("phone", ""), "name": e.fields.get("name", ""), "fields": dict(e.fields),
            "deadline": e.deadline, "callback": callback}


class PreviewHolds:
    """Engine: the dialer's previews as ACD holds and console pushes."""

    subscriptions: tuple[type, ...] = (PreviewOffered, PreviewEnded)

    def __init__(self, acd: AcdService, dialer: Dialer, push: Callable[[str, dict[str, Any]], None]) -> None:
        self.acd = acd
        self.dialer = dialer
        self.push = push

    def handle(self, event: object, now: float) -> list[object]:
        if isinstance(event, PreviewOffered):
            try:
                out: list[object] = list(self.acd.reserve_preview(event.agent_id, event.ref, now))
            except AcdError as exc:
                log.info("preview of lead %s not shown to %s: %s", event.lead_id, event.agent_id, exc.message)
                self.dialer.preview_withdraw(event.agent_id, now)
                return []
            self.push(event.agent_id, preview_message(event))
            return out
        if isinstance(event, PreviewEnded):
            self.push(event.agent_id, {"type": "preview", "status": event.outcome, "lead_id": event.lead_id,
                                       "campaign": event.campaign, "reason": event.reason})
            if not event.release:
                return []
            return list(self.acd.end_preview(event.agent_id, event.ref, now, reason=event.not_ready or None))
        return []

    def tick(self, now: float) -> list[object]:
        return []

    def next_deadline(self) -> float | None:
        return None
