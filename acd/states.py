"""Agent state table: states, triggers and the legal transitions between them, as data. No I/O, no clock.

An illegal trigger raises ``AcdError("illegal-transition")`` and changes nothing (the h11 ``_state.py``
pattern). The ACD service is the only caller; it must not be imported here.

Error tree (every error has a stable ``error_id`` for the console protocol)::

    AcdError
      unknown-agent, unknown-reason, illegal-transition, bad-endpoint, endpoint-in-use, unknown-call
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class AcdError(Exception):
    """A refused ACD request. ``error_id`` is stable; ``details`` are safe to show to the agent."""

    def __init__(self, error_id: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error_id": self.error_id, "message": self.message, "details": dict(self.details)}


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    RESERVED = "reserved"  # a call is offered, the phone rings
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    NOT_READY = "not_ready"


class Trigger(StrEnum):
    # requests from the agent (console)
    LOGIN = "login"
    READY = "ready"
    NOT_READY = "not_ready"
    LOGOUT = "logout"
    END_WRAPUP = "end_wrapup"
    # decisions and outcomes inside the ACD
    OFFER = "offer"
    ANSWER = "answer"
    OFFER_FAILED = "offer_failed"  # ring-no-answer, busy, unreachable: not the caller's doing
    OFFER_CANCELLED = "offer_cancelled"  # the caller hung up while ringing, or the offer was withdrawn
    # a preview (the dialer's preview mode): the agent is held for a lead it sees before it is dialled
    PREVIEW = "preview"  # ready -> reserved (reason preview), no call yet
    PREVIEW_OFFER = "preview_offer"  # the previewed lead answered: its call is offered to the agent held for it
    PREVIEW_ENDED = "preview_ended"  # skipped, timed out, or the dial did not reach a person
    TALK_ENDED = "talk_ended"
    WRAPUP_ENDED = "wrapup_ended"
    # after a server restart: back to what the PBX and the state log say (``restored_state``)
    RESTORE = "restore"


S = AgentState
T = Trigger

#: TRANSITIONS[state][trigger] -> new state. Anything missing is illegal.
TRANSITIONS: dict[AgentState, dict[Trigger, AgentState]] = {
    S.LOGGED_OUT: {T.LOGIN: S.NOT_READY},
    S.NOT_READY: {T.READY: S.READY, T.NOT_READY: S.NOT_READY, T.LOGOUT: S.LOGGED_OUT},
    S.READY: {T.NOT_READY: S.NOT_READY, T.LOGOUT: S.LOGGED_OUT, T.OFFER: S.RESERVED, T.PREVIEW: S.RESERVED},
    S.RESERVED: {T.ANSWER: S.ON_CALL, T.OFFER_FAILED: S.NOT_READY, T.OFFER_CANCELLED: S.READY,
                 T.LOGOUT: S.LOGGED_OUT, T.PREVIEW_OFFER: S.RESERVED, T.PREVIEW_ENDED: S.READY},
    S.ON_CALL: {T.TALK_ENDED: S.WRAP_UP},  # no logout mid-call: the agent would be free for a second call
    S.WRAP_UP: {T.WRAPUP_ENDED: S.READY, T.END_WRAPUP: S.READY, T.READY: S.READY, T.NOT_READY: S.NOT_READY,
                T.LOGOUT: S.LOGGED_OUT},
}

#: States a server restart may put a logged-out agent back in (the only RESTORE moves; see acd/restore.py).
RESTORABLE = frozenset({S.READY, S.NOT_READY, S.RESERVED, S.ON_CALL, S.WRAP_UP})

#: Requests an agent may make while on a call; they take effect when the call's work ends.
DEFERRED_NOT_READY = frozenset({S.RESERVED, S.ON_CALL})


def restored_state(state: AgentState, target: AgentState, agent_id: str = "") -> AgentState:
    """``target`` if an agent in ``state`` may be restored to it (only a logged-out agent, only to
    ``RESTORABLE``); else raise ``AcdError('illegal-transition')``."""
    if state != S.LOGGED_OUT or target not in RESTORABLE:
        raise AcdError("illegal-transition", f"agent {agent_id} cannot be restored to {target.value.replace('_', ' ')} "
                       f"while {state.value.replace('_', ' ')}", agent_id=agent_id, state=state.value,
                       request=T.RESTORE.value)
    return target


def next_state(state: AgentState, trigger: Trigger, agent_id: str = "") -> AgentState:
    """The state after ``trigger``; raise ``AcdError('illegal-transition')`` if the table has no entry."""
    try:
        return TRANSITIONS[state][trigger]
    except KeyError:
        raise AcdError("illegal-transition", f"agent {agent_id} cannot {trigger.value.replace('_', ' ')} "
                       f"while {state.value.replace('_', ' ')}", agent_id=agent_id, state=state.value,
                       request=trigger.value) from None
