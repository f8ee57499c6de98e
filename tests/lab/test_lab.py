"""The shipped dialplan on a PBX (issue 11): every scenario of tests/lab/lab_scenarios.py must pass.

Two targets, the same scenarios and assertions:
- ``pbx``: a REAL Asterisk named by ``CTI_LAB_AMI`` (``host:port,username,secret``), set up as
  tests/lab/README.md says; skipped unless that variable is set.
- ``sim``: the simulated PBX (sim/) running the shipped dialplan and tests/lab/extensions_lab.conf, started
  by the scenario process itself (``--sim``) on free loopback ports; runs whenever ``CTI_LAB_AMI`` is NOT
  set, so every ``make test`` (and CI, which has no Asterisk) plays the lab against the simulator.

The scenarios run in a process of their own (the Twisted reactor cannot be restarted inside pytest's), in
real time (about 1.5 min against the sim, 2 min against a real PBX)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.lab.lab_scenarios import ORDER

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "lab" / "lab_scenarios.py"
LAB_PBX = os.environ.get("CTI_LAB_AMI", "")

TARGETS = [
    pytest.param("pbx", marks=pytest.mark.skipif(
        not LAB_PBX, reason="no lab PBX: set CTI_LAB_AMI=host:port,user,secret (tests/lab/README.md)")),
    pytest.param("sim", marks=pytest.mark.skipif(
        bool(LAB_PBX), reason="CTI_LAB_AMI names a real PBX: the lab runs against it instead of the simulator")),
]


@pytest.fixture(scope="module", params=TARGETS)
def report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    target: str = request.param
    workdir = tmp_path_factory.mktemp(f"lab-{target}")
    args = [sys.executable, str(SCRIPT), "--workdir", str(workdir)]
    env = dict(os.environ)
    if target == "sim":
        args.append("--sim")
        env.pop("CTI_LAB_FASTAGI", None)
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no report (exit {proc.returncode}); stderr:\n{proc.stderr[-4000:]}"
    out: dict[str, Any] = json.loads(lines[-1])
    out["stderr"] = proc.stderr
    return out


@pytest.mark.timeout(1600)
@pytest.mark.parametrize("name", ORDER)
def test_scenario_passes(report: dict[str, Any], name: str) -> None:
    """Scenario ``name`` ran to its end with every assertion holding on this target."""
    assert "error" not in report, f"{report.get('error')}\n{report.get('traceback')}\n{report['stderr'][-3000:]}"
    entry = report["scenarios"][name]
    steps = "\n".join(json.dumps(s) for s in entry["steps"])
    assert entry["ok"], f"{entry['error']}\n{entry.get('traceback', '')}\nsteps:\n{steps}"
