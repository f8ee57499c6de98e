"""Tests of the sans-I/O AMI session (cti/ami/session.py): raw bytes in, bytes and events out, time as an
argument. No Twisted, no socket: the server's side is the recorded Asterisk 22 transcripts
(tests/fixtures/asterisk, read chunk by chunk at their real TCP read boundaries and times) or bytes written
here in the same shape."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cti.ami.message import AMIMessage
from cti.ami.protocol import AMIParser, encode
from cti.ami.session import (
    TRANSITIONS,
    ActionFailed,
    ActionRejected,
    ActionSucceeded,
    AfterLogoff,
    AMISession,
    AMISessionError,
    Closed,
    CloseReason,
    InputDropped,
    Ready,
    SessionEvent,
    SessionState,
    UnmatchedResponse,
)

SECRET = "cti-secret"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
FIXTURES = Path(__file__).parent / "fixtures" / "asterisk"


def session(auth: str = "plain", now: float = 0.0, **kwargs: Any) -> AMISession:
    settings: dict[str, Any] = {"username": "cti", "secret": SECRET, "now": now, "auth": auth,
                                "action_id_prefix": "t"}
    settings.update(kwargs)
    return AMISession(**settings)


def kinds(events: list[SessionEvent]) -> list[type]:
    """The type of each event (any parsed message counts as ``AMIMessage``)."""
    return [AMIMessage if isinstance(e, AMIMessage) else type(e) for e in events]


def actions(data: bytes) -> list[AMIMessage]:
    return [m for m in AMIParser(expect_banner=False).feed(data) if isinstance(m, AMIMessage)]


def logged_in(now: float = 0.0, **kwargs: Any) -> AMISession:
    """A plain session past its login (the first recorded connection's bytes)."""
    ids = itertools.chain(["login-001"], (f"t-{n}" for n in itertools.count(1)))
    s = session(now=now, next_action_id=ids.__next__, **kwargs)
    s.receive_data(BANNER, now)
    s.data_to_send()
    s.receive_data(b"Response: Success\r\nActionID: login-001\r\nMessage: Authentication accepted\r\n\r\n", now)
    assert s.ready and kinds(s.events_received()) == [Ready]
    return s


@dataclass
class Replay:
    """One recorded connection replayed into a session: what it sent at each step and every event."""

    session: AMISession
    sent: list[bytes] = field(default_factory=list)
    events: list[SessionEvent] = field(default_factory=list)
    recorded_sent: list[bytes] = field(default_factory=list)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def results(self) -> dict[str, ActionSucceeded | ActionFailed]:
        return {e.action_id: e for e in self.events if isinstance(e, ActionSucceeded | ActionFailed)}


def replay(scenario: str, conn: str, *, auth: str = "plain", events: bool | None = None, chunked: bool = True,
           eof: bool = True) -> Replay:
    """Replay connection ``conn`` of ``scenario``: server chunks go in at their recorded times; where the
    recording's client sent actions, the session sends them (its own Login, Challenge and Logoff with
    the recorded ActionIDs; the others through ``send_action`` with their recorded fields)."""
    entries = [json.loads(line) for line in (FIXTURES / f"{scenario}.timeline.jsonl").open("rb")]
    entries = [e for e in entries if e["conn"] == conn and e["dir"] in ("recv", "send")]
    own = [a.action_id for e in entries if e["dir"] == "send" for a in actions(e["data"].encode("latin-1"))
           if a.headers[0][1] in ("Login", "Challenge", "Logoff")]
    r = Replay(session(auth=auth, now=entries[0]["t"], events=events, next_action_id=iter(own).__next__))
    for entry in entries:
        data, now = entry["data"].encode("latin-1"), entry["t"]
        if entry["dir"] == "recv":
            for piece in ([data] if chunked else [data[i:i + 1] for i in range(len(data))]):
                r.session.receive_data(piece, now)
        else:
            # The session gives every action an ActionID: one recorded without (queue_member_ops' Queues) is left
            # out here; tests below drive responses without ActionID by hand.
            recorded = [a for a in actions(data) if a.action_id is not None]
            r.recorded_sent.append(b"".join(encode(a) for a in recorded))
            for action in recorded:
                name = action.headers[0][1]  # not .name: QueueLog carries an Event header
                if name == "Logoff":
                    r.session.logoff()
                elif name not in ("Login", "Challenge"):
                    r.session.send_action(name, dict(action.headers[1:]), now=now, timeout=10.0)
        r.sent.append(r.session.data_to_send()) if entry["dir"] == "send" else None
        r.events.extend(r.session.events_received())
    if eof:
        r.session.receive_eof()
        r.events.extend(r.session.events_received())
    return r


# the recorded conversations --------------------------------------------------------------------------------
def test_plain_login_ping_and_logoff_replayed_from_asterisk() -> None:
    """Against the recorded Asterisk 22 (connection c1): the session sends the recorded Login byte for byte
    when the banner arrives, is Ready on its answer, passes every event on in order (FullyBooted, then the
    security events of the other connections), correlates both Pings, sends Logoff and ends with
    ``logoff`` at EOF."""
    r = replay("login", "c1-plaintext")
    assert r.sent == r.recorded_sent  # Login, Ping, Ping, Logoff: the exact bytes Asterisk got
    assert r.of(Ready) == [Ready("Asterisk Call Manager/11.0.0")]
    names = [e.name for e in r.of(AMIMessage)]
    assert names[0] == "FullyBooted" and names.count("SuccessfulAuth") == 3 and "InvalidPassword" in names
    results = r.results()
    assert [results[a].response["Ping"] for a in ("ping-002", "ping-003")] == ["Pong", "Pong"]  # type: ignore[union-attr]
    assert kinds(r.events[-2:]) == [UnmatchedResponse, Closed]  # Goodbye answers our Logoff
    assert r.events[-1] == Closed(CloseReason.LOGOFF, "the server closed the connection")
    assert r.session.state is SessionState.CLOSED and r.session.pending == 0


def test_md5_login_replayed_sends_the_recorded_key() -> None:
    """MD5 (connection c2): Challenge, then Login with Key = md5(challenge + secret): the bytes equal the
    recorded ones (Events off), so the key is the one the real Asterisk accepted; the secret never left."""
    r = replay("login", "c2-md5", auth="md5", events=False)
    assert r.sent == r.recorded_sent
    assert actions(r.sent[1])[0]["Key"] == hashlib.md5(b"194424005" + SECRET.encode()).hexdigest()
    assert all(SECRET.encode() not in chunk for chunk in r.sent)
    assert kinds(r.events) == [Ready, ActionSucceeded, UnmatchedResponse, Closed]


def test_refused_login_closes_the_session_when_asterisk_answers_a_second_later() -> None:
    """A wrong secret (c3): nothing for ~1 s (the session waits; its login deadline is later), then
    ``Authentication failed``: the session closes with ``auth-failed``, naming the user, never the secret;
    Asterisk's own close after it changes nothing."""
    r = replay("login", "c3-badpass", eof=False)
    (closed,) = r.of(Closed)
    assert closed.reason is CloseReason.AUTH_FAILED
    assert closed.detail == "login as 'cti' refused (Authentication failed); check username and secret"
    assert r.session.state is SessionState.CLOSED and r.session.next_deadline() is None
    r.session.receive_eof()
    assert r.session.events_received() == []
    assert SECRET not in repr(r.session) and "wrong-secret" not in repr(r.session)


def test_refused_md5_login_replayed() -> None:
    """A wrong MD5 key (c5) closes the session with ``auth-failed`` too."""
    r = replay("login", "c5-md5-bad", auth="md5")
    assert [e.reason for e in r.of(Closed)] == [CloseReason.AUTH_FAILED]


def test_list_actions_and_errors_replayed_from_a_whole_session() -> None:
    """Queue member operations (28 actions, 3 of them event lists, errors among them): every action gets
    exactly one result; list results hold their items in order and end with the Complete event; the
    recorded errors fail with ``error-response`` and Asterisk's message; every action left as recorded."""
    r = replay("queue_member_ops", "cti")
    assert r.sent == r.recorded_sent
    sent_ids = [a.action_id for chunk in r.recorded_sent for a in actions(chunk) if a.name not in ("Login", "Logoff")]
    results = r.results()
    assert sorted(results) == sorted(sent_ids) and len(r.of(ActionSucceeded) + r.of(ActionFailed)) == len(sent_ids)
    for list_id in ("queuestatus-020", "queuestatus-021", "queuesummary-022"):
        result = results[list_id]
        assert isinstance(result, ActionSucceeded) and result.response["EventList"] == "start"
        assert result.events[-1]["EventList"] == "Complete"
        assert int(result.events[-1]["ListItems"]) == len(result.events) - 1
        assert all(e.action_id == list_id for e in result.events)
    failed = {e.action_id: e for e in r.of(ActionFailed)}
    assert failed and all(e.error_id == "error-response" and e.response is not None for e in failed.values())
    assert failed["queueadd-003"].detail == "Unable to add interface: Already there"
    assert r.events[-1].reason is CloseReason.LOGOFF  # type: ignore[union-attr]


@pytest.mark.parametrize("scenario,conn", [("login", "c1-plaintext"), ("queue_member_ops", "cti")])
def test_read_boundaries_do_not_matter(scenario: str, conn: str) -> None:
    """The same conversation fed one byte at a time gives the same events."""
    whole, bytewise = replay(scenario, conn), replay(scenario, conn, chunked=False)
    assert bytewise.events == whole.events and bytewise.sent == whole.sent


def test_responses_without_or_with_unknown_action_ids_match_nothing() -> None:
    """Responses with no ActionID (c6 of the recording) or an ActionID nobody is waiting for are reported
    as ``UnmatchedResponse``; a pending action is untouched by them."""
    s = logged_in()
    ping = s.send_action("Ping", now=1.0, timeout=5.0)
    recorded = (FIXTURES / "login.txt").read_bytes()[4347:4347 + 370]
    after_login = recorded[recorded.index(b"Response: Error"):]
    s.receive_data(after_login, 1.0)
    events = s.events_received()
    assert kinds(events) == [UnmatchedResponse] * 3
    assert [e.message.action_id for e in events] == ["unknown-001", None, "logoff-002"]  # type: ignore[union-attr]
    assert s.pending == 1
    s.receive_data(b"Response: Success\r\nActionID: %s\r\nPing: Pong\r\n\r\n" % ping.encode(), 1.5)
    assert kinds(s.events_received()) == [ActionSucceeded]


# timeouts --------------------------------------------------------------------------------------------------
def test_banner_timeout() -> None:
    """No banner line (or only part of one) within the banner timeout: the session closes with
    ``banner-timeout``; next_deadline() said when."""
    s = session(now=100.0, banner_timeout=5.0)
    assert s.next_deadline() == 105.0
    s.receive_data(b"Asterisk Call Man", 101.0)
    s.tick(104.9)
    assert s.events_received() == [] and s.state is SessionState.BANNER
    s.tick(105.0)
    assert s.events_received() == [Closed(CloseReason.BANNER_TIMEOUT, "sent no AMI banner within 5 s")]
    assert s.next_deadline() is None and s.data_to_send() == b""


@pytest.mark.parametrize("greeting,detail", [
    (b"SSH-2.0-OpenSSH_9.2\r\n", "does not speak AMI (banner 'SSH-2.0-OpenSSH_9.2')"),
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
     "does not speak AMI (banner 'HTTP/1.1 400 Bad Request')"),
    (b"Server: nginx\r\n\r\n", "does not speak AMI: expected the AMI banner line, got a header line; "
                               "parsing it as a message"),
    (b"\x00" * 2000, "does not speak AMI: no AMI banner line within 1024 bytes"),
])
def test_a_peer_that_does_not_speak_ami(greeting: bytes, detail: str) -> None:
    """An SSH or HTTP server, a header line where the banner should be, or a flood without a line end:
    ``not-ami`` at once, nothing sent, nothing after the Closed event."""
    s = session()
    s.receive_data(greeting, 0.5)
    assert s.events_received() == [Closed(CloseReason.NOT_AMI, detail)]
    assert s.data_to_send() == b"" and s.next_deadline() is None
    s.receive_data(b"Response: Success\r\n\r\n", 0.6)
    assert s.events_received() == []


