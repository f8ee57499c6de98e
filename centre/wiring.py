"""The one wiring module: builds the server's components and the bus between them, opens the database.

``build_components`` makes the call tracker, the engines (ACD, dialer, sessions, pops, call log, IVR
session table, callbacks, consoles' agent feed, recorder feed), the AMI pool, the dispatcher, the AMI
links, the node's leases (``centre.node_leases``: which PBXs and campaigns this process holds; the server
ticks them) and the ``cti.bus.EventBus`` they meet on, in the order engines hear each event:

    IVR completions, call log, sessions, ACD, recordings, dialer, pops, callbacks, agent feed, console relay
    (several nodes), recorder, interactions, statistics (``kpi``: it counts what the others did)

(the call log and the sessions see a call before the ACD decides on it; the pops after, so that a
caller offered at once is not looked up twice). ``open_database`` migrates the schema and gives the
recorder, the stores and the pop look-up to the engines that use them. The process's event flow that
drives all this is ``centre.server.CtiServer`` (the ``Process`` here).

Also the screen-pop shell for ``cti serve`` and ``cti demo`` (engine, store, thread pool, PopLookup):
the one place in screenpop's use that creates threads and registers reactor triggers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads, IReactorTime
from twisted.python.threadpool import ThreadPool

from acd.recorder import Recorder
from acd.service import AcdService
from acd.shared_state import SharedState
from acd.snapshots import QueueStats
from acd.states import AgentState
from centre.agent_feed import AgentFeed, RecorderFeed
from centre.call_log import CallLog, InteractionWriter
from centre.call_log_feed import CallLogFeed, InteractionSink
from centre.call_sessions import CallSessions
from centre.callbacks import Callbacks
from centre.console_relay import ConsoleRelay
from centre.database import upgrade
from centre.demo_leads import demo_leads
from centre.event_counts import EventCounts
from centre.kpi_restore import recorded_events
from centre.node_bus import node_transport, shared_of
from centre.node_leases import NodeLeases
from centre.pbx_links import PbxLinks
from centre.pops import ScreenPops
from centre.previews import PreviewHolds
from centre.recording import Recordings
from centre.redis_bus import StreamsTransport
from config.schema import CtiConfig
from cti.ami.client import AMIClientPool, Connector
from cti.ami.message import AMIMessage
from cti.bus import EventBus
from cti.calls import CallTracker
from cti.commands import Command, CommandFailed
from cti.contract import CTI_CAMPAIGN, CTI_LEAD_ID, CTI_LEAD_NUMBER
from cti.db import make_engine
from cti.dispatch import ActionSender, Dispatcher
from cti.threads import ThreadRunner, thread_runner
from dialer.pacer import AgentOutlook
from dialer.settings import CampaignSettings
from dialer.shell import Dialer
from dialer.store import CallbackStore, LeadStore
from ivr.events import IvrEvent
from ivr.ports import RecentCompletions
from kpi.core import KpiCore
from kpi.engine import KpiEngine, OtherNodes
from kpi.rebuild import since as rebuild_since
from kpi.settings import AbandonsInServiceLevel, KpiSettings, Target
from screenpop.demo_data import seed_store
from screenpop.lookup import PopLookup
from screenpop.settings import ScreenpopSection
from screenpop.store import CustomerStore

CHANNEL_UP = 6  # AMI ChannelState of an answered channel
ARRIVALS_RISK = 0.1  # blending: the callers expected while a call rings take more than the reserve this rarely
AMD_SECONDS = 2.0  # from an answer to AMD's verdict, until measured (as the dialer's priors assume)
MIN_CONNECTS = 10  # people measured before their mean dial-to-person time replaces the prior


class Process(Protocol):
    """What the components call back into: the process's event flow (``centre.server.CtiServer``)."""

    def now(self) -> float: ...

    def publish(self, event: object) -> None: ...

    def apply(self, outputs: Sequence[object]) -> None: ...

    def on_ami_message(self, server: str, msg: AMIMessage) -> None: ...

    def on_command_failed(self, failed: CommandFailed) -> None: ...

    def resynced(self, server: str, channels: list[AMIMessage]) -> None: ...

    def push_to_agent(self, agent_id: str, message: dict[str, Any]) -> None: ...

    def push_to_supervisors(self, message: dict[str, Any]) -> None: ...

    def has_consoles(self) -> bool: ...

    def deliver_relayed(self, agent_id: str, message: dict[str, Any]) -> bool: ...


