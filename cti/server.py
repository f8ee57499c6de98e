"""The one place that wires everything for ``cti serve``.

Placeholder of the foundation: installs the asyncio reactor and runs until interrupted. The
integration step wires AMI clients, call tracking, IVR, ACD, screen pops and the console hub here.
"""

from __future__ import annotations

import logging

from config.schema import CtiConfig

log = logging.getLogger("cti.server")


def serve(cfg: CtiConfig) -> int:
    from cti.reactor import install_reactor

    reactor = install_reactor()
    log.info("cti serve: %d Asterisk server(s) configured", len(cfg.asterisk))
    reactor.run()  # type: ignore[attr-defined]
    return 0
