"""The operations endpoint (``centre.ops_http``) over the real server: the console stack (``tests/console_stack.py``:
a real ``CtiServer`` on the simulated PBX, the hub on a real socket) with ``/metrics``, ``/healthz`` and
``/readyz`` on a real loopback socket. Scrapes are parsed with prometheus_client's own text parser; the
figures follow one call (offered, answered, agents by state); ``/readyz`` turns 503 when the PBX's manager
interface goes away and 200 again when the server has logged back in; the database and Redis checks run
against real ones (and against ports where nothing answers). No output carries a secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as text_string_to_openmetrics_families
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from centre.metrics import METRICS, exported_names
from centre.ops_http import Check, OpsEndpoint, Readiness, ops_endpoint
from centre.wallboard import Health
from config.schema import MetricsSettings
from tests.console_stack import AMI_SECRET, PASSWORDS, SECRET, Stack, open_client, run, running
from tests.test_console_preview import LEADS, NUMBERS, preview_dialer

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = MetricsSettings(port=0, check_cache=0.0, check_timeout=2.0)
REDIS = "redis://127.0.0.1:6379/0"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def get(port: int, path: str, method: str = "GET", accept: str = "") -> tuple[int, dict[str, str], bytes]:
    """One HTTP request on a fresh connection (asyncio streams: the server shares this loop)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = f"Accept: {accept}\r\n" if accept else ""
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: monitor\r\n{extra}\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(port: int) -> Samples:
    status, headers, body = await get(port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=")
    assert_no_secret(body)
    return parse(body.decode())


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def assert_no_secret(body: bytes) -> None:
    text = body.decode(errors="replace")
    for secret in (SECRET, AMI_SECRET, *PASSWORDS.values(), "s3cret-pw"):
        assert secret not in text


async def started(stack: Stack, *, redis_url: str | None = None) -> tuple[OpsEndpoint, int]:
    ops = ops_endpoint(stack.server, SETTINGS, redis_url=redis_url, hub_stats=stack.hub.stats)
    return ops, await ops.start("127.0.0.1", 0)


def test_metrics_follow_a_call_offered_answered_and_the_agents_states() -> None:
    async def body() -> None:
        async with running() as stack:
            ops, port = await started(stack)
            try:
                agent = await open_client(stack, "1001")
                await agent.request("login")
                await agent.request("ready")
                m = await scrape(port)
                assert value(m, "cti_agents", agent_state="ready") == 1
                assert value(m, "cti_agents", agent_state="logged_out") == 1  # 1002 never logged in
                assert value(m, "cti_queue_agents", queue="sales", agent_state="ready") == 1
                assert value(m, "cti_queue_calls_offered_total", queue="sales") == 0
                assert value(m, "cti_ami_connection_up", server="pbx1") == 1
                assert value(m, "cti_ami_logins_total", server="pbx1") == 1
                assert value(m, "cti_websocket_connections", role="agent") == 1
                assert value(m, "cti_db_up") == 1 and value(m, "cti_ready") == 1
                assert value(m, "cti_build_info", version=re.sub(r"\s", "", __import__("cti").__version__)) == 1
                messages = value(m, "cti_ami_messages_received_total", server="pbx1")
                assert messages is not None and messages > 0

                stack.arrive()
                await stack.ringing("1001")
                m = await scrape(port)
                assert value(m, "cti_queue_calls_offered_total", queue="sales") == 1
                assert value(m, "cti_agents", agent_state="reserved") == 1
                assert value(m, "cti_queue_calls_answered_total", queue="sales") == 0

                await stack.answer("1001")
                m = await scrape(port)
                assert value(m, "cti_queue_calls_answered_total", queue="sales") == 1
                assert value(m, "cti_agents", agent_state="on_call") == 1
                assert value(m, "cti_agent_state_changes_total", agent_state="on_call") == 1
                assert value(m, "cti_queue_waiting_calls", queue="sales") == 0
                assert value(m, "cti_queue_calls_offered_total", queue="support") == 0

                await stack.hang_up_phone("1001")
                m = await scrape(port)
                assert value(m, "cti_agents", agent_state="wrap_up") == 1
                assert value(m, "cti_queue_calls_abandoned_total", queue="sales") == 0
                assert value(m, "cti_queue_service_level_ratio", queue="sales") == 1.0
                assert (messages2 := value(m, "cti_ami_messages_received_total", server="pbx1")) is not None
                assert messages2 > messages
                events = value(m, "cti_bus_events_total")
                assert events is not None and events > 0
                # every cti_ name exported is a documented one; nothing carries a call id or a number
                names = {name for name, _ in m if name.startswith("cti_")}
                assert names <= exported_names()
                labels = {k for _, ls in m for k, _ in ls}
                assert labels <= {"queue", "agent_state", "campaign", "server", "result", "role", "reason", "kind",
                                  "writer", "version", "implementation", "major", "minor", "patchlevel",
                                  "generation"}
            finally:
                await ops.stop()

    run(body)


def test_readyz_turns_503_when_the_ami_link_drops_and_200_once_logged_in_again() -> None:
    async def body() -> None:
        async with running() as stack:
            ops, port = await started(stack)
            try:
                status, headers, raw = await get(port, "/readyz")
                doc = json.loads(raw)
                assert status == 200 and headers["content-type"] == "application/json", doc
                assert doc["status"] == "ready" and doc["down"] == []
                assert doc["ami"]["pbx1"]["up"] is True and doc["database"]["up"] is True
                assert "redis" not in doc  # not configured
                status, _, raw = await get(port, "/healthz")
                leases = json.loads(raw)["leases"]  # embedded: this one node holds every lease
                assert status == 200 and "ami:pbx1" in leases["held"] and leases["store_up"] is True, leases

                stack.stop_ami()
                await stack.until(lambda: not stack.server.health.ami["pbx1"], "the AMI link to drop")
                status, _, raw = await get(port, "/readyz")
                doc = json.loads(raw)
                assert status == 503 and doc["status"] == "not ready" and doc["down"] == ["ami:pbx1"], doc
                assert doc["ami"]["pbx1"]["up"] is False and doc["database"]["up"] is True
                assert_no_secret(raw)
                m = await scrape(port)
                assert value(m, "cti_ami_connection_up", server="pbx1") == 0
                assert value(m, "cti_ami_connection_losses_total", server="pbx1") == 1
                assert value(m, "cti_ready") == 0
                health_status, _, health = await get(port, "/healthz")  # alive all the same
                assert health_status == 200 and json.loads(health)["status"] == "alive"

                stack.start_ami()
                for _ in range(200):  # the client's reconnect backoff, in the stack's virtual time
                    if stack.server.health.ami["pbx1"]:
                        break
                    await stack.advance(0.5)
                    await asyncio.sleep(0.005)
                status, _, raw = await get(port, "/readyz")
                assert status == 200, raw
                m = await scrape(port)
                assert value(m, "cti_ami_logins_total", server="pbx1") == 2
                assert value(m, "cti_ready") == 1
            finally:
                await ops.stop()

    run(body)


def test_readyz_checks_a_real_redis_and_says_when_it_is_down_without_its_password(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="centre.ops_http")

    async def body() -> None:
        async with running() as stack:
            ops, port = await started(stack, redis_url=REDIS)
            try:
                status, _, raw = await get(port, "/readyz")
                doc = json.loads(raw)
                assert status == 200 and doc["redis"] == {"up": True, "detail": "ok"}, doc
                assert value(await scrape(port), "cti_redis_up") == 1
            finally:
                await ops.stop()
            # a Redis where nothing listens, with a password in its URL
            ops, port = await started(stack, redis_url="redis://:s3cret-pw@127.0.0.1:1/0")
            try:
                status, _, raw = await get(port, "/readyz")
                doc = json.loads(raw)
                assert status == 503 and doc["down"] == ["redis"] and doc["redis"]["up"] is False, doc
                assert doc["redis"]["detail"].startswith("unreachable (")
                assert_no_secret(raw)
                m = await scrape(port)
                assert value(m, "cti_redis_up") == 0
                assert "readiness: redis down: unreachable (" in caplog.text and "s3cret" not in caplog.text
            finally:
                await ops.stop()

    run(body)


def test_readyz_says_the_database_is_down_when_it_cannot_be_reached(caplog: pytest.LogCaptureFixture) -> None:
    """A PostgreSQL URL (with a password) on a port where nothing listens: 503, the database down, in words
    that carry neither the URL nor the password; the log says why, without the password."""
    caplog.set_level(logging.INFO, logger="centre.ops_http")

    async def body() -> None:
        engine = create_engine("postgresql+psycopg://cti:s3cret-pw@127.0.0.1:1/test",
                               connect_args={"connect_timeout": 2})
        health = Health(ami={"pbx1": True}, ami_detail={"pbx1": "logged in"})
        readiness = Readiness(health, engine=engine, redis_url=None, timeout=5.0, cache=0.0)
        try:
            report = await readiness.check()
            assert not report.ready and report.down == ["database"]
            assert report.database is not None and report.database.detail == "unreachable (OperationalError)"
            text = json.dumps(report.as_dict())
            assert "s3cret" not in text and "127.0.0.1:1" not in text
            assert "readiness: database down: unreachable (OperationalError): " in caplog.text
            assert "s3cret" not in caplog.text
        finally:
            await readiness.close()
            engine.dispose()

    run(body)


def test_the_endpoint_answers_only_its_paths_and_methods() -> None:
    async def body() -> None:
        async with running() as stack:
            ops, port = await started(stack)
            try:
                assert (await get(port, "/"))[0] == 404
                assert (await get(port, "/metrics/../ws"))[0] == 404
                assert (await get(port, "/metrics", method="POST"))[0] == 405
                status, headers, raw = await get(port, "/metrics", accept="application/openmetrics-text; version=1.0.0")
                assert status == 200 and headers["content-type"].startswith("application/openmetrics-text")
                families = {f.name: f for f in text_string_to_openmetrics_families(raw.decode())}
                assert families["cti_queue_calls_offered"].type == "counter"
                assert families["cti_queue_waiting_calls"].type == "gauge"
                status, headers, raw = await get(port, "/metrics", method="HEAD")
                assert status == 200 and raw == b"" and int(headers["content-length"]) > 0
                reader, writer = await asyncio.open_connection("127.0.0.1", port)  # a head too big: dropped
                writer.write(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
                assert await asyncio.wait_for(reader.read(), 5) == b""
                writer.close()
                assert (await get(port, "/healthz"))[0] == 200  # and it still serves
                taken = ops_endpoint(stack.server, SETTINGS)  # the same port again: an error that says where
                with pytest.raises(OSError, match=rf"metrics listener .* cannot listen on 127\.0\.0\.1:{port}: "):
                    await taken.start("127.0.0.1", port)
                await taken.stop()
            finally:
                await ops.stop()

    run(body)


def test_every_metric_has_a_name_by_the_conventions_and_a_line_in_the_operations_doc() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    for name, info in METRICS.items():
        assert re.fullmatch(r"cti_[a-z_]+", name) and not name.endswith("_total"), name
        shown = f"{name}_total" if info.kind == "counter" else name
        assert f"`{shown}`" in doc, f"{shown} is not in docs/operations.md"


def _exprs(node: Any) -> list[str]:
    """The panels' queries (``expr``) and the variables' (``definition``)."""
    if isinstance(node, dict):
        found = [node[k] for k in ("expr", "definition") if isinstance(node.get(k), str)]
        return found + [e for v in node.values() for e in _exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def test_the_grafana_dashboard_queries_only_metrics_the_server_exports() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    assert dashboard["title"] and dashboard["schemaVersion"] >= 30 and dashboard["panels"]
    exprs = _exprs(dashboard)
    assert len(exprs) >= 10
    exported = exported_names()
    used: set[str] = set()
    for expr in exprs:
        # metric names: identifiers followed by { or ( ... ) or [ ... ] or the end, not functions or labels
        for name in re.findall(r"\b((?:cti|process|python)_[a-z_]+)\b", expr):
            assert name in exported, f"{expr!r} uses {name}, which the server does not export"
            used.add(name)
    assert {"cti_queue_waiting_calls", "cti_agents", "cti_ami_connection_up", "cti_ready"} <= used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for p in dashboard["panels"]:  # each panel has a place and, but for rows, the data source variable
        assert {"h", "w", "x", "y"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"]


def test_a_database_that_never_answers_is_down_in_check_timeout_and_holds_one_thread_only() -> None:
    """A socket that accepts and never speaks: the check gives up after ``check_timeout``; the next check,
    while that query still hangs, says down at once instead of queueing another one; when the socket goes,
    checks run again."""

    async def body() -> None:
        accepted: list[asyncio.StreamWriter] = []

        async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)

        mute = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = mute.sockets[0].getsockname()[1]
        engine = create_engine(f"postgresql+psycopg://cti:s3cret-pw@127.0.0.1:{port}/test",
                               connect_args={"connect_timeout": 30})
        readiness = Readiness(Health(), engine=engine, redis_url=None, timeout=0.3, cache=0.0)
        try:
            first = await readiness.check()
            assert first.down == ["database"] and first.database == Check(False, "no answer in time")
            second = await readiness.check()
            assert second.database == Check(False, "no answer in time") and len(accepted) == 1
            mute.close()
            for writer in accepted:  # the hung query gets its end of stream: its thread is free again
                writer.close()
            await asyncio.wait_for(readiness.wait_idle(), 10)
            third = await readiness.check()
            assert third.database is not None and third.database.detail == "unreachable (OperationalError)"
        finally:
            await readiness.close()
            engine.dispose()

    run(body)


def test_dialler_metrics_follow_a_preview_campaign_and_its_attempts() -> None:
    """A preview campaign (tests/test_console_preview.py's): the lead shown to the ready agent is a gauge;
    the attempt dialled and its busy result are counters, by campaign and result."""

    async def body() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            leads = Path(tmp) / "leads.csv"
            leads.write_text(LEADS, encoding="utf-8")
            async with running(dialer=preview_dialer(leads), numbers=NUMBERS) as stack:
                ops, port = await started(stack)
                try:
                    other = await open_client(stack, "1002")
                    await other.request("login")
                    await other.request("not_ready", reason="break")
                    agent = await open_client(stack, "1001")
                    await agent.request("login")
                    await agent.request("ready")
                    await agent.wait_push("preview", lambda p: p["status"] == "offered" and p["lead_id"] == "L1")
                    m = await scrape(port)
                    assert value(m, "cti_dialer_campaign_enabled", campaign="spring") == 1
                    assert value(m, "cti_dialer_previews_shown", campaign="spring") == 1
                    assert value(m, "cti_dialer_attempts_total", campaign="spring") == 0
                    await agent.request("preview_skip", lead_id="L1")
                    await agent.wait_push("preview", lambda p: p["status"] == "offered" and p["lead_id"] == "L2")
                    await agent.request("preview_accept", lead_id="L2")  # the number is busy
                    await agent.wait_push("preview", lambda p: p["status"] == "busy")
                    m = await scrape(port)
                    assert value(m, "cti_dialer_attempts_total", campaign="spring") == 1
                    assert value(m, "cti_dialer_attempt_results_total", campaign="spring", result="busy") == 1
                    assert value(m, "cti_dialer_attempt_results_total", campaign="spring", result="connected") == 0
                    assert value(m, "cti_dialer_calls_in_flight", campaign="spring") == 0
                    assert not [k for k in m if "+1555" in str(k) or "L2" in str(k)]  # no number, no lead id
                finally:
                    await ops.stop()

    run(body)


def test_each_server_has_a_registry_of_its_own() -> None:
    """Two servers in one process (as in these tests): two registries, each with its own figures, and
    prometheus_client's global registry untouched."""
    from prometheus_client import REGISTRY, generate_latest
    from twisted.internet.task import Clock

    from centre.metrics import MetricSources, build_registry
    from centre.server import CtiServer
    from config.schema import CtiConfig

    def server(queue: str) -> CtiServer:
        return CtiServer(CtiConfig.model_validate({"acd": {"queues": [{"name": queue, "skills": {"s": 1}}]}}),
                         clock=Clock())

    before = {m.name for m in REGISTRY.collect()}
    first, second = (parse(generate_latest(build_registry(MetricSources(server(q)))).decode())
                     for q in ("north", "south"))
    assert value(first, "cti_queue_waiting_calls", queue="north") == 0
    assert value(first, "cti_queue_waiting_calls", queue="south") is None
    assert value(second, "cti_queue_waiting_calls", queue="south") == 0
    assert {m.name for m in REGISTRY.collect()} == before and not any(n.startswith("cti_") for n in before)
