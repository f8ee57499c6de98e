"""Dialplan applications of the simulated PBX (the ones extensions_cti.conf and the transcripts'
dialplan use). Each is ``app(pbx, channel, data) -> int | Deferred[int]``: 0 continue, -1 hang up.
Imports sim.pbx/sim.calls and Twisted's Deferred only; no reactor, no wall clock.

Durations that Asterisk gets from sound files are fixed here (PROMPT_SECONDS) so runs are
deterministic; AMD's answer comes from the far end model (FarEnd.machine).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from sim.ami_events import BUSY, RING, RINGING, UP, snapshot
from sim.dialplan import check_condition, parse_goto, split_args, split_condition

if TYPE_CHECKING:
    from sim.pbx import Channel, Pbx

log = logging.getLogger(__name__)

App = Callable[["Pbx", "Channel", str], "int | Deferred[int]"]

# Seconds a prompt plays; anything not listed plays DEFAULT_PROMPT_SECONDS.
PROMPT_SECONDS: dict[str, float] = {"beep": 1.0, "vm-goodbye": 1.0, "demo-congrats": 5.0}
DEFAULT_PROMPT_SECONDS = 2.0
VOICEMAIL_GREETING_SECONDS = 3.0
VOICEMAIL_MESSAGE_SECONDS = 6.0
AMD_HUMAN_SECONDS = 1.6
AMD_MACHINE_SECONDS = 2.5
MACHINE_GREETING_SECONDS = 4.0
DTMF_DIGIT_MS = 100  # SendDTMF default duration per digit
DTMF_GAP_SECONDS = 0.25
ANSWER_MEDIA_WAIT = 0.5  # __ast_answer(): MAX(delay, 500) ms waiting for media after answering
PJSIP_MEDIA_WAIT = 0.02  # a real phone's first RTP packet arrives after about one frame


def prompt_seconds(files: str) -> float:
    return sum(PROMPT_SECONDS.get(f.strip(), DEFAULT_PROMPT_SECONDS) for f in files.split("&") if f.strip())


def _number(text: str, default: float) -> float:
    try:
        return float(text)
    except ValueError:
        return default


def app_noop(pbx: Pbx, chan: Channel, data: str) -> int:
    return 0


def app_answer(pbx: Pbx, chan: Channel, data: str) -> int | Deferred[int]:
    """Answer; like __ast_answer(), a channel that was ringing then waits up to 500 ms for the first
    media frame, which a Local channel never gets (its ;2 sits in Answer() for half a second)."""
    was = chan.state
    pbx.answer(chan)
    if was in (RING, RINGING):
        return pbx.wait_for_media(chan, ANSWER_MEDIA_WAIT if chan.tech == "Local" else PJSIP_MEDIA_WAIT)
    return 0


def app_set(pbx: Pbx, chan: Channel, data: str) -> int:
    name, sep, value = data.partition("=")
    if not sep or not name.strip():
        log.warning("%s: Set requires NAME=value, got %r", chan.name, data)
        return 0
    pbx.set_var(chan, name.strip(), value)
    return 0


def app_goto(pbx: Pbx, chan: Channel, data: str) -> int:
    try:
        ctx, ext, prio = parse_goto(data, chan.context, chan.exten)
    except ValueError:
        return -1
    return 0 if pbx.goto(chan, ctx, ext, prio) else -1


def app_gotoif(pbx: Pbx, chan: Channel, data: str) -> int:
    cond, iftrue, iffalse = split_condition(data)
    target = iftrue if check_condition(cond) else iffalse
    if not target.strip():
        return 0
    return app_goto(pbx, chan, target)


def app_hangup(pbx: Pbx, chan: Channel, data: str) -> int:
    cause = data.strip()
    if cause.isdigit():
        chan.hangupcause = int(cause)
    elif chan.hangupcause == 0:
        chan.hangupcause = 16
    return -1


def app_wait(pbx: Pbx, chan: Channel, data: str) -> Deferred[int]:
    return pbx.block(chan, max(_number(data, 0.0), 0.0))


def app_echo(pbx: Pbx, chan: Channel, data: str) -> Deferred[int]:
    return pbx.block(chan, None)


def app_ringing(pbx: Pbx, chan: Channel, data: str) -> int:
    pbx.indicate(chan, "ringing")
    return 0


def _busy_like(pbx: Pbx, chan: Channel, data: str, cause: int, what: str) -> Deferred[int]:
    chan.hangupcause = cause
    chan.cdr_disposition = "BUSY" if what == "busy" else "FAILED"
    if chan.state != UP:
        pbx.set_state(chan, BUSY)
    pbx.indicate(chan, what)
    timeout = _number(data, 0.0) if data.strip() else None
    d = pbx.block(chan, timeout if timeout and timeout > 0 else None)
    d.addCallback(lambda _: -1)
    return d


def app_busy(pbx: Pbx, chan: Channel, data: str) -> Deferred[int]:
    return _busy_like(pbx, chan, data, 17, "busy")


def app_congestion(pbx: Pbx, chan: Channel, data: str) -> Deferred[int]:
    return _busy_like(pbx, chan, data, 34, "congestion")


def app_playback(pbx: Pbx, chan: Channel, data: str) -> Deferred[int]:
    args = split_args(data)
    files = args[0] if args else ""
    options = args[1] if len(args) > 1 else ""
    if chan.state != UP and "noanswer" not in options:
        pbx.answer(chan)
    pbx.media(chan)

    def done(res: int) -> int:
        if res == 0:
            pbx.set_var(chan, "PLAYBACKSTATUS", "SUCCESS")
        return res

    return pbx.block(chan, prompt_seconds(files)).addCallback(done)


def app_musiconhold(pbx: Pbx, chan: Channel, data: str) -> Deferred[int]:
    args = split_args(data)
    klass = args[0] if args and args[0] else "default"
    duration = _number(args[1], 0.0) if len(args) > 1 and args[1].strip() else 0.0
    pbx.start_moh(chan, klass)
    pbx.media(chan)
    return pbx.block(chan, duration if duration > 0 else None, cleanup=lambda: pbx.stop_moh(chan))


def app_userevent(pbx: Pbx, chan: Channel, data: str) -> int:
    args = split_args(data)
    name = args[0].strip() if args else ""
    extra = [("UserEvent", name)]
    for item in args[1:]:
        key, sep, value = item.partition(":")
        if sep and key.strip():
            extra.append((key.strip(), value.strip()))
    pbx.emit("UserEvent", "user,all", [*snapshot(chan), *extra])
    return 0


def app_senddtmf(pbx: Pbx, chan: Channel, data: str) -> Deferred[int]:
    args = split_args(data)
    digits = [d for d in (args[0] if args else "") if d in "0123456789*#ABCDabcd"]
    target = chan.peer if chan.peer is not None and not chan.peer.dead else None
    step = DTMF_DIGIT_MS / 1000.0 + DTMF_GAP_SECONDS
    for i, digit in enumerate(digits):
        if target is not None:
            chan.timers.append(pbx.later(i * step, pbx.dtmf, target, digit, DTMF_DIGIT_MS, True))
    return pbx.block(chan, len(digits) * step)


def app_agi(pbx: Pbx, chan: Channel, data: str) -> int | Deferred[int]:
    args = split_args(data)
    url = args[0].strip() if args else ""
    if pbx.agi is None or not url.startswith("agi://"):
        # Once per PBX at WARNING (a load run would otherwise log every call), then DEBUG.
        level = logging.DEBUG if getattr(pbx, "_agi_warned", False) else logging.WARNING
        pbx._agi_warned = True  # type: ignore[attr-defined]
        log.log(level, "%s: AGI(%s) cannot run (no FastAGI client / not agi://)", chan.name, url)
        pbx.set_var(chan, "AGISTATUS", "FAILURE")
        return 0
    try:
        session = pbx.agi.run(chan, url, args[1:])
    except Exception:
        log.exception("%s: FastAGI client failed to start", chan.name)
        pbx.set_var(chan, "AGISTATUS", "FAILURE")
        return 0
    d = pbx.block(chan, None, interruptible=False)

    def finished(status: str | Failure) -> None:
        if isinstance(status, Failure):
            log.warning("%s: FastAGI session failed: %s", chan.name, status.getErrorMessage())
            status = "FAILURE"
        if status not in ("SUCCESS", "FAILURE", "HANGUP"):
            status = "FAILURE"
        if chan.dead:
            return
        if status == "HANGUP" or chan.soft:
            chan.cdr_last_app, chan.cdr_last_data = "AGI", data
        pbx.set_var(chan, "AGISTATUS", status)
        pbx.unblock(chan, -1 if status == "HANGUP" else 0)

    session.addBoth(finished)
    return d


def app_amd(pbx: Pbx, chan: Channel, data: str) -> Deferred[int]:
    machine = chan.far_end is not None and chan.far_end.machine
    status, cause, secs = (
        ("MACHINE", "LONGGREETING-1500-1500", AMD_MACHINE_SECONDS) if machine
        else ("HUMAN", "HUMAN-300-800", AMD_HUMAN_SECONDS)
    )

    def done(res: int) -> int:
        if res == 0:
            pbx.set_var(chan, "AMDSTATUS", status)
            pbx.set_var(chan, "AMDCAUSE", cause)
        return res

    return pbx.block(chan, secs).addCallback(done)


def app_waitforsilence(pbx: Pbx, chan: Channel, data: str) -> Deferred[int]:
    args = split_args(data)
    limit = _number(args[2], 0.0) if len(args) > 2 and args[2].strip() else 0.0
    secs = MACHINE_GREETING_SECONDS if limit <= 0 else min(MACHINE_GREETING_SECONDS, limit)
    status = "SILENCE" if limit <= 0 or MACHINE_GREETING_SECONDS <= limit else "TIMEOUT"

    def done(res: int) -> int:
        if res == 0:
            pbx.set_var(chan, "WAITSTATUS", status)
        return res

    return pbx.block(chan, secs).addCallback(done)


def app_voicemail(pbx: Pbx, chan: Channel, data: str) -> Deferred[int]:
    """Simulated: greeting, a short message from the caller, then VMSTATUS=SUCCESS."""
    if chan.state != UP:
        pbx.answer(chan)

    def done(res: int) -> int:
        if res == 0:
            pbx.set_var(chan, "VMSTATUS", "SUCCESS")
        return res

    return pbx.block(chan, VOICEMAIL_GREETING_SECONDS + VOICEMAIL_MESSAGE_SECONDS).addCallback(done)


def app_return(pbx: Pbx, chan: Channel, data: str) -> int:
    """Return() reached by the dialplan loop is outside any Gosub: app_stack warns and hangs up.
    (Pre-dial handlers' Return() is handled by Pbx.run_subroutine.)"""
    log.warning("%s: Return without Gosub: stack is empty", chan.name)
    return -1


def app_dial(pbx: Pbx, chan: Channel, data: str) -> int | Deferred[int]:
    from sim.calls import dial

    return dial(pbx, chan, data)


APPLICATIONS: dict[str, App] = {
    "NoOp": app_noop,
    "Verbose": app_noop,
    "Progress": app_noop,
    "Answer": app_answer,
    "Set": app_set,
    "Goto": app_goto,
    "GotoIf": app_gotoif,
    "Hangup": app_hangup,
    "Wait": app_wait,
    "Echo": app_echo,
    "Ringing": app_ringing,
    "Busy": app_busy,
    "Congestion": app_congestion,
    "Playback": app_playback,
    "MusicOnHold": app_musiconhold,
    "UserEvent": app_userevent,
    "SendDTMF": app_senddtmf,
    "AGI": app_agi,
    "AMD": app_amd,
    "WaitForSilence": app_waitforsilence,
    "VoiceMail": app_voicemail,
    "Dial": app_dial,
    "Return": app_return,
}
