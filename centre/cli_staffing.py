"""``cti acd-staffing``: Erlang C staffing table for a queue. Arguments in, a table out; no network, no database."""

from __future__ import annotations

import argparse
import sys

from acd.erlang import agents_for_service_level, average_speed_of_answer, erlang_c, service_level

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
