"""Contenders for the shared agent pool in OS processes, and the check of their merged history (test helper).

Each contender (``contend``, run in its own process) claims random agents of one Redis pool for random calls of
one shared set in a tight loop, releasing some of what it holds, and logs every successful claim and release
with the pool's version (``Claim.version``, ``RedisState.last_version``) and its own sequence number. The
versions come from one counter the Lua scripts take atomically, so sorting every process's events by version
gives the order Redis applied them in; ``violations`` replays that order and names every moment an agent was
held by two calls or a call held two agents.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import redis

from acd.shared_state import AVAILABLE
from centre.redis_state import RedisState

NOW, UNTIL = 1_000.0, 1_000_000_000.0  # every claim stays live: only releases end them


@dataclass(frozen=True)
class Event:
    """A successful claim or release as a contender saw it."""

    version: int
    kind: str  # "claim" or "release"
    agent: str
    call: str
    process: int
    seq: int


def contend(url: str, prefix: str, index: int, attempts: int, agents: int, calls: int, seed: int,
            barrier: Any, out: Any) -> None:
    """Claim ``attempts`` times (random agent of ``agents``, random call of ``calls``), releasing a random held
    claim about every other turn; put ``(events, refused)`` on ``out``."""
    state = RedisState(redis.Redis.from_url(url, socket_timeout=10), prefix)
    rng = random.Random(seed)
    held: list[tuple[str, str]] = []
    events: list[Event] = []
    refused = 0
    barrier.wait(timeout=60)
    for _ in range(attempts):
        if held and rng.random() < 0.5:
            agent, call = held.pop(rng.randrange(len(held)))
            if state.release(agent, call, AVAILABLE, NOW):
                events.append(Event(state.last_version, "release", agent, call, index, len(events)))
            else:  # a claim no one else may take was gone: the check below names it
                events.append(Event(0, "lost", agent, call, index, len(events)))
        agent, call = f"a{rng.randrange(agents)}", f"c{rng.randrange(calls)}"
        claim = state.claim(agent, call, f"n{index}", NOW, UNTIL)
        if claim is None:
            refused += 1
        else:
            held.append((agent, call))
            events.append(Event(claim.version, "claim", agent, call, index, len(events)))
    out.put((events, refused))


def violations(events: list[Event]) -> tuple[list[str], dict[str, str]]:
    """Replay ``events`` in version order: what broke the rules (an agent claimed while held, a call claiming
    a second agent, a release by a call not holding the agent, a version taken twice, a claim lost, a
    process's versions out of its own order), and who holds which agent at the end."""
    found: list[str] = []
    seen: dict[int, Event] = {}
    for e in events:
        if e.kind == "lost":
            found.append(f"process {e.process} lost its claim of {e.agent} for {e.call}")
        elif e.version in seen:
            found.append(f"version {e.version} taken twice: {seen[e.version]} and {e}")
        seen[e.version] = e
    last: dict[int, tuple[int, int]] = {}
    for e in sorted(events, key=lambda e: (e.process, e.seq)):
        if e.kind != "lost" and e.process in last and e.version <= last[e.process][0]:
            found.append(f"process {e.process}'s versions go back at its event {e.seq}")
        if e.kind != "lost":
            last[e.process] = (e.version, e.seq)
    holder: dict[str, str] = {}  # agent -> call
    held_by: dict[str, str] = {}  # call -> agent
    for e in sorted((e for e in events if e.kind != "lost"), key=lambda e: e.version):
        if e.kind == "claim":
            if e.agent in holder:
                found.append(f"v{e.version}: {e.agent} claimed for {e.call} while held for {holder[e.agent]}")
            if e.call in held_by:
                found.append(f"v{e.version}: {e.call} claimed {e.agent} while holding {held_by[e.call]}")
            holder[e.agent], held_by[e.call] = e.call, e.agent
        else:
            if holder.get(e.agent) != e.call:
                found.append(f"v{e.version}: {e.call} released {e.agent} held by {holder.get(e.agent)}")
            holder.pop(e.agent, None)
            if held_by.get(e.call) == e.agent:
                del held_by[e.call]
    return found, holder
