"""Simulator-driven: the simulated Asterisk's FastAGI client (sim/fastagi_client.py) calls our FastAGI server
through the simulator's in-memory TCP (sim/memory_transport.py) in virtual time; callers walk every node
kind, time out, press invalid keys and hang up mid-menu. Prompt lengths, digit gaps, DTMF timeouts and the
server's timers all run on one Clock. (Real-socket tests of the same server: test_ivr_fastagi.py.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from twisted.internet import defer, task

from config.load import load_config
from ivr.events import CallbackRequested, IvrCompleted, IvrEvent
from ivr.fastagi import FastAgiFactory
from ivr.ports import InMemoryCustomerLookup
from sim.fastagi_client import FastAGIClient
from sim.memory_transport import MemoryNetwork
from tests.test_ivr_flow import ROOT

DEMO = load_config(ROOT / "config" / "examples" / "ivr_demo.yaml").ivr
CUSTOMERS = InMemoryCustomerLookup([
    {"id": "c1", "name": "Vera Vip", "vip": "yes", "phone": "+15550001111", "account": "1234567897"},
])
TUESDAY_10AM_NEW_YORK = 1_772_550_000.0 + 3600  # 2026-03-03 15:00 UTC = 10:00 EST
SUNDAY = TUESDAY_10AM_NEW_YORK - 2 * 86400


class Channel:
    """A simulated caller channel (sim.agi_channel.AgiChannel) pressing scripted keys."""

    def __init__(self, uniqueid: str, ani: str, keys: list[tuple[str, float]], dnis: str = "+18005550100") -> None:
        self.name = f"PJSIP/trunk-{uniqueid}"
        self.uniqueid = self.linkedid = uniqueid
        self.context, self.exten, self.priority = "cti-inbound", dnis, 5
        self.caller_num, self.caller_name, self.dnis, self.rdnis = ani, "Caller", dnis, ""
        self.language, self.accountcode, self.state = "en", "", 6
        self.hungup = False
        self.keys = list(keys)
        self.vars: dict[str, str] = {}
        self.heard: list[str] = []
        self.commands: list[str] = []
        self._on_hangup: list[Callable[[], None]] = []

    def get_var(self, name: str) -> str | None:
        return self.vars.get(name)

    def set_var(self, name: str, value: str) -> None:
        self.vars[name] = value

    def substitute(self, text: str) -> str:
        return text

    def answer(self) -> None:
        self.state = 6

    def hangup(self, cause: int = 16) -> None:
        if not self.hungup:
            self.hungup = True
            for cb in self._on_hangup:
                cb()

    def exec_app(self, app: str, data: str) -> defer.Deferred[int]:
        return defer.succeed(0)

    def next_keys(self) -> tuple[str, float] | None:
        return self.keys.pop(0) if self.keys else None

    def receive_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        self.heard.append(digit)

    def on_hangup(self, cb: Callable[[], None]) -> None:
        if self.hungup:
            cb()
        else:
            self._on_hangup.append(cb)

    def emit_agi_exec(self, start: bool, command: str, result_code: int = 200, result: str = "") -> None:
        if start:
            self.commands.append(command)


class Rig:
    """Our FastAGI server and the simulator's FastAGI client on one in-memory network and one Clock."""

    def __init__(self, now: float) -> None:
        self.clock = task.Clock()
        self.clock.advance(now)
        self.events: list[IvrEvent] = []
        self.network = MemoryNetwork(self.clock)
        self.factory = FastAgiFactory(DEMO, self.events.append, CUSTOMERS, clock=self.clock)
        self.network.listen("127.0.0.1", 4573, self.factory)
        self.client = FastAGIClient(self.clock, self.network.connect)
        self.url = "agi://127.0.0.1:4573/main?dnis=8005550100"

    def call(self, channel: Channel, hangup_at: float | None = None) -> str:
        """Run one AGI session to its end in 50 ms steps of virtual time."""
        if hangup_at is not None:
            self.clock.callLater(hangup_at, channel.hangup)
        d = self.client.run(channel, self.url, [])
        for _ in range(20000):
            if d.called:
                break
            self.clock.advance(0.05)
        box: list[Any] = []
        d.addBoth(box.append)
        return str(box[0])

    def completed(self, uniqueid: str) -> IvrCompleted:
        return [e for e in self.events if isinstance(e, IvrCompleted) and e.uniqueid == uniqueid][0]

    def stop(self) -> None:
        assert self.network.open_connections == 0 and self.factory.active == 0


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig(TUESDAY_10AM_NEW_YORK)
    yield r
    r.stop()


