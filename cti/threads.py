"""Blocking jobs (database work) for a thread pool: ``thread_runner`` hands each job over at once,
``end_of_pass_runner`` at the end of the event loop's pass.

A worker thread that starts while the event loop is still working through an AMI read competes with
it for the GIL: each time the loop releases it (a socket write, a numpy pass over the agents), a worker
may take it for a switch interval (5 ms). Jobs asked for during a pass are therefore queued and handed
to the pool together when the pass ends, so they mostly run while the loop waits for the next read.
The delay this adds to a job is the rest of the pass (well under a millisecond to a few milliseconds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

ThreadRunner = Callable[[Callable[[], Any]], Deferred]


def thread_runner(reactor: IReactorFromThreads, threadpool: ThreadPool) -> ThreadRunner:
    """``run(fn)`` -> Deferred with ``fn()``'s result, computed in ``threadpool`` (submitted now)."""
    def run(fn: Callable[[], Any]) -> Deferred:
        return deferToThreadPool(reactor, threadpool, fn)  # type: ignore[arg-type]
    return run


def end_of_pass_runner(reactor: Any, threadpool: ThreadPool) -> ThreadRunner:
    """``run(fn)`` -> Deferred with ``fn()``'s result, computed in ``threadpool``; submitted at the end of
    the current pass of the reactor's loop (see the module's docstring)."""
    now = thread_runner(reactor, threadpool)
    pending: list[tuple[Callable[[], Any], Deferred]] = []

    def submit() -> None:
        jobs = pending[:]
        pending.clear()
        for fn, d in jobs:
            if threadpool.joined:  # a stopped pool drops jobs silently: fail them instead
                d.errback(Failure(RuntimeError("the database thread pool is stopped")))
                continue
            try:
                now(fn).chainDeferred(d)
            except Exception:  # the pool refused the job (stopped)
                d.errback(Failure())

    def run(fn: Callable[[], Any]) -> Deferred:
        d: Deferred = Deferred()
        if not pending:
            reactor.callLater(0, submit)
        pending.append((fn, d))
        return d

    return run
