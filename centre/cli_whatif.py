"""``cti whatif``: replay a recorded range under the configuration it ran with and under a changed one, and
print SL, ASA, abandonment and occupancy side by side with what really happened (docs/whatif.md)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from centre.cli_args import non_negative_int, positive_number
from centre.cli_common import load_or_exit
from centre.cli_compliance import parse_bound

SL_TOLERANCE = 5.0  # percentage points the unchanged replay's service level may differ from the records'
ABANDON_TOLERANCE = 3.0  # percentage points its abandonment may differ


def _cmd_whatif(args: argparse.Namespace) -> int:
    from centre.whatif import DRAIN_LIMIT, check, table_lines, what_if, write_charts
    from centre.whatif_records import first_stays, read_range
    from cti.db import describe_url, make_engine

    if not args.base_config:
        print("cti whatif: no recorded configuration: pass --base-config FILE (the configuration the range ran "
              "with) or set CTI_CONFIG", file=sys.stderr)
        return 2
    base = load_or_exit(args.base_config)
    changed = load_or_exit(args.config)
    zone = ZoneInfo(base.acd.timezone)
    try:
        start = parse_bound(args.start, zone, end=False)
        end = parse_bound(args.end, zone, end=True)
    except ValueError as exc:
        print(f"cti whatif: {exc}", file=sys.stderr)
        return 2
    if end <= start:
        print("cti whatif: --to must be after --from", file=sys.stderr)
        return 2
    url = args.db or base.database.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:") \
            and not Path(url[len("sqlite:///"):]).is_file():
        print(f"cti whatif: no database file {url[len('sqlite:///'):]} (the records are read, never created)",
              file=sys.stderr)
        return 1
    engine = make_engine(url)
    try:
        rec = read_range(engine, start, end)
    except Exception as exc:
        print(f"cti whatif: cannot read the records from {describe_url(url)}: {exc.__class__.__name__}: "
              f"{str(exc).splitlines()[0][:200] if str(exc) else ''}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if not first_stays(rec.stays, rec.outbound):
        print(f"cti whatif: no inbound call entered a queue between {_show(start, zone)} and {_show(end, zone)} "
              f"in {describe_url(url)}", file=sys.stderr)
        return 1
    result = what_if(rec, base, changed, seed=args.seed, runs=args.runs)
    model, staff = result.model, result.staffing
    patience = "nobody abandoned: callers never give up" if model.patience_mean is None else \
        f"patience exponential, mean {model.patience_mean:.0f} s (from {model.abandons} abandons)"
    runs = f" ({args.runs} replays of each, seeds {args.seed}..{args.seed + args.runs - 1}, pooled)" \
        if args.runs > 1 else ""
    print(f"what-if {_show(start, zone)} .. {_show(end, zone)}: {len(model.calls)} recorded callers replayed{runs}; "
          f"{patience}; {len(staff.agents)} agents staffed as recorded"
          + (f", {len(result.added)} added (logged in and ready all along)" if result.added else ""))
    print(f"columns: recorded = {describe_url(url)}; unchanged = {args.base_config} replayed; "
          f"changed = {args.config} replayed")
    sides = [result.recorded, result.unchanged, result.changed]
    for line in table_lines(sides):
        print(line)
    for name, side in (("unchanged", result.replays[0::2]), ("changed", result.replays[1::2])):
        refused, left = sum(r.refused for r in side), sum(r.left_waiting for r in side)
        if refused or left:
            print(f"{name} replay: {refused} recorded agent steps the ACD refused there (e.g. ready while on a "
                  f"call), {left} callers still waiting {DRAIN_LIMIT / 3600:g} h after the end")
    verdict = check(result.recorded, result.unchanged, args.sl_tolerance, args.abandon_tolerance)
    print(verdict.line())
    if args.out:
        for path in write_charts(Path(args.out), sides, timezone=base.acd.timezone):
            print(f"chart: {path.resolve()}")
    return 0 if verdict.ok or not args.strict else 3


def _runs(text: str) -> int:
    value = non_negative_int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected 1 to 100 runs, got {text[:20]!r}")
    return value


def _show(ts: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M %Z")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("whatif", help="replay a recorded range under a changed configuration, side by side "
                              "with what really happened")
    p.add_argument("--from", dest="start", required=True, metavar="WHEN",
                   help="a day (YYYY-MM-DD, from its local midnight) or an ISO time")
    p.add_argument("--to", dest="end", required=True, metavar="WHEN",
                   help="a day (included: up to its end) or an ISO time (excluded)")
    p.add_argument("--config", required=True, metavar="CHANGED", help="the changed configuration to try")
    p.add_argument("--base-config", default=os.environ.get("CTI_CONFIG"), metavar="CONFIG",
                   help="the configuration the range ran with (default: CTI_CONFIG)")
    p.add_argument("--db", default=None, metavar="URL", help="the records' database (default: the base "
                   "configuration's database.url)")
    p.add_argument("--out", default=None, metavar="DIR", help="write the charts (PNG) to DIR")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the replay's random draws (the "
                   "simulated phones' answer delays and ring-no-answers, the censored patience draws)")
    p.add_argument("--runs", type=_runs, default=1, help="replay each configuration N times (seeds SEED, "
                   "SEED+1, ...) and pool the figures: less noise, N times the time (default 1)")
    p.add_argument("--sl-tolerance", type=positive_number, default=SL_TOLERANCE,
                   help=f"points the unchanged replay's SL may differ from the records' (default {SL_TOLERANCE:g})")
    p.add_argument("--abandon-tolerance", type=positive_number, default=ABANDON_TOLERANCE,
                   help=f"points its abandonment may differ (default {ABANDON_TOLERANCE:g})")
    p.add_argument("--strict", action="store_true", help="exit 3 when the unchanged replay is not within tolerance")
    p.set_defaults(func=_cmd_whatif)
