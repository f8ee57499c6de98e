"""Benchmark: FastAGI IVR sessions over real TCP: our Twisted server against a pyst2 thread-per-connection one.

Run: ``.venv/bin/python bench/ivr_fastagi.py [--sessions 100,1000] [--duration 5] [--think-ms 1000]``

Each virtual caller connects, sends an Asterisk 22 ``agi_*`` block and walks a 5-step menu (ANSWER,
five STREAM FILE prompts each interrupted by key 1, then the queue hand-off: six SET VARIABLE), 12
commands per flow, then reconnects for the next flow (closed loop). Two phases per server and count:

- saturated: callers answer at once, so the server is the bottleneck -> completed flows/s (capacity);
- paced: a caller "listens" 0.5-1.5x ``--think-ms`` (default 1 s; real prompts last several seconds)
  to each prompt before pressing the key, every other reply is immediate, starts spread over one flow
  -> p50/p99 command turnaround at that many concurrent sessions.

Turnaround = from the client writing a reply (or the environment) to receiving the next command,
timestamped when the bytes arrive in the client's event loop (so it includes the client's own
scheduling delay, the same for both servers).

- ours: ``ivr.fastagi.listen_fastagi`` on Twisted's asyncio reactor (the project's reactor), in a
  subprocess, flow from the config schema, events to a counting sink.
- baseline: ``socketserver.ThreadingTCPServer``, one thread per connection driving pyst2's
  ``asterisk.agi.AGI`` over the socket's file objects with the same 12 commands, in a subprocess.
- ceilings (references, not contenders): servers that answer each reply line with the next of the same 12
  pre-encoded commands and do nothing else (no AGI parsing, no flow, no events): ``bare-tw`` on the same
  Twisted asyncio reactor with the same ``ImmediateWriter`` as ours (so ours minus it is the cost of our
  protocol and flow code), ``bare-aio`` a plain asyncio ``Protocol``. What they reach with the same client
  on the same machine bounds what a Python server can show here.
The client is one asyncio process for all. The servers run side by side and take turns phase by phase. Ends with
``BENCH ivr_fastagi sessions=<n> flows_per_s=<x> p99_ms=<y> ratio=<z>`` for the largest count:
flows_per_s = ours saturated, p99_ms = ours paced, ratio = ours / baseline saturated flows/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import os
import random
import resource
import socket
import socketserver
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MENU_STEPS = 5
RNG = random.Random(4573)
COMMANDS_PER_FLOW = 1 + MENU_STEPS + 6
ESCAPE = "0123456789*#"


def prepare_process() -> None:
    """Enough file descriptors for 1,000+ sockets; a raised priority (when allowed) so that other work on
    a shared machine disturbs the measurement less. Both servers and the client get the same treatment."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        os.nice(-10)
    except OSError:
        pass


AUTOGROUP = Path("/proc/self/autogroup")


@contextlib.contextmanager
def raised_group_priority() -> Iterator[str]:
    """With the kernel's autogroup scheduling a nice value only ranks a process inside its session's group,
    and each group gets an equal share of the CPUs whatever its members' nice values. So for the run, the
    group (this process, both servers, the client: they share it) gets nice -10 too, then its old value back.
    Yields what was done, for the report."""
    try:
        old = AUTOGROUP.read_text().split()[-1]
        AUTOGROUP.write_text("-10\n")
    except (OSError, IndexError):
        yield "autogroup priority unchanged (not available)"
        return
    try:
        yield f"autogroup nice {old} -> -10 for the run"
    finally:
        with contextlib.suppress(OSError):
            AUTOGROUP.write_text(f"{old}\n")


# --- servers ------------------------------------------------------------------------------------------

def flow_config() -> dict[str, Any]:
    nodes: dict[str, Any] = {}
    for i in range(1, MENU_STEPS + 1):
        nxt = f"m{i + 1}" if i < MENU_STEPS else "q"
        nodes[f"m{i}"] = {"kind": "menu", "prompt": f"menu-{i}", "options": {"1": nxt, "2": "q"}, "timeout": 5}
    nodes["q"] = {"kind": "queue", "queue": "support", "skills": {"support": 2}, "priority": 1}
    return {"flows": {"bench": {"start": "m1", "nodes": nodes}}, "max_sessions": 100000, "idle_timeout": 60}


def serve_ours() -> None:
    """Subprocess: our FastAGI server on an ephemeral port; prints the port, runs until stdin closes."""
    from cti.reactor import install_reactor
    from ivr.fastagi import listen_fastagi
    from ivr.flow import IvrSection

    prepare_process()
    reactor: Any = install_reactor()
    counted = [0]
    section = IvrSection.model_validate(flow_config())
    port, _ = listen_fastagi(section, lambda event: counted.__setitem__(0, counted[0] + 1), port=0,
                             reactor=reactor, backlog=4096)
    print(port.getHost().port, flush=True)
    reactor.addReader(_StdinWatcher(reactor))
    reactor.run()


