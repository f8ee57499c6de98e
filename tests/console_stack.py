"""Test harness for the console hub over the REAL engines: the hub on 127.0.0.1:0 with the production
backend (``centre.console_backend.ServerConsoleBackend``) over a real ``CtiServer`` (ACD rules, call
tracker, dispatcher, screen pops and callbacks on a temporary SQLite), which talks AMI to the simulated
PBX (sim/, the shipped dialplan, over ``sim.memory_transport``) through a ``RecordingSender``: every AMI
action a command sends is recorded, and a test may script the PBX to refuse one. Plus a small websocket
client that speaks protocol v1. Used by tests/test_console_*.py.

Time: the server and the PBX run on a ``WallClock``, virtual time that follows the wall clock (a pump
task runs what is due every few milliseconds) and that a test may move ahead (``await stack.advance(s)``)
to reach a ring timeout or a timer without sleeping; the hub reads the same time.

Calls: ``stack.arrive(...)`` puts a caller into ``cti-hold`` (as the IVR leaves them, with its channel
variables); the ACD offers it to a ready agent and the PBX rings that agent's phone, which answers only
when the test says (``stack.answer(agent)``); ``stack.hang_up_phone(agent)`` and
``stack.caller_hangs_up(call)`` end it from either side. Not imported by the server.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.internet import defer
from websockets.asyncio.client import ClientConnection, connect

from agent_console.auth import Authenticator, hash_password
from agent_console.hub import ConsoleHub
from agent_console.settings import ConsoleSection
from centre.console_backend import ServerConsoleBackend
from centre.database import upgrade
from centre.server import CtiServer
from config.schema import CtiConfig
from cti.ami.client import ActionError, ActionResult
from cti.ami.message import AMIMessage
from cti.contract import (
    CTI_FLOW,
    CTI_IVR_PATH,
    CTI_QUEUE,
    CTI_SKILLS,
    HOLD_CONTEXT,
    START_EXTEN,
    collected_variable,
)
from cti.dispatch import ActionSender
from cti.sessions import CallSession
from screenpop.records import AccountRecord, CustomerInput, PhoneRecord
from sim.ami_server import AMIServer, AMIServerFactory
from sim.channel import Channel
from sim.clock import VirtualClock
from sim.dialplan import DEFAULT_DIALPLAN, load_dialplan
from sim.far_end import FarEnd, FixedFarEnds
from sim.memory_transport import MemoryConnector, MemoryNetwork
from sim.pbx import Pbx

SECRET = "test-secret-0123456789abcdef"
# Cheap scrypt parameters keep the tests fast; the format and the code path are the real ones.
PASSWORDS = {"1001": "pw-1001", "1002": "pw-1002", "sup": "pw-sup"}
HASHES = {agent: hash_password(pw, n=2**4) for agent, pw in PASSWORDS.items()}
AGENTS = {"1001": ["sales"], "1002": ["sales", "support"]}
PBX = "pbx1"
AMI_USER, AMI_SECRET = "cti", "cti-secret"
# The supervisor's own phone (monitor, whisper, barge ring it): it answers after half a second.
SUPERVISOR_PHONE = "PJSIP/2100"
# Numbers an agent may transfer to or consult: 2001 answers after 1 s; 2003 never answers.
TARGETS = {"2001": FarEnd("answer", ring_time=1.0), "2002": FarEnd("answer", ring_time=1.0),
           "2003": FarEnd("noanswer")}

# A pop in the shape screenpop.compose.compose_pop produces (one customer found by ANI).
_ADA = {
    "customer_id": 42,
    "profile": {"id": 42, "external_id": "C-42", "name": "Ada Lovelace", "first_name": "Ada",
                "last_name": "Lovelace", "company": "", "email": "ada@example.com", "language": "en",
                "segment": "gold", "notes": "", "phones": [{"e164": "+15551234567", "kind": "mobile"}],
                "accounts": [{"number": "ACC-0042", "product": "broadband", "status": "active"}],
                "attributes": {}},
    "interactions": [{"id": 7, "call_key": "pbx1/1700000000.1", "customer_id": 42,
                      "started_at": "2025-01-05T10:00:00+00:00", "ended_at": "2025-01-05T10:04:00+00:00",
                      "direction": "inbound", "ani": "+15551234567", "dnis": "100", "queue": "sales",
                      "campaign": "", "lead_id": "", "agent_id": "1002", "outcome": "answered",
                      "disposition": "resolved", "notes": "billing question"}],
    "crm_url": "https://crm.example.com/customers/C-42",
}
SAMPLE_POP: dict[str, Any] = {
    "call_id": "1700000100.5", "call_key": "pbx1/1700000100.5", "uniqueid": "1700000100.5", "server": "pbx1",
    "direction": "inbound", "ani": "+15551234567", "ani_e164": "+15551234567", "caller_name": "ADA L",
    "dnis": "100", "queue": "sales", "wait_seconds": 12.0, "agent_id": "1001", "complete": True,
    "lookup": {"status": "found", "by": "ani", "value": "+15551234567"}, "new_caller": False,
    "customer": _ADA, "matches": [_ADA],
    "ivr": {"path": ["main", "billing"], "collected": {"account": "0042", "pin": "****"}},
    "outbound": None, "crm_url": "https://crm.example.com/customers/C-42",
}

# The IVR flow whose labels put a caller's path in words on the pop (as config/examples/demo.yaml's).
FLOWS: dict[str, Any] = {"main": {"description": "Test main line", "start": "who", "nodes": {
    "who": {"kind": "lookup", "label": "Caller's number", "by": "ani", "found": "vip_check", "not_found": "menu",
            "unavailable": "menu"},
    "vip_check": {"kind": "branch", "label": "VIP customer",
                  "cases": [{"var": "customer.vip", "equals": "yes", "goto": "menu"}], "default": "menu"},
    "menu": {"kind": "menu", "label": "Main menu", "prompt": ["beep"], "options": {"1": "sales", "2": "support"},
             "timeout": 5, "retries": 2, "invalid_prompt": "beep", "after_retries": "support"},
    "sales": {"kind": "queue", "label": "Sales", "queue": "sales", "skills": {"sales": 3}},
    "support": {"kind": "queue", "label": "Support", "queue": "support", "skills": {"support": 3}},
}}}
SALES_PATH = ("who:found", "vip_check:default", "menu:1", "sales:queue:sales")


def make_settings(**overrides: Any) -> ConsoleSection:
    base: dict[str, Any] = {
        "token_secret": SECRET,
        "supervisors": [{"id": "sup", "password_hash": HASHES["sup"], "endpoint": SUPERVISOR_PHONE}],
        "hello_timeout": 2.0,
    }
    base.update(overrides)
    return ConsoleSection.model_validate(base)


def stack_config(settings: ConsoleSection, db_url: str, dialer: dict[str, Any] | None = None,
                 recording: dict[str, Any] | None = None) -> CtiConfig:
    """Two agents (1001 sales, 1002 sales and support), two queues, one PBX, the console's settings (and
    the ``dialer:`` section given, if any; ``recording``: the ``recording:`` section, its ``queues`` key
    giving the queues' policies)."""
    recording = dict(recording or {})
    policies = recording.pop("queues", {})
    cfg = _stack_config(settings, db_url, dialer)
    if not policies and not recording:
        return cfg
    data = cfg.model_dump(exclude_unset=True)
    data["recording"] = recording
    for q in data["acd"]["queues"]:
        if q["name"] in policies:
            q["recording"] = policies[q["name"]]
    return CtiConfig.model_validate(data)


