"""Agents, skills and queues as configured (the ``acd:`` section). Pydantic models only; no I/O, no clock.

Routing-time structures (compiled requirements, indexes) live in ``acd.requirements`` and
``acd.router``; this module must not import them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from cti.config_types import ConfigModel, Loc, TimeZoneName, expected
from cti.recording import POLICY_EXPECTED, RecordingPolicy

SkillName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                                 json_schema_extra={"expected": "a skill name (letters, digits, _ . -)"})]
SkillLevel = Annotated[int, Field(ge=1, le=10, json_schema_extra={"expected": "a skill level 1-10"})]
QueueName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                                 json_schema_extra={"expected": "a queue name (letters, digits, _ . -)"})]
Seconds = Annotated[float, Field(ge=0, le=86400, json_schema_extra={"expected": "a number of seconds 0-86400"})]
Strategy = Literal["longest_idle", "most_skilled", "least_talk_time", "round_robin"]

ENDPOINT_RE = re.compile(r"[A-Za-z0-9_]{1,20}/[^\s,|&]{1,80}")  # Dial() string for one device

#: Not-ready reasons the ACD itself sets; agents may not pick them.
SYSTEM_REASONS = ("login", "ring-no-answer", "busy", "unreachable", "offer-failed")


class ServiceLevel(ConfigModel):
    """Target: ``percent`` of calls answered within ``seconds`` (80/20 by default)."""

    percent: float = expected("a percentage 1-100", default=80.0, gt=0, le=100)
    seconds: float = expected("a number of seconds > 0", default=20.0, gt=0, le=3600)


class MaxWaitAction(ConfigModel):
    """What happens to a caller still waiting after ``max_wait``: exactly one of the three."""

    overflow: QueueName | None = None
    voicemail: str | None = expected("a mailbox such as 100@default", default=None,
                                     pattern=r"^[A-Za-z0-9_.+-]{1,40}(@[A-Za-z0-9_.-]{1,40})?$")
    callback: str | None = expected("the IVR flow that offers the callback", default=None,
                                    pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    @model_validator(mode="after")
    def _exactly_one(self) -> MaxWaitAction:
        chosen = [k for k in ("overflow", "voicemail", "callback") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("give exactly one of overflow (queue), voicemail (box) or callback (IVR flow)")
        return self

    @property
    def kind(self) -> str:
        return "overflow" if self.overflow else "voicemail" if self.voicemail else "callback"


class ExpansionStep(ConfigModel):
    """After ``after`` seconds of waiting, widen the set of agents who may take the call (exactly one action).

    Steps accumulate: at any moment every step whose ``after`` has passed is in force.
    """

    after: float = expected("a number of seconds >= 0", ge=0, le=86400)
    lower_min_level_by: int | None = expected("an integer 1-9", default=None, ge=1, le=9)
    add_skill: dict[SkillName, SkillLevel] | None = None
    add_queue_agents: QueueName | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ExpansionStep:
        chosen = [k for k in ("lower_min_level_by", "add_skill", "add_queue_agents") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("give exactly one of lower_min_level_by, add_skill or add_queue_agents")
        if self.add_skill is not None and not self.add_skill:
            raise ValueError("add_skill needs at least one skill: {skill: min level}")
        return self

    def describe(self) -> str:
        if self.lower_min_level_by is not None:
            return f"after {self.after:g}s lower minimum levels by {self.lower_min_level_by}"
        if self.add_skill is not None:
            wanted = ", ".join(f"{s}>={lvl}" for s, lvl in self.add_skill.items())
            return f"after {self.after:g}s also agents with {wanted}"
        return f"after {self.after:g}s also queue {self.add_queue_agents!r} agents"


class Queue(ConfigModel):
    """A queue: which skills a caller needs, how urgent, and what to do when waiting too long."""

    name: QueueName
    skills: dict[SkillName, SkillLevel] = Field(default_factory=dict)
    priority: int = expected("an integer -100..100 (higher is served first)", default=0, ge=-100, le=100)
    service_level: ServiceLevel = ServiceLevel()
    wrapup: Seconds = 10.0
    ring_timeout: int = expected("an integer number of seconds 5-300", default=15, ge=5, le=300)
    max_wait: float | None = expected("a number of seconds > 0", default=None, gt=0, le=86400)
    on_max_wait: MaxWaitAction | None = None
    strategy: Strategy = "longest_idle"
    expansion: list[ExpansionStep] = Field(default_factory=list)
    # all | none | percent N; unset: recording.default_policy
    recording: RecordingPolicy | None = expected(POLICY_EXPECTED, default=None)

    @model_validator(mode="after")
    def _max_wait_pair(self) -> Queue:
        if (self.max_wait is None) != (self.on_max_wait is None):
            raise ValueError("max_wait and on_max_wait go together: give both or neither")
        return self


class Agent(ConfigModel):
    """An agent. ``id`` becomes the extension in ``cti-agent``, so it is 2+ letters or digits."""

    id: str = expected("an agent id of 2-32 letters or digits", pattern=r"^[A-Za-z0-9]{2,32}$")
    name: str = expected("the agent's display name", min_length=1, max_length=100)
    endpoint: str = expected("a dial string such as PJSIP/1001", pattern="^" + ENDPOINT_RE.pattern + "$")
    skills: dict[SkillName, SkillLevel] = Field(default_factory=dict)
    teams: list[str] = Field(default_factory=list)
    wrapup: Seconds | None = None
    password_hash: str | None = None


class AcdSection(ConfigModel):
    """The ``acd:`` section: agents, queues, routing strategies and expansion rules."""

    agents: list[Agent] = Field(default_factory=list)
    queues: list[Queue] = Field(default_factory=list)
    default_queue: QueueName | None = None
    not_ready_reasons: list[str] = Field(default_factory=lambda: ["break", "lunch", "training", "meeting",
                                                                  "admin", "other"])
    offer_grace: Seconds = 10.0
    default_handle_time: float = expected("a number of seconds > 0", default=180.0, gt=0, le=86400)
    timezone: TimeZoneName = "UTC"

    @field_validator("not_ready_reasons")
    @classmethod
    def _reasons(cls, value: list[str]) -> list[str]:
        for reason in value:
            if reason in SYSTEM_REASONS:
                raise ValueError(f"{reason!r} is set by the ACD itself; pick another name")
            if not (1 <= len(reason) <= 40) or not reason.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"bad reason {reason!r}: 1-40 letters, digits, - or _")
        return value

    def queue_names(self) -> list[str]:
        return [q.name for q in self.queues]

    def queue(self, name: str) -> Queue | None:
        for q in self.queues:
            if q.name == name:
                return q
        return None

    def known_skills(self) -> set[str]:
        skills = {s for a in self.agents for s in a.skills}
        skills.update(s for q in self.queues for s in q.skills)
        return skills

    def semantic_errors(self) -> list[tuple[Loc, str]]:
        errors: list[tuple[Loc, str]] = []
        errors.extend(_duplicates([a.id for a in self.agents], "agents", "id", "agent id"))
        errors.extend(_duplicates([a.endpoint for a in self.agents], "agents", "endpoint", "endpoint"))
        errors.extend(_duplicates([q.name for q in self.queues], "queues", "name", "queue name"))
        names = set(self.queue_names())
        known = ", ".join(sorted(names)) or "none"
        agent_skills = {s for a in self.agents for s in a.skills}
        if self.default_queue is not None and self.default_queue not in names:
            errors.append((("default_queue",), f"unknown queue {self.default_queue!r}; known: {known}"))
        for qi, q in enumerate(self.queues):
            if q.on_max_wait is not None and q.on_max_wait.overflow is not None:
                target = q.on_max_wait.overflow
                where: Loc = ("queues", qi, "on_max_wait", "overflow")
                if target == q.name:
                    errors.append((where, "a queue cannot overflow to itself"))
                elif target not in names:
                    errors.append((where, f"unknown queue {target!r}; known: {known}"))
            for si, step in enumerate(q.expansion):
                loc: Loc = ("queues", qi, "expansion", si)
                if si and step.after < q.expansion[si - 1].after:
                    errors.append(((*loc, "after"), "expansion steps must be in order of 'after'"))
                if step.add_queue_agents is not None:
                    if step.add_queue_agents == q.name:
                        errors.append(((*loc, "add_queue_agents"), "a queue cannot add its own agents"))
                    elif step.add_queue_agents not in names:
                        errors.append(((*loc, "add_queue_agents"),
                                       f"unknown queue {step.add_queue_agents!r}; known: {known}"))
                for skill in step.add_skill or {}:
                    if skill not in agent_skills:
                        errors.append(((*loc, "add_skill", skill), f"unknown skill {skill!r}: no agent has it"))
                if step.lower_min_level_by is not None and not q.skills:
                    errors.append(((*loc, "lower_min_level_by"), "the queue requires no skill levels to lower"))
        return errors


def _duplicates(values: list[str], section: str, key: str, what: str) -> list[tuple[Loc, str]]:
    seen: dict[str, int] = {}
    errors: list[tuple[Loc, str]] = []
    for i, value in enumerate(values):
        if value in seen:
            errors.append(((section, i, key), f"duplicate {what} {value!r} (also {section}[{seen[value]}])"))
        seen.setdefault(value, i)
    return errors
