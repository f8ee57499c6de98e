"""What answers a simulated PJSIP call: the far-end behaviour of agent phones and PSTN customers.
Pure values and a Protocol; imports no sim module, no Twisted, no clock.

The PBX asks a ``FarEndDirectory`` each time it calls out on PJSIP (Dial, Originate). The people
models (sim/people.py) are adapted to it by sim/traffic.py; tests use small fixed directories.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

Outcome = Literal["answer", "busy", "noanswer", "congestion", "unavailable"]


@dataclass(frozen=True, slots=True)
class FarEnd:
    """One call attempt's fate at the far end.

    ``ring_time``: seconds of ringing before the outcome (answer/busy/congestion); ``noanswer``
    rings until the caller gives up; ``unavailable`` fails at once (endpoint not registered).
    ``talk_time``: once answered, the far end hangs up after this many seconds (None = never).
    ``machine``: an answering machine picked up (AMD() reports MACHINE).
    ``amd_wrong``: AMD() takes this far end for what it is not (a person for a MACHINE, a machine for a
    HUMAN), as app_amd does now and then on real calls.
    """

    outcome: Outcome
    ring_time: float = 0.0
    talk_time: float | None = None
    machine: bool = False
    amd_wrong: bool = False

    @property
    def amd_says_machine(self) -> bool:
        """What AMD() concludes about this far end."""
        return self.machine != self.amd_wrong


def asks_auto_answer(headers: Iterable[tuple[str, str]]) -> bool:
    """Whether an INVITE's headers ask the phone to answer by itself at once, as common phones read
    them: ``Call-Info: <uri>;answer-after=0`` (Yealink, Snom, Grandstream, Fanvil, Cisco SPA, Linphone)
    or ``Alert-Info: ...info=alert-autoanswer`` / ``Alert-Info: Ring Answer`` / ``auto answer`` (Polycom
    and others)."""
    for name, value in headers:
        low = value.lower().replace(" ", "")
        if name.lower() == "call-info" and "answer-after=0" in low:
            return True
        if name.lower() == "alert-info" and any(k in low for k in ("alert-autoanswer", "ringanswer", "autoanswer")):
            return True
    return False


class FarEndDirectory(Protocol):
    """Answers "what happens if I call ``target`` through PJSIP endpoint ``endpoint`` now"."""

    def call(self, endpoint: str, target: str, now: float) -> FarEnd | None:
        """``target`` is the number for trunk calls (``PJSIP/+1555@trunk``), ``""`` for a phone;
        None means there is no such endpoint (the request fails like an unknown technology)."""
        ...


@dataclass(slots=True)
class FixedFarEnds:
    """A deterministic directory: one FarEnd per endpoint (and optionally per dialled number)."""

    by_endpoint: dict[str, FarEnd]
    by_number: dict[str, FarEnd] | None = None

    def call(self, endpoint: str, target: str, now: float) -> FarEnd | None:
        if target and self.by_number and target in self.by_number:
            return self.by_number[target]
        return self.by_endpoint.get(endpoint)


def parse_pjsip_dial(resource: str) -> tuple[str, str]:
    """``1001`` -> (``1001``, ``""``); ``+15551234567@trunk`` -> (``trunk``, ``+15551234567``);
    ``trunk/sip:+1555@host`` -> (``trunk``, ``+1555``)."""
    if "/" in resource:
        endpoint, _, uri = resource.partition("/")
        user = uri.split(":", 1)[-1].split("@", 1)[0]
        return endpoint, user
    if "@" in resource:
        number, _, endpoint = resource.partition("@")
        return endpoint, number
    return resource, ""