@pytest.mark.parametrize("auth,step", [("plain", "Login"), ("md5", "Challenge")])
def test_a_login_that_times_out(auth: str, step: str) -> None:
    """The banner came, but the Challenge or Login is never answered: ``login-timeout`` at the deadline."""
    s = session(auth=auth, login_timeout=10.0)
    s.receive_data(BANNER, 2.0)
    assert actions(s.data_to_send())[0].name == step
    assert s.next_deadline() == 12.0
    s.tick(11.99)
    assert s.events_received() == []
    s.tick(12.0)
    assert s.events_received() == [Closed(CloseReason.LOGIN_TIMEOUT, f"no response to {step} within 10 s")]


@pytest.mark.parametrize("before", [b"", BANNER, BANNER + b"Response: Success\r\nActionID: t-"])
def test_close_before_login(before: bytes) -> None:
    """EOF before the banner, after it, or inside the Login's answer: ``closed-before-login`` (an
    unterminated message is reported first, with its size); no Ready."""
    s = session()
    s.receive_data(before, 0.1)
    s.data_to_send()
    s.receive_eof("reset by peer")
    events = s.events_received()
    assert events[-1] == Closed(CloseReason.CLOSED_BEFORE_LOGIN, "reset by peer")
    assert not any(isinstance(e, Ready) for e in events)
    if before.endswith(b"t-"):
        assert events[0] == InputDropped("the stream ended inside a message (no line end or blank line after it)",
                                         len(before) - len(BANNER))