class IdleAgents:
    """Counts the ready agents who may take a campaign queue's call at once (the queue's own skills, before
    any expansion: a person waits 2 seconds, not the expansion steps' minutes). The dialer's
    ``idle_agents``: a read of the ACD, so that the dialer needs no ACD of its own."""

    def __init__(self, acd: AcdService) -> None:
        self.acd = acd
        self._eligible = {q.name: acd.eligible_agents(q.name) for q in acd.section.queues}

    def __call__(self, queue: str) -> int:
        return len(self.ready(queue))

    def ready(self, queue: str) -> list[str]:
        """The ready agents who may take the queue's call at once (preview mode pops leads to them)."""
        ready = []
        for agent_id in self._eligible.get(queue, ()):
            snap = self.acd.agent_snapshot(agent_id)
            if snap.state == "ready" and snap.available:
                ready.append(agent_id)
        return ready


class AgentOutlooks:
    """The dialer's ``outlook(queue, now)``: a campaign queue's agents as outbound may count them, read from
    the ACD's public reads (``eligible_agents`` at the queue's own skills, ``agent_snapshot``, ``queue_stats``).

    Ready agents; the age of each busy agent's call (an agent whose phone rings: age 0) and wrap-up, from
    the snapshot's ``since``. Inbound callers already waiting for these agents (in the other queues they
    serve, and in the campaign queue itself: the campaign subtracts its own people) take them first, so
    each holds one agent back. Blending (``blend_threshold`` of the queue's campaign): inbound comes first
    while its service level is at risk (callers waiting in a queue those agents serve, or a queue's
    service level under its target): then outbound may use only the free agents beyond the threshold
    (a threshold rule in the spirit of Bhulai and Koole 2003).

    Callers who have not arrived yet take these agents too: one arriving while a campaign's call rings takes
    the free agent the pacer dialled for, and the person who answers finds none (abandoned). So the reserve
    also holds the agents that the callers expected within the pacer's horizon (the mean dial-to-person time
    and the safe-harbour seconds: the agents it counts on) take, from each queue's measured arrival rate
    (``QueueStats.arrival_rate``): ``callers_reserve``, exceeded with probability under ``ARRIVALS_RISK``.
    For the campaign queue's own callers and those of every queue its agents serve, with or without
    blending: a queue that takes no callers reserves nothing."""

    def __init__(self, acd: AcdService, campaigns: Sequence[CampaignSettings],
                 connect: Callable[[str], float | None] | None = None) -> None:
        self.acd = acd
        #: mean seconds from dial to a person of the queue's campaigns (None: not measured yet): the horizon
        #: of the callers' forecast (``centre.wiring.ConnectTimes``; the campaigns' priors until then)
        self.connect = connect
        self._connect: dict[str, float] = {}  # the campaigns' prior dial-to-person seconds
        self._harbour: dict[str, float] = {}
        for c in campaigns:
            prior = c.predictive.prior_answer_time + AMD_SECONDS
            self._connect[c.queue] = max(self._connect.get(c.queue, 0.0), prior)
            self._harbour[c.queue] = max(self._harbour.get(c.queue, 0.0), c.safe_harbour_after)
        queues = [q.name for q in acd.section.queues]
        self._eligible = {q: acd.eligible_agents(q) for q in queues}
        outbound = {c.queue for c in campaigns}
        self._threshold: dict[str, int] = {}
        for c in campaigns:
            if c.blend_threshold is not None:
                self._threshold[c.queue] = max(self._threshold.get(c.queue, 0), c.blend_threshold)
        # per campaign queue: the other (inbound) queues its agents also serve
        self._inbound: dict[str, tuple[str, ...]] = {}
        # per campaign queue: every queue whose callers may take its agents (its own callers too), with the
        # agents of that queue who are not the campaign's (a caller takes one of them first, if one is free)
        self._takers: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {}
        for q in outbound:
            mine = set(self._eligible.get(q, ()))
            self._inbound[q] = tuple(p for p in queues if p not in outbound and mine & set(self._eligible[p]))
            self._takers[q] = tuple((p, tuple(a for a in self._eligible[p] if a not in mine))
                                    for p in (q, *self._inbound[q]))

    def __call__(self, queue: str, now: float) -> AgentOutlook:
        ready = 0
        talk: list[float] = []
        wrap: list[float] = []
        agents = self._eligible.get(queue, ())
        for agent_id in agents:
            snap = self.acd.agent_snapshot(agent_id)
            if snap.state == AgentState.READY:
                ready += 1 if snap.available else 0
            elif snap.state == AgentState.RESERVED:
                talk.append(0.0)
            elif snap.state == AgentState.ON_CALL:
                talk.append(max(0.0, now - snap.since))
            elif snap.state == AgentState.WRAP_UP:
                wrap.append(max(0.0, now - snap.since))
        if queue not in self._inbound:  # not a campaign queue
            return AgentOutlook(ready=ready, talk_ages=tuple(talk), wrap_ages=tuple(wrap))
        stats = self.acd.queue_stats(now)
        inbound = self._inbound[queue]
        waiting = sum(stats[p].waiting for p in inbound)
        own = stats[queue].waiting if queue in stats else 0
        threshold = self._threshold.get(queue)
        reserve = waiting + self._callers_reserve(queue, stats)
        if threshold is not None:
            at_risk = waiting > 0 or any(
                stats[p].service_level is not None and stats[p].service_level < stats[p].service_level_target.percent
                for p in inbound)
            reserve += threshold if at_risk else 0
        return AgentOutlook(ready=ready, talk_ages=tuple(talk), wrap_ages=tuple(wrap), reserve=reserve,
                            blended=len(agents) if threshold is not None else 0, queue_waiting=own)

    def _callers_reserve(self, queue: str, stats: Mapping[str, QueueStats]) -> int:
        """Agents to leave for the callers expected within the pacer's horizon, the time from dial to a person
        and the safe-harbour seconds (see ``callers_reserve``)."""
        measured = self.connect(queue) if self.connect is not None else None
        horizon = (measured if measured is not None else self._connect[queue]) + self._harbour[queue]
        expected = []
        for q, others in self._takers[queue]:
            rate = stats[q].arrival_rate
            if rate:
                expected.append((rate * horizon, sum(1 for a in others if self._free(a))))
        return callers_reserve(expected, ARRIVALS_RISK)

    def _free(self, agent_id: str) -> bool:
        snap = self.acd.agent_snapshot(agent_id)
        return snap.state == AgentState.READY and snap.available


