"""The ACD's link to the shared agent pool: its claims, writes kept in order through an outage, health, leases.

``PoolLink`` is what ``acd.service.AcdService`` uses of an ``acd.shared_state.SharedState``: it claims agents
(and remembers the claims this node holds), writes the agents' states (a state change of an agent whose claim
this node holds releases the claim, unless the agent keeps it: ringing, on the call), renews this node's claims
every ``ttl / 3`` and expires lapsed ones every ``ttl / 2`` (once another node has been heard from; the agent of
a lapsed claim is freed only ``ORPHAN_GRACE * ttl`` later, if no node took it up meanwhile), says every ``ttl / 3``
that this node runs (``SharedState.present``: a node that stops saying so is dead to the others), and turns
``SharedStateDown`` into degraded mode: ``up`` false, one ``SharedStateHealth`` event, writes kept (in order,
the last per agent wins) and retried with the connection, probed after 1 s, doubling to 10 s. Pure: time is
passed in; the events go to the caller's output list.

Writes are not sent one by one: they wait in ``pending`` (the last per agent) and go in one request, with the next
claim when one comes (one round trip for both), else at the end of the ACD's operation (``flush_urgent``), before
its events leave the node: another node that hears an agent is ready must find it ready in the pool. A write that
keeps this node's claim (the agent rings, or talks) changes nothing another node can act on: it may wait up to
``FLUSH_DELAY`` for a request to ride with.

A node restarted under the same name must not keep its previous run's claims alive (``renew`` goes by node):
it renews nothing before ``ttl * 7/6`` after its start, when those have lapsed (they were last renewed before
the start), and its own claims of that first stretch run until ``start + ttl * 1.5`` at least.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from acd.events import AcdWarning, SharedStateHealth
from acd.shared_state import Claim, SharedState, SharedStateDown, StateWrite
from acd.states import AgentState

T = TypeVar("T")
RETRY_FIRST = 1.0
RETRY_MAX = 10.0
# A lapsed claim's node is gone, but the call it gave the agent may go on in its PBX: the agent is freed only after
# the node taking that PBX over (within about 1.7 lease ttls of the death; the claim lapsed 2/3 to 1 ttl after it) has
# resynced and, finding the agent's phone busy, written the agent as on its call (``AcdService``'s follow-up).
ORPHAN_GRACE = 1.5
FLUSH_DELAY = 0.05  # seconds a write that keeps this node's claim may wait for another request to go with


class PoolLink:
    """This node's side of the shared pool (see the module's docstring)."""

    def __init__(self, shared: SharedState, node: str, ttl: float, now: float, *, beat: bool = True) -> None:
        if ttl <= 0:
            raise ValueError("claim_ttl must be positive")
        self.shared = shared
        self.node = node
        self.ttl = ttl
        self.up = True
        self.held: dict[str, str] = {}  # agent -> the call (string) its claim by this node names
        self.pending: dict[str, StateWrite] = {}  # by agent: writes not sent yet (or kept while down), the last one
        self.urgent = False  # a pending write must go before the current operation's events leave the node
        self.flush_at = 0.0  # when pending writes that may wait are sent at the latest
        self.last: tuple[str, str, float] = ("", "", 0.0)  # the last write made: (agent, state, now)
        self.peers = False  # another node was heard from: expire lapsed claims
        self.orphans: dict[str, tuple[str, float]] = {}  # agent -> (the node of its lapsed claim, when to free it)
        self.first_renew = now + ttl * 7 / 6  # a previous run's claims have lapsed by then
        self.first_until = now + ttl * 1.5
        self.renew_at = self.first_renew
        self.present_at = now if beat else float("inf")  # when this node next says it runs (never: embedded)
        self.expire_at = now + ttl / 2
        self.retry_at = now
        self.retry_delay = RETRY_FIRST

    # ----------------------------------------------------------------------- plumbing
    def went_down(self, now: float, out: list[Any]) -> None:
        if self.up:
            self.up = False
            self.retry_delay = RETRY_FIRST
            self.retry_at = now + RETRY_FIRST
            out.append(SharedStateHealth(ts=now, up=False))

    def call(self, now: float, out: list[Any], request: Callable[[], T]) -> tuple[bool, T | None]:
        """Run one request of the pool: (True, its result), or (False, None) when the pool is down."""
        if not self.up:
            return False, None
        try:
            return True, request()
        except SharedStateDown:
            self.went_down(now, out)
            return False, None

    def deadline(self) -> float | None:
        """When ``maintain`` next has work."""
        if not self.up:
            return self.retry_at
        times = [self.expire_at] if self.peers else []
        if self.present_at != float("inf"):
            times.append(self.present_at)
        if self.pending:
            times.append(self.flush_at)
        if self.held:
            times.append(self.renew_at)
        if self.orphans:
            times.append(min(due for _, due in self.orphans.values()))
        return min(times) if times else None

    # ----------------------------------------------------------------------- claims and writes
    def claim(self, agent: str, call: str, now: float, out: list[Any]) -> Claim | None:
        """Claim ``agent`` for ``call`` until now + ttl; None if refused or the pool is down (see ``up``)."""
        until = max(now + self.ttl, self.first_until)
        writes = list(self.pending.values())
        ok, claim = self.call(now, out, lambda: self.shared.claim(agent, call, self.node, now, until, writes))
        if ok:
            self._sent()
        if ok and claim is not None:
            if not self.held:
                self.renew_at = max(now + self.ttl / 3, self.first_renew)
            self.held[agent] = call
        return claim

    def write(self, agent: str, state: str, since: float, now: float, out: list[Any], keep: bool = False) -> None:
        """The agent's new state; releases this node's claim on it unless ``keep`` (the agent stays on the call)."""
        call = self.held.get(agent, "") if keep else self.held.pop(agent, "")
        if not call and self.last == (agent, state, now):
            return  # the same state, just written (the pool freed the agent straight into a pending not-ready)
        self.last = (agent, state, now)
        previous = self.pending.pop(agent, None)  # not sent yet: replaced, and the claim it would release released
        release = ("" if keep else call) or (previous.call if previous is not None else "")
        op = StateWrite(agent, state, since, self.node, release)
        if not self.pending:
            self.flush_at = now + FLUSH_DELAY
        self.pending[agent] = op
        self.urgent = self.urgent or not keep

    def flush_urgent(self, now: float, out: list[Any]) -> None:
        """Send the pending writes if one of them must go before the operation's events (see the module)."""
        if self.urgent:
            self.flush(now, out)

    def flush(self, now: float, out: list[Any]) -> None:
        """Send the pending writes, in one request (kept if the pool is down)."""
        if not self.pending or not self.up:
            return
        writes = list(self.pending.values())
        ok, _ = self.call(now, out, lambda: self.shared.apply(writes, now))
        if ok:
            self._sent()

    def _sent(self) -> None:
        self.pending.clear()
        self.urgent = False

    # ----------------------------------------------------------------------- timers
    def maintain(self, now: float, out: list[Any]) -> tuple[bool, list[str]]:
        """Run what is due: the health probe, renewals, expiry. (whether the pool just came back, the agents
        of other nodes' lapsed claims now free in the pool)."""
        recovered = False
        if not self.up:
            if now < self.retry_at:
                return False, []
            if not self._probe(now, out):
                return False, []
            recovered = True
        freed: list[str] = []
        if self.pending and (now >= self.flush_at or self.orphans or now >= self.renew_at or now >= self.expire_at):
            self.flush(now, out)  # due, or before other requests read the pool
        if self.held and now >= self.renew_at:
            self.renew_at = now + self.ttl / 3
            self.call(now, out, lambda: self.shared.renew(self.node, now, now + self.ttl))
        if now >= self.present_at and self.up:
            self.present_at = now + self.ttl / 3
            self.call(now, out, lambda: self.shared.present(self.node, now + self.ttl))
        if self.peers and now >= self.expire_at and self.up:
            self.expire_at = now + self.ttl / 2
            ok, gone = self.call(now, out, lambda: self.shared.expire(now))
            for claim in gone or ():
                if claim.node == self.node and self.held.get(claim.agent) == claim.call:
                    del self.held[claim.agent]  # lost: this node was too slow to renew it
                    out.append(AcdWarning(ts=now, code="claim-lapsed", message=f"the claim on agent "
                                          f"{claim.agent} for {claim.call} lapsed before it was renewed",
                                          details={"agent_id": claim.agent, "call": claim.call}))
                    continue
                self.orphans[claim.agent] = (claim.node, now + ORPHAN_GRACE * self.ttl)  # another node's, or
                # this node's previous run's: freed after the grace, unless taken up meanwhile
        for agent, (node, due) in sorted(self.orphans.items()):
            if now >= due and self.up:
                del self.orphans[agent]
                if self._free(agent, node, now, out):
                    freed.append(agent)
        return recovered, freed

    def _free(self, agent: str, node: str, now: float, out: list[Any]) -> bool:
        """The grace after ``node``'s claim on ``agent`` lapsed is over: an agent still left on that node's call
        (or reserved by it) is made ready (the node that could say so is gone, and no node took its call up);
        whether the agent is ready in the pool now (and was that node's)."""
        ok, entry = self.call(now, out, lambda: self.shared.agent(agent))
        if not ok or entry is None or entry.node != node:
            return False  # another node wrote the agent since: its state is that node's word
        if entry.state in (AgentState.ON_CALL.value, AgentState.RESERVED.value):
            ok, _ = self.call(now, out, lambda: self.shared.set_agent(agent, AgentState.READY.value, now, self.node))
            return ok
        return entry.state == AgentState.READY.value

    def _probe(self, now: float, out: list[Any]) -> bool:
        """Try the pool again (renewing our claims); when it answers, write what was kept while it was down."""
        try:
            if now >= self.first_renew:
                self.shared.renew(self.node, now, now + self.ttl)
            else:
                self.shared.agent(self.node)  # any request: nothing of ours to renew yet
            self.shared.apply(list(self.pending.values()), now)
            self._sent()
        except SharedStateDown:
            self.retry_delay = min(self.retry_delay * 2, RETRY_MAX)
            self.retry_at = now + self.retry_delay
            return False
        self.up = True
        self.renew_at = max(now + self.ttl / 3, self.first_renew)
        self.expire_at = now + self.ttl / 2
        out.append(SharedStateHealth(ts=now, up=True))
        return True