def test_action_timeout_then_a_late_answer() -> None:
    """An action unanswered by its deadline fails with ``timeout``; its late answer matches nothing."""
    s = logged_in(ping_interval=None)
    slow = s.send_action("Slow", now=10.0, timeout=3.0)
    fast = s.send_action("Ping", now=11.0, timeout=1.0)
    assert s.next_deadline() == 12.0
    s.tick(12.0)
    assert s.events_received() == [ActionFailed(fast, "Ping", "timeout", "no response to Ping within 1 s")]
    assert s.next_deadline() == 13.0
    s.tick(13.0)
    assert [(e.action_id, e.error_id) for e in s.events_received()] == [(slow, "timeout")]  # type: ignore[union-attr]
    s.receive_data(b"Response: Success\r\nActionID: %s\r\n\r\n" % slow.encode(), 14.0)
    assert kinds(s.events_received()) == [UnmatchedResponse]
    assert s.next_deadline() is None


def test_a_list_times_out_as_a_whole() -> None:
    """A list action whose Complete event never comes fails at its deadline, items or not; later items
    are plain events."""
    s = logged_in(ping_interval=None)
    aid = s.send_action("CoreShowChannels", now=0.0, timeout=5.0)
    s.receive_data(b"Response: Success\r\nActionID: %s\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n"
                   b"Event: CoreShowChannel\r\nActionID: %s\r\n\r\n" % (aid.encode(), aid.encode()), 1.0)
    assert kinds(s.events_received()) == [AMIMessage]
    s.tick(5.0)
    assert [e.error_id for e in s.events_received()] == ["timeout"]  # type: ignore[union-attr]
    s.receive_data(b"Event: CoreShowChannelsComplete\r\nActionID: %s\r\nEventList: Complete\r\n\r\n" % aid.encode(), 6)
    assert kinds(s.events_received()) == [AMIMessage]


