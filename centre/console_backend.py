"""The real console backend: agent actions carried out over the ACD and AMI call control.

Implements ``agent_console.backend.ConsoleBackend`` for ``CtiServer``. State changes go through the
ACD (which refuses illegal ones with a stable error id and changes nothing); call control becomes
AMI actions on the caller's and the agent's channels, in the dialplan contexts of
``config/asterisk/extensions_cti.conf``:

Every AMI action is a ``cti.commands`` value applied by the server's ``Dispatcher`` (never the AMI pool
directly): a refusal comes back as ``CommandFailed`` (the engines hear of it as of any command) and the
agent gets ``action-failed`` ("the PBX refused: ...") with nothing changed.

* hang up: ``Hangup`` of the agent's leg (Dial then ends the caller too);
* hold: ``Redirect`` of the caller to ``cti-onhold`` (music) with the agent's leg as ExtraChannel to
  ``cti-agent-onhold``; retrieve: AMI ``Bridge`` of the two channels again;
* blind transfer to a queue: ``Setvar CTI_QUEUE`` + ``Redirect`` to ``cti-hold`` (the ACD re-queues);
  to a number: ``Setvar CTI_TRANSFER_DIAL`` + ``Redirect`` to ``cti-transfer``;
* attended transfer: ``Setvar __CTI_CONSULT_DIAL`` on the agent's leg + ``Atxfer`` to ``cti-consult``,
  extension ``0`` (Asterisk plays the Exten as DTMF, so it must be digits; the agent's leg has the
  atxfer code because [cti-agent] dials it with option ``t`` and the pre-dial handler
  [cti-agent-leg]); the caller hears music meanwhile. Complete: ``Hangup`` of the agent's leg (Asterisk
  joins caller and target); back to the caller: ``CancelAtxfer``. The target hanging up also returns
  the agent to the caller: the server sees the agent's leg bridged with the caller again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from acd.states import AcdError
from agent_console.backend import ConsoleError, SessionInfo
from agent_console.protocol import AUDITED_ACTIONS, CALL_ACTIONS
from centre.call_log import InteractionWrite, call_key
from centre.previews import preview_message
from centre.recording import recording_message
from centre.supervisor_actions import SupervisorActions
from cti.commands import (
    Atxfer,
    Bridge,
    CancelAtxfer,
    Command,
    CommandFailed,
    Hangup,
    MuteRecording,
    Redirect,
    Setvar,
)
from cti.contract import (
    AGENT_ON_HOLD_CONTEXT,
    CONSULT_CONTEXT,
    CONSULT_EXTEN,
    CTI_CONSULT_DIAL,
    CTI_QUEUE,
    CTI_TRANSFER_DIAL,
    HOLD_CONTEXT,
    ON_HOLD_CONTEXT,
    START_EXTEN,
    TRANSFER_CONTEXT,
    inherited,
)
from cti.db import is_unavailable
from cti.events import AgentCallbackScheduled, CallHoldChanged
from cti.sessions import CallSession, SessionError, SessionState, SessionTrigger, end_hold
from dialer.preview import PreviewError

if TYPE_CHECKING:
    from centre.server import CtiServer

log = logging.getLogger("cti.console")


async def _result(d: defer.Deferred[Any]) -> Any:
    """Await a Twisted Deferred from the hub's asyncio task (a bare ``await d`` there fails with
    "Task got bad yield": asyncio tasks only wait on asyncio futures)."""
    return await defer.Deferred.asFuture(d, asyncio.get_running_loop())


class ServerConsoleBackend:
    """ConsoleBackend over a running ``CtiServer``."""

    def __init__(self, server: CtiServer) -> None:
        self.server = server
        self._refs = itertools.count(1)
        self.supervisor = SupervisorActions(server, self._apply, self.ref)  # the audited supervisor actions
        if server.relay is not None:  # several nodes: the call actions other nodes' consoles ask of this one
            server.relay.execute = self.agent_action

    # ---------------------------------------------------------------- protocol
    async def handle(self, session: SessionInfo, action: str, params: dict[str, Any]) -> dict[str, Any]:
        if action == "snapshot":
            if session.role != "supervisor":
                raise ConsoleError("forbidden", "snapshot is a supervisor action")
            return self.supervisor_snapshot()
        if action in ("subscribe", "unsubscribe"):
            return self._statistics(session, action, params)
        if action in AUDITED_ACTIONS:
            return await self.supervisor.handle(session, action, params)
        if session.role != "agent":
            raise ConsoleError("forbidden", f"{action} is an agent action")
        elsewhere = self._call_elsewhere(session.agent_id, action, params)
        if elsewhere is not None:  # several nodes: another node's PBX carries the call; that node carries it out
            return await self.server.relay.ask(session.agent_id, elsewhere, action, params)  # type: ignore[union-attr]
        return await self.agent_action(session.agent_id, action, params)

    def _call_elsewhere(self, agent_id: str, action: str, params: dict[str, Any]) -> str | None:
        """The id of the agent's call when ``action`` is an action on it and another node carries it, else None."""
        relay = self.server.relay
        if relay is None or action not in CALL_ACTIONS or self.server.call_for_agent(agent_id) is not None:
            return None
        frame = relay.calls.get(agent_id)
        if frame is None or frame.get("status") == SessionState.ENDED.value:
            return None  # (no call, or it ended: the usual no-active-call here)
        call_id = params.get("call_id") or frame.get("call_id")
        return str(call_id) if call_id else None

    async def agent_action(self, agent_id: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """An agent's action carried out here (from its console on this node, or relayed from another node's)."""
        handler = getattr(self, f"_do_{action}", None)
        if handler is None:
            raise ConsoleError("unknown-action", f"{action} is not supported")
        try:
            result: dict[str, Any] = await handler(agent_id, params)
        except AcdError as exc:
            raise ConsoleError(exc.error_id, exc.message, **exc.details) from None
        except SessionError as exc:  # the call moved meanwhile (the caller hung up, ...)
            raise ConsoleError(exc.error_id, exc.message, status=exc.state.value) from None
        return result

    def resume_messages(self, agent_id: str) -> list[dict[str, Any]]:
        """What a (re)connecting console needs to show all the agent saw: the state, the call's pop (kept
        while ringing, on the call and through wrap-up) and the call with its timers."""
        try:
            state = self.server.state_message(agent_id)
        except AcdError:
            return []
        messages = [state]
        call_id = state.get("call_id")
        pop = self.server.agent_pops.get(agent_id)
        if pop is not None and state["state"] in ("reserved", "on_call", "wrap_up") \
                and (call_id is None or pop.get("call_id") == call_id):
            messages.append(pop)
        live = self.server.call_for_agent(agent_id)
        if live is not None:
            messages.append(self.server.call_message(live))
            rec = self.server.recordings.for_session(live) if self.server.recordings is not None else None
            if rec is not None:
                messages.append(recording_message(rec))
        elif state["state"] in ("reserved", "on_call", "wrap_up"):
            elsewhere = self.server.relayed_call(agent_id, call_id)  # several nodes: another node's PBX has it
            if elsewhere is not None:
                messages.append(elsewhere)
        shown = self.server.dialer.preview_for(agent_id) if self.server.dialer is not None else None
        if shown is not None:
            messages.append(preview_message(shown))
        return messages

    def supervisor_snapshot(self) -> dict[str, Any]:
        """The wallboard payload: without its push ``type``, which would else replace a reply's "result"."""
        return {k: v for k, v in self.server.wallboard().items() if k != "type"}

    def session_changed(self, session: SessionInfo, connected: bool) -> None:
        log.debug("console %s %s (%s)", session.agent_id, "connected" if connected else "disconnected", session.role)
        if not connected and session.role == "supervisor" and self.server.kpi is not None:
            self.server.kpi.drop(session.session_id)

    def _statistics(self, session: SessionInfo, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """A supervisor's subscriptions to the live statistics (``centre.kpi_push``)."""
        if session.role != "supervisor":
            raise ConsoleError("forbidden", f"{action} is a supervisor action")
        kpi = self.server.kpi
        if kpi is None:
            raise ConsoleError("unknown-topic", "this server keeps no statistics")
        if action == "unsubscribe":
            return kpi.unsubscribe(session.session_id, params["topics"])
        return kpi.subscribe(session.session_id, params["topics"], params.get("resume"))

    # ---------------------------------------------------------------- helpers
    def _acd(self, fn: Any, *args: Any) -> dict[str, Any]:
        now = self.server.now()
        self.server.apply(fn(*args, now))
        return {"state": self.server.state_message(args[0])}

    def _live(self, agent_id: str, call_id: str | None) -> CallSession:
        live = self.server.call_for_agent(agent_id)
        if live is None:
            raise ConsoleError("no-active-call", "you have no call right now")
        if call_id is not None and call_id != live.queued.call_id:
            raise ConsoleError("unknown-call", "that is not your current call")
        return live

    def _connected(self, live: CallSession, *allowed: str) -> None:
        if live.state not in allowed:
            raise ConsoleError("illegal-transition", f"not possible while the call is {live.state.value}",
                               status=live.state.value)
        if not live.agent_channel:
            raise ConsoleError("no-active-call", "the agent's leg of this call is not known yet")

    def ref(self, agent_id: str, action: str) -> str:
        """A fresh reference for a console command (it names the agent and the action in logs)."""
        return f"console-{agent_id}-{action}-{next(self._refs)}"

    async def _apply(self, command: Command) -> None:
        """Carry out one command through the server's dispatcher; its failure is action-failed."""
        failed = await _result(self.server.dispatcher.apply(command))
        if isinstance(failed, CommandFailed):
            raise ConsoleError("action-failed", f"the PBX refused: {failed.reason}")

    @staticmethod
    def _move(live: CallSession, trigger: SessionTrigger) -> bool:
        """Move the session after its AMI action, unless the PBX's events moved it first (the caller back
        from a consultation, the call ended): then it stays as they left it."""
        if not live.can(trigger):
            return False
        live.fire(trigger)
        return True

    def _push_call(self, live: CallSession) -> dict[str, Any]:
        live.since = self.server.now()
        message = self.server.call_message(live)
        self.server.push_to_agent(live.agent_id, message)
        return {"call_id": live.queued.call_id, "status": live.state.value}

    # ---------------------------------------------------------------- agent state
    async def _do_login(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = params.get("endpoint")
        configured = next((a.endpoint for a in self.server.cfg.acd.agents if a.id == agent_id), None)
        if endpoint is not None and configured is not None and endpoint.lower() == configured.lower():
            endpoint = None
        if endpoint is not None and not self.server.cfg.console.allow_endpoint_override:
            raise ConsoleError("endpoint-fixed", f"your phone is {configured}; this server does not allow "
                               "another endpoint (console.allow_endpoint_override)", endpoint=configured)
        return self._acd(self.server.acd.login, agent_id, endpoint)

    async def _do_logout(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._acd(self.server.acd.logout, agent_id)

    async def _do_ready(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._acd(self.server.acd.ready, agent_id)

    async def _do_not_ready(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._acd(self.server.acd.not_ready, agent_id, params["reason"])

    # ---------------------------------------------------------------- call control
    async def _do_hangup(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        live = self._live(agent_id, params.get("call_id"))
        channel = live.agent_channel or live.queued.channel
        await self._apply(Hangup(self.ref(agent_id, "hangup"), live.queued.server, channel))
        return {"call_id": live.queued.call_id, "status": "ended"}

    async def _do_hold(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        live = self._live(agent_id, params.get("call_id"))
        self._connected(live, "connected")
        await self._apply(Redirect(self.ref(agent_id, "hold"), live.queued.server, live.queued.channel,
                                   ON_HOLD_CONTEXT, START_EXTEN, extra_channel=live.agent_channel,
                                   extra_context=AGENT_ON_HOLD_CONTEXT, extra_exten=START_EXTEN))
        if self._move(live, SessionTrigger.HOLD):
            self._held(live, True)
        return self._push_call(live)

    async def _do_retrieve(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        live = self._live(agent_id, params.get("call_id"))
        self._connected(live, "held")
        await self._apply(Bridge(self.ref(agent_id, "retrieve"), live.queued.server, live.agent_channel,
                                 live.queued.channel))
        if self._move(live, SessionTrigger.RETRIEVE):
            end_hold(live, self.server.now())  # since: when the hold began
            self._held(live, False)
        return self._push_call(live)

    def _held(self, live: CallSession, held: bool) -> None:
        """Tell the bus (the statistics count holds)."""
        q = live.queued
        self.server.publish(CallHoldChanged(server=q.server, ts=self.server.now(), call_id=q.call_id,
                                            uniqueid=q.uniqueid, queue=q.queue, agent_id=live.agent_id, held=held))

    async def _do_transfer(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        live = self._live(agent_id, params.get("call_id"))
        self._connected(live, "connected", "held")
        server, channel, target = live.queued.server, live.queued.channel, str(params["target"])
        if params["to"] == "queue":
            if target not in self.server.cfg.acd.queue_names():
                raise ConsoleError("unknown-queue", f"no queue named {target[:40]!r}",
                                   known=sorted(self.server.cfg.acd.queue_names()))
            await self._apply(Setvar(self.ref(agent_id, "transfer"), server, channel, CTI_QUEUE, target))
            await self._apply(Redirect(self.ref(agent_id, "transfer"), server, channel, HOLD_CONTEXT, START_EXTEN))
        else:
            dial = self.server.cfg.pbx.dial_string(target)
            await self._apply(Setvar(self.ref(agent_id, "transfer"), server, channel, CTI_TRANSFER_DIAL, dial))
            await self._apply(Redirect(self.ref(agent_id, "transfer"), server, channel, TRANSFER_CONTEXT,
                                       START_EXTEN))
            self.server.call_log.transferred(server, live.queued.call_id)
            live.transferred_out = True  # the queue's transfers count it when the part ends
        # The caller's CTIQueued may have come back before the Redirect's response: then the server has
        # already ended this agent's part (and the call may be ringing another agent in a new session).
        if self._move(live, SessionTrigger.TRANSFER):
            self._push_call(live)
        return {"call_id": live.queued.call_id, "status": "ended"}

    async def _do_attended_transfer(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        live = self._live(agent_id, params.get("call_id"))
        self._connected(live, "connected")
        server = live.queued.server
        dial = self.server.cfg.pbx.dial_string(str(params["number"]))
        await self._apply(Setvar(self.ref(agent_id, "attended_transfer"), server, live.agent_channel,
                                 inherited(CTI_CONSULT_DIAL), dial))
        await self._apply(Atxfer(self.ref(agent_id, "attended_transfer"), server, live.agent_channel,
                                 CONSULT_CONTEXT, CONSULT_EXTEN))
        if self._move(live, SessionTrigger.CONSULT):
            live.consult = {"number": str(params["number"]), "state": "ringing"}
        return self._push_call(live)

    async def _do_attended_complete(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        live = self._live(agent_id, params.get("call_id"))
        self._connected(live, "consulting")
        await self._apply(Hangup(self.ref(agent_id, "attended_complete"), live.queued.server, live.agent_channel))
        self._move(live, SessionTrigger.COMPLETE)
        return self._push_call(live)

    async def _do_attended_cancel(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        live = self._live(agent_id, params.get("call_id"))
        self._connected(live, "consulting")
        await self._apply(CancelAtxfer(self.ref(agent_id, "attended_cancel"), live.queued.server,
                                       live.agent_channel))
        if self._move(live, SessionTrigger.CONSULT_ENDED):
            live.consult = None
        return self._push_call(live)

    # ---------------------------------------------------------------- recording (PCI DSS pauses)
    async def _do_recording_pause(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self._recording_mute(agent_id, params, True)

    async def _do_recording_resume(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self._recording_mute(agent_id, params, False)

    async def _recording_mute(self, agent_id: str, params: dict[str, Any], paused: bool) -> dict[str, Any]:
        """AMI MixMonitorMute (both directions) of the caller's channel: only the agent on the call may, and
        only a call being recorded. Once Asterisk said Success the pause interval opens (or closes) on the
        interaction and the consoles get the ``recording`` frame; asking for the state it is in changes
        nothing and sends nothing."""
        live = self._live(agent_id, params.get("call_id"))
        recordings = self.server.recordings
        rec = recordings.for_session(live) if recordings is not None else None
        if recordings is None or rec is None or rec.state not in ("starting", "recording", "paused"):
            raise ConsoleError("not-recording", "this call is not being recorded")
        if rec.paused != paused:
            rec.asked_by = agent_id
            try:
                await self._apply(MuteRecording(self.ref(agent_id, "recording_pause" if paused else "recording_resume"),
                                                live.queued.server, live.queued.channel, paused))
            finally:
                rec.asked_by = ""
            self.server.apply(recordings.set_paused(rec, paused, self.server.now(), agent_id))
        return {"call_id": live.queued.call_id, "recording": rec.state}

    # ---------------------------------------------------------------- after the call
    async def _do_dispose(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        codes = {d.code for d in self.server.cfg.console.dispositions}
        if params["disposition"] not in codes:
            raise ConsoleError("unknown-disposition", "unknown disposition code", known=sorted(codes))
        last = self.server.last_call.get(agent_id)
        if last is None or last.call_id != params["call_id"]:
            raise ConsoleError("unknown-call", "that is not your last call")
        if params.get("then") == "not_ready" and not params.get("reason"):
            raise ConsoleError("invalid-params", "then=not_ready needs a reason")
        # State first: a refused transition must change nothing, the disposition included.
        acd = self.server.acd
        snap = acd.agent_snapshot(agent_id)
        if snap.state != "wrap_up":
            raise ConsoleError("illegal-transition", f"nothing to dispose while {snap.state.value}")
        if params.get("then") == "not_ready":
            outputs = acd.not_ready(agent_id, params["reason"], self.server.now())
        else:
            outputs = acd.ready(agent_id, self.server.now())
        self.server.apply(outputs)
        recorded = False
        fields = {"disposition": params["disposition"], "notes": params.get("notes") or "", "agent_id": agent_id}
        writer = self.server.interactions
        if writer is not None and writer.down:
            # the database is unreachable: the disposition waits with the call's records, in order, and is
            # written when it is back (never lost, never before the row it updates)
            writer.write(InteractionWrite(last.interaction_key, fields))
            recorded = True
        elif self.server.pop_lookup is not None:
            try:
                await _result(self.server.pop_lookup.set_disposition(last.interaction_key, **fields))
                recorded = True
            except Exception as exc:  # the agent keeps working; the failure is logged and reported
                if writer is not None and is_unavailable(exc):
                    writer.write(InteractionWrite(last.interaction_key, fields))
                    recorded = True
                    log.warning("disposition for %s kept until the database is back", last.interaction_key)
                else:
                    log.error("disposition for %s not recorded: %s", last.interaction_key, exc.__class__.__name__)
        callback = params.get("callback")
        if callback:
            await self._store_callback(agent_id, callback, call_id=params["call_id"])
        if any(d.dnc for d in self.server.cfg.console.dispositions if d.code == params["disposition"]):
            await self._do_not_call(agent_id, last.number)
        self.server.last_call.pop(agent_id, None)
        self.server.agent_pops.pop(agent_id, None)
        return {"state": self.server.state_message(agent_id), "recorded": recorded}

    async def _do_not_call(self, agent_id: str, number: str) -> None:
        """A "do not call" disposition: the call's number on the do-not-call list (the campaigns stop dialling
        it at once; the store keeps it). A failure is logged; the agent's disposition stands."""
        dialer = self.server.dialer
        if not number or dialer is None:
            log.warning("do-not-call disposition by %s: %s", agent_id,
                        "no number for the call" if not number else "no dialer to tell")
            return
        try:
            await _result(dialer.block_number(number, f"disposition:{agent_id}", self.server.now()))
        except Exception as exc:
            log.error("do-not-call number from %s not stored: %s", agent_id, exc.__class__.__name__)

    async def _do_schedule_callback(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        call_id = params.get("call_id")
        if call_id is not None and call_id not in self._own_calls(agent_id):
            raise ConsoleError("unknown-call", "a callback can name only your current or your last call")
        callback_id = await self._store_callback(agent_id, params, call_id=call_id)
        return {"callback_id": callback_id}

    def _own_calls(self, agent_id: str) -> set[str]:
        """The calls an agent may attach a callback to: the one it is on and the last one it answered."""
        own = set()
        live = self.server.call_for_agent(agent_id)
        if live is not None:
            own.add(live.queued.call_id)
        last = self.server.last_call.get(agent_id)
        if last is not None:
            own.add(last[1])
        return own

    async def _store_callback(self, agent_id: str, params: dict[str, Any], call_id: str | None) -> str:
        at = params["at"]
        try:
            if isinstance(at, str):
                at = datetime.fromisoformat(at.replace("Z", "+00:00"))
            due = at.astimezone(UTC).timestamp()  # the store keeps UTC: a time that is not one in UTC fails here
        except (ValueError, OverflowError):
            raise ConsoleError("bad-callback-time", "the callback time is out of range") from None
        if due <= self.server.now():
            raise ConsoleError("bad-callback-time", "the callback time must be in the future")
        callback_id = await _result(defer.maybeDeferred(
            self.server.schedule_callback, number=str(params["number"]), due=due,
            notes=str(params.get("notes") or ""), agent_id=agent_id, call_id=call_id or "",
            lead_id=str(params.get("lead_id") or ""), source="agent"))
        queue = self._queue_of(agent_id, call_id) if call_id else ""
        if queue:  # stored: the statistics count it for the call's queue
            self.server.publish(AgentCallbackScheduled(ts=self.server.now(), queue=queue, agent_id=agent_id,
                                                       call_id=call_id or ""))
        return str(callback_id)

    def _queue_of(self, agent_id: str, call_id: str) -> str:
        """The queue of the agent's current or last call ``call_id`` ("" when neither is that call)."""
        live = self.server.call_for_agent(agent_id)
        if live is not None and live.queued.call_id == call_id:
            return live.queued.queue
        last = self.server.last_call.get(agent_id)
        return last.queue if last is not None and last.call_id == call_id else ""

    async def _do_preview_accept(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Dial the previewed lead; the person who answers is offered to this agent (who stays reserved)."""
        dialer = self.server.dialer
        if dialer is None:
            raise ConsoleError("no-preview", "no preview lead is waiting for you")
        try:
            outputs = dialer.preview_accept(agent_id, str(params["lead_id"]), self.server.now())
        except PreviewError as exc:
            raise ConsoleError(exc.error_id, exc.message) from None
        self.server.apply(outputs)
        return {"lead_id": params["lead_id"], "status": "dialling", "state": self.server.state_message(agent_id)}

    async def _do_preview_skip(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """The lead goes back (with the reason); the agent is ready again and gets the next one."""
        dialer = self.server.dialer
        if dialer is None:
            raise ConsoleError("no-preview", "no preview lead is waiting for you")
        try:
            outputs = dialer.preview_skip(agent_id, str(params["lead_id"]), str(params.get("reason") or ""),
                                          self.server.now())
        except PreviewError as exc:
            raise ConsoleError(exc.error_id, exc.message) from None
        self.server.apply(outputs)
        return {"state": self.server.state_message(agent_id)}

    async def _do_choose_customer(self, agent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        live = self._live(agent_id, params.get("call_id"))
        pop = live.pop or {}
        matches = pop.get("matches") or []
        chosen = next((m for m in matches if str(m.get("customer_id")) == str(params["customer_id"])), None)
        if chosen is None:
            raise ConsoleError("unknown-customer", "that customer is not one of the pop's matches")
        update = dict(pop, type="pop_update", customer=chosen, matches=[], complete=True)
        live.pop = self.server.agent_pops[agent_id] = dict(update, type="pop")
        self.server.push_to_agent(agent_id, update)
        if self.server.pop_lookup is not None and chosen.get("customer_id") is not None:
            self.server.pop_lookup.set_disposition(
                call_key(live.queued.server, live.queued.call_id), customer_id=int(chosen["customer_id"]),
            ).addErrback(lambda f: log.warning("customer choice not recorded: %s", f.getErrorMessage()))
        return {"call_id": live.queued.call_id}