def callers_reserve(expected: Sequence[tuple[float, int]], risk: float) -> int:
    """The fewest agents that the callers arriving within the horizon take more of only with probability
    under ``risk``. ``expected``: per queue, (callers expected to arrive, its other agents free now): its
    callers arrive as a Poisson stream and the first ``free`` of them take those other agents; the rest
    take the campaign's. The agents taken are counted as Poisson with the mean of the sum."""
    mean = 0.0
    for lam, free in expected:
        # E[(N - free)+] for N ~ Poisson(lam) = lam - free + sum_{n < free} (free - n) P(N = n)
        p, below = math.exp(-lam), 0.0
        for n in range(free):
            below += (free - n) * p
            p *= lam / (n + 1)
        mean += max(0.0, lam - free + below)
    if mean <= 0.0:
        return 0
    reserve, p = 0, math.exp(-mean)
    tail = 1.0 - p  # P(more than ``reserve`` taken)
    while tail > risk:
        reserve += 1
        p *= mean / reserve
        tail -= p
    return reserve


class ConnectTimes:
    """The mean seconds from dial to a person of a campaign queue's campaigns, as they measured them (None
    until ``MIN_CONNECTS`` people are): the horizon of ``AgentOutlooks``' forecast of callers."""

    def __init__(self, dialer: Dialer) -> None:
        self.dialer = dialer

    def __call__(self, queue: str) -> float | None:
        times = [t for c in self.dialer.campaigns.values() if c.settings.queue == queue for t in c.measures.connect]
        return sum(times) / len(times) if len(times) >= MIN_CONNECTS else None


class CustomerNumbers:
    """The number an outbound call dialled: the dialer's channel variable, else the lead's phone."""

    def __init__(self, tracker: CallTracker, dialer: Dialer | None) -> None:
        self.tracker = tracker
        self.dialer = dialer

    def __call__(self, server: str, uniqueid: str, data: dict[str, str]) -> str:
        number = data.get(CTI_LEAD_NUMBER) or self.tracker.variables(server, uniqueid).get(CTI_LEAD_NUMBER)
        if not number and self.dialer is not None and data.get(CTI_CAMPAIGN):
            number = self.dialer.lead_fields(data[CTI_CAMPAIGN], data.get(CTI_LEAD_ID, "")).get("phone", "")
        return number or ""


