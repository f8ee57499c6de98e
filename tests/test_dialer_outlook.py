"""The dialer's outlook on a campaign queue's agents (centre.wiring.AgentOutlooks): ready agents, the ages of
the busy ones' calls and wrap-ups, and blending's reserve, all from the ACD's public reads."""

from __future__ import annotations

from typing import Any

import pytest

from acd.events import QueueCallFinished
from centre.wiring import AgentOutlooks, callers_reserve
from cti.commands import OfferCall
from cti.contract import CTI_CAMPAIGN
from dialer.campaign import Campaign
from dialer.pacer import AgentOutlook
from dialer.settings import CampaignSettings
from tests.test_acd_support import Harness, agent, of_type

CFG: dict[str, Any] = {
    "agents": [agent("s1", {"sales": 5}), agent("s2", {"sales": 5}), agent("b1", {"sales": 5, "support": 5}),
               agent("sup", {"support": 5})],
    "queues": [{"name": "sales", "skills": {"sales": 3}, "wrapup": 10},
               {"name": "support", "skills": {"support": 3}, "wrapup": 10}],
}


def campaign(**kw: Any) -> CampaignSettings:
    return CampaignSettings(name="c", queue="sales", leads="demo", **kw)


def test_outlook_counts_ready_agents_and_ages_busy_ones() -> None:
    """Ready agents are counted; the one a call is offered to counts as a call of age 0, then its talk ages
    with the clock, then its wrap-up; agents of other queues are not there."""
    h = Harness(CFG)
    look = AgentOutlooks(h.acd, [campaign()])
    assert look("sales", h.now) == AgentOutlook(ready=0)
    h.ready("s1", "s2", "b1", "sup")
    assert look("sales", h.now) == AgentOutlook(ready=3)
    (offer,) = of_type(h.queued("u1", "sales", data={CTI_CAMPAIGN: "c"}), OfferCall)  # the campaign's person
    assert look("sales", h.now) == AgentOutlook(ready=2, talk_ages=(0.0,))
    h.advance(2)
    h.answer("u1", offer.agent_id)
    h.advance(30)
    assert look("sales", h.now) == AgentOutlook(ready=2, talk_ages=(30.0,))
    h.hangup("u1")
    h.advance(4)
    assert look("sales", h.now) == AgentOutlook(ready=2, wrap_ages=(4.0,))
    h.advance(6)
    assert look("sales", h.now) == AgentOutlook(ready=3)
    finished = of_type(h.log, QueueCallFinished)
    assert [(f.talk, f.wrapup) for f in finished] == [(30.0, 10.0)]  # what the campaign learns durations from


def test_blending_holds_agents_back_while_inbound_waits() -> None:
    """With ``blend_threshold: 1``, the campaign's agents also serve support (b1 does): while a support caller
    waits, outbound leaves the threshold plus one agent per waiting caller to inbound; the pacer counts only
    what is left (here: two ready, two held back, none left)."""
    h = Harness(CFG)
    look = AgentOutlooks(h.acd, [campaign(blend_threshold=1)])
    h.advance(3600)  # a quiet hour: one caller now is not a flood (no callers are forecast)
    h.ready("s1", "s2")
    quiet = look("sales", h.now)
    assert (quiet.ready, quiet.reserve, quiet.blended) == (2, 0, 3)
    h.queued("u9", "support")  # nobody ready for support: it waits
    busy = look("sales", h.now)
    assert (busy.ready, busy.reserve) == (2, 2)
    c = Campaign(campaign(blend_threshold=1), server="pbx", dial_template="PJSIP/{number}@t")
    assert c.decide(h.now, busy).dial == 0  # progressive: 2 ready - 2 held back
    assert c.decide(h.now, quiet).dial == 2
    assert c.last_decision is not None and c.last_decision.explain["idle"] == 2
    # without blending, the waiting caller still takes an agent first, but no threshold is kept
    assert AgentOutlooks(h.acd, [campaign()])("sales", h.now).reserve == 1


def test_callers_waiting_in_the_campaign_queue_itself_count() -> None:
    """A campaign's own queue may take inbound callers too: those waiting there, less the campaign's own people
    (the campaign knows them), are held back as well."""
    h = Harness(CFG)
    look = AgentOutlooks(h.acd, [campaign()])
    h.queued("u1", "sales")
    h.queued("u2", "sales")
    o = look("sales", h.now)
    assert (o.ready, o.queue_waiting) == (0, 2)


def test_callers_expected_while_a_call_rings_are_reserved() -> None:
    """Callers arrive at the campaign queue (a caller a minute, measured by the ACD): one arriving while a
    campaign's call rings would take the agent the pacer dialled for, so the outlook reserves the agents
    they take over the horizon (the campaigns' prior dial-to-person time, 10 s, and 2 s of safe harbour:
    0.2 expected, one agent to keep the risk under 10%). A campaign's own people do not count; a queue
    with a free agent of its own absorbs its callers."""
    h = Harness(CFG)
    look = AgentOutlooks(h.acd, [campaign()])
    h.ready("s1", "s2", "b1", "sup")
    assert look("sales", h.now).reserve == 0
    for i in range(15):
        h.queued(f"p{i}", "sales", data={CTI_CAMPAIGN: "c"})  # the campaign's people: not callers
        h.hangup(f"p{i}")
        h.advance(60)
    assert look("sales", h.now).reserve == 0
    for i in range(15):
        h.queued(f"u{i}", "support")  # 'sup' (not a campaign agent) is free: it takes them
        h.hangup(f"u{i}")
        h.advance(60)
    assert look("sales", h.now).reserve == 0
    for i in range(15):
        h.queued(f"s{i}", "sales")
        h.hangup(f"s{i}")
        h.advance(60)
    assert h.acd.queue_stats(h.now)["sales"].arrival_rate == pytest.approx(0.0107, abs=0.001)  # 15 min memory
    assert look("sales", h.now).reserve == 1
    look.connect = lambda queue: 58.0  # measured: people answer later, more callers meanwhile (0.64 expected)
    assert look("sales", h.now).reserve == 2


def test_callers_reserve_is_a_poisson_tail() -> None:
    """The fewest agents the expected callers take more of with probability under the risk; callers first
    take their queue's other free agents."""
    assert callers_reserve([], 0.1) == 0
    assert callers_reserve([(0.05, 0)], 0.1) == 0  # P(one caller) = 4.9%
    assert callers_reserve([(0.2, 0)], 0.1) == 1  # P(two) = 1.8%
    assert callers_reserve([(0.2, 1)], 0.1) == 0  # the queue's own free agent takes the first
    assert callers_reserve([(1.0, 0), (1.0, 0)], 0.1) == 4  # Poisson(2): P(> 3) = 14%, P(> 4) = 5.3%
