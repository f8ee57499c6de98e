"""``cti customers ...``: import a customer CSV, generate demo customers, find a customer. Thin CLI shell.

The database is ``--db URL``, else the config's ``database.url`` (``--config``), else the default
SQLite file; it is migrated with ``centre.database.upgrade`` first. ``import`` says which database it writes to
(and why that one) before it starts and refuses a file whose header has no look-up key before any
database is created; ``find`` never creates a SQLite file. The URL's password never reaches the output.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from centre.cli_common import load_or_exit


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("customers", help="customer store: import a CSV, generate demo customers, find")
    sub = parser.add_subparsers(dest="customers_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: _usage(parser))

    p = sub.add_parser("import", help="import customers from a CSV file (idempotent: re-import updates)")
    p.add_argument("file", metavar="FILE.csv")
    _db_options(p)
    p.add_argument("--encoding", default="utf-8", help="file encoding (default utf-8; a BOM is fine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_exits(_cmd_import))

    p = sub.add_parser("generate", help="write N deterministic demo customers as CSV")
    p.add_argument("n", type=int, metavar="N")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="output file ('-' for stdout)")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=_exits(_cmd_generate))

    p = sub.add_parser("find", help="print the customers matching a phone number or an account (JSON)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--phone")
    group.add_argument("--account")
    _db_options(p)
    p.set_defaults(func=_exits(_cmd_find))


def _exits(cmd: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the helpers' ``SystemExit(code)`` into the command's return code."""
    def run(args: argparse.Namespace) -> int:
        try:
            return cmd(args)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 2
    return run


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _db_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="CONFIG", help="configuration file (database.url, screenpop.default_region)")
    p.add_argument("--db", metavar="URL", help="SQLAlchemy database URL (overrides the config)")
    p.add_argument("--region", help="region for numbers without + (overrides screenpop.default_region)")


def _settings(args: argparse.Namespace) -> tuple[str, str]:
    """(database URL, default region) from the options and the config; exits 2 on a bad config. The URL
    is ``--db``, else the config's ``database.url``, else the default (``DatabaseSettings``)."""
    from config.schema import CtiConfig, DatabaseSettings

    cfg: CtiConfig | None = load_or_exit(args.config, status=2) if args.config else None
    url = args.db or (cfg.database.url if cfg else DatabaseSettings().url)
    region = (args.region or (cfg.screenpop.default_region if cfg else "US")).upper()
    from screenpop.phone import is_known_region

    if not is_known_region(region):
        print(f"unknown region {region!r}; use a two-letter code such as US or GB", file=sys.stderr)
        raise SystemExit(2)
    return url, region


def _redacted(text: str, url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception:
        return text
    return text.replace(str(password), "***") if password else text


def _where(url: str, args: argparse.Namespace) -> str:
    """The database as a person should read it: password hidden, a relative SQLite path made absolute,
    and which option chose it."""
    from cti.db import describe_url

    source = ("--db" if args.db else f"database.url of {args.config}" if args.config
              else "the default database: no --db or --config given")
    return f"{describe_url(url)} ({source})"


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _open_store(url: str) -> Any:
    from centre.database import upgrade
    from cti.db import make_engine
    from screenpop.store import CustomerStore

    try:
        upgrade(url)
        return CustomerStore(make_engine(url))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"cannot open the database: {_redacted(first, url)}", file=sys.stderr)
        raise SystemExit(2) from None


def _cmd_import(args: argparse.Namespace) -> int:
    from screenpop.importer import header_problem, import_csv

    url, region = _settings(args)
    path = Path(args.file)
    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return 2
    try:
        problem = header_problem(path, args.encoding)
    except (OSError, LookupError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    if problem is not None:  # refused before any database is opened or created
        print(f"{path}:{problem[0]}: {problem[1]}", file=sys.stderr)
        return 1
    print(f"{path}: importing into {_where(url, args)}")
    store = _open_store(url)
    try:
        report = import_csv(path, store, progress=not args.no_progress, region=region, encoding=args.encoding)
    except (OSError, LookupError) as exc:  # LookupError: unknown --encoding
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    finally:
        store.engine.dispose()
    for line, reason in report.bad_rows:
        print(f"{path}:{line}: {reason}", file=sys.stderr)
    print(report.summary(str(path)))
    return 0 if report.ok else 1


def _cmd_generate(args: argparse.Namespace) -> int:
    from screenpop.demo_data import customers_csv, generate_customers

    if args.n < 0:
        print("N must be >= 0", file=sys.stderr)
        return 2
    try:
        text = customers_csv(generate_customers(args.n, args.seed))
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if args.out == "-":
        sys.stdout.write(text)
    else:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"{args.out}: cannot write: {exc.strerror or exc.__class__.__name__}", file=sys.stderr)
            return 2
        print(f"{args.out}: {args.n} customers")
    return 0


def _cmd_find(args: argparse.Namespace) -> int:
    from screenpop.phone import normalise_for_lookup

    url, region = _settings(args)
    sqlite = _sqlite_file(url)
    if sqlite is not None and not sqlite.exists():  # a look-up must not create an empty database
        print(f"no customer database at {_where(url, args)}; import customers first "
              "(cti customers import FILE.csv) or name the database with --db or --config", file=sys.stderr)
        return 2
    store = _open_store(url)
    try:
        if args.phone is not None:
            e164 = normalise_for_lookup(args.phone, region)
            if e164 is None:
                print(f"not a usable phone number for region {region}", file=sys.stderr)
                return 2
            found = store.find_by_phone(e164)
        else:
            one = store.find_by_account(args.account)
            found = [one] if one else []
    finally:
        store.engine.dispose()
    print(json.dumps([c.to_dict() for c in found], indent=2, ensure_ascii=False))
    return 0 if found else 1
