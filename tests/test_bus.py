"""The engine bus (cti.bus): routing by type over the MRO, depth-first order of effects, commands to the
sink, listeners, and timers over all engines on a virtual clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from cti.bus import Engine, EventBus, LocalTransport, Outputs, Reactive, Routes
from cti.commands import Command, Hangup, PushToAgent


@dataclass(frozen=True)
class Base:
    n: int


@dataclass(frozen=True)
class Child(Base):
    pass


@dataclass(frozen=True)
class Other:
    n: int


class Recorder(Reactive):
    """Records what it handles into a shared log; returns scripted outputs per event."""

    def __init__(self, name: str, kinds: tuple[type, ...], log: list[str],
                 script: dict[object, list[object]] | None = None) -> None:
        self.name, self.subscriptions, self.log = name, kinds, log
        self.script = script or {}

    def handle(self, event: object, now: float) -> Outputs:
        self.log.append(f"{self.name}:{event}@{now}")
        return self.script.get(event, [])


class Timed(Reactive):
    """An engine with one timer, fired by ``tick`` at or after its deadline."""

    subscriptions = (Other,)

    def __init__(self, deadline: float | None, log: list[str]) -> None:
        self.deadline, self.log = deadline, log

    def handle(self, event: object, now: float) -> Outputs:
        assert isinstance(event, Other)
        self.deadline = now + event.n
        return []

    def tick(self, now: float) -> Outputs:
        self.log.append(f"tick@{now}")
        self.deadline = None
        return [Base(99)]

    def next_deadline(self) -> float | None:
        return self.deadline


class VirtualClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def _bus(log: list[str]) -> tuple[EventBus, list[Command]]:
    sent: list[Command] = []

    def sink(command: Command) -> None:
        log.append(f"cmd:{command.ref}")
        sent.append(command)

    return EventBus(sink), sent


def test_an_event_reaches_only_the_engines_subscribed_to_its_type_or_a_base() -> None:
    log: list[str] = []
    bus, _ = _bus(log)
    bus.add(Recorder("base", (Base,), log))
    bus.add(Recorder("child", (Child,), log))
    bus.add(Recorder("other", (Other,), log))
    bus.publish(Base(1), 5.0)
    bus.publish(Child(2), 6.0)
    bus.publish(Other(3), 7.0)
    bus.publish("nobody's", 8.0)
    assert log == ["base:Base(n=1)@5.0", "base:Child(n=2)@6.0", "child:Child(n=2)@6.0", "other:Other(n=3)@7.0"]


def test_outputs_are_carried_out_depth_first_in_order() -> None:
    """An engine's outputs run in order, and an emitted event's engines run before the next output: the
    same order of effects as engines calling each other directly."""
    log: list[str] = []
    bus, sent = _bus(log)
    first = Hangup("h1", "pbx", "SIP/1")
    bus.add(Recorder("a", (Base,), log, {Base(1): [first, Other(1), PushToAgent("p1", "1001", {})]}))
    bus.add(Recorder("b", (Other,), log, {Other(1): [Child(2)]}))
    bus.add(Recorder("c", (Base,), log))
    bus.publish(Base(1), 1.0)
    assert log == ["a:Base(n=1)@1.0", "cmd:h1", "b:Other(n=1)@1.0", "a:Child(n=2)@1.0", "c:Child(n=2)@1.0",
                   "cmd:p1", "c:Base(n=1)@1.0"]
    assert [c.ref for c in sent] == ["h1", "p1"]
    assert bus.counters == {"events": 3, "commands": 2, "remote_events": 0}


def test_listeners_see_every_event_before_the_engines() -> None:
    log: list[str] = []
    bus, _ = _bus(log)
    bus.add(Recorder("a", (Base,), log, {Base(1): [Other(2)]}))
    bus.subscribe(lambda e: log.append(f"seen:{e}"))
    bus.publish(Base(1), 0.0)
    assert log == ["seen:Base(n=1)", "a:Base(n=1)@0.0", "seen:Other(n=2)"]


def test_routes_are_resolved_once_per_type_and_again_after_an_engine_is_added() -> None:
    log: list[str] = []
    routes = Routes()
    a = Recorder("a", (Base,), log)
    routes.add(a)
    assert routes.for_type(Child) == (a,)
    assert routes.for_type(Child) is routes.for_type(Child)  # cached
    b = Recorder("b", (object,), log)
    routes.add(b)
    assert routes.for_type(Child) == (a, b)
    assert routes.for_type(str) == (b,)
    assert routes.timed == ()  # neither has timers: the bus does not ask them
    timed = Timed(None, log)
    routes.add(timed)
    assert routes.timed == (timed,)


def test_apply_hands_commands_to_the_sink_and_publishes_the_rest() -> None:
    log: list[str] = []
    bus, sent = _bus(log)
    bus.add(Recorder("a", (Other,), log))
    bus.apply([Other(1), Hangup("h", "pbx", "SIP/2")], 3.0)
    assert log == ["a:Other(n=1)@3.0", "cmd:h"]
    assert sent == [Hangup("h", "pbx", "SIP/2")]


def test_timers_over_all_engines_on_a_virtual_clock() -> None:
    log: list[str] = []
    clock = VirtualClock(100.0)
    bus, _ = _bus(log)
    early, late = Timed(None, log), Timed(None, log)
    bus.add(early)
    bus.add(Recorder("base", (Base,), log))
    assert bus.next_deadline() is None
    early.deadline, late.deadline = 105.0, 110.0
    bus.add(late)
    assert bus.next_deadline() == 105.0
    bus.tick(clock.advance(1.0))  # nothing due
    assert log == []
    bus.tick(clock.advance(4.0))  # 105: only the engine that is due ticks, and its outputs go on
    assert log == ["tick@105.0", "base:Base(n=99)@105.0"]
    assert bus.next_deadline() == 110.0
    bus.publish(Other(2), clock.now)  # both Timed engines take Other: each sets a timer 2 s on
    assert bus.next_deadline() == 107.0
    bus.tick(clock.advance(2.0))
    assert log[-4:] == ["tick@107.0", "base:Base(n=99)@107.0", "tick@107.0", "base:Base(n=99)@107.0"]
    assert bus.next_deadline() is None


def test_a_transport_carries_every_publish_and_emitted_event() -> None:
    """The transport seam: everything published (by a caller or an engine) goes through ``send``."""

    class Counting(LocalTransport):
        def __init__(self) -> None:
            super().__init__()
            self.sent: list[object] = []

        def send(self, event: object, now: float) -> None:
            self.sent.append(event)
            super().send(event, now)

    log: list[str] = []
    transport = Counting()
    bus = EventBus(lambda c: None, transport=transport)
    bus.add(Recorder("a", (Base,), log, {Base(1): [Other(2)]}))
    bus.publish(Base(1), 0.0)
    assert transport.sent == [Base(1), Other(2)]


def test_an_unattached_transport_says_so() -> None:
    with pytest.raises(RuntimeError, match="not attached"):
        LocalTransport().send(Base(1), 0.0)


def test_engines_satisfy_the_protocol() -> None:
    assert isinstance(Recorder("a", (Base,), []), Engine)
    assert isinstance(Timed(None, []), Engine)


class RemoteRecorder(Recorder):
    """A ``Recorder`` that also takes other nodes' events of ``remote`` types."""

    def __init__(self, name: str, kinds: tuple[type, ...], remote: tuple[type, ...], log: list[str],
                 script: dict[object, list[object]] | None = None) -> None:
        super().__init__(name, kinds, log, script)
        self.remote_subscriptions = remote


