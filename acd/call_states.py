"""Queued-call state table: the states of a call the ACD holds, its triggers and the legal moves, as data.

No I/O, no clock; the ACD service is the only caller and must not be imported here. The pattern is the
agent table's (``acd.states``, after h11's ``_state.py``): ``next_call_state`` answers the state after
a trigger or raises ``AcdError("illegal-call-transition")``, and the caller assigns only what it
answered, so an illegal move changes nothing.

A call is NEW from its creation until the service places it: in a queue (WAITING), or aside while its
PBX is unreachable (PARKED), or, after a server restart, straight into the offer or the conversation
the PBX shows (RESTORE_RINGING, RESTORE_TALKING). A call the ACD lets go (talk ended, abandoned,
overflowed out) is dropped from its tables in whatever state it had; there is no ended state here.
"""

from __future__ import annotations

from enum import StrEnum

from acd.states import AcdError


class CallState(StrEnum):
    NEW = "new"  # created, not yet placed (never visible outside one service call)
    WAITING = "waiting"
    PARKED = "parked"  # the AMI connection of its server is down: no offer possible
    OFFERED = "offered"
    RECALLING = "recalling"  # the offer was withdrawn or cancelled; waiting to hear where the caller is
    ON_CALL = "on_call"


class CallTrigger(StrEnum):
    WAIT = "wait"  # (re)enter a queue: arrival, requeue, overflow to another queue, reconnection
    PARK = "park"  # the call's PBX is unreachable
    OFFER = "offer"  # the router chose an agent; the agent's phone rings
    RECALL = "recall"  # the offer was withdrawn (logout) or the caller's side cancelled it
    ANSWER = "answer"  # the agent answered (or the phone shows in use after lost Dial events)
    RESTORE_RINGING = "restore_ringing"  # after a restart: the PBX shows the offer still ringing
    RESTORE_TALKING = "restore_talking"  # after a restart: the PBX shows the agent talking to (or holding) it


C = CallState
T = CallTrigger

#: CALL_TRANSITIONS[state][trigger] -> new state. Anything missing is illegal.
CALL_TRANSITIONS: dict[CallState, dict[CallTrigger, CallState]] = {
    C.NEW: {T.WAIT: C.WAITING, T.PARK: C.PARKED, T.RESTORE_RINGING: C.OFFERED, T.RESTORE_TALKING: C.ON_CALL},
    # WAITING -> WAITING: overflow to another queue at max wait
    C.WAITING: {T.WAIT: C.WAITING, T.PARK: C.PARKED, T.OFFER: C.OFFERED},
    C.PARKED: {T.WAIT: C.WAITING},
    # an offer that ended without a conversation is requeued at once (or parked), or recalled first
    C.OFFERED: {T.ANSWER: C.ON_CALL, T.WAIT: C.WAITING, T.PARK: C.PARKED, T.RECALL: C.RECALLING},
    # the agent may still answer a cancelled offer (the DialEnd ANSWER crossed the Redirect)
    C.RECALLING: {T.WAIT: C.WAITING, T.PARK: C.PARKED, T.ANSWER: C.ON_CALL},
    C.ON_CALL: {},  # the conversation ends the ACD's part: the call is dropped, not moved
}

#: States in which a caller is in a queue's line (counted as waiting on the wallboard).
QUEUED = frozenset({C.WAITING, C.PARKED, C.RECALLING})


def next_call_state(state: CallState, trigger: CallTrigger, uniqueid: str = "") -> CallState:
    """The state after ``trigger``; raise ``AcdError('illegal-call-transition')`` if the table has no entry."""
    try:
        return CALL_TRANSITIONS[state][trigger]
    except KeyError:
        raise AcdError("illegal-call-transition", f"call {uniqueid[:40]} cannot {trigger.value.replace('_', ' ')} "
                       f"while {state.value.replace('_', ' ')}", uniqueid=uniqueid[:40], state=state.value,
                       request=trigger.value) from None
