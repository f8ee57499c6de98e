"""Benchmark: interval reports from a year of stored records (``cti report``: ``centre.report_store.run_report``),
on SQLite and PostgreSQL, against the naive ORM-per-row baseline in the same run.

Run: ``.venv/bin/python bench/reports.py`` (about 3 minutes; ``--calls-per-shift 40`` for a busier centre,
``--no-postgres`` for SQLite only).

The records are synthetic with the shape the ACD writes (``acd_queue_calls``: one row per queued call;
``acd_agent_states``: one row per state change, with the previous state's seconds): ``--agents`` agents
(default 500) in 5 queues, each working 5 days of 7 (rotating), an 8-hour shift starting at 08:00 or 12:00
local time (Europe/Paris: the DST days are in it), logging in, taking ``--calls-per-shift`` calls (ready,
on call, wrap-up, ready: talk lognormal around 4 min, wrap-up 30 s, wait exponential around 15 s), a
30-minute lunch (not ready), logging out; 5% more callers abandon. A year from 2025-01-01. Bulk-inserted
(executemany on SQLite, COPY on PostgreSQL, in a database of its own dropped afterwards).

Measured per database, for the queue report (offered, answered, abandoned, SL, ASA, AHT, holds, transfers,
callbacks, agents logged in per queue: it reads the queue calls entered, answered or ended in each day, and
the state log's changes into and out of work), 15-minute intervals:

* a day (a Wednesday in June) and a month (June, 30 days): wall time;
* the whole year: wall time and peak memory (ru_maxrss of a child process that runs only the report: the
  interpreter and libraries included);
* the baseline, ORM objects per row aggregated in Python (``naive_report``: the same figures, checked equal
  to the report's on the same week): run on that week, its per-input-row cost extrapolated to the month's
  input rows (it is linear in rows: said in the output). ``ratio`` = that
  extrapolated month / our measured month.

Ends with ``BENCH reports rows=<records in the year> month_s=<worst of the databases> peak_mib=<worst>
ratio=<lowest>``. Targets: month <= 5 s on each database, peak <= 300 MiB for the year, ratio >= 10.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]  # bench/dialer.py is not dialer/
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from acd.tables import AgentStateRecord, QueueCallRecord  # noqa: E402
from centre.database import upgrade  # noqa: E402
from centre.report_store import run_report  # noqa: E402
from cti.db import make_engine  # noqa: E402
from kpi.settings import KpiSettings, Target  # noqa: E402

TZ = "Europe/Paris"
QUEUES = ("sales", "support", "billing", "tech", "vip")
YEAR_START = datetime(2025, 1, 1, tzinfo=ZoneInfo(TZ))
PG_ADMIN = os.environ.get("CTI_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_DB = "bench_reports"
CALL_COLS = ("record_uid", "server", "uniqueid", "call_id", "queue", "entered_at", "answered_at", "ended_at",
             "outcome", "wait", "agent_id", "talk", "wrapup", "offers", "overflow_action", "overflow_target",
             "caller_num", "dnis", "priority", "ivr_data")
STATE_COLS = ("record_uid", "agent_id", "state", "previous", "reason", "changed_at", "previous_seconds", "queue",
              "uniqueid")


def settings(agents: int) -> KpiSettings:
    members = {q: tuple(f"a{i:03d}" for i in range(agents) if i % len(QUEUES) == k) for k, q in enumerate(QUEUES)}
    return KpiSettings(timezone=TZ, targets={q: Target(80.0, 20.0) for q in QUEUES}, members=members)


# ---------------------------------------------------------------------------------------------- the records
def _iso(ts: np.ndarray) -> list[str]:
    """Epoch seconds as the text SQLAlchemy stores on SQLite (``2025-01-01 07:00:00.000000``, UTC), which
    PostgreSQL reads too (its session in UTC)."""
    text = np.datetime_as_string((ts * 1e6).astype("datetime64[us]"), unit="us").astype("U26")
    chars = text.view(np.uint32).reshape(-1, 26)
    chars[:, 10] = ord(" ")
    return text.tolist()


def generate(agents: int, days: int, calls: int, seed: int = 7) -> tuple[dict[str, Any], dict[str, Any]]:
    """Column arrays (epoch floats for the times) of the queue calls and the agent states."""
    rng = np.random.default_rng(seed)
    zone = ZoneInfo(TZ)
    shifts_agent, shifts_start = [], []
    for d in range(days):
        local = (YEAR_START.replace(tzinfo=None) + timedelta(days=d))
        for i in range(agents):
            if (d + i) % 7 < 5:
                hour = 8 if i % 2 == 0 else 12
                shifts_agent.append(i)
                shifts_start.append(local.replace(hour=hour).replace(tzinfo=zone).timestamp())
    agent = np.array(shifts_agent)
    start = np.array(shifts_start)
    n = len(agent)
    shift, lunch, wrap = 8 * 3600.0, 1800.0, 30.0
    talk = np.minimum(rng.lognormal(np.log(220), 0.5, (n, calls)), 1800.0)
    slack = np.maximum(shift - lunch - (talk + wrap).sum(axis=1), 60.0 * calls)
    gaps = rng.dirichlet(np.ones(calls + 1), n) * slack[:, None]  # ready time before each call (and at the end)
    # the lunch comes after the middle call's wrap-up
    half = calls // 2
    per_call = gaps[:, :calls] + talk + wrap
    before = np.concatenate([np.zeros((n, 1)), np.cumsum(per_call, axis=1)[:, :-1]], axis=1)
    answer = start[:, None] + before + gaps[:, :calls] + np.where(np.arange(calls) >= half, lunch + 1.0, 0.0)[None, :]
    talk_end = answer + talk
    ready_again = talk_end + wrap
    lunch_at = ready_again[:, half - 1] + 0.5 if half else start + 3600.0
    logout = np.maximum(start + shift, ready_again[:, -1] + 60.0)
    wait = np.round(rng.exponential(15.0, (n, calls)), 3)
    # states: login, 3 per call, lunch and back, logout
    st_ts = [start[:, None], answer, talk_end, ready_again, lunch_at[:, None], (lunch_at + lunch)[:, None],
             logout[:, None]]
    kinds = [("ready", "logged_out", ""), ("on_call", "ready", ""), ("wrap_up", "on_call", ""),
             ("ready", "wrap_up", ""), ("not_ready", "ready", "lunch"), ("ready", "not_ready", ""),
             ("logged_out", "ready", "")]
    ts_all, kind_all, agent_all = [], [], []
    for k, ts in enumerate(st_ts):
        ts_all.append(ts.ravel())
        kind_all.append(np.full(ts.size, k))
        agent_all.append(np.repeat(agent, ts.shape[1]))
    ts = np.concatenate(ts_all)
    who = np.concatenate(agent_all)
    kind = np.concatenate(kind_all)
    by_agent = np.lexsort((kind, ts, who))  # each agent's changes in time order; previous_seconds from them
    ts, who, kind = ts[by_agent], who[by_agent], kind[by_agent]
    prev = np.empty(len(ts))
    prev[1:] = ts[1:] - ts[:-1]
    first = np.ones(len(ts), dtype=bool)
    first[1:] = who[1:] != who[:-1]
    prev[first] = 57600.0
    order = np.argsort(ts, kind="stable")
    states = {"ts": ts[order], "prev": np.round(prev[order], 3), "kind": kind[order], "agent": who[order],
              "kinds": kinds}
    # calls: the answered ones and 5% abandoned
    ab = max(1, int(0.05 * n * calls))
    ab_entered = start[rng.integers(0, n, ab)] + rng.uniform(0, shift, ab)
    ab_wait = np.round(rng.exponential(60.0, ab), 3)
    entered = np.concatenate([(answer - wait).ravel(), ab_entered])
    order = np.argsort(entered, kind="stable")
    m = n * calls
    calls_cols = {
        "entered": entered[order],
        "answered": np.concatenate([answer.ravel(), np.full(ab, np.nan)])[order],
        "ended": np.concatenate([ready_again.ravel(), ab_entered + ab_wait])[order],
        "wait": np.concatenate([wait.ravel(), ab_wait])[order],
        "talk": np.concatenate([np.round(talk, 3).ravel(), np.zeros(ab)])[order],
        "wrapup": np.concatenate([np.full(m, wrap), np.zeros(ab)])[order],
        "agent": np.concatenate([np.repeat(agent, calls), np.full(ab, -1)])[order],
        "queue": np.concatenate([np.repeat(agent % len(QUEUES), calls), rng.integers(0, len(QUEUES), ab)])[order],
    }
    return calls_cols, states


def call_rows(c: dict[str, Any]) -> list[tuple[Any, ...]]:
    n = len(c["entered"])
    entered, ended = _iso(c["entered"]), _iso(c["ended"])
    has = ~np.isnan(c["answered"])
    answered_iso = _iso(np.where(has, c["answered"], 0.0))
    answered: list[str | None] = [a if h else None for a, h in zip(answered_iso, has.tolist(), strict=True)]
    agents = [f"a{a:03d}" if a >= 0 else "" for a in c["agent"].tolist()]
    queues = [QUEUES[q] for q in c["queue"].tolist()]
    outcome = ["answered" if h else "abandoned" for h in has.tolist()]
    return list(zip([f"b/{i}" for i in range(n)], ["pbx"] * n, [f"u{i}" for i in range(n)],
                    [f"c{i}" for i in range(n)], queues, entered, answered, ended, outcome, c["wait"].tolist(), agents,
                    c["talk"].tolist(), c["wrapup"].tolist(), [1] * n, [""] * n, [""] * n, [""] * n, [""] * n,
                    [0] * n, ["{}"] * n, strict=True))


def state_rows(s: dict[str, Any]) -> list[tuple[Any, ...]]:
    n = len(s["ts"])
    kinds = s["kinds"]
    k = s["kind"].tolist()
    return list(zip([f"s/{i}" for i in range(n)], [f"a{a:03d}" for a in s["agent"].tolist()],
                    [kinds[x][0] for x in k], [kinds[x][1] for x in k], [kinds[x][2] for x in k], _iso(s["ts"]),
                    s["prev"].tolist(), [""] * n, [""] * n, strict=True))


Rows = list[tuple[Any, ...]]


def load_sqlite(url: str, calls: Rows, states: Rows) -> None:
    import sqlite3

    upgrade(url)
    con = sqlite3.connect(make_url(url).database)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    # the schema's indexes are built after the rows (a bulk load's usual order), the same indexes in the end
    indexes = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND "
                          "tbl_name IN ('acd_queue_calls', 'acd_agent_states')").fetchall()
    for name, _ in indexes:
        con.execute(f'DROP INDEX "{name}"')
    for table, cols, rows in (("acd_queue_calls", CALL_COLS, calls), ("acd_agent_states", STATE_COLS, states)):
        con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
        con.commit()
    for _, sql in indexes:
        con.execute(sql)
    con.commit()
    con.execute("ANALYZE")
    con.close()


def pg_urls() -> tuple[str, str]:
    admin = make_url(PG_ADMIN)
    return admin.render_as_string(hide_password=False), admin.set(database=PG_DB).render_as_string(hide_password=False)


def pg_admin(sql: str) -> None:
    engine = create_engine(pg_urls()[0], isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(sql))
    engine.dispose()


def load_postgres(url: str, calls: Rows, states: Rows) -> None:
    import psycopg

    pg_admin(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
    pg_admin(f'CREATE DATABASE "{PG_DB}"')
    upgrade(url)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as con, con.cursor() as cur:
        cur.execute("SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename IN "
                    "('acd_queue_calls', 'acd_agent_states') AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
                    "WHERE c.conname = i.indexname)")
        indexes = cur.fetchall()
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        cur.execute("SET TIME ZONE 'UTC'")  # the rows' times are UTC without an offset
        for table, cols, rows in (("acd_queue_calls", CALL_COLS, calls), ("acd_agent_states", STATE_COLS, states)):
            with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        for _, sql in indexes:
            cur.execute(sql)
        con.commit()
        con.autocommit = True
        cur.execute("ANALYZE")


# -------------------------------------------------------------------------------------------- the baseline
def naive_report(url: str, start: float, end: float, st: KpiSettings) -> dict[tuple[str, float], dict[str, float]]:
    """The queue report the obvious way: ORM objects per row, each datetime made local and floored in Python."""
    zone = ZoneInfo(st.timezone)
    out: dict[tuple[str, float], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    lo, hi = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)

    def interval(value: datetime) -> float:
        local = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        day_start = midnight.timestamp()
        return day_start + ((local.timestamp() - day_start) // 900) * 900

    def inside(value: datetime | None) -> bool:
        if value is None:
            return False
        v = value if value.tzinfo else value.replace(tzinfo=UTC)
        return lo <= v < hi

    member = {a: q for q, ids in st.members.items() for a in ids}
    engine = make_engine(url)
    q, a = QueueCallRecord, AgentStateRecord
    with Session(engine) as session:
        for rec in session.query(q).filter(q.entered_at < hi, q.ended_at >= lo):
            if inside(rec.entered_at):
                out[(rec.queue, interval(rec.entered_at))]["offered"] += 1
            if rec.outcome == "answered" and inside(rec.answered_at):
                f = out[(rec.queue, interval(rec.answered_at))]  # type: ignore[arg-type]
                f["answered"] += 1
                f["answered_in_sl"] += rec.wait <= st.target(rec.queue).seconds
            if inside(rec.ended_at):
                f = out[(rec.queue, interval(rec.ended_at))]
                if rec.outcome == "answered":
                    f["handled"] += 1
                    f["handle"] += rec.talk + rec.wrapup
                elif rec.wait >= st.short_abandon:
                    f["abandoned"] += 1
        for rec in session.query(a).filter(a.changed_at >= lo, a.changed_at < hi).order_by(a.changed_at):
            if rec.previous not in ("ready", "reserved", "on_call", "wrap_up") or rec.agent_id not in member:
                continue
            changed = rec.changed_at if rec.changed_at.tzinfo else rec.changed_at.replace(tzinfo=UTC)
            t, e = max(changed.timestamp() - rec.previous_seconds, start), changed.timestamp()
            while t < e:
                k = interval(datetime.fromtimestamp(t, UTC))
                upto = min(e, k + 900)
                out[(member[rec.agent_id], k)]["staffed"] += upto - t
                t = upto
    engine.dispose()
    return out


def ours(url: str, start: float, end: float, st: KpiSettings) -> tuple[float, list[Any]]:
    engine = make_engine(url)
    t0 = time.perf_counter()
    rows = list(run_report(engine, "queue", st, "15m", start, end))
    took = time.perf_counter() - t0
    engine.dispose()
    return took, rows


def same_figures(naive: dict[tuple[str, float], dict[str, float]], rows: list[Any]) -> bool:
    for r in rows:
        f, n = r.figures, naive.get((r.entity, r.start), {})
        if (f["offered"], f["answered"], f["abandoned"], f["handled"]) != \
                (n.get("offered", 0), n.get("answered", 0), n.get("abandoned", 0), n.get("handled", 0)):
            return False
        if abs(f["staffed"] - round(n.get("staffed", 0.0) / (r.end - r.start), 3)) > 0.002:
            return False
    return sum(f.get("offered", 0) for f in naive.values()) == sum(r.figures["offered"] for r in rows)


def input_rows(url: str, start: float, end: float) -> int:
    engine = make_engine(url)
    lo, hi = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    q, a = QueueCallRecord, AgentStateRecord
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).where(q.entered_at < hi, q.ended_at >= lo)).scalar_one()
        n += conn.execute(select(func.count()).where(a.changed_at >= lo, a.changed_at < hi)).scalar_one()
    engine.dispose()
    return int(n)


def child(url: str, agents: int, start: float, end: float) -> None:
    """Run in a process of its own: the year's report, streamed (rows counted, not kept); prints its figures."""
    engine = make_engine(url)
    t0 = time.perf_counter()
    n = sum(1 for _ in run_report(engine, "queue", settings(agents), "15m", start, end))
    took = time.perf_counter() - t0
    engine.dispose()
    print(json.dumps({"s": took, "rows": n, "peak_mib": peak_mib()}))


