"""What engines (and the console backend) ask the outside world to do. Frozen values, no I/O;
``cti.dispatch`` applies them.

AMI-level commands name the ``server`` (the Asterisk connection's configured name). Console
commands address one agent or the supervisors. A command's failure is fed back to the engine that
issued it as ``CommandFailed`` with the same ``ref`` (and is what ``Dispatcher.apply``'s Deferred
fires with, for a caller that waits on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Command:
    ref: str  # caller-chosen reference, echoed in CommandFailed


@dataclass(frozen=True, slots=True)
class Setvar(Command):
    server: str
    channel: str
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Redirect(Command):
    """AMI Redirect of ``channel`` (and of ``extra_channel`` with it, to ``extra_context``/``extra_exten``
    when given, else to the same place: e.g. hold sends the caller to music and the agent's leg elsewhere)."""

    server: str
    channel: str
    context: str
    exten: str
    priority: int = 1
    extra_channel: str | None = None
    extra_context: str | None = None
    extra_exten: str | None = None


@dataclass(frozen=True, slots=True)
class Hangup(Command):
    server: str
    channel: str
    cause: int = 16


@dataclass(frozen=True, slots=True)
class Bridge(Command):
    """AMI Bridge of two channels (retrieve from hold); ``tone``: play a courtesy tone to ``channel2``."""

    server: str
    channel1: str
    channel2: str
    tone: bool = False


@dataclass(frozen=True, slots=True)
class Atxfer(Command):
    """AMI Atxfer of ``channel`` (the leg that has the atxfer feature) to ``exten``@``context``: Asterisk
    plays the extension as DTMF, so it must be digits."""

    server: str
    channel: str
    context: str
    exten: str


@dataclass(frozen=True, slots=True)
class CancelAtxfer(Command):
    """AMI CancelAtxfer: end the consultation started on ``channel``; it talks to its first party again."""

    server: str
    channel: str


@dataclass(frozen=True, slots=True)
class Originate(Command):
    """Async Originate; the result arrives as ``cti.events.OriginateResult`` with action_id == ref."""

    server: str
    channel: str
    context: str
    exten: str
    priority: int = 1
    caller_id: str = ""
    timeout_ms: int = 30000
    variables: dict[str, str] = field(default_factory=dict)
    account: str = ""


@dataclass(frozen=True, slots=True)
class OfferCall(Command):
    """Offer a waiting caller to an agent: Setvar CTI_AGENT_* on the caller channel, then Redirect it
    to ``cti-agent,<agent_id>,1`` (see config/asterisk/extensions_cti.conf), and push the screen pop."""

    server: str
    call_id: str
    uniqueid: str
    channel: str
    agent_id: str
    endpoint: str
    ring_timeout: int
    queue: str


@dataclass(frozen=True, slots=True)
class StartRecording(Command):
    """AMI MixMonitor of ``channel`` into ``file`` (absolute, with its extension) with MixMonitor ``options``
    (``b``: only while bridged). Asterisk answers MixMonitorStart on success."""

    server: str
    channel: str
    file: str
    options: str = ""


@dataclass(frozen=True, slots=True)
class MuteRecording(Command):
    """AMI MixMonitorMute of ``channel``'s recordings, both directions: ``muted`` pauses (silence is
    written), False resumes. Asterisk answers MixMonitorMute with State 1/0."""

    server: str
    channel: str
    muted: bool


@dataclass(frozen=True, slots=True)
class StopRecording(Command):
    """AMI StopMixMonitor of ``channel`` (every MixMonitor on it); Asterisk answers MixMonitorStop."""

    server: str
    channel: str


@dataclass(frozen=True, slots=True)
class PushToAgent(Command):
    agent_id: str
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PushToSupervisors(Command):
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CommandFailed:
    """Fed back to the issuing engine when a command could not be carried out."""

    ref: str
    command: Command
    reason: str
