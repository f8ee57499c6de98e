"""Benchmark: the dialer's modes on one simulated day, the real server against the simulated PBX.

Run: ``.venv/bin/python bench/dialer.py [--quick] [--agents 50 --answer-rate 0.15 ...]``

The same campaign (same seed, same leads, same customers: a lead's fate depends only on the seed, its number and
the attempt, ``sim.people.OutboundCustomers``) is dialled under each dial mode (``progressive``, ``ratio``,
``predictive``, ``preview``) for ``--hours`` of virtual time, by the server as ``cti demo --speed max`` builds it
(``centre.demo.build_virtual``: wiring, ACD, dialer, simulated PBX over in-memory transports, auto agents).

The fixed model (so that results compare across versions): talk time lognormal mean 120 s sd 60 s, wrap-up
15 s, answered calls ring 4-12 s first, ring timeout 25 s, busy 5% of dials, answering machines 10% of answers
with AMD 90% accurate, people hang up on silence 2 s after they answer, agents' phones answer at once.

Figures per mode, computed here from the dialer's and the ACD's own events (not from a compliance ledger):

* dials: attempts dialled; contacts: people an agent answered (the ACD's CallAnswered on the campaign's queue);
* abandonment, counted as the compliance ledger counts it (``dialer.compliance.LedgerEntry``: the same rules,
  applied here to the same ``AttemptFinished`` events): of the calls a person answered (AMD HUMAN or NOTSURE,
  or queued; with ``--no-amd`` every answer), those not connected to an agent within the safe-harbour time
  (the safe-harbour message, a hang-up before any agent, or connected late); ``--policy uk_ofcom`` adds the
  people AMD took for machines, estimated from the machine verdicts and the given AMD accuracy
  (``dialer.compliance.false_machines``). Per day (worst calendar day from the start) and over the worst
  rolling 24 h window (with a run of 24 h or less, both are the whole run). A campaign its policy refuses
  (``CampaignSettings.policy_errors``: under uk_ofcom, an AMD whose misses alone reach the cap) is reported
  as unavailable, with the reason;
* occupancy: (talk + wrap-up) / logged-in time, over every agent; contacts per agent hour (logged in);
* wall time of the run (``--jobs N`` runs modes in parallel processes: faster, but each one's wall time then
  shares the CPU).

A mode the dialer does not have yet (no ``mode`` setting in ``dialer.settings.CampaignSettings``, or a value it
refuses) is reported as unavailable; without a ``mode`` setting, ``progressive`` is ``ratio: 1`` and ``ratio``
is ``ratio: --ratio`` of the existing pacer. The last line compares ``predictive`` with ``progressive``:
``BENCH dialer agents=.. answer_rate=.. abandon_pct=.. occupancy=.. ratio_vs_progressive=..`` (when
``predictive`` is unavailable it reports the most advanced mode that ran, and says which with ``mode=``).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# This file is named like the ``dialer`` package: take its own directory off the path so that ``import dialer``
# finds the package (as bench/screenpop.py does).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from pydantic import ValidationError  # noqa: E402

from acd.events import AgentStateChanged, CallAnswered  # noqa: E402
from acd.settings import AcdSection  # noqa: E402
from centre.demo import build_virtual  # noqa: E402
from config.load import load_config  # noqa: E402
from config.schema import CtiConfig  # noqa: E402
from dialer.compliance import LedgerEntry  # noqa: E402
from dialer.compliance import false_machines as ledger_false_machines  # noqa: E402
from dialer.events import AttemptAnswered, AttemptFinished, AttemptStarted  # noqa: E402
from dialer.settings import CampaignSettings, DialerSection  # noqa: E402
from sim.settings import LogNormal, SimSection  # noqa: E402

BASE_CONFIG = ROOT / "config" / "examples" / "demo.yaml"

MODES = ("progressive", "ratio", "predictive", "preview")
POLICIES = ("us_tsr", "uk_ofcom", "custom")
CAMPAIGN = "bench"
QUEUE = "sales"
DAY = 86400.0

# The fixed model
TALK_MEAN_S = 120.0
TALK_SD_S = 60.0
WRAPUP_S = 15.0
RING_MIN_S = 4.0
RING_MAX_S = 12.0
RING_TIMEOUT_S = 25.0
BUSY_SHARE = 0.05
SILENCE_PATIENCE_S = 2.0
SAFE_HARBOUR_S = 2.0
PACING_SAMPLE_S = 60.0  # the campaign's pacing decision is looked at once a simulated minute


@dataclass(frozen=True)
class Model:
    """The bench's parameters (command-line flags)."""

    agents: int = 50
    answer_rate: float = 0.15  # share of dials answered, by a person or a machine
    machine_rate: float = 0.10  # share of answers that are machines
    amd_accuracy: float = 0.90
    amd: bool = True  # False: the campaign's amd: false (no AMD(), every answer goes to an agent)
    policy: str = "us_tsr"
    seed: int = 1
    hours: float = 8.0
    ratio: float = 3.0  # lines per idle agent of the fixed-ratio mode
    max_abandon_rate: float = 0.03

    @property
    def seconds(self) -> float:
        return self.hours * 3600.0

    def leads(self) -> int:
        """Enough leads that no mode runs out in the day (every dial can be a fresh lead)."""
        return max(1000, int(self.agents * self.hours * 250))


