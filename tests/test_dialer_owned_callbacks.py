"""Agents' own scheduled callbacks (issue 15), pure: a Campaign and its Previews with fixed times. A callback an
agent owns is offered to that agent alone, as a preview, once it is due and the agent is ready; nobody else
gets it (no line, no preview) until ``callback_owner_grace`` seconds after it is due; then the whole campaign
dials it like any callback, ahead of fresh leads, with a warning saying so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from twisted.internet import defer

from centre.database import upgrade
from cti.commands import Originate
from cti.db import make_engine
from cti.events import AmiConnectionChanged
from dialer.campaign import Campaign, Lead
from dialer.events import AttemptStarted, DialerWarning, PreviewEnded, PreviewOffered
from dialer.preview import PREVIEW_TIMEOUT_REASON, Previews
from dialer.settings import CampaignSettings, DialerSection
from dialer.shell import Dialer
from dialer.store import Callback, CallbackStore, LeadStore

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
    assert c.next_deadline() is None  # no grace timer while its owner looks at it
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


# ---------------------------------------------------------------- the shell over a real store: restarts

@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'callbacks.sqlite3'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def _inline(job: Callable[[], Any]) -> defer.Deferred[Any]:
    """The store's thread pool's stand-in: the job runs at once, in order."""
    return defer.maybeDeferred(job)


class Server:
    """One server's dialer over the store (a restart is a new one), ``ready`` its campaign queue's ready agents."""

    def __init__(self, store: LeadStore, now: float, ready: list[str]) -> None:
        section = DialerSection(campaigns=[CampaignSettings(name="spring", queue="sales", leads="store",
                                                            callback_owner_grace=GRACE)])
        self.now = now
        self.ready = ready
        self.sunk: list[Any] = []
        self.dialer = Dialer(section, servers=["pbx"], dial_template="PJSIP/{number}@trunk",
                             idle_agents=lambda queue: len(self.ready), sink=self.sunk.extend, clock=lambda: self.now,
                             ready_agents=lambda queue: list(self.ready))
        self.dialer.open_store(store, _inline, now)
        self.dialer.handle(AmiConnectionChanged(server="pbx", ts=now, connected=True, detail="up"), now)
        self.campaign = self.dialer.campaigns["spring"]

    def tick(self, now: float) -> list[Any]:
        self.now = now
        out = self.dialer.tick(now) + self.sunk
        self.sunk.clear()
        return out


def _statuses(store: LeadStore) -> list[str]:
    with Session(store.engine) as session:
        return list(session.scalars(select(Callback.status)))


def test_a_restart_neither_loses_nor_duplicates_an_owned_callback(db_url: str) -> None:
    upgrade(db_url)
    store = LeadStore(make_engine(db_url))
    callbacks = CallbackStore(store.engine)
    callbacks.add(number="+15559990001", due=T0 + 30, source="agent", queue="sales", agent_id="a1",
                  notes="the May renewal", now=T0)
    first = Server(store, T0, ready=["a2"])  # a1 is not ready; a2 is
    (lead_id,) = [lead_id for lead_id in first.campaign.leads if lead_id.startswith("cb")]
    owned = first.campaign.owned_callback(lead_id)
    assert owned is not None and (owned.agent_id, owned.due, owned.notes) == ("a1", T0 + 30, "the May renewal")
    for t in range(0, 120, 5):  # due, but nobody else gets it
        out = first.tick(T0 + t)
        assert not [e for e in out if isinstance(e, PreviewOffered | AttemptStarted)], out
    assert _statuses(store) == ["queued"]

    # the server restarts: the callback is a1's still, once
    second = Server(store, T0 + 130, ready=["a2"])
    assert second.campaign.owned_callbacks() == 1 and second.campaign.owned_callback(lead_id) is not None
    for t in (130, 140):  # the hopper's read (every 5 s) hands the queued callback over again: no change
        assert not [e for e in second.tick(T0 + t) if isinstance(e, PreviewOffered | AttemptStarted)]
    assert second.campaign.owned_callbacks() == 1
    second.ready.append("a1")
    shown = [e for e in second.tick(T0 + 150) if isinstance(e, PreviewOffered)]
    assert [(e.agent_id, e.lead_id, e.callback_due) for e in shown] == [("a1", lead_id, T0 + 30)]
    out = second.dialer.preview_accept("a1", lead_id, T0 + 155) + second.sunk
    assert [o.variables["CTI_LEAD_ID"] for o in out if isinstance(o, Originate)] == [lead_id]
    assert _statuses(store) == ["dialled"]

    # and again: the callback was dialled; it is nobody's to offer, and not claimed again
    third = Server(store, T0 + 200, ready=["a1", "a2"])
    assert third.campaign.owned_callbacks() == 0
    assert not [e for e in third.tick(T0 + 200) if isinstance(e, PreviewOffered)]
    assert _statuses(store) == ["dialled"]
    store.engine.dispose()


def test_an_absent_owner_hands_the_callback_to_the_campaign_after_the_grace(db_url: str) -> None:
    upgrade(db_url)
    store = LeadStore(make_engine(db_url))
    CallbackStore(store.engine).add(number="+15559990001", due=T0 + 30, source="agent", queue="sales",
                                    agent_id="a1", now=T0)
    server = Server(store, T0, ready=["a2"])
    dialled_at = None
    warnings: list[DialerWarning] = []
    for t in range(0, int(GRACE) + 120, 5):
        out = server.tick(T0 + t)
        warnings += [e for e in out if isinstance(e, DialerWarning) and e.code == "callback-to-campaign"]
        if dialled_at is None and [o for o in out if isinstance(o, Originate)]:
            dialled_at = T0 + t
    assert dialled_at is not None and T0 + 30 + GRACE <= dialled_at <= T0 + 30 + GRACE + 5
    assert len(warnings) == 1 and "agent a1" in warnings[0].message
    assert _statuses(store) == ["dialled"]
    store.engine.dispose()
