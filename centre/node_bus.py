"""The bus between nodes: the events several ``cti serve`` nodes share over Redis, and the transport carrying them.

With a ``redis:`` section the engine bus's transport is a ``centre.redis_bus.StreamsTransport`` (``node_transport``):
every event is still delivered here at once, and those of the ``SHARED`` types also go to the other nodes, where only
the engines with ``remote_subscriptions`` take them. Without one the bus keeps its ``cti.bus.LocalTransport`` (the
embedded centre, unchanged).

What is shared, and why (each type is shared because some engine of another node needs it; nothing is shared
"just in case": every entry costs Redis a write and every node a read):

* ``AgentStateChanged``: the ACD's replica of the shared agent pool (``acd``: an agent is one person centre-wide,
  whichever node changed its state), the statistics' agent figures (``kpi``), and the console relay (a pop is
  forgotten when its agent leaves the call states).
* The ACD's call events the statistics count: ``CallWaiting``, ``CallOffered``, ``CallAnswered``, ``CallAbandoned``,
  ``CallOverflowed``, ``QueueCallFinished`` (offered, answered, abandoned, service level, waits and talk per queue);
  the ACD takes them too: the other nodes' waiting callers, so that an agent freed here goes first to a caller who
  came first there (``acd.remote_waiting``),
  with the kernel's ``CallQueued`` (the caller's number), ``CallHoldChanged``, ``CallTransferredOut`` and
  ``AgentCallbackScheduled``: so every node's supervisors see the whole centre (``KpiEngine``).
* The dialer's attempt events (``AttemptStarted``, ``AttemptAnswered``, ``AttemptFinished``): the campaigns'
  figures centre-wide.
* The IVR's ``CallbackRequested``: counted in the queue's callbacks requested.
* ``ConsolePushRelayed``: an agent's console pushes, for the node its console is connected to; and
  ``ConsoleActionRelayed`` / ``ConsoleActionReplied``: an action on the agent's call asked on a console of one node,
  carried out by the node whose PBX carries the call (``centre.console_relay``).

Not shared: the tracker's channel events (each node's PBX is its own: node B's sessions, call log and ACD must not
see node A's channels), ``OfferNotAnswered`` and ``CallSkillsExpanded`` (the ACD that routes the call is the only one
that needs them; the statistics do not count them), warnings (each node's log and wallboard), and the dialer's
previews (the previewing node's own). The Prometheus counters (``centre.event_counts``) stay per node: each node
exports what it did, and the monitoring sums the nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from acd.events import (
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallOffered,
    CallOverflowed,
    CallWaiting,
    QueueCallFinished,
)
from centre.redis_bus import StreamsTransport
from centre.redis_link import redis_client
from config.schema import RedisSettings
from cti.events import (
    AgentCallbackScheduled,
    CallHoldChanged,
    CallQueued,
    CallTransferredOut,
    ConsoleActionRelayed,
    ConsoleActionReplied,
    ConsolePushRelayed,
)
from dialer.events import AttemptAnswered, AttemptFinished, AttemptStarted
from ivr.events import CallbackRequested

log = logging.getLogger(__name__)

REPLY_TIMEOUT = 5.0  # seconds: a Redis command of the bus waits no longer (the reader's BLOCK is 1 s)
DRAIN_TIMEOUT = 3.0  # seconds a stop waits for the outbox to be written before closing

AGENT_EVENTS: tuple[type, ...] = (AgentStateChanged,)
CALL_EVENTS: tuple[type, ...] = (CallQueued, CallWaiting, CallOffered, CallAnswered, CallAbandoned, CallOverflowed,
                                 QueueCallFinished, CallHoldChanged, CallTransferredOut, AgentCallbackScheduled)
DIALER_EVENTS: tuple[type, ...] = (AttemptStarted, AttemptAnswered, AttemptFinished)
IVR_EVENTS: tuple[type, ...] = (CallbackRequested,)
CONSOLE_EVENTS: tuple[type, ...] = (ConsolePushRelayed, ConsoleActionRelayed, ConsoleActionReplied)

#: Every event type the nodes share (see the module's docstring for why each is).
SHARED: tuple[type, ...] = (*AGENT_EVENTS, *CALL_EVENTS, *DIALER_EVENTS, *IVR_EVENTS, *CONSOLE_EVENTS)


def shared_of(kinds: tuple[type, ...]) -> tuple[type, ...]:
    """Those of ``kinds`` that other nodes send (an engine's ``remote_subscriptions``: what it counts of them)."""
    return tuple(k for k in kinds if any(issubclass(k, s) for s in SHARED))


def node_transport(settings: RedisSettings, node_id: str, clock: Callable[[], float],
                   on_change: Callable[[bool], None] | None = None) -> StreamsTransport:
    """The bus's transport of node ``node_id`` on the Redis of ``settings`` (streams under its key prefix)."""
    return StreamsTransport(node_id, lambda: redis_client(settings, timeout=REPLY_TIMEOUT + 1.0),
                            settings.prefix, SHARED, clock=clock, reply_timeout=REPLY_TIMEOUT, on_change=on_change)
