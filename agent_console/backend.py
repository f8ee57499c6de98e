"""What the hub needs from the rest of the server (``ConsoleBackend``) and what it offers back
(``ConsolePusher``), plus the session identity and the action error. No I/O.

Must not import the hub, websockets, the ACD or AMI code: the one implementation of ``ConsoleBackend`` is
the application's (``centre.console_backend``, over the ACD, the dispatcher and the screen pops); the hub's
tests run over it too (tests/console_stack.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Role = Literal["agent", "supervisor"]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One authenticated console connection."""

    session_id: str
    agent_id: str  # the agent's (or supervisor's) id
    role: Role
    remote: str  # "host:port" of the peer, for logs
    connected_at: float


class ConsoleError(Exception):
    """An action was refused and changed nothing. ``error_id`` is stable (docs/console-protocol.md):
    illegal-transition, no-active-call, unknown-agent, forbidden, unknown-call, unknown-reason,
    unknown-disposition, bad-callback-time, no-preview, not-logged-in, action-failed, unknown-topic,
    call-unreachable, ..."""

    def __init__(self, error_id: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message
        self.details = details


class ConsoleBackend(Protocol):
    """Executes console actions (over the ACD and AMI) and answers what a (re)connecting console needs."""

    async def handle(self, session: SessionInfo, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Carry out ``action`` (a protocol request type, see ``protocol.AGENT_ACTIONS``/``SUPERVISOR_ACTIONS``)
        with its validated ``params``; return the result payload or raise ConsoleError (nothing changed)."""
        ...

    def resume_messages(self, agent_id: str) -> list[dict[str, Any]]:
        """Messages a (re)connecting agent console needs now: its ``state``, then a ``pop`` (and ``call``)
        for every call still ringing or connected to it, and a pending ``preview`` if any."""
        ...

    def supervisor_snapshot(self) -> dict[str, Any]:
        """The wallboard payload: ``queues``, ``agents``, ``health`` (see docs/console-protocol.md)."""
        ...

    def session_changed(self, session: SessionInfo, connected: bool) -> None:
        """A console connected (after hello) or went away; the ACD may use it (e.g. not-ready on loss)."""
        ...


class ConsolePusher(Protocol):
    """Delivery of server pushes; ``ConsoleHub`` implements it. Non-blocking; never raises for a missing agent."""

    def push_to_agent(self, agent_id: str, message: dict[str, Any]) -> None: ...

    def push_to_supervisors(self, message: dict[str, Any]) -> None: ...
