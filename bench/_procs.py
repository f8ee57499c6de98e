"""Child processes for the benchmarks: a JSON-lines control channel over stdin/stdout, both ends.

Parent side: ``Child`` spawns a Python process, waits for its JSON lines and sends it commands, with a
timeout on every wait. Child side: ``serve_control`` answers commands read from stdin on the Twisted
reactor and stops the reactor when stdin closes. Must not import the project's packages (the callers
do), so that the parent of a benchmark stays light.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

MAX_LINE = 1 << 20  # a control line longer than this is a broken child, not a report


class ChildError(RuntimeError):
    """A child process died, timed out or answered something else than a JSON object."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS's pick; a small race until the child binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Child:
    """One child process speaking JSON lines on stdout; stderr goes to ``log_path``."""

    def __init__(self, name: str, argv: list[str], log_path: Path, *, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     env={**os.environ, **(env or {})})
        self._buf = b""

    def read(self, timeout: float) -> dict[str, Any]:
        """The next JSON object the child prints, waiting at most ``timeout`` seconds."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildError(f"{self.name}: no answer within {timeout:g} s{self._tail()}")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise ChildError(f"{self.name}: exited with {self.proc.wait()}{self._tail()}")
            self._buf += chunk
            if len(self._buf) > MAX_LINE:
                raise ChildError(f"{self.name}: a control line longer than {MAX_LINE} bytes")
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            value = json.loads(line)
        except ValueError:
            raise ChildError(f"{self.name}: not JSON: {line[:200]!r}") from None
        if not isinstance(value, dict):
            raise ChildError(f"{self.name}: not a JSON object: {line[:200]!r}")
        if "error" in value:
            raise ChildError(f"{self.name}: {value['error']}{self._tail()}")
        return value

    def request(self, command: str, timeout: float = 30.0) -> dict[str, Any]:
        """Send one command line and return the child's answer."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(command.encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise ChildError(f"{self.name}: exited with {self.proc.wait()}{self._tail()}") from None
        return self.read(timeout)

    def stop(self, timeout: float = 15.0) -> int:
        """Close stdin (the child stops), then SIGTERM, then SIGKILL; the exit status."""
        try:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
        except BrokenPipeError:
            pass
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and self.proc.poll() is None:
                self.proc.send_signal(sig)
            try:
                code = self.proc.wait(timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        else:  # pragma: no cover - SIGKILL always ends a child
            code = -9
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        return code

    def _tail(self, lines: int = 15) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return ("\n  " + "\n  ".join(text)) if text else ""


# --- child side -----------------------------------------------------------------------------------

Handler = Callable[[list[str]], dict[str, Any]]


def emit(value: dict[str, Any]) -> None:
    """Print one control line (the parent reads stdout line by line)."""
    sys.stdout.write(json.dumps(value, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def serve_control(reactor: Any, handlers: dict[str, Handler]) -> None:
    """Answer ``command arg...`` lines from stdin with ``handlers[command](args)``; stdin's end stops the
    reactor. A handler's exception becomes ``{"error": ...}`` and the child carries on."""
    from twisted.internet import stdio
    from twisted.protocols.basic import LineOnlyReceiver

    class Control(LineOnlyReceiver):
        delimiter = b"\n"
        MAX_LENGTH = 4096

        def lineReceived(self, line: bytes) -> None:
            words = line.decode(errors="replace").split()
            if not words:
                return
            handler = handlers.get(words[0])
            if handler is None:
                emit({"error": f"unknown command {words[0]!r}; known: {sorted(handlers)}"})
                return
            try:
                emit(handler(words[1:]))
            except Exception as exc:
                emit({"error": f"{words[0]}: {exc.__class__.__name__}: {exc}"})

        def connectionLost(self, reason: Any = None) -> None:
            if reactor.running:
                reactor.stop()

    stdio.StandardIO(Control(), reactor=reactor)


def stamp_ami_chunks() -> dict[str, float | None]:
    """Stamp every chunk of AMI bytes as the server's AMI protocol receives it: the returned dict's ``"t"`` is
    that chunk's arrival (``time.perf_counter``) while the chunk is being handled, else None."""
    from cti.ami import client as ami_client

    chunk: dict[str, float | None] = {"t": None}
    received = ami_client.AMIProtocol.dataReceived

    def stamped(self: object, data: bytes) -> None:
        chunk["t"] = time.perf_counter()
        try:
            received(self, data)  # type: ignore[arg-type]
        finally:
            chunk["t"] = None

    ami_client.AMIProtocol.dataReceived = stamped  # type: ignore[method-assign]
    return chunk


def record_gc_pauses() -> list[tuple[int, float]]:
    """(generation, seconds) of every garbage collection from now on, appended as they end."""
    import gc

    pauses: list[tuple[int, float]] = []
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - started[0]))

    gc.callbacks.append(on_gc)
    return pauses


def put_on_hold(pbx: Any, number: str, queue: str, skills: str) -> None:
    """A caller from ``number`` straight into ``[cti-hold]`` with the CTI_* variables of ``queue`` (no IVR)."""
    pbx.inbound_call("s", number, "", context="cti-hold", variables=[
        ("CTI_QUEUE", queue), ("CTI_SKILLS", skills), ("CTI_PRIORITY", "0"), ("CTI_LANGUAGE", "en"),
        ("CTI_DNIS", "+18005550100"), ("CTI_MAX_HOLD", "600")])


def poisson_start(reactor: Any, rng: Any, state: dict[str, Any], one_call: Callable[[], None]) -> Handler:
    """The control handler ``start RATE SECONDS``: ``one_call()`` at Poisson times of ``RATE`` per second for
    ``SECONDS`` (numpy ``rng``), kept on schedule when the loop runs late; ``state["behind"]`` is the latest
    a call was made after its time (seconds)."""
    state.setdefault("behind", 0.0)

    def arrivals(rate: float) -> None:
        now = time.monotonic()
        while state["next"] <= now and state["next"] < state["until"]:
            state["behind"] = max(state["behind"], now - state["next"])
            one_call()
            state["next"] += float(rng.exponential(1.0 / rate))
        if state["next"] < state["until"]:
            reactor.callLater(state["next"] - now, arrivals, rate)

    def start(args: list[str]) -> dict[str, Any]:
        rate, seconds = float(args[0]), float(args[1])
        state["next"] = time.monotonic()
        state["until"] = state["next"] + seconds
        arrivals(rate)
        return {"started": True}

    return start


def emit_when_ami_up(reactor: Any, runtime: Any, ready: Callable[[], dict[str, Any]], timeout: float) -> None:
    """Emit ``{"ready": True, **ready()}`` once ``runtime``'s server (a ``centre.process.Runtime``) is connected
    to its first PBX's AMI (``ready`` runs then: what the role does on being ready); after ``timeout`` seconds
    without it, an error line naming the connection's last fault, and the reactor stops."""
    name = runtime.cfg.asterisk[0].name
    deadline = time.monotonic() + timeout

    def look() -> None:
        if runtime.server.health.ami.get(name):
            emit({"ready": True, **ready()})
        elif time.monotonic() > deadline:
            emit({"error": f"no AMI connection to {name}: {runtime.server.health.ami_detail.get(name)}"})
            reactor.stop()
        else:
            reactor.callLater(0.05, look)

    look()
