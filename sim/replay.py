"""Faithfulness check: replay a recorded Asterisk scenario's AMI actions against the simulator, at the
recorded times, and compare the two message streams after normalising what cannot match (ids,
timestamps). Pure besides reading the fixture files; runs in virtual time (sim.clock.VirtualClock).

Comparison (documented in sim/README.md):
- responses: per connection, in order: Response, ActionID, Message and the other non-volatile headers;
- events that name channels: per channel, in order (an event naming two channels, e.g. DialBegin,
  belongs to both sequences), every non-volatile header compared;
- "floating" events (Cdr, DeviceStateChange, OriginateResponse, list items) whose position depends on
  Asterisk's threads: compared as multisets per connection;
- ids are renamed by first appearance (``U1``, ``B1``, ``C1``), channel names keep their pattern
  (``Local/hold@sim-<n>;1``) with the sequence number renamed by first appearance.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol

from cti.ami.message import AMIMessage
from cti.ami.protocol import AMIParser

# Headers whose values are times, random numbers or addresses: dropped before comparing.
VOLATILE = {
    "eventtv", "sessiontv", "sessionid", "timestamp", "remoteaddress", "challenge", "expectedresponse",
    "commandid", "starttime", "answertime", "endtime", "duration", "billableseconds", "uptime",
    "lastreload", "seconds", "corestartupdate", "corestartuptime", "corereloaddate", "corereloadtime",
    "logintime", "lastcall", "holdtime", "talktime", "ringtime", "durationms",
}
# The Response header of ChallengeResponseFailed is the (random-challenge-dependent) key sent.
_VOLATILE_IN = {"ChallengeResponseFailed": {"response"}}
# Variables whose values are elapsed times.
_TIMED_VARIABLES = {"ANSWEREDTIME", "ANSWEREDTIME_MS", "DIALEDTIME", "DIALEDTIME_MS", "RINGTIME", "RINGTIME_MS",
                    "PROGRESSTIME", "PROGRESSTIME_MS", "QUEUEWAIT", "QUEUEWAIT_MS"}
FLOATING = {"Cdr", "DeviceStateChange", "OriginateResponse"}
# Compared as sets, not multisets: how many times Asterisk repeats a device state depends on its cache.
SET_ONLY = {"DeviceStateChange"}
_UID_RE = re.compile(r"\b\d{9,11}\.\d+\b")
_BRIDGE_RE = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_CHAN_RE = re.compile(r"\b((?:Local|PJSIP)/[^\s;,|]*?)-([0-9a-f]{8})(;[12])?")


@dataclass(frozen=True, slots=True)
class Send:
    """One chunk a capture client sent: when, on which connection, what bytes."""

    t: float
    conn: str
    data: bytes


def load_sends(fixtures: Path, scenario: str, ami_only: bool = True) -> list[Send]:
    """The ``send`` chunks of ``scenario.timeline.jsonl`` (AMI connections only by default)."""
    out = []
    with open(fixtures / f"{scenario}.timeline.jsonl", "rb") as fh:
        for line in fh:
            o = json.loads(line)
            if o["dir"] != "send":
                continue
            if ami_only and o["conn"].startswith("agi"):
                continue
            out.append(Send(float(o["t"]), o["conn"], o["data"].encode("latin-1")))
    return out


@dataclass(frozen=True, slots=True)
class AgiScript:
    """A recorded FastAGI server session: when it connected and what it sent, with times."""

    start: float
    commands: tuple[tuple[float, bytes], ...]


def load_agi_scripts(fixtures: Path, scenario: str) -> list[AgiScript]:
    """The FastAGI server sessions of ``scenario.timeline.jsonl`` in connection order."""
    starts: dict[str, float] = {}
    sends: dict[str, list[tuple[float, bytes]]] = defaultdict(list)
    with open(fixtures / f"{scenario}.timeline.jsonl", "rb") as fh:
        for line in fh:
            o = json.loads(line)
            if not o["conn"].startswith("agi"):
                continue
            starts.setdefault(o["conn"], float(o["t"]))
            if o["dir"] == "send":
                sends[o["conn"]].append((float(o["t"]), o["data"].encode("latin-1")))
    return [AgiScript(t, tuple(sends[conn])) for conn, t in sorted(starts.items(), key=lambda kv: kv[1])]


class ScriptedAgiServer(Protocol):
    """Plays a recorded FastAGI server: after the environment block it sends each recorded command
    once the previous one is answered and not before its recorded offset; closes after the last."""

    def __init__(self, clock: IReactorTime, script: AgiScript) -> None:
        self.clock = clock
        self.script = script
        self.buf = b""
        self.env_done = False
        self.next = 0
        self.waiting = False
        self.started = 0.0

    def connectionMade(self) -> None:
        self.started = self.clock.seconds()

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if not self.env_done:
                if line == b"":
                    self.env_done = True
                    self._schedule()
                continue
            if self.waiting and (line[:4] in (b"200 ", b"510 ", b"511 ", b"520 ")):
                self.waiting = False
                self._schedule()

    def _schedule(self) -> None:
        if self.next >= len(self.script.commands):
            if self.transport is not None:
                self.transport.loseConnection()
            return
        t, _ = self.script.commands[self.next]
        at = self.started + (t - self.script.start)
        self.clock.callLater(max(at - self.clock.seconds(), 0.0), self._send)

    def _send(self) -> None:
        if self.transport is None:
            return
        _, data = self.script.commands[self.next]
        self.next += 1
        self.waiting = True
        self.transport.write(data)


class _ScriptedAgiFactory(Factory):
    def __init__(self, clock: IReactorTime, scripts: list[AgiScript]) -> None:
        self.clock = clock
        self.scripts = list(scripts)

    def buildProtocol(self, addr: object) -> Protocol:
        return ScriptedAgiServer(self.clock, self.scripts.pop(0))


def load_challenges(fixtures: Path, scenario: str) -> dict[str, str]:
    """The MD5 challenge Asterisk gave each connection (to re-key recorded MD5 logins on replay)."""
    out = {}
    for conn, msgs in load_received(fixtures, scenario).items():
        for msg in msgs:
            if msg.kind == "response" and msg.get("Challenge"):
                out[conn] = msg["Challenge"]
    return out


def load_received(fixtures: Path, scenario: str) -> dict[str, list[AMIMessage]]:
    """What Asterisk sent on each AMI connection of the scenario, parsed."""
    chunks: dict[str, list[bytes]] = defaultdict(list)
    with open(fixtures / f"{scenario}.timeline.jsonl", "rb") as fh:
        for line in fh:
            o = json.loads(line)
            if o["dir"] == "recv" and not o["conn"].startswith("agi"):
                chunks[o["conn"]].append(o["data"].encode("latin-1"))
    return {conn: parse_stream(b"".join(parts)) for conn, parts in chunks.items()}


def parse_stream(data: bytes) -> list[AMIMessage]:
    parser = AMIParser(expect_banner=True)
    return [m for m in parser.feed(data) if isinstance(m, AMIMessage)]


# ---------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Normaliser:
    """Renames ids by first appearance so two runs can be compared."""

    ids: dict[str, str] = field(default_factory=dict)
    chans: dict[str, str] = field(default_factory=dict)
    seq: int = 0

    def _uid(self, m: re.Match[str]) -> str:
        return self.ids.setdefault(m.group(0), f"U{len(self.ids) + 1}")

    def learn(self, msg: AMIMessage) -> None:
        """Name a channel's Uniqueid after the (normalised) channel: ``uid(Local/x@y-<1>;1)``."""
        if msg.kind == "event" and msg.name == "Newchannel" and msg.get("Uniqueid") and msg.get("Channel"):
            self.ids.setdefault(msg["Uniqueid"], f"uid({self.value(msg['Channel'])})")

    def _bridge(self, m: re.Match[str]) -> str:
        return self.ids.setdefault(m.group(0), f"B{len(self.ids) + 1}")

    def _chan(self, m: re.Match[str]) -> str:
        key = f"{m.group(1)}-{m.group(2)}"
        seq = self.chans.get(key)
        if seq is None:
            self.seq += 1
            seq = self.chans[key] = str(self.seq)
        return f"{m.group(1)}-<{seq}>{m.group(3) or ''}"

    def value(self, text: str) -> str:
        text = _BRIDGE_RE.sub(self._bridge, text)
        text = _UID_RE.sub(self._uid, text)
        return _CHAN_RE.sub(self._chan, text)

    def message(self, msg: AMIMessage) -> tuple[tuple[str, str], ...]:
        name = msg.name if msg.kind == "event" else ""
        drop = VOLATILE | _VOLATILE_IN.get(name, set())
        timed = msg.get("Variable") in _TIMED_VARIABLES
        out = []
        for key, value in msg.headers:
            low = key.lower()
            if low in drop or (timed and low == "value"):
                continue
            out.append((key, self.value(value)))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Scenario:
    """What of a recorded scenario the simulator replays, and what it leaves out and why."""

    name: str
    timeline: str = ""  # the timeline file's name when it differs (fastagi_ami -> fastagi)
    agi: bool = False  # replay the recorded FastAGI server too
    drop_actions: tuple[str, ...] = ()  # ActionIDs not replayed (and their responses not compared)
    racy_actions: tuple[str, ...] = ()  # replayed, but their answers depend on millisecond timing
    skip_channels: str | None = None  # regex: real events naming such channels are not compared
    skip_events: tuple[str, ...] = ()  # event names not compared at all
    skip_devices: str | None = None  # regex: DeviceStateChange of such devices not compared
    cut_at_app: str | None = None  # compare each call only up to its Newexten of this application
    why: str = ""

    def received(self, fixtures: Path) -> dict[str, list[AMIMessage]]:
        return load_received(fixtures, self.timeline or self.name)

    def run(self, fixtures: Path) -> dict[str, list[AMIMessage]]:
        """Replay this scenario in the simulator; what it sent on each AMI connection."""
        name = self.timeline or self.name
        scripts = load_agi_scripts(fixtures, name) if self.agi else None
        return replay(self.sends(fixtures), challenges=load_challenges(fixtures, name), agi_scripts=scripts)

    def sends(self, fixtures: Path) -> list[Send]:
        out = []
        for s in load_sends(fixtures, self.timeline or self.name):
            m = re.search(rb"ActionID: ([^\r]*)\r\n", s.data)
            if m and m.group(1).decode() in self.drop_actions:
                continue
            out.append(s)
        return out

    def skipper(self) -> Callable[[AMIMessage], bool]:
        """A fresh skip predicate for one stream (it remembers which calls reached ``cut_at_app``)."""
        if not self.cut_at_app:
            return self.skip
        cut: set[str] = set()
        app = self.cut_at_app

        def skip(msg: AMIMessage) -> bool:
            if self.skip(msg):
                return True
            if msg.kind != "event":
                return False
            if msg.name in ("Cdr", "DeviceStateChange") or msg.name.startswith(("Bridge", "Queue", "Agent")):
                return True
            linked = {v for k, v in msg.headers if k.endswith("Linkedid")}
            if linked & cut:
                return True
            if msg.name == "Newexten" and msg.get("Application") == app:
                cut.update(linked)
            return False

        return skip

    def skip(self, msg: AMIMessage) -> bool:
        if msg.action_id in self.drop_actions or msg.action_id in self.racy_actions:
            return True
        if msg.kind == "event" and msg.name in self.skip_events:
            return True
        if self.skip_devices and msg.kind == "event" and msg.name == "DeviceStateChange":
            if re.search(self.skip_devices, msg.get("Device") or ""):
                return True
        if self.skip_channels:
            rx = re.compile(self.skip_channels)
            for key, value in msg.headers:
                if key.endswith("Channel") and rx.search(value):
                    return True
        return False


