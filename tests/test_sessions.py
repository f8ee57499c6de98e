"""The call session table (cti.sessions): every legal move, and an illegal trigger changes nothing."""

from __future__ import annotations

import copy
from dataclasses import fields

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.events import CallQueued
from cti.sessions import (
    RESTORABLE,
    TRANSITIONS,
    CallSession,
    SessionError,
    SessionState,
    SessionTrigger,
    next_state,
)

S, T = SessionState, SessionTrigger

QUEUED = CallQueued(server="pbx", ts=10.0, call_id="c1", uniqueid="u1", channel="PJSIP/trunk-1", queue="sales",
                    skills="", priority=0, language="en", caller_num="555", caller_name="", dnis="100", data={})

#: (state, trigger, expected) for the moves a call goes through (the whole table is checked below).
LEGAL = [
    (S.WAITING, T.OFFER, S.RINGING),
    (S.RINGING, T.ANSWER, S.CONNECTED),
    (S.RINGING, T.OFFER_ENDED, S.ENDED),
    (S.ENDED, T.REQUEUE, S.WAITING),
    (S.CONNECTED, T.HOLD, S.HELD),
    (S.HELD, T.RETRIEVE, S.CONNECTED),
    (S.CONNECTED, T.CONSULT, S.CONSULTING),
    (S.CONSULTING, T.CONSULT_ENDED, S.CONNECTED),
    (S.CONSULTING, T.COMPLETE, S.ENDED),
    (S.CONNECTED, T.TRANSFER, S.ENDED),
    (S.HELD, T.TRANSFER, S.ENDED),
    (S.CONNECTED, T.END, S.ENDED),
    (S.RINGING, T.END, S.ENDED),
]

ILLEGAL = [
    (S.WAITING, T.HOLD),
    (S.RINGING, T.HOLD),
    (S.HELD, T.HOLD),
    (S.HELD, T.CONSULT),
    (S.CONNECTED, T.RETRIEVE),
    (S.CONNECTED, T.COMPLETE),
    (S.ENDED, T.ANSWER),
    (S.ENDED, T.END),
    (S.WAITING, T.TRANSFER),
]


def session_in(state: SessionState) -> CallSession:
    """A session in ``state``, reached through the table."""
    path = {S.WAITING: [], S.RINGING: [T.OFFER], S.CONNECTED: [T.OFFER, T.ANSWER],
            S.HELD: [T.OFFER, T.ANSWER, T.HOLD], S.CONSULTING: [T.OFFER, T.ANSWER, T.CONSULT],
            S.ENDED: [T.OFFER, T.ANSWER, T.END]}[state]
    session = CallSession(QUEUED, agent_id="1001", since=12.0)
    for trigger in path:
        session.fire(trigger)
    assert session.state == state
    return session


@pytest.mark.parametrize(("state", "trigger", "expected"), LEGAL)
def test_legal_moves(state: SessionState, trigger: SessionTrigger, expected: SessionState) -> None:
    session = session_in(state)
    assert session.can(trigger)
    assert session.fire(trigger) == expected == session.state


@pytest.mark.parametrize(("state", "trigger"), ILLEGAL)
def test_illegal_moves_raise(state: SessionState, trigger: SessionTrigger) -> None:
    session = session_in(state)
    assert not session.can(trigger)
    with pytest.raises(SessionError) as info:
        session.fire(trigger)
    assert info.value.error_id == "illegal-transition"
    assert info.value.state == state and info.value.trigger == trigger
    assert "c1" in str(info.value)
    assert session.state == state


def test_every_state_has_a_row_and_every_target_is_a_state() -> None:
    assert set(TRANSITIONS) == set(SessionState)
    for row in TRANSITIONS.values():
        assert set(row.values()) <= set(SessionState)


def test_a_session_starts_waiting_and_the_state_is_the_console_status() -> None:
    session = CallSession(QUEUED)
    assert session.state == "waiting" and session.key == ("pbx", "u1")
    session.fire(T.OFFER)
    assert session.state.value == "ringing"


def test_restored_sessions_start_only_in_a_restorable_state() -> None:
    for state in RESTORABLE:
        assert CallSession.restored(QUEUED, state, agent_id="1001").state == state
    for state in set(SessionState) - RESTORABLE:
        with pytest.raises(SessionError):
            CallSession.restored(QUEUED, state)


def _snapshot(session: CallSession) -> dict[str, object]:
    return {f.name: getattr(session, f.name) if f.name == "queued" else copy.deepcopy(getattr(session, f.name))
            for f in fields(session)}


@given(st.lists(st.sampled_from(list(SessionTrigger)), max_size=30))
def test_an_illegal_trigger_changes_nothing(triggers: list[SessionTrigger]) -> None:
    """Any sequence of triggers: a legal one moves as the table says, an illegal one raises and leaves
    every field of the session as it was."""
    session = CallSession(QUEUED, agent_id="1001", agent_channel="PJSIP/1001-1", since=3.0,
                          consult={"number": "200", "state": "ringing"}, answered_at=4.0, held_total=1.5, part=1,
                          pop={"customer": None})
    for trigger in triggers:
        before = _snapshot(session)
        expected = TRANSITIONS[session.state].get(trigger)
        if expected is None:
            with pytest.raises(SessionError):
                session.fire(trigger)
            assert _snapshot(session) == before
        else:
            assert session.fire(trigger) == expected
            assert next_state(before["_state"], trigger) == expected  # type: ignore[arg-type]
