"""Issue #18 as an operator runs it: two ``cti serve --redis URL --node ID`` processes (nodes A and B), each next
to its own simulated Asterisk (``cti sim --pbx``, an OS process of its own speaking AMI and FastAGI over TCP),
sharing the real Redis (a key prefix of the test's own, removed afterwards) and one PostgreSQL database (fresh,
as docs/scaling.md asks of several nodes). Every node lists both PBXs and is home of its own.

Agents log in on the consoles of either node, split so that calls must cross: A's consoles have the sales agents,
B's the support and billing ones. What the test holds them to, from what the processes show:

* both nodes start together on the new database (they migrate it one after the other), are ready (``/readyz``)
  and each holds its own PBX's lease (``/healthz`` ``leases.held``);
* one pool, consoles on any node: callers on pbxa are answered by agents logged in at B and callers on pbxb by
  agents logged in at A, and those agents' consoles got the call's pop (its call id and the caller's number);
* no agent ever has two calls at once and no caller rings two agents at once, over both PBXs: read from the
  PBXs' own AMI events (a watcher of the test's own logged in to each simulator);
* node A killed (SIGKILL): B holds ``ami:pbxa`` within the lease's ttl and the keeper's intervals, is ready with
  pbxa connected, and a caller arriving on pbxa afterwards is answered by an agent (A's FastAGI is gone with A, so
  such a caller skips the IVR: the dialplan's fallback queue, routed by B);
* node A started again: once it has run a lease ttl it asks for pbxa back, B hands it back at its next renewal, A
  holds and connects it, and a caller arriving on pbxa afterwards is answered;
* both nodes wrote their PBX's call records to the one database; no process logged a traceback.

Time: ``cti serve`` runs in real time; the simulators at x4 (their people: talk, patience, IVR prompts; the
FastAGI connect timeout stays in real seconds, ``centre.sim_pbx.build_sim``). The server's own timers (wrap-up,
ring timeout, leases) are real seconds. Every wait has a deadline; the whole test takes about 50-65 s."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from sqlalchemy import create_engine, text
from websockets.exceptions import ConnectionClosed

from tests.conftest import REDIS_URL
from tests.ws_console import ready_console

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "examples" / "demo.yaml"
PASSWORD = "demo-password"  # demo.yaml's documented password (agent 1001's hash, given to every agent here)
AMI_SECRET = "cti-secret"  # demo.yaml's ${CTI_AMI_SECRET:-cti-secret}
TTL = 3.0  # node.lease_ttl
SPEED = "4"  # the simulators' speed
NODES = ("A", "B")
PBX = {"A": "pbxa", "B": "pbxb"}
CONSOLES = {"A": ("1002", "1003", "1004", "1011"),  # sales (1004 and 1011 also billing, 1002 also support)
            "B": ("1005", "1006", "1007", "1008", "1009", "1010")}  # support and billing
AT = {agent: node for node, agents in CONSOLES.items() for agent in agents}
AGENT_CHANNEL = re.compile(r"^PJSIP/(1\d{3})-")
CALLER_CHANNEL = re.compile(r"^PJSIP/trunk-")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.skip(f"redis-server not reachable at {REDIS_URL}: {exc.__class__.__name__}")
    return client


# ------------------------------------------------------------------------------------------------ the configs
def write_configs(tmp: Path, db_url: str, prefix: str) -> dict[str, dict[str, Any]]:
    """One configuration file per node (``node<N>.yaml``): demo.yaml without its campaign, both PBXs on free
    ports, this node's listeners on free ports, home of its own PBX, a short lease ttl; each simulator reads its
    node's file (``--pbx``: which PBX it is; its FastAGI goes to that node). The documents, by node."""
    base = yaml.safe_load(DEMO.read_text())
    base.pop("dialer", None)  # inbound only: the campaign's calling window depends on the time of day
    hashed = next(a["password_hash"] for a in base["acd"]["agents"] if a["id"] == "1001")
    for agent in base["acd"]["agents"]:
        agent["password_hash"] = hashed
    for queue in base["acd"]["queues"]:
        queue["wrapup"] = 2  # real seconds: agents free again soon
    template = base["asterisk"][0]
    base["asterisk"] = [{**template, "name": PBX[n], "port": free_port(), "reconnect_initial": 0.2,
                         "reconnect_max": 1.0} for n in NODES]
    base["database"] = {"url": db_url}
    base["redis"] = {"url": "redis://127.0.0.1:1/0", "prefix": prefix}  # the url: --redis on the command line
    base["log"] = {"level": "INFO"}
    base["sim"]["inbound"] = [{"did": "+18005550100", "rate_per_hour": 240, "flow": "main"}]
    base["sim"]["agents"].update({"no_answer_prob": 0.0, "talk_time": {"median_s": 40, "sigma": 0.3}})
    docs: dict[str, dict[str, Any]] = {}
    for n in NODES:
        doc = {**base,
               "listen": {"fastagi": {"host": "127.0.0.1", "port": free_port()},
                          "http": {"host": "127.0.0.1", "port": free_port()}},
               "metrics": {"host": "127.0.0.1", "port": free_port(), "check_cache": 0},
               "node": {"home": [PBX[n]], "lease_ttl": TTL}}
        path = tmp / f"node{n}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        path.chmod(0o600)
        docs[n] = doc
    return docs


