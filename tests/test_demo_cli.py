"""``cti demo`` as a user runs it (a real subprocess, or ``main()`` with captured output): the live line and
the final account are the same figures, and ``--speed max`` gives the account of every call."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from centre.cli import main
from tests.test_cli_mistakes import logging_restored  # noqa: F401  (autouse: main() configures logging)
from tests.test_cli_sim_serve import DEMO, ROOT, free_port


def _demo_config(tmp: Path) -> Path:
    doc = yaml.safe_load(DEMO.read_text())
    doc["asterisk"][0]["port"] = free_port()
    doc["database"] = {"url": f"sqlite:///{tmp / 'demo.sqlite3'}"}
    doc["listen"] = {"fastagi": {"host": "127.0.0.1", "port": free_port()},
                     "http": {"host": "127.0.0.1", "port": free_port()}}
    path = tmp / "demo.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.timeout(90)
def test_realtime_demo_ends_with_its_last_live_line_as_the_final_account(tmp_path: Path) -> None:
    """``cti demo --speed 20 --duration 60``: every live line has answered <= offered (inbound calls only,
    each counted once, although the campaign's people reach the same queues), and the final account's first
    line is exactly the last live line shown, taken at the same moment before anything stopped."""
    config = _demo_config(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "centre.cli", "demo", "--config", str(config), "--speed", "20",
                           "--duration", "60", "--seed", "2"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=80, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    shown, _, final = proc.stdout.partition("final account:\n")
    live = [part.strip() for part in re.split(r"[\r\n]", shown) if part.startswith("[")]
    assert live, proc.stdout
    for line in live:
        offered = int(re.search(r"offered (\d+)", line).group(1))  # type: ignore[union-attr]
        answered = int(re.search(r"answered (\d+)", line).group(1))  # type: ignore[union-attr]
        assert answered <= offered, line
    account = final.splitlines()
    assert account[0] == live[-1]
    assert account[1].startswith("inbound: offered ") and account[1].endswith("+ lost 0")


def test_speed_max_prints_one_line_per_call(capsys: pytest.CaptureFixture[str]) -> None:
    """``--speed max`` prints the account of every call: one line per inbound call (arrival, caller, IVR
    path, queue, wait, agent, outcome) and per outbound attempt (lead, the attempt's result), then the
    totals, whose counts match the lines."""
    assert main(["demo", "--speed", "max", "--duration", "300", "--seed", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    calls = [line for line in out if re.match(r"\d\d:\d\d:\d\d  (in |out)", line)]
    inbound = [line for line in calls if line[10:13] == "in "]
    outbound = [line for line in calls if line[10:13] == "out"]
    totals = out[len(calls):]
    offered = int(re.search(r"offered (\d+)", totals[0]).group(1))  # type: ignore[union-attr]
    dialled = int(re.search(r"dialled (\d+)", totals[0]).group(1))  # type: ignore[union-attr]
    assert (len(inbound), len(outbound)) == (offered, dialled) and offered > 5
    answered = [line for line in inbound if line.endswith(("-> answered", "-> talking"))]
    assert answered and all(re.search(r"IVR who:\S+ .* queue \w+  wait \d+s  agent 10\d\d  -> ", line)
                            for line in answered), answered
    assert all(re.search(r"lead renewals/C\d+#\d+: \w+", line) for line in outbound), outbound
    assert totals[1].startswith("inbound: offered ") and totals[2].startswith("outbound: dialled ")


def test_speed_max_writes_the_account_to_a_file_it_names(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``--calls FILE`` writes one CSV row per call with every column and names the file in the output."""
    target = tmp_path / "calls.csv"
    assert main(["demo", "--speed", "max", "--duration", "300", "--seed", "1", "--calls", str(target)]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = list(csv.DictReader(target.open()))
    assert out[0] == (f"account of every call: {target.resolve()} ({sum(r['direction'] == 'in' for r in rows)} "
                      f"inbound calls, {sum(r['direction'] == 'out' for r in rows)} outbound attempts, one CSV "
                      "row each)")
    assert list(rows[0]) == ["direction", "arrival", "number", "ivr_path", "queue", "wait_s", "agent", "outcome",
                             "attempt_result", "lead"]
    assert {r["attempt_result"] for r in rows if r["direction"] == "out"} >= {"noanswer", "connected"}
    assert main(["demo", "--speed", "max", "--duration", "60", "--calls", str(tmp_path / "no" / "x.csv")]) == 1
    assert "cannot write" in capsys.readouterr().err
