"""Outgoing calls of the simulated PBX: the Dial() application and AMI Originate, with Asterisk 22's
DialBegin/DialState/DialEnd, DIALSTATUS variables, OriginateResponse reasons and bridging on answer.
Drives the Pbx (sim.pbx) it is handed; imports Twisted's Deferred only; no reactor, no wall clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall

from sim.ami_events import UP, Headers, parse_caller_id, snapshot
from sim.channel import Channel
from sim.channel_requests import (
    REASON_ANSWERED,
    REASON_BUSY,
    REASON_CONGESTION,
    REASON_FAILURE,
    REASON_HANGUP,
    REASON_TIMEOUT,
    OriginateResult,
    RequestFailed,
    parse_dial_targets,
    split_dial_args,
)

if TYPE_CHECKING:
    from sim.pbx import Pbx

log = logging.getLogger(__name__)

DIAL_VARS = ("DIALSTATUS", "DIALEDPEERNUMBER", "DIALEDPEERNAME", "ANSWEREDTIME", "ANSWEREDTIME_MS",
             "DIALEDTIME", "DIALEDTIME_MS", "RINGTIME", "RINGTIME_MS", "PROGRESSTIME", "PROGRESSTIME_MS")
DEFAULT_ORIGINATE_TIMEOUT = 30.0


def _status_for_cause(cause: int) -> str:
    if cause == 17:
        return "BUSY"
    if cause in (34, 42, 38):
        return "CONGESTION"
    if cause in (20, 3, 66, 27):
        return "CHANUNAVAIL"
    return "NOANSWER"


def _dial_event(pbx: Pbx, name: str, caller: Channel | None, dest: Channel, extra: Headers) -> None:
    headers: Headers = [*snapshot(caller)] if caller is not None else []
    pbx.emit(name, "call,all", [*headers, *snapshot(dest, "Dest"), *extra])


def _outgoing_setup(pbx: Pbx, out: Channel, app: str) -> None:
    out.app, out.appdata = app, "(Outgoing Line)"
    out.cdr_last_app, out.cdr_last_data = app, "(Outgoing Line)"
    pbx.chan_event("Newexten", out, [("Extension", out.exten), ("Application", app),
                                     ("AppData", "(Outgoing Line)")], "dialplan,all")


# ----------------------------------------------------------------------------------------------
# Dial()
@dataclass(slots=True)
class _Dial:
    pbx: Pbx
    caller: Channel
    options: str
    outs: dict[str, tuple[Channel, str]] = field(default_factory=dict)  # name -> (channel, dialstring)
    status: str = "NOANSWER"
    answered: Channel | None = None
    started: float = 0.0
    answered_at: float = 0.0
    timer: IDelayedCall | None = None
    done: bool = False
    rang: bool = False

    def on_event(self, out: Channel, what: str) -> None:
        if self.done or out.name not in self.outs:
            return
        if what == "ringing":
            if not self.rang:
                # app_dial: the first ringing sets RINGTIME(_MS) on the caller (time since the outgoing
                # channel was created), then publishes the DialState.
                self.rang = True
                ms = int((self.pbx.clock.seconds() - out.created) * 1000)
                self.pbx.set_var(self.caller, "RINGTIME", str(ms // 1000))
                self.pbx.set_var(self.caller, "RINGTIME_MS", str(ms))
                if "m" not in parse_app_options(self.options) and self.caller.state != UP:
                    # app_dial passes the ringing on to its caller (no music requested): a Local ;2
                    # dialling makes its ;1 ring (the consultation channel of an attended transfer).
                    self.pbx.indicate(self.caller, "ringing")
            _dial_event(self.pbx, "DialState", self.caller, out, [("DialStatus", "RINGING")])
        elif what == "answer":
            self._answer(out)
        elif what in ("busy", "congestion", "hangup"):
            status = {"busy": "BUSY", "congestion": "CONGESTION"}.get(what) or _status_for_cause(out.hangupcause)
            self._drop(out, status)
            self.status = status
            if not self.outs:
                self._finish(0)

    def _drop(self, out: Channel, status: str) -> None:
        _, dialstring = self.outs.pop(out.name)
        out.observer = None
        if status:
            _dial_event(self.pbx, "DialEnd", self.caller, out, [("DialStatus", status)])
        if not out.dead:
            self.pbx.destroy(out)

    def timeout(self) -> None:
        self.timer = None
        if self.done or self.answered is not None:
            return
        for out, _ in list(self.outs.values()):
            self._drop(out, "NOANSWER")
        self.status = "NOANSWER"
        self._finish(0)

    def cleanup(self) -> None:
        """The caller's Dial was interrupted (hangup or redirect) while ringing."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.answered is None:
            for out, _ in list(self.outs.values()):
                self._drop(out, "CANCEL")
            self.status = "CANCEL"
            self.pbx.stop_moh(self.caller)
            self.pbx.set_var(self.caller, "DIALSTATUS", "CANCEL")
        self.done = True

    def _finish(self, result: int) -> None:
        if self.done:
            return
        self.done = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.pbx.stop_moh(self.caller)
        self.pbx.set_var(self.caller, "DIALSTATUS", self.status)
        blk = self.caller.block
        if blk is not None:
            blk.cleanup = None
            self.pbx.unblock(self.caller, result, blk)

    def _answer(self, out: Channel) -> None:
        pbx, caller = self.pbx, self.caller
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        _, dialstring = self.outs.pop(out.name)
        out.observer = None
        for other, _ in list(self.outs.values()):
            other.hangupcause = 26
            self._drop(other, "CANCEL")
        self.answered = out
        self.answered_at = pbx.clock.seconds()
        if caller.state != UP:
            pbx.answer(caller)
        pbx.set_var(caller, "DIALSTATUS", "ANSWER")
        pbx.set_var(caller, "DIALEDPEERNAME", out.name)
        pbx.set_var(caller, "DIALEDPEERNUMBER", dialstring)
        out.write_exten("")
        opts = parse_app_options(self.options)
        out.xfer_features = out.xfer_features or "t" in opts
        caller.xfer_features = caller.xfer_features or "T" in opts
        _dial_event(pbx, "DialEnd", caller, out, [("DialStatus", "ANSWER")])
        pbx.stop_moh(caller)  # the music stops as the two are bridged (after DialEnd, as the reference PBX shows)
        caller.cdr_dest_channel = out.name
        bridge = pbx.bridge_create("dial", caller)
        _outgoing_setup(pbx, out, "AppDial")
        pbx.bridge_enter(bridge, out)
        pbx.bridge_enter(bridge, caller)
        pbx.bridge_peers_vars(bridge)
        blk = caller.block
        if blk is not None:
            # From now on the caller's Dial waits for the bridge to end; a hangup ends it too.
            blk.cleanup = None

    def after(self, res: int) -> int:
        """The Dial application returns: after a bridged call that ended (not redirected away) set the
        timing variables; then DIALSTATUS again (app_dial's exit, as the reference PBX shows)."""
        self.done = True
        if self.answered is not None:
            if self.caller.goto_target is None:
                now = self.pbx.clock.seconds()
                talked = now - self.answered_at
                dialled = now - self.started
                for name, value in (("ANSWEREDTIME", str(int(talked))), ("ANSWEREDTIME_MS", str(int(talked * 1000))),
                                    ("DIALEDTIME", str(int(dialled))), ("DIALEDTIME_MS", str(int(dialled * 1000)))):
                    self.pbx.set_var(self.caller, name, value)
            if not self.caller.dead:
                self.pbx.set_var(self.caller, "DIALSTATUS", "ANSWER")
            return -1
        return res


