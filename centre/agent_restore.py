"""Agents' ACD state after a server restart: the I/O shell around ``acd.restore``.

``AgentRestorer`` gathers the two sources once, then restores: the state log's last row per agent
(``acd.recorder.last_agent_states``, read at start-up off the loop, like the dialer's leads) and, from
each PBX's first resync, the callers it shows with an agent (``CoreShowChannels`` plus an AMI ``Getvar``
of the caller's ``CTI_*`` variables). Nothing is restored before every configured PBX has been resynced
once, so that no agent is made ready while the PBX still has them on a call; until then agents are
``logged_out``, and one who logs in by hand is left as they chose. A restored call gets its console
``call`` frame and pop, and its disposition as before the restart.

Every resync also tells the ACD which agents' phones are in use or ringing (``DeviceStateChanged``
from the channels listed), since device state events that came while we were away are lost.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from twisted.internet import defer

from acd.recorder import last_agent_states
from acd.restore import AgentLeg, LastState, plan_restore
from acd.states import AcdError, AgentState
from centre.call_log import call_key
from centre.call_sessions import HandledCall
from cti.ami.message import AMIMessage
from cti.calls.model import channel_age, device_of
from cti.contract import (
    AGENT_CONTEXT,
    AGENT_ON_HOLD_CONTEXT,
    CTI_AGENT_ENDPOINT,
    CTI_AGENT_ID,
    CTI_CAMPAIGN,
    CTI_DNIS,
    CTI_LANGUAGE,
    CTI_LEAD_ID,
    CTI_LEAD_NUMBER,
    CTI_PRIORITY,
    CTI_QUEUE,
    CTI_SKILLS,
    ON_HOLD_CONTEXT,
)
from cti.events import CallQueued, DeviceStateChanged
from cti.sessions import CallSession, SessionState

if TYPE_CHECKING:
    from centre.server import CtiServer

log = logging.getLogger(__name__)

#: Variables read from a caller found with an agent (set by the IVR, the ACD's offer and the dialer).
LEG_VARIABLES = (CTI_AGENT_ID, CTI_AGENT_ENDPOINT, CTI_QUEUE, CTI_SKILLS, CTI_PRIORITY, CTI_LANGUAGE,
                 CTI_DNIS, CTI_CAMPAIGN, CTI_LEAD_ID, CTI_LEAD_NUMBER)
RINGING_CHANNEL_STATES = frozenset({"4", "5"})  # AST_STATE_RING, AST_STATE_RINGING


def busy_devices(items: list[AMIMessage]) -> dict[str, str]:
    """Device -> INUSE or RINGING for every device with a channel in the list (INUSE wins)."""
    out: dict[str, str] = {}
    for item in items:
        device = device_of(item.get("Channel", ""))
        if not device:
            continue
        state = "RINGING" if item.get("ChannelState", "") in RINGING_CHANNEL_STATES else "INUSE"
        if out.get(device) != "INUSE":
            out[device] = state
    return out


def agent_legs(server: str, items: list[AMIMessage], variables: dict[str, dict[str, str]],
               now: float) -> list[AgentLeg]:
    """The callers in ``items`` that are with an agent: dialling one in ``[cti-agent]`` (ringing, or
    talking once bridged) or on hold by one in ``[cti-onhold]``; ``variables`` by caller uniqueid."""
    by_bridge: dict[str, list[AMIMessage]] = {}
    by_linkedid: dict[str, list[AMIMessage]] = {}
    for item in items:
        if item.get("BridgeId"):
            by_bridge.setdefault(item.get("BridgeId", ""), []).append(item)
        by_linkedid.setdefault(item.get("Linkedid", ""), []).append(item)
    legs: list[AgentLeg] = []
    for item in items:
        context, uid = item.get("Context", ""), item.get("Uniqueid", "")
        if context not in (AGENT_CONTEXT, ON_HOLD_CONTEXT) or not uid:
            continue
        values = variables.get(uid, {})
        endpoint = values.get(CTI_AGENT_ENDPOINT, "")
        others = [o for o in by_linkedid.get(item.get("Linkedid", ""), []) if o is not item]
        if context == AGENT_CONTEXT:
            agent_id = values.get(CTI_AGENT_ID) or item.get("Exten", "")
            bridge = item.get("BridgeId", "")
            status = "connected" if bridge else "ringing"
            peers = [o for o in by_bridge.get(bridge, []) if o is not item] if bridge else \
                [o for o in others if endpoint and device_of(o.get("Channel", "")).lower() == endpoint.lower()]
        else:
            agent_id, status = values.get(CTI_AGENT_ID, ""), "held"
            peers = [o for o in others if o.get("Context") == AGENT_ON_HOLD_CONTEXT]
        if not agent_id:
            continue
        peer = peers[0] if peers else None
        entered = now - channel_age(item.get("Duration"))
        try:
            priority = int(values.get(CTI_PRIORITY) or 0)
        except ValueError:
            priority = 0
        legs.append(AgentLeg(
            server=server, agent_id=agent_id, status=status, caller_uniqueid=uid,
            caller_channel=item.get("Channel", ""), call_id=item.get("Linkedid", "") or uid,
            agent_uniqueid=peer.get("Uniqueid", "") if peer else "",
            agent_channel=peer.get("Channel", "") if peer else "",
            endpoint=endpoint or (device_of(peer.get("Channel", "")) if peer else ""),
            since=now - channel_age(peer.get("Duration")) if peer else entered, entered=entered,
            queue=values.get(CTI_QUEUE, ""), skills=values.get(CTI_SKILLS, ""), priority=priority,
            language=values.get(CTI_LANGUAGE, ""),
            caller_num=values.get(CTI_LEAD_NUMBER) or item.get("CallerIDNum", ""),
            dnis=values.get(CTI_DNIS, ""), data={k: v for k, v in values.items() if v}))
    return legs


class AgentRestorer:
    """Restores agents once, when the state log and every PBX's first resync are in."""

    def __init__(self, server: CtiServer) -> None:
        self.server = server
        self.rows: dict[str, LastState] | None = None  # None: the state log is still being read
        self.legs: dict[str, list[AgentLeg]] = {}  # PBX name -> callers with an agent at its first resync
        self.done = False
        self.restored: dict[str, str] = {}  # agent -> state restored (for logs and tests)

    def without_database(self) -> None:
        if self.rows is None:
            self.rows = {}
            self._maybe_restore()

    def load(self, engine: Engine) -> None:
        """Read the state log's last row per agent. Blocking: at start-up, off the loop (``open_database``)."""
        try:
            self.rows = last_agent_states(engine, self.server.acd.agent_ids())
        except Exception as exc:
            log.warning("agent states not read back (%s): agents are restored from the PBX only",
                        exc.__class__.__name__)
            self.rows = {}

    def resynced(self, server: str, items: list[AMIMessage]) -> None:
        """A resync's channel list: device states now, and (first time only) the callers with agents."""
        now = self.server.now()
        for device, state in sorted(busy_devices(items).items()):
            self.server.publish(DeviceStateChanged(server=server, ts=now, device=device, state=state))
        if self.done or server in self.legs:
            return
        callers = [i for i in items if i.get("Context") in (AGENT_CONTEXT, ON_HOLD_CONTEXT) and i.get("Channel")]
        reads = [self.server.pool.getvars(server, i.get("Channel", ""), LEG_VARIABLES) for i in callers]

        def got(results: list[Any]) -> None:
            variables = {}
            for item, (ok, values) in zip(callers, results, strict=True):
                if ok:
                    variables[item.get("Uniqueid", "")] = values
            self.legs[server] = agent_legs(server, items, variables, self.server.now())
            self._maybe_restore()

        defer.DeferredList(reads, consumeErrors=True).addCallback(got)

    def _maybe_restore(self) -> None:
        if self.done or self.rows is None or any(s.name not in self.legs for s in self.server.cfg.asterisk):
            return
        self.done = True
        srv, acd, now = self.server, self.server.acd, self.server.now()
        legs = [leg for server_legs in self.legs.values() for leg in server_legs]
        for r in plan_restore(self.rows, legs, acd.wrapup_seconds, now):
            if acd.agent_snapshot(r.agent_id).state != AgentState.LOGGED_OUT:
                continue  # logged in by hand meanwhile: as they chose
            try:
                outputs = acd.restore(r, now)
            except AcdError as exc:
                log.warning("agent %s not restored: %s", r.agent_id, exc.message)
                continue
            self.restored[r.agent_id] = r.state.value
            if r.leg is not None:
                self._restore_call(r.agent_id, r.leg, r.since)
            elif r.state == AgentState.WRAP_UP and r.last_uniqueid:
                self._restore_last_call(r.agent_id, r.last_uniqueid)
            srv.apply(outputs)
        if self.restored:
            log.info("restored %d agents after a start: %s", len(self.restored),
                     ", ".join(f"{a}={s}" for a, s in sorted(self.restored.items())))

    def _restore_call(self, agent_id: str, leg: AgentLeg, since: float) -> None:
        srv = self.server
        call = srv.acd.agent_snapshot(agent_id).call  # the ACD's queue (an unknown one falls back)
        queued = CallQueued(server=leg.server, ts=leg.entered, call_id=leg.call_id, uniqueid=leg.caller_uniqueid,
                            channel=leg.caller_channel, queue=call.queue if call else leg.queue,
                            skills=leg.skills, priority=leg.priority, language=leg.language,
                            caller_num=leg.caller_num, caller_name="", dnis=leg.dnis, data=dict(leg.data))
        srv.adopt_call(CallSession.restored(queued, SessionState(leg.status), agent_id=agent_id,
                                            agent_channel=leg.agent_channel, since=since))

    def _restore_last_call(self, agent_id: str, uniqueid: str) -> None:
        """The call of a wrap-up that went on across the restart: what the agent's disposition is of. The
        state log keeps the caller's uniqueid, which is the call id of the calls the ACD takes (the first
        channel of a call); with several PBXs the first is assumed."""
        server = self.server.cfg.asterisk[0].name if self.server.cfg.asterisk else ""
        self.server.last_call[agent_id] = HandledCall(server, uniqueid, call_key(server, uniqueid))
