"""``cti report KIND`` (interval reports from the stored records: CSV, JSON, PNG charts, an HTML page) and
``cti export records`` (a table's raw rows as CSV for BI tools). Thin CLI shell over ``centre.report_store``,
``centre.report_out`` and ``centre.charts``; docs/reports.md has the columns.

The database is ``--db URL``, else the config's ``database.url`` (``--config``); the time zone ``--tz``, else
the config's (``acd.timezone``), else UTC; the targets, short-abandon threshold, teams and queue members
come from the config. ``--from``/``--to`` are local dates or date-times (``2026-03-29``,
``2026-03-29T08:00``) in that zone, or with an explicit offset; ``--to`` is exclusive (default: a day after
``--from``). A progress bar (one step per local day) goes to stderr; CSV and JSON stream, PNG and HTML keep
the rows they chart."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kpi.report import KINDS, PERIODS


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("report", help="interval reports from the stored records (CSV, JSON, PNG, HTML)")
    p.add_argument("kind", choices=KINDS, metavar="KIND", help=f"one of {', '.join(KINDS)}")
    _range_options(p)
    p.add_argument("--period", choices=list(PERIODS), default="15m", help="interval: 15m, 30m, 60m, day, week "
                   "(default 15m)")
    p.add_argument("--format", choices=("csv", "json", "png", "html"), default="csv")
    p.add_argument("--entity", metavar="NAME", help="only this queue, agent, team, campaign or disposition")
    p.add_argument("--out", default="-", metavar="FILE", help="output file ('-': stdout; png needs a file)")
    p.set_defaults(func=_cmd_report)

    e = subparsers.add_parser("export", help="export stored records as CSV for BI tools")
    sub = e.add_subparsers(dest="export_command", metavar="WHAT")
    e.set_defaults(func=lambda args: (e.print_help(sys.stderr), 2)[1])
    r = sub.add_parser("records", help="a table's rows in a time range, as CSV (docs/reports.md)")
    from centre.report_store import EXPORT_TABLES

    r.add_argument("--table", required=True, choices=list(EXPORT_TABLES), metavar="TABLE",
                   help=f"one of {', '.join(EXPORT_TABLES)}")
    _range_options(r)
    r.add_argument("--out", default="-", metavar="FILE", help="output file ('-': stdout)")
    r.set_defaults(func=_cmd_export)


def _range_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="start", required=True, metavar="WHEN", help="start (local date or date-time)")
    p.add_argument("--to", dest="end", metavar="WHEN", help="end, exclusive (default: a day after --from)")
    p.add_argument("--config", metavar="CONFIG", help="configuration file (database, time zone, targets, teams)")
    p.add_argument("--db", metavar="URL", help="SQLAlchemy database URL (overrides the config)")
    p.add_argument("--tz", metavar="ZONE", help="the centre's time zone (overrides the config's acd.timezone)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


class UsageError(Exception):
    """A bad option value: printed, exit status 2."""


def parse_when(text: str, zone: ZoneInfo) -> float:
    """A local date or date-time in ``zone`` (or with its own offset) as epoch seconds."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{text!r} is not a date (2026-03-29) or date-time (2026-03-29T08:00)") from None
    return (value if value.tzinfo else value.replace(tzinfo=zone)).timestamp()


