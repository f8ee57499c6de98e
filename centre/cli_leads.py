"""``cti dialer-check-leads FILE``: read a lead CSV as a campaign would and list every rejected row (the one
file; no network, no database, no engine). ``cti leads import CAMPAIGN FILE.csv`` and ``cti dnc import FILE``:
into the database (``--db URL``, else the config's ``database.url``, else the default), migrated first."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from centre.cli_common import load_or_exit
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
    register_store_commands(subparsers)


# ---------------------------------------------------------------------------------------------------
# ``cti leads import CAMPAIGN FILE.csv`` and ``cti dnc import FILE``: into the database (migrated first)

def register_store_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    leads = subparsers.add_parser("leads", help="campaign leads in the database: import a CSV file")
    leads_sub = leads.add_subparsers(dest="leads_command", metavar="ACTION")
    leads.set_defaults(func=lambda args: _usage(leads))
    p = leads_sub.add_parser("import", help="import a campaign's leads from a CSV file (idempotent, resumable)")
    p.add_argument("campaign", metavar="CAMPAIGN")
    p.add_argument("file", metavar="FILE.csv")
    p.add_argument("--map", metavar="FIELD=COLUMN,...",
                   help="file columns for number, id and timezone, e.g. number=Phone,timezone=TZ,id=Ref")
    _db_options(p)
    p.add_argument("--chunk", type=int, default=1000, help="rows per transaction (default 1000)")
    _encoding_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_leads_import)

    dnc = subparsers.add_parser("dnc", help="the do-not-call list: import a list file")
    dnc_sub = dnc.add_subparsers(dest="dnc_command", metavar="ACTION")
    dnc.set_defaults(func=lambda args: _usage(dnc))
    p = dnc_sub.add_parser("import", help="add the numbers of a list file (one a line, or CSV) to the list")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--column", help="the CSV column holding the numbers (default number or phone)")
    p.add_argument("--source", help="where the list comes from (default: import:FILE)")
    _db_options(p)
    _encoding_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_dnc_import)


def _encoding_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoding", default="utf-8",
                   help="the file's text encoding, e.g. cp1252 or latin-1 (default utf-8; a BOM is fine); a row "
                        "that is not text in it is refused with its line number")


def _bad_encoding(name: str) -> bool:
    """Print why ``--encoding`` is refused (an unknown codec) and say so."""
    import codecs

    try:
        codecs.lookup(name)
    except LookupError:
        print(f"--encoding: unknown encoding {name[:40]!r} (e.g. utf-8, cp1252, latin-1)", file=sys.stderr)
        return True
    return False


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _db_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--config", metavar="CONFIG", help="configuration file (database.url, dialer.default_region)")
    group.add_argument("--db", metavar="URL", help="SQLAlchemy database URL (default: the default database)")
    p.add_argument("--region", help="region of numbers without + (default dialer.default_region, else US)")


def _settings(args: argparse.Namespace) -> tuple[str, str, Any]:
    """(database URL, default region, config or None); exits 2 on a bad config or region."""
    from config.schema import CtiConfig, DatabaseSettings

    cfg: CtiConfig | None = load_or_exit(args.config, status=2) if args.config else None
    url = args.db or (cfg.database.url if cfg else DatabaseSettings().url)
    region = (args.region or (cfg.dialer.default_region if cfg else "US")).upper()
    import phonenumbers

    if region not in phonenumbers.SUPPORTED_REGIONS:
        print(f"unknown region {region!r}; use a two-letter code such as US or GB", file=sys.stderr)
        raise SystemExit(2)
    return url, region, cfg


def _engine(url: str) -> Any:
    from centre.database import upgrade
    from cti.db import describe_url, make_engine

    try:
        upgrade(url)
        return make_engine(url)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"cannot open the database {describe_url(url)}: {first[:300]}", file=sys.stderr)
        raise SystemExit(2) from None


def _print_report(path: str, report: Any, what: str) -> None:
    for line, reason in sorted(report.bad):
        print(f"{path}:{line}: {reason}", file=sys.stderr)
    for line, reason in sorted(report.skipped):
        print(f"{path}:{line}: skipped: {reason}", file=sys.stderr)
    print(report.summary(path, what))


def _import_file(path: Path, url: str, what: str, run: Callable[[Path, Any], Any]) -> int:
    """Run one file import (``run(path, engine)`` -> its report) against the database at ``url``: exit 2 for a
    file that is missing or unreadable, 1 for one refused whole or with bad rows, 0 when every row went in."""
    from dialer.lead_import import LeadFileError

    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return 2
    engine = _engine(url)
    try:
        report = run(path, engine)
    except LeadFileError as exc:
        print(f"{path}: {exc}; nothing imported", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror or exc.__class__.__name__}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    _print_report(str(path), report, what)
    return 1 if report.bad else 0


def _exits(cmd: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return cmd(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2


def _cmd_leads_import(args: argparse.Namespace) -> int:
    return _exits(_leads_import, args)


def _leads_import(args: argparse.Namespace) -> int:
    from dialer.lead_import import import_leads, parse_mapping
    from dialer.store import LeadStore

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", args.campaign):
        print(f"bad campaign name {args.campaign[:70]!r}: letters, digits, _ . -, at most 64", file=sys.stderr)
        return 2
    try:
        mapping = parse_mapping(args.map)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if args.chunk < 1:
        print("--chunk must be at least 1", file=sys.stderr)
        return 2
    if _bad_encoding(args.encoding):
        return 2
    url, region, cfg = _settings(args)
    if cfg is not None and args.campaign not in {c.name for c in cfg.dialer.campaigns}:
        known = ", ".join(c.name for c in cfg.dialer.campaigns) or "none configured"
        print(f"{args.config}: no campaign {args.campaign!r} (campaigns: {known})", file=sys.stderr)
        return 2
    return _import_file(Path(args.file), url, "leads", lambda path, engine: import_leads(
        path, LeadStore(engine), args.campaign, now=time.time(), mapping=mapping, region=region, chunk=args.chunk,
        encoding=args.encoding, progress=not args.no_progress))


def _cmd_dnc_import(args: argparse.Namespace) -> int:
    return _exits(_dnc_import, args)


def _dnc_import(args: argparse.Namespace) -> int:
    from dialer.lead_import import import_dnc
    from dialer.store import DncStore

    if _bad_encoding(args.encoding):
        return 2
    url, region, _ = _settings(args)
    return _import_file(Path(args.file), url, "numbers", lambda path, engine: import_dnc(
        path, DncStore(engine), now=time.time(), source=args.source or f"import:{path.name}", region=region,
        column=args.column, encoding=args.encoding, progress=not args.no_progress))
