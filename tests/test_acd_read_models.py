"""The ACD's typed read models (acd/snapshots.py) and the console protocol's frames built from them at the
server's edge: frozen values in, the same JSON bytes out as before they were typed."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from acd.snapshots import AgentCall, AgentSnapshot, QueueStats, WaitingCall
from acd.states import AgentState
from agent_console.protocol import encode
from centre.wiring import IdleAgents
from tests.test_acd_support import SERVER, Harness, agent
from tests.virtual_calls import CallBench

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "console" / "read_model_frames.json"
BASIC = {"agents": [agent("a1", {"billing": 5}, teams=["blue"]), agent("a2", {"billing": 3})],
         "queues": [{"name": "billing", "skills": {"billing": 2}}]}


def console_frames(tmp_path: Path) -> dict[str, str]:
    """The demo server with two agents talking to callers, one not ready and a third caller waiting: the
    state frames of a talking and a not-ready agent and the wallboard, encoded as the hub sends them."""
    bench = CallBench(tmp_path, customers=20)
    try:
        bench.ready("1001")
        bench.arrive(keys=("1",), caller="+15550001111")
        bench.run(30)
        bench.ready("1002")
        bench.server.apply(bench.server.acd.login("1003", None, bench.server.now()))
        bench.arrive(keys=("2",), caller="+15550002222")
        bench.run(30)
        bench.arrive(keys=("1",), caller="+15550003333")  # nobody is free: this one waits
        bench.run(20)
        return {"state_1001": encode(bench.server.state_message("1001")),
                "state_1003": encode(bench.server.state_message("1003")),
                "wallboard": encode(bench.server.wallboard())}
    finally:
        bench.close()


def test_console_and_wallboard_frames_keep_their_bytes(tmp_path: Path) -> None:
    """The state and wallboard frames built from the typed snapshots are byte for byte the frames the server
    sent when the ACD returned dicts (recorded from that code in the same scenario; docs/console-protocol.md),
    plus each agent's ``call`` (caller and queue, for the wallboard page), added since."""
    frames = console_frames(tmp_path)
    wall = json.loads(frames["wallboard"])
    # added since as well: the node's leases (#18), its id the host's and the process's unless configured
    leases = wall["health"].pop("leases")
    assert leases["held"] == ["ami:sim"] and leases["store_up"] is True and leases["node"]
    golden = json.loads(GOLDEN.read_text())
    assert (frames["state_1001"], frames["state_1003"]) == (golden["state_1001"], golden["state_1003"])
    assert set(frames) == set(golden)
    assert encode(wall) == golden["wallboard"]  # byte for byte, the leases aside
    assert {a["state"] for a in wall["agents"]} >= {"on_call", "logged_out", "not_ready"}


def test_agent_snapshot_is_a_frozen_value() -> None:
    """agent_snapshot returns a frozen AgentSnapshot with the agent's call as a frozen AgentCall; it does not
    change when the agent does, and its mappings and sequences are read-only."""
    h = Harness(BASIC)
    h.ready("a1")
    h.queued("u1", "billing")
    snap = h.acd.agent_snapshot("a1")
    assert isinstance(snap, AgentSnapshot) and snap.state is AgentState.RESERVED
    assert snap.call == AgentCall(server=SERVER, uniqueid="u1", call_id="Lu1", queue="billing", caller_num="+1555u1")
    assert (snap.queues, snap.teams, dict(snap.skills)) == (("billing",), ("blue",), {"billing": 5})
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.state = AgentState.READY  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.skills["billing"] = 1  # type: ignore[index]
    h.answer("u1", "a1")
    assert snap.state is AgentState.RESERVED and h.acd.agent_snapshot("a1").state is AgentState.ON_CALL
    assert h.acd.agent_snapshot("a2").call is None


def test_queue_stats_and_waiting_calls_are_frozen_values() -> None:
    """queue_stats maps each queue to a frozen QueueStats (agents by state read-only); waiting_calls lists
    frozen WaitingCall values in service order."""
    h = Harness(BASIC)
    h.queued("u1", "billing")
    h.now += 4
    h.queued("u2", "billing")
    stats = h.acd.queue_stats(h.now)
    assert list(stats) == ["billing"] and isinstance(stats["billing"], QueueStats)
    billing = stats["billing"]
    assert (billing.name, billing.waiting, billing.longest_wait, billing.service_level) == ("billing", 2, 4, None)
    assert billing.agents["logged_out"] == 2 and billing.service_level_target.percent == 80.0
    with pytest.raises(TypeError):
        billing.agents["ready"] = 1  # type: ignore[index]
    waiting = h.acd.waiting_calls("billing", h.now)
    assert [(w.uniqueid, w.position, w.waited) for w in waiting] == [("u1", 1, 4), ("u2", 2, 0)]
    assert all(isinstance(w, WaitingCall) for w in waiting)
    with pytest.raises(dataclasses.FrozenInstanceError):
        waiting[0].position = 3  # type: ignore[misc]


def test_explain_and_the_routing_benchmark_use_the_public_read_api_only() -> None:
    """acd/explain.py and bench/acd_route.py read the ACD through its public methods: no ``x._name`` of
    another object (only their own ``self._...``)."""
    root = Path(__file__).resolve().parent.parent
    reach_ins = []
    for rel in ("acd/explain.py", "bench/acd_route.py"):
        for node in ast.walk(ast.parse((root / rel).read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                    and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                reach_ins.append(f"{rel}:{node.lineno} {ast.unparse(node)}")
    assert reach_ins == []


def test_eligible_agents_and_the_dialers_idle_count() -> None:
    """``eligible_agents`` names who meets a queue's own skills (or those of a later expansion stage); the
    dialer counts the ready, available ones among them through that public read (no ACD internals)."""
    cfg = {"agents": [agent("a1", {"billing": 5}), agent("a2", {"billing": 1}), agent("a3", {"sales": 4})],
           "queues": [{"name": "billing", "skills": {"billing": 2},
                       "expansion": [{"after": 30, "lower_min_level_by": 1}]}]}
    h = Harness(cfg)
    assert h.acd.eligible_agents("billing") == ("a1",)
    assert h.acd.eligible_agents("billing", stage=1) == ("a1", "a2")
    assert h.acd.eligible_agents("nowhere") == ()
    idle = IdleAgents(h.acd)
    assert idle("billing") == 0
    h.ready("a1", "a2")
    assert idle("billing") == 1 and idle("nowhere") == 0
