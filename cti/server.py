"""The one place that wires everything for ``cti serve`` (and ``cti demo``).

AMI bytes -> ``AMIClientPool`` -> ``CallTracker`` -> domain events -> ``AcdService`` -> commands ->
``Dispatcher`` (AMI actions, console pushes) and ACD events -> recorder, consoles, wallboard.
FastAGI -> ``ivr`` -> IVR events (kept for the screen pop; callbacks stored). Consoles -> ``ConsoleHub``
-> ``ServerConsoleBackend`` -> ACD requests and AMI call control.

Time comes from the ``clock`` given (the reactor, a scaled clock for ``demo --speed``, or a virtual
clock in tests); nothing here reads the wall clock itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from acd.events import (
    AcdEvent,
    AcdWarning,
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallOffered,
    OfferNotAnswered,
    QueueCallFinished,
)
from acd.service import AcdService
from config.schema import CtiConfig
from cti.ami.client import AMIClientPool, Connector
from cti.ami.message import AMIMessage
from cti.calls import CallTracker
from cti.commands import Command, CommandFailed, OfferCall
from cti.dispatch import Dispatcher
from cti.events import AmiConnectionChanged, CallBridged, CallQueued, DialStarted, DomainEvent
from dialer.events import DialerEvent
from ivr.events import CallbackRequested, IvrEvent
from ivr.ports import RecentCompletions

log = logging.getLogger("cti.server")

WALLBOARD_INTERVAL = 1.0


# Dialplan contexts where a caller waits for the ACD (config/asterisk/extensions_cti.conf).
HOLD_CONTEXTS = frozenset({"cti-hold"})


def _duration(text: str) -> float:
    """CoreShowChannel's ``Duration: HH:MM:SS`` in seconds (0 when absent or odd)."""
    try:
        h, m, sec = (int(x) for x in text.split(":"))
    except ValueError:
        return 0.0
    return float(h * 3600 + m * 60 + sec)


def call_key(server: str, call_id: str) -> str:
    """The interaction key of a call across servers (the screen pop's ``call_key``): server/Linkedid."""
    return f"{server}/{call_id}"


@dataclass
class Health:
    """What the wallboard shows about the server's links."""

    ami: dict[str, bool] = field(default_factory=dict)
    ami_detail: dict[str, str] = field(default_factory=dict)
    db: bool | None = None
    redis: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ami": dict(self.ami), "ami_detail": dict(self.ami_detail), "db": self.db, "redis": self.redis}


@dataclass
class LiveCall:
    """What the server knows of a queued call beyond the ACD: its CallQueued and the agent leg."""

    queued: CallQueued
    agent_id: str = ""
    agent_channel: str = ""
    status: str = "waiting"  # waiting | ringing | connected | held | consulting | ended
    since: float = 0.0  # when ``status`` began (a hold's start while held)
    pop: dict[str, Any] | None = None
    consult: dict[str, str] | None = None  # while consulting: the number and "ringing" | "talking"
    answered_at: float | None = None  # the call timer runs from here, through holds
    held_total: float = 0.0  # seconds on hold before the current status


