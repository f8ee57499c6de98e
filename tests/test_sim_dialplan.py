"""Tests of sim/dialplan.py: the YAML dialplans mirror their .conf sources; patterns, substitution, expressions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cti.contract import CONTEXTS
from sim.dialplan import (
    DEFAULT_DIALPLAN,
    DialplanError,
    dialplan_from_data,
    evaluate_expression,
    load_dialplan,
    parse_extensions_conf,
    parse_goto,
    pattern_matches,
    split_args,
    split_condition,
    substitute,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CONF = ROOT / "config" / "asterisk" / "extensions_cti.conf"
TRANSCRIPT_YAML = ROOT / "sim" / "transcript_dialplan.yaml"


def _flatten(path_or_dp: object) -> list[tuple[str, str, int, str | None, str, str]]:
    dp = load_dialplan(path_or_dp) if isinstance(path_or_dp, Path) else path_or_dp  # type: ignore[arg-type]
    rows = []
    for ctx in dp.contexts.values():
        for ext in ctx.extensions.values():
            for s in ext.steps:
                rows.append((ctx.name, ext.name, s.number, s.label, s.app, s.data))
    return rows


def test_sim_dialplan_yaml_mirrors_shipped_conf() -> None:
    """sim/dialplan.yaml and config/asterisk/extensions_cti.conf have the same contexts, extensions,
    priorities, labels, applications, arguments (in order) and globals."""
    conf = load_dialplan(SHIPPED_CONF)
    yml = load_dialplan(DEFAULT_DIALPLAN)
    assert _flatten(yml) == _flatten(conf)
    assert yml.globals == conf.globals
    # The contexts the rest of the project relies on are really there (tests/test_contract.py checks the rest).
    assert set(conf.contexts) == CONTEXTS


def test_transcript_dialplan_mirrors_fixture_readme(fixtures_dir: Path) -> None:
    """sim/transcript_dialplan.yaml is the extensions.conf printed in the fixtures README, step for step."""
    readme = (fixtures_dir / "README.md").read_text()
    block = re.search(r"### extensions.conf\n\n```ini\n(.*?)```", readme, re.S)
    assert block is not None
    conf = parse_extensions_conf(block.group(1))
    yml = load_dialplan(TRANSCRIPT_YAML)
    assert _flatten(yml) == _flatten(conf)
    assert yml.globals == conf.globals


def test_conf_parser_reports_file_and_line() -> None:
    """A malformed .conf line is refused with its source and line number."""
    with pytest.raises(DialplanError, match=r"x.conf:3"):
        parse_extensions_conf("[a]\nexten => s,1,NoOp()\nthis is junk\n", "x.conf")
    with pytest.raises(DialplanError, match="'n' with no previous"):
        parse_extensions_conf("[a]\nexten => s,n,NoOp()\n")
    with pytest.raises(DialplanError, match="outside any"):
        parse_extensions_conf("exten => s,1,NoOp()\n")


def test_yaml_structure_errors_are_clear() -> None:
    """Bad YAML structures name the context/extension/step at fault."""
    with pytest.raises(DialplanError, match="contexts must be a mapping"):
        dialplan_from_data({"contexts": []})
    with pytest.raises(DialplanError, match=r"s@x step 2: must be a string"):
        dialplan_from_data({"contexts": {"x": {"s": ["NoOp()", {"a": 1}]}}})
    with pytest.raises(DialplanError, match="unknown top-level"):
        dialplan_from_data({"contexts": {}, "bogus": 1})


def test_labels_and_goto_targets() -> None:
    """A '(label)' prefix names a priority; Goto targets resolve with 1, 2 or 3 parts."""
    dp = dialplan_from_data({"contexts": {"c": {"s": ["NoOp(a)", "(here) Hangup()"]}}})
    ext = dp.find("c", "s")
    assert ext is not None and ext.label("here") == 2
    assert parse_goto("here", "c", "s") == ("c", "s", "here")
    assert parse_goto("t,1", "c", "s") == ("c", "t", "1")
    assert parse_goto("cti-hold,return,1", "c", "s") == ("cti-hold", "return", "1")


def test_pattern_matching_follows_asterisk_rules() -> None:
    """X/Z/N/[..]/./! patterns match as in Asterisk; an exact extension beats a pattern."""
    assert pattern_matches("_[+0-9].", "+15551234567")
    assert not pattern_matches("_[+0-9].", "s")
    assert not pattern_matches("_[+0-9].", "+")  # '.' needs at least one more character
    assert pattern_matches("_NXX", "212") and not pattern_matches("_NXX", "112")
    assert pattern_matches("_1!", "1")
    dp = dialplan_from_data({"contexts": {"c": {"_X.": ["NoOp(p)"], "123": ["NoOp(e)"], "_1XX": ["NoOp(q)"]}}})
    assert dp.find("c", "123").name == "123"  # type: ignore[union-attr]
    assert dp.find("c", "124").name == "_1XX"  # type: ignore[union-attr]
    assert dp.find("c", "9999").name == "_X."  # type: ignore[union-attr]
    assert dp.find("c", "abc") is None


def test_substitution_nests_functions_and_expressions() -> None:
    """${IF($["${X}" = ""]?a:${X})} expands inside out; substrings and unknown variables work."""
    env = {"X": "", "Y": "hello", "N": "5"}

    def func(name: str, args: str) -> str:
        if name == "IF":
            cond, t, f = split_condition(args)
            return t if cond not in ("", "0") else f
        return f"<{name}:{args}>"

    assert substitute('${IF($["${X}" = ""]?main:${X})}', env.get, func) == "main"
    env["X"] = "sales"
    assert substitute('${IF($["${X}" = ""]?main:${X})}', env.get, func) == "sales"
    assert substitute("${Y:1:3}/${Y:-2}/${NOPE}", env.get, func) == "ell/lo/"
    assert substitute("$[${N} + 1]", env.get, func) == "6"
    assert substitute("${CALLERID(num)}", env.get, func) == "<CALLERID:num>"
    assert substitute("${unterminated", env.get, func) == "${unterminated"


def test_expressions() -> None:
    """Comparisons are numeric when both sides are numbers, string otherwise; & | ! and parentheses."""
    assert evaluate_expression('"" = ""') == "1"
    assert evaluate_expression('"HANGUP" != "SUCCESS"') == "1"
    assert evaluate_expression("10 > 9") == "1"  # numeric, not string, comparison
    assert evaluate_expression('"10" < "9"') == "0"
    assert evaluate_expression("1 & 0") == "0"
    assert evaluate_expression("0 | 7") == "7"
    assert evaluate_expression("!(2 = 3)") == "1"
    assert evaluate_expression("(1 + 2) * 3") == "9"
    assert evaluate_expression("1 ? yes :: no") == "yes"
    with pytest.raises(DialplanError):
        evaluate_expression("1 / 0")
    with pytest.raises(DialplanError):
        evaluate_expression("(1 + 2")


def test_split_args_respects_nesting_and_quotes() -> None:
    """Arguments split on commas outside brackets and quotes."""
    assert split_args('a,$[1,2],"x,y",${F(a,b)}') == ["a", "$[1,2]", '"x,y"', "${F(a,b)}"]
