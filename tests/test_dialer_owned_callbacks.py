"""Agents' own scheduled callbacks (issue 15), pure: a Campaign and its Previews with fixed times. A callback an
agent owns is offered to that agent alone, as a preview, once it is due and the agent is ready; nobody else
gets it (no line, no preview) until ``callback_owner_grace`` seconds after it is due; then the whole campaign
dials it like any callback, ahead of fresh leads, with a warning saying so."""

from __future__ import annotations

from typing import Any

import pytest

from cti.commands import Originate
from dialer.campaign import Campaign, Lead
from dialer.events import AttemptStarted, DialerWarning, PreviewEnded, PreviewOffered
from dialer.preview import PREVIEW_TIMEOUT_REASON, Previews
from dialer.settings import CampaignSettings

T0 = 1_767_261_600.0  # 2026-01-01 10:00 UTC
GRACE = 600.0


def make(mode: str = "progressive", **kw: Any) -> tuple[Campaign, Previews]:
    settings = CampaignSettings(name="spring", queue="sales", leads="demo", mode=mode, preview_timeout=20,
                                preview_skip_retry=300, callback_owner_grace=GRACE, **kw)
    c = Campaign(settings, server="pbx", dial_template="PJSIP/{number}@trunk")
    c.load([Lead(f"F{i}", f"+1555000{i:04d}", {"name": f"Fresh {i}"}) for i in range(3)], T0)
    assert c.schedule_callback(Lead("cb1", "+15559990001", {"name": "Owed"}), T0 + 60, owner="a1",
                               notes="call about the May renewal")
    return c, Previews(c)


def dialled(c: Campaign, now: float, idle: int = 5) -> list[str]:
    """Pace with ``idle`` agents; the leads whose attempts started."""
    out = c.pace(now, idle)
    return [e.lead_id for e in out if isinstance(e, AttemptStarted)]


def offered(out: list[Any]) -> list[tuple[str, str]]:
    return [(e.agent_id, e.lead_id) for e in out if isinstance(e, PreviewOffered)]


def test_not_offered_before_it_is_due_and_then_only_to_its_owner() -> None:
    c, p = make()
    assert p.offer_callbacks(T0 + 59, ["a1", "a2"]) == []  # not due yet
    assert "cb1" not in dialled(c, T0 + 1)  # fresh leads are dialled meanwhile, never the owned callback
    out = p.offer_callbacks(T0 + 60, ["a2", "a1", "a3"])
    assert offered(out) == [("a1", "cb1")]
    (e,) = out
    assert isinstance(e, PreviewOffered) and e.callback_due == T0 + 60 and e.callback_notes.startswith("call about")
    assert e.fields["name"] == "Owed" and e.ref == "dial:spring/cb1/1"
    assert p.offer_callbacks(T0 + 61, ["a1"]) == []  # shown already
    # accept: dialled as any attempt; the agent stays held for the person (PreviewEnded without release)
    started, ended = p.accept("a1", "cb1", T0 + 65)
    assert isinstance(started, AttemptStarted) and started.lead_id == "cb1"
    assert isinstance(ended, PreviewEnded) and not ended.release
    assert any(isinstance(o, Originate) for o in c.persisted(started.ref, T0 + 65))
    assert c.owned_callback("cb1") is None and c.owned_callbacks() == 0


def test_never_given_to_another_agent_before_the_grace_is_over() -> None:
    """The owner is not ready: other agents get fresh leads (lines, previews of a preview campaign), never the
    callback, until its grace is over; then it goes to the whole campaign, ahead of fresh leads, and a warning
    says so."""
    c, p = make()
    others: list[str] = []
    for t in range(0, int(60 + GRACE), 30):
        now = T0 + t
        assert c.tick(now) == []
        assert p.offer_callbacks(now, ["a2", "a3"]) == []
        others += dialled(c, now, idle=5)  # lines to spare: the fresh leads are all dialled, cb1 never
    assert "cb1" not in others and c.owned_callback("cb1") is not None
    assert c.next_deadline() == T0 + 60 + GRACE
    (w,) = c.tick(T0 + 60 + GRACE)
    assert isinstance(w, DialerWarning) and w.code == "callback-to-campaign" and "agent a1" in w.message
    assert sorted(others) == ["F0", "F1", "F2"]
    c.load([Lead("F9", "+15550009999")], T0 + 60 + GRACE)
    assert dialled(c, T0 + 60 + GRACE, idle=5) == ["cb1", "F9"]  # ahead of the fresh lead
    # the store hands the callback over again at each read: it stays the campaign's, dialled once
    assert not c.schedule_callback(Lead("cb1", "+15559990001"), T0 + 60, owner="a1")


