"""IVR interpreter, sans-I/O: every node kind walked by a scripted caller through the real AGI codec."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from ivr.agi_peer import ScriptedCaller, converse, fastagi_environment
from ivr.agi_protocol import AgiCommand, AgiEnvironment, AgiReply
from ivr.events import CallbackRequested, IvrCompleted, IvrStarted, PromptMissing
from ivr.flow import IvrSection, flow_errors
from ivr.interpreter import EmitEvent, EndSession, IvrSession, SendCommand, luhn_ok, schedule_state
from ivr.ports import InMemoryCustomerLookup

CUSTOMERS = InMemoryCustomerLookup([
    {"id": "c-42", "name": "Jane Customer", "tier": "gold", "vip": "yes", "phone": "+15551230002",
     "account": "79927398713"},
])


def make_flow(nodes: str, start: str, **flow: Any) -> IvrSection:
    section = IvrSection.model_validate({"flows": {"f": {"start": start, "nodes": yaml.safe_load(nodes), **flow}}})
    assert flow_errors(section.flows["f"]) == []
    return section


def walk(section: IvrSection, keys: list[str | None], *, ani: str = "+15551230002", query: str = "",
         now: float = 1_000_000.0, step: float = 0.0, lookup: Any = CUSTOMERS.find,
         missing: frozenset[str] = frozenset()) -> tuple[ScriptedCaller, list[Any], IvrCompleted]:
    caller = ScriptedCaller(fastagi_environment("f", ani=ani, query=query), keys=list(keys), missing_prompts=missing)
    session = IvrSession("f", section.flows["f"], AgiEnvironment(caller.env), server="pbx1")
    clock = itertools.count()
    events = converse(session, caller, lambda: now + step * next(clock), lookup)
    assert isinstance(events[0], IvrStarted) and isinstance(events[-1], IvrCompleted)
    return caller, events, events[-1]


MENU = """
m:
  kind: menu
  prompt: [menu-a, menu-b]
  options: {"1": sales, "2": support}
  timeout: 3
  retries: 2
  no_input_prompt: no-input
  invalid_prompt: invalid
  after_retries: operator
sales: {kind: queue, queue: sales}
support: {kind: queue, queue: support}
operator: {kind: transfer, dial: PJSIP/2000}
"""


def test_menu_key_during_prompt_goes_to_the_option() -> None:
    """A key pressed while the menu prompt plays interrupts it and selects the option."""
    caller, _, done = walk(make_flow(MENU, "m"), ["2"])
    assert caller.commands[:2] == ["ANSWER", "STREAM FILE menu-a 0123456789*#"]
    assert done.outcome == "queue" and done.queue == "support"
    assert caller.variables["CTI_NEXT"] == "queue" and caller.variables["CTI_QUEUE"] == "support"
    assert [(s.node, s.digits) for s in done.path] == [("m", "2"), ("support", "")]


def test_menu_waits_for_a_digit_after_the_prompts() -> None:
    """Without a key during the prompts the menu waits ``timeout`` for one (WAIT FOR DIGIT in ms)."""
    caller, _, done = walk(make_flow(MENU, "m"), [None, "1"])
    assert caller.commands[1:4] == ["STREAM FILE menu-a 0123456789*#", "STREAM FILE menu-b 0123456789*#",
                                    "WAIT FOR DIGIT 3000"]
    assert done.queue == "sales"


def test_menu_invalid_key_then_timeout_then_valid() -> None:
    """An invalid key plays invalid_prompt, silence plays no_input_prompt, each before the menu again."""
    caller, _, done = walk(make_flow(MENU, "m"), ["7", None, "1"])
    streams = [c for c in caller.commands if c.startswith("STREAM FILE")]
    assert streams == ["STREAM FILE menu-a 0123456789*#",  # 7 pressed during menu-a
                       "STREAM FILE invalid 0123456789*#", "STREAM FILE menu-a 0123456789*#",
                       "STREAM FILE menu-b 0123456789*#",  # silence, then WAIT FOR DIGIT gives nothing
                       "STREAM FILE no-input 0123456789*#",  # "1" pressed during the retry prompt
                       ]
    assert [(s.digits, s.result) for s in done.path if s.node == "m"] == [("7", "invalid"), ("", "timeout"),
                                                                            ("1", "1")]
    assert done.queue == "sales"


def test_menu_after_retries_and_hangup_default() -> None:
    """After the last retry the menu goes to after_retries; without it the call is hung up."""
    _, _, done = walk(make_flow(MENU, "m"), [None, None, None])
    assert done.outcome == "transfer"
    assert [s.result for s in done.path] == ["timeout", "timeout", "timeout", "transfer:PJSIP/2000"]
    section = make_flow('m: {kind: menu, prompt: p, retries: 0, options: {"1": e}}\ne: {kind: hangup}', "m")
    caller, _, done = walk(section, ["5"])
    assert done.outcome == "hangup" and caller.variables == {"CTI_NEXT": "hangup"}


def test_caller_hangs_up_mid_menu() -> None:
    """HANGUP during the menu ends the flow as caller_hangup; nothing is sent after it."""
    caller, _, done = walk(make_flow(MENU, "m"), [None, "hangup"])
    assert done.outcome == "caller_hangup" and done.queue is None
    assert caller.commands[-2:] == ["WAIT FOR DIGIT 3000", "STREAM FILE no-input 0123456789*#"]
    assert caller.variables == {} and [s.result for s in done.path] == ["timeout"]


def test_transfer_and_voicemail_set_the_dialplan_variables() -> None:
    """transfer sets CTI_TRANSFER_DIAL, voicemail CTI_VOICEMAIL_BOX, both then CTI_NEXT (last)."""
    caller, _, done = walk(make_flow(MENU, "m"), [None, None, None])
    assert caller.variables["CTI_TRANSFER_DIAL"] == "PJSIP/2000"
    assert caller.commands[-1] == "SET VARIABLE CTI_NEXT transfer"
    caller, _, done = walk(make_flow("v: {kind: voicemail, box: 100@default, prompt: vm-intro}", "v"), [])
    assert done.outcome == "voicemail" and caller.variables["CTI_VOICEMAIL_BOX"] == "100@default"
    assert caller.commands[-2:] == ["SET VARIABLE CTI_IVR_PATH v:voicemail:100@default",
                                    "SET VARIABLE CTI_NEXT voicemail"]


COLLECT = """
acct:
  kind: collect
  name: account
  prompt: [enter-account-intro, enter-account]
  min_digits: 6
  max_digits: 12
  luhn: true
  retries: 2
  timeout: 4
  invalid_prompt: bad-account
  no_input_prompt: no-input
  next: pin
  after_retries: q
