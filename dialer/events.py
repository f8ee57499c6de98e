"""What the dialer engine reports: frozen values, no I/O. Must not import the engine or any I/O module.

``AttemptStarted`` must be made durable (``dialer.store``) before the attempt's Originate goes out: the
engine hands the Originate over only when told the write succeeded (``Campaign.persisted``). That is
what lets a crash neither lose a lead nor dial it twice.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DialerEvent:
    ts: float
    campaign: str


@dataclass(frozen=True, slots=True)
class AttemptStarted(DialerEvent):
    """A lead is about to be dialled (attempt number ``attempt``, ActionID/ref ``ref``)."""

    lead_id: str
    ref: str
    attempt: int
    number: str


@dataclass(frozen=True, slots=True)
class AttemptAnswered(DialerEvent):
    """A person answered (AMD said HUMAN or NOTSURE) and waits for a campaign agent."""

    lead_id: str
    ref: str
    uniqueid: str


@dataclass(frozen=True, slots=True)
class AttemptFinished(DialerEvent):
    """An attempt ended with ``result`` (connected, busy, noanswer, congestion, machine, failed, hangup,
    abandoned, unknown); the lead is now ``lead_status`` (pending with ``next_at``, done, exhausted).
    ``late``: a person was connected, but after the safe-harbour time (counts as abandoned).
    The compliance evidence (``dialer.compliance``): ``person``: a person answered (AMD said HUMAN or
    NOTSURE, or the call was queued); ``amd``: the AMD verdict (HUMAN, NOTSURE, MACHINE, HANGUP; "" none);
    ``ring_seconds``: from the Originate to the answer or the give-up (None: never dialled);
    ``message_in_time``: of an abandoned call, whether the safe-harbour message started within the
    policy's 2 s of the greeting (None: not abandoned)."""

    lead_id: str
    ref: str
    attempt: int
    result: str
    lead_status: str
    next_at: float | None
    uniqueid: str = ""
    agent_wait: float | None = None  # seconds from the person's answer to the agent's
    late: bool = False
    person: bool = False
    amd: str = ""
    ring_seconds: float | None = None
    message_in_time: bool | None = None


@dataclass(frozen=True, slots=True)
class DialerWarning(DialerEvent):
    """Something the operator should see (a refused lead, a store failure, an unexpected event)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class PreviewOffered(DialerEvent):
    """Preview mode (or a campaign stepped down to preview, or an agent's own callback): the lead pops to
    ``agent_id``, who is to accept (the lead is dialled and, answered, connected to this agent) or skip it
    before ``deadline``. ``ref`` is the attempt an accept starts (the
    ACD holds the agent for it). Not stored: the lead stays pending in the store until it is dialled."""

    lead_id: str
    ref: str
    agent_id: str
    fields: dict[str, str]
    deadline: float
    callback_due: float | None = None  # an agent's own scheduled callback (offered to it alone): when it was due
    callback_notes: str = ""


@dataclass(frozen=True, slots=True)
class PreviewEnded(DialerEvent):
    """A preview is over for ``agent_id``. ``outcome``: ``accepted`` (dialled; the agent stays held for the
    call), ``skipped`` (``reason`` says why), ``timeout``, or the dialled attempt's result when it did not
    reach the agent (busy, noanswer, machine, ...). ``release``: the agent is to be freed, and
    ``not_ready`` the reason to make it not ready with, if any."""

    lead_id: str
    ref: str
    agent_id: str
    outcome: str
    reason: str = ""
    release: bool = True
    not_ready: str = ""
