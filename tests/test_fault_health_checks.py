"""Redis or the database unreachable (issue 19), through a TCP proxy the test cuts in front of the real one:
the server's checks say so on the wallboard's health line (``Health.redis``, shown as "Redis"; ``db_check``,
which the wallboard's "DB" takes beside its writers') and in ``/readyz``, log it once when it goes down and
once when it is back (not per check), and run on their own (``Readiness.watch``) so that nobody has to scrape
the metrics, nor anything be written, for the wallboard to know."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

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
        watch = asyncio.ensure_future(readiness.watch(interval=0.05))
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


def test_the_database_down_shows_on_the_wallboard_without_a_write_and_is_logged_once(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="centre.ops_http")
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    engine = create_engine(url.set(host="127.0.0.1", port=proxy.port), pool_pre_ping=True)

    async def body() -> None:
        health = Health(ami={"pbx1": True}, ami_detail={"pbx1": "logged in"})
        readiness = Readiness(health, engine=engine, redis_url=None, timeout=2.0, cache=0.0)
        watch = asyncio.ensure_future(readiness.watch(interval=0.05))
        try:
            await until(lambda: health.db_check is True, "the database seen up")
            proxy.cut()
            await until(lambda: health.db_check is False, "the database seen down on the wallboard's health")
            refused = proxy.refused
            await until(lambda: proxy.refused >= refused + 3, "three more checks while it is down")
            proxy.restore()
            await until(lambda: health.db_check is True, "the database seen back")
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            await readiness.wait_idle()
            await readiness.close()
        said = [r.getMessage() for r in caplog.records if "database" in r.getMessage()]
        assert len([m for m in said if "down" in m]) == 1, said
        assert said.count("readiness: database reachable") == 2, said

    try:
        asyncio.run(asyncio.wait_for(body(), 20))
    finally:
        engine.dispose()
        proxy.close()
