"""The ``dialer:`` configuration section: outbound campaigns. Pydantic models only; no I/O, no clock.

Must not import the dialer engine (``dialer.campaign``, ``dialer.pacer``) nor anything with I/O; the only
outside look-up is the time zone in tzdata, as the other sections do.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from cti.config_types import ConfigModel, Loc, TimeZoneName, expected
from cti.recording import POLICY_EXPECTED, RecordingPolicy

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                            json_schema_extra={"expected": "a name (letters, digits, _ . -), at most 64"})]
RetrySeconds = Annotated[float, Field(ge=0, le=30 * 86400,
                                      json_schema_extra={"expected": "a number of seconds 0-2592000 (30 days)"})]
ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$",
                                 json_schema_extra={"expected": "a local time HH:MM (00:00-24:00)"})]
# What may travel in an AMI header value: no line breaks (header injection), bounded length.
HeaderValue = Annotated[str, Field(pattern=r"^[^\r\n]{0,80}$",
                                   json_schema_extra={"expected": "text of at most 80 characters, one line"})]
SoundName = Annotated[str, Field(
    pattern=r"^[A-Za-z0-9_./-]{1,120}$",
    json_schema_extra={"expected": "an Asterisk sound file name (letters, digits, _ . / -)"})]

#: Attempt results that may be retried, in the order the docs list them.
RETRY_RESULTS = ("busy", "noanswer", "congestion", "machine", "failed", "hangup", "abandoned", "unknown")


class RetryAfter(ConfigModel):
    """Seconds before a lead is dialled again after an attempt ended with each result."""

    busy: RetrySeconds = 300.0
    noanswer: RetrySeconds = 1800.0
    congestion: RetrySeconds = 120.0
    machine: RetrySeconds = 7200.0
    failed: RetrySeconds = 600.0
    hangup: RetrySeconds = 1800.0  # answered, then hung up before answering-machine detection finished
    abandoned: RetrySeconds = 3600.0  # a person answered and no agent took the call in time
    unknown: RetrySeconds = 900.0  # the server lost track of the attempt (crash, AMI outage): retried once

    def seconds(self, result: str) -> float:
        return float(getattr(self, result))


#: The outer limits of any calling window, local time (the US TSR's 8 a.m.-9 p.m.): a window reaching outside
#: them is refused at config load.
EARLIEST_CALL = "08:00"
LATEST_CALL = "21:00"


class CallingWindow(ConfigModel):
    """Local hours during which a lead may be called (in the lead's time zone, else the campaign's); never
    outside 08:00-21:00. A lead whose number spans several zones is called only when it is inside the window
    in every one of them."""

    start: ClockTime = "09:00"
    end: ClockTime = "20:00"

    @model_validator(mode="after")
    def _ordered(self) -> CallingWindow:
        if _minutes(self.start) >= _minutes(self.end):
            raise ValueError(f"the window must end after it starts: {self.start}-{self.end}")
        if _minutes(self.start) < _minutes(EARLIEST_CALL) or _minutes(self.end) > _minutes(LATEST_CALL):
            raise ValueError(f"the window {self.start}-{self.end} reaches outside {EARLIEST_CALL}-{LATEST_CALL} "
                             "local time, the hours in which calling is allowed")
        return self

    def bounds(self) -> tuple[int, int]:
        """(start, end) in minutes after local midnight."""
        return _minutes(self.start), _minutes(self.end)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


#: The rules a campaign is held to (``dialer.compliance`` applies them; docs/dialer.md, "The law").
PolicyName = Literal["us_tsr", "uk_ofcom", "custom"]
WindowKind = Literal["rolling_30d", "rolling_24h", "calendar_day"]
LAW_CAP = 0.03  # us_tsr and uk_ofcom: at most 3% abandoned
LAW_MIN_RING = 15.0  # us_tsr and uk_ofcom: an unanswered call rings at least 15 s
LAW_MESSAGE_WITHIN = 2.0  # us_tsr and uk_ofcom: the recorded message starts within 2 s of the greeting
LAW_POLICIES: dict[str, str] = {"us_tsr": "FTC TSR 16 CFR 310.4(b)(4)", "uk_ofcom": "Ofcom persistent misuse (2016)"}


class CustomPolicy(ConfigModel):
    """The rules of ``policy: custom`` (the cap is the campaign's ``max_abandon_rate``)."""

    window: WindowKind = "rolling_24h"
    min_ring: float = expected("seconds 0-120", default=15.0, ge=0.0, le=120.0)
    message_within: float = expected("seconds 0.5-30", default=2.0, ge=0.5, le=30.0)
    count_false_machines: bool = False  # people AMD took for machines count as live and abandoned
    redial_after_abandon_hours: float = expected("hours 0-720 (0: no rule)", default=0.0, ge=0.0, le=720.0)

#: Dial modes: ``preview`` (an agent sees the lead first), ``progressive`` (one line per idle agent),
#: ``predictive`` (model-based, ``dialer.pacer.pace_predictive``), ``ratio`` (``ratio`` lines per idle agent).
DIAL_MODES = ("progressive", "predictive", "ratio", "preview")
DialMode = Literal["progressive", "predictive", "ratio", "preview"]


class PredictiveSettings(ConfigModel):
    """The predictive pacer's knobs: what it aims at, and what it assumes until it has measured."""

    target_share: float = expected("the share of the abandon cap to aim at, 0.3-1 (0.8: 2.4% of a 3% cap)",
                                   default=0.8, ge=0.3, le=1.0)
    fallback_share: float = expected("the share of the cap under which the window's remaining budget makes "
                                     "the pacer fall back to progressive, 0-1", default=0.2, ge=0.0, le=1.0)
    amd_accuracy: float = expected("the share of answering-machine verdicts that are right, 0.5-1", default=1.0,
                                   ge=0.5, le=1.0)
    count_amd_misses: bool = True  # a person AMD takes for a machine counts as abandoned (Ofcom)
    min_samples: int = expected("measurements before priors stop counting (and answers measured "
                                "progressively before dialling ahead), 1-10000", default=30, ge=1, le=10_000)
    horizon_quantile: float = expected("the quantile of dial-to-person times the pacer plans for, 0.05-0.95 "
                                       "(lower: more careful)", default=0.25, ge=0.05, le=0.95)
    prior_answer_rate: float = expected("the answer probability assumed until measured, 0.01-1", default=0.25,
                                        ge=0.01, le=1.0)
    prior_human_share: float = expected("the share of answers that are people until measured, 0.01-1",
                                        default=0.85, ge=0.01, le=1.0)
    prior_talk: float = expected("seconds of talk assumed until measured, 1-7200", default=120.0, ge=1.0, le=7200.0)
    prior_wrap: float = expected("seconds of wrap-up assumed until measured, 0-3600", default=10.0, ge=0.0,
                                 le=3600.0)
    prior_answer_time: float = expected("seconds from dial to answer assumed until measured, 0.5-120",
                                        default=8.0, ge=0.5, le=120.0)

    @model_validator(mode="after")
    def _shares(self) -> PredictiveSettings:
        if self.fallback_share >= self.target_share:
            raise ValueError(f"fallback_share ({self.fallback_share}) must be below target_share "
                             f"({self.target_share}): the pacer falls back before it reaches its aim")
        return self


class CampaignSettings(ConfigModel):
    """One outbound campaign: whom to call, through which trunk, for which ACD queue's agents."""

    name: Name = expected("a campaign name (letters, digits, _ . -)")
    queue: Name = expected("the ACD queue whose agents take this campaign's calls")
    enabled: bool = True
    leads: str = expected('"demo" (the demo customers), "store" (only leads imported with cti leads import) or '
                          'the path of a CSV file of leads', min_length=1,
                          max_length=4096)
    demo_leads: int = expected("a number of demo leads 1-100000", default=300, ge=1, le=100_000)
    server: Name | None = expected("the Asterisk server (asterisk[].name) to dial through; default the first",
                                   default=None)
    dial: str | None = expected("a dial string with {number}, default pbx.external_dial", default=None,
                                pattern=r"^[^\r\n]{1,200}$")
    caller_id: HeaderValue = ""
    originate_timeout: float = expected("seconds of ringing 5-120", default=30.0, ge=5.0, le=120.0)
    max_attempts: int = expected("attempts per lead 1-50", default=3, ge=1, le=50)
    retry_after: RetryAfter = RetryAfter()
    mode: DialMode = expected("a dial mode: " + ", ".join(DIAL_MODES), default="progressive")
    ratio: float = expected("lines per idle agent 0.1-5 (1.0 = progressive)", default=1.0, ge=0.1, le=5.0)
    preview_timeout: float = expected("seconds an agent has to accept or skip a preview, 5-600", default=30.0,
                                      ge=5.0, le=600.0)
    preview_skip_retry: float = expected("seconds before a skipped preview lead is offered again, 0-604800",
                                         default=3600.0, ge=0.0, le=604_800.0)
    callback_owner_grace: float = expected(
        "seconds 0-86400 an agent's own callback waits, once due, for that agent (logged in and ready) before any "
        "agent of the campaign may take it", default=900.0, ge=0.0, le=86_400.0)
    predictive: PredictiveSettings = PredictiveSettings()
    blend_threshold: int | None = expected(
        "blended agents kept free for inbound, 0-1000 (unset: the campaign's agents are not blended)",
        default=None, ge=0, le=1000)
    max_lines: int = expected("concurrent lines 1-10000", default=50, ge=1, le=10_000)
    max_abandon_rate: float = expected("a fraction 0-0.5 (0.03 = 3%)", default=0.03, ge=0.0, le=0.5)
    abandon_window: int = expected("human answers the abandon rate is measured over, 10-100000", default=100,
                                   ge=10, le=100_000)
    safe_harbour_after: float = expected("seconds 0.5-30", default=2.0, ge=0.5, le=30.0)
    safe_harbour_message: SoundName | None = None
    machine_message: SoundName | None = None
    # all | none | percent N of the answered calls; unset: the queue's policy, else recording.default_policy
    recording: RecordingPolicy | None = expected(POLICY_EXPECTED, default=None)
    calling_window: CallingWindow = CallingWindow()
    timezone: TimeZoneName = "UTC"
    hopper: int = expected("dialable leads kept ready in memory 1-100000", default=500, ge=1, le=100_000)
    run_out_warning: float = expected("minutes 0-1440 (0: never warn)", default=15.0, ge=0.0, le=1440.0)
    policy: PolicyName = "us_tsr"
    custom: CustomPolicy = CustomPolicy()
    amd: bool = True  # false: no answering-machine detection (CTI_AMD=0), every answer goes to an agent
    amd_accuracy: float | None = expected(
        "a fraction 0.51-1: the share of calls the AMD classifies correctly (people and machines alike)",
        default=None, ge=0.51, le=1.0)

    @model_validator(mode="before")
    @classmethod
    def _ratio_means_ratio_mode(cls, data: object) -> object:
        """A campaign written before modes existed with a ratio other than 1 keeps dialling that ratio."""
        if isinstance(data, dict) and "mode" not in data and data.get("ratio") not in (None, 1, 1.0):
            return {**data, "mode": "ratio"}
        return data

    @model_validator(mode="after")
    def _ratio_only_in_ratio_mode(self) -> CampaignSettings:
        if self.mode in ("progressive", "predictive") and self.ratio != 1.0:
            raise ValueError(f"ratio ({self.ratio}) applies to mode: ratio; mode {self.mode} paces by itself "
                             "(remove ratio, or set mode: ratio)")
        return self

    @field_validator("dial")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None and "{number}" not in value:
            raise ValueError("a dial string needs {number}, e.g. PJSIP/{number}@trunk")
        return value

    def min_ring(self) -> float:
        """Seconds an unanswered call must ring under the policy."""
        return self.custom.min_ring if self.policy == "custom" else LAW_MIN_RING

    def message_within(self) -> float:
        """Seconds after the greeting within which an abandoned person must hear the message."""
        return self.custom.message_within if self.policy == "custom" else LAW_MESSAGE_WITHIN

    def redial_after_abandon(self) -> float:
        """Seconds a number is not called again after an abandoned call (0: no such rule)."""
        if self.policy == "uk_ofcom":
            return 72 * 3600.0
        return self.custom.redial_after_abandon_hours * 3600.0 if self.policy == "custom" else 0.0

    def policy_errors(self) -> list[tuple[Loc, str]]:
        """Settings the campaign's policy forbids (a ring under the minimum, a late message, a cap over the law's)."""
        errors: list[tuple[Loc, str]] = []
        if self.policy == "custom":
            if self.originate_timeout < self.custom.min_ring:
                errors.append((("originate_timeout",), f"{self.originate_timeout:g} s of ringing is under the custom "
                               f"policy's min_ring of {self.custom.min_ring:g} s"))
            if self.custom.count_false_machines and self.amd and self.amd_accuracy is not None:
                errors.extend(self._amd_errors("the custom policy (count_false_machines)"))
            return errors
        law = f"{self.policy} ({LAW_POLICIES[self.policy]})"
        if self.originate_timeout < LAW_MIN_RING:
            errors.append((("originate_timeout",), f"{self.originate_timeout:g} s of ringing is under {law}: an "
                           f"unanswered call must ring at least {LAW_MIN_RING:g} s (or use policy: custom)"))
        if self.safe_harbour_after > LAW_MESSAGE_WITHIN:
            errors.append((("safe_harbour_after",), f"{self.safe_harbour_after:g} s is over {law}: the recorded "
                           f"message must start within {LAW_MESSAGE_WITHIN:g} s of the person's greeting"))
        if self.max_abandon_rate > LAW_CAP:
            errors.append((("max_abandon_rate",), f"{self.max_abandon_rate:g} is over {law}'s cap of {LAW_CAP:g}"))
        if self.policy == "uk_ofcom" and self.amd:
            errors.extend(self._amd_errors(law))
        return errors

    def counts_amd_misses(self) -> bool:
        """Whether the policy counts the people AMD takes for machines as abandoned (uk_ofcom; custom with
        ``count_false_machines``)."""
        return self.policy == "uk_ofcom" or (self.policy == "custom" and self.custom.count_false_machines)

    def abandon_cap(self) -> float:
        """The abandon rate the campaign must stay under (the law's 3% for us_tsr and uk_ofcom)."""
        return self.max_abandon_rate if self.policy == "custom" else min(self.max_abandon_rate, LAW_CAP)

    def usable_abandon_share(self) -> float:
        """The abandon rate the campaign plans to use: the predictive pacer's ``target_share`` of the cap."""
        return self.predictive.target_share * self.abandon_cap()

    def _amd_errors(self, law: str) -> list[tuple[Loc, str]]:
        """A policy that counts the people AMD takes for machines as abandoned (uk_ofcom): the AMD's accuracy
        must be known, and its mistakes alone must leave room under the cap."""
        if self.amd_accuracy is None:
            return [(("amd_accuracy",), f"{self.policy} counts people the AMD took for machines as abandoned: give the "
                     "measured share of calls your AMD classifies correctly (e.g. amd_accuracy: 0.99), or set "
                     "amd: false (every answer goes to an agent)")]
        misses, usable = 1.0 - self.amd_accuracy, self.usable_abandon_share()
        if misses >= usable - 1e-12:
            return [(("amd_accuracy",), f"an AMD {self.amd_accuracy:g} accurate hangs up on {misses:.1%} of the "
                     f"people who answer, which {law} counts as abandoned: that alone is at or over the "
                     f"{usable:.1%} the campaign may use (predictive.target_share {self.predictive.target_share:g} "
                     f"of the {self.abandon_cap():.1%} cap), so no pacing keeps it legal; set amd: false (every "
                     f"answer goes to an agent) or measure an AMD more than {1.0 - usable:.1%} accurate")]
        return []

    def dial_string(self, template: str, number: str) -> str:
        """The Originate channel for ``number`` (digits with an optional leading +, nothing else)."""
        if not re.fullmatch(r"\+?[0-9]{3,20}", number):
            raise ValueError("a lead number is 3-20 digits with an optional leading +")
        return (self.dial or template).replace("{number}", number)


class DialerSection(ConfigModel):
    """Outbound campaigns. Empty by default: no dialer runs."""

    campaigns: list[CampaignSettings] = Field(default_factory=list, max_length=100)
    pace_interval: float = expected("seconds between pacing decisions 0.1-10", default=1.0, ge=0.1, le=10.0)
    default_region: str = expected("the ISO 3166 region of lead numbers written without +, e.g. US or GB",
                                   default="US", pattern=r"^[A-Z]{2}$")
    dnc_refresh: float = expected("seconds between re-reads of the do-not-call list 1-3600", default=30.0,
                                  ge=1.0, le=3600.0)

    def semantic_errors(self) -> list[tuple[Loc, str]]:
        errors: list[tuple[Loc, str]] = []
        seen: dict[str, int] = {}
        for i, c in enumerate(self.campaigns):
            if c.name in seen:
                errors.append((("campaigns", i, "name"),
                               f"duplicate campaign {c.name!r} (also campaigns[{seen[c.name]}])"))
            seen.setdefault(c.name, i)
            errors.extend((("campaigns", i, *loc), msg) for loc, msg in c.policy_errors())
        return errors

    def reference_errors(self, queues: list[str], servers: list[str]) -> list[tuple[Loc, str]]:
        """Checks against other sections: each campaign's queue is an ACD queue and its server an Asterisk.
        (For ``config.schema.cross_section_errors``; locations are relative to this section.)"""
        errors: list[tuple[Loc, str]] = []
        for i, c in enumerate(self.campaigns):
            if c.queue not in queues:
                known = ", ".join(sorted(queues)) or "none configured"
                errors.append((("campaigns", i, "queue"), f"unknown queue {c.queue!r}; known: {known}"))
            if c.server is not None and c.server not in servers:
                known = ", ".join(servers) or "none configured"
                errors.append((("campaigns", i, "server"), f"unknown Asterisk server {c.server!r}; known: {known}"))
            elif c.server is None and c.enabled and not servers:
                errors.append((("campaigns", i), "no Asterisk server to dial through (asterisk: is empty)"))
        return errors
