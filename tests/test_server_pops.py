"""Pops in the server: a caller who has to wait gets the look-up done while waiting (the offer's pop is then
complete at once); a caller offered at once is looked up by the offer itself."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed

from acd.events import CallOffered
from centre.demo import DEMO_EPOCH, build_virtual, log_in_agents, with_demo_callers
from centre.wiring import ensure_demo_customers
from config.load import load_config
from cti.events import CallQueued

DEMO = Path(__file__).resolve().parent.parent / "config" / "examples" / "demo.yaml"


def inline(fn: Callable[[], Any]) -> Deferred:
    """Runs the store call at once on the caller's thread (a virtual clock has no thread pool)."""
    try:
        return succeed(fn())
    except Exception:
        return fail()


def _stack(tmp_path: Path, login: bool) -> Any:
    url = f"sqlite:///{tmp_path / 'pops.sqlite3'}"
    ensure_demo_customers(url, datetime.fromtimestamp(DEMO_EPOCH, UTC), n=3000)
    cfg = with_demo_callers(load_config(DEMO))
    cfg = cfg.model_copy(update={"dialer": cfg.dialer.model_copy(update={"campaigns": []}),
                                 "database": cfg.database.model_copy(update={"url": url})})
    stack = build_virtual(cfg, seed=5, login_agents=False)
    stack.server.open_database(inline)
    pushed: list[tuple[str, dict[str, Any]]] = []
    stack.server.pusher = type("Pusher", (), {
        "push_to_agent": lambda self, agent, message: pushed.append((agent, message)),
        "push_to_supervisors": lambda self, message: None,
        "is_connected": lambda self, agent: True,
    })()
    if login:
        log_in_agents(stack.server, exclude=())
    return stack, pushed


def test_a_waiting_caller_is_looked_up_before_the_offer(tmp_path: Path) -> None:
    stack, pushed = _stack(tmp_path, login=False)
    seen: list[object] = []
    stack.server.subscribe(seen.append)
    stack.clock.run_until(DEMO_EPOCH + 120)
    queued = [e for e in seen if isinstance(e, CallQueued)]
    assert queued, "no caller reached a queue"
    lookup = stack.server.pop_lookup
    assert lookup.store_queries > 0 and not pushed  # looked up while waiting; nothing offered yet
    before = lookup.store_queries
    log_in_agents(stack.server, exclude=())
    stack.clock.run_for(30.0)
    offered = [e for e in seen if isinstance(e, CallOffered)]
    assert offered
    waiting = {q.uniqueid for q in queued}
    pops = [m for _, m in pushed if m["type"] == "pop" and m["uniqueid"] in waiting]
    assert pops and all(m["complete"] for m in pops)  # from the cache: complete at once
    assert lookup.store_queries - before <= len(offered)  # the offers of waiting callers did not query again
    stack.sim.stop()
    stack.server.stop()


def test_a_caller_offered_at_once_is_looked_up_once(tmp_path: Path) -> None:
    """With agents free, the offer goes out with the caller's queueing and its pop does the one look-up
    (no separate warm-up before the ACD decides)."""
    stack, pushed = _stack(tmp_path, login=True)
    lookup = stack.server.pop_lookup
    resolved: list[str] = []
    resolve = lookup.resolve

    def counted(ctx: Any) -> Deferred:
        resolved.append(ctx.uniqueid)
        return resolve(ctx)

    lookup.resolve = counted
    stack.clock.run_until(DEMO_EPOCH + 60)
    pops = [m for _, m in pushed if m["type"] == "pop"]
    assert pops and all(m["complete"] for m in pops)
    assert len(resolved) == len(pops) and len(set(resolved)) == len(resolved)
    stack.sim.stop()
    stack.server.stop()


def test_the_pop_goes_out_before_the_phone_is_rung(tmp_path: Path) -> None:
    """On an offer the agent's pop is pushed before the Redirect that rings the agent's phone is sent."""
    stack, pushed = _stack(tmp_path, login=True)
    order: list[tuple[str, str]] = []
    send = stack.server.pool.send

    def sent(server: str, name: str, fields: Any = None, **kw: Any) -> Deferred:
        if name == "Redirect" and fields.get("Context") == "cti-agent":
            uid = next(s.queued.uniqueid for s in stack.server.sessions if s.queued.channel == fields["Channel"])
            order.append(("redirect", uid))
        return send(server, name, fields, **kw)

    stack.server.pool.send = sent
    stack.server.pusher.push_to_agent = lambda agent, message: order.append(  # type: ignore[method-assign]
        ("pop", message["uniqueid"])) if message["type"] == "pop" else None
    stack.clock.run_until(DEMO_EPOCH + 60)
    redirects = [i for i, (kind, _) in enumerate(order) if kind == "redirect"]
    assert redirects
    for i in redirects:
        uid = order[i][1]
        assert ("pop", uid) in order[:i], f"the pop for call {uid} was not pushed before its Redirect"
    stack.sim.stop()
    stack.server.stop()