class IvrCalls:
    """The (server, call id) of an IVR session's channel. FastAGI names the PBX by its address when it is
    not configured by name: then every PBX's channels are searched for the uniqueid."""

    def __init__(self, cfg: CtiConfig, tracker: CallTracker) -> None:
        self.names = [s.name for s in cfg.asterisk]
        self.tracker = tracker

    def __call__(self, event: IvrEvent) -> tuple[str, str]:
        named = event.server in self.names
        for server in [event.server] if named else self.names:
            channel = self.tracker.channel(server, event.uniqueid)
            if channel is not None:
                return server, channel.linkedid or event.uniqueid
        fallback = self.names[0] if self.names else event.server
        return (event.server if named else fallback), event.uniqueid  # a trunk channel's call is its own id


@dataclass
class Components:
    """Everything a server runs, built once per configuration."""

    tracker: CallTracker
    acd: AcdService
    dialer: Dialer | None
    ivr_sessions: RecentCompletions
    call_log: CallLog
    sessions: CallSessions
    pops: ScreenPops
    callbacks: Callbacks
    interactions: InteractionSink
    recorder_feed: RecorderFeed
    pool: AMIClientPool
    dispatcher: Dispatcher
    links: PbxLinks
    bus: EventBus
    customer_number: CustomerNumbers
    agent_feed: AgentFeed
    event_counts: EventCounts | None = None  # what ``centre.metrics`` exports as counters
    kpi: KpiEngine | None = None
    recordings: Recordings | None = None  # call recording (``centre.recording``)
    leases: NodeLeases | None = None  # this node's leases: its PBX connections and campaigns (``centre.node_leases``)
    # several nodes (a ``redis:`` section; ``centre.node_bus``): the bus's transport and the consoles' relay
    transport: StreamsTransport | None = None
    relay: ConsoleRelay | None = None


def kpi_engine(cfg: CtiConfig, acd: AcdService) -> KpiEngine:
    """The statistics engine of a configuration (``kpi_settings``), its queues, agents and campaigns."""
    return KpiEngine(KpiCore(kpi_settings(cfg, acd), queues=[q.name for q in cfg.acd.queues],
                             agents=[a.id for a in cfg.acd.agents], campaigns=[c.name for c in cfg.dialer.campaigns]))


def kpi_settings(cfg: CtiConfig, acd: AcdService) -> KpiSettings:
    """What the statistics (live and reports) are computed against: the ``statistics:`` section, the
    centre's time zone, the queues' service-level targets, their agents (``eligible_agents`` at the queue's
    own skills), the teams."""
    teams: dict[str, list[str]] = {}
    for a in cfg.acd.agents:
        for team in a.teams:
            teams.setdefault(team, []).append(a.id)
    st = cfg.statistics
    settings = KpiSettings(
        timezone=cfg.acd.timezone, interval=st.interval_minutes * 60.0, short_abandon=st.short_abandon,
        abandons=AbandonsInServiceLevel(st.service_level_abandons),
        not_ready_limits={r: m * 60.0 for r, m in st.not_ready_limits.items()},
        targets={q.name: Target(q.service_level.percent, q.service_level.seconds) for q in cfg.acd.queues},
        members={q.name: acd.eligible_agents(q.name) for q in cfg.acd.queues},
        teams={t: tuple(ids) for t, ids in teams.items()})
    return settings


def agent_pool(cfg: CtiConfig) -> SharedState | None:
    """The agent pool this node shares with the others (``redis:``: Redis, claims in Lua), or None: the ACD's
    embedded pool (``acd.shared_state.MemoryState``), the same code path for one node alone."""
    if cfg.redis is None:
        return None
    from centre.redis_link import redis_sync_client
    from centre.redis_state import RedisState

    return RedisState(redis_sync_client(cfg.redis), cfg.redis.prefix)


