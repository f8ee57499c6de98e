"""The simulated Asterisk core: channels (Local pairs, PJSIP), the dialplan runner, hangups, Dial,
Originate and bridges, emitting AMI events with Asterisk 22's names, headers and order.
Imports Twisted's Deferred and time interfaces only: no reactor, no sockets, no wall clock.

Determinism: every id comes from counters or from the one ``random.Random(seed)``; time comes
from the injected ``clock`` (an ``IReactorTime``: sim.clock.VirtualClock, ScaledClock or a reactor);
calls due at the same moment run in scheduling order. Same seed + same inputs -> same events.

Hangup model (what makes the event order match the transcripts):
- ``softhangup(chan)`` (AMI Hangup, Hangup(), transfers) only flags the channel and wakes it.
- ``queue_hangup(chan, cause)`` (the other half of a Local pair or the far end hung up) emits
  ``HangupRequest`` and wakes it.
- A channel whose dialplan run ends emits ``SoftHangupRequest`` (Cause 16, AST_SOFTHANGUP_APPUNLOAD)
  and is then destroyed; a channel with no dialplan (a dialled leg) is destroyed directly.
- Destroying a channel leaves its bridge, queues the hangup on its Local peer, then emits ``Hangup``,
  ``Cdr`` and ``DeviceStateChange``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from cti.ami.message import AMIMessage
from cti.contract import INBOUND_CONTEXT
from sim.amd import AmdSettings
from sim.ami_events import (
    DOWN,
    RING,
    RINGING,
    UP,
    bridge_headers,
    caller_id_string,
    cause_text,
    snapshot,
)
from sim.apps import APPLICATIONS, App
from sim.channel import Block, Bridge, Channel, KeySource, Observer
from sim.channel_requests import (
    RequestFailed,
)
from sim.dialplan import Dialplan, DialplanError, substitute
from sim.far_end import FarEndDirectory, asks_auto_answer, parse_pjsip_dial
from sim.functions import builtin_var, read_function, write_function

log = logging.getLogger(__name__)

EventListener = Callable[[AMIMessage], None]
__all__ = ["Block", "Bridge", "Channel", "KeySource", "Observer", "Pbx"]

# A fixed epoch for clocks that start near 0 (VirtualClock): the day the transcripts were recorded.
DEFAULT_EPOCH = 1_795_443_000.0
APPUNLOAD = 16  # AST_SOFTHANGUP_APPUNLOAD: the Cause of the SoftHangupRequest ending a dialplan run
MAX_CHANNELS = 100_000  # refuse to create more live channels than this (a runaway load generator)

class PbxError(Exception):
    """An AMI-level request the PBX refuses; ``str()`` is Asterisk's Message text."""


class AgiRunner(Protocol):
    """The FastAGI client as the AGI() application sees it (sim.fastagi_client.FastAGIClient)."""

    def run(self, channel: Channel, url: str, args: list[str]) -> Deferred[str]: ...

    def sound_ids(self) -> frozenset[str]: ...