pin: {kind: collect, name: pin, prompt: enter-pin, min_digits: 4, max_digits: 4, regex: "[0-9]{4}",
      secret: true, next: q}
q: {kind: queue, queue: billing, skills: {billing: 3}, priority: 5}
"""


def test_collect_validates_and_secret_values_never_leave_the_interpreter() -> None:
    """Luhn and regex checks apply; a secret collect is masked in path and collected and never exported."""
    caller, events, done = walk(make_flow(COLLECT, "acct"), ["12345#", "79927398713#", "4321#"])
    assert "GET DATA enter-account 4000 12" in caller.commands
    assert "STREAM FILE enter-account-intro \"\"" in caller.commands
    acct_steps = [(s.digits, s.result) for s in done.path if s.node == "acct"]
    assert acct_steps == [("12345", "invalid"), ("79927398713", "ok")]
    assert [(s.digits, s.result) for s in done.path if s.node == "pin"] == [("****", "ok")]
    assert done.collected == {"account": "79927398713", "pin": "****"}
    assert caller.variables["CTI_ACCOUNT"] == "79927398713" and "CTI_PIN" not in caller.variables
    assert "4321" not in repr(events) and all("4321" not in c for c in caller.commands)
    assert caller.variables["CTI_SKILLS"] == "billing:3" and caller.variables["CTI_PRIORITY"] == "5"


def test_collect_timeout_and_retries_exhausted() -> None:
    """No digits (GET DATA ``(timeout)``) plays no_input_prompt; after the retries it goes to after_retries."""
    caller, _, done = walk(make_flow(COLLECT, "acct"), [None, "1#", "2"])
    assert [s.result for s in done.path if s.node == "acct"] == ["timeout", "invalid", "invalid"]
    assert "STREAM FILE no-input \"\"" in caller.commands and done.queue == "billing"
    assert "account" not in done.collected


def test_collect_star_terminator_and_no_terminator() -> None:
    """With terminator ``*`` the digits before the first ``*`` count (GET DATA ends them by timeout)."""
    section = make_flow('c: {kind: collect, name: ext, prompt: p, max_digits: 6, terminator: "*", next: q}\n'
                        'q: {kind: queue, queue: x}', "c")
    _, _, done = walk(section, ["204*"])
    assert done.collected == {"ext": "204"}


def test_lookup_by_ani_and_by_account_with_all_branches() -> None:
    """Found customers land in call data (branchable, CTI_CUSTOMER_ID); not found and unavailable branch."""
    nodes = """
    who: {kind: lookup, by: ani, found: vip, not_found: acct, unavailable: down}
    vip:
      kind: branch
      cases: [{var: customer.tier, one_of: [gold, platinum], goto: gold}]
      default: plain
    gold: {kind: queue, queue: vip}
    plain: {kind: queue, queue: general}
    down: {kind: queue, queue: fallback}
    acct: {kind: collect, name: account, prompt: p, next: byacct}
    byacct: {kind: lookup, by: account, value_from: account, found: gold, not_found: plain}
    """
    section = make_flow(nodes, "who")
    caller, _, done = walk(section, [])
    assert done.queue == "vip" and done.customer["name"] == "Jane Customer"
    assert caller.variables["CTI_CUSTOMER_ID"] == "c-42"
    _, _, done = walk(section, ["79927398713#"], ani="+1999")
    assert done.queue == "vip" and [s.result for s in done.path][:3] == ["not_found", "ok", "found"]
    _, _, done = walk(section, ["1#"], ani="+1999")
    assert done.queue == "general"
    _, _, done = walk(section, [], lookup=InMemoryCustomerLookup(available=False).find)
    assert done.queue == "fallback" and done.path[0].result == "unavailable"
    _, _, done = walk(section, ["1#"], ani="")
    assert done.path[0].result == "not_found"  # no ANI: no look-up asked


def test_set_and_branch_on_call_data() -> None:
    """set merges skills/priority/language (language switches prompts at once); branch reads data."""
    nodes = """
    s: {kind: set, skills: {french: 4}, priority: 7, language: fr, variables: {CTI_TOPIC: billing}, next: b}
    b:
      kind: branch
      cases:
        - {dnis: "^800", goto: tollfree}
        - {var: param.campaign, present: true, goto: campaign}
        - {var: language, equals: fr, ani: "^\\\\+33", goto: french}
      default: other
    tollfree: {kind: queue, queue: tollfree}
    campaign: {kind: queue, queue: campaign}
    french: {kind: queue, queue: french, skills: {billing: 2}}
    other: {kind: queue, queue: other}
    """
    section = make_flow(nodes, "s")
    caller, _, done = walk(section, [], ani="+33123456", query="dnis=5551000")
    assert "SET VARIABLE CHANNEL(language) fr" in caller.commands
    assert done.queue == "french" and done.skills == {"french": 4, "billing": 2} and done.priority == 7
    assert caller.variables["CTI_LANGUAGE"] == "fr" and caller.variables["CTI_TOPIC"] == "billing"
    assert caller.variables["CTI_SKILLS"] == "french:4 billing:2"
    assert caller.commands[-1] == "SET VARIABLE CTI_NEXT queue"
    assert walk(section, [], query="dnis=8005550100")[2].queue == "tollfree"
    assert walk(section, [], query="dnis=1&campaign=")[2].queue == "other"
    assert walk(section, [], query="dnis=1&campaign=spring")[2].queue == "campaign"


def test_callback_emits_a_request_for_the_dialer() -> None:
    """A callback node emits CallbackRequested (number, queue, when = now + delay, masked data) and goes on."""
    nodes = """
    pin: {kind: collect, name: pin, prompt: p, secret: true, next: num}
    num: {kind: collect, name: phone, prompt: p, min_digits: 10, max_digits: 10, next: cb}
    cb: {kind: callback, number_from: phone, queue: support, delay: 600, prompt: cb-ok, next: bye}
    bye: {kind: hangup, prompt: goodbye}
    """
    caller, events, done = walk(make_flow(nodes, "pin"), ["1234#", "5551234567"], now=5000.0)
    requests = [e for e in events if isinstance(e, CallbackRequested)]
    assert len(requests) == 1
    req = requests[0]
    assert (req.number, req.queue, req.when, req.collected) == ("5551234567", "support", 5600.0,
                                                               {"pin": "****", "phone": "5551234567"})
    assert done.outcome == "hangup" and caller.commands[-2:] == ["STREAM FILE goodbye \"\"",
                                                                 "SET VARIABLE CTI_NEXT hangup"]


def test_missing_prompt_is_not_a_hangup() -> None:
    """STREAM FILE result=-1 on a live channel (missing sound file) is checked with CHANNEL STATUS, then skipped."""
    section = make_flow("a: {kind: play, prompts: [gone, hello], next: q}\nq: {kind: queue, queue: x}", "a")
    caller, _, done = walk(section, [], missing=frozenset({"gone"}))
    assert caller.commands[1:4] == ['STREAM FILE gone ""', "CHANNEL STATUS", 'STREAM FILE hello ""']
    assert done.outcome == "queue"


def test_unexpected_reply_ends_with_error_and_no_decision() -> None:
    """A 510/520 to one of our commands ends the flow with outcome error and no CTI_NEXT (dialplan falls back)."""
    section = make_flow("a: {kind: play, prompts: hello, next: q}\nq: {kind: queue, queue: x}", "a")
    env = AgiEnvironment(fastagi_environment("f"))
    session = IvrSession("f", section.flows["f"], env)
    actions = session.start(1.0)
    assert isinstance(actions[0], EmitEvent) and actions[-1] == SendCommand(actions[-1].command)
    actions = session.on_reply(AgiReply(510, text="Invalid or unknown command"), 2.0)
    assert isinstance(actions[-1], EndSession) and actions[-1].outcome == "error"
    assert session.completed is not None and session.completed.reason == "ANSWER answered 510"
    assert session.on_reply(AgiReply(200, "0"), 3.0) == []  # late replies are ignored


def test_silent_caller_in_a_menu_loop_hits_max_steps() -> None:
    """A menu that loops to itself forever with a silent caller stops at max_steps with outcome error."""
    section = make_flow('m: {kind: menu, prompt: p, retries: 0, options: {"1": m}, after_retries: m}', "m",
                        max_steps=10)
    caller, _, done = walk(section, [])
    assert done.outcome == "error" and "max_steps" in done.reason and len(done.path) == 10


def test_path_records_times_passed_in() -> None:
    """Each path step carries the ``now`` the shell passed with the input that completed it."""
    _, _, done = walk(make_flow(MENU, "m"), [None, "1"], now=100.0, step=1.0)
    assert [s.t for s in done.path] == sorted(s.t for s in done.path) and done.path[0].t > 100.0


SCHEDULE = """
s:
  kind: schedule
  timezone: America/New_York
  hours: {fri: ["08:00-17:00"], sun: ["01:00-02:30"], mon: ["08:00-12:00", "13:00-17:00"]}
  holidays: ["2026-12-25", "07-04"]
  open: o
  closed: c
  holiday: h
