"""``cti agent-password`` (print a scrypt hash) and ``cti agent-token`` (print a signed console token).

Only argument parsing, prompting and printing; the crypto lives in ``agent_console.auth``. Neither
command ever prints or logs the password or the secret; errors name what is wrong, not the value.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import time

from agent_console.auth import hash_password, issue_token
from agent_console.settings import ID_PATTERN, ConsoleSection
from config.load import ConfigError, load_config
from config.schema import CtiConfig

SECRET_ENV = "CTI_CONSOLE_SECRET"
_TTL_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``8h``, ``2d`` -> seconds; ValueError otherwise."""
    match = _TTL_RE.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"bad duration {text!r}: use e.g. 30m, 8h, 2d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _cmd_password(args: argparse.Namespace) -> int:
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("cti agent-password: the two passwords differ", file=sys.stderr)
            return 1
    if len(password) < 8 or len(password) > 256:
        print("cti agent-password: a password has 8-256 characters", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def _load(config_path: str) -> CtiConfig | None:
    """The configuration; None after printing its errors."""
    try:
        return load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return None


def _known_ids(cfg: CtiConfig, role: str) -> set[str]:
    """Who may hold a token of ``role`` in this configuration: its agents, or its supervisors."""
    if role == "supervisor":
        return {s.id for s in cfg.console.supervisors}
    return {a.id for a in cfg.acd.agents}


def _cmd_token(args: argparse.Namespace) -> int:
    if not re.match(ID_PATTERN, args.agent_id):
        print("cti agent-token: an id has 1-64 letters, digits or _.@-", file=sys.stderr)
        return 1
    if args.config is None:
        settings = ConsoleSection()
        print(f"cti agent-token: without --config, {args.agent_id!r} is not checked against the configured "
              f"{args.role}s", file=sys.stderr)
    else:
        cfg = _load(args.config)
        if cfg is None:
            return 1
        if args.agent_id not in _known_ids(cfg, args.role):
            print(f"cti agent-token: no {args.role} {args.agent_id!r} in {args.config} "
                  f"({'console.supervisors' if args.role == 'supervisor' else 'acd.agents'})", file=sys.stderr)
            return 1
        settings = cfg.console
    secret = settings.token_secret.get_secret_value() if settings.token_secret else os.environ.get(SECRET_ENV, "")
    if len(secret) < 16:
        where = "console.token_secret in the config" if args.config else f"${SECRET_ENV}"
        print(f"cti agent-token: no usable secret: set {where} (at least 16 characters)", file=sys.stderr)
        return 1
    try:
        ttl = parse_ttl(args.ttl) if args.ttl else settings.token_default_ttl
    except ValueError as exc:
        print(f"cti agent-token: {exc}", file=sys.stderr)
        return 1
    if ttl > settings.token_max_ttl:
        print(f"cti agent-token: ttl exceeds console.token_max_ttl ({settings.token_max_ttl:g}s)", file=sys.stderr)
        return 1
    print(issue_token(secret, args.agent_id, args.role, ttl, time.time()))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("agent-password", help="print a password hash for an agent's password_hash field")
    p.add_argument("--stdin", action="store_true", help="read the password from one line of stdin (no prompt)")
    p.set_defaults(func=_cmd_password)

    p = subparsers.add_parser("agent-token", help="print a signed console login token for an agent or supervisor")
    p.add_argument("agent_id", metavar="AGENT_ID")
    p.add_argument("--role", choices=("agent", "supervisor"), default="agent")
    p.add_argument("--ttl", default=None, help="lifetime, e.g. 30m, 8h, 2d (default console.token_default_ttl)")
    p.add_argument("--config", default=None, metavar="CONFIG",
                   help=f"take console.token_secret from this config (default: ${SECRET_ENV})")
    p.set_defaults(func=_cmd_token)
