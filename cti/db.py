"""Database plumbing shared by every package: the declarative Base, engines, and Alembic upgrade.

Models live with the package that owns them (``acd/records.py``, ``screenpop/store.py``, ...) and
register on ``Base``. Schema changes go through Alembic revisions in ``cti/migrations/versions``.
This module never runs on the event loop's hot path; callers run database work in a thread pool.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase

# Modules that define tables on Base; imported before Alembic compares or creates the schema.
MODEL_MODULES = ("acd.records", "screenpop.store", "dialer.store")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def import_models() -> None:
    for name in MODEL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def make_engine(url: str, echo: bool = False) -> Engine:
    """Create an engine; for SQLite, create the file's folder and enable WAL and foreign keys."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    # A pooled connection to a server is checked before use (it may have been dropped while idle); a
    # SQLite file cannot be, so it skips that extra query per checkout.
    engine = create_engine(url, echo=echo, pool_pre_ping=not url.startswith("sqlite"))
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()
    return engine


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


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the database at ``url`` to ``revision`` (creates it from nothing); (revision before, after).
    Alembic's own INFO lines are silenced by ``cti.cli.setup_logging``; callers say what changed."""
    from alembic import command

    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    before = schema_revision(url) if not url.startswith("sqlite:///:memory:") else None
    command.upgrade(alembic_config(url), revision)  # type: ignore[arg-type]
    after = schema_revision(url) if not url.startswith("sqlite:///:memory:") else revision
    return before, after


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
