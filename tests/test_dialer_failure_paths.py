"""The dialer's failure paths: a number that must not or cannot be dialled, a lead whose time zone is unusable
(the calling window is then judged in the campaign's zone: a compliance matter), a lead listed twice, and a
disabled campaign. The engine is driven in virtual time; the lead store runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from twisted.internet import defer

from centre.database import upgrade
from centre.demo_leads import demo_leads
from cti.commands import CommandFailed, Originate
from cti.db import make_engine
from cti.events import AmiConnectionChanged, OriginateResult
from dialer.campaign import Campaign, Lead
from dialer.events import AttemptFinished, AttemptStarted, DialerWarning
from dialer.leads import parse_leads_csv
from dialer.settings import CampaignSettings, DialerSection
from dialer.shell import Dialer
from dialer.store import LeadStore

T0 = 1_767_261_600.0  # 2026-01-01 10:00 UTC = 05:00 in New York
SRV = "pbx"
NEW_YORK = ZoneInfo("America/New_York")


def campaign(*leads: Lead, **kw: Any) -> tuple[Campaign, list[Any]]:
    settings = CampaignSettings(name="renewals", queue="sales", leads="demo", **kw)
    c = Campaign(settings, server=SRV, dial_template="PJSIP/{number}@trunk")
    return c, c.load(list(leads), T0)


def dial(c: Campaign, now: float, idle: int = 5) -> list[Any]:
    """Pace and persist every started attempt: everything the campaign returned."""
    out = c.pace(now, idle)
    for e in list(out):
        if isinstance(e, AttemptStarted):
            out.extend(c.persisted(e.ref, now))
    return out


def of(out: list[Any], kind: type) -> list[Any]:
    return [x for x in out if isinstance(x, kind)]


# ---------------------------------------------------------------- refused numbers
@pytest.mark.parametrize("number", ["12", "+1555abc0100", "555;Dial(PJSIP/x)", "+1555 0100", ""])
def test_an_invalid_number_is_never_dialled_and_never_retried(number: str) -> None:
    """A lead whose number cannot be dialled (it came from the store or another source, not the CSV parser
    that refuses such rows) gets no Originate: a ``bad-number`` warning, the attempt ends ``invalid`` and the
    lead is exhausted at once: retrying cannot make the number valid, and each retry would be reported again."""
    c, _ = campaign(Lead("bad", number), Lead("good", "+15550100100"), max_attempts=3)
    out = dial(c, T0)
    assert [o.variables["CTI_LEAD_ID"] for o in of(out, Originate)] == ["good"]
    (warning,) = of(out, DialerWarning)
    assert warning.code == "bad-number" and "bad" in warning.message
    (fin,) = of(out, AttemptFinished)
    assert (fin.lead_id, fin.result, fin.lead_status, fin.next_at) == ("bad", "invalid", "exhausted", None)
    assert c.leads["bad"].status == "exhausted" and c.next_due() is None
    assert of(dial(c, T0 + 30 * 86400), Originate) == []


def test_a_number_the_pbx_refuses_is_retried_after_the_failed_delay_then_exhausted() -> None:
    """The PBX refuses the Originate (the trunk's do-not-call screen answers Response: Error): the attempt is
    ``failed`` with an ``originate-refused`` warning naming the lead, the number is not dialled again before
    ``retry_after.failed``, and after ``max_attempts`` refusals the lead is exhausted."""
    c, _ = campaign(Lead("dnc", "+15550100199"), max_attempts=2, retry_after={"failed": 600})
    (o,) = of(dial(c, T0), Originate)
    out = c.handle(CommandFailed(o.ref, o, "Originate failed: number on the do-not-call list"), T0 + 1)
    (warning,) = of(out, DialerWarning)
    assert warning.code == "originate-refused" and "do-not-call" in warning.message and "dnc" in warning.message
    (fin,) = of(out, AttemptFinished)
    assert (fin.result, fin.lead_status, fin.next_at) == ("failed", "pending", T0 + 601)
    assert of(dial(c, T0 + 600), Originate) == []
    (o2,) = of(dial(c, T0 + 601), Originate)
    (fin2,) = of(c.handle(OriginateResult(server=SRV, ts=T0 + 602, action_id=o2.ref, success=False, reason=0,
                                          channel="", uniqueid=None), T0 + 602), AttemptFinished)
    assert (fin2.result, fin2.lead_status) == ("failed", "exhausted")
    assert c.next_due() is None


def test_an_invalid_number_is_recorded_as_such_in_the_store(db_url: str, tmp_path: Path) -> None:
    """Through the shell and a real store: the invalid lead's attempt is written with result ``invalid`` and
    the lead as exhausted (the result fits the column on PostgreSQL), and a restart does not dial it."""
    sink: list[Any] = []
    (tmp_path / "none.csv").write_text("id,number\n")  # the leads are in the store already
    upgrade(db_url)
    store = LeadStore(make_engine(db_url))
    try:
        store.import_leads("c", [Lead("bad", "12"), Lead("ok", "+15550100100")], T0)
        dialer = _dialer(sink, leads="none.csv", base_dir=tmp_path)
        dialer.open_store(store, _Inline(), T0)
        dialer.tick(T0)
        assert [o.variables["CTI_LEAD_ID"] for o in sink if isinstance(o, Originate)] == ["ok"]
        rows = {lead.lead_id: lead for lead in store.load("c")}
        assert (rows["bad"].status, rows["bad"].last_result, rows["bad"].attempts) == ("exhausted", "invalid", 1)
        (attempt,) = store.attempts("c", "bad")
        assert attempt.result == "invalid" and attempt.ended_at is not None
        again = _dialer([], leads="none.csv", base_dir=tmp_path)
        again.open_store(store, _Inline(), T0 + 86400)
        assert "bad" not in [e.lead_id for e in again.tick(T0 + 86400) if isinstance(e, AttemptStarted)]
    finally:
        store.engine.dispose()


def test_csv_rows_with_unusable_numbers_are_refused_with_their_line() -> None:
    """In a lead file, a number that is not one (letters, too short, a dial-string injection) is refused with
    ``file:line`` and the other rows load."""
    text = "id,number\na,+1 (555) 010-0100\nb,CALL-ME\nc,12\nd,555&PJSIP/evil\ne,555 0101\n"
    leads, errors = parse_leads_csv(text, "leads.csv")
    assert [lead.lead_id for lead in leads] == ["a", "e"]
    assert [e.split(": ")[0] for e in errors] == ["leads.csv:3", "leads.csv:4", "leads.csv:5"]
    assert all("not a phone number" in e for e in errors)


# ---------------------------------------------------------------- unusable lead time zones
@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "Europe/Paris\x00", "x" * 300, "UTC+5",
                                  "/etc/localtime", "America/New_York "])
def test_a_lead_with_an_unusable_time_zone_is_called_in_the_campaign_zone(zone: str) -> None:
    """A lead whose time zone cannot be loaded is judged by the campaign's zone (New York here), never by UTC
    or the server's zone: at 10:00 UTC (05:00 in New York) it is not dialled, and it becomes due when the
    window opens at 09:00 New York time."""
    c, _ = campaign(Lead("L", "+15550100100", timezone=zone), timezone="America/New_York",
                    calling_window={"start": "09:00", "end": "21:00"})
    assert of(dial(c, T0), Originate) == []
    due = c.next_due()
    assert due is not None
    opened = datetime.fromtimestamp(due, NEW_YORK)
    assert (opened.hour, opened.minute) == (9, 0) and due == T0 + 4 * 3600
    assert of(dial(c, due - 60), Originate) == []
    assert len(of(dial(c, due), Originate)) == 1


def test_an_unusable_time_zone_near_closing_time_is_not_called_late() -> None:
    """The other edge: 01:30 UTC is 20:30 in New York, inside a 09:00-21:00 window in the campaign's zone but
    outside it in UTC; with the campaign in Tokyo's zone the same instant is 10:30, inside. The fallback follows
    the campaign's zone exactly, both ways."""
    at = datetime(2026, 1, 2, 1, 30, tzinfo=ZoneInfo("UTC")).timestamp()
    window = {"start": "09:00", "end": "21:00"}
    ny, _ = campaign(Lead("L", "+15550100100", timezone="Nowhere/Land"), timezone="America/New_York",
                     calling_window=window)
    assert len(of(dial(ny, at), Originate)) == 1
    ny_late, _ = campaign(Lead("L", "+15550100100", timezone="Nowhere/Land"), timezone="America/New_York",
                          calling_window=window)
    assert of(dial(ny_late, at + 3600), Originate) == []  # 21:30 in New York: closed
    tokyo, _ = campaign(Lead("L", "+15550100100", timezone="Nowhere/Land"), timezone="Asia/Tokyo",
                        calling_window=window)
    assert len(of(dial(tokyo, at), Originate)) == 1
    at = datetime(2026, 1, 2, 8, 30, tzinfo=ZoneInfo("UTC")).timestamp()
    utc_only, _ = campaign(Lead("L", "+15550100100", timezone="Nowhere/Land"), timezone="Asia/Tokyo",
                           calling_window={"start": "08:00", "end": "09:00"})
    assert of(dial(utc_only, at), Originate) == []  # 08:30 UTC would be inside; 17:30 Tokyo is not


def test_csv_rows_with_unusable_time_zones_are_refused_not_fatal() -> None:
    """In a lead file an unknown time zone refuses that row (the file loads): also a name the system cannot
    even look up (too long for a file name), which must not abort the whole import."""
    text = f"id,number,timezone\na,+15550100100,America/New_York\nb,+15550100101,Mars/Olympus\n" \
           f"c,+15550100102,{'x' * 300}\nd,+15550100103,../../etc/passwd\ne,+15550100104,\n"
    leads, errors = parse_leads_csv(text, "leads.csv")
    assert [(lead.lead_id, lead.timezone) for lead in leads] == [("a", "America/New_York"), ("e", "")]
    assert [e.split(": ")[0] for e in errors] == ["leads.csv:3", "leads.csv:4", "leads.csv:5"]
    assert all("unknown time zone" in e for e in errors)


# ---------------------------------------------------------------- duplicate leads
def test_a_lead_listed_twice_is_taken_once_with_a_warning() -> None:
    """The same lead id twice in what a campaign loads: the first is kept, the second reported, and the lead
    is dialled once."""
    c, out = campaign(Lead("L", "+15550100100", {"v": "first"}), Lead("L", "+15550100999", {"v": "second"}))
    (warning,) = of(out, DialerWarning)
    assert warning.code == "duplicate-lead" and "'L'" in warning.message
    origs = of(dial(c, T0), Originate)
    assert [(o.variables["CTI_LEAD_ID"], o.variables["CTI_LEAD_NUMBER"]) for o in origs] == [("L", "+15550100100")]
    assert c.lead_fields("L")["v"] == "first"


def test_csv_duplicate_lead_ids_are_refused_with_the_first_line() -> None:
    leads, errors = parse_leads_csv("id,number\nL,+15550100100\nM,+15550100101\nL,+15550100102\n", "x.csv")
    assert [lead.lead_id for lead in leads] == ["L", "M"]
    assert errors == ["x.csv:4: lead 'L' again (first on line 2)"]


def test_the_store_imports_a_lead_listed_twice_once(db_url: str) -> None:
    """The store given the same lead id twice in one import (a source other than the CSV parser) adds it once,
    the first, instead of failing the whole import on the unique constraint (which would stop the start-up)."""
    upgrade(db_url)
    store = LeadStore(make_engine(db_url))
    try:
        added = store.import_leads("c", [Lead("L", "+15550100100", {"v": "first"}), Lead("M", "+15550100101"),
                                         Lead("L", "+15550100999", {"v": "second"})], T0)
        assert added == 2
        assert [(lead.lead_id, lead.number, lead.fields) for lead in store.load("c")] == \
            [("L", "+15550100100", {"v": "first"}), ("M", "+15550100101", {})]
        assert store.import_leads("c", [Lead("L", "+15550100100"), Lead("L", "+15550100100")], T0 + 1) == 0
    finally:
        store.engine.dispose()


# ---------------------------------------------------------------- disabled campaigns
class _Inline:
    """run_in_thread that runs the write at once (the real store, no thread)."""

    def __call__(self, fn: Any) -> defer.Deferred[Any]:
        return defer.maybeDeferred(fn)


def _dialer(sink: list[Any], *, enabled: bool = True, leads: str = "demo", base_dir: Path | None = None,
            idle: int = 5) -> Dialer:
    section = DialerSection(campaigns=[CampaignSettings(name="c", queue="sales", leads=leads, demo_leads=3,
                                                        enabled=enabled)], pace_interval=1.0)
    dialer = Dialer(section, servers=[SRV], dial_template="PJSIP/{number}@trunk", idle_agents=lambda q: idle,
                    sink=sink.extend, clock=lambda: T0, base_dir=base_dir, demo_leads=demo_leads)
    dialer.handle(AmiConnectionChanged(server=SRV, ts=T0, connected=True, detail="logged in"), T0)
    return dialer


def test_a_disabled_campaign_dials_nothing_and_asks_for_no_timer() -> None:
    """A campaign with ``enabled: false`` loads its leads (they show in the stats) but never starts an
    attempt, however many agents are idle and however long the server runs, and gives the server no pacing
    deadline to wake up for."""
    sink: list[Any] = []
    dialer = _dialer(sink, enabled=False)
    dialer.load_memory(T0)
    for step in range(5):
        assert dialer.tick(T0 + step * 3600) == []
    assert sink == []
    (stats,) = dialer.stats()
    assert stats["leads"] == {"pending": 3} and stats["dialled"] == 0
    assert dialer.next_deadline() is None


def test_a_disabled_campaign_still_closes_an_attempt_a_crash_left_open(db_url: str) -> None:
    """Disabled after a crash mid-attempt: the open attempt is still resolved as ``unknown`` in the store (its
    record must not stay open), and nothing is dialled."""
    upgrade(db_url)
    store = LeadStore(make_engine(db_url))
    try:
        store.import_leads("c", [Lead("L", "+15550100100")], T0)
        store.apply([AttemptStarted(T0, "c", "L", "dial:c/L/1", 1, "+15550100100")])
        sink: list[Any] = []
        dialer = _dialer(sink, enabled=False, leads="demo")
        recovered = dialer.open_store(store, _Inline(), T0 + 60)
        assert [(e.lead_id, e.result) for e in of(recovered, AttemptFinished)] == [("L", "unknown")]
        (attempt,) = store.attempts("c", "L")
        assert attempt.result == "unknown" and attempt.ended_at is not None
        assert dialer.tick(T0 + 86400) == [] and sink == []
    finally:
        store.engine.dispose()


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'dialer.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url
