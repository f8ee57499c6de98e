"""``cti ivr-walk``: walk a flow from the configuration with a scripted caller, no PBX needed. Argument
parsing, the customers file and printing only; the walk is ``ivr.agi_peer.converse`` over the real AGI codec.
A user's mistake (a missing, empty or malformed customers file, keys that are not phone keys) ends in one
line on stderr and status 2, never a traceback."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from datetime import datetime
from pathlib import Path

from centre.cli_args import phone_keys

MAX_CUSTOMERS_BYTES = 50_000_000
"""A customers file larger than this is refused (it is read whole, for a walk)."""


class CustomersFileError(Exception):
    """The --customers file cannot be used; the message names the file and what is wrong."""


def read_customers(path: Path) -> list[dict[str, str]]:
    """Customers for the look-up nodes: a JSON list of objects, or a CSV (``.csv``) with a header; either way
    each customer needs a ``phone`` (numbers separated by spaces) or an ``account``."""
    try:
        size = path.stat().st_size
        if size > MAX_CUSTOMERS_BYTES:
            raise CustomersFileError(f"{path}: {size} bytes; a customers file for a walk is at most "
                                     f"{MAX_CUSTOMERS_BYTES}")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CustomersFileError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise CustomersFileError(f"{path}: is a directory, expected a file") from None
    except UnicodeDecodeError as exc:
        raise CustomersFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise CustomersFileError(f"{path}: cannot read: {exc.strerror or exc.__class__.__name__}") from None
    if not text.strip():
        raise CustomersFileError(f"{path}: empty file, expected a JSON list of customers or a CSV with a header")
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        fields = {f.strip().lower() for f in (rows[0].keys() if rows else [])}
        if not rows:
            raise CustomersFileError(f"{path}: a header and no customers")
        if not fields & {"phone", "account"}:
            raise CustomersFileError(f"{path}:1: no 'phone' or 'account' column, so no customer could be found")
        return [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in rows]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CustomersFileError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); expected a list of "
                                 "customers (or a .csv file)") from None
    if not isinstance(data, list) or not all(isinstance(c, dict) for c in data):
        raise CustomersFileError(f"{path}: expected a JSON list of objects such as "
                                 '[{"name": "Ann Lee", "phone": "+12015550123", "account": "12345678"}]')
    for i, customer in enumerate(data):
        if not (customer.get("phone") or customer.get("account")):
            raise CustomersFileError(f"{path}: customer [{i}] has neither 'phone' nor 'account', so it could "
                                     "never be found")
    return [{str(k): str(v) for k, v in c.items()} for c in data]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("ivr-walk", help="walk an IVR flow with scripted key presses and print what happens")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("flow", nargs="?", default=None, help="flow name (default: ivr.default_flow)")
    p.add_argument("--keys", type=phone_keys, default=[], help='caller input, comma separated phone keys '
                   '(0-9, *, #): "1,12345#,,2" (empty = silence, "hangup" = hang up)')
    p.add_argument("--ani", default="+15551230002", help="caller number")
    p.add_argument("--dnis", default="", help="dialled number (sent as ?dnis=)")
    p.add_argument("--at", default=None, help="time of the call, ISO 8601 with offset (default: now)")
    p.add_argument("--customers", default=None, metavar="FILE",
                   help="customers for lookup nodes: a JSON list, or a .csv with a phone or account column")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from centre.cli_common import load_or_exit
    from ivr.agi_peer import ScriptedCaller, converse, fastagi_environment
    from ivr.agi_protocol import AgiEnvironment
    from ivr.events import IvrCompleted
    from ivr.interpreter import IvrSession
    from ivr.ports import InMemoryCustomerLookup

    cfg = load_or_exit(args.config)
    section = cfg.ivr  # type: ignore[attr-defined]
    name = args.flow or section.default_flow
    if name not in section.flows:
        print(f"cti ivr-walk: unknown flow {name!r}; known: {', '.join(sorted(section.flows)) or 'none'}",
              file=sys.stderr)
        return 1
    try:
        now = datetime.fromisoformat(args.at).timestamp() if args.at else datetime.now().timestamp()
    except ValueError:
        print(f"cti ivr-walk: --at {args.at!r} is not an ISO 8601 time", file=sys.stderr)
        return 2
    try:
        customers = read_customers(Path(args.customers)) if args.customers else []
    except CustomersFileError as exc:
        print(f"cti ivr-walk: {exc}", file=sys.stderr)
        return 2
    caller = ScriptedCaller(fastagi_environment(name, ani=args.ani, query=f"dnis={args.dnis}" if args.dnis else ""),
                            keys=list(args.keys))
    session = IvrSession(name, section.flows[name], AgiEnvironment(caller.env), server="ivr-walk")
    events = converse(session, caller, lambda: now, InMemoryCustomerLookup(customers).find)
    for line in caller.commands:
        print(f"> {line}")
    done = events[-1]
    assert isinstance(done, IvrCompleted)
    print("path: " + " > ".join(f"{s.node}({s.digits or s.result})" if s.digits or s.result else s.node
                                for s in done.path))
    print(f"outcome: {done.outcome}" + (f" queue={done.queue} skills={done.skills} priority={done.priority} "
                                        f"language={done.language}" if done.outcome == "queue" else "")
          + (f" ({done.reason})" if done.reason else ""))
    if done.collected:
        print(f"collected: {done.collected}")
    return 0
