"""The one place that wires everything for ``cti serve`` (and ``cti demo``).

AMI bytes -> ``AMIClientPool`` -> ``CallTracker`` -> domain events -> ``AcdService`` -> commands ->
``Dispatcher`` (AMI actions, console pushes) and ACD events -> recorder, consoles, wallboard.
FastAGI -> ``ivr`` -> IVR events (kept for the screen pop; callbacks stored). Consoles -> ``ConsoleHub``
-> ``ServerConsoleBackend`` -> ACD requests and AMI call control. Domain, IVR and ACD events ->
``centre.call_log`` -> the record of every call (customer_interactions). Start-up and each PBX's first
resync -> ``centre.agent_restore`` -> agents back in the state they had before a restart.

Time comes from the ``clock`` given (the reactor, a scaled clock for ``demo --speed``, or a virtual
clock in tests); nothing here reads the wall clock itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from acd.events import (
    AcdEvent,
    AcdWarning,
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallOffered,
    CallOverflowed,
    OfferNotAnswered,
    QueueCallFinished,
)
from acd.service import AcdService
from centre.agent_restore import AgentRestorer
from centre.call_log import CallLog, InteractionWrite, InteractionWriter, call_key
from config.schema import CtiConfig
from cti import pbx_check
from cti.ami.client import AMIClientPool, Connector
from cti.ami.message import AMIMessage
from cti.calls import CallTracker
from cti.calls.model import channel_age
from cti.commands import Command, CommandFailed, OfferCall
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
    is_outbound,
)
from cti.dispatch import ActionSender, Dispatcher
from cti.events import (
    AmdResult,
    AmiConnectionChanged,
    CallBridged,
    CallEnded,
    CallQueued,
    CallTransferred,
    ChannelAnswered,
    DialStarted,
    DomainEvent,
)
from dialer.events import DialerEvent
from ivr.events import CallbackRequested, IvrCompleted, IvrEvent, IvrStarted
from ivr.ports import RecentCompletions

log = logging.getLogger("centre.server")

WALLBOARD_INTERVAL = 1.0


@dataclass
class Health:
    """What the wallboard shows about the server's links."""

    ami: dict[str, bool] = field(default_factory=dict)
    ami_detail: dict[str, str] = field(default_factory=dict)
    ami_since: dict[str, float] = field(default_factory=dict)  # when the link last went up or down
    db: bool | None = None
    redis: bool | None = None
    pbx: dict[str, list[str]] = field(default_factory=dict)  # what each PBX lacks (cti.pbx_check)

    def as_dict(self) -> dict[str, Any]:
        return {"ami": dict(self.ami), "ami_detail": dict(self.ami_detail), "ami_since": dict(self.ami_since),
                "db": self.db, "redis": self.redis, "pbx": {k: list(v) for k, v in self.pbx.items()}}


@dataclass
class LiveCall:
    """What the server knows of a queued call beyond the ACD: its CallQueued and the agent leg.

    One LiveCall per time in a queue: a caller who comes back to ``cti-hold`` (a blind transfer to a
    queue, the IVR again) starts a new one, offered afresh with its own pop. ``part`` numbers the
    agents' parts of one call (1 for the first agent who answered it, 2 after a transfer, ...)."""

    queued: CallQueued
    agent_id: str = ""
    agent_channel: str = ""
    status: str = "waiting"  # waiting | ringing | connected | held | consulting | ended
    since: float = 0.0  # when ``status`` began (a hold's start while held)
    pop: dict[str, Any] | None = None
    # While consulting: the number, "ringing" | "talking", and (internal, not pushed) the consultation
    # channel bridged with the agent's leg.
    consult: dict[str, str] | None = None
    answered_at: float | None = None  # the call timer runs from here, through holds
    held_total: float = 0.0  # seconds on hold before the current status
    part: int = 0

    @property
    def interaction_key(self) -> str:
        """The customer_interactions key of this agent's part of the call (the call's own key for the first)."""
        base = call_key(self.queued.server, self.queued.call_id)
        return base if self.part <= 1 else f"{base}/{self.part}"


