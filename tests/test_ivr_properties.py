"""Property tests: a flow that passes validation can never spin without waiting for caller input."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ivr.agi_peer import ScriptedCaller, converse, fastagi_environment
from ivr.agi_protocol import AgiEnvironment
from ivr.flow import Flow, spinning_cycles
from ivr.interpreter import IvrSession
from ivr.ports import InMemoryCustomerLookup

IDS = ["n0", "n1", "n2", "n3", "n4", "n5", "n6"]
INPUT_VERBS = ("WAIT FOR DIGIT", "GET DATA")


@st.composite
def flows(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, len(IDS)))
    ids = IDS[:count]
    target = st.sampled_from(ids)
    nodes: dict[str, Any] = {}
    for node_id in ids:
        kind = draw(st.sampled_from(["play", "set", "branch", "schedule", "lookup", "menu", "collect", "callback",
                                     "queue", "hangup"]))
        if kind == "play":
            node = {"kind": kind, "prompts": "p", "next": draw(target)}
        elif kind == "set":
            node = {"kind": kind, "priority": 1, "next": draw(target)}
        elif kind == "branch":
            node = {"kind": kind, "cases": [{"ani": draw(st.sampled_from(["^1", "2", ""])), "goto": draw(target)}],
                    "default": draw(target)}
        elif kind == "schedule":
            node = {"kind": kind, "timezone": "UTC", "hours": {"mon": ["00:00-12:00"]}, "open": draw(target),
                    "closed": draw(target)}
        elif kind == "lookup":
            node = {"kind": kind, "by": "ani", "found": draw(target), "not_found": draw(target),
                    "unavailable": draw(target)}
        elif kind == "menu":
            node = {"kind": kind, "prompt": "m", "retries": draw(st.integers(0, 2)),
                    "options": {"1": draw(target), "2": draw(target)},
                    "after_retries": draw(st.one_of(st.none(), target))}
        elif kind == "collect":
            node = {"kind": kind, "name": "acct", "prompt": "c", "min_digits": 2, "retries": 1,
                    "next": draw(target), "after_retries": draw(st.one_of(st.none(), target))}
        elif kind == "callback":
            node = {"kind": kind, "queue": "q", "next": draw(st.one_of(st.none(), target))}
        else:
            node = {"kind": kind} if kind == "hangup" else {"kind": kind, "queue": "q"}
        nodes[node_id] = node
    return {"start": "n0", "nodes": nodes, "max_steps": 60}


KEYS = st.lists(st.sampled_from([None, "1", "2", "9", "12#", "123", "hangup"]), max_size=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows(), KEYS, st.floats(0, 2e9), st.booleans())
def test_valid_flows_never_spin_without_input(raw: dict[str, Any], keys: list[str | None], now: float,
                                               customer_known: bool) -> None:
    """Between two reads of caller input the interpreter visits at most one node per node in the flow."""
    flow = Flow.model_validate(raw)
    assume(spinning_cycles(flow) == [])
    caller = ScriptedCaller(fastagi_environment("f"), keys=list(keys))
    session = IvrSession("f", flow, AgiEnvironment(caller.env))
    visits_at_input: list[int] = [0]
    reply_to = caller.reply_to

    def watching(line: str) -> bytes:
        if line.startswith(INPUT_VERBS) or (line.startswith("STREAM FILE") and "0123456789" in line):
            visits_at_input.append(session.steps)
        return reply_to(line)

    caller.reply_to = watching  # type: ignore[method-assign]
    lookup = InMemoryCustomerLookup([{"phone": "+15551230002"}] if customer_known else []).find
    converse(session, caller, lambda: now, lookup)
    visits_at_input.append(session.steps)
    gaps = [b - a for a, b in zip(visits_at_input, visits_at_input[1:], strict=False)]
    assert max(gaps) <= len(flow.nodes)
    assert session.completed is not None


@settings(max_examples=200, deadline=None)
@given(flows())
def test_rejected_cycles_really_have_no_input_node(raw: dict[str, Any]) -> None:
    """Every cycle the validator reports is closed under next-node edges and has no menu or collect."""
    flow = Flow.model_validate(raw)
    for cycle in spinning_cycles(flow):
        for i, node_id in enumerate(cycle):
            assert not flow.nodes[node_id].waits_for_input
            assert cycle[(i + 1) % len(cycle)] in flow.edges(node_id)
