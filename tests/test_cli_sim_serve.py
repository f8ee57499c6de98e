"""``cti serve`` and ``cti sim`` as real subprocesses on loopback: the server connects to the simulated
PBX's AMI, simulated callers reach its FastAGI IVR and its queues, a supervisor sees them on the
wallboard, and both commands exit cleanly on SIGTERM. Every wait has a deadline; no sleeps.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic.script import ScriptDirectory
from websockets.sync.client import connect

from centre.database import alembic_config
from cti import __version__

HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()  # type: ignore[arg-type]

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "examples" / "demo.yaml"
SUPERVISOR = ("sup", "demo-password")  # demo.yaml's supervisor and its documented password


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp: Path) -> tuple[Path, dict[str, Any]]:
    """The demo config without its outbound campaign, on free loopback ports, a SQLite file in ``tmp`` and a
    busy inbound number."""
    doc = yaml.safe_load(DEMO.read_text())
    doc.pop("dialer", None)  # inbound only: the campaign's calls would also reach the sales queue
    doc["asterisk"][0]["port"] = free_port()
    doc["database"] = {"url": f"sqlite:///{tmp / 'cti.sqlite3'}"}
    doc["listen"] = {"fastagi": {"host": "127.0.0.1", "port": free_port()},
                     "http": {"host": "127.0.0.1", "port": free_port()}}
    doc["log"] = {"level": "INFO"}
    doc["sim"]["inbound"] = [{"did": "+18005550100", "rate_per_hour": 720, "flow": "main"}]
    path = tmp / "cti.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, doc


class Proc:
    """A ``cti`` subprocess whose stderr is read line by line with deadlines."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.popen = subprocess.Popen([sys.executable, "-m", "centre.cli", *args], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self._buf = b""

    def wait_for(self, pattern: str, timeout: float, since: int = 0) -> str:
        """The first stderr line matching ``pattern`` (already seen, from line ``since`` on, or arriving within
        ``timeout`` s)."""
        regex = re.compile(pattern)
        for line in self.lines[since:]:
            if regex.search(line):
                return line
        assert self.popen.stderr is not None
        fd = self.popen.stderr.fileno()
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self._buf += chunk
            *complete, self._buf = self._buf.split(b"\n")
            lines = [raw.decode(errors="replace") for raw in complete]
            self.lines.extend(lines)  # all of them: a later wait_for may look for a line after this match
            for line in lines:
                if regex.search(line):
                    return line
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s; stderr so far:\n"
                             + "\n".join(self.lines[-30:]))

    def kill(self) -> None:
        """SIGKILL it if it still runs, and reap it (a test's clean-up, whatever happened before)."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.communicate()

    def terminate(self, timeout: float = 10.0) -> tuple[int, str, str]:
        """SIGTERM, then wait (SIGKILL past ``timeout``): exit status, stdout, the rest of stderr."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            out, err = self.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            out, err = self.popen.communicate()
            return -9, out.decode(errors="replace"), err.decode(errors="replace")
        return self.popen.returncode, out.decode(errors="replace"), \
            "\n".join(self.lines) + "\n" + (self._buf + err).decode(errors="replace")


@pytest.fixture
def config(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    return write_config(tmp_path)


@pytest.fixture
def running(config: tuple[Path, dict[str, Any]]) -> Iterator[tuple[Proc, Proc, dict[str, Any]]]:
    """``cti serve`` listening first (so that no caller finds the IVR closed), then ``cti sim`` at x20."""
    path, doc = config
    procs: list[Proc] = []
    try:
        server = Proc("serve", str(path))
        procs.append(server)
        server.wait_for(r"centre\.process: cti: FastAGI on", timeout=20)
        sim = Proc("sim", "--config", str(path), "--speed", "20", "--duration", "3600")
        procs.append(sim)
        yield sim, server, doc
    finally:
        for proc in procs:
            proc.kill()


def wallboard_with_calls(port: int, timeout: float) -> dict[str, Any]:
    """Log in as the supervisor and return the first wallboard showing calls in the queues."""
    deadline = time.monotonic() + timeout
    user, password = SUPERVISOR
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=timeout) as ws:
        ws.send(json.dumps({"v": 1, "type": "hello", "id": 1, "agent_id": user, "password": password,
                            "role": "supervisor"}))
        last: dict[str, Any] = {}
        while (left := deadline - time.monotonic()) > 0:
            msg = json.loads(ws.recv(timeout=left))
            if msg.get("type") == "error":
                raise AssertionError(f"console refused the supervisor: {msg}")
            if msg.get("type") != "wallboard":
                continue
            last = msg
            # only the IVR's menu sends callers to sales or billing (its fallback queue is another one)
            if sum(q["waiting"] + q["answered"] + q["abandoned"] for q in msg["queues"]
                   if q["name"] in ("sales", "billing")) > 0:
                return msg
    raise AssertionError(f"no IVR-routed calls on the wallboard within {timeout} s; last: {last}")


