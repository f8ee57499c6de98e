"""The dialplan contract (cti/contract.py): the shipped extensions_cti.conf and sim/dialplan.yaml name
exactly its contexts, variables, CTI_NEXT values and UserEvents; the modules that speak to the dialplan
take its strings from it; its one reserved set and its one definition of an outbound call hold where
they are used."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from centre.call_log import CallLog
from cti import contract
from cti.contract import (
    CONTEXTS,
    CTI_LEAD_ID,
    CTI_LEAD_NUMBER,
    CTI_QUEUE,
    DIALPLAN_VARIABLES,
    GLOBAL_VARIABLES,
    NEXT_VALUES,
    OUTBOUND_VARIABLES,
    RESERVED_VARIABLES,
    SERVER_VARIABLES,
    USER_EVENTS,
    is_outbound,
)
from cti.events import CallQueued
from screenpop.context import pop_context
from sim.dialplan import DEFAULT_DIALPLAN, Dialplan, load_dialplan, split_args
from tests.test_dialer_campaign import make, start

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CONF = ROOT / "config" / "asterisk" / "extensions_cti.conf"
DIALPLANS = pytest.mark.parametrize("path", [SHIPPED_CONF, DEFAULT_DIALPLAN], ids=["conf", "sim-yaml"])
# A CTI_ variable anywhere in a step's argument (``__CTI_DNIS`` counts as CTI_DNIS).
_VARIABLE = re.compile(r"(?<![A-Za-z0-9])CTI_[A-Z0-9_]+")
_NEXT_TEST = re.compile(r'"\$\{CTI_NEXT\}" = "([^"]*)"')
_FIELD = re.compile(r"^\s*([A-Za-z]+):\s*\$\{([A-Z_]+)\}\s*$")


def _steps(dp: Dialplan) -> list[tuple[str, str, str, str]]:
    """(context, extension, application, argument) of every priority."""
    return [(ctx.name, ext.name, s.app, s.data)
            for ctx in dp.contexts.values() for ext in ctx.extensions.values() for s in ext.steps]


def test_contract_is_on_the_kernel_floor() -> None:
    """cti/contract.py imports only the standard library: no engine, simulator or configuration."""
    tree = ast.parse((ROOT / "cti" / "contract.py").read_text())
    imported = {node.module if isinstance(node, ast.ImportFrom) else alias.name
                for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in node.names}
    assert imported <= {"__future__", "collections.abc", "dataclasses", "typing"}


@DIALPLANS
def test_the_dialplan_has_exactly_the_contracts_contexts(path: Path) -> None:
    """Every context the contract names exists, and no other (``[globals]`` is not a context)."""
    assert set(load_dialplan(path).contexts) == CONTEXTS


@DIALPLANS
def test_the_extensions_the_server_sends_channels_to_exist(path: Path) -> None:
    """``s`` in every context the server Redirects or Originates into, ``return`` in cti-hold, ``0`` in
    cti-consult, the spy modes in cti-spy; an agent id matches cti-agent and a dialled number cti-inbound."""
    dp = load_dialplan(path)
    for context in CONTEXTS - {contract.INBOUND_CONTEXT, contract.AGENT_CONTEXT, contract.CONSULT_CONTEXT,
                               contract.SPY_CONTEXT}:
        assert dp.find(context, contract.START_EXTEN) is not None, context
    for exten in contract.SPY_EXTENS.values():
        assert dp.find(contract.SPY_CONTEXT, exten) is not None, exten
    assert dp.find(contract.HOLD_CONTEXT, contract.HOLD_RETURN_EXTEN) is not None
    assert dp.find(contract.CONSULT_CONTEXT, contract.CONSULT_EXTEN) is not None
    assert dp.find(contract.AGENT_CONTEXT, "alice01") is not None
    assert dp.find(contract.INBOUND_CONTEXT, "+18005550100") is not None


@DIALPLANS
def test_the_dialplan_uses_exactly_the_contracts_variables(path: Path) -> None:
    """Every CTI_* variable the dialplan reads or sets is in the contract's DIALPLAN_VARIABLES and each of
    those is used; the globals are GLOBAL_VARIABLES; the server-only variables never appear there."""
    dp = load_dialplan(path)
    used = {v for *_, data in _steps(dp) for v in _VARIABLE.findall(data)} | set(dp.globals)
    assert used == DIALPLAN_VARIABLES
    assert set(dp.globals) == GLOBAL_VARIABLES
    assert not used & SERVER_VARIABLES
    assert RESERVED_VARIABLES == DIALPLAN_VARIABLES | SERVER_VARIABLES


@DIALPLANS
def test_the_dialplan_follows_exactly_the_contracts_next_values(path: Path) -> None:
    """cti-inbound tests CTI_NEXT against NEXT_VALUES, each once."""
    tested = [v for *_, data in _steps(load_dialplan(path)) for v in _NEXT_TEST.findall(data)]
    assert sorted(tested) == sorted(NEXT_VALUES)


@DIALPLANS
def test_the_dialplan_raises_exactly_the_contracts_user_events(path: Path) -> None:
    """Every UserEvent of the dialplan is in the contract with the same fields in the same order (each
    ``Header: ${VARIABLE}``), in the context the contract says, and every contract UserEvent is raised."""
    raised: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}
    for context, exten, app, data in _steps(load_dialplan(path)):
        if app != "UserEvent":
            continue
        name, *fields = split_args(data)
        pairs = []
        for text in fields:
            m = _FIELD.match(text)
            assert m is not None, f"{context},{exten}: UserEvent {name} field {text!r} is not 'Header: ${{VAR}}'"
            pairs.append((m.group(1), m.group(2)))
        assert name not in raised, f"UserEvent {name} raised twice"
        raised[name] = (f"{context},{exten}", tuple(pairs))
    assert {name: fields for name, (_, fields) in raised.items()} == \
        {name: spec.fields for name, spec in USER_EVENTS.items()}
    assert {name: where for name, (where, _) in raised.items()} == {
        contract.CTI_QUEUED.name: f"{contract.HOLD_CONTEXT},{contract.START_EXTEN}",
        contract.CTI_RETURNED.name: f"{contract.HOLD_CONTEXT},{contract.HOLD_RETURN_EXTEN}",
        contract.CTI_AMD.name: f"{contract.OUTBOUND_CONTEXT},{contract.START_EXTEN}"}


# Packages whose code speaks to the dialplan (cti/ami is the AMI codec: it names no context).
_USERS = ["acd", "ivr", "dialer", "screenpop", "sim", "agent_console", "cti"]


def _literals(path: Path) -> list[tuple[int, str]]:
    """String constants of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)
                  and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_no_module_writes_out_the_contracts_strings() -> None:
    """Contexts, CTI_* contract variables (plain or inherited) and UserEvent names appear as string
    literals in cti/contract.py only: every other module takes them from it."""
    names = set(CONTEXTS) | set(RESERVED_VARIABLES) | {contract.inherited(v) for v in RESERVED_VARIABLES} \
        | set(USER_EVENTS)
    found = []
    for package in _USERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel == Path("cti/contract.py") or "migrations" in rel.parts:
                continue
            found += [f"{rel}:{line}: {value!r}" for line, value in _literals(path) if value in names]
    assert found == []


