"""The ACD's measured arrival rate per queue (``QueueStats.arrival_rate``): callers per second lately,
a campaign's people not counted (what blending forecasts inbound from)."""

from __future__ import annotations

import math

import pytest

from acd.stats import ArrivalRate
from cti.contract import CTI_CAMPAIGN
from tests.test_acd_support import Harness, agent

CFG = {"agents": [agent("s1", {"sales": 5})],
       "queues": [{"name": "sales", "skills": {"sales": 3}}, {"name": "support", "skills": {"support": 3}}]}


def test_rate_follows_callers_and_ignores_a_campaigns_people() -> None:
    """In the first minute, the callers so far over a minute; then one caller every 30 s reads as 1/30 per
    second (the first minutes are not diluted by the 15-minute memory); a campaign's people in the same
    queue do not count, and another queue's rate is its own."""
    h = Harness(CFG)
    assert h.acd.queue_stats(h.now)["sales"].arrival_rate == 0.0
    h.queued("early", "sales")
    h.advance(10)
    assert h.acd.queue_stats(h.now)["sales"].arrival_rate == pytest.approx(1 / 60, rel=0.05)
    h.advance(20)
    for i in range(40):
        h.queued(f"c{i}", "sales")
        h.queued(f"p{i}", "sales", data={CTI_CAMPAIGN: "renewals"})
        h.advance(30)
    stats = h.acd.queue_stats(h.now)
    assert stats["sales"].arrival_rate == pytest.approx(1 / 30, rel=0.05)
    assert stats["support"].arrival_rate == 0.0
    h.advance(3600)  # an hour without callers: the rate fades
    assert h.acd.queue_stats(h.now)["sales"].arrival_rate < 0.002


def test_arrival_rate_is_exponentially_weighted() -> None:
    """Each arrival weighs exp(-age / memory); after ``memory`` seconds watched, the weight over the memory."""
    r = ArrivalRate(memory=100.0)
    r.watch(0.0)
    r.on_arrival(50.0)
    r.on_arrival(150.0)
    expected = (math.exp(-150 / 100) + math.exp(-50 / 100)) / (100 * (1 - math.exp(-200 / 100)))
    assert r.rate(200.0) == pytest.approx(expected)
