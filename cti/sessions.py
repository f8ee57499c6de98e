"""Each queued call's session state, as a transition table (the h11 ``_state.py`` pattern, like
``acd.states`` for agents). No I/O, no clock.

A session is one time in a queue of one caller, as the agent's console sees it: waiting, ringing an
agent (offered), connected, held, consulting a third party, ended. An illegal trigger raises
``SessionError`` and changes nothing. ``CallSession`` is the record; its state moves only through
``CallSession.fire``. The session engine (``centre.call_sessions``) is its one owner.

Not the ACD's routing state of its queue entries (``acd.call_states``), nor the agent's state (wrap-up
is the agent's, in ``acd.states``). A blind or attended transfer ends the agent's part (``ended``): the
caller's next time in a queue is a new session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cti.events import CallQueued


class SessionState(StrEnum):
    """The values are the console protocol's ``call`` frame ``status``."""

    WAITING = "waiting"
    RINGING = "ringing"  # offered to an agent
    CONNECTED = "connected"
    HELD = "held"
    CONSULTING = "consulting"
    ENDED = "ended"


class SessionTrigger(StrEnum):
    OFFER = "offer"  # the ACD offered the call to an agent
    ANSWER = "answer"  # the agent answered
    OFFER_ENDED = "offer_ended"  # no answer, or the caller left: the agent's console sees it end
    REQUEUE = "requeue"  # after an offer ended, the caller waits again
    HOLD = "hold"
    RETRIEVE = "retrieve"
    CONSULT = "consult"  # attended transfer: the agent calls a third party
    CONSULT_ENDED = "consult_ended"  # back to the caller (cancelled, or the target hung up / failed)
    COMPLETE = "complete"  # the attended transfer completed: caller and target together
    TRANSFER = "transfer"  # blind transfer to a queue or a number
    END = "end"  # the agent's part is over (hang-up, the caller queued again)


class SessionError(Exception):
    """An illegal trigger for a session's state. ``error_id`` is stable (``illegal-transition``)."""

    error_id = "illegal-transition"

    def __init__(self, state: SessionState, trigger: SessionTrigger, call_id: str = "") -> None:
        self.state, self.trigger, self.call_id = state, trigger, call_id
        self.message = f"not possible while the call is {state.value}"
        super().__init__(f"call {call_id}: cannot {trigger.value.replace('_', ' ')} while {state.value}")


S = SessionState
T = SessionTrigger
_ON_CALL = (S.CONNECTED, S.HELD, S.CONSULTING)

#: TRANSITIONS[state][trigger] -> new state. Anything missing is illegal.
TRANSITIONS: dict[SessionState, dict[SessionTrigger, SessionState]] = {
    S.WAITING: {T.OFFER: S.RINGING, T.ANSWER: S.CONNECTED},
    S.RINGING: {T.ANSWER: S.CONNECTED, T.OFFER_ENDED: S.ENDED, T.END: S.ENDED},
    S.CONNECTED: {T.HOLD: S.HELD, T.CONSULT: S.CONSULTING, T.TRANSFER: S.ENDED, T.END: S.ENDED,
                  T.OFFER_ENDED: S.ENDED},
    S.HELD: {T.RETRIEVE: S.CONNECTED, T.TRANSFER: S.ENDED, T.END: S.ENDED, T.OFFER_ENDED: S.ENDED},
    S.CONSULTING: {T.CONSULT_ENDED: S.CONNECTED, T.COMPLETE: S.ENDED, T.END: S.ENDED, T.OFFER_ENDED: S.ENDED},
    S.ENDED: {T.REQUEUE: S.WAITING, T.OFFER_ENDED: S.ENDED},
}

#: States a session found with an agent after a server restart may start in (``CallSession.restored``).
RESTORABLE = frozenset({S.RINGING, S.CONNECTED, S.HELD})

#: States in which the agent has the call (its console shows it).
WITH_AGENT = frozenset({S.RINGING, *_ON_CALL})


def next_state(state: SessionState, trigger: SessionTrigger, call_id: str = "") -> SessionState:
    """The state after ``trigger``; raise ``SessionError`` if the table has no entry."""
    try:
        return TRANSITIONS[state][trigger]
    except KeyError:
        raise SessionError(state, trigger, call_id) from None


@dataclass(slots=True, eq=False)
class CallSession:
    """One time in a queue of one caller: its ``CallQueued`` and what the agent side has of it.

    ``since``: when the state began (a hold's start while held). ``consult``: while consulting, the
    number, ``"ringing" | "talking"`` and (internal, not pushed) the consultation ``channel``.
    ``answered_at``: the call timer runs from here, through holds. ``held_total``: seconds on hold
    before the current state (``holds`` of them, the longest ``hold_max``). ``part`` numbers the
    agents' parts of one call (1 for the first agent who answered it, 2 after a transfer, ...). ``pop``:
    the last screen pop its agent was sent."""

    queued: CallQueued
    agent_id: str = ""
    agent_channel: str = ""
    since: float = 0.0
    consult: dict[str, str] | None = None
    answered_at: float | None = None
    held_total: float = 0.0
    holds: int = 0  # the holds ended so far (``held_total`` is theirs)
    hold_max: float = 0.0  # the longest of them
    transferred_out: bool = False  # the agent sent the caller on to an outside number (blind or attended)
    part: int = 0
    pop: dict[str, Any] | None = None
    _state: SessionState = field(default=S.WAITING, init=False)

    @classmethod
    def restored(cls, queued: CallQueued, state: SessionState, **fields: Any) -> CallSession:
        """A session found with an agent after a restart, in ``state`` (one of ``RESTORABLE``)."""
        if state not in RESTORABLE:
            raise SessionError(S.WAITING, T.OFFER, queued.call_id)
        session = cls(queued, **fields)
        session._state = state
        return session

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def key(self) -> tuple[str, str]:
        """(server, caller's uniqueid)."""
        return self.queued.server, self.queued.uniqueid

    def fire(self, trigger: SessionTrigger) -> SessionState:
        """Move by ``trigger`` (``SessionError``, nothing changed, if it is illegal now)."""
        self._state = next_state(self._state, trigger, self.queued.call_id)
        return self._state

    def can(self, trigger: SessionTrigger) -> bool:
        return trigger in TRANSITIONS[self._state]


def end_hold(session: CallSession, now: float) -> float:
    """The session's hold (begun at ``since``) ends at ``now``: counted in ``held_total``, ``holds`` and
    ``hold_max``; returns its seconds."""
    held = max(0.0, now - session.since)
    session.held_total += held
    session.holds += 1
    session.hold_max = max(session.hold_max, held)
    return held