# ------------------------------------------------------------------------------------ outbound
def queued(data: dict[str, str], caller: str = "+18005550100") -> CallQueued:
    return CallQueued(server="pbx1", ts=10.0, call_id="9.1", uniqueid="9.1", channel="PJSIP/trunk-9", queue="sales",
                      skills="", priority=0, language="en", caller_num=caller, caller_name="", dnis="",
                      data=data)


def test_the_dialers_originate_sets_every_outbound_variable() -> None:
    """What ``is_outbound`` reads is what the dialer's Originate sets, into the outbound context."""
    (originate,) = start(make(1))
    assert set(OUTBOUND_VARIABLES) <= set(originate.variables)
    assert all(originate.variables[name] for name in OUTBOUND_VARIABLES)
    assert (originate.context, originate.exten) == (contract.OUTBOUND_CONTEXT, contract.START_EXTEN)
    assert is_outbound(originate.variables)


@pytest.mark.parametrize("name", OUTBOUND_VARIABLES)
def test_any_outbound_variable_makes_the_call_outbound_in_its_record_and_its_pop(name: str) -> None:
    """A call carrying only some of the dialer's variables (a preview or callback dial may) is outbound
    for the call log (the record the server writes) and for the screen pop alike. Before cti.contract the
    server looked at CTI_CAMPAIGN only and the pop at CTI_CAMPAIGN or CTI_LEAD_ID, so such a call was
    recorded inbound and popped outbound."""
    event = queued({name: "x", CTI_QUEUE: "sales"})
    (write,) = CallLog().handle(event)
    assert write.fields["direction"] == "outbound"
    assert pop_context(event, agent_id="1001", now=11.0).direction == "outbound"


def test_an_inbound_call_is_inbound_in_its_record_and_its_pop() -> None:
    """Routing data, IVR entries and empty dialer variables do not make a call outbound."""
    data = {CTI_QUEUE: "sales", "CTI_DNIS": "+18005550100", "CTI_FLOW": "main", "CTI_ACCOUNT": "42",
            **dict.fromkeys(OUTBOUND_VARIABLES, "")}
    event = queued(data)
    assert not is_outbound(data)
    (write,) = CallLog().handle(event)
    assert write.fields["direction"] == "inbound"
    assert pop_context(event, agent_id="1001", now=11.0).direction == "inbound"


def test_the_pop_never_shows_a_contract_variable_as_an_ivr_entry() -> None:
    """Without the IVR's completion the pop's entries come from the CTI_* variables: every reserved one
    is left out (the dialer's CTI_LEAD_NUMBER and CTI_ATTEMPT used to show as "lead_number" and "attempt")."""
    data = dict.fromkeys(RESERVED_VARIABLES, "v") | {"CTI_ACCOUNT": "0042", "CTI_TOPIC": "renewal"}
    ctx = pop_context(queued(data), agent_id="1001", now=11.0)
    assert ctx.ivr_collected == {"account": "0042", "topic": "renewal"}


def test_a_dial_naming_only_its_lead_is_outbound_for_the_server(tmp_path: Path) -> None:
    """Through the real server and the simulated PBX: a customer's channel that reaches cti-hold carrying
    CTI_LEAD_ID and CTI_LEAD_NUMBER but no campaign is recorded and popped as outbound, under the number
    dialled, not the channel's caller ID (the campaign's own number)."""
    from tests.virtual_calls import CallBench

    bench = CallBench(tmp_path, customers=50)
    bench.ready("1003")
    chan = bench.stack.sim.pbx.inbound_call(
        contract.START_EXTEN, "+18005550100", "", context=contract.HOLD_CONTEXT,
        variables=[(CTI_QUEUE, "sales"), (CTI_LEAD_ID, "L9"), (CTI_LEAD_NUMBER, "+12015550123")])
    bench.run(10)
    pops = [m for m in bench.pushed.to("1003", "pop") if m["uniqueid"] == chan.uniqueid]
    assert pops and {(p["direction"], p["ani"]) for p in pops} == {("outbound", "+12015550123")}
    row = bench.server.store.get_interaction(f"sim/{chan.linkedid}")
    assert row is not None and (row.direction, row.ani, row.lead_id) == ("outbound", "+12015550123", "L9")
    bench.close()
