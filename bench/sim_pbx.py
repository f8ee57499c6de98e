"""Benchmark: how fast the simulated Asterisk runs in virtual time.

Run: ``.venv/bin/python bench/sim_pbx.py [--calls 3000]``

1. Burst replay: the recorded ``burst`` scenario (50 Originates into a queue, recorded on a real
   Asterisk 22) replayed in the simulator on a virtual clock. Baseline: the real Asterisk's own
   wall-clock duration of that scenario, read from ``burst.timeline.jsonl`` (it cannot be re-run
   here: no Asterisk on this machine). The simulator stops each call at Queue() (no app_queue).
2. Synthetic load: ``--calls`` inbound PSTN calls through the shipped dialplan (cti-inbound ->
   fallback -> cti-hold -> Redirect to cti-agent -> Dial PJSIP agent -> talk -> hangup), one AMI
   session receiving every event (encoded to bytes), on a virtual clock: events/s and calls/s of
   wall time, and how many times faster than real time the simulated traffic ran.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "asterisk"


def burst_replay() -> tuple[float, float, int]:
    """(recorded seconds, simulated wall seconds, events the simulator sent)."""
    from sim.replay import SCENARIOS

    first = last = None
    with open(FIXTURES / "burst.timeline.jsonl", "rb") as fh:
        for line in fh:
            t = json.loads(line)["t"]
            first = t if first is None else first
            last = t
    recorded = float(last - first)  # type: ignore[operator]
    t0 = time.perf_counter()
    out = SCENARIOS["burst"].run(FIXTURES)
    wall = time.perf_counter() - t0
    return recorded, wall, sum(len(v) for v in out.values())


def synthetic(calls: int) -> tuple[float, int, int, float]:
    """(wall seconds, events, calls completed, simulated seconds)."""
    from sim.ami_server import AMIServer
    from sim.clock import VirtualClock
    from sim.dialplan import DEFAULT_DIALPLAN, load_dialplan
    from sim.far_end import FarEnd, FixedFarEnds
    from sim.pbx import Pbx

    clock = VirtualClock()
    agents = {str(1000 + i): FarEnd("answer", ring_time=2.0, talk_time=60.0) for i in range(200)}
    pbx = Pbx(clock, load_dialplan(DEFAULT_DIALPLAN), far_ends=FixedFarEnds(agents))
    server = AMIServer(pbx, {"cti": "cti-secret"})
    sent = [0]

    def count(data: bytes) -> None:
        sent[0] += 1

    session = server.open_session(count, lambda: None)
    session.data_received(b"Action: Login\r\nUsername: cti\r\nSecret: cti-secret\r\n\r\n")
    done = [0]

    def arrive(i: int) -> None:
        chan = pbx.inbound_call("+15550100", f"+1555{i:07d}", "Caller")
        chan.on_hangup(lambda: done.__setitem__(0, done[0] + 1))

        def offer() -> None:
            if chan.dead:
                return
            pbx.set_var(chan, "CTI_AGENT_ENDPOINT", f"PJSIP/{1000 + i % 200}")
            pbx.set_var(chan, "CTI_RING_TIMEOUT", "15")
            pbx.async_goto(chan, "cti-agent", str(1000 + i % 200), 1)

        pbx.later(5.0, offer)

    for i in range(calls):
        clock.callLater(i * 0.4, arrive, i)
    t0 = time.perf_counter()
    clock.run_until(calls * 0.4 + 120)
    wall = time.perf_counter() - t0
    return wall, sent[0], done[0], clock.seconds()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000)
    args = ap.parse_args()
    import logging

    logging.disable(logging.WARNING)
    recorded, wall_b, events_b = burst_replay()
    wall, events, done, simulated = synthetic(args.calls)
    print(f"{'measurement':<44}{'value':>14}")
    print(f"{'burst: real Asterisk (recorded) seconds':<44}{recorded:>14.2f}")
    print(f"{'burst: simulator wall seconds':<44}{wall_b:>14.3f}")
    print(f"{'burst: events sent by the simulator':<44}{events_b:>14d}")
    print(f"{'burst: speed-up over the real run':<44}{recorded / wall_b:>13.1f}x")
    print(f"{'synthetic: calls completed':<44}{done:>14d}")
    print(f"{'synthetic: AMI events sent':<44}{events:>14d}")
    print(f"{'synthetic: wall seconds':<44}{wall:>14.2f}")
    print(f"{'synthetic: events/s (wall)':<44}{events / wall:>14.0f}")
    print(f"{'synthetic: calls/s (wall)':<44}{done / wall:>14.1f}")
    print(f"{'synthetic: simulated time / wall time':<44}{simulated / wall:>13.1f}x")
    print(f"BENCH sim_pbx events_per_s={events / wall:.0f} calls_per_s={done / wall:.1f} "
          f"burst_speedup={recorded / wall_b:.1f}x realtime_factor={simulated / wall:.1f}x")


if __name__ == "__main__":
    main()
