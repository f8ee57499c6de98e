"""One inbound call end to end over the real stack, with a real Chromium at the agent console.

Run by tests/test_e2e_console.py in a process of its own (the Twisted reactor cannot be restarted in
one process): ``python tests/e2e/console_scenario.py --workdir DIR``. Prints one JSON object on the last
line of stdout: ``{"ok": bool, "error": str | null, "steps": [...], "call": {...}, "interaction": {...},
"queue_call": {...}, "agent_states": [...]}``; exit status 0 when the scenario ran to its end.

What runs: ``centre.process.Runtime`` (CtiServer, FastAGI listener, console hub, DB pool) on the asyncio
reactor, a temporary SQLite database seeded with the demo customers, and the simulated PBX
(``centre.sim_pbx``) serving AMI on a real TCP port. The PBX's people are made deterministic (the phone
always answers after 1 s, talks 3 s) and no random traffic arrives: the scenario injects ONE caller, a
known demo customer who presses 1 (sales). Chromium drives the console as agent 1001.

Imports the server, the simulator and Playwright; nothing imports this module.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "examples" / "demo.yaml"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
AGENT, PASSWORD = "1001", "demo-password"
CUSTOMERS = 300  # demo customers seeded (enough for a realistic store, quick to write)
DID = "+18005550100"
TALK_S = 14.0  # long enough for a reload mid-call
DISPOSITION, NOTES = "sale", "bought the fibre upgrade (e2e)"


def e2e_config(cfg: Any, db_url: str) -> Any:
    """The demo config for one deterministic call: ephemeral listeners, a temp DB, no random traffic and
    no dialer campaign, phones that always answer quickly and hang up after TALK_S, a long wrap-up (the
    agent disposes)."""
    listen = cfg.listen.model_copy(update={
        "fastagi": cfg.listen.fastagi.model_copy(update={"port": 0}),
        "http": cfg.listen.http.model_copy(update={"port": 0})})
    agents = cfg.sim.agents.model_copy(update={
        "no_answer_prob": 0.0, "busy_prob": 0.0, "unavailable_prob": 0.0,
        "answer_delay_s": cfg.sim.agents.answer_delay_s.model_copy(update={"mean_s": 1.0, "sd_s": 0.0,
                                                                             "min_s": 1.0}),
        "talk_time": cfg.sim.agents.talk_time.model_copy(update={"median_s": TALK_S, "sigma": 0.0})})
    agi = cfg.sim.agi.model_copy(update={"default_prompt_s": 0.5})
    sim = cfg.sim.model_copy(update={"inbound": [], "agents": agents, "agi": agi})
    queues = [q.model_copy(update={"wrapup": 120.0}) for q in cfg.acd.queues]
    acd = cfg.acd.model_copy(update={"queues": queues})
    database = cfg.database.model_copy(update={"url": db_url})
    dialer = cfg.dialer.model_copy(update={"campaigns": []})  # no outbound calls competing for 1001
    return cfg.model_copy(update={"listen": listen, "sim": sim, "acd": acd, "database": database,
                                  "dialer": dialer})


def with_ami_port(cfg: Any, port: int) -> Any:
    server = cfg.asterisk[0].model_copy(update={"port": port})
    return cfg.model_copy(update={"asterisk": [server, *cfg.asterisk[1:]]})


def pick_caller() -> Any:
    """A demo customer whose number belongs to nobody else (so the pop names exactly one person)."""
    from screenpop.demo_data import demo_callers, generate_customers

    uses: dict[str, int] = {}
    for row in generate_customers(CUSTOMERS):
        for number in (row["phone"], row["mobile"]):
            if number:
                uses[number] = uses.get(number, 0) + 1
    return next(c for c in demo_callers(CUSTOMERS) if uses[c.e164] == 1)


@dataclass
class Watch:
    """Every server event, kept in order; ``wait`` resolves when one matching a predicate is seen."""

    events: list[object] = field(default_factory=list)
    waiters: list[tuple[Callable[[object], bool], asyncio.Future[object]]] = field(default_factory=list)

    def __call__(self, event: object) -> None:
        self.events.append(event)
        for pred, fut in list(self.waiters):
            if not fut.done() and pred(event):
                fut.set_result(event)
                self.waiters.remove((pred, fut))

    async def wait(self, pred: Callable[[Any], bool], timeout: float, what: str, since: int = 0) -> Any:
        """The first event from index ``since`` on that matches, waiting up to ``timeout`` seconds."""
        for event in self.events[since:]:
            if pred(event):
                return event
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.waiters.append((pred, fut))
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}") from None


class Scenario:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.t0 = time.monotonic()
        self.steps: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {"ok": False, "error": None}

    def step(self, what: str, **info: Any) -> None:
        self.steps.append({"step": what, "t": round(time.monotonic() - self.t0, 3), **info})

    async def run(self, reactor: Any) -> None:
        from playwright.async_api import async_playwright, expect

        from acd.events import CallAnswered, CallOffered
        from centre.process import Runtime
        from centre.sim_pbx import build_sim, listen
        from centre.wiring import ensure_demo_customers
        from config.load import load_config
        from cti.events import AmiConnectionChanged, CallQueued
        from ivr.events import IvrCompleted
        from sim.people import InboundArrival

        db_url = f"sqlite:///{self.workdir / 'e2e.sqlite3'}"
        cfg = e2e_config(load_config(DEMO), db_url)
        loop = asyncio.get_running_loop()
        written = await loop.run_in_executor(None, lambda: ensure_demo_customers(
            db_url, datetime.now(UTC), n=CUSTOMERS))
        caller = pick_caller()
        self.step("database seeded", customers=written, caller=caller.e164, name=caller.name)

        sim = build_sim(cfg, reactor, inbound=False)
        ami_port = listen(sim, reactor, host="127.0.0.1", port=0)
        cfg = with_ami_port(cfg, ami_port.getHost().port)
        runtime = Runtime(cfg, reactor)
        watch = Watch()
        runtime.server.subscribe(watch)
        self.cleanup = (sim, ami_port, runtime)
        await runtime.start()
        host, agi_port = runtime.fastagi_address
        sim.pbx.globals["CTI_FASTAGI"] = f"agi://{host}:{agi_port}"
        await watch.wait(lambda e: isinstance(e, AmiConnectionChanged) and e.connected, 10, "the AMI login")
        self.step("server up", http=runtime.http_port, fastagi=runtime.fastagi_address[1], ami=cfg.asterisk[0].port)

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            frames: list[dict[str, Any]] = []  # every frame the console received, decoded
            try:
                page = await browser.new_page()
                page.on("websocket", lambda ws: ws.on(
                    "framereceived", lambda payload: frames.append(json.loads(payload))))
                tid = page.get_by_test_id
                badge = tid("state-badge")
                await page.goto(f"http://127.0.0.1:{runtime.http_port}/")
                await tid("login-agent").fill(AGENT)
                await tid("login-password").fill(PASSWORD)
                await tid("login-submit").click()
                await expect(badge).to_have_attribute("data-state", "not_ready")
                self.step("agent logged in")
                await tid("btn-ready").click()
                await expect(badge).to_have_attribute("data-state", "ready")
                self.step("agent ready", acd_state=runtime.server.acd.agent_snapshot(AGENT).state.value)

                chan = sim.driver.arrive(InboundArrival(
                    at=sim.pbx.now_epoch(), did=DID, caller_num=caller.e164, caller_name="", patience=600.0,
                    keys=("1",), think_time=0.3, hangup_in_ivr_after=None, flow="main"))
                assert chan is not None, "the simulator refused the call"
                self.step("call arrives", channel=chan.name, uniqueid=chan.uniqueid)
                uid = chan.uniqueid
                ivr = await watch.wait(lambda e: isinstance(e, IvrCompleted) and e.uniqueid == uid, 20,
                                       "the IVR to finish over FastAGI")
                self.step("IVR done", outcome=ivr.outcome)
                queued = await watch.wait(lambda e: isinstance(e, CallQueued) and e.uniqueid == uid, 10,
                                          "CTIQueued from cti-hold")
                self.step("queued", queue=queued.queue, call_id=queued.call_id)
                offered = await watch.wait(lambda e: isinstance(e, CallOffered) and e.uniqueid == uid, 10,
                                           "the ACD's offer")
                self.step("offered", agent=offered.agent_id)
                await expect(tid("pop-customer-name")).to_have_text(caller.name)
                pop_caller = await tid("pop-caller").text_content()
                self.step("pop shown", name=caller.name, pop_caller=pop_caller)
                await watch.wait(lambda e: isinstance(e, CallAnswered) and e.uniqueid == uid, 15, "the answer")
                await expect(badge).to_have_attribute("data-state", "on_call")
                self.step("on call")
                await page.screenshot(path=str(self.workdir / "e2e-1-on-call.png"))

                # A reload mid-call: the tab signs itself back in (resume token) and the card, the IVR path
                # and the call come back, no password typed.
                await page.reload()
                await expect(badge).to_have_attribute("data-state", "on_call")
                await expect(tid("pop-customer-name")).to_have_text(caller.name)
                await expect(tid("pop-ivr-path")).to_contain_text("Main menu: pressed 1 (Sales)")
                await expect(tid("pop-reason")).to_have_text("Sales")
                await expect(tid("call-status")).to_have_attribute("data-status", "connected")
                await page.screenshot(path=str(self.workdir / "e2e-2-reloaded-on-call.png"))
                self.step("reloaded on call", ivr_path=await tid("pop-ivr-path").inner_text(),
                          call_timer=await tid("call-timer").inner_text())
                await tid("btn-hold").click()  # AMI Redirect of both legs to the hold contexts
                await expect(tid("call-status")).to_have_attribute("data-status", "held")
                await tid("btn-retrieve").click()  # AMI Bridge of the two legs again
                await expect(tid("call-status")).to_have_attribute("data-status", "connected")
                self.step("held and retrieved")
                await expect(badge).to_have_attribute("data-state", "wrap_up", timeout=TALK_S * 1000 + 10_000)
                await expect(tid("wrapup-form")).to_be_visible()
                self.step("wrap-up (phone hung up)")
                await tid("wrapup-disposition").select_option(DISPOSITION)
                await tid("wrapup-notes").fill(NOTES)

                # A reload in wrap-up: the card stays, and so does the form with what was typed.
                await page.reload()
                await expect(badge).to_have_attribute("data-state", "wrap_up")
                await expect(tid("pop-customer-name")).to_have_text(caller.name)
                await expect(tid("wrapup-notes")).to_have_value(NOTES)
                await expect(tid("wrapup-disposition")).to_have_value(DISPOSITION)
                await page.screenshot(path=str(self.workdir / "e2e-3-reloaded-in-wrapup.png"))
                self.step("reloaded in wrap-up")
                await tid("btn-dispose").click()
                await expect(badge).to_have_attribute("data-state", "ready")
                await expect(tid("pop-card")).to_be_hidden()
                await expect(tid("action-ok")).to_contain_text("recorded")  # the dispose request's reply
                self.step("disposed, ready again")
            finally:
                self.result["frames"] = [f for f in frames if f.get("type") != "heartbeat"]
                await browser.close()

        recorder = runtime.server.recorder
        flushed = await loop.run_in_executor(None, lambda: recorder.flush(10.0))
        self.step("recorder flushed", flushed=flushed, metrics=recorder.metrics)
        self.result.update(await loop.run_in_executor(None, read_database, db_url, queued.call_id,
                                                      runtime.server.cfg.asterisk[0].name))
        self.result["call"] = {"uniqueid": uid, "call_id": queued.call_id, "queue": queued.queue,
                               "caller": caller.e164, "customer": caller.name, "external_id": caller.external_id,
                               "ivr_outcome": ivr.outcome, "offered_to": offered.agent_id}
        self.result["ok"] = True

    async def stop(self) -> None:
        from twisted.internet import defer

        sim, ami_port, runtime = getattr(self, "cleanup", (None, None, None))
        if sim is not None:
            sim.stop()
        if runtime is not None:
            await runtime.stop()
        if ami_port is not None:
            await defer.Deferred.asFuture(defer.maybeDeferred(ami_port.stopListening), asyncio.get_running_loop())


def read_database(db_url: str, call_id: str, server: str) -> dict[str, Any]:
    """The interaction row of the call, its ACD queued-call records and 1001's state log."""
    from sqlalchemy import select

    from acd.tables import AgentStateRecord, QueueCallRecord
    from cti.db import make_engine
    from screenpop.store import Customer, Interaction

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(Interaction).where(Interaction.call_key == f"{server}/{call_id}")).mappings()
            interaction = next((dict(r) for r in row), None)
            if interaction is not None:
                cust = conn.execute(select(Customer.external_id).where(
                    Customer.id == interaction["customer_id"])).scalar()
                interaction["customer_external_id"] = cust
            calls = [dict(r) for r in conn.execute(select(QueueCallRecord).where(
                QueueCallRecord.call_id == call_id)).mappings()]
            states = [r.state for r in conn.execute(select(AgentStateRecord).where(
                AgentStateRecord.agent_id == AGENT).order_by(AgentStateRecord.id))]
    finally:
        engine.dispose()
    return {"interaction": _jsonable(interaction), "queue_calls": [_jsonable(c) for c in calls],
            "agent_states": states}


def _jsonable(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a fresh directory for the SQLite database")
    parser.add_argument("--timeout", type=float, default=50.0, help="seconds before the scenario is failed")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from cti.reactor import install_reactor

    reactor = install_reactor()
    scenario = Scenario(args.workdir)

    async def body() -> None:
        try:
            async with asyncio.timeout(args.timeout):
                await scenario.run(reactor)
        except BaseException as exc:  # reported in the JSON, the process still shuts down cleanly
            scenario.result["error"] = f"{exc.__class__.__name__}: {exc}"
            scenario.result["traceback"] = traceback.format_exc()
        finally:
            try:
                await scenario.stop()
            except Exception as exc:
                scenario.result["stop_error"] = f"{exc.__class__.__name__}: {exc}"
            reactor.stop()

    reactor.callWhenRunning(lambda: asyncio.ensure_future(body()))
    reactor.run()
    scenario.result["steps"] = scenario.steps
    print(json.dumps(scenario.result, default=str))
    return 0 if scenario.result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
