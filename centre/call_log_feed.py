"""The call log on the bus: events in, ``InteractionWrite``s out; and the writes' way to the database.

``CallLogFeed`` feeds ``centre.call_log.CallLog`` the events it records (queued, AMD results, call ends,
the ACD's answered / abandoned / overflowed, the IVR's start and end, an agent's transfer out, a call
adopted after a restart) and returns its writes as events. ``InteractionSink`` takes those writes to
the ``InteractionWriter`` once the database is open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from acd.events import CallAbandoned, CallAnswered, CallOverflowed
from centre.call_log import CallLog, InteractionWrite, InteractionWriter
from centre.call_sessions import SessionAdopted, SessionTransferred
from cti.bus import Outputs, Reactive
from cti.contract import CTI_CAMPAIGN, CTI_LEAD_ID, is_outbound
from cti.events import AmdResult, CallEnded, CallQueued
from ivr.events import IvrCompleted, IvrEvent, IvrStarted

#: (server, uniqueid, channel variables) -> the number an outbound call dialled.
CustomerNumber = Callable[[str, str, dict[str, str]], str]
#: An IVR event -> the (server, call id) of its channel.
IvrCall = Callable[[IvrEvent], tuple[str, str]]
#: (server, uniqueid) -> the CTI_* variables seen on the channel.
ChannelVariables = Callable[[str, str], dict[str, str]]


class CallLogFeed(Reactive):
    subscriptions = (CallQueued, CallEnded, AmdResult, CallAnswered, CallAbandoned, CallOverflowed, IvrStarted,
                     IvrCompleted, SessionTransferred, SessionAdopted)

    def __init__(self, log: CallLog, *, customer_number: CustomerNumber, variables: ChannelVariables,
                 ivr_call: IvrCall) -> None:
        self.log = log
        self.customer_number = customer_number
        self.variables = variables
        self.ivr_call = ivr_call
        self._handlers: dict[type, Callable[[Any], list[InteractionWrite]]] = {
            CallQueued: lambda e: self.log.handle(e, e.caller_num),
            CallEnded: self.log.handle, CallAnswered: self.log.handle, CallAbandoned: self.log.handle,
            CallOverflowed: self.log.handle, AmdResult: self._amd, IvrStarted: self._ivr_started,
            IvrCompleted: lambda e: self.log.ivr_completed(*self.ivr_call(e), e.outcome),
            SessionTransferred: lambda e: self.log.transferred(e.server, e.call_id),
            SessionAdopted: self._adopted,
        }

    def handle(self, event: object, now: float) -> Outputs:
        handler = self._handlers.get(type(event))
        return handler(event) if handler is not None else ()

    def _amd(self, event: AmdResult) -> list[InteractionWrite]:
        data = {CTI_CAMPAIGN: event.campaign, CTI_LEAD_ID: event.lead_id,
                **self.variables(event.server, event.uniqueid)}
        return self.log.handle(event, self.customer_number(event.server, event.uniqueid, data))

    def _ivr_started(self, event: IvrStarted) -> list[InteractionWrite]:
        server, call_id = self.ivr_call(event)
        return self.log.ivr_started(server, call_id, event.ts, event.ani, event.dnis)

    def _adopted(self, event: SessionAdopted) -> list[InteractionWrite]:
        q = event.session.queued
        return self.log.adopted(q.server, q.call_id, q.ts, "outbound" if is_outbound(q.data) else "inbound",
                                {"ani": q.caller_num, "dnis": q.dnis, "queue": q.queue}, event.outcome)


class InteractionSink(Reactive):
    """Hands ``InteractionWrite``s to the writer (None until the database is open: dropped)."""

    subscriptions = (InteractionWrite,)

    def __init__(self) -> None:
        self.writer: InteractionWriter | None = None

    def handle(self, event: object, now: float) -> Outputs:
        if self.writer is not None:
            assert isinstance(event, InteractionWrite)
            self.writer.write(event)
        return ()
