"""Counts of the events an operator graphs as rates (``centre.metrics`` exports them as Prometheus counters).

An engine on the bus (``cti.bus.Reactive``) subscribed only to the event types it counts, so that every
other event costs it nothing; each counted event is one dict increment. Labels are the configured queues,
PBXs and campaigns (and the fixed sets of agent states and attempt results): an event naming anything else
is counted under ``other``, so no label grows without bound. The gauges (waiting calls, agents by state,
links up) are not counted here: ``centre.metrics`` reads them live at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterable

from acd.events import (
    AGENT_STATES,
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallOffered,
    CallOverflowed,
    OfferNotAnswered,
)
from cti.bus import Outputs, Reactive
from cti.events import AmiConnectionChanged
from dialer.events import AttemptFinished, AttemptStarted
from dialer.settings import RETRY_RESULTS

OTHER = "other"  # the label of anything not configured
#: What a dialler attempt can end with (``dialer.events.AttemptFinished.result``).
ATTEMPT_RESULTS = ("connected", *RETRY_RESULTS)
#: The ACD's call events counted per queue, by the name ``centre.metrics`` exports them under.
QUEUE_EVENTS: dict[type, str] = {
    CallOffered: "offered",
    CallAnswered: "answered",
    CallAbandoned: "abandoned",
    CallOverflowed: "overflowed",
    OfferNotAnswered: "unanswered_offers",
}


def _bounded(names: Iterable[str]) -> dict[str, int]:
    return {**dict.fromkeys(names, 0), OTHER: 0}


class EventCounts(Reactive):
    """Per-queue call events, agent state entries, AMI logins and losses, dialler attempts and results."""

    def __init__(self, *, queues: Iterable[str], servers: Iterable[str], campaigns: Iterable[str]) -> None:
        queues, servers, campaigns = list(queues), list(servers), list(campaigns)
        self.queue_events: dict[str, dict[str, int]] = {kind: _bounded(queues) for kind in QUEUE_EVENTS.values()}
        self.agent_states = _bounded(sorted(AGENT_STATES))
        self.ami_logins = _bounded(servers)
        self.ami_losses = _bounded(servers)
        self._ami_up: dict[str, bool] = {}
        self.attempts = _bounded(campaigns)
        self.results: dict[str, dict[str, int]] = {c: _bounded(ATTEMPT_RESULTS) for c in [*campaigns, OTHER]}
        self.subscriptions = (*QUEUE_EVENTS, AgentStateChanged, AmiConnectionChanged, AttemptStarted,
                              AttemptFinished)
        self._handlers = {**dict.fromkeys(QUEUE_EVENTS, self._queue_event), AgentStateChanged: self._agent_state,
                          AmiConnectionChanged: self._ami, AttemptStarted: self._attempt,
                          AttemptFinished: self._result}

    def handle(self, event: object, now: float) -> Outputs:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)
        return ()

    @staticmethod
    def _add(counts: dict[str, int], key: str) -> None:
        counts[key if key in counts else OTHER] += 1

    def _queue_event(self, event: object) -> None:
        self._add(self.queue_events[QUEUE_EVENTS[type(event)]], event.queue)  # type: ignore[attr-defined]

    def _agent_state(self, event: AgentStateChanged) -> None:
        self._add(self.agent_states, event.state)

    def _ami(self, event: AmiConnectionChanged) -> None:
        was = self._ami_up.get(event.server, False)
        self._ami_up[event.server] = event.connected
        if event.connected and not was:
            self._add(self.ami_logins, event.server)
        elif was and not event.connected:  # a link that was up went down (failed attempts are not losses)
            self._add(self.ami_losses, event.server)

    def _attempt(self, event: AttemptStarted) -> None:
        self._add(self.attempts, event.campaign)

    def _result(self, event: AttemptFinished) -> None:
        self._add(self.results.get(event.campaign, self.results[OTHER]), event.result)