def peak_mib() -> float:
    """This process's peak resident memory: VmHWM (ru_maxrss would count the parent's image: Linux keeps the
    high-water mark of the process that exec'd)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, url: str, agents: int, days: int) -> dict[str, float]:
    st = settings(agents)
    zone = ZoneInfo(TZ)
    june = datetime(2025, 6, 1, tzinfo=zone).timestamp()
    july = datetime(2025, 7, 1, tzinfo=zone).timestamp()
    wed = datetime(2025, 6, 11, tzinfo=zone).timestamp()  # a Wednesday, and its week
    thu = datetime(2025, 6, 12, tzinfo=zone).timestamp()
    week_end = datetime(2025, 6, 16, tzinfo=zone).timestamp()
    week_start = datetime(2025, 6, 9, tzinfo=zone).timestamp()
    year_end = (YEAR_START.replace(tzinfo=None) + timedelta(days=days)).replace(tzinfo=zone).timestamp()
    day_s, _ = ours(url, wed, thu, st)
    week_s, week_rows = ours(url, week_start, week_end, st)
    month_s, _ = ours(url, june, july, st)
    t0 = time.perf_counter()
    naive_week = naive_report(url, week_start, week_end, st)
    naive_week_s = time.perf_counter() - t0
    per_row = naive_week_s / max(1, input_rows(url, week_start, week_end))
    naive_month_est = per_row * input_rows(url, june, july)
    out = subprocess.run([sys.executable, __file__, "--child", url, "--agents", str(agents),
                          "--start", str(YEAR_START.timestamp()), "--end", str(year_end)],
                         capture_output=True, text=True, check=True)
    year = json.loads(out.stdout.strip().splitlines()[-1])
    r = {"day_s": day_s, "month_s": month_s, "year_s": year["s"], "year_rows": year["rows"],
         "peak_mib": year["peak_mib"], "naive_week_s": naive_week_s, "naive_month_est_s": naive_month_est,
         "ratio": naive_month_est / month_s, "same": same_figures(naive_week, week_rows)}
    print(f"{name:<9} {day_s:7.2f} {week_s:7.2f} {month_s:7.2f} {year['s']:8.2f} {year['rows']:>9} "
          f"{year['peak_mib']:>9.0f} | {naive_week_s:9.2f} {naive_month_est:10.1f} {r['ratio']:7.1f}x  {r['same']}",
          flush=True)
    return r


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=500)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--calls-per-shift", type=int, default=10)
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--dir", default="/tmp", help="where the SQLite file goes")
    p.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    p.add_argument("--start", type=float, help=argparse.SUPPRESS)
    p.add_argument("--end", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.agents, args.start, args.end)
        return 0
    t0 = time.perf_counter()
    generated = generate(args.agents, args.days, args.calls_per_shift)
    calls, states = call_rows(generated[0]), state_rows(generated[1])
    del generated
    rows = len(calls) + len(states)
    print(f"generated {len(calls)} queue calls and {len(states)} agent state changes "
          f"({args.agents} agents, {args.days} days, {args.calls_per_shift} calls per shift) in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    print(f"{'database':<9} {'day s':>7} {'week s':>7} {'month s':>7} {'year s':>8} {'year rows':>9} "
          f"{'peak MiB':>9} | {'ORM week s':>9} {'ORM month s':>10} {'ratio':>8}  same figures")
    print("(ORM month: the baseline's per-input-row cost on the week x the month's input rows: it is linear in "
          "rows; same figures: the baseline's offered, answered, abandoned, handled and staffed equal ours "
          "on the week)", flush=True)
    results = []
    path = Path(args.dir) / f"bench_reports_{os.getpid()}.sqlite3"
    url = f"sqlite:///{path}"
    try:
        t0 = time.perf_counter()
        load_sqlite(url, calls, states)
        print(f"(sqlite loaded in {time.perf_counter() - t0:.1f} s, {path.stat().st_size / 2**20:.0f} MiB)",
              flush=True)
        results.append(measure("sqlite", url, args.agents, args.days))
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    if not args.no_postgres:
        pg = pg_urls()[1]
        try:
            pg_admin("SELECT 1")
        except Exception as exc:  # no server: the SQLite figures alone, said so
            print(f"postgres: unavailable at {make_url(PG_ADMIN).render_as_string()} ({type(exc).__name__}); "
                  "set CTI_BENCH_POSTGRES or pass --no-postgres", flush=True)
            pg = ""
    if not args.no_postgres and pg:
        try:
            t0 = time.perf_counter()
            load_postgres(pg, calls, states)
            print(f"(postgres loaded in {time.perf_counter() - t0:.1f} s)", flush=True)
            results.append(measure("postgres", pg, args.agents, args.days))
        finally:
            pg_admin(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
    month = max(r["month_s"] for r in results)
    peak = max(r["peak_mib"] for r in results)
    ratio = min(r["ratio"] for r in results)
    print(f"targets: month <= 5 s: {'met' if month <= 5 else 'MISSED'}; peak <= 300 MiB: "
          f"{'met' if peak <= 300 else 'MISSED'}; ratio >= 10: {'met' if ratio >= 10 else 'MISSED'}; "
          f"figures equal to the baseline's: {all(r['same'] for r in results)}")
    print(f"BENCH reports rows={rows} month_s={month:.2f} peak_mib={peak:.0f} ratio={ratio:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