o: {kind: hangup}
c: {kind: hangup}
h: {kind: hangup}
"""


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("when, state", [
    (utc(2026, 3, 6, 13, 0), "open"),      # Fri 08:00 EST: first minute of the window
    (utc(2026, 3, 6, 12, 59, 59), "closed"),  # Fri 07:59:59 EST
    (utc(2026, 3, 6, 22, 0), "closed"),    # Fri 17:00 EST: the end is exclusive
    (utc(2026, 3, 6, 21, 59), "open"),
    (utc(2026, 3, 9, 16, 30), "closed"),   # Mon 12:30 EDT: lunch gap between two windows
    (utc(2026, 3, 9, 17, 0), "open"),      # Mon 13:00 EDT (after the DST change, UTC-4)
    (utc(2026, 3, 8, 6, 59), "open"),      # Sun 01:59 EST, just before clocks jump 02:00 -> 03:00
    (utc(2026, 3, 8, 7, 0), "closed"),     # Sun 03:00 EDT: 02:00-02:30 never happened
    (utc(2026, 12, 25, 15, 0), "holiday"),
    (utc(2026, 7, 4, 14, 0), "holiday"),   # yearly MM-DD (a Saturday anyway)
    (utc(2027, 7, 4, 14, 0), "holiday"),
])
def test_schedule_boundaries_and_daylight_saving(when: float, state: str) -> None:
    """Windows are local wall-clock times in the node's zone: start inclusive, end exclusive, DST-aware."""
    section = make_flow(SCHEDULE, "s")
    node = section.flows["f"].nodes["s"]
    assert schedule_state(node, when) == state  # type: ignore[arg-type]
    _, _, done = walk(section, [], now=when)
    assert done.path[0].result == state


