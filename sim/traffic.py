"""The people around the simulated PBX, wired to it: inbound callers arrive on the PSTN trunk and
press keys, give up in the IVR or on hold; agents' phones ring, answer and hang up; outbound
customers answer, are busy or are machines. Adapts sim/people.py (numpy models) to the PBX's
FarEndDirectory/KeySource and reacts to the PBX's own events. No reactor, no wall clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from twisted.internet.interfaces import IDelayedCall

from cti.ami.message import AMIMessage
from cti.contract import CTI_FLOW, CTI_QUEUED, CTI_RETURNED, INBOUND_CONTEXT
from sim.channel import Channel
from sim.far_end import FarEnd
from sim.pbx import Pbx
from sim.people import AgentPhones, InboundArrival, InboundTraffic, OutboundCustomers

log = logging.getLogger(__name__)

ARRIVAL_WINDOW = 60.0  # seconds of arrivals drawn at a time
TRUNK_ENDPOINT = "trunk"


class PeopleFarEnds:
    """FarEndDirectory over the people models: the trunk reaches outbound customers, every other
    PJSIP endpoint is an agent's phone."""

    def __init__(self, phones: AgentPhones, customers: OutboundCustomers, trunk: str = TRUNK_ENDPOINT) -> None:
        self.phones = phones
        self.customers = customers
        self.trunk = trunk
        self.outbound: dict[str, float] = {}  # number -> patience of the last answered human
        self.talk: dict[str, float] = {}  # number -> talk time of the last answered human

    def call(self, endpoint: str, target: str, now: float) -> FarEnd | None:
        if endpoint == self.trunk:
            if not target:
                return None
            o = self.customers.outcome(target)
            if o.kind == "answer":
                self.outbound[target], self.talk[target] = o.patience, o.talk_time
                return FarEnd("answer", ring_time=o.ring_time, amd_wrong=o.amd_wrong)
            # not a person this time: no patience or talk time left over from an earlier attempt's person
            self.outbound.pop(target, None)
            self.talk.pop(target, None)
            if o.kind == "machine":
                return FarEnd("answer", ring_time=o.ring_time, talk_time=o.talk_time, machine=True,
                              amd_wrong=o.amd_wrong)
            if o.kind == "noanswer":
                return FarEnd("noanswer")
            return FarEnd(o.kind, ring_time=o.ring_time)  # busy / congestion
        ring = self.phones.ring_outcome(endpoint, now)
        if ring.unavailable:
            return FarEnd("unavailable")
        if ring.busy:
            return FarEnd("busy")
        if ring.answer_after is None:
            return FarEnd("noanswer")
        return FarEnd("answer", ring_time=ring.answer_after, talk_time=self.phones.talk_time(endpoint))


@dataclass(slots=True)
class InboundCaller:
    """One inbound caller as the IVR hears them (KeySource)."""

    arrival: InboundArrival
    pressed: int = 0

    def next_keys(self) -> tuple[str, float] | None:
        keys = self.arrival.keys
        if self.pressed >= len(keys):
            return None
        self.pressed += 1
        return keys[self.pressed - 1], self.arrival.think_time


@dataclass(slots=True)
class _Person:
    chan: Channel
    arrival: InboundArrival | None = None
    timer: IDelayedCall | None = None
    why: str = ""  # what the armed timer is for
    patience: float = 0.0
    talk: float = 0.0