SCENARIOS: dict[str, Scenario] = {
    "login": Scenario("login"),
    "originate_outbound": Scenario(
        "originate_outbound", drop_actions=("queueadd-002", "dial-ok-queue"),
        skip_channels=r"Local/5551234@customers-00000001;|Local/agent5@agents-",
        skip_events=("QueueMemberStatus", "QueueMemberAdded", "BridgeCreate", "BridgeDestroy"),
        skip_devices=r"^Queue:|^Local/agent5@agents$",
        racy_actions=("coreshowchannels-006",),
        why="dial-ok-queue connects the customer into Queue(sales); the simulator has no app_queue. "
            "coreshowchannels-006 was sent 2 ms after the dial-sync-ok call's Wait(10) ended; Asterisk's "
            "processing latency still showed the call, the latency-free simulator does not"),
    "fastagi_ami": Scenario("fastagi_ami", timeline="fastagi", agi=True),
    "inbound_queue": Scenario(
        "inbound_queue", cut_at_app="Queue",
        drop_actions=("queueadd-003", "queueadd-004", "queuestatus-006", "queuesummary-007", "queuestatus-008",
                      "queuesummary-009", "queuestatus-010", "queuesummary-011"),
        skip_channels=r"Local/agent[0-9]@agents-",
        why="the call waits in Queue(support), which the simulator does not implement: each call is compared "
            "up to its Queue() step, agent legs and queue actions are not compared"),
    "burst": Scenario(
        "burst", cut_at_app="Queue",
        drop_actions=tuple(f"queueadd-{i:03d}" for i in range(2, 7)) + (
            "queuesummary-007", "queuestatus-008", "coreshowchannels-009", "queuesummary-010"),
        skip_channels=r"Local/bagent[0-9]@agents-",
        why="50 calls into Queue(burst): compared up to each call's Queue() step only (no app_queue)"),
    "hangup_redirect": Scenario(
        "hangup_redirect", racy_actions=("command-003", "command-005"),
        skip_channels=r"Local/hold@sim-00000003;|Local/longagent@agents-|Local/7000@redirected-",
        skip_devices=r"^Local/(longagent@agents|7000@redirected)$",
        skip_events=("AttendedTransfer", "BridgeMerge"),
        why="'queue show' needs app_queue and 'dialplan show' prints extensions.conf line numbers: not "
            "compared. The attended transfer (hold-d, Atxfer, its agent and 7000 legs) is simulated but "
            "differs in connected-line updates and bridge order; its channels are not compared"),
}



