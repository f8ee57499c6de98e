"""The acd: configuration section: valid shapes load, mistakes are reported with file, line and key path."""

from __future__ import annotations

import pytest

from acd.states import TRANSITIONS, AcdError, AgentState, Trigger, next_state
from config.load import ConfigError, load_config_text

GOOD = """\
acd:
  default_queue: billing
  agents:
    - {id: "1001", name: Ann, endpoint: PJSIP/1001, skills: {billing: 7, french: 4}, teams: [blue],
       password_hash: "scrypt$abc"}
    - {id: bob2, name: Bob, endpoint: PJSIP/1002, skills: {sales: 5}, wrapup: 0}
  queues:
    - name: billing
      skills: {billing: 5}
      priority: 3
      service_level: {percent: 90, seconds: 15}
      strategy: most_skilled
      max_wait: 300
      on_max_wait: {voicemail: "100@default"}
      expansion:
        - {after: 30, lower_min_level_by: 2}
        - {after: 60, add_skill: {sales: 3}}
        - {after: 90, add_queue_agents: sales}
    - {name: sales, skills: {sales: 1}, max_wait: 60, on_max_wait: {overflow: billing}}
"""


def _issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "cc.yaml")
    return [str(i) for i in info.value.issues]


def test_full_section_loads() -> None:
    """A section using every feature validates; queue_names() lists the queues in order."""
    cfg = load_config_text(GOOD, "cc.yaml")
    assert cfg.acd.queue_names() == ["billing", "sales"]
    assert cfg.acd.agents[0].password_hash == "scrypt$abc"
    assert cfg.acd.queues[0].on_max_wait is not None and cfg.acd.queues[0].on_max_wait.kind == "voicemail"


def test_cross_field_errors_name_line_and_path() -> None:
    """Unknown overflow queue, unknown expansion queue and skill, duplicate ids are reported at their lines."""
    bad = GOOD.replace("add_queue_agents: sales", "add_queue_agents: nosuch") \
        .replace("{sales: 3}", "{klingon: 3}").replace("overflow: billing", "overflow: gone") \
        .replace("id: bob2", 'id: "1001"')
    issues = _issues(bad)
    assert "cc.yaml:18 acd.queues[0].expansion[2].add_queue_agents: unknown queue 'nosuch'; known: billing, sales" \
        in issues
    assert any(i.startswith("cc.yaml:17 acd.queues[0].expansion[1].add_skill.klingon: unknown skill") for i in issues)
    assert any(i.startswith("cc.yaml:19 acd.queues[1].on_max_wait.overflow: unknown queue 'gone'") for i in issues)
    assert any(i.startswith("cc.yaml:6 acd.agents[1].id: duplicate agent id '1001'") for i in issues)


def test_field_errors_say_what_was_expected() -> None:
    """A one-letter agent id, a level of 11 and an expansion step with two actions are clear errors."""
    bad = GOOD.replace('id: "1001"', "id: x").replace("billing: 7", "billing: 11") \
        .replace("{after: 30, lower_min_level_by: 2}", "{after: 30, lower_min_level_by: 2, add_queue_agents: sales}")
    issues = _issues(bad)
    assert any("acd.agents[0].id: expected an agent id of 2-32 letters or digits" in i for i in issues)
    assert "cc.yaml:4 acd.agents[0].skills.billing: input should be less than or equal to 10, got 11" in issues
    assert any("acd.queues[0].expansion[0]: give exactly one of" in i for i in issues)


def test_max_wait_needs_its_action_and_strategy_is_checked() -> None:
    """max_wait without on_max_wait and an unknown strategy are refused."""
    issues = _issues(GOOD.replace(", on_max_wait: {overflow: billing}", "").replace("most_skilled", "random"))
    assert any("acd.queues[1]: max_wait and on_max_wait go together" in i for i in issues)
    assert any(i.startswith("cc.yaml:12 acd.queues[0].strategy:") for i in issues)


def test_state_table_refuses_what_it_does_not_list() -> None:
    """Every (state, trigger) pair missing from the table raises illegal-transition; listed ones succeed."""
    for state in AgentState:
        for trigger in Trigger:
            if trigger in TRANSITIONS.get(state, {}):
                assert next_state(state, trigger) == TRANSITIONS[state][trigger]
            else:
                with pytest.raises(AcdError) as info:
                    next_state(state, trigger, "a1")
                assert info.value.error_id == "illegal-transition"
                assert info.value.to_dict()["details"]["state"] == state.value