def _stack_config(settings: ConsoleSection, db_url: str, dialer: dict[str, Any] | None = None) -> CtiConfig:
    return CtiConfig.model_validate({**({"dialer": dialer} if dialer is not None else {}),
        "asterisk": [{"name": PBX, "host": "10.0.0.1", "port": 5038, "username": AMI_USER, "secret": AMI_SECRET}],
        "database": {"url": db_url},
        "ivr": {"default_flow": "main", "flows": FLOWS},
        "acd": {"default_queue": "sales",
                "queues": [{"name": "sales", "skills": {"sales": 1}, "wrapup": 3600, "ring_timeout": 15},
                           {"name": "support", "skills": {"support": 1}, "wrapup": 3600, "ring_timeout": 15}],
                "agents": [{"id": a, "name": f"Agent {a}", "endpoint": f"PJSIP/{a}",
                            "skills": dict.fromkeys(queues, 5)} for a, queues in AGENTS.items()]},
        "screenpop": {"crm_url_template": "https://crm.example.com/customers/{external_id}"},
        "console": settings,
    })


class WallClock(VirtualClock):
    """Virtual time that follows the wall clock: ``catch_up()`` (the stack's pump) runs what is due by
    now; ``jump(seconds)`` moves it ahead for good (a ring timeout reached without sleeping)."""

    def __init__(self) -> None:
        super().__init__(start=time.time())
        self.offset = 0.0

    def wall(self) -> float:
        return time.time() + self.offset

    def catch_up(self) -> None:
        self.run_until(max(self.rightNow, self.wall()))

    def jump(self, seconds: float) -> None:
        self.offset += seconds
        self.catch_up()