class Pbx:
    """The simulated Asterisk. See the module docstring for the model."""

    def __init__(self, clock: IReactorTime, dialplan: Dialplan, *, far_ends: FarEndDirectory | None = None,
                 agi: AgiRunner | None = None, seed: int = 0, epoch: float | None = None,
                 endpoint_context: str = "default", apps: dict[str, App] | None = None,
                 amd: AmdSettings | None = None, astdb: dict[tuple[str, str], str] | None = None) -> None:
        self.clock = clock
        self.dialplan = dialplan
        self.far_ends = far_ends
        self.agi = agi
        self.rng = random.Random(seed)
        start = clock.seconds()
        self.epoch_offset = (DEFAULT_EPOCH if epoch is None else epoch) - start if start < 1e9 else 0.0
        self.endpoint_context = endpoint_context
        self.apps: dict[str, App] = {k.lower(): v for k, v in (apps or APPLICATIONS).items()}
        self.agi_warned = False  # AGI() without a FastAGI client was logged once at WARNING
        self.globals: dict[str, str] = dict(dialplan.globals)
        # features.conf [featuremap]: Asterisk 22's defaults (main/features_config.c: blindxfer "#",
        # disconnect "*", atxfer "" -- no attended transfer code unless configured), then the scenario's.
        self.featuremap: dict[str, str] = {"blindxfer": "#", "disconnect": "*", "atxfer": "", **dialplan.features}
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, Bridge] = {}
        # amd.conf [general] (app_amd's built-in defaults unless the wiring loads a file)
        self.amd = amd or AmdSettings()
        # The AstDB: (family, key) -> value; AMI DB* actions, DB() and FastAGI DATABASE commands share it.
        self.astdb: dict[tuple[str, str], str] = {} if astdb is None else astdb
        self._listeners: list[EventListener] = []
        self._uid_seq = 0
        self._name_seq: dict[str, int] = {}
        self.processed_calls = 0
        self.started = self.now_epoch()

    # time and ids ------------------------------------------------------------------------
    def now_epoch(self) -> float:
        """Wall-clock-like seconds since 1970 for this PBX (clock time + a fixed offset)."""
        return self.clock.seconds() + self.epoch_offset

    def _next_uniqueid(self) -> str:
        uid = f"{int(self.now_epoch())}.{self._uid_seq}"
        self._uid_seq += 1
        return uid

    def _next_suffix(self, tech: str) -> str:
        n = self._name_seq.get(tech, 0)
        self._name_seq[tech] = n + 1
        return f"{n:08x}"

    def new_bridge_id(self) -> str:
        r = self.rng.getrandbits(128)
        h = f"{r:032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[r % 4]}{h[17:20]}-{h[20:32]}"

    def later(self, delay: float, fn: Callable[..., object], *args: object) -> IDelayedCall:
        return self.clock.callLater(max(delay, 0.0), fn, *args)

    def soon(self, fn: Callable[..., object], *args: object) -> IDelayedCall:
        """Run ``fn`` after the current step, as another Asterisk thread would."""
        return self.clock.callLater(0, fn, *args)

    # events ------------------------------------------------------------------------------
    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def emit(self, name: str, privilege: str, headers: Iterable[tuple[str, str]]) -> AMIMessage:
        msg = AMIMessage([("Event", name), ("Privilege", privilege), *headers], "event")
        for listener in list(self._listeners):
            try:
                listener(msg)
            except Exception:  # a broken listener must not break the PBX (or the other listeners)
                log.exception("event listener failed on %s", name)
        return msg

    def chan_event(self, name: str, chan: Channel, extra: Iterable[tuple[str, str]] = (),
                   privilege: str = "call,all") -> None:
        pending = chan.pending_caller if name in ("Newexten", "Hangup") else None
        if pending is not None:
            # A Local ;2 whose ;1's connected line changed takes the new caller id when its own thread
            # next runs dialplan or hangs up, and publishes NewCallerid just after (as the transcripts show).
            chan.pending_caller = None
            chan.write_caller(*pending)
        if chan.republish_location and name in ("NewCallerid", "NewConnectedLine", "NewAccountCode"):
            self._republish_location(chan)
        self.emit(name, privilege, [*snapshot(chan), *extra])
        if chan.republish_location and name == "Newstate":
            self._republish_location(chan)
        if pending is not None:
            self.chan_event("NewCallerid", chan, [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])

    def _republish_location(self, chan: Channel) -> None:
        """A snapshot update after a Gosub returned: manager_channels sees the dialplan location changed
        since the last snapshot (Return -> the channel's own) and sends a Newexten after the Newstate."""
        chan.republish_location = False
        self.emit("Newexten", "dialplan,all", [*snapshot(chan), ("Extension", chan.exten),
                                               ("Application", chan.app), ("AppData", chan.appdata)])

    def update_connected(self, chan: Channel, num: str, name: str) -> None:
        """The connected party changed (bridged with someone new): NewConnectedLine; for a Local ;1
        the other half's caller id follows."""
        if (chan.conn_num, chan.conn_name) == (num, name) or chan.dead:
            return
        self.set_connected(chan, num, name)
        two = chan.peer
        if chan.local_one and two is not None and not two.dead:
            two.pending_caller = (num, name)

    def device_state(self, chan: Channel, state: str) -> None:
        self.emit("DeviceStateChange", "call,all", [("Device", chan.device), ("State", state)])

    # channel allocation ---------------------------------------------------------------------
    def find_channel(self, name: str) -> Channel | None:
        return self.channels.get(name)

    def ordered_channels(self) -> list[Channel]:
        """Live channels in the order Asterisk's channel container walks them (CoreShowChannels,
        Status, Hangup by regex): by ast_str_case_hash(name) % 1567 buckets, then insertion order."""
        return sorted(self.channels.values(), key=lambda c: _name_bucket(c.name))

    def _alloc(self, name: str, tech: str, device: str, context: str, exten: str, state: int,
               linkedid: str | None = None, caller: tuple[str, str] = ("", "")) -> Channel:
        if len(self.channels) >= MAX_CHANNELS:
            raise RequestFailed(34)
        chan = Channel(self, name, tech, device, self._next_uniqueid(), context, exten, state, linkedid)
        chan.write_caller(*caller)
        self.channels[name] = chan
        self.chan_event("Newchannel", chan)
        return chan

    def request(self, tech: str, resource: str, requestor: Channel | None = None) -> Channel:
        """ast_request(): create the outgoing channel(s) for ``tech/resource`` (Down).
        Raises RequestFailed for an unknown technology/endpoint or a missing Local extension."""
        linked = requestor.linkedid if requestor is not None else None
        if tech.lower() == "local":
            target, _, opts = resource.partition("/")
            exten, at, context = target.partition("@")
            context = context if at else "default"
            base = f"Local/{exten}@{context}-{self._next_suffix('Local')}"
            one = self._alloc(base + ";1", "Local", f"Local/{exten}@{context}", context, exten, DOWN, linked)
            two = self._alloc(base + ";2", "Local", f"Local/{exten}@{context}", context, exten, RING, one.linkedid)
            one.peer, two.peer, one.local_one = two, one, True
            return one
        if tech.upper() == "PJSIP":
            endpoint, number = parse_pjsip_dial(resource)
            far = self.far_ends.call(endpoint, number, self.clock.seconds()) if self.far_ends else None
            if far is None or not endpoint:
                raise RequestFailed(66)
            chan = self._alloc(f"PJSIP/{endpoint}-{self._next_suffix('PJSIP')}", "PJSIP", f"PJSIP/{endpoint}",
                               self.endpoint_context, "s", DOWN, linked)
            chan.far_end = far
            chan.dnid = number
            return chan
        raise RequestFailed(66)

    def inbound_call(self, did: str, caller_num: str, caller_name: str, *, endpoint: str = "trunk",
                     context: str = INBOUND_CONTEXT, keys: KeySource | None = None,
                     variables: Iterable[tuple[str, str]] = (), exten: str | None = None) -> Channel:
        """A call arrives from the PSTN on PJSIP endpoint ``endpoint`` for ``did``: a new channel in
        state Ring starts the dialplan at ``context,did,1`` (as chan_pjsip does for an INVITE), or at
        ``context,exten,1`` when ``exten`` is given (an endpoint whose context sends every call to ``s``)."""
        start = exten if exten is not None else did
        chan = self._alloc(f"PJSIP/{endpoint}-{self._next_suffix('PJSIP')}", "PJSIP", f"PJSIP/{endpoint}",
                           context, start, RING, caller=(caller_num, caller_name))
        chan.dnid = did
        chan.keys = keys
        chan.variables.update(variables)
        self.processed_calls += 1
        self.soon(self.start_pbx, chan, context, start, 1)
        return chan

    def call(self, chan: Channel, dialstring: str, two_caller: tuple[str, str] | None = None) -> None:
        """ast_call(): start the outgoing call; Local pairs copy identity to ;2 and start its dialplan.
        Raises RequestFailed (the channels are then already destroyed) when the call cannot start."""
        if chan.tech == "Local":
            two = chan.peer
            assert two is not None
            if not self.dialplan.exists(two.context, two.exten, 1):
                # local_call(): "No such extension/context" -> both halves go away, cause 0.
                chan.peer = two.peer = None
                for half in (two, chan):
                    half.device_final = "INVALID"
                    half.cdr_disposition = "FAILED"
                    self.destroy(half)
                raise RequestFailed(0)
            for key, value in reversed(list(chan.variables.items())):
                two.variables[key] = value
                self.chan_event("VarSet", two, [("Variable", key), ("Value", value)], "dialplan,all")
            two.conn_num, two.conn_name = chan.caller_num, chan.caller_name
            two.write_accountcode(chan.accountcode)
            if two_caller is not None or chan.conn_num or chan.conn_name:
                two.write_caller(*(two_caller or (chan.conn_num, chan.conn_name)))
                self.chan_event("NewCallerid", two, [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
            if chan.accountcode:
                self.chan_event("NewAccountCode", two, [("OldAccountCode", "")])
            if chan.caller_num or chan.caller_name:
                self.chan_event("NewConnectedLine", two)
            self.emit("LocalBridge", "call,all", [*snapshot(chan, "LocalOne"), *snapshot(two, "LocalTwo"),
                                                 ("Context", two.context), ("Exten", two.exten),
                                                 ("LocalOptimization", "Yes")])
            self.soon(self.start_pbx, two, two.context, two.exten, 1)
            return
        far = chan.far_end
        assert far is not None
        if far.outcome == "unavailable":
            chan.hangupcause = 20
            self.destroy(chan)
            raise RequestFailed(20)
        chan.timers.append(self.later(0.0, self._far_ringing, chan))

    def _far_ringing(self, chan: Channel) -> None:
        far = chan.far_end
        if chan.dead or chan.soft or far is None:
            return
        self.set_state(chan, RINGING)
        self.device_state(chan, "RINGING")
        self.signal(chan, "ringing")
        if far.outcome != "noanswer":
            # A phone asked to auto-answer (a campaign's call, the headers of [cti-agent-leg]) answers at once.
            auto = far.outcome == "answer" and asks_auto_answer(chan.sip_headers)
            chan.timers.append(self.later(0.0 if auto else far.ring_time, self._far_outcome, chan))

    def _far_outcome(self, chan: Channel) -> None:
        far = chan.far_end
        if chan.dead or chan.soft or far is None:
            return
        if far.outcome == "answer":
            self.answer(chan)
            if far.talk_time is not None:
                chan.timers.append(self.later(far.talk_time, self.far_hangup, chan, 16))
        elif far.outcome == "busy":
            chan.hangupcause = 17
            self.signal(chan, "busy")
        elif far.outcome == "congestion":
            chan.hangupcause = 34
            self.signal(chan, "congestion")

    def far_hangup(self, chan: Channel, cause: int = 16) -> None:
        """The person at the far end of a PJSIP channel hangs up (BYE)."""
        if not chan.dead and not chan.soft:
            self.queue_hangup(chan, cause)

    def inherit_variables(self, parent: Channel, child: Channel) -> None:
        """ast_channel_inherit_variables(): ``__X`` passes on as ``__X``, ``_X`` as ``X``, each published
        as a VarSet of the child (main/channel.c ast_channel_publish_varset).

        Order: a channel's variable list is ``variables`` reversed (Set inserts at the head, so a Local
        call copies the newest first), and inherited ones are inserted at the tail, in the parent's
        list order: here they go to the front of the dict, the last one first (as the reference PBX's
        ;2 legs show: GOSUB_RETVAL, DIALEDPEERNUMBER, then the inherited __CTI_DNIS)."""
        inherited: list[tuple[str, str]] = []
        for key, value in reversed(list(parent.variables.items())):
            if not key.startswith("_"):
                continue
            name = key if key.startswith("__") else key[1:]
            inherited.append((name, value))
            self.chan_event("VarSet", child, [("Variable", name), ("Value", value)], "dialplan,all")
        if inherited:
            rest = {k: v for k, v in child.variables.items() if k not in dict(inherited)}
            child.variables = {**dict(reversed(inherited)), **rest}

    # identity ------------------------------------------------------------------------------
    def set_caller(self, chan: Channel, num: str, name: str) -> None:
        chan.write_caller(num, name)
        self.chan_event("NewCallerid", chan, [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])

    def set_connected(self, chan: Channel, num: str, name: str) -> None:
        chan.conn_num, chan.conn_name = num, name
        self.chan_event("NewConnectedLine", chan)

    def set_accountcode(self, chan: Channel, code: str) -> None:
        old = chan.accountcode
        chan.write_accountcode(code)
        self.chan_event("NewAccountCode", chan, [("OldAccountCode", old)])

    def set_state(self, chan: Channel, state: int) -> None:
        if chan.state == state or chan.dead:
            return
        chan.write_state(state)
        if state == UP and chan.answered_at is None:
            chan.answered_at = self.clock.seconds()
        self.chan_event("Newstate", chan)

    def set_location(self, chan: Channel, context: str, exten: str, priority: int) -> None:
        chan.write_location(context, exten, priority)

    # variables -------------------------------------------------------------------------------
    def get_var(self, chan: Channel, name: str) -> str | None:
        builtin = builtin_var(self, chan, name)
        if builtin is not None:
            return builtin
        bare = name.lstrip("_")
        for key, value in chan.variables.items():
            if key.lstrip("_") == bare:
                return value
        return self.globals.get(name)

    def set_var(self, chan: Channel, name: str, value: str) -> None:
        if "(" in name and name.endswith(")"):
            self.write_function(chan, name, value)
            return
        bare = name.lstrip("_")
        for key in list(chan.variables):
            if key.lstrip("_") == bare and key != name:
                del chan.variables[key]
        chan.variables[name] = value
        self.chan_event("VarSet", chan, [("Variable", name), ("Value", value)], "dialplan,all")

    def sounds(self) -> frozenset[str]:
        """The sound files this PBX has (``core show sounds``): those its AGI client can play."""
        return self.agi.sound_ids() if self.agi is not None else frozenset()

    def feature_code(self, chan: Channel, feature: str) -> str:
        """ast_get_builtin_feature(): the channel's FEATUREMAP code for ``feature``, else features.conf's."""
        code = chan.featuremap.get(feature)
        return self.featuremap.get(feature, "") if code is None else code

    def run_subroutine(self, chan: Channel, context: str, exten: str, priority: int = 1,
                       args: Sequence[str] = ()) -> None:
        """A pre-dial handler (Dial option ``b(context^exten^priority[(arg1^...)])``) on the outgoing
        channel, run as app_stack's Gosub runs it: ``LOCAL(ARG1)``... then ``LOCAL(ARGC)``, the
        handler's priorities at their own location until ``Return()``, then ``ARGC``, the ``ARGn`` (last
        first) and ``GOSUB_RETVAL`` cleared and the channel back where it was (the order a real 22.10.1
        shows); its next snapshot update (Newstate) publishes that location again as a Newexten (as the
        reference PBX showed). Only applications that finish at once (Set, NoOp, GotoIf, ...) are
        supported, which is what a pre-dial handler may run before the channel is called."""
        saved = (chan.context, chan.exten, chan.priority, chan.app, chan.appdata)
        names = [f"ARG{i + 1}" for i in range(len(args))]
        for name, value in zip(names, args, strict=True):
            chan.variables[name] = value
            self.chan_event("VarSet", chan, [("Variable", f"LOCAL({name})"), ("Value", value)], "dialplan,all")
        chan.variables["ARGC"] = str(len(args))
        self.chan_event("VarSet", chan, [("Variable", "LOCAL(ARGC)"), ("Value", str(len(args)))], "dialplan,all")
        ext = self.dialplan.find(context, exten)
        step = ext.step(priority) if ext is not None else None
        returned = False
        while step is not None:
            self.set_location(chan, context, exten, step.number)
            data = self.substitute(chan, step.data)
            chan.app, chan.appdata = step.app, data
            self.chan_event("Newexten", chan, [("Extension", exten), ("Application", step.app),
                                               ("AppData", data)], "dialplan,all")
            if step.app.lower() == "return":
                for name in ["ARGC", *reversed(names)]:
                    chan.variables.pop(name, None)
                    self.chan_event("VarSet", chan, [("Variable", name), ("Value", "")], "dialplan,all")
                self.set_var(chan, "GOSUB_RETVAL", data)
                returned = True
                break
            chan.jumped = False
            res = self.run_app(chan, step.app, data)
            if isinstance(res, Deferred) or res != 0:
                log.warning("%s: pre-dial handler %s,%s stopped at %s", chan.name, context, exten, step.app)
                break
            if chan.jumped:  # a Goto/GotoIf inside the handler
                chan.jumped = False
                context, exten = chan.context, chan.exten
                ext = self.dialplan.find(context, exten)
                step = ext.step(chan.priority) if ext is not None else None
                continue
            assert ext is not None
            step = ext.step(step.number + 1)
        if not returned:
            log.warning("%s: pre-dial handler %s,%s,%s ended without Return()", chan.name, context, exten, priority)
        self.set_location(chan, saved[0], saved[1], saved[2])
        chan.app, chan.appdata = saved[3], saved[4]
        chan.republish_location = True

    def write_function(self, chan: Channel, expr: str, value: str) -> None:
        write_function(self, chan, expr, value)

    def read_function(self, chan: Channel, fname: str, args: str) -> str:
        return read_function(self, chan, fname, args)

    def substitute(self, chan: Channel, text: str) -> str:
        try:
            return substitute(text, lambda n: self.get_var(chan, n),
                              lambda f, a: self.read_function(chan, f, a))
        except DialplanError as exc:
            log.warning("%s: %s", chan.name, exc)
            return ""

    # dialplan execution -------------------------------------------------------------------------
    def start_pbx(self, chan: Channel, context: str, exten: str, priority: int = 1) -> None:
        """Run the dialplan on ``chan`` from ``context,exten,priority``."""
        if chan.dead:
            return
        chan.in_pbx = True
        self.set_location(chan, context, exten, priority)
        self._run(chan)

    def _run(self, chan: Channel) -> None:
        if chan.stepping:
            return
        chan.stepping = True
        try:
            while True:
                if chan.dead:
                    return
                if chan.goto_target is not None:
                    ctx, ext, prio = chan.goto_target
                    chan.goto_target = None
                    self.set_location(chan, ctx, ext, prio)
                if chan.soft:
                    self._pbx_end(chan)
                    return
                extension = self.dialplan.find(chan.context, chan.exten)
                step = extension.step(chan.priority) if extension is not None else None
                if step is None:
                    self._pbx_end(chan)
                    return
                data = self.substitute(chan, step.data)
                chan.app, chan.appdata = step.app, data
                if not chan.cdr_frozen:
                    chan.cdr_last_app, chan.cdr_last_data = step.app, data
                    chan.cdr_dst, chan.cdr_dcontext = chan.exten, chan.context
                if chan.cep_published != (chan.context, chan.exten, chan.priority):
                    self.chan_event("Newexten", chan, [("Extension", chan.exten), ("Application", step.app),
                                                       ("AppData", data)], "dialplan,all")
                chan.cep_published = None
                chan.jumped = False
                res = self.run_app(chan, step.app, data)
                if isinstance(res, Deferred):
                    res.addCallback(self._resume, chan)
                    return
                if not self._advance(chan, res):
                    return
        finally:
            chan.stepping = False

    def _resume(self, res: int, chan: Channel) -> None:
        if self._advance(chan, res):
            self._run(chan)

    def _advance(self, chan: Channel, res: int) -> bool:
        if chan.dead:
            return False
        if chan.goto_target is not None:
            return True
        if res != 0 or chan.soft:
            self._pbx_end(chan)
            return False
        if not chan.jumped:
            chan.next_priority()
        return True

    def _pbx_end(self, chan: Channel) -> None:
        if chan.dead or not chan.in_pbx:
            return
        chan.in_pbx = False
        self.chan_event("SoftHangupRequest", chan, [("Cause", str(APPUNLOAD))])
        self.destroy(chan)

    def run_app(self, chan: Channel, app: str, data: str) -> int | Deferred[int]:
        fn = self.apps.get(app.lower())
        if fn is None:
            log.warning("%s: no application %s (hanging up, as Asterisk does)", chan.name, app)
            return -1
        return fn(self, chan, data)

    def exec_app(self, chan: Channel, app: str, data: str) -> Deferred[int]:
        """AGI EXEC: run one application outside the dialplan loop (no Newexten)."""
        fn = self.apps.get(app.lower())
        if fn is None:
            return succeed(-2)
        if chan.dead:
            return succeed(-1)
        res = fn(self, chan, data)
        return res if isinstance(res, Deferred) else succeed(res)

    def goto(self, chan: Channel, context: str, exten: str, priority: str) -> bool:
        """Jump (Goto/GotoIf) inside the runner; priority may be a label. False if it does not exist."""
        target = self.resolve_priority(context, exten, priority)
        if target is None:
            log.warning("%s: Goto to non-existent %s,%s,%s", chan.name, context, exten, priority)
            return False
        self.set_location(chan, context, exten, target)
        chan.jumped = True
        return True

    def resolve_priority(self, context: str, exten: str, priority: str) -> int | None:
        ext = self.dialplan.find(context, exten)
        if ext is None:
            return None
        p = priority.strip()
        if p.lstrip("-").isdigit():
            n = int(p)
            return n if ext.step(n) is not None else None
        return ext.label(p)

    # blocking ----------------------------------------------------------------------------------
    def block(self, chan: Channel, timeout: float | None = None, *, interruptible: bool = True,
              cleanup: Callable[[], None] | None = None, result: int = 0) -> Deferred[int]:
        """Park the channel's application: fires ``result`` after ``timeout`` (None = never) or -1
        when a hangup/redirect interrupts it (``cleanup`` runs first)."""
        d: Deferred[int] = Deferred()
        blk = Block(d, None, interruptible, cleanup)
        if timeout is not None:
            blk.timer = self.later(timeout, self.unblock, chan, result, blk)
        chan.block = blk
        if interruptible and (chan.soft or chan.goto_target is not None):
            self.soon(self.unblock, chan, -1, blk)
        return d

    def unblock(self, chan: Channel, result: int, blk: Block | None = None) -> None:
        blk = blk or chan.block
        if blk is None or blk.done:
            return
        blk.done = True
        if chan.block is blk:
            chan.block = None
        if blk.timer is not None and blk.timer.active():
            blk.timer.cancel()
        if blk.cleanup is not None:
            blk.cleanup()
        blk.d.callback(result)

    def _wake(self, chan: Channel) -> None:
        """A hangup or redirect is pending: interrupt what the channel is doing."""
        if chan.dead:
            return
        blk = chan.block
        if blk is not None:
            if blk.interruptible:
                self.unblock(chan, -1, blk)
            return
        if chan.in_pbx:
            if not chan.stepping and chan.goto_target is None and chan.soft:
                self._pbx_end(chan)
            return
        if chan.observer is not None:
            chan.observer(chan, "hangup")
            return
        if chan.soft:
            self.destroy(chan)

    # hangups -------------------------------------------------------------------------------------
    def _notify_hangup(self, chan: Channel) -> None:
        cbs = chan.take_hangup_callbacks()
        for cb in cbs:
            try:
                cb()
            except Exception:  # one broken callback must not stop the hangup
                log.exception("hangup callback failed for %s", chan.name)

    def softhangup(self, chan: Channel, cause: int = 0) -> None:
        """Request a hangup (AMI Hangup, Hangup(), a transfer): no event of its own."""
        if chan.dead:
            return
        if cause > 0:
            chan.hangupcause = cause
        chan.soft = True
        self._notify_hangup(chan)
        self.soon(self._wake, chan)

    def queue_hangup(self, chan: Channel, cause: int) -> None:
        """The other side went away (Local peer, far end): HangupRequest, then wake the channel."""
        if chan.dead:
            return
        self.chan_event("HangupRequest", chan, [("Cause", str(cause))])
        if cause > 0 and chan.hangupcause == 0:
            chan.hangupcause = cause
        chan.soft = True
        self._notify_hangup(chan)
        self.soon(self._wake, chan)

    def async_goto(self, chan: Channel, context: str, exten: str, priority: int) -> None:
        """Redirect: continue the channel's dialplan elsewhere (starting one if it has none)."""
        if chan.bridge is not None:
            # The new location is set before it leaves (BridgeLeave shows it), as ast_async_goto does; the
            # snapshot update as it leaves publishes it as a Newexten with the old application, so the
            # first step there is no Newexten of its own (manager: Newexten only when the CEP changes).
            self.set_location(chan, context, exten, priority)
            republish = bool(chan.app)  # manager_channels: an empty application makes no Newexten
            if republish:
                chan.cep_published = (context, exten, priority)
            self.bridge_leave(chan, republish=republish)
            chan.cdr_frozen, chan.cdr_dest_channel = False, ""  # a new CDR for the new destination
        if not chan.in_pbx:
            self.soon(self.start_pbx, chan, context, exten, priority)
            return
        chan.goto_target = (context, exten, priority)
        self.soon(self._wake_goto, chan)

    def _wake_goto(self, chan: Channel) -> None:
        if chan.dead:
            return
        blk = chan.block
        if blk is not None:
            self.unblock(chan, -1, blk)
        elif not chan.stepping:
            self._run(chan)

    def destroy(self, chan: Channel) -> None:
        """ast_hangup(): leave the bridge, tell the Local peer, emit Hangup/Cdr/DeviceStateChange."""
        if chan.dead:
            return
        hook, chan.before_destroy = chan.before_destroy, None
        if hook is not None:
            hook(chan)
        chan.in_pbx = False
        for timer in chan.timers:
            if timer.active():
                timer.cancel()
        chan.timers.clear()
        blk = chan.block
        if blk is not None and not blk.done:
            blk.done = True
            if blk.timer is not None and blk.timer.active():
                blk.timer.cancel()
            if blk.cleanup is not None:
                blk.cleanup()
        if chan.bridge is not None:
            self.bridge_leave(chan)
        chan.dead = True
        peer = chan.peer
        if peer is not None and not peer.dead:
            self.queue_hangup(peer, chan.hangupcause)
        self.chan_event("Hangup", chan, [("Cause", str(chan.hangupcause)), ("Cause-txt", cause_text(chan.hangupcause))])
        self._cdr(chan)
        self.channels.pop(chan.name, None)
        self.device_state(chan, chan.device_final)
        self._notify_hangup(chan)
        if chan.observer is not None:
            observer, chan.observer = chan.observer, None
            observer(chan, "hangup")

    def _cdr(self, chan: Channel) -> None:
        start = chan.created + self.epoch_offset
        end = self.now_epoch()
        ans = chan.answered_at + self.epoch_offset if chan.answered_at is not None else None

        def fmt(t: float | None) -> str:
            if t is None:
                return ""
            import datetime as _dt

            return _dt.datetime.fromtimestamp(int(t), _dt.UTC).strftime("%Y-%m-%d %H:%M:%S")

        disposition = chan.cdr_disposition or ("ANSWERED" if ans is not None else "NO ANSWER")
        self.emit("Cdr", "cdr,all", [
            ("AccountCode", chan.accountcode),
            ("Source", chan.caller_num),
            ("Destination", chan.cdr_dst),
            ("DestinationContext", chan.cdr_dcontext),
            ("CallerID", caller_id_string(chan.caller_name, chan.caller_num)),
            ("Channel", chan.name),
            ("DestinationChannel", chan.cdr_dest_channel),
            ("LastApplication", chan.cdr_last_app),
            ("LastData", chan.cdr_last_data),
            ("StartTime", fmt(start)),
            ("AnswerTime", fmt(ans)),
            ("EndTime", fmt(end)),
            ("Duration", str(int(end - start))),
            ("BillableSeconds", str(int(end - ans)) if ans is not None else "0"),
            ("Disposition", disposition),
            ("AMAFlags", "DOCUMENTATION"),
            ("UniqueID", chan.uniqueid),
            ("UserField", chan.variables.get("\0cdr_userfield", "")),
        ])

    # signalling -----------------------------------------------------------------------------------
    def answer(self, chan: Channel) -> None:
        """The channel answers: Up; a Local ;2 answering answers its ;1 (and tells whoever dials it)."""
        if chan.dead or chan.state == UP:
            return
        self.set_state(chan, UP)
        if chan.tech == "Local" and not chan.local_one and chan.peer is not None and not chan.peer.dead:
            one = chan.peer
            self.set_state(one, UP)
            self.device_state(chan, "INUSE")
            self.signal(one, "answer")
        elif chan.tech != "Local":
            self.device_state(chan, "INUSE")
            self.signal(chan, "answer")

    def indicate(self, chan: Channel, what: str) -> None:
        """A Local ;2 (or PJSIP far end) indicates ringing/busy/congestion to whoever dials it."""
        if chan.tech == "Local" and not chan.local_one and chan.peer is not None and not chan.peer.dead:
            one = chan.peer
            if what == "ringing" and one.state != UP:
                self.set_state(one, RINGING)
            if what in ("busy", "congestion"):
                self.device_state(chan, "INUSE")
            self.signal(one, what)

    def signal(self, chan: Channel, what: str) -> None:
        if chan.observer is not None:
            chan.observer(chan, what)

    def wait_for_media(self, chan: Channel, timeout: float) -> Deferred[int]:
        """After answering: wait up to ``timeout`` for the first media frame (see app_answer)."""
        d = self.block(chan, timeout)
        chan.awaiting_media = chan.block
        peer = chan.peer
        if peer is not None and not peer.dead and peer.playing:
            # The other half is already sending audio (Playback, music): its next frame ends the wait.
            self.soon(self.media, peer)
        return d

    def media(self, chan: Channel) -> None:
        """``chan`` starts sending audio (Playback, MOH, an AGI prompt): a Local ;2 waiting for media
        after Answer() gets it now."""
        other = chan.peer
        if other is not None and not other.dead and other.awaiting_media is not None:
            blk, other.awaiting_media = other.awaiting_media, None
            if other.block is blk:
                self.unblock(other, 0, blk)

    def dtmf(self, chan: Channel, digit: str, duration_ms: int, begin: bool = True) -> None:
        if chan.dead:
            return
        if begin:
            self.chan_event("DTMFBegin", chan, [("Digit", digit), ("Direction", "Received")], "dtmf,all")
        self.chan_event("DTMFEnd", chan, [("Digit", digit), ("DurationMs", str(duration_ms)),
                                          ("Direction", "Received")], "dtmf,all")
        for listener in list(chan.dtmf_listeners):
            listener(digit)

    def voice(self, chan: Channel, on: bool) -> None:
        """``chan`` starts (``on``) or stops sending audio frames (Playback, music on hold): what the
        other half of a Local pair hears (app_amd on a Local ;1 listens to its ;2). Nested sources count."""
        was = chan.playing > 0
        chan.playing = max(chan.playing + (1 if on else -1), 0)
        now = chan.playing > 0
        other = chan.peer
        if was != now and other is not None and not other.dead:
            for listener in list(other.voice_listeners):
                listener(now)

    def start_moh(self, chan: Channel, klass: str = "default") -> None:
        if not chan.moh and not chan.dead:
            chan.moh = True
            self.chan_event("MusicOnHoldStart", chan, [("Class", klass or "default")])
            self.voice(chan, True)

    def stop_moh(self, chan: Channel) -> None:
        if chan.moh and not chan.dead:
            chan.moh = False
            self.chan_event("MusicOnHoldStop", chan)
            self.voice(chan, False)

    # bridges ---------------------------------------------------------------------------------------
    def bridge_create(self, kind: str = "action", caller: Channel | None = None) -> Bridge:
        bridge = Bridge(self.new_bridge_id(), kind=kind, caller=caller)
        self.bridges[bridge.uniqueid] = bridge
        self.emit("BridgeCreate", "call,all", bridge_headers(bridge))
        return bridge

    def bridge_enter(self, bridge: Bridge, chan: Channel) -> None:
        if chan.bridge is not None:
            self.bridge_leave(chan)
        oldest = min([c.linkedid for c in bridge.channels] + [chan.linkedid], key=_uid_order)
        for member in [*bridge.channels, chan]:
            member.write_linkedid(oldest)
        bridge.channels.append(chan)
        chan.bridge = bridge
        # bridge_basic_setup_features(): the transfer hooks a channel has in this bridge are fixed now.
        chan.atxfer_hook = self.feature_code(chan, "atxfer") if chan.xfer_features else ""
        # The CDR of a bridged channel records its peer and keeps the application it was bridged in.
        chan.cdr_frozen = True
        for member in bridge.channels:
            if member is not chan and not member.cdr_dest_channel:
                member.cdr_dest_channel = chan.name
        self.emit("BridgeEnter", "call,all", [*bridge_headers(bridge), *snapshot(chan)])

    def bridge_peers_vars(self, bridge: Bridge) -> None:
        if len(bridge.channels) == 2:
            a, b = bridge.channels
            self.set_var(a, "BRIDGEPEER", b.name)
            self.set_var(b, "BRIDGEPEER", a.name)

    def bridge_leave(self, chan: Channel, republish: bool = False) -> None:
        bridge = chan.bridge
        if bridge is None:
            return
        if chan.variables.get("BRIDGEPEER"):
            # bridge_channel_internal_pull(): ast_bridge_vars_set(chan, NULL, NULL) as it leaves.
            self.set_var(chan, "BRIDGEPEER", "")
        if republish:
            self.chan_event("Newexten", chan, [("Extension", chan.exten), ("Application", chan.app),
                                               ("AppData", chan.appdata)], "dialplan,all")
        bridge.channels.remove(chan)
        chan.bridge = None
        self.emit("BridgeLeave", "call,all", [*bridge_headers(bridge), *snapshot(chan)])
        if len(bridge.channels) <= 1 and not bridge.frozen:
            if chan.soft or chan.dead:
                bridge.cause = bridge.cause or chan.hangupcause
            self.soon(self._bridge_dissolve, bridge)

    def bridge_destroy_if_empty(self, bridge: Bridge) -> None:
        if not bridge.channels and bridge.uniqueid in self.bridges:
            del self.bridges[bridge.uniqueid]
            self.emit("BridgeDestroy", "call,all", bridge_headers(bridge))
        elif len(bridge.channels) <= 1 and not bridge.frozen:
            self._bridge_dissolve(bridge)

    def _bridge_dissolve(self, bridge: Bridge) -> None:
        """One party left a two-party bridge: the others are put out (AST_BRIDGE_FLAG_DISSOLVE_HANGUP)."""
        if bridge.uniqueid not in self.bridges:
            return
        for member in list(bridge.channels):
            if member.bridge is not bridge:
                continue
            self.bridge_leave(member)
            # Put out: the cause of the party that left, else normal clearing (a cause already set stays).
            cause = 0 if member.hangupcause > 0 else (bridge.cause or 16)
            if member.block is not None:
                # Dial caller / AMI-bridged channel: its application returns.
                if bridge.kind == "dial" and cause:
                    member.hangupcause = cause
                self.unblock(member, 0 if bridge.kind == "action" else -1)
                if bridge.kind == "dial":
                    self.softhangup(member, cause)
            else:
                self.softhangup(member, cause)
        if not bridge.channels:
            del self.bridges[bridge.uniqueid]
            self.emit("BridgeDestroy", "call,all", bridge_headers(bridge))

    def pull_into_bridge(self, chan: Channel, bridge: Bridge) -> None:
        """Move a channel (running dialplan or not) into ``bridge``; when the bridge ends it continues
        its dialplan at the next priority (AMI Bridge semantics)."""
        blk = chan.block
        if blk is not None and not blk.done:
            # Interrupt what it was doing (Wait, MusicOnHold...) without ending the dialplan.
            blk.done = True
            chan.block = None
            if blk.timer is not None and blk.timer.active():
                blk.timer.cancel()
            if blk.cleanup is not None:
                blk.cleanup()
            if chan.in_pbx:
                chan.next_priority()
        chan.app = chan.appdata = ""  # pulled out of its application into the bridge
        self.bridge_enter(bridge, chan)
        if chan.in_pbx:
            d = self.block(chan, None)
            d.addCallback(lambda res, c=chan: self._after_bridge(c, res))

    def _after_bridge(self, chan: Channel, res: int) -> None:
        if chan.dead:
            return
        if chan.goto_target is not None or not chan.soft:
            self._run(chan)
        else:
            self._pbx_end(chan)


CHANNEL_BUCKETS = 1567  # AST_NUM_CHANNEL_BUCKETS


def _name_bucket(name: str) -> int:
    """ast_str_case_hash(): djb2 (hash * 33 ^ c) on the lower-cased name, 32-bit signed, abs()."""
    h = 5381
    for ch in name.lower().encode():
        h = ((h * 33) ^ ch) & 0xFFFFFFFF
    if h >= 2**31:
        h -= 2**32
    return abs(h) % CHANNEL_BUCKETS


def _uid_order(uid: str) -> tuple[int, int]:
    a, _, b = uid.partition(".")
    return (int(a), int(b or 0))
