"""CallTracker: channels and calls rebuilt from the AMI event stream, and resync after a reconnect. Sans-I/O.

Must not import Twisted, sockets, a database, the clock, or any engine package (acd, dialer, ...):
AMI messages and the current time go in, ``cti.events`` domain events come out.

Identities: a channel is (server, Uniqueid), a call is (server, Linkedid). Asterisk moves a channel
to another Linkedid when it bridges unrelated calls (AMI ``Bridge``, transfers); the tracker follows
(the channel changes call, and a call left without channels ends "Merged into call X").

Asterisk behaviours handled here (see the transcripts' README):

- Local channels come in ``;1``/``;2`` pairs (``LocalBridge``); a pair is one logical leg, so a
  caller's ``;1`` bridged with an agent's ``;1`` is two legs, while the two halves of one pair never are.
- Events of different calls interleave, ``Cdr`` and ``DialEnd`` may follow a ``Hangup``, and
  ``OriginateResponse`` may precede ``Newchannel``: events naming a channel that ended recently are
  dropped (counted as ``late``), never resurrect it; events naming a channel never seen create it
  lazily from their snapshot (``lazy_created``).
- ``VarSet`` is reported with the leading underscores of inherited variables (``__CTI_DNIS``); they
  are stripped. Globals arrive with ``Channel: none`` and are ignored.
- ``UserEvent`` headers follow the channel snapshot, which has its own ``Language`` and ``Priority``:
  the user headers are read after the ``UserEvent:`` header.
- Caller ID ``<unknown>`` is stored as the empty string.
- Who ended a call (``CallEnded.hung_up_by``) is decided when it ends, from every hang-up of it: a
  transferer does not count even when its ``Hangup`` came before the ``AttendedTransfer`` event (as it
  does on a real PBX), nor does a channel Asterisk hung up because the others left its bridge alive
  (moved by a ``Redirect``, with ``ExtraChannel`` two at once) and that ran no dialplan since.

Memory is bounded: ended channels and calls are dropped (the last ``max_ended_kept`` ended calls stay
readable through ``call()``), device states, recently-ended ids, per-channel variables and per-call
channel-name lists have caps; what a cap drops is counted in ``stats()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from cti.ami.message import AMIMessage
from cti.calls.model import (
    DEFAULT_LATE_WINDOW,
    DEFAULT_MAX_CHANNELS,
    DEFAULT_MAX_DEVICES,
    HANDED_OVER_TXT,
    MAX_DEPARTED_PER_BRIDGE,
    MAX_HANGUPS_PER_CALL,
    MAX_NAMES_PER_CALL,
    MAX_VARS_PER_CHANNEL,
    STATE_RING,
    STATE_RINGING,
    STATE_UP,
    UNKNOWN,
    VANISHED_TXT,
    Call,
    Channel,
    HangupRecord,
    ami_int,
    channel_age,
    clean_callerid,
    device_of,
)
from cti.contract import (
    AMDCAUSE,
    AMDSTATUS,
    CTI_AGENT_ID,
    CTI_AMD,
    CTI_CAMPAIGN,
    CTI_DNIS,
    CTI_LANGUAGE,
    CTI_LEAD_ID,
    CTI_PRIORITY,
    CTI_QUEUE,
    CTI_QUEUED,
    CTI_RETURNED,
    CTI_SKILLS,
    DIALSTATUS,
    USER_EVENTS,
    VARIABLE_PREFIX,
)
from cti.events import (
    AmdResult,
    CallBridged,
    CallEnded,
    CallQueued,
    CallReturnedToHold,
    CallStarted,
    CallTransferred,
    ChannelAnswered,
    ChannelHungup,
    ChannelRinging,
    DeviceStateChanged,
    DialEnded,
    DialStarted,
    DomainEvent,
    OriginateResult,
    RecordingChanged,
    VariableSet,
)

Events = list[DomainEvent]


class _Server:
    """Everything known about one Asterisk server."""

    __slots__ = ("bridges", "calls", "channels", "departed", "ended_calls", "names", "recently_ended")

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self.calls: dict[str, Call] = {}
        self.names: dict[str, str] = {}  # channel name -> uniqueid
        self.bridges: dict[str, dict[str, None]] = {}  # bridge id -> ordered set of uniqueids
        # bridge id -> uniqueids that left it while another leg stayed (a hang-up, a Redirect, a transfer)
        self.departed: dict[str, list[str]] = {}
        self.recently_ended: dict[str, None] = {}  # ordered set, oldest first
        self.ended_calls: dict[str, Call] = {}  # oldest first


_Handler = Callable[[str, _Server, AMIMessage, float], Events]

# Header names of a channel snapshot, plain or prefixed (DialBegin's Dest*, LocalBridge's LocalTwo*, ...).
_SNAPSHOT_FIELDS = (
    "Uniqueid",
    "Linkedid",
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Context",
    "Exten",
    "Priority",
    "Language",
    "AccountCode",
)


def _keys(prefix: str) -> tuple[str, ...]:
    return tuple(prefix + f for f in _SNAPSHOT_FIELDS)


_PLAIN = _keys("")
# The dialplan's UserEvent headers (lower case, as ``_user_headers`` keys them) by the variable they carry.
_QUEUED, _RETURNED, _AMD = CTI_QUEUED.headers(), CTI_RETURNED.headers(), CTI_AMD.headers()
_DEST = _keys("Dest")


class CallTracker:
    """Keeps every channel and call of every server from AMI events and emits domain events.

    ``handle()`` takes every AMI message (responses and uninteresting events are ignored cheaply);
    ``connection_lost()`` and ``resync()`` bracket a reconnect. Nothing here raises on bad input:
    malformed or unexpected events are counted in ``stats()``.
    """

    def __init__(
        self,
        *,
        cti_prefix: str = VARIABLE_PREFIX,
        max_ended_kept: int = 0,
        max_channels: int = DEFAULT_MAX_CHANNELS,
        max_devices: int = DEFAULT_MAX_DEVICES,
        late_window: int = DEFAULT_LATE_WINDOW,
    ) -> None:
        self.cti_prefix = cti_prefix
        self.max_ended_kept = max(0, max_ended_kept)
        self.max_channels = max_channels
        self.max_devices = max_devices
        self.late_window = late_window
        self._servers: dict[str, _Server] = {}
        self._devices: dict[tuple[str, str], str] = {}  # (server, device): one device name on two PBXs is two
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "events",
                "ignored",
                "malformed",
                "unknown_channel",
                "late",
                "lazy_created",
                "refused",
                "vars_dropped",
                "devices_evicted",
                "merged",
                "vanished",
            ),
            0,
        )
        self._handlers: dict[str, _Handler] = {
            "Newchannel": self._on_newchannel,
            "Newstate": self._on_newstate,
            "Newexten": self._updating(_runs_dialplan),  # the snapshot's Context/Exten/Priority is all there is
            "NewCallerid": self._updating(self._set_callerid),
            "NewConnectedLine": self._updating(self._set_connected),
            "VarSet": self._on_varset,
            "Hangup": self._on_hangup,
            "LocalBridge": self._on_localbridge,
            "DialBegin": self._on_dialbegin,
            "DialState": self._on_dialstate,
            "DialEnd": self._on_dialend,
            "BridgeEnter": self._on_bridgeenter,
            "BridgeLeave": self._on_bridgeleave,
            "BridgeDestroy": self._on_bridgedestroy,
            "BlindTransfer": self._on_blindtransfer,
            "AttendedTransfer": self._on_attendedtransfer,
            "DeviceStateChange": self._on_devicestate,
            "OriginateResponse": self._on_originateresponse,
            "UserEvent": self._on_userevent,
            "Rename": self._on_rename,
            "MixMonitorStart": self._on_mixmonitor,
            "MixMonitorStop": self._on_mixmonitor,
            "MixMonitorMute": self._on_mixmonitor,
            "Hold": self._updating(_hold),
            "Unhold": self._updating(_unhold),
        }

    # public API -------------------------------------------------------------------------

    def handle(self, server: str, msg: AMIMessage, now: float) -> list[DomainEvent]:
        """Apply one AMI message from ``server`` received at ``now``; return the domain events it causes."""
        counts = self._counts
        counts["events"] += 1
        if msg.kind != "event":
            counts["ignored"] += 1
            return []
        handler = self._handlers.get(msg.name)
        if handler is None:
            counts["ignored"] += 1
            return []
        st = self._servers.get(server)
        if st is None:
            st = self._servers[server] = _Server()
        return handler(server, st, msg, now)

    def connection_lost(self, server: str, now: float) -> list[DomainEvent]:
        """The AMI link to ``server`` dropped: its channels become stale until ``resync()`` or an event."""
        st = self._servers.get(server)
        if st is not None:
            for ch in st.channels.values():
                ch.stale = True
        return []

    def hand_over(self, server: str, now: float) -> list[DomainEvent]:
        """This node no longer follows ``server`` (another node holds its connection now): every channel of it
        ends here with cause 0 ``HANDED_OVER_TXT`` (ChannelHungup, then CallEnded), as vanished ones do."""
        st = self._servers.get(server)
        out: Events = []
        if st is not None:
            for ch in list(st.channels.values()):
                self._end_channel(server, st, ch, 0, HANDED_OVER_TXT, now, out, vanished=True)
        return out

    def resync(self, server: str, channels: list[AMIMessage], now: float) -> list[DomainEvent]:
        """Reconcile with ``CoreShowChannel`` list items after a reconnect.

        Listed channels are created or updated (new calls emit CallStarted, channels that went Up while we
        were away emit ChannelAnswered); stale channels not listed end with cause 0 "Vanished during AMI
        outage" (ChannelHungup, then CallEnded for calls left empty). Bridges are rebuilt from ``BridgeId``.
        A channel first seen here has lived for its ``Duration`` (``HH:MM:SS``) already: its creation, and
        its call's start (``Call.created``, the CallStarted time, hence CallEnded's duration) are back-dated.
        """
        st = self._servers.get(server)
        if st is None:
            st = self._servers[server] = _Server()
        out: Events = []
        for msg in channels:
            known = msg.get("Uniqueid") in st.channels
            ch = self._snapshot(server, st, msg, now, out, _PLAIN)
            if ch is None:
                continue
            age = channel_age(msg.get("Duration"))
            if not known and age:
                self._backdate(ch, now - age, out)
            self._update_all(ch, msg, now, out)
            bridge = msg.get("BridgeId") or msg.get("BridgeID") or None
            if bridge != ch.bridge_id:
                self._bridge_remove(st, ch)
                if bridge:
                    st.bridges.setdefault(bridge, {})[ch.uniqueid] = None
                    ch.bridge_id = bridge
        for ch in [c for c in st.channels.values() if c.stale]:
            self._counts["vanished"] += 1
            self._end_channel(server, st, ch, 0, VANISHED_TXT, now, out, vanished=True)
        for members in st.bridges.values():
            if len(members) > 1 and len(self._legs(st, members)) > 1:
                self._mark_answered(st, members, now)
        return out

    def channel(self, server: str, uniqueid: str) -> Channel | None:
        st = self._servers.get(server)
        return None if st is None else st.channels.get(uniqueid)

    def call(self, server: str, linkedid: str) -> Call | None:
        """A live call, or one of the last ``max_ended_kept`` ended calls."""
        st = self._servers.get(server)
        if st is None:
            return None
        return st.calls.get(linkedid) or st.ended_calls.get(linkedid)

    def variables(self, server: str, uniqueid: str) -> dict[str, str]:
        """The ``CTI_*`` variables seen on a live channel (a copy; empty if unknown)."""
        ch = self.channel(server, uniqueid)
        return {} if ch is None else dict(ch.variables)

    def find_channel_by_name(self, server: str, name: str) -> Channel | None:
        st = self._servers.get(server)
        if st is None:
            return None
        uid = st.names.get(name)
        return None if uid is None else st.channels.get(uid)

    def device_state(self, device: str, server: str | None = None) -> str | None:
        """Last DeviceStateChange state of ``device`` on ``server`` (None: the last on any server), e.g.
        ``NOT_INUSE``; None if never seen."""
        if server is not None:
            return self._devices.get((server, device))
        return next((state for (_, d), state in reversed(self._devices.items()) if d == device), None)

    def channels(self, server: str) -> list[Channel]:
        """Live channels of ``server``, oldest first."""
        st = self._servers.get(server)
        return [] if st is None else list(st.channels.values())

    def calls(self, server: str) -> list[Call]:
        """Live calls of ``server``, oldest first."""
        st = self._servers.get(server)
        return [] if st is None else list(st.calls.values())

    def stats(self) -> dict[str, int]:
        """Live channels/calls/bridges/devices and counters of what was ignored, dropped or repaired."""
        out = {
            "channels": sum(len(s.channels) for s in self._servers.values()),
            "calls": sum(len(s.calls) for s in self._servers.values()),
            "bridges": sum(len(s.bridges) for s in self._servers.values()),
            "devices": len(self._devices),
            "stale": sum(1 for s in self._servers.values() for c in s.channels.values() if c.stale),
            "ended_kept": sum(len(s.ended_calls) for s in self._servers.values()),
        }
        out.update(self._counts)
        return out

    # channel bookkeeping ------------------------------------------------------------------

    def _snapshot(
        self,
        server: str,
        st: _Server,
        msg: AMIMessage,
        now: float,
        out: Events,
        keys: tuple[str, ...],
        create: bool = True,
        follow: bool = True,
    ) -> Channel | None:
        """The channel a snapshot names, created lazily if never seen; follows Linkedid changes."""
        uid = msg.get(keys[0])
        if not uid or uid == "none" or uid == UNKNOWN:
            self._counts["malformed"] += 1
            return None
        ch = st.channels.get(uid)
        if ch is None:
            if uid in st.recently_ended:
                self._counts["late"] += 1
                return None
            if not create:
                self._counts["unknown_channel"] += 1
                return None
            self._counts["lazy_created"] += 1
            return self._create(server, st, msg, now, out, keys)
        ch.stale = False
        if follow:
            lid = msg.get(keys[1])
            if lid and lid != ch.linkedid:
                self._rehome(server, st, ch, lid, now, out)
        # Every snapshot carries the dialplan location; it changes without Newexten (a dialled leg
        # leaving the dialplan reports an empty Exten once bridged).
        context = msg.get(keys[9])
        if context is not None:
            ch.context = context
            ch.exten = msg.get(keys[10]) or ""
            ch.priority = ami_int(msg.get(keys[11]), ch.priority)
        return ch

    def _create(
        self, server: str, st: _Server, msg: AMIMessage, now: float, out: Events, keys: tuple[str, ...]
    ) -> Channel | None:
        if len(st.channels) >= self.max_channels:
            self._counts["refused"] += 1
            return None
        uid = msg.get(keys[0])
        if not uid or uid == UNKNOWN:
            self._counts["malformed"] += 1
            return None
        lid = msg.get(keys[1]) or uid
        name = msg.get(keys[2]) or ""
        ch = Channel(server, uid, lid, name, now)
        ch.state = ami_int(msg.get(keys[3]))
        ch.state_desc = msg.get(keys[4]) or ""
        ch.caller_num = clean_callerid(msg.get(keys[5]))
        ch.caller_name = clean_callerid(msg.get(keys[6]))
        ch.connected_num = clean_callerid(msg.get(keys[7]))
        ch.connected_name = clean_callerid(msg.get(keys[8]))
        ch.context = msg.get(keys[9]) or ""
        ch.exten = msg.get(keys[10]) or ""
        ch.priority = ami_int(msg.get(keys[11]))
        ch.language = msg.get(keys[12]) or ""
        ch.account_code = msg.get(keys[13]) or ""
        st.channels[uid] = ch
        if name:
            st.names[name] = uid
            if name.startswith("Local/") and name[-2:] in (";1", ";2"):
                other = st.names.get(name[:-1] + ("2" if name[-1] == "1" else "1"))
                if other is not None and other in st.channels:
                    ch.local_peer = other
                    st.channels[other].local_peer = uid
        self._join(server, st, ch, lid, now, out)
        if ch.state == STATE_UP:
            self._set_state(ch, STATE_UP, None, now, out)
        return ch

    def _join(self, server: str, st: _Server, ch: Channel, linkedid: str, now: float, out: Events) -> None:
        """Put ``ch`` in call ``linkedid``, starting the call (CallStarted) if it is new."""
        call = st.calls.get(linkedid)
        if call is None:
            call = st.calls[linkedid] = Call(server, linkedid, now)
            st.ended_calls.pop(linkedid, None)
            out.append(
                CallStarted(
                    server=server, ts=now, call_id=linkedid, uniqueid=ch.uniqueid, channel=ch.name,
                    caller_num=ch.caller_num, caller_name=ch.caller_name, context=ch.context, exten=ch.exten
                )
            )
        ch.linkedid = linkedid
        ch.call = call
        call.channels[ch.uniqueid] = ch
        if ch.answered is not None:
            call.up = True
        if len(call.channel_names) < MAX_NAMES_PER_CALL and ch.name:
            call.channel_names.append(ch.name)

    def _rehome(self, server: str, st: _Server, ch: Channel, linkedid: str, now: float, out: Events) -> None:
        """Asterisk gave ``ch`` a new Linkedid: move it; the old call ends if that left it empty."""
        old = ch.call
        self._join(server, st, ch, linkedid, now, out)
        if old is not None and old.linkedid != linkedid:
            old.channels.pop(ch.uniqueid, None)
            if not old.channels:
                self._counts["merged"] += 1
                self._finish_call(st, old, now, out, merged_into=linkedid)

    @staticmethod
    def _backdate(ch: Channel, started: float, out: Events) -> None:
        """``ch`` (just created from a resync) began at ``started``; so did its call, if not earlier."""
        ch.created = min(ch.created, started)
        call = ch.call
        if call is None or started >= call.created:
            return
        call.created = started
        for pos, event in enumerate(out):
            if isinstance(event, CallStarted) and event.call_id == call.linkedid and event.server == call.server:
                out[pos] = dataclasses.replace(event, ts=started)

    def _update_all(self, ch: Channel, msg: AMIMessage, now: float, out: Events) -> None:
        """Refresh every snapshot field (resync)."""
        self._set_state(ch, ami_int(msg.get("ChannelState"), ch.state), msg.get("ChannelStateDesc"), now, out)
        self._set_callerid(ch, msg)
        self._set_connected(ch, msg)

    def _set_state(self, ch: Channel, state: int, desc: str | None, now: float, out: Events) -> None:
        """Apply a ChannelState; the first Up emits ChannelAnswered, the first Ring/Ringing ChannelRinging."""
        ch.state = state
        if desc is not None:
            ch.state_desc = desc
        if state == STATE_UP:
            if ch.answered is None:
                ch.answered = now
                call = ch.call
                if call is not None:
                    call.up = True
                out.append(ChannelAnswered(server=ch.server, ts=now, call_id=ch.linkedid, uniqueid=ch.uniqueid,
                                           channel=ch.name))
        elif (state == STATE_RINGING or state == STATE_RING) and not ch.ringing and ch.answered is None:
            self._ringing(ch, now, out)

    def _ringing(self, ch: Channel, now: float, out: Events) -> None:
        ch.ringing = True
        out.append(ChannelRinging(server=ch.server, ts=now, call_id=ch.linkedid, uniqueid=ch.uniqueid, channel=ch.name))

    @staticmethod
    def _set_callerid(ch: Channel, msg: AMIMessage) -> None:
        num = msg.get("CallerIDNum")
        if num is not None:
            ch.caller_num = clean_callerid(num)
            ch.caller_name = clean_callerid(msg.get("CallerIDName"))

    @staticmethod
    def _set_connected(ch: Channel, msg: AMIMessage) -> None:
        num = msg.get("ConnectedLineNum")
        if num is not None:
            ch.connected_num = clean_callerid(num)
            ch.connected_name = clean_callerid(msg.get("ConnectedLineName"))

    def _bridge_remove(self, st: _Server, ch: Channel) -> None:
        """``ch`` leaves its bridge. If another leg stays, ``ch`` is remembered as having left first; if the
        others had all left before it, ``ch.left_by`` names them (they may have been moved elsewhere)."""
        bid = ch.bridge_id
        if bid is None:
            return
        ch.bridge_id = None
        members = st.bridges.get(bid)
        if members is None:
            return
        members.pop(ch.uniqueid, None)
        channels = st.channels
        leg = ch.leg
        if any((channels[u].leg if u in channels else u) != leg for u in members):
            departed = st.departed.setdefault(bid, [])
            departed.append(ch.uniqueid)
            if len(departed) > MAX_DEPARTED_PER_BRIDGE:
                del departed[0]
            ch.left_by = ()
        else:
            ch.left_by = tuple(u for u in st.departed.get(bid, ()) if u in channels and channels[u].leg != leg)
        if not members:
            del st.bridges[bid]
            st.departed.pop(bid, None)

    def _end_channel(
        self,
        server: str,
        st: _Server,
        ch: Channel,
        cause: int,
        cause_txt: str,
        now: float,
        out: Events,
        vanished: bool = False,
    ) -> None:
        """``vanished``: ended without a Hangup from the PBX (the call, if it empties, ends with ``cause_txt``)."""
        uid = ch.uniqueid
        ch.ended = now
        ch.cause = cause
        ch.cause_txt = cause_txt
        st.channels.pop(uid, None)
        if st.names.get(ch.name) == uid:
            del st.names[ch.name]
        self._bridge_remove(st, ch)
        recent = st.recently_ended
        recent[uid] = None
        if len(recent) > self.late_window:
            del recent[next(iter(recent))]
        out.append(ChannelHungup(server=server, ts=now, call_id=ch.linkedid, uniqueid=uid, channel=ch.name,
                                 cause=cause, cause_txt=cause_txt))
        call = ch.call
        if call is None:
            return
        call.channels.pop(uid, None)
        if not vanished and len(call.hangups) < MAX_HANGUPS_PER_CALL:
            channels = st.channels
            call.hangups.append(
                HangupRecord(
                    ch.name,
                    cause,
                    cause_txt,
                    uid,
                    ch.leg,
                    answered=ch.answered is not None,
                    transferred=ch.transferred_away,
                    # Others left its bridge alive and it ended alone right after (no dialplan in between).
                    left_behind=any(u in channels for u in ch.left_by),
                )
            )
        if not call.channels:
            self._finish_call(st, call, now, out, vanished=cause_txt if vanished else None)

    def _finish_call(
        self,
        st: _Server,
        call: Call,
        now: float,
        out: Events,
        *,
        vanished: str | None = None,
        merged_into: str | None = None,
    ) -> None:
        """``vanished``: the call's channels ended without a Hangup, for this reason (its ``cause_txt``)."""
        if st.calls.get(call.linkedid) is call:
            del st.calls[call.linkedid]
        hung_up_by: str | None = None
        if merged_into is not None:
            cause, cause_txt = 0, f"Merged into call {merged_into}"
        elif vanished is not None:
            cause, cause_txt = 0, vanished
        else:
            moved = call.moved
            hangups = call.hangups
            ended_it = next(
                (
                    r
                    for r in hangups
                    if r.answered
                    and not r.transferred
                    and not r.left_behind
                    and r.uniqueid not in moved
                    and r.leg not in moved
                ),
                None,
            )
            nonzero = next((r for r in hangups if r.cause), None)
            chosen = ended_it or nonzero or (hangups[0] if hangups else None)
            cause, cause_txt = 0, ""
            if chosen is not None:
                hung_up_by = chosen.name
                cause, cause_txt = chosen.cause, chosen.cause_txt
                if cause == 0 and nonzero is not None:
                    cause, cause_txt = nonzero.cause, nonzero.cause_txt
        call.ended = now
        event = CallEnded(
            server=call.server,
            ts=now,
            call_id=call.linkedid,
            cause=cause,
            cause_txt=cause_txt,
            hung_up_by=hung_up_by,
            answered=call.answered is not None,
            duration=now - call.created,
            channels=tuple(call.channel_names),
            up=call.up,
            merged_into=merged_into,
        )
        call.end_event = event
        out.append(event)
        if self.max_ended_kept:
            kept = st.ended_calls
            kept[call.linkedid] = call
            while len(kept) > self.max_ended_kept:
                del kept[next(iter(kept))]

    def _legs(self, st: _Server, members: dict[str, None]) -> set[str]:
        channels = st.channels
        return {channels[u].leg if u in channels else u for u in members}

    @staticmethod
    def _mark_answered(st: _Server, members: dict[str, None], now: float) -> None:
        """Legs in a connected bridge: their calls, and their Local peers' calls, were answered."""
        channels = st.channels
        for uid in members:
            ch = channels.get(uid)
            if ch is None:
                continue
            peer = channels.get(ch.local_peer) if ch.local_peer else None
            for c in (ch, peer):
                if c is not None and c.call is not None and c.call.answered is None:
                    c.call.answered = now

    # event handlers ------------------------------------------------------------------------

    def _updating(self, update: Callable[[Channel, AMIMessage], None] | None) -> _Handler:
        """A handler that applies the event's snapshot to its channel, then ``update``; it emits only what the
        snapshot causes (a lazily created channel's CallStarted, a Linkedid move)."""

        def handler(server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
            out: Events = []
            ch = self._snapshot(server, st, msg, now, out, _PLAIN)
            if ch is not None and update is not None:
                update(ch, msg)
            return out

        return handler

    def _on_newchannel(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        out: Events = []
        uid = msg.get("Uniqueid")
        if uid is not None and uid not in st.channels and uid not in st.recently_ended and uid != "none":
            self._create(server, st, msg, now, out, _PLAIN)
        else:  # already known (created lazily from an earlier event), late, or malformed
            ch = self._snapshot(server, st, msg, now, out, _PLAIN, create=False)
            if ch is not None:
                self._update_all(ch, msg, now, out)
        return out

    def _on_newstate(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        out: Events = []
        ch = self._snapshot(server, st, msg, now, out, _PLAIN)
        if ch is not None:
            self._set_callerid(ch, msg)
            self._set_connected(ch, msg)
            self._set_state(ch, ami_int(msg.get("ChannelState"), ch.state), msg.get("ChannelStateDesc"), now, out)
        return out

    def _on_varset(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        var = msg.get("Variable") or ""
        prefix = self.cti_prefix
        if not var.startswith(prefix):
            if not var.startswith("_"):
                return []
            var = var.lstrip("_")
            if not var.startswith(prefix):
                return []
        out: Events = []
        ch = self._snapshot(server, st, msg, now, out, _PLAIN)
        if ch is None:
            return out
        value = msg.get("Value") or ""
        variables = ch.variables
        if var not in variables and len(variables) >= MAX_VARS_PER_CHANNEL:
            self._counts["vars_dropped"] += 1
            return out
        variables[var] = value
        out.append(VariableSet(server=server, ts=now, call_id=ch.linkedid, uniqueid=ch.uniqueid, channel=ch.name,
                               name=var, value=value))
        return out

    def _on_hangup(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        out: Events = []
        ch = self._snapshot(server, st, msg, now, out, _PLAIN, create=False)
        if ch is not None:
            self._end_channel(server, st, ch, ami_int(msg.get("Cause")), msg.get("Cause-txt") or "", now, out)
        return out

    def _on_mixmonitor(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        """MixMonitorStart/Stop/Mute (app_mixmonitor, class call): a recording on a channel changed."""
        out: Events = []
        ch = self._snapshot(server, st, msg, now, out, _PLAIN, create=False)
        if ch is None:
            return out
        if msg.name == "MixMonitorMute":
            what = "muted" if (msg.get("State") or "").strip() == "1" else "unmuted"
        else:
            what = "started" if msg.name == "MixMonitorStart" else "stopped"
        out.append(RecordingChanged(server=server, ts=now, call_id=ch.linkedid, uniqueid=ch.uniqueid,
                                    channel=ch.name, what=what))
        return out

    def _on_localbridge(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        one = st.channels.get(msg.get("LocalOneUniqueid") or "")
        two = st.channels.get(msg.get("LocalTwoUniqueid") or "")
        if one is None or two is None:
            self._counts["unknown_channel"] += 1
            return []
        one.local_peer = two.uniqueid
        two.local_peer = one.uniqueid
        return []

    def _on_dialbegin(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        out: Events = []
        caller = self._snapshot(server, st, msg, now, out, _PLAIN) if "Uniqueid" in msg else None
        dest = self._snapshot(server, st, msg, now, out, _DEST)
        if dest is None:
            return out
        if caller is not None:
            dest.dialed_by = caller.uniqueid
        src = caller or dest
        out.append(
            DialStarted(
                server=server,
                ts=now,
                call_id=src.linkedid,
                uniqueid=caller.uniqueid if caller else "",
                channel=caller.name if caller else "",
                dest_uniqueid=dest.uniqueid,
                dest_channel=dest.name,
                dial_string=msg.get("DialString") or "",
            )
        )
        if not dest.ringing and dest.answered is None:
            self._ringing(dest, now, out)
        return out

    def _on_dialstate(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        if msg.get("DialStatus") not in ("RINGING", "PROCEEDING"):
            return []
        out: Events = []
        dest = self._snapshot(server, st, msg, now, out, _DEST)
        if dest is not None and not dest.ringing and dest.answered is None:
            self._ringing(dest, now, out)
        return out

    def _on_dialend(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        out: Events = []
        caller = self._snapshot(server, st, msg, now, out, _PLAIN) if "Uniqueid" in msg else None
        dest_uid = msg.get("DestUniqueid") or ""
        dest = self._snapshot(server, st, msg, now, out, _DEST, create=False)
        call_id = caller.linkedid if caller else dest.linkedid if dest else msg.get("DestLinkedid") or ""
        if caller is None and dest is None:
            return out
        out.append(
            DialEnded(
                server=server,
                ts=now,
                call_id=call_id,
                uniqueid=caller.uniqueid if caller else "",
                channel=caller.name if caller else "",
                dest_uniqueid=dest_uid,
                dest_channel=dest.name if dest else msg.get("DestChannel") or "",
                status=msg.get("DialStatus") or "",
            )
        )
        return out

    def _on_bridgeenter(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        out: Events = []
        bid = msg.get("BridgeUniqueid")
        # Linkedid changes (AMI Bridge of two calls) are applied after the bridge bookkeeping, so that the
        # call the channel leaves is marked answered before it possibly ends as merged.
        ch = self._snapshot(server, st, msg, now, out, _PLAIN, follow=False)
        if ch is None or not bid:
            if not bid:
                self._counts["malformed"] += 1
            return out
        if ch.bridge_id != bid:
            self._bridge_remove(st, ch)
        ch.left_by = ()
        members = st.bridges.setdefault(bid, {})
        connected = False
        if ch.uniqueid not in members:
            legs = self._legs(st, members)
            connected = bool(legs) and ch.leg not in legs
            members[ch.uniqueid] = None
            ch.bridge_id = bid
            if connected:
                self._mark_answered(st, members, now)
        lid = msg.get("Linkedid")
        if lid and lid != ch.linkedid:
            self._rehome(server, st, ch, lid, now, out)
        if connected:
            call = ch.call
            if call is not None and call.answered is None:
                call.answered = now
            names = tuple(st.channels[u].name if u in st.channels else "" for u in members)
            out.append(CallBridged(server=server, ts=now, call_id=ch.linkedid, bridge_id=bid, uniqueids=tuple(members),
                                   channels=names))
        return out

    def _on_bridgeleave(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        out: Events = []
        ch = self._snapshot(server, st, msg, now, out, _PLAIN, create=False)
        bid = msg.get("BridgeUniqueid")
        if ch is not None and ch.bridge_id == bid:
            self._bridge_remove(st, ch)
        return out

    def _on_bridgedestroy(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        members = st.bridges.pop(msg.get("BridgeUniqueid") or "", None)
        st.departed.pop(msg.get("BridgeUniqueid") or "", None)
        bid = msg.get("BridgeUniqueid")
        for uid in members or ():
            ch = st.channels.get(uid)
            if ch is not None and ch.bridge_id == bid:
                ch.bridge_id = None
        return []

    def _on_blindtransfer(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        party = self._transferer(st, msg, "Transferer")
        if party is None:
            self._counts["unknown_channel"] += 1
            return []
        call_id, uid, name = party
        result = msg.get("Result") or ""
        if result == "Success":
            self._handed_over(st, uid, msg.get("TransfererLinkedid"))
        target = f"{msg.get('Extension') or ''}@{msg.get('Context') or ''}"
        return [
            CallTransferred(
                server=server,
                ts=now,
                call_id=call_id,
                kind="blind",
                uniqueid=uid,
                channel=name,
                target=target,
                result=result,
                transferee_uniqueid=msg.get("TransfereeUniqueid") or "",
                transferee_channel=msg.get("TransfereeChannel") or "",
            )
        ]

    def _on_attendedtransfer(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        # Asterisk may send the transferer's Hangup before this event: the transferer is then read from the
        # event's own snapshot, and its hang-up is taken back from the call's record of who ended it.
        party = self._transferer(st, msg, "OrigTransferer") or self._transferer(st, msg, "SecondTransferer")
        if party is None:
            self._counts["unknown_channel"] += 1
            return []
        call_id, uid, name = party
        second_uid = msg.get("SecondTransfererUniqueid") or ""
        result = msg.get("Result") or ""
        if result == "Success":
            for prefix in ("OrigTransferer", "SecondTransferer"):
                self._handed_over(st, msg.get(prefix + "Uniqueid") or "", msg.get(prefix + "Linkedid"))
        transferee_uid = msg.get("TransfereeUniqueid") or ""
        target = msg.get("TransferTargetChannel") or ""
        if not target:
            dest_type = msg.get("DestType") or ""
            if dest_type == "Bridge":
                skip = {transferee_uid, uid, second_uid}
                members = st.bridges.get(msg.get("DestBridgeUniqueid") or "", {})
                target = ",".join(st.channels[u].name for u in members if u not in skip and u in st.channels)
                target = target or msg.get("DestBridgeUniqueid") or ""
            elif dest_type == "App":
                target = msg.get("DestApp") or ""
            elif dest_type == "Link":
                target = msg.get("LocalTwoChannel") or ""
            elif dest_type == "Threeway":
                target = msg.get("DestThreewayChannel") or ""
        return [
            CallTransferred(
                server=server,
                ts=now,
                call_id=call_id,
                kind="attended",
                uniqueid=uid,
                channel=name,
                target=target,
                result=result,
                transferee_uniqueid=transferee_uid,
                transferee_channel=msg.get("TransfereeChannel") or "",
            )
        ]

    @staticmethod
    def _transferer(st: _Server, msg: AMIMessage, prefix: str) -> tuple[str, str, str] | None:
        """(call id, uniqueid, channel name) of a transfer's party: the live channel, else (it already hung
        up) the event's snapshot of it; None if the event names no channel seen here."""
        uid = msg.get(prefix + "Uniqueid") or ""
        ch = st.channels.get(uid)
        if ch is not None:
            return ch.linkedid, ch.uniqueid, ch.name
        if not uid or uid not in st.recently_ended:
            return None
        return msg.get(prefix + "Linkedid") or uid, uid, msg.get(prefix + "Channel") or ""

    def _handed_over(self, st: _Server, uid: str, linkedid: str | None) -> None:
        """``uid`` handed its call over: its hang-up (past or future, and its Local peer's) did not end it."""
        if not uid:
            return
        ch = st.channels.get(uid)
        calls = {st.calls.get(linkedid or "")}
        legs = {uid}
        if ch is not None:
            self._mark_transferred(st, ch)
            calls.add(ch.call)
            legs.add(ch.leg)
        for call in calls:
            if call is None:
                continue
            legs.update(r.leg for r in call.hangups if r.uniqueid == uid)
            call.moved.update(legs)

    @staticmethod
    def _mark_transferred(st: _Server, ch: Channel) -> None:
        ch.transferred_away = True
        peer = st.channels.get(ch.local_peer) if ch.local_peer else None
        if peer is not None:
            peer.transferred_away = True

    def _on_devicestate(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        device = msg.get("Device")
        state = msg.get("State")
        if not device or state is None:
            self._counts["malformed"] += 1
            return []
        devices = self._devices
        key = (server, device)  # (a phone's state on one PBX says nothing of the same name on another)
        previous = devices.pop(key, None)  # re-insert: most recently changed last
        devices[key] = state
        if previous is None and len(devices) > self.max_devices:
            del devices[next(iter(devices))]
            self._counts["devices_evicted"] += 1
        if previous == state:
            return []
        return [DeviceStateChanged(server=server, ts=now, device=device, state=state)]

    def _on_originateresponse(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        uid = msg.get("Uniqueid")
        return [
            OriginateResult(
                server=server,
                ts=now,
                action_id=msg.get("ActionID") or "",
                success=msg.get("Response") == "Success",
                reason=ami_int(msg.get("Reason")),
                channel=msg.get("Channel") or "",
                uniqueid=None if not uid or uid == UNKNOWN else uid,
            )
        ]

    def _on_userevent(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        kind = msg.get("UserEvent")
        if kind not in USER_EVENTS:
            self._counts["ignored"] += 1
            return []
        out: Events = []
        ch = self._snapshot(server, st, msg, now, out, _PLAIN)
        if ch is None:
            return out
        body = _user_headers(msg)
        if kind == CTI_QUEUED.name:
            variables = ch.variables
            p = self.cti_prefix

            def field(var: str) -> str:  # the header, else the channel's variable (under our prefix)
                return body.get(_QUEUED[var]) or variables.get(p + var[len(VARIABLE_PREFIX):], "")

            out.append(
                CallQueued(
                    server=server,
                    ts=now,
                    call_id=ch.linkedid,
                    uniqueid=ch.uniqueid,
                    channel=ch.name,
                    queue=field(CTI_QUEUE),
                    skills=field(CTI_SKILLS),
                    priority=ami_int(field(CTI_PRIORITY).strip()),
                    language=field(CTI_LANGUAGE),
                    caller_num=ch.caller_num,
                    caller_name=ch.caller_name,
                    dnis=field(CTI_DNIS),
                    data=dict(variables),
                )
            )
        elif kind == CTI_RETURNED.name:
            out.append(
                CallReturnedToHold(
                    server=server,
                    ts=now,
                    call_id=ch.linkedid,
                    uniqueid=ch.uniqueid,
                    channel=ch.name,
                    queue=body.get(_RETURNED[CTI_QUEUE], ""),
                    agent_id=body.get(_RETURNED[CTI_AGENT_ID], ""),
                    dial_status=body.get(_RETURNED[DIALSTATUS], ""),
                )
            )
        else:
            out.append(
                AmdResult(
                    server=server,
                    ts=now,
                    call_id=ch.linkedid,
                    uniqueid=ch.uniqueid,
                    channel=ch.name,
                    status=body.get(_AMD[AMDSTATUS], ""),
                    cause=body.get(_AMD[AMDCAUSE], ""),
                    lead_id=body.get(_AMD[CTI_LEAD_ID], ""),
                    campaign=body.get(_AMD[CTI_CAMPAIGN], ""),
                )
            )
        return out

    def _on_rename(self, server: str, st: _Server, msg: AMIMessage, now: float) -> Events:
        out: Events = []
        ch = self._snapshot(server, st, msg, now, out, _PLAIN, create=False)
        new = msg.get("Newname")
        if ch is not None and new:
            if st.names.get(ch.name) == ch.uniqueid:
                del st.names[ch.name]
            ch.name = new
            ch.device = device_of(new)
            st.names[new] = ch.uniqueid
        return out


def _runs_dialplan(ch: Channel, msg: AMIMessage) -> None:
    ch.left_by = ()  # it goes on in the dialplan: whatever hangs it up later is its own doing


def _hold(ch: Channel, msg: AMIMessage) -> None:
    ch.on_hold = True


def _unhold(ch: Channel, msg: AMIMessage) -> None:
    ch.on_hold = False


def _user_headers(msg: AMIMessage) -> dict[str, str]:
    """Headers after ``UserEvent:`` (lower-case keys): the dialplan's own, not the channel snapshot's."""
    out: dict[str, str] = {}
    seen = False
    for key, value in msg.headers:
        if seen:
            out.setdefault(key.lower(), value.strip())
        elif key.lower() == "userevent":
            seen = True
    return out