class TrafficDriver:
    """Creates inbound calls from ``traffic`` and makes the people react to what happens to them."""

    def __init__(self, pbx: Pbx, traffic: InboundTraffic | None, far_ends: PeopleFarEnds | None = None, *,
                 context: str = INBOUND_CONTEXT, trunk: str = TRUNK_ENDPOINT) -> None:
        self.pbx = pbx
        self.traffic = traffic
        self.far_ends = far_ends
        self.context = context
        self.trunk = trunk
        self.people: dict[str, _Person] = {}
        self.counts: dict[str, int] = {"arrived": 0, "abandoned_hold": 0, "abandoned_ivr": 0,
                                       "outbound_abandoned": 0}
        self._window_end: float | None = None
        self._timer: IDelayedCall | None = None
        self._stopped = False
        pbx.add_listener(self._on_event)

    def start(self) -> None:
        self._stopped = False
        if self.traffic is not None:
            self._next_window()

    def stop_arrivals(self) -> None:
        """No new callers from now on; people already in calls carry on (a drained run ends every call)."""
        self._stopped = True

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for person in self.people.values():
            if person.timer is not None and person.timer.active():
                person.timer.cancel()
        self.pbx.remove_listener(self._on_event)

    def _next_window(self) -> None:
        assert self.traffic is not None
        if self._stopped:
            return
        now = self.pbx.now_epoch()
        start = self._window_end if self._window_end is not None else now
        end = start + ARRIVAL_WINDOW
        for arrival in self.traffic.arrivals(start, end):
            self.pbx.later(arrival.at - now, self.arrive, arrival)
        self._window_end = end
        self._timer = self.pbx.later(end - now, self._next_window)

    def arrive(self, arrival: InboundArrival) -> Channel | None:
        """One caller dials in now."""
        if self._stopped:
            return None
        self.counts["arrived"] += 1
        chan = self.pbx.inbound_call(arrival.did, arrival.caller_num, arrival.caller_name, endpoint=self.trunk,
                                     context=self.context, keys=InboundCaller(arrival),
                                     variables=[(CTI_FLOW, arrival.flow)])
        self.people[chan.name] = _Person(chan, arrival)
        return chan

    # reactions --------------------------------------------------------------------------------
    def _arm(self, person: _Person, delay: float, why: str) -> None:
        self._disarm(person)
        person.why = why
        person.timer = self.pbx.later(delay, self._give_up, person, why)

    def _disarm(self, person: _Person) -> None:
        if person.timer is not None and person.timer.active():
            person.timer.cancel()
        person.timer = None
        person.why = ""

    def _give_up(self, person: _Person, why: str) -> None:
        person.timer = None
        if person.chan.dead or person.chan.soft:
            return
        self.counts[why] = self.counts.get(why, 0) + 1
        self.pbx.far_hangup(person.chan, 16)

    def _on_event(self, msg: AMIMessage) -> None:
        name = msg.name
        chan_name = msg.get("Channel") or ""
        person = self.people.get(chan_name)
        if name == "Hangup":
            if person is not None:
                self._disarm(person)
                del self.people[chan_name]
            return
        if person is None and chan_name.startswith(f"PJSIP/{self.trunk}-"):
            # An outbound customer's channel. Its Newchannel goes out before the PBX gives it its far end (as
            # ast_request() publishes the channel before the caller sets it up), so it is taken at its first
            # event with one; an inbound caller's channel has none (``arrive`` registers it).
            chan = self.pbx.find_channel(chan_name)
            if chan is None or chan.far_end is None or self.far_ends is None:
                return
            number = chan.dnid
            person = self.people[chan_name] = _Person(chan, None, patience=self.far_ends.outbound.get(number, 0.0),
                                                      talk=self.far_ends.talk.get(number, 0.0))
        if person is None:
            return
        if person.arrival is not None:
            self._inbound_event(person, msg)
        else:
            self._outbound_event(person, msg)

    def _inbound_event(self, person: _Person, msg: AMIMessage) -> None:
        arrival = person.arrival
        assert arrival is not None
        if msg.name == "Newexten":
            if msg.get("Application") == "AGI" and arrival.hangup_in_ivr_after is not None:
                self._arm(person, arrival.hangup_in_ivr_after, "abandoned_ivr")
            elif msg.get("Application") != "AGI" and person.why == "abandoned_ivr":
                self._disarm(person)
        elif msg.name == "UserEvent" and msg.get("UserEvent") in (CTI_QUEUED.name, CTI_RETURNED.name):
            if person.timer is None:
                self._arm(person, arrival.patience, "abandoned_hold")
        elif msg.name == "BridgeEnter":
            self._disarm(person)

    def _outbound_event(self, person: _Person, msg: AMIMessage) -> None:
        if msg.name == "Newstate" and msg.get("ChannelState") == "6" and person.patience > 0:
            self._arm(person, person.patience, "outbound_abandoned")
        elif msg.name == "BridgeEnter":
            self._disarm(person)
            if person.talk > 0:
                person.timer = self.pbx.later(person.talk, self.pbx.far_hangup, person.chan, 16)
