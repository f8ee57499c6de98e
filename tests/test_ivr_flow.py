"""IVR flow schema: load-time validation with the config's ``file:line key.path: message`` errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from config.load import ConfigError, load_config, load_config_text
from cti.contract import RESERVED_VARIABLES
from ivr.flow import IvrSection, spinning_cycles
from sim.core_sounds import CORE_SOUNDS_EN

ROOT = Path(__file__).resolve().parent.parent


def errors_of(yaml_text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(textwrap.dedent(yaml_text), "ivr.yaml")
    return [str(issue) for issue in info.value.issues]


def flow_doc(nodes: str, start: str = "m", extra: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(nodes), " " * 8)
    return f"ivr:\n{extra}  flows:\n    main:\n      start: {start}\n      nodes:\n{body}"


def test_shipped_example_is_valid() -> None:
    """config/examples/ivr_demo.yaml loads and uses every node kind."""
    cfg = load_config(ROOT / "config" / "examples" / "ivr_demo.yaml")
    kinds = {node.kind for node in cfg.ivr.flows["main"].nodes.values()}
    assert kinds == {"play", "menu", "collect", "lookup", "set", "branch", "schedule", "queue", "transfer",
                     "callback", "voicemail", "hangup"}


def test_unknown_target_names_file_line_and_key_path() -> None:
    """A menu option naming a missing node is reported at the option's line with a suggestion."""
    doc = flow_doc("""\
        m:
          kind: menu
          prompt: main
          options:
            1: billing
            2: billingg
        billing: {kind: queue, queue: billing}
    """)
    assert errors_of(doc) == ["ivr.yaml:11 ivr.flows.main.nodes.m.options.2: unknown node 'billingg' "
                              "(did you mean 'billing'?)"]


def test_semantic_errors_are_relative_to_the_section() -> None:
    """IvrSection.semantic_errors() returns (loc, message) pairs starting below ``ivr``."""
    section = IvrSection.model_validate({"flows": {"main": {"start": "m", "nodes": {
        "m": {"kind": "menu", "prompt": "p", "options": {"1": "billingg"}},
        "billing": {"kind": "hangup"}}}}})
    errors = section.semantic_errors()
    assert (("flows", "main", "nodes", "m", "options", "1"), "unknown node 'billingg' (did you mean 'billing'?)") \
        in errors
    assert (("flows", "main", "nodes", "billing"), "node 'billing' is unreachable from start 'm'") in errors


def test_unreachable_node_and_unknown_start() -> None:
    """Nodes no path from start reaches are errors; so is a start naming no node."""
    assert "ivr.yaml:7 ivr.flows.main.nodes.orphan: node 'orphan' is unreachable from start 'm'" in errors_of(
        flow_doc("""\
            m: {kind: hangup}
            orphan: {kind: hangup}
        """))
    assert errors_of(flow_doc("m: {kind: hangup}", start="x")) == [
        "ivr.yaml:4 ivr.flows.main.start: unknown node 'x'"]


def test_cycle_without_input_is_rejected_but_a_menu_loop_is_not() -> None:
    """A loop of play/set/branch nodes would spin forever; a loop through a menu waits for the caller."""
    errs = errors_of(flow_doc("""\
        a: {kind: play, prompts: hello, next: b}
        b: {kind: set, priority: 2, next: c}
        c: {kind: branch, cases: [{ani: "^1", goto: a}], default: d}
        d: {kind: hangup}
    """, start="a"))
    assert errs == ["ivr.yaml:6 ivr.flows.main.nodes.a: cycle a -> b -> c -> a never waits for caller input"]
    load_config_text(flow_doc("""\
        a: {kind: play, prompts: hello, next: m}
        m: {kind: menu, prompt: p, options: {"1": a, "2": d}, after_retries: a}
        d: {kind: hangup}
    """, start="a"))


def test_self_loop_is_a_spinning_cycle() -> None:
    """A node whose next is itself is reported as a one-node cycle."""
    section = IvrSection.model_validate({"flows": {"f": {"start": "a", "nodes": {
        "a": {"kind": "play", "prompts": "x", "next": "a"}}}}})
    assert spinning_cycles(section.flows["f"]) == [["a"]]


def test_menu_without_options() -> None:
    """A menu needs at least one option."""
    assert errors_of(flow_doc("m: {kind: menu, prompt: p}")) == [
        "ivr.yaml:6 ivr.flows.main.nodes.m.options: a menu needs at least one option"]


