"""Sans-I/O walk of one caller through one flow: AGI replies in, AGI commands and events out.

No sockets, no clock, no imports of Twisted: every entry point takes ``now`` (epoch seconds) from the
shell. ``IvrSession`` answers each input with a list of actions: ``SendCommand`` (send it, feed the
reply to ``on_reply``), ``LookupCustomer`` (ask the store, feed the answer to ``on_lookup``),
``EmitEvent`` (hand to the event sink) and finally ``EndSession`` (close the AGI session). Exactly one
of ``SendCommand`` / ``LookupCustomer`` / ``EndSession`` ends every list.

The caller's path (node ids, kinds, digits, times) is recorded with secret values masked.

A prompt the PBX cannot play never ends the flow: Asterisk answers ``STREAM FILE <missing>`` with
``200 result=-1 endpos=0`` and ``GET DATA <missing>`` with an immediate ``200 result=-1`` (res_agi.c
handle_streamfile / handle_getdata over app.c's ast_app_getdata_full, Asterisk 22), which is also what a
hang-up gives. ``CHANNEL STATUS`` tells them apart: on a dead channel res_agi answers ``511`` (it is not
a dead-channel command) after its unsolicited ``HANGUP`` line. On a live channel the prompt is missing:
the session emits ``PromptMissing`` once, never streams that prompt again, and a collect node reads the
digits with ``GET DATA ""`` (an empty prompt plays nothing and goes straight to reading digits).
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from cti.contract import (
    CTI_CUSTOMER_ID,
    CTI_IVR_PATH,
    CTI_LANGUAGE,
    CTI_NEXT,
    CTI_PRIORITY,
    CTI_QUEUE,
    CTI_SKILLS,
    CTI_TRANSFER_DIAL,
    CTI_VOICEMAIL_BOX,
    NEXT_HANGUP,
    NEXT_QUEUE,
    NEXT_TRANSFER,
    NEXT_VOICEMAIL,
    collected_variable,
)
from ivr import agi_protocol as agi
from ivr.agi_protocol import AgiCommand, AgiEnvironment, AgiReply
from ivr.events import (
    MASK,
    CallbackRequested,
    IvrCompleted,
    IvrEvent,
    IvrStarted,
    Outcome,
    PathStep,
    PromptMissing,
)
from ivr.flow import (
    WEEKDAYS,
    BranchNode,
    CallbackNode,
    CollectNode,
    Condition,
    Flow,
    HangupNode,
    LookupNode,
    MenuNode,
    NodeBase,
    PlayNode,
    QueueNode,
    ScheduleNode,
    SetNode,
    TransferNode,
    VoicemailNode,
    parse_holiday,
)
from ivr.ports import LookupResult

PATH_VARIABLE_LIMIT = 480  # CTI_IVR_PATH is a summary for script mode; the full path is in IvrCompleted


@dataclass(frozen=True, slots=True)
class SendCommand:
    command: AgiCommand


@dataclass(frozen=True, slots=True)
class LookupCustomer:
    by: Literal["ani", "account"]
    value: str


@dataclass(frozen=True, slots=True)
class EmitEvent:
    event: IvrEvent


@dataclass(frozen=True, slots=True)
class EndSession:
    outcome: Outcome


Action = SendCommand | LookupCustomer | EmitEvent | EndSession


class _CallerGone(Exception):
    """The channel hung up (511, result=-1 confirmed by CHANNEL STATUS, or HANGUP)."""


class _FlowFailed(Exception):
    """The flow cannot go on (unexpected reply, step limit); ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass
class CallData:
    """What the flow knows about the call; read by ``branch`` conditions and the hand-off."""

    ani: str
    dnis: str
    language: str
    params: dict[str, str]
    args: tuple[str, ...]
    collected: dict[str, str] = field(default_factory=dict)
    secret: set[str] = field(default_factory=set)
    skills: dict[str, int] = field(default_factory=dict)
    priority: int | None = None
    variables: dict[str, str] = field(default_factory=dict)
    customer: dict[str, str] = field(default_factory=dict)

    def value(self, key: str) -> str | None:
        """A ``branch`` variable: collected name, ani, dnis, language, priority, customer.X, param.X, arg.N."""
        if key in self.collected:
            return self.collected[key]
        if key == "ani":
            return self.ani
        if key == "dnis":
            return self.dnis
        if key == "language":
            return self.language
        if key == "priority":
            return None if self.priority is None else str(self.priority)
        prefix, _, rest = key.partition(".")
        if prefix == "customer":
            return self.customer.get(rest)
        if prefix == "param":
            return self.params.get(rest)
        if prefix == "arg" and rest.isdigit() and 1 <= int(rest) <= len(self.args):
            return self.args[int(rest) - 1]
        return None

    def masked(self) -> dict[str, str]:
        return {k: (MASK if k in self.secret else v) for k, v in self.collected.items()}


