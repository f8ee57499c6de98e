"""``cti acd-staffing``: Erlang C staffing table for one queue (arguments in, a table out). ``cti staffing``:
agents needed per interval under Erlang C or A, from a forecast CSV or from a week of stored records (read
only), as a table, CSV or JSON. ``docs/staffing.md``."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from acd.erlang import agents_for_service_level, average_speed_of_answer, erlang_c, service_level
from acd.staffing import ForecastInterval, Model, ServiceTarget, StaffingRow, staffing_plan
from acd.staffing_forecast import read_forecast
from acd.staffing_history import forecast_from_calls, logged_in_per_interval
from centre.cli_common import load_or_exit

MAX_AGENTS = 10_000
"""The largest staffing the table looks for (beyond it the numbers are surely a unit mistake)."""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text[:20]!r}") from None
    if not 0 < value < 1e7:
        raise argparse.ArgumentTypeError("expected a number > 0")
    return value


def _percent(text: str) -> float:
    value = _positive(text)
    if value >= 100:
        raise argparse.ArgumentTypeError(f"expected a percentage below 100, got {text[:20]!r} (no staffing "
                                         "answers every call within a threshold)")
    return value


def _cmd_staffing(args: argparse.Namespace) -> int:
    rate = args.calls_per_hour / 3600.0
    traffic = rate * args.aht
    try:
        need = agents_for_service_level(rate, args.aht, args.percent, args.seconds, max_agents=MAX_AGENTS)
    except ValueError:
        print(f"cti acd-staffing: {traffic:.0f} Erlangs need more than {MAX_AGENTS} agents; check "
              "--calls-per-hour and --aht (seconds)", file=sys.stderr)
        return 2
    print(f"{args.calls_per_hour:g} calls/hour x {args.aht:g} s = {traffic:.2f} Erlangs; "
          f"target {args.percent:g}% within {args.seconds:g} s -> {need} agents")
    print(f"{'agents':>6} {'P(wait)':>8} {'SL %':>6} {'ASA s':>8} {'occupancy %':>12}")
    for n in range(max(1, need - 2), need + 4):
        sl = service_level(rate, args.aht, n, args.seconds) * 100
        asa = average_speed_of_answer(rate, args.aht, n)
        print(f"{n:>6} {erlang_c(traffic, n):>8.3f} {sl:>6.1f} {asa:>8.1f} {min(100.0, 100 * traffic / n):>12.1f}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("acd-staffing", help="Erlang C staffing table for a queue")
    p.add_argument("--calls-per-hour", type=_positive, required=True)
    p.add_argument("--aht", type=_positive, required=True, help="average handle time (talk + wrap-up), seconds")
    p.add_argument("--percent", type=_percent, default=80.0, help="service-level target percent (default 80)")
    p.add_argument("--seconds", type=_positive, default=20.0, help="service-level threshold seconds (default 20)")
    p.set_defaults(func=_cmd_staffing)
    register_plan(subparsers)


# ---- cti staffing: a forecast (CSV or last week's records) in, agents needed per interval out

FORMATS = ("table", "csv", "json")
FIELDS = ("queue", "start", "calls", "aht", "patience", "agents", "logged_in", "service_level", "asa",
          "abandon", "occupancy", "p_wait")


def _row_values(row: StaffingRow) -> dict[str, Any]:
    iv, f = row.interval, row.figures
    return {"queue": iv.queue, "start": iv.start, "calls": round(iv.calls, 3), "aht": round(iv.aht, 1),
            "patience": None if iv.patience is None else round(iv.patience, 1), "agents": f.agents,
            "logged_in": None if row.logged_in is None else round(row.logged_in, 2),
            "service_level": round(f.service_level, 4), "asa": _finite(f.asa, 1),
            "abandon": round(f.p_abandon, 4), "occupancy": round(f.occupancy, 4), "p_wait": round(f.p_wait, 4)}


def _finite(value: float, digits: int) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _print_table(plans: list[_QueuePlan], interval_minutes: int, out: TextIO) -> None:
    for plan in plans:
        target = plan.target
        ceiling = f", at most {target.max_abandon:g}% abandoned" if target.max_abandon is not None else ""
        print(f"{'queue ' + plan.queue + ': ' if plan.queue else ''}{plan.model}, target {target.percent:g}% within "
              f"{target.seconds:g} s{ceiling}, {interval_minutes}-minute intervals", file=out)
        for note in plan.notes:
            print(f"  note: {note}", file=out)
        with_logged = any(r.logged_in is not None for r in plan.rows)
        head = f"{'start':<16} {'calls':>8} {'AHT s':>7} {'patience s':>10} {'agents':>6}"
        head += f" {'logged in':>9}" if with_logged else ""
        print(head + f" {'SL %':>6} {'ASA s':>7} {'abandon %':>9} {'occupancy %':>11}", file=out)
        for r in plan.rows:
            v = _row_values(r)
            line = (f"{v['start']:<16} {v['calls']:>8.1f} {v['aht']:>7.1f} {_cell(v['patience'], '.1f'):>10} "
                    f"{v['agents']:>6}")
            line += f" {_cell(v['logged_in'], '.1f'):>9}" if with_logged else ""
            print(line + f" {100 * v['service_level']:>6.1f} {_cell(v['asa'], '.1f'):>7} "
                  f"{100 * v['abandon']:>9.1f} {100 * v['occupancy']:>11.1f}", file=out)
        print(file=out)


@dataclass
class _QueuePlan:
    queue: str
    model: Model
    target: ServiceTarget
    rows: list[StaffingRow]
    notes: list[str]


def _target_arg(text: str) -> ServiceTarget:
    try:
        return ServiceTarget.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _plan(queue: str, intervals: list[ForecastInterval], args: argparse.Namespace, target: ServiceTarget,
          interval_minutes: int) -> _QueuePlan:
    model, notes = Model(args.model), []
    if model is Model.ERLANG_A and args.patience is None and any(iv.patience is None for iv in intervals):
        if all(iv.patience is None for iv in intervals):
            notes.append("no patience known (no abandons, no patience column, no --patience): Erlang C")
            model = Model.ERLANG_C
    rows = staffing_plan(intervals, interval_minutes * 60.0, model, target, default_patience=args.patience)
    return _QueuePlan(queue, model, target, rows, notes)


def _from_forecast(args: argparse.Namespace, interval_minutes: int) -> list[_QueuePlan]:
    path = Path(args.forecast)
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as text:
        intervals = read_forecast(text, str(path), interval_minutes)
    queues: dict[str, list[ForecastInterval]] = {}
    for iv in intervals:
        queues.setdefault(iv.queue, []).append(iv)
    target = args.target or ServiceTarget()
    target = ServiceTarget(target.percent, target.seconds, args.max_abandon)
    return [_plan(q, ivs, args, target, interval_minutes) for q, ivs in queues.items()]


def _week(text: str | None, zone: ZoneInfo) -> tuple[float, float]:
    """[start, end) epoch of the Monday-to-Monday local week holding the date (default: last week)."""
    if text is None:
        day = datetime.now(zone).date() - timedelta(days=7)
    else:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"--week-of: expected a date YYYY-MM-DD, got {text[:30]!r}") from None
    monday = day - timedelta(days=day.weekday())
    start = datetime.combine(monday, time(0), zone)
    end = datetime.combine(monday + timedelta(days=7), time(0), zone)
    return start.timestamp(), end.timestamp()


def _from_records(args: argparse.Namespace) -> tuple[list[_QueuePlan], int]:
    from centre.staffing_records import past_calls, state_changes
    from config.schema import DatabaseSettings
    from cti.db import describe_url, make_engine

    cfg = load_or_exit(args.config, status=2) if args.config else None
    zone_name = args.tz or (cfg.acd.timezone if cfg else "UTC")
    try:
        zone = ZoneInfo(zone_name)
    except (ValueError, ZoneInfoNotFoundError):
        raise ValueError(f"--tz: unknown time zone {zone_name[:40]!r}") from None
    interval_minutes = args.interval or (cfg.statistics.interval_minutes if cfg else 15)
    start, end = _week(args.week_of, zone)
    url = args.db or (cfg.database.url if cfg else DatabaseSettings().url)
    try:
        engine = make_engine(url)
        try:
            calls = past_calls(engine, start, end)
            changes = state_changes(engine, start, end)
        finally:
            engine.dispose()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot read the records from {describe_url(url)}: {first[:300]}") from None
    forecasts = forecast_from_calls(calls, interval_minutes * 60, zone, default_aht=args.aht)
    members: dict[str, frozenset[str]] = {}
    targets: dict[str, ServiceTarget] = {}
    if cfg is not None:
        from acd.service import AcdService

        acd = AcdService(cfg.acd, 0.0)
        for q in cfg.acd.queues:
            members[q.name] = frozenset(acd.eligible_agents(q.name))
            targets[q.name] = ServiceTarget(min(q.service_level.percent, 99.9), q.service_level.seconds)
    plans = []
    for queue, intervals in forecasts.items():
        if args.queue and queue not in args.queue:
            continue
        target = args.target or targets.get(queue) or ServiceTarget()
        plan = _plan(queue, intervals, args, ServiceTarget(target.percent, target.seconds, args.max_abandon),
                     interval_minutes)
        logged = logged_in_per_interval(changes, start, end, interval_minutes * 60, zone, members.get(queue))
        plan.rows = [replace(r, logged_in=logged.get(r.interval.start, 0.0)) for r in plan.rows]
        if queue not in members:
            plan.notes.append("logged in: every agent (no --config to tell the queue's agents)")
        if not intervals:
            plan.notes.append("no answered call to take a handle time from: give --aht")
        plans.append(plan)
    if not plans:
        day = datetime.fromtimestamp(start, zone).date()
        raise ValueError(f"no queue calls in the records for the week of {day} ({zone_name})")
    return plans, interval_minutes


def _cmd_plan(args: argparse.Namespace) -> int:
    if not args.from_records:
        stray = [o for o, v in (("--week-of", args.week_of), ("--db", args.db), ("--tz", args.tz),
                                ("--config", args.config), ("--aht", args.aht)) if v is not None]
        if stray:
            print(f"cti staffing: {', '.join(stray)}: only with --from-records", file=sys.stderr)
            return 2
    try:
        if args.from_records:
            plans, interval_minutes = _from_records(args)
        else:
            interval_minutes = args.interval or 15
            plans = _from_forecast(args, interval_minutes)
    except OSError as exc:
        print(f"cti staffing: {args.forecast}: cannot read: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 2
    except ValueError as exc:  # ForecastError included: file:line messages
        print(f"cti staffing: {exc}" if "\n" not in str(exc) else str(exc), file=sys.stderr)
        return 2
    if args.format == "table":
        _print_table(plans, interval_minutes, sys.stdout)
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=[*FIELDS, "model"], lineterminator="\n")
        writer.writeheader()
        for plan in plans:
            for r in plan.rows:
                writer.writerow({**{k: "" if v is None else v for k, v in _row_values(r).items()},
                                 "model": plan.model.value})
    else:
        json.dump({"interval_minutes": interval_minutes, "queues": [
            {"queue": p.queue, "model": p.model.value, "target": {"percent": p.target.percent,
             "seconds": p.target.seconds, "max_abandon": p.target.max_abandon}, "notes": p.notes,
             "intervals": [_row_values(r) for r in p.rows]} for p in plans]}, sys.stdout, indent=1)
        print()
    return 0


def register_plan(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "staffing", help="agents needed per interval (Erlang C or A) from a forecast CSV or last week's records",
        description="Agents needed per interval and what they give (service level, ASA, abandonment, "
        "occupancy), by Erlang C or Erlang A. See docs/staffing.md.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--forecast", metavar="FILE.csv", help="CSV with a header: start, calls, aht "
                        "(seconds), optional patience (seconds) and queue; one row per interval")
    source.add_argument("--from-records", action="store_true",
                        help="the stored queue calls of a week (--week-of) as the forecast, per queue")
    p.add_argument("--week-of", metavar="YYYY-MM-DD", help="a day of the week to read (Monday to Monday, local "
                   "time); default last week")
    p.add_argument("--config", metavar="CONFIG", help="with --from-records: database, time zone, interval, "
                   "queue targets and members")
    p.add_argument("--db", metavar="URL", help="with --from-records: SQLAlchemy database URL")
    p.add_argument("--tz", help="with --from-records: time zone of the intervals (default the config's, else UTC)")
    p.add_argument("--queue", action="append", help="only this queue (repeatable)")
    p.add_argument("--model", choices=[m.value for m in Model], default=Model.ERLANG_C.value)
    p.add_argument("--target", type=_target_arg, default=None, metavar="PERCENT/SECONDS",
                   help="service-level target, e.g. 80/20 (default: the queue's in --config, else 80/20)")
    p.add_argument("--max-abandon", type=_percent, default=None, metavar="PERCENT",
                   help="also keep abandonment at or below this percent (Erlang A)")
    p.add_argument("--interval", type=int, choices=(15, 30, 60), default=None,
                   help="interval minutes (default 15, or the config's statistics.interval_minutes)")
    p.add_argument("--patience", type=_positive, default=None, metavar="SECONDS",
                   help="mean patience where the forecast gives none (Erlang A)")
    p.add_argument("--aht", type=_positive, default=None, metavar="SECONDS",
                   help="with --from-records: handle time for a queue with no answered call")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=_cmd_plan)