def test_keepalive_ping_and_its_timeout() -> None:
    """Once ready, a Ping goes out ``ping_interval`` after login and after each answer (an Error answer
    counts: the link is alive); an unanswered Ping closes the session with ``ping-timeout`` and every
    pending action fails with ``closed``, then Closed comes last."""
    s = logged_in(now=0.0, ping_interval=20.0, ping_timeout=5.0)
    assert s.next_deadline() == 20.0
    s.tick(20.0)
    (ping,) = actions(s.data_to_send())
    assert ping.name == "Ping" and s.next_deadline() == 25.0
    s.receive_data(b"Response: Error\r\nActionID: %s\r\nMessage: Permission denied\r\n\r\n" % ping.action_id.encode(),  # type: ignore[union-attr]
                   21.0)
    assert s.events_received() == [] and s.next_deadline() == 41.0
    s.tick(41.0)
    assert [a.name for a in actions(s.data_to_send())] == ["Ping"]
    mine = s.send_action("Originate", {"Channel": "Local/1@x"}, now=42.0, timeout=30.0)
    s.tick(45.9)
    assert s.ready
    s.tick(46.0)
    assert s.events_received() == [
        ActionFailed(mine, "Originate", "closed", "no answer to Ping within 5 s"),
        Closed(CloseReason.PING_TIMEOUT, "no answer to Ping within 5 s"),
    ]


