"""Issue #6 end to end over the REAL stack: Runtime (CtiServer, FastAGI, console hub, SQLite) + the simulated
PBX over loopback TCP + a real headless Chromium at the agent console.

The scenario runs in a process of its own (tests/e2e/console_scenario.py: the Twisted reactor cannot be
restarted inside pytest's process) and reports what it saw as JSON; this test checks that report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "e2e" / "console_scenario.py"
CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")


def run_scenario(workdir: Path, timeout: float = 50.0) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--workdir", str(workdir), "--timeout", str(timeout)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout + 30)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no report (exit {proc.returncode}); stderr:\n{proc.stderr[-4000:]}"
    report: dict[str, Any] = json.loads(lines[-1])
    report["stderr"] = proc.stderr
    report["returncode"] = proc.returncode
    return report


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_scenario(tmp_path_factory.mktemp("e2e"))


def _failed(report: dict[str, Any]) -> str:
    steps = "\n".join(json.dumps(s) for s in report.get("steps", []))
    return f"{report.get('error')}\n{report.get('traceback', '')}\nsteps:\n{steps}\nstderr:\n{report['stderr'][-3000:]}"


def test_one_call_from_ivr_to_disposition(report: dict[str, Any]) -> None:
    """A known customer's call walks the IVR over real FastAGI (keys "1" -> sales), waits in cti-hold, is
    offered to the only ready agent (1001, logged in from Chromium), the console pops that customer by
    name, the phone answers, hold and retrieve work over AMI, the phone hangs up, the agent picks a
    disposition and is ready again; the scenario process ends cleanly."""
    assert report["ok"], _failed(report)
    assert report["returncode"] == 0
    call = report["call"]
    assert (call["ivr_outcome"], call["queue"], call["offered_to"]) == ("queue", "sales", "1001")
    done = [s["step"] for s in report["steps"]]
    for step in ("pop shown", "on call", "held and retrieved", "wrap-up (phone hung up)", "disposed, ready again"):
        assert step in done, done


def test_a_reload_mid_call_and_in_wrapup_restores_the_card(report: dict[str, Any]) -> None:
    """Issue 12 item 2 over the real server: the browser reloads on the call and again in wrap-up; each
    time the tab signs back in by itself (resume token) and the server's resume brings back the customer
    card with the IVR path in words, the call (connected, its timer counting from the answer) and, in
    wrap-up, the form as typed."""
    assert report["ok"], _failed(report)
    steps = {s["step"]: s for s in report["steps"]}
    assert "reloaded in wrap-up" in steps
    on_call = steps["reloaded on call"]
    assert on_call["ivr_path"].endswith("Main menu: pressed 1 (Sales) \u203a Sales"), on_call
    assert on_call["call_timer"] != "0:00" or on_call["t"] - steps["on call"]["t"] < 1.0, on_call
    pops = [f for f in report["frames"] if f["type"] == "pop"]
    assert len(pops) == 3, [p.get("call_id") for p in pops]  # the offer, then one per resume
    assert len({p["call_id"] for p in pops}) == 1
    assert all(p["customer"] == pops[0]["customer"] for p in pops)


def test_pop_reached_only_that_agent_with_the_right_customer(report: dict[str, Any]) -> None:
    """The pop frame the browser received names the caller's customer record (found through the IVR's
    look-up), carries the call's id, and the dispose reply says the disposition was recorded."""
    assert report["ok"], _failed(report)
    call = report["call"]
    frames = report["frames"]
    pops = [f for f in frames if f["type"] == "pop"]
    assert pops, "no pop"
    pop = pops[0]
    assert pop["call_id"] == call["call_id"] and pop["agent_id"] == "1001"
    assert pop["customer"]["profile"]["name"] == call["customer"]
    assert pop["customer"]["profile"]["external_id"] == call["external_id"]
    assert pop["ani_e164"] == call["caller"]
    assert "menu:1" in pop["ivr"]["path"]
    errors = [f for f in frames if f["type"] == "error"]
    assert errors == [], errors
    dispose = [f for f in frames if f["type"] == "result" and "recorded" in f]
    assert len(dispose) == 1 and dispose[0]["recorded"] is True
    assert dispose[0]["state"]["state"] == "ready"


def test_disposition_and_acd_record_are_in_the_database(report: dict[str, Any]) -> None:
    """After the recorder flushes, the database holds the call's interaction with the agent's disposition
    and notes (for the right customer), one answered queued-call record for agent 1001, and the agent's
    state log from login to ready again."""
    assert report["ok"], _failed(report)
    call = report["call"]
    interaction = report["interaction"]
    assert interaction is not None, "no customer_interactions row for the call"
    assert interaction["call_key"] == f"sim/{call['call_id']}"
    assert (interaction["disposition"], interaction["notes"]) == ("sale", "bought the fibre upgrade (e2e)")
    assert (interaction["agent_id"], interaction["queue"], interaction["direction"]) == ("1001", "sales", "inbound")
    assert interaction["customer_external_id"] == call["external_id"]
    assert interaction["ani"] == call["caller"]
    records = report["queue_calls"]
    assert len(records) == 1, records
    record = records[0]
    assert (record["outcome"], record["agent_id"], record["queue"], record["offers"]) == ("answered", "1001",
                                                                                        "sales", 1)
    assert record["answered_at"] is not None and record["talk"] > 0
    assert record["caller_num"] == call["caller"]
    assert record["ivr_data"]["CTI_QUEUE"] == "sales"
    assert report["agent_states"] == ["not_ready", "ready", "reserved", "on_call", "wrap_up", "ready"]
