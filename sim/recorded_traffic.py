"""Recorded callers instead of random ones (``cti whatif``): each caller of a recorded day arrives at the
moment it entered its first queue, with its number, its DID, the queue its IVR choices led to and its
priority, waits at most its patience and, once an agent answers, talks as long as it did that day.

The IVR is not walked again: the records keep where a caller's choices led (the queue, its priority and the
IVR's data), not the keys it pressed, so the caller starts in ``cti-hold`` with the variables the IVR's
queue node would have set (``CTI_QUEUE``, ``CTI_PRIORITY``, ``CTI_DNIS``; the skills are the queue's own).
The call's length is the caller's (``RecordedCall.talk``): the agents' phones answer as the ``sim:``
section says but never hang up first (``CallerEndsCalls``). No reactor, no wall clock: the PBX's clock.

``RecordedCall`` is the model (filled from the records by ``centre.whatif_records``); ``RecordedArrivals``
makes those callers arrive and behave.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from twisted.internet.interfaces import IDelayedCall

from cti.ami.message import AMIMessage
from cti.contract import CTI_DNIS, CTI_FLOW, CTI_PRIORITY, CTI_QUEUE, CTI_QUEUED, CTI_RETURNED, HOLD_CONTEXT
from sim.channel import Channel
from sim.far_end import FarEnd, FarEndDirectory
from sim.pbx import Pbx
from sim.traffic import TRUNK_ENDPOINT


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One recorded inbound caller, as the replay needs it.

    ``at``: epoch seconds it entered its first queue; ``patience``: seconds it waits in queue before it
    hangs up (None: it never gives up); ``talk``: seconds from an agent's answer to its hang-up; ``wrapup``:
    seconds of after-call work when the agent ended it before the queue's timer did (None: the timer)."""

    at: float
    did: str
    caller_num: str
    queue: str
    priority: int
    patience: float | None
    talk: float
    flow: str = ""
    wrapup: float | None = None


class CallerEndsCalls:
    """A far-end directory whose agents' phones never hang up by themselves (the caller does): answers and
    ring times as ``inner`` says, no talk time on a phone. Trunk calls (outbound customers) are ``inner``'s."""

    def __init__(self, inner: FarEndDirectory | None, trunk: str = TRUNK_ENDPOINT) -> None:
        self.inner = inner
        self.trunk = trunk

    def call(self, endpoint: str, target: str, now: float) -> FarEnd | None:
        if self.inner is None:
            return FarEnd("answer", ring_time=1.0) if endpoint != self.trunk else None
        far = self.inner.call(endpoint, target, now)
        if far is None or endpoint == self.trunk or far.talk_time is None:
            return far
        return replace(far, talk_time=None)


@dataclass(slots=True)
class _Caller:
    call: RecordedCall
    chan: Channel
    deadline: float | None = None  # when its patience runs out (set when it first waits in a queue)
    timer: IDelayedCall | None = None


class RecordedArrivals:
    """Makes ``calls`` arrive on ``pbx`` at their times (those before now are skipped) and behave as recorded."""

    def __init__(self, pbx: Pbx, calls: Iterable[RecordedCall], *, trunk: str = TRUNK_ENDPOINT) -> None:
        self.pbx = pbx
        self.calls = sorted(calls, key=lambda c: (c.at, c.caller_num))
        self.trunk = trunk
        self.people: dict[str, _Caller] = {}
        self.by_uniqueid: dict[str, RecordedCall] = {}  # every caller that arrived, by its channel's uniqueid
        self.counts: dict[str, int] = {"arrived": 0, "abandoned_hold": 0, "hung_up_after_talk": 0}
        self._pending: list[IDelayedCall] = []
        pbx.add_listener(self._on_event)

    def start(self) -> None:
        now = self.pbx.now_epoch()
        self._pending = [self.pbx.later(c.at - now, self.arrive, c) for c in self.calls if c.at >= now]

    def stop(self) -> None:
        for call in self._pending:
            if call.active():
                call.cancel()
        self._pending = []
        for person in self.people.values():
            self._disarm(person)
        self.pbx.remove_listener(self._on_event)

    def arrive(self, call: RecordedCall) -> Channel:
        """The caller dials in now and lands in its queue."""
        self.counts["arrived"] += 1
        variables = [(CTI_QUEUE, call.queue), (CTI_PRIORITY, str(call.priority)), (CTI_DNIS, call.did)]
        if call.flow:
            variables.append((CTI_FLOW, call.flow))
        chan = self.pbx.inbound_call(call.did, call.caller_num, "", endpoint=self.trunk, context=HOLD_CONTEXT,
                                     variables=variables, exten="s")
        self.people[chan.name] = _Caller(call, chan)
        self.by_uniqueid[chan.uniqueid] = call
        return chan

    # reactions --------------------------------------------------------------------------------
    def _disarm(self, person: _Caller) -> None:
        if person.timer is not None and person.timer.active():
            person.timer.cancel()
        person.timer = None

    def _hang_up(self, person: _Caller, why: str) -> None:
        person.timer = None
        if person.chan.dead or person.chan.soft:
            return
        self.counts[why] += 1
        self.pbx.far_hangup(person.chan, 16)

    def _on_event(self, msg: AMIMessage) -> None:
        person = self.people.get(msg.get("Channel") or "")
        if person is None:
            return
        name = msg.name
        if name == "Hangup":
            self._disarm(person)
            del self.people[person.chan.name]
        elif name == "UserEvent" and msg.get("UserEvent") in (CTI_QUEUED.name, CTI_RETURNED.name):
            patience = person.call.patience
            if patience is None or (person.timer is not None and person.timer.active()):
                return
            now = self.pbx.now_epoch()
            if person.deadline is None:
                person.deadline = now + patience
            # back on hold after an offer that failed: the same patience, counted from the first wait
            person.timer = self.pbx.later(max(0.0, person.deadline - now), self._hang_up, person, "abandoned_hold")
        elif name == "BridgeEnter":
            self._disarm(person)
            person.timer = self.pbx.later(person.call.talk, self._hang_up, person, "hung_up_after_talk")
