"""Test support for the customer store: throw-away SQLite files and PostgreSQL schemas, migrated.

Used by tests and benchmarks only; never imported by the server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, text

from centre.database import upgrade
from cti.db import make_engine


def _with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def temporary_database(kind: Literal["sqlite", "postgresql"], tmp_dir: Path, postgres_url: str,
                       migrate: bool = True) -> Iterator[str]:
    """A fresh database URL migrated to head with ``centre.database.upgrade``: a SQLite file in ``tmp_dir`` or a new
    PostgreSQL schema (dropped on exit, with everything in it)."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_dir}/screenpop-{uuid.uuid4().hex[:8]}.sqlite3"
        if migrate:
            upgrade(url)
        yield url
        return
    schema = f"screenpop_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(postgres_url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = _with_search_path(postgres_url, schema)
        if migrate:
            upgrade(url)
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


def database_fixtures(postgres_url: str) -> tuple[Any, Any]:
    """``(db_url, store)`` pytest fixtures for a test module: ``db_url`` is module-scoped and parametrised
    over SQLite and PostgreSQL; ``store`` is a ``CustomerStore`` on it with every table emptied first.

    Use as ``db_url, store = database_fixtures(POSTGRES_URL)`` at module level.
    """
    import pytest

    from screenpop.store import CustomerStore

    @pytest.fixture(scope="module", params=["sqlite", "postgresql"])
    def db_url(request: Any, tmp_path_factory: Any) -> Iterator[str]:
        with temporary_database(request.param, tmp_path_factory.mktemp("screenpop"), postgres_url) as url:
            yield url

    @pytest.fixture
    def store(db_url: str) -> Iterator[CustomerStore]:
        engine = make_engine(db_url)
        clear_tables(engine)
        yield CustomerStore(engine)
        engine.dispose()

    return db_url, store