def build_components(cfg: CtiConfig, *, clock: IReactorTime, process: Process,
                     ami_connector: Connector | None = None, ami: ActionSender | None = None) -> Components:
    """The components of one server, wired to ``process`` and to each other through the bus. With a ``redis:``
    section the bus is shared with the other nodes (``centre.node_bus``; ``node.id``: this node's id there): its
    transport is started and stopped by the process (``centre.process``)."""
    tracker = CallTracker()
    acd = AcdService(cfg.acd, clock.seconds(), node=cfg.node.id, shared=agent_pool(cfg), claim_ttl=cfg.node.lease_ttl)
    idle = IdleAgents(acd)
    outlooks = AgentOutlooks(acd, cfg.dialer.campaigns)
    dialer = Dialer(cfg.dialer, servers=[s.name for s in cfg.asterisk], dial_template=cfg.pbx.external_dial,
                    idle_agents=idle, outlook=outlooks, sink=process.apply,
                    clock=clock.seconds, demo_leads=demo_leads, ready_agents=idle.ready) \
        if cfg.dialer.campaigns else None
    if dialer is not None:
        outlooks.connect = ConnectTimes(dialer)
    ivr_sessions = RecentCompletions()
    call_log = CallLog()

    def channel_up(server: str, name: str) -> bool:
        channel = tracker.find_channel_by_name(server, name)
        return channel is not None and channel.state == CHANNEL_UP

    sessions = CallSessions(started=call_log.started, channel_up=channel_up, tracks=acd.tracks)
    recordings = Recordings(
        cfg.recording, queue_policies={q.name: q.recording for q in cfg.acd.queues if q.recording},
        campaign_policies={c.name: c.recording for c in cfg.dialer.campaigns if c.recording},
        session_of=sessions.get, channel_up=lambda server, name: tracker.find_channel_by_name(server, name) is not None)
    pops = ScreenPops(sessions, ivr=ivr_sessions, lead_fields=dialer.lead_fields if dialer is not None else None,
                      flows=cfg.ivr.flows, push=process.push_to_agent)
    customer_number = CustomerNumbers(tracker, dialer)
    log_feed = CallLogFeed(call_log, customer_number=customer_number, variables=tracker.variables,
                           ivr_call=IvrCalls(cfg, tracker))
    callbacks = Callbacks(lead_of_call=dialer.lead_of_call if dialer is not None else None)
    interactions = InteractionSink()
    recorder_feed = RecorderFeed()
    # the pool and the links need each other: ``links`` is bound below, before any connection is made
    pool = AMIClientPool(cfg.asterisk, clock=clock, connector=ami_connector, on_message=process.on_ami_message,
                         on_connection=lambda server, up, detail: links.connection_changed(server, up, detail))
    links = PbxLinks(cfg, pool=pool, tracker=tracker, sessions=sessions, publish=process.publish,
                     resynced=process.resynced, now=process.now)
    # ``ami``: another way out for the AMI actions (a test's recording sender); the pool by default
    dispatcher = Dispatcher(ami if ami is not None else pool, process, on_failed=process.on_command_failed)

    def dispatch(command: Command) -> None:
        dispatcher.apply(command)  # looked up each time: tests and benches wrap the dispatcher's apply

    # several nodes: the shared events go to the others through Redis; its state shows on the health line
    transport = node_transport(cfg.redis, cfg.node.id, clock.seconds, on_change=links.health.set_redis_bus) \
        if cfg.redis is not None else None
    bus = EventBus(dispatch, transport=transport)
    previews = PreviewHolds(acd, dialer, process.push_to_agent) if dialer is not None and dialer.previews else None
    agent_feed = AgentFeed(acd, process.has_consoles)
    kpi = kpi_engine(cfg, acd)
    # several nodes: the consoles' pushes to and from the others; the statistics count the others' events too
    relay = ConsoleRelay(pops.agent_pops, process.deliver_relayed, node=cfg.node.id, publish=process.publish,
                         carries=process.carries_call, clock=process.now) if transport is not None else None
    centre_kpi = OtherNodes(kpi, shared_of(KpiCore.SUBSCRIPTIONS)) if transport is not None else None
    for engine in (ivr_sessions, log_feed, sessions, acd, recordings, dialer, previews, pops, callbacks, agent_feed,
                   relay, recorder_feed, interactions, kpi, centre_kpi):
        if engine is not None:
            bus.add(engine)
    # last: it only counts (the event types it takes cost the rest nothing)
    event_counts = EventCounts(queues=acd.section.queue_names(), servers=[s.name for s in cfg.asterisk],
                               campaigns=[c.name for c in cfg.dialer.campaigns])
    bus.add(event_counts)
    leases = NodeLeases.for_config(cfg, links=links, dialer=dialer)
    return Components(tracker=tracker, acd=acd, dialer=dialer, ivr_sessions=ivr_sessions, call_log=call_log,
                      sessions=sessions, pops=pops, callbacks=callbacks, interactions=interactions,
                      recorder_feed=recorder_feed, pool=pool, dispatcher=dispatcher, links=links, bus=bus,
                      customer_number=customer_number, agent_feed=agent_feed, event_counts=event_counts,
                      kpi=kpi, recordings=recordings, leases=leases, transport=transport, relay=relay)


