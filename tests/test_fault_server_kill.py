"""The server killed (SIGKILL) mid-call and started again (issue 19), with real processes: ``cti serve`` and
``cti sim``. While the server is down, the test hangs up one agent's call at the PBX itself (an AMI Hangup of
its own); the other agent's call goes on.

The restarted server gives the surviving call back to its agent (the PBX's channels and the state log), does
not leave the other agent on a call that is gone, and closes the record the dead server left open for the call
that ended while nobody watched (its outcome as it was known, ``unknown`` if none was). The lead-level guarantees of a
SIGKILL mid-campaign are test_dialer_crash's. Every wait has a deadline; no sleeps."""

from __future__ import annotations

import signal
import socket
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.test_cli_sim_serve import Proc
from tests.test_dialer_crash import log_in
from tests.test_fault_pbx import Board, configs, on_calls, pbx_calls, query, show_channels

SECRET = "cti-secret"  # demo.yaml's ${CTI_AMI_SECRET:-cti-secret}


def hang_up_call(port: int, user: str, linkedid: str) -> list[str]:
    """Hang up, at the PBX, every channel of the call ``linkedid`` (our own AMI login); their names."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        channels = [f["Channel"] for f in show_channels(sock, user, SECRET) if f.get("Linkedid") == linkedid]
        for n, channel in enumerate(channels):
            sock.sendall(f"Action: Hangup\r\nChannel: {channel}\r\nCause: 16\r\nActionID: h{n}\r\n\r\n".encode())
        data = b""
        while data.count(b"ActionID: h") < len(channels):
            chunk = sock.recv(65536)
            assert chunk, "the PBX closed the connection"
            data += chunk
    return channels


@pytest.mark.timeout(90)
def test_a_killed_server_gives_surviving_calls_back_to_their_agents_and_closes_the_records_of_the_others(
        tmp_path: Path) -> None:
    procs: list[Proc] = []
    stack = ExitStack()
    try:
        sim_path, serve_path, doc = configs(tmp_path, 0)
        ami = doc["asterisk"][0]
        serve_path.write_text(serve_path.read_text().replace("port: 0", f"port: {ami['port']}", 1))
        http = doc["listen"]["http"]["port"]
        server = Proc("serve", str(serve_path))
        procs.append(server)
        server.wait_for(r"centre\.process: cti: FastAGI on", timeout=20)
        sim = Proc("sim", "--config", str(sim_path), "--speed", "5", "--duration", "3600")
        procs.append(sim)
        server.wait_for(r"centre\.server: sim: connected", timeout=20)
        log_in(http, stack)
        board = Board(http, stack)
        before = on_calls(board.until(lambda b: len(on_calls(b)) >= 3, "three agents on calls", 40))

        server.popen.send_signal(signal.SIGKILL)
        server.popen.wait(timeout=10)
        stack.close()  # the consoles' connections died with the server
        db = tmp_path / "cti.sqlite3"
        open_at_kill = {k for (k,) in query(db, "select call_key from customer_interactions where ended_at is null")}
        (ended_agent, ended_call), *others = sorted(before.items())
        assert hang_up_call(ami["port"], ami["username"], ended_call), "the call had no channel to hang up"
        alive = pbx_calls(ami["port"], ami["username"], SECRET)
        assert ended_call not in alive
        kept = {agent: call for agent, call in others if call in alive}
        assert kept, f"no other call went on: {before}, PBX now {alive}"

        again = Proc("serve", str(serve_path))
        procs.append(again)
        again.wait_for(r"sim: \d+ call records the last run left open were closed", timeout=30)
        board = Board(http, stack)
        after = board.until(lambda b: all(on_calls(b).get(a) == c for a, c in kept.items()
                                          if c in pbx_calls(ami["port"], ami["username"], SECRET)),
                            "the surviving calls back with their agents", 15)
        assert on_calls(after).get(ended_agent) != ended_call, "an agent left on a call the PBX no longer has"
        state = next(a["state"] for a in after["agents"] if a["agent_id"] == ended_agent)
        assert state in ("wrap_up", "ready", "not_ready"), state
        rows = query(db, "select outcome, ended_at is not null from customer_interactions "
                         f"where call_key = 'sim/{ended_call}'")
        assert rows == [("answered", 1)], rows  # closed, with what was known of it: it had been answered
        last_seen = pbx_calls(ami["port"], ami["username"], SECRET)
        code, _, err = again.terminate()  # first: its call records are flushed, the PBX goes on
        assert code == 0, err[-3000:]
        code, _, err = sim.terminate()
    finally:
        stack.close()
        for proc in procs:
            proc.kill()
    # the records the dead server left open: closed, unless their call was still on the PBX at the end
    still = {k for (k,) in query(db, "select call_key from customer_interactions where ended_at is null")}
    stale = [k for k in open_at_kill & still if k.split("/")[1] not in last_seen]
    assert not stale, f"records of calls the PBX no longer had left open: {stale}"
    assert open_at_kill - still, "no record of the dead server's was closed"