# ---------------------------------------------------------------------------------------------------
# configuration

def write_leads(path: Path, count: int) -> None:
    """``count`` leads with distinct numbers (their fates come from the simulator's seed)."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write("id,number,name\n")
        for i in range(count):
            fh.write(f"L{i:07d},+1555{i:07d},Lead {i}\n")


def campaign_settings(model: Model, mode: str, leads: Path) -> CampaignSettings:
    """The campaign for ``mode``. Raises ``ValueError`` with the reason when the dialer has no such mode."""
    data: dict[str, Any] = {
        "name": CAMPAIGN, "queue": QUEUE, "leads": str(leads), "originate_timeout": RING_TIMEOUT_S,
        "max_attempts": 3, "max_lines": min(10_000, model.agents * 10), "max_abandon_rate": model.max_abandon_rate,
        # the run starts at 10:00 UTC (centre.demo.DEMO_EPOCH): 11 hours fit in the legal calling hours
        "safe_harbour_after": SAFE_HARBOUR_S, "calling_window": {"start": "08:00", "end": "21:00"},
        "timezone": "UTC", "caller_id": '"Bench" <+18005550100>',
        "ratio": model.ratio if mode == "ratio" else 1.0,
        "amd": model.amd, "amd_accuracy": model.amd_accuracy,
    }
    fields = CampaignSettings.model_fields
    if "policy" in fields:
        data["policy"] = model.policy
    if "mode" in fields:
        data["mode"] = mode
    elif mode not in ("progressive", "ratio"):
        raise ValueError("no 'mode' setting in dialer.settings.CampaignSettings yet")
    try:
        settings = CampaignSettings.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"the dialer refuses it: {errors}") from None
    refused = settings.policy_errors()  # what config load refuses (config.load runs the same check)
    if refused:
        raise ValueError("the policy refuses it: " + "; ".join(f"{'.'.join(map(str, loc))}: {msg}"
                                                             for loc, msg in refused))
    return settings


def sim_settings(model: Model) -> SimSection:
    answered = model.answer_rate
    if not 0.0 <= answered <= 1.0 - BUSY_SHARE:
        raise ValueError(f"--answer-rate must be 0-{1.0 - BUSY_SHARE:g} (busy takes {BUSY_SHARE:.0%} of dials)")
    machine = answered * model.machine_rate
    return SimSection.model_validate({
        "seed": model.seed, "speed": "max", "inbound": [],
        "agents": {
            "answer_delay_s": {"mean_s": 0.0, "sd_s": 0.0, "min_s": 0.0},  # auto-answer
            "no_answer_prob": 0.0,
            # the agent never ends the call: the customer does, after the model's talk time
            "talk_time": {"median_s": 10 * DAY, "sigma": 0.0},
        },
        "outbound": {
            "answer": answered - machine, "machine": machine, "busy": BUSY_SHARE, "congestion": 0.0,
            "noanswer": 1.0 - answered - BUSY_SHARE,
            "ring_time_s": {"min_s": RING_MIN_S, "max_s": RING_MAX_S},
            "noanswer_ring_s": 2 * RING_TIMEOUT_S,  # rings until the dialer's ring timeout gives up
            "talk_time": LogNormal.from_mean_sd(TALK_MEAN_S, TALK_SD_S).model_dump(),
            "silence_patience_s": SILENCE_PATIENCE_S,
            "amd_accuracy": model.amd_accuracy,
        },
    })


def acd_settings(base: AcdSection, model: Model) -> AcdSection:
    """The demo's queues (the IVR flows name them) with the campaign's queue's wrap-up, and ``agents`` outbound
    agents in it."""
    queues = [q.model_dump() for q in base.queues]
    for q in queues:
        if q["name"] == QUEUE:
            q.update(wrapup=WRAPUP_S, expansion=[])
    agents = [{"id": f"{2001 + i}", "name": f"Agent {i + 1}", "endpoint": f"PJSIP/{2001 + i}", "skills": {"sales": 5}}
              for i in range(model.agents)]
    data = base.model_dump()
    data.update(queues=queues, agents=agents, default_queue=QUEUE)
    return AcdSection.model_validate(data)


def bench_config(base: CtiConfig, model: Model, campaign: CampaignSettings) -> CtiConfig:
    dialer = DialerSection.model_validate({**base.dialer.model_dump(), "campaigns": [campaign.model_dump()]})
    return base.model_copy(update={"acd": acd_settings(base.acd, model), "dialer": dialer,
                                   "sim": sim_settings(model)})


# ---------------------------------------------------------------------------------------------------
# the figures

@dataclass
class Tally:
    """Counts what happens, from the server's events (every event reaches a listener)."""

    start: float
    end: float
    dials: int = 0
    contacts: int = 0
    live: dict[str, float] = field(default_factory=dict)  # ref -> when the person answered
    # (answered at, abandoned?) of every finished attempt a person answered
    humans: list[tuple[float, bool]] = field(default_factory=list)
    machines: int = 0  # MACHINE verdicts (the ledger's ``machine``)
    results: dict[str, int] = field(default_factory=dict)
    state_time: dict[str, float] = field(default_factory=dict)  # agent state -> seconds, every agent
    current: dict[str, tuple[str, float]] = field(default_factory=dict)  # agent -> (state, since)

    def __call__(self, event: object) -> None:
        if isinstance(event, AttemptStarted):
            if event.campaign == CAMPAIGN and event.ts < self.end:
                self.dials += 1
        elif isinstance(event, AttemptAnswered):
            if event.campaign == CAMPAIGN:
                self.live[event.ref] = event.ts
        elif isinstance(event, AttemptFinished):
            if event.campaign == CAMPAIGN and event.ts <= self.end:
                self.results[event.result] = self.results.get(event.result, 0) + 1
                answered = self.live.pop(event.ref, None)
                entry = LedgerEntry.of(event)  # live, abandoned and machine exactly as the compliance ledger says
                if entry.person:
                    self.humans.append((event.ts if answered is None else answered, entry.abandoned))
                self.machines += entry.machine
        elif isinstance(event, CallAnswered):
            if event.queue == QUEUE and event.ts < self.end:
                self.contacts += 1
        elif isinstance(event, AgentStateChanged):
            self._agent(event.agent_id, event.state, event.ts)

    def _agent(self, agent: str, state: str, ts: float) -> None:
        ts = min(ts, self.end)
        previous = self.current.get(agent)
        if previous is not None:
            self.state_time[previous[0]] = self.state_time.get(previous[0], 0.0) + max(0.0, ts - previous[1])
        self.current[agent] = (state, ts)

    def close(self) -> None:
        """Count every agent's current state up to the end of the run."""
        for agent, (state, _) in list(self.current.items()):
            self._agent(agent, state, self.end)


