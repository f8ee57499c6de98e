"""The AMI links to the PBXs as the server sees them: health, resync, holding callers re-queued, PBX check.

On connect: a ``CoreShowChannels`` resync (the call tracker's channels, callers found holding in
``cti-hold`` that nobody knows queued again, the agent restorer told) and a check of what the PBX has
(``cti.pbx_check``). On loss: the tracker's channels of that PBX end. Either way the link's state goes
to the wallboard's ``Health`` and ``AmiConnectionChanged`` on the bus. Handed over to another node (its lease
lost): the tracker's channels of that PBX end here (``hand_over``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from centre.call_sessions import CallSessions
from centre.wallboard import Health
from config.schema import CtiConfig
from cti import pbx_check
from cti.ami.client import AMIClientPool
from cti.ami.message import AMIMessage
from cti.calls import CallTracker
from cti.calls.model import channel_age
from cti.contract import (
    CTI_CAMPAIGN,
    CTI_DNIS,
    CTI_LANGUAGE,
    CTI_LEAD_ID,
    CTI_LEAD_NUMBER,
    CTI_PRIORITY,
    CTI_QUEUE,
    CTI_SKILLS,
    HOLD_CONTEXTS,
)
from cti.events import AmiConnectionChanged, CallQueued

log = logging.getLogger("centre.server")

#: Routing variables read from a caller found holding after a resync.
HOLDING_VARIABLES = (CTI_QUEUE, CTI_SKILLS, CTI_PRIORITY, CTI_LANGUAGE, CTI_DNIS, CTI_CAMPAIGN, CTI_LEAD_ID,
                     CTI_LEAD_NUMBER)


class PbxLinks:
    """``publish(event)``: an event into the server's flow; ``resynced(server, channels)``: the agent
    restorer's hook; ``now()``: the server's clock."""

    def __init__(self, cfg: CtiConfig, *, pool: AMIClientPool, tracker: CallTracker, sessions: CallSessions,
                 publish: Callable[[object], None], resynced: Callable[[str, list[AMIMessage]], None],
                 now: Callable[[], float]) -> None:
        self.cfg = cfg
        self.pool = pool
        self.tracker = tracker
        self.sessions = sessions
        self.publish = publish
        self.resynced = resynced
        self.now = now
        self.health = Health(ami={s.name: False for s in cfg.asterisk})
        policies = [cfg.recording.default_policy, *(q.recording for q in cfg.acd.queues),
                    *(c.recording for c in cfg.dialer.campaigns)]
        self._pbx_needs = pbx_check.shipped_needs(recording=any(p not in (None, "none") for p in policies))

    def connection_changed(self, server: str, connected: bool, detail: str) -> None:
        health = self.health
        was = health.ami.get(server)
        health.ami[server] = connected
        health.ami_detail[server] = detail
        now = self.now()
        if was != connected or server not in health.ami_since:
            health.ami_since[server] = now  # the wallboard says "DOWN for 5 min: <detail>"
        if connected:
            log.info("%s: connected (%s)", server, detail)
            self.pool.send(server, "CoreShowChannels").addCallbacks(
                lambda result: self.resync(server, result.events),
                lambda failure: log.warning("%s: resync failed: %s", server, failure.getErrorMessage()),
            )
            self.check_pbx(server)
        else:
            if was:
                log.warning("%s: AMI connection lost (%s)", server, detail)
            for event in self.tracker.connection_lost(server, now):
                self.publish(event)
        self.publish(AmiConnectionChanged(server=server, ts=now, connected=connected, detail=detail))

    def hand_over(self, server: str) -> None:
        """This node gave up ``server`` (its lease went to another node, ``centre.node_leases``): its tracked
        channels and calls end here (the holding callers leave this node's queues); the node that holds it now
        finds them in its resync."""
        for event in self.tracker.hand_over(server, self.now()):
            self.publish(event)

    def check_pbx(self, server: str) -> None:
        """Ask the PBX what it has (applications, functions, sounds, music classes) and report what the
        shipped dialplan and the flows need but it lacks: logged when it changes, shown on the wallboard."""
        keys = list(pbx_check.COMMANDS)
        asked = [self.pool.send(server, "Command", {"Command": pbx_check.COMMANDS[k]}) for k in keys]

        def got(results: list[tuple[bool, Any]]) -> None:
            outputs = {k: (r.response.getall("Output") if ok else None)
                       for k, (ok, r) in zip(keys, results, strict=True)}
            report = pbx_check.check(outputs, self._pbx_needs, self.prompt_uses())
            problems = report.problems()
            if problems != self.health.pbx.get(server, []):
                for note in report.notes():
                    log.info("%s: %s", server, note)
                if problems:
                    log.error("%s: the PBX lacks what the shipped dialplan or the flows need:\n  %s", server,
                              "\n  ".join(problems))
                else:
                    log.info("%s: the PBX has every application, function and prompt the server needs", server)
            self.health.pbx[server] = problems

        defer.DeferredList(asked, consumeErrors=True).addCallback(got)

    def prompt_uses(self) -> dict[str, list[str]]:
        """Every sound the PBX will be asked to play -> where it is used (flows' nodes, campaigns)."""
        uses = {p: [f"flow {f} node {n}" for f, n in where] for p, where in self.cfg.ivr.prompt_uses().items()}
        for c in self.cfg.dialer.campaigns:
            for what, sound in (("safe-harbour message", c.safe_harbour_message),
                                ("machine message", c.machine_message)):
                if sound:
                    uses.setdefault(str(sound), []).append(f"campaign {c.name} {what}")
        uses.setdefault("vm-goodbye", []).append("[cti-safe-harbour] default message")
        return uses

    def resync(self, server: str, items: list[AMIMessage]) -> None:
        channels = [m for m in items if m.get("Event") == "CoreShowChannel"]
        for event in self.tracker.resync(server, channels, self.now()):
            self.publish(event)
        for item in channels:
            if item.get("Context") in HOLD_CONTEXTS and self.sessions.get(server, item.get("Uniqueid", "")) is None:
                self.requeue_holding(server, item)
        self.resynced(server, channels)

    def requeue_holding(self, server: str, item: AMIMessage) -> None:
        """A caller already waiting in ``cti-hold`` that we do not know (the server restarted, or the
        CTIQueued UserEvent fell in an AMI outage): read its routing variables and queue it again, with
        its time on the channel as its wait so far, so that nobody is left holding forever."""
        channel, uniqueid = item.get("Channel", ""), item.get("Uniqueid", "")
        if not channel or not uniqueid:
            return

        def got(values: dict[str, str]) -> None:
            if self.sessions.get(server, uniqueid) is not None:
                return  # the UserEvent arrived meanwhile
            known = self.tracker.variables(server, uniqueid)
            data = {**{k: v for k, v in values.items() if v}, **known}
            try:
                priority = int(values[CTI_PRIORITY] or 0)
            except ValueError:
                priority = 0
            now = self.now()
            log.info("%s: re-queueing caller %s found holding after a resync", server, uniqueid)
            self.publish(CallQueued(
                server=server, ts=now - channel_age(item.get("Duration")), call_id=item.get("Linkedid", uniqueid),
                uniqueid=uniqueid, channel=channel, queue=values[CTI_QUEUE] or (self.cfg.acd.default_queue or ""),
                skills=values[CTI_SKILLS], priority=priority, language=values[CTI_LANGUAGE],
                caller_num=item.get("CallerIDNum", ""), caller_name=item.get("CallerIDName", ""),
                dnis=values[CTI_DNIS], data=data))

        self.pool.getvars(server, channel, HOLDING_VARIABLES).addCallbacks(
            got, lambda f: log.warning("%s: could not read the routing variables of holding caller %s: %s",
                                       server, uniqueid, f.getErrorMessage()))
