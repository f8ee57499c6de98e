"""Never lose or repeat a lead (issue 15, item 7), with real processes: ``cti serve`` dials a campaign through
``cti sim``; the server is killed with SIGKILL while attempts are open, started again on the same database,
and the campaign carries on. The store must then show every lead (none forgotten), each lead's attempts
numbered 1..n with its attempt count, and no two attempts of one lead open at the same time. Every wait has
a deadline; no sleeps."""

from __future__ import annotations

import csv
import signal
import sqlite3
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dial_windows import noon_zone
from tests.test_cli_sim_serve import DEMO, Proc, write_config
from tests.ws_console import ready_console

LEADS = 400
AGENTS = ("1002", "1003", "1004", "1011")  # the demo's sales agents, simulated phones; logged in by the test
PASSWORD = "demo-password"  # demo.yaml's documented password (agent 1001's hash, given to these agents here)


def campaign_config(tmp: Path) -> tuple[Path, dict[str, Any], Path]:
    """The demo config (``write_config``) with one campaign of ``LEADS`` leads dialled now, fast retries, and
    passwords for the campaign's agents."""
    path, doc = write_config(tmp)
    leads = tmp / "leads.csv"
    with leads.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "number", "name"])
        for i in range(LEADS):
            w.writerow([f"L{i:04d}", f"+1555{i:07d}", f"Lead {i}"])
    campaign = yaml.safe_load(DEMO.read_text())["dialer"]["campaigns"][0]
    campaign.update({"leads": str(leads), "timezone": noon_zone(time.time()),
                     "calling_window": {"start": "09:00", "end": "20:00"}, "max_attempts": 3,
                     "retry_after": {"busy": 5, "noanswer": 5, "congestion": 5, "machine": 5, "unknown": 5,
                                     "failed": 5, "hangup": 5, "abandoned": 5}})
    doc["dialer"] = {"campaigns": [campaign]}
    hashed = next(a["password_hash"] for a in doc["acd"]["agents"] if a["id"] == "1001")
    for agent in doc["acd"]["agents"]:
        if agent["id"] in AGENTS:
            agent["password_hash"] = hashed
    doc["sim"]["inbound"] = [{"did": "+18005550100", "rate_per_hour": 1, "flow": "main"}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, doc, tmp / "cti.sqlite3"


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return list(conn.execute(sql))


def until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except sqlite3.OperationalError:  # the server is creating the schema or writing: look again
            pass
        time.sleep(0.2)  # polling a database another process writes (no event to wait on)
    raise AssertionError(f"not within {timeout} s: {what}")


def log_in(port: int, consoles: ExitStack) -> None:
    """The campaign's agents log in and go ready on their consoles (kept open until ``consoles`` closes)."""
    for agent in AGENTS:
        ready_console(port, agent, PASSWORD, consoles, tolerated=("illegal-transition", "already-logged-in"))


def open_attempts(db: Path) -> int:
    return query(db, "select count(*) from dialer_attempts where ended_at is null")[0][0]


def attempts(db: Path) -> int:
    return query(db, "select count(*) from dialer_attempts")[0][0]


@pytest.mark.timeout(150)
def test_sigkill_mid_campaign_neither_loses_nor_repeats_a_lead(tmp_path: Path) -> None:
    path, doc, db = campaign_config(tmp_path)
    port = doc["listen"]["http"]["port"]
    procs: list[Proc] = []
    consoles = ExitStack()
    try:
        server = Proc("serve", str(path))
        procs.append(server)
        server.wait_for(r"centre\.process: cti: FastAGI on", timeout=20)
        sim = Proc("sim", "--config", str(path), "--speed", "20", "--duration", "3600")
        procs.append(sim)
        server.wait_for(r"centre\.server: sim: connected", timeout=20)
        log_in(port, consoles)
        until(lambda: attempts(db) >= 6 and open_attempts(db) >= 1, "6 attempts, one of them open", 60)
        server.popen.send_signal(signal.SIGKILL)
        server.popen.wait(timeout=10)
        at_kill = attempts(db)
        open_at_kill = {r[0] for r in query(db, "select lead_id from dialer_leads where status = 'active'")}
        assert open_at_kill, "the kill must come while attempts are open"

        again = Proc("serve", str(path))
        procs.append(again)
        again.wait_for(r"centre\.server: sim: connected", timeout=30)
        log_in(port, consoles)
        until(lambda: attempts(db) >= at_kill + 6, "6 more attempts after the restart", 60)
        code, _, err = again.terminate()
        assert code == 0, err[-3000:]
        code, _, err = sim.terminate()
    finally:
        consoles.close()
        for proc in procs:
            proc.kill()

    leads = {r[0]: r[1:] for r in query(db, "select lead_id, status, attempts, unknowns from dialer_leads "
                                            "where campaign = 'renewals'")}
    assert len(leads) == LEADS  # none forgotten
    rows = query(db, "select lead_id, attempt, started_at, ended_at, result from dialer_attempts "
                     "where campaign = 'renewals' order by lead_id, attempt")
    by_lead: dict[str, list[tuple[Any, ...]]] = {}
    for lead_id, *rest in rows:
        by_lead.setdefault(lead_id, []).append(tuple(rest))
    for lead_id, tries in by_lead.items():
        status, count, _ = leads[lead_id]
        assert [t[0] for t in tries] == list(range(1, len(tries) + 1)), f"{lead_id}: attempts {tries}"
        assert count == len(tries), f"{lead_id}: {count} attempts recorded, {len(tries)} rows"
        for earlier, later in zip(tries, tries[1:], strict=False):
            assert earlier[2] is not None and earlier[2] <= later[1], f"{lead_id} dialled twice at once: {tries}"
        if tries[-1][2] is None:
            assert status == "active", f"{lead_id}: an open attempt but status {status}"
        else:
            assert status in ("pending", "done", "exhausted"), f"{lead_id}: {status}"
    for lead_id in open_at_kill:  # the attempts the kill cut short: resolved as unknown, the lead kept
        tries = by_lead[lead_id]
        cut = [t for t in tries if t[3] == "unknown"]
        assert cut, f"{lead_id}: the attempt open at the kill was not resolved: {tries}"
        assert leads[lead_id][0] in ("pending", "active", "done", "exhausted")
    untouched = [k for k, v in leads.items() if v[1] == 0]
    assert all(leads[k][0] == "pending" for k in untouched)
