"""The session engine (centre.call_sessions) on a real bus: the call frames and interaction writes a call's
events produce, in order, and that its state moves only through cti.sessions' table."""

from __future__ import annotations

from acd.events import CallAbandoned, CallAnswered, CallOffered, OfferNotAnswered, QueueCallFinished
from centre.call_log import InteractionWrite
from centre.call_sessions import CallSessions, SessionAdopted, SessionTransferred
from cti.bus import EventBus
from cti.commands import Command, PushToAgent
from cti.events import CallBridged, CallQueued, CallTransferred, DialStarted
from cti.sessions import CallSession, SessionState, SessionTrigger

S = SessionState


def queued(uid: str = "u1", ts: float = 100.0, queue: str = "sales") -> CallQueued:
    return CallQueued(server="pbx", ts=ts, call_id="c-" + uid, uniqueid=uid, channel=f"PJSIP/trunk-{uid}", queue=queue,
                      skills="", priority=0, language="en", caller_num="555", caller_name="", dnis="100", data={})


def offered(uid: str = "u1", ts: float = 101.0, agent: str = "1001") -> CallOffered:
    return CallOffered(ts=ts, server="pbx", uniqueid=uid, call_id="c-" + uid, queue="sales", agent_id=agent,
                       endpoint="PJSIP/1001", wait=1.0, attempt=1)


def answered(uid: str = "u1", ts: float = 105.0, agent: str = "1001") -> CallAnswered:
    return CallAnswered(ts=ts, server="pbx", uniqueid=uid, call_id="c-" + uid, queue="sales", agent_id=agent, wait=5.0)


def finished(uid: str = "u1", ts: float = 200.0, agent: str = "1001", talk: float = 95.0) -> QueueCallFinished:
    return QueueCallFinished(ts=ts, server="pbx", uniqueid=uid, call_id="c-" + uid, queue="sales", entered=100.0,
                             outcome="answered", wait=5.0, agent_id=agent, answered_at=105.0, talk=talk)


class Harness:
    def __init__(self, tracked: bool = False) -> None:
        self.commands: list[Command] = []
        self.seen: list[object] = []
        self.bus = EventBus(self.commands.append)
        self.sessions = CallSessions(started=lambda server, call_id: 90.0, channel_up=lambda server, name: False,
                                     tracks=lambda server, uid: tracked)
        self.bus.add(self.sessions)
        self.bus.subscribe(self.seen.append)

    def __call__(self, *events: object) -> None:
        for event in events:
            self.bus.publish(event, getattr(event, "ts", 0.0))

    def frames(self) -> list[tuple[str, str]]:
        return [(c.agent_id, c.message["status"]) for c in self.commands if isinstance(c, PushToAgent)]

    def writes(self) -> list[InteractionWrite]:
        return [e for e in self.seen if isinstance(e, InteractionWrite)]


def test_a_call_answered_and_finished() -> None:
    h = Harness()
    h(queued(), offered())
    session = h.sessions.get("pbx", "u1")
    assert session is not None and session.state == S.RINGING and session.agent_id == "1001"
    assert h.sessions.call_for_agent("1001") is session
    h(DialStarted(server="pbx", ts=101.5, call_id="c-u1", uniqueid="u1", channel="PJSIP/trunk-u1",
                  dest_uniqueid="a1", dest_channel="PJSIP/1001-1", dial_string="PJSIP/1001"))
    h(answered())
    assert session.state == S.CONNECTED and session.answered_at == 105.0 and session.part == 1
    assert session.agent_channel == "PJSIP/1001-1"
    assert h.sessions.last_call["1001"] == ("pbx", "c-u1", "pbx/c-u1", "555", "sales")  # number: for a DNC disposition
    [write] = h.writes()
    assert write.key == "pbx/c-u1" and write.started_at == 90.0  # the call's start, from the call log
    assert write.fields["agent_id"] == "1001" and write.fields["outcome"] == "answered"
    h(finished())
    assert session.state == S.ENDED and h.sessions.get("pbx", "u1") is None
    assert h.frames() == [("1001", "ringing"), ("1001", "connected"), ("1001", "ended")]
    assert h.sessions.call_for_agent("1001") is None


def test_an_offer_not_answered_ends_on_the_console_and_the_caller_waits_again() -> None:
    h = Harness(tracked=True)
    h(queued(), offered())
    h(OfferNotAnswered(ts=120.0, server="pbx", uniqueid="u1", call_id="c-u1", queue="sales", agent_id="1001",
                       status="NOANSWER"))
    session = h.sessions.get("pbx", "u1")
    assert session is not None and session.state == S.WAITING and session.agent_id == "" and session.pop is None
    assert h.frames() == [("1001", "ringing"), ("1001", "ended")]
    h(offered(agent="1002", ts=130.0))
    assert session.state == S.RINGING and session.agent_id == "1002"


