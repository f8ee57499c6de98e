"""Test harness: the real CtiServer against the simulated PBX in virtual time, one call at a time.

``CallBench(tmp_path)`` builds the demo stack with no random traffic and no campaign, phones that always
answer after 1 s and talk long, a database (SQLite, or any URL given), and a recording console pusher.
``arrive`` injects one caller who walks the IVR with the keys given; ``act`` runs a console action through
``ServerConsoleBackend`` (an asyncio loop steps the virtual clock while the action waits on the PBX).
Imports the server and the simulator; only tests import this module.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from agent_console.backend import ConsoleError, SessionInfo
from centre.console_backend import ServerConsoleBackend
from centre.demo import DEMO_EPOCH, VirtualStack, build_virtual, with_demo_callers
from centre.wiring import ensure_demo_customers
from config.load import load_config
from sim.channel import Channel
from sim.people import InboundArrival
from tests.test_server_pops import DEMO, inline


def bench_config(url: str, *, wrapup: float = 120.0, talk: float = 600.0, campaigns: bool = False,
                 answer_after: float = 1.0, flows: dict[str, Any] | None = None, tmp: Path | None = None) -> Any:
    """The demo config for one call at a time; ``flows``: IVR flows to add (written beside ``tmp``)."""
    path = DEMO
    if flows:
        assert tmp is not None
        raw = yaml.safe_load(DEMO.read_text())
        raw["ivr"]["flows"].update(flows)
        path = tmp / "bench.yaml"
        path.write_text(yaml.safe_dump(raw))
    cfg = with_demo_callers(load_config(path))
    agents = cfg.sim.agents.model_copy(update={
        "no_answer_prob": 0.0, "busy_prob": 0.0, "unavailable_prob": 0.0,
        "answer_delay_s": cfg.sim.agents.answer_delay_s.model_copy(update={"mean_s": answer_after, "sd_s": 0.0,
                                                                             "min_s": answer_after}),
        "talk_time": cfg.sim.agents.talk_time.model_copy(update={"median_s": talk, "sigma": 0.0})})
    agi = cfg.sim.agi.model_copy(update={"default_prompt_s": 0.5})
    sim = cfg.sim.model_copy(update={"inbound": [], "agents": agents, "agi": agi})
    acd = cfg.acd.model_copy(update={"queues": [q.model_copy(update={"wrapup": wrapup}) for q in cfg.acd.queues]})
    update: dict[str, Any] = {"sim": sim, "acd": acd, "database": cfg.database.model_copy(update={"url": url})}
    if not campaigns:
        update["dialer"] = cfg.dialer.model_copy(update={"campaigns": []})
    return cfg.model_copy(update=update)


class Pushed:
    """The console pusher: every frame pushed to an agent, in order."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, dict[str, Any]]] = []

    def push_to_agent(self, agent_id: str, message: dict[str, Any]) -> None:
        self.frames.append((agent_id, message))

    def push_to_supervisors(self, message: dict[str, Any]) -> None:
        pass

    def is_connected(self, agent_id: str) -> bool:
        return True

    def to(self, agent_id: str, kind: str, since: int = 0) -> list[dict[str, Any]]:
        return [m for a, m in self.frames[since:] if a == agent_id and m.get("type") == kind]


class CallBench:
    def __init__(self, tmp_path: Path, *, url: str | None = None, customers: int = 300, seed: int = 5,
                 cfg: Any = None, stack: VirtualStack | None = None, **config: Any) -> None:
        self.url = url or f"sqlite:///{tmp_path / 'bench.sqlite3'}"
        ensure_demo_customers(self.url, datetime.fromtimestamp(DEMO_EPOCH, UTC), n=customers)
        self.cfg = cfg if cfg is not None else bench_config(self.url, tmp=tmp_path, **config)
        self.stack = stack if stack is not None else build_virtual(self.cfg, seed=seed, login_agents=False)
        self.server = self.stack.server
        self.server.open_database(inline)
        self.pushed = Pushed()
        self.server.pusher = self.pushed
        self.events: list[object] = []
        self.server.subscribe(self.events.append)
        self.backend = ServerConsoleBackend(self.server)
        self.loop = asyncio.new_event_loop()

    @property
    def clock(self) -> Any:
        return self.stack.clock

    def ready(self, *agents: str) -> None:
        for agent_id in agents:
            now = self.server.now()
            self.server.apply(self.server.acd.login(agent_id, None, now))
            self.server.apply(self.server.acd.ready(agent_id, now))

    def state(self, agent_id: str) -> str:
        return str(self.server.acd.agent_snapshot(agent_id).state)

    def arrive(self, keys: tuple[str, ...] = ("1",), caller: str = "+15550001111", patience: float = 6000.0,
               did: str = "+18005550100", flow: str = "main") -> Channel:
        chan = self.stack.sim.driver.arrive(InboundArrival(
            at=self.stack.sim.pbx.now_epoch(), did=did, caller_num=caller, caller_name="", patience=patience,
            keys=keys, think_time=0.3, hangup_in_ivr_after=None, flow=flow))
        assert chan is not None
        return chan

    def run(self, seconds: float) -> None:
        self.clock.run_for(seconds)

    def of(self, kind: type, **match: Any) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)
                and all(getattr(e, k) == v for k, v in match.items())]

    def act(self, agent_id: str, action: str, **params: Any) -> dict[str, Any]:
        """Run one console action to its end; raises ConsoleError as the hub would send it."""
        session = SessionInfo("s-" + agent_id, agent_id, "agent", "test", 0.0)

        async def go() -> dict[str, Any]:
            task = asyncio.ensure_future(self.backend.handle(session, action, params))
            while not task.done():
                self.clock.run_for(0.05)
                await asyncio.sleep(0)
            return task.result()

        return self.loop.run_until_complete(go())

    def refused(self, agent_id: str, action: str, **params: Any) -> str:
        try:
            self.act(agent_id, action, **params)
        except ConsoleError as exc:
            return exc.error_id
        raise AssertionError(f"{action} was not refused")

    def close(self) -> None:
        self.stack.sim.stop()
        self.server.stop()
        self.loop.close()
