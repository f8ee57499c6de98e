"""Faithfulness of the simulator to the real Asterisk 22 transcripts (issue #3 "Done when").

Each recorded scenario's AMI actions (and, for fastagi_ami, the recorded FastAGI server) are replayed
against the simulator at their recorded times on a virtual clock, with the transcripts' own dialplan
(sim/transcript_dialplan.yaml); the two streams are compared after normalisation (sim/replay.py,
sim/README.md): responses in order, channel events per channel in order with every non-volatile
header, floating events as multisets. What a scenario leaves out (app_queue) is in its ``why``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cti.ami.message import AMIMessage
from sim.replay import SCENARIOS, Scenario, compare

# Events+responses each scenario must compare at least (guards against a vacuous pass).
MINIMUM = {"login": 25, "originate_outbound": 180, "hangup_redirect": 160, "fastagi_ami": 120,
           "inbound_queue": 30, "burst": 1000}


def _problems(fixtures_dir: Path, scenario: Scenario) -> tuple[list[str], int]:
    real = scenario.received(fixtures_dir)
    sim = scenario.run(fixtures_dir)
    problems: list[str] = []
    compared = 0
    for conn, messages in real.items():
        result = compare(messages, sim.get(conn, []), scenario=scenario, label=conn)
        problems += result.problems
        compared += result.compared_events + result.compared_responses
    return problems, compared


@pytest.mark.parametrize("name", sorted(MINIMUM))
def test_replayed_scenario_matches_real_asterisk(fixtures_dir: Path, name: str) -> None:
    """Every compared response and event of the scenario is what the real Asterisk sent."""
    problems, compared = _problems(fixtures_dir, SCENARIOS[name])
    assert problems == [], "\n".join(problems[:10])
    assert compared >= MINIMUM[name]


def test_comparison_detects_a_changed_header(fixtures_dir: Path) -> None:
    """The comparison is not vacuous: one altered Cause in the simulated stream is reported."""
    scenario = SCENARIOS["originate_outbound"]
    real = scenario.received(fixtures_dir)["dialer"]
    sim = scenario.run(fixtures_dir)["dialer"]
    for i, msg in enumerate(sim):
        if msg.kind == "event" and msg.name == "Hangup" and msg["Cause"] == "17":
            sim[i] = AMIMessage([(k, "18" if k == "Cause" else v) for k, v in msg.headers], "event")
            break
    else:
        pytest.fail("no busy Hangup in the simulated stream")
    result = compare(real, sim, scenario=scenario)
    assert any("Cause: 17" in p for p in result.problems)


def test_comparison_detects_a_missing_event(fixtures_dir: Path) -> None:
    """Dropping one AGIExecEnd from the simulated fastagi stream is reported."""
    scenario = SCENARIOS["fastagi_ami"]
    real = scenario.received(fixtures_dir)["ami"]
    sim = [m for m in scenario.run(fixtures_dir)["ami"] if not (m.name == "AGIExecEnd" and m["Command"] == "NOOP")]
    assert compare(real, sim, scenario=scenario).problems


def test_replay_is_deterministic(fixtures_dir: Path) -> None:
    """Two replays of the same scenario give byte-identical streams (ids, order, everything)."""
    scenario = SCENARIOS["hangup_redirect"]
    a = scenario.run(fixtures_dir)
    b = scenario.run(fixtures_dir)
    assert [m.headers for m in a["cti"]] == [m.headers for m in b["cti"]]