@dataclass(frozen=True, slots=True)
class Sent:
    """One AMI action as the dispatcher sent it."""

    server: str
    action: str
    fields: dict[str, Any]


class RecordingSender:
    """The server's ``ActionSender``: records every action, then passes it to the AMI connections, unless a
    test scripted the PBX to refuse it (``refuse``): then it fails as Asterisk's ``Response: Error`` does
    and never reaches the PBX."""

    def __init__(self) -> None:
        self.target: ActionSender | None = None
        self.sent: list[Sent] = []
        self._refusals: dict[str, list[str]] = {}

    def refuse(self, action: str, message: str = "No such channel") -> None:
        """The next ``action`` is answered with an error carrying ``message``."""
        self._refusals.setdefault(action, []).append(message)

    def send(self, server: str, name: str, fields: dict[str, str | list[str]] | None = None, *,
             timeout: float | None = None) -> defer.Deferred[ActionResult]:
        self.sent.append(Sent(server, name, dict(fields or {})))
        refusals = self._refusals.get(name)
        if refusals:
            response = AMIMessage([("Response", "Error"), ("Message", refusals.pop(0))])
            return defer.fail(ActionError(server, name, response))
        assert self.target is not None, "the sender is not attached to the server's AMI connections"
        return self.target.send(server, name, fields, timeout=timeout)

    def batch(self, server: str) -> contextlib.AbstractContextManager[None]:
        assert self.target is not None
        return self.target.batch(server)

    def actions(self, since: int = 0) -> list[tuple[str, dict[str, Any]]]:
        """(action, fields) sent from index ``since`` on."""
        return [(s.action, s.fields) for s in self.sent[since:]]


def _inline(fn: Callable[[], Any]) -> defer.Deferred[Any]:
    """Store calls run at once on the loop's thread (small SQLite, no thread pool to stop)."""
    try:
        return defer.succeed(fn())
    except Exception:
        return defer.fail()


_TEMPLATE: list[Path] = []


def _fresh_database(directory: Path) -> str:
    """A migrated SQLite file (migrated once per test process, then copied)."""
    if not _TEMPLATE:
        folder = tempfile.mkdtemp(prefix="console-db-")
        atexit.register(shutil.rmtree, folder, True)
        template = Path(folder) / "template.sqlite3"
        upgrade(f"sqlite:///{template}")
        _TEMPLATE.append(template)
    path = directory / "console.sqlite3"
    shutil.copyfile(_TEMPLATE[0], path)
    return f"sqlite:///{path}"


