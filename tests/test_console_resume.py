"""What the real server gives a console that resumes (reload, network drop): the state, the pop of the
agent's current call (ringing, on the call and through its wrap-up, as a ``pop`` even when it was completed
by a ``pop_update``) and the call with its timers; and the phone log-in at the configured endpoint
(issue 12, items 1, 2 and 4). Runs the demo contact centre on a virtual clock with a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from agent_console.backend import ConsoleError, SessionInfo
from centre.console_backend import ServerConsoleBackend
from centre.demo import DEMO_EPOCH, build_virtual, log_in_agents, with_demo_callers
from centre.wiring import ensure_demo_customers
from config.load import load_config

DEMO = Path(__file__).resolve().parent.parent / "config" / "examples" / "demo.yaml"


def _stack(tmp_path: Path, *, login: bool = True, console: dict[str, Any] | None = None) -> Any:
    url = f"sqlite:///{tmp_path / 'resume.sqlite3'}"
    ensure_demo_customers(url, datetime.fromtimestamp(DEMO_EPOCH, UTC), n=3000)
    cfg = with_demo_callers(load_config(DEMO))
    cfg = cfg.model_copy(update={"dialer": cfg.dialer.model_copy(update={"campaigns": []}),
                                 "database": cfg.database.model_copy(update={"url": url}),
                                 "console": cfg.console.model_copy(update=console or {})})
    stack = build_virtual(cfg, seed=5, login_agents=False)

    def later(fn: Callable[[], Any]) -> Deferred:
        """The store answers 50 ms later on the virtual clock: every pop is partial, then a pop_update."""
        d: Deferred = Deferred()
        stack.clock.callLater(0.05, lambda: d.callback(fn()))
        return d

    stack.server.open_database(later)
    pushed: list[tuple[str, dict[str, Any]]] = []
    stack.server.pusher = type("Pusher", (), {
        "push_to_agent": lambda self, agent, message: pushed.append((agent, message)),
        "push_to_supervisors": lambda self, message: None,
    })()
    if login:
        log_in_agents(stack.server, exclude=())
    return stack, pushed


def test_resume_gives_the_last_pop_as_a_pop_while_ringing_on_call_and_in_wrapup(tmp_path: Path) -> None:
    """At every moment, each agent that is ringing, on a call or in wrap-up gets back, on resume, the last
    pop it was sent for that call, as a complete ``pop`` (the late look-up's ``pop_update`` included), and
    its call with ``answered_at``; an agent that is ready again gets no pop."""
    stack, pushed = _stack(tmp_path)
    backend = ServerConsoleBackend(stack.server)
    checked = {"reserved": 0, "on_call": 0, "wrap_up": 0, "idle": 0}
    updates = 0
    for second in range(30, 240, 7):
        stack.clock.run_until(DEMO_EPOCH + second)
        for agent_id in stack.server.acd.agent_ids():
            messages = backend.resume_messages(agent_id)
            state = messages[0]
            pops = [m for m in messages if m["type"] in ("pop", "pop_update")]
            sent = [m for a, m in pushed if a == agent_id and m["type"] in ("pop", "pop_update")
                    and m["call_id"] == state["call_id"]]
            if state["state"] in ("reserved", "on_call", "wrap_up") and sent:
                assert len(pops) == 1, (agent_id, state, pops)
                assert pops[0]["type"] == "pop" and pops[0]["call_id"] == state["call_id"]
                last = sent[-1]
                updates += last["type"] == "pop_update"
                assert {k: v for k, v in pops[0].items() if k != "type"} == \
                    {k: v for k, v in last.items() if k != "type"}
                assert pops[0]["complete"] is True
                checked[state["state"]] += 1
                calls = [m for m in messages if m["type"] == "call"]
                if state["state"] == "on_call":
                    assert calls and calls[0]["answered_at"] is not None and "held_total" in calls[0]
            elif state["state"] in ("ready", "not_ready"):
                assert pops == []
                checked["idle"] += 1
    assert updates > 0, "no pop was completed by a pop_update: the case is not exercised"
    assert checked["on_call"] > 0 and checked["wrap_up"] > 0 and checked["idle"] > 0, checked
    stack.sim.stop()
    stack.server.stop()


def _session(agent_id: str) -> SessionInfo:
    return SessionInfo(session_id="s1", agent_id=agent_id, role="agent", remote="test", connected_at=0.0)


@pytest.mark.parametrize("allowed", [False, True])
def test_login_uses_the_configured_endpoint_and_another_only_where_allowed(tmp_path: Path, allowed: bool) -> None:
    """``login`` without an endpoint logs the agent's configured phone in; another endpoint is refused with
    ``endpoint-fixed`` (changing nothing) unless ``console.allow_endpoint_override``."""
    stack, _ = _stack(tmp_path, login=False, console={"allow_endpoint_override": allowed})
    backend = ServerConsoleBackend(stack.server)
    acd = stack.server.acd

    async def go() -> None:
        assert backend.resume_messages("1001")[0]["endpoint"] == "PJSIP/1001"  # logged out: the configured one
        result = await backend.handle(_session("1001"), "login", {"endpoint": None})
        assert result["state"]["state"] == "not_ready" and acd.agent_snapshot("1001").endpoint == "PJSIP/1001"
        if allowed:
            await backend.handle(_session("1002"), "login", {"endpoint": "PJSIP/4242"})
            assert acd.agent_snapshot("1002").endpoint == "PJSIP/4242"
        else:
            with pytest.raises(ConsoleError) as refused:
                await backend.handle(_session("1002"), "login", {"endpoint": "PJSIP/4242"})
            assert refused.value.error_id == "endpoint-fixed"
            assert acd.agent_snapshot("1002").state == "logged_out"
            await backend.handle(_session("1002"), "login", {"endpoint": "pjsip/1002"})  # its own: fine
            assert acd.agent_snapshot("1002").state == "not_ready"

    asyncio.run(go())
    stack.sim.stop()
    stack.server.stop()
