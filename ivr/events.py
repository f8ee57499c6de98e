"""What the IVR tells the rest of the system: frozen event values. No I/O, no imports from other packages.

``IvrStarted`` when a FastAGI session begins a flow, ``IvrCompleted`` when it ends (the server stores it
by ``uniqueid`` so the screen pop can show the caller's path), ``CallbackRequested`` for the dialer,
``PromptMissing`` when the PBX could not play a prompt the flow names (the flow skipped it).
``ts`` is the time the shell passed in (epoch seconds); ``server`` names the PBX the session came from.
Secret collected values never reach these events: they are ``"****"`` in ``collected`` and in ``path``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["queue", "transfer", "voicemail", "hangup", "caller_hangup", "error"]
MASK = "****"


@dataclass(frozen=True, slots=True)
class PathStep:
    """One visited node: its id and kind, the digits entered there (masked if secret), the time."""

    node: str
    kind: str
    t: float
    digits: str = ""
    result: str = ""  # what happened: "1", "timeout", "invalid", "found", "open", "queue:sales", ...


@dataclass(frozen=True, slots=True)
class IvrEvent:
    server: str
    ts: float
    uniqueid: str
    channel: str
    flow: str


@dataclass(frozen=True, slots=True)
class IvrStarted(IvrEvent):
    """A caller entered a flow."""

    ani: str = ""
    dnis: str = ""


@dataclass(frozen=True, slots=True)
class IvrCompleted(IvrEvent):
    """A caller left a flow, with where to (``outcome``) and what they entered."""

    path: tuple[PathStep, ...] = ()
    collected: dict[str, str] = field(default_factory=dict)
    outcome: Outcome = "error"
    queue: str | None = None
    skills: dict[str, int] = field(default_factory=dict)
    priority: int | None = None
    language: str | None = None
    customer: dict[str, str] = field(default_factory=dict)
    reason: str = ""  # for outcome "error": what went wrong (never a secret)


@dataclass(frozen=True, slots=True)
class CallbackRequested(IvrEvent):
    """The caller asked to be called back at ``number`` (``when``: epoch seconds, None = as soon as possible)."""

    number: str = ""
    queue: str = ""
    when: float | None = None
    collected: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PromptMissing(IvrEvent):
    """The PBX could not play ``prompt`` at ``node`` (``STREAM FILE`` / ``GET DATA`` answered ``-1`` on a live
    channel: the sound file does not exist there). The flow skipped it; sent once per prompt per call."""

    node: str = ""
    prompt: str = ""
