"""Install Twisted's asyncio reactor once, so Twisted, websockets and redis.asyncio share one loop."""

from __future__ import annotations

import asyncio
import sys

from twisted.internet.interfaces import IReactorCore


def install_reactor() -> IReactorCore:
    """Install (or return the already installed) asyncio reactor."""
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor

        return reactor  # type: ignore[return-value]
    from twisted.internet import asyncioreactor

    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import reactor

    return reactor  # type: ignore[return-value]


def reactor_loop() -> asyncio.AbstractEventLoop:
    """The asyncio loop the installed reactor runs on (installing it first). Twisted's asyncio reactor has
    no public accessor for its loop: this is the one place that reads its attribute."""
    loop: asyncio.AbstractEventLoop = install_reactor()._asyncioEventloop  # type: ignore[attr-defined]
    return loop