def abandon_rate(humans: list[tuple[float, bool]], extra_live: float = 0.0, extra_abandoned: float = 0.0) -> float:
    live = len(humans) + extra_live
    return 0.0 if live <= 0 else (sum(1 for _, a in humans if a) + extra_abandoned) / live


def worst_window(humans: list[tuple[float, bool]], start: float, end: float, width: float,
                 share: float) -> float:
    """The highest abandon rate over windows of ``width`` seconds (rolling, ending at each answer; the whole
    run when it is shorter). ``share``: people AMD took for machines per live answer (uk_ofcom), added in."""
    if end - start <= width + 1e-9:
        return _rate(humans, share)
    ordered = sorted(humans)
    worst, lo = 0.0, 0
    for hi, (t, _) in enumerate(ordered):
        if t < start + width:
            continue
        while ordered[lo][0] <= t - width:
            lo += 1
        worst = max(worst, _rate(ordered[lo:hi + 1], share))
    return worst


def worst_day(humans: list[tuple[float, bool]], start: float, end: float, share: float) -> float:
    days = max(1, math.ceil((end - start) / DAY - 1e-9))
    return max(_rate([h for h in humans if start + d * DAY <= h[0] < start + (d + 1) * DAY], share)
               for d in range(days))


def _rate(humans: list[tuple[float, bool]], share: float) -> float:
    n = len(humans)
    return abandon_rate(humans, share * n, share * n)


