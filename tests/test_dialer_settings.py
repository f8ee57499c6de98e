"""The ``dialer:`` section: defaults, and every bad value reported as ``file:line key.path: message``."""

from __future__ import annotations

import pytest

from config.load import ConfigError, load_config_text
from dialer.settings import CampaignSettings, DialerSection

GOOD = """\
dialer:
  campaigns:
    - name: renewals
      queue: sales
      leads: demo
      caller_id: '"Renewals" <+18005550100>'
      retry_after: {busy: 120, machine: 86400}
      calling_window: {start: "08:30", end: "20:00"}
      timezone: America/New_York
"""


# What a campaign refers to: an ACD queue and an Asterisk server to dial through.
CONTEXT = """\
asterisk: [{name: pbx1, username: cti, secret: s}]
acd: {queues: [{name: sales}, {name: support}]}
"""


def test_good_campaign_and_defaults() -> None:
    """A minimal campaign loads with progressive defaults: ratio 1, 3% abandon cap, 2 s safe harbour."""
    c = load_config_text(GOOD + CONTEXT, "d.yaml").dialer.campaigns[0]
    assert (c.ratio, c.max_abandon_rate, c.safe_harbour_after, c.max_attempts) == (1.0, 0.03, 2.0, 3)
    assert c.retry_after.busy == 120 and c.retry_after.noanswer == 1800
    assert c.calling_window.bounds() == (510, 1200)
    assert DialerSection().campaigns == []


def test_campaign_must_name_a_known_queue_and_server() -> None:
    """A campaign whose queue is not an ACD queue, or with no Asterisk to dial through, is a config error
    at the campaign's line (it would otherwise load and silently never dial)."""
    with pytest.raises(ConfigError) as info:
        load_config_text(GOOD, "d.yaml")
    issues = [str(i) for i in info.value.issues]
    assert any(i.startswith("d.yaml:4 dialer.campaigns[0].queue: unknown queue 'sales'") for i in issues), issues


AT = "d.yaml:6 dialer.campaigns[0]."  # the bad value's own line and key path


@pytest.mark.parametrize(("value", "expect"), [
    ("ratio: 9", "ratio: expected lines per idle agent"),
    ("max_abandon_rate: 3", "max_abandon_rate: expected a fraction"),
    ("timezone: Mars/Olympus", "timezone: unknown time zone"),
    ("dial: PJSIP/trunk", "dial: expected a dial string with {number}"),
    ('calling_window: {start: "21:00", end: "09:00"}', "calling_window: the window must end after it starts"),
    ('caller_id: "a\\r\\nAction: Hangup"', "caller_id: expected text of at most 80 characters"),
    ("retry_after: {busy: -1}", "retry_after.busy: expected a number of seconds"),
    ("colour: red", "colour: unknown key"),
])
def test_bad_values_name_file_line_and_key(value: str, expect: str) -> None:
    """Each bad campaign value is reported at its own line and key path, with what was expected."""
    text = "\n".join([*GOOD.splitlines()[:5], "      " + value]) + "\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "d.yaml")
    issues = [str(i) for i in info.value.issues]
    assert any(i.startswith(AT + expect) for i in issues), issues


def test_duplicate_campaign_names() -> None:
    """Two campaigns with one name are refused at the second one's name."""
    text = GOOD + "    - {name: renewals, queue: support, leads: demo}\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "d.yaml")
    assert "d.yaml:10 dialer.campaigns[1].name: duplicate campaign 'renewals' (also campaigns[0])" in \
        [str(i) for i in info.value.issues]


def test_reference_errors() -> None:
    """A campaign naming an unknown queue or server is reported against the known names."""
    section = DialerSection(campaigns=[CampaignSettings(name="a", queue="nope", leads="demo", server="pbx9")])
    errors = section.reference_errors(["sales"], ["pbx1"])
    assert (("campaigns", 0, "queue"), "unknown queue 'nope'; known: sales") in errors
    assert (("campaigns", 0, "server"), "unknown Asterisk server 'pbx9'; known: pbx1") in errors


def test_dial_string_refuses_non_numbers() -> None:
    """A lead number that is not digits (an injection attempt in a CSV) never reaches a dial string."""
    c = CampaignSettings(name="a", queue="q", leads="demo")
    assert c.dial_string("PJSIP/{number}@trunk", "+15551234567") == "PJSIP/+15551234567@trunk"
    for bad in ("1234&PJSIP/evil", "12", "555 1234", ""):
        with pytest.raises(ValueError):
            c.dial_string("PJSIP/{number}@trunk", bad)


def test_dial_modes_and_their_defaults() -> None:
    """``mode`` is progressive by default; predictive, ratio and preview are accepted, anything else is an
    error naming the modes. A campaign written with a ratio other than 1 (before modes) is a ratio campaign."""
    c = load_config_text(GOOD + CONTEXT, "d.yaml").dialer.campaigns[0]
    assert (c.mode, c.blend_threshold, c.predictive.target_share) == ("progressive", None, 0.8)
    assert c.callback_owner_grace == 900.0  # an agent's own callback waits 15 minutes for its owner
    for mode in ("progressive", "predictive", "ratio", "preview"):
        assert CampaignSettings(name="a", queue="q", leads="demo", mode=mode).mode == mode
    assert CampaignSettings(name="a", queue="q", leads="demo", ratio=1.5).mode == "ratio"
    text = GOOD.replace("      leads: demo\n", "      leads: demo\n      mode: turbo\n") + CONTEXT
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "d.yaml")
    issues = [str(i) for i in info.value.issues]
    assert any(i.startswith("d.yaml:6 dialer.campaigns[0].mode:") and "predictive" in i for i in issues), issues


@pytest.mark.parametrize(("value", "expect"), [
    ("mode: predictive\n      ratio: 2", "ratio (2.0) applies to mode: ratio"),
    ("predictive: {target_share: 0.1}", "predictive.target_share: expected the share of the abandon cap"),
    ("predictive: {target_share: 0.5, fallback_share: 0.6}", "predictive: fallback_share (0.6) must be below"),
    ("predictive: {amd_accuracy: 0.3}", "predictive.amd_accuracy: expected the share of answering-machine"),
    ("predictive: {horizon_quantile: 1}", "predictive.horizon_quantile: expected the quantile"),
    ("blend_threshold: -1", "blend_threshold: expected blended agents kept free for inbound"),
    ("callback_owner_grace: -5", "callback_owner_grace: expected seconds 0-86400 an agent's own callback waits"),
    ("callback_owner_grace: 90000", "callback_owner_grace: expected seconds 0-86400"),
])
def test_bad_mode_settings_are_explained(value: str, expect: str) -> None:
    """Predictive knobs and blending are validated with what was expected, at their key."""
    text = "\n".join([*GOOD.splitlines()[:5], "      " + value]) + "\n" + CONTEXT
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "d.yaml")
    issues = [str(i) for i in info.value.issues]
    assert any(expect in i and "dialer.campaigns[0]" in i for i in issues), issues