class Stack:
    """Hub + the real backend, server and simulated PBX (see the module docstring)."""

    def __init__(self, settings: ConsoleSection, directory: Path, hashes: dict[str, str] | None = None, *,
                 dialer: dict[str, Any] | None = None, numbers: dict[str, FarEnd] | None = None,
                 recording: dict[str, Any] | None = None, db_url: str | None = None,
                 redis: dict[str, Any] | None = None, node_id: str = "local", pbx: str = PBX,
                 **hub_options: Any) -> None:
        """``hashes``: the agents' password hashes (default ``HASHES``, cheap scrypt parameters);
        ``dialer``: a ``dialer:`` section; ``numbers``:
        how the outbound numbers it dials answer (through the trunk); ``db_url``: a database of the test's
        (default: a fresh SQLite file); ``redis``: a ``redis:`` section (the bus between nodes, started and
        closed with the stack) and ``node_id`` this node's id on it; ``pbx``: the simulated PBX's name (several
        nodes' PBXs are the centre's, each of its own name: a node holds the lease of its PBX's connection)."""
        self.pbx_name = pbx
        self.settings = settings
        self.directory = directory
        if db_url is not None:  # another database (PostgreSQL), migrated here
            upgrade(db_url)
        self.cfg = stack_config(settings, db_url or _fresh_database(directory), dialer, recording)
        if redis is not None or pbx != PBX:
            doc = self.cfg.model_dump(exclude_unset=True)
            doc["asterisk"] = [{**doc["asterisk"][0], "name": pbx}]
            if redis is not None:
                doc.update(redis=redis, node={"id": node_id})
            self.cfg = CtiConfig.model_validate(doc)
        self.clock = WallClock()
        self.network = MemoryNetwork(self.clock)
        phones = {a: FarEnd("noanswer") for a in AGENTS}  # an agent's phone answers when the test says
        self.pbx = Pbx(self.clock, load_dialplan(DEFAULT_DIALPLAN),
                       far_ends=FixedFarEnds({**phones, **TARGETS, "2100": FarEnd("answer", ring_time=0.5)},
                                             by_number=numbers))
        ast = self.cfg.asterisk[0]
        self.ami_server = AMIServer(self.pbx, {AMI_USER: AMI_SECRET})
        self.ami_listener = self.network.listen(ast.host, ast.port, AMIServerFactory(self.ami_server))
        self.sender = RecordingSender()
        self.server = CtiServer(self.cfg, clock=self.clock, ami=self.sender,
                                ami_connector=lambda s, f: MemoryConnector(self.network, s, f))
        self.sender.target = self.server.pool
        self.server.open_database(_inline)
        self.backend = ServerConsoleBackend(self.server)
        agent_ids = [a.id for a in self.cfg.acd.agents]
        auth = Authenticator(settings, hashes or {a: HASHES[a] for a in AGENTS}, clock=self.clock.wall,
                             agent_ids=agent_ids)
        hub_options.setdefault("not_ready_reasons", self.cfg.acd.not_ready_reasons)
        self.hub = ConsoleHub(settings, self.backend, auth, self.clock.wall, **hub_options)
        self.server.pusher = self.hub
        self.port = 0
        self.seeded: dict[str, int] = {}  # external id -> customer id
        self._pump: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.settings.path}"

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        transport = self.server.components.transport
        if transport is not None:
            transport.start()
        self.server.start()
        self._pump = asyncio.create_task(self._run_pump())
        await self.until(lambda: self.server.health.ami.get(self.pbx_name, False), "the AMI link to the simulated PBX")
        self.port = await self.hub.start("127.0.0.1", 0)

    async def stop(self) -> None:
        await self.hub.stop()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        self.server.stop()
        self.clock.run_for(1.0)  # the AMI logoff and close go through
        transport = self.server.components.transport
        if transport is not None:
            await transport.close()

    def stop_ami(self) -> None:
        """The PBX's manager interface goes away: its sessions close and nothing listens on its port."""
        self.ami_listener.stopListening()
        for session in list(self.ami_server.sessions):
            session.close()

    def start_ami(self) -> None:
        """The manager interface listens again (the server's AMI client reconnects after its backoff)."""
        ast = self.cfg.asterisk[0]
        self.ami_listener = self.network.listen(ast.host, ast.port, AMIServerFactory(self.ami_server))

    async def _run_pump(self) -> None:
        while True:
            self.clock.catch_up()
            await asyncio.sleep(0.002)

    async def advance(self, seconds: float) -> None:
        """Move the server's (and the hub's) time ahead by ``seconds`` and let everything due run."""
        self.clock.jump(seconds)
        await asyncio.sleep(0)

    async def until(self, condition: Callable[[], object], what: str, timeout: float = 5.0) -> None:
        """Wait (real time) until ``condition()`` holds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.002)

    async def record(self, key: str) -> Any:
        """The call record ``key`` (customer_interactions) once the call records' writer has written what it
        holds: it batches writes (``centre.call_log.InteractionWriter``)."""
        writer = self.server.interactions
        if writer is not None:
            await defer.Deferred.asFuture(writer.flush(), asyncio.get_running_loop())
        assert self.server.store is not None
        return self.server.store.get_interaction(key)

    # ------------------------------------------------------------------ the customer store
    def add_customer(self, external_id: str, first: str, last: str, phone: str, *, segment: str = "",
                     email: str = "", accounts: tuple[AccountRecord, ...] = (),
                     history: tuple[dict[str, Any], ...] = ()) -> int:
        """A customer in the real store (and past interactions: dicts of ``started_at``, ``disposition``,
        ``notes``, ``agent_id``), found by the pop's look-up of ``phone``."""
        store = self.server.store
        assert store is not None
        (outcome,) = store.upsert_customers([CustomerInput(
            external_id=external_id, first_name=first, last_name=last, segment=segment, email=email,
            phones=(PhoneRecord(phone, "mobile"),), accounts=accounts)])
        customer_id = int(outcome.customer_id)
        store.add_interactions([{"call_key": f"old/{external_id}/{i}", "customer_id": customer_id,
                                 "direction": "inbound", "ani": phone, "queue": "sales", "outcome": "answered",
                                 **h} for i, h in enumerate(history)])
        self.seeded[external_id] = customer_id
        return customer_id

    def add_ada(self) -> int:
        """Ada Lovelace, the customer of ``SAMPLE_POP``: +15551234567, gold, one earlier call."""
        return self.add_customer("C-42", "Ada", "Lovelace", "+15551234567", segment="gold", email="ada@example.com",
                                 accounts=(AccountRecord("ACC-0042", "broadband", "active"),),
                                 history=({"started_at": datetime(2025, 1, 5, 10, 0, tzinfo=UTC),
                                           "disposition": "resolved", "notes": "billing question",
                                           "agent_id": "1002"},))

    # ------------------------------------------------------------------ calls
    def arrive(self, caller: str = "+15551234567", name: str = "ADA L", *, queue: str = "sales",
               path: tuple[str, ...] = SALES_PATH, collected: dict[str, str] | None = None) -> Channel:
        """A caller the IVR queued for ``queue``: it enters ``cti-hold`` with the variables the IVR sets
        (queue, skills, its path, what the caller entered, masked as the IVR masks it)."""
        variables = [(CTI_QUEUE, queue), (CTI_SKILLS, f"{queue}:1"), (CTI_FLOW, "main"),
                     (CTI_IVR_PATH, ">".join(path))]
        variables += [(collected_variable(k), v) for k, v in (collected or {}).items()]
        chan = self.pbx.inbound_call(START_EXTEN, caller, name, context=HOLD_CONTEXT)
        for variable, value in variables:  # as the IVR's SET VARIABLEs do: VarSet events the tracker keeps
            self.pbx.set_var(chan, variable, value)
        return chan

    def live(self, agent_id: str) -> CallSession | None:
        return self.server.call_for_agent(agent_id)

    def state(self, agent_id: str) -> str:
        return str(self.server.acd.agent_snapshot(agent_id).state.value)

    def phone(self, agent_id: str) -> Channel | None:
        """The agent's phone's channel of its current call (ringing or up)."""
        live = self.live(agent_id)
        if live is not None and live.agent_channel:
            return self.pbx.find_channel(live.agent_channel)
        return next((c for c in self.pbx.ordered_channels() if c.name.startswith(f"PJSIP/{agent_id}-")
                     and not c.dead), None)

    async def ringing(self, agent_id: str) -> Channel:
        """Wait until the agent's phone rings for an offered call."""
        await self.until(lambda: self.phone(agent_id) is not None, f"{agent_id}'s phone to ring")
        chan = self.phone(agent_id)
        assert chan is not None
        return chan

    async def answer(self, agent_id: str) -> None:
        """The agent picks the ringing phone up; returns once the server has the call connected."""
        self.pbx.answer(await self.ringing(agent_id))
        await self.until(lambda: self.state(agent_id) == "on_call" and (live := self.live(agent_id)) is not None
                         and live.state == "connected", f"{agent_id} on the call")

    async def connect(self, agent_id: str, **arrival: Any) -> Channel:
        """A caller arrives for the (ready) agent, who answers: the caller's channel."""
        caller = self.arrive(**arrival)
        await self.answer(agent_id)
        return caller

    async def hang_up_phone(self, agent_id: str) -> None:
        """The agent hangs the phone up (a BYE from the phone)."""
        chan = self.phone(agent_id)
        assert chan is not None, f"{agent_id} has no call on the phone"
        self.pbx.far_hangup(chan)
        await self.until(lambda: self.state(agent_id) != "on_call", f"{agent_id}'s call to end")

    async def caller_hangs_up(self, caller: Channel) -> None:
        self.pbx.far_hangup(caller)
        await self.until(lambda: caller.dead, "the caller's channel to go")