def test_vip_caller_pays_a_bill_and_is_queued_with_skills(rig: Rig) -> None:
    """Open hours, known VIP ANI -> set -> menu "1" -> account (Luhn) -> lookup -> secret PIN -> queue."""
    ch = Channel("100.1", "+15550001111", [("1", 0.5), ("1234567897", 1.0), ("2468#", 0.5)])
    assert rig.call(ch) == "SUCCESS"
    done = rig.completed("100.1")
    assert done.outcome == "queue" and done.queue == "billing"
    assert done.skills == {"vip": 5, "billing": 3} and done.priority == 10
    assert done.collected == {"account": "1234567897", "pin": "****"}
    assert [s.node for s in done.path] == ["hours", "known_caller", "vip_check", "vip", "main_menu",
                                           "billing_account", "account_lookup", "pin", "billing_queue"]
    assert ch.vars["CTI_NEXT"] == "queue" and ch.vars["CTI_SKILLS"] == "vip:5 billing:3"
    assert ch.vars["CTI_CUSTOMER_ID"] == "c1" and "CTI_PIN" not in ch.vars
    assert not any("2468" in c for c in ch.commands)


def test_invalid_key_then_silence_then_french_support(rig: Rig) -> None:
    """An unknown caller presses 9 (invalid), then stays silent twice: after_retries -> French support."""
    ch = Channel("100.2", "+15559990000", [("9", 0.3), ("", 0.0), ("", 0.0)], dnis="+18005550205")
    rig.url = rig.url.replace("8005550100", "+18005550205")
    assert rig.call(ch) == "SUCCESS"
    done = rig.completed("100.2")
    assert [s.result for s in done.path if s.node == "main_menu"] == ["invalid", "timeout", "timeout"]
    assert done.queue == "support" and done.language == "fr" and done.skills == {"french": 5, "support": 2}
    assert "SET VARIABLE CHANNEL(language) fr" in ch.commands
    assert any(c.startswith("STREAM FILE pm-invalid-option ") for c in ch.commands)


def test_hangup_mid_menu(rig: Rig) -> None:
    """The caller hangs up while the menu prompt plays: outcome caller_hangup, AGI result HANGUP."""
    ch = Channel("100.3", "+15559990000", [("", 0.0)])
    assert rig.call(ch, hangup_at=1.0) == "HANGUP"
    done = rig.completed("100.3")
    assert done.outcome == "caller_hangup" and "CTI_NEXT" not in ch.vars
    assert rig.factory.active == 0


def test_callback_operator_and_closed_hours() -> None:
    """Menu 3 requests a callback (for the dialer); 0 transfers; on Sunday the caller reaches voicemail."""
    rig = Rig(TUESDAY_10AM_NEW_YORK)
    try:
        ch = Channel("100.4", "+15559990000", [("3", 0.2)])
        assert rig.call(ch) == "SUCCESS"
        request = [e for e in rig.events if isinstance(e, CallbackRequested)][0]
        assert (request.number, request.queue, request.when) == ("+15559990000", "support",
                                                                 pytest.approx(rig.completed("100.4").path[-2].t + 600))
        assert rig.completed("100.4").outcome == "hangup" and ch.vars["CTI_NEXT"] == "hangup"
        ch = Channel("100.5", "+15559990000", [("0", 0.2)])
        rig.call(ch)
        assert ch.vars["CTI_NEXT"] == "transfer" and ch.vars["CTI_TRANSFER_DIAL"] == "PJSIP/2000"
    finally:
        rig.stop()
    rig = Rig(SUNDAY)
    try:
        ch = Channel("100.6", "+15559990000", [])
        rig.call(ch)
        assert ch.vars["CTI_NEXT"] == "voicemail" and ch.vars["CTI_VOICEMAIL_BOX"] == "100@default"
        assert rig.completed("100.6").path[0].result == "closed"
    finally:
        rig.stop()


def test_every_demo_node_kind_was_walked() -> None:
    """The calls above cover all twelve node kinds of the shipped example flow."""
    flow: Any = yaml.safe_load((ROOT / "config" / "examples" / "ivr_demo.yaml").read_text())["ivr"]["flows"]["main"]
    walked = {"hours", "known_caller", "vip_check", "vip", "main_menu", "billing_account", "account_lookup", "pin",
              "billing_queue", "support_lang", "french", "support_queue", "callback_offer", "goodbye", "operator",
              "closed_msg", "leave_message"}
    assert {flow["nodes"][n]["kind"] for n in walked} == {
        "play", "menu", "collect", "lookup", "set", "branch", "schedule", "queue", "transfer", "callback",
        "voicemail", "hangup"}
