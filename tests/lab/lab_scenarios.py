"""Scenarios against a REAL Asterisk running the shipped dialplan (tests/lab/README.md says how to set
one up): the server (``centre.process.Runtime``) logs in to that PBX's AMI and serves FastAGI; consoles
log in over the real websocket protocol; a lab AMI connection plays the callers and customers by
originating Local channels into the lab people's contexts (tests/lab/extensions_lab.conf).

Run by tests/lab/test_lab.py in a process of its own (the Twisted reactor cannot be restarted):
``python tests/lab/lab_scenarios.py --workdir DIR [--only NAME ...] [--record DIR] [--sim]``. The PBX
comes from ``CTI_LAB_AMI`` = ``host:port,username,secret``; the address the PBX reaches our FastAGI on is
``CTI_LAB_FASTAGI`` (default ``127.0.0.1:4573``, the shipped dialplan's ``CTI_FASTAGI``). With ``--sim``
the PBX is the simulated one (sim/), started in this process on the same reactor with the shipped
dialplan and this folder's extensions_lab.conf, the shipped amd.conf and no traffic of its own: its AMI
on a free loopback port, its ``CTI_FASTAGI`` pointed at the server's FastAGI listener (a free port too),
so nothing clashes with a real Asterisk or a server on 4573. Prints one JSON object on the last line:
``{"scenarios": {name: {"ok", "error", "steps"}}, ...}``.

``--record DIR`` writes what the server's AMI connection and the FastAGI sessions received, with their
read boundaries (``NAME.timeline.jsonl`` as in tests/fixtures/asterisk), for new fixtures.

Imports the server and websockets; nothing imports this module.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.dial_windows import noon_zone  # noqa: E402
from tests.e2e.console_scenario import Watch  # noqa: E402  (run as a script: the repository on sys.path first)

DEMO = ROOT / "config" / "examples" / "demo.yaml"
SHIPPED_DIALPLAN = ROOT / "config" / "asterisk" / "extensions_cti.conf"
LAB_DIALPLAN = ROOT / "tests" / "lab" / "extensions_lab.conf"
SIM_AMI_USER, SIM_AMI_SECRET = "cti", "lab-sim-secret"
DID = "+18005550100"
PASSWORD = "demo-password"
# scrypt hash of "demo-password" (the demo config's)
PASSWORD_HASH = "scrypt$16384$8$1$mTWabujdAIlpBWqD1Ml9iw$rzxo5IObpFvt4DK9mbkmkG--UIklEMCsu1oSMPkgv3Q"
RING_TIMEOUT = 6.0
LEADS = {"L-HUMAN": "5551001", "L-MACHINE": "5552001", "L-BUSY": "5553001", "L-CONGESTION": "5554001",
         "L-NOANSWER": "5555001"}


def lab_pbx() -> tuple[str, int, str, str]:
    """``CTI_LAB_AMI`` as (host, port, username, secret)."""
    raw = os.environ.get("CTI_LAB_AMI", "")
    try:
        where, user, secret = raw.split(",", 2)
        host, _, port = where.rpartition(":")
        return host or "127.0.0.1", int(port), user, secret
    except ValueError:
        raise SystemExit("CTI_LAB_AMI must be host:port,username,secret") from None


def lab_config(workdir: Path, ami_port: int | None = None, fastagi_port: int | None = None) -> Any:
    """The demo config pointed at the lab PBX: agents' phones and transfer targets are the lab's Local
    channels, flows use prompts of Asterisk's core sounds (and one flow names prompts that do not
    exist), and an outbound campaign whose only agent (1003) logs in for the outbound scenario."""
    import yaml

    from config.load import load_config_text

    host, port, user, secret = lab_pbx()
    if ami_port is not None:
        host, port = "127.0.0.1", ami_port
    fa_host, _, fa_port = os.environ.get("CTI_LAB_FASTAGI", "127.0.0.1:4573").rpartition(":")
    if fastagi_port is not None:
        fa_host, fa_port = "127.0.0.1", str(fastagi_port or 4573)  # 0: any free port (set below)
    leads = workdir / "leads.csv"
    with leads.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "number", "name"])
        for lead_id, number in LEADS.items():
            writer.writerow([lead_id, number, f"Lab {lead_id}"])
    agent = {"password_hash": PASSWORD_HASH}
    data: dict[str, Any] = {
        "asterisk": [{"name": "lab", "host": host, "port": port, "username": user, "secret": secret,
                      "auth": "md5"}],
        "database": {"url": f"sqlite:///{workdir / 'lab.sqlite3'}"},
        "listen": {"fastagi": {"host": fa_host or "127.0.0.1", "port": int(fa_port)},
                   "http": {"host": "127.0.0.1", "port": 8080}},
        "pbx": {"internal_pattern": r"^2[0-9]{3}$", "internal_dial": "Local/{number}@cti-lab-target",
                "external_dial": "Local/{number}@cti-lab-customer"},
        "ivr": {"default_flow": "main", "idle_timeout": 60, "allow_from": ["127.0.0.1"], "flows": {
            "main": {"start": "menu", "nodes": {
                "menu": {"kind": "menu", "prompt": ["beep"], "options": {"1": "sales", "2": "support",
                                                                          "3": "account", "4": "out"},
                         "timeout": 6, "retries": 1, "after_retries": "support"},
                "sales": {"kind": "queue", "queue": "sales", "skills": {"sales": 3}},
                "support": {"kind": "queue", "queue": "support", "skills": {"support": 3}},
                "account": {"kind": "collect", "name": "account", "prompt": ["beep"], "min_digits": 4,
                            "max_digits": 4, "next": "billing"},
                "billing": {"kind": "queue", "queue": "billing", "skills": {"billing": 4}},
                "out": {"kind": "transfer", "dial": "Local/2001@cti-lab-target"}}},
            "missing": {"start": "hello", "nodes": {
                "hello": {"kind": "play", "prompts": ["lab-no-such-prompt"], "next": "account"},
                "account": {"kind": "collect", "name": "account", "prompt": ["lab-no-such-prompt-either"],
                            "min_digits": 4, "max_digits": 4, "timeout": 6, "next": "which"},
                "which": {"kind": "branch", "cases": [{"var": "account", "equals": "1234", "goto": "out"}],
                          "default": "sales"},
                "sales": {"kind": "queue", "queue": "sales"},
                "out": {"kind": "transfer", "dial": "Local/2002@cti-lab-target"}}}}},
        "acd": {"default_queue": "support", "queues": [
            {"name": q, "skills": {q: 1}, "ring_timeout": RING_TIMEOUT, "wrapup": 120}
            for q in ("sales", "support", "billing", "outbound")],
            "agents": [
                {"id": "1001", "name": "Lab One", "endpoint": "Local/1001@cti-lab-phone",
                 "skills": {"sales": 5, "support": 5, "billing": 5}, **agent},
                {"id": "1002", "name": "Lab Two", "endpoint": "Local/1002@cti-lab-phone",
                 "skills": {"sales": 5, "support": 5}, **agent},
                {"id": "1003", "name": "Lab Three", "endpoint": "Local/1003@cti-lab-phone",
                 "skills": {"outbound": 5}, **agent}]},
        "dialer": {"campaigns": [{
            "name": "labout", "queue": "outbound", "leads": str(leads), "caller_id": '"Lab" <+18005550199>',
            "max_attempts": 1, "ratio": 1.0, "originate_timeout": 10, "safe_harbour_after": 10,
            "policy": "custom", "custom": {"min_ring": 5},  # a lab PBX: short rings, a slow message
            # windows never reach outside 08:00-21:00: a zone where it is about noon lets the lab dial at any hour
            "calling_window": {"start": "09:00", "end": "20:00"}, "timezone": noon_zone(time.time())}]},
        # the supervisor's phone: 2100 answers after a second (cti-lab-target)
        "console": {"token_secret": "lab-console-secret-0123456789", "supervisors": [
            {"id": "sup", "password_hash": PASSWORD_HASH, "endpoint": "Local/2100@cti-lab-target"}]},
    }
    cfg = load_config_text(yaml.safe_dump(data), str(workdir / "lab.yaml"))
    listen = cfg.listen.model_copy(update={"http": cfg.listen.http.model_copy(update={"port": 0})})  # any free port
    if fastagi_port == 0:
        listen = listen.model_copy(update={"fastagi": listen.fastagi.model_copy(update={"port": 0})})
    return cfg.model_copy(update={"listen": listen})


class Lab(Watch):
    """The server's events (``Watch``) and the lab's own AMI connection (the callers and customers)."""

    def __init__(self) -> None:
        super().__init__()
        self.ami_events: list[Any] = []
        self.ids = itertools.count(1)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[str, asyncio.Future[Any]] = {}
        self.callers = itertools.count(100)

    def mark(self) -> int:
        return len(self.events)

    # the lab's AMI connection ----------------------------------------------------------------
    async def connect(self) -> None:
        from cti.ami.protocol import AMIParser

        host, port, user, secret = lab_pbx()
        self.reader, self.writer = await asyncio.open_connection(host, port)
        self.parser = AMIParser(expect_banner=True)
        asyncio.ensure_future(self._read())
        # dialplan: the Newexten/VarSet of the agent leg's pre-dial handler (the outbound scenario checks it)
        reply = await self.action("Login", Username=user, Secret=secret, Events="call,dtmf,user,dialplan")
        assert reply.get("Response") == "Success", "the lab's AMI login failed"

    async def _read(self) -> None:
        from cti.ami.message import AMIMessage

        assert self.reader is not None
        while data := await self.reader.read(65536):
            for item in self.parser.feed(data):
                if not isinstance(item, AMIMessage):
                    continue
                if item.kind == "response":
                    fut = self.pending.pop(item.get("ActionID") or "", None)
                    if fut is not None and not fut.done():
                        fut.set_result(item)
                else:
                    self.ami_events.append(item)

    async def action(self, name: str, **fields: str | list[str]) -> Any:
        assert self.writer is not None
        action_id = f"lab-{next(self.ids)}"
        lines = [f"Action: {name}", f"ActionID: {action_id}"]
        for key, value in fields.items():
            for v in value if isinstance(value, list) else [value]:
                lines.append(f"{key}: {v}")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[action_id] = fut
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        async with asyncio.timeout(10):
            return await fut

    async def call_in(self, dtmf: str = "", flow: str = "", stay: int = 300, dtmf_after: float = 2.5,
                      caller: str = "+15551230001") -> str:
        """A caller on the DID; returns the name of the Local ;1 leg (the server's caller channel)."""
        n = next(self.callers)
        variables = [f"LAB_DTMF={dtmf}", f"LAB_STAY={stay}", f"LAB_DTMF_AFTER={dtmf_after}"]
        if flow:
            variables.append(f"CTI_FLOW={flow}")
        since = len(self.ami_events)
        reply = await self.action("Originate", Channel=f"Local/{n}@cti-lab-caller", Context="cti-inbound",
                                  Exten=DID, Priority="1", Async="true", CallerID=f'"Lab Caller" <{caller}>',
                                  Variable=variables)
        assert reply.get("Response") == "Success", reply
        prefix = f"Local/{n}@cti-lab-caller-"
        for _ in range(100):
            for e in self.ami_events[since:]:
                name = e.get("Channel") or ""
                if e.name == "Newchannel" and name.startswith(prefix) and name.endswith(";1"):
                    return name
            await asyncio.sleep(0.05)
        raise AssertionError("the lab caller's channel never appeared")

    def channels_seen(self, prefix: str) -> list[str]:
        return sorted({e.get("Channel") or "" for e in self.ami_events
                       if e.name == "Newchannel" and (e.get("Channel") or "").startswith(prefix)})

    async def bridged_with(self, channel: str, prefix: str, timeout: float = 10.0) -> None:
        """Wait until ``channel`` and a channel starting with ``prefix`` are in one bridge."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            bridges: dict[str, set[str]] = {}
            for e in self.ami_events:
                if e.name in ("BridgeEnter", "BridgeLeave"):
                    members = bridges.setdefault(e.get("BridgeUniqueid") or "", set())
                    (members.add if e.name == "BridgeEnter" else members.discard)(e.get("Channel") or "")
            if any(channel in m and any(c.startswith(prefix) for c in m) for m in bridges.values()):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{channel} was never bridged with {prefix}...")

    async def hangup_all(self) -> None:
        await self.action("Hangup", Channel="/^Local\\/.*@cti-lab-/", Cause="16")
        await asyncio.sleep(1.0)


class Console:
    """One agent console over the real websocket protocol."""

    def __init__(self, url: str, agent_id: str, role: str = "agent") -> None:
        self.url, self.agent_id, self.role = url, agent_id, role
        self.frames: list[dict[str, Any]] = []
        self.replies: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)

    async def open(self) -> None:
        import websockets

        self.ws = await websockets.connect(self.url, origin=self.url.replace("ws://", "http://").rsplit("/", 1)[0])
        asyncio.ensure_future(self._read())
        hello = await self.request("hello", agent_id=self.agent_id, password=PASSWORD, role=self.role)
        assert hello["type"] == "result", hello

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if frame.get("type") in ("result", "error") and frame.get("re") in self.replies:
                self.replies.pop(frame["re"]).set_result(frame)
            elif frame.get("type") != "heartbeat":
                self.frames.append(frame)

    async def request(self, type_: str, **params: Any) -> dict[str, Any]:
        rid = next(self.ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[rid] = fut
        await self.ws.send(json.dumps({"v": 1, "type": type_, "id": rid, **params}))
        async with asyncio.timeout(10):
            return await fut

    async def ok(self, type_: str, **params: Any) -> dict[str, Any]:
        reply = await self.request(type_, **params)
        assert reply["type"] == "result", f"{type_} refused: {reply}"
        return reply

    async def frame(self, pred: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for f in self.frames:
                if pred(f):
                    return f
            await asyncio.sleep(0.05)
        raise AssertionError(f"console {self.agent_id}: no {what} within {timeout:g} s")

    def mark(self) -> int:
        return len(self.frames)

    async def frame_after(self, mark: int, pred: Callable[[dict[str, Any]], bool], timeout: float,
                          what: str) -> dict[str, Any]:
        return await self.frame(lambda f: f in self.frames[mark:] and pred(f), timeout, what)

    async def ready(self) -> None:
        state = await self.request("login")  # the configured phone
        if state.get("error_id") == "invalid-params":  # a server that wants the phone named
            state = await self.request("login", endpoint=f"Local/{self.agent_id}@cti-lab-phone")
        assert state["type"] == "result" or state.get("error_id") == "illegal-transition", state
        await self.ok("ready")

    async def close(self) -> None:
        await self.ws.close()


class Scenarios:
    def __init__(self, runtime: Any, lab: Lab, consoles: dict[str, Console]) -> None:
        self.runtime, self.lab, self.c = runtime, lab, consoles
        self.steps: list[dict[str, Any]] = []
        self.t0 = time.monotonic()

    def step(self, what: str, **info: Any) -> None:
        self.steps.append({"step": what, "t": round(time.monotonic() - self.t0, 2), **info})

    async def offered_call(self, console: Console, mark: int, dtmf: str = "1") -> tuple[str, dict[str, Any]]:
        """A caller keys ``dtmf``; the ACD offers it to ``console``'s agent, the pop arrives, the phone
        answers; returns the caller's channel and the pop."""
        from acd.events import CallAnswered, CallOffered

        ev = self.lab.mark()
        chan = await self.lab.call_in(dtmf=dtmf)
        offered = await self.lab.wait(lambda e: isinstance(e, CallOffered) and e.agent_id == console.agent_id,
                                      25, f"an offer to {console.agent_id}", ev)
        pop = await console.frame_after(mark, lambda f: f["type"] == "pop", 5, "pop")
        await self.lab.wait(lambda e: isinstance(e, CallAnswered) and e.uniqueid == offered.uniqueid, 15,
                            "the agent's phone to answer", ev)
        await console.frame_after(mark, lambda f: f["type"] == "call" and f["status"] == "connected", 5,
                                  "call connected")
        self.step("offered, popped and answered", agent=console.agent_id, caller=chan, queue=offered.queue)
        return chan, pop

    async def dispose(self, console: Console, pop: dict[str, Any]) -> None:
        """Wait for the agent's wrap-up after this call's pop, then dispose of the call."""
        since = next(i for i, f in enumerate(console.frames) if f is pop)
        await console.frame_after(since, lambda f: f["type"] == "state" and f["state"] == "wrap_up", 10, "wrap-up")
        await console.ok("dispose", call_id=pop["call_id"], disposition="resolved")
        self.step("disposed", agent=console.agent_id)

    # ---------------------------------------------------------------------------------------
    async def pbx_capabilities(self) -> None:
        """At connect the server asked the PBX what it has: every application and function of the shipped
        dialplan is there; only the two prompts the lab's "missing" flow names on purpose are missing."""
        end = time.monotonic() + 10
        while "lab" not in self.runtime.server.health.pbx and time.monotonic() < end:
            await asyncio.sleep(0.2)
        problems = self.runtime.server.wallboard()["health"]["pbx"]["lab"]
        self.step("health", problems=problems)
        assert len(problems) == 2 and all(p.startswith("prompt lab-no-such-prompt") for p in problems), problems

    async def inbound_ivr_offer_hold_hangup(self) -> None:
        """IVR over FastAGI (key 1 -> sales), CTIQueued, offer to the only ready agent with the pop before
        the phone answers, hold (the caller hears music) and retrieve, hang-up from the console, wrap-up,
        disposition."""
        one = self.c["1001"]
        await one.ready()
        chan, pop = await self.offered_call(one, one.mark())
        assert pop["agent_id"] == "1001"
        m = len(self.lab.ami_events)
        await one.ok("hold")
        await asyncio.sleep(1.0)
        assert any(e.name == "MusicOnHoldStart" and e.get("Channel") == chan for e in self.lab.ami_events[m:]), \
            "the caller got no music on hold"
        await one.ok("retrieve")
        await self.lab.bridged_with(chan, "Local/1001@cti-lab-phone-")
        self.step("held and retrieved")
        await one.ok("hangup")
        await self.dispose(one, pop)

    async def ring_no_answer(self) -> None:
        """1001's phone rings out (RONA): 1001 goes not ready, the caller is offered again to 1002 with a
        new pop, and 1002 takes the call."""
        from acd.events import OfferNotAnswered

        one, two = self.c["1001"], self.c["1002"]
        await self.lab.action("DBPut", Family="lab", Key="noanswer/1001", Val="1")
        try:
            await one.ready()
            m1, m2, ev = one.mark(), two.mark(), self.lab.mark()
            await self.lab.call_in(dtmf="1")
            await one.frame_after(m1, lambda f: f["type"] == "pop", 25, "the first pop")
            await two.ready()
            rona = await self.lab.wait(lambda e: isinstance(e, OfferNotAnswered) and e.agent_id == "1001",
                                       RING_TIMEOUT + 10, "ring-no-answer", ev)
            self.step("ring-no-answer", reason=getattr(rona, "reason", ""))
            await one.frame_after(m1, lambda f: f["type"] == "state" and f["state"] == "not_ready", 5,
                                  "1001 not ready after RONA")
            pop2 = await two.frame_after(m2, lambda f: f["type"] == "pop", 15, "the re-offer's pop")
            await two.frame_after(m2, lambda f: f["type"] == "call" and f["status"] == "connected", 10,
                                  "1002 connected")
            await two.ok("hangup")
            await self.dispose(two, pop2)
        finally:
            await self.lab.action("DBDel", Family="lab", Key="noanswer/1001")

    async def blind_transfer_to_number(self) -> None:
        """The agent transfers the caller to 2001: the caller is bridged with 2001, the agent wraps up."""
        one = self.c["1001"]
        await one.ready()
        chan, pop = await self.offered_call(one, one.mark())
        await one.ok("transfer", to="number", target="2001")
        await self.lab.bridged_with(chan, "Local/2001@cti-lab-target-")
        self.step("caller talks to 2001")
        await self.dispose(one, pop)

    async def blind_transfer_to_queue(self) -> None:
        """The agent hands the caller to the support queue: it is a new offer with a full pop (here to
        1002); the transferring agent can still dispose of the call they handed on."""
        one, two = self.c["1001"], self.c["1002"]
        await one.ready()
        chan, pop = await self.offered_call(one, one.mark())
        m2 = two.mark()
        await two.ready()
        await one.ok("transfer", to="queue", target="support")
        pop2 = await two.frame_after(m2, lambda f: f["type"] == "pop", 20, "the transferred call's pop")
        await two.frame_after(m2, lambda f: f["type"] == "call" and f["status"] == "connected", 15,
                              "1002 connected")
        self.step("re-offered with a pop", agent="1002", queue=pop2.get("queue"))
        await self.dispose(one, pop)
        await two.ok("hangup")
        await self.dispose(two, pop2)

    async def _consulting(self, number: str) -> tuple[Console, str, dict[str, Any]]:
        one = self.c["1001"]
        await one.ready()
        chan, pop = await self.offered_call(one, one.mark())
        m = one.mark()
        reply = await one.ok("attended_transfer", number=number)
        assert reply["status"] == "consulting", reply
        await one.frame_after(m, lambda f: f["type"] == "call" and (f.get("consult") or {}).get("state") == "talking",
                              10, "the consulted party talking")
        assert any(e.name == "MusicOnHoldStart" and e.get("Channel") == chan for e in self.lab.ami_events), \
            "the caller heard no music during the consultation"
        self.step("consulting", number=number)
        return one, chan, pop

    async def attended_transfer_complete(self) -> None:
        """Consult 2002 (the caller hears music), then complete: the caller talks to 2002, the agent
        wraps up."""
        one, chan, pop = await self._consulting("2002")
        await one.ok("attended_complete")
        await self.lab.bridged_with(chan, "Local/0@cti-consult-")
        await asyncio.sleep(1.0)
        assert not any(e.name == "Hangup" and e.get("Channel") == chan for e in self.lab.ami_events), \
            "the caller was dropped"
        self.step("caller talks to 2002")
        await self.dispose(one, pop)

    async def attended_transfer_back_to_caller(self) -> None:
        """Consult 2003, then back to the caller: the agent talks to the caller again (connected)."""
        one, chan, pop = await self._consulting("2003")
        m = one.mark()
        await one.ok("attended_cancel")
        await self.lab.bridged_with(chan, "Local/1001@cti-lab-phone-")
        await one.frame_after(m, lambda f: f["type"] == "call" and f["status"] == "connected", 5, "connected")
        await one.ok("hangup")
        await self.dispose(one, pop)

    async def attended_transfer_target_hangs_up(self) -> None:
        """Consult 2004, which hangs up: the agent is back with the caller and the console says so."""
        one, chan, pop = await self._consulting("2004")
        m = one.mark()
        await self.lab.action("Hangup", Channel="/^Local\\/2004@cti-lab-target-.*;2$/", Cause="16")
        await one.frame_after(m, lambda f: f["type"] == "call" and f["status"] == "connected", 10,
                              "connected after the target hung up")
        await self.lab.bridged_with(chan, "Local/1001@cti-lab-phone-")
        await one.ok("hangup")
        await self.dispose(one, pop)

    async def ivr_missing_prompts(self) -> None:
        """A flow whose prompts do not exist on the PBX: the collect still reads the caller's digits and
        the flow's decision (transfer to 2002) wins over the fallback queue."""
        from ivr.events import IvrCompleted

        ev = self.lab.mark()
        chan = await self.lab.call_in(dtmf="1234", flow="missing", dtmf_after=1.5)
        done = await self.lab.wait(lambda e: isinstance(e, IvrCompleted), 30, "the IVR to finish", ev)
        self.step("IVR finished", outcome=done.outcome, path=getattr(done, "path", None))
        await self.lab.bridged_with(chan, "Local/2002@cti-lab-target-", timeout=15)
        self.step("transferred as the flow decided")

    async def supervisor_whisper(self) -> None:
        """A supervisor whispers to an agent on a call: the server Originates the supervisor's phone (2100)
        into the shipped [cti-spy]; once it answers, ChanSpy (app_chanspy, options qwES) spies on the agent's
        channel (ChanSpyStart: the supervisor's channel the spyer, the agent's the spyee). The supervisor hangs
        up and the call goes on; ChanSpyStop comes by the end of the agent's call."""
        one = self.c["1001"]
        sup = Console(one.url, "sup", role="supervisor")
        await sup.open()
        try:
            await one.ready()
            chan, pop = await self.offered_call(one, one.mark())
            live = self.runtime.server.call_for_agent("1001")
            assert live is not None and live.agent_channel
            ami = len(self.lab.ami_events)
            reply = await sup.ok("monitor", agent_id="1001", mode="whisper")
            assert reply["channel"] == live.agent_channel, reply
            start = await self._ami_event(ami, "ChanSpyStart", 15)
            spyer = str(start.get("SpyerChannel") or "")
            self.step("supervisor spying", spyer=spyer, spyee=start.get("SpyeeChannel"), exten=start.get("SpyerExten"))
            assert start.get("SpyeeChannel") == live.agent_channel, start
            assert spyer.startswith("Local/2100@cti-lab-target-"), spyer
            # the supervisor puts the phone down (the phone's side, ;2, after it has talked a while): the
            # agent's call goes on. On Asterisk 22.10.1 with these Local-channel stand-ins, ChanSpy on ;1 did
            # not notice that hang-up (no ChanSpyStop until the spied-on call ended, also with audio flowing
            # from ;2 and also hanging up ;1 itself); the spy leg ends with the agent's call at the latest.
            await asyncio.sleep(2.0)
            await self.lab.action("Hangup", Channel=spyer.replace(";1", ";2"), Cause="16")
            await asyncio.sleep(1.0)
            assert self.runtime.server.acd.agent_snapshot("1001").state == "on_call"
            self.step("supervisor gone, the call goes on")
            await one.ok("hangup")
            stop = await self._ami_event(ami, "ChanSpyStop", 10)
            self.step("spy leg over", spyer=stop.get("SpyerChannel"))
            await self.dispose(one, pop)
        finally:
            await sup.close()

    async def _ami_event(self, since: int, name: str, timeout: float) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for e in self.lab.ami_events[since:]:
                if e.name == name:
                    return e
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {name} within {timeout:g} s")

    async def outbound_outcomes(self) -> None:
        """The campaign dials its five leads through the shipped [cti-outbound]: the person goes to agent
        1003 with the lead's pop; busy, congestion, no answer and the answering machine are recorded
        as such."""
        from dialer.events import AttemptFinished

        three = self.c["1003"]
        m = three.mark()
        ev = self.lab.mark()
        ami = len(self.lab.ami_events)
        await three.ready()
        pop = await three.frame_after(m, lambda f: f["type"] == "pop", 40, "the person's pop")
        await three.frame_after(m, lambda f: f["type"] == "call" and f["status"] == "connected", 15,
                                "1003 connected to the person")
        self.step("person connected", lead=(pop.get("lead") or {}).get("lead_id"))
        # Auto-answer (issue 15): [cti-agent] hands the campaign to the pre-dial handler, which runs on the
        # agent's leg and, the leg being a Local channel and not PJSIP, skips the auto-answer headers.
        leg = [e for e in self.lab.ami_events[ami:]
               if str(e.get("Channel") or "").startswith("Local/1003@cti-lab-phone-")]
        args = [e.get("Value") for e in leg if e.name == "VarSet" and e.get("Variable") == "LOCAL(ARG1)"]
        steps = [e.get("Priority") for e in leg if e.name == "Newexten" and e.get("Context") == "cti-agent-leg"]
        self.step("agent leg's pre-dial handler", args=args, priorities=steps)
        assert args[:1] == ["labout"], f"the handler's argument: {args}"
        assert steps[:4] == ["1", "2", "3", "6"], f"the handler's steps: {steps}"
        await three.ok("hangup")
        await self.dispose(three, pop)
        results: dict[str, str] = {}
        end = time.monotonic() + 60
        while time.monotonic() < end and len(results) < len(LEADS):
            for e in self.lab.events[ev:]:
                if isinstance(e, AttemptFinished):
                    results[e.lead_id] = e.result
            await asyncio.sleep(0.2)
        self.step("outcomes", results=results)
        expected = {"L-HUMAN": "connected", "L-MACHINE": "machine", "L-BUSY": "busy",
                    "L-CONGESTION": "congestion", "L-NOANSWER": "noanswer"}
        assert results == expected, f"outcomes {results} != {expected}"


ORDER = [
    "pbx_capabilities", "inbound_ivr_offer_hold_hangup", "ring_no_answer", "blind_transfer_to_number",
    "blind_transfer_to_queue", "attended_transfer_complete", "attended_transfer_back_to_caller",
    "attended_transfer_target_hangs_up", "ivr_missing_prompts", "supervisor_whisper", "outbound_outcomes",
]


def start_sim(workdir: Path, reactor: Any) -> tuple[Any, Any]:
    """The simulated PBX for ``--sim`` (see the module docstring); sets ``CTI_LAB_AMI`` to its AMI.
    Returns the centre.sim_pbx.SimRuntime and its listening port."""
    from centre.sim_pbx import build_sim, listen

    os.environ["CTI_LAB_AMI"] = f"127.0.0.1:5038,{SIM_AMI_USER},{SIM_AMI_SECRET}"  # the port is chosen below
    sim = build_sim(lab_config(workdir, fastagi_port=0), reactor, inbound=False,
                    dialplan=[SHIPPED_DIALPLAN, LAB_DIALPLAN])
    port = listen(sim, reactor, host="127.0.0.1", port=0)
    os.environ["CTI_LAB_AMI"] = f"127.0.0.1:{port.getHost().port},{SIM_AMI_USER},{SIM_AMI_SECRET}"
    return sim, port


async def run(workdir: Path, only: list[str], record: Path | None, use_sim: bool = False) -> dict[str, Any]:
    from twisted.internet import reactor

    from centre.process import Runtime

    recorder: Recorder | None = None
    sim: Any = None
    sim_port: Any = None
    ports: dict[str, int] = {}
    if use_sim:
        sim, sim_port = start_sim(workdir, reactor)
        ports["fastagi_port"] = 0
    pbx_fastagi = 0
    if record is not None:
        # The PBX dials our FastAGI at CTI_LAB_FASTAGI: the recorder listens there and the server elsewhere.
        recorder = Recorder()
        host, port, _, _ = lab_pbx()
        ports["ami_port"] = await recorder.proxy("ami", (host, port))
        ports["fastagi_port"] = 14573
        fa_host, _, fa_port = os.environ.get("CTI_LAB_FASTAGI", "127.0.0.1:4573").rpartition(":")
        pbx_fastagi = await recorder.proxy("fastagi", ("127.0.0.1", 14573), 0 if use_sim else int(fa_port))
    cfg = lab_config(workdir, **ports)
    runtime = Runtime(cfg, reactor)
    lab = Lab()
    runtime.server.subscribe(lab)
    await runtime.start()
    if sim is not None:
        fa_host, fa_port = ("127.0.0.1", pbx_fastagi) if pbx_fastagi else runtime.fastagi_address
        from cti.contract import CTI_FASTAGI

        sim.pbx.globals[CTI_FASTAGI] = f"agi://{fa_host}:{fa_port}"
    result: dict[str, Any] = {"scenarios": {}}
    consoles: dict[str, Console] = {}
    try:
        from cti.events import AmiConnectionChanged

        await lab.wait(lambda e: isinstance(e, AmiConnectionChanged) and e.connected, 15, "the AMI login")
        await lab.connect()
        await lab.hangup_all()
        url = f"ws://127.0.0.1:{runtime.http_port}/ws"
        for agent_id in ("1001", "1002", "1003"):
            consoles[agent_id] = Console(url, agent_id)
            await consoles[agent_id].open()
        scenarios = Scenarios(runtime, lab, consoles)
        for name in [n for n in ORDER if not only or n in only]:
            scenarios.steps = []
            entry: dict[str, Any] = {"ok": False, "error": None}
            fn: Callable[[], Awaitable[None]] = getattr(scenarios, name)
            try:
                async with asyncio.timeout(120):
                    await fn()
                entry["ok"] = True
            except BaseException as exc:
                entry["error"] = f"{exc.__class__.__name__}: {exc}"
                entry["traceback"] = traceback.format_exc()
            entry["steps"] = scenarios.steps
            result["scenarios"][name] = entry
            await lab.hangup_all()
            for console in consoles.values():  # every agent back to logged in, not ready, between scenarios
                snap = runtime.server.acd.agent_snapshot(console.agent_id)
                if snap.state == "wrap_up" and runtime.server.last_call.get(console.agent_id):
                    last = runtime.server.last_call[console.agent_id]
                    await console.request("dispose", call_id=last[1], disposition="resolved", then="not_ready",
                                          reason="break")
                elif snap.state in ("ready", "on_call", "ringing", "reserved"):
                    await console.request("not_ready", reason="break")
            await asyncio.sleep(1.0)
    finally:
        for console in consoles.values():
            await console.close()
        await runtime.stop()
        if recorder is not None and record is not None:
            recorder.write(record)
        if sim is not None:
            sim.stop()
            sim_port.stopListening()
    return result


class Recorder:
    """Loopback proxies that log every chunk each side reads, with its time (the read boundaries of
    tests/fixtures/asterisk's ``*.timeline.jsonl``): the server's AMI connection to the PBX, and the
    PBX's FastAGI connections to the server."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.lines: list[str] = []
        self.servers: list[asyncio.Server] = []
        self.conns = itertools.count(1)

    async def proxy(self, label: str, upstream: tuple[str, int], listen_port: int = 0) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = f"{label}-{next(self.conns)}"
            up_reader, up_writer = await asyncio.open_connection(*upstream)

            async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: str) -> None:
                while data := await src.read(65536):
                    self.lines.append(json.dumps({"t": round(time.monotonic() - self.t0, 6), "conn": conn,
                                                  "dir": direction, "data": data.decode("latin-1")}))
                    dst.write(data)
                dst.close()

            # "recv" is what the server side of the project read, "send" what it wrote
            inbound = "send" if label == "ami" else "recv"
            outbound = "recv" if label == "ami" else "send"
            await asyncio.gather(pump(reader, up_writer, inbound), pump(up_reader, writer, outbound),
                                 return_exceptions=True)

        server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def write(self, outdir: Path) -> None:
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / "lab.timeline.jsonl").write_text("\n".join(self.lines) + "\n", encoding="utf-8")
        for server in self.servers:
            server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--only", nargs="*", default=[])
    parser.add_argument("--record", type=Path, default=None)
    parser.add_argument("--sim", action="store_true", help="run against the simulated PBX (sim/), not CTI_LAB_AMI")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from cti.reactor import install_reactor

    reactor = install_reactor()
    out: dict[str, Any] = {}

    async def body() -> None:
        try:
            out.update(await run(args.workdir, args.only, args.record, args.sim))
        except BaseException as exc:
            out["error"] = f"{exc.__class__.__name__}: {exc}"
            out["traceback"] = traceback.format_exc()
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: asyncio.ensure_future(body()))
    reactor.run()
    print(json.dumps(out, default=str))
    return 0 if out.get("scenarios") and all(s["ok"] for s in out["scenarios"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
