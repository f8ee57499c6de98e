"""Fuzz (issue 19): the configuration loader on mutated example configs, random text and hostile YAML.

``load_config_text`` returns a ``CtiConfig`` or raises ``ConfigError`` whose every issue names the file, a
line when there is one, and either a key path or what is wrong with the YAML; alias bombs ("billion
laughs"), recursive anchors and deep nesting are refused at once, with that kind of message.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from config.load import ALIAS_BUDGET, ConfigError, load_config, load_config_text
from config.schema import CtiConfig
from tests.fuzzing import fuzz_settings, mutated

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.yaml"))
SEEDS = [p.read_bytes() for p in EXAMPLES]
NAME = "fuzz.yaml"

pytestmark = pytest.mark.timeout(60)


def bomb(levels: int, width: int = 9, key: str = "lol") -> str:
    """The "billion laughs": each anchor a list of ``width`` aliases of the one before."""
    lines = [f'{key}0: &{key}0 ["lol"]']
    lines += [f"{key}{i}: &{key}{i} [" + ", ".join([f"*{key}{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def check(text: str) -> CtiConfig | ConfigError:
    try:
        return load_config_text(text, NAME)
    except ConfigError as exc:
        assert exc.issues and str(exc)
        for issue in exc.issues:
            assert issue.file == NAME and issue.message.strip()
            assert issue.line is None or 1 <= issue.line <= text.count("\n") + 2
            assert issue.path or issue.message.startswith(("not valid YAML", "expected a mapping")), issue
        return exc


def splice(base: bytes, extra: str, at: int) -> str:
    text = base.decode("utf-8", "replace")
    lines = text.splitlines(keepends=True)
    pos = at % (len(lines) + 1)
    return "".join(lines[:pos]) + extra + "".join(lines[pos:])


hostile = st.sampled_from([
    bomb(9), bomb(30, 2), "a: &a [*a]\n", "ivr: &x {flows: *x}\n", "x: " + "[" * 3000 + "]" * 3000 + "\n",
    "x: " + "{a: " * 100 + "1" + "}" * 100 + "\n", "- " * 2000 + "1\n", "listen: *nope\n", "\ufeffacd: {}\n",
    "agents: !!python/object/apply:os.system [true]\n", "? [a, b]\n: 1\n", "<<: *a\n", "acd: {queues: 1e999}\n",
    "x: " + "9" * 5000 + "\n", "%YAML 9.9\n---\n", "--- a\n--- b\n", "\t- x\n", "a: 'unterminated\n",
])


@fuzz_settings(120, deadline_ms=3000)
@given(text=st.one_of(mutated(SEEDS, 5).map(lambda b: b.decode("utf-8", "replace")), st.text(max_size=300),
                      st.tuples(st.sampled_from(SEEDS), hostile, st.integers(0, 400)).map(lambda t: splice(*t))))
@example(text=bomb(9))  # minutes and gigabytes before the alias budget
@example(text="a: &a [*a]\n")  # RecursionError before
@example(text="x: " + "[" * 3000 + "]" * 3000 + "\n")  # RecursionError before
@example(text="- " * 2000 + "1\n")  # RecursionError before
@example(text="x: " + "9" * 5000 + "\n" + SEEDS[0].decode())  # ValueError from int() in the YAML constructor
def test_loader_returns_a_config_or_clear_issues(text: str) -> None:
    check(text)


@pytest.mark.parametrize("text", [bomb(9), bomb(60, 2), bomb(5, 100), "ivr: &x {flows: *x}\n", "a: &a [*a]\n"],
                         ids=["laughs-9", "doubling-60", "wide-5", "recursive-map", "recursive-list"])
def test_alias_bombs_are_refused_fast_and_small(text: str) -> None:
    tracemalloc.start()
    try:
        start = time.process_time()
        result = check(text)
        elapsed = time.process_time() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, ConfigError)
    assert elapsed < 0.5 and peak < 5_000_000, (elapsed, peak)
    message = str(result)
    assert "alias" in message and NAME + ":" in message


def test_an_alias_within_the_budget_still_loads() -> None:
    """Anchors and aliases used the ordinary way (a shared block) are fine."""
    base = EXAMPLES[0].read_text()
    assert isinstance(load_config_text(base, NAME), CtiConfig)
    assert ALIAS_BUDGET >= 10_000


def test_a_file_that_is_not_utf8_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(SEEDS[0][:100] + b"\xff\xfe" + SEEDS[0][100:])
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "UnicodeDecodeError" in str(info.value)


def test_a_key_written_twice_is_an_error_naming_both_lines() -> None:
    """YAML keeps the last of two equal keys; the loader says so instead of ignoring the first in silence."""
    text = SEEDS[0].decode().replace("    username: cti\n", "    username: cti\n    username: other\n", 1)
    result = check(text)
    assert isinstance(result, ConfigError)
    line = text.splitlines().index("    username: other") + 1
    assert f"{NAME}:{line} asterisk[0].username: duplicate key (also on line {line - 1})" in str(result)


DEEP = ["x: " + "[" * 3000 + "]" * 3000 + "\n", "x:\n  y: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n"]


@pytest.mark.parametrize("text", DEEP, ids=["lists", "mappings"])
def test_deep_flow_nesting_is_refused_fast_at_its_line(text: str) -> None:
    """PyYAML's scanner costs per token in proportion to the flow depth (1.3 s for 3,000 brackets, 5 s on a
    busy machine): the loader stops reading tokens once the depth passes the limit."""
    start = time.process_time()
    result = check(text)
    elapsed = time.process_time() - start
    assert isinstance(result, ConfigError) and elapsed < 0.6, elapsed
    assert f"{NAME}:{text.count(chr(10))}: not valid YAML here: nests more than 64 levels deep" in str(result)
