"""Interval reports from the stored records (``kpi.report``, ``centre.report_store``), their outputs and charts
and ``cti report`` / ``cti export records``: hand-computed cases across interval bounds, midnight and DST days,
agreement with the live statistics, PostgreSQL as SQLite."""

from __future__ import annotations

import csv
import io
import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert

from acd.events import AgentStateChanged, QueueCallFinished
from acd.tables import row_for
from centre.cli import main
from centre.database import upgrade
from centre.report_out import flat_rows
from centre.report_store import run_report, state_segments
from cti.db import make_engine
from kpi.core import KpiCore
from kpi.rebuild import replay
from kpi.report import Periods, ReportRow
from kpi.settings import KpiSettings, Target

UTC_DAY = datetime(2026, 6, 1, tzinfo=ZoneInfo("UTC")).timestamp()  # a Monday


def at(hms: str, day: float = UTC_DAY) -> float:
    h, m, s = (int(x) for x in hms.split(":"))
    return day + h * 3600 + m * 60 + s


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reports") / "template.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture()
def db(template: Path, tmp_path: Path) -> Iterator[str]:
    path = tmp_path / f"{uuid.uuid4().hex[:8]}.sqlite3"
    shutil.copy(template, path)
    yield f"sqlite:///{path}"


def call(uid: str, entered: float, outcome: str, wait: float, *, agent: str = "", talk: float = 0.0,
         wrapup: float = 0.0, queue: str = "sales", action: str = "") -> QueueCallFinished:
    answered = entered + wait if outcome == "answered" else None
    end = (answered + talk + wrapup) if answered is not None else entered + wait
    return QueueCallFinished(ts=end, server="pbx", uniqueid=uid, call_id=uid, queue=queue, entered=entered,
                             outcome=outcome, wait=wait, agent_id=agent, answered_at=answered, talk=talk,
                             wrapup=wrapup, overflow_action=action)


def state(agent: str, ts: float, new: str, previous: str, since: float, reason: str = "") -> AgentStateChanged:
    return AgentStateChanged(ts=ts, agent_id=agent, state=new, previous=previous, reason=reason, since=since)


def store(url: str, events: list[object]) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        for n, e in enumerate(events):
            found = row_for(e, str(n))
            assert found is not None
            model, values = found
            conn.execute(insert(model), values)
    engine.dispose()


CALLS = [
    call("A", at("10:14:50"), "answered", 15, agent="a1", talk=265, wrapup=30),  # offered 10:00, answered 10:15
    call("B", at("10:29:00"), "abandoned", 40),
    call("C", at("10:16:00"), "abandoned", 3),  # a short abandon
    call("D", at("10:31:00"), "answered", 30, agent="a1", talk=100, wrapup=20, action="transferred"),
]
STATES = [
    state("a1", at("10:10:00"), "ready", "logged_out", at("08:00:00")),
    state("a1", at("10:14:50"), "on_call", "ready", at("10:10:00")),
    state("a1", at("10:19:30"), "wrap_up", "on_call", at("10:14:50")),
    state("a1", at("10:20:00"), "ready", "wrap_up", at("10:19:30")),
    state("a1", at("10:40:00"), "not_ready", "ready", at("10:20:00"), reason="lunch"),
    state("a1", at("10:50:00"), "logged_out", "not_ready", at("10:40:00")),
]
SETTINGS = KpiSettings(targets={"sales": Target(80.0, 20.0)}, members={"sales": ("a1",)}, teams={"blue": ("a1",)})


def rows(url: str, kind: str, start: float, end: float, period: str = "15m",
         settings: KpiSettings = SETTINGS) -> list[ReportRow]:
    engine = make_engine(url)
    try:
        return list(run_report(engine, kind, settings, period, start, end))
    finally:
        engine.dispose()


