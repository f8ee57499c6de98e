"""Security rule: caller input enters the IVR only as DTMF keys (0-9 * # A-D). Whatever else a PBX (or
something speaking AGI to us) answers to GET DATA or WAIT FOR DIGIT is no key: it never reaches the flow's
collected values, the path, the events or the dialplan variables."""

from __future__ import annotations

from tests.test_ivr_interpreter import MENU, make_flow, walk

COLLECT = """
acct:
  kind: collect
  name: account
  prompt: [enter-account]
  min_digits: 1
  max_digits: 12
  retries: 1
  invalid_prompt: bad-account
  next: q
  after_retries: q
q: {kind: queue, queue: billing}
"""

JUNK = ["12;x", "1'OR'1", "abc", "12a", "$(rm)", "%00", "9\\n"]


def test_collect_accepts_keypad_digits_only() -> None:
    """A GET DATA answer with anything but 0-9 * # A-D is an invalid entry, not kept anywhere."""
    for junk in JUNK:
        caller, events, done = walk(make_flow(COLLECT, "acct"), [junk, "12AB*#"])
        assert [(s.digits, s.result) for s in done.path if s.node == "acct"] == [("", "invalid"), ("12AB*", "ok")]
        assert done.collected == {"account": "12AB*"}
        assert caller.variables["CTI_ACCOUNT"] == "12AB*"
        assert junk not in repr(events) and all(junk not in c for c in caller.commands if not c.startswith("GET"))
        assert "STREAM FILE bad-account \"\"" in caller.commands


def test_collect_junk_every_time_goes_after_retries_with_nothing_collected() -> None:
    caller, _, done = walk(make_flow(COLLECT, "acct"), ["x1", "y2"])
    assert [s.result for s in done.path if s.node == "acct"] == ["invalid", "invalid"]
    assert done.collected == {} and "CTI_ACCOUNT" not in caller.variables


def test_menu_takes_a_non_keypad_character_as_no_key() -> None:
    """WAIT FOR DIGIT answering the code of 'x' (or any non-keypad character) selects nothing and is not
    written to the path as a key."""
    for junk in ("x", "'", "<", "~"):
        _, events, done = walk(make_flow(MENU, "m"), [None, junk, "1"])
        steps = [(s.digits, s.result) for s in done.path if s.node == "m"]
        assert steps[0] == ("", "timeout") and steps[-1] == ("1", "1"), steps
        assert all(s.digits in ("", "1") for s in done.path)
        assert done.queue == "sales"
