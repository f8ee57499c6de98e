"""Benchmark: the predictive dialer over a grid of campaigns, in virtual time, against the 3% abandon cap.

Run: ``.venv/bin/python bench/dialer_grid.py [--hours 11] [--dial-budget N] [--points corners,middle]``

Issue 15: "simulator campaigns in virtual time across answer rates 5-60%, machines 0-40%, AMD accuracy 70-100%,
5-300 agents, with no simulated day (or 24 h window) over the cap". Each point of the grid (the corners of those
four ranges and their middle, under ``us_tsr`` and under ``uk_ofcom``) runs the real stack as
``bench/dialer.py`` does (``run_mode``: the server and the simulated PBX on one virtual clock, the same fixed
model of talk, wrap-up and ringing, the same figures), in ``predictive`` mode and, for the floors, in
``progressive`` mode on the same leads and customers.

A campaign its policy refuses is run as its operator would have to run it: under ``uk_ofcom`` an AMD whose
mistakes alone reach the usable share of the cap (any accuracy under 97.6%) is refused at config load, so the
point runs with ``amd: false`` (every answer goes to an agent); the table says ``off`` in its AMD column.

Checks per point (``violations``): the worst calendar day and the worst rolling 24 h window at or under the
cap (abandonment as ``bench/dialer.py`` counts it, the compliance ledger's rules); the campaign dialled and
people reached agents; predictive reached at least as many people as progressive; and the bench's counts are
the dialer's own compliance ledger's (live answers, abandons, machine verdicts).

Simulated time per point: ``--hours`` (default 11: a calling day from 10:00 to 21:00), cut to what
``--dial-budget`` dials would take at the point's estimated dial rate (default: no cut). The simulator costs
about 2 ms of CPU per dial (some 20 AMI events each, through the simulated PBX's encoder, the AMI client, the
call tracker and the bus), and 300 agents at a 5% answer rate dial over 100 000 times an hour.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This file sits beside bench/dialer.py, named like the ``dialer`` package: take its directory off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.dialer import (  # noqa: E402
    BASE_CONFIG,
    RING_TIMEOUT_S,
    TALK_MEAN_S,
    WRAPUP_S,
    Model,
    Result,
    campaign_settings,
    run_mode,
    write_leads,
)
from config.load import load_config  # noqa: E402
from config.schema import CtiConfig  # noqa: E402

CAP = 0.03
ANSWER = (0.05, 0.60)
MACHINES = (0.0, 0.40)
ACCURACY = (0.70, 1.00)
AGENTS = (5, 300)
MIDDLE = (0.20, 0.20, 0.85, 50)
POLICIES = ("us_tsr", "uk_ofcom")
MACHINE_TALK_S = 12.0  # an answering machine's greeting (sim.settings default), what an agent hears without AMD


@dataclass(frozen=True)
class Point:
    answer: float
    machines: float
    accuracy: float
    agents: int
    policy: str

    @property
    def name(self) -> str:
        return (f"{self.policy} ans {self.answer:.0%} mach {self.machines:.0%} AMD {self.accuracy:.0%} "
                f"{self.agents} agents")

    def model(self, hours: float, seed: int = 1) -> Model:
        """The bench's model of this point, with AMD off when the policy refuses this AMD."""
        m = Model(agents=self.agents, answer_rate=self.answer, machine_rate=self.machines,
                  amd_accuracy=self.accuracy, policy=self.policy, seed=seed, hours=hours)
        try:
            campaign_settings(m, "predictive", Path("leads.csv"))
        except ValueError as exc:
            if "amd: false" not in str(exc):
                raise
            m = replace(m, amd=False)
        return m

    def dials_per_hour(self, amd: bool) -> float:
        """A rough forecast of predictive's dials an hour (agents busy 90% of the time), to size a run."""
        person = TALK_MEAN_S + WRAPUP_S
        machine = 0.0 if amd else MACHINE_TALK_S + WRAPUP_S  # without AMD an agent takes the machines too
        per_dial = self.answer * ((1 - self.machines) * person + self.machines * machine)
        rate = self.agents * 3600.0 * 0.9 / max(per_dial, 1e-9)
        max_lines = min(10_000, self.agents * 10)
        return min(rate, max_lines * 3600.0 / RING_TIMEOUT_S)


def corners() -> list[Point]:
    return [Point(a, m, acc, n, policy) for policy in POLICIES for a in ANSWER for m in MACHINES
            for acc in ACCURACY for n in AGENTS]


def middle() -> list[Point]:
    a, m, acc, n = MIDDLE
    return [Point(a, m, acc, n, policy) for policy in POLICIES]


@dataclass
class PointResult:
    point: Point
    model: Model
    predictive: Result
    progressive: Result | None

    @property
    def cpu(self) -> float:
        return self.predictive.cpu + (self.progressive.cpu if self.progressive is not None else 0.0)


def hours_for(point: Point, hours: float, dial_budget: float | None) -> float:
    """``hours``, cut to what ``dial_budget`` dials take at the point's forecast dial rate (at least 2 minutes)."""
    if dial_budget is None:
        return hours
    amd = point.model(1.0).amd
    return max(2 / 60, min(hours, dial_budget / point.dials_per_hour(amd)))