def test_schedule_window_repeated_by_fall_back() -> None:
    """When clocks fall back, a window in the repeated hour is open both times."""
    section = make_flow("""
    s: {kind: schedule, timezone: Europe/Paris, hours: {sun: ["02:00-02:30"]}, open: o, closed: c}
    o: {kind: hangup}
    c: {kind: hangup}
    """, "s")
    node = section.flows["f"].nodes["s"]
    assert schedule_state(node, utc(2026, 10, 25, 0, 15)) == "open"  # 02:15 CEST
    assert schedule_state(node, utc(2026, 10, 25, 1, 15)) == "open"  # 02:15 CET, an hour later
    assert schedule_state(node, utc(2026, 10, 25, 1, 45)) == "closed"


def test_luhn() -> None:
    """The Luhn check accepts valid check digits only."""
    assert luhn_ok("79927398713") and luhn_ok("4539578763621486")
    assert not luhn_ok("79927398710") and not luhn_ok("") and not luhn_ok("12a4")


COLLECT_MISSING = """
acct:
  kind: collect
  name: account
  prompt: [intro, enter]
  min_digits: 4
  max_digits: 8
  timeout: 4
  retries: 1
  next: q
q: {kind: queue, queue: billing}
"""


def test_collect_with_a_missing_prompt_still_listens() -> None:
    """Asterisk 22 answers ``GET DATA <missing>`` at once with ``200 result=-1`` (app.c's getdata returns
    ast_streamfile's -1 before reading a digit). On a live channel (CHANNEL STATUS says so) the IVR asks
    again with an empty prompt, which reads the digits without playing anything; nothing counts as a timeout."""
    caller, events, done = walk(make_flow(COLLECT_MISSING, "acct"), ["1234#"], missing=frozenset({"enter"}))
    assert caller.commands[1:5] == ['STREAM FILE intro ""', "GET DATA enter 4000 8", "CHANNEL STATUS",
                                    'GET DATA "" 4000 8']
    assert done.outcome == "queue" and done.collected == {"account": "1234"}
    assert [s.result for s in done.path] == ["ok", "queue:billing"]