@dataclass
class Result:
    mode: str
    available: bool
    reason: str = ""
    dials: int = 0
    contacts: int = 0
    live: int = 0
    abandoned: float = 0.0
    abandon_day: float = 0.0
    abandon_24h: float = 0.0
    occupancy: float = 0.0
    per_agent_hour: float = 0.0
    wall: float = 0.0
    results: dict[str, int] = field(default_factory=dict)
    cpu: float = 0.0  # CPU seconds of the run (this process)
    abandons: int = 0  # people abandoned, counted (without the uk_ofcom estimate)
    machines: int = 0  # MACHINE verdicts
    # the same run as the dialer's compliance ledger counts it: (live answers, abandons, machine verdicts)
    ledger: tuple[int, int, int] | None = None
    pacing: dict[str, int] = field(default_factory=dict)  # the campaign's pacing decisions' reasons, sampled


def figures(mode: str, tally: Tally, model: Model, wall: float) -> Result:
    tally.close()
    t = tally.state_time
    logged_in = sum(v for k, v in t.items() if k != "logged_out")
    busy = t.get("on_call", 0.0) + t.get("wrap_up", 0.0)
    # uk_ofcom: the people AMD took for machines, estimated as the ledger does, added to live and abandoned
    share = 0.0
    if model.policy == "uk_ofcom" and model.amd and tally.humans:
        share = ledger_false_machines(len(tally.humans), tally.machines, model.amd_accuracy) / len(tally.humans)
    n = len(tally.humans)
    return Result(
        mode, True, dials=tally.dials, contacts=tally.contacts, live=n,
        abandons=sum(1 for _, a in tally.humans if a), machines=tally.machines,
        abandoned=sum(1 for _, a in tally.humans if a) + share * n,
        abandon_day=worst_day(tally.humans, tally.start, tally.end, share),
        abandon_24h=worst_window(tally.humans, tally.start, tally.end, DAY, share),
        occupancy=busy / logged_in if logged_in else 0.0,
        per_agent_hour=tally.contacts / (logged_in / 3600.0) if logged_in else 0.0,
        wall=wall, results=dict(sorted(tally.results.items())))


def ledger_counts(stack: Any, start: float, end: float) -> tuple[int, int, int]:
    """(live answers, abandons, machine verdicts) of the attempts that ended in ``[start, end]`` as the dialer's
    own compliance ledger counts them."""
    dialer = stack.server.components.dialer
    f = dialer.compliance.figures_between(CAMPAIGN, start, end + 1e-6, "calendar_day")
    return f.live_answers, f.abandons, f.machines


