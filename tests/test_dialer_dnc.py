"""Leads into the store and the do-not-call list (issue 15, item 5): ``cti leads import`` (column map, E.164,
zones from the number, duplicates, bad rows with line numbers, idempotent and resumable by chunks),
``cti dnc import``, an agent's "do not call" disposition, and the hopper (refill, callbacks first, run-out
warning). Store tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from centre.database import upgrade
from cti.commands import Originate
from cti.db import make_engine
from cti.events import AmiConnectionChanged, OriginateResult
from dialer.campaign import Campaign, Lead
from dialer.events import AttemptStarted, DialerWarning
from dialer.lead_import import LeadFileError, import_dnc, import_leads, parse_mapping
from dialer.settings import CampaignSettings, DialerSection
from dialer.shell import Dialer
from dialer.store import Callback, CallbackStore, DncStore, LeadStore

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_767_261_600.0  # 2026-01-01 10:00 UTC
NOON_NY = 1_767_286_800.0  # 2026-01-01 17:00 UTC = 12:00 in New York, 09:00 in Los Angeles


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'dialer.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


def stores(url: str) -> tuple[LeadStore, DncStore]:
    upgrade(url)
    engine = make_engine(url)
    return LeadStore(engine), DncStore(engine)


LEADS = (
    "Ref,Phone,Name,TZ\n"
    "A1,(212) 736-5000,Ann,\n"  # New York, from the number
    "A2,+44 20 7946 0000,Bob,Europe/London\n"
    "A3,12,Bad,\n"  # line 4: not a number
    "A4,212-736-5000,Dup,\n"  # line 5: the same number as line 2
    "A5,+1 415 555 2671,Mars,Mars/Olympus\n"  # line 6: unknown zone
    "A1,+13125550100,Again,\n"  # line 7: the same lead id
    "A6,+1 312 555 0100,Cy,\n"  # Chicago
)


def test_import_maps_columns_normalises_and_reports_bad_rows(db_url: str, tmp_path: Path) -> None:
    leads, _ = stores(db_url)
    path = tmp_path / "leads.csv"
    path.write_text(LEADS)
    report = import_leads(path, leads, "c", now=T0, mapping=parse_mapping("number=Phone,timezone=TZ,id=Ref"))
    assert (report.rows, report.added, report.known) == (7, 3, 0)
    assert report.bad == [(4, "not a valid phone number: '12'"), (6, "unknown time zone 'Mars/Olympus'"),
                          (7, "lead 'A1' again (first on line 2)")]
    assert report.skipped == [(5, "+12127365000 again (first on line 2)")]
    stored = {lead.lead_id: lead for lead in leads.load("c")}
    assert {k: (v.number, v.timezone) for k, v in stored.items()} == {
        "A1": ("+12127365000", "America/New_York"), "A2": ("+442079460000", "Europe/London"),
        "A6": ("+13125550100", "America/Chicago")}
    assert stored["A1"].fields == {"name": "Ann"}
    again = import_leads(path, leads, "c", now=T0 + 1, mapping=parse_mapping("number=Phone,timezone=TZ,id=Ref"))
    assert (again.added, again.known) == (0, 3)  # idempotent
    leads.engine.dispose()


def test_a_number_already_in_the_campaign_or_on_the_dnc_list_is_skipped(db_url: str, tmp_path: Path) -> None:
    leads, dnc = stores(db_url)
    assert dnc.add(["+13125550100"], "test", T0) == 1
    assert dnc.add(["+13125550100"], "test", T0) == 0
    first = tmp_path / "a.csv"
    first.write_text("id,number\nX,+14155552671\n")
    assert import_leads(first, leads, "c", now=T0).added == 1
    second = tmp_path / "b.csv"
    second.write_text("id,number\nY,4155552671\nZ,(312) 555-0100\nW,+12127365000\n")
    report = import_leads(second, leads, "c", now=T0)
    assert report.added == 1
    assert report.skipped == [(2, "+14155552671 is already in campaign 'c' (lead 'X')"),
                              (3, "+13125550100 is on the do-not-call list")]
    assert import_leads(second, leads, "other", now=T0).added == 2  # another campaign may call it
    leads.engine.dispose()


def test_a_crash_leaves_whole_chunks_and_the_import_resumes(db_url: str, tmp_path: Path) -> None:
    """Chunks of 3: the store fails on the third chunk; the first two are there whole, nothing of the third;
    the same import again adds exactly the rest."""
    leads, _ = stores(db_url)
    path = tmp_path / "big.csv"
    path.write_text("number\n" + "".join(f"+1212736{5000 + i:04d}\n" for i in range(10)))

    class Crashing(LeadStore):
        calls = 0

        def import_chunk(self, campaign: str, chunk: list[Lead], now: float) -> Any:
            Crashing.calls += 1
            if Crashing.calls == 3:
                raise RuntimeError("killed")
            return super().import_chunk(campaign, chunk, now)

    with pytest.raises(RuntimeError):
        import_leads(path, Crashing(leads.engine), "c", now=T0, chunk=3)
    assert len(leads.load("c")) == 6
    report = import_leads(path, leads, "c", now=T0, chunk=3)
    assert (report.added, report.known) == (4, 6)
    assert sorted(lead.number for lead in leads.load("c")) == [f"+1212736{5000 + i:04d}" for i in range(10)]
    leads.engine.dispose()


def test_a_file_without_the_mapped_column_writes_nothing(sqlite_url: str, tmp_path: Path) -> None:
    leads, _ = stores(sqlite_url)
    path = tmp_path / "x.csv"
    path.write_text("Tel,Name\n+12127365000,Ann\n")
    with pytest.raises(LeadFileError, match="no number column"):
        import_leads(path, leads, "c", now=T0)
    with pytest.raises(LeadFileError, match="no column 'phone' for number"):
        import_leads(path, leads, "c", now=T0, mapping=parse_mapping("number=Phone"))
    assert import_leads(path, leads, "c", now=T0, mapping=parse_mapping("number=tel")).added == 1
    with pytest.raises(ValueError, match="unknown field 'name'"):
        parse_mapping("name=Tel")
    leads.engine.dispose()


def test_dnc_import_of_a_plain_list_and_a_csv(db_url: str, tmp_path: Path) -> None:
    _, dnc = stores(db_url)
    plain = tmp_path / "dnc.txt"
    plain.write_text("+14155552671\n(212) 736 5000\nnonsense\n")
    report = import_dnc(plain, dnc, now=T0, source="import:dnc.txt")
    assert (report.added, report.bad) == (2, [(3, "not a valid phone number: 'nonsense'")])
    table = tmp_path / "dnc.csv"
    table.write_text("name,phone\nAnn,212-736-5000\nCy,+1 312 555 0100\n")
    report = import_dnc(table, dnc, now=T0, source="import:dnc.csv")
    assert (report.added, report.known) == (1, 1)
    assert dnc.numbers() == {"+14155552671", "+12127365000", "+13125550100"}
    dnc.engine.dispose()


def test_a_file_in_another_encoding_is_refused_by_row_or_read_with_encoding(sqlite_url: str, tmp_path: Path) -> None:
    """A cp1252 name (what a spreadsheet exports) is never silently altered: without --encoding its row is refused
    with its line and the encoding named; with encoding="cp1252" the name is kept as written."""
    leads, dnc = stores(sqlite_url)
    path = tmp_path / "leads.csv"
    path.write_bytes("number,name\n+14155552671,Zoë Müller\n+13125550100,Ann\n".encode("cp1252"))
    report = import_leads(path, leads, "c", now=T0)
    assert (report.rows, report.added) == (2, 1)
    assert report.bad == [(2, "not valid utf-8 text (another encoding? see --encoding)")]
    report = import_leads(path, leads, "c", now=T0, encoding="cp1252")
    assert (report.added, report.known, report.bad) == (1, 1, [])
    assert {lead.fields["name"] for lead in leads.load("c")} == {"Zoë Müller", "Ann"}
    header = tmp_path / "header.csv"
    header.write_bytes("número\n+14155552671\n".encode("cp1252"))
    with pytest.raises(LeadFileError, match="line 1: not valid utf-8 text"):
        import_leads(header, leads, "d", now=T0)
    listing = tmp_path / "dnc.csv"
    listing.write_bytes("name,phone\nJosé,+14155552672\n".encode("cp1252"))
    assert import_dnc(listing, dnc, now=T0, source="t").bad == [
        (2, "not valid utf-8 text (another encoding? see --encoding)")]
    assert import_dnc(listing, dnc, now=T0, source="t", encoding="cp1252").added == 1
    leads.engine.dispose()


def test_cli_leads_and_dnc_import(tmp_path: Path) -> None:
    """The commands as a user runs them: bad rows on stderr with file:line, a summary, exit 1 when rows were
    refused; a re-import adds nothing."""
    db = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    (tmp_path / "dnc.txt").write_text("+13125550100\n")
    (tmp_path / "leads.csv").write_text(LEADS)

    def cti(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "centre.cli", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)

    done = cti("dnc", "import", str(tmp_path / "dnc.txt"), "--db", db, "--no-progress")
    assert done.returncode == 0 and "1 numbers added" in done.stdout, done.stderr
    done = cti("leads", "import", "c", str(tmp_path / "leads.csv"), "--map", "number=Phone,timezone=TZ,id=Ref",
               "--db", db)
    assert done.returncode == 1
    assert "7 rows, 2 leads added" in done.stdout
    assert f"{tmp_path / 'leads.csv'}:4: not a valid phone number: '12'" in done.stderr
    assert f"{tmp_path / 'leads.csv'}:8: skipped: +13125550100 is on the do-not-call list" in done.stderr
    assert "100%" in done.stderr  # the progress bar
    again = cti("leads", "import", "c", str(tmp_path / "leads.csv"), "--map", "number=Phone,timezone=TZ,id=Ref",
                "--db", db, "--no-progress")
    assert "0 leads added, 2 known already" in again.stdout
    bad = cti("leads", "import", "c", str(tmp_path / "leads.csv"), "--map", "colour=Red", "--db", db)
    assert bad.returncode == 2 and "unknown field 'colour'" in bad.stderr
    bad = cti("dnc", "import", str(tmp_path / "dnc.txt"), "--db", db, "--encoding", "klingon")
    assert bad.returncode == 2 and "--encoding: unknown encoding 'klingon'" in bad.stderr


# ---------------------------------------------------------------- windows in the lead's zones
def settings(**over: Any) -> CampaignSettings:
    base: dict[str, Any] = {"name": "c", "queue": "sales", "leads": "store", "max_attempts": 3}
    return CampaignSettings.model_validate({**base, **over})


def dial(c: Campaign, now: float, idle: int = 10) -> list[Originate]:
    out: list[Any] = []
    for e in c.pace(now, idle):
        assert isinstance(e, AttemptStarted)
        out.extend(c.persisted(e.ref, now))
    return [o for o in out if isinstance(o, Originate)]


def test_a_number_spanning_zones_is_called_only_inside_every_window() -> None:
    """A lead in New York and Los Angeles at 12:00 New York time (09:00 LA: both open) is dialled; at 11:00
    New York (08:00 LA) not, and it becomes due at 09:00 LA."""
    both = "America/New_York America/Los_Angeles"
    c = Campaign(settings(), server="pbx", dial_template="PJSIP/{number}@t")
    c.load([Lead("L", "+12127365000", timezone=both)], NOON_NY - 3600)
    assert dial(c, NOON_NY - 3600) == []
    assert c.next_due() == NOON_NY
    assert len(dial(c, NOON_NY)) == 1


def test_windows_outside_eight_to_nine_are_refused_at_load() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="outside 08:00-21:00"):
        settings(calling_window={"start": "07:30", "end": "20:00"})
    with pytest.raises(ValidationError, match="outside 08:00-21:00"):
        settings(calling_window={"start": "09:00", "end": "21:30"})
    assert settings().calling_window.bounds() == (9 * 60, 20 * 60)


def test_dnc_is_checked_when_a_lead_is_taken() -> None:
    c = Campaign(settings(timezone="America/New_York"), server="pbx", dial_template="PJSIP/{number}@t")
    c.load([Lead("A", "+12127365000"), Lead("B", "+13125550100")], NOON_NY)
    c.block_numbers(["+12127365000"])
    origs = dial(c, NOON_NY)
    assert [o.variables["CTI_LEAD_ID"] for o in origs] == ["B"]
    assert c.leads["A"].status == "dnc"


def test_callbacks_are_dialled_at_their_time_ahead_of_fresh_leads() -> None:
    c = Campaign(settings(timezone="America/New_York", ratio=1.0), server="pbx", dial_template="PJSIP/{number}@t")
    c.load([Lead("F1", "+12127365001"), Lead("F2", "+12127365002")], NOON_NY)
    assert c.schedule_callback(Lead("cb7", "+13125550100"), NOON_NY + 60)
    assert [o.variables["CTI_LEAD_ID"] for o in dial(c, NOON_NY, idle=1)] == ["F1"]  # not due yet
    assert [o.variables["CTI_LEAD_ID"] for o in dial(c, NOON_NY + 60, idle=2)] == ["cb7"]


# ---------------------------------------------------------------- the shell: hopper, DNC refresh, callbacks
class Inline:
    """Runs the store's work at once (the thread pool's stand-in: same order, same results)."""

    def __call__(self, job: Any) -> Any:
        from twisted.internet import defer

        return defer.maybeDeferred(job)


def test_hopper_refills_from_the_store_and_reads_new_dnc_numbers_and_callbacks(db_url: str) -> None:
    leads, dnc = stores(db_url)
    leads.import_chunk("c", [Lead(f"L{i}", f"+1212736{5000 + i:04d}", timezone="America/New_York")
                             for i in range(6)], T0)
    section = DialerSection(campaigns=[settings(hopper=2, timezone="America/New_York")], dnc_refresh=1.0)
    sunk: list[Any] = []
    now = [NOON_NY]
    d = Dialer(section, servers=["pbx"], dial_template="PJSIP/{number}@t", idle_agents=lambda q: 1,
               sink=sunk.extend, clock=lambda: now[0])
    d.open_store(leads, Inline(), NOON_NY)
    c = d.campaigns["c"]
    assert c.pending() == 2  # the hopper, not the whole list
    d.handle(AmiConnectionChanged(server="pbx", ts=NOON_NY, connected=True, detail="up"), NOON_NY)
    dnc.add(["+12127365003"], "test", NOON_NY)
    CallbackStore(leads.engine).add(number="+13125550100", due=NOON_NY + 10, source="ivr", queue="sales",
                                    now=NOON_NY)
    dialled: list[str] = []
    for step in range(0, 200, 5):
        now[0] = NOON_NY + step
        for out in (d.tick(now[0]), sunk):
            dialled += [o.variables["CTI_LEAD_ID"] for o in out if isinstance(o, Originate)]
        sunk.clear()
        for ref in [a.ref for a in list(c.attempts.values())]:  # every call ends busy at once
            d.handle(OriginateResult(server="pbx", ts=now[0], action_id=ref, success=False, reason=5, channel="",
                                     uniqueid=None), now[0])
    assert dialled[:1] == ["L0"]
    assert "+12127365003" not in [c.leads[x].number for x in dialled if x in c.leads]
    assert "L3" not in dialled  # on the do-not-call list since after the start
    assert set(dialled) >= {"L0", "L1", "L2", "L4", "L5"}
    cb = [x for x in dialled if x.startswith("cb")]
    assert len(cb) == 1 and dialled.index(cb[0]) < dialled.index("L2")
    with Session(leads.engine) as session:
        assert session.scalars(select(Callback.status)).one() == "dialled"
    leads.engine.dispose()


def test_run_out_warning() -> None:
    c = Campaign(settings(timezone="America/New_York", run_out_warning=10), server="pbx",
                 dial_template="PJSIP/{number}@t")
    c.load([Lead(f"L{i}", f"+1212736{5000 + i:04d}") for i in range(30)], NOON_NY)
    for minute in range(3):  # 6 dials a minute
        dial(c, NOON_NY + 60 * minute, idle=6 * (minute + 1))
    assert c.supply_warning(NOON_NY + 180, dialable=100) == []
    c2 = Campaign(settings(timezone="America/New_York", run_out_warning=10), server="pbx",
                  dial_template="PJSIP/{number}@t")
    c2.load([Lead(f"L{i}", f"+1212736{5000 + i:04d}") for i in range(30)], NOON_NY)
    for minute in range(3):
        dial(c2, NOON_NY + 60 * minute, idle=6 * (minute + 1))
    (w,) = c2.supply_warning(NOON_NY + 180)
    assert isinstance(w, DialerWarning) and w.code == "leads-running-out" and "12 dialable" in w.message
    assert c2.supply_warning(NOON_NY + 240) == []  # once


# ---------------------------------------------------------------- an agent's "do not call" disposition
def test_do_not_call_disposition_puts_the_number_on_the_list() -> None:
    """A disposition with ``dnc: true`` puts the call's number on the list (the store and the running
    campaigns); another disposition does not."""
    from tests.console_stack import make_settings, open_client, run, running

    dispositions = [{"code": "resolved", "label": "Resolved"},
                    {"code": "do-not-call", "label": "Do not call", "dnc": True}]
    dialer = {"campaigns": [{"name": "c", "queue": "sales", "leads": "store"}]}

    async def body() -> None:
        async with running(make_settings(dispositions=dispositions), dialer=dialer) as stack:
            c = await open_client(stack)
            await c.request("hello", agent_id="1001", password="pw-1001")
            await c.request("login", endpoint="PJSIP/1001")
            await c.request("ready")
            for number, code in (("+13125550100", "resolved"), ("+12127365000", "do-not-call")):
                caller = await stack.connect("1001", caller=number)
                await stack.caller_hangs_up(caller)
                await c.wait_push("state", lambda m: m["state"] == "wrap_up")
                done = await c.request("dispose", call_id=caller.linkedid, disposition=code)
                assert done["state"]["state"] == "ready", done
            store = stack.server.dialer.store
            assert store is not None and store.dnc_numbers() == {"+12127365000"}
            assert stack.server.dialer.campaigns["c"].dnc == {"+12127365000"}
            # the dialer's warnings reach the supervisors' wallboard frame
            stack.server.apply([DialerWarning(stack.server.now(), "c", "leads-running-out", "12 dialable leads")])
            (warning,) = stack.server.wallboard()["warnings"]
            assert (warning["campaign"], warning["code"]) == ("c", "leads-running-out")

    run(body)


def test_leads_on_the_dnc_list_never_take_room_in_the_hopper(db_url: str) -> None:
    """A hopper of 2 whose first leads are on the do-not-call list still dials the third."""
    leads, dnc = stores(db_url)
    leads.import_chunk("c", [Lead(f"L{i}", f"+1212736{5000 + i:04d}") for i in range(3)], T0)
    dnc.add(["+12127365000", "+12127365001"], "test", T0)
    section = DialerSection(campaigns=[settings(hopper=2, timezone="America/New_York")])
    d = Dialer(section, servers=["pbx"], dial_template="PJSIP/{number}@t", idle_agents=lambda q: 3,
               sink=lambda out: None, clock=lambda: NOON_NY)
    d.open_store(leads, Inline(), NOON_NY)
    d.handle(AmiConnectionChanged(server="pbx", ts=NOON_NY, connected=True, detail="up"), NOON_NY)
    out = d.tick(NOON_NY)
    assert [o.lead_id for o in out if isinstance(o, AttemptStarted)] == ["L2"]
    leads.engine.dispose()
