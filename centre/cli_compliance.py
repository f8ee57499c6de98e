"""``cti compliance CAMPAIGN --from --to``: the evidence that a campaign kept the law, from the stored attempts.

Per attempt: when it ended (in the campaign's zone), the number (masked: the last four digits; ``--full-numbers``
for all of it), the outcome, seconds of ringing, answered by a person or a machine, abandoned, the message in
time; per calendar day (campaign's zone) the totals, and the policy's window as it stood at each day's end,
with the rate against the cap. CSV (one table, a ``kind`` column: ``attempt`` or ``window``) or JSON.
Reads the database only (``--db``, else the config's ``database.url``); the campaign's policy and zone come
from ``--config`` (without it: us_tsr, UTC, said on stderr).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from dialer.compliance import WINDOW_SECONDS, ComplianceLedger, Figures, LedgerEntry
from dialer.settings import CampaignSettings

ATTEMPT_COLUMNS = ("kind", "time", "ref", "lead_id", "number", "outcome", "ring_seconds", "answered_by",
                   "abandoned", "message_in_time", "amd")
WINDOW_COLUMNS = ("window", "start", "end", "attempts", "live_answers", "abandons", "machines", "false_machines",
                  "live", "abandoned", "rate", "cap", "over_cap", "short_rings", "late_messages")
COLUMNS = (*ATTEMPT_COLUMNS, *WINDOW_COLUMNS)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("compliance", help="export a campaign's compliance evidence (attempts, windows, "
                              "abandon rate vs the policy's cap)")
    p.add_argument("campaign", metavar="CAMPAIGN")
    p.add_argument("--from", dest="start", required=True, metavar="DAY",
                   help="first day (YYYY-MM-DD, the campaign's zone) or an ISO time with offset")
    p.add_argument("--to", dest="end", required=True, metavar="DAY",
                   help="last day, included (YYYY-MM-DD) or an ISO time with offset (excluded)")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--config", metavar="CONFIG", help="configuration file (the campaign's policy and zone, "
                   "database.url)")
    p.add_argument("--db", metavar="URL", help="SQLAlchemy database URL (overrides the config)")
    p.add_argument("--out", default="-", metavar="FILE", help="output file ('-': stdout, the default)")
    p.add_argument("--full-numbers", action="store_true", help="print whole numbers (default: last 4 digits)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_compliance)


def mask(number: str) -> str:
    """All but the last four digits (and a leading +) replaced by ``*``."""
    digits = [i for i, ch in enumerate(number) if ch.isdigit()]
    hide = set(digits[:-4]) if len(digits) > 4 else set()
    if number.startswith("+") and digits:
        hide.discard(digits[0])  # the country code's first digit says where the number is
    return "".join("*" if i in hide else ch for i, ch in enumerate(number))


def parse_bound(text: str, zone: ZoneInfo, *, end: bool) -> float:
    """A day (its local midnight; for ``end``, the next midnight: the day is included) or an ISO time."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if end:
            day += timedelta(days=1)
        return datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a day (YYYY-MM-DD) nor an ISO time") from None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)).timestamp()


def days(start: float, end: float, zone: ZoneInfo) -> Iterator[tuple[float, float]]:
    """The calendar days (local) that ``[start, end)`` touches, each clipped to it."""
    day = datetime.fromtimestamp(start, zone).date()
    while True:
        lo = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
        if lo >= end:
            return
        day += timedelta(days=1)
        hi = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
        yield max(lo, start), min(hi, end)


def attempt_row(e: LedgerEntry, zone: ZoneInfo, full_numbers: bool) -> dict[str, Any]:
    return {"kind": "attempt", "time": _iso(e.ts, zone), "ref": e.ref, "lead_id": e.lead_id,
            "number": e.number if full_numbers else mask(e.number), "outcome": e.result,
            "ring_seconds": None if e.ring_seconds is None else round(e.ring_seconds, 1),
            "answered_by": "person" if e.person else "machine" if e.machine else "",
            "abandoned": e.abandoned, "message_in_time": e.message_in_time, "amd": e.amd}


def window_row(f: Figures, zone: ZoneInfo) -> dict[str, Any]:
    return {"kind": "window", "window": f.window, "start": _iso(f.start, zone), "end": _iso(f.end, zone),
            "attempts": f.attempts, "live_answers": f.live_answers, "abandons": f.abandons, "machines": f.machines,
            "false_machines": round(f.false_machines, 2), "live": round(f.live, 2), "abandoned": round(f.abandoned, 2),
            "rate": None if f.rate is None else round(f.rate, 5), "cap": f.cap, "over_cap": f.over_cap,
            "short_rings": f.short_rings, "late_messages": f.late_messages}


