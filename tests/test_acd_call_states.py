"""The queued-call state table (acd/call_states.py): legal moves, illegal ones, and that the ACD moves calls only
through it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from acd.call_states import CALL_TRANSITIONS, CallState, CallTrigger, next_call_state
from acd.states import AcdError

C, T = CallState, CallTrigger
ROOT = Path(__file__).resolve().parent.parent


def test_table_answers_every_listed_move_and_refuses_the_rest() -> None:
    """Every (state, trigger) pair in the table gives its state; every other pair raises illegal-call-transition
    with the state and the request in its details."""
    for state in CallState:
        for trigger in CallTrigger:
            if trigger in CALL_TRANSITIONS.get(state, {}):
                assert next_call_state(state, trigger) == CALL_TRANSITIONS[state][trigger]
            else:
                with pytest.raises(AcdError) as info:
                    next_call_state(state, trigger, "u1")
                assert info.value.error_id == "illegal-call-transition"
                assert info.value.details == {"uniqueid": "u1", "state": state.value, "request": trigger.value}


@pytest.mark.parametrize(("state", "trigger", "expected"), [
    (C.NEW, T.WAIT, C.WAITING),
    (C.NEW, T.PARK, C.PARKED),
    (C.NEW, T.RESTORE_RINGING, C.OFFERED),
    (C.NEW, T.RESTORE_TALKING, C.ON_CALL),
    (C.WAITING, T.OFFER, C.OFFERED),
    (C.WAITING, T.WAIT, C.WAITING),  # overflow to another queue
    (C.WAITING, T.PARK, C.PARKED),
    (C.PARKED, T.WAIT, C.WAITING),
    (C.OFFERED, T.ANSWER, C.ON_CALL),
    (C.OFFERED, T.RECALL, C.RECALLING),
    (C.OFFERED, T.WAIT, C.WAITING),
    (C.RECALLING, T.WAIT, C.WAITING),
    (C.RECALLING, T.ANSWER, C.ON_CALL),
])
def test_legal_moves(state: CallState, trigger: CallTrigger, expected: CallState) -> None:
    """The moves the ACD makes: arrival, offer, answer, recall, requeue, park and restore."""
    assert next_call_state(state, trigger) == expected


@pytest.mark.parametrize(("state", "trigger"), [
    (C.ON_CALL, T.OFFER),  # a second offer of a call in conversation
    (C.ON_CALL, T.WAIT),
    (C.PARKED, T.OFFER),  # no offer while the PBX is unreachable
    (C.WAITING, T.ANSWER),  # an answer needs an offer
    (C.NEW, T.OFFER),
    (C.RECALLING, T.OFFER),
    (C.WAITING, T.RESTORE_TALKING),  # restore only places a new call
])
def test_illegal_moves_raise_and_change_nothing(state: CallState, trigger: CallTrigger) -> None:
    """An illegal move raises AcdError('illegal-call-transition') and leaves the state as it was."""
    current = state
    with pytest.raises(AcdError) as info:
        current = next_call_state(current, trigger, "u9")
    assert info.value.error_id == "illegal-call-transition" and current is state
    assert info.value.message == f"call u9 cannot {trigger.value.replace('_', ' ')} while " \
                                 f"{state.value.replace('_', ' ')}"


def test_every_state_is_reachable_from_new_and_a_conversation_is_final() -> None:
    """No state in the table is dead: all are reached from NEW; ON_CALL has no way out (the call is dropped)."""
    seen, todo = {C.NEW}, [C.NEW]
    while todo:
        for target in CALL_TRANSITIONS[todo.pop()].values():
            if target not in seen:
                seen.add(target)
                todo.append(target)
    assert seen == set(CallState)
    assert CALL_TRANSITIONS[C.ON_CALL] == {}


def test_the_acd_changes_a_call_state_only_through_the_table() -> None:
    """In acd/, the only assignment to a call's ``state`` is the service's ``_move``, which asks the table."""
    assignments = []
    for path in sorted((ROOT / "acd").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            for node in ast.walk(func):
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else []
                for t in targets:
                    for el in (t.elts if isinstance(t, ast.Tuple) else [t]):
                        if isinstance(el, ast.Attribute) and el.attr == "state" and \
                                isinstance(el.value, ast.Name) and el.value.id != "a":  # agents: acd/states.py
                            assignments.append((path.name, func.name, ast.unparse(node)))
    assert assignments == [("service.py", "_move", "call.state = next_call_state(call.state, trigger, call.key[1])")]
