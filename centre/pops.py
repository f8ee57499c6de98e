"""The screen-pop engine: looks a caller up while they wait, pops them to the agent at offer time.

A bus engine. ``CallQueued`` (after the ACD has seen it): a caller the ACD did not offer at once has
the look-up done while waiting, so that the pop at offer time is complete at once. ``CallOffered`` (the
ACD emits it before its ``OfferCall``, so the screen shows the caller before the phone rings): the pop is
composed and pushed to the agent, and kept as the session's pop. ``SessionAdopted`` (a restart): the
reconnecting console gets the pop again. ``AgentStateChanged``: the pop an agent was sent is kept while
it is reserved, on the call or in its wrap-up, so that a console that resumes shows it again.

Pops are read from the session engine (``centre.call_sessions``); a look-up answering after the offer
is over is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from acd.events import AgentStateChanged, CallOffered
from centre.call_sessions import CallSessions, SessionAdopted
from cti.bus import Outputs, Reactive
from cti.contract import CTI_CAMPAIGN, CTI_LEAD_ID
from cti.events import CallQueued
from cti.sessions import CallSession
from ivr.flow import Flow
from ivr.ports import RecentCompletions
from screenpop.context import pop_context
from screenpop.lookup import PopLookup

log = logging.getLogger(__name__)

#: Agent states in which the agent's last pop is kept for a resuming console.
KEEP_POP = frozenset({"reserved", "on_call", "wrap_up"})

LeadFields = Callable[[str, str], dict[str, str]]


class ScreenPops(Reactive):
    """``lookup`` is set once the database is open (None: no pops). ``push(agent, message)`` sends a pop
    to an agent's console (a look-up may answer later than the event that asked for it)."""

    subscriptions = (CallQueued, CallOffered, AgentStateChanged, SessionAdopted)

    def __init__(self, sessions: CallSessions, *, ivr: RecentCompletions, lead_fields: LeadFields | None,
                 flows: Mapping[str, Flow], push: Callable[[str, dict[str, Any]], None]) -> None:
        self.sessions = sessions
        self.ivr = ivr
        self.lead_fields = lead_fields
        self.flows = flows
        self.push = push
        self.lookup: PopLookup | None = None
        # agent -> the last pop it was sent (as "type": "pop"), kept while the agent is reserved, on the
        # call or in its wrap-up.
        self.agent_pops: dict[str, dict[str, Any]] = {}
        self._handlers: dict[type, Callable[[Any, float], None]] = {
            CallQueued: self._on_queued, CallOffered: self._on_offered, AgentStateChanged: self._on_agent_state,
            SessionAdopted: self._on_adopted,
        }

    def handle(self, event: object, now: float) -> Outputs:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event, now)
        return ()

    def _on_queued(self, event: CallQueued, now: float) -> None:
        session = self.sessions.opened_by(event)
        if session is not None and not session.agent_id:
            self._prefetch(event, now)  # the caller waits: warm the pop (an offer at once looked it up)

    def _on_offered(self, event: CallOffered, now: float) -> None:
        session = self.sessions.get(event.server, event.uniqueid)
        if session is not None:
            self._pop(session, now)

    def _on_agent_state(self, event: AgentStateChanged, now: float) -> None:
        if event.state not in KEEP_POP:
            self.agent_pops.pop(event.agent_id, None)

    def _on_adopted(self, event: SessionAdopted, now: float) -> None:
        self._pop(event.session, now)

    def _prefetch(self, event: CallQueued, now: float) -> None:
        """Warm the look-up cache while the caller waits, so the pop at offer time is complete at once."""
        if self.lookup is None:
            return
        ctx = pop_context(event, agent_id="", now=now, ivr=self.ivr.get(event.uniqueid))
        self.lookup.resolve(ctx).addErrback(lambda f: log.debug("prefetch failed: %s", f.getErrorMessage()))

    def _pop(self, session: CallSession, now: float) -> None:
        """Look up and push the screen pop of ``session`` to its agent."""
        if self.lookup is None:
            return
        q, agent_id = session.queued, session.agent_id
        campaign = q.data.get(CTI_CAMPAIGN)
        lead = self.lead_fields(campaign, q.data.get(CTI_LEAD_ID, "")) \
            if self.lead_fields is not None and campaign else None
        ctx = pop_context(q, agent_id=agent_id, now=now, ivr=self.ivr.get(q.uniqueid), lead=lead, flows=self.flows)

        def send(message: dict[str, Any]) -> None:
            if session.agent_id != agent_id:
                return  # the offer is over; a late look-up must not pop a stale call
            session.pop = self.agent_pops[agent_id] = dict(message, type="pop")  # an update is the whole pop
            self.push(agent_id, message)

        self.lookup.pop(ctx, send)