def test_eof_fails_every_pending_action_then_closes() -> None:
    """EOF while logged in: each pending action (a plain one and a list half received) fails with
    ``closed`` in the order sent, then ``connection-lost``; nothing is left pending or scheduled."""
    s = logged_in()
    first = s.send_action("Slow", now=1.0, timeout=10.0)
    listing = s.send_action("QueueStatus", now=1.0, timeout=10.0)
    s.receive_data(b"Response: Success\r\nActionID: %s\r\nEventList: start\r\nMessage: Queue status will follow"
                   b"\r\n\r\n" % listing.encode(), 2.0)
    s.receive_eof("Connection was closed cleanly.")
    assert s.events_received() == [
        ActionFailed(first, "Slow", "closed", "Connection was closed cleanly."),
        ActionFailed(listing, "QueueStatus", "closed", "Connection was closed cleanly."),
        Closed(CloseReason.CONNECTION_LOST, "Connection was closed cleanly."),
    ]
    assert s.pending == 0 and s.next_deadline() is None


# requests, states and limits ---------------------------------------------------------------------------------
def test_the_transition_table_is_the_only_way_between_states() -> None:
    """Every state is in the table; closed has no way out; an illegal request raises a stable error id
    and changes nothing."""
    assert set(TRANSITIONS) == set(SessionState) and TRANSITIONS[SessionState.CLOSED] == {}
    s = session()
    with pytest.raises(AMISessionError) as info:
        s.send_action("Ping", now=0.0, timeout=1.0)
    assert info.value.error_id == "not-ready" and s.state is SessionState.BANNER and s.data_to_send() == b""
    s.logoff()
    assert s.state is SessionState.CLOSING and s.data_to_send() == b""  # nothing to log off from yet
    with pytest.raises(AMISessionError) as info:
        s.logoff()
    assert info.value.error_id == "illegal-transition" and s.state is SessionState.CLOSING
    s.receive_data(BANNER, 0.1)  # crossed our close: no Login
    assert s.data_to_send() == b"" and s.events_received() == [AfterLogoff("banner")]


def test_rejected_actions_send_nothing() -> None:
    """A CR/LF in a field, an empty ActionID or one still pending: ``ActionRejected`` (a ValueError) with a
    stable id, nothing sent, nothing pending; the error names the key, never the value."""
    s = logged_in(ping_interval=None)
    s.send_action("Originate", {"ActionID": "dial-42"}, now=0.0, timeout=5.0)
    s.data_to_send()
    cases = [({"Variable": "X", "Value": f"{SECRET}\r\nAction: Hangup"}, "bad-field"),
             ({"ActionID": ""}, "bad-action-id"), ({"actionid": "dial-42"}, "duplicate-action-id")]
    for fields, error_id in cases:
        with pytest.raises(ActionRejected) as info:
            s.send_action("Setvar", fields, now=0.0, timeout=5.0)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError) and info.value.error_id == error_id
        assert SECRET not in str(info.value)
    assert s.data_to_send() == b"" and s.pending == 1


def test_forget_drops_an_action_silently() -> None:
    """An action the caller gave up on gets no event: its answer matches nothing, its deadline is gone."""
    s = logged_in(ping_interval=None)
    aid = s.send_action("Slow", now=0.0, timeout=5.0)
    assert s.forget(aid) and not s.forget(aid)
    assert s.next_deadline() is None
    s.receive_data(b"Response: Success\r\nActionID: %s\r\n\r\n" % aid.encode(), 1.0)
    assert kinds(s.events_received()) == [UnmatchedResponse]


def test_odd_input_after_login_is_reported_and_the_session_lives_on() -> None:
    """A message with neither Event nor Response, a mid-stream banner and an over-long message are
    ``InputDropped``; the session stays ready."""
    s = logged_in(ping_interval=None, max_message_bytes=100)
    s.receive_data(b"Foo: bar\r\n\r\nEvent: Big\r\nX: " + b"y" * 200 + b"\r\n\r\n" + BANNER + b"Event: After\r\n\r\n",
                   1.0)
    events = s.events_received()
    assert kinds(events) == [InputDropped, InputDropped, InputDropped, AMIMessage]
    assert "neither Event nor Response" in events[0].reason  # type: ignore[union-attr]
    assert s.ready


def test_the_secret_never_shows() -> None:
    """Neither the repr, nor any event or error of a refused login, holds the secret."""
    s = session(secret="hunter2-s3cret", next_action_id=iter(["l1"]).__next__)
    s.receive_data(BANNER, 0.0)
    assert b"hunter2-s3cret" in s.data_to_send()  # only on the wire, in the Login
    s.receive_data(b"Response: Error\r\nActionID: l1\r\nMessage: Authentication failed\r\n\r\n", 1.0)
    text = repr(s) + "".join(repr(e) for e in s.events_received())
    assert "hunter2" not in text and "auth-failed" in text
