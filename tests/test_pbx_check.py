"""The connect-time check of what the PBX has (cti/pbx_check.py), on real Asterisk 22.10.1 answers
(tests/fixtures/asterisk/cli), and through the server against the simulated PBX."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from centre.demo import build_virtual
from config.load import load_config
from cti import pbx_check
from cti.ami.message import AMIMessage
from cti.ami.protocol import AMIParser

CLI = Path(__file__).resolve().parent / "fixtures" / "asterisk" / "cli"
DEMO = Path(__file__).resolve().parent.parent / "config" / "examples" / "demo.yaml"


def output(name: str) -> list[str]:
    """The ``Output`` lines of one recorded Command response."""
    items = [m for m in AMIParser().feed((CLI / f"command_{name}.txt").read_bytes()) if isinstance(m, AMIMessage)]
    assert len(items) == 1 and items[0].get("Response") == "Success"
    return items[0].getall("Output")


def real_outputs(**replace: str) -> dict[str, list[str] | None]:
    return {key: output(replace.get(key, key)) for key in pbx_check.COMMANDS}


def test_the_shipped_dialplan_needs_what_it_uses() -> None:
    """The needs are read from extensions_cti.conf itself: AGI, Dial, AMD, MusicOnHold, the pre-dial
    handler's Return and the FEATUREMAP() it sets are all there, with the contexts using them."""
    needs = pbx_check.shipped_needs()
    for app in ("AGI", "AMD", "Dial", "MusicOnHold", "Return", "UserEvent", "WaitForSilence"):
        assert app in needs.applications, app
    assert "cti-outbound" in needs.applications["AMD"]
    assert needs.functions["FEATUREMAP"] == ("cti-agent-leg",)
    assert needs.functions["PJSIP_HEADER"] == ("cti-agent-leg",)


def test_pjsip_header_is_optional_on_a_pbx_without_chan_pjsip() -> None:
    """The recorded 22.10.1 has no chan_pjsip, so no PJSIP_HEADER(): the dialplan only uses it on a
    PJSIP phone's leg (auto-answer), so it is a note, not a problem; any other missing function still is."""
    assert "PJSIP_HEADER" not in pbx_check.parse_functions(output("functions"))
    report = pbx_check.check(real_outputs(), pbx_check.shipped_needs(), {})
    assert report.problems() == []
    assert report.missing_optional == ("PJSIP_HEADER",)
    assert "res_pjsip_header_funcs" in report.notes()[0]
    needs = pbx_check.dialplan_needs("[x]\nexten => s,1,Set(NOSUCHFUNC(a)=1)\n")
    assert pbx_check.check(real_outputs(), needs, {}).missing_functions == (("NOSUCHFUNC", ("x",)),)


def test_a_complete_pbx_has_no_problem_with_the_demo_flows() -> None:
    """A real 22.10.1 with the shipped config has every application, function, the default music
    class and every prompt the demo flows name."""
    cfg = load_config(DEMO)
    prompts = {p: [f"{f}/{n}" for f, n in uses] for p, uses in cfg.ivr.prompt_uses().items()}
    assert prompts, "the demo flows name prompts"
    report = pbx_check.check(real_outputs(), pbx_check.shipped_needs(), prompts)
    assert report.problems() == []


def test_without_app_amd_the_check_names_amd_and_amd_conf() -> None:
    """app_amd not loaded (the PBX has no amd.conf): AMD is reported with the module and the config file
    it needs, and where the dialplan uses it."""
    report = pbx_check.check(real_outputs(applications="applications_without_app_amd"),
                             pbx_check.shipped_needs(), {})
    problems = report.problems()
    assert len(problems) == 1
    assert "AMD" in problems[0] and "amd.conf" in problems[0] and "cti-outbound" in problems[0]


def test_prompts_the_pbx_lacks_are_named_with_their_uses() -> None:
    report = pbx_check.check(real_outputs(), pbx_check.shipped_needs(),
                             {"beep": ["flow main node menu"], "welcome": ["flow main node menu"]})
    assert report.problems() == ["prompt welcome not on the PBX (used by flow main node menu): it is skipped"]


def test_a_command_the_pbx_refused_is_reported_as_unchecked() -> None:
    outputs = real_outputs()
    outputs["moh"] = None
    assert pbx_check.check(outputs, pbx_check.shipped_needs(), {}).problems() == [
        "could not check moh show classes"]


def test_the_server_checks_the_pbx_when_it_connects(caplog: pytest.LogCaptureFixture) -> None:
    """Through the server against the simulated PBX: the demo config lacks nothing; a flow naming a
    prompt the PBX does not have is logged once, as an error, and shown in the wallboard's health."""
    cfg = load_config(DEMO)
    stack = build_virtual(cfg, seed=1, login_agents=False)
    stack.clock.run_for(3)
    assert stack.server.wallboard()["health"]["pbx"] == {"sim": []}
    stack.sim.stop()
    stack.server.stop()

    flows = dict(cfg.ivr.flows)
    main = flows["main"]
    menu = main.nodes["menu"].model_copy(update={"prompt": ["lab-no-such-prompt"]})
    flows["main"] = main.model_copy(update={"nodes": {**main.nodes, "menu": menu}})
    cfg = cfg.model_copy(update={"ivr": cfg.ivr.model_copy(update={"flows": flows})})
    with caplog.at_level(logging.ERROR, logger="centre.server"):
        stack = build_virtual(cfg, seed=1, login_agents=False)
        stack.clock.run_for(3)
    health = stack.server.wallboard()["health"]["pbx"]["sim"]
    assert health == ["prompt lab-no-such-prompt not on the PBX (used by flow main node menu): it is skipped"]
    errors = [r for r in caplog.records if "lacks" in r.getMessage()]
    assert len(errors) == 1 and "lab-no-such-prompt" in errors[0].getMessage()
    stack.sim.stop()
    stack.server.stop()
