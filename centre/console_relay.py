"""Consoles anywhere (several nodes): an agent's pushes relayed between nodes, and what a console resuming here needs.

With the bus on Redis (``centre.node_bus``) an agent's console may be connected to any node, whichever node's PBX
carries its call. Every push this node's engines make for an agent (``CtiServer.push_to_agent``: pops, pop
updates, state and call frames, notices, previews, recordings) goes to this node's hub as before *and* onto the
bus as a ``cti.events.ConsolePushRelayed`` (shared: see ``centre.node_bus.SHARED``). ``ConsoleRelay``, a bus engine
on every node, takes the other nodes' relayed pushes (``remote_subscriptions``) and

* hands each to this node's hub when that agent's console is connected here (``deliver``);
* keeps the agent's last pop in the node's pops (``ScreenPops.agent_pops``: what ``resume_messages`` reads) and its
  last ``call`` frame (``calls``), so that a console connecting here later gets the pop and call of a call another
  node carries at once (its state comes from the ACD's replica of the shared agent pool);
* forgets both when the agent leaves the states a pop is kept in (``centre.pops.KEEP_POP``), on this node's
  ``AgentStateChanged`` and the other nodes' alike.

Every push is relayed, even one to a console connected here: the other nodes then keep the pop for a console that
moves, and a console that reconnected elsewhere before this node saw the old connection go gets it too. A node
never receives its own entries back (the transport skips them), so nothing reaches a console twice through the
relay. Without Redis there is no relay (``None`` in the components) and nothing changes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from acd.events import AgentStateChanged
from agent_console.protocol import encode
from centre.pops import KEEP_POP
from cti.bus import Outputs, Reactive
from cti.events import ConsolePushRelayed

log = logging.getLogger(__name__)

#: The push types kept as the agent's pop (an update is the whole pop, kept as ``"pop"``).
POP_TYPES = frozenset({"pop", "pop_update"})


class ConsoleRelay(Reactive):
    """``pops``: the node's agent -> last pop (``ScreenPops.agent_pops``, shared with it); ``deliver(agent,
    message)``: a push to this node's hub if that agent's console is connected here."""

    subscriptions = (AgentStateChanged,)
    remote_subscriptions = (ConsolePushRelayed, AgentStateChanged)

    def __init__(self, pops: dict[str, dict[str, Any]], deliver: Callable[[str, dict[str, Any]], bool]) -> None:
        self.pops = pops
        self.deliver = deliver
        self.calls: dict[str, dict[str, Any]] = {}  # agent -> the last call frame relayed from another node
        self.counters = dict.fromkeys(("sent", "received", "delivered", "undecodable"), 0)

    def outgoing(self, agent_id: str, message: dict[str, Any], now: float) -> ConsolePushRelayed | None:
        """The bus event that carries ``message`` for ``agent_id`` to the other nodes (None if it cannot be)."""
        try:
            body = encode(message)
        except (TypeError, ValueError) as exc:
            log.error("console relay: a %s push to %s cannot be relayed: %s", message.get("type"), agent_id, exc)
            return None
        self.counters["sent"] += 1
        return ConsolePushRelayed(ts=now, agent_id=agent_id, message=body)

    def handle(self, event: object, now: float) -> Outputs:
        if isinstance(event, ConsolePushRelayed):
            self._received(event)
        elif isinstance(event, AgentStateChanged) and event.state not in KEEP_POP:
            self.pops.pop(event.agent_id, None)
            self.calls.pop(event.agent_id, None)
        return ()

    def call_frame(self, agent_id: str, call_id: str | None) -> dict[str, Any] | None:
        """The last call frame relayed for ``agent_id`` if it is of ``call_id`` (the agent's current call)."""
        frame = self.calls.get(agent_id)
        return frame if frame is not None and call_id is not None and frame.get("call_id") == call_id else None

    def _received(self, event: ConsolePushRelayed) -> None:
        try:
            message = json.loads(event.message)
        except ValueError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self.counters["undecodable"] += 1
            log.warning("console relay: a push for %s that is not a console message; dropped", event.agent_id)
            return
        message.pop("v", None)
        self.counters["received"] += 1
        kind = message["type"]
        if kind in POP_TYPES:
            self.pops[event.agent_id] = dict(message, type="pop")
        elif kind == "call":
            self.calls[event.agent_id] = message
        if self.deliver(event.agent_id, message):
            self.counters["delivered"] += 1
