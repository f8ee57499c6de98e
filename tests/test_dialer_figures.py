"""Campaign figures (issue 15, item 8): the tally's definitions (dialer/figures.py), today's figures from
the dialer's events across local midnight, the same figures from the records (LeadStore.figures on SQLite
and PostgreSQL), and what the wallboard frame carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from centre.database import upgrade
from cti.db import make_engine
from dialer.campaign import Lead
from dialer.events import AttemptAnswered, AttemptFinished, AttemptStarted
from dialer.figures import DayFigures, Tally, tally_attempts
from dialer.store import LeadStore

T0 = 1_767_261_600.0  # 2026-01-01 10:00 UTC

# (lead, result, a person answered, late)
ATTEMPTS = [("a", "connected", True, False), ("b", "connected", True, True), ("c", "abandoned", True, False),
            ("d", "machine", False, False), ("e", "busy", False, False), ("f", "noanswer", False, False),
            ("g", "hangup", False, False), ("h", "", False, False)]


def _expected() -> dict[str, Any]:
    return {"dials": 8, "answers": 5, "live_answers": 3, "contacts": 2, "abandons": 2, "machines": 1,
            "contact_rate": 2 / 8, "abandon_rate": 2 / 3}


def test_the_tally_of_records() -> None:
    t = tally_attempts((r, h, late) for _, r, h, late in ATTEMPTS)
    assert t.as_dict() == _expected()
    assert Tally().as_dict()["contact_rate"] is None and Tally().abandon_rate is None


def _events(ts: float) -> list[object]:
    out: list[object] = []
    for i, (lead, result, human, late) in enumerate(ATTEMPTS):
        ref = f"dial:c/{lead}/1"
        out.append(AttemptStarted(ts, "c", lead, ref, 1, f"+1555000{i}"))
        if human:
            out.append(AttemptAnswered(ts, "c", lead, ref, f"u{i}"))
        if result:
            out.append(AttemptFinished(ts, "c", lead, ref, 1, result, "done", None, late=late))
    return out


def test_today_turns_at_local_midnight() -> None:
    figures = DayFigures("America/New_York")  # 10:00 UTC is 05:00 there; midnight there is 05:00 UTC
    for e in _events(T0):
        figures.observe(e, T0)
    assert figures.tally(T0).as_dict() == _expected()
    next_day = T0 + 19 * 3600 + 1  # 00:00:01 in New York the next day
    assert figures.tally(next_day).dials == 0
    figures.observe(AttemptStarted(next_day, "c", "z", "dial:c/z/1", 1, "+15550009"), next_day)
    assert figures.tally(next_day + 1).dials == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'figures.sqlite3'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def test_the_same_figures_from_the_records(db_url: str) -> None:
    upgrade(db_url)
    store = LeadStore(make_engine(db_url))
    store.import_leads("c", [Lead(lead, f"+1555000{i}") for i, (lead, *_) in enumerate(ATTEMPTS)], T0)
    store.apply(e for e in _events(T0 + 60) if isinstance(e, AttemptStarted | AttemptAnswered | AttemptFinished))
    assert store.figures("c", T0, T0 + 3600).as_dict() == _expected()
    assert store.figures("c", T0 + 3600, T0 + 7200).dials == 0  # outside the period
    assert store.figures("other", T0, T0 + 3600).dials == 0
