"""Test support for the customer store: throw-away SQLite files and PostgreSQL schemas, migrated.

Used by tests and benchmarks only; never imported by the server.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine, text

from cti.db import make_engine

MIGRATION = Path(__file__).resolve().parent.parent / "cti" / "migrations" / "versions" / "0003_screenpop.py"


def run_screenpop_migration(engine: Engine, direction: Literal["upgrade", "downgrade"] = "upgrade") -> None:
    """Run only revision 0003_screenpop's ``upgrade()`` or ``downgrade()`` on ``engine`` (no version table).

    Lets the store's tests exercise the real migration without depending on the other packages' revisions.
    """
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    spec = importlib.util.spec_from_file_location("cti_migration_0003_screenpop", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        getattr(module, direction)()


def _with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def temporary_database(kind: Literal["sqlite", "postgresql"], tmp_dir: Path, postgres_url: str,
                       migrate: bool = True) -> Iterator[str]:
    """A fresh database URL with the screen-pop tables: a SQLite file in ``tmp_dir`` or a new PostgreSQL
    schema (dropped on exit, with everything in it)."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_dir}/screenpop-{uuid.uuid4().hex[:8]}.sqlite3"
        engine = make_engine(url)
        try:
            if migrate:
                run_screenpop_migration(engine)
        finally:
            engine.dispose()
        yield url
        return
    schema = f"screenpop_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(postgres_url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = _with_search_path(postgres_url, schema)
        engine = make_engine(url)
        try:
            if migrate:
                run_screenpop_migration(engine)
        finally:
            engine.dispose()
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def clear_tables(engine: Engine) -> None:
    """Delete every row of the screen-pop tables (children first)."""
    with engine.begin() as conn:
        for table in ("customer_interactions", "customer_phones", "customer_accounts", "customers"):
            conn.execute(text(f"DELETE FROM {table}"))
