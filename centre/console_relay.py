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

**Call actions** go the other way. An agent whose console is here asks for an action on its call (hold, retrieve,
transfer, hang up, recording, the customer chosen: ``agent_console.protocol.CALL_ACTIONS``) while another node's
PBX carries it: ``ask`` publishes a ``cti.events.ConsoleActionRelayed``; the node that has the agent's call session
(``carries``) carries the action out as if the console were its own (``execute``: the console backend's) and
publishes ``ConsoleActionReplied``, which ``ask`` returns to the console (the result, or the error as the carrying
node said it). No node answering within ``ASK_TIMEOUT`` (the call ended meanwhile, the node died) is
``call-unreachable``. The nodes trust each other here as they do on the bus: the asking node authenticated the
console.

Every push is relayed, even one to a console connected here: the other nodes then keep the pop for a console that
moves, and a console that reconnected elsewhere before this node saw the old connection go gets it too. A node
never receives its own entries back (the transport skips them), so nothing reaches a console twice through the
relay. Without Redis there is no relay (``None`` in the components) and nothing changes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from acd.events import AgentStateChanged
from agent_console.backend import ConsoleError
from agent_console.protocol import encode
from centre.pops import KEEP_POP
from cti.bus import Outputs, Reactive
from cti.events import ConsoleActionRelayed, ConsoleActionReplied, ConsolePushRelayed

log = logging.getLogger(__name__)

#: The push types kept as the agent's pop (an update is the whole pop, kept as ``"pop"``).
POP_TYPES = frozenset({"pop", "pop_update"})
ASK_TIMEOUT = 10.0  # seconds a relayed call action waits for the carrying node's answer

Execute = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]


class ConsoleRelay(Reactive):
    """``pops``: the node's agent -> last pop (``ScreenPops.agent_pops``, shared with it); ``deliver(agent,
    message)``: a push to this node's hub if that agent's console is connected here."""

    subscriptions = (AgentStateChanged,)
    remote_subscriptions = (ConsolePushRelayed, AgentStateChanged, ConsoleActionRelayed, ConsoleActionReplied)

    def __init__(self, pops: dict[str, dict[str, Any]], deliver: Callable[[str, dict[str, Any]], bool], *,
                 node: str = "", publish: Callable[[object], None] | None = None,
                 carries: Callable[[str, str], bool] | None = None, clock: Callable[[], float] | None = None,
                 ask_timeout: float = ASK_TIMEOUT) -> None:
        self.pops = pops
        self.deliver = deliver
        self.node = node
        self.publish = publish  # an event onto this node's bus (to the other nodes)
        self.carries = carries  # (agent, call id) -> whether this node has that call's session
        self.execute: Execute | None = None  # (agent, action, params) -> result: the console backend's, once made
        self.clock = clock
        self.ask_timeout = ask_timeout
        self.calls: dict[str, dict[str, Any]] = {}  # agent -> the last call frame relayed from another node
        self.counters = dict.fromkeys(("sent", "received", "delivered", "undecodable", "asked", "answered",
                                       "unanswered", "carried"), 0)
        self._asked: dict[str, asyncio.Future[ConsoleActionReplied]] = {}
        self._count = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

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
        elif isinstance(event, ConsoleActionRelayed):
            self._carry(event)
        elif isinstance(event, ConsoleActionReplied):
            waiting = self._asked.pop(event.request, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(event)
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

    # ------------------------------------------------------------------ call actions across nodes
    async def ask(self, agent_id: str, call_id: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Have the node carrying ``agent_id``'s call ``call_id`` carry ``action`` out; its result, or its
        ``ConsoleError`` raised here."""
        if self.publish is None:
            raise ConsoleError("no-active-call", "you have no call right now")
        request = f"{self.node}:{next(self._count)}"
        answer: asyncio.Future[ConsoleActionReplied] = asyncio.get_running_loop().create_future()
        self._asked[request] = answer
        self.counters["asked"] += 1
        try:
            self.publish(ConsoleActionRelayed(ts=self._now(), request=request, agent_id=agent_id, call_id=call_id,
                                              action=action, params=json.dumps(params, separators=(",", ":"))))
            reply = await asyncio.wait_for(answer, self.ask_timeout)
        except TimeoutError:
            self.counters["unanswered"] += 1
            raise ConsoleError("call-unreachable", "the node carrying your call did not answer; try again") from None
        finally:
            self._asked.pop(request, None)
        self.counters["answered"] += 1
        body = json.loads(reply.body)
        if reply.ok:
            return dict(body)
        details = {k: v for k, v in body.items() if k not in ("error", "message")}
        raise ConsoleError(str(body.get("error", "action-failed")), str(body.get("message", "")), **details)

    def _carry(self, event: ConsoleActionRelayed) -> None:
        """Another node's console asks for an action on a call: carried out here if this node has its session."""
        if event.request.startswith(f"{self.node}:") or self.execute is None or self.carries is None \
                or not self.carries(event.agent_id, event.call_id):
            return
        try:
            params = json.loads(event.params)
        except ValueError:
            params = None
        if not isinstance(params, dict):
            log.warning("console relay: a %s asked for %s with parameters that are not an object; refused",
                        event.action[:40], event.agent_id)
            self._reply(event, False, {"error": "bad-request", "message": "parameters must be an object"})
            return
        self.counters["carried"] += 1
        task = asyncio.get_running_loop().create_task(self._run(event, params))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, event: ConsoleActionRelayed, params: dict[str, Any]) -> None:
        assert self.execute is not None
        try:
            result = await self.execute(event.agent_id, event.action, dict(params, call_id=event.call_id))
        except ConsoleError as exc:
            self._reply(event, False, {"error": exc.error_id, "message": exc.message, **exc.details})
            return
        except Exception:
            log.exception("console relay: %s for %s failed", event.action[:40], event.agent_id)
            self._reply(event, False, {"error": "action-failed", "message": "the action failed on its node"})
            return
        self._reply(event, True, result)

    def _reply(self, event: ConsoleActionRelayed, ok: bool, body: dict[str, Any]) -> None:
        if self.publish is not None:
            self.publish(ConsoleActionReplied(ts=self._now(), request=event.request, agent_id=event.agent_id, ok=ok,
                                              body=json.dumps(body, separators=(",", ":"), default=str)))

    def _now(self) -> float:
        return self.clock() if self.clock is not None else 0.0
