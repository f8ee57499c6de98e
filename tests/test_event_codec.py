"""The events' wire codec (cti/event_codec.py): every event class of cti, acd, dialer and ivr round-trips through
bytes (instances generated from each class's type hints), and anything that is not an event it knows is a
``CodecError``, never another exception."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

import acd.events
import cti.events
import dialer.events
import ivr.events
from acd.events import AGENT_STATES, OUTCOMES, OVERFLOW_ACTIONS, AgentStateChanged, QueueCallFinished
from cti.event_codec import CodecError, EventCodec
from cti.events import TRANSFER_KINDS, CallQueued
from ivr.events import IvrCompleted, PathStep

MODULES = (cti.events, acd.events, dialer.events, ivr.events)


def codec() -> EventCodec:
    c = EventCodec()
    for module in MODULES:
        c.register_module(module)
    return c


CODEC = codec()
TEXT = st.text(min_size=1, max_size=6)
ANY = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT)
# Fields an event checks against a set of words: drawn from those words.
WORDS: dict[str, frozenset[str]] = {"state": AGENT_STATES, "previous": AGENT_STATES, "action": OVERFLOW_ACTIONS}


def for_hint(hint: Any) -> st.SearchStrategy[Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return ANY
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: TEXT, int: st.integers(), float: st.floats(allow_nan=False), bool: st.booleans(),
        type(None): st.none()}
    if hint in simple:
        return simple[hint]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return for_class(hint)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is typing.Union or origin is types.UnionType:
        return st.one_of(*(for_hint(a) for a in args))
    if origin is tuple:
        return st.lists(for_hint(args[0]), max_size=3).map(tuple)
    if origin in (dict, Mapping):
        return st.dictionaries(TEXT, for_hint(args[1]), max_size=3)
    raise AssertionError(f"no strategy for {hint!r}")


def for_class(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for f in dataclasses.fields(cls):
        words = WORDS.get(f.name)
        if f.name == "kind" and cls is cti.events.CallTransferred:
            words = TRANSFER_KINDS
        if f.name == "outcome" and hints[f.name] is str and issubclass(cls, QueueCallFinished):
            words = OUTCOMES
        fields[f.name] = st.sampled_from(sorted(words)) if words else for_hint(hints[f.name])

    def build(values: dict[str, Any]) -> Any:
        try:
            return cls(**values)
        except ValueError:
            reject()

    return st.fixed_dictionaries(fields).map(build)


def test_every_event_module_registers_its_frozen_dataclasses_and_none_it_imports() -> None:
    names = {cls.__name__ for cls in CODEC.classes}
    assert {"CallQueued", "AgentStateChanged", "AttemptFinished", "IvrCompleted", "PathStep"} <= names
    assert "AgentState" not in names  # an enum acd.events imports, not a dataclass of it
    assert len(acd.events.__dict__) and CODEC.register_module(acd.events)[0].__module__ == "acd.events"


@pytest.mark.parametrize("cls", CODEC.classes, ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_every_event_class_round_trips_through_bytes(cls: type, data: st.DataObject) -> None:
    event = data.draw(for_class(cls))
    name, body = CODEC.encode(event)
    assert name == cls.__name__ and isinstance(body, bytes)
    back = CODEC.decode(name.encode(), body)
    assert type(back) is cls and back == event


def test_nested_events_mappings_and_defaults_on_the_wire() -> None:
    done = IvrCompleted(server="pbx", ts=2.0, uniqueid="u1", channel="c", flow="main",
                        path=(PathStep(node="m", kind="menu", t=1.0, digits="1"),), skills={"en": 2})
    body = CODEC.to_dict(done)
    assert body["path"] == [{"node": "m", "kind": "menu", "t": 1.0, "digits": "1"}]  # defaults left off
    assert "collected" not in body and "outcome" not in body
    assert CODEC.from_dict("IvrCompleted", body) == done
    queued = CODEC.decode(*CODEC.encode(CallQueued(server="p", ts=1.0, call_id="L", uniqueid="u", channel="c",
                                                   queue="q", skills="", priority=1, language="en", caller_num="",
                                                   caller_name="", dnis="", data={"CTI_X": "1"})))
    assert isinstance(queued, CallQueued)
    with pytest.raises(TypeError):  # still a read-only mapping after the trip
        queued.data["CTI_X"] = "2"  # type: ignore[index]


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Painted:
    colour: Colour
    at: datetime
    when: datetime | None = None


def test_enums_and_times_round_trip() -> None:
    c = EventCodec()
    c.register(Painted)
    event = Painted(colour=Colour.RED, at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    name, body = c.encode(event)
    assert c.decode(name, body) == event
    assert c.to_dict(event) == {"colour": "red", "at": "2026-01-02T03:04:05+00:00"}
    with pytest.raises(CodecError, match="not a Colour"):
        c.from_dict("Painted", {"colour": "blue", "at": "2026-01-02T03:04:05"})


GOOD = CODEC.to_dict(AgentStateChanged(ts=1.0, agent_id="a1", state="ready", previous="not_ready", reason="",
                                       since=0.0))


@pytest.mark.parametrize(("name", "body", "says"), [
    (b"NoSuchEvent", b"{}", "unknown event type"),
    (b"AgentStateChanged", b"{not json", "malformed payload"),
    (b"AgentStateChanged", b"\xff\xfe", "malformed payload"),
    (b"\xff", b"{}", "malformed payload"),
    (b"AgentStateChanged", b"[1, 2]", "body is not an object"),
    (b"AgentStateChanged", b'{"ts": 1.0}', "agent_id is missing"),
    (b"AgentStateChanged", b'{"ts": "soon", "agent_id": "a", "state": "ready", "previous": "ready", '
                           b'"reason": "", "since": 0}', "ts: expected float"),
    (b"CallWaiting", b'{"ts": 1, "server": "p", "uniqueid": "u", "call_id": "", "queue": "q", "priority": true, '
                     b'"position": 1, "ewt": null}', "priority: expected int, got bool"),
    (b"AgentStateChanged", b'{"ts": 1.0, "agent_id": "a", "state": "dancing", "previous": "ready", '
                           b'"reason": "", "since": 0}', "refused"),
    (b"IvrCompleted", b'{"server": "p", "ts": 1, "uniqueid": "u", "channel": "c", "flow": "f", "path": [1]}',
     "path: PathStep: the body is not an object"),
    (b"IvrCompleted", b'{"server": "p", "ts": 1, "uniqueid": "u", "channel": "c", "flow": "f", '
                      b'"outcome": "elsewhere"}', "outcome: expected one of"),
])
def test_anything_but_a_known_event_is_a_codec_error(name: bytes, body: bytes, says: str) -> None:
    with pytest.raises(CodecError, match=says):
        CODEC.decode(name, body)


def test_a_newer_nodes_extra_field_is_ignored() -> None:
    assert CODEC.from_dict("AgentStateChanged", {**GOOD, "mood": "calm"}) == CODEC.from_dict(
        "AgentStateChanged", GOOD)


def test_what_cannot_go_on_the_wire_is_refused_when_encoding() -> None:
    @dataclasses.dataclass(frozen=True)
    class Stranger:
        n: int

    with pytest.raises(CodecError, match="not a registered event class"):
        CODEC.encode(Stranger(1))
    warning = acd.events.AcdWarning(ts=1.0, code="x", message="", details={"obj": object()})
    with pytest.raises(CodecError, match="details"):
        CODEC.encode(warning)


def test_registration_refuses_what_it_could_not_decode_unambiguously() -> None:
    @dataclasses.dataclass(frozen=True)
    class CallQueued:  # same name as cti.events.CallQueued
        n: int

    @dataclasses.dataclass
    class Loose:
        n: int

    c = codec()
    with pytest.raises(ValueError, match="two event classes named CallQueued"):
        c.register(CallQueued)
    with pytest.raises(TypeError, match="not frozen"):
        c.register(Loose)
    with pytest.raises(TypeError, match="not a dataclass"):
        c.register(int)


@dataclasses.dataclass(frozen=True)
class WithSet:
    items: frozenset[str]


def test_a_class_with_a_field_of_no_wire_form_is_refused_and_not_half_registered() -> None:
    c = EventCodec()
    with pytest.raises(TypeError, match="no wire form"):
        c.register(WithSet)
    assert c.classes == ()
