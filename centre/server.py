"""The process's event flow for ``cti serve`` (and ``cti demo``): what comes in, onto the bus.

AMI bytes -> ``AMIClientPool`` -> ``CallTracker`` -> domain events -> the bus (``cti.bus.EventBus``) ->
the engines (call log, sessions, ACD, dialer, pops, ...; ``centre.wiring`` builds them and sets their
order) -> commands -> ``Dispatcher`` (AMI actions, console pushes) and events back onto the bus.
FastAGI -> ``ivr`` -> IVR events onto the bus. Consoles -> ``ConsoleHub`` -> ``ServerConsoleBackend`` ->
ACD requests and AMI call control. AMI links (health, resync, holding callers) are
``centre.pbx_links``'s; the wallboard is ``centre.wallboard``'s. The node's leases (``centre.node_leases``)
tick on the same timer as the engines, first: the PBXs it connects to and the campaigns it paces.
Start-up and each PBX's first resync -> ``centre.agent_restore`` -> agents back in the state they had
before a restart.

Time comes from the ``clock`` given (the reactor, a scaled clock for ``demo --speed``, or a virtual
clock in tests); nothing here reads the wall clock itself.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from acd.events import SharedStateHealth
from acd.recorder import Recorder
from centre.agent_feed import state_message
from centre.agent_restore import AgentRestorer
from centre.call_log import InteractionWriter
from centre.call_sessions import HandledCall, call_message
from centre.event_counts import EventCounts
from centre.kpi_push import KpiPush, SessionPusher
from centre.left_open import LeftOpenRecords
from centre.wallboard import WALLBOARD_INTERVAL, wallboard
from centre.wiring import Database, build_components, open_database
from config.schema import CtiConfig
from cti.ami.client import Connector
from cti.ami.message import AMIMessage
from cti.commands import CommandFailed
from cti.contract import is_outbound
from cti.dispatch import ActionSender, Pusher
from cti.events import CallQueued
from cti.sessions import CallSession
from cti.threads import ThreadRunner
from dialer.store import CallbackStore
from ivr.events import IvrEvent
from screenpop.lookup import PopLookup
from screenpop.store import CustomerStore

log = logging.getLogger("centre.server")


class CtiServer:
    """Runs the components of one configuration: events in, through the bus, timers, consoles out."""

    def __init__(
        self,
        cfg: CtiConfig,
        *,
        clock: IReactorTime,
        ami_connector: Connector | None = None,
        ami: ActionSender | None = None,
        pusher: Pusher | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.pusher = pusher
        c = self.components = build_components(cfg, clock=clock, process=self, ami_connector=ami_connector,
                                                       ami=ami)
        self.relay = c.relay  # several nodes: the consoles' pushes to and from the other nodes
        self.tracker, self.acd, self.dialer, self.pool = c.tracker, c.acd, c.dialer, c.pool
        self.dispatcher, self.bus, self.sessions, self.pops = c.dispatcher, c.bus, c.sessions, c.pops
        self.recordings = c.recordings
        self.call_log, self.ivr_sessions, self.links = c.call_log, c.ivr_sessions, c.links
        self.health = c.links.health
        if cfg.redis is not None:  # the shared agent pool's health onto the wallboard and /healthz, /readyz
            self.health.agent_pool = self.acd.shared_up
            self.subscribe(self._on_pool_health)
        assert c.leases is not None
        self.leases = c.leases
        self.restorer = AgentRestorer(self)
        self.left_open = LeftOpenRecords(c.call_log, self.now)
        self.kpi = KpiPush(c.kpi.core, clock, self._session_pusher) if c.kpi is not None else None
        self.database: Database | None = None
        self.run_in_thread: ThreadRunner | None = None  # the database's thread runner, once it is open
        self._ami_messages: defaultdict[str, int] = defaultdict(int)  # by PBX
        self._failed = 0
        self._tick_call: IDelayedCall | None = None
        self._wallboard_call: IDelayedCall | None = None
        self._running = False

    # ------------------------------------------------------------------ lifecycle
    def open_database(self, run_in_thread: ThreadRunner) -> None:
        """Migrate the database and open the recorder and the stores (leaves the loop for I/O)."""
        self.database = open_database(self.components, self.cfg, run_in_thread, self.clock)
        self.run_in_thread = run_in_thread
        self.restorer.load(self.database.engine)
        self.left_open.store, self.left_open.run_in_thread = self.database.store, run_in_thread

    def start(self) -> None:
        self._running = True
        self.left_open.started_at = self.now()
        if self.database is None:
            self.restorer.without_database()  # agents on calls are still restored from the PBX
        if self.dialer is not None and not self.dialer.loaded:
            self.apply(self.dialer.load_memory(self.now()))
        self.leases.start(self.now())  # takes the free leases (embedded: all) and connects to their PBXs
        self._reschedule()
        self._wallboard_call = self.clock.callLater(WALLBOARD_INTERVAL, self._wallboard_tick)

    def stop(self) -> defer.Deferred[None]:
        self._quiet()
        self.leases.release()  # another node takes this one's PBXs and campaigns at once
        d = self.pool.stop()
        if self.recorder is not None:
            # the rows of calls whose wrap-up the stop cuts short (a restart restores the wrap-up, not the call)
            self.recorder.record_all(self.acd.close_records(self.now()))
            self.recorder.close()
        return d

    def halt(self) -> defer.Deferred[None]:
        """Stop as a killed process would (failover tests): timers cancelled, the AMI connections closed, but no
        lease released and nothing written: the leases lapse after their ttl for another node to take."""
        self._quiet()
        return self.pool.stop()

    def _quiet(self) -> None:
        """No timer of the server's fires any more (``stop`` and ``halt`` alike)."""
        self._running = False
        for call in (self._tick_call, self._wallboard_call):
            if call is not None and call.active():
                call.cancel()
        self._tick_call = self._wallboard_call = None
        if self.kpi is not None:
            self.kpi.stop()

    def subscribe(self, listener: Callable[[object], None]) -> None:
        """Be told of every event on the bus: domain, ACD, dialer and IVR (demo summary, tests)."""
        self.bus.subscribe(listener)

    def _on_pool_health(self, event: object) -> None:
        if isinstance(event, SharedStateHealth):
            self.health.agent_pool = event.up
            if event.up:
                log.warning("acd: the shared agent pool answers again; routing resumes")
            else:
                log.error("acd: the shared agent pool is unreachable; no routing decision until it is back "
                          "(callers wait in order, calls are still tracked)")

    def now(self) -> float:
        return self.clock.seconds()

    # ------------------------------------------------------------------ what the database opened
    @property
    def recorder(self) -> Recorder | None:
        return self.database.recorder if self.database is not None else None

    @property
    def store(self) -> CustomerStore | None:
        return self.database.store if self.database is not None else None

    @property
    def callback_store(self) -> CallbackStore | None:
        return self.database.callback_store if self.database is not None else None

    @property
    def pop_lookup(self) -> PopLookup | None:
        return self.database.pop_lookup if self.database is not None else None

    @property
    def interactions(self) -> InteractionWriter | None:
        """The call records' writer (batches; ``flush`` at shutdown)."""
        return self.database.interactions if self.database is not None else None

    @property
    def schema(self) -> tuple[str | None, str | None]:
        """(revision before, after) of the start-up's migration ((None, None) without a database)."""
        return self.database.schema if self.database is not None else (None, None)

    @property
    def counters(self) -> dict[str, int]:
        return {"ami_messages": sum(self._ami_messages.values()), "events": self.bus.counters["events"],
                "commands": self.bus.counters["commands"], "failed": self._failed}

    @property
    def ami_messages(self) -> dict[str, int]:
        """AMI messages read, by PBX (``centre.metrics``)."""
        return dict(self._ami_messages)

    @property
    def event_counts(self) -> EventCounts | None:
        """The bus's counts of queue, agent, AMI link and dialler events (``centre.event_counts``)."""
        return self.components.event_counts

    # ------------------------------------------------------------------ events in
    def on_ami_message(self, server: str, msg: AMIMessage) -> None:
        self._ami_messages[server] += 1
        try:
            events = self.tracker.handle(server, msg, self.now())
        except Exception:  # the tracker must never take the connection down
            log.exception("call tracker failed on %s from %s", msg.name, server)
            return
        for event in events:
            self.publish(event)

    def publish(self, event: object) -> None:
        """Put one event on the bus (the engines' commands are carried out, their events follow)."""
        if type(event) is CallQueued and is_outbound(event.data):
            number = self.components.customer_number(event.server, event.uniqueid, event.data)
            if number:  # an outbound call's caller ID is the campaign's: the customer is the number dialled
                event = replace(event, caller_num=number)
        self.bus.publish(event, self.now())
        self._reschedule()

    def apply(self, outputs: Iterable[object]) -> None:
        """Carry out an engine's outputs (the console's ACD requests, the dialer's late ones, a restore)."""
        self.bus.apply(outputs, self.now())
        self._reschedule()

    def on_command_failed(self, failed: CommandFailed) -> None:
        self._failed += 1
        self.bus.publish(failed, self.now())
        self._reschedule()

    def ivr_sink(self, event: IvrEvent) -> None:
        """The IVR's events (FastAGI sessions) onto the bus."""
        self.bus.publish(event, self.now())

    def resynced(self, server: str, channels: list[AMIMessage]) -> None:
        self.restorer.resynced(server, channels)
        self.left_open.resynced(server, channels)

    def adopt_call(self, session: CallSession) -> None:
        """A call found with an agent after a restart (``centre.agent_restore``): tracked as if this server had
        offered it, with its record open and, once answered, the agent's disposition of it."""
        self.apply(self.sessions.adopt(session))

    # ------------------------------------------------------------------ timers
    def _reschedule(self) -> None:
        """The timer for the engines' next deadline. A timer already set for that time or earlier is kept
        (firing early only makes the engines find nothing due and set it again): this runs after every
        event, and moving a timer costs more than an idle tick."""
        if not self._running:
            return
        deadline = self.bus.next_deadline()
        leases = self.leases.next_deadline()
        if leases is not None and (deadline is None or leases < deadline):
            deadline = leases
        call = self._tick_call
        if call is not None and call.active():
            if deadline is None or call.getTime() <= deadline + 1e-9:
                return
            call.cancel()
        self._tick_call = None if deadline is None else \
            self.clock.callLater(max(0.0, deadline - self.now()), self._tick)

    def _tick(self) -> None:
        self._tick_call = None
        now = self.now()
        self.leases.tick(now)  # first: a lease past its safe end is dropped before the engines act on it
        self.bus.tick(now)
        self._reschedule()

    # ------------------------------------------------------------------ consoles
    def has_consoles(self) -> bool:
        """Whether a console may be connected (to this node's hub, or with several nodes to any node)."""
        return self.pusher is not None or self.relay is not None

    def push_to_agent(self, agent_id: str, message: dict[str, Any]) -> None:
        """To the agent's console on this node and, with several nodes, relayed to the others
        (``centre.console_relay``: the node its console is connected to shows it, every node keeps its pop)."""
        if self.pusher is not None:
            try:
                self.pusher.push_to_agent(agent_id, message)
            except Exception:
                log.exception("push to agent %s failed", agent_id)
        if self.relay is not None:
            relayed = self.relay.outgoing(agent_id, message, self.now())
            if relayed is not None:
                self.bus.publish(relayed, self.now())

    def deliver_relayed(self, agent_id: str, message: dict[str, Any]) -> bool:
        """Another node's push to ``agent_id``, to its console if it is connected to this node (True then)."""
        pusher = self.pusher
        connected = getattr(pusher, "is_connected", None)
        if pusher is None or (connected is not None and not connected(agent_id)):
            return False
        try:
            pusher.push_to_agent(agent_id, message)
        except Exception:
            log.exception("relayed push to agent %s failed", agent_id)
            return False
        return True

    def carries_call(self, agent_id: str, call_id: str) -> bool:
        """Whether this node has the session of ``agent_id``'s call ``call_id`` (its PBX carries it)."""
        live = self.call_for_agent(agent_id)
        return live is not None and live.queued.call_id == call_id

    def relayed_call(self, agent_id: str, call_id: str | None) -> dict[str, Any] | None:
        """The call frame of the agent's current call when another node carries it (several nodes), else None."""
        return self.relay.call_frame(agent_id, call_id) if self.relay is not None else None

    def _session_pusher(self) -> SessionPusher | None:
        """The hub, when it can push to one session (the statistics' subscriptions)."""
        return self.pusher if hasattr(self.pusher, "push_to_session") else None  # type: ignore[return-value]

    def push_to_supervisors(self, message: dict[str, Any]) -> None:
        if self.pusher is not None:
            try:
                self.pusher.push_to_supervisors(message)
            except Exception:
                log.exception("push to supervisors failed")

    def state_message(self, agent_id: str) -> dict[str, Any]:
        return state_message(self.acd, agent_id)

    def call_for_agent(self, agent_id: str) -> CallSession | None:
        return self.sessions.call_for_agent(agent_id)

    def call_message(self, session: CallSession) -> dict[str, Any]:
        return call_message(session)

    @property
    def last_call(self) -> dict[str, HandledCall]:
        """Agent -> the last call it answered (its disposition's call); the session engine's."""
        return self.sessions.last_call

    @property
    def agent_pops(self) -> dict[str, dict[str, Any]]:
        """Agent -> the last pop it was sent, for a resuming console; the pop engine's."""
        return self.pops.agent_pops

    def schedule_callback(self, *, number: str, due: float, source: str, queue: str = "", notes: str = "",
                          agent_id: str = "", call_id: str = "", lead_id: str = "") -> defer.Deferred[int]:
        """Store a callback (never lost: it is written before the caller or agent is told it is scheduled)."""
        return self.components.callbacks.schedule(number=number, due=due, source=source, now=self.now(),
                                                  queue=queue, notes=notes, agent_id=agent_id, call_id=call_id,
                                                  lead_id=lead_id)

    def wallboard(self) -> dict[str, Any]:
        now = self.now()
        return wallboard(self.acd, self.health, self.recorder, now,
                         self.dialer.figures(now) if self.dialer is not None else None,
                         warnings=self.components.agent_feed.warnings(), pops=self.agent_pops,
                         recordings=self.recordings.states_by_agent() if self.recordings is not None else None,
                         writers_down=self.database_writers_down())

    def database_writers_down(self) -> bool:
        """Whether a writer of records other than the ACD recorder cannot reach the database (they keep their
        writes and retry): the call records, the dialer's store."""
        writer = self.interactions
        return (writer is not None and writer.down) or (self.dialer is not None and self.dialer.store_down)

    def _wallboard_tick(self) -> None:
        self._wallboard_call = None
        if not self._running:
            return
        watched = getattr(self.pusher, "has_supervisors", None)
        if self.pusher is not None and (watched is None or watched()):
            self.push_to_supervisors(self.wallboard())
        self._wallboard_call = self.clock.callLater(WALLBOARD_INTERVAL, self._wallboard_tick)