def run_point(base: CtiConfig, point: Point, hours: float, leads: Path, *, progressive: bool = True,
              seed: int = 1) -> PointResult:
    """Predictive (and progressive) at one point for ``hours`` of virtual time; ``leads`` must hold
    ``model.leads()`` leads at least (``write_leads``)."""
    model = point.model(hours, seed)
    pred = run_mode(base, model, "predictive", leads)
    prog = run_mode(base, model, "progressive", leads) if progressive else None
    return PointResult(point, model, pred, prog)


def violations(r: PointResult, cap: float = CAP) -> list[str]:
    """What is wrong at a point (empty: nothing)."""
    p, out = r.predictive, []
    if not p.available:
        return [f"predictive unavailable: {p.reason}"]
    if p.abandon_day > cap + 1e-12:
        out.append(f"worst day {p.abandon_day:.2%} over the {cap:.0%} cap")
    if p.abandon_24h > cap + 1e-12:
        out.append(f"worst 24 h window {p.abandon_24h:.2%} over the {cap:.0%} cap")
    if p.dials <= 0 or p.contacts <= 0 or p.live <= 0:
        out.append(f"starved: {p.dials} dials, {p.contacts} contacts, {p.live} live")
    if p.ledger != (p.live, p.abandons, p.machines):
        out.append(f"the bench counts (live, abandons, machines) {(p.live, p.abandons, p.machines)}, the "
                   f"compliance ledger {p.ledger}")
    q = r.progressive
    if q is not None and q.available and p.contacts < q.contacts:
        out.append(f"predictive reached {p.contacts} people, progressive {q.contacts}")
    return out


def row(r: PointResult) -> str:
    p, q = r.predictive, r.progressive
    amd = f"{r.point.accuracy:>4.0%}" if r.model.amd else " off"
    prog = f"{q.contacts:>7} {100 * q.occupancy:>5.1f}%" if q is not None and q.available else f"{'-':>7} {'-':>6}"
    bad = violations(r)
    return (f"{r.point.policy:<8} {r.point.answer:>4.0%} {r.point.machines:>4.0%} {amd} {r.point.agents:>4} "
            f"{r.model.hours:>6.2f} {p.dials:>7} {p.contacts:>7} {p.live:>6} {p.abandoned:>7.1f} "
            f"{100 * p.abandon_day:>6.2f} {100 * p.abandon_24h:>6.2f} {100 * p.occupancy:>5.1f}% {prog} "
            f"{r.cpu:>6.1f}  {'ok' if not bad else '; '.join(bad)}")


HEAD = (f"{'policy':<8} {'ans':>4} {'mach':>4} {'AMD':>4} {'agts':>4} {'hours':>6} {'dials':>7} {'contact':>7} "
        f"{'live':>6} {'aband.':>7} {'day %':>6} {'24h %':>6} {'occup.':>6} {'prog c':>7} {'prog o':>6} "
        f"{'cpu s':>6}  check")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--hours", type=float, default=11.0, help="simulated hours per point (default 11: 10:00-21:00)")
    p.add_argument("--dial-budget", type=float, default=None,
                   help="cut each point's hours to about this many predictive dials (default: no cut)")
    p.add_argument("--points", default="corners,middle", help="corners, middle, or both (comma-separated)")
    p.add_argument("--policies", default=",".join(POLICIES), help="comma-separated, of us_tsr, uk_ofcom")
    p.add_argument("--no-progressive", action="store_true", help="skip the progressive runs (and that floor)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    if not 0 < a.hours <= 24:
        p.error("--hours must be over 0 and at most 24 (one calling day)")
    return a


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.ERROR)
    a = parse_args(argv)
    kinds = {k.strip() for k in a.points.split(",")}
    policies = {k.strip() for k in a.policies.split(",")}
    points = [pt for pt in (corners() if "corners" in kinds else []) + (middle() if "middle" in kinds else [])
              if pt.policy in policies]
    base = load_config(BASE_CONFIG)
    print(f"dialer grid: {len(points)} points, up to {a.hours:g} simulated hours each"
          + (f" (cut to about {a.dial_budget:g} dials)" if a.dial_budget else "") + f", cap {CAP:.0%}", flush=True)
    print(HEAD, flush=True)
    failed = 0
    t0 = time.process_time()
    with tempfile.TemporaryDirectory(prefix="dialer-grid-") as tmp:
        leads = Path(tmp) / "leads.csv"
        written = 0
        for pt in points:
            hours = hours_for(pt, a.hours, a.dial_budget)
            need = pt.model(hours, a.seed).leads()
            if need > written:
                write_leads(leads, need)
                written = need
            r = run_point(base, pt, hours, leads, progressive=not a.no_progressive, seed=a.seed)
            failed += bool(violations(r))
            print(row(r), flush=True)
    print(f"\n{len(points) - failed} of {len(points)} points ok; {time.process_time() - t0:.0f} s CPU")
    print(f"BENCH dialer_grid points={len(points)} failed={failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
