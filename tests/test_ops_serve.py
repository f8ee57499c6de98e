"""``cti serve`` with a ``metrics:`` section and ``cti sim`` as real subprocesses on loopback (as
tests/test_cli_sim_serve.py runs them): /readyz is 503 while no PBX answers, 200 once the server has logged in
to the simulator's AMI, 503 again when the simulator stops and 200 when a new one starts on the same port;
/metrics (parsed with prometheus_client's parser) shows the simulated callers going through the IVR and the
queues. No secret of the configuration appears in any answer or in the log. Every wait has a deadline and
waits for something the processes say (a log line, a wallboard frame), never a sleep.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from tests.test_cli_sim_serve import Proc, free_port, write_config

AGENT, PASSWORD = "1001", "demo-password"  # demo.yaml's agent and its documented password
SECRETS = ("cti-secret", "demo-console-secret-change-me", "demo-password", "scrypt$")


def fetch(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def no_secret(data: bytes | str) -> None:
    text = data if isinstance(data, str) else data.decode(errors="replace")
    for secret in SECRETS:
        assert secret not in text, secret


def readyz(port: int, status: int) -> dict[str, Any]:
    code, body = fetch(port, "/readyz")
    no_secret(body)
    assert code == status, body
    return json.loads(body)  # type: ignore[no-any-return]


def agent_takes_a_call(http: int, timeout: float) -> None:
    """Agent 1001 logs in from its console and goes ready (nobody else does: the simulated phones answer
    but the agents are people); returns once the console says 1001 is on a call."""
    deadline = time.monotonic() + timeout
    with connect(f"ws://127.0.0.1:{http}/ws", open_timeout=timeout) as ws:
        for n, request in enumerate(({"type": "hello", "agent_id": AGENT, "password": PASSWORD},
                                     {"type": "login"}, {"type": "ready"}), 1):
            ws.send(json.dumps({"v": 1, "id": n, **request}))
        states: list[str] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = json.loads(ws.recv(timeout=left))
            except TimeoutError:
                break
            assert msg.get("type") != "error", msg
            if msg.get("type") == "state":
                states.append(msg["state"])
                if msg["state"] == "on_call":
                    return
    raise AssertionError(f"1001 not on a call within {timeout} s; its states: {states}")


def wait_for_another(proc: Proc, pattern: str, timeout: float) -> str:
    """A line matching ``pattern`` after those already read (``Proc.wait_for`` also returns old ones)."""
    regex = re.compile(pattern)
    seen = sum(1 for line in proc.lines if regex.search(line))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        with contextlib.suppress(AssertionError):
            proc.wait_for(r"\n", timeout=min(left, 1.0))  # reads the process's log for up to 1 s
        found = [line for line in proc.lines if regex.search(line)]
        if len(found) > seen:
            return found[seen]
    raise AssertionError(f"no new line matching {pattern!r} within {timeout} s")


def metrics(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, body = fetch(port, "/metrics")
    assert status == 200
    no_secret(body)
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def total(m: dict[Any, float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in m.items() if n == name and want <= ls)


@pytest.mark.timeout(90)
def test_readyz_follows_the_simulated_pbx_and_metrics_follow_its_calls(tmp_path: Path) -> None:
    path, doc = write_config(tmp_path)
    port = free_port()
    doc["metrics"] = {"host": "127.0.0.1", "port": port, "check_cache": 0}
    doc["asterisk"][0]["reconnect_max"] = 1.0  # the server retries every second while the PBX is away
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    agents = len(doc["acd"]["agents"])
    procs: list[Proc] = []
    try:
        server = Proc("serve", str(path))
        procs.append(server)
        server.wait_for(rf"cti: metrics on http://127\.0\.0\.1:{port}/metrics", timeout=20)
        assert fetch(port, "/healthz")[0] == 200
        down = readyz(port, 503)  # no PBX yet
        assert down["down"] == ["ami:sim"] and down["database"]["up"] is True, down

        sim = Proc("sim", "--config", str(path), "--speed", "20", "--duration", "3600")
        procs.append(sim)
        server.wait_for(r"centre\.server: sim: connected", timeout=20)
        ready = readyz(port, 200)
        assert ready["ami"]["sim"]["up"] is True and ready["down"] == []

        agent_takes_a_call(doc["listen"]["http"]["port"], timeout=30)
        m = metrics(port)
        assert total(m, "cti_queue_calls_answered_total") >= 1
        assert total(m, "cti_queue_calls_offered_total") >= total(m, "cti_queue_calls_answered_total")
        assert total(m, "cti_agents") == agents and total(m, "cti_agents", agent_state="logged_out") == agents - 1
        assert total(m, "cti_agent_state_changes_total", agent_state="on_call") >= 1
        assert total(m, "cti_websocket_connections_opened_total") >= 1
        assert total(m, "cti_fastagi_sessions_total") > 0
        assert total(m, "cti_ami_connection_up", server="sim") == 1
        assert total(m, "cti_ami_messages_received_total", server="sim") > 0
        assert total(m, "cti_ready") == 1 and total(m, "cti_db_up") == 1
        assert total(m, "process_resident_memory_bytes") > 0

        code, _, sim_err = sim.terminate()
        assert code == 0, sim_err[-3000:]
        server.wait_for(r"centre\.server: sim: AMI connection lost", timeout=10)
        down = readyz(port, 503)
        assert down["down"] == ["ami:sim"] and down["ami"]["sim"]["up"] is False, down

        again = Proc("sim", "--config", str(path), "--speed", "20", "--duration", "3600")
        procs.append(again)
        wait_for_another(server, r"centre\.server: sim: connected", timeout=20)
        readyz(port, 200)
        m = metrics(port)
        assert total(m, "cti_ami_logins_total", server="sim") == 2
        assert total(m, "cti_ami_connection_losses_total", server="sim") == 1

        code, _, _ = again.terminate()
        assert code == 0
        code, _, server_err = server.terminate()
        assert code == 0, server_err[-3000:]
        assert "Traceback" not in server_err, server_err[-3000:]
        no_secret(server_err)
    finally:
        for proc in procs:
            proc.kill()
