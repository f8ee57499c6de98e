"""The ACD engine: call and agent events in, commands and ACD events out. Sans-I/O; time is passed in.

``AcdService(section, now)`` consumes ``cti.events`` (CallQueued, CallReturnedToHold, DialStarted,
DialEnded, ChannelHungup, CallEnded, DeviceStateChanged, AmiConnectionChanged) and
``cti.commands.CommandFailed``, plus agent requests from the console, and returns
``list[Command | AcdEvent]``. Timers (expansion steps, max wait, wrap-up end, offer watchdog, the
day boundary) fire from ``tick(now)``; ``next_deadline()`` says when. No sockets, no clock, no
database here: the server applies the commands and gives the events to the hub and the recorder.

An offer is OfferCall: the dispatcher sets CTI_AGENT_ENDPOINT / CTI_RING_TIMEOUT on the caller's
channel and Redirects it to ``cti-agent,<agent id>,1`` (config/asterisk/extensions_cti.conf), so
the caller keeps music on hold while the agent's phone rings and an unanswered offer comes back
to ``cti-hold,return``.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from acd import explain as explaining
from acd.call_states import QUEUED, CallState, CallTrigger, next_call_state
from acd.events import (
    AcdEvent,
    AcdWarning,
    AgentNotReadyPending,
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallOffered,
    CallOverflowed,
    CallSkillsExpanded,
    CallWaiting,
    OfferNotAnswered,
    QueueCallFinished,
)
from acd.live import (
    AVAILABLE_DEVICE_STATES,
    BUSY_DEVICE_STATES,
    RINGING_DEVICE_STATES,
    STAFFED,
    AgentRuntime,
    Call,
    CallKey,
    Decision,
)
from acd.pool_link import PoolLink
from acd.remote_waiting import DEFER, REMOTE_FORGET, RemoteCall, RemoteWaiting
from acd.requirements import (
    Requirements,
    SkillSet,
    compile_requirements,
    next_stage_after,
    parse_call_skills,
    stage_at,
)
from acd.restore import AgentLeg, Restore
from acd.router import CallChoice, Router, SortKey
from acd.settings import ENDPOINT_RE, SYSTEM_REASONS, AcdSection, Queue
from acd.shared_state import AgentEntry, MemoryState, SharedState, StateWrite
from acd.snapshots import AgentCall, AgentSnapshot, QueueStats, ServiceLevelTarget, WaitingCall
from acd.states import DEFERRED_NOT_READY, AcdError, AgentState, Trigger, next_state, restored_state
from acd.stats import QueueCounters
from cti.commands import Command, CommandFailed, OfferCall, Redirect, Setvar
from cti.contract import (
    CTI_ATTEMPT,
    CTI_CAMPAIGN,
    CTI_FLOW,
    CTI_QUEUE,
    CTI_VOICEMAIL_BOX,
    HOLD_CONTEXT,
    HOLD_RETURN_EXTEN,
    INBOUND_CONTEXT,
    START_EXTEN,
    VOICEMAIL_CONTEXT,
)
from cti.events import (
    AmiConnectionChanged,
    CallEnded,
    CallQueued,
    CallReturnedToHold,
    ChannelHungup,
    DeviceStateChanged,
    DialEnded,
    DialStarted,
)
from cti.kept import Kept

Output = Command | AcdEvent

#: Offer outcomes that are the agent's side, and the not-ready reason they set.
AGENT_FAULTS = {"NOANSWER": "ring-no-answer", "BUSY": "busy", "CHANUNAVAIL": "unreachable",
                "CONGESTION": "unreachable", "TIMEOUT": "offer-failed"}
MAX_DATA_ITEMS = 64
MAX_DATA_VALUE = 256
MAX_COMMAND_FAILURES = 5
MAX_DECISIONS = 10_000
TIMERS_COMPACT_MIN = 4096  # timers in the heap before stale ones are first dropped (``_compact_timers``)
PRIORITY_LIMIT = 1000
#: How many agents one decision may try to claim for a call before it waits for the next event.
MAX_CLAIM_ATTEMPTS = 4
#: Agent states in which this node's claim stays held (the agent is ringing or talking for the call).
CLAIM_KEPT = frozenset({AgentState.RESERVED, AgentState.ON_CALL})
#: The not-ready reason of a supervisor's ``force_not_ready`` when it names none of the configured ones.
SUPERVISOR_REASON = "supervisor"


def campaign_person(data: Mapping[str, str]) -> bool:
    """A campaign's person (the dialer's Originate names its campaign), not a caller."""
    return bool(data.get(CTI_CAMPAIGN))


class AcdService:
    """The ACD. Create one per process with the ``acd:`` section and the current time.

    Several nodes (each with its PBX) share one pool of agents through ``shared`` (default: an embedded
    ``MemoryState``, the same code path): this node decides with its own indexes (a replica of the pool,
    kept by ``handle_remote``), then claims the agent in the pool before it offers; a refused claim updates
    the replica and the call goes to its next best agent. Every local agent state change is written there."""

    #: The events ``handle_remote`` takes from other nodes (``cti.bus``): their agents' states (the pool's replica)
    #: and their waiting calls (first come first served across nodes: ``acd.remote_waiting``).
    remote_subscriptions: tuple[type, ...] = (AgentStateChanged, CallWaiting, CallOffered, CallAnswered,
                                              CallAbandoned, CallOverflowed, QueueCallFinished)

    def __init__(self, section: AcdSection, now: float, *, node: str = "local", shared: SharedState | None = None,
                 claim_ttl: float = 10.0) -> None:
        self.section = section
        self.node = node
        self.pool = PoolLink(shared if shared is not None else MemoryState(), node, claim_ttl, now,
                             beat=shared is not None)
        self._tz = ZoneInfo(section.timezone)
        self._queues = {q.name: q for q in section.queues}
        self.router = Router([a.id for a in section.agents], [a.skills for a in section.agents])
        self._agents: dict[str, AgentRuntime] = {}
        self._by_endpoint: dict[str, set[str]] = {}
        self._queue_agents: dict[str, list[int]] = {q.name: [] for q in section.queues}
        for i, cfg in enumerate(section.agents):
            # an agent works a queue if it may take its calls at some expansion stage
            queues = tuple(q.name for q in section.queues if compile_requirements(
                section, q, (), len(q.expansion)).eligible(cfg.skills) is not None)
            a = AgentRuntime(cfg, i, cfg.endpoint, since=now, idle_since=now, queues=queues)
            self._agents[cfg.id] = a
            for q in queues:
                self._queue_agents[q].append(i)
            self._by_endpoint.setdefault(cfg.endpoint.lower(), set()).add(cfg.id)
        self._ordinals = tuple(self._agents.values())
        self._devices: dict[str, str] = {}
        self._staffed: dict[str, int] = dict.fromkeys(self._queues, 0)
        self._counters = {q.name: QueueCounters(q.service_level.seconds, section.default_handle_time)
                          for q in section.queues}
        for counters in self._counters.values():
            counters.arrivals.watch(now)
        self._calls: dict[CallKey, Call] = {}
        self._by_call_id: dict[tuple[str, str], set[CallKey]] = {}
        self._dest: dict[CallKey, CallKey] = {}
        self._refs: dict[str, CallKey] = {}
        self._preview_holds: dict[str, str] = {}  # attempt ref of a previewed lead -> the agent held for it
        self._queue_order: dict[str, list[SortKey]] = {q: [] for q in self._queues}
        self._parked: dict[CallKey, Call] = {}
        self._down: set[str] = set()
        self._followed: set[str] = set()  # agents on a call this node took over with its PBX (``_follow``)
        self._rr: dict[str, int] = {}
        self._req_cache: dict[tuple[str, SkillSet, int], tuple[Requirements, tuple[tuple[str | None, int], ...]]] = {}
        self._remote = RemoteWaiting()  # the other nodes' waiting calls
        # each kept as its explanation (acd.explain.decision_dict) in JSON: one untracked object, no live refs
        self._decisions: Kept[CallKey, dict[str, Any]] = Kept(MAX_DECISIONS, explaining.encode_json,
                                                                explaining.decode_json)
        self._timers: list[tuple[float, int, str, Any, int]] = []
        self._compact_at = TIMERS_COMPACT_MIN  # the heap's size past which stale timers are dropped
        self._seq = 0
        self._cmd_seq = 0
        self._carry: list[Output] = []
        self._handlers: dict[type, Callable[[Any, float, list[Output]], None]] = {
            CallQueued: self._on_call_queued,
            CallReturnedToHold: self._on_returned,
            DialStarted: self._on_dial_started,
            DialEnded: self._on_dial_ended,
            ChannelHungup: self._on_hungup,
            CallEnded: self._on_call_ended,
            DeviceStateChanged: self._on_device,
            AmiConnectionChanged: self._on_connection,
            CommandFailed: self._on_command_failed,
        }
        self._push(self._next_midnight(now), "day", None, 0)
        self._seed_replica(now)

    def _seed_replica(self, now: float) -> None:
        """A node joining a running pool: its replica starts as the pool says other nodes left the agents (this
        node's own entries are a previous run's: ``restore`` deals with those)."""
        ok, entries = self.pool.call(now, self._carry, self.pool.shared.agents)
        for entry in (entries or {}).values() if ok else ():
            a = self._agents.get(entry.agent)
            if a is None or entry.node == self.node:
                continue
            try:
                state = AgentState(entry.state)
            except ValueError:
                continue
            self.pool.peers = True
            self._replica(a, state, entry.since, entry.node, "")
            if state == AgentState.READY:
                a.idle_since = entry.since
                self.router.agents.add(a.ordinal, a.idle_since, a.talk_today)

    # ---------------------------------------------------------------- public API
    @property
    def subscriptions(self) -> tuple[type, ...]:
        """The events ``handle`` takes (``cti.bus.Engine``)."""
        return tuple(self._handlers)

    def handle(self, event: object, now: float) -> list[Output]:
        """Feed one event (call/channel event or CommandFailed); return what to do and what happened."""
        out = self._begin(now)
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event, now, out)
        return self._end(now, out)

    def handle_remote(self, event: object, origin: str, now: float) -> list[Output]:
        """An event of another node of the pool (``remote_subscriptions``): an agent's state changed there.
        The replica follows it without the acting node's side effects (no records, no timers of its own); an
        agent now ready is offered this node's best waiting call (claimed first)."""
        out = self._begin(now)
        if origin == self.node:
            return self._end(now, out)
        if isinstance(event, AgentStateChanged):
            self.pool.peers = True
            self._on_remote_state(event, origin, now, out)
        elif isinstance(event, CallWaiting):
            self._on_remote_waiting(event, origin, now)
        elif isinstance(event, (CallOffered, CallAnswered, CallAbandoned, CallOverflowed, QueueCallFinished)):
            self._remote.drop((event.server, event.uniqueid))
        return self._end(now, out)

    @property
    def shared_up(self) -> bool:
        """Whether the shared pool answers (False: degraded, no offers; calls stay queued in order)."""
        return self.pool.up

    def tick(self, now: float) -> list[Output]:
        """Fire every timer due at ``now``."""
        return self._end(now, self._begin(now))

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do (None: nothing scheduled)."""
        while self._timers and not self._timer_valid(self._timers[0]):
            heapq.heappop(self._timers)
        mine = self._timers[0][0] if self._timers else None
        pool = self.pool.deadline()
        return pool if mine is None else mine if pool is None else min(mine, pool)

    def login(self, agent_id: str, endpoint: str | None, now: float) -> list[Output]:
        """Log an agent in (to not ready), optionally at another endpoint than the configured one."""
        a = self._agent(agent_id)

        def act(out: list[Output]) -> None:
            next_state(a.state, Trigger.LOGIN, a.id)
            target = a.cfg.endpoint if endpoint is None else endpoint
            if ENDPOINT_RE.fullmatch(target) is None:
                raise AcdError("bad-endpoint", "endpoint must look like TECH/resource, e.g. PJSIP/1001",
                               agent_id=a.id)
            key = target.lower()
            # every agent whose endpoint is ``target`` is in its index entry (a scan of all agents made
            # logging in N agents cost N**2: 100 M string comparisons for 10,000 agents)
            holders = [other for other in (self._agents[i] for i in self._by_endpoint.get(key, ()))
                       if other is not a and other.state != AgentState.LOGGED_OUT and other.endpoint.lower() == key]
            if holders:
                other = min(holders, key=lambda o: o.ordinal)
                raise AcdError("endpoint-in-use", f"endpoint {target} is in use by agent {other.id}",
                               agent_id=a.id, endpoint=target, other=other.id)
            self._by_endpoint.setdefault(key, set()).add(a.id)
            a.endpoint = target
            self._set_state(a, Trigger.LOGIN, now, out, reason="login")

        return self._request(now, act)

    def ready(self, agent_id: str, now: float) -> list[Output]:
        """Not ready or wrap-up -> ready; the agent may get a caller at once."""
        a = self._agent(agent_id)

        def act(out: list[Output]) -> None:
            next_state(a.state, Trigger.READY, a.id)
            if not a.pending_by:  # a supervisor's pending not ready stays: the wrap-up ends into it
                a.pending = None
            if a.state == AgentState.WRAP_UP:
                self._end_wrapup(a, now, out, Trigger.READY)
            else:
                a.idle_since = now
                self._set_state(a, Trigger.READY, now, out)
                self._match_agent(a, now, out, "agent-ready")

        return self._request(now, act)

    def not_ready(self, agent_id: str, reason: str, now: float) -> list[Output]:
        """To not ready with a configured reason; during an offer or a call it applies when the work ends."""
        a = self._agent(agent_id)

        def act(out: list[Output]) -> None:
            if reason not in self.section.not_ready_reasons:
                raise AcdError("unknown-reason", f"unknown not-ready reason {reason[:40]!r}",
                               agent_id=a.id, allowed=list(self.section.not_ready_reasons))
            if a.state in DEFERRED_NOT_READY:
                if not a.pending_by:  # a supervisor's pending not ready wins over the agent's own
                    a.pending = reason
                out.append(AgentNotReadyPending(ts=now, agent_id=a.id, reason=a.pending or reason))
                return
            next_state(a.state, Trigger.NOT_READY, a.id)
            if a.state == AgentState.WRAP_UP:
                if not a.pending_by:
                    a.pending = reason
                self._end_wrapup(a, now, out, Trigger.NOT_READY)
            else:
                self._set_state(a, Trigger.NOT_READY, now, out, reason=reason)

        return self._request(now, act)

    def end_wrapup(self, agent_id: str, now: float) -> list[Output]:
        """End wrap-up early: ready (or the not-ready asked for during the call)."""
        a = self._agent(agent_id)

        def act(out: list[Output]) -> None:
            next_state(a.state, Trigger.END_WRAPUP, a.id)
            self._end_wrapup(a, now, out, Trigger.END_WRAPUP)

        return self._request(now, act)

    def reserve_preview(self, agent_id: str, hold: str, now: float) -> list[Output]:
        """Hold a ready agent for a preview (the dialer's preview mode): reserved, reason ``preview``, so the
        router offers it nothing; the call queued with ``CTI_ATTEMPT`` = ``hold`` (the previewed lead's
        attempt, once accepted and answered) is offered to this agent and no other."""
        a = self._agent(agent_id)

        def act(out: list[Output]) -> None:
            next_state(a.state, Trigger.PREVIEW, a.id)
            if not hold:
                raise AcdError("invalid-params", "a preview needs the attempt it holds the agent for", agent_id=a.id)
            if self.pool.claim(a.id, hold, now, out) is None:
                if not self.pool.up:
                    raise AcdError("shared-state-down", "the shared agent pool cannot be reached", agent_id=a.id)
                self._claim_refused(a, now, out)
                raise AcdError("agent-unavailable", f"agent {a.id} is taken by another node", agent_id=a.id)
            self._preview_holds[hold] = a.id
            self._set_state(a, Trigger.PREVIEW, now, out, reason="preview")

        return self._request(now, act)

    def end_preview(self, agent_id: str, hold: str, now: float, reason: str | None = None) -> list[Output]:
        """A preview ended without a call for the agent (skipped, timed out, the lead not reached): ready
        again (and offered the next call), or not ready with ``reason``. Nothing happens when the agent is
        no longer held for ``hold`` (it logged out, or the call was offered meanwhile)."""
        a = self._agent(agent_id)

        def act(out: list[Output]) -> None:
            if self._preview_holds.get(hold) != a.id:
                return
            del self._preview_holds[hold]
            if a.state != AgentState.RESERVED or a.call is not None:
                return
            if reason:
                a.pending, a.pending_by = None, ""  # not ready now (a supervisor's pending one is met)
                self._set_state(a, Trigger.OFFER_FAILED, now, out, reason=reason)
                return
            a.idle_since = now
            self._set_state(a, Trigger.PREVIEW_ENDED, now, out)
            self._back_to_work(a, now, out)

        return self._request(now, act)

    def preview_hold(self, agent_id: str) -> str | None:
        """The attempt a preview holds the agent for, or None."""
        return next((h for h, who in self._preview_holds.items() if who == agent_id), None)

    def logout(self, agent_id: str, now: float) -> list[Output]:
        """Log out (not during a call). A ringing offer is withdrawn: the caller goes back to music and re-queues."""
        a = self._agent(agent_id)
        return self._request(now, lambda out: self._logout(a, now, out))

    # ------------------------------------------------------------------ a supervisor's requests
    def force_not_ready(self, agent_id: str, reason: str, by: str, now: float) -> list[Output]:
        """A supervisor (``by``) puts the agent not ready with ``reason`` (a configured reason, or
        ``supervisor``). Ready or not ready: at once. Ringing, on a call or in its wrap-up: when that work ends
        (the agent keeps its wrap-up to finish the call, and cannot cancel it with ``ready``). The state
        shows who (``AgentSnapshot.by``)."""
        a = self._agent(agent_id)

        def act(out: list[Output]) -> None:
            if reason not in self.section.not_ready_reasons and reason != SUPERVISOR_REASON:
                raise AcdError("unknown-reason", f"unknown not-ready reason {reason[:40]!r}", agent_id=a.id,
                               allowed=[*self.section.not_ready_reasons, SUPERVISOR_REASON])
            if a.state in DEFERRED_NOT_READY or a.state == AgentState.WRAP_UP:
                a.pending, a.pending_by = reason, by
                out.append(AgentNotReadyPending(ts=now, agent_id=a.id, reason=reason))
                return
            self._set_state(a, Trigger.NOT_READY, now, out, reason=reason, by=by)

        return self._request(now, act)

    def force_logout(self, agent_id: str, by: str, now: float) -> list[Output]:
        """A supervisor (``by``) logs the agent out: at once when it is not on a call (a ringing offer is
        withdrawn, as ``logout``); on a call or in its wrap-up, when that work ends (returns no output then)."""
        a = self._agent(agent_id)

        def act(out: list[Output]) -> None:
            if a.state in (AgentState.ON_CALL, AgentState.WRAP_UP):
                a.pending_logout = by
                return
            self._logout(a, now, out, by)

        return self._request(now, act)

    def set_skills(self, agent_id: str, skills: dict[str, int], now: float) -> list[Output]:
        """Replace the agent's skills and levels (a supervisor's change) for this process: the router uses
        them for its next decision, and a ready agent is offered at once a waiting call it may now take. The
        configuration stays the source of truth: a restart brings back the configured skills."""
        a = self._agent(agent_id)

        def act(out: list[Output]) -> None:
            for name, level in skills.items():
                if not isinstance(level, int) or not 1 <= level <= 10:
                    raise AcdError("bad-skill", f"skill {name[:40]!r}: a level is 1-10", agent_id=a.id)
            a.cfg = a.cfg.model_copy(update={"skills": dict(skills)})
            self.router.agents.remove(a.ordinal)  # out of the index: _match_agent looks for a call first
            self.router.agents.set_skills(a.ordinal, skills)
            queues = tuple(q.name for q in self.section.queues if compile_requirements(
                self.section, q, (), len(q.expansion)).eligible(a.cfg.skills) is not None)
            if queues != a.queues:
                staffed = int(a.state in STAFFED)
                for q in a.queues:
                    self._queue_agents[q].remove(a.ordinal)
                    self._staffed[q] -= staffed
                for q in queues:
                    insort(self._queue_agents[q], a.ordinal)
                    self._staffed[q] += staffed
                a.queues = queues
            a.gen += 1
            self._match_agent(a, now, out, "skills-changed")

        return self._request(now, act)

    def _logout(self, a: AgentRuntime, now: float, out: list[Output], by: str = "") -> None:
        next_state(a.state, Trigger.LOGOUT, a.id)
        call = a.call
        previous = a.state
        a.pending, a.pending_by, a.pending_logout = None, "", ""
        self._set_state(a, Trigger.LOGOUT, now, out, reason="logout", by=by)
        if previous == AgentState.RESERVED and call is not None and call.state == CallState.OFFERED:
            a.call = None
            self._recall(call, now, out)
            out.append(Redirect(self._ref("acd-recall"), call.key[0], call.channel, HOLD_CONTEXT,
                                HOLD_RETURN_EXTEN, 1))
            out.append(OfferNotAnswered(ts=now, server=call.key[0], uniqueid=call.key[1], call_id=call.call_id,
                                        queue=call.queue.name, agent_id=a.id, status="withdrawn"))
        elif previous == AgentState.WRAP_UP and call is not None:
            a.call = None
            self._record_answered(call, now, out)

    def close_records(self, now: float) -> list[Output]:
        """At shutdown: the records (``QueueCallFinished``) of the answered calls whose agents are still in
        wrap-up, their wrap-up cut short at ``now``. A restart gives the agent its wrap-up back but not the
        call, so without this their rows would never be written. Calling it again returns nothing."""
        out: list[Output] = []
        for a in self._agents.values():
            if a.state == AgentState.WRAP_UP and a.call is not None:
                call, a.call = a.call, None
                self._record_answered(call, now, out)
        return out

    def restore(self, r: Restore, now: float) -> list[Output]:
        """Put a logged-out agent back as it was before a server restart (``acd.restore.plan_restore``): ready,
        not ready with its reason, in wrap-up for what is left of it, or with the call the PBX shows."""
        a = self._agent(r.agent_id)

        def act(out: list[Output]) -> None:
            target = restored_state(a.state, r.state, a.id)
            leg = r.leg
            if leg is not None and leg.endpoint and ENDPOINT_RE.fullmatch(leg.endpoint) is not None:
                self._by_endpoint.setdefault(leg.endpoint.lower(), set()).add(a.id)
                a.endpoint = leg.endpoint
            call = self._restored_call(leg, a, now) if leg is not None else None
            self._set_state(a, Trigger.RESTORE, now, out, reason=r.reason, to=target)
            a.since = r.since
            if target == AgentState.WRAP_UP:
                self._push(now + r.wrapup_left, "wrapup", a.id, a.gen)
            elif target == AgentState.READY:
                a.idle_since = r.since
                self._match_agent(a, now, out, "restored")
            elif call is not None and call.state == CallState.OFFERED:
                self._push(now + call.queue.ring_timeout + self.section.offer_grace, "watchdog", call.key, call.gen)

        return self._request(now, act)

    def _restored_call(self, leg: AgentLeg, a: AgentRuntime, now: float) -> Call:
        """The ACD's record of a call the PBX shows with agent ``a`` (talking, on hold or ringing)."""
        queue = self._queues.get(leg.queue)
        if queue is None:
            fallback = self.section.default_queue or self.section.queues[0].name
            queue = self._queues[fallback]
        skills, warnings = parse_call_skills(leg.skills)
        data = {str(k)[:64]: str(v)[:MAX_DATA_VALUE] for k, v in list(leg.data.items())[:MAX_DATA_ITEMS]}
        self._seq += 1
        key = (leg.server, leg.caller_uniqueid)
        call = Call(key, leg.call_id, leg.caller_channel, queue, skills,
                    max(-PRIORITY_LIMIT, min(PRIORITY_LIMIT, leg.priority)), leg.entered, leg.entered, self._seq,
                    leg.caller_num[:80], leg.dnis[:80], data, warnings)
        call.agent_id, call.offers, call.offered_at = a.id, 1, leg.since
        if leg.status == "ringing":
            self._move(call, CallTrigger.RESTORE_RINGING)
            call.offer_ref = self._ref("acd-offer")
            self._refs[call.offer_ref] = key
        else:
            self._move(call, CallTrigger.RESTORE_TALKING)
            call.answered_at = leg.since
        if leg.agent_uniqueid:
            call.dest_uniqueid = leg.agent_uniqueid
            self._dest[(leg.server, leg.agent_uniqueid)] = key
        self._track(call)
        a.call = call
        return call

    def explain(self, call_key: CallKey) -> dict[str, Any]:
        """Why this call went to that agent, or why it is still waiting (see ``acd.explain``)."""
        call = self._calls.get(call_key) or self._parked.get(call_key)
        decision = self._decisions.get(call_key)
        if call is None and decision is None:
            raise AcdError("unknown-call", f"no call {call_key[0]}/{call_key[1]} is known to the ACD",
                           server=call_key[0], uniqueid=call_key[1])
        return explaining.explain(self, call_key, call, decision)

    def queue_stats(self, now: float) -> dict[str, QueueStats]:
        """Per queue (in configured order): waiting, longest wait, service level %, abandon %, agents by state, EWT."""
        out: dict[str, QueueStats] = {}
        by_queue: dict[str, list[Call]] = {name: [] for name in self._queues}
        for call in self._calls.values():
            if call.state in QUEUED:
                by_queue[call.queue.name].append(call)
        for name, q in self._queues.items():
            c = self._counters[name]
            waiting = by_queue[name]
            by_state = dict.fromkeys((s.value for s in AgentState), 0)
            for o in self._queue_agents[name]:
                by_state[self._ordinals[o].state.value] += 1
            out[name] = QueueStats(
                name=name, waiting=len(waiting),
                longest_wait=max((now - call.entered for call in waiting), default=0.0),
                service_level=c.service_level(),
                service_level_target=ServiceLevelTarget(percent=q.service_level.percent,
                                                        seconds=q.service_level.seconds),
                abandon_rate=c.abandon_rate(), answered=c.answered, abandoned=c.abandoned, overflowed=c.overflowed,
                average_wait=c.average_wait(), average_handle_time=c.aht, agents=MappingProxyType(by_state),
                ewt=c.ewt(len(waiting) + 1, self._staffed[name]), arrival_rate=c.arrivals.rate(now),
            )
        return out

    def waiting_calls(self, queue: str, now: float) -> list[WaitingCall]:
        """Waiting callers of a queue in service order with position and EWT (announcements, wallboard)."""
        calls = sorted((c for c in self._calls.values() if c.queue.name == queue
                        and c.state in (CallState.WAITING, CallState.PARKED)), key=lambda c: c.sort_key)
        counters = self._counters.get(queue)
        staffed = self._staffed.get(queue, 0)
        return [WaitingCall(server=c.key[0], uniqueid=c.key[1], position=i, priority=c.priority,
                            waited=now - c.entered, caller_num=c.caller_num,
                            ewt=counters.ewt(i, staffed) if counters else None) for i, c in enumerate(calls, 1)]

    def position(self, call_key: CallKey) -> int | None:
        call = self._calls.get(call_key)
        if call is None or call.state != CallState.WAITING:
            return None
        return bisect_left(self._queue_order[call.queue.name], call.sort_key) + 1

    def agent_snapshot(self, agent_id: str) -> AgentSnapshot:
        """The agent now: state, reason and since, endpoint and its device state, the call it holds."""
        a = self._agent(agent_id)
        call = a.call
        return AgentSnapshot(
            id=a.id, name=a.cfg.name, state=a.state, reason=a.reason, since=a.since, endpoint=a.endpoint,
            device_state=self._devices.get(a.endpoint.lower(), "UNKNOWN"),
            available=a.ordinal in self.router.agents, pending_not_ready=a.pending, talk_today=a.talk_today,
            skills=MappingProxyType(dict(a.cfg.skills)), teams=tuple(a.cfg.teams), queues=a.queues,
            by=a.by, pending_by=a.pending_by or a.pending_logout,
            call=None if call is None else AgentCall(server=call.key[0], uniqueid=call.key[1], call_id=call.call_id,
                                                     queue=call.queue.name, caller_num=call.caller_num),
        )

    def wrapup_seconds(self, agent_id: str, queue: str) -> float:
        """The wrap-up an agent gets after a call of ``queue`` (the agent's own, else the queue's)."""
        a = self._agent(agent_id)
        if a.cfg.wrapup is not None:
            return float(a.cfg.wrapup)
        q = self._queues.get(queue) or self._queues.get(self.section.default_queue or "")
        return float(q.wrapup) if q is not None else 0.0

    def tracks(self, server: str, uniqueid: str) -> bool:
        """Whether the ACD still holds this caller (waiting, parked, offered or talking to an agent)."""
        return (server, uniqueid) in self._calls

    def agent_ids(self) -> list[str]:
        return list(self._agents)

    # ------------------------------------------------- live records, read-only (explanations, benchmarks)
    # These hand out the service's own records without copying, for readers that must see everything at
    # once and cheaply (acd/explain.py, bench/acd_route.py's scan baseline). Readers never change them.
    def agent_records(self) -> tuple[AgentRuntime, ...]:
        """Every agent's live record, in configuration order (``record.ordinal`` is its index)."""
        return self._ordinals

    def call_records(self) -> Iterable[Call]:
        """The live record of every call the ACD holds (waiting, parked, offered, recalling, talking)."""
        return self._calls.values()

    def queue_config(self, name: str) -> Queue | None:
        """The configured queue ``name`` (None if unknown)."""
        return self._queues.get(name)

    def phone_free(self, record: AgentRuntime) -> bool:
        """Whether the agent's phone may ring (its device state is free or unknown)."""
        return self._device_ok(record)

    def last_offered(self, queue: str) -> int:
        """The ordinal of the agent ``queue`` last offered a call to (-1: none yet); round robin starts after it."""
        return self._rr.get(queue, -1)

    def requirements_of(self, call: Call) -> Requirements:
        """What an agent needs to take ``call`` at its current expansion stage."""
        return self._requirements(call, call.stage)[0]

    def expected_wait(self, queue: str, position: int) -> float | None:
        """The EWT of the caller at ``position`` (1 = next) of ``queue`` with the agents working it now."""
        counters = self._counters.get(queue)
        return counters.ewt(position, self._staffed.get(queue, 0)) if counters is not None else None

    def eligible_agents(self, queue: str, stage: int = 0) -> tuple[str, ...]:
        """The agents who meet ``queue``'s requirements at expansion ``stage`` (0: the queue's own skills), in
        configuration order; () for an unknown queue. Computed on each call: a caller that asks often keeps it."""
        q = self._queues.get(queue)
        if q is None:
            return ()
        req = compile_requirements(self.section, q, (), stage)
        return tuple(a.id for a in self._ordinals if req.eligible(a.cfg.skills) is not None)

    def password_hash(self, agent_id: str) -> str | None:
        return self._agent(agent_id).cfg.password_hash

    # ------------------------------------------------------------------ internals: agents
    def _begin(self, now: float) -> list[Output]:
        out, self._carry = self._carry, []
        out.extend(self._run_due(now))
        self._maintain_pool(now, out)
        return out

    def _end(self, now: float, out: list[Output]) -> list[Output]:
        """The operation's pool writes that must reach the pool before its events leave (``acd.pool_link``)."""
        self.pool.flush_urgent(now, out)
        return out

    def _request(self, now: float, act: Callable[[list[Output]], None]) -> list[Output]:
        """Run an agent request after due timers; a refused request changes nothing and loses no output."""
        out = self._begin(now)
        try:
            act(out)
        except AcdError:
            self._carry = self._end(now, out)
            raise
        return self._end(now, out)

    def _agent(self, agent_id: str) -> AgentRuntime:
        a = self._agents.get(agent_id)
        if a is None:
            raise AcdError("unknown-agent", f"no agent {agent_id[:40]!r} is configured", agent_id=agent_id[:40])
        return a

    def _set_state(self, a: AgentRuntime, trigger: Trigger, now: float, out: list[Output], reason: str = "",
                   about: Call | None = None, to: AgentState | None = None, by: str = "",
                   write: bool = True) -> None:
        """Apply a transition of the state table, publish it, and keep the router's index right.
        ``about`` names the call the change concerns when the agent no longer holds it; ``to`` is the
        state a RESTORE checked with ``restored_state``."""
        new = to if to is not None else next_state(a.state, trigger, a.id)
        prev, since = a.state, a.since
        if (prev in STAFFED) != (new in STAFFED):
            delta = 1 if new in STAFFED else -1
            for q in a.queues:
                self._staffed[q] += delta
        a.state, a.since, a.by, a.node = new, now, by, self.node
        a.reason = reason if new in (AgentState.NOT_READY, AgentState.LOGGED_OUT) \
            or (new == AgentState.RESERVED and trigger == Trigger.PREVIEW) else ""
        a.gen += 1
        if write and trigger not in (Trigger.OFFER, Trigger.PREVIEW, Trigger.PREVIEW_OFFER):  # a claim wrote those
            self.pool.write(a.id, new.value, now, now, out, keep=new in CLAIM_KEPT)
        call = about or a.call
        out.append(AgentStateChanged(ts=now, agent_id=a.id, state=new.value, previous=prev.value, reason=a.reason,
                                     since=since, queue=call.queue.name if call else "",
                                     uniqueid=call.key[1] if call else ""))
        self._refresh(a)

    def _device_ok(self, a: AgentRuntime) -> bool:
        return self._devices.get(a.endpoint.lower(), "UNKNOWN") in AVAILABLE_DEVICE_STATES

    def _refresh(self, a: AgentRuntime) -> None:
        """Take the agent out of the router's index if it can no longer take an offer."""
        if a.state != AgentState.READY or not self._device_ok(a):
            self.router.agents.remove(a.ordinal)

    def _match_agent(self, a: AgentRuntime, now: float, out: list[Output], trigger: str) -> None:
        """An agent may just have become available: give it the best waiting call, else index it as available.

        (Looking for a call before indexing saves putting the agent in and taking it out again.)
        """
        if a.state != AgentState.READY or a.ordinal in self.router.agents or not self._device_ok(a):
            return
        choice = self.router.best_call(a.ordinal) if self.pool.up else None
        if self.pool.up and self._left_to_remote(a, choice, now):
            return
        if choice is None:
            self.router.agents.add(a.ordinal, a.idle_since, a.talk_today)
            return
        call = self._calls[choice.call]  # type: ignore[index]
        if self._offer(call, a, now, out, Decision(trigger, now, a.id, call.queue.strategy, choice)):
            return
        if not self.pool.up:  # ready as far as we know: indexed for when the pool is back
            self.router.agents.add(a.ordinal, a.idle_since, a.talk_today)
            return
        self._claim_refused(a, now, out)
        self._match_call(call, now, out, trigger)

    def _claim_refused(self, a: AgentRuntime, now: float, out: list[Output]) -> None:
        """The pool would not give us ``a`` (another node has it, or our replica lagged): the replica takes the
        pool's word for its state, and it is not available here."""
        self.router.agents.remove(a.ordinal)
        ok, entry = self.pool.call(now, out, lambda: self.pool.shared.agent(a.id))
        if not ok or entry is None:
            return
        try:
            state = AgentState(entry.state)
        except ValueError:
            state = AgentState.NOT_READY
        if state == AgentState.READY:  # ready but held by a claim (lapsed, not yet expired): taken all the same
            state = AgentState.RESERVED
        self._replica(a, state, entry.since, entry.node, "")

    def _replica(self, a: AgentRuntime, state: AgentState, since: float, node: str, reason: str) -> None:
        """Set the replica of an agent another node acts on: no event, no write, no record."""
        if (a.state in STAFFED) != (state in STAFFED):
            delta = 1 if state in STAFFED else -1
            for q in a.queues:
                self._staffed[q] += delta
        a.state, a.since, a.node, a.reason, a.by = state, since, node, reason, ""
        a.gen += 1
        self._refresh(a)

    def _on_remote_state(self, e: AgentStateChanged, origin: str, now: float, out: list[Output]) -> None:
        a = self._agents.get(e.agent_id)
        if a is None:
            return
        try:
            state = AgentState(e.state)
        except ValueError:
            return
        if e.ts < a.since:
            return  # older than what this node knows of the agent (events of two nodes crossed)
        if a.id in self.pool.held or (a.call is not None and a.state in CLAIM_KEPT):
            return  # this node holds the agent's claim: the pool's arbiter says the agent is ours
        if a.call is not None and a.state == AgentState.WRAP_UP:  # our call's wrap-up, ended on the other node
            call, a.call = a.call, None
            self._record_answered(call, now, out)
        previous = a.state
        self._replica(a, state, e.ts, origin, e.reason)
        if state == AgentState.WRAP_UP:  # that node's timer ends it; if that node dies, this one will
            self._push(e.ts + self.wrapup_seconds(a.id, e.queue) + self.pool.ttl, "orphan-wrapup", a.id, a.gen)
        if state == AgentState.READY:
            if previous != AgentState.READY:
                a.idle_since = e.ts
            self._back_to_work(a, now, out)

    def _on_remote_waiting(self, e: CallWaiting, origin: str, now: float) -> None:
        """Another node's caller waits: known here so that an agent of this node is left to it when it came
        first (``acd.remote_waiting``)."""
        key = (e.server, e.uniqueid)
        q = self._queues.get(e.queue)
        if q is None or e.entered is None or key in self._calls:  # (not a queue of ours; an older node; ours now)
            return
        call = RemoteCall(key, q, parse_call_skills(e.skills)[0], e.priority, e.entered,
                          e.first_entered if e.first_entered is not None else e.entered, origin)
        self._remote.put(call)
        self._place_remote(call, now)

    def _place_remote(self, call: RemoteCall, now: float) -> None:
        stage = stage_at(call.queue, now - call.entered)
        req, anchors = self._requirements_of(call.queue, call.skills, stage)
        self._remote.place(call, stage, req, anchors)
        after = next_stage_after(call.queue, stage)
        if after is not None:
            call.gen += 1
            self._push(call.entered + after, "remote-expand", call.key, call.gen)

    def _left_to_remote(self, a: AgentRuntime, choice: CallChoice | None, now: float) -> bool:
        """Whether ``a`` is left for a moment to another node's caller who came before ``choice`` (this node's
        best for ``a``) and may take ``a``: then ``a`` is not offered nor indexed here until that node claims it
        or ``DEFER`` is over."""
        if not len(self._remote):
            return False
        first = self._remote.best_for(self.router.agents.skills[a.ordinal])
        if first is None or (choice is not None and choice.sort_key <= first.sort_key):
            return False
        self._push(now + DEFER, "defer", (a.id, first.key), a.gen)
        return True

    def _orphan_wrapup(self, a: AgentRuntime, now: float, out: list[Output]) -> None:
        """A wrap-up another node started should have ended a claim ttl ago and no word came that it did: if that
        node no longer says it runs (``SharedState.present``), its timer went with it and this node ends the
        wrap-up (the pool's compare-and-set lets one node do it, and only over the entry this node saw); if it
        runs (a longer wrap-up than this node knows of), or the pool is down, look again a ttl later."""
        ttl = self.pool.ttl
        ok, until = self.pool.call(now, out, lambda: self.pool.shared.present_until(a.node))
        if not ok or (until is not None and until >= now):
            self._push(now + ttl, "orphan-wrapup", a.id, a.gen)
            return
        seen = AgentEntry(a.id, a.state.value, a.since, a.node)
        ok, done = self.pool.call(now, out, lambda: self.pool.shared.replace_agent(seen, AgentState.READY.value,
                                                                                   now, self.node))
        if not ok:
            self._push(now + ttl, "orphan-wrapup", a.id, a.gen)
            return
        if not done:  # the pool knows better (another node ended it, or the agent moved on): take its word
            ok, entry = self.pool.call(now, out, lambda: self.pool.shared.agent(a.id))
            if ok and entry is not None and (entry.state, entry.since) != (a.state.value, a.since):
                try:
                    self._replica(a, AgentState(entry.state), entry.since, entry.node, "")
                except ValueError:
                    pass
            return
        self._made_ready(a, now, out, "orphan-wrapup-ended")

    def _maintain_pool(self, now: float, out: list[Output]) -> None:
        """Renew our claims, expire lapsed ones, probe the pool while it is down (``acd.pool_link``)."""
        recovered, freed = self.pool.maintain(now, out)
        if recovered:
            self._pool_back(now, out)
        for agent_id in freed:  # another node's lease lapsed: its agent is ready again, and told so
            a = self._agents.get(agent_id)
            if a is None or a.id in self.pool.held or a.call is not None:
                continue
            self._made_ready(a, now, out, "claim-expired")

    def _made_ready(self, a: AgentRuntime, now: float, out: list[Output], trigger: str) -> None:
        """The pool has ``a`` ready now, written by this node for a node that is gone (its claim lapsed, its
        wrap-up timer died with it): the replica follows, the other nodes are told, and ``a`` gets a caller."""
        previous, since = a.state, a.since
        self._replica(a, AgentState.READY, now, self.node, "")
        a.idle_since = now
        out.append(AgentStateChanged(ts=now, agent_id=a.id, state=AgentState.READY.value, previous=previous.value,
                                     reason="", since=since))
        self._match_agent(a, now, out, trigger)

    def _pool_back(self, now: float, out: list[Output]) -> None:
        """The pool answers again (the writes kept meanwhile are made): the states of our agents it lost (it
        restarted empty) written anew, those other nodes wrote last too unless written since (a dead node's agents
        stay in the pool), then the waiting calls matched in service order."""
        ok, known = self.pool.call(now, out, self.pool.shared.agents)
        if not ok or known is None:
            return
        lost = [StateWrite(a.id, a.state.value, a.since, self.node) for a in self._ordinals
                if a.node == self.node and a.id not in known]
        if lost:
            ok, _ = self.pool.call(now, out, lambda: self.pool.shared.apply(lost, now))
            if not ok:
                return
        for a in self._ordinals:  # those another node wrote last, as this node knows them, unless written since:
            if a.node in ("", self.node) or a.id in known:  # that node, if alive, writes its own (and wins); a dead
                continue  # node's would be lost to the pool for good
            ok, _ = self.pool.call(now, out, lambda a=a: self.pool.shared.add_agent(a.id, a.state.value, a.since,
                                                                                    a.node))
            if not ok:
                return
        for call in sorted((c for c in self._calls.values() if c.state == CallState.WAITING),
                           key=lambda c: c.sort_key):
            if not self.pool.up:
                return
            if call.state == CallState.WAITING and call.key in self.router.calls:
                self._match_call(call, now, out, "shared-state-back")

    def _back_to_work(self, a: AgentRuntime, now: float, out: list[Output]) -> None:
        """After READY: honour a not-ready asked for during the call, else look for a caller."""
        if a.pending is not None:
            reason, a.pending, by, a.pending_by = a.pending, None, a.pending_by, ""
            self._set_state(a, Trigger.NOT_READY, now, out, reason=reason, by=by)
        else:
            self._match_agent(a, now, out, "agent-ready")

    def _end_wrapup(self, a: AgentRuntime, now: float, out: list[Output], trigger: Trigger) -> None:
        if a.pending_logout:  # a supervisor's log-out waited for the call's work to end
            self._logout(a, now, out, a.pending_logout)
            return
        call, a.call = a.call, None
        if call is not None:
            self._record_answered(call, now, out)
        if a.pending is not None and (trigger != Trigger.READY or a.pending_by):
            reason, a.pending, by, a.pending_by = a.pending, None, a.pending_by, ""
            self._set_state(a, Trigger.NOT_READY, now, out, reason=reason, by=by)
            return
        a.idle_since = now
        self._set_state(a, trigger, now, out)
        self._match_agent(a, now, out, "agent-ready")

    # ------------------------------------------------------------------- internals: calls
    @staticmethod
    def _move(call: Call, trigger: CallTrigger) -> None:
        """Apply a move of the call state table (``acd.call_states``); an illegal one raises and changes nothing."""
        call.state = next_call_state(call.state, trigger, call.key[1])

    def _ref(self, kind: str) -> str:
        self._cmd_seq += 1
        return f"{kind}-{self._cmd_seq}"

    def _requirements(self, call: Call, stage: int) -> tuple[Requirements, tuple[tuple[str | None, int], ...]]:
        return self._requirements_of(call.queue, call.skills, stage)

    def _requirements_of(self, queue: Queue, skills: SkillSet,
                         stage: int) -> tuple[Requirements, tuple[tuple[str | None, int], ...]]:
        key = (queue.name, skills, stage)
        cached = self._req_cache.get(key)
        if cached is None:
            req = compile_requirements(self.section, queue, skills, stage)
            cached = (req, self.router.anchors_for(req))
            if len(self._req_cache) > 10_000:
                self._req_cache.clear()
            self._req_cache[key] = cached
        return cached

    def _track(self, call: Call) -> None:
        self._calls[call.key] = call
        self._by_call_id.setdefault((call.key[0], call.call_id), set()).add(call.key)

    def _forget(self, call: Call) -> None:
        if self._calls.get(call.key) is call:
            del self._calls[call.key]
            ids = self._by_call_id.get((call.key[0], call.call_id))
            if ids is not None:
                ids.discard(call.key)
                if not ids:
                    del self._by_call_id[(call.key[0], call.call_id)]
        self._leave_waiting(call)
        if call.dest_uniqueid:
            self._dest.pop((call.key[0], call.dest_uniqueid), None)
        self._refs.pop(call.offer_ref, None)

    def _leave_waiting(self, call: Call) -> None:
        if call.key in self.router.calls:
            self.router.calls.remove(call.key)
            order = self._queue_order[call.queue.name]
            i = bisect_left(order, call.sort_key)
            if i < len(order) and order[i] == call.sort_key:
                del order[i]
        self._parked.pop(call.key, None)

    def _enter_waiting(self, call: Call, now: float, out: list[Output], trigger: str) -> None:
        """(Re)queue a call: park it if its PBX is unreachable, overflow it if it waited too long, else route."""
        q = call.queue
        down = call.key[0] in self._down
        waited = now - call.entered
        overdue = not down and q.max_wait is not None and waited >= q.max_wait
        if not overdue:  # (an overdue call overflows: _max_wait decides where it goes)
            self._move(call, CallTrigger.PARK if down else CallTrigger.WAIT)
        call.gen += 1
        call.agent_id = ""
        call.dest_uniqueid = ""
        if down:
            self._parked[call.key] = call
            return
        if overdue:
            self._max_wait(call, now, out)
            return
        self._place(call, stage_at(q, waited))
        after = next_stage_after(q, call.stage)
        if after is not None:
            self._push(call.entered + after, "expand", call.key, call.gen)
        if q.max_wait is not None:
            self._push(call.entered + q.max_wait, "maxwait", call.key, call.gen)
        position = bisect_left(self._queue_order[q.name], call.sort_key) + 1
        out.append(CallWaiting(ts=now, server=call.key[0], uniqueid=call.key[1], call_id=call.call_id, queue=q.name,
                               priority=call.priority, position=position,
                               ewt=self._counters[q.name].ewt(position, self._staffed[q.name]),
                               entered=call.entered, first_entered=call.first_entered,
                               skills=" ".join(f"{skill}:{level}" for skill, level in call.skills)))
        self._match_call(call, now, out, trigger)

    def _place(self, call: Call, stage: int) -> None:
        """Index a waiting call in the bucket of its current requirements."""
        self._leave_waiting(call)
        self._remote.drop(call.key)  # (a call another node waited for: this node's now, its PBX taken over)
        call.stage = stage
        req, anchors = self._requirements(call, stage)
        call.requirements = req
        self.router.calls.add(call.key, (call.queue.name, call.skills, stage), req, call.queue.name,
                              call.queue.strategy, call.sort_key, anchors)
        insort(self._queue_order[call.queue.name], call.sort_key)

    def _match_call(self, call: Call, now: float, out: list[Output], trigger: str) -> None:
        assert call.requirements is not None
        if not self.pool.up:
            return  # degraded: no offers; the call keeps its place
        q = call.queue
        held = self._preview_holds.pop(call.data.get(CTI_ATTEMPT, ""), None)
        if held is not None:  # a previewed lead who answered: to the agent held for it, and no other
            a = self._agents[held]
            if a.state == AgentState.RESERVED and a.call is None:
                self._offer(call, a, now, out, None, Trigger.PREVIEW_OFFER)
                return
            # the agent left meanwhile (logged out): the person goes to whoever the router finds
        for _ in range(MAX_CLAIM_ATTEMPTS):
            choice = self.router.best_agent(call.requirements, q.strategy, self._rr.get(q.name, -1))
            if choice is None:
                return
            a = self._ordinals[choice.ordinal]
            if self._offer(call, a, now, out, Decision(trigger, now, a.id, q.strategy, choice)) \
                    or not self.pool.up:
                return
            self._claim_refused(a, now, out)

    @staticmethod
    def claim_name(key: CallKey) -> str:
        """The call's name in the shared pool's claims."""
        return f"{key[0]}/{key[1]}"

    def _offer(self, call: Call, a: AgentRuntime, now: float, out: list[Output], decision: Decision | None,
               trigger: Trigger = Trigger.OFFER) -> bool:
        """Offer ``call`` to ``a``, claimed in the shared pool first; False (nothing done) if the claim failed."""
        if trigger == Trigger.OFFER and self.pool.claim(a.id, self.claim_name(call.key), now, out) is None:
            return False
        self._move(call, CallTrigger.OFFER)
        self._leave_waiting(call)
        q = call.queue
        call.gen += 1
        call.agent_id = a.id
        call.offers += 1
        call.offered_at = now
        self._refs.pop(call.offer_ref, None)  # a failure report of an earlier offer no longer matters
        call.offer_ref = self._ref("acd-offer")
        self._refs[call.offer_ref] = call.key
        self._rr[q.name] = a.ordinal
        a.call = call
        self._set_state(a, trigger, now, out)
        # CallOffered before OfferCall: the screen pop (on CallOffered) goes out before the phone is rung
        out.append(CallOffered(ts=now, server=call.key[0], uniqueid=call.key[1], call_id=call.call_id, queue=q.name,
                               agent_id=a.id, endpoint=a.endpoint, wait=now - call.entered, attempt=call.offers))
        out.append(OfferCall(call.offer_ref, call.key[0], call.call_id, call.key[1], call.channel, a.id, a.endpoint,
                             q.ring_timeout, q.name))
        self._push(now + q.ring_timeout + self.section.offer_grace, "watchdog", call.key, call.gen)
        if decision is None:
            return True
        if not self._decisions.put(call.key, explaining.decision_dict(decision)):  # the offer stands all the same
            out.append(AcdWarning(ts=now, code="decision-not-kept", message=f"the routing decision for call "
                                  f"{call.key[1]} could not be kept for its explanation",
                                  details={"server": call.key[0], "uniqueid": call.key[1]}))
        return True

    def _offered_agent(self, call: Call) -> AgentRuntime | None:
        a = self._agents.get(call.agent_id)
        return a if a is not None and a.call is call else None

    def _offer_off(self, call: Call, now: float, out: list[Output], status: str, requeue: bool) -> None:
        """End the current offer without a conversation, then re-queue the caller (or wait to learn where it is).

        Ring-no-answer, busy and unreachable are the agent's side: not ready with that reason. Anything
        else (caller cancelled, command failed) frees the agent, after the caller is back in the queue so
        that the agent may take this very call again if it is still the first for it.
        """
        a = self._offered_agent(call)
        out.append(OfferNotAnswered(ts=now, server=call.key[0], uniqueid=call.key[1], call_id=call.call_id,
                                    queue=call.queue.name, agent_id=call.agent_id, status=status))
        reason = AGENT_FAULTS.get(status)
        if a is not None:
            a.call = None
            if a.state == AgentState.RESERVED:  # out of the pool's claim first: the call may be claimed at once
                freed = AgentState.NOT_READY if reason is not None or a.pending is not None else AgentState.READY
                self.pool.write(a.id, freed.value, now, now, out)
        if requeue:
            self._enter_waiting(call, now, out, "requeued")
        else:
            self._recall(call, now, out)
        if a is None or a.state != AgentState.RESERVED:
            return
        if reason is not None:
            a.pending, a.pending_by = None, ""  # not ready now (a supervisor's pending one is met)
            self._set_state(a, Trigger.OFFER_FAILED, now, out, reason=reason, about=call, write=False)  # written above
        else:
            self._set_state(a, Trigger.OFFER_CANCELLED, now, out, about=call, write=False)  # written above
            self._back_to_work(a, now, out)

    def _release_agent(self, call: Call, now: float, out: list[Output]) -> None:
        """The caller left during the offer: the agent is ready again."""
        a = self._offered_agent(call)
        if a is not None and a.state == AgentState.RESERVED:
            a.call = None
            freed = AgentState.NOT_READY if a.pending is not None else AgentState.READY
            self.pool.write(a.id, freed.value, now, now, out)  # never ready in the pool when it will not be
            self._set_state(a, Trigger.OFFER_CANCELLED, now, out, about=call, write=False)
            self._back_to_work(a, now, out)

    def _recall(self, call: Call, now: float, out: list[Output]) -> None:
        """The offer is off; wait (briefly) to learn whether the caller is back on hold or gone."""
        self._move(call, CallTrigger.RECALL)
        call.gen += 1
        self._push(now + self.section.offer_grace, "watchdog", call.key, call.gen)

    def _answered(self, call: Call, now: float, out: list[Output]) -> None:
        self._move(call, CallTrigger.ANSWER)
        call.gen += 1
        call.answered_at = now
        wait = now - call.entered
        self._counters[call.queue.name].on_answered(wait)
        a = self._offered_agent(call)
        if a is not None and a.state == AgentState.RESERVED:
            self._set_state(a, Trigger.ANSWER, now, out)
        out.append(CallAnswered(ts=now, server=call.key[0], uniqueid=call.key[1], call_id=call.call_id,
                                queue=call.queue.name, agent_id=call.agent_id, wait=wait))

    def _talk_ended(self, call: Call, now: float, out: list[Output]) -> None:
        call.talk_end = now
        self._forget(call)
        a = self._offered_agent(call)
        if a is None or a.state != AgentState.ON_CALL:
            if a is not None:
                a.call = None
            self._record_answered(call, now, out)
            return
        a.talk_today += now - (call.answered_at or now)
        self._set_state(a, Trigger.TALK_ENDED, now, out)
        wrapup = a.cfg.wrapup if a.cfg.wrapup is not None else call.queue.wrapup
        if wrapup <= 0:
            self._end_wrapup(a, now, out, Trigger.WRAPUP_ENDED)
        else:
            self._push(now + wrapup, "wrapup", a.id, a.gen)

    def _abandoned(self, call: Call, now: float, out: list[Output]) -> None:
        while_ringing = call.state in (CallState.OFFERED, CallState.RECALLING)
        agent_id = call.agent_id if while_ringing else ""
        self._forget(call)
        if call.state == CallState.OFFERED:
            self._release_agent(call, now, out)
        wait = now - call.entered
        self._counters[call.queue.name].on_abandoned()
        out.append(CallAbandoned(ts=now, server=call.key[0], uniqueid=call.key[1], call_id=call.call_id,
                                 queue=call.queue.name, wait=wait, while_ringing=while_ringing, agent_id=agent_id))
        out.append(self._row(call, now, "abandoned", wait, agent_id=agent_id))

    def _max_wait(self, call: Call, now: float, out: list[Output]) -> None:
        q = call.queue
        action = q.on_max_wait
        assert action is not None
        wait = now - call.entered
        target = action.overflow or action.voicemail or action.callback or ""
        self._counters[q.name].on_overflowed()
        out.append(CallOverflowed(ts=now, server=call.key[0], uniqueid=call.key[1], call_id=call.call_id, queue=q.name,
                                  wait=wait, action=action.kind, target=target))
        out.append(self._row(call, now, "overflowed", wait, overflow_action=action.kind, overflow_target=target))
        server, channel = call.key[0], call.channel
        if action.overflow is not None:
            self._leave_waiting(call)
            call.queue = self._queues[action.overflow]
            call.entered = now
            call.offers = 0
            out.append(Setvar(self._ref("acd-overflow"), server, channel, CTI_QUEUE, action.overflow))
            self._enter_waiting(call, now, out, "overflow")
            return
        self._forget(call)
        ref = self._ref("acd-overflow")
        if action.voicemail is not None:
            out.append(Setvar(ref, server, channel, CTI_VOICEMAIL_BOX, action.voicemail))
            out.append(Redirect(ref, server, channel, VOICEMAIL_CONTEXT, START_EXTEN, 1))
        else:
            exten = call.dnis if call.dnis and call.dnis.lstrip("+").isdigit() else START_EXTEN
            out.append(Setvar(ref, server, channel, CTI_FLOW, action.callback or ""))
            out.append(Redirect(ref, server, channel, INBOUND_CONTEXT, exten, 1))

    def _row(self, call: Call, now: float, outcome: str, wait: float, **kw: Any) -> QueueCallFinished:
        return QueueCallFinished(ts=now, server=call.key[0], uniqueid=call.key[1], call_id=call.call_id,
                                 queue=call.queue.name, entered=call.entered, outcome=outcome, wait=wait,
                                 offers=call.offers, caller_num=call.caller_num, dnis=call.dnis,
                                 priority=call.priority, data=call.data, **kw)

    def _record_answered(self, call: Call, now: float, out: list[Output]) -> None:
        answered_at = call.answered_at if call.answered_at is not None else now
        talk_end = call.talk_end if call.talk_end is not None else now
        wrapup = max(0.0, now - talk_end)
        self._counters[call.queue.name].on_handled(talk_end - answered_at + wrapup)
        moved = {"overflow_action": "transferred", "overflow_target": call.requeued_to} if call.requeued_to else {}
        out.append(self._row(call, now, "answered", answered_at - call.entered, agent_id=call.agent_id,
                             answered_at=answered_at, talk=talk_end - answered_at, wrapup=wrapup, **moved))

    # ---------------------------------------------------------------------- event handlers
    def _on_call_queued(self, e: CallQueued, now: float, out: list[Output]) -> None:
        key = (e.server, e.uniqueid)
        existing = self._calls.get(key)
        queue = self._queues.get(e.queue)
        if queue is None:
            fallback = self.section.default_queue or (self.section.queues[0].name if self.section.queues else None)
            queue = self._queues[fallback] if fallback is not None else None
        if existing is not None and existing.state in (CallState.WAITING, CallState.PARKED) \
                and queue is existing.queue:
            return  # the same UserEvent twice
        if e.queue not in self._queues:
            out.append(AcdWarning(ts=now, code="unknown-queue",
                                  message=f"call queued for unknown queue {str(e.queue)[:64]!r}: "
                                  + (f"routed in {queue.name!r}" if queue is not None else "no queue to route it in"),
                                  details={"server": e.server, "uniqueid": e.uniqueid,
                                           "used": queue.name if queue else ""}))
        if existing is not None:
            self._detach(existing, now, out, str(e.queue))
        if queue is None:
            return
        skills, warnings = parse_call_skills(str(e.skills or ""))
        data = {str(k)[:64]: str(v)[:MAX_DATA_VALUE] for k, v in list(e.data.items())[:MAX_DATA_ITEMS]}
        self._seq += 1
        try:
            boost = max(-PRIORITY_LIMIT, min(PRIORITY_LIMIT, int(e.priority)))
        except (TypeError, ValueError, OverflowError):
            boost = 0
            warnings.append(f"ignored priority {str(e.priority)[:20]!r}: not an integer")
        call = Call(key, e.call_id, e.channel, queue, skills, boost, now, now, self._seq,
                    str(e.caller_num or "")[:80], str(e.dnis or "")[:80], data, warnings)
        if existing is None and not campaign_person(data):
            self._counters[queue.name].arrivals.on_arrival(now)
        self._track(call)
        self._enter_waiting(call, now, out, "call-arrived")

    def _detach(self, call: Call, now: float, out: list[Output], new_queue: str) -> None:
        """A caller we track re-entered the holding context (transferred back, IVR again, ...)."""
        if call.state == CallState.ON_CALL:
            call.requeued_to = new_queue[:64]  # the agent's record says where the caller went
            self._talk_ended(call, now, out)
            return
        if call.state == CallState.OFFERED:
            self._release_agent(call, now, out)
        self._forget(call)
        self._counters[call.queue.name].on_overflowed()
        out.append(self._row(call, now, "overflowed", now - call.entered, overflow_action="requeued",
                             overflow_target=new_queue[:64]))

    def _on_returned(self, e: CallReturnedToHold, now: float, out: list[Output]) -> None:
        call = self._calls.get((e.server, e.uniqueid))
        if call is None:
            # not ours yet (e.g. the server restarted during an offer): treat it as a caller on hold
            self._on_call_queued(CallQueued(server=e.server, ts=e.ts, call_id=e.call_id, uniqueid=e.uniqueid,
                                            channel=e.channel, queue=e.queue, skills="", priority=0, language="",
                                            caller_num="", caller_name="", dnis=""), now, out)
            return
        if call.state == CallState.RECALLING:
            self._enter_waiting(call, now, out, "requeued")
        elif call.state == CallState.OFFERED and call.agent_id == e.agent_id:
            status = (e.dial_status or "NOANSWER").upper()[:20]
            self._offer_off(call, now, out, status if status in AGENT_FAULTS or status == "CANCEL" else "CHANUNAVAIL",
                            requeue=True)

    def _on_dial_started(self, e: DialStarted, now: float, out: list[Output]) -> None:
        call = self._calls.get((e.server, e.uniqueid))
        if call is None or call.state != CallState.OFFERED or call.dest_uniqueid:
            return
        a = self._offered_agent(call)
        if a is None or not e.dest_channel.lower().startswith(a.endpoint.lower()):
            return
        call.dest_uniqueid = e.dest_uniqueid
        self._dest[(e.server, e.dest_uniqueid)] = call.key
        call.gen += 1
        self._push(now + call.queue.ring_timeout + self.section.offer_grace, "watchdog", call.key, call.gen)

    def _on_dial_ended(self, e: DialEnded, now: float, out: list[Output]) -> None:
        call = self._calls.get((e.server, e.uniqueid))
        if call is None or call.state not in (CallState.OFFERED, CallState.RECALLING):
            return
        if call.dest_uniqueid:
            if e.dest_uniqueid != call.dest_uniqueid:
                return
        else:
            a = self._agents.get(call.agent_id)
            if a is None or not e.dest_channel.lower().startswith(a.endpoint.lower()):
                return
        status = e.status.upper()
        if status == "ANSWER":
            if not call.dest_uniqueid:
                call.dest_uniqueid = e.dest_uniqueid
                self._dest[(e.server, e.dest_uniqueid)] = call.key
            self._answered(call, now, out)
        elif call.state == CallState.RECALLING:
            return
        elif status == "CANCEL":
            self._offer_off(call, now, out, status, requeue=False)
        else:
            self._offer_off(call, now, out, status if status in AGENT_FAULTS else "CHANUNAVAIL", requeue=True)

    def _on_hungup(self, e: ChannelHungup, now: float, out: list[Output]) -> None:
        key = (e.server, e.uniqueid)
        call = self._calls.get(key)
        if call is not None:
            self._caller_gone(call, now, out)
            return
        caller = self._dest.pop(key, None)
        call = self._calls.get(caller) if caller is not None else None
        if call is not None and call.state == CallState.ON_CALL:
            self._talk_ended(call, now, out)

    def _caller_gone(self, call: Call, now: float, out: list[Output]) -> None:
        if call.state == CallState.ON_CALL:
            self._talk_ended(call, now, out)
        else:
            self._abandoned(call, now, out)

    def _on_call_ended(self, e: CallEnded, now: float, out: list[Output]) -> None:
        if e.merged_into:
            keys = self._by_call_id.pop((e.server, e.call_id), set())
            for key in keys:
                self._calls[key].call_id = e.merged_into
            if keys:
                self._by_call_id.setdefault((e.server, e.merged_into), set()).update(keys)
            return
        for key in sorted(self._by_call_id.get((e.server, e.call_id), ())):
            call = self._calls.get(key)
            if call is not None:
                self._caller_gone(call, now, out)

    def _on_device(self, e: DeviceStateChanged, now: float, out: list[Output]) -> None:
        device = e.device.lower()
        ids = self._by_endpoint.get(device)
        if not ids:
            return  # not an agent's phone (trunks, Queue: pseudo-devices...): not kept
        self._devices[device] = e.state.upper()[:20]
        for agent_id in sorted(ids):
            a = self._agents[agent_id]
            if a.endpoint.lower() == device:
                self._follow(a, now, out)
                self._refresh(a)
                self._match_agent(a, now, out, "phone-available")

    def _follow(self, a: AgentRuntime, now: float, out: list[Output]) -> None:
        """The agent's phone on a PBX of this node is busy while another node has the agent reserved or on a call
        that is not this node's: that node lost the PBX to this one (it died; the resync lists the phone), and
        the call goes on here. This node writes the agent as on that call (so that the lapsed claim of the node
        gone does not free the agent, ``acd.pool_link``) and makes it ready when the phone is free again."""
        if a.call is not None or a.id in self.pool.held:
            return
        device = self._devices.get(a.endpoint.lower(), "UNKNOWN")
        if device in BUSY_DEVICE_STATES or device in RINGING_DEVICE_STATES:
            if a.state in (AgentState.RESERVED, AgentState.ON_CALL) and a.node != self.node:
                self._replica(a, AgentState.ON_CALL, a.since, self.node, "")
                self._followed.add(a.id)
                self.pool.write(a.id, AgentState.ON_CALL.value, a.since, now, out)
        elif a.id in self._followed:
            self._followed.discard(a.id)
            if a.state == AgentState.ON_CALL and a.node == self.node:
                since = a.since
                self._replica(a, AgentState.READY, now, self.node, "")
                a.idle_since = now
                self.pool.write(a.id, AgentState.READY.value, now, now, out)
                out.append(AgentStateChanged(ts=now, agent_id=a.id, state=AgentState.READY.value,
                                             previous=AgentState.ON_CALL.value, reason="", since=since))

    def _on_connection(self, e: AmiConnectionChanged, now: float, out: list[Output]) -> None:
        if not e.connected:
            if e.server in self._down:
                return
            self._down.add(e.server)
            for call in [c for c in self._calls.values() if c.key[0] == e.server and c.state == CallState.WAITING]:
                self._move(call, CallTrigger.PARK)
                self._leave_waiting(call)
                call.gen += 1
                self._parked[call.key] = call
            return
        self._down.discard(e.server)
        for call in sorted((c for c in self._parked.values() if c.key[0] == e.server), key=lambda c: c.sort_key):
            self._parked.pop(call.key, None)
            self._enter_waiting(call, now, out, "reconnected")

    def _on_command_failed(self, e: CommandFailed, now: float, out: list[Output]) -> None:
        key = self._refs.get(e.ref)
        call = self._calls.get(key) if key is not None else None
        if call is None or call.offer_ref != e.ref or call.state != CallState.OFFERED:
            if e.ref.startswith(("acd-overflow", "acd-recall")):
                # the ACD no longer holds the caller (an overflow to voicemail or a callback): say which channel
                # the PBX did not move, so that someone can find the caller
                where = {"server": str(getattr(e.command, "server", "")),
                         "channel": str(getattr(e.command, "channel", ""))}
                out.append(AcdWarning(ts=now, code="command-failed",
                                      message=f"{type(e.command).__name__} failed: {e.reason[:200]}",
                                      details={"ref": e.ref, **where}))
            return
        call.failures += 1
        if "no such channel" in e.reason.lower() or call.failures >= MAX_COMMAND_FAILURES:
            if call.failures >= MAX_COMMAND_FAILURES:
                out.append(AcdWarning(ts=now, code="offer-failed", message=f"offers of call {call.key[1]} failed "
                                      f"{call.failures} times; giving up", details={"reason": e.reason[:200]}))
            self._abandoned(call, now, out)
            return
        self._offer_off(call, now, out, "command-failed", requeue=True)

    # ----------------------------------------------------------------------------- timers
    def _push(self, deadline: float, kind: str, target: Any, gen: int) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (deadline, self._seq, kind, target, gen))
        if len(self._timers) > self._compact_at:
            self._compact_timers()

    def _compact_timers(self) -> None:
        """Drop the timers made stale (a call answered long before its max-wait, an expansion step it never
        reached): they would otherwise stay in the heap until their deadline, up to ``max_wait`` later, and the
        heap grow with the traffic. Run when the heap doubled since the last compaction: amortised O(1)."""
        self._timers = [t for t in self._timers if self._timer_valid(t)]
        heapq.heapify(self._timers)
        self._compact_at = max(TIMERS_COMPACT_MIN, 2 * len(self._timers))

    def _timer_valid(self, entry: tuple[float, int, str, Any, int]) -> bool:
        _, _, kind, target, gen = entry
        if kind == "day":
            return True
        if kind == "wrapup":
            a = self._agents[target]
            return a.gen == gen and a.state == AgentState.WRAP_UP
        if kind == "orphan-wrapup":
            a = self._agents[target]
            return a.gen == gen and a.state == AgentState.WRAP_UP and a.node != self.node
        if kind == "defer":
            a = self._agents[target[0]]
            return a.gen == gen and a.state == AgentState.READY and a.ordinal not in self.router.agents
        if kind == "remote-expand":
            remote = self._remote.calls.get(target)
            return remote is not None and remote.gen == gen
        call = self._calls.get(target)
        return call is not None and call.gen == gen

    def _run_due(self, now: float) -> list[Output]:
        """Fire every timer due by ``now``. Every due expansion step takes effect before any matching, so
        that a caller whose step is due is not passed over by one whose timer happened to pop first."""
        out: list[Output] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            due: list[tuple[float, int, str, Any, int]] = []
            while timers and timers[0][0] <= now:
                due.append(heapq.heappop(timers))
            expanded = [self._expand(entry, now, out) for entry in due
                        if entry[2] == "expand" and self._timer_valid(entry)]
            for call in sorted((c for c in expanded if c is not None), key=lambda c: c.sort_key):
                if call.state == CallState.WAITING and call.key in self.router.calls:
                    self._match_call(call, now, out, "expansion")
            for entry in due:
                if entry[2] != "expand" and self._timer_valid(entry):
                    self._fire(entry, now, out)
        return out

    def _expand(self, entry: tuple[float, int, str, Any, int], now: float, out: list[Output]) -> Call | None:
        """Move a waiting call to the expansion stage in force at ``now`` (no matching here)."""
        call = self._calls[entry[3]]
        if call.state != CallState.WAITING:
            return None
        stage = stage_at(call.queue, now - call.entered)
        if stage != call.stage:
            self._place(call, stage)
            out.append(CallSkillsExpanded(ts=now, server=call.key[0], uniqueid=call.key[1], call_id=call.call_id,
                                          queue=call.queue.name, stage=stage,
                                          rule=call.queue.expansion[stage - 1].describe()))
        after = next_stage_after(call.queue, stage)
        if after is not None:
            self._push(call.entered + after, "expand", call.key, call.gen)
        return call

    def _fire(self, entry: tuple[float, int, str, Any, int], now: float, out: list[Output]) -> None:
        _, _, kind, target, _ = entry
        if kind == "day":
            self._new_day(now)
            return
        if kind == "wrapup":
            self._end_wrapup(self._agents[target], now, out, Trigger.WRAPUP_ENDED)
            return
        if kind == "orphan-wrapup":
            self._orphan_wrapup(self._agents[target], now, out)
            return
        if kind == "defer":  # the other node did not take the agent in time: not waited for again, routed here
            self._remote.pass_over(target[1])
            self._match_agent(self._agents[target[0]], now, out, "left-to-another-node-untaken")
            return
        if kind == "remote-expand":
            self._place_remote(self._remote.calls[target], now)
            return
        call = self._calls[target]
        if kind == "maxwait" and call.state == CallState.WAITING:
            self._max_wait(call, now, out)
        elif kind == "watchdog":
            self._watchdog(call, now, out)

    def _watchdog(self, call: Call, now: float, out: list[Output]) -> None:
        """No word about an offer for ring timeout + grace: decide from what we know."""
        if call.state == CallState.RECALLING:
            self._enter_waiting(call, now, out, "requeued")
            return
        if call.state != CallState.OFFERED:
            return
        a = self._offered_agent(call)
        device = self._devices.get(a.endpoint.lower(), "UNKNOWN") if a is not None else "UNKNOWN"
        if call.key[0] in self._down or device in RINGING_DEVICE_STATES:
            call.gen += 1
            self._push(now + self.section.offer_grace, "watchdog", call.key, call.gen)
        elif device in BUSY_DEVICE_STATES:
            self._answered(call, now, out)  # the Dial events were lost but the agent's phone is in use
        else:
            self._offer_off(call, now, out, "TIMEOUT", requeue=True)

    def _next_midnight(self, now: float) -> float:
        local = datetime.fromtimestamp(now, self._tz)
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), self._tz)
        return midnight.timestamp()

    def _new_day(self, now: float) -> None:
        self._remote.forget_older(now - REMOTE_FORGET)
        for a in self._ordinals:
            a.talk_today = 0.0
            if a.ordinal in self.router.agents:
                self.router.agents.add(a.ordinal, a.idle_since, 0.0)
        for c in self._counters.values():
            c.reset()
        self._push(self._next_midnight(now + 1), "day", None, 0)


__all__ = ["AcdError", "AcdService", "AgentState", "CallKey", "Output", "SYSTEM_REASONS"]
