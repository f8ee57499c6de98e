"""What the statistics are computed against: the centre's time zone, the interval, the short-abandon
threshold, the service-level definition, the queues' targets, the not-ready allowances. ``StatsSection`` is
the configuration file's ``statistics:`` section; ``KpiSettings`` the values the core runs on (the
application makes them from the section, the ACD's time zone, queues and teams)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from pydantic import Field

from cti.config_types import ConfigModel, Loc, expected


class AbandonsInServiceLevel(StrEnum):
    """How abandoned calls enter the service level's denominator (short abandons never do).

    * ``counted``: answered within the target / (answered + abandoned): every (long) abandon counts against;
    * ``excluded``: answered within the target / answered: abandons are left out;
    * ``after_target``: answered within the target / (answered + abandoned after the target): a caller who
      hung up before the target was reached is left out, one who waited longer counts against.
    """

    COUNTED = "counted"
    EXCLUDED = "excluded"
    AFTER_TARGET = "after_target"


@dataclass(frozen=True, slots=True)
class Target:
    """A queue's service-level target: ``percent`` of calls answered within ``seconds``."""

    percent: float = 80.0
    seconds: float = 20.0


@dataclass(frozen=True, slots=True)
class KpiSettings:
    """``timezone``: the centre's (the day starts at its local midnight); ``interval``: seconds of the
    reporting interval (aligned on local midnight); ``short_abandon``: callers who hang up within this many
    seconds are short abandons, counted apart; ``bucket``: resolution of the sliding windows, seconds;
    ``targets``: per queue (others get ``Target()``); ``not_ready_limits``: allowed seconds per day per
    not-ready reason (adherence); ``members``: queue -> its agents; ``teams``: team -> its agents."""

    timezone: str = "UTC"
    interval: float = 900.0
    short_abandon: float = 5.0
    abandons: AbandonsInServiceLevel = AbandonsInServiceLevel.COUNTED
    bucket: float = 10.0
    targets: Mapping[str, Target] = field(default_factory=lambda: MappingProxyType({}))
    not_ready_limits: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    members: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    teams: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not 60 <= self.interval <= 86400 or 86400 % self.interval:
            raise ValueError(f"interval must divide a day into whole intervals of 1 min or more, got {self.interval}")
        if not 1 <= self.bucket <= 60 or 900 % self.bucket:
            raise ValueError(f"bucket must divide 15 minutes, 1-60 s, got {self.bucket}")
        if self.short_abandon < 0:
            raise ValueError("short_abandon must be >= 0")

    def target(self, queue: str) -> Target:
        return self.targets.get(queue) or Target()


class StatsSection(ConfigModel):
    """The ``statistics:`` section: the definitions' knobs (``kpi.definitions``)."""

    short_abandon: float = expected("seconds >= 0: callers who hang up sooner are short abandons, counted apart",
                                    default=5.0, ge=0, le=600)
    service_level_abandons: Literal["counted", "excluded", "after_target"] = "counted"
    interval_minutes: Literal[5, 10, 15, 30, 60] = 15
    not_ready_limits: dict[str, float] = Field(default_factory=dict)  # reason -> allowed minutes per day

    def semantic_errors(self) -> list[tuple[Loc, str]]:
        return [(("not_ready_limits", reason), "expected minutes >= 0")
                for reason, minutes in self.not_ready_limits.items() if minutes < 0]
