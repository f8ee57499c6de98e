"""Every ``cti`` command refuses a user's mistake (bad numbers, missing or empty files, bad YAML) with a
clear message and a non-zero status, never a Python traceback. Commands run through ``cti.cli.main``
with captured output; argparse refusals end in ``SystemExit(2)``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from config.load import load_config
from cti.cli import DEFAULT_DEMO_CONFIG, main
from cti.demo import build_virtual


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


