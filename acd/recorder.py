"""Buffered database writer for ACD records: a background thread, a bounded buffer, retry with backoff.

``Recorder(url).record(event)`` never blocks and never touches the database on the caller's thread,
so a routing decision never waits for SQL. Rows stay in the buffer until a commit succeeds; while
the database is down the thread retries with ``backoff(attempt)`` seconds between attempts and logs
once per outage. Rows carry a unique ``record_uid`` and are inserted with ON CONFLICT DO NOTHING, so
a retry after a commit whose acknowledgement was lost stores nothing twice.

Limit: at most ``max_pending`` rows wait in memory; past that, new rows are counted in ``dropped``
and logged (a database that stays down for that long is an outage, not a blip). The schema is not
created here: run ``centre.database.upgrade(url)`` first. ``last_agent_states`` reads the log back for a restart.
Must not import the service or the router.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC
from typing import Any

from sqlalchemy import Engine, bindparam, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from acd.restore import LastState
from acd.tables import AgentStateRecord, row_for
from cti.db import Base, make_engine, retry_backoff

log = logging.getLogger(__name__)


class Recorder:
    """Writes ACD events' rows to the database from a thread of its own."""

    def __init__(self, url: str, *, max_pending: int = 100_000, batch_size: int = 500,
                 backoff: Callable[[int], float] = retry_backoff, engine: Engine | None = None,
                 linger: float = 0.25) -> None:
        """``linger``: how long the writer waits after a first row for more to share its transaction (a
        transaction per event would cost the event loop more: the writer thread competes for the GIL)."""
        self._url = url
        self._linger = linger
        self._engine = engine
        self._max_pending = max_pending
        self._batch_size = batch_size
        self._backoff = backoff
        self._buffer: deque[tuple[type[Base], dict[str, Any]]] = deque()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._closing = False
        self._flushing = 0
        self._close_deadline = float("inf")
        self._nonce = uuid.uuid4().hex[:10]
        self._seq = 0
        self.written = 0
        self.failures = 0
        self.dropped = 0
        self._down_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="acd-recorder", daemon=True)
        self._thread.start()

    # --- producer side (event loop) ----------------------------------------------------------
    def record(self, event: object) -> bool:
        """Queue the row of an ACD event (others are ignored). False if the buffer was full and it was dropped."""
        with self._cond:
            self._seq += 1
            row = row_for(event, f"{self._nonce}{self._seq}")
            if row is None:
                return True
            if self._closing or len(self._buffer) >= self._max_pending:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.error("ACD recorder buffer full (%d rows) or closed: %d rows dropped so far",
                              self._max_pending, self.dropped)
                return False
            self._buffer.append(row)
            if len(self._buffer) == 1 or len(self._buffer) >= self._batch_size:
                self._cond.notify_all()  # the writer waits for a first row, then for a full batch
        return True

    def record_all(self, events: Iterable[object]) -> None:
        for event in events:
            self.record(event)

    @property
    def metrics(self) -> dict[str, Any]:
        with self._cond:
            return {"pending": len(self._buffer), "written": self.written, "failures": self.failures,
                    "dropped": self.dropped, "db_down": self._down_since is not None}

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued row is written; False if ``timeout`` passed first."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()  # no lingering: write what is there
            try:
                return self._cond.wait_for(lambda: not self._buffer, timeout)
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 10.0) -> bool:
        """Write what is pending (retrying for up to ``timeout`` s), stop the thread; False if rows were left."""
        with self._cond:
            self._closing = True
            self._close_deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._wake.set()
        self._thread.join(timeout + 5.0)
        left = len(self._buffer)
        if left:
            log.error("ACD recorder closed with %d rows not written (database unavailable)", left)
        if self._engine is not None:
            self._engine.dispose()
        return left == 0

    # --- writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        attempt = 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._buffer or self._closing)
                if self._linger > 0 and not self._closing:
                    self._cond.wait_for(self._batch_ready, self._linger)
                if not self._buffer or (self._closing and time.monotonic() > self._close_deadline):
                    return
                batch = [self._buffer[i] for i in range(min(self._batch_size, len(self._buffer)))]
            try:
                self._write(batch)
            except (SQLAlchemyError, OSError) as exc:
                attempt += 1
                with self._cond:
                    self.failures += 1
                    if self._down_since is None:
                        self._down_since = time.monotonic()
                        log.warning("database unavailable for ACD records (%s); buffering and retrying",
                                    self._describe(exc))
                delay = self._backoff(attempt)
                if self._closing:
                    delay = min(delay, max(0.0, self._close_deadline - time.monotonic()))
                self._wake.wait(delay)
                continue
            with self._cond:
                for _ in batch:
                    self._buffer.popleft()
                self.written += len(batch)
                if self._down_since is not None:
                    log.warning("database for ACD records is back after %.1f s and %d failed attempts",
                                time.monotonic() - self._down_since, attempt)
                    self._down_since = None
                attempt = 0
                self._cond.notify_all()

    def _write(self, batch: list[tuple[type[Base], dict[str, Any]]]) -> None:
        if self._engine is None:
            self._engine = make_engine(self._url)
        engine = self._engine
        by_model: dict[type[Base], list[dict[str, Any]]] = {}
        for model, values in batch:
            by_model.setdefault(model, []).append(values)
        with engine.begin() as conn:
            for model, rows in by_model.items():
                table = model.__table__
                if engine.dialect.name in ("sqlite", "postgresql"):
                    if engine.dialect.name == "sqlite":
                        from sqlalchemy.dialects.sqlite import insert as dialect_insert
                    else:
                        from sqlalchemy.dialects.postgresql import insert as dialect_insert
                    conn.execute(dialect_insert(table).on_conflict_do_nothing(index_elements=["record_uid"]), rows)
                else:
                    for values in rows:
                        try:
                            with conn.begin_nested():
                                conn.execute(insert(table), values)
                        except IntegrityError:
                            pass  # already stored by an earlier attempt

    def _batch_ready(self) -> bool:
        return len(self._buffer) >= self._batch_size or self._closing or self._flushing > 0

    def _describe(self, exc: BaseException) -> str:
        """Exception class and first line, with the URL's password removed."""
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        password = make_url(self._url).password
        if password:
            text = text.replace(str(password), "***")
        return f"{exc.__class__.__name__}: {text}"


def last_agent_states(engine: Engine, agent_ids: Iterable[str]) -> dict[str, LastState]:
    """The last recorded state change of each agent (blocking: call it from a worker thread). One indexed
    query per agent, so a long history costs nothing more at start-up."""
    table = AgentStateRecord.__table__
    latest = (select(table.c.state, table.c.reason, table.c.changed_at, table.c.queue, table.c.uniqueid)
              .where(table.c.agent_id == bindparam("agent")).order_by(table.c.id.desc()).limit(1))
    out: dict[str, LastState] = {}
    with engine.connect() as conn:
        for agent_id in agent_ids:
            row = conn.execute(latest, {"agent": agent_id}).first()
            if row is not None:
                changed = row.changed_at if row.changed_at.tzinfo else row.changed_at.replace(tzinfo=UTC)
                out[agent_id] = LastState(agent_id, row.state, row.reason, changed.timestamp(), row.queue, row.uniqueid)
    return out
