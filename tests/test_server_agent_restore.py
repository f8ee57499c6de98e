"""After a server restart agents come back as they were (issue 11, item 8): ready, not ready with its
reason, on a call (talking or holding the caller), in wrap-up, from what the PBX (resync) and the state
log in the database say; and no restored agent is offered a second call."""

from __future__ import annotations

from pathlib import Path

import pytest

from acd.events import CallOffered
from centre.server import CtiServer
from sim.memory_transport import MemoryConnector
from tests.virtual_calls import CallBench, Pushed, inline


def restart(bench: CallBench) -> CtiServer:
    """Stop the server (its recorder writes what it holds) and start a new one on the same PBX and database;
    the bench then drives the new one."""
    bench.server.stop()
    bench.run(2.0)
    fresh = CtiServer(bench.cfg, clock=bench.clock,
                      ami_connector=lambda s, f: MemoryConnector(bench.stack.net, s, f))
    fresh.open_database(inline)
    bench.server = bench.stack.server = fresh
    bench.pushed = Pushed()
    fresh.pusher = bench.pushed
    fresh.subscribe(bench.events.append)
    from centre.console_backend import ServerConsoleBackend

    bench.backend = ServerConsoleBackend(fresh)
    fresh.start()
    return fresh


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'restore.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))


def test_agents_come_back_as_they_were_and_get_no_second_call(tmp_path: Path, db_url: str) -> None:
    bench = CallBench(tmp_path, url=db_url, customers=50, wrapup=600.0)
    bench.ready("1003", "1005", "1006", "1004")
    bench.server.apply(bench.server.acd.not_ready("1004", "lunch", bench.server.now()))
    talking = bench.arrive(keys=("1",))  # sales -> 1003
    bench.run(20)
    held = bench.arrive(keys=("2",))  # support -> 1005 (most skilled)
    bench.run(20)
    bench.arrive(keys=("2",))  # support -> 1006
    bench.run(20)
    assert [bench.state(a) for a in ("1003", "1005", "1006")] == ["on_call"] * 3
    held_id = bench.server.call_for_agent("1005").queued.call_id
    bench.act("1005", "hold", call_id=held_id)
    ended_id = bench.server.call_for_agent("1006").queued.call_id
    bench.act("1006", "hangup", call_id=ended_id)
    bench.run(3)
    bench.ready("1002")  # sales 8: ready for the next sales call
    before = {a: bench.server.acd.agent_snapshot(a) for a in ("1002", "1003", "1004", "1005", "1006", "1007")}
    assert [s.state for s in before.values()] == ["ready", "on_call", "not_ready", "on_call", "wrap_up",
                                                     "logged_out"]

    server = restart(bench)
    bench.run(5)
    after = {a: server.acd.agent_snapshot(a) for a in before}
    assert {a: s.state for a, s in after.items()} == {a: s.state for a, s in before.items()}
    assert after["1004"].reason == "lunch"
    assert after["1003"].call.uniqueid == talking.uniqueid
    assert after["1005"].call.uniqueid == held.uniqueid
    assert server.call_for_agent("1003").state == "connected"
    assert server.call_for_agent("1005").state == "held"
    assert abs(after["1006"].since - before["1006"].since) < 1.0  # the same wrap-up goes on
    assert [m["status"] for m in bench.pushed.to("1005", "call")] == ["held"]  # the reconnected console's frames
    assert [m["uniqueid"] for m in bench.pushed.to("1005", "pop")] == [held.uniqueid]

    # no second call for an agent on a call: the next sales callers go to 1002, then wait
    first = bench.arrive(keys=("1",), caller="+15550003333")
    bench.run(20)
    second = bench.arrive(keys=("1",), caller="+15550004444")
    bench.run(30)
    assert [o.agent_id for o in bench.of(CallOffered, uniqueid=first.uniqueid)] == ["1002"]
    assert bench.of(CallOffered, uniqueid=second.uniqueid) == []
    assert server.acd.agent_snapshot("1003").call.uniqueid == talking.uniqueid

    # the restored calls work as calls: retrieve the held caller; hang up; dispose, also of the wrap-up
    held_call = server.call_for_agent("1005").queued.call_id
    assert bench.act("1005", "retrieve", call_id=held_call)["status"] == "connected"
    talking_id = server.call_for_agent("1003").queued.call_id
    bench.act("1003", "hangup", call_id=talking_id)
    bench.run(3)
    assert bench.state("1003") == "wrap_up"
    assert bench.act("1003", "dispose", call_id=talking_id, disposition="sale")["recorded"] is True
    assert bench.act("1006", "dispose", call_id=ended_id, disposition="resolved")["recorded"] is True
    row = server.store.get_interaction(f"sim/{talking_id}")
    assert row is not None and (row.agent_id, row.disposition) == ("1003", "sale") and row.ended_at is not None
    assert server.store.get_interaction(f"sim/{ended_id}").disposition == "resolved"
    bench.close()


def test_a_call_the_state_log_shows_but_the_pbx_no_longer_has_ends_in_wrap_up(tmp_path: Path) -> None:
    """An agent whose call ended while the server was down comes back in wrap-up (to dispose of it);
    one who was only offered a call comes back ready."""
    bench = CallBench(tmp_path, customers=50, wrapup=600.0)
    bench.ready("1003")
    bench.arrive(keys=("1",))
    bench.run(20)
    call_id = bench.server.call_for_agent("1003").queued.call_id
    bench.server.stop()
    bench.run(1.0)
    chan = next(c for c in bench.stack.sim.pbx.ordered_channels() if c.name.startswith("PJSIP/1003"))
    bench.stack.sim.pbx.far_hangup(chan, 16)  # the agent hangs up while no server is running
    bench.run(2.0)
    server = restart(bench)
    bench.run(5)
    assert bench.state("1003") == "wrap_up"
    assert server.call_for_agent("1003") is None
    assert bench.act("1003", "dispose", call_id=call_id, disposition="resolved")["recorded"] is True
    assert bench.state("1003") == "ready"
    bench.close()


def test_an_offer_ringing_across_the_restart_is_answered_by_its_agent(tmp_path: Path) -> None:
    """The PBX shows the agent's phone ringing for a caller: the agent comes back reserved for that call,
    and when the phone is answered the call is theirs (on_call, connected), offered to nobody else."""
    bench = CallBench(tmp_path, customers=50, answer_after=10.0)
    bench.ready("1003", "1002")
    chan = bench.arrive(keys=("1",))
    bench.run(4)
    [offer] = bench.of(CallOffered, uniqueid=chan.uniqueid)
    ringing = offer.agent_id
    server = restart(bench)
    bench.run(2)
    assert bench.state(ringing) == "reserved"
    bench.run(10)
    assert bench.state(ringing) == "on_call"
    assert server.call_for_agent(ringing).state == "connected"
    assert [o.agent_id for o in bench.of(CallOffered, uniqueid=chan.uniqueid)] == [ringing]
    bench.close()