def luhn_ok(digits: str) -> bool:
    """Luhn (mod 10) check digit, as on card and many account numbers."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def schedule_state(node: ScheduleNode, now: float) -> Literal["open", "closed", "holiday"]:
    """Whether ``now`` (epoch seconds) falls in the node's business hours, in its time zone."""
    local = datetime.fromtimestamp(now, ZoneInfo(node.timezone))
    today = local.date()
    for item in node.holidays:
        h = parse_holiday(item)
        if (isinstance(h, date) and h == today) or (isinstance(h, tuple) and h == (today.month, today.day)):
            return "holiday"
    minute = local.hour * 60 + local.minute
    for start, end in node.windows(WEEKDAYS[local.weekday()]):
        if start <= minute < end:
            return "open"
    return "closed"


def condition_holds(case: Condition, data: CallData) -> bool:
    if case.ani is not None and not re.search(case.ani, data.ani):
        return False
    if case.dnis is not None and not re.search(case.dnis, data.dnis):
        return False
    if case.var is None:
        return True
    value = data.value(case.var)
    if case.present is not None:
        return (value not in (None, "")) == case.present
    if value is None:
        return False
    if case.equals is not None:
        return value == case.equals
    if case.one_of is not None:
        return value in case.one_of
    return case.matches is not None and re.search(case.matches, value) is not None


# What the generator yields and receives.
_Ask = AgiCommand | LookupCustomer
_Walk = Generator[_Ask, Any, Outcome]


