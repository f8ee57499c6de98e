"""Applies engine commands to the outside world: AMI actions and console pushes.

The one place that turns ``cti.commands`` values into AMI actions. A command that cannot be carried
out (AMI down, channel gone, Asterisk said Error) is reported back through ``on_failed`` as a
``CommandFailed`` with the command's ``ref``, so the engine that issued it can undo its state.
``apply`` returns a Deferred that never fails: it fires with ``None`` once the command is carried out
(its last AMI action answered Success) or with that ``CommandFailed``, for a caller that waits (the
console backend). Imports Twisted only for Deferreds; knows nothing of engines' state.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import defer
from twisted.python.failure import Failure

from cti.ami.client import ActionError, ActionResult, AMIError
from cti.commands import (
    Atxfer,
    Bridge,
    CancelAtxfer,
    Command,
    CommandFailed,
    Hangup,
    MuteRecording,
    OfferCall,
    Originate,
    PushToAgent,
    PushToSupervisors,
    Redirect,
    Setvar,
    StartRecording,
    StopRecording,
)
from cti.contract import AGENT_CONTEXT, CTI_AGENT_ENDPOINT, CTI_RING_TIMEOUT

log = logging.getLogger("cti.dispatch")


class ActionSender(Protocol):
    def send(
        self, server: str, name: str, fields: dict[str, str | list[str]] | None = None, *, timeout: float | None = None
    ) -> defer.Deferred[ActionResult]: ...

    def batch(self, server: str) -> contextlib.AbstractContextManager[None]: ...


class Pusher(Protocol):
    def push_to_agent(self, agent_id: str, message: dict[str, Any]) -> None: ...

    def push_to_supervisors(self, message: dict[str, Any]) -> None: ...


def _reason(failure: Failure) -> str:
    exc = failure.value
    if isinstance(exc, ActionError):
        return str(exc.response.get("Message") or "Asterisk answered Error")
    if isinstance(exc, AMIError):
        return str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {exc}"


class Dispatcher:
    """Carries out commands (the bus's command sink). Failures are reported through ``on_failed``."""

    def __init__(
        self,
        ami: ActionSender,
        pusher: Pusher | None,
        on_failed: Callable[[CommandFailed], None],
    ) -> None:
        self.ami = ami
        self.pusher = pusher
        self.on_failed = on_failed
        self.sent = 0
        self.failed = 0

    def apply(self, command: Command) -> defer.Deferred[CommandFailed | None]:
        """Carry out ``command``. The Deferred fires with None when done, or with the ``CommandFailed``
        also given to ``on_failed``; it never fails."""
        if isinstance(command, OfferCall):
            return self._offer(command)
        action = self._action(command)
        if action is not None:
            return self._send(command, *action)
        if isinstance(command, PushToAgent):
            if self.pusher is not None:
                self.pusher.push_to_agent(command.agent_id, command.message)
            return defer.succeed(None)
        if isinstance(command, PushToSupervisors):
            if self.pusher is not None:
                self.pusher.push_to_supervisors(command.message)
            return defer.succeed(None)
        log.error("dispatch: no handler for command %r", type(command).__name__)
        failed = CommandFailed(ref=command.ref, command=command, reason=f"no handler for {type(command).__name__}")
        return defer.succeed(failed)

    @staticmethod
    def _action(command: Command) -> tuple[str, str, dict[str, str | list[str]]] | None:
        """The one AMI action (server, name, fields) of a single-action command; None for the others."""
        if isinstance(command, Setvar):
            return command.server, "Setvar", {"Channel": command.channel, "Variable": command.name,
                                              "Value": command.value}
        if isinstance(command, Redirect):
            fields: dict[str, str | list[str]] = {
                "Channel": command.channel, "Context": command.context,
                "Exten": command.exten, "Priority": str(command.priority),
            }
            if command.extra_channel:
                fields.update({"ExtraChannel": command.extra_channel,
                               "ExtraContext": command.extra_context or command.context,
                               "ExtraExten": command.extra_exten or command.exten,
                               "ExtraPriority": str(command.priority)})
            return command.server, "Redirect", fields
        if isinstance(command, Hangup):
            return command.server, "Hangup", {"Channel": command.channel, "Cause": str(command.cause)}
        if isinstance(command, Bridge):
            return command.server, "Bridge", {"Channel1": command.channel1, "Channel2": command.channel2,
                              "Tone": "yes" if command.tone else "no"}
        if isinstance(command, Atxfer):
            return command.server, "Atxfer", {"Channel": command.channel, "Context": command.context,
                                              "Exten": command.exten}
        if isinstance(command, CancelAtxfer):
            return command.server, "CancelAtxfer", {"Channel": command.channel}
        if isinstance(command, StartRecording):
            rfields: dict[str, str | list[str]] = {"Channel": command.channel, "File": command.file}
            if command.options:
                rfields["Options"] = command.options
            return command.server, "MixMonitor", rfields
        if isinstance(command, MuteRecording):
            return command.server, "MixMonitorMute", {"Channel": command.channel, "Direction": "both",
                                                      "State": "1" if command.muted else "0"}
        if isinstance(command, StopRecording):
            return command.server, "StopMixMonitor", {"Channel": command.channel}
        if isinstance(command, Originate):
            ofields: dict[str, str | list[str]] = {
                "Channel": command.channel, "Context": command.context, "Exten": command.exten,
                "Priority": str(command.priority), "Timeout": str(command.timeout_ms), "Async": "true",
                "ActionID": command.ref,
            }
            if command.caller_id:
                ofields["CallerID"] = command.caller_id
            if command.account:
                ofields["Account"] = command.account
            if command.variables:
                ofields["Variable"] = [f"{k}={v}" for k, v in command.variables.items()]
            return command.server, "Originate", ofields
        return None

    def _offer(self, cmd: OfferCall) -> defer.Deferred[CommandFailed | None]:
        # Three actions on one AMI session, written together, are executed in order by Asterisk; the
        # Redirect fails cleanly if the caller hung up in between, and that failure re-queues nothing by
        # itself: the engine hears CommandFailed and decides.
        with self.ami.batch(cmd.server):
            self._send(cmd, cmd.server, "Setvar",
                       {"Channel": cmd.channel, "Variable": CTI_AGENT_ENDPOINT, "Value": cmd.endpoint}, report=False)
            self._send(cmd, cmd.server, "Setvar",
                       {"Channel": cmd.channel, "Variable": CTI_RING_TIMEOUT, "Value": str(cmd.ring_timeout)},
                       report=False)
            return self._send(cmd, cmd.server, "Redirect", {
                "Channel": cmd.channel, "Context": AGENT_CONTEXT, "Exten": cmd.agent_id, "Priority": "1"})

    def _send(
        self, cmd: Command, server: str, action: str, fields: dict[str, str | list[str]], report: bool = True
    ) -> defer.Deferred[CommandFailed | None]:
        self.sent += 1
        d = self.ami.send(server, action, fields)

        def failed(failure: Failure) -> CommandFailed:
            self.failed += 1
            reason = _reason(failure)
            log.warning("dispatch: %s on %s for %s failed: %s", action, server, cmd.ref, reason)
            command_failed = CommandFailed(ref=cmd.ref, command=cmd, reason=reason)
            if report:
                self.on_failed(command_failed)
            return command_failed

        return d.addCallbacks(lambda _result: None, failed)
