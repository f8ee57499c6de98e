"""Channel and Call records of the call tracker, and the Asterisk constants they use. Pure values, no I/O.

Must not import Twisted, sockets, a database, the clock, or any engine package.
"""

from __future__ import annotations

from cti.events import CallEnded

VANISHED_TXT = "Vanished during AMI outage"
HANDED_OVER_TXT = "Handed over to another node"  # this node lost the PBX's lease (centre.node_leases)
UNKNOWN = "<unknown>"

STATE_RING = 4
STATE_RINGING = 5
STATE_UP = 6

MAX_VARS_PER_CHANNEL = 128
MAX_NAMES_PER_CALL = 64
MAX_HANGUPS_PER_CALL = 64
MAX_DEPARTED_PER_BRIDGE = 16
DEFAULT_MAX_DEVICES = 20_000
DEFAULT_MAX_CHANNELS = 200_000
DEFAULT_LATE_WINDOW = 20_000


def ami_int(value: str | None, default: int = 0) -> int:
    """Parse an AMI integer field; anything else (missing, empty, junk) gives ``default``."""
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        return default


def channel_age(value: str | None) -> int:
    """Seconds of a CoreShowChannel ``Duration`` (``HH:MM:SS``; hours may pass 99); 0 if missing or junk."""
    if not value:
        return 0
    seconds = 0
    for part in value.strip().split(":"):
        if not part.isdigit():
            return 0
        seconds = seconds * 60 + int(part)
    return seconds


def clean_callerid(value: str | None) -> str:
    return "" if value is None or value == UNKNOWN else value


def device_of(name: str) -> str:
    """The device (endpoint) a channel name belongs to: ``PJSIP/1001-0000000a`` -> ``PJSIP/1001``,
    ``Local/agent1@agents-00000001;1`` -> ``Local/agent1@agents`` (as in DeviceStateChange)."""
    base = name.rsplit(";", 1)[0] if name.startswith("Local/") else name
    head, sep, _tail = base.rpartition("-")
    return head if sep else base


class Channel:
    """One Asterisk channel as last seen. Mutable, owned by the tracker: read it, do not change it."""

    __slots__ = (
        "account_code",
        "answered",
        "bridge_id",
        "call",
        "caller_name",
        "caller_num",
        "cause",
        "cause_txt",
        "connected_name",
        "connected_num",
        "context",
        "created",
        "device",
        "dialed_by",
        "ended",
        "exten",
        "language",
        "left_by",
        "linkedid",
        "local_peer",
        "name",
        "on_hold",
        "priority",
        "ringing",
        "server",
        "stale",
        "state",
        "state_desc",
        "transferred_away",
        "uniqueid",
        "variables",
    )

    def __init__(self, server: str, uniqueid: str, linkedid: str, name: str, now: float) -> None:
        self.server = server
        self.uniqueid = uniqueid
        self.linkedid = linkedid
        self.name = name
        self.device = device_of(name)
        self.state = 0
        self.state_desc = ""
        self.caller_num = ""
        self.caller_name = ""
        self.connected_num = ""
        self.connected_name = ""
        self.context = ""
        self.exten = ""
        self.priority = 0
        self.language = ""
        self.account_code = ""
        self.variables: dict[str, str] = {}
        self.bridge_id: str | None = None
        self.created = now
        self.answered: float | None = None
        self.ended: float | None = None
        self.cause: int | None = None
        self.cause_txt = ""
        self.local_peer: str | None = None  # uniqueid of the other half of a Local ;1/;2 pair
        self.dialed_by: str | None = None  # uniqueid of the channel whose Dial created this one
        self.on_hold = False
        self.ringing = False  # ChannelRinging already emitted
        self.stale = False  # connection lost since we last heard of it
        self.transferred_away = False  # this leg handed its call over (blind/attended transfer)
        # Channels of other legs that left this channel's last bridge alive before it did (moved away by a
        # Redirect or a transfer); cleared when it runs dialplan again or enters a bridge.
        self.left_by: tuple[str, ...] = ()
        self.call: Call | None = None

    @property
    def leg(self) -> str:
        """Logical-leg id: the two halves of a Local pair share one."""
        peer = self.local_peer
        return self.uniqueid if peer is None or self.uniqueid < peer else peer

    def __repr__(self) -> str:
        return f"Channel({self.server!r}, {self.uniqueid!r}, {self.name!r}, state={self.state})"


class HangupRecord:
    """One hang-up of a call: who, with what cause, and what it tells about who ended the call.

    ``left_behind``: the channel hung up alone in a bridge that other legs had left alive (moved away by
    a Redirect, a transfer): Asterisk ended it because its partners went elsewhere, it ended nothing."""

    __slots__ = ("answered", "cause", "cause_txt", "left_behind", "leg", "name", "transferred", "uniqueid")

    def __init__(
        self,
        name: str,
        cause: int,
        cause_txt: str,
        uniqueid: str = "",
        leg: str = "",
        *,
        answered: bool = False,
        transferred: bool = False,
        left_behind: bool = False,
    ) -> None:
        self.name = name
        self.cause = cause
        self.cause_txt = cause_txt
        self.uniqueid = uniqueid
        self.leg = leg or uniqueid
        self.answered = answered
        self.transferred = transferred
        self.left_behind = left_behind


class Call:
    """One call (Linkedid): its live channels and what happened so far."""

    __slots__ = (
        "answered",
        "channel_names",
        "channels",
        "created",
        "ended",
        "end_event",
        "hangups",
        "linkedid",
        "moved",
        "server",
        "up",
    )

    def __init__(self, server: str, linkedid: str, now: float) -> None:
        self.server = server
        self.linkedid = linkedid
        self.channels: dict[str, Channel] = {}  # live channels by uniqueid
        self.channel_names: list[str] = []
        self.created = now
        self.answered: float | None = None  # first time two logical legs were bridged
        self.up = False
        self.ended: float | None = None
        self.end_event: CallEnded | None = None
        self.hangups: list[HangupRecord] = []  # in order, at most MAX_HANGUPS_PER_CALL
        # Uniqueids and legs that handed the call over, learnt after they hung up (Asterisk may send the
        # transferer's Hangup before the AttendedTransfer event).
        self.moved: set[str] = set()

    @property
    def call_id(self) -> str:
        return self.linkedid

    @property
    def cause(self) -> int | None:
        """Hangup cause of the ended call (see CallEnded), None while it lasts."""
        return None if self.end_event is None else self.end_event.cause

    @property
    def cause_txt(self) -> str:
        return "" if self.end_event is None else self.end_event.cause_txt

    @property
    def hung_up_by(self) -> str | None:
        return None if self.end_event is None else self.end_event.hung_up_by

    def __repr__(self) -> str:
        return f"Call({self.server!r}, {self.linkedid!r}, channels={len(self.channels)})"
