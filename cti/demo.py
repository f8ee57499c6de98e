"""``cti demo``: the server and the simulated PBX together on loopback.

Placeholder of the foundation: until the simulator lands it runs ``serve`` on the demo config.
"""

from __future__ import annotations

import argparse

from config.schema import CtiConfig


def run_demo(cfg: CtiConfig, args: argparse.Namespace) -> int:
    from cti.server import serve

    return serve(cfg)
