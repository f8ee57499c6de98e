"""The session engine: owns every queued call's ``cti.sessions.CallSession`` (one per time in a queue).

A bus engine: domain events (queued, agent leg dialled, bridges for consultations, attended transfers,
call ends) and the ACD's call events (offered, answered, not answered, abandoned, finished) move the
sessions through their table. It returns the agent's console ``call`` frame (``PushToAgent``) and the
agent's part of the call as an interaction row (``InteractionWrite``), and says when an agent's part
went on to someone outside the queues (``SessionTransferred``) or was found after a restart
(``SessionAdopted``). The console backend and the screen pops read the sessions here; nobody keeps a
second copy of a call's state.

A caller who comes back to ``cti-hold`` (a blind transfer to a queue, the IVR again) starts a new
session, offered afresh with its own pop. ``part`` numbers the agents' parts of one call (1 for the
first agent who answered it, 2 after a transfer, ...); the first part's interaction is the call's own
row (``centre.call_log``), which keeps the call's start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from acd.events import CallAbandoned, CallAnswered, CallOffered, OfferNotAnswered, QueueCallFinished
from centre.call_log import InteractionWrite, call_key
from cti.bus import Outputs, Reactive
from cti.commands import PushToAgent
from cti.contract import CTI_CAMPAIGN, CTI_LEAD_ID, is_outbound
from cti.events import (
    CallBridged,
    CallEnded,
    CallQueued,
    CallTransferred,
    CallTransferredOut,
    ChannelAnswered,
    DialStarted,
)
from cti.sessions import CallSession, SessionError, SessionState, SessionTrigger, end_hold

log = logging.getLogger(__name__)

S, T = SessionState, SessionTrigger
CALL_FRAME = "call"  # the ref of the call-frame pushes


class HandledCall(NamedTuple):
    """The last call an agent answered: what its disposition refers to (``[1]`` is the call id, as the
    ``(server, call_id)`` pair this was)."""

    server: str
    call_id: str
    interaction_key: str
    number: str = ""  # the customer's number (a "do not call" disposition puts it on the do-not-call list)
    queue: str = ""  # the queue it came through


@dataclass(frozen=True, slots=True)
class SessionTransferred:
    """An agent's part went on to someone outside the queues (an attended transfer completed)."""

    server: str
    call_id: str


@dataclass(frozen=True, slots=True)
class SessionAdopted:
    """A call found with an agent after a restart was taken on as if this server had offered it."""

    session: CallSession
    outcome: str  # "queued" (still ringing) or "answered"


def interaction_key(session: CallSession) -> str:
    """The customer_interactions key of this agent's part of the call (the call's own key for the first)."""
    base = call_key(session.queued.server, session.queued.call_id)
    return base if session.part <= 1 else f"{base}/{session.part}"


def call_message(session: CallSession) -> dict[str, Any]:
    """The console's ``call`` frame of a session."""
    consult = session.consult
    return {"type": "call", "call_id": session.queued.call_id, "status": session.state.value, "since": session.since,
            "consult": {k: v for k, v in consult.items() if k != "channel"} if consult else None,
            "queue": session.queued.queue, "answered_at": session.answered_at, "held_total": session.held_total}


def frame(session: CallSession) -> PushToAgent:
    return PushToAgent(CALL_FRAME, session.agent_id, call_message(session))


