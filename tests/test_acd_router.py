"""Router indexes: the walked candidate lists, the vectorised pass and a plain scan agree on every choice."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd import router as router_module
from acd.router import AgentIndex

SKILLS = ["a", "b", "c", "d"]
STRATEGIES = ["longest_idle", "most_skilled", "least_talk_time", "round_robin"]

agent_skills = st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 10), max_size=4)


def plain_scan(index: AgentIndex, available: dict[int, tuple[float, float]], alt: tuple[tuple[str, int], ...],
               strategy: str, rr_after: int) -> tuple[Any, int] | None:
    """The definition of each strategy, by looking at every available agent."""
    best: tuple[Any, int] | None = None
    for o, (idle, talk) in available.items():
        sk = index.skills[o]
        if not all(sk.get(s, 0) >= m for s, m in alt):
            continue
        if strategy == "most_skilled" and alt:
            key: Any = (-sk[alt[0][0]], idle, o)
        elif strategy == "least_talk_time":
            key = (talk, idle, o)
        elif strategy == "round_robin":
            key = ((o - rr_after - 1) % index.size, o)
        else:
            key = (idle, o)
        if best is None or key < best[0]:
            best = (key, o)
    return best


@settings(max_examples=300, deadline=None)
@given(skills=st.lists(agent_skills, min_size=1, max_size=40), data=st.data())
def test_walk_vector_and_scan_choose_the_same_agent(skills: list[dict[str, int]], data: st.DataObject) -> None:
    """For random agents, availability, idle/talk times (with ties), requirements and strategies, the
    index's answer equals the plain scan's, whether it walks the lists or takes the vectorised pass."""
    index = AgentIndex(skills)
    ids = [f"x{i}" for i in range(len(skills))]
    available: dict[int, tuple[float, float]] = {}
    for o in range(len(skills)):
        if data.draw(st.booleans()):
            idle = float(data.draw(st.integers(0, 5)))
            talk = float(data.draw(st.integers(0, 3)))
            index.add(o, idle, talk)
            available[o] = (idle, talk)
    for o in list(available)[: data.draw(st.integers(0, 3))]:  # some leave again
        index.remove(o)
        del available[o]
    known = sorted({s for sk in skills for s in sk}) or ["a"]
    alt = tuple(data.draw(st.dictionaries(st.sampled_from(known), st.integers(1, 10), max_size=3)).items())
    strategy = data.draw(st.sampled_from(STRATEGIES))
    rr_after = data.draw(st.integers(-1, len(skills) - 1))
    expected = plain_scan(index, available, alt, strategy, rr_after)
    limit = router_module.SCAN_LIMIT
    router_module.SCAN_LIMIT = 10**9  # walk every candidate, never switching to the vectorised pass
    try:
        walked = index.best(alt, strategy, rr_after, ids, [])
    finally:
        router_module.SCAN_LIMIT = limit
    vector = index._vector_best(alt, strategy, rr_after, ids, [])
    assert index.best(alt, strategy, rr_after, ids, None) == (walked if walked is None else
                                                              (walked[0], walked[1]))
    if expected is None:
        assert walked is None and vector is None
    else:
        assert walked is not None and vector is not None
        assert walked[1] == vector[1] == expected[1]
        assert tuple(walked[0]) == tuple(vector[0]) == tuple(expected[0])


def test_long_walk_switches_to_vectorised_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """When many candidates fail the other skills, the walk gives way to the vectorised pass (noted in the trace)."""
    monkeypatch.setattr(router_module, "SCAN_LIMIT", 3)
    # a>=3 and b>=1 are equally common; the agents idle longest with a>=3 all lack b
    skills = [{"a": 5} for _ in range(10)] + [{"a": 1, "b": 1} for _ in range(10)] + [{"a": 5, "b": 1}]
    index = AgentIndex(skills)
    for o in range(len(skills)):
        index.add(o, float(o), 0.0)
    trace: list[router_module.Considered] = []
    ids = [f"x{i}" for i in range(len(skills))]
    assert index.best((("a", 3), ("b", 1)), "longest_idle", -1, ids, trace) == ((20.0, 20), 20)
    assert any("vectorised pass: 1 available" in c.note for c in trace)
