"""The server's Prometheus metrics: one registry per process, read live at scrape time.

``build_registry(sources)`` makes a ``prometheus_client.CollectorRegistry`` of its own (never the global
default: several servers in one test process each have theirs) holding ``CtiCollector`` and the standard
process, platform and garbage-collector collectors. ``CtiCollector.collect`` reads the figures when
Prometheus asks, from the engines' public reads (``AcdService.queue_stats``/``agent_snapshot``,
``Dialer.figures``), the links' ``Health``, the hub's and the FastAGI factory's counters, the database
writers' counters and the bus's ``EventCounts``: the hot path pays nothing for a gauge, and a counter is
an increment the server already made. ``METRICS`` lists every name with its type, labels and meaning
(``docs/operations.md`` is written from it; a test holds the two together).

Labels are only ever configured names (queue, campaign, server) or fixed sets (agent_state, result, role,
kind, writer): never a call id, a phone number or an agent id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from acd.states import AgentState
from centre.event_counts import QUEUE_EVENTS
from centre.server import CtiServer
from cti import __version__


@dataclass(frozen=True)
class MetricInfo:
    kind: str  # gauge | counter
    labels: tuple[str, ...]
    help: str


def _g(labels: tuple[str, ...], text: str) -> MetricInfo:
    return MetricInfo("gauge", labels, text)


def _c(labels: tuple[str, ...], text: str) -> MetricInfo:
    return MetricInfo("counter", labels, text)


Q, QS, C, S = ("queue",), ("queue", "agent_state"), ("campaign",), ("server",)

#: Every metric ``CtiCollector`` exports (counters without their ``_total``, as prometheus_client names them).
METRICS: dict[str, MetricInfo] = {
    "cti_build_info": _g(("version",), "Always 1; the version label says which server runs."),
    # queues
    "cti_queue_waiting_calls": _g(Q, "Callers waiting in the queue now."),
    "cti_queue_longest_wait_seconds": _g(Q, "How long the longest-waiting caller in the queue has waited."),
    "cti_queue_expected_wait_seconds": _g(Q, "Expected wait of a caller joining the queue now (absent while "
                                             "no agent works the queue)."),
    "cti_queue_service_level_ratio": _g(Q, "Today's share of answered calls answered within the queue's "
                                           "service-level time (absent before any answered or abandoned call)."),
    "cti_queue_service_level_target_ratio": _g(Q, "The queue's configured service-level target (0-1)."),
    "cti_queue_abandon_ratio": _g(Q, "Today's share of the queue's callers who hung up before an answer "
                                     "(absent before any answered or abandoned call)."),
    "cti_queue_average_handle_time_seconds": _g(Q, "Today's average handle time (talk and wrap-up) in the queue."),
    "cti_queue_agents": _g(QS, "The queue's agents by state now."),
    "cti_queue_calls_offered": _c(Q, "Offers of the queue's callers to agents (a caller offered again after "
                                     "no answer counts again)."),
    "cti_queue_calls_answered": _c(Q, "The queue's callers answered by an agent."),
    "cti_queue_calls_abandoned": _c(Q, "The queue's callers who hung up before an agent answered."),
    "cti_queue_calls_overflowed": _c(Q, "The queue's callers sent on at their maximum wait (overflow queue, "
                                        "voicemail, callback)."),
    "cti_queue_offers_unanswered": _c(Q, "Offers that ended without a conversation (no answer, busy, failed): "
                                         "the caller waits again."),
    # agents
    "cti_agents": _g(("agent_state",), "Configured agents by state now."),
    "cti_agent_state_changes": _c(("agent_state",), "Agents entering each state."),
    # dialer
    "cti_dialer_campaign_enabled": _g(C, "1 when the campaign is enabled."),
    "cti_dialer_calls_in_flight": _g(C, "The campaign's calls dialled and not yet ended."),
    "cti_dialer_due_leads": _g(C, "The campaign's leads due for a call now."),
    "cti_dialer_recent_abandon_ratio": _g(C, "The abandon rate the pacer steers by (over the campaign's last "
                                             "live answers; absent before any)."),
    "cti_dialer_pacer_target_lines": _g(C, "Lines the pacer's last decision wanted up."),
    "cti_dialer_previews_shown": _g(C, "Preview-mode leads shown to agents now."),
    "cti_dialer_attempts": _c(C, "Calls the campaign dialled."),
    "cti_dialer_attempt_results": _c(("campaign", "result"), "The campaign's attempts ended, by result."),
    # AMI
    "cti_ami_connection_up": _g(S, "1 while the AMI connection to the PBX is logged in."),
    "cti_ami_messages_received": _c(S, "AMI messages (events and responses) read from the PBX."),
    "cti_ami_logins": _c(S, "Logins to the PBX's AMI (the first and every reconnect)."),
    "cti_ami_connection_losses": _c(S, "Established AMI connections to the PBX that were lost."),
    "cti_pbx_missing_features": _g(S, "Applications, functions and prompts the PBX lacks that the shipped "
                                      "dialplan or the flows need (cti.pbx_check; 0 is right)."),
    # the bus
    "cti_bus_events": _c((), "Events through the engine bus."),
    "cti_commands": _c((), "Commands the engines issued (AMI actions, console pushes, ...)."),
    "cti_commands_failed": _c((), "Commands that failed (the PBX refused the action, the link was down, ...)."),
    # FastAGI
    "cti_fastagi_sessions_active": _g((), "FastAGI connections open now (callers in the IVR)."),
    "cti_fastagi_sessions": _c((), "IVR sessions started (a FastAGI request for a known flow)."),
    "cti_fastagi_sessions_ended": _c((), "IVR sessions that reached the end of their flow."),
    "cti_fastagi_connections_refused": _c((), "FastAGI connections refused (not in ivr.allow_from, or "
                                              "ivr.max_sessions reached)."),
    "cti_fastagi_errors": _c(("kind",), "FastAGI problems by kind: protocol, timeout, unknown_flow, "
                                        "missing_prompt, sink."),
    # websocket hub
    "cti_websocket_connections": _g(("role",), "Console websocket connections now: agent, supervisor, or "
                                               "authenticating (not logged in yet)."),
    "cti_websocket_connections_opened": _c((), "Console websocket connections opened."),
    "cti_websocket_connections_closed": _c((), "Console websocket connections closed."),
    "cti_websocket_messages_received": _c((), "Messages received from consoles."),
    "cti_websocket_messages_sent": _c((), "Messages sent to consoles."),
    "cti_websocket_rejected": _c(("reason",), "Connections or logins refused, by reason: full, unauthenticated, "
                                              "origin, auth_failure, auth_throttled, rate_limited, slow_client."),
    "cti_websocket_pushes_undelivered": _c((), "Pushes for an agent whose console was not connected."),
    # database
    "cti_db_up": _g((), "1 when the last check reached the database (SELECT 1)."),
    "cti_db_writer_up": _g(("writer",), "1 while the writer's last write succeeded (acd_records: the queue-call "
                                        "and agent-state records)."),
    "cti_db_rows_written": _c(("writer",), "Rows the writer committed."),
    "cti_db_write_failures": _c(("writer",), "Failed database writes (acd_records: retried; interactions: a "
                                             "write given up)."),
    "cti_db_rows_dropped": _c(("writer",), "Rows dropped because the writer's buffer was full."),
    "cti_db_rows_pending": _g(("writer",), "Rows waiting to be written."),
    "cti_redis_up": _g((), "1 when the last check reached Redis (PING); absent without redis configured."),
    # the process itself
    "cti_ready": _g((), "1 when the last readiness check found every dependency up (as /readyz)."),
    "cti_event_loop_lag_seconds": _g((), "How late the event loop ran a timer at its last look (a busy or "
                                         "blocked loop delays everything)."),
}

WEBSOCKET_REJECTIONS = {"full": "rejected_full", "unauthenticated": "rejected_unauthenticated",
                        "origin": "rejected_origin", "auth_failure": "auth_failures",
                        "auth_throttled": "auth_throttled", "rate_limited": "rate_limited",
                        "slow_client": "dropped_slow"}
FASTAGI_ERRORS = {"protocol": "protocol_errors", "timeout": "timeouts", "unknown_flow": "unknown_flow",
                  "missing_prompt": "missing_prompts", "sink": "sink_errors"}


@dataclass
class MetricSources:
    """What the collector reads. ``hub_stats``: the console hub's ``stats``; ``fastagi``: the FastAGI factory
    (``stats``, ``active``); ``checks``: the readiness checks' last results; ``loop_lag``: the loop's lag."""

    server: CtiServer
    hub_stats: Callable[[], dict[str, Any]] | None = None
    fastagi: Any = None
    checks: Any = None  # centre.ops_http.Readiness (its ``last`` report)
    loop_lag: Callable[[], float | None] | None = None


class CtiCollector(Collector):
    """Reads the live figures at scrape time (on the event loop's thread: the HTTP handler runs there)."""

    def __init__(self, sources: MetricSources) -> None:
        self.sources = sources

    def describe(self) -> list[Metric]:
        return []  # names are not checked against other collectors at registration: ours are all cti_*

    def collect(self) -> Iterator[Metric]:
        server = self.sources.server
        now = server.now()
        out: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

        def family(name: str) -> GaugeMetricFamily | CounterMetricFamily:
            fam = out.get(name)
            if fam is None:
                info = METRICS[name]
                cls = GaugeMetricFamily if info.kind == "gauge" else CounterMetricFamily
                fam = out[name] = cls(name, info.help, labels=list(info.labels))
            return fam

        def put(name: str, value: float | None, *labels: str) -> None:
            if value is not None:
                family(name).add_metric(list(labels), float(value))

        put("cti_build_info", 1, __version__)
        self._queues(server, now, put)
        self._agents(server, put)
        self._dialer(server, now, put)
        self._links(server, put)
        self._fastagi(put)
        self._websockets(put)
        self._database(server, put)
        put("cti_event_loop_lag_seconds", self.sources.loop_lag() if self.sources.loop_lag else None)
        yield from out.values()

    # ------------------------------------------------------------------ sections
    @staticmethod
    def _queues(server: CtiServer, now: float, put: Callable[..., None]) -> None:
        counts = server.event_counts
        for name, q in server.acd.queue_stats(now).items():
            put("cti_queue_waiting_calls", q.waiting, name)
            put("cti_queue_longest_wait_seconds", q.longest_wait, name)
            put("cti_queue_expected_wait_seconds", q.ewt, name)
            # the ACD counts in percent; ratios are 0-1
            put("cti_queue_service_level_ratio", None if q.service_level is None else q.service_level / 100, name)
            put("cti_queue_service_level_target_ratio", q.service_level_target.percent / 100, name)
            put("cti_queue_abandon_ratio", None if q.abandon_rate is None else q.abandon_rate / 100, name)
            put("cti_queue_average_handle_time_seconds", q.average_handle_time, name)
            for state, n in q.agents.items():
                put("cti_queue_agents", n, name, state)
            if counts is not None:
                for kind in QUEUE_EVENTS.values():
                    metric = "cti_queue_offers_unanswered" if kind == "unanswered_offers" else f"cti_queue_calls_{kind}"
                    put(metric, counts.queue_events[kind].get(name, 0), name)

    @staticmethod
    def _agents(server: CtiServer, put: Callable[..., None]) -> None:
        by_state = dict.fromkeys(AgentState, 0)
        for record in server.acd.agent_records():  # the live records, read only: no snapshot per agent
            by_state[record.state] += 1
        for state, n in by_state.items():
            put("cti_agents", n, state.value)
        counts = server.event_counts
        if counts is not None:
            for state, n in counts.agent_states.items():
                put("cti_agent_state_changes", n, state)

    @staticmethod
    def _dialer(server: CtiServer, now: float, put: Callable[..., None]) -> None:
        counts = server.event_counts
        if server.dialer is not None:
            for c in server.dialer.figures(now):
                name = c["campaign"]
                put("cti_dialer_campaign_enabled", 1 if c["enabled"] else 0, name)
                put("cti_dialer_calls_in_flight", c["in_flight"], name)
                put("cti_dialer_due_leads", c["due_leads"], name)
                put("cti_dialer_recent_abandon_ratio", c["recent_abandon_rate"], name)
                put("cti_dialer_pacer_target_lines", c["pacing"]["target"] if c["pacing"] else None, name)
                put("cti_dialer_previews_shown", c["previews"], name)
        if counts is not None:
            for name, n in counts.attempts.items():
                if name in counts.results and (n or name != "other"):
                    put("cti_dialer_attempts", n, name)
                    for result, m in counts.results[name].items():
                        put("cti_dialer_attempt_results", m, name, result)

    @staticmethod
    def _links(server: CtiServer, put: Callable[..., None]) -> None:
        health = server.health
        received = server.ami_messages
        counts = server.event_counts
        for name in health.ami:
            put("cti_ami_connection_up", 1 if health.ami[name] else 0, name)
            put("cti_ami_messages_received", received.get(name, 0), name)
            put("cti_pbx_missing_features", len(health.pbx[name]) if name in health.pbx else None, name)
            if counts is not None:
                put("cti_ami_logins", counts.ami_logins.get(name, 0), name)
                put("cti_ami_connection_losses", counts.ami_losses.get(name, 0), name)
        c = server.counters
        put("cti_bus_events", c["events"])
        put("cti_commands", c["commands"])
        put("cti_commands_failed", c["failed"])

    def _fastagi(self, put: Callable[..., None]) -> None:
        factory = self.sources.fastagi
        if factory is None:
            return
        stats = factory.stats
        put("cti_fastagi_sessions_active", factory.active)
        put("cti_fastagi_sessions", stats["sessions"])
        put("cti_fastagi_sessions_ended", stats["ended"])
        put("cti_fastagi_connections_refused", stats["refused"])
        for kind, key in FASTAGI_ERRORS.items():
            put("cti_fastagi_errors", stats.get(key, 0), kind)

    def _websockets(self, put: Callable[..., None]) -> None:
        if self.sources.hub_stats is None:
            return
        s = self.sources.hub_stats()
        for role, key in (("agent", "agents"), ("supervisor", "supervisors"), ("authenticating", "authenticating")):
            put("cti_websocket_connections", s[key], role)
        put("cti_websocket_connections_opened", s["connections_opened"])
        put("cti_websocket_connections_closed", s["connections_closed"])
        put("cti_websocket_messages_received", s["messages_in"])
        put("cti_websocket_messages_sent", s["messages_out"])
        for reason, key in WEBSOCKET_REJECTIONS.items():
            put("cti_websocket_rejected", s.get(key, 0), reason)
        put("cti_websocket_pushes_undelivered", s["undelivered"])

    def _database(self, server: CtiServer, put: Callable[..., None]) -> None:
        recorder = server.recorder
        if recorder is not None:
            m = recorder.metrics
            put("cti_db_writer_up", 0 if m["db_down"] else 1, "acd_records")
            put("cti_db_rows_written", m["written"], "acd_records")
            put("cti_db_write_failures", m["failures"], "acd_records")
            put("cti_db_rows_dropped", m["dropped"], "acd_records")
            put("cti_db_rows_pending", m["pending"], "acd_records")
        writer = server.interactions
        if writer is not None:
            put("cti_db_writer_up", 0 if writer.down else 1, "interactions")
            put("cti_db_rows_dropped", writer.dropped, "interactions")
            put("cti_db_write_failures", writer.failed, "interactions")
            put("cti_db_rows_pending", writer.pending, "interactions")
        last = self.sources.checks.last if self.sources.checks is not None else None
        if last is not None:
            if last.database is not None:
                put("cti_db_up", 1 if last.database.up else 0)
            if last.redis is not None:
                put("cti_redis_up", 1 if last.redis.up else 0)
            put("cti_ready", 1 if last.ready else 0)


def build_registry(sources: MetricSources) -> CollectorRegistry:
    """A registry of this process's own: the server's metrics and the standard process_*/python_* ones."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CtiCollector(sources))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def exported_names() -> set[str]:
    """Every sample name a scrape can hold: ours (a counter's with ``_total``) and the standard collectors'."""
    names = {f"{n}_total" if i.kind == "counter" else n for n, i in METRICS.items()}
    standard = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=standard)
    PlatformCollector(registry=standard)
    GCCollector(registry=standard)
    names.update(s.name for family in standard.collect() for s in family.samples)
    return names
