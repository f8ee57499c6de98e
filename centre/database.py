"""The product's database schema: Alembic revisions (``centre/migrations/versions``) over every package's
models, and ``upgrade`` to bring a database to them. Blocking; callers run it before the loop or in a thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

# The key of the PostgreSQL advisory lock that ``upgrade`` holds while it migrates ("cti" in ASCII): several
# nodes starting at once against one database migrate it one after the other.
MIGRATION_LOCK = 0x637469


def import_models() -> None:
    """Register every package's tables on ``cti.db.Base`` (Alembic compares them with the schema)."""
    import acd.tables  # noqa: F401
    import centre.audit  # noqa: F401
    import dialer.store  # noqa: F401
    import screenpop.store  # noqa: F401


def alembic_config(url: str) -> object:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def schema_revision(url: str) -> str | None:
    """The Alembic revision the database at ``url`` is at (None: no schema yet)."""
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


@contextmanager
def migration_lock(url: str) -> Iterator[None]:
    """On PostgreSQL, hold a session advisory lock (``MIGRATION_LOCK``) for the block: one process at a time
    migrates, the others wait and then find the schema at its head. Two ``cti serve`` nodes started together on
    a new database both tried to create ``alembic_version`` and one of them failed to start. SQLite: nothing (a
    file is one server's)."""
    if not url.startswith("postgresql"):
        yield
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                conn.commit()
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the database at ``url`` to ``revision`` (creates it from nothing); (revision before, after).
    Alembic's own INFO lines are silenced by ``centre.cli.setup_logging``; callers say what changed. On
    PostgreSQL, processes that upgrade one database at once do it one after the other (``migration_lock``)."""
    from alembic import command

    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    with migration_lock(url):
        before = schema_revision(url) if not url.startswith("sqlite:///:memory:") else None
        command.upgrade(alembic_config(url), revision)  # type: ignore[arg-type]
        after = schema_revision(url) if not url.startswith("sqlite:///:memory:") else revision
    return before, after
