"""``cti dialer-check-leads FILE``: read a lead CSV as a campaign would and list every rejected row.
Reads the one file; no network, no database, no engine."""

from __future__ import annotations

import argparse
import sys

from dialer.leads import LeadSourceError, read_source


def _cmd_check_leads(args: argparse.Namespace) -> int:
    try:
        leads, errors = read_source(args.file, 0)
    except LeadSourceError as exc:
        print(f"cti dialer-check-leads: {exc}", file=sys.stderr)
        return 2
    for error in errors:
        print(error, file=sys.stderr)
    zones = sum(1 for lead in leads if lead.timezone)
    print(f"{args.file}: {len(leads)} leads ({zones} with their own time zone), {len(errors)} rejected rows")
    return 1 if errors else 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("dialer-check-leads", help="check a campaign's lead CSV file (rejected rows, counts)")
    p.add_argument("file", help="the CSV file (header with number or phone; optional id, timezone)")
    p.set_defaults(func=_cmd_check_leads)