def evidence(ledger: ComplianceLedger, settings: CampaignSettings, start: float, end: float, *,
             full_numbers: bool, progress: Any = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(attempt rows, window rows) of ``[start, end)`` from a ledger holding the entries (and, for the
    rolling windows, the 30 days before ``start``). ``progress``: a tqdm-like bar updated once a day."""
    zone = ZoneInfo(settings.timezone)
    name, kind = settings.name, ledger.policies[settings.name].window
    attempts: list[dict[str, Any]] = []
    windows: list[dict[str, Any]] = []
    for lo, hi in days(start, end, zone):
        attempts.extend(attempt_row(e, zone, full_numbers) for e in ledger.entries(name, lo, hi))
        windows.append(window_row(ledger.figures_between(name, lo, hi, "calendar_day"), zone))
        if kind != "calendar_day":
            windows.append(window_row(ledger.figures_between(name, hi - WINDOW_SECONDS[kind], hi, kind), zone))
        if progress is not None:
            progress.update(1)
    return attempts, windows


def _iso(ts: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, zone).isoformat(timespec="seconds")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def write(out: IO[str], fmt: str, head: dict[str, Any], attempts: list[dict[str, Any]],
          windows: list[dict[str, Any]]) -> None:
    if fmt == "json":
        json.dump({**head, "attempts": attempts, "windows": windows}, out, indent=1)
        out.write("\n")
        return
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in (*attempts, *windows):
        writer.writerow({k: _cell(v) for k, v in row.items()})


def _campaign(args: argparse.Namespace) -> tuple[CampaignSettings, str]:
    """The campaign's settings and the database URL; exits 2 on a bad config or an unknown campaign."""
    from config.load import ConfigError, load_config
    from config.schema import DatabaseSettings

    if not args.config:
        print(f"cti compliance: no --config: campaign {args.campaign!r} judged as us_tsr in UTC", file=sys.stderr)
        return CampaignSettings(name=args.campaign, queue="-", leads="-"), args.db or DatabaseSettings().url
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        raise SystemExit(2) from None
    found = [c for c in cfg.dialer.campaigns if c.name == args.campaign]
    if not found:
        known = ", ".join(c.name for c in cfg.dialer.campaigns) or "none"
        print(f"cti compliance: {args.config} has no campaign {args.campaign!r}; known: {known}", file=sys.stderr)
        raise SystemExit(2)
    return found[0], args.db or cfg.database.url


def _missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite URL whose file does not exist (an export never creates a database)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return None if Path(parsed.database).exists() else str(Path(parsed.database).resolve())


def _cmd_compliance(args: argparse.Namespace) -> int:
    try:
        settings, url = _campaign(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    zone = ZoneInfo(settings.timezone)
    try:
        start, end = parse_bound(args.start, zone, end=False), parse_bound(args.end, zone, end=True)
    except ValueError as exc:
        print(f"cti compliance: {exc}", file=sys.stderr)
        return 2
    if end <= start:
        print("cti compliance: --to must come after --from", file=sys.stderr)
        return 2
    from centre.database import upgrade
    from cti.db import describe_url, make_engine
    from dialer.store import LeadStore

    missing = _missing_sqlite_file(url)
    if missing is not None:
        print(f"cti compliance: no database at {missing} (--db, or database.url of --config)", file=sys.stderr)
        return 2
    try:
        upgrade(url)  # as every entry point does: the evidence columns are 0006_dialer_compliance's
    except Exception as exc:  # an unreachable or unreadable database: say which, without its password
        print(f"cti compliance: cannot open {describe_url(url)}: {exc.__class__.__name__}", file=sys.stderr)
        return 2
    engine = make_engine(url)
    try:
        store = LeadStore(engine)
        ledger = ComplianceLedger([settings], retain=math.inf)
        spans = list(days(start, end, zone))
        bar = None
        if not args.no_progress and len(spans) > 1:
            from tqdm import tqdm

            bar = tqdm(total=len(spans) * 2, unit="day", desc=f"compliance {settings.name}", file=sys.stderr)
        history = WINDOW_SECONDS["rolling_30d"]
        ledger.rebuild(settings.name, store.ledger_entries(settings.name, start - history, start))
        for lo, hi in spans:  # read a day at a time: a long range never holds one huge result set
            for e in store.ledger_entries(settings.name, lo, hi):
                ledger.add(settings.name, e)
            if bar is not None:
                bar.update(1)
        attempts, windows = evidence(ledger, settings, start, end, full_numbers=args.full_numbers, progress=bar)
        if bar is not None:
            bar.close()
    finally:
        engine.dispose()
    policy = ledger.policies[settings.name]
    head = {"campaign": settings.name, "policy": policy.name, "window": policy.window, "cap": policy.cap,
            "timezone": settings.timezone, "from": _iso(start, zone), "to": _iso(end, zone),
            "numbers": "full" if args.full_numbers else "masked (last 4 digits)"}
    if args.out == "-":
        write(sys.stdout, args.format, head, attempts, windows)
    else:
        with open(args.out, "w", encoding="utf-8", newline="") as out:
            write(out, args.format, head, attempts, windows)
    return 0
