"""Shared fixtures: paths to the real Asterisk transcripts and loopback service URLs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from cti.reactor import install_reactor

# The project runs on Twisted's asyncio reactor; install it before any test module (or
# twisted.trial) imports the default one.
install_reactor()

ROOT = Path(__file__).resolve().parent.parent
# The transcripts live inside the repository: a user's fresh clone has nothing beside it.
FIXTURES = Path(os.environ.get("CTI_FIXTURES", ROOT / "tests" / "fixtures" / "asterisk"))
POSTGRES_URL = os.environ.get("CTI_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CTI_TEST_REDIS", "redis://127.0.0.1:6379/15")


pytest_plugins = ["tests.ami_tls"]  # the TLS fixtures (certificate, tls_ami) of the AMI client tests


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"Asterisk transcripts not found at {FIXTURES} (set CTI_FIXTURES)")
    return FIXTURES


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database per test (dropped afterwards) so parallel runs never clash."""
    name = f"acd_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL at {make_url(POSTGRES_URL).host} is not usable: {exc.__class__.__name__}")
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
