"""The other nodes' waiting callers as one node's ACD keeps them (acd/remote_waiting.py): best first for an agent's
skills, two callers entered at one moment both kept, passed over and forgotten."""

from __future__ import annotations

from acd.remote_waiting import RemoteCall, RemoteWaiting
from acd.requirements import compile_requirements
from acd.router import Router
from acd.settings import AcdSection
from tests.test_acd_support import agent

SECTION = AcdSection.model_validate({
    "agents": [agent("a1", {"billing": 5}), agent("a2", {"billing": 9, "french": 3})],
    "queues": [{"name": "billing", "skills": {"billing": 3}}]})
QUEUE = SECTION.queues[0]


def remote(waiting: RemoteWaiting, uid: str, entered: float, skills: tuple[tuple[str, int], ...] = (),
           priority: int = 0) -> RemoteCall:
    router = Router(["a1", "a2"], [{"billing": 5}, {"billing": 9, "french": 3}])
    call = RemoteCall(("pbx-b", uid), QUEUE, skills, priority, entered, entered, "B")
    waiting.put(call)
    req = compile_requirements(SECTION, QUEUE, skills, 0)
    waiting.place(call, 0, req, router.anchors_for(req))
    return call


def test_the_best_caller_an_agent_may_take_comes_first_and_callers_of_one_moment_are_both_kept() -> None:
    waiting = RemoteWaiting()
    remote(waiting, "v1", 10.0)
    remote(waiting, "v2", 10.0)  # the same moment: both kept, in arrival order
    remote(waiting, "v0", 5.0, skills=(("french", 2),))
    remote(waiting, "vip", 20.0, priority=5)
    assert len(waiting) == 4
    first = waiting.best_for({"billing": 5})
    assert first is not None and first.key == ("pbx-b", "vip")
    waiting.drop(("pbx-b", "vip"))
    assert [waiting.best_for(s).key[1] for s in ({"billing": 5}, {"billing": 9, "french": 3})] == ["v1", "v0"]
    waiting.pass_over(("pbx-b", "v1"))
    assert waiting.best_for({"billing": 5}).key[1] == "v2" and ("pbx-b", "v1") not in waiting.calls
    assert waiting.forget_older(8.0) == 1 and set(waiting.calls) == {("pbx-b", "v2")}
    waiting.drop(("pbx-b", "v2"))
    assert waiting.best_for({"billing": 5}) is None and len(waiting) == 0
