"""The supervisors' audit trail (centre/audit.py, migration 0008): the table the models describe on SQLite and
PostgreSQL, rows appended and read back, a downgrade that removes it; the store has no way to change a row."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from centre.audit import AuditEntry, AuditStore
from centre.database import alembic_config, import_models, schema_revision, upgrade
from cti.db import Base, make_engine

T0 = 1_767_261_600.0


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


def test_migration_matches_the_model_and_downgrades(db_url: str) -> None:
    """0009 chains after 0008_call_recording, creates exactly the model's table and indexes, and its downgrade
    drops them (the dialer's tables stay)."""
    before, after = upgrade(db_url)
    assert before is None and after.startswith(("0009_", "0010_", "0011_", "0012_"))
    import_models()
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diffs = [d for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
                     if "supervisor_audit" in str(d)]
            assert diffs == []
            assert "supervisor_audit" in inspect(conn).get_table_names()
        command.downgrade(alembic_config(db_url), "0008_call_recording")  # type: ignore[arg-type]
        assert schema_revision(db_url) == "0008_call_recording"
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            assert "supervisor_audit" not in names and "dialer_dnc" in names
        upgrade(db_url)  # and up again
        assert schema_revision(db_url) == after
    finally:
        engine.dispose()


def test_rows_are_appended_and_read_back_without_secrets(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        store = AuditStore(engine)
        first = store.append(AuditEntry(T0, "sup", "force_not_ready", "agent:1001", {"agent_id": "1001",
                                        "reason": "meeting"}))
        second = store.append(AuditEntry(T0 + 1, "sup", "set_campaign", "campaign:renewals",
                                         {"campaign": "renewals", "max_abandon_rate": 0.05, "password": "x"},
                                         "refused", "over-legal-cap: 0.05 is over us_tsr"))
        assert second > first
        latest, earliest = store.entries()
        assert earliest == AuditEntry(T0, "sup", "force_not_ready", "agent:1001",
                                      {"agent_id": "1001", "reason": "meeting"}, "ok", "")
        assert latest.result == "refused" and latest.reason.startswith("over-legal-cap")
        assert latest.params == {"campaign": "renewals", "max_abandon_rate": 0.05}  # never a secret
        assert latest.at == pytest.approx(T0 + 1)
        assert [e.action for e in store.entries(target="agent:1001")] == ["force_not_ready"]
        assert store.entries(supervisor_id="other") == []
    finally:
        engine.dispose()


def test_the_store_only_appends() -> None:
    """Append-only: the store offers no update nor delete (the console reaches the table through it only)."""
    public = {name for name in dir(AuditStore) if not name.startswith("_")}
    assert public == {"append", "entries"}
