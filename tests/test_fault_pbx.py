"""The AMI connection dropped mid-call, then the PBX restarted (issue 19), with real processes and sockets:
``cti serve`` reaches ``cti sim``'s AMI through a TCP proxy the test cuts; later the simulator is killed
(SIGKILL: every channel gone) and started again on the same port.

The demo's outbound campaign runs (test_dialer_crash's, with its agents). After the drop, calls the PBX still
has keep their agents (the resync's CoreShowChannels, read by the test from the simulator itself, is the
truth). After the restart no agent is left on a call the PBX no longer has, and once the server stops every
call record open at the restart is closed: its interaction has an end, an answered call keeps ``answered``
and has its one ACD record; the dialler's attempts whose calls it knew are ended, and no lead has two attempts
open. Every wait has a deadline; no sleeps."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml
from websockets.sync.client import ClientConnection, connect

from tests.tcp_proxy import TcpProxy
from tests.test_cli_sim_serve import SUPERVISOR, Proc, write_config
from tests.test_dialer_crash import campaign_config, log_in

AGENTS = ("1002", "1003", "1004", "1011")  # the demo's sales agents (test_dialer_crash logs them in)
SPEED = "10"  # the simulator's speed; calls talk 600 s (a minute of real time): a short outage is survived


def configs(tmp: Path, proxy_port: int, campaign: bool = False) -> tuple[Path, Path, dict[str, Any]]:
    """The simulator's config (its AMI on a free port) and the server's (the same, its AMI through the proxy,
    quick reconnects, passwords for the agents); ``campaign``: with test_dialer_crash's outbound campaign."""
    sim_path, doc = write_config(tmp) if not campaign else campaign_config(tmp)[:2]
    # callers enough to keep agents busy, yet some of them idle now and then for the campaign to dial
    doc["sim"]["inbound"] = [{"did": "+18005550100", "rate_per_hour": 1 if campaign else 1800, "flow": "main"}]
    doc["sim"].setdefault("agents", {})["talk_time"] = {"median_s": 600, "sigma": 0.1}
    sim_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    served = yaml.safe_load(sim_path.read_text())
    served["asterisk"][0].update({"port": proxy_port, "reconnect_initial": 0.2, "reconnect_max": 1.0})
    hashed = next(a["password_hash"] for a in served["acd"]["agents"] if a["id"] == "1001")
    for agent in served["acd"]["agents"]:
        if agent["id"] in AGENTS:
            agent["password_hash"] = hashed
    serve_path = tmp / "serve.yaml"
    serve_path.write_text(yaml.safe_dump(served, sort_keys=False))
    return sim_path, serve_path, doc


def show_channels(sock: socket.socket, user: str, secret: str) -> list[dict[str, str]]:
    """Log in on ``sock`` (a plain AMI connection of our own) and read CoreShowChannels: one dict per
    channel."""
    sock.sendall(f"Action: Login\r\nUsername: {user}\r\nSecret: {secret}\r\nActionID: l\r\n\r\n"
                 "Action: CoreShowChannels\r\nActionID: c\r\n\r\n".encode())
    data = b""
    while b"Event: CoreShowChannelsComplete" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the PBX closed the connection: {data[-500:]!r}"
        data += chunk
    text = data.decode(errors="replace")
    assert "Authentication accepted" in text, text[:500]
    blocks = (dict(line.split(": ", 1) for line in block.split("\r\n") if ": " in line)
              for block in text.split("\r\n\r\n"))
    return [fields for fields in blocks if fields.get("Event") == "CoreShowChannel"]


