"""A campaign's figures (issue 15, item 8), pure: dials, answers, live answers, contacts, abandons, and
the rates made of them. No I/O, no clock (``now`` is passed in).

One tally, two sources, the same definitions:

* live, today (since local midnight in the campaign's time zone): ``DayFigures`` counts the dialer's
  events as they happen (``AttemptStarted``, ``AttemptAnswered``, ``AttemptFinished``);
* from the records, for any period: ``tally_attempts`` over the ``dialer_attempts`` rows
  (``dialer.store.LeadStore.figures``), so the database holds every figure without a table of its own.

Definitions: a *dial* is an attempt started; an *answer*, an attempt the far end answered (a person or a
machine: results connected, abandoned, hangup, machine); a *live answer*, one a person answered
(AttemptAnswered: AMD said human, or the person was queued); a *contact*, a person connected to an agent
(result connected); an *abandon*, a person no agent took within the safe-harbour time (result
abandoned, or connected late). ``contact_rate`` = contacts / dials; ``abandon_rate`` = abandons / live
answers (the rate the law caps).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from dialer.events import AttemptAnswered, AttemptFinished, AttemptStarted
from dialer.pacer import PacingDecision

ANSWERED_RESULTS = frozenset({"connected", "abandoned", "hangup", "machine"})


@dataclass(slots=True)
class Tally:
    dials: int = 0
    answers: int = 0
    live_answers: int = 0
    contacts: int = 0
    abandons: int = 0
    machines: int = 0

    def finished(self, result: str, late: bool) -> None:
        """Count an attempt's end (its start and live answer are counted when they happen)."""
        self.answers += result in ANSWERED_RESULTS
        self.contacts += result == "connected"
        self.abandons += result == "abandoned" or (result == "connected" and late)
        self.machines += result == "machine"

    @property
    def contact_rate(self) -> float | None:
        return self.contacts / self.dials if self.dials else None

    @property
    def abandon_rate(self) -> float | None:
        return self.abandons / self.live_answers if self.live_answers else None

    def as_dict(self) -> dict[str, float | int | None]:
        return {**asdict(self), "contact_rate": self.contact_rate, "abandon_rate": self.abandon_rate}


def tally_attempts(rows: Iterable[tuple[str, bool, bool]]) -> Tally:
    """The tally of attempt records: (result, a person answered, late) each (an attempt still open has
    result "")."""
    t = Tally()
    for result, human, late in rows:
        t.dials += 1
        t.live_answers += human
        if result:
            t.finished(result, late)
    return t


class DayFigures:
    """Today's tally of one campaign from its events; the day turns at local midnight in ``timezone``."""

    def __init__(self, timezone: str) -> None:
        try:
            self.zone = ZoneInfo(timezone)
        except (ValueError, KeyError, OSError):
            self.zone = ZoneInfo("UTC")
        self.day = ""
        self.today = Tally()

    def _at(self, now: float) -> Tally:
        day = datetime.fromtimestamp(now, self.zone).date().isoformat()
        if day != self.day:
            self.day, self.today = day, Tally()
        return self.today

    def observe(self, event: object, now: float) -> None:
        if isinstance(event, AttemptStarted):
            self._at(now).dials += 1
        elif isinstance(event, AttemptAnswered):
            self._at(now).live_answers += 1
        elif isinstance(event, AttemptFinished):
            self._at(now).finished(event.result, event.late)

    def tally(self, now: float) -> Tally:
        """Today's tally at ``now`` (a new, empty one after midnight)."""
        return self._at(now)


def pacing_figures(decision: PacingDecision | None) -> dict[str, Any] | None:
    """The pacer's last decision as the wallboard shows it: lines to dial, lines up, the reason, the mode it
    paced in (``step``: the campaign's mode, or the step down: ``progressive``, ``preview``) and the agents
    it gave previews to instead of lines (None before the first decision)."""
    if decision is None:
        return None
    return {"dial": decision.dial, "target": decision.target, "reason": decision.reason, "step": decision.step,
            "previews": decision.previews}
