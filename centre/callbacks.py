"""Callbacks: stored before anyone is told they are scheduled (the IVR's ``CallbackRequested`` on the
bus, and the agent console's requests)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from twisted.internet import defer

from cti.bus import Outputs, Reactive
from cti.threads import ThreadRunner
from dialer.store import CallbackStore
from ivr.events import CallbackRequested

log = logging.getLogger("centre.server")


class Callbacks(Reactive):
    """Stores callbacks through ``store`` in a worker thread (``run``); both None until the database is open."""

    subscriptions = (CallbackRequested,)

    def __init__(self, lead_of_call: Callable[[str], tuple[str, str] | None] | None = None) -> None:
        self.store: CallbackStore | None = None
        self.run: ThreadRunner | None = None
        self.requested: list[CallbackRequested] = []  # the IVR's requests, in order
        # (campaign, lead) of a campaign's call (``dialer.shell.Dialer.lead_of_call``): an agent's callback on
        # that call is for that lead, and the campaign offers it to the agent first
        self.lead_of_call = lead_of_call

    def handle(self, event: object, now: float) -> Outputs:
        assert isinstance(event, CallbackRequested)
        self.requested.append(event)
        due = event.when if event.when is not None else event.ts
        self.schedule(number=event.number, due=due, queue=event.queue, call_id=event.uniqueid, source="ivr",
                      now=now).addErrback(
            lambda f: log.error("IVR callback for call %s not stored: %s", event.uniqueid, f.getErrorMessage()))
        return ()

    def schedule(self, *, number: str, due: float, source: str, now: float, queue: str = "", notes: str = "",
                 agent_id: str = "", call_id: str = "", lead_id: str = "") -> defer.Deferred[int]:
        """Store a callback (never lost: it is written before the caller or agent is told it is scheduled). One
        on a campaign's call (``call_id``) without a lead is for that call's lead, in that campaign."""
        store, run = self.store, self.run
        if store is None or run is None:
            return defer.fail(RuntimeError("no database: callbacks cannot be stored"))
        campaign = ""
        if call_id and self.lead_of_call is not None:
            found = self.lead_of_call(call_id)
            if found is not None and (not lead_id or lead_id == found[1]):
                campaign, lead_id = found
        d: defer.Deferred[int] = run(lambda: store.add(number=number, due=due, source=source, queue=queue,
                                                       notes=notes, agent_id=agent_id, call_id=call_id,
                                                       lead_id=lead_id, campaign=campaign, now=now))
        return d