def _channels_of(msg: tuple[tuple[str, str], ...]) -> list[str]:
    return [v for k, v in msg if (k.endswith("Channel") or k == "Channel") and v and v != "none"]


@dataclass(slots=True)
class Comparison:
    """Differences found; empty ``problems`` means faithful (for what was compared)."""

    problems: list[str] = field(default_factory=list)
    compared_events: int = 0
    compared_responses: int = 0

    def add(self, text: str) -> None:
        self.problems.append(text)


def _split(msgs: Iterable[AMIMessage], norm: Normaliser, skip: Callable[[AMIMessage], bool]
           ) -> tuple[list[tuple], dict[str, list[tuple]], Counter[tuple]]:
    responses: list[tuple] = []
    per_channel: dict[str, list[tuple]] = defaultdict(list)
    floating: Counter[tuple] = Counter()
    msgs = list(msgs)
    # Channels an Originate created are named after its ActionID: with concurrent originates Asterisk
    # numbers channels in thread order, so sequence numbers alone do not identify the call.
    for msg in msgs:
        if msg.kind == "event" and msg.name == "OriginateResponse" and msg.get("Response") == "Success":
            m = _CHAN_RE.match(msg.get("Channel") or "")
            if m and msg.action_id:
                norm.chans.setdefault(f"{m.group(1)}-{m.group(2)}", f"'{msg.action_id}'")
    for msg in msgs:
        # Under load Asterisk may send an OriginateResponse before the Newchannel it names.
        if msg.kind == "event" and msg.name == "Newchannel":
            m = _CHAN_RE.match(msg.get("Channel") or "")
            if m and f"{m.group(1)}-{m.group(2)}" in norm.chans:
                norm.learn(msg)
    for msg in msgs:
        if skip(msg):
            continue
        norm.learn(msg)
        n = norm.message(msg)
        if msg.kind == "response":
            responses.append(n)
            continue
        if msg.name in SET_ONLY:
            floating[n] = 1
            continue
        if msg.name in FLOATING or msg.action_id is not None:
            floating[n] += 1
            continue
        chans = _channels_of(n)
        if not chans:
            floating[n] += 1
        for chan in dict.fromkeys(chans):
            per_channel[chan].append(n)
    return responses, per_channel, floating


