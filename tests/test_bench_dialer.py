"""bench/dialer.py: its quick mode runs as one command and ends with its BENCH line; its figures, counted as the
compliance ledger and the campaign count them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.dialer import CAMPAIGN, DAY, Tally, worst_day, worst_window
from cti.commands import Originate
from cti.events import DialEnded, DialStarted
from dialer.campaign import Campaign, Lead
from dialer.compliance import ComplianceLedger
from dialer.compliance import false_machines as ledger_false_machines
from dialer.events import AttemptFinished, AttemptStarted
from dialer.settings import CampaignSettings
from tests.test_dialer_campaign import SRV, T0, amd, answered, hangup

ROOT = Path(__file__).resolve().parent.parent
BENCH_LINE = re.compile(r"^BENCH dialer agents=8 answer_rate=0\.15 abandon_pct=[0-9.]+ occupancy=[0-9.]+ "
                        r"ratio_vs_progressive=[0-9.]+( mode=\w+)?$")


def test_quick_run_prints_the_table_and_the_bench_line() -> None:
    """One command (`python bench/dialer.py --quick`): progressive and ratio run on the same leads, the table
    has a row per mode (unavailable ones say why) and the last line is the BENCH line."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "dialer.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert BENCH_LINE.match(lines[-1]), lines[-1]
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in
            ("progressive", "ratio", "predictive", "preview")}
    assert set(rows) == {"progressive", "ratio", "predictive", "preview"}
    for mode in ("progressive", "ratio"):
        dials, contacts = (int(x) for x in rows[mode].split()[1:3])
        assert dials > 50 and contacts > 5, rows[mode]
    for mode in ("predictive", "preview"):
        assert "unavailable" in rows[mode] or rows[mode].split()[1].isdigit()
    assert "both are the whole run" in done.stdout


def test_bad_answer_rate_is_refused() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "dialer.py"), "--answer-rate", "0.99"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--answer-rate must be 0-0.95" in done.stderr


def test_the_bench_counts_as_the_ledger_and_the_campaign() -> None:
    """The bench's abandonment, the compliance ledger's and the campaign's own rate (its pacer's feedback) count
    the same calls: a person who hangs up in the silence before any agent is abandoned in all three (it used to be
    ``hangup``, an abandon for the bench only), as is one who hears the safe-harbour message; a person connected
    in time is live and not abandoned; a MACHINE verdict and a call gone before AMD said anything are not live."""
    s = CampaignSettings(name=CAMPAIGN, queue="sales", leads="demo", policy="uk_ofcom", amd_accuracy=0.99)
    c = Campaign(s, server=SRV, dial_template="PJSIP/{number}@trunk")
    c.load([Lead(f"L{i}", f"+1555000{i:04d}") for i in range(5)], T0)
    out: list[object] = []
    for e in c.pace(T0, 5):
        assert isinstance(e, AttemptStarted)
        out.append(e)
        for o in c.persisted(e.ref, T0):
            assert isinstance(o, Originate)
            out += answered(c, o, "u" + o.variables["CTI_LEAD_ID"][1:], T0 + 5)
    out += amd(c, "u0", "HUMAN", T0 + 6) + hangup(c, "u0", T0 + 6.5)  # hangs up in the silence
    out += amd(c, "u1", "HUMAN", T0 + 6) + c.tick(T0 + 8) + hangup(c, "u1", T0 + 12)  # safe-harbour message
    out += amd(c, "u2", "MACHINE", T0 + 7) + hangup(c, "u2", T0 + 20)
    out += hangup(c, "u3", T0 + 6)  # gone before AMD said anything
    out += amd(c, "u4", "HUMAN", T0 + 6)
    out += c.handle(DialStarted(server=SRV, ts=T0 + 6.5, call_id="u4", uniqueid="u4", channel="PJSIP/trunk-u4",
                                dest_uniqueid="a4", dest_channel="PJSIP/1002-4", dial_string="PJSIP/1002"), T0 + 6.5)
    out += c.handle(DialEnded(server=SRV, ts=T0 + 7, call_id="u4", uniqueid="u4", channel="PJSIP/trunk-u4",
                              dest_uniqueid="a4", dest_channel="PJSIP/1002-4", status="ANSWER"), T0 + 7)
    out += hangup(c, "u4", T0 + 90)
    tally = Tally(start=T0, end=T0 + 100)
    ledger = ComplianceLedger([s])
    for e in out:
        tally(e)
        if isinstance(e, AttemptFinished):
            ledger.record(e)
    results = {e.lead_id: e.result for e in out if isinstance(e, AttemptFinished)}
    assert results == {"L0": "abandoned", "L1": "abandoned", "L2": "machine", "L3": "hangup", "L4": "connected"}
    f = ledger.figures(CAMPAIGN, T0 + 100)
    assert (len(tally.humans), sum(a for _, a in tally.humans), tally.machines) == (3, 2, 1)
    assert (f.live_answers, f.abandons, f.machines) == (3, 2, 1)
    assert c.abandon_rate() == pytest.approx(2 / 3)
    # uk_ofcom adds the people AMD took for machines, estimated the same way by both
    share = ledger_false_machines(3, 1, 0.99) / 3
    assert f.abandoned == pytest.approx(2 + 3 * share) and f.live == pytest.approx(3 + 3 * share)


def test_worst_window_and_day() -> None:
    """A run of a day or less is one window; longer runs take the worst rolling 24 h and the worst day."""
    humans = [(float(t), False) for t in range(0, 3600, 36)] + [(100.0, True)]
    assert worst_window(humans, 0.0, 3600.0, DAY, 0.0) == pytest.approx(1 / 101)
    two_days = [(t, False) for t in range(0, 2 * 86400, 864)] + [(90000.0 + i, True) for i in range(10)]
    rolling = worst_window([(float(t), a) for t, a in two_days], 0.0, 2 * DAY, DAY, 0.0)
    daily = worst_day([(float(t), a) for t, a in two_days], 0.0, 2 * DAY, 0.0)
    assert daily == pytest.approx(10 / 110) and rolling == pytest.approx(10 / 110)
    assert worst_day([(10.0, True), (DAY + 10, False)], 0.0, 2 * DAY, 0.0) == 1.0
