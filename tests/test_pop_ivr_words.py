"""The screen pop's IVR path in words: flow nodes carry a human ``label`` (or one made from the node), and
the path the caller took reads as what they chose, not as node ids (issue 12, item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.load import load_config
from cti.events import CallQueued
from ivr.events import IvrCompleted, PathStep
from ivr.flow import Flow
from screenpop.compose import compose_pop
from screenpop.context import ivr_words, pop_context
from screenpop.settings import ScreenpopSection

DEMO = Path(__file__).resolve().parent.parent / "config" / "examples" / "demo.yaml"


def _flow(nodes: dict) -> Flow:
    return Flow.model_validate({"start": next(iter(nodes)), "nodes": nodes})


def test_a_node_label_defaults_to_the_queue_name_or_the_id_in_words() -> None:
    """Without ``label``, a queue node reads "<Queue> queue" and any other node its id in words."""
    flow = _flow({"main_menu": {"kind": "menu", "prompt": "x", "options": {"1": "tech_support"}},
                  "tech_support": {"kind": "queue", "queue": "tech_support"},
                  "named": {"kind": "queue", "queue": "q1", "label": "Broadband faults"}})
    assert flow.nodes["main_menu"].display_label("main_menu") == "Main menu"
    assert flow.nodes["tech_support"].display_label("tech_support") == "Tech support queue"
    assert flow.nodes["named"].display_label("named") == "Broadband faults"


def test_a_label_is_short_text() -> None:
    with pytest.raises(ValueError):
        _flow({"q": {"kind": "queue", "queue": "q", "label": "x" * 61}})


def test_the_demo_path_reads_as_what_the_caller_chose() -> None:
    """The issue's example path, ``who:found › vip_check:default › menu:1 › sales:queue:sales``, reads in the
    demo flow's labels, and the reason for the call is the queue the choice led to."""
    flow = load_config(DEMO).ivr.flows["main"]
    steps, reason = ivr_words(flow, ["who:found", "vip_check:default", "menu:1", "sales:queue:sales"])
    assert steps == ("Caller's number: recognised", "VIP customer: no", "Main menu: pressed 1 (Sales)", "Sales")
    assert reason == "Sales"
    steps, reason = ivr_words(flow, ["who:not_found", "menu:3", "account:12345678", "account_lookup:found",
                                     "billing:queue:billing"])
    assert steps[1:3] == ("Main menu: pressed 3 (Account number)", "Account number: entered 12345678")
    assert reason == "Billing"
    assert ivr_words(None, ["menu:1"]) == ((), "")


def test_the_pop_carries_the_steps_and_the_reason_beside_the_node_ids() -> None:
    """``pop_context`` with the configured flows fills ``ivr.steps`` and ``ivr.reason``; ``ivr.path`` keeps the
    node ids for tools."""
    cfg = load_config(DEMO)
    queued = CallQueued(server="sim", ts=100.0, call_id="c1", uniqueid="c1", channel="PJSIP/x-1", queue="sales",
                        skills="", priority=0, language="", caller_num="+15551230000", caller_name="WEI LOPEZ",
                        dnis="")
    ivr = IvrCompleted(server="sim", ts=99.0, uniqueid="c1", channel="PJSIP/x-1", flow="main", outcome="queue",
                       path=(PathStep("who", "lookup", 90.0, result="found"), PathStep("menu", "menu", 95.0, "1"),
                             PathStep("sales", "queue", 98.0, result="queue:sales")))
    ctx = pop_context(queued, agent_id="1001", now=110.0, ivr=ivr, flows=cfg.ivr.flows)
    pop = compose_pop(ctx, [], {}, ScreenpopSection())
    assert pop["ivr"]["path"] == ["who:found", "menu:1", "sales:queue:sales"]
    assert pop["ivr"]["steps"] == ["Caller's number: recognised", "Main menu: pressed 1 (Sales)", "Sales"]
    assert pop["ivr"]["reason"] == "Sales"
