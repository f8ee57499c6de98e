"""The ``sim:`` configuration section: seed, speed, inbound traffic, callers, agents' phones, outbound
customers and FastAGI limits for the simulated PBX. Every field has a default, so ``sim:`` may be
omitted. No numpy, no Twisted; the only I/O is looking the time zone up in tzdata.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from cti.config_types import ConfigModel, Loc, TimeZoneName, expected
from sim.core_sounds import CORE_SOUNDS_EN

Probability = Annotated[float, Field(ge=0.0, le=1.0, json_schema_extra={"expected": "a probability 0-1"})]
Seconds = Annotated[float, Field(ge=0.0, json_schema_extra={"expected": "a number of seconds >= 0"})]
PositiveSeconds = Annotated[float, Field(gt=0.0, json_schema_extra={"expected": "a number of seconds > 0"})]
Dtmf = Annotated[str, Field(pattern=r"^[0-9*#A-Da-d]*$", max_length=64,
                            json_schema_extra={"expected": "DTMF digits (0-9 * # A-D), at most 64"})]


class MeanSd(ConfigModel):
    """A duration drawn from a normal distribution, truncated at ``min_s``."""

    mean_s: Seconds = 3.0
    sd_s: Seconds = 1.0
    min_s: Seconds = 0.0


class Uniform(ConfigModel):
    """A duration drawn uniformly from ``[min_s, max_s]``."""

    min_s: Seconds = 0.0
    max_s: Seconds = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.max_s < self.min_s:
            raise ValueError(f"max_s {self.max_s:g} is below min_s {self.min_s:g}")
        return self


class LogNormal(ConfigModel):
    """A duration drawn from a lognormal distribution given by its median and sigma (log scale)."""

    median_s: PositiveSeconds = 180.0
    sigma: float = expected("a log-scale sigma 0-3", default=0.6, ge=0.0, le=3.0)

    @classmethod
    def from_mean_sd(cls, mean_s: float, sd_s: float) -> LogNormal:
        """The lognormal with this mean and standard deviation (seconds)."""
        if mean_s <= 0 or sd_s < 0:
            raise ValueError("a lognormal needs a mean > 0 and a standard deviation >= 0")
        var = math.log1p((sd_s / mean_s) ** 2)
        return cls(median_s=mean_s / math.sqrt(1.0 + (sd_s / mean_s) ** 2), sigma=math.sqrt(var))


class InboundNumber(ConfigModel):
    """One dialled number (DID) with its arrival rate and the IVR flow its callers enter."""

    did: str = expected("a dialled number such as +15550100", pattern=r"^\+?[0-9]{2,20}$")
    rate_per_hour: float = expected("calls per hour >= 0", default=60.0, ge=0.0, le=1_000_000.0)
    flow: str = expected("an IVR flow name", default="main", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    profile: list[Annotated[float, Field(ge=0.0)]] | None = expected(
        "24 hourly multipliers >= 0 (hour 0 first)", default=None, min_length=24, max_length=24)


class IvrScript(ConfigModel):
    """What one kind of caller presses at successive IVR prompts (e.g. ``["1", "12345#"]``)."""

    weight: float = expected("a weight > 0", default=1.0, gt=0.0)
    keys: list[Dtmf] = expected("a list of DTMF strings (0-9 * # A-D), one per prompt",
                                default_factory=lambda: ["1"], max_length=32)


class CallerSettings(ConfigModel):
    """Inbound callers: who they are, how they walk the IVR and how long they wait."""

    patience_mean_s: PositiveSeconds = 120.0
    think_time_s: PositiveSeconds = 1.5
    think_time_sigma: float = expected("a log-scale sigma 0-3", default=0.5, ge=0.0, le=3.0)
    hangup_in_ivr_prob: Probability = 0.02
    hangup_in_ivr_within_s: PositiveSeconds = 30.0
    ivr_scripts: list[IvrScript] = Field(default_factory=lambda: [IvrScript()], min_length=1, max_length=1000)
    known_customer_share: Probability = 0.3
    known_customers: list[str] = expected(
        "caller numbers of known customers (E.164)", default_factory=list, max_length=1_000_000)
    country_prefix: str = expected("a prefix for random caller numbers such as +1555",
                                   default="+1555", pattern=r"^\+?[0-9]{1,8}$")


class AgentPhoneSettings(ConfigModel):
    """Agents' phones: how an offered call rings out, how long talks and wrap-ups last."""

    answer_delay_s: MeanSd = MeanSd(mean_s=3.0, sd_s=1.5, min_s=0.5)
    no_answer_prob: Probability = 0.03
    busy_prob: Probability = 0.0
    unavailable_prob: Probability = 0.0
    talk_time: LogNormal = LogNormal(median_s=180.0, sigma=0.6)
    wrapup_s: MeanSd = MeanSd(mean_s=15.0, sd_s=5.0, min_s=0.0)


_OUTCOMES = ("answer", "busy", "noanswer", "congestion", "machine")