def compare(real: list[AMIMessage], sim: list[AMIMessage], *, scenario: Scenario | None = None,
            label: str = "") -> Comparison:
    """Compare one connection's streams (see the module docstring)."""
    result = Comparison()
    scenario = scenario or Scenario("")
    r_resp, r_chan, r_float = _split(real, Normaliser(), scenario.skipper())
    s_resp, s_chan, s_float = _split(sim, Normaliser(), scenario.skipper())
    for i in range(max(len(r_resp), len(s_resp))):
        a = r_resp[i] if i < len(r_resp) else None
        b = s_resp[i] if i < len(s_resp) else None
        result.compared_responses += 1
        if a != b:
            result.add(f"{label} response #{i + 1}: real {a} != sim {b}")
    for chan in sorted(set(r_chan) | set(s_chan)):
        a_seq, b_seq = r_chan.get(chan, []), s_chan.get(chan, [])
        result.compared_events += len(a_seq)
        if a_seq == b_seq:
            continue
        for i in range(max(len(a_seq), len(b_seq))):
            a = a_seq[i] if i < len(a_seq) else None
            b = b_seq[i] if i < len(b_seq) else None
            if a != b:
                result.add(f"{label} {chan} event #{i + 1}: real {_short(a)} != sim {_short(b)}")
                break
    missing = r_float - s_float
    extra = s_float - r_float
    result.compared_events += sum(r_float.values())
    for item in sorted(missing, key=str):
        result.add(f"{label} floating event missing in sim: {_short(item)}")
    for item in sorted(extra, key=str):
        result.add(f"{label} floating event only in sim: {_short(item)}")
    return result


