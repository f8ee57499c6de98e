"""Dialplan applications of the simulated PBX (the ones extensions_cti.conf and the transcripts'
dialplan use). Each is ``app(pbx, channel, data) -> int | Deferred[int]``: 0 continue, -1 hang up.
Imports sim.pbx/sim.outgoing and Twisted's Deferred only; no reactor, no wall clock.

Durations that Asterisk gets from sound files are fixed (the FastAGI client's table of the core
sounds' lengths, ``sim.fastagi_client.PROMPT_SECONDS``) so runs are deterministic. AMD's answer comes
from the far end model (FarEnd.machine) on a PJSIP channel, and from what the other half plays on a
Local channel (sim.amd).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from sim.amd import AmdDecision, LocalAmd
from sim.ami_events import BUSY, RING, RINGING, UP, snapshot
from sim.dialplan import check_condition, parse_goto, split_args, split_condition
from sim.mixmonitor import app_mixmonitor, app_stopmixmonitor
from sim.outgoing import dial

if TYPE_CHECKING:
    from sim.channel import Channel
    from sim.pbx import Pbx

log = logging.getLogger(__name__)

App = Callable[["Pbx", "Channel", str], "int | Deferred[int]"]

# A sound file not in the FastAGI client's table of lengths plays this long.
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
    """How long ``Playback(a&b...)`` plays: the core sounds' lengths, DEFAULT_PROMPT_SECONDS for others."""
    from sim.fastagi_client import PROMPT_SECONDS

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
    pbx.voice(chan, True)

    def done(res: int) -> int:
        if res == 0:
            pbx.set_var(chan, "PLAYBACKSTATUS", "SUCCESS")
        return res

    return pbx.block(chan, prompt_seconds(files), cleanup=lambda: pbx.voice(chan, False)).addCallback(done)


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
    """SendDTMF(digits[,timeout_ms[,duration_ms]]): each digit for duration_ms (at least 100 ms, as
    ast_senddigit emulates it), then timeout_ms (default 250) before the next; heard by the Local peer."""
    args = split_args(data)
    digits = [d for d in (args[0] if args else "") if d in "0123456789*#ABCDabcd"]
    target = chan.peer if chan.peer is not None and not chan.peer.dead else None
    gap = _number(args[1], 0.0) if len(args) > 1 and args[1].strip() else 0.0
    duration = _number(args[2], 0.0) if len(args) > 2 and args[2].strip() else 0.0
    step = max(duration, DTMF_DIGIT_MS) / 1000.0 + (gap / 1000.0 if gap > 0 else DTMF_GAP_SECONDS)
    for i, digit in enumerate(digits):
        if target is not None:
            chan.timers.append(pbx.later(i * step, pbx.dtmf, target, digit, DTMF_DIGIT_MS, True))
    return pbx.block(chan, len(digits) * step)


def app_agi(pbx: Pbx, chan: Channel, data: str) -> int | Deferred[int]:
    args = split_args(data)
    url = args[0].strip() if args else ""
    if pbx.agi is None or not url.startswith("agi://"):
        # Once per PBX at WARNING (a load run would otherwise log every call), then DEBUG.
        level = logging.DEBUG if pbx.agi_warned else logging.WARNING
        pbx.agi_warned = True
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
    """AMD([initialSilence[,greeting[,...]]]): on a Local channel app_amd hears what the other half plays
    (sim.amd.LocalAmd, amd.conf's settings with the arguments over them); elsewhere the far end model
    says HUMAN or MACHINE. Hung up (or redirected) meanwhile: AMDSTATUS=HANGUP, AMDCAUSE empty."""
    peer = chan.peer if chan.tech == "Local" and chan.peer is not None and not chan.peer.dead else None
    if peer is None:
        machine = chan.far_end is not None and chan.far_end.amd_says_machine
        decision = (AmdDecision("MACHINE", "LONGGREETING-1500-1500") if machine
                    else AmdDecision("HUMAN", "HUMAN-300-800"))
        secs = AMD_MACHINE_SECONDS if machine else AMD_HUMAN_SECONDS
        return _amd_wait(pbx, chan, lambda now: pbx.clock.seconds() + secs, lambda now: decision)[0]
    settings = pbx.amd.with_args(split_args(data)) if data.strip() else pbx.amd
    model = LocalAmd(settings, pbx.clock.seconds())
    if peer.playing:
        model.voice(True, pbx.clock.seconds())

    def heard(on: bool) -> None:
        model.voice(on, pbx.clock.seconds())
        reschedule()

    d, reschedule = _amd_wait(pbx, chan, model.due, model.decide, heard)
    return d


