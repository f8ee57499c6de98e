"""The supervisors' wallboard: queues, agents and the server's links, as the console protocol's
``wallboard`` frame; and ``Health``, what it shows about the links."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from acd.recorder import Recorder
from acd.service import AcdService

WALLBOARD_INTERVAL = 1.0  # seconds between wallboard pushes to the supervisors


@dataclass
class Health:
    """What the wallboard shows about the server's links."""

    ami: dict[str, bool] = field(default_factory=dict)
    ami_detail: dict[str, str] = field(default_factory=dict)
    ami_since: dict[str, float] = field(default_factory=dict)  # when the link last went up or down
    db: bool | None = None
    db_check: bool | None = None  # the last readiness check of the database (centre.ops_http), None: none yet
    redis: bool | None = None
    redis_bus: bool | None = None  # the event bus between nodes (``centre.node_bus``), None: one node alone
    # the ACD's shared agent pool answers (``acd.pool_link``: no routing decision while it does not); None: one
    # node alone, or not yet heard of
    agent_pool: bool | None = None
    pbx: dict[str, list[str]] = field(default_factory=dict)  # what each PBX lacks (cti.pbx_check)
    # this node's leases (centre.node_leases): its id, the leases it holds, whether their store answered
    # (None: not asked yet) and its last error, the AMI links this node is to hold (None: every one)
    node: str = ""
    leases: list[str] = field(default_factory=list)
    lease_store: bool | None = None
    lease_error: str = ""
    ami_here: set[str] | None = None

    def set_redis_bus(self, up: bool) -> None:
        """The bus between nodes reached Redis (True) or lost it (the transport's ``on_change``)."""
        self.redis_bus = up

    def as_dict(self) -> dict[str, Any]:
        doc = {"ami": dict(self.ami), "ami_detail": dict(self.ami_detail), "ami_since": dict(self.ami_since),
               "db": self.db, "redis": self.redis, "pbx": {k: list(v) for k, v in self.pbx.items()},
               "leases": self.leases_dict()}
        if self.redis_bus is not None:
            doc["redis_bus"] = self.redis_bus
        if self.agent_pool is not None:
            doc["agent_pool"] = self.agent_pool
        return doc

    def leases_dict(self) -> dict[str, Any]:
        """The node's leases as the wallboard and ``/healthz`` show them."""
        return {"node": self.node, "held": list(self.leases), "store_up": self.lease_store,
                "error": self.lease_error}


def occupancy(agents: dict[str, int]) -> float | None:
    """The share of a queue's logged-in agents busy with calls now (on a call or in wrap-up)."""
    logged_in = sum(n for state, n in agents.items() if state != "logged_out")
    return (agents.get("on_call", 0) + agents.get("wrap_up", 0)) / logged_in if logged_in else None


def caller_of(pop: Mapping[str, Any] | None, number: str) -> str:
    """Who a call is with, for a person to read: the customer's name when the pop found one customer (or the
    campaign lead's name), else the caller's name as the network gave it, else the number (never a call id)."""
    if pop:
        customer = pop.get("customer") or {}
        lead = (pop.get("outbound") or {}).get("lead") or {}
        for name in ((customer.get("profile") or {}).get("name"), lead.get("name")):
            if name and str(name).strip():
                return str(name).strip()
        name = str(pop.get("caller_name") or "").strip()
        if name:
            return name
        number = number or str(pop.get("ani") or "")
    return number


def wallboard(acd: AcdService, health: Health, recorder: Recorder | None, now: float,
              campaigns: list[dict[str, Any]] | None = None, *,
              warnings: list[dict[str, Any]] | None = None,
              pops: Mapping[str, Mapping[str, Any]] | None = None,
              recordings: Mapping[str, tuple[str, str]] | None = None,
              writers_down: bool = False) -> dict[str, Any]:
    """The ``wallboard`` frame at ``now`` (the recorder, when there is one, says whether the database is up);
    ``campaigns``: the dialer's live figures (``Dialer.figures``), each given its queue's occupancy;
    ``warnings``: the dialer's latest, for the supervisors, as ``warnings`` when there are any; ``pops``:
    agent -> the pop it was last sent (an agent's ``call`` then names the caller as the pop does);
    ``recordings``: agent -> (call id, state) of the recordings under way (its ``call`` then has ``recording``);
    ``writers_down``: another of the database's writers (the call records, the dialer's store) cannot reach it."""
    stats = acd.queue_stats(now)
    queues = []
    for name, q in stats.items():
        sl, ab = q.service_level, q.abandon_rate
        queues.append({"name": name, "waiting": q.waiting, "longest_wait": q.longest_wait,
                       # the ACD counts in percent; the console protocol speaks fractions
                       "service_level": None if sl is None else sl / 100.0,
                       "abandon_rate": None if ab is None else ab / 100.0,
                       "agents": dict(q.agents), "answered": q.answered,
                       "abandoned": q.abandoned, "ewt": q.ewt})
    agents = []
    for agent_id in acd.agent_ids():
        snap = acd.agent_snapshot(agent_id)
        call = None
        if snap.call is not None:
            pop = (pops or {}).get(agent_id)
            if pop is not None and pop.get("call_id") not in (snap.call.call_id, snap.call.uniqueid):
                pop = None  # the pop of another call
            call = {"caller": caller_of(pop, snap.call.caller_num), "number": snap.call.caller_num,
                    "queue": snap.call.queue}
            rec = (recordings or {}).get(agent_id)
            if rec is not None and rec[0] == snap.call.call_id:
                call["recording"] = rec[1]  # starting, recording or paused
        agents.append({"agent_id": agent_id, "name": snap.name, "state": snap.state.value,
                       "reason": snap.reason or None, "since": snap.since,
                       "call_id": snap.call.call_id if snap.call else None, "call": call,
                       "queues": list(snap.queues)})
    if recorder is not None:
        health.db = not (recorder.metrics["db_down"] or writers_down or health.db_check is False)
    shown = []
    for c in campaigns or []:
        q = stats.get(c["queue"])
        shown.append({**c, "occupancy": occupancy(dict(q.agents)) if q is not None else None})
    frame = {"type": "wallboard", "ts": now, "queues": queues, "agents": agents, "campaigns": shown,
             "health": health.as_dict()}
    if warnings:  # only when there are some: the frame is otherwise as it always was
        frame["warnings"] = list(warnings)
    return frame