def test_bad_regex_and_bad_lengths() -> None:
    """Collect regexes are compiled at load time; min_digits may not exceed max_digits."""
    errs = errors_of(flow_doc("""\
        m: {kind: collect, name: acct, prompt: p, regex: "([0-9]", next: e}
        e: {kind: hangup}
    """))
    assert len(errs) == 1 and errs[0].startswith("ivr.yaml:6 ivr.flows.main.nodes.m.regex: invalid regular expression")
    errs = errors_of(flow_doc("""\
        n: {kind: collect, name: pin, prompt: p, min_digits: 6, max_digits: 4, next: e}
        e: {kind: hangup}
    """, start="n"))
    assert errs == ["ivr.yaml:6 ivr.flows.main.nodes.n.min_digits: min_digits (6) is greater than max_digits (4)"]


def test_overlapping_schedule_windows_and_bad_zone() -> None:
    """Windows of one weekday may not overlap; the time zone must exist."""
    errs = errors_of(flow_doc("""\
        s:
          kind: schedule
          timezone: Europe/Paris
          hours: {mon: ["08:00-12:00", "11:30-18:00"], tue: ["08:00-12:00", "12:00-13:00"]}
          open: e
          closed: e
        e: {kind: hangup}
    """, start="s"))
    assert errs == ["ivr.yaml:9 ivr.flows.main.nodes.s.hours.mon[1]: window '11:30-18:00' overlaps "
                    "'08:00-12:00' on mon"]
    errs = errors_of(flow_doc("""\
        s: {kind: schedule, timezone: Mars/Olympus, hours: {mon: ["18:00-08:00"]}, open: e, closed: e}
        e: {kind: hangup}
    """, start="s"))
    assert any("unknown time zone 'Mars/Olympus'" in e for e in errs)
    assert any("ends before it starts" in e for e in errs)


def test_missing_prompts_checked_only_with_prompt_dir(tmp_path: Path) -> None:
    """With prompt_dir set, every prompt must exist there (any extension, language directories too)."""
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "hello.wav").write_bytes(b"RIFF")
    (tmp_path / "menu.gsm").write_bytes(b"x")
    nodes = """\
        a: {kind: play, prompts: [hello, nothere], next: m}
        m: {kind: menu, prompt: menu, invalid_prompt: sorry, options: {"1": e}}
        e: {kind: hangup}
    """
    load_config_text(flow_doc(nodes, start="a"))  # no prompt_dir: no check
    errs = errors_of(flow_doc(nodes, start="a", extra=f"  prompt_dir: {tmp_path}\n"))
    assert errs == [
        "ivr.yaml:7 ivr.flows.main.nodes.a.prompts[1]: prompt 'nothere' not found in prompt_dir",
        "ivr.yaml:8 ivr.flows.main.nodes.m.invalid_prompt[0]: prompt 'sorry' not found in prompt_dir",
    ]


def test_unknown_kind_and_unknown_key_are_reported_without_union_noise() -> None:
    """A node is validated by its kind's model only, so errors read nodes.<id>.<key>; the "did you mean"
    comes from that kind's keys (a hangup node has a ``prompt``)."""
    errs = errors_of(flow_doc("""\
        m: {kind: hangup, prompts: x}
        n: {kind: teleport}
    """))
    assert "ivr.yaml:6 ivr.flows.main.nodes.m.prompts: unknown key (did you mean 'prompt'?)" in errs
    assert any(e.startswith("ivr.yaml:7 ivr.flows.main.nodes.n.kind: ") and "'play'" in e for e in errs)


def test_reserved_variables_and_collect_names() -> None:
    """A set node may not overwrite dialplan-contract variables; lookups need an existing collect name."""
    errs = errors_of(flow_doc("""\
        m: {kind: set, variables: {CTI_QUEUE: x, CTI_TOPIC: y}, next: l}
        l: {kind: lookup, by: account, value_from: acct, found: e, not_found: e}
        e: {kind: hangup}
    """))
    assert any("nodes.m.variables: variables CTI_QUEUE belong to the dialplan contract" in e for e in errs)
    errs = errors_of(flow_doc("""\
        l: {kind: lookup, by: account, value_from: acct, found: e, not_found: e}
        e: {kind: hangup}
    """, start="l"))
    assert errs == ["ivr.yaml:6 ivr.flows.main.nodes.l.value_from: no collect node stores 'acct'"]


def test_every_contract_variable_is_reserved_from_set_and_collect_nodes() -> None:
    """The one reserved set (cti.contract.RESERVED_VARIABLES) is what a flow may not write: no set node
    variable, and no collect node whose entry would be stored under one (``lead_id`` -> CTI_LEAD_ID);
    other names are free."""
    for name in sorted(RESERVED_VARIABLES):
        errs = errors_of(flow_doc(f"""\
            m: {{kind: set, variables: {{{name}: x}}, next: e}}
            e: {{kind: hangup}}
        """))
        assert any(f"variables {name} belong to the dialplan contract" in e for e in errs), name
    for name in ("queue", "lead_id", "max_hold", "customer_id", "Next"):
        errs = errors_of(flow_doc(f"""\
            m: {{kind: collect, name: {name}, prompt: enter, next: e}}
            e: {{kind: hangup}}
        """))
        assert errs == [f"ivr.yaml:6 ivr.flows.main.nodes.m.name: {name!r} would be stored as "
                        f"CTI_{name.upper()}, which belongs to the dialplan contract; choose another name"], name
    load_config_text(textwrap.dedent(flow_doc("""\
        m: {kind: collect, name: topic, prompt: enter, next: s}
        s: {kind: set, variables: {CTI_TOPIC: x}, next: e}
        e: {kind: hangup}
    """)), "ivr.yaml")