def test_queue_report_counts_each_event_in_its_own_interval(db: str) -> None:
    """A call entering at 10:14:50 and answered at 10:15:05 is offered in the 10:00 quarter and answered in
    the 10:15 one; abandons, short abandons, SL, ASA, AHT and transfers are those computed by hand."""
    store(db, [*CALLS, *STATES])
    got = {datetime.fromtimestamp(r.start, ZoneInfo("UTC")).strftime("%H:%M"): r.figures
           for r in rows(db, "queue", at("00:00:00"), at("00:00:00") + 86400)}
    assert sorted(got) == ["10:00", "10:15", "10:30"]  # a period where nothing counted has no row
    assert (got["10:00"]["offered"], got["10:00"]["answered"]) == (1, 0)
    q = got["10:15"]
    assert (q["offered"], q["answered"], q["abandoned"], q["short_abandoned"]) == (2, 1, 1, 1)
    assert q["service_level"] == 0.5 and q["asa"] == 15 and q["handled"] == 1 and q["aht"] == 295
    q = got["10:30"]
    assert (q["offered"], q["answered"], q["service_level"], q["asa"]) == (1, 1, 0, 30)
    assert (q["aht"], q["transfers"]) == (120, 1)
    # a1 (the queue's member) worked 10:10-10:40: 300 s of the 10:00 quarter (an average of 0.333 agents)
    assert got["10:00"]["staffed"] == round(300 / 900, 3)
    assert got["10:15"]["staffed"] == 1.0 and got["10:30"]["staffed"] == round(600 / 900, 3)


def test_agent_report_splits_states_at_interval_bounds(db: str) -> None:
    """An agent's seconds by state are split at the quarters' bounds; occupancy is busy / working."""
    store(db, [*CALLS, *STATES])
    got = {datetime.fromtimestamp(r.start, ZoneInfo("UTC")).strftime("%H:%M"): r.figures
           for r in rows(db, "agent", at("00:00:00"), at("00:00:00") + 86400)}
    assert got["10:00"]["ready_seconds"] == 290 and got["10:00"]["busy_seconds"] == 10
    assert got["10:00"]["occupancy"] == round(10 / 300, 6)
    a = got["10:15"]
    assert (a["busy_seconds"], a["ready_seconds"], a["occupancy"], a["handled"], a["aht"]) == (300, 600, 0.333333, 1,
                                                                                               295)
    assert got["10:30"]["not_ready"] == {"lunch": 300} and got["10:45"]["not_ready"] == {"lunch": 300}
    team = rows(db, "team", at("00:00:00"), at("00:00:00") + 86400, period="day")
    assert [(r.entity, r.figures["handled"], r.figures["ready_seconds"]) for r in team] == [("blue", 2, 1490)]