class _StdinWatcher:
    """Stops the reactor when the parent closes our stdin."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def fileno(self) -> int:
        return sys.stdin.fileno()

    def doRead(self) -> None:
        if not os.read(sys.stdin.fileno(), 1024):
            self.reactor.removeReader(self)
            self.reactor.stop()

    def connectionLost(self, reason: Any) -> None:
        pass

    def logPrefix(self) -> str:
        return "stdin"


BARE_COMMANDS = [b"ANSWER\n", *(f"STREAM FILE menu-{i} {ESCAPE}\n".encode() for i in range(1, MENU_STEPS + 1)),
                 b"SET VARIABLE CTI_QUEUE support\n", b"SET VARIABLE CTI_SKILLS support:2\n",
                 b"SET VARIABLE CTI_PRIORITY 1\n", b"SET VARIABLE CTI_LANGUAGE en\n",
                 b"SET VARIABLE CTI_IVR_PATH m1:1>m2:1>m3:1>m4:1>m5:1\n", b"SET VARIABLE CTI_NEXT queue\n"]


class CommandReplay:
    """Sans-I/O core of the ceiling servers: the next pre-encoded command for each line after the
    environment's blank line; ``done`` once all were answered (the server then closes)."""

    def __init__(self) -> None:
        self.buf = b""
        self.sent = 0
        self.in_env = True
        self.done = False

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        out: list[bytes] = []
        for line in lines:
            if self.in_env:
                self.in_env = line != b""
                if self.in_env:
                    continue
            if self.sent == len(BARE_COMMANDS):
                self.done = True
                break
            out.append(BARE_COMMANDS[self.sent])
            self.sent += 1
        return out


class _BareAsyncio(asyncio.Protocol):
    def __init__(self) -> None:
        self.replay = CommandReplay()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        for command in self.replay.feed(data):
            self.transport.write(command)
        if self.replay.done:
            self.transport.close()


def serve_bare_asyncio() -> None:
    """Subprocess: the bare asyncio ceiling; prints the port, runs until stdin closes."""
    prepare_process()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_BareAsyncio, "127.0.0.1", 0, backlog=4096)
        print(server.sockets[0].getsockname()[1], flush=True)
        stdin_closed = loop.create_future()

        def on_stdin() -> None:
            if not os.read(sys.stdin.fileno(), 1024) and not stdin_closed.done():
                stdin_closed.set_result(None)

        loop.add_reader(sys.stdin.fileno(), on_stdin)
        await stdin_closed
        server.close()

    asyncio.run(run())


