"""Shared driver for the ACD tests: an AcdService with a virtual clock and the tracker's events.

Holds no tests of its own; the ``test_acd_*`` modules import it.
"""

from __future__ import annotations

from typing import Any

from acd.events import QueueCallFinished
from acd.service import AcdService, Output
from acd.settings import AcdSection
from cti.commands import OfferCall
from cti.events import (
    AmiConnectionChanged,
    CallQueued,
    CallReturnedToHold,
    ChannelHungup,
    DeviceStateChanged,
    DialEnded,
    DialStarted,
)

SERVER = "pbx"


def agent(aid: str, skills: dict[str, int] | None = None, **kw: Any) -> dict[str, Any]:
    return {"id": aid, "name": f"Agent {aid}", "endpoint": f"PJSIP/{aid}", "skills": skills or {}, **kw}


def of_type(out: list[Output], kind: type) -> list[Any]:
    return [x for x in out if isinstance(x, kind)]


class Harness:
    """Drives an AcdService the way the server does, in virtual time."""

    def __init__(self, cfg: dict[str, Any], now: float = 1000.0) -> None:
        self.section = AcdSection.model_validate(cfg)
        self.now = now
        self.acd = AcdService(self.section, now)
        self.log: list[Output] = []
        self.channels: dict[str, str] = {}

    def _keep(self, out: list[Output]) -> list[Output]:
        self.log.extend(out)
        return out

    def advance(self, dt: float) -> list[Output]:
        self.now += dt
        return self._keep(self.acd.tick(self.now))

    def event(self, ev: object) -> list[Output]:
        return self._keep(self.acd.handle(ev, self.now))

    def ready(self, *agent_ids: str) -> list[Output]:
        out: list[Output] = []
        for aid in agent_ids:
            if self.acd.agent_snapshot(aid).state == "logged_out":
                out += self._keep(self.acd.login(aid, None, self.now))
            out += self._keep(self.acd.ready(aid, self.now))
        return out

    def request(self, name: str, *args: Any) -> list[Output]:
        return self._keep(getattr(self.acd, name)(*args, self.now))

    def queued(self, uid: str, queue: str, skills: str = "", priority: int = 0, server: str = SERVER,
               data: dict[str, str] | None = None) -> list[Output]:
        channel = f"PJSIP/trunk-{uid}"
        self.channels[uid] = channel
        return self.event(CallQueued(server=server, ts=self.now, call_id=f"L{uid}", uniqueid=uid, channel=channel,
                                     queue=queue, skills=skills, priority=priority, language="en",
                                     caller_num=f"+1555{uid}", caller_name="Caller", dnis="100", data=data or {}))

    def dial(self, uid: str, agent_id: str, server: str = SERVER) -> list[Output]:
        return self.event(DialStarted(server=server, ts=self.now, call_id=f"L{uid}", uniqueid=uid,
                                      channel=self.channels[uid], dest_uniqueid=f"{uid}-a",
                                      dest_channel=f"PJSIP/{agent_id}-0001", dial_string=f"PJSIP/{agent_id}"))

    def dial_end(self, uid: str, agent_id: str, status: str, server: str = SERVER) -> list[Output]:
        return self.event(DialEnded(server=server, ts=self.now, call_id=f"L{uid}", uniqueid=uid,
                                    channel=self.channels[uid], dest_uniqueid=f"{uid}-a",
                                    dest_channel=f"PJSIP/{agent_id}-0001", status=status))

    def answer(self, uid: str, agent_id: str) -> list[Output]:
        return self.dial(uid, agent_id) + self.dial_end(uid, agent_id, "ANSWER")

    def returned(self, uid: str, agent_id: str, status: str, queue: str = "") -> list[Output]:
        return self.event(CallReturnedToHold(server=SERVER, ts=self.now, call_id=f"L{uid}", uniqueid=uid,
                                             channel=self.channels[uid], queue=queue, agent_id=agent_id,
                                             dial_status=status))

    def hangup(self, uid: str, server: str = SERVER) -> list[Output]:
        return self.event(ChannelHungup(server=server, ts=self.now, call_id=f"L{uid}", uniqueid=uid,
                                        channel=self.channels.get(uid, "x"), cause=16,
                                        cause_txt="Normal Clearing"))

    def agent_hangup(self, uid: str) -> list[Output]:
        return self.event(ChannelHungup(server=SERVER, ts=self.now, call_id=f"L{uid}", uniqueid=f"{uid}-a",
                                        channel="PJSIP/x-0001", cause=16, cause_txt="Normal"))

    def device(self, agent_id: str, state: str) -> list[Output]:
        return self.event(DeviceStateChanged(server=SERVER, ts=self.now, device=f"PJSIP/{agent_id}", state=state))

    def ami(self, connected: bool, server: str = SERVER) -> list[Output]:
        return self.event(AmiConnectionChanged(server=server, ts=self.now, connected=connected, detail="test"))

    def offers(self, out: list[Output] | None = None) -> list[tuple[str, str]]:
        """(uniqueid, agent id) of every OfferCall in ``out`` (default: everything so far)."""
        return [(o.uniqueid, o.agent_id) for o in of_type(self.log if out is None else out, OfferCall)]

    def rows(self) -> list[QueueCallFinished]:
        return of_type(self.log, QueueCallFinished)

    def state(self, agent_id: str) -> str:
        return str(self.acd.agent_snapshot(agent_id).state)