class CallSessions(Reactive):
    """Sessions by (server, caller uniqueid); the last call each agent answered (for its disposition).

    ``started(server, call_id)``: when the call log opened the call; ``channel_up(server, name)``: whether
    a channel is answered (the call tracker); ``tracks(server, uniqueid)``: whether the ACD still has the
    caller queued."""

    subscriptions = (CallQueued, DialStarted, CallBridged, ChannelAnswered, CallTransferred, CallEnded,
                     CallOffered, CallAnswered, OfferNotAnswered, CallAbandoned, QueueCallFinished)

    def __init__(self, *, started: Callable[[str, str], float | None], channel_up: Callable[[str, str], bool],
                 tracks: Callable[[str, str], bool]) -> None:
        self.started = started
        self.channel_up = channel_up
        self.tracks = tracks
        self._calls: dict[tuple[str, str], CallSession] = {}
        self.last_call: dict[str, HandledCall] = {}  # agent -> the last call answered (for its disposition)
        self._parts: dict[tuple[str, str], int] = {}  # (server, call_id) -> agents' parts answered so far
        self._opened: CallQueued | None = None  # the CallQueued that opened the newest session
        self._handlers: dict[type, Callable[[Any, float], Outputs]] = {
            CallQueued: self._on_queued, DialStarted: self._on_dial_started, CallBridged: self._on_bridged,
            ChannelAnswered: self._on_channel_answered, CallTransferred: self._on_transferred,
            CallEnded: self._on_call_ended, CallOffered: self._on_offered, CallAnswered: self._on_answered,
            OfferNotAnswered: self._on_offer_over, CallAbandoned: self._on_offer_over,
            QueueCallFinished: self._on_finished,
        }

    # ------------------------------------------------------------------ reads
    def get(self, server: str, uniqueid: str) -> CallSession | None:
        return self._calls.get((server, uniqueid))

    def __iter__(self) -> Iterator[CallSession]:
        return iter(list(self._calls.values()))

    def __len__(self) -> int:
        return len(self._calls)

    def opened_by(self, event: CallQueued) -> CallSession | None:
        """The session ``event`` opened (None if it opened none: the same queueing told twice)."""
        return self._calls.get((event.server, event.uniqueid)) if self._opened is event else None

    def call_for_agent(self, agent_id: str) -> CallSession | None:
        for session in self._calls.values():
            if session.agent_id == agent_id and session.state is not S.ENDED:
                return session
        return None

    # ------------------------------------------------------------------ events
    def handle(self, event: object, now: float) -> Outputs:
        handler = self._handlers.get(type(event))
        return handler(event, now) if handler is not None else ()

    def _on_queued(self, event: CallQueued, now: float) -> Outputs:
        key = (event.server, event.uniqueid)
        session = self._calls.get(key)
        if session is not None and session.state is S.WAITING and session.queued.queue == event.queue:
            session.queued = event  # the same queueing told twice
            return ()
        out: list[object] = []
        if session is not None:
            self._end_part(session, out)  # the caller is back in a queue: what an agent had of it is over
        self._calls[key] = CallSession(queued=event, since=now)
        self._opened = event
        return out

    def _on_dial_started(self, event: DialStarted, now: float) -> Outputs:
        session = self._calls.get((event.server, event.uniqueid))
        if session is not None:
            session.agent_channel = event.dest_channel
        return ()

    def _on_bridged(self, event: CallBridged, now: float) -> Outputs:
        """While an agent consults, a bridge of the agent's leg says how it goes: with the caller again
        (the target hung up, or the consultation was cancelled or failed) the agent is back on the call;
        with another channel, that is the consultation call, which Asterisk bridges while the target
        still rings (the target talks when that channel is answered: ``_on_channel_answered``)."""
        for session in self._calls.values():
            if session.state is not S.CONSULTING or session.queued.server != event.server \
                    or session.agent_channel not in event.channels:
                continue
            if session.queued.channel in event.channels:
                session.fire(T.CONSULT_ENDED)
                session.consult, session.since = None, event.ts
                return [frame(session)]
            if session.consult is not None:
                other = next((c for c in event.channels if c != session.agent_channel), "")
                answered = self.channel_up(event.server, other)
                session.consult = dict(session.consult, channel=other, state="talking" if answered else "ringing")
                if answered:
                    return [frame(session)]
            return ()
        return ()

    def _on_channel_answered(self, event: ChannelAnswered, now: float) -> Outputs:
        """The consultation call was answered: the target is talking to the agent."""
        for session in self._calls.values():
            if session.state is S.CONSULTING and session.consult is not None \
                    and session.queued.server == event.server and session.consult.get("channel") == event.channel:
                session.consult = dict(session.consult, state="talking")
                return [frame(session)]
        return ()

    def _on_transferred(self, event: CallTransferred, now: float) -> Outputs:
        # An attended transfer completed (from the console or the phone's own keys): the caller went on
        # to someone outside the queue, which is how this call ends for the contact centre.
        if event.result.lower() != "success":
            return ()
        for session in self._calls.values():
            if session.queued.server == event.server and event.transferee_channel == session.queued.channel:
                session.transferred_out = True
                return [SessionTransferred(session.queued.server, session.queued.call_id)]
        return ()

    def _on_call_ended(self, event: CallEnded, now: float) -> Outputs:
        if not event.merged_into:
            self._parts.pop((event.server, event.call_id), None)
        return ()

    def _on_offered(self, event: CallOffered, now: float) -> Outputs:
        session = self._calls.get((event.server, event.uniqueid))
        if session is None:
            return ()
        if not session.can(T.OFFER):
            log.debug("call %s offered to %s while %s", event.call_id, event.agent_id, session.state.value)
            return ()
        session.fire(T.OFFER)
        session.agent_id, session.since = event.agent_id, event.ts
        if event.queue != session.queued.queue:  # overflowed while waiting: the call is now that queue's
            session.queued = replace(session.queued, queue=event.queue)
        return [frame(session)]

    def _on_answered(self, event: CallAnswered, now: float) -> Outputs:
        session = self._calls.get((event.server, event.uniqueid))
        if session is None:
            return ()
        try:
            session.fire(T.ANSWER)
        except SessionError as exc:
            log.warning("%s", exc)
            return ()
        session.since = session.answered_at = event.ts
        parts = (event.server, session.queued.call_id)
        session.part = self._parts[parts] = self._parts.get(parts, 0) + 1
        self.last_call[event.agent_id] = HandledCall(event.server, session.queued.call_id, interaction_key(session),
                                                   session.queued.caller_num, session.queued.queue)
        return [frame(session), self._interaction(session, event.agent_id)]

    def _interaction(self, session: CallSession, agent_id: str) -> InteractionWrite:
        """The agent's part of the call becomes an interaction of the customer (the disposition completes
        it). The first part is the call's own row (``centre.call_log``), which keeps the call's start."""
        q = session.queued
        customer = (session.pop or {}).get("customer") or {}
        started = self.started(q.server, q.call_id) if session.part <= 1 else None
        fields = {"direction": "outbound" if is_outbound(q.data) else "inbound",
                  "customer_id": customer.get("customer_id"), "ani": q.caller_num, "dnis": q.dnis, "queue": q.queue,
                  "campaign": q.data.get(CTI_CAMPAIGN, ""), "lead_id": q.data.get(CTI_LEAD_ID, ""),
                  "agent_id": agent_id, "outcome": "answered"}
        return InteractionWrite(interaction_key(session), {k: v for k, v in fields.items() if v},
                                started_at=started if started is not None else q.ts)

    def _on_offer_over(self, event: OfferNotAnswered | CallAbandoned, now: float) -> Outputs:
        # The offer is over (or the caller left): the agent's console sees the call end; a caller still
        # waiting is offered afresh later, with a new pop.
        key = (event.server, event.uniqueid)
        session = self._calls.get(key)
        out: list[object] = []
        if session is not None and session.agent_id and session.can(T.OFFER_ENDED):
            session.fire(T.OFFER_ENDED)
            out.append(frame(session))
            session.fire(T.REQUEUE)
            session.agent_id, session.agent_channel, session.pop = "", "", None
        if isinstance(event, CallAbandoned):
            self._calls.pop(key, None)
        return out

    def _on_finished(self, event: QueueCallFinished, now: float) -> Outputs:
        # One time in a queue is over. The session goes with it unless the caller is in a queue again
        # already (a transfer to a queue, an overflow): that is a new time, with its own session.
        key = (event.server, event.uniqueid)
        session = self._calls.get(key)
        out: list[object] = []
        if session is None:
            pass
        elif event.agent_id and session.agent_id == event.agent_id and session.state is not S.RINGING:
            talk_end = event.answered_at + event.talk if event.answered_at is not None else event.ts
            if session.state is S.HELD:  # the call ended on hold: that hold ends with it
                end_hold(session, talk_end)
            self._end_part(session, out)
            del self._calls[key]
            fields: dict[str, Any] = {}
            if session.part > 1 and event.answered_at is not None:  # a later part ends with its talk
                fields["ended_at"] = talk_end
            if session.holds:  # the part's holds (the hold statistics are rebuilt from them)
                fields.update(hold_seconds=session.held_total, hold_count=session.holds, hold_max=session.hold_max)
            if session.transferred_out and event.overflow_action != "transferred":  # (not back to a queue)
                fields["transferred_at"] = event.ts
                out.append(CallTransferredOut(ts=event.ts, queue=event.queue, agent_id=event.agent_id,
                                              server=event.server, uniqueid=event.uniqueid, call_id=event.call_id))
            if fields:
                out.append(InteractionWrite(interaction_key(session), fields))
        elif not self.tracks(event.server, event.uniqueid):
            del self._calls[key]
        return out

    def _end_part(self, session: CallSession, out: list[object]) -> None:
        """The agent's console sees its call end (once)."""
        if session.agent_id and session.can(T.END):
            session.fire(T.END)
            out.append(frame(session))

    # ------------------------------------------------------------------ restart
    def adopt(self, session: CallSession) -> Outputs:
        """A call found with an agent after a restart (``centre.agent_restore``): tracked as if this server
        had offered it, with its record open and, once answered, the agent's disposition of it."""
        q = session.queued
        self._calls[session.key] = session
        ringing = session.state is S.RINGING
        if not ringing:
            parts = (q.server, q.call_id)
            session.part = self._parts[parts] = max(1, self._parts.get(parts, 0))
            self.last_call[session.agent_id] = HandledCall(q.server, q.call_id, interaction_key(session),
                                                           queue=q.queue)
        # the reconnecting console gets the call frame, then the caller's pop again (without the IVR path, lost)
        return [frame(session), SessionAdopted(session, "queued" if ringing else "answered")]
