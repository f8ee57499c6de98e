"""Faithfulness of the simulator to the real Asterisk 22 transcripts (issue #3 "Done when").

Each recorded scenario's AMI actions are replayed against the simulator at their recorded times
(virtual clock), with the transcripts' own dialplan (sim/transcript_dialplan.yaml), and the two
streams are compared after normalisation (sim/replay.py, sim/README.md): responses in order,
channel events per channel in order with every non-volatile header, floating events as multisets.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cti.ami.message import AMIMessage
from sim.replay import SCENARIOS, compare, load_challenges, load_received, replay

FAITHFUL = ["login", "originate_outbound", "hangup_redirect"]


@pytest.mark.parametrize("name", FAITHFUL)
def test_replayed_scenario_matches_real_asterisk(fixtures_dir: Path, name: str) -> None:
    """Every compared response and event of the scenario is what the real Asterisk sent."""
    scenario = SCENARIOS[name]
    real = load_received(fixtures_dir, name)
    sim = replay(scenario.sends(fixtures_dir), challenges=load_challenges(fixtures_dir, name))
    problems: list[str] = []
    compared = 0
    for conn, messages in real.items():
        result = compare(messages, sim.get(conn, []), skip=scenario.skip, label=conn)
        problems += result.problems
        compared += result.compared_events + result.compared_responses
    assert compared > 20
    assert problems == [], "\n".join(problems[:10])


def test_comparison_detects_a_changed_header(fixtures_dir: Path) -> None:
    """The comparison is not vacuous: one altered Cause in the simulated stream is reported."""
    scenario = SCENARIOS["originate_outbound"]
    real = load_received(fixtures_dir, "originate_outbound")["dialer"]
    sim = replay(scenario.sends(fixtures_dir))["dialer"]
    for i, msg in enumerate(sim):
        if msg.kind == "event" and msg.name == "Hangup" and msg["Cause"] == "17":
            headers = [(k, "18" if k == "Cause" else v) for k, v in msg.headers]
            sim[i] = AMIMessage(headers, "event")
            break
    else:
        pytest.fail("no busy Hangup in the simulated stream")
    result = compare(real, sim, skip=scenario.skip)
    assert any("Cause: 17" in p for p in result.problems)


def test_replay_is_deterministic(fixtures_dir: Path) -> None:
    """Two replays of the same scenario give byte-identical streams (ids, order, everything)."""
    scenario = SCENARIOS["originate_outbound"]
    a = replay(scenario.sends(fixtures_dir))
    b = replay(scenario.sends(fixtures_dir))
    assert [m.headers for m in a["dialer"]] == [m.headers for m in b["dialer"]]
