"""The AgiChannel Protocol: what the simulated PBX offers a FastAGI client. Imports no Twisted protocol, no sim module.

This is the contract between the channel engine (``sim/pbx.py``, which implements it) and the
FastAGI client (``sim/fastagi_client.py``, which consumes it). The client plays Asterisk's side of a
FastAGI session: it builds the ``agi_*`` environment from these attributes, sends commands' results
back to the AGI server, and drives the channel through the methods below.

Timing rules (the engine is event-driven and deterministic; nothing here blocks):

- ``exec_app`` returns a Deferred because dialplan applications take time (``EXEC Wait 2``). It
  fires with the application's return value, as Asterisk's ``EXEC`` reports it: ``0`` for
  success, ``-1`` when the channel hung up / the app asked to hang up, ``-2`` when the application
  does not exist. It may already have fired when returned.
- ``next_keys`` asks the caller model what it presses next: ``("12", 1.5)`` = presses "1" then "2",
  starting 1.5 s after the prompt began; ``("", t)`` = stays silent; ``None`` = never presses
  anything again. The client schedules the presses on its clock and calls ``receive_dtmf`` once
  per digit at the moment the digit arrives (the channel emits DTMFBegin/DTMFEnd with
  ``Direction: Received``, as fastagi_ami.txt shows them).
- ``emit_agi_exec(start=True, command)`` before each AGI command, then
  ``emit_agi_exec(start=False, command, result_code, result)`` once it completes. The channel
  pairs the two with one ``CommandId`` (one command is in flight per channel at a time, as in
  Asterisk). Real transcript pairs: 200 "Success", -1 "Failure", 510 "Invalid or unknown command",
  511 "Command Not Permitted on a dead channel or intercept routine", 520 "Usage".
- After the caller hangs up, ``hungup`` is True, ``on_hangup`` callbacks have run once, and the
  channel still answers ``get_var``/``emit_agi_exec`` (Asterisk keeps emitting AGIExec events for a
  dead channel with its last state, see fastagi_ami.txt). The client reports ``HANGUP`` to the AGI
  server and ends the session with "HANGUP" as the AGI result, unless the script already ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from twisted.internet.defer import Deferred

# AGIExecEnd ResultCode -> Result text, exactly as Asterisk 22 writes them (fastagi_ami.txt).
AGI_RESULT_TEXT: dict[int, str] = {
    200: "Success",
    -1: "Failure",
    510: "Invalid or unknown command",
    511: "Command Not Permitted on a dead channel or intercept routine",
    520: "Usage",
}


@runtime_checkable
class AgiChannel(Protocol):
    """One simulated channel as a FastAGI client sees it while ``AGI()`` runs on it."""

    @property
    def name(self) -> str:
        """Channel name, e.g. ``PJSIP/trunk-00000003`` or ``Local/ivr@sim-00000000;1``."""
        ...

    @property
    def uniqueid(self) -> str:
        """``<epoch>.<n>`` as Asterisk prints it."""
        ...

    @property
    def linkedid(self) -> str:
        """Uniqueid of the oldest channel of the call."""
        ...

    @property
    def context(self) -> str:
        """Dialplan context the AGI application runs in."""
        ...

    @property
    def exten(self) -> str:
        """Extension the AGI application runs in."""
        ...

    @property
    def priority(self) -> int:
        """Priority of the ``AGI()`` step."""
        ...

    @property
    def caller_num(self) -> str:
        """``${CALLERID(num)}``; ``""`` when unknown (agi env then says ``unknown``)."""
        ...

    @property
    def caller_name(self) -> str:
        """``${CALLERID(name)}``; ``""`` when unknown (agi env then says ``unknown``)."""
        ...

    @property
    def dnis(self) -> str:
        """Dialled number (``agi_dnid``); ``""`` when unknown."""
        ...

    @property
    def rdnis(self) -> str:
        """Redirecting number (``agi_rdnis``); ``""`` when unknown."""
        ...

    @property
    def language(self) -> str:
        """``${CHANNEL(language)}``, ``en`` by default."""
        ...

    @property
    def accountcode(self) -> str:
        """Account code, usually ``""``."""
        ...

    @property
    def state(self) -> int:
        """Asterisk channel state number (6 = Up, 4 = Ring, ...); what ``CHANNEL STATUS`` returns."""
        ...

    @property
    def hungup(self) -> bool:
        """True once the channel has been hung up (by the caller, a Hangup action, ...)."""
        ...

    def get_var(self, name: str) -> str | None:
        """Value of a channel variable (falling back to globals), or None when unset. Also answers
        the read-only built-ins ``CHANNEL``, ``UNIQUEID``, ``EXTEN``, ``CONTEXT``, ``PRIORITY``."""
        ...

    def set_var(self, name: str, value: str) -> None:
        """Set a channel variable (``__NAME``/``_NAME`` inheritance honoured); emits ``VarSet``."""
        ...

    def substitute(self, text: str) -> str:
        """Expand ``${VAR}``, ``${FUNC(args)}`` and ``$[expr]`` in ``text`` as the dialplan would
        (``GET FULL VARIABLE``)."""
        ...

    def answer(self) -> None:
        """Answer the channel if not yet Up (emits Newstate Up); no-op when already Up."""
        ...

    def hangup(self, cause: int = 16) -> None:
        """Hang the channel up with a Q.850 cause (AGI ``HANGUP``)."""
        ...

    def exec_app(self, app: str, data: str) -> Deferred[int]:
        """Run one dialplan application on the channel (AGI ``EXEC``); see the module docstring."""
        ...

    def next_keys(self) -> tuple[str, float] | None:
        """What the caller presses next and after how many seconds; see the module docstring."""
        ...

    def receive_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """The caller's ``digit`` arrives now: emit DTMFBegin/DTMFEnd (Direction: Received)."""
        ...

    def on_hangup(self, cb: Callable[[], None]) -> None:
        """Call ``cb()`` once when the channel hangs up (immediately if it already has)."""
        ...

    def emit_agi_exec(self, start: bool, command: str, result_code: int = 200, result: str = "") -> None:
        """Emit AGIExecStart (``start``) or AGIExecEnd for ``command``; ``result`` defaults to
        ``AGI_RESULT_TEXT[result_code]``."""
        ...