class HandledCall(NamedTuple):
    """The last call an agent answered: what its disposition refers to (``[1]`` is the call id, as the
    ``(server, call_id)`` pair this was)."""

    server: str
    call_id: str
    interaction_key: str


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
        ami: ActionSender | None = None,
    ) -> None:
        """``ami``: where commands' AMI actions go (default: the AMI connections, ``self.pool``)."""
        self.cfg = cfg
        self.clock = clock
        self.health = Health(ami={s.name: False for s in cfg.asterisk})
        self.tracker = CallTracker()
        self.acd = AcdService(cfg.acd, clock.seconds())
        self.dialer: Any | None = None  # dialer.shell.Dialer when cfg.dialer has campaigns
        if cfg.dialer.campaigns:
            from dialer.shell import Dialer, IdleAgents

            self.dialer = Dialer(cfg.dialer, servers=[s.name for s in cfg.asterisk],
                                 dial_template=cfg.pbx.external_dial, idle_agents=IdleAgents(self.acd),
                                 sink=self.apply, clock=clock.seconds)
        self._dialer_call: IDelayedCall | None = None
        self.ivr_sessions = RecentCompletions(forward=self._on_ivr_forward)
        self.call_log = CallLog()
        self.restorer = AgentRestorer(self)
        self.interactions: InteractionWriter | None = None
        self.calls: dict[tuple[str, str], LiveCall] = {}
        self.callbacks: list[CallbackRequested] = []
        self.last_call: dict[str, HandledCall] = {}  # agent -> the last call answered (for its disposition)
        self._parts: dict[tuple[str, str], int] = {}  # (server, call_id) -> agents' parts answered so far
        # agent -> the last pop it was sent (as "type": "pop"), kept while the agent is reserved, on the call
        # or in its wrap-up, so that a console that resumes (reload, network drop) shows it again.
        self.agent_pops: dict[str, dict[str, Any]] = {}
        self.counters = {"ami_messages": 0, "domain_events": 0, "commands": 0, "acd_events": 0, "failed": 0}
        self.pusher = pusher
        self.pool = AMIClientPool(
            cfg.asterisk, clock=clock, connector=ami_connector,
            on_message=self._on_ami_message, on_connection=self._on_ami_connection,
        )
        self.dispatcher = Dispatcher(self.pool if ami is None else ami, self, on_failed=self._on_command_failed,
                                     on_offer=self._on_offer)
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
        self._pbx_needs = pbx_check.shipped_needs()

    # ------------------------------------------------------------------ lifecycle
    def open_database(self, run_in_thread: Any) -> None:
        """Migrate the database and open the recorder and the customer store (leaves the loop for I/O)."""
        from acd.recorder import Recorder
        from centre.database import upgrade
        from cti.db import make_engine
        from dialer.store import CallbackStore
        from screenpop.lookup import PopLookup
        from screenpop.store import CustomerStore

        url = self.cfg.database.url
        self.schema = upgrade(url)  # (revision before, after): the runtime's start-up line says what changed
        self.recorder = Recorder(url)
        engine = make_engine(url, echo=self.cfg.database.echo)
        self.store = CustomerStore(engine)
        self.callback_store = CallbackStore(engine)
        self._run_in_thread = run_in_thread
        self.pop_lookup = PopLookup.from_settings(self.store, run_in_thread, self.clock, self.cfg.screenpop)
        self.interactions = InteractionWriter(self.pop_lookup)
        self.restorer.load(engine)
        if self.dialer is not None:
            from dialer.store import LeadStore

            self.dialer.open_store(LeadStore(engine), run_in_thread, self.now())
        self.health.db = True

    def start(self) -> None:
        self._running = True
        if self.recorder is None:
            self.restorer.without_database()  # agents on calls are still restored from the PBX
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
        if was != connected or server not in self.health.ami_since:
            self.health.ami_since[server] = now  # the wallboard says "DOWN for 5 min: <detail>"
        if connected:
            log.info("%s: connected (%s)", server, detail)
            self.pool.send(server, "CoreShowChannels").addCallbacks(
                lambda result: self._resync(server, result.events),
                lambda failure: log.warning("%s: resync failed: %s", server, failure.getErrorMessage()),
            )
            self._check_pbx(server)
        else:
            if was:
                log.warning("%s: AMI connection lost (%s)", server, detail)
            for event in self.tracker.connection_lost(server, now):
                self.publish(event)
        self.publish(AmiConnectionChanged(server=server, ts=now, connected=connected, detail=detail))

    def _check_pbx(self, server: str) -> None:
        """Ask the PBX what it has (applications, functions, sounds, music classes) and report what the
        shipped dialplan and the flows need but it lacks: logged when it changes, shown on the wallboard."""
        keys = list(pbx_check.COMMANDS)
        asked = [self.pool.send(server, "Command", {"Command": pbx_check.COMMANDS[k]}) for k in keys]

        def got(results: list[tuple[bool, Any]]) -> None:
            outputs = {k: (r.response.getall("Output") if ok else None)
                       for k, (ok, r) in zip(keys, results, strict=True)}
            problems = pbx_check.check(outputs, self._pbx_needs, self._prompt_uses()).problems()
            if problems != self.health.pbx.get(server, []):
                if problems:
                    log.error("%s: the PBX lacks what the shipped dialplan or the flows need:\n  %s", server,
                              "\n  ".join(problems))
                else:
                    log.info("%s: the PBX has every application, function and prompt the server needs", server)
            self.health.pbx[server] = problems

        defer.DeferredList(asked, consumeErrors=True).addCallback(got)

    def _prompt_uses(self) -> dict[str, list[str]]:
        """Every sound the PBX will be asked to play -> where it is used (flows' nodes, campaigns)."""
        uses = {p: [f"flow {f} node {n}" for f, n in where] for p, where in self.cfg.ivr.prompt_uses().items()}
        for c in self.cfg.dialer.campaigns:
            for what, sound in (("safe-harbour message", c.safe_harbour_message),
                                ("machine message", c.machine_message)):
                if sound:
                    uses.setdefault(str(sound), []).append(f"campaign {c.name} {what}")
        uses.setdefault("vm-goodbye", []).append("[cti-safe-harbour] default message")
        return uses

    def _resync(self, server: str, items: list[AMIMessage]) -> None:
        channels = [m for m in items if m.get("Event") == "CoreShowChannel"]
        for event in self.tracker.resync(server, channels, self.now()):
            self.publish(event)
        for item in channels:
            if item.get("Context") in HOLD_CONTEXTS and (server, item.get("Uniqueid", "")) not in self.calls:
                self._requeue_holding(server, item)
        self.restorer.resynced(server, channels)

    def _requeue_holding(self, server: str, item: AMIMessage) -> None:
        """A caller already waiting in ``cti-hold`` that we do not know (the server restarted, or the
        CTIQueued UserEvent fell in an AMI outage): read its routing variables and queue it again, with
        its time on the channel as its wait so far, so that nobody is left holding forever."""
        channel, uniqueid = item.get("Channel", ""), item.get("Uniqueid", "")
        if not channel or not uniqueid:
            return
        names = (CTI_QUEUE, CTI_SKILLS, CTI_PRIORITY, CTI_LANGUAGE, CTI_DNIS, CTI_CAMPAIGN, CTI_LEAD_ID,
                 CTI_LEAD_NUMBER)

        def got(values: dict[str, str]) -> None:
            if (server, uniqueid) in self.calls:
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

        self.pool.getvars(server, channel, names).addCallbacks(
            got, lambda f: log.warning("%s: could not read the routing variables of holding caller %s: %s",
                                       server, uniqueid, f.getErrorMessage()))

    # ------------------------------------------------------------------ events
    def publish(self, event: DomainEvent | object) -> None:
        """Route one domain event to the engines and apply what they ask for."""
        self.counters["domain_events"] += 1
        now = self.now()
        prefetch: LiveCall | None = None
        if isinstance(event, CallQueued) and is_outbound(event.data):
            number = self._customer_number(event.server, event.uniqueid, event.data)
            if number:  # an outbound call's caller ID is the campaign's: the customer is the number dialled
                event = replace(event, caller_num=number)
        if isinstance(event, CallQueued | CallEnded):
            self._log(self.call_log.handle(event, event.caller_num if isinstance(event, CallQueued) else ""))
        elif isinstance(event, AmdResult):
            data = {CTI_CAMPAIGN: event.campaign, CTI_LEAD_ID: event.lead_id,
                    **self.tracker.variables(event.server, event.uniqueid)}
            self._log(self.call_log.handle(event, self._customer_number(event.server, event.uniqueid, data)))
        if isinstance(event, CallQueued):
            key = (event.server, event.uniqueid)
            live = self.calls.get(key)
            if live is not None and live.status == "waiting" and live.queued.queue == event.queue:
                live.queued = event  # the same queueing told twice
            else:
                if live is not None:
                    self._end_part(live)  # the caller is back in a queue: what an agent had of it is over
                prefetch = self.calls[key] = LiveCall(queued=event, since=now)
        elif isinstance(event, DialStarted):
            live = self.calls.get((event.server, event.uniqueid))
            if live is not None:
                live.agent_channel = event.dest_channel
        elif isinstance(event, CallBridged):
            self._consultation_bridged(event)
        elif isinstance(event, ChannelAnswered):
            self._consultation_answered(event)
        elif isinstance(event, CallTransferred) and event.result.lower() == "success":
            # An attended transfer completed (from the console or the phone's own keys): the caller went on
            # to someone outside the queue, which is how this call ends for the contact centre.
            for live in self.calls.values():
                if live.queued.server == event.server and event.transferee_channel == live.queued.channel:
                    self.call_log.transferred(live.queued.server, live.queued.call_id)
                    break
        elif isinstance(event, CallEnded) and not event.merged_into:
            self._parts.pop((event.server, event.call_id), None)
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
        with another channel, that is the consultation call, which Asterisk bridges while the target
        still rings (the target talks when that channel is answered: ``_consultation_answered``)."""
        for live in self.calls.values():
            if live.status != "consulting" or live.queued.server != event.server \
                    or live.agent_channel not in event.channels:
                continue
            if live.queued.channel in event.channels:
                live.status, live.consult, live.since = "connected", None, event.ts
                self._push_call(live)
            elif live.consult is not None:
                other = next((c for c in event.channels if c != live.agent_channel), "")
                chan = self.tracker.find_channel_by_name(event.server, other)
                answered = chan is not None and chan.state == 6  # already Up (ChannelState 6)
                live.consult = dict(live.consult, channel=other, state="talking" if answered else "ringing")
                if answered:
                    self._push_call(live)
            return

    def _consultation_answered(self, event: ChannelAnswered) -> None:
        """The consultation call was answered: the target is talking to the agent."""
        for live in self.calls.values():
            if live.status == "consulting" and live.consult is not None and live.queued.server == event.server \
                    and live.consult.get("channel") == event.channel:
                live.consult = dict(live.consult, state="talking")
                self._push_call(live)
                return

    def _customer_number(self, server: str, uniqueid: str, data: dict[str, str]) -> str:
        """The number an outbound call dialled: the dialer's channel variable, else the lead's phone."""
        number = data.get(CTI_LEAD_NUMBER) or self.tracker.variables(server, uniqueid).get(CTI_LEAD_NUMBER)
        if not number and self.dialer is not None and data.get(CTI_CAMPAIGN):
            number = self.dialer.lead_fields(data[CTI_CAMPAIGN], data.get(CTI_LEAD_ID, "")).get("phone", "")
        return number or ""

    def _log(self, writes: list[InteractionWrite]) -> None:
        if self.interactions is not None:
            for w in writes:
                self.interactions.write(w)

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
        if isinstance(event, CallAnswered | CallAbandoned | CallOverflowed):
            self._log(self.call_log.handle(event))
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
                parts = (event.server, live.queued.call_id)
                live.part = self._parts[parts] = self._parts.get(parts, 0) + 1
                self.last_call[event.agent_id] = HandledCall(event.server, live.queued.call_id, live.interaction_key)
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
            # One time in a queue is over. The LiveCall goes with it unless the caller is in a queue
            # again already (a transfer to a queue, an overflow): that is a new time, with its own LiveCall.
            key = (event.server, event.uniqueid)
            live = self.calls.get(key)
            if live is None:
                pass
            elif event.agent_id and live.agent_id == event.agent_id and live.status != "ringing":
                self._end_part(live)
                self.calls.pop(key, None)
                if live.part > 1 and event.answered_at is not None:  # a later part ends with its talk
                    self._log([InteractionWrite(live.interaction_key, {"ended_at": event.answered_at + event.talk})])
            elif not self.acd.tracks(event.server, event.uniqueid):
                self.calls.pop(key, None)
        elif isinstance(event, CallOffered):
            live = self.calls.get((event.server, event.uniqueid))
            if live is not None:
                live.agent_id, live.status, live.since = event.agent_id, "ringing", event.ts

    def adopt_call(self, live: LiveCall) -> None:
        """A call found with an agent after a restart (``centre.agent_restore``): tracked as if this server had
        offered it, with its record open and, once answered, the agent's disposition of it."""
        q = live.queued
        self.calls[(q.server, q.uniqueid)] = live
        outbound = is_outbound(q.data)
        self._log(self.call_log.adopted(q.server, q.call_id, q.ts, "outbound" if outbound else "inbound",
                                        {"ani": q.caller_num, "dnis": q.dnis, "queue": q.queue},
                                        "queued" if live.status == "ringing" else "answered"))
        if live.status != "ringing":
            parts = (q.server, q.call_id)
            live.part = self._parts[parts] = max(1, self._parts.get(parts, 0))
            self.last_call[live.agent_id] = HandledCall(q.server, q.call_id, live.interaction_key)
        self._push_call(live)
        self._pop(live)  # the reconnecting console gets the caller's pop again (without the IVR path, lost)

    def _end_part(self, live: LiveCall) -> None:
        """The agent's console sees its call end (once)."""
        if live.agent_id and live.status != "ended":
            live.status = "ended"
            self._push_call(live)

    def _prefetch(self, event: CallQueued) -> None:
        """Warm the look-up cache while the caller waits, so the pop at offer time is complete at once."""
        if self.pop_lookup is None:
            return
        from screenpop.context import pop_context

        ctx = pop_context(event, agent_id="", now=self.now(), ivr=self.ivr_sessions.get(event.uniqueid))
        self.pop_lookup.resolve(ctx).addErrback(lambda f: log.debug("prefetch failed: %s", f.getErrorMessage()))

    def _record_interaction(self, live: LiveCall, event: CallAnswered) -> None:
        """The agent's part of the call becomes an interaction of the customer (the disposition completes
        it). The first part is the call's own row (``centre.call_log``), which keeps the call's start."""
        q = live.queued
        customer = (live.pop or {}).get("customer") or {}
        outbound = is_outbound(q.data)
        started = self.call_log.started(q.server, q.call_id) if live.part <= 1 else None
        fields = {"direction": "outbound" if outbound else "inbound", "customer_id": customer.get("customer_id"),
                  "ani": q.caller_num, "dnis": q.dnis, "queue": q.queue, "campaign": q.data.get(CTI_CAMPAIGN, ""),
                  "lead_id": q.data.get(CTI_LEAD_ID, ""), "agent_id": event.agent_id, "outcome": "answered"}
        self._log([InteractionWrite(live.interaction_key, {k: v for k, v in fields.items() if v},
                                    started_at=started if started is not None else q.ts)])

    def _on_offer(self, cmd: OfferCall) -> None:
        """Compose and push the screen pop as the offer goes out (never waits for the store)."""
        live = self.calls.get((cmd.server, cmd.uniqueid))
        if live is None:
            return
        live.agent_id, live.status, live.since = cmd.agent_id, "ringing", self.now()
        self._push_call(live)
        self._pop(live)

    def _pop(self, live: LiveCall) -> None:
        """Look up and push the screen pop of ``live`` to its agent."""
        if self.pop_lookup is None:
            return
        from screenpop.context import pop_context

        q, agent_id = live.queued, live.agent_id
        lead = self.dialer.lead_fields(q.data.get(CTI_CAMPAIGN, ""), q.data.get(CTI_LEAD_ID, "")) \
            if self.dialer is not None and q.data.get(CTI_CAMPAIGN) else None
        ctx = pop_context(q, agent_id=agent_id, now=self.now(), ivr=self.ivr_sessions.get(q.uniqueid), lead=lead,
                          flows=self.cfg.ivr.flows)

        def send(message: dict[str, Any]) -> None:
            if live.agent_id != agent_id:
                return  # the offer is over; a late look-up must not pop a stale call
            live.pop = self.agent_pops[agent_id] = dict(message, type="pop")  # an update is the whole pop
            self.push_to_agent(agent_id, message)

        self.pop_lookup.pop(ctx, send)

    # ------------------------------------------------------------------ IVR events
    def ivr_sink(self, event: IvrEvent) -> None:
        self.ivr_sessions(event)

    def _on_ivr_forward(self, event: IvrEvent) -> None:
        for listener in self._listeners:
            listener(event)
        if isinstance(event, IvrStarted):
            server, call_id = self._ivr_call(event)
            self._log(self.call_log.ivr_started(server, call_id, event.ts, event.ani, event.dnis))
        elif isinstance(event, IvrCompleted):
            self._log(self.call_log.ivr_completed(*self._ivr_call(event), event.outcome))
        if isinstance(event, CallbackRequested):
            self.callbacks.append(event)
            due = event.when if event.when is not None else event.ts
            self.schedule_callback(number=event.number, due=due, queue=event.queue, call_id=event.uniqueid,
                                   source="ivr").addErrback(
                lambda f: log.error("IVR callback for call %s not stored: %s", event.uniqueid, f.getErrorMessage()))

    def _ivr_call(self, event: IvrEvent) -> tuple[str, str]:
        """The (server, call id) of an IVR session's channel. FastAGI names the PBX by its address when
        it is not configured by name: then every PBX's channels are searched for the uniqueid."""
        named = event.server in self.health.ami
        for server in [event.server] if named else list(self.health.ami):
            channel = self.tracker.channel(server, event.uniqueid)
            if channel is not None:
                return server, channel.linkedid or event.uniqueid
        fallback = self.cfg.asterisk[0].name if self.cfg.asterisk else event.server
        return (event.server if named else fallback), event.uniqueid  # a trunk channel's call is its own id

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
        return {"type": "state", "agent_id": agent_id, "state": snap.state.value, "reason": snap.reason or None,
                "since": snap.since, "endpoint": snap.endpoint,
                "call_id": snap.call.call_id if snap.call else None}

    def call_for_agent(self, agent_id: str) -> LiveCall | None:
        for live in self.calls.values():
            if live.agent_id == agent_id and live.status != "ended":
                return live
        return None

    def call_message(self, live: LiveCall) -> dict[str, Any]:
        return {"type": "call", "call_id": live.queued.call_id, "status": live.status, "since": live.since,
                "consult": {k: v for k, v in live.consult.items() if k != "channel"} if live.consult else None,
                "queue": live.queued.queue,
                "answered_at": live.answered_at, "held_total": live.held_total}

    def _push_call(self, live: LiveCall) -> None:
        if live.agent_id:
            self.push_to_agent(live.agent_id, self.call_message(live))

    def wallboard(self) -> dict[str, Any]:
        now = self.now()
        stats = self.acd.queue_stats(now)
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
        for agent_id in self.acd.agent_ids():
            snap = self.acd.agent_snapshot(agent_id)
            agents.append({"agent_id": agent_id, "name": snap.name, "state": snap.state.value,
                           "reason": snap.reason or None, "since": snap.since,
                           "call_id": snap.call.call_id if snap.call else None, "queues": list(snap.queues)})
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
    from centre.process import run_server

    return run_server(cfg)