class IvrSession:
    """One caller in one flow. Drive it with ``start`` then ``on_reply`` / ``on_lookup`` / ``on_hangup``."""

    def __init__(self, flow_name: str, flow: Flow, env: AgiEnvironment, server: str = "") -> None:
        self.flow_name = flow_name
        self.flow = flow
        self.env = env
        self.server = server
        self.data = CallData(ani=env.ani, dnis=env.dnis, language=flow.language or env.language,
                             params=env.params, args=env.args)
        self.path: list[PathStep] = []
        self.queue: str | None = None
        self.completed: IvrCompleted | None = None
        self.steps = 0
        self.node_id = ""  # the node being run
        self.missing_prompts: set[str] = set()  # prompts this PBX could not play, each reported once
        self._now = 0.0
        self._gen: _Walk | None = None
        self._out: list[Action] = []
        self._waiting: Literal["reply", "lookup", None] = None

    @property
    def done(self) -> bool:
        return self.completed is not None

    # --- entry points ----------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        self._now = now
        self._gen = self._walk()
        self._out.append(EmitEvent(IvrStarted(self.server, now, self.env.uniqueid, self.env.channel,
                                              self.flow_name, ani=self.data.ani, dnis=self.data.dnis)))
        return self._advance(None)

    def on_reply(self, reply: AgiReply, now: float) -> list[Action]:
        if self.done or self._waiting != "reply":
            return []
        self._now = now
        return self._advance(reply)

    def on_lookup(self, result: LookupResult, now: float) -> list[Action]:
        if self.done or self._waiting != "lookup":
            return []
        self._now = now
        return self._advance(result)

    def on_hangup(self, now: float) -> list[Action]:
        """Asterisk said HANGUP: the flow ends here, nothing more is sent."""
        if self.done:
            return []
        self._now = now
        self._close_gen()
        return self._finish("caller_hangup")

    def on_failure(self, reason: str, now: float) -> list[Action]:
        """The shell gave up (idle timeout, protocol error, lost connection): end with outcome error."""
        if self.done:
            return []
        self._now = now
        self._close_gen()
        return self._finish("error", reason)

    # --- driving the generator -----------------------------------------------------------------------

    def _advance(self, value: Any) -> list[Action]:
        assert self._gen is not None
        try:
            ask = self._gen.send(value)
        except StopIteration as stop:
            return self._finish(stop.value)
        except _CallerGone:
            return self._finish("caller_hangup")
        except _FlowFailed as exc:
            return self._finish("error", exc.reason)
        if isinstance(ask, AgiCommand):
            self._waiting = "reply"
            self._out.append(SendCommand(ask))
        else:
            self._waiting = "lookup"
            self._out.append(ask)
        out, self._out = self._out, []
        return out

    def _close_gen(self) -> None:
        if self._gen is not None:
            self._gen.close()

    def _finish(self, outcome: Outcome, reason: str = "") -> list[Action]:
        self._waiting = None
        d = self.data
        self.completed = IvrCompleted(
            self.server, self._now, self.env.uniqueid, self.env.channel, self.flow_name,
            path=tuple(self.path), collected=d.masked(), outcome=outcome,
            queue=self.queue if outcome == "queue" else None,
            skills=dict(d.skills) if outcome == "queue" else {},
            priority=(d.priority if d.priority is not None else 0) if outcome == "queue" else None,
            language=d.language if outcome == "queue" else None,
            customer=dict(d.customer), reason=reason)
        self._out.append(EmitEvent(self.completed))
        self._out.append(EndSession(outcome))
        out, self._out = self._out, []
        return out

    def _step(self, node_id: str, node: NodeBase, digits: str = "", result: str = "", secret: bool = False) -> None:
        shown = MASK if secret and digits else digits
        self.path.append(PathStep(node_id, node.kind, self._now, shown, result))

    # --- the walk ---------------------------------------------------------------------------------------

    def _cmd(self, command: AgiCommand) -> Generator[_Ask, Any, AgiReply]:
        """Send one command; a dead channel raises _CallerGone, anything unexpected _FlowFailed."""
        reply: AgiReply = yield command
        if reply.code == 511:
            raise _CallerGone()
        if reply.code != 200:
            raise _FlowFailed(f"{command.verb} answered {reply.code}")
        if reply.result == "-1":
            # -1 means "hangup or failure" (e.g. a missing sound file); ask the channel which one.
            status: AgiReply = yield agi.channel_status()
            if status.code != 200 or (status.number is not None and status.number < 0):
                raise _CallerGone()
        return reply

    def _walk(self) -> _Walk:
        flow = self.flow
        yield from self._cmd(agi.answer())
        if flow.language:
            yield from self._cmd(agi.set_variable("CHANNEL(language)", flow.language))
        node_id = flow.start
        while True:
            self.steps += 1
            if self.steps > flow.max_steps:
                raise _FlowFailed(f"flow {self.flow_name!r} exceeded max_steps ({flow.max_steps})")
            node = flow.nodes[node_id]
            self.node_id = node_id
            step = self._run_node(node_id, node)
            next_id: str | Outcome = yield from step
            if next_id.startswith("="):  # a terminal outcome, spelled "=queue" etc.
                return next_id[1:]  # type: ignore[return-value]
            node_id = next_id

    def _run_node(self, node_id: str, node: NodeBase) -> Generator[_Ask, Any, str]:
        """Run one node; return the next node id, or ``"=<outcome>"`` when the flow ends."""
        if isinstance(node, PlayNode):
            self._step(node_id, node)
            yield from self._play(node.prompts)
            return node.next
        if isinstance(node, MenuNode):
            return (yield from self._menu(node_id, node))
        if isinstance(node, CollectNode):
            return (yield from self._collect(node_id, node))
        if isinstance(node, LookupNode):
            return (yield from self._lookup(node_id, node))
        if isinstance(node, SetNode):
            return (yield from self._set(node_id, node))
        if isinstance(node, BranchNode):
            for i, case in enumerate(node.cases):
                if condition_holds(case, self.data):
                    self._step(node_id, node, result=f"case {i + 1}")
                    return case.goto
            self._step(node_id, node, result="default")
            return node.default
        if isinstance(node, ScheduleNode):
            state = schedule_state(node, self._now)
            self._step(node_id, node, result=state)
            if state == "holiday":
                return node.holiday or node.closed
            return node.open if state == "open" else node.closed
        if isinstance(node, CallbackNode):
            return (yield from self._callback(node_id, node))
        if isinstance(node, QueueNode):
            return (yield from self._queue(node_id, node))
        if isinstance(node, TransferNode):
            self._step(node_id, node, result=f"transfer:{node.dial}")
            yield from self._play(node.prompt)
            yield from self._hand_off(NEXT_TRANSFER, {CTI_TRANSFER_DIAL: node.dial})
            return "=transfer"
        if isinstance(node, VoicemailNode):
            self._step(node_id, node, result=f"voicemail:{node.box}")
            yield from self._play(node.prompt)
            yield from self._hand_off(NEXT_VOICEMAIL, {CTI_VOICEMAIL_BOX: node.box})
            return "=voicemail"
        if isinstance(node, HangupNode):
            self._step(node_id, node)
            yield from self._play(node.prompt)
            return (yield from self._hang_up())
        raise _FlowFailed(f"node {node_id!r} has unknown kind {node.kind!r}")

    def _play(self, prompts: tuple[str, ...] | None, escape: str = "") -> Generator[_Ask, Any, str]:
        """Play prompts in order; with ``escape``, stop at the first key pressed and return it."""
        for prompt in prompts or ():
            if prompt in self.missing_prompts:
                continue
            reply = yield from self._cmd(agi.stream_file(prompt, escape))
            if reply.result == "-1":  # the channel is alive (_cmd checked): the file is missing
                self._prompt_missing(prompt)
            elif escape and reply.number is not None and reply.number > 0:
                return _key(reply.number)
        return ""

    def _prompt_missing(self, prompt: str) -> None:
        self.missing_prompts.add(prompt)
        self._out.append(EmitEvent(PromptMissing(self.server, self._now, self.env.uniqueid, self.env.channel,
                                                 self.flow_name, node=self.node_id, prompt=prompt)))

    def _get_data(self, prompt: str, node: CollectNode) -> Generator[_Ask, Any, str]:
        """Digits the caller typed (``""`` on timeout), playing ``prompt`` unless the PBX lacks it."""
        timeout_ms = int(node.timeout * 1000)
        if prompt not in self.missing_prompts:
            reply = yield from self._cmd(agi.get_data(prompt, timeout_ms, node.max_digits))
            if reply.result != "-1":
                return _dtmf(reply.result)
            self._prompt_missing(prompt)  # -1 on a live channel: nothing was read yet, listen without it
        reply = yield from self._cmd(agi.get_data("", timeout_ms, node.max_digits))
        return "" if reply.result.startswith("-") else _dtmf(reply.result)

    def _hang_up(self) -> Generator[_Ask, Any, str]:
        yield from self._cmd(agi.set_variable(CTI_NEXT, NEXT_HANGUP))
        return "=hangup"

    def _menu(self, node_id: str, node: MenuNode) -> Generator[_Ask, Any, str]:
        retry_prompt: tuple[str, ...] | None = None
        for _attempt in range(node.retries + 1):
            key = yield from self._play(retry_prompt, agi.ALL_DIGITS)
            if not key:
                key = yield from self._play(node.prompt, agi.ALL_DIGITS)
            if not key:
                reply = yield from self._cmd(agi.wait_for_digit(int(node.timeout * 1000)))
                key = _key(reply.number) if reply.number is not None and reply.number > 0 else ""
            if key and key in node.options:
                self._step(node_id, node, key, key)
                return node.options[key]
            self._step(node_id, node, key, "invalid" if key else "timeout")
            retry_prompt = node.invalid_prompt if key else node.no_input_prompt
        yield from self._play(retry_prompt)
        if node.after_retries is not None:
            return node.after_retries
        return (yield from self._hang_up())

    def _collect(self, node_id: str, node: CollectNode) -> Generator[_Ask, Any, str]:
        retry_prompt: tuple[str, ...] | None = None
        for _attempt in range(node.retries + 1):
            yield from self._play(retry_prompt)
            yield from self._play(node.prompt[:-1])
            digits = yield from self._get_data(node.prompt[-1], node)
            if node.terminator == "*" and "*" in digits:
                digits = digits.split("*", 1)[0]
            if digits == NOT_DTMF:  # the PBX answered something no keypad sends: invalid, and not kept
                self._step(node_id, node, result="invalid")
                retry_prompt = node.invalid_prompt
                continue
            if not digits:
                self._step(node_id, node, result="timeout")
                retry_prompt = node.no_input_prompt
                continue
            if self._valid(node, digits):
                self.data.collected[node.name] = digits
                if node.secret:
                    self.data.secret.add(node.name)
                self._step(node_id, node, digits, "ok", node.secret)
                return node.next
            self._step(node_id, node, digits, "invalid", node.secret)
            retry_prompt = node.invalid_prompt
        yield from self._play(retry_prompt)
        if node.after_retries is not None:
            return node.after_retries
        return (yield from self._hang_up())

    @staticmethod
    def _valid(node: CollectNode, digits: str) -> bool:
        if not node.min_digits <= len(digits) <= node.max_digits:
            return False
        if node.regex is not None and not re.fullmatch(node.regex, digits):
            return False
        return not (node.luhn and not luhn_ok(digits))

    def _lookup(self, node_id: str, node: LookupNode) -> Generator[_Ask, Any, str]:
        value = self.data.ani if node.by == "ani" else self.data.collected.get(node.value_from or "", "")
        if not value:
            self._step(node_id, node, result="not_found")
            return node.not_found
        result: LookupResult = yield LookupCustomer(node.by, value)
        self._step(node_id, node, result=result.status)
        if result.status == "found":
            self.data.customer = {str(k): str(v) for k, v in result.customer.items()}
            return node.found
        if result.status == "unavailable":
            return node.unavailable or node.not_found
        return node.not_found

    def _merge(self, node: SetNode | QueueNode) -> None:
        """Skills merge (later nodes win per skill); priority and language replace."""
        d = self.data
        d.skills.update(node.skills or {})
        if node.priority is not None:
            d.priority = node.priority
        if node.language:
            d.language = node.language

    def _set(self, node_id: str, node: SetNode) -> Generator[_Ask, Any, str]:
        self._merge(node)
        self.data.variables.update(node.variables)
        self._step(node_id, node)
        if node.language:  # switch the prompts' language now, not only at hand-off
            yield from self._cmd(agi.set_variable("CHANNEL(language)", node.language))
        return node.next

    def _callback(self, node_id: str, node: CallbackNode) -> Generator[_Ask, Any, str]:
        number = self.data.ani if node.number_from == "ani" else self.data.collected.get(node.number_from, "")
        if number:
            when = None if node.delay is None else self._now + node.delay
            self._out.append(EmitEvent(CallbackRequested(
                self.server, self._now, self.env.uniqueid, self.env.channel, self.flow_name,
                number=number, queue=node.queue, when=when, collected=self.data.masked())))
        self._step(node_id, node, result="requested" if number else "no number")
        yield from self._play(node.prompt)
        if node.next is not None:
            return node.next
        return (yield from self._hang_up())

    def _queue(self, node_id: str, node: QueueNode) -> Generator[_Ask, Any, str]:
        d = self.data
        self._merge(node)
        self.queue = node.queue
        self._step(node_id, node, result=f"queue:{node.queue}")
        yield from self._play(node.prompt)
        skills = " ".join(f"{name}:{level}" for name, level in d.skills.items())
        yield from self._hand_off(NEXT_QUEUE, {
            CTI_QUEUE: node.queue, CTI_SKILLS: skills,
            CTI_PRIORITY: str(d.priority if d.priority is not None else 0), CTI_LANGUAGE: d.language,
        })
        return "=queue"

    def _hand_off(self, next_: str, variables: dict[str, str]) -> Generator[_Ask, Any, None]:
        """Set the dialplan contract variables, collected data (non-secret) and CTI_NEXT last."""
        d = self.data
        out = dict(variables)
        out.update(d.variables)
        for name, value in d.collected.items():
            if name not in d.secret:
                out[collected_variable(name)] = value
        if d.customer.get("id"):
            out[CTI_CUSTOMER_ID] = d.customer["id"]
        out[CTI_IVR_PATH] = path_summary(self.path)
        for name, value in out.items():
            yield from self._cmd(agi.set_variable(name, value))
        yield from self._cmd(agi.set_variable(CTI_NEXT, next_))