def parse_app_options(text: str) -> dict[str, str]:
    """An application's option letters, some with an argument in parentheses (``mtb(ctx^s^1)``):
    letter -> argument ("" when it has none), as Asterisk's ast_app_parse_options reads them."""
    opts: dict[str, str] = {}
    i = 0
    while i < len(text):
        letter = text[i]
        i += 1
        arg = ""
        if i < len(text) and text[i] == "(":
            # Nested parentheses belong to the argument (``b(ctx^s^1(arg))``), as app.c's parse_options reads.
            depth, end = 0, len(text)
            for j in range(i, len(text)):
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                if depth == 0:
                    end = j
                    break
            arg, i = text[i + 1:end], end + 1
        if letter.strip():
            opts[letter] = arg
    return opts


def dial(pbx: Pbx, caller: Channel, data: str) -> int | Deferred[int]:
    """Dial(targets[,timeout[,options]]): ring every target, bridge the first to answer.

    Options followed: ``m`` (music on hold while ringing), ``t``/``T`` (the called/calling party gets
    the DTMF transfer features), ``b(context^exten^priority[(arg1^...)])`` (a pre-dial handler on each
    outgoing channel before it is called, with its Gosub arguments)."""
    targets_text, timeout, options = split_dial_args(data)
    targets = parse_dial_targets(targets_text)
    if not targets:
        log.warning("%s: Dial requires an argument (technology/resource), got %r", caller.name, data)
        return -1
    for name in DIAL_VARS:
        pbx.set_var(caller, name, "")
    opts = parse_app_options(options)
    state = _Dial(pbx, caller, options, started=pbx.clock.seconds())
    status = "CHANUNAVAIL"
    for tech, resource in targets:
        try:
            out = pbx.request(tech, resource, caller)
        except RequestFailed:
            continue
        pbx.set_var(out, "DIALEDPEERNUMBER", resource)
        pbx.inherit_variables(caller, out)
        out.write_exten(caller.exten)
        # app_dial sets the outgoing channel's ids before its first dialplan event, then publishes them.
        out.write_caller(caller.exten, caller.caller_name)
        out.conn_num, out.conn_name = caller.caller_num, caller.caller_name
        _outgoing_setup(pbx, out, "AppDial")
        pbx.set_caller(out, caller.exten, caller.caller_name)
        pbx.set_connected(out, caller.caller_num, caller.caller_name)
        if "b" in opts:
            where, _, args = opts["b"].partition("(")
            sub = (where.split("^") + ["s", "1"])[:3] if where else []
            if len(sub) == 3 and sub[0]:
                try:
                    pbx.run_subroutine(out, sub[0], sub[1] or "s", int(sub[2] or 1),
                                       args.removesuffix(")").split("^") if args.removesuffix(")") else [])
                except ValueError:
                    log.warning("%s: bad pre-dial handler %r", caller.name, opts["b"])
        try:
            pbx.call(out, resource)
        except RequestFailed as exc:
            status = _status_for_cause(exc.cause) if exc.cause else "CHANUNAVAIL"
            continue
        _dial_event(pbx, "DialBegin", caller, out, [("DialString", resource)])
        out.observer = state.on_event
        state.outs[out.name] = (out, resource)
    if not state.outs:
        pbx.set_var(caller, "DIALSTATUS", status)
        return 0
    if "m" in opts:
        pbx.start_moh(caller)
    d = pbx.block(caller, None, cleanup=state.cleanup)
    if timeout is not None and timeout > 0:
        state.timer = pbx.later(timeout, state.timeout)
    return d.addCallback(state.after)


