"""The interval reports' reads: the stored records (``acd_queue_calls``, ``acd_agent_states``,
``dialer_attempts``, ``callbacks``, ``customer_interactions``) fed to ``kpi.report.IntervalReport`` one local
day at a time (a day's rows at once, as columns), each event by its own time column (a call offered by
``entered_at``, answered by ``answered_at``, ended by ``ended_at``; indexed by ``0012_report_indexes``), so a
year's report holds one day's records and the periods still open, never the year. Times come back from the
database as epoch seconds (no datetime parsing per row). Blocking (SQL); SQLite and PostgreSQL alike (SQLite
keeps naive UTC datetimes).

Also ``state_segments`` (an agent state timeline for the charts) and ``export_records`` (a table's raw rows
as CSV, streamed).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import IO, Any

import numpy as np
from sqlalchemy import ColumnElement, Connection, Engine, Float, and_, bindparam, case, cast, func, literal, select
from sqlalchemy.sql import Select

from acd.tables import AgentStateRecord, QueueCallRecord
from centre.kpi_restore import agent_callback_queue
from dialer.store import Callback, DialerAttempt
from kpi.definitions import WORKING_STATES
from kpi.report import NOT_READY, IntervalReport, Periods, ReportRow
from kpi.settings import KpiSettings
from screenpop.store import Interaction

STATE_LOOKBACK = 86400.0
"""How far before a report's start an agent's last state change is looked for (its state at the start)."""

YIELD_PER = 5000


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def epoch(engine: Engine, col: Any) -> ColumnElement[float]:
    """``col`` (a datetime column) as epoch seconds, computed by the database (rounded to the millisecond:
    SQLite's Julian days carry float noise that would put 10:15:00 in the 10:00 quarter)."""
    if engine.dialect.name == "sqlite":
        return func.round((func.julianday(col) - 2440587.5) * 86400.0, 3, type_=Float)
    return cast(func.extract("epoch", col), Float)


def event_time(engine: Engine, col: Any) -> ColumnElement[Any]:
    """``col`` as the report reads it: on SQLite the stored text itself (numpy parses a column of it faster
    than SQLite's date functions compute it, ``_columns``), elsewhere epoch seconds computed by the database."""
    return col if engine.dialect.name == "sqlite" else epoch(engine, col)


def _between(col: Any) -> ColumnElement[bool]:
    return and_(col >= bindparam("lo", type_=col.type), col < bindparam("hi", type_=col.type))


Feed = Callable[[IntervalReport, list[Any], Connection], None]


def _statements(engine: Engine, kind: str) -> list[tuple[Select[Any], Feed]]:
    """The queries a report of ``kind`` runs per chunk, each with how its columns are fed."""
    q, a, i, c, t = QueueCallRecord, AgentStateRecord, Interaction, Callback, DialerAttempt

    def at(col: Any) -> ColumnElement[Any]:
        return event_time(engine, col)
    out: list[tuple[Select[Any], Feed]] = []
    if kind == "queue":
        out.append((select(at(i.transferred_at), i.queue).where(_between(i.transferred_at)),
                    lambda r, cols, conn: r.transferred_out(*cols)))
        out.append((select(at(c.created_at), c.queue).where(_between(c.created_at), c.source == "ivr"),
                    lambda r, cols, conn: r.callback(*cols)))
    if kind in ("queue", "agent", "team"):
        # one read of the queue calls: those entered, answered or ended in the chunk (mostly all three)
        out.append((select(at(q.entered_at), at(q.answered_at), at(q.ended_at),
                           q.wait, q.talk, q.wrapup, q.queue, q.agent_id, q.outcome, q.overflow_action)
                    .where(_between(q.entered_at) | _between(q.answered_at) | _between(q.ended_at)),
                    _feed_calls))
        ended = func.coalesce(i.ended_at, i.started_at)
        out.append((select(at(ended), i.queue, i.agent_id, i.hold_seconds, i.hold_count, i.hold_max)
                    .where(i.hold_count > 0, (_between(i.ended_at) | (i.ended_at.is_(None) & _between(i.started_at)))),
                    lambda r, cols, conn: r.holds(*cols)))
        # the state each change moves to as ``kpi.report.state_key`` makes it (one text column, not two)
        key = case((a.state == "not_ready", literal(NOT_READY) + a.reason), else_=a.state)
        states = select(at(a.changed_at), a.agent_id, key).where(_between(a.changed_at)).order_by(a.changed_at, a.id)
        if kind == "queue":
            # a queue's report counts the seconds its members were working (``staffed``): a change from one
            # working state to another changes nothing there, and is most of the log (ringing, talking,
            # wrapping up): only the changes into and out of work are read
            working = list(WORKING_STATES)
            states = states.where(~(a.state.in_(working) & a.previous.in_(working)))
        out.append((states, _feed_states))
    if kind == "campaign":
        out.append((select(at(t.started_at), t.campaign).where(_between(t.started_at)),
                    lambda r, cols, conn: r.attempts_started(*cols)))
        out.append((select(at(t.answered_at), t.campaign).where(_between(t.answered_at)),
                    lambda r, cols, conn: r.attempts_answered(*cols)))
        out.append((select(at(t.ended_at), t.campaign, t.result, t.late)
                    .where(_between(t.ended_at), t.result != ""),
                    lambda r, cols, conn: r.attempts_finished(*cols)))
    if kind == "disposition":
        out.append((select(at(i.started_at), i.disposition)
                    .where(_between(i.started_at), i.disposition != ""),
                    lambda r, cols, conn: r.dispositions(*cols)))
    return out


def _feed_calls(r: IntervalReport, cols: list[Any], conn: Connection) -> None:
    entered, answered, ended, wait, talk, wrapup, queue, agent, outcome, action = cols
    r.offered(entered, queue)
    done = outcome == "answered"
    r.answered(answered[done], queue[done], agent[done], wait[done])
    r.ended(ended, queue, agent, outcome, wait, talk, wrapup, action)


def _feed_states(r: IntervalReport, cols: list[Any], conn: Connection) -> None:
    """The state log's rows of the chunk; for an agent the report has not seen yet, where its first row says
    it came from (asked only for those: most agents are known from the chunk before)."""
    ts, agents, keys = cols
    new = set(agents.tolist()) - r.open.keys()
    if new:
        a = AgentStateRecord
        rows = conn.execute(select(epoch(conn.engine, a.changed_at), a.agent_id, a.previous, a.previous_seconds)
                            .where(_between(a.changed_at), a.agent_id.in_(sorted(new))).order_by(a.changed_at, a.id),
                            {"lo": utc(r.lo), "hi": utc(r.hi)})
        for at, agent, previous, previous_seconds in rows:
            if agent in new:
                r.first_seen(agent, previous, at - previous_seconds)
                new.discard(agent)
    r.states(ts, agents, keys)


def _columns(rows: list[Any], stmt: Select[Any]) -> list[Any]:
    """A chunk's rows as columns: numbers and times (as epoch seconds) as float arrays (NULL: NaN), the others
    as object arrays."""
    types = [c.type.python_type if hasattr(c.type, "python_type") else object for c in stmt.selected_columns]
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(types)
    out: list[Any] = []
    for col, kind in zip(cols, types, strict=True):
        if kind is datetime:  # SQLite's text, naive UTC (``event_time``)
            stamps = np.array(col, dtype="datetime64[us]")
            seconds = stamps.astype(np.int64) / 1e6
            seconds[np.isnat(stamps)] = np.nan
            out.append(seconds)
        elif kind in (float, int):
            out.append(np.array(col, dtype=float))
        else:
            arr = np.empty(len(col), dtype=object)
            arr[:] = col
            out.append(arr)
    return out


def _prime_states(conn: Connection, report: IntervalReport, start: float) -> None:
    """Each agent's state at the report's start: its last change in the ``STATE_LOOKBACK`` before."""
    a = AgentStateRecord
    last = (select(a.agent_id, func.max(a.changed_at).label("at"))
            .where(a.changed_at >= utc(start - STATE_LOOKBACK), a.changed_at < utc(start)).group_by(a.agent_id)
            .subquery())
    engine_epoch = epoch(conn.engine, a.changed_at)
    rows = conn.execute(select(a.agent_id, a.state, a.reason, engine_epoch)
                        .join(last, and_(a.agent_id == last.c.agent_id, a.changed_at == last.c.at)).order_by(a.id))
    for agent, state, reason, since in rows:
        report.prime(agent, state, reason, since)


def _agent_callbacks(conn: Connection, report: IntervalReport, lo: datetime, hi: datetime) -> None:
    """Callbacks agents scheduled on a call: counted for the queue of their part of that call (as live)."""
    c = Callback
    rows = conn.execute(select(epoch(conn.engine, c.created_at), c.agent_id, c.call_id).where(
        c.source == "agent", c.created_at >= lo, c.created_at < hi, c.call_id != "", c.agent_id != "")).all()
    if rows:
        report.callback(np.array([r[0] for r in rows], dtype=float),
                        np.array([agent_callback_queue(conn, r[1], r[2]) for r in rows], dtype=object))


def chunks(periods: Periods, start: float, end: float) -> Iterator[tuple[float, float]]:
    """[start, end) cut at local midnights."""
    t = start
    while t < end:
        upto = min(end, periods.day(t)[1])
        yield t, upto
        t = upto


def run_report(engine: Engine, kind: str, settings: KpiSettings, period: str, start: float, end: float, *,
               progress: Callable[[float, float], None] | None = None) -> Iterator[ReportRow]:
    """The rows of the report, period by period (streamed: a chunk's rows are read, counted, forgotten).
    ``progress(chunk_start, chunk_end)`` is called after each local day."""
    report = IntervalReport(kind, settings, period, start, end)
    statements = _statements(engine, kind)
    with engine.connect() as conn:
        if kind in ("queue", "agent", "team"):
            _prime_states(conn, report, start)
        for lo, hi in chunks(report.periods, start, end):
            report.begin_chunk(lo, hi)
            params = {"lo": utc(lo), "hi": utc(hi)}
            for stmt, feed in statements:
                result = conn.execute(stmt, params)
                rows = result.cursor.fetchall()  # the driver's tuples: no Row objects (the columns need no processing)
                result.close()
                feed(report, _columns(rows, stmt), conn)
            if kind == "queue":
                _agent_callbacks(conn, report, params["lo"], params["hi"])
            report.end_chunk()
            yield from report.flush(hi)
            if progress is not None:
                progress(lo, hi)
        yield from report.flush(end)


def state_segments(engine: Engine, start: float, end: float, agents: Sequence[str] | None = None,
                   limit: int = 40) -> dict[str, list[tuple[float, float, str]]]:
    """Each agent's states over [start, end) as (from, to, state or ``not_ready:<reason>``) segments, for a
    timeline (at most ``limit`` agents: the first seen in the range, or those named), sorted by id."""
    a = AgentStateRecord
    stmt = (select(epoch(engine, a.changed_at), a.agent_id, a.state, a.previous, a.reason, a.previous_seconds)
            .where(a.changed_at >= utc(start), a.changed_at < utc(end)).order_by(a.changed_at, a.id))
    if agents:
        stmt = stmt.where(a.agent_id.in_(list(agents)))
    out: dict[str, list[tuple[float, float, str]]] = {}
    open_: dict[str, tuple[str, float]] = {}
    with engine.connect() as conn:
        for ts, agent, state, previous, reason, previous_seconds in conn.execute(stmt):
            if agent not in out:
                if len(out) >= limit:
                    continue
                out[agent] = []
                open_[agent] = (previous, max(start, ts - previous_seconds))
            key, since = open_[agent]
            if ts > since and key != "logged_out":
                out[agent].append((since, ts, key))
            open_[agent] = (f"not_ready:{reason}" if state == "not_ready" else state, ts)
    for agent, (key, since) in open_.items():
        if key != "logged_out" and end > since:
            out[agent].append((since, end, key))
    return dict(sorted(out.items()))


EXPORT_TABLES: dict[str, tuple[Any, str]] = {
    "acd_queue_calls": (QueueCallRecord, "ended_at"),
    "acd_agent_states": (AgentStateRecord, "changed_at"),
    "dialer_attempts": (DialerAttempt, "started_at"),
    "callbacks": (Callback, "created_at"),
    "customer_interactions": (Interaction, "started_at"),
}
"""The tables ``cti export records`` writes, each with the time column its range selects on."""


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if value is None:
        return ""
    return value


def export_records(engine: Engine, table: str, start: float, end: float, out: IO[str],
                   progress: Callable[[int], None] | None = None) -> int:
    """Write the rows of ``table`` whose time column is in [start, end) to ``out`` as CSV (a header of the
    column names, datetimes in ISO 8601 UTC, JSON columns as JSON text), streamed; returns the rows written."""
    model, column = EXPORT_TABLES[table]
    cols = list(model.__table__.columns)
    time_col = model.__table__.columns[column]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for c in cols])
    n = 0
    with engine.connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=YIELD_PER).execute(
            select(*cols).where(time_col >= utc(start), time_col < utc(end)).order_by(time_col, model.__table__.c.id))
        for row in rows:
            writer.writerow([_cell(v) for v in row])
            n += 1
            if progress is not None and n % YIELD_PER == 0:
                progress(YIELD_PER)
    if progress is not None:
        progress(n % YIELD_PER)
    return n


__all__ = ["EXPORT_TABLES", "chunks", "epoch", "export_records", "run_report", "state_segments"]
