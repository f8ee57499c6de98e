"""The agent pool shared by several nodes: agent states, claims (leases reserving an agent for a call), waiting calls.

Each call is routed by the node whose PBX carries it; the agents are one pool. A node decides locally (its ACD's
own indexes), then ``claim``s the agent here before offering: the claim is atomic, so two nodes never give one
agent two calls nor one call two agents. A claim is a lease: ``until`` is on the claimer's clock (every method
takes the time as an argument; nothing here reads a clock). A claim is live while ``now <= until``; one past its
``until`` is ignored by ``claim``/``holder`` and removed by ``expire``, which a surviving node runs when another's
lease lapsed.

``SharedState`` is the interface; ``MemoryState`` is the embedded implementation and the reference semantics;
the Redis one (``centre.redis_state.RedisState``) passes the same tests. Each successful ``claim`` and ``release``
takes the next number of one monotonic counter (``Claim.version``, ``last_version``): a total order of the
changes to the pool, for fencing and audits.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from acd.states import AgentState

AVAILABLE: str = AgentState.READY.value  # the only state an agent can be claimed in (the ACD's "ready")
RESERVED: str = AgentState.RESERVED.value  # what a claim sets; ``expire`` puts one still reserved back to AVAILABLE


class SharedStateDown(Exception):
    """The shared state cannot be reached (the message never holds a password or a URL's credentials): the
    caller falls back to degraded mode."""


@dataclass(frozen=True, slots=True)
class AgentEntry:
    """An agent's state in the pool, since when, and the node that set it last."""

    agent: str
    state: str
    since: float
    node: str


@dataclass(frozen=True, slots=True)
class Claim:
    """``agent`` reserved for ``call`` by ``node`` until ``until`` (the claimer's clock). ``version`` is the
    pool's counter at the claim: larger is later."""

    agent: str
    call: str
    node: str
    until: float
    version: int = 0


@dataclass(frozen=True, slots=True)
class StateWrite:
    """An agent's new state from ``node``. With ``call``: this node's claim on the agent for that call ends with it
    (``release``); if that claim is gone and another live claim holds the agent, the write is dropped (the agent is
    the other claimer's now); else (and with ``call`` empty) it is a plain ``set_agent``."""

    agent: str
    state: str
    since: float
    node: str
    call: str = ""


@dataclass(frozen=True, slots=True)
class WaitingEntry:
    """A call waiting in ``queue`` on ``node``'s PBX."""

    call: str
    queue: str
    priority: int
    entered: float
    node: str


def waiting_order(entry: WaitingEntry) -> tuple[int, float, str]:
    """The order calls are served in: higher priority first, then earlier, then by call id."""
    return (-entry.priority, entry.entered, entry.call)


class SharedState(Protocol):
    """The shared agent pool (see the module's docstring). Synchronous; time is passed in."""

    last_version: int  # the counter's value at this object's last successful claim or release
    last_applied: list[int]  # the version each write of the last ``apply`` (or ``claim`` with writes) took (0: none)

    def set_agent(self, agent: str, state: str, since: float, node: str) -> None: ...

    def add_agent(self, agent: str, state: str, since: float, node: str) -> bool:
        """``set_agent`` only if the pool has no entry for ``agent``; whether it wrote. (After the pool restarted
        empty, a node writes back the agents whose last writer was another node this way: a live writer writes its
        own with ``set_agent`` and wins, a dead one's would be lost.)"""
        ...

    def agents(self) -> dict[str, AgentEntry]: ...

    def agent(self, agent: str) -> AgentEntry | None: ...

    def replace_agent(self, expected: AgentEntry, state: str, since: float, node: str) -> bool:
        """``set_agent`` only if the agent's entry is still ``expected`` (its state, since and node) and no live
        claim holds it at ``since``; whether it wrote. (A node ends the wrap-up of a dead node's agent this way:
        the dead node's timer is gone with it, and several live nodes may try at once.)"""
        ...

    def present(self, node: str, until: float) -> None:
        """``node`` is running, until ``until`` (its clock) unless it says so again (every third of its claims'
        ttl, with or without claims)."""
        ...

    def present_until(self, node: str) -> float | None:
        """Until when ``node`` said it runs (None: never, or long ago)."""
        ...

    def claim(self, agent: str, call: str, node: str, now: float, until: float,
              writes: Sequence[StateWrite] = ()) -> Claim | None:
        """Atomically: if ``agent`` is AVAILABLE, holds no live claim and ``call`` holds no live claim on
        another agent, record the claim on both and set the agent RESERVED (by ``node``, since ``now``).
        ``writes`` are applied first, in the same request (``apply``)."""
        ...

    def apply(self, writes: Sequence[StateWrite], now: float) -> list[int]:
        """Make ``writes`` in order (see ``StateWrite``), in one request; the version each release took (0: the
        write released nothing). Also in ``last_applied``."""
        ...

    def holder(self, agent: str, now: float) -> Claim | None: ...

    def claim_of_call(self, call: str, now: float) -> Claim | None: ...

    def release(self, agent: str, call: str, state: str, since: float) -> bool:
        """Only if ``call`` holds ``agent``'s claim (live or lapsed but not yet expired): drop it and set the
        agent's ``state`` (its node unchanged). Whether it did."""
        ...

    def renew(self, node: str, now: float, until: float) -> int:
        """Extend every live claim of ``node`` to ``until``; how many."""
        ...

    def expire(self, now: float) -> list[Claim]:
        """Remove the claims past their ``until``; an agent still RESERVED goes back to AVAILABLE (since
        ``now``), one in any other state is left. The claims removed, by (until, agent)."""
        ...

    def enqueue(self, entry: WaitingEntry) -> None:
        """Add or replace the waiting call ``entry.call`` (it leaves any other queue)."""
        ...

    def dequeue(self, call: str) -> bool: ...

    def waiting(self, queue: str) -> list[WaitingEntry]:
        """The calls waiting in ``queue``, in ``waiting_order``."""
        ...

    def waiting_of_node(self, node: str) -> list[WaitingEntry]:
        """The calls waiting on ``node``'s PBX, in every queue, in ``waiting_order``."""
        ...


def live(claim: Claim | None, now: float) -> Claim | None:
    """``claim`` if it is live at ``now`` (``now <= until``), else None."""
    return claim if claim is not None and now <= claim.until else None


class MemoryState:
    """The embedded ``SharedState``: dicts in this process (one node, or tests). The reference semantics."""

    def __init__(self) -> None:
        self._agents: dict[str, AgentEntry] = {}
        self._claims: dict[str, Claim] = {}  # by agent
        self._call_agent: dict[str, str] = {}  # call -> agent whose claim it holds (or held)
        self._waiting: dict[str, WaitingEntry] = {}
        self._present: dict[str, float] = {}
        self._counter = itertools.count(1)
        self.last_version = 0
        self.last_applied: list[int] = []

    def set_agent(self, agent: str, state: str, since: float, node: str) -> None:
        self._agents[agent] = AgentEntry(agent, state, since, node)

    def add_agent(self, agent: str, state: str, since: float, node: str) -> bool:
        if agent in self._agents:
            return False
        self._agents[agent] = AgentEntry(agent, state, since, node)
        return True

    def agents(self) -> dict[str, AgentEntry]:
        return dict(self._agents)

    def agent(self, agent: str) -> AgentEntry | None:
        return self._agents.get(agent)

    def replace_agent(self, expected: AgentEntry, state: str, since: float, node: str) -> bool:
        if self._agents.get(expected.agent) != expected or self.holder(expected.agent, since) is not None:
            return False
        self.set_agent(expected.agent, state, since, node)
        return True

    def present(self, node: str, until: float) -> None:
        self._present[node] = until

    def present_until(self, node: str) -> float | None:
        return self._present.get(node)

    def apply(self, writes: Sequence[StateWrite], now: float) -> list[int]:
        return self._apply(writes, now)

    def _apply(self, writes: Sequence[StateWrite], now: float) -> list[int]:
        versions: list[int] = []
        for w in writes:
            if w.call and self._release(w.agent, w.call, w.state, w.since):
                versions.append(self.last_version)
                continue
            versions.append(0)
            if w.call and self.holder(w.agent, now) is not None:
                continue  # our claim is gone and another node's holds the agent: its state is that node's
            self.set_agent(w.agent, w.state, w.since, w.node)
        self.last_applied = versions
        return versions

    def claim(self, agent: str, call: str, node: str, now: float, until: float,
              writes: Sequence[StateWrite] = ()) -> Claim | None:
        self._apply(writes, now)
        entry = self._agents.get(agent)
        if entry is None or entry.state != AVAILABLE or live(self._claims.get(agent), now) is not None:
            return None
        if self.claim_of_call(call, now) is not None:
            return None
        stale = self._claims.get(agent)  # lapsed, not yet expired: replaced
        if stale is not None and self._call_agent.get(stale.call) == agent:
            del self._call_agent[stale.call]
        claim = Claim(agent, call, node, until, next(self._counter))
        self.last_version = claim.version
        self._claims[agent] = claim
        self._call_agent[call] = agent
        self._agents[agent] = AgentEntry(agent, RESERVED, now, node)
        return claim

    def holder(self, agent: str, now: float) -> Claim | None:
        return live(self._claims.get(agent), now)

    def claim_of_call(self, call: str, now: float) -> Claim | None:
        agent = self._call_agent.get(call)
        claim = self._claims.get(agent) if agent is not None else None
        return live(claim, now) if claim is not None and claim.call == call else None

    def release(self, agent: str, call: str, state: str, since: float) -> bool:
        return self._release(agent, call, state, since)

    def _release(self, agent: str, call: str, state: str, since: float) -> bool:
        claim = self._claims.get(agent)
        if claim is None or claim.call != call:
            return False
        del self._claims[agent]
        if self._call_agent.get(call) == agent:
            del self._call_agent[call]
        previous = self._agents.get(agent)
        self._agents[agent] = AgentEntry(agent, state, since, previous.node if previous else claim.node)
        self.last_version = next(self._counter)
        return True

    def renew(self, node: str, now: float, until: float) -> int:
        renewed = 0
        claims = self._claims
        for agent, claim in list(claims.items()):
            if claim.node == node and now <= claim.until:
                claims[agent] = Claim(agent, claim.call, node, until, claim.version)  # (``replace`` is slow)
                renewed += 1
        return renewed

    def expire(self, now: float) -> list[Claim]:
        gone = sorted((c for c in self._claims.values() if c.until < now), key=lambda c: (c.until, c.agent))
        for claim in gone:
            del self._claims[claim.agent]
            if self._call_agent.get(claim.call) == claim.agent:
                del self._call_agent[claim.call]
            entry = self._agents.get(claim.agent)
            if entry is not None and entry.state == RESERVED:
                self._agents[claim.agent] = AgentEntry(claim.agent, AVAILABLE, now, entry.node)
        return gone

    def enqueue(self, entry: WaitingEntry) -> None:
        self._waiting[entry.call] = entry

    def dequeue(self, call: str) -> bool:
        return self._waiting.pop(call, None) is not None

    def waiting(self, queue: str) -> list[WaitingEntry]:
        return sorted((e for e in self._waiting.values() if e.queue == queue), key=waiting_order)

    def waiting_of_node(self, node: str) -> list[WaitingEntry]:
        return sorted((e for e in self._waiting.values() if e.node == node), key=waiting_order)
