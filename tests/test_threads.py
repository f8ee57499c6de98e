"""cti.threads: blocking jobs reach the thread pool at the end of the loop's pass, results come back."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet import task
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from cti.threads import end_of_pass_runner


class ThreadedClock(task.Clock):
    """Twisted's test clock, plus callFromThread (results of pool jobs come back through it)."""

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.Queue()

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self.from_threads.put((f, args))

    def pump(self, n: int) -> None:
        for _ in range(n):
            f, args = self.from_threads.get(timeout=5)
            f(*args)


def test_jobs_of_one_pass_go_to_the_pool_together_when_it_ends() -> None:
    clock = ThreadedClock()
    pool = ThreadPool(minthreads=1, maxthreads=2)
    pool.start()
    try:
        run = end_of_pass_runner(clock, pool)
        ran: list[str] = []
        results: list[Any] = []
        for name in ("a", "b"):
            run(lambda name=name: ran.append(threading.current_thread().name) or name.upper()).addCallback(
                results.append)
        assert ran == [] and results == []  # still in the pass: nothing submitted
        clock.advance(0)  # the pass ends
        clock.pump(2)
        assert sorted(results) == ["A", "B"]
        assert len(ran) == 2 and threading.current_thread().name not in ran
    finally:
        pool.stop()


def test_a_failing_job_and_a_stopped_pool_fail_the_deferred() -> None:
    clock = ThreadedClock()
    pool = ThreadPool(minthreads=1, maxthreads=1)
    pool.start()
    run = end_of_pass_runner(clock, pool)
    failures: list[Failure] = []
    run(lambda: 1 / 0).addErrback(failures.append)
    clock.advance(0)
    clock.pump(1)
    assert failures[0].check(ZeroDivisionError)
    pool.stop()
    run(lambda: "never").addErrback(failures.append)
    clock.advance(0)
    assert len(failures) == 2