def test_report_agrees_with_the_live_statistics(db: str) -> None:
    """One implementation: the live core fed the same records (``kpi.rebuild``) has the day's per-interval
    figures the report has."""
    store(db, [*CALLS, *STATES])
    core = KpiCore(SETTINGS, queues=["sales"], agents=["a1"])
    end = at("23:00:00")
    replay(core, [*CALLS, *STATES], end)
    live = core.figures("queue:sales", end)["history"]
    report = rows(db, "queue", at("00:00:00"), at("00:00:00") + 86400)
    assert {str(int((r.start - live["day_start"]) // 900)): {k: r.figures[k] for k in
                                                             ("offered", "answered", "abandoned", "service_level")}
            for r in report if r.figures["offered"] or r.figures["answered"] or r.figures["abandoned"]} == \
        live["intervals"]
    day = rows(db, "queue", at("00:00:00"), at("00:00:00") + 86400, period="day")[0].figures
    live_day = core.figures("queue:sales", end)["windows"]["day"]
    assert {k: day[k] for k in live_day} == live_day


def test_a_call_across_midnight_counts_on_both_days(db: str) -> None:
    """Offered at 23:59:50 on one local day, answered at 00:00:10 on the next (Europe/Paris)."""
    paris = ZoneInfo("Europe/Paris")
    day = datetime(2026, 6, 1, tzinfo=paris).timestamp()
    store(db, [call("M", day + 86400 - 10, "answered", 20, agent="a1", talk=60)])
    settings = KpiSettings(timezone="Europe/Paris")
    got = [(r.start, r.figures["offered"], r.figures["answered"]) for r in
           rows(db, "queue", day, day + 2 * 86400, "day", settings)]
    assert got == [(day, 1, 0), (day + 86400, 0, 1)]


@pytest.mark.parametrize(("date", "hours"), [((2026, 3, 29), 23), ((2026, 10, 25), 25), ((2026, 6, 1), 24)])
def test_dst_days_have_23_and_25_hours(db: str, date: tuple[int, int, int], hours: int) -> None:
    """An agent ready from local midnight to midnight: the day's row has the day's real length in seconds,
    and as many quarters as it has (92, 100, 96); the repeated hour's quarters differ by their offset."""
    paris = ZoneInfo("Europe/Paris")
    start = datetime(*date, tzinfo=paris).timestamp()
    end = start + hours * 3600
    assert Periods("Europe/Paris", "day").day(start) == (start, end)
    store(db, [state("a1", start, "ready", "logged_out", start - 60),
               state("a1", end, "logged_out", "ready", start)])
    settings = KpiSettings(timezone="Europe/Paris", members={"sales": ("a1",)})
    day = rows(db, "agent", start, end, "day", settings)
    assert [(r.end - r.start, r.figures["ready_seconds"]) for r in day] == [(hours * 3600, hours * 3600)]
    quarters = rows(db, "agent", start, end, "15m", settings)
    assert len(quarters) == hours * 4
    labels = [f["start_local"] for f in flat_rows("agent", "Europe/Paris", quarters)]
    assert len(set(labels)) == len(labels)
    if hours == 25:
        assert "2026-10-25T02:00:00+02:00" in labels and "2026-10-25T02:00:00+01:00" in labels
    hourly = rows(db, "queue", start, end, "60m", settings)
    assert len(hourly) == hours and all(r.figures["staffed"] == 1.0 for r in hourly)


def test_week_periods_start_on_local_monday() -> None:
    p = Periods("Europe/Paris", "week")
    wed = datetime(2026, 3, 25, 12, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    start, end = p.bounds(wed)
    assert datetime.fromtimestamp(start, ZoneInfo("Europe/Paris")).isoformat() == "2026-03-23T00:00:00+01:00"
    assert end - start == 7 * 86400 - 3600  # the week holding the spring-forward day


def test_postgresql_reads_the_same_figures(pg_url: str) -> None:
    """The epoch arithmetic in SQL is the database's own: PostgreSQL gives the SQLite figures."""
    upgrade(pg_url)
    store(pg_url, [*CALLS, *STATES])
    got = [(r.entity, r.figures) for r in rows(pg_url, "queue", at("10:00:00"), at("11:00:00"))]
    assert [f["offered"] for _, f in got] == [1, 2, 1] and got[1][1]["service_level"] == 0.5
    agent = [r.figures["busy_seconds"] for r in rows(pg_url, "agent", at("10:00:00"), at("11:00:00"))]
    assert agent == [10, 300, 0, 0]


def test_cli_report_csv_html_and_export(db: str, tmp_path: Path) -> None:
    """``cti report queue --format csv`` writes the documented columns; html embeds the charts;
    ``cti export records`` writes the table's rows in the range."""
    store(db, [*CALLS, *STATES])
    out = tmp_path / "q.csv"
    assert main(["report", "queue", "--db", db, "--from", "2026-06-01T10:00", "--to", "2026-06-01T11:00",
                 "--format", "csv", "--out", str(out), "--no-progress"]) == 0
    table = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["start_local"][11:16] for r in table] == ["10:00", "10:15", "10:30"]
    assert table[1]["service_level"] == "0.5" and table[1]["required"] != ""
    as_json = tmp_path / "q.json"
    assert main(["report", "queue", "--db", db, "--from", "2026-06-01", "--format", "json", "--out", str(as_json),
                 "--no-progress"]) == 0
    assert [r["offered"] for r in json.loads(as_json.read_text())] == [1, 2, 1]
    page = tmp_path / "q.html"
    assert main(["report", "queue", "--db", db, "--from", "2026-06-01", "--format", "html", "--out", str(page),
                 "--no-progress"]) == 0
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 2 and "<td>sales</td>" in text
    exported = tmp_path / "calls.csv"
    assert main(["export", "records", "--table", "acd_queue_calls", "--db", db, "--from", "2026-06-01T10:15",
                 "--to", "2026-06-01T11:00", "--out", str(exported), "--no-progress"]) == 0
    records = list(csv.DictReader(io.StringIO(exported.read_text())))
    assert sorted(r["uniqueid"] for r in records) == ["A", "B", "C", "D"]  # by ended_at: A ended at 10:20
    assert records[0]["ended_at"].endswith("+00:00")
    assert main(["report", "queue", "--db", db, "--from", "2026-06-02", "--to", "2026-06-01", "--no-progress"]) == 2


def _pixels(png: bytes) -> Any:
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _target_rows(img: Any) -> list[int]:
    """The image rows in which the target colour makes a line (a third of the width or more)."""
    from centre.charts import TARGET_RGB

    hits = (img == TARGET_RGB).all(axis=2).sum(axis=1)
    return [int(y) for y in (hits >= img.shape[1] // 3).nonzero()[0]]


def test_service_level_chart_draws_its_target_line(db: str, tmp_path: Path) -> None:
    """The PNG has the chart's size, real content, and a horizontal line of the target colour that moves
    with the target (80% is drawn above 50%)."""
    from centre.charts import TARGET_RGB, service_level_chart, staffing_chart, timeline_chart

    store(db, [*CALLS, *STATES])
    flat = list(flat_rows("queue", "UTC", rows(db, "queue", at("08:00:00"), at("12:00:00"))))
    png = service_level_chart(flat, "sales", "UTC")
    img = _pixels(png)
    assert img.shape[:2] == (450, 1100) and len(png) > 10_000
    assert len({tuple(p) for p in img[::7, ::7].reshape(-1, 3)}) > 8  # not a blank canvas
    high = _target_rows(img)
    assert high
    low = _target_rows(_pixels(service_level_chart([{**r, "target_percent": 50.0} for r in flat], "sales", "UTC")))
    assert low and min(low) > max(high)  # lower on the image
    staffing = _pixels(staffing_chart(flat, "sales", "UTC"))
    assert (staffing == TARGET_RGB).all(axis=2).sum() > 100  # the required agents' steps
    segments = state_segments(make_engine(db), at("08:00:00"), at("12:00:00"))
    assert segments == {"a1": [(at("10:10:00"), at("10:14:50"), "ready"), (at("10:14:50"), at("10:19:30"), "on_call"),
                               (at("10:19:30"), at("10:20:00"), "wrap_up"), (at("10:20:00"), at("10:40:00"), "ready"),
                               (at("10:40:00"), at("10:50:00"), "not_ready:lunch")]}
    timeline = _pixels(timeline_chart(segments, at("08:00:00"), at("12:00:00"), "UTC"))
    assert (timeline == (0x2C, 0xA0, 0x2C)).all(axis=2).sum() > 100  # the ready bars
    path = tmp_path / "abandon.png"
    assert main(["report", "queue", "--db", db, "--from", "2026-06-01", "--format", "png", "--out", str(path),
                 "--no-progress"]) == 0
    assert (tmp_path / "abandon-service-level.png").stat().st_size > 10_000


def test_campaign_dispositions_holds_transfers_and_callbacks(db: str) -> None:
    """The dialer's figures by its own definitions (a late connection is an abandon), the rolling 30-day
    abandon rate, dispositions, and the queue's holds, outside transfers and IVR callbacks from their tables."""
    from dialer.store import Callback, DialerAttempt
    from screenpop.store import Interaction

    def utc(ts: float) -> datetime:
        return datetime.fromtimestamp(ts, ZoneInfo("UTC"))

    engine = make_engine(db)
    with engine.begin() as conn:
        attempts = [("connected", True, False), ("connected", True, True), ("machine", False, False),
                    ("busy", False, False)]
        for n, (result, person, late) in enumerate(attempts):
            conn.execute(insert(DialerAttempt), {
                "ref": f"r{n}", "campaign": "renew", "lead_id": f"l{n}", "attempt": 1, "number": "+1555",
                "started_at": utc(at("10:00:00") + n), "answered_at": utc(at("10:00:10")) if person else None,
                "ended_at": utc(at("10:01:00")), "result": result, "late": late})
        for n, (disposition, hold, transferred) in enumerate([("sale", 30.0, False), ("sale", 0.0, True),
                                                              ("no-sale", 10.0, False)]):
            conn.execute(insert(Interaction), {
                "call_key": f"pbx/c{n}", "started_at": utc(at("10:05:00")), "ended_at": utc(at("10:20:00")),
                "queue": "sales", "agent_id": "a1", "disposition": disposition, "hold_seconds": hold,
                "hold_count": 1 if hold else 0, "hold_max": hold,
                "transferred_at": utc(at("10:18:00")) if transferred else None})
        conn.execute(insert(Callback), {"number": "+1555", "due_at": utc(at("12:00:00")), "queue": "sales",
                                        "source": "ivr", "created_at": utc(at("10:16:00"))})
    engine.dispose()
    (camp,) = rows(db, "campaign", at("00:00:00"), at("00:00:00") + 86400, "day")
    assert {k: camp.figures[k] for k in ("dials", "answers", "live_answers", "contacts", "abandons", "machines")} == \
        {"dials": 4, "answers": 3, "live_answers": 2, "contacts": 2, "abandons": 1, "machines": 1}
    (flat,) = flat_rows("campaign", "UTC", [camp])
    assert flat["abandon_rate"] == 0.5 and flat["abandon_rate_30d"] == 0.5 and flat["abandon_cap"] == 0.03
    assert [(r.entity, r.figures["calls"]) for r in rows(db, "disposition", at("00:00:00"), at("12:00:00"), "60m")] \
        == [("no-sale", 1), ("sale", 2)]
    (q,) = rows(db, "queue", at("10:15:00"), at("10:30:00"))
    assert (q.figures["holds"], q.figures["avg_hold"], q.figures["max_hold"]) == (2, 20, 30)
    assert (q.figures["transfers"], q.figures["callbacks"]) == (1, 1)
    from centre.charts import TARGET_RGB, abandonment_chart

    assert _target_rows(_pixels(abandonment_chart([flat], "renew", "UTC")))
    assert (_pixels(abandonment_chart([flat], "renew", "UTC")) == TARGET_RGB).all(axis=2).any()


def test_week_report_merges_its_days(db: str) -> None:
    """A week's row sums the days of its week (two calls on Monday and Sunday, one the next Monday)."""
    store(db, [call("W1", UTC_DAY + 3600, "answered", 5, agent="a1", talk=10),
               call("W2", UTC_DAY + 6 * 86400 + 3600, "answered", 50, agent="a1", talk=10, action="transferred"),
               call("W3", UTC_DAY + 7 * 86400 + 3600, "abandoned", 30)])
    got = [(r.start, r.figures["offered"], r.figures["answered"], r.figures["service_level"], r.figures["transfers"])
           for r in rows(db, "queue", UTC_DAY, UTC_DAY + 14 * 86400, "week")]
    assert got == [(UTC_DAY, 2, 2, 0.5, 1), (UTC_DAY + 7 * 86400, 1, 0, 0.0, 0)]


@pytest.mark.parametrize(("argv", "message"), [
    (["report", "queue", "--from", "yesterday"], "is not a date"),
    (["report", "queue", "--from", "2026-06-01", "--tz", "Mars/Olympus"], "unknown time zone"),
    (["report", "queue", "--from", "2026-06-01", "--db", "sqlite:////nonexistent/cti.sqlite3"], "no database at"),
    (["report", "queue", "--from", "2026-06-01", "--format", "png"], "needs --out"),
    (["export", "records", "--table", "callbacks", "--from", "2026-06-01", "--out", "/nonexistent/x.csv"],
     "cannot write"),
])
def test_mistakes_end_in_a_message(argv: list[str], message: str, db: str, capsys: pytest.CaptureFixture[str]) \
        -> None:
    if "--db" not in argv:
        argv = [*argv, "--db", db]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_database_without_the_tables_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) \
        -> None:
    empty = tmp_path / "empty.sqlite3"
    make_engine(f"sqlite:///{empty}").connect().close()
    assert main(["report", "agent", "--db", f"sqlite:///{empty}", "--from", "2026-06-01", "--no-progress"]) == 2
    assert "cannot read the records" in capsys.readouterr().err