def test_collect_retry_skips_a_prompt_known_missing_and_reports_it_once() -> None:
    """A prompt found missing is reported once per session (PromptMissing naming flow, node and prompt)
    and not asked for again: the retry reads digits with an empty prompt straight away."""
    caller, events, done = walk(make_flow(COLLECT_MISSING, "acct"), [None, "5678#"],
                                missing=frozenset({"enter", "intro"}))
    assert caller.commands[1:7] == ['STREAM FILE intro ""', "CHANNEL STATUS", "GET DATA enter 4000 8",
                                    "CHANNEL STATUS", 'GET DATA "" 4000 8', 'GET DATA "" 4000 8']
    missing = [e for e in events if isinstance(e, PromptMissing)]
    assert [(e.flow, e.node, e.prompt) for e in missing] == [("f", "acct", "intro"), ("f", "acct", "enter")]
    assert done.collected == {"account": "5678"} and [s.result for s in done.path][:2] == ["timeout", "ok"]


def test_menu_with_a_missing_prompt_waits_for_the_key() -> None:
    """A menu whose prompt is missing still reads the caller's key (WAIT FOR DIGIT), and the missing
    prompt is not streamed again on the retries."""
    caller, events, done = walk(make_flow(MENU, "m"), [None, "2"], missing=frozenset({"menu-a"}))
    assert [c for c in caller.commands if c.startswith("STREAM FILE menu-a")] == ["STREAM FILE menu-a 0123456789*#"]
    assert done.outcome == "queue" and done.queue == "support"
    assert len([e for e in events if isinstance(e, PromptMissing)]) == 1


def test_get_data_minus_one_on_a_dead_channel_is_a_hangup() -> None:
    """``200 result=-1`` to GET DATA is also what a hang-up gives: a HANGUP line or a 511 to CHANNEL
    STATUS (res_agi refuses non-dead commands on a dead channel) ends the flow as caller_hangup, with no
    second GET DATA."""
    caller, events, done = walk(make_flow(COLLECT_MISSING, "acct"), ["hangup"])
    assert done.outcome == "caller_hangup" and not any(c.startswith('GET DATA ""') for c in caller.commands)
    assert not [e for e in events if isinstance(e, PromptMissing)]
    section = make_flow(COLLECT_MISSING, "acct")
    session = IvrSession("f", section.flows["f"], AgiEnvironment(fastagi_environment("f")))
    session.start(1.0)
    for reply in (AgiReply(200, "0"), AgiReply(200, "0", None, 8000)):  # ANSWER, STREAM FILE intro
        session.on_reply(reply, 1.0)
    actions = session.on_reply(AgiReply(200, "-1"), 2.0)  # GET DATA enter
    assert actions == [SendCommand(AgiCommand("CHANNEL STATUS"))]
    actions = session.on_reply(AgiReply(511, text="Command Not Permitted on a dead channel or intercept routine"), 2.0)
    assert isinstance(actions[-1], EndSession) and actions[-1].outcome == "caller_hangup"
