"""A simulated channel and a bridge: state, identity, variables and the AgiChannel face the FastAGI
client uses. Data plus thin delegation to the Pbx (sim.pbx) that owns them; no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall

from sim.agi_channel import AGI_RESULT_TEXT
from sim.ami_events import Headers
from sim.far_end import FarEnd

if TYPE_CHECKING:
    from sim.pbx import Pbx


class KeySource(Protocol):
    """The person on an inbound channel, as the IVR hears them (see AgiChannel.next_keys)."""

    def next_keys(self) -> tuple[str, float] | None: ...


# AGI commands that play audio to the channel (they end a Local peer's wait for media).
_MEDIA_COMMANDS = ("STREAM FILE", "CONTROL STREAM FILE", "GET DATA", "GET OPTION", "SAY ", "EXEC PLAYBACK",
                   "EXEC BACKGROUND", "SET MUSIC ON")
Observer = Callable[["Channel", str], None]


@dataclass(slots=True)
class Block:
    """A dialplan application waiting: for a timeout, a far end, an AGI session, a bridge..."""

    d: Deferred[int]
    timer: IDelayedCall | None = None
    interruptible: bool = True
    cleanup: Callable[[], None] | None = None
    done: bool = False


class Channel:
    """One simulated channel; implements sim.agi_channel.AgiChannel for the FastAGI client."""

    def __init__(self, pbx: Pbx, name: str, tech: str, device: str, uniqueid: str, context: str,
                 exten: str, state: int, linkedid: str | None = None) -> None:
        self.pbx = pbx
        self._name = name
        self.tech = tech
        self.device = device
        self._uniqueid = uniqueid
        self._linkedid = linkedid or uniqueid
        self._state = state
        self._context = context
        self._exten = exten
        self._priority = 1
        self._caller_num = ""
        self._caller_name = ""
        self.conn_num = ""
        self.conn_name = ""
        self._language = "en"
        self._accountcode = ""
        self.variables: dict[str, str] = {}
        self.app = ""
        self.appdata = ""
        self.dnid = ""
        self.created = pbx.clock.seconds()
        self.answered_at: float | None = None
        self.hangupcause = 0
        self.soft = False  # softhangup requested (explicit or queued)
        self.dead = False
        self.peer: Channel | None = None  # the other half of a Local pair
        self.local_one = False  # ;1 half
        self.bridge: Bridge | None = None
        self.block: Block | None = None
        self.in_pbx = False  # a dialplan run owns the channel
        self.stepping = False  # inside the runner's synchronous loop
        self.jumped = False
        self.goto_target: tuple[str, str, int] | None = None  # pending async goto (Redirect)
        self.observer: Observer | None = None  # the Dial/Originate waiting on this outgoing channel
        self.far_end: FarEnd | None = None
        self.keys: KeySource | None = None
        self.moh = False
        self.on_hold = False
        self.cdr_dest_channel = ""
        self.cdr_last_app = ""
        self.cdr_last_data = ""
        self.cdr_dst = exten
        self.cdr_dcontext = context
        self.cdr_disposition: str | None = None
        self._hangup_cbs: list[Callable[[], None]] = []
        self.dtmf_listeners: list[Callable[[str], None]] = []
        self._agi_command_id = ""
        self.timers: list[IDelayedCall] = []
        self.device_final = "NOT_INUSE"
        self.before_destroy: Callable[[Channel], None] | None = None
        self.mixmonitors: list[str] = []  # files of the MixMonitors running on it, oldest first (sim.mixmonitor)
        self.audiohooks = False  # an audiohook list exists (once a MixMonitor was attached, as in Asterisk)
        self.atxfer: object | None = None  # the attended transfer this channel is doing (sim.transfers)
        # FEATUREMAP(name) set on this channel (over features.conf), and the DTMF transfer features
        # Dial gave it (option t: the called party, T: the calling party), kept on the channel like
        # Asterisk's features datastore so that later bridges (an AMI Bridge after hold) have them too.
        self.featuremap: dict[str, str] = {}
        # SIP headers added to this PJSIP channel's INVITE (PJSIP_HEADER(add,...) in a pre-dial handler).
        self.sip_headers: list[tuple[str, str]] = []
        self.xfer_features = False
        # The atxfer code hooked when the channel last joined a bridge ("" = none): Asterisk installs a
        # channel's DTMF feature hooks as it enters a bridge, so a code set later is not heard.
        self.atxfer_hook = ""
        self.pending_caller: tuple[str, str] | None = None
        self.republish_location = False  # a Gosub returned: the next snapshot update shows a Newexten
        # A location already published by a Newexten (a redirect out of a bridge): its first step has none.
        self.cep_published: tuple[str, str, int] | None = None
        self.cdr_frozen = False
        self.awaiting_media: Block | None = None
        # Audio this channel sends (Playback, music on hold: a count, they can overlap) and who hears
        # what its Local peer sends (True: frames start, False: they stop), see Pbx.voice.
        self.playing = 0
        self.voice_listeners: list[Callable[[bool], None]] = []

    # AgiChannel / snapshot attributes ----------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def uniqueid(self) -> str:
        return self._uniqueid

    @property
    def linkedid(self) -> str:
        return self._linkedid

    @property
    def state(self) -> int:
        return self._state

    @property
    def context(self) -> str:
        return self._context

    @property
    def exten(self) -> str:
        return self._exten

    @property
    def priority(self) -> int:
        return self._priority

    @property
    def caller_num(self) -> str:
        return self._caller_num

    @property
    def caller_name(self) -> str:
        return self._caller_name

    @property
    def dnis(self) -> str:
        return self.dnid

    @property
    def rdnis(self) -> str:
        return ""

    @property
    def language(self) -> str:
        return self._language

    @property
    def accountcode(self) -> str:
        return self._accountcode

    @property
    def hungup(self) -> bool:
        return self.dead or self.soft

    # raw writes: the Pbx (sim.pbx) makes them and publishes the matching events; others go through it --
    def write_caller(self, num: str, name: str) -> None:
        self._caller_num, self._caller_name = num, name

    def write_accountcode(self, code: str) -> None:
        self._accountcode = code

    def write_language(self, language: str) -> None:
        self._language = language

    def write_state(self, state: int) -> None:
        self._state = state

    def write_linkedid(self, linkedid: str) -> None:
        self._linkedid = linkedid

    def write_location(self, context: str, exten: str, priority: int) -> None:
        self._context, self._exten, self._priority = context, exten, priority

    def write_exten(self, exten: str) -> None:
        self._exten = exten

    def next_priority(self) -> None:
        self._priority += 1

    def take_hangup_callbacks(self) -> list[Callable[[], None]]:
        """The callbacks ``on_hangup`` registered, now removed (each runs once)."""
        cbs, self._hangup_cbs = self._hangup_cbs, []
        return cbs

    # variables ------------------------------------------------------------------------
    def get_var(self, name: str) -> str | None:
        return self.pbx.get_var(self, name)

    def set_var(self, name: str, value: str) -> None:
        self.pbx.set_var(self, name, value)

    def substitute(self, text: str) -> str:
        return self.pbx.substitute(self, text)

    # AgiChannel actions ---------------------------------------------------------------
    def answer(self) -> None:
        self.pbx.answer(self)

    def hangup(self, cause: int = 16) -> None:
        self.pbx.softhangup(self, cause)

    def exec_app(self, app: str, data: str) -> Deferred[int]:
        return self.pbx.exec_app(self, app, data)

    def next_keys(self) -> tuple[str, float] | None:
        return self.keys.next_keys() if self.keys is not None else None

    def receive_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        self.pbx.dtmf(self, digit, duration_ms, begin=True)

    def on_hangup(self, cb: Callable[[], None]) -> None:
        if self.dead or self.soft:
            cb()
        else:
            self._hangup_cbs.append(cb)

    def emit_agi_exec(self, start: bool, command: str, result_code: int = 200, result: str = "") -> None:
        if start and command.upper().startswith(_MEDIA_COMMANDS):
            self.pbx.media(self)
        if start or not self._agi_command_id:
            self._agi_command_id = str(self.pbx.rng.randrange(1, 2**31))
        extra: Headers = [("CommandId", self._agi_command_id), ("Command", command)]
        if not start:
            extra += [("ResultCode", str(result_code)), ("Result", result or AGI_RESULT_TEXT.get(result_code, ""))]
        self.pbx.chan_event("AGIExecStart" if start else "AGIExecEnd", self, extra, "agi,all")

    def __repr__(self) -> str:
        return f"<Channel {self._name} {self._context},{self._exten},{self._priority}>"


@dataclass(slots=True)
class Bridge:
    """A basic two-party (or more) bridge."""

    uniqueid: str
    channels: list[Channel] = field(default_factory=list)
    # What happens to members when the bridge dissolves: "dial" (caller returns from Dial, callee
    # hangs up) or "action" (AMI Bridge: both continue their dialplan).
    kind: str = "action"
    caller: Channel | None = None
    frozen: bool = False  # an attended transfer holds it: do not dissolve when one party leaves
    # The hangup cause of the party whose leaving dissolves it: the others are put out with it (or
    # AST_CAUSE_NORMAL_CLEARING), as bridge_channel.c's channel_set_cause does.
    cause: int = 0

    @property
    def num_channels(self) -> int:
        return len(self.channels)