def _short(msg: tuple | None) -> str:
    if msg is None:
        return "(nothing)"
    return "{" + ", ".join(f"{k}: {v}" for k, v in msg) + "}"


# ---------------------------------------------------------------------------------------------
def _rekey(data: bytes, recorded_challenge: str | None, challenge: str, users: dict[str, str]) -> bytes:
    """A recorded MD5 Login whose Key was right for the recorded challenge gets the Key that is right
    for the simulator's challenge (a wrong recorded Key stays wrong)."""
    m = re.search(rb"Username: ([^\r]*)\r\n", data)
    k = re.search(rb"Key: ([0-9a-fA-F]*)\r\n", data)
    if not (m and k and recorded_challenge and b"AuthType: MD5" in data):
        return data
    secret = users.get(m.group(1).decode(), "")
    good = hashlib.md5((recorded_challenge + secret).encode()).hexdigest()
    if k.group(1).decode().lower() != good:
        return data
    new = hashlib.md5((challenge + secret).encode()).hexdigest().encode()
    return data[: k.start(1)] + new + data[k.end(1):]


def replay(sends: list[Send], *, dialplan_path: Path | None = None, users: dict[str, str] | None = None,
           seed: int = 0, until: float | None = None, tail: float = 5.0, challenges: dict[str, str] | None = None,
           agi_scripts: list[AgiScript] | None = None) -> dict[str, list[AMIMessage]]:
    """Run the simulator in virtual time, writing each recorded chunk at its recorded time on its
    own connection; return what the simulator sent on each connection."""
    from sim.ami_server import AMIServer
    from sim.clock import VirtualClock
    from sim.dialplan import load_dialplan
    from sim.pbx import Pbx

    clock = VirtualClock()
    path = dialplan_path or Path(__file__).resolve().parent / "transcript_dialplan.yaml"
    agi = None
    if agi_scripts:
        from sim.fastagi_client import FastAGIClient
        from sim.memory_transport import MemoryNetwork

        network = MemoryNetwork(clock)
        network.listen("127.0.0.1", 4573, _ScriptedAgiFactory(clock, agi_scripts))
        agi = FastAGIClient(clock, network.connect)
    pbx = Pbx(clock, load_dialplan(path), agi=agi, seed=seed)
    users = users or {"cti": "cti-secret"}
    server = AMIServer(pbx, users)
    out: dict[str, bytearray] = {}
    sessions: dict[str, object] = {}
    port = iter(range(40000, 50000))

    def open_conn(conn: str) -> None:
        buf = out.setdefault(conn, bytearray())
        sessions[conn] = server.open_session(buf.extend, lambda: None, remote=("127.0.0.1", next(port)))

    first: dict[str, float] = {}
    for s in sends:
        first.setdefault(s.conn, s.t)
    for conn, t in first.items():
        clock.callLater(max(t - 0.0005, 0.0), open_conn, conn)
    def feed(conn: str, data: bytes) -> None:
        session = sessions[conn]
        if challenges and b"Key: " in data:
            data = _rekey(data, challenges.get(conn), session.challenge, users)  # type: ignore[attr-defined]
        session.data_received(data)  # type: ignore[attr-defined]

    for s in sends:
        clock.callLater(s.t, feed, s.conn, s.data)
    end = (until if until is not None else (max(s.t for s in sends) if sends else 0.0)) + tail
    clock.run_until(end)
    server.close()
    return {conn: parse_stream(bytes(buf)) for conn, buf in out.items()}