# ---------------------------------------------------------------------------------------------------
# running

def run_mode(base: CtiConfig, model: Model, mode: str, leads: Path) -> Result:
    try:
        campaign = campaign_settings(model, mode, leads)
    except ValueError as exc:
        return Result(mode, False, reason=str(exc))
    cfg = bench_config(base, model, campaign)
    t0, c0 = time.perf_counter(), time.process_time()
    stack = build_virtual(cfg, seed=model.seed)
    tally = Tally(start=stack.clock.seconds(), end=stack.clock.seconds() + model.seconds)
    tally.current.update({a: ("logged_out", tally.start) for a in stack.server.acd.agent_ids()})
    stack.server.subscribe(tally)
    for agent in stack.server.acd.agent_ids():  # agents logged in before the listener came
        tally.current[agent] = (stack.server.acd.agent_snapshot(agent).state, tally.start)
    dialer = stack.server.components.dialer
    assert dialer is not None
    pacing: dict[str, int] = {}
    while stack.clock.seconds() < tally.end:  # a minute at a time, noting how the campaign paces
        stack.clock.run_until(min(tally.end, stack.clock.seconds() + PACING_SAMPLE_S))
        decision = dialer.campaigns[CAMPAIGN].last_decision
        if decision is not None:
            pacing[decision.reason] = pacing.get(decision.reason, 0) + 1
    wall = time.perf_counter() - t0
    ledger = ledger_counts(stack, tally.start, tally.end)
    stack.sim.stop()
    stack.server.stop()
    result = figures(mode, tally, model, wall)
    result.cpu, result.ledger, result.pacing = time.process_time() - c0, ledger, pacing
    return result