def _context(args: argparse.Namespace) -> tuple[str, Any, float, float]:
    """(database URL, KPI settings, start, end) from the options and the config."""
    from centre.cli_common import load_or_exit
    from config.schema import DatabaseSettings
    from kpi.settings import KpiSettings

    cfg = load_or_exit(args.config, status=2) if args.config else None
    if cfg is not None:
        from acd.service import AcdService
        from centre.wiring import kpi_settings

        settings = kpi_settings(cfg, AcdService(cfg.acd, datetime.now().timestamp()))
    else:
        settings = KpiSettings()
    if args.tz:
        try:
            ZoneInfo(args.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise UsageError(f"unknown time zone {args.tz!r} (expected an IANA name such as Europe/Paris)") from None
        from dataclasses import replace

        settings = replace(settings, timezone=args.tz)
    zone = ZoneInfo(settings.timezone)
    start = parse_when(args.start, zone)
    if args.end:
        end = parse_when(args.end, zone)
    else:
        local = datetime.fromtimestamp(start, zone).replace(tzinfo=None)
        end = (local + timedelta(days=1)).replace(tzinfo=zone).timestamp()
    if end <= start:
        raise UsageError("--to must be after --from")
    url = args.db or (cfg.database.url if cfg else DatabaseSettings().url)
    return url, settings, start, end


def _engine(url: str) -> Any:
    """The database's engine; a SQLite file that does not exist is refused (a report never creates one)."""
    from sqlalchemy.engine import make_url

    from cti.db import describe_url, make_engine

    try:
        parsed = make_url(url)
    except Exception:
        raise UsageError("--db is not a database URL (expected e.g. sqlite:///var/cti.sqlite3)") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not Path(parsed.database).exists():
        raise UsageError(f"no database at {describe_url(url)}: name it with --db or --config")
    return make_engine(url)


def _failed(command: str, exc: Exception) -> int:
    """A database error: one line, no traceback, no password."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    print(f"cti {command}: cannot read the records: {first[:300]} (is it the centre's database, migrated?)",
          file=sys.stderr)
    return 2


def _open_out(path: str) -> IO[str]:
    if path == "-":
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror or type(exc).__name__}") from None


def _progress(args: argparse.Namespace, start: float, end: float, kind: str) -> tuple[Any, Callable[..., None]]:
    from tqdm import tqdm

    hours = max(1, round((end - start) / 3600.0))
    bar = tqdm(total=hours, unit="h", desc=f"report {kind}", disable=args.no_progress, file=sys.stderr)

    def step(lo: float, hi: float) -> None:  # after each local day
        bar.update(round((hi - start) / 3600.0) - bar.n)
    return bar, step


def _cmd_report(args: argparse.Namespace) -> int:
    try:
        url, settings, start, end = _context(args)
    except UsageError as exc:
        print(f"cti report: {exc}", file=sys.stderr)
        return 2
    if args.format == "png" and args.out == "-":
        print("cti report: --format png needs --out FILE.png", file=sys.stderr)
        return 2
    from sqlalchemy.exc import SQLAlchemyError

    from centre.report_out import flat_rows, write_csv, write_html, write_json
    from centre.report_store import run_report

    try:
        engine = _engine(url)
    except UsageError as exc:
        print(f"cti report: {exc}", file=sys.stderr)
        return 2
    bar, step = _progress(args, start, end, args.kind)
    try:
        rows: Iterator[Any] = run_report(engine, args.kind, settings, args.period, start, end, progress=step)
        if args.entity:
            rows = (r for r in rows if r.entity == args.entity)
        flat = flat_rows(args.kind, settings.timezone, rows)
        if args.format in ("csv", "json"):
            out = _open_out(args.out)
            try:
                n = write_csv(args.kind, flat, out) if args.format == "csv" else write_json(flat, out)
            finally:
                if out is not sys.stdout:
                    out.close()
            bar.close()
            print(f"{n} rows", file=sys.stderr)
            return 0
        kept = list(flat)
        bar.close()
        charts = report_charts(engine, args.kind, kept, settings.timezone, start, end, args.entity, settings.teams)
    except SQLAlchemyError as exc:
        return _failed("report", exc)
    except UsageError as exc:
        print(f"cti report: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
        engine.dispose()
    if args.format == "png":
        if not charts:
            print("cti report: nothing to chart in that range", file=sys.stderr)
            return 1
        paths = _png_paths(Path(args.out), list(charts))
        for (_, png), path in zip(charts.items(), paths, strict=True):
            try:
                path.write_bytes(png)
            except OSError as exc:
                print(f"cti report: {path}: cannot write: {exc.strerror or type(exc).__name__}", file=sys.stderr)
                return 2
            print(path, file=sys.stderr)
        return 0
    title = f"{args.kind} report, {args.period}, {args.start} to {args.end or 'a day later'} ({settings.timezone})"
    try:
        out = _open_out(args.out)
    except UsageError as exc:
        print(f"cti report: {exc}", file=sys.stderr)
        return 2
    try:
        write_html(args.kind, title, kept, charts, out)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _png_paths(out: Path, names: list[str]) -> list[Path]:
    """One chart: ``out`` itself; several: ``out``'s stem with each chart's name."""
    if len(names) == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{name}{out.suffix or '.png'}") for name in names]


def report_charts(engine: Any, kind: str, rows: list[dict[str, Any]], timezone: str, start: float, end: float,
                  entity: str | None, teams: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, bytes]:
    """The charts of a report kind, by name: a queue's service level and staffing (the busiest queue unless
    ``entity``), the agents' (or a team's) state timeline, a campaign's abandonment, the dispositions."""
    from centre import charts

    teams = teams or {}
    if not rows and kind != "agent":
        return {}
    if kind in ("queue", "campaign"):
        totals: dict[str, int] = {}
        key = "offered" if kind == "queue" else "live_answers"
        for r in rows:
            totals[r[kind]] = totals.get(r[kind], 0) + int(r[key] or 0)
        name = entity or max(totals, key=lambda k: totals[k])
        mine = [r for r in rows if r[kind] == name]
        if kind == "queue":
            return {"service-level": charts.service_level_chart(mine, name, timezone),
                    "staffing": charts.staffing_chart(mine, name, timezone)}
        return {"abandonment": charts.abandonment_chart(mine, name, timezone)}
    if kind in ("agent", "team"):
        from centre.report_store import state_segments

        agents: list[str] | None = None
        if entity:
            agents = [entity] if kind == "agent" else list(teams.get(entity, ()))
        segments = state_segments(engine, start, end, agents)
        return {"timeline": charts.timeline_chart(segments, start, end, timezone)} if segments else {}
    totals = {}
    for r in rows:
        totals[r["disposition"]] = totals.get(r["disposition"], 0) + r["calls"]
    return {"dispositions": charts.disposition_chart(totals)}


def _cmd_export(args: argparse.Namespace) -> int:
    try:
        url, _, start, end = _context(args)
    except UsageError as exc:
        print(f"cti export: {exc}", file=sys.stderr)
        return 2
    from sqlalchemy.exc import SQLAlchemyError
    from tqdm import tqdm

    from centre.report_store import export_records

    try:
        engine = _engine(url)
        out = _open_out(args.out)
    except UsageError as exc:
        print(f"cti export: {exc}", file=sys.stderr)
        return 2
    bar = tqdm(unit="row", desc=args.table, disable=args.no_progress, file=sys.stderr)
    try:
        n = export_records(engine, args.table, start, end, out, progress=bar.update)
    except SQLAlchemyError as exc:
        return _failed("export", exc)
    finally:
        bar.close()
        if out is not sys.stdout:
            out.close()
        engine.dispose()
    print(f"{n} rows of {args.table}", file=sys.stderr)
    return 0