DTMF_KEYS = frozenset("0123456789*#ABCD")
_DTMF_RE = re.compile(r"[0-9*#A-D]*")
NOT_DTMF = "\x00"  # what _dtmf makes of a GET DATA answer that is not keypad digits (never a valid entry)


def _key(code: int) -> str:
    """DTMF key from an AGI result (ASCII code: 53 -> '5'); "" for any code that is not a keypad key (0-9 * #
    A-D): a menu treats it as no key."""
    key = chr(code) if 32 < code < 127 else ""
    return key if key in DTMF_KEYS else ""


def _dtmf(result: str) -> str:
    """GET DATA's digits, or ``NOT_DTMF`` when the answer holds anything but keypad keys: caller input reaches
    the flow's variables, the path and the dialplan only as 0-9 * # A-D."""
    return result if _DTMF_RE.fullmatch(result) else NOT_DTMF


def path_summary(path: list[PathStep]) -> str:
    """``menu1:1>acct:****>billing:queue:billing`` capped in length (oldest steps dropped first)."""
    parts = [f"{s.node}:{s.digits or s.result}" if (s.digits or s.result) else s.node for s in path]
    text = ">".join(parts)
    while len(text) > PATH_VARIABLE_LIMIT and len(parts) > 1:
        parts.pop(0)
        text = "...>" + ">".join(parts)
    return text[:PATH_VARIABLE_LIMIT]
