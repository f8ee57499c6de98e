"""Domain events about calls and channels, rebuilt from AMI by ``cti.calls``. Frozen values, no I/O.

Every event names the Asterisk ``server`` it came from; channel identities are (server, uniqueid)
and calls are (server, linkedid). ``ts`` is the tracker's clock time (seconds, float) passed in by
the caller, never read here. Engines (ACD, dialer, screen pops) consume these; engine-specific
events live in their own packages (``acd/events.py``, ...).

Events are built with keyword arguments only and check on construction what is cheap to check (a
non-empty server and channel id, a known transfer kind): a bad one raises ``ValueError`` and is never
built. No event holds a mutable container: variables are a read-only mapping over a copy
(``frozen_mapping``), lists are tuples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NoReturn

EMPTY_MAPPING: Mapping[str, Any] = MappingProxyType({})
TRANSFER_KINDS = frozenset({"blind", "attended"})


def frozen_mapping(items: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only view over a copy of ``items``: the event's owner cannot change it afterwards."""
    if not items:
        return EMPTY_MAPPING
    return MappingProxyType(dict(items))


def no_mapping() -> Mapping[str, Any]:
    """The default of a mapping field (dataclasses refuse a shared mapping as a plain default)."""
    return EMPTY_MAPPING


def refuse_empty(event: object, *names: str) -> NoReturn:
    """Raise ``ValueError`` naming the first of ``names`` that is empty in ``event``. Events test their fields
    inline (``if not (self.a and self.b)``: the cheap path on every event) and call this only to report."""
    for name in names:
        value = getattr(event, name)
        if not value:
            raise ValueError(f"{type(event).__name__}.{name} must be a non-empty string, got {value!r:.40}")
    raise ValueError(f"{type(event).__name__}: one of {', '.join(names)} is empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainEvent:
    server: str
    ts: float

    def __post_init__(self) -> None:
        if not self.server:
            refuse_empty(self, "server")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEvent(DomainEvent):
    """An event about one channel of a call: ``uniqueid`` names it on ``server`` (empty where Asterisk did
    not say, e.g. the caller side of an originate's DialBegin)."""

    call_id: str  # Linkedid
    uniqueid: str
    channel: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(ChannelEvent):
    """A new call (Linkedid) appeared: its first channel was created."""

    caller_num: str
    caller_name: str
    context: str
    exten: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelRinging(ChannelEvent):
    """A channel of a call is ringing (ChannelState 5 Ringing / 4 Ring, or DialBegin to it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelAnswered(ChannelEvent):
    """A channel went Up (ChannelState 6)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DialStarted(ChannelEvent):
    """DialBegin: ``uniqueid`` (the caller side) dials ``dest_uniqueid`` on ``dest_channel``."""

    dest_uniqueid: str
    dest_channel: str
    dial_string: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DialEnded(ChannelEvent):
    """DialEnd with Asterisk's DialStatus: ANSWER, NOANSWER, BUSY, CHANUNAVAIL, CONGESTION, CANCEL..."""

    dest_uniqueid: str
    dest_channel: str
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallBridged(DomainEvent):
    """Two or more logical legs are now in one bridge (BridgeEnter of the second channel)."""

    call_id: str
    bridge_id: str
    uniqueids: tuple[str, ...]
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallTransferred(ChannelEvent):
    """BlindTransfer or AttendedTransfer completed.

    ``uniqueid``/``channel`` name the transferer (the leg that hands the call over); ``transferee_*``
    the party being transferred (usually the customer), empty if Asterisk did not say.
    """

    kind: str  # "blind" | "attended"
    target: str  # extension@context, or the other bridge's channel for attended
    result: str
    transferee_uniqueid: str = ""
    transferee_channel: str = ""

    def __post_init__(self) -> None:
        if not self.server:
            refuse_empty(self, "server")
        if self.kind not in TRANSFER_KINDS:
            raise ValueError(f"CallTransferred.kind must be blind or attended, got {self.kind!r:.40}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelHungup(ChannelEvent):
    """One channel ended (AMI Hangup) with its cause."""

    cause: int
    cause_txt: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingChanged(ChannelEvent):
    """A MixMonitor event on a channel: ``what`` is ``started`` (MixMonitorStart), ``stopped``
    (MixMonitorStop: StopMixMonitor only; a hangup ends a recording without one) or ``muted``/``unmuted``
    (MixMonitorMute, State 1/0)."""

    what: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(DomainEvent):
    """The last channel of a call ended.

    ``hung_up_by`` is the channel that ended the conversation: the first channel to hang up while Up
    (legs that hung up to complete a transfer, even before Asterisk reported the transfer, and legs
    hung up because the others left their bridge alive, e.g. moved by a Redirect, do not count);
    if no channel was Up, the first one that
    hung up with a non-zero cause, else the first one. ``cause``/``cause_txt`` are that hangup's
    (or the first non-zero cause of the call when that one is 0). Cause 0 with ``cause_txt``
    "Vanished during AMI outage" means the call's channels disappeared while we were disconnected
    (resync after reconnect); "Merged into call X" (with ``merged_into``) means Asterisk moved its
    last channel into another call (Linkedid changed, e.g. after an AMI Bridge or a transfer).

    ``answered``: two logical legs (a Local ;1/;2 pair counts as one) were connected in a bridge,
    i.e. a person (agent, transfer target, dialled party) took the call. ``up``: some channel of the
    call was answered at all (by the IVR, the PBX or the called party); a queued caller who abandons
    is ``up`` but not ``answered``. ``channels`` lists channel names of the call (at most 64).
    """

    call_id: str
    cause: int
    cause_txt: str
    hung_up_by: str | None
    answered: bool
    duration: float
    channels: tuple[str, ...] = ()
    up: bool = False
    merged_into: str | None = None

    def __post_init__(self) -> None:
        if not (self.server and self.call_id):
            refuse_empty(self, "server", "call_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class VariableSet(ChannelEvent):
    """A ``CTI_*`` channel variable was set (VarSet)."""

    name: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStateChanged(DomainEvent):
    """DeviceStateChange of an endpoint, e.g. ``PJSIP/1001`` -> NOT_INUSE / INUSE / RINGING / UNAVAILABLE."""

    device: str
    state: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallQueued(ChannelEvent):
    """A caller entered the holding context (dialplan ``UserEvent(CTIQueued,...)`` in ``cti-hold``).

    Emitted by the tracker for inbound calls after the IVR and for outbound humans alike. ``data``
    carries every ``CTI_*`` channel variable known for the channel at that moment.
    """

    queue: str
    skills: str
    priority: int
    language: str
    caller_num: str
    caller_name: str
    dnis: str
    data: Mapping[str, str] = field(default_factory=no_mapping)

    def __post_init__(self) -> None:
        if not (self.server and self.uniqueid):
            refuse_empty(self, "server", "uniqueid")
        if self.data is not EMPTY_MAPPING:  # the default needs no copy
            object.__setattr__(self, "data", frozen_mapping(self.data))


@dataclass(frozen=True, slots=True, kw_only=True)
class CallReturnedToHold(ChannelEvent):
    """An offer to an agent ended without a conversation: dialplan ``UserEvent(CTIReturned,...)`` in
    ``cti-hold,return``. ``dial_status`` is Asterisk's DIALSTATUS (NOANSWER, BUSY, CHANUNAVAIL...)."""

    queue: str
    agent_id: str
    dial_status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AmdResult(ChannelEvent):
    """Answering-machine detection finished on an outbound call (``UserEvent(CTIAmd,...)`` in
    ``cti-outbound``). ``status`` is AMDSTATUS: HUMAN, MACHINE, NOTSURE or HANGUP; ``cause`` AMDCAUSE."""

    status: str
    cause: str
    lead_id: str
    campaign: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginateResult(DomainEvent):
    """OriginateResponse: ``reason`` is Asterisk's code (4 answered, 5 busy, 8 congestion, 3 no answer, 0 failed)."""

    action_id: str
    success: bool
    reason: int
    channel: str
    uniqueid: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AmiConnectionChanged(DomainEvent):
    """The AMI connection to ``server`` went up or down (for the wallboard and engines)."""

    connected: bool
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallHoldChanged(DomainEvent):
    """An agent put a queued caller on hold (``held``) or took them back: the caller's ``uniqueid`` and
    ``call_id``, the ``queue`` and ``agent_id`` of the agent's part (the console's hold and retrieve)."""

    call_id: str
    uniqueid: str
    queue: str
    agent_id: str
    held: bool

    def __post_init__(self) -> None:
        if not (self.server and self.uniqueid):
            refuse_empty(self, "server", "uniqueid")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallTransferredOut:
    """An agent's part of a queue's call ended with the caller sent on to an outside number (a blind
    transfer to a number, an attended transfer completed): the statistics count it in the queue's transfers
    (as a transfer to a queue, at the part's end)."""

    ts: float
    queue: str
    agent_id: str
    server: str = ""
    uniqueid: str = ""
    call_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentCallbackScheduled:
    """An agent scheduled a callback from the console on a call of ``queue`` (``call_id``), once it was stored
    (the statistics count it in the queue's callbacks requested, as the IVR's ``CallbackRequested``)."""

    ts: float
    queue: str
    agent_id: str
    call_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsolePushRelayed:
    """A push to an agent's console, relayed to the other nodes (several nodes on Redis): the node whose engines
    made it publishes it, and every other node hands ``message`` (the push as JSON, as the console protocol
    encodes it) to that agent's console if it is connected there, and keeps the agent's last pop and call for a
    console that connects to it later (``centre.console_relay``). No ``call_id``: the transport orders it with
    the agent's other events (its state changes)."""

    ts: float
    agent_id: str
    message: str

    def __post_init__(self) -> None:
        if not (self.agent_id and self.message):
            refuse_empty(self, "agent_id", "message")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleActionRelayed:
    """An agent's action on its call (hold, transfer, hang up, ...) asked on a console of one node while another
    node's PBX carries the call (several nodes): the node whose call session it is carries it out and answers
    with ``ConsoleActionReplied`` (``centre.console_relay``). ``request`` is the asking node's id and its count;
    ``params`` the action's parameters as JSON."""

    ts: float
    request: str
    agent_id: str
    call_id: str
    action: str
    params: str

    def __post_init__(self) -> None:
        if not (self.request and self.agent_id and self.call_id and self.action):
            refuse_empty(self, "request", "agent_id", "call_id", "action")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleActionReplied:
    """The answer to a ``ConsoleActionRelayed``: ``ok`` and ``body`` (JSON: the action's result, or
    ``{"error": id, "message": text, ...details}``)."""

    ts: float
    request: str
    agent_id: str
    ok: bool
    body: str

    def __post_init__(self) -> None:
        if not (self.request and self.agent_id):
            refuse_empty(self, "request", "agent_id")