def table(results: list[Result], model: Model) -> list[str]:
    one_day = model.hours <= 24
    head = (f"{'mode':<12} {'dials':>7} {'contacts':>8} {'live':>6} {'aband.':>7} {'day %':>6} {'24h %':>6} "
            f"{'occup.':>7} {'c/agent-h':>9} {'wall s':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        if not r.available:
            lines.append(f"{r.mode:<12} unavailable: {r.reason}")
            continue
        lines.append(f"{r.mode:<12} {r.dials:>7} {r.contacts:>8} {r.live:>6} {r.abandoned:>7.1f} "
                     f"{100 * r.abandon_day:>6.2f} {100 * r.abandon_24h:>6.2f} {100 * r.occupancy:>6.1f}% "
                     f"{r.per_agent_hour:>9.2f} {r.wall:>7.1f}")
    lines.append("")
    who = "every answer (no AMD: the dialer cannot tell machines)" if not model.amd else \
        "answered by a person (AMD not MACHINE)"
    lines.append(f"live: {who}; aband.: not with an agent within {SAFE_HARBOUR_S:g} s of the person's answer "
                 "(safe-harbour message, or hung up first)" + (" + people AMD took for machines (estimated)"
                                                                if model.policy == "uk_ofcom" and model.amd else ""))
    if one_day:
        lines.append(f"day % and 24h %: one run of {model.hours:g} h, so both are the whole run")
    for r in results:
        if r.available:
            lines.append(f"  {r.mode}: results {r.results}")
    return lines


def bench_line(results: list[Result], model: Model) -> str:
    ran = {r.mode: r for r in results if r.available}
    ours_mode = next((m for m in ("predictive", "ratio", "progressive") if m in ran), None)
    head = f"BENCH dialer agents={model.agents} answer_rate={model.answer_rate:g}"
    if ours_mode is None:
        return f"{head} abandon_pct=nan occupancy=nan ratio_vs_progressive=nan"
    ours = ran[ours_mode]
    base = ran.get("progressive")
    ratio = ours.per_agent_hour / base.per_agent_hour if base is not None and base.per_agent_hour > 0 else math.nan
    line = (f"{head} abandon_pct={100 * max(ours.abandon_day, ours.abandon_24h):.2f} "
            f"occupancy={ours.occupancy:.3f} ratio_vs_progressive={ratio:.2f}")
    return line if ours_mode == "predictive" else f"{line} mode={ours_mode}"


def parse_args(argv: list[str] | None = None) -> tuple[Model, list[str], int]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--agents", type=int, default=None, help="outbound agents (default 50; --quick 8)")
    p.add_argument("--answer-rate", type=float, default=0.15, help="share of dials answered (person or machine)")
    p.add_argument("--machine-rate", type=float, default=0.10, help="share of answers that are machines")
    p.add_argument("--amd-accuracy", type=float, default=0.90, help="share of AMD verdicts that are right")
    p.add_argument("--no-amd", action="store_true", help="the campaign's amd: false (every answer to an agent)")
    p.add_argument("--policy", choices=POLICIES, default="us_tsr")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--hours", type=float, default=None, help="simulated hours (default 8; --quick 0.25)")
    p.add_argument("--ratio", type=float, default=3.0, help="lines per idle agent in the ratio mode")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    p.add_argument("--quick", action="store_true", help="a short run (8 agents, 15 simulated minutes)")
    p.add_argument("--jobs", type=int, default=1,
                   help="modes run in parallel processes (default 1: wall times measured alone)")
    a = p.parse_args(argv)
    agents = a.agents if a.agents is not None else (8 if a.quick else 50)
    hours = a.hours if a.hours is not None else (0.25 if a.quick else 8.0)
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        p.error(f"unknown mode(s) {', '.join(bad)}; known: {', '.join(MODES)}")
    if a.jobs < 1:
        p.error("--jobs must be >= 1")
    if agents < 1 or not 0 < hours <= 24 * 31:
        p.error("--agents must be >= 1 and --hours > 0 (at most 744)")
    for name, value in (("answer-rate", a.answer_rate), ("machine-rate", a.machine_rate),
                        ("amd-accuracy", a.amd_accuracy)):
        if not 0.0 <= value <= 1.0:
            p.error(f"--{name} must be 0-1")
    return Model(agents=agents, answer_rate=a.answer_rate, machine_rate=a.machine_rate,
                 amd_accuracy=a.amd_accuracy, amd=not a.no_amd, policy=a.policy, seed=a.seed, hours=hours,
                 ratio=a.ratio), modes, a.jobs


def _progress(result: Result) -> None:
    note = f"{result.wall:.1f} s wall" if result.available else f"unavailable: {result.reason}"
    print(f"  {result.mode}: {note}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.ERROR)
    model, modes, jobs = parse_args(argv)
    try:
        sim_settings(model)
    except ValueError as exc:
        print(f"bench/dialer.py: {exc}", file=sys.stderr)
        return 2
    print(f"dialer bench: {model.agents} agents, {model.hours:g} h, answers {model.answer_rate:.0%} of dials "
          f"(machines {model.machine_rate:.0%} of answers, "
          f"{f'AMD {model.amd_accuracy:.0%} right' if model.amd else 'no AMD'}), busy "
          f"{BUSY_SHARE:.0%}, talk lognormal {TALK_MEAN_S:g}+-{TALK_SD_S:g} s, wrap-up {WRAPUP_S:g} s, ring "
          f"{RING_MIN_S:g}-{RING_MAX_S:g} s, ring timeout {RING_TIMEOUT_S:g} s, patience {SILENCE_PATIENCE_S:g} s, "
          f"policy {model.policy}, seed {model.seed}", flush=True)
    base = load_config(BASE_CONFIG)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="dialer-bench-") as tmp:
        leads = Path(tmp) / "leads.csv"
        write_leads(leads, model.leads())
        if jobs > 1:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(run_mode, base, model, mode, leads) for mode in modes]
                for future in futures:
                    results.append(future.result())
                    _progress(results[-1])
        else:
            for mode in modes:
                results.append(run_mode(base, model, mode, leads))
                _progress(results[-1])
    for line in table(results, model):
        print(line)
    print(bench_line(results, model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
