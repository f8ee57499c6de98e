"""The other nodes' waiting calls, as this node's ACD knows them from their events (several nodes, one pool).

First come first served holds across nodes: an agent who becomes ready on this node while a caller of another
node's PBX has waited longer (or has a higher priority) and may take that agent is *left to* that node for a
moment (``DEFER`` seconds): not offered this node's caller, not indexed as available here. That node hears the
agent is ready (``AgentStateChanged``) and claims it for its caller. If it has not within ``DEFER`` (it is slow,
dead, or the caller is gone and its event lost), this node passes that caller over (it forgets it until the
caller is said to be waiting again) and routes the agent here. Callers whose end never came (their node died) are
forgotten once passed over, or at the day's end after 12 hours.

``RemoteWaiting`` keeps those calls in a ``acd.router.CallIndex`` of their own (requirement buckets by anchor
skill, as the local calls are), filled from the other nodes' ``CallWaiting`` and emptied by their
``CallOffered``, ``CallAnswered``, ``CallAbandoned``, ``CallOverflowed`` and ``QueueCallFinished``. Their
expansion steps are followed on this node's timers (``AcdService``). Pure; no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from acd.live import CallKey
from acd.requirements import Requirements, SkillSet
from acd.router import CallIndex, SortKey
from acd.settings import Queue

DEFER = 0.5  # seconds an agent is left to another node's longer-waiting caller before this node routes it
REMOTE_FORGET = 12 * 3600.0  # seconds after which a caller another node said waits is forgotten at the day's end


@dataclass(slots=True)
class RemoteCall:
    """Another node's waiting caller."""

    key: CallKey
    queue: Queue
    skills: SkillSet
    priority: int
    entered: float
    first_entered: float
    node: str
    seq: int = 0  # its order of arrival here (two callers of one priority entered at the same moment)
    gen: int = 0
    stage: int = 0

    @property
    def sort_key(self) -> SortKey:
        return (-self.priority, self.first_entered, self.seq)


class RemoteWaiting:
    """The other nodes' waiting calls by key, those not passed over in an index by requirements."""

    def __init__(self) -> None:
        self.calls: dict[CallKey, RemoteCall] = {}
        self._index = CallIndex()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._index)

    def put(self, call: RemoteCall) -> None:
        """Add or replace ``call`` (not indexed until ``place``)."""
        self.drop(call.key)
        self._seq += 1
        call.seq = self._seq
        self.calls[call.key] = call

    def place(self, call: RemoteCall, stage: int, requirements: Requirements,
              anchors: tuple[tuple[str | None, int], ...]) -> None:
        """Index ``call`` at expansion ``stage``."""
        call.stage = stage
        self._index.add(call.key, ("remote", call.queue.name, call.skills, stage), requirements, call.queue.name,
                        call.queue.strategy, call.sort_key, anchors)

    def drop(self, key: CallKey) -> None:
        """The call left the queue (or became this node's own)."""
        if self.calls.pop(key, None) is not None:
            self._index.remove(key)

    def pass_over(self, key: CallKey) -> None:
        """Stop leaving agents to this call (its node did not take one in time): forgotten until it is said to be
        waiting again."""
        self.drop(key)

    def forget_older(self, than: float) -> int:
        """Forget the calls that entered before ``than`` (a node that died took their ends with it); how many."""
        old = [key for key, call in self.calls.items() if call.first_entered < than]
        for key in old:
            self.drop(key)
        return len(old)

    def best_for(self, skills: Mapping[str, int]) -> RemoteCall | None:
        """The highest-priority, longest-waiting call (not passed over) an agent with ``skills`` may take."""
        choice = self._index.best_for(skills, None)
        return self.calls[choice.call] if choice is not None else None  # type: ignore[index]
