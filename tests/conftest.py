"""Shared fixtures: paths to the real Asterisk transcripts and loopback service URLs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cti.reactor import install_reactor

# The project runs on Twisted's asyncio reactor; install it before any test module (or
# twisted.trial) imports the default one.
install_reactor()

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("CTI_FIXTURES", ROOT.parent / "shared" / "fixtures" / "asterisk"))
POSTGRES_URL = os.environ.get("CTI_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CTI_TEST_REDIS", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"Asterisk transcripts not found at {FIXTURES} (set CTI_FIXTURES)")
    return FIXTURES
