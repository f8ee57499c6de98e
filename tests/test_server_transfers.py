"""Console call control through the REAL server (CtiServer + ServerConsoleBackend) against the simulated
PBX running the shipped dialplan, in virtual time: the attended transfer as a real Asterisk 22 does it
(issue 11): the agent's leg consults while the caller hears music; complete joins caller and target;
back-to-caller and the target hanging up return the agent to the caller; the caller never gets the
transfer features."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_console.backend import SessionInfo
from centre.console_backend import ServerConsoleBackend
from centre.demo import DEMO_EPOCH
from centre.server import CtiServer
from config.load import load_config
from cti.events import CallTransferredOut
from sim.ami_server import AMIServer, AMIServerFactory
from sim.channel import Channel
from sim.clock import VirtualClock
from sim.dialplan import DEFAULT_DIALPLAN, load_dialplan
from sim.far_end import FarEnd, FixedFarEnds
from sim.memory_transport import MemoryConnector, MemoryNetwork
from sim.pbx import Pbx
from tests.console_stack import RecordingSender

DEMO = Path(__file__).resolve().parent.parent / "config" / "examples" / "demo.yaml"
AGENT = SessionInfo(session_id="s1", agent_id="1001", role="agent", remote="127.0.0.1:1", connected_at=0.0)


@dataclass
class Stack:
    clock: VirtualClock
    pbx: Pbx
    server: CtiServer
    backend: ServerConsoleBackend
    pushed: list[dict[str, Any]]
    sender: RecordingSender
    caller: Channel

    @property
    def sent(self) -> list[tuple[str, dict[str, Any]]]:
        """(action, fields) of every AMI action the dispatcher sent."""
        return self.sender.actions()

    def run(self, coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
        """Run one console action to its reply, the virtual clock moving while it waits on the PBX."""
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(coro)
            for _ in range(400):
                loop.run_until_complete(asyncio.sleep(0))
                if task.done():
                    return task.result()
                self.clock.run_for(0.01)
            raise AssertionError("the console action never finished")
        finally:
            loop.close()

    def calls(self) -> list[dict[str, Any]]:
        return [m for m in self.pushed if m["type"] == "call"]


def _stack() -> Stack:
    """Agent 1001 ready, one caller for sales offered to 1001, whose phone answers in 1 s; 2002 is a
    consultation target that answers in 1 s, 2003 one that never answers."""
    cfg = load_config(DEMO)
    cfg = cfg.model_copy(update={"dialer": cfg.dialer.model_copy(update={"campaigns": []})})
    clock = VirtualClock(start=DEMO_EPOCH)
    net = MemoryNetwork(clock)
    phones = FixedFarEnds({"1001": FarEnd("answer", ring_time=1.0), "2002": FarEnd("answer", ring_time=1.0),
                           "2003": FarEnd("noanswer")})
    pbx = Pbx(clock, load_dialplan(DEFAULT_DIALPLAN), far_ends=phones)
    ast = cfg.asterisk[0]
    net.listen(ast.host, ast.port, AMIServerFactory(AMIServer(pbx, {ast.username: ast.secret.get_secret_value()})))
    sender = RecordingSender()
    server = CtiServer(cfg, clock=clock, ami_connector=lambda s, f: MemoryConnector(net, s, f), ami=sender)
    sender.target = server.pool
    pushed: list[dict[str, Any]] = []
    server.pusher = type("Pusher", (), {
        "push_to_agent": lambda self, agent, message: pushed.append(message) if agent == "1001" else None,
        "push_to_supervisors": lambda self, message: None,
    })()
    server.start()
    clock.run_for(2)
    assert server.health.ami[ast.name]
    server.apply(server.acd.login("1001", None, clock.seconds()))
    server.apply(server.acd.ready("1001", clock.seconds()))
    caller = pbx.inbound_call("s", "+15551230001", "Jane Doe", context="cti-hold",
                              variables=[("CTI_QUEUE", "sales"), ("CTI_SKILLS", "sales:1")])
    clock.run_for(6)
    stack = Stack(clock, pbx, server, ServerConsoleBackend(server), pushed, sender, caller)
    assert stack.calls()[-1]["status"] == "connected", stack.calls()
    return stack


def _consult(stack: Stack, number: str = "2002") -> dict[str, Any]:
    reply = stack.run(stack.backend.handle(AGENT, "attended_transfer", {"number": number}))
    assert reply["status"] == "consulting"
    return reply


def test_attended_transfer_plays_a_digit_extension_on_the_agents_leg() -> None:
    """The consultation is asked for with AMI Atxfer of the agent's leg (never the caller's) into
    cti-consult with a digit extension (Asterisk plays it as DTMF: "s" never dials)."""
    stack = _stack()
    _consult(stack)
    atxfer = [fields for action, fields in stack.sent if action == "Atxfer"]
    agent_leg = stack.server.sessions.get("sim", stack.caller.uniqueid).agent_channel
    assert atxfer == [{"Channel": agent_leg, "Context": "cti-consult", "Exten": "0"}]
    assert agent_leg != stack.caller.name


def test_consultation_rings_the_target_while_the_caller_hears_music_then_complete_joins_them() -> None:
    """Consulting: the caller hears music, the target rings then talks to the agent (the console's
    call says so); complete hangs up the agent's leg and the caller is bridged with the target; the
    agent goes to wrap-up and the caller is still on the line."""
    stack = _stack()
    _consult(stack)
    stack.clock.run_for(5)  # Asterisk dials the consult extension 3.26 s after the Atxfer
    assert stack.caller.moh
    last = stack.calls()[-1]
    assert (last["status"], last["consult"]) == ("consulting", {"number": "2002", "state": "talking"})
    target = stack.pbx.find_channel("PJSIP/2002-00000002")
    assert target is not None and not target.dead
    reply = stack.run(stack.backend.handle(AGENT, "attended_complete", {}))
    assert reply["status"] == "ended"
    stack.clock.run_for(2)
    assert not stack.caller.dead and not stack.caller.moh and not target.dead
    members = {c.name for c in stack.caller.bridge.channels} if stack.caller.bridge else set()
    assert "Local/0@cti-consult-00000000;1" in members
    assert stack.server.acd.agent_snapshot("1001").state == "wrap_up"
    call_id = stack.server.last_call["1001"].call_id
    assert stack.server.call_log.open[("sim", call_id)].outcome == "transferred"  # the record says so


def test_back_to_caller_cancels_the_consultation() -> None:
    """Back to the caller (CancelAtxfer): the consultation leg hangs up, the music stops, the agent
    talks to the caller again and the console says connected."""
    stack = _stack()
    _consult(stack)
    stack.clock.run_for(3)
    reply = stack.run(stack.backend.handle(AGENT, "attended_cancel", {}))
    assert reply["status"] == "connected"
    stack.clock.run_for(2)
    agent_leg = stack.pbx.find_channel(stack.server.sessions.get("sim", stack.caller.uniqueid).agent_channel)
    assert agent_leg is not None and agent_leg.bridge is stack.caller.bridge and not stack.caller.moh
    assert stack.pbx.find_channel("PJSIP/2002-00000002") is None
    assert stack.calls()[-1]["status"] == "connected"


def test_target_hanging_up_in_consultation_returns_the_agent_to_the_caller() -> None:
    """The consulted party hangs up: Asterisk puts the agent back with the caller; the server sees the
    agent's leg bridged with the caller again and the console's call is connected, consult cleared."""
    stack = _stack()
    _consult(stack)
    stack.clock.run_for(5)  # Asterisk dials the consult extension 3.26 s after the Atxfer
    target = stack.pbx.find_channel("PJSIP/2002-00000002")
    assert target is not None
    stack.pbx.far_hangup(target)
    stack.clock.run_for(2)
    last = stack.calls()[-1]
    assert (last["status"], last["consult"]) == ("connected", None)
    assert not stack.caller.moh and not stack.caller.dead
    assert stack.server.acd.agent_snapshot("1001").state == "on_call"


def test_hold_retrieve_then_attended_transfer_still_works() -> None:
    """Hold and retrieve (AMI Bridge) keep the agent's leg's transfer features: a consultation after
    a retrieve starts and completes like one without."""
    stack = _stack()
    assert stack.run(stack.backend.handle(AGENT, "hold", {}))["status"] == "held"
    stack.clock.run_for(1)
    assert stack.run(stack.backend.handle(AGENT, "retrieve", {}))["status"] == "connected"
    stack.clock.run_for(1)
    _consult(stack)
    stack.clock.run_for(5)  # Asterisk dials the consult extension 3.26 s after the Atxfer
    assert stack.calls()[-1]["consult"] == {"number": "2002", "state": "talking"}
    stack.run(stack.backend.handle(AGENT, "attended_complete", {}))
    stack.clock.run_for(2)
    assert not stack.caller.dead and stack.pbx.find_channel("PJSIP/2002-00000002") is not None


def test_the_console_says_ringing_until_the_consulted_party_answers() -> None:
    """Asterisk bridges the consultation call with the agent's leg while the target still rings: the call
    frame says "ringing" then, and "talking" only once the consultation call is answered; a target that
    never answers stays "ringing" (and after atxfernoanswertimeout the agent is back with the caller)."""
    stack = _stack()
    _consult(stack, "2003")  # never answers
    stack.clock.run_for(6)
    consults = [m["consult"] for m in stack.calls() if m.get("consult")]
    assert consults and all(c == {"number": "2003", "state": "ringing"} for c in consults), consults

    stack = _stack()
    _consult(stack, "2002")  # answers 1 s after it rings
    stack.clock.run_for(3.5)  # digit timeout (3 s) + the bridge: ringing, not yet answered
    assert stack.calls()[-1]["consult"] == {"number": "2002", "state": "ringing"}
    stack.clock.run_for(3)
    assert stack.calls()[-1]["consult"] == {"number": "2002", "state": "talking"}


def test_an_attended_transfer_completed_counts_in_the_queues_transfers_when_the_part_ends() -> None:
    """The agent's part ends (wrap-up over) with the caller sent on to an outside number: the statistics get
    ``CallTransferredOut`` for the queue (a transfer to a queue is the ACD's record's own)."""
    stack = _stack()
    seen: list[CallTransferredOut] = []
    stack.server.bus.subscribe(lambda e: seen.append(e) if isinstance(e, CallTransferredOut) else None)
    _consult(stack)
    stack.clock.run_for(5)
    stack.run(stack.backend.handle(AGENT, "attended_complete", {}))
    stack.clock.run_for(2)
    assert seen == []  # the part ends with its wrap-up
    stack.clock.run_for(120)
    assert [(e.queue, e.agent_id) for e in seen] == [(stack.server.last_call["1001"].queue, "1001")]
    assert seen[0].queue
