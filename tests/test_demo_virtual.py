"""The whole contact centre in virtual time: simulator + server + IVR + ACD, every call accounted for."""

from __future__ import annotations

import hashlib
from pathlib import Path

from config.load import load_config
from cti.demo import DEMO_EPOCH, build_virtual, run_virtual

DEMO = Path(__file__).resolve().parent.parent / "config" / "examples" / "demo.yaml"


def test_ten_minute_demo_loses_no_call() -> None:
    """A 10-minute virtual run of the demo config ends with zero lost calls: every caller is answered,
    abandoned, overflowed, ended in the IVR, or still in the IVR / waiting / with an agent."""
    report = run_virtual(load_config(DEMO), 600.0, seed=11)
    counts = report["counts"]
    assert counts["lost"] == 0, report["lost"]
    assert counts["offered"] >= 20
    assert counts["answered"] >= counts["offered"] // 2
    accounted = sum(v for k, v in counts.items() if k not in ("offered", "lost"))
    assert accounted == counts["offered"]
    assert report["stats"]["ami_messages"] > 1000


def test_drained_run_ends_every_call() -> None:
    """After arrivals stop and the calls drain, nothing is left in the IVR, waiting or with an agent."""
    report = run_virtual(load_config(DEMO), 900.0, seed=5, drain=1800.0)
    counts = report["counts"]
    assert counts["lost"] == 0, report["lost"]
    assert counts["in_ivr"] == counts["waiting"] == counts["with_agent"] == 0
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
