"""Blending end to end in virtual time: the demo day (its inbound callers, IVR, queues and twelve agents)
with the demo's campaign in predictive mode on the sales agents, who also take the sales, support and
billing callers. Outbound people answered by a customer must find an agent within the safe-harbour
seconds while inbound callers keep arriving; inbound's service level is measured with and without
blending."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from centre.demo import run_virtual
from config.load import load_config
from config.schema import CtiConfig

DEMO = Path(__file__).resolve().parent.parent / "config" / "examples" / "demo.yaml"
CAP = 0.03


def _config(blend: int | None, campaign: bool = True) -> CtiConfig:
    cfg = load_config(DEMO)
    if not campaign:
        return cfg.model_copy(update={"dialer": cfg.dialer.model_copy(update={"campaigns": []})})
    c = cfg.dialer.campaigns[0].model_copy(update={"mode": "predictive", "blend_threshold": blend,
                                                   "demo_leads": 3000})
    return cfg.model_copy(update={"dialer": cfg.dialer.model_copy(update={"campaigns": [c]})})


@dataclass
class Day:
    people: int  # answered by a person: connected or abandoned
    abandoned: int  # abandoned, or connected after the safe-harbour seconds
    inbound_sl: float  # percent of inbound answered within their queue's target, over answered + abandoned

    @property
    def outbound_rate(self) -> float:
        return self.abandoned / self.people if self.people else 0.0


def _day(blend: int | None, campaign: bool = True, seconds: float = 4 * 3600, seed: int = 1) -> Day:
    report = run_virtual(_config(blend, campaign), seconds, seed=seed)
    f = report["figures"]
    assert report["counts"]["lost"] == 0, report["lost"]
    out = f.outbound
    people = out.get("connected", 0) + out.get("abandoned", 0)
    assert f.service_level is not None
    return Day(people, out.get("abandoned", 0) + out.get("late", 0), f.service_level)


def test_blended_predictive_campaign_keeps_abandonment_under_the_cap() -> None:
    """Four hours of the demo: the callers who arrive while a campaign's call rings take the agent the
    pacer dialled for, unless the pacer leaves the agents they are expected to take (the queues' measured
    arrival rates over its horizon). Blended (threshold 1), outbound abandonment stays under the 3% cap
    (it was 3.5% when only callers already waiting were reserved; 0.9% measured), and inbound's service
    level with blending is at least what it is with the campaign unblended, and within 5 points of the
    day without any campaign (measured: 84% blended, 78% unblended, 88% without the campaign)."""
    blended = _day(blend=1)
    unblended = _day(blend=None)
    alone = _day(blend=None, campaign=False)
    assert blended.people >= 60, blended
    assert blended.outbound_rate <= CAP, blended
    assert blended.inbound_sl >= unblended.inbound_sl, (blended, unblended)
    assert blended.inbound_sl >= alone.inbound_sl - 5.0, (blended, alone)
