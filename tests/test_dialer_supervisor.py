"""A supervisor's changes to a running campaign, in the dialer shell (sans-I/O): pause stops every new dial at
once and resume dials again; mode, cap and ratio change for the next pacing round, checked as the
configuration is (the law's cap, the dial modes); the custom policy's ledger follows its cap."""

from __future__ import annotations

from typing import Any

import pytest

from centre.demo_leads import demo_leads
from cti.events import AmiConnectionChanged
from dialer.events import AttemptStarted
from dialer.settings import CampaignSettings, DialerSection
from dialer.shell import CampaignChangeError, Dialer

T0 = 1_767_261_600.0  # 2026-01-01 10:00 UTC
SRV = "pbx"


IDLE = [2]  # ready agents of the campaign's queue


def dialer(**campaign: Any) -> Dialer:
    IDLE[0] = 2
    section = DialerSection(campaigns=[CampaignSettings(name="c", queue="sales", leads="demo", demo_leads=20,
                                                        **campaign)], pace_interval=1.0)
    d = Dialer(section, servers=[SRV], dial_template="PJSIP/{number}@trunk", idle_agents=lambda q: IDLE[0],
               sink=lambda out: None, clock=lambda: T0, demo_leads=demo_leads)
    d.handle(AmiConnectionChanged(server=SRV, ts=T0, connected=True, detail="logged in"), T0)
    d.load_memory(T0)
    return d


def started(out: list[Any]) -> int:
    return sum(isinstance(e, AttemptStarted) for e in out)


def test_pause_stops_new_dials_at_once_and_resume_dials_again() -> None:
    d = dialer()
    assert started(d.tick(T0)) == 2
    d.pause("c")
    assert d.paused == {"c"}
    IDLE[0] = 4  # two more agents ready: still nothing dialled while paused
    for step in range(1, 6):
        assert started(d.tick(T0 + step)) == 0
    (figures,) = d.figures(T0 + 6)
    assert (figures["paused"], figures["enabled"], figures["in_flight"]) == (True, False, 2)  # calls go on
    d.resume("c")
    assert d.paused == set() and started(d.tick(T0 + 7)) == 2
    with pytest.raises(CampaignChangeError) as err:
        d.pause("nope")
    assert err.value.error_id == "unknown-campaign" and err.value.details["known"] == ["c"]


def test_a_campaign_disabled_in_the_configuration_is_not_resumed() -> None:
    d = dialer(enabled=False)
    with pytest.raises(CampaignChangeError) as err:
        d.resume("c")
    assert err.value.error_id == "campaign-disabled"
    assert started(d.tick(T0)) == 0


def test_mode_cap_and_ratio_change_within_the_law() -> None:
    d = dialer()
    s = d.change("c", mode="predictive", max_abandon_rate=0.02)
    assert (s.mode, s.max_abandon_rate) == ("predictive", 0.02) and d.campaigns["c"].settings is s
    with pytest.raises(CampaignChangeError) as err:
        d.change("c", max_abandon_rate=0.04)
    assert err.value.error_id == "over-legal-cap" and "FTC TSR 16 CFR 310.4(b)(4)" in err.value.message
    assert err.value.details == {"law": "FTC TSR 16 CFR 310.4(b)(4)", "legal_cap": 0.03}
    with pytest.raises(CampaignChangeError) as err:
        d.change("c", mode="turbo")
    assert err.value.error_id == "bad-mode"
    with pytest.raises(CampaignChangeError) as err:
        d.change("c", mode="progressive", ratio=2.0)  # ratio applies to mode: ratio only
    assert err.value.error_id == "bad-mode"
    assert (d.campaigns["c"].settings.mode, d.campaigns["c"].settings.max_abandon_rate) == ("predictive", 0.02)
    assert d.change("c", mode="ratio", ratio=1.5).ratio == 1.5
    assert d.change("c", mode="preview").ratio == 1.0


def test_the_custom_policys_cap_is_the_campaigns_and_the_ledger_follows() -> None:
    d = dialer(policy="custom", max_abandon_rate=0.05)
    assert d.compliance.policies["c"].cap == 0.05
    d.change("c", max_abandon_rate=0.1)  # no law under a custom policy: up to the configuration's 0.5
    assert d.compliance.policies["c"].cap == 0.1
    with pytest.raises(CampaignChangeError) as err:
        d.change("c", max_abandon_rate=0.6)
    assert err.value.error_id == "bad-cap" and d.compliance.policies["c"].cap == 0.1
