"""The whole contact centre in virtual time: simulator + server + IVR + ACD, every call accounted for."""

from __future__ import annotations

import hashlib
from pathlib import Path

from centre.demo import DEMO_EPOCH, build_virtual, run_virtual
from config.load import load_config

DEMO = Path(__file__).resolve().parent.parent / "config" / "examples" / "demo.yaml"


def test_ten_minute_demo_loses_no_call() -> None:
    """A 10-minute virtual run of the demo config ends with zero lost calls: every caller is answered,
    abandoned, overflowed, ended in the IVR, or still in the IVR / waiting / with an agent."""
    report = run_virtual(load_config(DEMO), 600.0, seed=11)
    counts = report["counts"]
    assert counts["lost"] == 0, report["lost"]
    assert counts["offered"] >= 20
    assert counts["answered"] >= counts["offered"] // 2
    accounted = sum(v for k, v in counts.items() if k not in ("offered", "talking"))  # talking: part of answered
    assert accounted == counts["offered"]
    assert report["stats"]["ami_messages"] > 1000


def test_drained_run_ends_every_call() -> None:
    """After arrivals stop and the calls drain, nothing is left in the IVR, waiting or with an agent."""
    report = run_virtual(load_config(DEMO), 900.0, seed=5, drain=1800.0)
    counts = report["counts"]
    assert counts["lost"] == 0, report["lost"]
    assert counts["in_ivr"] == counts["waiting"] == counts["talking"] == 0
    assert counts["answered"] + counts["abandoned"] + counts["overflowed"] + counts["ended_in_ivr"] \
        + counts["queued_ended"] == counts["offered"]


def _stream_digest(seed: int, seconds: float) -> tuple[str, int]:
    stack = build_virtual(load_config(DEMO), seed=seed)
    digest = hashlib.sha256()
    count = 0

    def tap(msg: object) -> None:
        nonlocal count
        count += 1
        digest.update(repr(getattr(msg, "headers", msg)).encode())

    stack.sim.pbx.add_listener(tap)
    stack.clock.run_until(DEMO_EPOCH + seconds)
    return digest.hexdigest(), count


def test_same_seed_same_event_stream() -> None:
    """Virtual time is deterministic: the same seed and config give the same AMI event stream, and
    another seed gives another one."""
    a = _stream_digest(21, 300.0)
    b = _stream_digest(21, 300.0)
    c = _stream_digest(22, 300.0)
    assert a == b
    assert a[1] > 500
    assert c != a


def _figures(line: str) -> dict[str, int]:
    """The numbers of a live line by name: offered, in IVR, waiting, talking, answered, abandoned."""
    import re

    return {name: int(n) for name, n in re.findall(r"(offered|in IVR|waiting|talking|answered|abandoned) (\d+)",
                                                   line.split(" | outbound")[0])}


def test_live_line_and_final_account_agree_and_count_each_call_once() -> None:
    """In virtual time with the demo's outbound campaign on (whose people also reach the sales queue and
    its agents): every live line counts inbound calls only, each once, so answered never exceeds offered
    and offered = in IVR + waiting + answered + abandoned + overflowed + ended + lost at every second; the
    last live line is the final account's first line, and its second line adds up to what was offered."""
    live: list[str] = []
    report = run_virtual(load_config(DEMO), 600.0, seed=11, live=live)
    assert len(live) == 600
    for line in live:
        f = _figures(line)
        assert f["answered"] <= f["offered"] and f["talking"] <= f["answered"], line
        assert f["in IVR"] + f["waiting"] + f["answered"] + f["abandoned"] <= f["offered"], line
    assert report["outbound"]["dialled"] > 0  # the campaign ran alongside
    assert live[-1] == report["summary"] == report["account"][0]
    assert live[-1].startswith("[00:10:00] offered ")
    counts = report["counts"]
    inbound = report["account"][1]
    assert inbound == (
        f"inbound: offered {counts['offered']} = in IVR {counts['in_ivr']} + waiting {counts['waiting']} + "
        f"answered {counts['answered']} (talking {counts['talking']}) + abandoned {counts['abandoned']} + "
        f"overflowed {counts['overflowed']} + ended in IVR {counts['ended_in_ivr']} + ended on hold "
        f"{counts['queued_ended']} + lost {counts['lost']}")
    assert counts["offered"] == sum(v for k, v in counts.items() if k not in ("offered", "talking"))
    assert _figures(live[-1]) == {"offered": counts["offered"], "in IVR": counts["in_ivr"],
                                  "waiting": counts["waiting"], "talking": counts["talking"],
                                  "answered": counts["answered"], "abandoned": counts["abandoned"]}
    assert report["account"][2].startswith(f"outbound: dialled {report['outbound']['dialled']} = ")


def test_every_call_has_its_line_in_the_account() -> None:
    """The account of every call has one row per inbound call and per outbound attempt with arrival, IVR
    path, queue, wait, agent and outcome (and the attempt's result for outbound), agreeing with the totals."""
    report = run_virtual(load_config(DEMO), 600.0, seed=11)
    rows = report["calls"]
    inbound = [r for r in rows if r["direction"] == "in"]
    outbound = [r for r in rows if r["direction"] == "out"]
    assert len(inbound) == report["counts"]["offered"]
    assert len(outbound) == report["outbound"]["dialled"]
    assert [r["arrival"] for r in rows] == sorted(r["arrival"] for r in rows)
    answered = [r for r in inbound if r["outcome"] in ("answered", "talking")]
    assert len(answered) == report["counts"]["answered"]
    for r in answered:
        assert r["ivr_path"].startswith("who:") and r["queue"] in ("sales", "support", "billing")
        assert r["agent"].startswith("10") and float(r["wait_s"]) >= 0
    assert any("menu:3 > account:" in r["ivr_path"] for r in inbound)  # what the caller keyed, in order
    results = {r["attempt_result"].split(" ")[0] for r in outbound}
    assert "connected" in results and results <= {"connected", "abandoned", "noanswer", "busy", "machine",
                                                  "congestion", "failed", "hangup", "unknown", "in"}
    assert all(r["lead"].startswith("renewals/") for r in outbound)