def pbx_calls(port: int, user: str, secret: str) -> set[str]:
    """The Linkedids of the PBX's channels now."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return {fields["Linkedid"] for fields in show_channels(sock, user, secret)}


class Board:
    """A supervisor's wallboard over the real websocket."""

    def __init__(self, port: int, stack: ExitStack) -> None:
        self.ws: ClientConnection = stack.enter_context(connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10))
        user, password = SUPERVISOR
        self.ws.send(json.dumps({"v": 1, "type": "hello", "id": 1, "agent_id": user, "password": password,
                                 "role": "supervisor"}))

    def until(self, check: Callable[[dict[str, Any]], bool], what: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while (left := deadline - time.monotonic()) > 0:
            msg = json.loads(self.ws.recv(timeout=left))
            if msg.get("type") == "wallboard":
                last = msg
                if check(msg):
                    return msg
        raise AssertionError(f"not within {timeout} s: {what}; last wallboard: {last}")


def on_calls(board: dict[str, Any]) -> dict[str, str]:
    """Agent -> the call it is talking on (not one ringing it, not one it is wrapping up)."""
    return {a["agent_id"]: a["call_id"] for a in board["agents"] if a["call_id"] and a["state"] == "on_call"}


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return list(conn.execute(sql))


@pytest.mark.timeout(90)
def test_after_an_ami_drop_calls_keep_their_agents_and_after_a_pbx_restart_every_record_is_closed(
        tmp_path: Path) -> None:
    procs: list[Proc] = []
    stack = ExitStack()
    proxy: TcpProxy | None = None
    try:
        proxy = TcpProxy("127.0.0.1", 0)  # its upstream: the simulator's port, once chosen
        sim_path, serve_path, doc = configs(tmp_path, proxy.port, campaign=True)
        sim_port = doc["asterisk"][0]["port"]
        proxy.upstream = ("127.0.0.1", sim_port)
        ami = doc["asterisk"][0]
        secret = "cti-secret"  # demo.yaml's ${CTI_AMI_SECRET:-cti-secret}
        http = doc["listen"]["http"]["port"]

        server = Proc("serve", str(serve_path))
        procs.append(server)
        server.wait_for(r"centre\.process: cti: FastAGI on", timeout=20)
        sim = Proc("sim", "--config", str(sim_path), "--speed", SPEED, "--duration", "3600")
        procs.append(sim)
        server.wait_for(r"centre\.server: sim: connected", timeout=20)
        log_in(http, stack)
        board = Board(http, stack)
        before = on_calls(board.until(lambda b: len(on_calls(b)) >= 2, "two agents on calls", 40))

        # 1. the AMI connection drops (the PBX goes on); the server retries against a closed door a while
        mark = len(server.lines)
        proxy.cut()
        server.wait_for(r"sim: AMI connection lost", timeout=10, since=mark)
        assert proxy.wait_refused(2, timeout=10), "the server did not try to reconnect"
        mark = len(server.lines)
        proxy.restore()
        server.wait_for(r"centre\.server: sim: connected", timeout=20, since=mark)
        alive = pbx_calls(sim_port, ami["username"], secret)
        survivors = {agent: call for agent, call in before.items() if call in alive}
        gone = {agent: call for agent, call in before.items() if call not in alive}
        after = board.until(lambda b: b["health"]["ami"].get("sim") is True
                            and not set(gone.items()) & set(on_calls(b).items()),
                            "the calls that ended while the link was down are ended on the wallboard", 15)
        assert survivors, f"no call survived a short outage: before {before}, PBX now {alive}"
        shown = on_calls(after)
        for agent, call in survivors.items():
            assert shown.get(agent) == call or call not in pbx_calls(sim_port, ami["username"], secret), \
                f"agent {agent} lost call {call} the PBX still has: {shown}"

        # 2. the PBX restarts: every channel gone
        old = set(before.values()) | set(shown.values())
        db = tmp_path / "cti.sqlite3"
        mark = len(server.lines)
        sim.popen.kill()
        sim.popen.communicate()
        server.wait_for(r"sim: AMI connection lost", timeout=10, since=mark)
        records_at_kill = {k for (k,) in query(db, "select call_key from customer_interactions "
                                                   "where ended_at is null")}
        attempts_at_kill = {r for (r,) in query(db, "select ref from dialer_attempts where ended_at is null")}
        sim = Proc("sim", "--config", str(sim_path), "--speed", SPEED, "--duration", "3600")
        procs.append(sim)
        server.wait_for(r"centre\.server: sim: connected", timeout=20, since=mark)
        board.until(lambda b: b["health"]["ami"].get("sim") is True and not set(on_calls(b).values()) & old,
                    "no agent on a call of the PBX before its restart", 15)
        code, _, err = sim.terminate()
        code, _, err = server.terminate()
        assert code == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
    finally:
        stack.close()
        for proc in procs:
            proc.kill()
        if proxy is not None:
            proxy.close()

    still = {k for (k,) in query(db, "select call_key from customer_interactions where ended_at is null")}
    assert records_at_kill and not records_at_kill & still, \
        f"records of calls the PBX lost left open: {records_at_kill & still}"
    # the dialler's attempts under way at the restart: those whose call it knew are ended with a result; one
    # still dialling (its OriginateResponse lost with the link) is the watchdog's: ``unknown`` once the
    # Originate's time is over (75 s at the law's 15 s of ringing), or at the next start
    refs = ",".join(f"'{r}'" for r in attempts_at_kill)
    cut = query(db, f"select ref, result, ended_at is not null from dialer_attempts where ref in ({refs})")
    assert all(ended for _, result, ended in cut if result), f"attempts the PBX restart cut short left open: {cut}"
    twice = query(db, "select lead_id from dialer_attempts where ended_at is null group by lead_id "
                      "having count(*) > 1")
    assert twice == [], f"leads with two attempts open at once: {twice}"
    for call in old:
        rows = query(db, f"select outcome, ended_at is not null from customer_interactions "
                         f"where call_key = 'sim/{call}'")
        assert rows == [("answered", 1)], f"call {call}: {rows}"
        acd = query(db, f"select outcome, agent_id from acd_queue_calls where call_id = '{call}'")
        assert len(acd) == 1 and acd[0][0] == "answered", f"call {call}: ACD records {acd}"