class NoRemoteAttribute:
    """An engine written before remote events existed: no ``remote_subscriptions`` at all."""

    subscriptions = (Base,)

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def handle(self, event: object, now: float) -> Outputs:
        self.log.append(f"old:{event}")
        return ()

    def tick(self, now: float) -> Outputs:
        return ()

    def next_deadline(self) -> float | None:
        return None


def test_a_remote_event_reaches_only_the_engines_whose_remote_subscriptions_take_it() -> None:
    log: list[str] = []
    bus, _ = _bus(log)
    bus.add(Recorder("local", (Base,), log))  # Reactive: remote_subscriptions empty by default
    bus.add(NoRemoteAttribute(log))  # no attribute at all: still an Engine, never sees remote events
    bus.add(RemoteRecorder("stats", (), (Base,), log))  # a subclass routes by the MRO, as locally
    bus.add(RemoteRecorder("other", (), (Other,), log))
    assert isinstance(NoRemoteAttribute(log), Engine)
    bus.deliver_remote(Child(1), "nodeA", 5.0)
    assert log == ["stats:Child(n=1)@5.0"]
    log.clear()
    bus.publish(Child(2), 6.0)  # a local event: remote_subscriptions play no part
    assert log == ["local:Child(n=2)@6.0", "old:Child(n=2)"]
    assert bus.counters["remote_events"] == 1 and bus.counters["events"] == 1