def test_a_preview_campaign_pops_fresh_leads_to_others_and_the_callback_to_its_owner() -> None:
    c, p = make(mode="preview")
    assert offered(p.pop(T0 + 100, ["a2", "a3"])) == [("a2", "F0"), ("a3", "F1")]
    assert offered(p.offer_callbacks(T0 + 100, ["a1", "a2", "a3"])) == [("a1", "cb1")]
    assert offered(p.pop(T0 + 100, ["a4", "a5"])) == [("a4", "F2")]  # cb1 is a1's


def test_skipped_by_its_owner_it_stays_the_owners_and_a_time_out_keeps_it_waiting() -> None:
    c, p = make()
    p.offer_callbacks(T0 + 60, ["a1"])
    (skipped,) = p.skip("a1", "cb1", "not in yet", T0 + 70)
    assert isinstance(skipped, PreviewEnded) and skipped.outcome == "skipped"
    owned = c.owned_callback("cb1")
    assert owned is not None and (owned.due, owned.expires) == (T0 + 370, T0 + 370 + GRACE)
    assert p.offer_callbacks(T0 + 369, ["a1"]) == []
    assert offered(p.offer_callbacks(T0 + 370, ["a1"])) == [("a1", "cb1")]
    (timeout,) = p.tick(T0 + 390)  # the owner is away: made not ready; the callback still waits for it
    assert isinstance(timeout, PreviewEnded) and timeout.not_ready == PREVIEW_TIMEOUT_REASON
    assert c.owned_callback("cb1") is not None and "cb1" not in dialled(c, T0 + 400)
    assert offered(p.offer_callbacks(T0 + 500, ["a1"])) == [("a1", "cb1")]


def test_the_grace_starts_when_the_leads_calling_window_opens() -> None:
    """Due at 20:30, outside the 09:00-20:00 window: nobody gets it overnight, the owner from 09:00 the next
    morning, and its grace runs from then."""
    c, p = make()
    evening = T0 + 10.5 * 3600  # 20:30 UTC
    morning = T0 + 23 * 3600  # 09:00 the next day
    assert c.schedule_callback(Lead("cb1", "+15559990001"), evening, owner="a1")
    assert c.tick(evening + GRACE + 1) == []
    assert p.offer_callbacks(evening + GRACE + 1, ["a1"]) == []
    owned = c.owned_callback("cb1")
    assert owned is not None and owned.expires == pytest.approx(morning + GRACE)
    assert c.tick(morning + GRACE - 1) == []
    assert offered(p.offer_callbacks(morning, ["a1"])) == [("a1", "cb1")]
    p.withdraw("a1", morning + 1)  # the agent could not be held: the callback is the owner's still
    (w,) = c.tick(morning + GRACE)
    assert isinstance(w, DialerWarning) and w.code == "callback-to-campaign"


def test_scheduling_again_changes_nothing_and_a_new_time_moves_it() -> None:
    c, _ = make()
    assert c.schedule_callback(Lead("cb1", "+15559990001"), T0 + 60, owner="a1")
    assert c.owned_callbacks() == 1
    assert c.schedule_callback(Lead("cb1", "+15559990001"), T0 + 900, owner="a1")
    owned = c.owned_callback("cb1")
    assert owned is not None and owned.due == T0 + 900
    assert c.next_due() == 0.0  # the fresh leads (due since ever)
