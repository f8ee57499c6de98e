"""Bridging and transfers of the simulated PBX: AMI Bridge, BlindTransfer and Atxfer, with the
event sequences of hangup_redirect.txt (Unhold/BlindTransfer, Hold/MOH/AttendedTransfer/BridgeMerge).
Imports sim.pbx only; no reactor, no wall clock.
"""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall

from sim.ami_events import bridge_headers, snapshot
from sim.channel import Bridge, Channel
from sim.channel_requests import RequestFailed
from sim.pbx import Pbx


class TransferError(Exception):
    """The transfer cannot be done; ``str()`` is the AMI Message."""


def bridge_channels(pbx: Pbx, a: Channel, b: Channel) -> Bridge:
    """AMI Bridge: put two channels in a new basic bridge; when it ends both continue their dialplan."""
    bridge = pbx.bridge_create("action")
    for chan in (a, b):
        if chan.state != 6:
            pbx.answer(chan)
        pbx.pull_into_bridge(chan, bridge)
    pbx.bridge_peers_vars(bridge)
    pbx.update_connected(a, b.caller_num, b.caller_name)
    pbx.update_connected(b, a.caller_num, a.caller_name)
    return bridge


def _leave_bridge_as_transferer(pbx: Pbx, chan: Channel) -> None:
    pbx.bridge_leave(chan)
    if chan.block is not None:
        pbx.unblock(chan, 0)  # an AMI-bridged channel continues its dialplan
    elif not chan.in_pbx:
        pbx.softhangup(chan, 16)


def blind_transfer(pbx: Pbx, chan: Channel, context: str, exten: str) -> None:
    """Send the other party of ``chan``'s bridge to ``context,exten,1``; ``chan`` leaves."""
    bridge = chan.bridge
    if bridge is None or len(bridge.channels) < 2:
        raise TransferError("Transfer invalid")
    if pbx.resolve_priority(context, exten, "1") is None:
        raise TransferError("Transfer failed")
    others = [c for c in bridge.channels if c is not chan]
    transferee = others[0]
    pbx.chan_event("Unhold", chan)
    pbx.set_var(chan, "BLINDTRANSFER", transferee.name)
    for other in others:
        pbx.set_var(other, "BLINDTRANSFER", chan.name)
    for member in (chan, *others):
        pbx.set_var(member, "BRIDGEPEER", "")
    pbx.emit("BlindTransfer", "call,all", [
        ("Result", "Success"), *snapshot(chan, "Transferer"), *snapshot(transferee, "Transferee"),
        *bridge_headers(bridge), ("IsExternal", "Yes"), ("Context", context), ("Extension", exten)])
    _leave_bridge_as_transferer(pbx, chan)
    for other in others:
        pbx.async_goto(other, context, exten, 1)