class CtiServer:
    """Builds and runs every component for one configuration."""

    def __init__(
        self,
        cfg: CtiConfig,
        *,
        clock: IReactorTime,
        ami_connector: Connector | None = None,
        pusher: Any | None = None,
        use_database: bool = True,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.health = Health(ami={s.name: False for s in cfg.asterisk})
        self.tracker = CallTracker()
        self.acd = AcdService(cfg.acd, clock.seconds())
        self.dialer: Any | None = None  # dialer.service.Dialer when cfg.dialer has campaigns
        if cfg.dialer.campaigns:
            from dialer.service import Dialer, IdleAgents

            self.dialer = Dialer(cfg.dialer, servers=[s.name for s in cfg.asterisk],
                                 dial_template=cfg.pbx.external_dial, idle_agents=IdleAgents(self.acd),
                                 sink=self.apply, clock=clock.seconds)
        self._dialer_call: IDelayedCall | None = None
        self.ivr_sessions = RecentCompletions(forward=self._on_ivr_forward)
        self.calls: dict[tuple[str, str], LiveCall] = {}
        self.callbacks: list[CallbackRequested] = []
        self.last_call: dict[str, tuple[str, str]] = {}  # agent -> (server, call_id) of the last answered call
        # agent -> the last pop it was sent (as "type": "pop"), kept while the agent is reserved, on the call
        # or in its wrap-up, so that a console that resumes (reload, network drop) shows it again.
        self.agent_pops: dict[str, dict[str, Any]] = {}
        self.counters = {"ami_messages": 0, "domain_events": 0, "commands": 0, "acd_events": 0, "failed": 0}
        self.pusher = pusher
        self.pool = AMIClientPool(
            cfg.asterisk, clock=clock, connector=ami_connector,
            on_message=self._on_ami_message, on_connection=self._on_ami_connection,
        )
        self.dispatcher = Dispatcher(self.pool, self, on_failed=self._on_command_failed, on_offer=self._on_offer)
        self.recorder: Any | None = None
        self.store: Any | None = None
        self.callback_store: Any | None = None
        self._run_in_thread: Any | None = None
        self.pop_lookup: Any | None = None
        self._use_database = use_database
        self._tick_call: IDelayedCall | None = None
        self._wallboard_call: IDelayedCall | None = None
        self._listeners: list[Callable[[object], None]] = []
        self._running = False

    # ------------------------------------------------------------------ lifecycle
    def open_database(self, run_in_thread: Any) -> None:
        """Migrate the database and open the recorder and the customer store (leaves the loop for I/O)."""
        from acd.recorder import Recorder
        from cti.db import make_engine, upgrade
        from dialer.store import CallbackStore
        from screenpop.lookup import PopLookup
        from screenpop.store import CustomerStore

        url = self.cfg.database.url
        upgrade(url)
        self.recorder = Recorder(url)
        engine = make_engine(url, echo=self.cfg.database.echo)
        self.store = CustomerStore(engine)
        self.callback_store = CallbackStore(engine)
        self._run_in_thread = run_in_thread
        self.pop_lookup = PopLookup.from_settings(self.store, run_in_thread, self.clock, self.cfg.screenpop)
        if self.dialer is not None:
            from dialer.store import LeadStore

            self.dialer.open_store(LeadStore(engine), run_in_thread, self.now())
        self.health.db = True

    def start(self) -> None:
        self._running = True
        if self.dialer is not None and not self.dialer.loaded:
            self.apply(self.dialer.load_memory(self.now()))
        self.pool.start()
        self._reschedule()
        self._wallboard_call = self.clock.callLater(WALLBOARD_INTERVAL, self._wallboard_tick)

    def stop(self) -> defer.Deferred[None]:
        self._running = False
        for call in (self._tick_call, self._wallboard_call, self._dialer_call):
            if call is not None and call.active():
                call.cancel()
        self._tick_call = self._wallboard_call = self._dialer_call = None
        d = self.pool.stop()
        if self.recorder is not None:
            self.recorder.close()
        return d

    def subscribe(self, listener: Callable[[object], None]) -> None:
        """Be told of every domain, ACD and IVR event (demo summary, tests)."""
        self._listeners.append(listener)

    def now(self) -> float:
        return self.clock.seconds()

    # ------------------------------------------------------------------ AMI in
    def _on_ami_message(self, server: str, msg: AMIMessage) -> None:
        self.counters["ami_messages"] += 1
        try:
            events = self.tracker.handle(server, msg, self.now())
        except Exception:  # the tracker must never take the connection down
            log.exception("call tracker failed on %s from %s", msg.name, server)
            return
        for event in events:
            self.publish(event)

    def _on_ami_connection(self, server: str, connected: bool, detail: str) -> None:
        was = self.health.ami.get(server)
        self.health.ami[server] = connected
        self.health.ami_detail[server] = detail
        now = self.now()
        if connected:
            log.info("%s: connected (%s)", server, detail)
            self.pool.send(server, "CoreShowChannels").addCallbacks(
                lambda result: self._resync(server, result.events),
                lambda failure: log.warning("%s: resync failed: %s", server, failure.getErrorMessage()),
            )
        else:
            if was:
                log.warning("%s: AMI connection lost (%s)", server, detail)
            for event in self.tracker.connection_lost(server, now):
                self.publish(event)
        self.publish(AmiConnectionChanged(server=server, ts=now, connected=connected, detail=detail))

    def _resync(self, server: str, items: list[AMIMessage]) -> None:
        channels = [m for m in items if m.get("Event") == "CoreShowChannel"]
        for event in self.tracker.resync(server, channels, self.now()):
            self.publish(event)
        for item in channels:
            if item.get("Context") in HOLD_CONTEXTS and (server, item.get("Uniqueid", "")) not in self.calls:
                self._requeue_holding(server, item)

    def _requeue_holding(self, server: str, item: AMIMessage) -> None:
        """A caller already waiting in ``cti-hold`` that we do not know (the server restarted, or the
        CTIQueued UserEvent fell in an AMI outage): read its routing variables and queue it again, with
        its time on the channel as its wait so far, so that nobody is left holding forever."""
        channel, uniqueid = item.get("Channel", ""), item.get("Uniqueid", "")
        if not channel or not uniqueid:
            return
        names = ("CTI_QUEUE", "CTI_SKILLS", "CTI_PRIORITY", "CTI_LANGUAGE", "CTI_DNIS")
        reads = [self.pool.send(server, "Getvar", {"Channel": channel, "Variable": name}) for name in names]

        def got(results: list[Any]) -> None:
            if (server, uniqueid) in self.calls:
                return  # the UserEvent arrived meanwhile
            values = {n: str(r.response.get("Value") or "") for n, r in zip(names, results, strict=True)}
            known = self.tracker.variables(server, uniqueid)
            data = {**{k: v for k, v in values.items() if v}, **known}
            try:
                priority = int(values["CTI_PRIORITY"] or 0)
            except ValueError:
                priority = 0
            now = self.now()
            log.info("%s: re-queueing caller %s found holding after a resync", server, uniqueid)
            self.publish(CallQueued(
                server=server, ts=now - _duration(item.get("Duration", "")), call_id=item.get("Linkedid", uniqueid),
                uniqueid=uniqueid, channel=channel, queue=values["CTI_QUEUE"] or (self.cfg.acd.default_queue or ""),
                skills=values["CTI_SKILLS"], priority=priority, language=values["CTI_LANGUAGE"],
                caller_num=item.get("CallerIDNum", ""), caller_name=item.get("CallerIDName", ""),
                dnis=values["CTI_DNIS"], data=data))

        defer.gatherResults(reads, consumeErrors=True).addCallbacks(
            got, lambda f: log.warning("%s: could not read the routing variables of holding caller %s: %s",
                                       server, uniqueid, f.getErrorMessage()))

    # ------------------------------------------------------------------ events
    def publish(self, event: DomainEvent | object) -> None:
        """Route one domain event to the engines and apply what they ask for."""
        self.counters["domain_events"] += 1
        now = self.now()
        prefetch: LiveCall | None = None
        if isinstance(event, CallQueued):
            key = (event.server, event.uniqueid)
            live = self.calls.get(key)
            if live is None:
                prefetch = self.calls[key] = LiveCall(queued=event, since=now)
            else:
                live.queued = event
        elif isinstance(event, DialStarted):
            live = self.calls.get((event.server, event.uniqueid))
            if live is not None:
                live.agent_channel = event.dest_channel
        elif isinstance(event, CallBridged):
            self._consultation_bridged(event)
        for listener in self._listeners:
            listener(event)
        self.apply(self.acd.handle(event, now))
        if self.dialer is not None:
            self.apply(self.dialer.handle(event, now))
        if prefetch is not None and not prefetch.agent_id:
            self._prefetch(prefetch.queued)  # the caller waits: warm the pop (an offer at once looked it up)

    def _consultation_bridged(self, event: CallBridged) -> None:
        """While an agent consults, a bridge of the agent's leg says how it goes: with the caller again
        (the target hung up, or the consultation was cancelled or failed) the agent is back on the call;
        with anyone else the target answered."""
        for live in self.calls.values():
            if live.status != "consulting" or live.queued.server != event.server \
                    or live.agent_channel not in event.channels:
                continue
            if live.queued.channel in event.channels:
                live.status, live.consult, live.since = "connected", None, event.ts
            elif live.consult is not None:
                live.consult = dict(live.consult, state="talking")
            self._push_call(live)
            return

    def apply(self, outputs: list[Any]) -> None:
        for out in outputs:
            if isinstance(out, Command):
                self.counters["commands"] += 1
                self.dispatcher.apply(out)
            elif isinstance(out, AcdEvent):
                self.counters["acd_events"] += 1
                self._on_acd_event(out)
            elif isinstance(out, DialerEvent):
                for listener in self._listeners:
                    listener(out)
        self._reschedule()

    def _on_command_failed(self, failed: CommandFailed) -> None:
        self.counters["failed"] += 1
        self.apply(self.acd.handle(failed, self.now()))
        if self.dialer is not None:
            self.apply(self.dialer.handle(failed, self.now()))

    def _reschedule(self) -> None:
        if not self._running:
            return
        if self.dialer is not None:
            self._dialer_call = self._arm(self._dialer_call, self.dialer.next_deadline(), self._dialer_tick)
        self._tick_call = self._arm(self._tick_call, self.acd.next_deadline(), self._tick)

    def _arm(self, call: IDelayedCall | None, deadline: float | None, fire: Callable[[], None]) -> IDelayedCall | None:
        """The timer for an engine's next deadline. A timer already set for that time or earlier is kept
        (firing early only makes the engine find nothing due and set it again): this runs after every
        event, and moving a timer costs more than an idle tick."""
        if call is not None and call.active():
            if deadline is None or call.getTime() <= deadline + 1e-9:
                return call
            call.cancel()
        if deadline is None:
            return None
        return self.clock.callLater(max(0.0, deadline - self.now()), fire)

    def _tick(self) -> None:
        self._tick_call = None
        self.apply(self.acd.tick(self.now()))

    def _dialer_tick(self) -> None:
        self._dialer_call = None
        if self.dialer is not None:
            self.apply(self.dialer.tick(self.now()))

    # ------------------------------------------------------------------ ACD events out
    def _on_acd_event(self, event: AcdEvent) -> None:
        for listener in self._listeners:
            listener(event)
        if self.dialer is not None and isinstance(event, CallOffered | OfferNotAnswered):
            self.apply(self.dialer.handle(event, self.now()))  # an outbound person's agent is ringing (or not)
        if self.recorder is not None and isinstance(event, QueueCallFinished | AgentStateChanged):
            self.recorder.record(event)
        if isinstance(event, AcdWarning):
            log.warning("acd: %s: %s", event.code, event.message)
        elif isinstance(event, AgentStateChanged):
            if event.state not in ("reserved", "on_call", "wrap_up"):
                self.agent_pops.pop(event.agent_id, None)
            if self.pusher is not None:  # no consoles (virtual runs): no snapshot to build
                self.push_to_agent(event.agent_id, self.state_message(event.agent_id))
        elif isinstance(event, CallAnswered):
            live = self.calls.get((event.server, event.uniqueid))
            if live is not None:
                live.status, live.since, live.answered_at = "connected", event.ts, event.ts
                self.last_call[event.agent_id] = (event.server, live.queued.call_id)
                self._push_call(live)
                self._record_interaction(live, event)
        elif isinstance(event, OfferNotAnswered | CallAbandoned):
            # The offer is over (or the caller left): the agent's console sees the call end; a caller
            # still waiting is offered afresh later, with a new pop.
            live = self.calls.get((event.server, event.uniqueid))
            if live is not None and live.agent_id:
                live.status = "ended"
                self._push_call(live)
                live.agent_id, live.agent_channel, live.pop, live.status = "", "", None, "waiting"
            if isinstance(event, CallAbandoned):
                self.calls.pop((event.server, event.uniqueid), None)
        elif isinstance(event, QueueCallFinished):
            live = self.calls.get((event.server, event.uniqueid))
            if live is not None and event.outcome != "answered":
                self.calls.pop((event.server, event.uniqueid), None)
            elif live is not None:
                live.status = "ended"
                self._push_call(live)
                self.calls.pop((event.server, event.uniqueid), None)
        elif isinstance(event, CallOffered):
            live = self.calls.get((event.server, event.uniqueid))
            if live is not None:
                live.agent_id, live.status, live.since = event.agent_id, "ringing", event.ts

    def _prefetch(self, event: CallQueued) -> None:
        """Warm the look-up cache while the caller waits, so the pop at offer time is complete at once."""
        if self.pop_lookup is None:
            return
        from screenpop.context import pop_context

        ctx = pop_context(event, agent_id="", now=self.now(), ivr=self.ivr_sessions.get(event.uniqueid))
        self.pop_lookup.resolve(ctx).addErrback(lambda f: log.debug("prefetch failed: %s", f.getErrorMessage()))

    def _record_interaction(self, live: LiveCall, event: CallAnswered) -> None:
        """The answered call becomes an interaction of the customer (the disposition completes it)."""
        if self.pop_lookup is None:
            return
        q = live.queued
        customer = (live.pop or {}).get("customer") or {}
        outbound = bool(q.data.get("CTI_CAMPAIGN"))
        self.pop_lookup.record_interaction(
            call_key(q.server, q.call_id), started_at=datetime.fromtimestamp(q.ts, UTC),
            direction="outbound" if outbound else "inbound", customer_id=customer.get("customer_id"),
            ani=q.caller_num, dnis=q.dnis, queue=q.queue, campaign=q.data.get("CTI_CAMPAIGN", ""),
            lead_id=q.data.get("CTI_LEAD_ID", ""), agent_id=event.agent_id, outcome="answered",
        ).addErrback(lambda f: log.warning("interaction not recorded: %s", f.getErrorMessage()))

    def _on_offer(self, cmd: OfferCall) -> None:
        """Compose and push the screen pop as the offer goes out (never waits for the store)."""
        live = self.calls.get((cmd.server, cmd.uniqueid))
        if live is None:
            return
        live.agent_id, live.status, live.since = cmd.agent_id, "ringing", self.now()
        self._push_call(live)
        if self.pop_lookup is None:
            return
        from screenpop.context import pop_context

        q = live.queued
        lead = self.dialer.lead_fields(q.data.get("CTI_CAMPAIGN", ""), q.data.get("CTI_LEAD_ID", "")) \
            if self.dialer is not None and q.data.get("CTI_CAMPAIGN") else None
        ctx = pop_context(q, agent_id=cmd.agent_id, now=self.now(), ivr=self.ivr_sessions.get(cmd.uniqueid),
                          lead=lead, flows=self.cfg.ivr.flows)

        def send(message: dict[str, Any]) -> None:
            if live.agent_id != cmd.agent_id:
                return  # the offer is over; a late look-up must not pop a stale call
            live.pop = self.agent_pops[cmd.agent_id] = dict(message, type="pop")  # an update is the whole pop
            self.push_to_agent(cmd.agent_id, message)

        self.pop_lookup.pop(ctx, send)

    # ------------------------------------------------------------------ IVR events
    def ivr_sink(self, event: IvrEvent) -> None:
        self.ivr_sessions(event)

    def _on_ivr_forward(self, event: IvrEvent) -> None:
        for listener in self._listeners:
            listener(event)
        if isinstance(event, CallbackRequested):
            self.callbacks.append(event)
            due = event.when if event.when is not None else event.ts
            self.schedule_callback(number=event.number, due=due, queue=event.queue, call_id=event.uniqueid,
                                   source="ivr").addErrback(
                lambda f: log.error("IVR callback for call %s not stored: %s", event.uniqueid, f.getErrorMessage()))

    def schedule_callback(self, *, number: str, due: float, source: str, queue: str = "", notes: str = "",
                          agent_id: str = "", call_id: str = "", lead_id: str = "") -> defer.Deferred[int]:
        """Store a callback (never lost: it is written before the caller or agent is told it is scheduled)."""
        store, run = self.callback_store, self._run_in_thread
        if store is None or run is None:
            return defer.fail(RuntimeError("no database: callbacks cannot be stored"))
        now = self.now()
        d: defer.Deferred[int] = run(lambda: store.add(number=number, due=due, source=source, queue=queue,
                                                       notes=notes, agent_id=agent_id, call_id=call_id,
                                                       lead_id=lead_id, now=now))
        return d

    # ------------------------------------------------------------------ console pushes
    def push_to_agent(self, agent_id: str, message: dict[str, Any]) -> None:
        if self.pusher is not None:
            try:
                self.pusher.push_to_agent(agent_id, message)
            except Exception:
                log.exception("push to agent %s failed", agent_id)

    def push_to_supervisors(self, message: dict[str, Any]) -> None:
        if self.pusher is not None:
            try:
                self.pusher.push_to_supervisors(message)
            except Exception:
                log.exception("push to supervisors failed")

    def state_message(self, agent_id: str) -> dict[str, Any]:
        snap = self.acd.agent_snapshot(agent_id)
        call = snap.get("call")
        return {"type": "state", "agent_id": agent_id, "state": snap["state"], "reason": snap["reason"] or None,
                "since": snap["since"], "endpoint": snap["endpoint"],
                "call_id": call["call_id"] if call else None}

    def call_for_agent(self, agent_id: str) -> LiveCall | None:
        for live in self.calls.values():
            if live.agent_id == agent_id and live.status != "ended":
                return live
        return None

    def call_message(self, live: LiveCall) -> dict[str, Any]:
        return {"type": "call", "call_id": live.queued.call_id, "status": live.status, "since": live.since,
                "consult": dict(live.consult) if live.consult else None, "queue": live.queued.queue,
                "answered_at": live.answered_at, "held_total": live.held_total}

    def _push_call(self, live: LiveCall) -> None:
        if live.agent_id:
            self.push_to_agent(live.agent_id, self.call_message(live))

    def wallboard(self) -> dict[str, Any]:
        now = self.now()
        stats = self.acd.queue_stats(now)
        queues = []
        for name, q in stats.items():
            sl = q.get("service_level")
            ab = q.get("abandon_rate")
            queues.append({"name": name, "waiting": q["waiting"], "longest_wait": q["longest_wait"],
                           # the ACD counts in percent; the console protocol speaks fractions
                           "service_level": None if sl is None else sl / 100.0,
                           "abandon_rate": None if ab is None else ab / 100.0,
                           "agents": q["agents"], "answered": q.get("answered", 0),
                           "abandoned": q.get("abandoned", 0), "ewt": q.get("ewt")})
        agents = []
        for agent_id in self.acd.agent_ids():
            snap = self.acd.agent_snapshot(agent_id)
            call = snap.get("call")
            agents.append({"agent_id": agent_id, "name": snap["name"], "state": snap["state"],
                           "reason": snap["reason"] or None, "since": snap["since"],
                           "call_id": call["call_id"] if call else None, "queues": snap["queues"]})
        if self.recorder is not None:
            self.health.db = not self.recorder.metrics["db_down"]
        return {"type": "wallboard", "ts": now, "queues": queues, "agents": agents, "health": self.health.as_dict()}

    def _wallboard_tick(self) -> None:
        self._wallboard_call = None
        if not self._running:
            return
        watched = getattr(self.pusher, "has_supervisors", None)
        if self.pusher is not None and (watched is None or watched()):
            self.push_to_supervisors(self.wallboard())
        self._wallboard_call = self.clock.callLater(WALLBOARD_INTERVAL, self._wallboard_tick)


def serve(cfg: CtiConfig) -> int:
    """Run the server on the asyncio reactor until interrupted."""
    from cti.runtime import run_server

    return run_server(cfg)