# ------------------------------------------------------------------------------------------------ processes
class Process:
    """A ``cti`` subprocess (this checkout's code) whose stderr goes to a file, read for log lines."""

    def __init__(self, name: str, log: Path, *args: str) -> None:
        self.name = name
        self.log = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        with log.open("wb") as err:
            self.popen = subprocess.Popen([sys.executable, "-m", "centre.cli", *args], cwd=ROOT, env=env,
                                          stdout=subprocess.PIPE, stderr=err)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.text().splitlines():
                if regex.search(line):
                    return line
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.popen.returncode}) before {pattern!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no line matching {pattern!r} within {timeout} s")
            time.sleep(0.05)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (SIGKILL past ``timeout``) by its pid, and reap it: its exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.communicate()
        return self.popen.returncode


# ------------------------------------------------------------------------------------------------ the PBXs' view
@dataclass
class AmiWatch:
    """The test's own AMI login to one simulator: what that PBX did, from its events, timed on this process's
    monotonic clock (both watchers share it)."""

    pbx: str
    port: int
    agent_chans: dict[str, list[Any]] = field(default_factory=dict)  # uid -> [agent, t0, t1 | None]
    callers: dict[str, float] = field(default_factory=dict)  # caller channel uid -> when it appeared
    numbers: dict[str, str] = field(default_factory=dict)  # caller channel uid -> the caller's number
    dials: list[tuple[str, str]] = field(default_factory=list)  # (caller uid, agent channel uid)
    answered: dict[str, tuple[str, float]] = field(default_factory=dict)  # caller uid -> (agent, when)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sock: socket.socket | None = None

    def start(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.sock.sendall(f"Action: Login\r\nUsername: cti\r\nSecret: {AMI_SECRET}\r\nActionID: w\r\n\r\n".encode())
        threading.Thread(target=self._read, name=f"ami-watch-{self.pbx}", daemon=True).start()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()

    def _read(self) -> None:
        assert self.sock is not None
        self.sock.settimeout(None)
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            *blocks, buf = buf.split(b"\r\n\r\n")
            now = time.monotonic()
            for block in blocks:
                fields = dict(line.split(": ", 1) for line in block.decode(errors="replace").split("\r\n")
                              if ": " in line)
                with self.lock:
                    self._event(fields, now)

    def _event(self, msg: dict[str, str], now: float) -> None:
        name, uid = msg.get("Event"), msg.get("Uniqueid", "")
        if name == "Newchannel":
            channel = msg.get("Channel", "")
            m = AGENT_CHANNEL.match(channel)
            if m:
                self.agent_chans[uid] = [m.group(1), now, None]
            elif CALLER_CHANNEL.match(channel):
                self.callers[uid] = now
                self.numbers[uid] = msg.get("CallerIDNum", "")
        elif name == "Hangup" and uid in self.agent_chans:
            self.agent_chans[uid][2] = now
        elif name == "DialBegin" and msg.get("DestUniqueid", "") in self.agent_chans:
            self.dials.append((uid, msg["DestUniqueid"]))
        elif name == "DialEnd" and msg.get("DialStatus") == "ANSWER":
            dest = msg.get("DestUniqueid", "")
            if dest in self.agent_chans:
                self.answered[uid] = (self.agent_chans[dest][0], now)

    def answered_by(self, since: float = 0.0) -> dict[str, str]:
        """Caller uid -> the agent who answered, for the callers who appeared from ``since`` on."""
        with self.lock:
            return {c: agent for c, (agent, _) in self.answered.items() if self.callers.get(c, -1.0) >= since}


def check_no_double_calls(watches: list[AmiWatch]) -> int:
    """An agent's channels, over both PBXs, never overlap; a caller never rings two agents at once. How many
    agent channels were judged."""
    end = time.monotonic()
    by_agent: dict[str, list[tuple[float, float, str]]] = {}
    for w in watches:
        with w.lock:
            for uid, (agent, t0, t1) in w.agent_chans.items():
                by_agent.setdefault(agent, []).append((t0, end if t1 is None else t1, f"{w.pbx}/{uid}"))
    for agent, spans in by_agent.items():
        spans.sort()
        for (_, e1, c1), (s2, _, c2) in zip(spans, spans[1:], strict=False):
            assert s2 >= e1, f"agent {agent} had two calls at once: {c1} until {e1:.2f}, {c2} from {s2:.2f}"
    for w in watches:
        with w.lock:
            per_caller: dict[str, list[tuple[float, float, str]]] = {}
            for caller, dest in w.dials:
                _, t0, t1 = w.agent_chans[dest]
                per_caller.setdefault(caller, []).append((t0, end if t1 is None else t1, dest))
        for caller, spans in per_caller.items():
            spans.sort()
            for (_, e1, d1), (s2, _, d2) in zip(spans, spans[1:], strict=False):
                assert s2 >= e1, f"{w.pbx} caller {caller} rang two agents at once: {d1}, {d2}"
    return sum(len(v) for v in by_agent.values())


# ------------------------------------------------------------------------------------------------ HTTP, consoles
def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def until(check: Callable[[], Any], what: str, timeout: float, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(every)


class Console:
    """An agent's console on one node: logged in and ready, then every frame the node pushes kept (a thread of
    its own reads them)."""

    def __init__(self, port: int, agent: str, consoles: ExitStack) -> None:
        self.agent = agent
        self.frames: list[dict[str, Any]] = []
        self.ws = ready_console(port, agent, PASSWORD, consoles)
        threading.Thread(target=self._read, name=f"console-{agent}", daemon=True).start()

    def _read(self) -> None:
        try:
            for raw in self.ws:
                self.frames.append(json.loads(raw))
        except ConnectionClosed:
            pass

    def pops(self) -> dict[str, str]:
        """call_id -> ani of the pops this console was sent."""
        return {f["call_id"]: f.get("ani", "") for f in list(self.frames) if f.get("type") == "pop"}


# ------------------------------------------------------------------------------------------------ the test
@pytest.fixture
def shared_redis() -> Iterator[tuple[redis.Redis, str]]:
    """The real Redis (tests.conftest.REDIS_URL) and a key prefix of this test's own, its keys removed after."""
    client = redis_or_skip()
    prefix = f"test-procs-{uuid.uuid4().hex[:10]}"
    try:
        yield client, prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.mark.timeout(150)
def test_two_serve_processes_one_centre_and_a_node_killed(tmp_path: Path, shared_redis: tuple[redis.Redis, str],
                                                          pg_url: str) -> None:
    client, prefix = shared_redis
    docs = write_configs(tmp_path, pg_url, prefix)
    ami = {n: docs[n]["asterisk"][i]["port"] for i, n in enumerate(NODES)}
    http = {n: docs[n]["listen"]["http"]["port"] for n in NODES}
    ops = {n: docs[n]["metrics"]["port"] for n in NODES}
    procs: dict[str, Process] = {}
    watches: list[AmiWatch] = []
    consoles = ExitStack()
    started = time.monotonic()
    try:
        # 1. Two nodes started together on a new database, then each one's PBX.
        for n in NODES:
            procs[n] = Process(f"node {n}", tmp_path / f"node{n}.log", "serve", str(tmp_path / f"node{n}.yaml"),
                               "--redis", REDIS_URL, "--node", f"node-{n.lower()}")
        for n in NODES:
            procs[n].wait_for(r"centre\.process: cti: FastAGI on", timeout=40)
        for i, n in enumerate(NODES):
            procs[PBX[n]] = Process(PBX[n], tmp_path / f"{PBX[n]}.log", "sim", "--config",
                                    str(tmp_path / f"node{n}.yaml"), "--pbx", PBX[n], "--speed", SPEED,
                                    "--seed", str(18 + i), "--duration", "3600")
        for n in NODES:
            procs[PBX[n]].wait_for(r"simulated Asterisk: AMI on", timeout=30)
            watch = AmiWatch(PBX[n], ami[n])
            watch.start()
            watches.append(watch)
        for n in NODES:
            procs[n].wait_for(rf"centre\.server: {PBX[n]}: connected", timeout=20)
        for n in NODES:  # ready, each holding its own PBX
            status, body = until(lambda n=n: (r := get(ops[n], "/readyz"))[0] == 200 and r, f"node {n} ready", 10)
            assert body["ami"] == {PBX[n]: {"up": True, "detail": body["ami"][PBX[n]]["detail"]}}, body
            _, health = get(ops[n], "/healthz")
            assert health["leases"]["held"] == [f"ami:{PBX[n]}"], health
            assert health["leases"]["node"] == f"node-{n.lower()}" and health["agent_pool"] == "up", health
        console = {agent: Console(http[n], agent, consoles) for n in NODES for agent in CONSOLES[n]}

        # 2. One pool: each PBX's callers answered by agents logged in at the other node, whose consoles (on that
        # other node) got the call's pop.
        watch = dict(zip(NODES, watches, strict=True))

        def crossed(n: str, other: str) -> bool:
            return any(AT.get(agent) == other and console[agent].pops().get(caller) == watch[n].numbers[caller]
                       for caller, agent in watch[n].answered_by().items())

        until(lambda: crossed("A", "B") and crossed("B", "A"), "callers on each PBX answered by agents logged in "
              "at the other node, with the pop on their console", 40)
        assert check_no_double_calls(watches) >= 4

        # 3. Node A dies: B takes pbxa over within the ttl and the keeper's intervals, and serves its callers.
        killed = time.monotonic()
        procs["A"].popen.send_signal(signal.SIGKILL)
        assert procs["A"].popen.wait(10) == -signal.SIGKILL

        def held_by_b() -> bool:
            return "ami:pbxa" in get(ops["B"], "/healthz")[1]["leases"]["held"]

        bound = TTL + TTL / 2 + 1.5 * TTL / 8  # lapse, B's next look at free leases, the wait for a live home
        until(held_by_b, "node B holds ami:pbxa", bound + 5, every=0.05)
        took = time.monotonic() - killed
        assert TTL - TTL / 3 - 0.5 < took <= bound + 1.5, f"pbxa taken over {took:.2f} s after the kill"
        taken = time.monotonic()
        status, body = until(lambda: (r := get(ops["B"], "/readyz"))[0] == 200 and len(r[1]["ami"]) == 2 and r,
                             "node B ready with both PBXs", 10)
        assert {name: link["up"] for name, link in body["ami"].items()} == {"pbxa": True, "pbxb": True}, body
        procs["B"].wait_for(r"centre\.server: pbxa: connected", timeout=5)
        until(lambda: watch["A"].answered_by(since=taken), "a caller arriving on pbxa after the takeover answered",
              40)

        # 3b. Node A back: once it has run a ttl it asks for pbxa, B hands it back at its next renewal, A takes it.
        procs["A"] = Process("node A (again)", tmp_path / "nodeA2.log", "serve", str(tmp_path / "nodeA.yaml"),
                             "--redis", REDIS_URL, "--node", "node-a")
        procs["A"].wait_for(r"centre\.process: cti: FastAGI on", timeout=40)
        back = time.monotonic()

        def home_again() -> bool:
            return "ami:pbxa" in get(ops["A"], "/healthz")[1]["leases"]["held"] \
                and "ami:pbxa" not in get(ops["B"], "/healthz")[1]["leases"]["held"]

        until(home_again, "pbxa handed back to node A", TTL + TTL / 3 + TTL / 8 + 10, every=0.05)
        procs["A"].wait_for(r"centre\.server: pbxa: connected", timeout=5)
        handed = time.monotonic()
        assert handed - back <= TTL + TTL / 3 + TTL / 8 + 3, f"pbxa back home {handed - back:.2f} s after A started"
        until(lambda: watch["A"].answered_by(since=handed), "a caller on pbxa answered after the hand-back", 40)

        # 4. The invariants over the whole run; the records of both nodes in the one database.
        judged = check_no_double_calls(watches)
        assert judged >= 8, f"only {judged} agent calls: too few to judge"
        engine = create_engine(pg_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(text("select server, count(*) from acd_queue_calls where outcome = 'answered' "
                                         "group by server")).all()
        finally:
            engine.dispose()
        assert {server for server, count in rows if count > 0} == {"pbxa", "pbxb"}, rows
        assert client.exists(f"{prefix}:lease:ami:pbxa"), "no lease key under the node's prefix"
        consoles.close()
        for name in ("pbxa", "pbxb", "A", "B"):  # the PBXs first: no caller dials a stopped node
            assert procs[name].stop() == 0, f"{name} did not exit cleanly:\n{procs[name].tail()}"
        for name, proc in procs.items():
            assert "Traceback" not in proc.text(), f"{name}:\n{proc.tail(80)}"
        print(f"wall time {time.monotonic() - started:.1f} s, takeover {took:.2f} s, back home "
              f"{handed - back:.2f} s, {judged} agent calls")
    except BaseException:
        for name, proc in procs.items():
            print(f"---- {name} (exit {proc.popen.poll()}) stderr, last lines:\n{proc.tail()}", file=sys.stderr)
        raise
    finally:
        consoles.close()
        for w in watches:
            w.close()
        for proc in procs.values():
            if proc.popen.poll() is None:
                proc.popen.kill()
            proc.popen.communicate()