# ----------------------------------------------------------------------------------------------
# Originate
@dataclass(frozen=True, slots=True)
class OriginateRequest:
    """What an AMI Originate asks for (already validated by the AMI layer)."""

    channel: str
    context: str = ""
    exten: str = ""
    priority: str = "1"
    application: str = ""
    data: str = ""
    timeout: float = DEFAULT_ORIGINATE_TIMEOUT
    caller_id: str = ""
    variables: tuple[tuple[str, str], ...] = ()
    account: str = ""


@dataclass(slots=True)
class _Originate:
    pbx: Pbx
    req: OriginateRequest
    chan: Channel
    d: Deferred[OriginateResult]
    timer: IDelayedCall | None = None
    done: bool = False

    def _fail(self, reason: int, disposition: str) -> None:
        if self.done:
            return
        self.done = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.chan.observer = None
        self.chan.cdr_disposition = disposition
        if not self.chan.dead:
            self.pbx.destroy(self.chan)
        self.d.callback(OriginateResult(reason, None))

    def on_event(self, chan: Channel, what: str) -> None:
        if self.done:
            return
        pbx = self.pbx
        if what == "ringing":
            _dial_event(pbx, "DialState", None, chan, [("DialStatus", "RINGING")])
            if chan.tech == "Local":
                pbx.device_state(chan, "INUSE")
        elif what == "answer":
            self._answered()
        elif what == "busy":
            _dial_event(pbx, "DialEnd", None, chan, [("DialStatus", "BUSY")])
            self._fail(REASON_BUSY, "BUSY")
        elif what == "congestion":
            _dial_event(pbx, "DialEnd", None, chan, [("DialStatus", "CONGESTION")])
            self._fail(REASON_CONGESTION, "FAILED")
        elif what == "hangup":
            cause = chan.hangupcause
            reason = {17: REASON_BUSY, 34: REASON_CONGESTION, 19: REASON_TIMEOUT}.get(cause, REASON_HANGUP)
            self._fail(reason, "NO ANSWER" if reason != REASON_BUSY else "BUSY")

    def on_timeout(self) -> None:
        self.timer = None
        if self.done:
            return
        self.chan.hangupcause = 19
        self._fail(REASON_TIMEOUT, "NO ANSWER")

    def _answered(self) -> None:
        pbx, chan, req = self.pbx, self.chan, self.req
        self.done = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        chan.observer = None
        _dial_event(pbx, "DialEnd", None, chan, [("DialStatus", "ANSWER")])
        if chan.tech == "Local":
            pbx.device_state(chan, "INUSE")
            pbx.device_state(chan, "INUSE")
        pbx.processed_calls += 1
        if req.application:
            data = chan.substitute(req.data)
            chan.cdr_last_app, chan.cdr_last_data = req.application, data
            res = pbx.exec_app(chan, req.application, data)

            def app_done(_: int) -> None:
                if not chan.dead:
                    pbx.destroy(chan)

            res.addCallback(app_done)
        else:
            prio = pbx.resolve_priority(req.context, req.exten, req.priority)
            pbx.start_pbx(chan, req.context, req.exten, prio if prio is not None else 1)
        self.d.callback(OriginateResult(REASON_ANSWERED, chan))


def originate(pbx: Pbx, req: OriginateRequest) -> Deferred[OriginateResult]:
    """Place the call; the Deferred fires with the OriginateResponse outcome (never errbacks)."""
    tech, _, resource = req.channel.partition("/")
    try:
        chan = pbx.request(tech, resource)
    except RequestFailed:
        return succeed(OriginateResult(REASON_FAILURE, None))
    _outgoing_setup(pbx, chan, "AppDial2")
    for key, value in reversed(req.variables):
        pbx.set_var(chan, key, value)
    if req.account:
        pbx.set_accountcode(chan, req.account)
    if req.caller_id:
        name, num = parse_caller_id(req.caller_id)
        pbx.set_caller(chan, num, name)
        pbx.set_connected(chan, num, name)
    try:
        pbx.call(chan, resource)
    except RequestFailed:
        chan.cdr_disposition = "FAILED"
        return succeed(OriginateResult(REASON_FAILURE, None))
    d: Deferred[OriginateResult] = Deferred()
    job = _Originate(pbx, req, chan, d)
    _dial_event(pbx, "DialBegin", None, chan, [("DialString", resource)])
    chan.observer = job.on_event
    job.timer = pbx.later(req.timeout, job.on_timeout)
    return d
