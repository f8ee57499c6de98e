"""Wiring of the screen-pop shell for ``cti serve`` and ``cti demo``: engine, store, thread pool, PopLookup.

The one place in screenpop that creates threads and registers reactor triggers; engines never import it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from twisted.internet.interfaces import IReactorCore, IReactorFromThreads, IReactorTime
from twisted.python.threadpool import ThreadPool

from cti.threads import thread_runner
from screenpop.lookup import PopLookup
from screenpop.settings import ScreenpopSection
from screenpop.store import CustomerStore


def start_pop_lookup(database_url: str, settings: ScreenpopSection, reactor: IReactorTime,
                     threads: int = 4, migrate: bool = True) -> tuple[PopLookup, Callable[[], None]]:
    """Migrate the database (``centre.database.upgrade``), open the store and start a dedicated thread pool.

    Returns the look-up and its ``stop()`` (stops the pool, disposes the engine; idempotent), which also
    runs when the reactor shuts down. Blocking: call before ``reactor.run()`` (or from a thread).
    """
    from centre.database import upgrade
    from cti.db import make_engine

    if migrate:
        upgrade(database_url)
    store = CustomerStore(make_engine(database_url))
    pool = ThreadPool(minthreads=1, maxthreads=max(1, threads), name="screenpop-store")
    pool.start()

    stopped: list[bool] = []

    def stop() -> None:
        if not stopped:
            stopped.append(True)
            pool.stop()
            store.engine.dispose()

    core: IReactorCore = reactor  # type: ignore[assignment]
    core.addSystemEventTrigger("after", "shutdown", stop)
    from_threads: IReactorFromThreads = reactor  # type: ignore[assignment]
    return PopLookup.from_settings(store, thread_runner(from_threads, pool), reactor, settings), stop


def ensure_demo_customers(database_url: str, now: datetime, n: int = 3000, seed: int = 1) -> int:
    """For ``cti demo``: migrate the database and load the demo customers if it has none.

    Returns how many customers were written (0 when the store already had customers). Blocking.
    """
    from centre.database import upgrade
    from cti.db import make_engine
    from screenpop.demo_data import seed_store

    upgrade(database_url)
    store = CustomerStore(make_engine(database_url))
    try:
        return seed_store(store, now, n=n, seed=seed)
    finally:
        store.engine.dispose()
