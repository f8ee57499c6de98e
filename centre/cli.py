"""The ``cti`` command: serve, check-config, demo, version, and the subcommand groups of the other packages.

Each group is a ``centre/cli_<name>.py`` module with ``register(subparsers)``, imported here and listed in
``main``. Each subcommand sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from centre import (
    cli_compliance,
    cli_console,
    cli_customers,
    cli_ivr,
    cli_leads,
    cli_recordings,
    cli_report,
    cli_sim,
    cli_staffing,
    cli_whatif,
)
from centre.cli_args import non_negative_int, positive_seconds, speed
from centre.cli_common import DEFAULT_DEMO_CONFIG, load_or_exit, print_security_warnings, setup_logging
from cti import __version__


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"cti {__version__}")
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    from config.load import ConfigError, load_config

    status = 0
    for path in args.files:
        try:
            load_config(path)
        except ConfigError as exc:
            for issue in exc.issues:
                print(issue, file=sys.stderr)
            status = 1
        else:
            print_security_warnings(path)
            print(f"{path}: OK")
    return status


def _cmd_serve(args: argparse.Namespace) -> int:
    cfg = load_or_exit(args.config)
    print_security_warnings(args.config, cfg)
    from centre.process import run_server

    setup_logging(getattr(getattr(cfg, "log", None), "level", "INFO"))
    return run_server(cfg)  # type: ignore[arg-type]


def _cmd_demo(args: argparse.Namespace) -> int:
    from centre.demo import run_demo

    cfg = load_or_exit(args.config)
    return run_demo(cfg, args)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cti", description="Contact-centre CTI backend for Asterisk")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=_cmd_version)

    p = sub.add_parser("check-config", help="validate configuration files; print every error")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("serve", help="run the server against the Asterisk PBXs in the config")
    p.add_argument("config", metavar="CONFIG")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("demo", help="run the server and a simulated PBX together on loopback")
    p.add_argument("--config", default=str(DEFAULT_DEMO_CONFIG), metavar="CONFIG")
    p.add_argument("--speed", type=speed, default=1.0, help="run N times faster than real time; 'max': virtual "
                   "time, as fast as the CPU allows, no consoles (prints the account of every call)")
    p.add_argument("--duration", type=positive_seconds, default=None,
                   help="stop after this many (simulated) seconds")
    p.add_argument("--seed", type=non_negative_int, default=None, help="random seed of the people models")
    p.add_argument("--calls", default=None, metavar="FILE",
                   help="write the account of every call (one CSV row per inbound call and outbound attempt) "
                   "to FILE ('-': stdout); without it --speed max prints one line per call")
    p.add_argument("--quiet", action="store_true", help="no live summary line")
    p.add_argument("--verbose", action="store_true", help="log at INFO level")
    p.set_defaults(func=_cmd_demo)

    for module in (cli_sim, cli_customers, cli_console, cli_staffing, cli_ivr, cli_leads, cli_compliance,
                   cli_recordings, cli_report, cli_whatif):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
