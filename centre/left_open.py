"""Call records a previous run of the server left open, settled at each PBX's first resync.

A server that stopped or crashed mid-call leaves its calls' interaction rows (``customer_interactions``)
without an end; the calls that ended while it was down would stay open for ever. At the first resync of each
PBX after start-up, ``LeftOpenRecords`` reads (in a worker thread) the open rows of that PBX's calls started
before this run: a row whose call the PBX no longer has is closed at once (``ended_at``: now, the earliest
the server can know; ``outcome``: ``unknown`` where none was written, since nobody saw how the call ended);
a row whose call is still there goes to the call log (``CallLog.left_open``), so that its end closes it as
any other. Rows of this run are never touched (they started after ``started_at``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from centre.call_log import CallLog
from cti.ami.message import AMIMessage
from cti.threads import ThreadRunner

log = logging.getLogger(__name__)

#: The outcome of a call that ended while the server was down (nobody saw how).
UNKNOWN_END = "unknown"


class LeftOpenRecords:
    def __init__(self, call_log: CallLog, now: Callable[[], float]) -> None:
        self.call_log = call_log
        self.now = now
        self.store: Any | None = None  # screenpop.store.CustomerStore, once the database is open
        self.run_in_thread: ThreadRunner | None = None
        self.started_at: float | None = None  # this run's start: rows started before it are the last run's
        self.settled: set[str] = set()  # the PBXs done

    def resynced(self, server: str, channels: list[AMIMessage]) -> None:
        store, run, started = self.store, self.run_in_thread, self.started_at
        if store is None or run is None or started is None or server in self.settled:
            return
        self.settled.add(server)
        live = {c.get("Linkedid", "") for c in channels} | {c.get("Uniqueid", "") for c in channels}
        prefix = f"{server}/"
        before = datetime.fromtimestamp(started, UTC)

        def got(rows: list[tuple[str, datetime]]) -> Any:
            ended: list[str] = []
            for key, started_at in rows:
                call_id, _, part = key[len(prefix):].partition("/")
                if call_id not in live:
                    ended.append(key)
                elif not part:  # the call's own row (an agent's part is closed by the part's end)
                    self.call_log.left_open(server, call_id, started_at.timestamp())
            if not ended:
                return None
            at = datetime.fromtimestamp(self.now(), UTC)
            return run(lambda: store.close_interactions(ended, at, UNKNOWN_END)).addCallback(
                lambda n: log.info("%s: %d call records the last run left open were closed (their calls ended "
                                   "while the server was down)", server, n))

        run(lambda: store.interactions_left_open(prefix, before)).addCallback(got).addErrback(
            lambda f: log.warning("%s: could not settle the call records the last run left open: %s", server,
                                  f.getErrorMessage()))
