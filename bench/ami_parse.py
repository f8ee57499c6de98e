"""Benchmark: AMI parsing throughput of cti.ami.protocol against panoramisk and pyst2, plus the full path.

Run: ``.venv/bin/python bench/ami_parse.py [--events 200000] [--repeat 2]``

The stream is the recorded Asterisk 22 transcripts (every AMI capture but login.txt, banners removed),
repeated with uniqueids, channel suffixes and bridge ids renumbered per copy, behind one banner,
fed in 4 KiB chunks. Each parser is timed on the whole stream (best of ``--repeat``); "events" are
the stream's ``Event:`` messages, the same count for every parser.

- ours: ``AMIParser.feed`` -> AMIMessage objects (all headers, case-insensitive index).
- panoramisk: its ``AMIProtocol.data_received`` (the asyncio protocol's own parsing into Message).
- pyst2: the line loop of ``asterisk.manager.Manager._receive_data`` + ``ManagerMsg(lines)``, fed
  from the same chunks (pyst2 itself reads lines from a socket file in a thread).
- starpy: not measured: it does not install on Python 3.11.
- bare loop: split on blank lines and partition on ": " with no message objects (a ceiling).

Full path: a separate process plays Asterisk on 127.0.0.1 (banner, Login, then the stream);
cti's AMIClient on Twisted's asyncio reactor receives it, and every event goes through
``cti.calls.CallTracker.handle`` -> domain events (if cti/calls.py is present).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cti.ami.message import AMIMessage  # noqa: E402
from cti.ami.protocol import AMIParser  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "asterisk"
FILES = ["inbound_queue", "queue_member_ops", "originate_outbound", "fastagi_ami", "hangup_redirect", "burst"]
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
CHUNK = 4096

_UNIQUEID = re.compile(rb"\b(1[0-9]{9})\.([0-9]+)\b")
_SUFFIX = re.compile(rb"-([0-9a-f]{8});([12])")
_BRIDGE = re.compile(rb"\b[0-9a-f]{8}-([0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b")


def build_stream(min_events: int) -> tuple[bytes, int]:
    """Banner + renumbered copies of the transcripts until at least ``min_events`` events."""
    base = b""
    for name in FILES:
        data = (FIXTURES / f"{name}.txt").read_bytes()
        base += data[data.index(b"\r\n") + 2 :] if data.startswith(b"Asterisk Call Manager/") else data
    per_copy = base.count(b"\r\n\r\nEvent: ") + base.startswith(b"Event: ")
    copies = -(-min_events // per_copy)
    parts = [BANNER]
    for k in range(copies):
        data = _UNIQUEID.sub(lambda m, k=k: m.group(1) + b"." + str(int(m.group(2)) + k * 100_000).encode(), base)
        data = _SUFFIX.sub(lambda m, k=k: b"-%08x;" % (int(m.group(1), 16) + k * 0x10000) + m.group(2), data)
        data = _BRIDGE.sub(lambda m, k=k: b"%08x-" % k + m.group(1), data)
        parts.append(data)
    return b"".join(parts), per_copy * copies


def chunks_of(stream: bytes) -> list[bytes]:
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]


# parsers -----------------------------------------------------------------------------------
def run_ours(chunks: list[bytes]) -> int:
    parser = AMIParser()
    events = 0
    for chunk in chunks:
        for item in parser.feed(chunk):
            if isinstance(item, AMIMessage) and item.kind == "event":
                events += 1
    return events


def run_ours_all_headers(chunks: list[bytes]) -> int:
    """Ours, then every header list built (what an eager parser does for every message)."""
    parser = AMIParser()
    events = 0
    for chunk in chunks:
        for item in parser.feed(chunk):
            if isinstance(item, AMIMessage) and item.kind == "event":
                item.get("Uniqueid")
                events += 1
    return events


def run_bare(chunks: list[bytes]) -> int:
    buf = b""
    events = 0
    for chunk in chunks:
        buf += chunk
        end = buf.rfind(b"\r\n\r\n")
        if end < 0:
            continue
        region, buf = buf[:end], buf[end + 4 :]
        for block in region.split(b"\r\n\r\n"):
            headers = [line.partition(b": ") for line in block.split(b"\r\n")]
            if headers[0][0] == b"Event":
                events += 1
    return events


def run_panoramisk(chunks: list[bytes]) -> int:
    from panoramisk.ami_protocol import AMIProtocol

    class Counting(AMIProtocol):  # type: ignore[misc]
        events = 0

        def handle_message(self, message: Any) -> None:
            if "event" in message:
                self.events += 1

    proto = Counting()
    proto.connection_made(None)
    proto.log.disabled = True
    for chunk in chunks:
        proto.data_received(chunk)
    return proto.events


def _pyst2_lines(chunks: list[bytes]) -> Iterator[bytes]:
    buf = b""
    for chunk in chunks:
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            yield line + b"\n"


def run_pyst2(chunks: list[bytes]) -> int:
    """pyst2's reader loop (Manager._receive_data, minus the socket and thread) + ManagerMsg."""
    from asterisk.manager import ManagerMsg

    eol = "\r\n"
    events = 0
    title = None
    lines: list[str] = []
    multiline = status = wait_for_marker = False
    for raw in _pyst2_lines(chunks):
        line = raw.decode("utf8", "ignore")
        if not title and "/" in line and ":" not in line:
            title = line.split("/")[0].strip()
            lines = []
            continue
        if line == eol and not wait_for_marker:
            multiline = False
            if lines:
                msg = ManagerMsg(lines)
                if "Event" in msg.headers:
                    events += 1
                lines = []
            continue
        if "status will follow" in line:
            status = True
            wait_for_marker = True
        lines.append(line)
        if not line.endswith("\r\n") or ":" not in line:
            multiline = True
        if not (multiline or status) and line.startswith("Response") and line.split(":", 1)[1].strip() == "Follows":
            wait_for_marker = True
        if multiline and (line.startswith("--END COMMAND--") or line.strip().endswith("--END COMMAND--")):
            wait_for_marker = False
            multiline = False
        if status and "StatusComplete" in line:
            wait_for_marker = False
            status = False
    return events


