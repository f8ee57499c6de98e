"""Pure routing decisions over indexed agents and waiting calls, with what each decision considered.

No I/O, no clock: the service passes everything in. Must not import ``acd.service``.

Available agents are indexed per skill and per level in idle order, so that "best agent for this
call" (longest idle, most skilled) walks only agents holding the call's most selective skill and
usually stops at the first one; least talk time, round robin, "anyone" queues and walks that would
run long take one vectorised pass (numpy) over arrays of all agents instead. Waiting calls sit in buckets that
share requirements (queue, caller skills, expansion stage), sorted by (-priority, first entered,
arrival); a bucket is indexed under one anchor skill per alternative, so "best call for this agent"
looks only at the heads of buckets the agent might serve.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from acd.requirements import Alternative, Requirements, SkillSet

MAX_LEVEL = 10
TRACE_LIMIT = 8  # candidates kept per alternative for the explanation
SCAN_LIMIT = 12  # candidates walked one by one before a vectorised pass over all available agents

SortKey = tuple[int, float, int]  # (-priority, first entered, arrival sequence)


def _discard(lst: list[Any], key: Any) -> None:
    i = bisect_left(lst, key)
    if i < len(lst) and lst[i] == key:
        del lst[i]


def _merge(lists: list[Any]) -> Iterable[Any]:
    if not lists:
        return ()
    if len(lists) == 1:
        return lists[0]
    return heapq.merge(*lists)


@dataclass(slots=True)
class Considered:
    """One candidate looked at during a decision, for explanations."""

    who: str
    score: tuple[Any, ...] | None
    note: str


@dataclass(slots=True)
class AgentChoice:
    ordinal: int
    alternative: Alternative
    score: tuple[Any, ...]
    considered: list[tuple[str, list[Considered]]] = field(default_factory=list)


@dataclass(slots=True)
class CallChoice:
    call: Hashable
    bucket: CallBucket
    alternative: Alternative
    sort_key: SortKey
    considered: list[Considered] = field(default_factory=list)


class AgentIndex:
    """Agents available for an offer: per skill and level, lists in idle order (walked for longest_idle
    and most_skilled, which usually stop at the first candidate), plus arrays over all agents for a
    vectorised pass (least_talk_time, round_robin, "anyone" queues, and walks that would run long)."""

    def __init__(self, skills: Sequence[Mapping[str, int]]) -> None:
        self.skills: list[dict[str, int]] = [dict(s) for s in skills]
        self.size = len(self.skills)
        names = {s for sk in self.skills for s in sk}
        self._idle: dict[str, list[list[tuple[float, int]]]] = {s: [[] for _ in range(MAX_LEVEL + 1)] for s in names}
        self._entry: dict[int, tuple[float, int]] = {}
        # static counts of configured agents with skill >= level: choose rare anchors for call buckets
        self.static_counts: dict[str, list[int]] = {s: [0] * (MAX_LEVEL + 2) for s in names}
        for sk in self.skills:
            for s, level in sk.items():
                for lvl in range(1, level + 1):
                    self.static_counts[s][lvl] += 1
        self._levels: dict[str, np.ndarray] = {s: np.zeros(self.size, dtype=np.int8) for s in names}
        for o, sk in enumerate(self.skills):
            for s, level in sk.items():
                self._levels[s][o] = level
        self._avail = np.zeros(self.size, dtype=bool)
        self._idle_at = np.zeros(self.size, dtype=np.float64)
        self._talk_at = np.zeros(self.size, dtype=np.float64)

    def __contains__(self, ordinal: int) -> bool:
        return ordinal in self._entry

    def __len__(self) -> int:
        return len(self._entry)

    def add(self, ordinal: int, idle_since: float, talk: float) -> None:
        if ordinal in self._entry:
            self.remove(ordinal)
        key = (idle_since, ordinal)
        for s, level in self.skills[ordinal].items():
            insort(self._idle[s][level], key)
        self._entry[ordinal] = key
        self._avail[ordinal] = True
        self._idle_at[ordinal] = idle_since
        self._talk_at[ordinal] = talk

    def remove(self, ordinal: int) -> None:
        key = self._entry.pop(ordinal, None)
        if key is None:
            return
        self._avail[ordinal] = False
        for s, level in self.skills[ordinal].items():
            _discard(self._idle[s][level], key)

    def set_skills(self, ordinal: int, skills: Mapping[str, int]) -> None:
        """Give an agent other skills (a supervisor's change): every index follows at once; an available
        agent stays available (with its idle time), filed under its new skills."""
        entry = self._entry.get(ordinal)
        if entry is not None:
            self.remove(ordinal)
        for s, level in self.skills[ordinal].items():
            for lvl in range(1, level + 1):
                self.static_counts[s][lvl] -= 1
            self._levels[s][ordinal] = 0
        new = dict(skills)
        self.skills[ordinal] = new
        for s, level in new.items():
            if s not in self._idle:  # a skill no agent had: its index entries now
                self._idle[s] = [[] for _ in range(MAX_LEVEL + 1)]
                self.static_counts[s] = [0] * (MAX_LEVEL + 2)
                self._levels[s] = np.zeros(self.size, dtype=np.int8)
            for lvl in range(1, level + 1):
                self.static_counts[s][lvl] += 1
            self._levels[s][ordinal] = level
        if entry is not None:
            self.add(ordinal, entry[0], float(self._talk_at[ordinal]))

    def count(self, skill: str, min_level: int) -> int:
        levels = self._idle.get(skill)
        if levels is None:
            return 0
        return sum(len(lst) for lst in levels[min_level:])

    def static_count(self, skill: str, min_level: int) -> int:
        counts = self.static_counts.get(skill)
        return counts[min_level] if counts is not None and min_level <= MAX_LEVEL else 0

    # --- candidate orders -------------------------------------------------------------------
    def _by_idle(self, anchor: tuple[str, int]) -> Iterator[tuple[Any, int]]:
        for idle, o in _merge([x for x in self._idle[anchor[0]][anchor[1]:] if x]):
            yield (idle, o), o

    def _most_skilled(self, primary: tuple[str, int]) -> Iterator[tuple[Any, int]]:
        levels = self._idle[primary[0]]
        for level in range(MAX_LEVEL, primary[1] - 1, -1):
            for idle, o in levels[level]:
                yield (-level, idle, o), o

    def _vector_best(self, alt: SkillSet, strategy: str, rr_after: int, ids: Sequence[str],
                     trace: list[Considered] | None) -> tuple[tuple[Any, ...], int] | None:
        """The same choice as walking the candidates, computed over arrays of all agents: bounded time
        when few of many candidates meet every skill. Ties fall to the lowest ordinal, as in the lists."""
        if any(s not in self._levels for s, _ in alt):
            return None  # a skill no configured agent has
        mask = self._avail.copy()
        for s, m in alt:
            np.logical_and(mask, self._levels[s] >= m, out=mask)
        members = np.flatnonzero(mask)  # ascending ordinals: argmin ties fall to the lowest
        if trace is not None:
            trace.append(Considered("-", None, f"vectorised pass: {len(members)} available agents meet "
                                    + ", ".join(f"{s}>={m}" for s, m in alt)))
        if not len(members):
            return None
        idle = self._idle_at
        score: tuple[Any, ...]
        if strategy == "most_skilled" and alt:
            levels = self._levels[alt[0][0]][members]
            top = int(levels.max())
            members = members[levels == top]
            o = int(members[np.argmin(idle[members])])
            score = (-top, float(idle[o]), o)
        elif strategy == "least_talk_time":
            talk = self._talk_at[members]
            least = float(talk.min())
            members = members[talk == least]
            o = int(members[np.argmin(idle[members])])
            score = (least, float(idle[o]), o)
        elif strategy == "round_robin":
            after = int(np.searchsorted(members, rr_after, side="right"))
            o = int(members[after] if after < len(members) else members[0])
            score = ((o - rr_after - 1) % self.size, o)
        else:
            o = int(members[np.argmin(idle[members])])
            score = (float(idle[o]), o)
        if trace is not None:
            trace.append(Considered(ids[o], score, "best by " + strategy.replace("_", " ")))
        return score, o

    def best(self, alt: SkillSet, strategy: str, rr_after: int, ids: Sequence[str],
             trace: list[Considered] | None) -> tuple[tuple[Any, ...], int] | None:
        """Best available agent meeting every skill of ``alt`` under ``strategy``; None if nobody."""
        if alt and any(s not in self._idle for s, _ in alt):
            if trace is not None:
                missing = next(s for s, _ in alt if s not in self._idle)
                trace.append(Considered("-", None, f"no configured agent has skill {missing!r}"))
            return None
        if not alt or strategy in ("least_talk_time", "round_robin"):
            return self._vector_best(alt, strategy, rr_after, ids, trace)
        anchor = min(alt, key=lambda sl: self.count(sl[0], sl[1]))
        if strategy == "most_skilled":
            if anchor is not alt[0] and self.count(*alt[0]) > 4 * self.count(*anchor):
                # walking the primary skill by level would visit many agents lacking the rare skill
                return self._vector_best(alt, strategy, rr_after, ids, trace)
            candidates = self._most_skilled(alt[0])
            rest = alt[1:]
        else:
            candidates = self._by_idle(anchor)
            rest = tuple(x for x in alt if x is not anchor)
        skills = self.skills
        walked = 0
        for score, o in candidates:
            walked += 1
            if walked > SCAN_LIMIT:
                return self._vector_best(alt, strategy, rr_after, ids, trace)
            sk = skills[o]
            for s, m in rest:
                if sk.get(s, 0) < m:
                    if trace is not None and len(trace) < TRACE_LIMIT:
                        trace.append(Considered(ids[o], score, f"lacks {s}>={m} (has {sk.get(s, 0)})"))
                    break
            else:
                if trace is not None:
                    trace.append(Considered(ids[o], score, "best by " + strategy.replace("_", " ")))
                return score, o
        return None


class CallBucket:
    """Waiting calls that share requirements, best first."""

    __slots__ = ("key", "requirements", "queue", "strategy", "order", "members", "anchors", "head")

    def __init__(self, key: Hashable, requirements: Requirements, queue: str, strategy: str,
                 anchors: tuple[tuple[str | None, int], ...]) -> None:
        self.key = key
        self.requirements = requirements
        self.queue = queue
        self.strategy = strategy
        self.order: list[SortKey] = []
        self.members: dict[SortKey, Hashable] = {}
        self.anchors = anchors  # (anchor skill or None, lowest level any alternative needs in it)
        self.head: SortKey | None = None


AnchorEntry = tuple[SortKey, int, int]  # (bucket head, level needed in the anchor skill, bucket id)


class CallIndex:
    """Waiting calls in requirement buckets. Each anchor skill lists its buckets by head call, best first,
    so an agent looks at buckets in service order and stops at the first one it may serve."""

    def __init__(self) -> None:
        self._buckets: dict[Hashable, CallBucket] = {}
        self._by_id: dict[int, CallBucket] = {}
        self._ids: dict[Hashable, int] = {}
        self._by_anchor: dict[str | None, list[AnchorEntry]] = {}
        self._where: dict[Hashable, tuple[CallBucket, SortKey]] = {}
        self._next_id = 0

    def __contains__(self, call: Hashable) -> bool:
        return call in self._where

    def __len__(self) -> int:
        return len(self._where)

    def _bucket_id(self, bucket: CallBucket) -> int:
        bid = self._ids.get(bucket.key)
        if bid is None:
            self._next_id += 1
            bid = self._ids[bucket.key] = self._next_id
            self._by_id[bid] = bucket
        return bid

    def _set_head(self, bucket: CallBucket) -> None:
        """Re-file the bucket under its anchors after its head call changed."""
        new = bucket.order[0] if bucket.order else None
        if new == bucket.head:
            return
        bid = self._bucket_id(bucket)
        for anchor, level in bucket.anchors:
            entries = self._by_anchor.setdefault(anchor, [])
            if bucket.head is not None:
                _discard(entries, (bucket.head, level, bid))
            if new is not None:
                insort(entries, (new, level, bid))
            elif not entries:
                del self._by_anchor[anchor]
        bucket.head = new
        if new is None:
            del self._buckets[bucket.key]
            del self._by_id[bid]
            del self._ids[bucket.key]

    def add(self, call: Hashable, bucket_key: Hashable, requirements: Requirements, queue: str, strategy: str,
            sort_key: SortKey, anchors: tuple[tuple[str | None, int], ...]) -> None:
        if call in self._where:
            self.remove(call)
        bucket = self._buckets.get(bucket_key)
        if bucket is None:
            bucket = self._buckets[bucket_key] = CallBucket(bucket_key, requirements, queue, strategy, anchors)
        insort(bucket.order, sort_key)
        bucket.members[sort_key] = call
        self._where[call] = (bucket, sort_key)
        self._set_head(bucket)

    def remove(self, call: Hashable) -> None:
        where = self._where.pop(call, None)
        if where is None:
            return
        bucket, sort_key = where
        _discard(bucket.order, sort_key)
        del bucket.members[sort_key]
        self._set_head(bucket)

    def best_for(self, agent_skills: Mapping[str, int], trace: list[Considered] | None) -> CallChoice | None:
        """The highest-priority, longest-waiting call this agent is eligible for, over all queues."""
        best: CallChoice | None = None
        by_anchor = self._by_anchor
        groups = [(by_anchor.get(s), lvl) for s, lvl in agent_skills.items()]
        groups.append((by_anchor.get(None), MAX_LEVEL))
        for entries, have in groups:
            if not entries:
                continue
            for head, need, bid in entries:
                if best is not None and head >= best.sort_key:
                    break
                if need > have:
                    continue
                bucket = self._by_id[bid]
                alt = bucket.requirements.eligible(agent_skills)
                if trace is not None and len(trace) < TRACE_LIMIT:
                    note = f"eligible by {alt.label}" if alt else "not eligible"
                    trace.append(Considered(f"{bucket.queue}@stage{bucket.requirements.stage}",
                                            (-head[0], head[1]), note))
                if alt is not None:
                    best = CallChoice(bucket.members[head], bucket, alt, head)
                    break
        return best


class Router:
    """Both indexes plus the two decisions. Agents are known by ordinal (their place in the config)."""

    def __init__(self, agent_ids: Sequence[str], agent_skills: Sequence[Mapping[str, int]]) -> None:
        self.ids = list(agent_ids)
        self.agents = AgentIndex(agent_skills)
        self.calls = CallIndex()

    def anchors_for(self, requirements: Requirements) -> tuple[tuple[str | None, int], ...]:
        """One anchor per alternative: its rarest skill among configured agents (None = anyone), with the
        lowest level an alternative anchored there needs."""
        out: dict[str | None, int] = {}
        for alt in requirements.alternatives:
            if not alt.skills:
                out[None] = 0
            else:
                skill, level = min(alt.skills, key=lambda sl: self.agents.static_count(sl[0], sl[1]))
                out[skill] = min(level, out.get(skill, level))
        return tuple(out.items())

    def best_agent(self, requirements: Requirements, strategy: str, rr_after: int,
                   explain: bool = True) -> AgentChoice | None:
        """Best available agent for a call with ``requirements`` (the caller arrived or expanded)."""
        best: AgentChoice | None = None
        considered: list[tuple[str, list[Considered]]] = []
        for alt in requirements.alternatives:
            trace: list[Considered] | None = [] if explain else None
            found = self.agents.best(alt.skills, strategy, rr_after, self.ids, trace)
            if trace is not None:
                considered.append((alt.label, trace))
            if found is not None and (best is None or found[0] < best.score):
                best = AgentChoice(found[1], alt, found[0])
        if best is not None:
            best.considered = considered
        return best

    def best_call(self, ordinal: int, explain: bool = True) -> CallChoice | None:
        """Best waiting call for an agent that just became available."""
        trace: list[Considered] | None = [] if explain else None
        choice = self.calls.best_for(self.agents.skills[ordinal], trace)
        if choice is not None and trace is not None:
            choice.considered = trace
        return choice
