"""Who may take a call at a given expansion stage: compiled skill requirements. Pure; no I/O, no clock.

A call's requirements are alternatives (OR) of skill sets (AND of ``skill >= level``). The queue's
skills, overridden per skill by the caller's own ``CTI_SKILLS`` from the IVR, form the base set;
each expansion step in force lowers the base levels, adds an alternative skill set, or adds another
queue's base set. Must not import the router or the service.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from acd.settings import AcdSection, Queue

SkillSet = tuple[tuple[str, int], ...]  # ((skill, min level), ...); the first is the primary skill

MAX_CALL_SKILLS = 16
MAX_SKILLS_TEXT = 1024
_TOKEN = re.compile(r"^([A-Za-z0-9_.-]{1,64})(?::(\d{1,2}))?$")


@dataclass(frozen=True, slots=True)
class Alternative:
    """One way to be eligible: every skill at its minimum level. ``label`` says which rule made it."""

    label: str
    skills: SkillSet

    def met_by(self, agent_skills: Mapping[str, int]) -> bool:
        for skill, level in self.skills:
            if agent_skills.get(skill, 0) < level:
                return False
        return True

    def as_dict(self) -> dict[str, object]:
        return {"rule": self.label, "skills": dict(self.skills)}


@dataclass(frozen=True, slots=True)
class Requirements:
    stage: int
    alternatives: tuple[Alternative, ...]

    def eligible(self, agent_skills: Mapping[str, int]) -> Alternative | None:
        """The first alternative the agent meets, or None."""
        for alt in self.alternatives:
            if alt.met_by(agent_skills):
                return alt
        return None


def parse_call_skills(text: str) -> tuple[SkillSet, list[str]]:
    """Parse ``CTI_SKILLS`` ("billing:5 french:3", commas also accepted; a bare skill means level 1).

    Returns the skills and warnings for what was ignored (bad tokens, levels outside 1-10, too many).
    """
    warnings: list[str] = []
    if len(text) > MAX_SKILLS_TEXT:
        warnings.append(f"skills text longer than {MAX_SKILLS_TEXT} characters was cut")
        text = text[:MAX_SKILLS_TEXT]
    out: dict[str, int] = {}
    for token in text.replace(",", " ").split():
        m = _TOKEN.match(token)
        if m is None:
            warnings.append(f"ignored skill {token[:40]!r}: expected name:level")
            continue
        level = int(m.group(2)) if m.group(2) else 1
        if not 1 <= level <= 10:
            warnings.append(f"ignored skill {token[:40]!r}: level must be 1-10")
            continue
        if len(out) >= MAX_CALL_SKILLS and m.group(1) not in out:
            warnings.append(f"ignored skills beyond the first {MAX_CALL_SKILLS}")
            break
        out[m.group(1)] = level
    return tuple(out.items()), warnings


def stage_at(queue: Queue, waited: float) -> int:
    """How many expansion steps are in force after ``waited`` seconds."""
    stage = 0
    for step in queue.expansion:
        if waited >= step.after:
            stage += 1
        else:
            break
    return stage


def next_stage_after(queue: Queue, stage: int) -> float | None:
    """Seconds of waiting at which stage ``stage + 1`` begins, or None if no further step."""
    return queue.expansion[stage].after if stage < len(queue.expansion) else None


def compile_requirements(section: AcdSection, queue: Queue, call_skills: SkillSet, stage: int) -> Requirements:
    """The alternatives in force for a call of ``queue`` with ``call_skills`` at expansion ``stage``."""
    base: dict[str, int] = dict(queue.skills)
    base.update(call_skills)
    steps = queue.expansion[:stage]
    lower = sum(s.lower_min_level_by or 0 for s in steps)
    lowered: SkillSet = tuple((skill, max(1, level - lower)) for skill, level in base.items())
    label = "queue requirements"
    if lower:
        label += f" lowered by {lower} (expansion up to {steps[-1].after:g}s)"
    alternatives: list[Alternative] = [Alternative(label, lowered)]
    for i, step in enumerate(steps, 1):
        extra: SkillSet | None = None
        if step.add_skill is not None:
            extra = tuple(step.add_skill.items())
        elif step.add_queue_agents is not None:
            other = section.queue(step.add_queue_agents)
            extra = tuple(other.skills.items()) if other is not None else None
        if extra is not None and all(a.skills != extra for a in alternatives):
            alternatives.append(Alternative(f"expansion {i}: {step.describe()}", extra))
    # an empty set (anyone) makes every other alternative redundant
    for alt in alternatives:
        if not alt.skills:
            return Requirements(stage, (alt,))
    return Requirements(stage, tuple(alternatives))
