"""The predictive dialer over the issue's grid, in virtual time (issue 15): answer rates 5-60%, machines 0-40%,
AMD accuracy 70-100%, 5-300 agents, under us_tsr and under uk_ofcom, no simulated day and no 24 h window over
the 3% cap.

Each point runs the real stack as ``bench/dialer.py`` does (``bench.dialer_grid.run_point``: the server and the
simulated PBX on one virtual clock) and is judged by ``bench.dialer_grid.violations``: the worst day and the worst
rolling 24 h window at or under the cap (abandonment as the bench counts it, which is the compliance ledger's
count: checked too), the campaign dials and reaches people, and predictive reaches at least as many people as
progressive on the same leads and customers where that is run. A uk_ofcom point whose AMD is refused at config
load (its misses alone would reach the cap) runs with ``amd: false``, as its operator would have to.

The points: a half fraction of the 16 corners (every level of every factor, every pair of levels of any two
factors, each under one of the two policies) and the middle under both policies. Simulated time per point is what
fits about 90 s of CPU for the module (the simulator costs about 2 ms of CPU per dial, and 300 agents at a 5%
answer rate dial over 100 000 times an hour) while a "day" still has the live answers to be judged by (5 agents
at a 5% answer rate reach 25-40 people an hour: one abandon in the first hour would be 3-4%): hours for 5
agents, minutes for 300; the full day on the whole grid is ``bench/dialer_grid.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.dialer import BASE_CONFIG, write_leads
from bench.dialer_grid import Point, PointResult, run_point, violations
from config.load import load_config
from config.schema import CtiConfig

# (point, simulated hours, also run progressive?)
GRID: list[tuple[Point, float, bool]] = [
    (Point(0.05, 0.00, 0.70, 5, "us_tsr"), 1.5, False),
    (Point(0.60, 0.00, 1.00, 5, "uk_ofcom"), 1.5, True),
    (Point(0.05, 0.40, 1.00, 5, "us_tsr"), 2.0, False),
    (Point(0.60, 0.40, 0.70, 5, "uk_ofcom"), 1.5, True),
    (Point(0.05, 0.00, 1.00, 300, "uk_ofcom"), 3 / 60, False),
    (Point(0.60, 0.00, 0.70, 300, "us_tsr"), 5 / 60, False),
    (Point(0.05, 0.40, 0.70, 300, "uk_ofcom"), 3 / 60, False),
    (Point(0.60, 0.40, 1.00, 300, "us_tsr"), 5 / 60, False),
    (Point(0.20, 0.20, 0.85, 50, "us_tsr"), 12 / 60, True),
    (Point(0.20, 0.20, 0.85, 50, "uk_ofcom"), 12 / 60, True),
]


@pytest.fixture(scope="module")
def base() -> CtiConfig:
    return load_config(BASE_CONFIG)


@pytest.fixture(scope="module")
def leads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("grid") / "leads.csv"
    write_leads(path, max(point.model(hours).leads() for point, hours, _ in GRID))
    return path


def test_the_grid_covers_the_corners_and_the_middle() -> None:
    """Every level of every factor, every pair of levels of any two factors, both policies, and AMD off where
    uk_ofcom refuses the AMD (any accuracy under 97.6%), on where it accepts it."""
    corners = [p for p, _, _ in GRID if p.agents != 50]
    levels = [(p.answer, p.machines, p.accuracy, p.agents) for p in corners]
    for i in range(4):
        for j in range(i + 1, 4):
            assert len({(lv[i], lv[j]) for lv in levels}) == 4
    assert {p.policy for p in corners} == {"us_tsr", "uk_ofcom"}
    assert {(p.accuracy, p.model(1.0).amd) for p in corners if p.policy == "uk_ofcom"} == {(0.7, False), (1.0, True)}
    assert all(p.model(1.0).amd for p in corners if p.policy == "us_tsr")


@pytest.mark.parametrize(("point", "hours", "progressive"), GRID, ids=[p.name for p, _, _ in GRID])
def test_no_day_over_the_cap(base: CtiConfig, leads: Path, point: Point, hours: float, progressive: bool) -> None:
    r: PointResult = run_point(base, point, hours, leads, progressive=progressive)
    p = r.predictive
    assert not violations(r), (violations(r), p)
    assert p.abandon_day <= 0.03 and p.abandon_24h <= 0.03
    assert p.contacts > 0 and p.dials > 0
    assert p.ledger == (p.live, p.abandons, p.machines)  # the bench counts what the compliance ledger counts
    assert any(reason in p.pacing for reason in ("predicted", "max-lines", "full", "risky")), p.pacing  # past warm-up
    if r.progressive is not None:
        assert p.contacts >= r.progressive.contacts, (p, r.progressive)
        assert p.occupancy >= r.progressive.occupancy - 0.02, (p.occupancy, r.progressive.occupancy)