def test_queue_references_and_allow_from() -> None:
    """queue_references() lists queue and callback nodes; allow_from entries must be addresses or CIDRs."""
    section = IvrSection.model_validate({"flows": {"f": {"start": "q", "nodes": {
        "q": {"kind": "queue", "queue": "sales"}, "c": {"kind": "callback", "queue": "later"}}}}})
    assert section.queue_references() == [(("flows", "f", "nodes", "q", "queue"), "sales"),
                                          (("flows", "f", "nodes", "c", "queue"), "later")]
    errs = errors_of("ivr:\n  allow_from: [10.0.0.0/8, pbx.example.com]\n")
    assert errs == ["ivr.yaml:2 ivr.allow_from: expected an IP address or CIDR, got 'pbx.example.com', "
                    'got ["10.0.0.0/8", "pbx.example.com"]']


def test_default_flow_must_exist() -> None:
    """default_flow names one of the flows."""
    assert errors_of("ivr:\n  default_flow: mian\n  flows:\n    main: {start: e, nodes: {e: {kind: hangup}}}\n") \
        == ["ivr.yaml:2 ivr.default_flow: unknown flow 'mian' (did you mean 'main'?)"]


def test_ivr_walk_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``cti ivr-walk`` walks the example flow with scripted keys and prints the commands and the outcome."""
    from centre.cli import main

    status = main(["ivr-walk", str(ROOT / "config" / "examples" / "ivr_demo.yaml"), "main", "--keys", "0",
                   "--at", "2026-03-03T10:00:00-05:00"])
    out = capsys.readouterr().out
    assert status == 0
    assert "> SET VARIABLE CTI_TRANSFER_DIAL PJSIP/2000" in out and "outcome: transfer" in out
    assert main(["ivr-walk", str(ROOT / "config" / "examples" / "ivr_demo.yaml"), "nosuch"]) == 1


def test_flow_lists_every_prompt_it_names() -> None:
    """``Flow.prompt_names()`` gives each prompt of every field once, in node order;
    ``IvrSection.prompt_uses()`` says which flow and node play each one."""
    section = IvrSection.model_validate(yaml.safe_load("""
        flows:
          main menu:
            start: m
            nodes:
              m: {kind: menu, prompt: [a, b], no_input_prompt: c, invalid_prompt: a, options: {"1": p}}
              p: {kind: play, prompts: [d, b], next: c1}
              c1: {kind: collect, name: acct, prompt: e, next: q}
              q: {kind: queue, queue: x, prompt: f}
          other:
            start: h
            nodes:
              h: {kind: hangup, prompt: a}
    """))
    assert section.flows["main menu"].prompt_names() == ("a", "b", "c", "d", "e", "f")
    assert section.flows["other"].prompt_names() == ("a",)
    assert section.prompt_uses()["a"] == [("main menu", "m"), ("other", "h")]
    assert section.prompt_uses()["b"] == [("main menu", "m"), ("main menu", "p")]


@pytest.mark.parametrize("name", ["demo.yaml", "ivr_demo.yaml"])
def test_shipped_flows_use_only_asterisk_core_sounds(name: str) -> None:
    """Every prompt the example flows name is one of Asterisk's core English sounds, so a stock PBX plays
    them (``welcome`` and ``please-enter-your`` are not core sounds: on Asterisk 22 they failed)."""
    section = load_config(ROOT / "config" / "examples" / name).ivr
    prompts = {p for flow in section.flows.values() for p in flow.prompt_names()}
    assert prompts and prompts <= CORE_SOUNDS_EN, sorted(prompts - CORE_SOUNDS_EN)


def test_core_sound_list_matches_the_installed_package() -> None:
    """sim/core_sounds.py is the file list of Debian's asterisk-core-sounds-en-gsm, when it is installed."""
    root = Path("/usr/share/asterisk/sounds/en")
    if not root.is_dir():
        pytest.skip("asterisk-core-sounds-en-gsm is not installed")
    installed = {p.relative_to(root.resolve()).with_suffix("").as_posix() for p in root.resolve().rglob("*.gsm")}
    assert installed == CORE_SOUNDS_EN
