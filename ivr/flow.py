"""IVR flow schema (the ``ivr:`` config section) and its load-time validation. No sockets, no clock.

A flow is a graph of named nodes; each node has a ``kind`` and names the nodes it can go to.
Shape errors come from pydantic (through ``config.load`` with file:line); graph errors (unknown
targets, unreachable nodes, cycles that never wait for caller input, menus without options, missing
prompt files when ``prompt_dir`` is set, overlapping schedule windows) come from
``IvrSection.semantic_errors()`` as (location relative to ``ivr``, message) pairs.
The only I/O here is the optional prompt-file check under ``prompt_dir`` at load time.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    WrapValidator,
    field_validator,
)

from cti.config_types import ConfigModel, Loc, PositiveSeconds, TimeZoneName, expected
from cti.contract import RESERVED_VARIABLES, collected_variable

# --- field types ------------------------------------------------------------------------------------

NodeId = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v),
                   StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
VarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$")]
# Asterisk sound names: "welcome", "custom/menu-main", "/var/lib/asterisk/sounds/x". No spaces or
# quotes (they would need AGI quoting and are never in real file names), no "..".
def _no_dotdot(value: str) -> str:
    if ".." in value:
        raise ValueError(f"prompt names may not contain '..', got {value!r}")
    return value


PromptName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./:+-]{1,200}$"), AfterValidator(_no_dotdot)]
Digit = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v),
                  StringConstraints(pattern=r"^[0-9*#]$")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")]
SkillLevels = dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")],
                   Annotated[int, Field(ge=0, le=100)]]


def _one_or_many(value: Any) -> Any:
    """A prompt list may be written as one string."""
    return [value] if isinstance(value, str) else value


Prompts = Annotated[tuple[PromptName, ...], BeforeValidator(_one_or_many)]


def _compile(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return pattern


Regex = Annotated[str, BeforeValidator(lambda v: _compile(v) if isinstance(v, str) else v)]


def parse_window(text: str) -> tuple[int, int]:
    """``"08:30-17:00"`` -> (510, 1020) minutes since midnight; end may be ``24:00``."""
    m = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)", text.strip())
    if not m:
        raise ValueError(f"expected a window HH:MM-HH:MM, got {text!r}")
    start = int(m.group(1)) * 60 + int(m.group(2))
    end = int(m.group(3)) * 60 + int(m.group(4))
    if end > 24 * 60:
        raise ValueError(f"window {text!r} ends after 24:00")
    if end <= start:
        raise ValueError(f"window {text!r} ends before it starts (split windows that cross midnight in two)")
    return start, end


Window = Annotated[str, BeforeValidator(lambda v: (parse_window(v), v)[1] if isinstance(v, str) else v)]


def parse_holiday(value: Any) -> date | tuple[int, int]:
    """``2025-12-25`` (one day) or ``"12-25"`` (every year)."""
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return date.fromisoformat(text)
    m = re.fullmatch(r"(\d{2})-(\d{2})", text)
    if m:
        month, day = int(m.group(1)), int(m.group(2))
        date(2000, month, day)  # leap year: 02-29 is allowed; raises ValueError when impossible
        return month, day
    raise ValueError(f"expected a date YYYY-MM-DD or a yearly MM-DD, got {text!r}")


def _check_holiday(value: Any) -> Any:
    try:
        parse_holiday(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return value.isoformat() if isinstance(value, date) else str(value)


Holiday = Annotated[str, BeforeValidator(_check_holiday)]


# --- nodes -----------------------------------------------------------------------------------------

NODE_KINDS = ("play", "menu", "collect", "lookup", "set", "branch", "schedule", "queue", "transfer",
              "callback", "voicemail", "hangup")


class NodeBase(ConfigModel):
    """Fields every node has."""

    kind: str = expected("a node kind: " + ", ".join(NODE_KINDS))
    description: str = ""
    # What agents read in the screen pop's IVR path ("Main menu", "Sales"); default: display_label().
    label: str | None = expected("a short label for agents, 1-60 characters", default=None, min_length=1,
                                 max_length=60)

    def display_label(self, node_id: str) -> str:
        """The node's ``label``, or one made from the node: a queue's name, else the id in words."""
        if self.label:
            return self.label
        queue = getattr(self, "queue", None)
        if self.kind == "queue" and isinstance(queue, str):
            return f"{queue.replace('_', ' ').capitalize()} queue"
        return node_id.replace("_", " ").replace("-", " ").strip().capitalize() or node_id

    def targets(self) -> Iterator[tuple[Loc, str]]:
        """(location relative to this node, node id) for every node this one can go to."""
        return iter(())

    def prompt_refs(self) -> Iterator[tuple[Loc, str]]:
        """(location relative to this node, prompt name) for every prompt this node plays."""
        return iter(())

    def shape_errors(self) -> Iterator[tuple[Loc, str]]:
        """Problems spanning several fields of this node (location relative to the node, message)."""
        return iter(())

    @property
    def waits_for_input(self) -> bool:
        """Whether this node reads DTMF (so a loop through it cannot spin without the caller)."""
        return False


def _prompt_locs(field: str, prompts: tuple[str, ...] | None) -> Iterator[tuple[Loc, str]]:
    for i, name in enumerate(prompts or ()):
        yield (field, i), name


class PlayNode(NodeBase):
    """Play one or more prompts, then go on."""

    kind: Literal["play"]
    prompts: Prompts = expected("one prompt or a list of prompts", min_length=1)
    next: NodeId

    def targets(self) -> Iterator[tuple[Loc, str]]:
        yield ("next",), self.next

    def prompt_refs(self) -> Iterator[tuple[Loc, str]]:
        yield from _prompt_locs("prompts", self.prompts)


class _InputNode(NodeBase):
    """What menus and collects share: a prompt that listens, retries, and where to go after them."""

    prompt: Prompts = expected("one prompt or a list of prompts", min_length=1)
    timeout: PositiveSeconds = 5.0
    retries: int = expected("a number of retries 0-10", default=2, ge=0, le=10)
    no_input_prompt: Prompts | None = None
    invalid_prompt: Prompts | None = None
    after_retries: NodeId | None = None  # None: hang up

    def targets(self) -> Iterator[tuple[Loc, str]]:
        if self.after_retries is not None:
            yield ("after_retries",), self.after_retries

    def prompt_refs(self) -> Iterator[tuple[Loc, str]]:
        yield from _prompt_locs("prompt", self.prompt)
        yield from _prompt_locs("no_input_prompt", self.no_input_prompt)
        yield from _prompt_locs("invalid_prompt", self.invalid_prompt)

    @property
    def waits_for_input(self) -> bool:
        return True


class MenuNode(_InputNode):
    """Play a prompt and branch on one key; re-prompt on no input or an invalid key."""

    kind: Literal["menu"]
    options: dict[Digit, NodeId] = Field(default_factory=dict)

    def targets(self) -> Iterator[tuple[Loc, str]]:
        for digit, target in self.options.items():
            yield ("options", digit), target
        yield from super().targets()


class CollectNode(_InputNode):
    """Read a digit string into call data under ``name``, validated by length, regex or Luhn."""

    kind: Literal["collect"]
    name: VarName
    min_digits: int = Field(default=1, ge=1, le=64)
    max_digits: int = Field(default=16, ge=1, le=64)
    terminator: Literal["#", "*", ""] = "#"
    regex: Regex | None = None
    luhn: bool = False
    secret: bool = False
    next: NodeId

    def shape_errors(self) -> Iterator[tuple[Loc, str]]:
        if self.min_digits > self.max_digits:
            yield ("min_digits",), f"min_digits ({self.min_digits}) is greater than max_digits ({self.max_digits})"
        if collected_variable(self.name) in RESERVED_VARIABLES:  # the hand-off sets what was entered as CTI_<NAME>
            yield ("name",), (f"{self.name!r} would be stored as {collected_variable(self.name)}, which belongs to "
                              "the dialplan contract; choose another name")

    def targets(self) -> Iterator[tuple[Loc, str]]:
        yield ("next",), self.next
        yield from super().targets()


class LookupNode(NodeBase):
    """Find the customer by caller number or by a collected value; branch on the answer."""

    kind: Literal["lookup"]
    by: Literal["ani", "account"]
    value_from: VarName | None = None  # the collect node's name holding the account (by: account)
    found: NodeId
    not_found: NodeId
    unavailable: NodeId | None = None  # None: same as not_found

    def shape_errors(self) -> Iterator[tuple[Loc, str]]:
        if self.by == "account" and not self.value_from:
            yield ("value_from",), "a lookup by account needs value_from: the name of a collect node"

    def targets(self) -> Iterator[tuple[Loc, str]]:
        yield ("found",), self.found
        yield ("not_found",), self.not_found
        if self.unavailable is not None:
            yield ("unavailable",), self.unavailable


class SetNode(NodeBase):
    """Set call data: skills, priority, language, extra ``CTI_*`` channel variables."""

    kind: Literal["set"]
    skills: SkillLevels | None = None
    priority: int | None = Field(default=None, ge=0, le=100)
    language: Language | None = None
    variables: dict[Annotated[str, StringConstraints(pattern=r"^CTI_[A-Z0-9_]{1,40}$")],
                    Annotated[str, StringConstraints(max_length=200)]] = Field(default_factory=dict)
    next: NodeId

    @field_validator("variables")
    @classmethod
    def _not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        taken = sorted(set(value) & RESERVED_VARIABLES)
        if taken:
            raise ValueError(f"variables {', '.join(taken)} belong to the dialplan contract; use the matching node")
        return value

    def targets(self) -> Iterator[tuple[Loc, str]]:
        yield ("next",), self.next


class Condition(ConfigModel):
    """One ``branch`` case: every condition given must hold."""

    goto: NodeId
    var: str | None = None  # call data key: a collect name, ani, dnis, language, customer.<field>, param.<k>
    equals: str | None = None
    one_of: list[str] | None = None
    matches: Regex | None = None
    present: bool | None = None
    ani: Regex | None = None
    dnis: Regex | None = None

    def shape_error(self) -> str | None:
        tests = [t for t in (self.equals, self.one_of, self.matches, self.present) if t is not None]
        if self.var is not None and len(tests) != 1:
            return "with var, give exactly one of equals, one_of, matches, present"
        if self.var is None and tests:
            return "equals/one_of/matches/present need var"
        if self.var is None and self.ani is None and self.dnis is None:
            return "a case needs var, ani or dnis"
        return None


class BranchNode(NodeBase):
    """Go to the first case whose conditions hold, else to ``default``."""

    kind: Literal["branch"]
    cases: list[Condition] = expected("a list of cases", min_length=1)
    default: NodeId

    def targets(self) -> Iterator[tuple[Loc, str]]:
        for i, case in enumerate(self.cases):
            yield ("cases", i, "goto"), case.goto
        yield ("default",), self.default

    def shape_errors(self) -> Iterator[tuple[Loc, str]]:
        for i, case in enumerate(self.cases):
            problem = case.shape_error()
            if problem:
                yield ("cases", i), problem


class ScheduleNode(NodeBase):
    """Business hours per weekday in a time zone, with holidays; branch open / closed / holiday."""

    kind: Literal["schedule"]
    timezone: TimeZoneName  # IANA name such as Europe/Paris
    hours: dict[Weekday, list[Window]] = Field(default_factory=dict)
    holidays: list[Holiday] = Field(default_factory=list)
    open: NodeId
    closed: NodeId
    holiday: NodeId | None = None  # None: same as closed

    def targets(self) -> Iterator[tuple[Loc, str]]:
        yield ("open",), self.open
        yield ("closed",), self.closed
        if self.holiday is not None:
            yield ("holiday",), self.holiday

    def windows(self, day: Weekday) -> list[tuple[int, int]]:
        return [parse_window(w) for w in self.hours.get(day, [])]


class QueueNode(NodeBase):
    """Hand the call to the ACD: the dialplan parks it in [cti-hold] with these variables."""

    kind: Literal["queue"]
    queue: str = expected("an ACD queue name", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    priority: int | None = Field(default=None, ge=0, le=100)
    skills: SkillLevels | None = None
    language: Language | None = None
    prompt: Prompts | None = None

    def prompt_refs(self) -> Iterator[tuple[Loc, str]]:
        yield from _prompt_locs("prompt", self.prompt)


class TransferNode(NodeBase):
    """Leave the IVR to a dial string (extension or external number through a trunk)."""

    kind: Literal["transfer"]
    dial: str = expected("an Asterisk dial string such as PJSIP/2001 or PJSIP/+15551234567@trunk",
                         pattern=r"^[A-Za-z0-9_/@.+:&-]{1,200}$")
    prompt: Prompts | None = None

    def prompt_refs(self) -> Iterator[tuple[Loc, str]]:
        yield from _prompt_locs("prompt", self.prompt)


class CallbackNode(NodeBase):
    """Record that the caller wants a call back (for the dialer), then go on or hang up."""

    kind: Literal["callback"]
    number_from: str = "ani"  # "ani" or the name of a collect node
    queue: str = expected("an ACD queue name", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    delay: float | None = Field(default=None, ge=0)  # seconds from now; None: as soon as possible
    prompt: Prompts | None = None
    next: NodeId | None = None  # None: hang up after the prompt

    def targets(self) -> Iterator[tuple[Loc, str]]:
        if self.next is not None:
            yield ("next",), self.next

    def prompt_refs(self) -> Iterator[tuple[Loc, str]]:
        yield from _prompt_locs("prompt", self.prompt)


class VoicemailNode(NodeBase):
    """Leave the IVR to a voicemail box."""

    kind: Literal["voicemail"]
    box: str = expected("a mailbox such as 100@default", pattern=r"^[A-Za-z0-9_]{1,40}(@[A-Za-z0-9_-]{1,40})?$")
    prompt: Prompts | None = None

    def prompt_refs(self) -> Iterator[tuple[Loc, str]]:
        yield from _prompt_locs("prompt", self.prompt)


class HangupNode(NodeBase):
    """End the call, optionally after a prompt."""

    kind: Literal["hangup"]
    prompt: Prompts | None = None

    def prompt_refs(self) -> Iterator[tuple[Loc, str]]:
        yield from _prompt_locs("prompt", self.prompt)


NODE_TYPES: dict[str, type[NodeBase]] = {
    "play": PlayNode, "menu": MenuNode, "collect": CollectNode, "lookup": LookupNode, "set": SetNode,
    "branch": BranchNode, "schedule": ScheduleNode, "queue": QueueNode, "transfer": TransferNode,
    "callback": CallbackNode, "voicemail": VoicemailNode, "hangup": HangupNode,
}
TERMINAL_KINDS = frozenset({"queue", "transfer", "voicemail", "hangup"})


class _KindOnly(ConfigModel):
    model_config = {"extra": "ignore"}  # type: ignore[assignment]
    kind: Literal["play", "menu", "collect", "lookup", "set", "branch", "schedule", "queue", "transfer",
                  "callback", "voicemail", "hangup"] = expected("a node kind: " + ", ".join(NODE_KINDS))


def _dispatch_node(value: Any, handler: Callable[[Any], Any]) -> Any:
    """Validate a node with the model of its ``kind`` so errors read ``nodes.<id>.<field>`` (no tag)."""
    if isinstance(value, NodeBase):
        return value
    if not isinstance(value, dict):
        raise ValueError("expected a mapping with a kind (a node)")
    _KindOnly.model_validate(value)
    return NODE_TYPES[value["kind"]].model_validate(value)


AnyNode = Annotated[
    PlayNode | MenuNode | CollectNode | LookupNode | SetNode | BranchNode | ScheduleNode | QueueNode
    | TransferNode | CallbackNode | VoicemailNode | HangupNode,
    WrapValidator(_dispatch_node),
]


# --- flows and the section ---------------------------------------------------------------------------

class Flow(ConfigModel):
    """One named IVR flow: a start node and the node graph."""

    start: NodeId
    language: Language | None = None  # set on the channel before the first prompt
    description: str = ""
    max_steps: int = expected("a number of node visits 10-10000", default=500, ge=10, le=10000)
    nodes: dict[NodeId, AnyNode] = expected("a mapping of node id to node", min_length=1)

    def edges(self, node_id: str) -> list[str]:
        return [target for _, target in self.nodes[node_id].targets()]

    def prompt_names(self) -> tuple[str, ...]:
        """Every prompt this flow names, once each, in node order: what the PBX must be able to play."""
        return tuple(dict.fromkeys(name for node in self.nodes.values() for _, name in node.prompt_refs()))


class IvrSection(ConfigModel):
    """The ``ivr:`` section: named flows and FastAGI server settings."""

    # A flow name is the AGI URL's path, URL-decoded: "main menu" is reached as agi://host/main%20menu.
    flows: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]([A-Za-z0-9 _-]{0,62}[A-Za-z0-9_-])?$")],
                Flow] = Field(default_factory=dict)
    default_flow: str | None = None  # for AGI URLs without a path (agi://host:4573/)
    idle_timeout: PositiveSeconds = 120.0  # longest wait for one AGI reply (prompts included)
    env_timeout: PositiveSeconds = 10.0  # a new connection must send its agi_* block within this
    max_sessions: int = expected("a number of concurrent FastAGI sessions >= 1", default=2000, ge=1, le=100000)
    allow_from: list[str] = Field(default_factory=list)  # PBX addresses/CIDRs; empty: any peer
    prompt_dir: str | None = None  # when set, every prompt must exist there (any extension, any language dir)
    max_line_bytes: int = expected("a line length 256-65536", default=8192, ge=256, le=65536)
    lookup_timeout: PositiveSeconds = 3.0

    @field_validator("allow_from")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"expected an IP address or CIDR, got {item!r}") from None
        return value

    def allowed_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(item, strict=False) for item in self.allow_from]

    def prompt_uses(self) -> dict[str, list[tuple[str, str]]]:
        """Every prompt the flows name -> the (flow, node) pairs that play it, in file order."""
        uses: dict[str, list[tuple[str, str]]] = {}
        for flow_name, flow in self.flows.items():
            for node_id, node in flow.nodes.items():
                for _, prompt in node.prompt_refs():
                    if (flow_name, node_id) not in uses.setdefault(prompt, []):
                        uses[prompt].append((flow_name, node_id))
        return uses

    def queue_references(self) -> list[tuple[Loc, str]]:
        """Every (location, queue name) a flow hands calls to, for the cross-section check."""
        refs: list[tuple[Loc, str]] = []
        for flow_name, flow in self.flows.items():
            for node_id, node in flow.nodes.items():
                if isinstance(node, QueueNode | CallbackNode):
                    refs.append((("flows", flow_name, "nodes", node_id, "queue"), node.queue))
        return refs

    def semantic_errors(self) -> list[tuple[Loc, str]]:
        errors: list[tuple[Loc, str]] = []
        if self.default_flow is not None and self.default_flow not in self.flows:
            errors.append((("default_flow",), _unknown("flow", self.default_flow, self.flows)))
        prompt_index = _PromptIndex(Path(self.prompt_dir)) if self.prompt_dir else None
        for name, flow in self.flows.items():
            errors.extend((("flows", name, *loc), msg) for loc, msg in flow_errors(flow, prompt_index))
        return errors


def _unknown(what: str, name: str, known: dict[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {name!r}{hint}"


class _PromptIndex:
    """Prompt names found under ``prompt_dir`` (``name.ext`` or ``<language>/name.ext``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.names: set[str] = set()
        self.readable = root.is_dir()
        if not self.readable:
            return
        for path in root.rglob("*.*"):
            rel = path.relative_to(root).with_suffix("").as_posix()
            self.names.add(rel)
            parts = rel.split("/", 1)
            if len(parts) == 2:  # language directory: en/welcome serves "welcome"
                self.names.add(parts[1])

    def has(self, prompt: str) -> bool:
        if prompt.startswith("/"):
            p = Path(prompt)
            return any(p.parent.glob(p.name + ".*"))
        return prompt in self.names


def flow_errors(flow: Flow, prompts: _PromptIndex | None = None) -> list[tuple[Loc, str]]:
    """Graph problems of one flow, as (location relative to the flow, message)."""
    errors: list[tuple[Loc, str]] = []
    nodes = flow.nodes
    if flow.start not in nodes:
        errors.append((("start",), _unknown("node", flow.start, nodes)))
    collect_names = {n.name for n in nodes.values() if isinstance(n, CollectNode)}
    for node_id, node in nodes.items():
        base: Loc = ("nodes", node_id)
        errors.extend(((*base, *loc), msg) for loc, msg in node.shape_errors())
        for loc, target in node.targets():
            if target not in nodes:
                errors.append(((*base, *loc), _unknown("node", target, nodes)))
        if isinstance(node, MenuNode) and not node.options:
            errors.append(((*base, "options"), "a menu needs at least one option"))
        if isinstance(node, LookupNode) and node.by == "account" and node.value_from not in collect_names:
            errors.append(((*base, "value_from"), f"no collect node stores {node.value_from!r}"))
        if isinstance(node, CallbackNode) and node.number_from != "ani" and node.number_from not in collect_names:
            errors.append(((*base, "number_from"),
                           f"expected 'ani' or a collect node's name, got {node.number_from!r}"))
        if isinstance(node, ScheduleNode):
            errors.extend(((*base, *loc), msg) for loc, msg in _schedule_overlaps(node))
        if prompts is not None:
            for loc, prompt in node.prompt_refs():
                if not prompts.readable:
                    errors.append(((*base, *loc), f"prompt_dir {str(prompts.root)!r} is not a readable directory"))
                    break
                if not prompts.has(prompt):
                    errors.append(((*base, *loc), f"prompt {prompt!r} not found in prompt_dir"))
    if flow.start in nodes:
        reachable = _reachable(flow)
        for node_id in nodes:
            if node_id not in reachable:
                errors.append((("nodes", node_id), f"node {node_id!r} is unreachable from start {flow.start!r}"))
    for cycle in spinning_cycles(flow):
        path = " -> ".join([*cycle, cycle[0]])
        errors.append((("nodes", cycle[0]), f"cycle {path} never waits for caller input"))
    return errors


def _reachable(flow: Flow) -> set[str]:
    seen = {flow.start}
    todo = [flow.start]
    while todo:
        for target in flow.edges(todo.pop()):
            if target in flow.nodes and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def spinning_cycles(flow: Flow) -> list[list[str]]:
    """Cycles made only of nodes that do not read DTMF: the interpreter would spin through them.

    Tarjan's strongly connected components over the graph without input nodes; each component with
    a cycle is reported once, as one cycle through it starting at its first node in file order.
    """
    nodes = flow.nodes
    spin = [n for n, node in nodes.items() if not node.waits_for_input]
    spin_set = set(spin)
    graph = {n: [t for t in flow.edges(n) if t in spin_set] for n in spin}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def strongconnect(root: str) -> None:
        # iterative Tarjan: (node, iterator over its successors)
        nonlocal counter
        work: list[tuple[str, Iterator[str]]] = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(graph[succ])))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                components.append(comp)

    for n in spin:
        if n not in index:
            strongconnect(n)
    order = {n: i for i, n in enumerate(nodes)}
    cycles: list[list[str]] = []
    for comp in components:
        members = set(comp)
        if len(comp) == 1 and comp[0] not in graph[comp[0]]:
            continue
        first = min(comp, key=order.__getitem__)
        cycles.append(_cycle_from(first, graph, members))
    cycles.sort(key=lambda c: order[c[0]])
    return cycles


def _cycle_from(first: str, graph: dict[str, list[str]], members: set[str]) -> list[str]:
    """A shortest cycle through ``first`` inside one strongly connected component (BFS)."""
    parents: dict[str, str] = {}
    frontier = [first]
    while frontier:
        nxt: list[str] = []
        for node in frontier:
            for succ in graph[node]:
                if succ not in members:
                    continue
                if succ == first:
                    path = [node]
                    while path[-1] != first:
                        path.append(parents[path[-1]])
                    return list(reversed(path))
                if succ not in parents:
                    parents[succ] = node
                    nxt.append(succ)
        frontier = nxt
    return [first]


def _schedule_overlaps(node: ScheduleNode) -> list[tuple[Loc, str]]:
    errors: list[tuple[Loc, str]] = []
    for day, windows in node.hours.items():
        spans = sorted((parse_window(w), i) for i, w in enumerate(windows))
        for (prev, pi), (cur, ci) in zip(spans, spans[1:], strict=False):
            if cur[0] < prev[1]:
                errors.append((("hours", day, ci),
                               f"window {windows[ci]!r} overlaps {windows[pi]!r} on {day}"))
    return errors
