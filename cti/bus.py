"""The engine bus: events in, each to the engines subscribed to its type; what they return goes on.

Pure (no Twisted, no clock of its own: ``now`` is passed in). Three parts, kept apart so that each can
be replaced on its own:

* ``Routes``: which engines take which event types, in the order they were added. An event's engines
  are resolved once per event *type* over its MRO (an engine subscribed to ``AcdEvent`` gets every
  subclass) and cached: routing is one dict look-up per event, no isinstance chains.
* ``LocalTransport``: delivery of a published event in this process (at once, depth-first). A Redis
  transport for several nodes plugs in here (``Transport``; ``centre.redis_bus.StreamsTransport``): it
  delivers here at once, sends the shared events out, and hands what it receives to ``deliver_remote``.
* ``EventBus``: publishing and the outputs' way on. An engine's ``handle`` returns a list of outputs;
  each is handled in order, depth-first: a ``cti.commands.Command`` goes to the command sink (the
  Dispatcher), anything else is published as an event (its engines run before the next output). This
  keeps the order of effects of a direct call chain. ``subscribe`` listeners (the demo's summary, tests,
  a statistics engine) see every event before the engines do.
* Remote events (another node's, carried by a transport over Redis: ``EventBus.deliver_remote``) are not
  routed like local ones: node B's ACD must not route node A's call. They go only to the engines that
  declare an optional ``remote_subscriptions`` (event types, MRO routing as for ``subscriptions``; none
  when absent: an engine without the attribute never sees another node's events), and to the
  ``subscribe_remote`` listeners (the ``subscribe`` ones never see them). What those engines return is
  carried out as usual: their commands to the sink, their events published on this node.

Timers: ``next_deadline`` is the earliest of the engines', ``tick(now)`` ticks the engines that are due.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

from cti.commands import Command

#: Outputs of an engine: commands (``cti.commands``) and events (anything else).
Outputs = Sequence[object]
Listener = Callable[[object], None]
RemoteListener = Callable[[object, str], None]  # (event, origin node)
CommandSink = Callable[[Command], object]


@runtime_checkable
class Engine(Protocol):
    """What the bus drives. ``subscriptions``: the event types ``handle`` is given (subclasses included).

    Optional, not part of the protocol (existing engines have none): ``remote_subscriptions``, the event
    types of *other nodes* ``handle`` is also given (``EventBus.deliver_remote``; see ``remote_subscriptions``).
    """

    @property
    def subscriptions(self) -> tuple[type, ...]: ...

    def handle(self, event: object, now: float) -> Outputs: ...

    def tick(self, now: float) -> Outputs: ...

    def next_deadline(self) -> float | None: ...


class Reactive:
    """Base for an engine without timers (only ``subscriptions`` and ``handle`` to write). The bus asks
    only engines that override ``next_deadline`` for their timers."""

    subscriptions: tuple[type, ...] = ()
    remote_subscriptions: tuple[type, ...] = ()

    def handle(self, event: object, now: float) -> Outputs:
        raise NotImplementedError

    def tick(self, now: float) -> Outputs:
        return ()

    def next_deadline(self) -> float | None:
        return None


def remote_subscriptions(engine: Engine) -> tuple[type, ...]:
    """The event types of other nodes ``engine`` takes: its optional ``remote_subscriptions`` (none if absent)."""
    kinds: tuple[type, ...] = getattr(engine, "remote_subscriptions", ())
    return kinds


class Routes:
    """Engines by the event types they take; delivery order is the order engines were added."""

    def __init__(self) -> None:
        self.engines: tuple[Engine, ...] = ()
        self.timed: tuple[Engine, ...] = ()  # the engines that may have timers (not plain ``Reactive`` ones)
        self._by_type: dict[type, tuple[Engine, ...]] = {}
        self._remote_by_type: dict[type, tuple[Engine, ...]] = {}

    def add(self, engine: Engine) -> None:
        self.engines = (*self.engines, engine)
        if not (isinstance(engine, Reactive) and type(engine).next_deadline is Reactive.next_deadline):
            self.timed = (*self.timed, engine)
        self._by_type.clear()  # resolved again on first use
        self._remote_by_type.clear()

    def for_type(self, kind: type) -> tuple[Engine, ...]:
        """The engines subscribed to ``kind`` or any of its bases (cached per type)."""
        found = self._by_type.get(kind)
        if found is None:
            mro = kind.__mro__
            found = self._by_type[kind] = tuple(
                e for e in self.engines if any(t in mro for t in e.subscriptions))
        return found

    def for_remote_type(self, kind: type) -> tuple[Engine, ...]:
        """The engines whose ``remote_subscriptions`` name ``kind`` or any of its bases (cached per type)."""
        found = self._remote_by_type.get(kind)
        if found is None:
            mro = kind.__mro__
            found = self._remote_by_type[kind] = tuple(
                e for e in self.engines if any(t in mro for t in remote_subscriptions(e)))
        return found


class Transport(Protocol):
    """Carries a published event to ``deliver`` (here: at once; across nodes: through Redis).

    A transport that also receives other nodes' events may have an ``attach_remote(deliver_remote)``
    method (not part of the protocol): the bus calls it with ``EventBus.deliver_remote``."""

    def attach(self, deliver: Callable[[object, float], None]) -> None: ...

    def send(self, event: object, now: float) -> None: ...


class LocalTransport:
    """Delivery in this process, at once (depth-first)."""

    def __init__(self) -> None:
        self._deliver: Callable[[object, float], None] | None = None

    def attach(self, deliver: Callable[[object, float], None]) -> None:
        self._deliver = deliver

    def send(self, event: object, now: float) -> None:
        if self._deliver is None:
            raise RuntimeError("transport not attached to a bus")
        self._deliver(event, now)


class EventBus:
    """Routes events to engines, re-publishes the events they emit and hands their commands to ``commands``."""

    def __init__(self, commands: CommandSink, *, transport: Transport | None = None) -> None:
        self.routes = Routes()
        self.commands = commands
        self.transport: Transport = transport if transport is not None else LocalTransport()
        self.transport.attach(self.deliver)
        attach_remote = getattr(self.transport, "attach_remote", None)
        if attach_remote is not None:
            attach_remote(self.deliver_remote)
        self._listeners: list[Listener] = []
        self._remote_listeners: list[RemoteListener] = []
        self.counters = {"events": 0, "commands": 0, "remote_events": 0}

    def add(self, engine: Engine) -> None:
        """Drive ``engine``: its events after those of the engines added before it."""
        self.routes.add(engine)

    def subscribe(self, listener: Listener) -> None:
        """Be told of every event, before the engines (demo summary, tests, statistics)."""
        self._listeners.append(listener)

    def subscribe_remote(self, listener: RemoteListener) -> None:
        """Be told of every event from another node (``listener(event, origin)``), before the engines."""
        self._remote_listeners.append(listener)

    def publish(self, event: object, now: float) -> None:
        """Put one event on the bus."""
        self.transport.send(event, now)

    def deliver(self, event: object, now: float) -> None:
        """Run one event through the listeners and its engines (the transport calls this)."""
        self.counters["events"] += 1
        for listener in self._listeners:
            listener(event)
        for engine in self.routes.for_type(type(event)):
            outputs = engine.handle(event, now)
            if outputs:
                self.apply(outputs, now)

    def deliver_remote(self, event: object, origin: str, now: float) -> None:
        """Run one event of node ``origin`` through the remote listeners and the engines whose
        ``remote_subscriptions`` take it (``handle_remote(event, origin, now)`` when the engine has one, else
        ``handle``); their commands go to the sink, their events are published here."""
        self.counters["remote_events"] += 1
        for listener in self._remote_listeners:
            listener(event, origin)
        for engine in self.routes.for_remote_type(type(event)):
            # an engine that must tell another node's events from its own takes them in ``handle_remote``
            # (the ACD: another node's agent changes touch only its replica); the others in ``handle``
            remote = getattr(engine, "handle_remote", None)
            outputs = remote(event, origin, now) if remote is not None else engine.handle(event, now)
            if outputs:
                self.apply(outputs, now)

    def apply(self, outputs: Iterable[object], now: float) -> None:
        """Carry out outputs in order: commands to the sink, events published (depth-first)."""
        for out in outputs:
            if isinstance(out, Command):
                self.counters["commands"] += 1
                self.commands(out)
            else:
                self.transport.send(out, now)

    def tick(self, now: float) -> None:
        """Tick every engine whose deadline has come, and carry out what they return."""
        for engine in self.routes.timed:
            deadline = engine.next_deadline()
            if deadline is not None and deadline <= now + 1e-9:
                outputs = engine.tick(now)
                if outputs:
                    self.apply(outputs, now)

    def next_deadline(self) -> float | None:
        """The earliest deadline of any engine (None: no engine has one)."""
        best: float | None = None
        for engine in self.routes.timed:
            deadline = engine.next_deadline()
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        return best
