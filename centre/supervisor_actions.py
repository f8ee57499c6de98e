"""Supervisors' actions on agents and campaigns, each audited (``centre.audit``): who, what (the action and
its parameters), on whom, when, and whether it was carried out or refused (with the error id and message).

* ``force_not_ready`` / ``force_logout``: through the ACD's state machine (``AcdService.force_not_ready`` /
  ``force_logout``). An agent who is ringing, on a call or in its wrap-up gets it when that work ends (it
  keeps its wrap-up to finish the call); the agent's console gets a ``notice`` at once and its ``state``
  frame, with ``by`` naming the supervisor, when it applies.
* ``set_skills``: the agent's whole new set of skills and levels (``AcdService.set_skills``): the router
  uses them for its next decision. For this process only: the configuration stays the source of truth, so
  a restart brings back the configured skills (change ``acd.agents[].skills`` to keep a change).
* ``monitor`` (``listen`` / ``whisper`` / ``barge``): an AMI Originate of the supervisor's own phone
  (``console.supervisors[].endpoint``) into ``[cti-spy]`` at the mode's extension, with ``CTI_SPY_CHANNEL`` the
  agent's channel on its call; once the supervisor answers, ChanSpy (options q, w, B) joins the call.
* ``pause_campaign`` / ``resume_campaign`` / ``set_campaign`` (mode, cap, ratio): the dialer's ``pause``,
  ``resume`` and ``change``: at once, for this process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from acd.states import AcdError
from agent_console.backend import ConsoleError, SessionInfo
from centre.audit import AuditEntry, AuditStore
from cti.commands import Command, Originate
from cti.contract import CTI_SPY_CHANNEL, SPY_CONTEXT, SPY_EXTENS
from dialer.shell import CampaignChangeError

if TYPE_CHECKING:
    from centre.server import CtiServer

log = logging.getLogger("cti.supervisor")

SPY_RING_MS = 30_000  # how long the supervisor's phone rings for a monitor before the Originate gives up


class SupervisorActions:
    """The audited supervisor actions of ``ServerConsoleBackend`` (``apply``: its command runner, which turns a
    PBX refusal into ``action-failed``; ``ref``: its command references)."""

    def __init__(self, server: CtiServer, apply: Callable[[Command], Awaitable[None]],
                 ref: Callable[[str, str], str]) -> None:
        self.server = server
        self.apply = apply
        self.ref = ref
        self._store: AuditStore | None = None

    async def handle(self, session: SessionInfo, action: str, params: dict[str, Any]) -> dict[str, Any]:
        if session.role != "supervisor":
            raise ConsoleError("forbidden", f"{action} is a supervisor action")
        target = f"campaign:{params['campaign']}" if "campaign" in params else f"agent:{params.get('agent_id', '')}"
        handler = getattr(self, f"_do_{action}")
        try:
            result: dict[str, Any] = await handler(session.agent_id, params)
        except ConsoleError as exc:
            await self._audit(session.agent_id, action, target, params, "refused", f"{exc.error_id}: {exc.message}")
            raise
        except (AcdError, CampaignChangeError) as exc:
            await self._audit(session.agent_id, action, target, params, "refused", f"{exc.error_id}: {exc.message}")
            raise ConsoleError(exc.error_id, exc.message, **exc.details) from None
        await self._audit(session.agent_id, action, target, params, "ok", "")
        return result

    # ------------------------------------------------------------------ audit
    async def _audit(self, who: str, action: str, target: str, params: dict[str, Any], result: str,
                     reason: str) -> None:
        """Write the row before the supervisor hears the result (in the database's thread). Without a database,
        or should the write fail, the action stands and the log says so."""
        entry = AuditEntry(self.server.now(), who, action, target, dict(params), result, reason)
        log.info("supervisor %s %s %s: %s %s", who, action, target, result, reason)
        database = self.server.database
        if database is None:
            return
        if self._store is None:
            self._store = AuditStore(database.engine)
        store = self._store
        run = self.server.run_in_thread
        try:
            d = run(lambda: store.append(entry)) if run is not None else defer.maybeDeferred(store.append, entry)
            await defer.Deferred.asFuture(d, asyncio.get_running_loop())
        except Exception as exc:
            log.error("audit row of %s %s by %s not written: %s", action, target, who, exc.__class__.__name__)

    # ------------------------------------------------------------------ agents
    def _agent(self, agent_id: str) -> None:
        if agent_id not in self.server.acd.agent_ids():
            raise ConsoleError("unknown-agent", f"no agent {agent_id[:40]!r} is configured")

    async def _do_force_not_ready(self, sup: str, params: dict[str, Any]) -> dict[str, Any]:
        agent_id, reason = params["agent_id"], params["reason"]
        self._agent(agent_id)
        self.server.apply(self.server.acd.force_not_ready(agent_id, reason, sup, self.server.now()))
        snap = self.server.acd.agent_snapshot(agent_id)
        pending = bool(snap.pending_by)
        self.server.push_to_agent(agent_id, {
            "type": "notice", "notice": "supervisor", "by": sup,
            "message": f"set not ready ({reason}) by supervisor {sup}" + (" when this call's work ends" if pending
                                                                          else "")})
        return {"agent_id": agent_id, "pending": pending, "state": self.server.state_message(agent_id)}

    async def _do_force_logout(self, sup: str, params: dict[str, Any]) -> dict[str, Any]:
        agent_id = params["agent_id"]
        self._agent(agent_id)
        self.server.apply(self.server.acd.force_logout(agent_id, sup, self.server.now()))
        pending = bool(self.server.acd.agent_snapshot(agent_id).pending_by)
        self.server.push_to_agent(agent_id, {
            "type": "notice", "notice": "supervisor", "by": sup,
            "message": f"logged out by supervisor {sup}" + (" when this call's work ends" if pending else "")})
        return {"agent_id": agent_id, "pending": pending, "state": self.server.state_message(agent_id)}

    async def _do_set_skills(self, sup: str, params: dict[str, Any]) -> dict[str, Any]:
        agent_id, skills = params["agent_id"], dict(params["skills"])
        self._agent(agent_id)
        known = self.server.cfg.acd.known_skills()
        unknown = sorted(set(skills) - known)
        if unknown:
            raise ConsoleError("unknown-skill", f"no agent or queue has skill {unknown[0][:64]!r}",
                               known=sorted(known))
        self.server.apply(self.server.acd.set_skills(agent_id, skills, self.server.now()))
        snap = self.server.acd.agent_snapshot(agent_id)
        return {"agent_id": agent_id, "skills": dict(snap.skills), "queues": list(snap.queues)}

    async def _do_monitor(self, sup: str, params: dict[str, Any]) -> dict[str, Any]:
        agent_id, mode = params["agent_id"], params["mode"]
        self._agent(agent_id)
        endpoint = next((s.endpoint for s in self.server.cfg.console.supervisors if s.id == sup), None)
        if not endpoint:
            raise ConsoleError("no-endpoint", f"supervisor {sup} has no phone to ring "
                               "(console.supervisors[].endpoint)")
        live = self.server.call_for_agent(agent_id)
        if live is None or not live.agent_channel or live.state.value == "ringing":
            raise ConsoleError("no-active-call", f"agent {agent_id} is on no call now")
        channel = live.agent_channel
        ref = self.ref(sup, "monitor")
        await self.apply(Originate(ref, live.queued.server, endpoint, SPY_CONTEXT, SPY_EXTENS[mode],
                                   caller_id=f'"{mode} {agent_id}" <{agent_id}>', timeout_ms=SPY_RING_MS,
                                   variables={CTI_SPY_CHANNEL: channel}))
        return {"agent_id": agent_id, "mode": mode, "channel": channel, "endpoint": endpoint,
                "call_id": live.queued.call_id, "ref": ref}

    # ------------------------------------------------------------------ campaigns
    def _dialer(self, name: str) -> Any:
        dialer = self.server.dialer
        if dialer is None:
            raise ConsoleError("unknown-campaign", f"no campaign named {name[:64]!r}: no dialer runs", known=[])
        return dialer

    def _campaign_result(self, name: str) -> dict[str, Any]:
        dialer = self.server.dialer
        assert dialer is not None
        s = dialer.campaigns[name].settings
        return {"campaign": name, "paused": name in dialer.paused, "enabled": s.enabled, "mode": s.mode,
                "max_abandon_rate": s.max_abandon_rate, "ratio": s.ratio, "policy": s.policy}

    async def _do_pause_campaign(self, sup: str, params: dict[str, Any]) -> dict[str, Any]:
        name = params["campaign"]
        self._dialer(name).pause(name)
        self._wallboard()
        return self._campaign_result(name)

    async def _do_resume_campaign(self, sup: str, params: dict[str, Any]) -> dict[str, Any]:
        name = params["campaign"]
        self._dialer(name).resume(name)
        self.server.apply([])  # the next pacing round at the next tick
        self._wallboard()
        return self._campaign_result(name)

    async def _do_set_campaign(self, sup: str, params: dict[str, Any]) -> dict[str, Any]:
        name = params["campaign"]
        self._dialer(name).change(name, mode=params.get("mode"), max_abandon_rate=params.get("max_abandon_rate"),
                                  ratio=params.get("ratio"))
        self._wallboard()
        return self._campaign_result(name)

    def _wallboard(self) -> None:
        """The supervisors see the change at once (not at the next wallboard round)."""
        self.server.push_to_supervisors(self.server.wallboard())
