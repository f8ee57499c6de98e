"""Configuration loading: every error names file, line and key path; secrets never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from centre.cli import main
from config.load import ConfigError, load_config, load_config_text

ROOT = Path(__file__).resolve().parent.parent

BAD = """\
asterisk:
  - name: pbx1
    host: 127.0.0.1
    port: fivethousand
    username: cti
    secret: hunter2-very-secret
    bogus: 1
  - name: pbx1
    username: cti
    secret: [not, a, string]
database:
  url: sqlite:///x
"""


def test_every_error_has_file_line_and_path() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(BAD, "demo.yaml")
    text = [str(i) for i in info.value.issues]
    assert 'demo.yaml:4 asterisk[0].port: expected an integer 1-65535, got "fivethousand"' in text
    assert "demo.yaml:7 asterisk[0].bogus: unknown key" in text
    assert any(t.startswith("demo.yaml:10 asterisk[1].secret: ") for t in text)


def test_secret_values_never_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(BAD, "demo.yaml")
    assert "hunter2" not in str(info.value)
    assert "'not'" not in str(info.value) and '"not"' not in str(info.value)


def test_env_substitution_and_missing_env(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = "asterisk:\n  - name: a\n    username: u\n    secret: ${CTI_TEST_SECRET_X}\n"
    monkeypatch.setenv("CTI_TEST_SECRET_X", "s3cr3t")
    cfg = load_config_text(doc, "x.yaml")
    assert cfg.asterisk[0].secret.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(cfg)
    monkeypatch.delenv("CTI_TEST_SECRET_X")
    with pytest.raises(ConfigError) as info:
        load_config_text(doc, "x.yaml")
    assert str(info.value.issues[0]) == "x.yaml:4 asterisk[0].secret: environment variable CTI_TEST_SECRET_X is not set"


def test_duplicate_server_names_and_bad_yaml() -> None:
    doc = "asterisk:\n  - {name: a, username: u, secret: s}\n  - {name: a, username: u, secret: s}\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(doc, "d.yaml")
    assert "d.yaml:3 asterisk[1].name: duplicate server name 'a'" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config_text("asterisk: [\n", "y.yaml")
    assert str(info.value).startswith("y.yaml:")
    assert "not valid YAML" in str(info.value)


def test_unknown_section_suggests_close_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("databse:\n  url: x\n", "t.yaml")
    assert str(info.value) == "t.yaml:1 databse: unknown key (did you mean 'database'?)"


def test_examples_are_valid() -> None:
    for path in sorted((ROOT / "config" / "examples").glob("*.yaml")):
        load_config(path)


def test_check_config_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:4 asterisk[0].port" in err
    assert main(["check-config", str(ROOT / "config" / "examples" / "demo.yaml")]) == 0
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 1
    assert "file not found" in capsys.readouterr().err


NESTED = """\
acd:
  queues:
    - name: sales
      stratgey: longest_idle
  agents:
    - {id: "1001", name: A, endpoint: PJSIP/1001, skils: {sales: 1}}
asterisk:
  - name: a
    username: u
    secret: ${CTI_TEST_UNSET_SECRET}
databse: {url: x}
"""


def test_misspelt_nested_keys_get_a_suggestion_and_errors_come_in_line_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt key inside a list item (``acd.queues[0].stratgey``) gets the same "did you mean" as a
    top-level one, and the errors come sorted by line (an unset environment variable, found before the
    schema is checked, takes its place by line, not first)."""
    monkeypatch.delenv("CTI_TEST_UNSET_SECRET", raising=False)
    with pytest.raises(ConfigError) as info:
        load_config_text(NESTED, "n.yaml")
    assert [str(i) for i in info.value.issues] == [
        "n.yaml:4 acd.queues[0].stratgey: unknown key (did you mean 'strategy'?)",
        "n.yaml:6 acd.agents[0].skils: unknown key (did you mean 'skills'?)",
        "n.yaml:10 asterisk[0].secret: environment variable CTI_TEST_UNSET_SECRET is not set",
        "n.yaml:11 databse: unknown key (did you mean 'database'?)",
    ]


def test_check_config_prints_nested_suggestions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``cti check-config`` shows the nested suggestion, one line per error in line order."""
    path = tmp_path / "n.yaml"
    path.write_text(NESTED)
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{path}:4 acd.queues[0].stratgey: unknown key (did you mean 'strategy'?)"
    assert [line.split(" ", 1)[0] for line in err] == [f"{path}:{n}" for n in (4, 6, 10, 11)]


def test_suggestion_for_an_ivr_node_comes_from_its_own_kind() -> None:
    """Of the IVR node kinds (a union), only the node's own kind gives the suggestion: a misspelt key of a
    queue node is not matched against a menu node's keys."""
    doc = ("ivr:\n  flows:\n    main:\n      start: q\n      nodes:\n"
           "        q: {kind: queue, queue: sales, optoins: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_config_text(doc, "i.yaml")
    assert "i.yaml:6 ivr.flows.main.nodes.q.optoins: unknown key" in str(info.value)
    assert "did you mean 'options'" not in str(info.value)
