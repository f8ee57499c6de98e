"""The product's database schema: Alembic revisions (``centre/migrations/versions``) over every package's
models, and ``upgrade`` to bring a database to them. Blocking; callers run it before the loop or in a thread.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine


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


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the database at ``url`` to ``revision`` (creates it from nothing); (revision before, after).
    Alembic's own INFO lines are silenced by ``centre.cli.setup_logging``; callers say what changed."""
    from alembic import command

    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    before = schema_revision(url) if not url.startswith("sqlite:///:memory:") else None
    command.upgrade(alembic_config(url), revision)  # type: ignore[arg-type]
    after = schema_revision(url) if not url.startswith("sqlite:///:memory:") else revision
    return before, after