def measure(fn: Callable[[list[bytes]], int], chunks: list[bytes], repeat: int) -> tuple[int, float]:
    best = float("inf")
    count = 0
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        count = fn(chunks)
        best = min(best, time.perf_counter() - t0)
    return count, best


# full path -----------------------------------------------------------------------------------
def _fake_asterisk(stream_path: str, conn: Any) -> None:
    """Child process: accept one AMI client, answer its Login, send the stream, wait for close."""
    stream = Path(stream_path).read_bytes()
    with socket.create_server(("127.0.0.1", 0)) as srv:
        conn.send(srv.getsockname()[1])
        sock, _ = srv.accept()
        with sock:
            sock.sendall(stream[: len(BANNER)])
            data = b""
            while b"\r\n\r\n" not in data:
                more = sock.recv(4096)
                if not more:
                    return
                data += more
            action_id = re.search(rb"ActionID: ([^\r]*)", data)
            aid = action_id.group(1) if action_id else b""
            sock.sendall(b"Response: Success\r\nActionID: " + aid + b"\r\nMessage: Authentication accepted\r\n\r\n")
            sock.sendall(stream[len(BANNER) :])
            while sock.recv(65536):
                pass


def full_path(stream: bytes, expected_events: int, with_tracker: bool) -> tuple[float, int, str]:
    """Events/s from login to the last event over real TCP; returns (rate, domain events, what)."""
    import asyncio
    import tempfile

    from cti.reactor import install_reactor, reactor_loop

    reactor: Any = install_reactor()
    loop: asyncio.AbstractEventLoop = reactor_loop()
    from twisted.internet import defer

    from cti.ami.client import AMIClient
    from cti.ami.settings import AsteriskServer

    handle: Callable[[str, AMIMessage, float], list[Any]] | None = None
    what = "socket -> Twisted -> parser"
    if with_tracker:
        try:
            from cti.calls import CallTracker
        except ImportError:
            return 0.0, 0, "cti/calls.py missing: tracker part pending"
        handle = CallTracker().handle
        what = "socket -> Twisted -> parser -> CallTracker -> domain events"

    with tempfile.NamedTemporaryFile(suffix=".ami") as tmp:
        tmp.write(stream)
        tmp.flush()
        parent, child = multiprocessing.Pipe()
        proc = multiprocessing.get_context("fork").Process(target=_fake_asterisk, args=(tmp.name, child))
        proc.start()
        port = parent.recv()
        done: defer.Deferred[None] = defer.Deferred()
        state = {"events": 0, "domain": 0, "t0": 0.0, "t1": 0.0}
        seconds = reactor.seconds

        def on_message(server: str, msg: AMIMessage) -> None:
            state["events"] += 1
            if handle is not None:
                state["domain"] += len(handle(server, msg, seconds()))
            if state["events"] == expected_events:
                state["t1"] = time.perf_counter()
                done.callback(None)

        def on_connection(server: str, up: bool, detail: str) -> None:
            if up:
                state["t0"] = time.perf_counter()

        server = AsteriskServer(name="bench", port=port, username="cti", secret="x", auth="plain")
        client = AMIClient(server, clock=reactor, on_message=on_message, on_connection=on_connection)
        client.start()
        loop.run_until_complete(asyncio.wait_for(done.asFuture(loop), 300))
        loop.run_until_complete(client.stop().asFuture(loop))
        proc.join(10)
    return state["events"] / (state["t1"] - state["t0"]), int(state["domain"]), what


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000, help="minimum events in the stream")
    ap.add_argument("--repeat", type=int, default=2, help="runs per parser (best is kept)")
    args = ap.parse_args(argv)

    stream, n_events = build_stream(args.events)
    chunks = chunks_of(stream)
    print(f"stream: {len(stream) / 1e6:.1f} MB, {n_events} events, {len(chunks)} chunks of {CHUNK} bytes")

    rows: list[tuple[str, float, str]] = []
    for label, fn in [
        ("cti.ami.protocol (ours)", run_ours),
        ("ours + every header indexed", run_ours_all_headers),
        ("panoramisk 1.4 AMIProtocol", run_panoramisk),
        ("pyst2 ManagerMsg", run_pyst2),
        ("bare split+partition loop", run_bare),
    ]:
        count, secs = measure(fn, chunks, args.repeat)
        note = "" if count == n_events else f"saw {count} events (merges some list items)"
        if fn is run_ours:
            note = "headers built on first use"
        elif fn is run_ours_all_headers:
            note = "as an eager parser: every message's headers and index built"
        rows.append((label, n_events / secs, note))
    rows.append(("starpy", 0.0, "not measured: does not install on Python 3.11"))

    ours = rows[0][1]
    peers = [r for r in rows if r[0].startswith(("panoramisk", "pyst2"))]
    best_name, best_rate, _ = max(peers, key=lambda r: r[1])
    peer_key = {"panoramisk 1.4 AMIProtocol": "panoramisk", "pyst2 ManagerMsg": "pyst2"}[best_name]

    full_parser, _, _ = full_path(stream, n_events, with_tracker=False)
    full_rate, domain, what = full_path(stream, n_events, with_tracker=True)

    print()
    print(f"{'parser':<30} {'events/s':>12}  {'vs ours':>8}  note")
    for label, rate, note in rows:
        ratio = f"{ours / rate:8.2f}x" if rate else f"{'-':>9}"
        print(f"{label:<30} {rate:>12,.0f}  {ratio}  {note}")
    print()
    print(f"full path, {'socket -> Twisted -> parser':<58} {full_parser:>10,.0f} events/s")
    if full_rate:
        print(f"full path, {what:<58} {full_rate:>10,.0f} events/s ({domain} domain events)")
    else:
        print(f"full path with tracker: {what}")
    ratio = ours / best_rate
    eager_ratio = rows[1][1] / best_rate
    target = "meets" if ratio >= 3 else "BELOW"
    print(f"ours / fastest peer ({peer_key}) = {ratio:.2f}x ({target} the 3x target)")
    print(f"ours with every header built / fastest peer = {eager_ratio:.2f}x")
    print("full path target 50,000 events/s")
    full_value = full_rate if full_rate else full_parser
    print(
        f"BENCH ami_parse events_per_s={ours:.0f} best_peer={peer_key} ratio={ratio:.2f} "
        f"full_path_events_per_s={full_value:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