def serve_bare_twisted() -> None:
    """Subprocess: the bare Twisted ceiling (the project's reactor, ours's writer); prints the port."""
    from twisted.internet.protocol import Protocol, ServerFactory

    from cti.reactor import install_reactor
    from ivr.fastagi import ImmediateWriter

    prepare_process()
    reactor: Any = install_reactor()

    class Bare(Protocol):
        def connectionMade(self) -> None:
            self.replay = CommandReplay()
            self.writer = ImmediateWriter(self.transport)  # type: ignore[arg-type]

        def dataReceived(self, data: bytes) -> None:
            for command in self.replay.feed(data):
                self.writer.write(command)
            if self.replay.done:
                self.transport.loseConnection()  # type: ignore[union-attr]

    factory = ServerFactory()
    factory.protocol = Bare
    port = reactor.listenTCP(0, factory, backlog=4096, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.addReader(_StdinWatcher(reactor))
    reactor.run()


def serve_baseline() -> None:
    """Subprocess: thread-per-connection FastAGI server driving pyst2's AGI class; prints the port."""
    from asterisk.agi import AGI

    prepare_process()

    class Quiet(io.StringIO):
        def write(self, s: str) -> int:
            return len(s)

    class SocketAGI(AGI):
        """pyst2's AGI over a socket (its __init__ installs a SIGHUP handler: main thread only)."""

        def __init__(self, rfile: Any, wfile: Any) -> None:
            self.stdin, self.stdout, self.stderr = rfile, wfile, Quiet()
            self._got_sighup = False
            self.env: dict[str, str] = {}
            self._get_agi_env()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            rfile = self.connection.makefile("r", encoding="utf-8", newline="\n")
            wfile = self.connection.makefile("w", encoding="utf-8", newline="\n")
            agi = SocketAGI(rfile, wfile)
            agi.answer()
            path = []
            for i in range(1, MENU_STEPS + 1):
                key = agi.stream_file(f"menu-{i}", ESCAPE)
                if not key:
                    key = agi.wait_for_digit(5000)
                path.append(f"m{i}:{key}")
            agi.set_variable("CTI_QUEUE", "support")
            agi.set_variable("CTI_SKILLS", "support:2")
            agi.set_variable("CTI_PRIORITY", "1")
            agi.set_variable("CTI_LANGUAGE", agi.env.get("agi_language", "en"))
            agi.set_variable("CTI_IVR_PATH", ">".join(path))
            agi.set_variable("CTI_NEXT", "queue")
            wfile.close()
            rfile.close()

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 4096

    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    server.shutdown()


# --- the load generator ---------------------------------------------------------------------------------

ENV = "".join(f"{k}: {v}\n" for k, v in {
    "agi_network": "yes", "agi_network_script": "bench", "agi_request": "agi://127.0.0.1:4573/bench",
    "agi_channel": "PJSIP/trunk-00000001", "agi_language": "en", "agi_type": "PJSIP", "agi_uniqueid": "1.1",
    "agi_version": "22.10.1", "agi_callerid": "+15551230002", "agi_calleridname": "Caller",
    "agi_callingpres": "0", "agi_callingani2": "0", "agi_callington": "0", "agi_callingtns": "0",
    "agi_dnid": "unknown", "agi_rdnis": "unknown", "agi_context": "cti-inbound", "agi_extension": "s",
    "agi_priority": "5", "agi_enhanced": "0.0", "agi_accountcode": "", "agi_threadid": "1",
}.items()).encode() + b"\n"


@dataclass
class Results:
    start: float = 0.0
    end: float = 0.0
    flows: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    all_flows: int = 0  # completed at any time in the phase (for CPU per flow)

    def measuring(self, now: float) -> bool:
        return self.start <= now <= self.end


class Caller(asyncio.Protocol):
    """One caller's FastAGI connection as Asterisk would speak it."""

    def __init__(self, results: Results, think: float, done: asyncio.Future[bool]) -> None:
        self.results, self.think, self.done = results, think, done
        self.buf = b""
        self.sent_at = 0.0
        self.finished = False
        self.commands = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sent_at = time.perf_counter()
        self.transport.write(ENV)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.commands += 1
            if self.results.measuring(now):
                self.results.latencies.append(now - self.sent_at)
            if line.startswith(b"STREAM FILE"):
                reply = b"200 result=49 endpos=4000\n"  # key "1" pressed during the prompt
                if self.think:  # the caller listens to part of the prompt, then presses the key
                    delay = self.think * RNG.uniform(0.5, 1.5)
                    asyncio.get_running_loop().call_later(delay, self._send, reply)
                    continue
            elif line.startswith(b"SET VARIABLE"):
                reply = b"200 result=1\n"
                if b"CTI_NEXT" in line and b"queue" in line:
                    self.finished = True
            else:
                reply = b"200 result=0\n"
            self._send(reply)

    def _send(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.sent_at = time.perf_counter()
            self.transport.write(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        ok = self.finished and self.commands == COMMANDS_PER_FLOW
        if not self.done.done():
            self.done.set_result(ok)


async def one_caller(port: int, results: Results, think: float, stop_at: float, delay: float) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(delay)
    while time.perf_counter() < stop_at:
        done: asyncio.Future[bool] = loop.create_future()
        try:
            await loop.create_connection(functools.partial(Caller, results, think, done), "127.0.0.1", port)
            ok = await asyncio.wait_for(done, 60)
        except (TimeoutError, OSError):
            ok = False
        now = time.perf_counter()
        results.all_flows += ok
        if results.measuring(now):
            if ok:
                results.flows += 1
            else:
                results.errors += 1


async def load(port: int, sessions: int, duration: float, think: float) -> Results:
    """``sessions`` callers in a closed loop; starts spread over one flow's prompt time (or 0.5 s)."""
    ramp = think * MENU_STEPS if think else 0.5
    now = time.perf_counter()
    results = Results(start=now + ramp + 0.5, end=now + ramp + 0.5 + duration)
    await asyncio.gather(*(one_caller(port, results, think, results.end, ramp * i / sessions)
                           for i in range(sessions)))
    return results


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class ServerProcess:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", kind], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, cwd=ROOT)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def cpu(self) -> float:
        import psutil

        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


SERVE = {"ours": serve_ours, "baseline": serve_baseline, "bare-tw": serve_bare_twisted, "bare-aio": serve_bare_asyncio}
SERVERS = tuple(SERVE)
CEILINGS = ("bare-tw", "bare-aio")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="100,1000", help="comma-separated concurrent caller counts")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per phase")
    parser.add_argument("--think-ms", type=float, default=1000.0,
                        help="paced phase: mean time a caller spends in each prompt (uniform 0.5x-1.5x)")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        SERVE[args.serve]()
        return 0
    prepare_process()
    with raised_group_priority() as priority:
        return run(args, priority)


def run(args: argparse.Namespace, priority: str) -> int:
    counts = [int(n) for n in args.sessions.split(",")]
    load_before = os.getloadavg()[0]
    rows: dict[tuple[str, int, str], Results] = {}
    # All servers stay up (an idle one sleeps) and take turns phase by phase, so that load from other work
    # on a shared machine, which drifts over a run, falls on all of them alike.
    servers = {kind: ServerProcess(kind) for kind in SERVERS}
    try:
        for n in counts:
            for phase, think in (("saturated", 0.0), ("paced", args.think_ms / 1000)):
                for kind, server in servers.items():
                    if kind in CEILINGS and phase == "paced":
                        continue
                    cpu0 = server.cpu()
                    client0 = time.process_time()
                    res = asyncio.run(load(server.port, n, args.duration, think))
                    res.server_cpu = server.cpu() - cpu0
                    res.client_cpu = time.process_time() - client0
                    rows[(kind, n, phase)] = res
                    print(f"  {kind:<8} sessions={n:<5} {phase:<9} flows={res.flows:<7} errors={res.errors} "
                          f"server_cpu={res.server_cpu:.1f}s client_cpu={res.client_cpu:.1f}s",
                          file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.close()
    rows = {key: rows[key] for kind in SERVERS for key in rows if key[0] == kind}

    print()
    print(f"FastAGI 5-step menu, {COMMANDS_PER_FLOW} commands/flow, {args.duration:.0f} s per phase, "
          f"paced think {args.think_ms:.0f} ms/prompt, {os.cpu_count()} CPUs (client, server share them)")
    print(f"{'server':<9} {'sessions':>8} {'phase':<10} {'flows/s':>9} {'cmds/s':>9} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'errors':>7} {'srv CPU ms/flow':>16} {'client CPU ms/flow':>19}")
    for (kind, n, phase), res in rows.items():
        rate = res.flows / args.duration
        print(f"{kind:<9} {n:>8} {phase:<10} {rate:>9.0f} {rate * COMMANDS_PER_FLOW:>9.0f} "
              f"{percentile(res.latencies, 0.5) * 1000:>8.2f} {percentile(res.latencies, 0.99) * 1000:>8.2f} "
              f"{res.errors:>7} {res.server_cpu * 1000 / max(1, res.all_flows):>16.2f} "
              f"{res.client_cpu * 1000 / max(1, res.all_flows):>19.2f}")
    print(f"machine load average (1 min) before/after: {load_before:.2f}/{os.getloadavg()[0]:.2f}; {priority}")
    print()
    n = max(counts)
    ours_rate = rows[("ours", n, "saturated")].flows / args.duration
    base_rate = rows[("baseline", n, "saturated")].flows / args.duration
    ratio = ours_rate / base_rate if base_rate else float("inf")
    p99 = percentile(rows[("ours", n, "paced")].latencies, 0.99) * 1000
    for m in counts:
        o = rows[("ours", m, "saturated")].flows / args.duration
        b = rows[("baseline", m, "saturated")].flows / args.duration
        print(f"sessions={m}: ours/baseline saturated flows/s = {o / b if b else float('inf'):.2f}x; "
              f"ours paced p99 = {percentile(rows[('ours', m, 'paced')].latencies, 0.99) * 1000:.2f} ms")
    for m in counts:
        b = rows[("baseline", m, "saturated")].flows / args.duration
        o = rows[("ours", m, "saturated")].flows / args.duration
        tw, aio = (rows[(kind, m, "saturated")].flows / args.duration for kind in CEILINGS)
        print(f"sessions={m}: ceilings with the same client: bare-tw {tw:.0f} flows/s = {tw / b if b else 0:.2f}x "
              f"baseline, bare-aio {aio:.0f} = {aio / b if b else 0:.2f}x; 5x baseline would need {5 * b:.0f}; "
              f"ours reaches {o / tw if tw else 0:.0%} of bare-tw")
    verdict_p99 = "meets" if p99 <= 10 else "misses"
    verdict_ratio = "meets" if ratio >= 5 else "misses"
    print(f"targets at {n} sessions: p99 <= 10 ms ({verdict_p99}), >= 5x baseline flows/s ({verdict_ratio})")
    print(f"BENCH ivr_fastagi sessions={n} flows_per_s={ours_rate:.0f} p99_ms={p99:.2f} ratio={ratio:.2f}")
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    raise SystemExit(main())