class OutboundSettings(ConfigModel):
    """Outbound customers: how a dialled number ends (probabilities summing to 1) and how long it takes."""

    answer: Probability = 0.55
    busy: Probability = 0.08
    noanswer: Probability = 0.22
    congestion: Probability = 0.03
    machine: Probability = 0.12
    ring_time_s: MeanSd | Uniform = MeanSd(mean_s=10.0, sd_s=5.0, min_s=1.0)  # before an answer (person, machine)
    busy_after_s: MeanSd = MeanSd(mean_s=2.0, sd_s=1.0, min_s=0.2)
    noanswer_ring_s: PositiveSeconds = 60.0
    talk_time: LogNormal = LogNormal(median_s=90.0, sigma=0.7)
    machine_greeting_s: MeanSd = MeanSd(mean_s=12.0, sd_s=4.0, min_s=2.0)
    patience_mean_s: PositiveSeconds = 5.0
    # A person who answered hangs up after this many seconds of silence (from their answer) if no agent is
    # there yet; None: exponential with mean ``patience_mean_s``.
    silence_patience_s: PositiveSeconds | None = None
    # How often AMD() classifies the far end right (a person as HUMAN, a machine as MACHINE); the rest of the
    # time it says the other thing, after the time it takes to say that.
    amd_accuracy: Probability = 1.0

    def sum_error(self) -> str | None:
        """Why the five outcome probabilities are unusable (they must sum to 1), or None."""
        total = sum(getattr(self, k) for k in _OUTCOMES)
        if abs(total - 1.0) > 1e-6:
            parts = " + ".join(f"{k} {getattr(self, k):g}" for k in _OUTCOMES)
            return f"outcome probabilities must sum to 1: {parts} = {total:g}"
        return None

    def semantic_errors(self) -> list[tuple[Loc, str]]:
        error = self.sum_error()
        return [((), error)] if error else []

    def probabilities(self) -> tuple[float, ...]:
        """The five outcome probabilities in the order of ``OUTCOMES``."""
        return tuple(getattr(self, k) for k in _OUTCOMES)


OUTCOMES: tuple[str, ...] = _OUTCOMES


class AgiSettings(ConfigModel):
    """How the simulated Asterisk runs FastAGI sessions: limits and simulated media durations."""

    max_line_bytes: int = expected("a line length cap in bytes 80-1048576", default=8192, ge=80, le=1_048_576)
    max_commands: int = expected("a command count cap 1-1000000", default=10_000, ge=1, le=1_000_000)
    connect_timeout_s: PositiveSeconds = 2.0
    default_prompt_s: PositiveSeconds = 2.0
    prompts: dict[str, PositiveSeconds] = expected(
        "prompt name -> length in seconds", default_factory=dict, max_length=100_000)
    version: str = expected("the Asterisk version the env block reports", default="22.10.1", min_length=1)
    # What the PBX can play; any other name is a missing file (STREAM FILE / GET DATA answer -1 at once).
    # Names given a length in ``prompts`` exist too; "any" makes every name exist.
    known_prompts: frozenset[str] | Literal["any"] = expected(
        "a list of prompt names the simulated PBX has (default: Asterisk's core English sounds), or 'any'",
        default=CORE_SOUNDS_EN)

    def has_prompt(self, name: str) -> bool:
        """Whether the simulated PBX can open the sound ``name``."""
        return self.known_prompts == "any" or name in self.known_prompts or name in self.prompts

    def sound_ids(self) -> frozenset[str]:
        """The sounds ``core show sounds`` lists ("any" lists the core sounds and the named prompts)."""
        known = CORE_SOUNDS_EN if self.known_prompts == "any" else self.known_prompts
        return known | frozenset(self.prompts)


class SimSection(ConfigModel):
    """Simulator settings: seed, clock speed, arrival rates and the people models."""

    seed: int = expected("an integer seed >= 0", default=1, ge=0, le=2**63 - 1)
    speed: float | Literal["max"] = 1.0
    timezone: TimeZoneName = expected("an IANA time zone for arrival profiles", default="UTC", min_length=1)
    inbound: list[InboundNumber] = Field(
        default_factory=lambda: [InboundNumber(did="+15550100", rate_per_hour=60.0)], max_length=10_000)
    callers: CallerSettings = CallerSettings()
    agents: AgentPhoneSettings = AgentPhoneSettings()
    outbound: OutboundSettings = OutboundSettings()
    agi: AgiSettings = AgiSettings()

    @field_validator("speed", mode="before")
    @classmethod
    def _speed(cls, value: object) -> float | str:
        if value == "max":
            return "max"
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("expected a speed factor > 0 (1 = real time) or 'max'")
        try:
            speed = float(value)
        except ValueError:
            raise ValueError("expected a speed factor > 0 (1 = real time) or 'max'") from None
        if not 0.0 < speed <= 1_000_000.0:
            raise ValueError("expected a speed factor > 0 and <= 1000000, or 'max'")
        return speed

    def semantic_errors(self) -> list[tuple[Loc, str]]:
        errors: list[tuple[Loc, str]] = [
            (("outbound", *loc), msg) for loc, msg in self.outbound.semantic_errors()]
        seen: dict[str, int] = {}
        for i, number in enumerate(self.inbound):
            if number.did in seen:
                errors.append((("inbound", i, "did"),
                               f"duplicate did {number.did!r} (also inbound[{seen[number.did]}])"))
            seen.setdefault(number.did, i)
        return errors

    @property
    def virtual(self) -> bool:
        """True when the simulation runs in virtual time (``speed: max``)."""
        return self.speed == "max"
