"""cti.dispatch: what AMI action each command becomes, and what ``apply``'s Deferred says (None when done,
the CommandFailed also given to ``on_failed`` when Asterisk refused). The PBX here is the recording sender of
tests/console_stack.py in front of one that answers Success (the AMI session's own tests cover the wire)."""

from __future__ import annotations

import contextlib
from typing import Any

from twisted.internet import defer

from cti.ami.client import ActionResult
from cti.ami.message import AMIMessage
from cti.commands import Atxfer, Bridge, CancelAtxfer, CommandFailed, Hangup, PushToAgent, Redirect, Setvar
from cti.dispatch import Dispatcher
from tests.console_stack import RecordingSender


class Success:
    """An ActionSender whose PBX answers every action ``Response: Success``."""

    def send(self, server: str, name: str, fields: Any = None, *, timeout: float | None = None
             ) -> defer.Deferred[ActionResult]:
        return defer.succeed(ActionResult(AMIMessage([("Response", "Success")])))

    def batch(self, server: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def _dispatcher() -> tuple[Dispatcher, RecordingSender, list[CommandFailed]]:
    sender = RecordingSender()
    sender.target = Success()
    failed: list[CommandFailed] = []
    return Dispatcher(sender, None, on_failed=failed.append), sender, failed


def _fired(d: defer.Deferred[Any]) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


def test_console_commands_become_their_ami_actions() -> None:
    """Hold's Redirect sends its second channel to another context; Bridge, Atxfer, CancelAtxfer and Hangup
    carry their channels; each Deferred fires with None."""
    dispatcher, sender, failed = _dispatcher()
    commands = [
        Redirect("r1", "pbx", "PJSIP/a-1", "cti-onhold", "s", extra_channel="PJSIP/b-2",
                 extra_context="cti-agent-onhold", extra_exten="s"),
        Redirect("r2", "pbx", "PJSIP/a-1", "cti-hold", "s", extra_channel="PJSIP/b-2"),
        Bridge("r3", "pbx", "PJSIP/b-2", "PJSIP/a-1"),
        Atxfer("r4", "pbx", "PJSIP/b-2", "cti-consult", "0"),
        CancelAtxfer("r5", "pbx", "PJSIP/b-2"),
        Hangup("r6", "pbx", "PJSIP/b-2"),
        Setvar("r7", "pbx", "PJSIP/a-1", "CTI_QUEUE", "sales"),
    ]
    assert [_fired(dispatcher.apply(c)) for c in commands] == [None] * len(commands)
    assert sender.actions() == [
        ("Redirect", {"Channel": "PJSIP/a-1", "Context": "cti-onhold", "Exten": "s", "Priority": "1",
                      "ExtraChannel": "PJSIP/b-2", "ExtraContext": "cti-agent-onhold", "ExtraExten": "s",
                      "ExtraPriority": "1"}),
        ("Redirect", {"Channel": "PJSIP/a-1", "Context": "cti-hold", "Exten": "s", "Priority": "1",
                      "ExtraChannel": "PJSIP/b-2", "ExtraContext": "cti-hold", "ExtraExten": "s",
                      "ExtraPriority": "1"}),
        ("Bridge", {"Channel1": "PJSIP/b-2", "Channel2": "PJSIP/a-1", "Tone": "no"}),
        ("Atxfer", {"Channel": "PJSIP/b-2", "Context": "cti-consult", "Exten": "0"}),
        ("CancelAtxfer", {"Channel": "PJSIP/b-2"}),
        ("Hangup", {"Channel": "PJSIP/b-2", "Cause": "16"}),
        ("Setvar", {"Channel": "PJSIP/a-1", "Variable": "CTI_QUEUE", "Value": "sales"}),
    ]
    assert failed == [] and dispatcher.sent == len(commands) and dispatcher.failed == 0


def test_a_refused_action_fires_with_the_command_failed_also_fed_back() -> None:
    """Asterisk's Error: the Deferred fires (never fails) with the CommandFailed that on_failed got, its
    reason Asterisk's Message; a push command fires with None at once."""
    dispatcher, sender, failed = _dispatcher()
    sender.refuse("Bridge", "Channel PJSIP/b-2 does not exist")
    command = Bridge("console-1001-retrieve-1", "pbx", "PJSIP/b-2", "PJSIP/a-1")
    result = _fired(dispatcher.apply(command))
    assert result == CommandFailed(ref=command.ref, command=command, reason="Channel PJSIP/b-2 does not exist")
    assert failed == [result] and dispatcher.failed == 1
    assert _fired(dispatcher.apply(PushToAgent("p", "1001", {"type": "state"}))) is None