@contextlib.asynccontextmanager
async def running(settings: ConsoleSection | None = None, hashes: dict[str, str] | None = None,
                  **options: Any) -> AsyncIterator[Stack]:
    """``options``: the Stack's (``dialer``, ``numbers``, ``recording``, ``db_url``, the hub's options)."""
    with tempfile.TemporaryDirectory(prefix="console-stack-") as directory:
        stack = Stack(settings or make_settings(), Path(directory), hashes, **options)
        await stack.start()
        try:
            yield stack
        finally:
            await stack.stop()


class Client:
    """A protocol-v1 client: ``request`` sends and waits for the reply; pushes are kept in ``pushes``."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pushes: list[dict[str, Any]] = []
        self._n = 0

    async def send_raw(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            return json.loads(await self.ws.recv())  # type: ignore[no-any-return]

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        self._n += 1
        rid = f"r{self._n}"
        await self.ws.send(json.dumps({"v": 1, "type": kind, "id": rid, **fields}))
        return await self.reply(rid)

    async def reply(self, rid: str | int | None) -> dict[str, Any]:
        while True:
            msg = await self.recv()
            if msg.get("type") in ("result", "error") and msg.get("re") == rid:
                return msg
            self.pushes.append(msg)

    async def wait_push(self, kind: str, pred: Callable[[dict[str, Any]], bool] = lambda m: True
                        ) -> dict[str, Any]:
        for i, msg in enumerate(self.pushes):
            if msg.get("type") == kind and pred(msg):
                return self.pushes.pop(i)
        while True:
            msg = await self.recv()
            if msg.get("type") == kind and pred(msg):
                return msg
            self.pushes.append(msg)

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; returns the close code."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                async for _ in self.ws:
                    pass
        return self.ws.close_code


async def open_client(stack: Stack, agent_id: str | None = None, *, source: str | None = None,
                      **hello: Any) -> Client:
    """Connect (from the loopback address ``source``, e.g. "127.0.0.2", when given) and, with an
    ``agent_id``, log in (its test password unless a password or token is given)."""
    local = {"local_addr": (source, 0)} if source else {}
    ws = await connect(stack.url, max_size=2**22, open_timeout=5, **local)
    client = Client(ws)
    if agent_id is not None:
        if "token" not in hello and "password" not in hello:
            hello["password"] = PASSWORDS[agent_id]
        reply = await client.request("hello", agent_id=agent_id, **hello)
        if reply["type"] != "result":
            raise AssertionError(f"hello refused: {reply}")
    return client


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    """Run one async test body on a fresh event loop."""
    asyncio.run(asyncio.wait_for(coro_fn(), 30))  # type: ignore[arg-type]
