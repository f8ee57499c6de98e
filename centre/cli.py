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
from centre.cli_args import node_id, non_negative_int, positive_seconds, redis_url, speed
from centre.cli_common import DEFAULT_DEMO_CONFIG, load_or_exit, print_security_warnings, setup_logging
from config.schema import CtiConfig, NodeSettings, RedisSettings
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
    cfg = serve_overrides(cfg, redis_url=args.redis, node_id=args.node)
    print_security_warnings(args.config, cfg)
    from centre.process import run_server

    setup_logging(getattr(getattr(cfg, "log", None), "level", "INFO"))
    return run_server(cfg)  # type: ignore[arg-type]


def serve_overrides(cfg: CtiConfig, *, redis_url: str | None, node_id: str | None) -> CtiConfig:
    """``cti serve --redis URL --node ID``: the configuration with ``redis.url`` and ``node.id`` set (each
    validated as the file's would be; the rest of ``redis:`` and ``node:`` kept)."""
    update: dict[str, object] = {}
    if redis_url is not None:
        current = cfg.redis.model_dump() if cfg.redis is not None else {}
        update["redis"] = RedisSettings.model_validate({**current, "url": redis_url})
    if node_id is not None:
        update["node"] = NodeSettings.model_validate({**cfg.node.model_dump(), "id": node_id})
    return cfg.model_copy(update=update) if update else cfg


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
    p.add_argument("--redis", type=redis_url, default=None, metavar="URL",
                   help="join the other nodes of the centre over this Redis (sets redis.url)")
    p.add_argument("--node", type=node_id, default=None, metavar="ID",
                   help="this node's id on its leases (sets node.id; default: hostname-pid)")
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