class _Atxfer:
    """One attended transfer in progress (the transferer's ``atxfer``)."""

    def __init__(self, pbx: Pbx, chan: Channel, orig: Bridge, held: list[Channel]) -> None:
        self.pbx = pbx
        self.chan = chan
        self.orig = orig
        self.held = held
        self.second: Bridge | None = None
        self.target: Channel | None = None
        self.timer: IDelayedCall | None = None  # digit timeout or invalid-extension retries
        self.rang = False
        self.finished = False  # completed, or back with the held party

    def give_up(self) -> None:
        """The extension never dialled (or the call could not start): back to the held party."""
        self.timer = None
        if not self.chan.dead and self.chan.atxfer is self:
            self._back_to_caller()

    def consult(self) -> None:
        """The consultation starts as soon as the target is called (bridge_basic.c imparts it into the
        consultation bridge at once): the target and then the transferer are in the second bridge while
        the target still rings (the transferer hears the ringback), the original bridge is held."""
        pbx, chan, out, second = self.pbx, self.chan, self.target, self.second
        assert out is not None and second is not None
        pbx.bridge_enter(second, out)
        pbx.set_var(out, "ATTENDEDTRANSFER", "")
        self.orig.frozen = True
        pbx.bridge_leave(chan)
        second.frozen = True
        pbx.bridge_enter(second, chan)
        pbx.bridge_peers_vars(second)
        chan.before_destroy = self.complete
        out.before_destroy = self._target_gone

    def on_target(self, out: Channel, what: str) -> None:
        pbx = self.pbx
        if what == "ringing" and not self.rang:
            self.rang = True
            pbx.emit("DialState", "call,all", [*snapshot(out, "Dest"), ("DialStatus", "RINGING")])
        elif what == "answer":
            out.observer = None
            pbx.emit("DialEnd", "call,all", [*snapshot(out, "Dest"), ("DialStatus", "ANSWER")])
        elif what in ("busy", "congestion", "hangup"):
            out.observer = None
            out.before_destroy = None
            if not out.dead:
                pbx.destroy(out)
            if not self.finished:
                self._back_to_caller()

    def _target_gone(self, target: Channel) -> None:
        """The consulted party hung up (STIMULUS_TRANSFER_TARGET_HANGUP while consulting): the
        transferer goes back to the held party (bridge_basic.c consulting_exit -> TRANSFER_REBRIDGE)."""
        if self.chan.atxfer is self and not self.chan.dead and not self.finished:
            self.pbx.soon(self._back_to_caller)

    def _back_to_caller(self) -> None:
        """The consultation failed or was cancelled: the transferer talks to the held party again."""
        pbx, chan = self.pbx, self.chan
        if self.finished:
            return
        self.finished = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        chan.before_destroy = None
        chan.atxfer = None
        if self.second is not None and chan.bridge is self.second:
            pbx.bridge_leave(chan)
        for party in self.held:
            pbx.stop_moh(party)
        if not chan.dead and self.orig.uniqueid in pbx.bridges and chan.bridge is not self.orig:
            pbx.bridge_enter(self.orig, chan)
        self.orig.frozen = False
        pbx.chan_event("Unhold", chan)
        if self.second is not None:
            self.second.frozen = False
            pbx.soon(pbx.bridge_destroy_if_empty, self.second)

    def cancel(self) -> None:
        """CancelAtxfer: the atxferabort code (*1) is heard, the consultation leg hangs up."""
        for digit in "*1":
            self.pbx.dtmf(self.chan, digit, 0, begin=False)
        target = self.target
        if target is not None and not target.dead:
            target.observer = None
            target.before_destroy = None
            if target.bridge is not None:
                self.pbx.bridge_leave(target)
            self.pbx.softhangup(target, 16)
            if not target.in_pbx:
                self.pbx.destroy(target)
        self._back_to_caller()

    def complete(self, transferer: Channel) -> None:
        """The transferer hangs up: join the held party and the target."""
        pbx, orig, second = self.pbx, self.orig, self.second
        assert second is not None
        self.finished = True
        transferer.before_destroy = None
        transferer.atxfer = None
        if self.target is not None and self.target.before_destroy == self._target_gone:
            self.target.before_destroy = None
        if transferer.bridge is second:
            pbx.bridge_leave(transferer)
        for party in self.held:
            pbx.stop_moh(party)
        if orig.uniqueid not in pbx.bridges:
            return
        pbx.emit("BridgeMerge", "call,all", [*bridge_headers(orig, "ToBridge"),
                                             *bridge_headers(second, "FromBridge")])
        for member in list(second.channels):
            pbx.bridge_leave(member)
            pbx.bridge_enter(orig, member)
        orig.frozen = False
        pbx.emit("AttendedTransfer", "call,all", [
            ("Result", "Success"), *snapshot(transferer, "OrigTransferer"), *bridge_headers(orig, "OrigBridge"),
            *snapshot(transferer, "SecondTransferer"), *bridge_headers(second, "SecondBridge"),
            *snapshot(self.held[0], "Transferee"), ("IsExternal", "No"), ("DestType", "Bridge"),
            ("DestBridgeUniqueid", orig.uniqueid)])
        second.frozen = False
        pbx.soon(pbx.bridge_destroy_if_empty, second)


# DTMF digits a channel can receive (the Atxfer action queues its Exten as DTMF frames).
DTMF_DIGITS = frozenset("0123456789*#ABCD")
# transferdigittimeout (features.conf default 3 s): a transfer extension that could still grow is
# dialled after this pause.
TRANSFER_DIGIT_TIMEOUT = 3.0
# The AMI Atxfer queues the feature code as DTMF frames, which the bridge reads as DTMF (emulated
# duration and gap): the reference PBX sent Hold 0.26 s after answering an Atxfer with the code *2.
ATXFER_CODE_DIGIT_SECONDS = 0.13
# An extension that does not exist (or is not DTMF): three tries of 3 s, each with the invalid-transfer
# prompt, then the transferer is back with the held party. Measured on Asterisk 22.10.1: 19.8 s from
# the Hold event to the Unhold event.
INVALID_TRANSFER_SECONDS = 19.8


def _pass_dtmf(pbx: Pbx, chan: Channel, digits: str) -> None:
    """DTMF with no feature hook behind it: heard by the channel, passed on to its bridge peers."""
    for digit in digits:
        pbx.dtmf(chan, digit, 0, begin=False)
        for other in list(chan.bridge.channels) if chan.bridge is not None else []:
            if other is not chan:
                pbx.chan_event("DTMFEnd", other, [("Digit", digit), ("DurationMs", "0"), ("Direction", "Sent")],
                               "dtmf,all")