def test_an_abandoned_caller_leaves() -> None:
    h = Harness()
    h(queued(), offered())
    h(CallAbandoned(ts=110.0, server="pbx", uniqueid="u1", call_id="c-u1", queue="sales", wait=10.0,
                    while_ringing=True, agent_id="1001"))
    assert h.sessions.get("pbx", "u1") is None and h.frames()[-1] == ("1001", "ended")


def test_the_same_queueing_told_twice_keeps_the_session_and_opens_none() -> None:
    h = Harness()
    first = queued()
    h(first)
    session = h.sessions.get("pbx", "u1")
    assert h.sessions.opened_by(first) is session
    again = queued(ts=100.5)
    h(again)
    assert h.sessions.get("pbx", "u1") is session and session.queued is again
    assert h.sessions.opened_by(again) is None


def test_a_caller_queued_again_ends_the_agents_part_and_starts_a_new_session() -> None:
    h = Harness(tracked=True)
    h(queued(), offered(), answered())
    old = h.sessions.get("pbx", "u1")
    h(queued(ts=150.0, queue="billing"))  # a blind transfer to a queue
    new = h.sessions.get("pbx", "u1")
    assert old is not None and new is not None and new is not old
    assert old.state == S.ENDED and new.state == S.WAITING
    assert h.frames()[-1] == ("1001", "ended")
    h(offered(agent="1002", ts=151.0), answered(agent="1002", ts=155.0))
    assert new.part == 2 and h.sessions.last_call["1002"].interaction_key == "pbx/c-u1/2"
    assert h.writes()[-1].started_at == 150.0  # a later part starts with its own queueing, not the call
    h(finished(agent="1002", ts=300.0, talk=20.0))
    assert h.writes()[-1].fields == {"ended_at": 125.0}  # answered_at + talk


def test_a_consultation_back_to_the_caller_and_an_attended_transfer() -> None:
    h = Harness()
    h(queued(), offered(),
      DialStarted(server="pbx", ts=101.5, call_id="c-u1", uniqueid="u1", channel="PJSIP/trunk-u1",
                  dest_uniqueid="a1", dest_channel="PJSIP/1001-1", dial_string="PJSIP/1001"),
      answered())
    session = h.sessions.get("pbx", "u1")
    assert session is not None
    session.fire(SessionTrigger.CONSULT)  # what the console backend does on attended_transfer
    session.consult = {"number": "200", "state": "ringing"}
    h(CallBridged(server="pbx", ts=110.0, call_id="c-u1", bridge_id="b2", uniqueids=("a1", "x1"),
                  channels=("PJSIP/1001-1", "PJSIP/200-1")))
    assert session.consult == {"number": "200", "state": "ringing", "channel": "PJSIP/200-1"}
    h(CallBridged(server="pbx", ts=120.0, call_id="c-u1", bridge_id="b1", uniqueids=("u1", "a1"),
                  channels=("PJSIP/trunk-u1", "PJSIP/1001-1")))
    assert session.state == S.CONNECTED and session.consult is None and session.since == 120.0
    h(CallTransferred(server="pbx", ts=130.0, call_id="c-u1", uniqueid="a1", channel="PJSIP/1001-1",
                      kind="attended", target="PJSIP/200-1", result="Success",
                      transferee_channel="PJSIP/trunk-u1"))
    assert SessionTransferred("pbx", "c-u1") in h.seen


def test_an_adopted_call_gets_its_frame_then_its_adoption_event() -> None:
    h = Harness()
    session = CallSession.restored(queued(), S.CONNECTED, agent_id="1003", agent_channel="PJSIP/1003-9",
                                   since=50.0)
    h.bus.apply(h.sessions.adopt(session), 60.0)
    assert h.sessions.call_for_agent("1003") is session and session.part == 1
    assert h.frames() == [("1003", "connected")]
    assert [e for e in h.seen if isinstance(e, SessionAdopted)] == [SessionAdopted(session, "answered")]
    assert h.sessions.last_call["1003"].call_id == "c-u1"


def test_an_answer_the_table_refuses_changes_nothing() -> None:
    h = Harness()
    h(queued(), offered(), answered())
    session = h.sessions.get("pbx", "u1")
    assert session is not None
    before = (session.state, session.since, session.part, len(h.commands))
    h(answered(ts=106.0))  # told twice: connected cannot answer again
    assert (session.state, session.since, session.part, len(h.commands)) == before
