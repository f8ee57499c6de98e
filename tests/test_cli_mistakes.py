"""Every ``cti`` command refuses a user's mistake (bad numbers, missing or empty files, bad YAML) with a
clear message and a non-zero status, never a Python traceback. Commands run through ``centre.cli.main``
with captured output; argparse refusals end in ``SystemExit(2)``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from centre.cli import main
from centre.cli_common import DEFAULT_DEMO_CONFIG, QUIET_LIBRARIES
from centre.demo import build_virtual
from config.load import load_config


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """Commands run in this process call ``setup_logging`` (root handler, quiet library loggers): put the
    logging configuration back so that later tests see what they would alone."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, message", [
    (["demo", "--duration", "-5"], "argument --duration: expected a number of seconds > 0, got '-5'"),
    (["demo", "--duration", "0"], "argument --duration: expected a number of seconds > 0, got '0'"),
    (["demo", "--duration", "soon"], "argument --duration: expected a number, got 'soon'"),
    (["demo", "--duration", "nan"], "argument --duration: expected a finite number, got 'nan'"),
    (["demo", "--speed", "0"], "argument --speed: expected a number > 0 or 'max', got '0'"),
    (["demo", "--speed", "fast"], "argument --speed: expected a number > 0 or 'max', got 'fast'"),
    (["demo", "--seed", "-1"], "argument --seed: expected a whole number >= 0, got '-1'"),
    (["sim", "--speed", "-2"], "argument --speed: expected a number > 0, got '-2'"),
    (["sim", "--duration", "-5"], "argument --duration: expected a number of seconds > 0, got '-5'"),
])
def test_bad_numbers_are_refused_by_the_parser(argv: list[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A negative, zero or non-numeric duration, speed or seed is refused before anything starts (exit 2,
    argparse's usage line and a message saying what was expected)."""
    err = _refused(argv, capsys)
    assert message in err, err


def test_stopping_before_the_banner_logs_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Stopping the server while its AMI connection waits for the banner (what ``--duration -5`` used to
    do) ignores the banner still in flight instead of warning about an "unexpected banner"."""
    caplog.set_level(logging.DEBUG, logger="cti.ami.client")
    stack = build_virtual(load_config(DEFAULT_DEMO_CONFIG), seed=1)
    stack.sim.stop()
    stack.server.stop()
    stack.clock.run_for(5.0)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("banner after stop() ignored" in r.getMessage() for r in caplog.records)




DEMO = str(DEFAULT_DEMO_CONFIG)


def _files(tmp: Path) -> dict[str, str]:
    """The broken inputs people hand to commands."""
    (tmp / "empty.json").write_text("")
    (tmp / "empty.csv").write_text("")
    (tmp / "object.json").write_text('{"phone": "+12015550123"}')
    (tmp / "nokey.json").write_text('[{"name": "Ann Lee"}]')
    (tmp / "nokey.csv").write_text("external_id,first_name\nC1,Ann\n")
    (tmp / "phones.csv").write_text("external_id,phone\nC1,+12015550123\n")
    (tmp / "bad.yaml").write_text("asterisk: [\n")
    (tmp / "binary.bin").write_bytes(b"\x00\x01\xff\xfe")
    (tmp / "adir").mkdir()
    return {"tmp": str(tmp), "demo": DEMO, "db": f"sqlite:///{tmp}/x.sqlite3"}


@pytest.mark.parametrize("argv, message", [
    (["ivr-walk", "{demo}", "--customers", "{tmp}/missing.json"], "missing.json: file not found"),
    (["ivr-walk", "{demo}", "--customers", "{tmp}/empty.json"], "empty.json: empty file, expected a JSON list"),
    (["ivr-walk", "{demo}", "--customers", "{tmp}/empty.csv"], "empty.csv: empty file"),
    (["ivr-walk", "{demo}", "--customers", "{tmp}/object.json"], "object.json: expected a JSON list of objects"),
    (["ivr-walk", "{demo}", "--customers", "{tmp}/nokey.json"], "has neither 'phone' nor 'account'"),
    (["ivr-walk", "{demo}", "--customers", "{tmp}/nokey.csv"], "nokey.csv:1: no 'phone' or 'account' column"),
    (["ivr-walk", "{demo}", "--customers", "{tmp}/binary.bin"], "binary.bin: not UTF-8 text"),
    (["ivr-walk", "{demo}", "--customers", "{tmp}/bad.yaml"], "bad.yaml:1: not valid JSON"),
    (["ivr-walk", "{demo}", "--customers", "{tmp}/adir"], "adir: is a directory"),
    (["ivr-walk", "{tmp}/missing.yaml"], "missing.yaml: file not found"),
    (["ivr-walk", "{tmp}/bad.yaml"], "bad.yaml:2: not valid YAML"),
    (["ivr-walk", "{demo}", "--at", "yesterday"], "is not an ISO 8601 time"),
    (["check-config", "{tmp}/binary.bin"], "binary.bin: cannot read"),
    (["serve", "{tmp}/missing.yaml"], "missing.yaml: file not found"),
    (["demo", "--config", "{tmp}/bad.yaml"], "bad.yaml:2: not valid YAML"),
    (["sim", "--config", "{tmp}/adir"], "adir: cannot read"),
    (["sim", "--dialplan", "{tmp}/missing.conf", "--duration", "1"], "missing.conf: No such file or directory"),
    (["customers", "import", "{tmp}/empty.csv", "--db", "{db}", "--no-progress"], "empty file"),
    (["customers", "import", "{tmp}/missing.csv", "--db", "{db}", "--no-progress"], "no such file"),
    (["customers", "import", "{tmp}/nokey.csv", "--db", "{db}", "--no-progress"], "nokey.csv:1: the header has no"),
    (["customers", "import", "{tmp}/phones.csv", "--db", "not-a-url", "--no-progress"], "cannot open the database"),
    (["customers", "import", "{tmp}/adir", "--db", "{db}", "--no-progress"], "adir: no such file"),
    (["customers", "generate", "5", "--out", "{tmp}/no/such/dir.csv"], "dir.csv: cannot write"),
    (["customers", "generate", "5", "--out", "{tmp}/adir"], "adir: cannot write"),
    (["customers", "find", "--phone", "abc", "--db", "{db}"], "no customer database at"),
    (["dialer-check-leads", "{tmp}/empty.csv"], "empty file"),
    (["dialer-check-leads", "{tmp}/missing.csv"], "file not found"),
    (["acd-staffing", "--calls-per-hour", "1e6", "--aht", "1e6"], "need more than 10000 agents"),
    (["agent-token", "1001", "--config", "{tmp}/bad.yaml"], "not valid YAML"),
])
def test_mistakes_end_in_a_message_not_a_traceback(argv: list[str], message: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Missing, empty, binary or malformed files, a directory for a file, a bad database URL or an
    impossible staffing question: each command ends with a non-zero status and a message on stderr that
    names the file and what is wrong (an exception escaping main() would fail this test)."""
    subs = _files(tmp_path)
    args = [a.format(**subs) for a in argv]
    try:
        status = main(args)
    except SystemExit as exc:
        status = exc.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert status not in (0, None), out
    assert message in err, err


@pytest.mark.parametrize("argv, message", [
    (["ivr-walk", DEMO, "--keys", "x"], "argument --keys: 'x' is not phone keys: 'x' is not on a phone keypad"),
    (["ivr-walk", DEMO, "--keys", "1,2a"], "argument --keys: '2a' is not phone keys"),
    (["acd-staffing", "--calls-per-hour", "100", "--aht", "180", "--percent", "150"],
     "argument --percent: expected a percentage below 100, got '150'"),
])
def test_bad_arguments_are_refused_by_the_parser(argv: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Keys that are not on a phone keypad and a service level above 100% (which used to search staffing
    for minutes) are refused before anything runs."""
    err = _refused(argv, capsys)
    assert message in err, err


def test_ivr_walk_reads_customers_from_csv_and_keys_with_silence_and_hangup(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A customers CSV with a phone column is a valid --customers file: the caller is found by number;
    an empty key entry is silence."""
    (tmp_path / "c.csv").write_text("external_id,name,phone,account\nC1,Ann Lee,+15551230002,12345678\n")
    assert main(["ivr-walk", DEMO, "--customers", str(tmp_path / "c.csv"), "--keys", ",1"]) == 0
    out = capsys.readouterr().out
    assert "who(found)" in out and "menu(timeout)" in out and "outcome: queue queue=sales" in out, out