def atxfer_feature(pbx: Pbx, chan: Channel, code: str, exten: str) -> None:
    """What Asterisk 22 does with the DTMF that an AMI ``Atxfer`` queues on ``chan``: the atxfer feature
    ``code`` and then ``exten`` (main/manager.c action_atxfer).

    The feature starts only where ``chan`` entered its bridge with the transfer features (Dial option
    ``t`` for the called party, ``T`` for the caller) and that code: otherwise the digits are plain DTMF
    passed to the other party and nothing happens. The digits then dial ``exten`` in the transfer
    context (``TRANSFER_CONTEXT`` or the channel's own), as bridge_basic.c's grab_transfer() reads them:
    the first digit interrupts the "transfer" announcement and ast_app_dtget() then waits
    transferdigittimeout (3 s) for another before it looks the extension up (the reference PBX dialled a
    one-digit extension 3.07 s after its Hold); with more digits it stops as soon as nothing longer
    could match. An extension that does not exist, or is not DTMF (``s``), never dials: after the
    invalid-transfer retries the transferer is back with the held party."""
    bridge = chan.bridge
    if bridge is None or not code or chan.atxfer_hook != code or chan.atxfer is not None:
        _pass_dtmf(pbx, chan, code + exten)
        return
    context = pbx.get_var(chan, "TRANSFER_CONTEXT") or chan.context
    for digit in code:
        pbx.dtmf(chan, digit, 0, begin=False)
    held = [c for c in bridge.channels if c is not chan]
    job = _Atxfer(pbx, chan, bridge, held)
    chan.atxfer = job
    pbx.chan_event("Hold", chan)
    for party in held:
        pbx.start_moh(party)
    for digit in exten:
        pbx.dtmf(chan, digit, 0, begin=False)
    dialable = set(exten) <= DTMF_DIGITS and pbx.dialplan.exists(context, exten, 1)
    if not dialable:
        job.timer = pbx.later(INVALID_TRANSFER_SECONDS, job.give_up)
    elif len(exten) == 1 or pbx.dialplan.matches_more(context, exten):
        job.timer = pbx.later(TRANSFER_DIGIT_TIMEOUT, _dial_target, job, context, exten)
    else:
        _dial_target(job, context, exten)


def queue_atxfer(pbx: Pbx, chan: Channel, code: str, exten: str) -> None:
    """AMI Atxfer: the code and extension are queued as DTMF; the bridge reads them after the action
    was answered (``atxfer_feature`` once the code's digits have been read)."""
    pbx.later(len(code) * ATXFER_CODE_DIGIT_SECONDS, atxfer_feature, pbx, chan, code, exten)


def _dial_target(job: _Atxfer, context: str, exten: str) -> None:
    """Call ``exten@context`` (a Local channel) for the consultation; when the transferer hangs up the
    held party and the target are joined (BridgeMerge + AttendedTransfer)."""
    pbx, chan = job.pbx, job.chan
    job.timer = None
    if chan.dead or chan.atxfer is not job:
        return
    try:
        target = pbx.request("Local", f"{exten}@{context}", chan)
    except RequestFailed:
        job.give_up()
        return
    pbx.set_var(target, "TRANSFERERNAME", chan.name)
    pbx.set_var(target, "ATTENDEDTRANSFER", chan.name)
    pbx.inherit_variables(chan, target)  # e.g. __CTI_CONSULT_DIAL for [cti-consult]
    job.second = pbx.bridge_create("atxfer")
    job.target = target
    try:
        pbx.call(target, f"{exten}@{context}", two_caller=(chan.caller_num, chan.caller_name))
    except RequestFailed:
        job.give_up()
        return
    target.observer = job.on_target
    job.consult()


def attended_transfer(pbx: Pbx, chan: Channel, context: str, exten: str) -> None:
    """An attended transfer as a transferer with the features would start it (the code of its hook):
    for tests and scenarios that skip the AMI action."""
    pbx.set_var(chan, "TRANSFER_CONTEXT", context)
    atxfer_feature(pbx, chan, chan.atxfer_hook or pbx.feature_code(chan, "atxfer"), exten)


def cancel_attended_transfer(pbx: Pbx, chan: Channel) -> None:
    """CancelAtxfer: the atxferabort code (``*1``) on ``chan``; with a consultation in progress it
    hangs the consultation up and returns ``chan`` to the held party, otherwise it is plain DTMF."""
    job = chan.atxfer
    if not isinstance(job, _Atxfer):
        _pass_dtmf(pbx, chan, "*1")
        return
    job.cancel()