def _amd_wait(pbx: Pbx, chan: Channel, due: Callable[[float], float], decide: Callable[[float], AmdDecision],
              heard: Callable[[bool], None] | None = None) -> tuple[Deferred[int], Callable[[], None]]:
    """Block ``chan`` until ``due(now)`` (asked again by the returned ``reschedule``), then set what
    ``decide(now)`` says; ``heard`` listens to the Local peer's audio meanwhile."""

    def detach() -> None:
        if heard is not None and heard in chan.voice_listeners:
            chan.voice_listeners.remove(heard)

    def finish() -> None:
        blk.cleanup = None
        detach()
        decision = decide(pbx.clock.seconds())
        pbx.set_var(chan, "AMDSTATUS", decision.status)
        pbx.set_var(chan, "AMDCAUSE", decision.cause)
        pbx.unblock(chan, 0, blk)

    def interrupted() -> None:
        # app_amd: ast_read() returned NULL -> "HANGUP" (set before the channel goes).
        detach()
        pbx.set_var(chan, "AMDSTATUS", "HANGUP")
        pbx.set_var(chan, "AMDCAUSE", "")

    def reschedule() -> None:
        if blk.done:
            return
        if blk.timer is not None and blk.timer.active():
            blk.timer.cancel()
        now = pbx.clock.seconds()
        blk.timer = pbx.later(due(now) - now, finish)

    d = pbx.block(chan, None, cleanup=interrupted)
    blk = chan.block
    assert blk is not None
    if heard is not None:
        chan.voice_listeners.append(heard)
    reschedule()
    return d, reschedule


def app_execif(pbx: Pbx, chan: Channel, data: str) -> int | Deferred[int]:
    """ExecIf(expr?app(args)[:app(args)]) as app_exec.c reads it: split at the first ``?`` then the
    first ``:``; an application's arguments run from its first ``(`` to its last ``)``. An application
    that does not exist hangs up (-1). (The deprecated ``ExecIf(expr,app,args)`` form too.)"""
    comma, question = data.find(","), data.find("?")
    if question < 0 or (0 <= comma < question):
        parts = data.split(",", 2) + ["", ""]
        log.warning("%s: Deprecated syntax found.  Please upgrade to using ExecIf(<expr>?%s(%s))",
                    chan.name, parts[1], parts[2])
        expr, true_app, true_data, false_app, false_data = parts[0], parts[1], parts[2], "", ""
    else:
        expr, remainder = data[:question], data[question + 1:]
        if not remainder:
            log.error("Usage: ExecIf(<expr>?<appiftrue>(<args>)[:<appiffalse>(<args)])")
            return -1
        true_text, _, false_text = remainder.partition(":")
        true_app, true_data = _app_and_args(true_text)
        false_app, false_data = _app_and_args(false_text)
    if check_condition(expr):
        return _exec_in_place(pbx, chan, true_app, true_data)
    if false_app:
        return _exec_in_place(pbx, chan, false_app, false_data)
    return 0


def _app_and_args(text: str) -> tuple[str, str]:
    name, paren, rest = text.partition("(")
    if paren and ")" in rest:
        rest = rest[:rest.rfind(")")]
    return name, rest


def _exec_in_place(pbx: Pbx, chan: Channel, app: str, data: str) -> int | Deferred[int]:
    """pbx_exec() of another application from inside one (no Newexten; the channel shows it meanwhile)."""
    if app.lower() not in pbx.apps:
        log.warning("%s: Could not find application! (%s)", chan.name, app)
        return -1
    saved = chan.app, chan.appdata
    chan.app, chan.appdata = app, data
    res = pbx.run_app(chan, app, data)

    def restore(result: int) -> int:
        chan.app, chan.appdata = saved
        return result

    if isinstance(res, Deferred):
        return res.addCallback(restore)
    return restore(res)


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


def app_chanspy(pbx: Pbx, chan: Channel, data: str) -> int | Deferred[int]:
    """ChanSpy(prefix,options) as app_chanspy runs it on one channel: answer the spy if it is not up, find the
    first other live channel whose name starts with ``prefix`` (case-insensitive, in Asterisk's container
    order), raise ``ChanSpyStart`` (Spyer*/Spyee* snapshots) and stay there until either side hangs up, then
    ``ChanSpyStop``. With no such channel, option ``S`` ends the application at once (without it ChanSpy keeps
    waiting for one). The audio (q quiet, w whisper, B barge) is not modelled: the events are what the server
    sees."""
    args = split_args(data)
    prefix = args[0].strip().lower() if args else ""
    options = args[1] if len(args) > 1 else ""
    if chan.state != UP:
        pbx.answer(chan)
    target = next((c for c in pbx.ordered_channels() if c is not chan and not c.dead and not c.soft
                   and c.name.lower().startswith(prefix)), None)
    if target is None:
        return 0 if "S" in options else pbx.block(chan, None)
    pbx.emit("ChanSpyStart", "call,all", [*snapshot(chan, "Spyer"), *snapshot(target, "Spyee")])
    stopped: list[bool] = []

    def stop() -> None:
        if not stopped:
            stopped.append(True)
            pbx.emit("ChanSpyStop", "call,all", [*snapshot(chan, "Spyer"), *snapshot(target, "Spyee")])

    d = pbx.block(chan, None, cleanup=stop)
    blk = chan.block
    target.on_hangup(lambda: pbx.soon(pbx.unblock, chan, 0, blk))  # E (or S, none left): the spy goes on
    return d


def app_dial(pbx: Pbx, chan: Channel, data: str) -> int | Deferred[int]:
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
    "ExecIf": app_execif,
    "WaitForSilence": app_waitforsilence,
    "VoiceMail": app_voicemail,
    "Dial": app_dial,
    "MixMonitor": app_mixmonitor,
    "StopMixMonitor": app_stopmixmonitor,
    "Return": app_return,
    "ChanSpy": app_chanspy,
}
