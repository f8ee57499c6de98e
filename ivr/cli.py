"""``cti ivr-walk``: walk a flow from the configuration with a scripted caller, no PBX needed. Argument
parsing and printing only; the walk is ``ivr.agi_peer.converse`` over the real AGI codec."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("ivr-walk", help="walk an IVR flow with scripted key presses and print what happens")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("flow", nargs="?", default=None, help="flow name (default: ivr.default_flow)")
    p.add_argument("--keys", default="", help='caller input, comma separated: "1,12345#,,2" (empty = silence, '
                   '"hangup" = hang up)')
    p.add_argument("--ani", default="+15551230002", help="caller number")
    p.add_argument("--dnis", default="", help="dialled number (sent as ?dnis=)")
    p.add_argument("--at", default=None, help="time of the call, ISO 8601 with offset (default: now)")
    p.add_argument("--customers", default=None, help="JSON list of customers for lookup nodes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cti.cli import _load_or_exit
    from ivr.agi_peer import ScriptedCaller, converse, fastagi_environment
    from ivr.agi_protocol import AgiEnvironment
    from ivr.events import IvrCompleted
    from ivr.interpreter import IvrSession
    from ivr.ports import InMemoryCustomerLookup

    cfg = _load_or_exit(args.config)
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
    customers = json.loads(Path(args.customers).read_text()) if args.customers else []
    keys: list[str | None] = [k or None for k in args.keys.split(",")] if args.keys else []
    caller = ScriptedCaller(fastagi_environment(name, ani=args.ani, query=f"dnis={args.dnis}" if args.dnis else ""),
                            keys=keys)
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
