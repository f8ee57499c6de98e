"""Redis unreachable (issue 19), through a TCP proxy the test cuts in front of the real Redis: the server's
Redis check says so on the wallboard's health line (``Health.redis``, which the page shows as "Redis") and
in ``/readyz``, logs it once when it goes down and once when it is back (not per check), and keeps checking
on its own (``Readiness.watch_redis``) so that nobody has to scrape the metrics for the wallboard to know."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from centre.ops_http import Readiness
from centre.wallboard import Health
from tests.tcp_proxy import TcpProxy


async def until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)  # the watch runs on this loop: yield to it


def test_redis_down_shows_on_the_wallboard_is_logged_once_and_back_when_it_is(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="centre.ops_http")
    proxy = TcpProxy("127.0.0.1", 6379)

    async def body() -> None:
        health = Health(ami={"pbx1": True}, ami_detail={"pbx1": "logged in"})
        readiness = Readiness(health, engine=None, redis_url=f"redis://127.0.0.1:{proxy.port}/0", timeout=1.0,
                              cache=0.0)
        watch = asyncio.ensure_future(readiness.watch_redis(interval=0.05))
        try:
            await until(lambda: health.redis is True, "Redis seen up")
            proxy.cut()
            await until(lambda: health.redis is False, "Redis seen down on the wallboard's health")
            refused = proxy.refused
            await until(lambda: proxy.refused >= refused + 3, "three more checks while it is down")
            report = await readiness.check()
            assert report.down == ["redis"] and not report.ready
            proxy.restore()
            await until(lambda: health.redis is True, "Redis seen back")
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            await readiness.close()
        said = [r.getMessage() for r in caplog.records if "redis" in r.getMessage()]
        assert len([m for m in said if "down" in m]) == 1, said
        assert said.count("readiness: redis reachable") == 2, said  # at the first check, then once back

    try:
        asyncio.run(asyncio.wait_for(body(), 20))
    finally:
        proxy.close()