def test_what_a_remote_event_causes_is_carried_out_here_commands_to_the_sink_events_routed_locally() -> None:
    log: list[str] = []
    bus, sent = _bus(log)
    hangup = Hangup(ref="h1", server="pbx1", channel="SIP/1-1")
    bus.add(RemoteRecorder("pops", (), (Base,), log, {Base(1): [hangup, Other(7)]}))
    bus.add(Recorder("local", (Other,), log))
    bus.deliver_remote(Base(1), "nodeB", 3.0)
    assert log == ["pops:Base(n=1)@3.0", "cmd:h1", "local:Other(n=7)@3.0"]
    assert sent == [hangup]


def test_remote_listeners_see_remote_events_with_their_origin_and_local_listeners_do_not() -> None:
    log: list[str] = []
    bus, _ = _bus(log)
    local: list[object] = []
    remote: list[tuple[object, str]] = []
    bus.subscribe(local.append)
    bus.subscribe_remote(lambda event, origin: remote.append((event, origin)))
    bus.deliver_remote(Base(1), "nodeC", 0.0)
    bus.publish(Base(2), 0.0)
    assert local == [Base(2)] and remote == [(Base(1), "nodeC")]


def test_remote_routes_are_cached_per_type_and_resolved_again_after_an_engine_is_added() -> None:
    log: list[str] = []
    bus, _ = _bus(log)
    first = RemoteRecorder("a", (), (Base,), log)
    bus.add(first)
    assert bus.routes.for_remote_type(Child) == (first,)
    second = RemoteRecorder("b", (), (Child,), log)
    bus.add(second)
    assert bus.routes.for_remote_type(Child) == (first, second)
    assert bus.routes.for_remote_type(Other) == ()


def test_a_transport_that_receives_remote_events_is_handed_deliver_remote() -> None:
    class Receiving(LocalTransport):
        def __init__(self) -> None:
            super().__init__()
            self.remote: Callable[[object, str, float], None] | None = None

        def attach_remote(self, deliver_remote: Callable[[object, str, float], None]) -> None:
            self.remote = deliver_remote

    log: list[str] = []
    transport = Receiving()
    bus = EventBus(lambda c: None, transport=transport)
    bus.add(RemoteRecorder("a", (), (Base,), log))
    assert transport.remote is not None
    transport.remote(Base(4), "nodeA", 1.0)
    assert log == ["a:Base(n=4)@1.0"]


class OriginAware(RemoteRecorder):
    """An engine that must know which node an event came from (the ACD's replica): ``handle_remote``."""

    def handle_remote(self, event: object, origin: str, now: float) -> Outputs:
        self.log.append(f"{self.name}:{event} from {origin}@{now}")
        return []


def test_an_engine_with_handle_remote_gets_the_origin_and_its_handle_is_not_called_for_remote_events() -> None:
    log: list[str] = []
    bus, _ = _bus(log)
    bus.add(OriginAware("acd", (Base,), (Base,), log))
    bus.deliver_remote(Base(3), "nodeC", 2.0)
    assert log == ["acd:Base(n=3) from nodeC@2.0"]
    log.clear()
    bus.publish(Base(4), 2.5)
    assert log == ["acd:Base(n=4)@2.5"]