@pytest.mark.timeout(60)
def test_serve_and_sim_subprocesses_carry_calls_and_stop_on_sigterm(
        running: tuple[Proc, Proc, dict[str, Any]]) -> None:
    """The server logs in to the simulator's AMI, callers walk its IVR into the queues (seen on the
    wallboard), /healthz answers, and SIGTERM ends both processes with status 0 and no traceback."""
    sim, server, doc = running
    server.wait_for(r"centre\.server: sim: connected", timeout=20)
    sim.wait_for(r"AMI: cti logged in", timeout=10)
    http = doc["listen"]["http"]["port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=5) as resp:
        assert resp.status == 200
        assert "connections" in json.loads(resp.read())
    board = wallboard_with_calls(http, timeout=15)
    assert board["health"]["ami"] == {"sim": True}
    assert {q["name"] for q in board["queues"]} == {"sales", "support", "billing"}

    code, sim_out, sim_err = sim.terminate()  # the PBX first: callers must not dial a stopped server
    assert code == 0, sim_err[-3000:]
    assert "Traceback" not in sim_err, sim_err[-3000:]
    code, _, server_err = server.terminate()
    assert code == 0, server_err[-3000:]
    assert "Traceback" not in server_err, server_err[-3000:]
    arrived = re.search(r"\barrived=(\d+)", sim_out)
    assert arrived is not None and int(arrived.group(1)) > 0, sim_out
    assert "FastAGI connection for" not in sim_err, sim_err[-3000:]  # every caller reached the IVR


@pytest.mark.timeout(30)
def test_serve_exits_cleanly_on_sigterm_without_a_pbx(config: tuple[Path, dict[str, Any]]) -> None:
    """With nobody on the AMI port the server keeps retrying, still serves /healthz, and a SIGTERM ends it
    with status 0."""
    path, doc = config
    server = Proc("serve", str(path))
    try:
        server.wait_for(r"centre\.process: cti: FastAGI on", timeout=20)
        with urllib.request.urlopen(f"http://127.0.0.1:{doc['listen']['http']['port']}/healthz", timeout=5) as r:
            assert r.status == 200
        code, _, err = server.terminate()
        assert code == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
    finally:
        if server.popen.poll() is None:
            server.popen.kill()
            server.popen.communicate()


def test_sim_keeps_the_fastagi_connect_timeout_in_real_seconds() -> None:
    """At --speed N the simulated clock runs N times faster, but connecting to a live server is a network
    wait: build_sim scales the configured connect timeout by N so that it stays the same in real seconds."""
    from centre.sim_pbx import build_sim
    from config.load import load_config
    from sim.clock import VirtualClock

    cfg = load_config(DEMO)
    configured = cfg.sim.agi.connect_timeout_s
    assert build_sim(cfg, VirtualClock(), inbound=False).agi.settings.connect_timeout_s == configured
    assert build_sim(cfg, VirtualClock(), inbound=False, speed=20).agi.settings.connect_timeout_s == configured * 20


@pytest.mark.timeout(30)
def test_serve_start_up_is_a_few_lines_that_say_what_runs_where(tmp_path: Path) -> None:
    """At INFO, ``cti serve`` starts with the lines a person reads (version and database, the PBXs, the
    listeners, each campaign once) and nothing from the libraries: no Alembic plug-in or migration lines,
    no websockets "server listening/closing", no doubled logger names."""
    path, doc = write_config(tmp_path)
    doc["dialer"] = yaml.safe_load(DEMO.read_text())["dialer"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    server = Proc("serve", str(path))
    try:
        server.wait_for(r"centre\.process: cti: FastAGI on", timeout=20)
        code, _, err = server.terminate()
    finally:
        if server.popen.poll() is None:
            server.popen.kill()
            server.popen.communicate()
    assert code == 0, err[-3000:]
    info = [line.split(" INFO ", 1)[1].strip() for line in err.splitlines() if " INFO " in line]
    db = tmp_path / "cti.sqlite3"
    ami = doc["asterisk"][0]
    fastagi, http = doc["listen"]["fastagi"], doc["listen"]["http"]
    assert info == [
        "dialer: campaign renewals: 300 leads (300 new)",
        f"centre.process: cti {__version__}: database sqlite:///{db.resolve()}, schema created ({HEAD})",
        f"centre.process: cti: AMI to sim at 127.0.0.1:{ami['port']}",
        f"centre.process: cti: FastAGI on 127.0.0.1:{fastagi['port']} (1 flow), consoles on "
        f"http://127.0.0.1:{http['port']}/",
    ], err[-3000:]
