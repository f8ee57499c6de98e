"""The shipped dialplan on a REAL Asterisk (issue 11): every scenario of tests/lab/lab_scenarios.py must
pass. Skipped unless ``CTI_LAB_AMI`` (``host:port,username,secret``) names a PBX set up as
tests/lab/README.md says; the scenarios run in a process of their own (the Twisted reactor cannot be
restarted inside pytest's)."""

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

pytestmark = pytest.mark.skipif(not os.environ.get("CTI_LAB_AMI"),
                                reason="no lab PBX: set CTI_LAB_AMI=host:port,user,secret (tests/lab/README.md)")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("lab")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--workdir", str(workdir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1500)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no report (exit {proc.returncode}); stderr:\n{proc.stderr[-4000:]}"
    out: dict[str, Any] = json.loads(lines[-1])
    out["stderr"] = proc.stderr
    return out


@pytest.mark.timeout(1600)
@pytest.mark.parametrize("name", ORDER)
def test_scenario_passes_on_the_real_pbx(report: dict[str, Any], name: str) -> None:
    assert "error" not in report, f"{report.get('error')}\n{report.get('traceback')}\n{report['stderr'][-3000:]}"
    entry = report["scenarios"][name]
    steps = "\n".join(json.dumps(s) for s in entry["steps"])
    assert entry["ok"], f"{entry['error']}\n{entry.get('traceback', '')}\nsteps:\n{steps}"
