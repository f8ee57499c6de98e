"""Soak benchmark (issue #19): the demo contact centre in real time at a steady rate for minutes, watching for
lost calls or records, a growing resident memory and a growing event-loop lag.

Run: ``.venv/bin/python bench/soak.py [--minutes 10] [--rate 50] [--warmup M]``; ``--minutes 60`` (or more)
for a longer soak. About ``minutes + 1`` minutes of wall time.

Two processes on loopback, the machinery of ``bench/sim_load.py`` (its configuration and its simulator role):

- the SIMULATOR (``bench/sim_load.py --role sim``, what ``cti sim`` runs, speed 1): the demo's inbound numbers,
  IVR flow and caller scripts, Poisson arrivals at ``--rate`` calls/s in all; enough generated agents
  (``sim_load.agents_for``: 8 x rate + 20, every skill, about 2 s talk, 1 s wrap-up) that they are never the
  bottleneck;
- the SERVER (``--role server``): ``centre.process.Runtime`` (what ``cti serve`` runs: AMI client, FastAGI
  IVR, ACD, console hub, screen-pop look-ups, SQLite records) with the demo's simulated agents logged in
  (``centre.demo.log_in_agents``) and ``OpenCalls`` following each call while it lasts (not ``CallLedger``,
  which keeps every call and would grow the very memory measured). A 10 ms timer on its event loop records
  how late each tick runs (the loop's lag).

The parent samples the server's resident memory (``VmRSS`` of ``/proc/PID/status``) every ``--sample``
seconds and collects the lag samples; each minute it prints a row: calls arrived (simulator) and offered
(server), answered, calls in progress, the server's CPU (all threads, % of one core), RSS median, lag p50 /
p99 / max. After ``--minutes`` the arrivals
stop; calls in progress end and agents finish their wrap-up (an answered call's record is written when the
wrap-up ends; at most ``--drain`` s), then the server stops (its last records written) and the parent reads
the SQLite file.

- ``lost`` = calls the simulator placed that the server never saw + the calls (each once) that reached a queue
  and are neither ended nor held by the server, that are still open after the drain, or that reached a queue
  and have no row in ``acd_queue_calls`` (their record).
- ``rss_growth_pct`` = (median RSS of the last minute - median RSS of the last warm-up minute) / the latter,
  the warm-up being the first ``--warmup`` minutes (caches, pools and the GC's frozen generation fill up).
- ``loop_lag_p99_ms``: p99 of every lag sample after the warm-up; ``lag_grows``: the last minute's p99 is
  above 1.5 x the first post-warm-up minute's plus 5 ms.

Pass: lost = 0, rss_growth_pct < 5, loop_lag_p99_ms <= 50 and the lag does not grow. What the server keeps is
bounded; the largest bounds are counts: the last 10,000 IVR completions and routing decisions (``cti.kept``),
which fill after 10,000 / rate seconds (200 s at 50 calls/s). The default warm-up is the minutes that takes,
rounded up, at least 2 (4 at 50 calls/s); the statistics' windows are rings allocated at start. Ends with
``BENCH soak calls=<n> lost=<n> rss_growth_pct=<x> loop_lag_p99_ms=<y>``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._procs import Child, ChildError, emit, emit_when_ami_up, serve_control  # noqa: E402
from bench.sim_load import percentile, prepare_template, step_config  # noqa: E402

LAG_TICK = 0.010  # seconds between the server's loop-lag looks
KEPT = 10_000  # values in the server's largest bounded histories (acd.service.MAX_DECISIONS, ivr RecentCompletions)
SIM = ROOT / "bench" / "sim_load.py"


# --- child: the server ----------------------------------------------------------------------------------

class OpenCalls:
    """Follows each inbound call only while it lasts (``CallLedger`` keeps every call, which would itself grow
    the server's memory by the hour): counts calls started, answered and ended, and appends each uniqueid
    that reaches a queue to a file (checked against the records at the end)."""

    QUEUED, ANSWERED = 1, 2

    def __init__(self, queued_path: Path) -> None:
        self.open: dict[str, int] = {}  # uniqueid -> flags
        self.started = self.answered = self.ended = self.queued = 0
        self._queued_file = open(queued_path, "w")  # closed by close()

    def __call__(self, event: object) -> None:
        from acd.events import CallAnswered
        from cti.contract import INBOUND_CONTEXT
        from cti.events import CallEnded, CallQueued, CallStarted

        if isinstance(event, CallStarted):
            if event.channel.startswith("PJSIP/trunk-") and event.context == INBOUND_CONTEXT:
                self.open.setdefault(event.uniqueid, 0)
                self.started += 1
        elif isinstance(event, CallQueued):
            flags = self.open.get(event.uniqueid)
            if flags is not None and not flags & self.QUEUED:
                self.open[event.uniqueid] = flags | self.QUEUED
                self.queued += 1
                self._queued_file.write(event.uniqueid + "\n")
        elif isinstance(event, CallAnswered):
            flags = self.open.get(event.uniqueid)
            if flags is not None and not flags & self.ANSWERED:
                self.open[event.uniqueid] = flags | self.ANSWERED
                self.answered += 1
        elif isinstance(event, CallEnded):
            if self.open.pop(event.call_id, None) is not None:
                self.ended += 1

    def not_over(self, known_to_server: set[str]) -> dict[str, str]:
        """Each call not ended: ``lost`` when it reached a queue and the server no longer holds it, else ``open``."""
        return {uid: "lost" if flags & self.QUEUED and uid not in known_to_server else "open"
                for uid, flags in self.open.items()}

    def close(self) -> None:
        self._queued_file.close()


def malloc_info() -> dict[str, int]:
    """glibc's ``mallinfo2`` (kB): the heap obtained, in use and free, and mmapped blocks ({} elsewhere)."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
            "keepcost")]

    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = MallInfo2
    info = fn()
    return {"heap": info.arena // 1024, "used": info.uordblks // 1024, "free": info.fordblks // 1024,
            "mmap": info.hblkhd // 1024}


def role_server(config: str, workdir: str) -> int:
    """``Runtime`` + simulated agents + ``OpenCalls`` + a 10 ms lag timer; answers ``lag``, ``report`` and
    ``calls``."""
    import asyncio

    from twisted.internet import defer

    from centre.cli_common import setup_logging
    from centre.demo import log_in_agents
    from centre.demo_account import server_known_calls
    from centre.process import Runtime
    from config.load import load_config
    from cti.reactor import install_reactor

    cfg = load_config(config)
    setup_logging(cfg.log.level)
    reactor: Any = install_reactor()
    runtime = Runtime(cfg, reactor)
    calls = OpenCalls(Path(workdir) / "queued.txt")
    runtime.server.subscribe(calls)
    lags: list[float] = []
    due = {"at": 0.0}

    def tick() -> None:
        now = time.perf_counter()
        lags.append(max(0.0, now - due["at"]) * 1000.0)
        due["at"] = now + LAG_TICK
        reactor.callLater(LAG_TICK, tick)

    def on_ami_up() -> dict[str, Any]:
        bots = log_in_agents(runtime.server, exclude=())
        due["at"] = time.perf_counter() + LAG_TICK
        reactor.callLater(LAG_TICK, tick)
        return {"agents": len(bots.agents), "pid": os.getpid()}

    def lag(_: list[str]) -> dict[str, Any]:
        out = [round(v, 3) for v in lags]
        lags.clear()
        return {"lag_ms": out}

    def report(_: list[str]) -> dict[str, Any]:
        not_over = calls.not_over(server_known_calls(runtime.server))
        lost = sum(1 for w in not_over.values() if w == "lost")
        acd = runtime.server.acd
        wrapping = sum(1 for a in acd.agent_ids() if acd.agent_snapshot(a).state.value == "wrap_up")
        return {"offered": calls.started, "answered": calls.answered, "ended": calls.ended, "queued": calls.queued,
                "open": len(not_over) - lost, "lost": lost, "wrap_up": wrapping,
                "ami_messages": runtime.server.counters["ami_messages"]}

    def not_over(args: list[str]) -> dict[str, Any]:  # to a file: a long control line would not fit the pipe
        calls.close()
        Path(args[0]).write_text(json.dumps(calls.not_over(server_known_calls(runtime.server))))
        return {"written": True}

    def start() -> None:
        d = defer.Deferred.fromFuture(asyncio.ensure_future(runtime.start()))
        d.addCallbacks(lambda _: emit_when_ami_up(reactor, runtime, on_ami_up, 20.0),
                       lambda f: (emit({"error": f"start: {f.getErrorMessage()}"}), reactor.stop()))

    def shutdown() -> defer.Deferred[Any]:
        return defer.Deferred.fromFuture(asyncio.ensure_future(runtime.stop()))

    def census(_: list[str]) -> dict[str, Any]:  # --census: what the garbage collector tracks, by type
        import collections
        import gc

        objects = gc.get_objects()
        by_type = collections.Counter(type(o).__qualname__ for o in objects)
        return {"tracked": len(objects), "top": by_type.most_common(12), "blocks": sys.getallocatedblocks(),
                "malloc": malloc_info()}

    traced: dict[str, Any] = {}

    def trace(args: list[str]) -> dict[str, Any]:  # --trace: what grew in the last minute, by line (tracemalloc)
        import tracemalloc

        if args[0] == "start":
            tracemalloc.start(3)
            traced["last"] = tracemalloc.take_snapshot()
            return {"started": True}
        snap = tracemalloc.take_snapshot().filter_traces((tracemalloc.Filter(False, tracemalloc.__file__),))
        diff = snap.compare_to(traced["last"], "traceback")
        traced["last"] = snap
        return {"top": [(stat.size_diff, stat.count_diff, " > ".join(
            f"{Path(f.filename).name}:{f.lineno}" for f in reversed(stat.traceback))) for stat in diff[:8]]}

    serve_control(reactor, {"lag": lag, "report": report, "not-over": not_over, "census": census, "trace": trace})
    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    reactor.run()
    return 0


# --- parent ---------------------------------------------------------------------------------------------

def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` (Linux ``/proc/PID/status`` VmRSS, kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def recorded_uniqueids(db: Path) -> set[str]:
    """Uniqueids with a queue-call record (``acd_queue_calls``) in the server's SQLite file."""
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT DISTINCT uniqueid FROM acd_queue_calls")}


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


HEAD = (f"{'min':>4} {'arrived':>8} {'offered':>8} {'answered':>8} {'open':>6} {'srv cpu%':>8} {'rss MB':>8} "
        f"{'lag p50':>8} {'lag p99':>8} {'lag max':>8}")


def soak(args: argparse.Namespace, workdir: Path) -> int:
    import yaml

    prepare_template(workdir)
    shutil.copy(workdir / "template.sqlite3", workdir / "bench.sqlite3")
    doc = step_config(args.rate, workdir, seed=args.seed)
    doc["log"] = {"level": "WARNING"}
    cfg_path = workdir / "cti.yaml"
    cfg_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    sim = Child("sim", [sys.executable, str(SIM), "--config", str(cfg_path), "--role", "sim",
                        "--seed", str(args.seed)], workdir / "sim.log")
    server: Child | None = None
    minutes: list[dict[str, Any]] = []
    try:
        sim.read(60.0)
        server = Child("server", [sys.executable, str(Path(__file__).resolve()), "--config", str(cfg_path),
                                  "--role", "server", "--workdir", str(workdir)], workdir / "server.log")
        ready = server.read(120.0)
        if "error" in ready:
            raise ChildError(f"server: {ready['error']}")
        pid = int(ready["pid"])
        print(f"server pid {pid}: {ready['agents']} agents logged in; arrivals at {args.rate:g} calls/s for "
              f"{args.minutes:g} min (warm-up {args.warmup:g} min), RSS every {args.sample:g} s, lag timer "
              f"{LAG_TICK * 1000:g} ms", flush=True)
        print(HEAD)
        print("-" * len(HEAD), flush=True)
        server.request("lag")  # drop the samples of the start-up
        if args.trace:
            server.request("trace start")
        sim.request("start")
        t0 = time.monotonic()
        cpu0 = cpu_seconds(pid)
        for m in range(int(args.minutes)):
            rss: list[int] = []
            lag: list[float] = []
            end = t0 + 60.0 * (m + 1)
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(args.sample, left))
                rss.append(rss_kb(pid))
                lag.extend(server.request("lag")["lag_ms"])
            s, srv = sim.request("report"), server.request("report")
            cpu1 = cpu_seconds(pid)
            row = {"minute": m + 1, "cpu_pct": 100.0 * (cpu1 - cpu0) / 60.0, "arrived": s["arrived"],
                   "offered": srv["offered"], "answered": srv["answered"],
                   "open": srv["open"] + srv["lost"], "rss": rss, "lag": lag,
                   "rss_mb": statistics.median(rss) / 1024.0, "p50": percentile(lag, 0.5),
                   "p99": percentile(lag, 0.99), "max": max(lag, default=None)}
            minutes.append(row)
            cpu0 = cpu1
            print(f"{row['minute']:>4} {row['arrived']:>8} {row['offered']:>8} {row['answered']:>8} "
                  f"{row['open']:>6} {row['cpu_pct']:>8.0f} {row['rss_mb']:>8.1f} {fmt(row['p50']):>8} "
                  f"{fmt(row['p99']):>8} {fmt(row['max']):>8}", flush=True)
            if args.trace and m + 1 > 1:
                for size, count, where in server.request("trace top", timeout=120.0)["top"]:
                    print(f"     {size / 1024:+9.0f} kB {count:+8d} {where}", flush=True)
            if args.census:
                c = server.request("census")
                print(f"     gc tracks {c['tracked']:,}: " + ", ".join(f"{t} {n:,}" for t, n in c["top"]), flush=True)
                print(f"     python blocks {c['blocks']:,}; malloc kB " + ", ".join(
                    f"{k} {v:,}" for k, v in c["malloc"].items()), flush=True)
        sim.request("stop-arrivals")
        deadline = time.monotonic() + args.drain
        while True:  # until the PBX is empty, the server has read all it emitted, every call has ended and every
            # agent has finished its wrap-up (an answered call's record is written when its wrap-up ends)
            s, srv = sim.request("report"), server.request("report")
            if s["channels"] == 0 and srv["ami_messages"] >= s["events"] and not srv["open"] \
                    and not srv["wrap_up"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        server.request(f"not-over {workdir / 'not_over.json'}")
        not_over: dict[str, str] = json.loads((workdir / "not_over.json").read_text())
        queued = set((workdir / "queued.txt").read_text().split())
        sim_cpu = s["cpu"]
    finally:
        sim.stop()
        if server is not None:
            server.stop(timeout=60.0)  # its last call records are written on the way out
    recorded = recorded_uniqueids(workdir / "bench.sqlite3")
    unseen = max(0, s["arrived"] - srv["offered"])
    unrecorded = sorted(queued - recorded)
    lost_calls = {uid for uid, w in not_over.items() if w == "lost"}
    still_open = {uid for uid, w in not_over.items() if w != "lost"}
    lost = unseen + len(lost_calls | still_open | set(unrecorded))  # a call counts once, whatever went wrong

    warm = max(1, min(int(args.warmup), len(minutes) - 1))
    base = statistics.median(minutes[warm - 1]["rss"])
    last = statistics.median(minutes[-1]["rss"])
    growth = 100.0 * (last - base) / base
    steady = [v for row in minutes[warm:] for v in row["lag"]]
    p99 = percentile(steady, 0.99) or 0.0
    first, final = minutes[warm]["p99"] or 0.0, minutes[-1]["p99"] or 0.0
    grows = final > 1.5 * first + 5.0
    print(f"after the drain: simulator {s['arrived']} arrived, {s['channels']} channels left "
          f"({', '.join(f'{k} {v}' for k, v in sorted(s['counts'].items()))}); server {srv['offered']} offered, "
          f"{srv['answered']} answered, {srv['ended']} ended, {len(queued)} reached a queue, {len(recorded)} "
          f"queue-call records")
    print(f"lost: {unseen} never seen by the server, {len(lost_calls)} queued and no longer held "
          f"({', '.join(sorted(lost_calls)[:5]) or '-'}), {len(still_open)} still open after the drain "
          f"({', '.join(f'{u} {not_over[u]}' for u in sorted(still_open)[:5]) or '-'}), {len(unrecorded)} queued "
          f"without a record ({', '.join(unrecorded[:5]) or '-'})")
    print(f"RSS: {base / 1024:.1f} MB at the end of the warm-up (minute {warm}), {last / 1024:.1f} MB in the last "
          f"minute: {growth:+.2f}%")
    print(f"loop lag after the warm-up: p99 {p99:.1f} ms over {len(steady)} samples; minute {warm + 1} p99 "
          f"{first:.1f} ms, last minute {final:.1f} ms ({'grows' if grows else 'does not grow'})")
    print(f"simulator CPU {sim_cpu:.0f} s; machine: {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the end (other jobs share it)")
    ok = lost == 0 and growth < 5.0 and p99 <= 50.0 and not grows
    if not ok:
        args.keep = True  # the logs, configuration and database, to see why
    print("PASS" if ok else "FAIL: " + ", ".join(
        what for what, bad in (("calls or records lost", lost > 0), ("RSS grew 5% or more", growth >= 5.0),
                               ("loop lag p99 over 50 ms", p99 > 50.0), ("loop lag grows", grows)) if bad))
    print(f"BENCH soak calls={srv['offered']} lost={lost} rss_growth_pct={growth:.2f} "
          f"loop_lag_p99_ms={p99:.1f}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--role", choices=("server",), help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--minutes", type=float, default=10.0, help="minutes of arrivals (default 10; 60+ for a long soak)")
    p.add_argument("--rate", type=float, default=50.0, help="arrivals, calls/s (default 50)")
    p.add_argument("--warmup", type=float, default=None,
                   help="minutes not counted for growth (default: until 10,000 calls have come, at least 2)")
    p.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    p.add_argument("--drain", type=float, default=60.0, help="max seconds for calls to end after the arrivals")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the work directory (config, logs, database)")
    p.add_argument("--trace", action="store_true",
                   help="from minute 2, where the server's memory grew in each minute (tracemalloc; slow: --rate 20)")
    p.add_argument("--census", action="store_true",
                   help="each minute, print what the server's garbage collector tracks, by type (the top 12)")
    args = p.parse_args(argv)
    if args.role == "server":
        return role_server(args.config, args.workdir)
    if args.minutes < 2:
        p.error("--minutes must be at least 2 (a warm-up minute and a measured one)")
    if args.warmup is None:  # the kept histories (10,000 IVR completions and routing decisions) full
        args.warmup = max(2.0, math.ceil(KEPT / (args.rate * 60.0)))
    args.warmup = min(args.warmup, args.minutes - 1)
    workdir = Path(tempfile.mkdtemp(prefix="cti-soak-"))
    print(f"soak: load average {os.getloadavg()[0]:.1f} at start", flush=True)
    try:
        return soak(args, workdir)
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
