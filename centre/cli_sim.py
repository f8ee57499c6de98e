"""``cti sim``: run the simulated Asterisk (AMI server, FastAGI client, people) against any CTI server.
Only argument parsing and the reactor loop live here; the wiring is centre/sim_pbx.py.
"""

from __future__ import annotations

import argparse
import logging
import sys

from centre.cli_args import non_negative_int, positive_number, positive_seconds
from cti.contract import CTI_FASTAGI

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("sim", help="run the simulated Asterisk (AMI + FastAGI client + callers/agents)")
    p.add_argument("--config", default=None, metavar="CONFIG", help="configuration file (default: the demo one)")
    p.add_argument("--speed", type=positive_number, default=None,
                   help="run N times faster than real time (default: sim.speed)")
    p.add_argument("--duration", type=positive_seconds, default=None, help="stop after this many simulated seconds")
    p.add_argument("--seed", type=non_negative_int, default=None, help="seed of the people models (default: sim.seed)")
    p.add_argument("--pbx", default=None, metavar="NAME", help="which asterisk: entry to impersonate")
    p.add_argument("--dialplan", default=None, metavar="FILE", help="dialplan (.yaml or extensions.conf)")
    p.add_argument("--no-inbound", action="store_true", help="no inbound traffic (outbound/manual only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from centre.cli_common import DEFAULT_DEMO_CONFIG, load_or_exit, setup_logging
    from centre.sim_pbx import build_sim, listen
    from cti.reactor import install_reactor
    from sim.clock import ScaledClock
    from sim.dialplan import DialplanError
    from sim.fastagi_client import tcp_connector

    cfg = load_or_exit(args.config or str(DEFAULT_DEMO_CONFIG))
    setup_logging(cfg.log.level)  # type: ignore[attr-defined]
    speed = args.speed if args.speed is not None else cfg.sim.speed  # type: ignore[attr-defined]
    if speed == "max" or not isinstance(speed, int | float) or speed <= 0:
        print("cti sim: against a live server the speed must be a number > 0 (not 'max')", file=sys.stderr)
        return 2
    reactor = install_reactor()
    clock = ScaledClock(reactor, float(speed))  # type: ignore[arg-type]
    try:
        runtime = build_sim(cfg, clock, agi_connect=tcp_connector(reactor), pbx_name=args.pbx,  # type: ignore[arg-type]
                            dialplan=Path(args.dialplan) if args.dialplan else None, seed=args.seed,
                            inbound=not args.no_inbound, speed=float(speed))  # type: ignore[arg-type]
    except OSError as exc:  # the --dialplan file: missing, a directory, unreadable
        print(f"cti sim: {exc.filename or args.dialplan}: {exc.strerror or exc.__class__.__name__}", file=sys.stderr)
        return 1
    except (ValueError, DialplanError) as exc:
        print(f"cti sim: {exc}", file=sys.stderr)
        return 1
    from twisted.internet.error import CannotListenError

    try:
        port = listen(runtime, reactor)  # type: ignore[arg-type]
    except CannotListenError as exc:
        print(f"cti sim: cannot listen for AMI: {exc}", file=sys.stderr)
        return 1
    host = port.getHost()
    log.info("simulated Asterisk: AMI on %s:%d, FastAGI to %s, speed x%g", host.host, host.port,  # type: ignore[attr-defined]
             runtime.pbx.globals[CTI_FASTAGI], speed)
    runtime.driver.start()
    if args.duration is not None:
        clock.callLater(args.duration, reactor.stop)  # type: ignore[attr-defined]
    try:
        reactor.run()  # type: ignore[attr-defined]
    finally:
        runtime.stop()
    counts = runtime.driver.counts
    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())) + f" calls={runtime.pbx.processed_calls}")
    return 0
