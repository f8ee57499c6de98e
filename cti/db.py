"""Database plumbing shared by every package: the declarative Base and engines.

Models live with the package that owns them (``acd/tables.py``, ``screenpop/store.py``, ...) and
register on ``Base``. The schema of the whole product (the Alembic revisions and ``upgrade``) belongs to
the application: ``centre/database.py``.
This module never runs on the event loop's hot path; callers run database work in a thread pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, Pool, create_engine, event
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def make_engine(url: str, echo: bool = False, poolclass: type[Pool] | None = None) -> Engine:
    """Create an engine; for SQLite, create the file's folder and enable WAL and foreign keys. ``poolclass``:
    SQLAlchemy's default for the URL unless given (a one-shot run such as a migration takes ``NullPool``)."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    # A pooled connection to a server is checked before use (it may have been dropped while idle); a
    # SQLite file cannot be, so it skips that extra query per checkout.
    options: dict[str, Any] = {} if poolclass is None else {"poolclass": poolclass}
    engine = create_engine(url, echo=echo, pool_pre_ping=not url.startswith("sqlite"), **options)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()
    return engine


def describe_url(url: str) -> str:
    """The database URL for a person: password hidden, a relative SQLite path made absolute."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return "an unparseable database URL"
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return f"{parsed.drivername}:///{Path(parsed.database).resolve()}"
    return parsed.render_as_string(hide_password=True)


def retry_backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...) of writes held while the database is unreachable:
    0.5 s doubling up to 30 s (the ACD's recorder, the call records' writer, the dialer)."""
    return float(min(30.0, 0.5 * 2 ** min(attempt - 1, 10)))


def is_unavailable(exc: BaseException) -> bool:
    """Whether a database error says the database could not be reached (refused, dropped, timed out, a
    connection the pool had that died) rather than that the statement was wrong: the first is worth retrying
    as it is, the second never is."""
    from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

    if isinstance(exc, (DisconnectionError, OSError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError))
