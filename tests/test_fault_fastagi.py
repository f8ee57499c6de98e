"""FastAGI faults over real loopback TCP (issue 19): PBX connections that vanish (reset, no HANGUP) at every
point of a session, and a flood of connections over the session cap while sessions are under way. The server
lives on, frees every slot and timer, and logs the flood in a line or two, not a line per connection.
(One clean drop mid-command and a small cap are in test_ivr_fastagi; these are the harsher cases.)"""

from __future__ import annotations

import logging

import pytest
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from tests.amiserver import reactor, run_until, wait
from tests.test_ivr_fastagi import Pbx, Server, finish, scripted


def _reset(pbx: Pbx) -> None:
    pbx.transport.abortConnection()  # type: ignore[union-attr]  # RST: the PBX host vanished


@pytest.mark.parametrize("where", ["half the environment", "before any reply", "mid reply line",
                                   "between commands"])
def test_a_pbx_connection_reset_anywhere_ends_that_session_and_frees_everything(where: str) -> None:
    """A connection reset in the middle of the environment, of a command, of a reply line or between two
    commands ends that session (an error if the flow had started, nothing if not), frees its slot, leaves no
    timer behind, and the next caller is served."""
    srv = Server()
    try:
        env = scripted("ivr", ["5", "1234#"]).env[0]
        if where == "half the environment":
            pbx = srv.connect(Pbx([env[: len(env) // 2]]))
            run_until(lambda: srv.factory.active == 1)
        elif where == "before any reply":
            pbx = srv.connect(Pbx([env]))
            run_until(lambda: pbx.lines == ["ANSWER"])
        elif where == "mid reply line":
            pbx = srv.connect(Pbx([env], replies=[[b"200 res"]]))
            run_until(lambda: pbx.lines == ["ANSWER"])
        else:
            pbx = srv.connect(Pbx([env], replies=[[b"200 result=0\n"]]))
            run_until(lambda: len(pbx.lines) == 2)
        _reset(pbx)
        finish(pbx)
        run_until(lambda: srv.factory.active == 0)
        done = srv.completed()
        if where == "half the environment":
            assert done == []
        else:
            assert [c.outcome for c in done] == ["error"], done
        finish(srv.connect(scripted("ivr", ["5", "1234#"], uniqueid="2.2")))
        assert srv.completed()[-1].outcome == "queue" and srv.factory.active == 0
        srv.clock.advance(120)  # any warning digest's minute ends
        assert srv.clock.getDelayedCalls() == []
    finally:
        srv.stop()


@pytest.mark.timeout(30)
def test_a_flood_over_the_session_cap_is_refused_quietly_and_sessions_under_way_finish(
        caplog: pytest.LogCaptureFixture) -> None:
    """Ten sessions under way (the cap), then 300 connections at once: every one is closed at once (counted
    as refused), the ten walk their flows to the queue, the log says it in at most two lines, and a slot
    freed is used again."""
    caplog.set_level(logging.WARNING, logger="ivr.fastagi")
    srv = Server(max_sessions=10)
    try:
        callers = [scripted("ivr", [None, "5", "1234#"], uniqueid=f"9.{i}") for i in range(10)]
        # a caller whose first key is None waits: the session stays open until the test answers for it
        held = [Pbx([c.env[0]]) for c in callers]
        for pbx in held:
            srv.connect(pbx)
        run_until(lambda: all(p.lines == ["ANSWER"] for p in held))
        flood = [Pbx([]) for _ in range(300)]
        wait(defer.DeferredList([connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", srv.number), p)
                                 for p in flood], consumeErrors=True), timeout=20)
        run_until(lambda: all(p.closed.called for p in flood), timeout=20)
        assert srv.factory.stats["refused"] == 300 and srv.factory.active == 10
        assert all(p.lines == [] for p in flood)
        lines = [r.getMessage() for r in caplog.records if r.name == "ivr.fastagi"]
        assert len(lines) <= 1, lines[:5]  # the first at once; the rest counted for the minute's summary
        for pbx in held[:5]:  # five hang up (reset): their slots come back
            _reset(pbx)
        run_until(lambda: srv.factory.active == 5)
        finish(srv.connect(scripted("ivr", ["5", "1234#"], uniqueid="8.1")))
        assert srv.completed()[-1].outcome == "queue"
        srv.clock.advance(60)
        lines = [r.getMessage() for r in caplog.records if r.name == "ivr.fastagi"]
        assert len(lines) == 2 and lines[1].startswith("299 more"), lines
    finally:
        srv.stop()
