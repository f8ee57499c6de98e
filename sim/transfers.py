"""Bridging and transfers of the simulated PBX: AMI Bridge, BlindTransfer and Atxfer, with the
event sequences of hangup_redirect.txt (Unhold/BlindTransfer, Hold/MOH/AttendedTransfer/BridgeMerge).
Imports sim.pbx only; no reactor, no wall clock.
"""

from __future__ import annotations

from sim.ami_events import bridge_headers, snapshot
from sim.pbx import Bridge, Channel, Pbx, RequestFailed


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

    def on_target(self, out: Channel, what: str) -> None:
        pbx, chan = self.pbx, self.chan
        if what == "answer":
            out.observer = None
            assert self.second is not None
            pbx.bridge_enter(self.second, out)
            pbx.set_var(out, "ATTENDEDTRANSFER", "")
            pbx.emit("DialEnd", "call,all", [*snapshot(out, "Dest"), ("DialStatus", "ANSWER")])
            self.orig.frozen = True
            pbx.bridge_leave(chan)
            self.second.frozen = True
            pbx.bridge_enter(self.second, chan)
            pbx.bridge_peers_vars(self.second)
            chan.before_destroy = self.complete
        elif what in ("busy", "congestion", "hangup"):
            out.observer = None
            if not out.dead:
                pbx.destroy(out)
            self._back_to_caller()

    def _back_to_caller(self) -> None:
        """The consultation failed or was cancelled: the transferer talks to the held party again."""
        pbx, chan = self.pbx, self.chan
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
        transferer.before_destroy = None
        transferer.atxfer = None
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


def attended_transfer(pbx: Pbx, chan: Channel, context: str, exten: str) -> None:
    """Atxfer: ``chan`` puts its bridge on hold, calls ``exten@context`` (a Local channel); when
    ``chan`` hangs up the held party and the target are joined (BridgeMerge + AttendedTransfer)."""
    orig = chan.bridge
    if orig is None or len(orig.channels) < 2:
        raise TransferError("Channel is not in a bridge")
    if chan.atxfer is not None:
        raise TransferError("Atxfer already in progress")
    held = [c for c in orig.channels if c is not chan]
    job = _Atxfer(pbx, chan, orig, held)
    pbx.set_var(chan, "TRANSFER_CONTEXT", context)
    for digit in "*2":
        pbx.dtmf(chan, digit, 0, begin=False)
    pbx.chan_event("Hold", chan)
    for party in held:
        pbx.start_moh(party)
    for digit in exten:
        pbx.dtmf(chan, digit, 0, begin=False)
    try:
        target = pbx.request("Local", f"{exten}@{context}", chan)
    except RequestFailed as exc:
        job._back_to_caller()
        raise TransferError("Atxfer failed") from exc
    pbx.inherit_variables(chan, target)  # e.g. __CTI_CONSULT_DIAL for [cti-consult]
    pbx.set_var(target, "TRANSFERERNAME", chan.name)
    pbx.set_var(target, "ATTENDEDTRANSFER", chan.name)
    job.second = pbx.bridge_create("atxfer")
    job.target = target
    try:
        pbx.call(target, f"{exten}@{context}", two_caller=(chan.caller_num, chan.caller_name))
    except RequestFailed as exc:
        job._back_to_caller()
        raise TransferError("Atxfer failed") from exc
    target.observer = job.on_target
    chan.atxfer = job


def cancel_attended_transfer(pbx: Pbx, chan: Channel) -> None:
    """CancelAtxfer: abandon ``chan``'s consultation and return it to the held party."""
    job = chan.atxfer
    if not isinstance(job, _Atxfer):
        raise TransferError("No attended transfer in progress")
    job.cancel()