@dataclass
class Database:
    """What ``open_database`` opened."""

    schema: tuple[str | None, str | None]  # (revision before, after)
    engine: Engine
    recorder: Recorder
    store: CustomerStore
    callback_store: CallbackStore
    pop_lookup: PopLookup
    interactions: InteractionWriter


def open_database(c: Components, cfg: CtiConfig, run_in_thread: ThreadRunner, clock: IReactorTime) -> Database:
    """Migrate the database, open the recorder, the stores and the pop look-up and hand them to the
    engines (blocking: at start-up, off the loop). The dialer's leads are loaded from its store."""
    url = cfg.database.url
    schema = upgrade(url)
    recorder = Recorder(url)
    engine = make_engine(url, echo=cfg.database.echo)
    store = CustomerStore(engine)
    callback_store = CallbackStore(engine)
    pop_lookup = PopLookup.from_settings(store, run_in_thread, clock, cfg.screenpop)
    interactions = InteractionWriter(pop_lookup)
    c.pops.lookup = pop_lookup
    c.interactions.writer = interactions
    c.recorder_feed.recorder = recorder
    c.callbacks.store, c.callbacks.run = callback_store, run_in_thread
    if c.dialer is not None:
        # several nodes: an attempt left open may be a live node's; the node pacing the campaign resolves them
        c.dialer.open_store(LeadStore(engine), run_in_thread, clock.seconds(), recover=cfg.redis is None)
    c.links.health.db = True
    if c.kpi is not None:  # the statistics since midnight, rebuilt from the records (not reset by a restart)
        now = clock.seconds()
        ks = c.kpi.core.settings
        c.kpi.rebuild(recorded_events(engine, rebuild_since(now, ks.timezone, ks.interval, ks.bucket)), now)
    return Database(schema, engine, recorder, store, callback_store, pop_lookup, interactions)


# ---------------------------------------------------------------------------------------------------
# the screen-pop shell on its own (``cti screenpop``, tests, benches)

def start_pop_lookup(database_url: str, settings: ScreenpopSection, reactor: IReactorTime,
                     threads: int = 4, migrate: bool = True) -> tuple[PopLookup, Callable[[], None]]:
    """Migrate the database (``centre.database.upgrade``), open the store and start a dedicated thread pool.

    Returns the look-up and its ``stop()`` (stops the pool, disposes the engine; idempotent), which also
    runs when the reactor shuts down. Blocking: call before ``reactor.run()`` (or from a thread).
    """
    if migrate:
        upgrade(database_url)
    store = CustomerStore(make_engine(database_url))
    pool = ThreadPool(minthreads=1, maxthreads=max(1, threads), name="screenpop-store")
    pool.start()

    stopped: list[bool] = []

    def stop() -> None:
        if not stopped:
            stopped.append(True)
            pool.stop()
            store.engine.dispose()

    core: IReactorCore = reactor  # type: ignore[assignment]
    core.addSystemEventTrigger("after", "shutdown", stop)
    from_threads: IReactorFromThreads = reactor  # type: ignore[assignment]
    return PopLookup.from_settings(store, thread_runner(from_threads, pool), reactor, settings), stop


def ensure_demo_customers(database_url: str, now: datetime, n: int = 3000, seed: int = 1) -> int:
    """For ``cti demo``: migrate the database and load the demo customers if it has none.

    Returns how many customers were written (0 when the store already had customers). Blocking.
    """
    upgrade(database_url)
    store = CustomerStore(make_engine(database_url))
    try:
        return seed_store(store, now, n=n, seed=seed)
    finally:
        store.engine.dispose()
