"""In-memory TCP look-alike for virtual-time runs: client and server Twisted protocols talk through byte
pipes with no sockets and a deterministic delivery order. Imports Twisted interfaces only; no reactor,
no sim module.

``MemoryNetwork`` holds listeners by (host, port) and open pipes. ``connect(host, port, protocol)``
(the shape ``FastAGIClient`` and AMI clients take) links a client protocol to a listener's
``factory.buildProtocol()`` and returns a Deferred of the protocol, or fails with
``ConnectionRefusedError`` when nothing listens there.

Delivery: ``write()`` only queues bytes; ``flush()`` moves them to the peer's ``dataReceived`` (in
chunks of at most ``max_chunk`` bytes, to exercise framing), repeating until no pipe has anything
queued, then delivers closes. Give the network a clock and every write schedules one
``clock.callLater(0, flush)``; without a clock the driver calls ``flush()``, e.g. as
``VirtualClock.add_idle_hook(network.flush)``.

Close semantics follow TCP as Twisted reports it: ``loseConnection()`` delivers what was written,
then both sides get ``connectionLost(ConnectionDone)``; ``abortConnection()`` drops queued bytes and
reports ``ConnectionLost``; ``loseWriteConnection()`` is a half close: the peer gets
``readConnectionLost()`` if it provides ``IHalfCloseableProtocol``, else the connection closes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet import address, error
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
)
from twisted.python.failure import Failure
from zope.interface import implementer

# Stop a flush that keeps producing bytes (two protocols ping-ponging forever) instead of hanging.
MAX_FLUSH_ROUNDS = 1_000_000


@implementer(ITCPTransport)
class MemoryTransport:
    """One end of a ``MemoryPipe``; what a protocol sees as ``self.transport``."""

    def __init__(self, pipe: MemoryPipe, host: address.IPv4Address, peer: address.IPv4Address) -> None:
        self._pipe = pipe
        self._host = host
        self._peer = peer
        self.outbox: list[bytes] = []
        self.disconnecting = False  # loseConnection() called
        self.write_closed = False  # loseWriteConnection() called
        self.connected = True
        self.producer: IPushProducer | None = None

    # ITransport
    def write(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if not data or not self.connected or self.disconnecting or self.write_closed:
            return
        self.outbox.append(data)
        self._pipe.network.notify()

    def writeSequence(self, data: Iterable[bytes]) -> None:
        for chunk in data:
            self.write(chunk)

    def loseConnection(self) -> None:
        if self.connected and not self.disconnecting:
            self.disconnecting = True
            self._pipe.network.notify()

    def abortConnection(self) -> None:
        if self.connected:
            self._pipe.abort()

    def loseWriteConnection(self) -> None:
        if self.connected and not self.write_closed:
            self.write_closed = True
            self._pipe.network.notify()

    def getPeer(self) -> address.IPv4Address:
        return self._peer

    def getHost(self) -> address.IPv4Address:
        return self._host

    # ITCPTransport odds and ends
    def getTcpNoDelay(self) -> bool:
        return True

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def getTcpKeepAlive(self) -> bool:
        return False

    def setTcpKeepAlive(self, enabled: bool) -> None:
        pass

    # IConsumer (streaming producers only; memory never pushes back)
    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.loseConnection()


class MemoryPipe:
    """A connected client/server pair of protocols and their transports."""

    def __init__(self, network: MemoryNetwork, client: IProtocol, server: IProtocol,
                 client_addr: address.IPv4Address, server_addr: address.IPv4Address) -> None:
        self.network = network
        self.client = client
        self.server = server
        self.client_transport = MemoryTransport(self, client_addr, server_addr)
        self.server_transport = MemoryTransport(self, server_addr, client_addr)
        self.closed = False
        self._read_closed: set[int] = set()  # ids of transports whose peer half-closed to them

    def _ends(self) -> tuple[tuple[MemoryTransport, IProtocol, MemoryTransport, IProtocol], ...]:
        return ((self.client_transport, self.client, self.server_transport, self.server),
                (self.server_transport, self.server, self.client_transport, self.client))

    def flush(self, max_chunk: int | None) -> bool:
        """Deliver queued bytes both ways, then pending closes. True if anything happened."""
        if self.closed:
            return False
        moved = False
        for src, _src_proto, dst, dst_proto in self._ends():
            while src.outbox and not self.closed and dst.connected:
                data = src.outbox.pop(0)
                if max_chunk and len(data) > max_chunk:
                    src.outbox.insert(0, data[max_chunk:])
                    data = data[:max_chunk]
                moved = True
                dst_proto.dataReceived(data)
        if self.closed:
            return True
        for src, _src_proto, dst, dst_proto in self._ends():
            if src.outbox:
                continue
            if src.disconnecting:
                self._close(error.ConnectionDone("Connection was closed cleanly."))
                return True
            if src.write_closed and id(dst) not in self._read_closed:
                self._read_closed.add(id(dst))
                moved = True
                if IHalfCloseableProtocol.providedBy(dst_proto):
                    dst_proto.readConnectionLost()  # type: ignore[attr-defined]
                else:
                    self._close(error.ConnectionDone("Connection was closed cleanly."))
                    return True
        return moved

    def abort(self) -> None:
        for t in (self.client_transport, self.server_transport):
            t.outbox.clear()
        self._close(error.ConnectionLost("Connection was aborted."))

    def _close(self, reason: Exception) -> None:
        if self.closed:
            return
        self.closed = True
        for t in (self.client_transport, self.server_transport):
            t.connected = False
            t.outbox.clear()
        self.client.connectionLost(Failure(reason))
        self.server.connectionLost(Failure(reason))
        self.network._forget(self)


class MemoryListener:
    """Returned by ``MemoryNetwork.listen``; ``stopListening()`` frees the address."""

    def __init__(self, network: MemoryNetwork, host: str, port: int, factory: IProtocolFactory) -> None:
        self.network = network
        self.host = host
        self.port = port
        self.factory = factory

    def getHost(self) -> address.IPv4Address:
        return address.IPv4Address("TCP", self.host, self.port)

    def stopListening(self) -> Deferred[None]:
        if self.network._listeners.get((self.host, self.port)) is self:
            del self.network._listeners[(self.host, self.port)]
            self.factory.doStop()
        return succeed(None)


class MemoryNetwork:
    """Listeners and pipes of one simulated host network. See the module docstring."""

    def __init__(self, clock: IReactorTime | None = None, max_chunk: int | None = None) -> None:
        self.clock = clock
        self.max_chunk = max_chunk
        self._listeners: dict[tuple[str, int], MemoryListener] = {}
        self._pipes: list[MemoryPipe] = []
        self._flush_scheduled = False
        self._next_client_port = 40000

    def listen(self, host: str, port: int, factory: IProtocolFactory) -> MemoryListener:
        """Listen on (host, port); port 0 picks a free one (see ``listener.port``)."""
        if port == 0:
            port = 30000
            while (host, port) in self._listeners:
                port += 1
        if (host, port) in self._listeners:
            raise error.CannotListenError(host, port, OSError(98, "Address already in use"))
        listener = MemoryListener(self, host, port, factory)
        self._listeners[(host, port)] = listener
        factory.doStart()
        return listener

    def connect(self, host: str, port: int, protocol: IProtocol) -> Deferred[Any]:
        """Connect ``protocol`` to the listener at (host, port); both sides' ``connectionMade`` run
        now (server first). Fails with ConnectionRefusedError if nothing listens or the factory
        refuses the connection."""
        listener = self._listeners.get((host, port))
        if listener is None:
            return fail(error.ConnectionRefusedError(f"nothing listens on {host}:{port} (memory network)"))
        self._next_client_port += 1
        client_addr = address.IPv4Address("TCP", "127.0.0.1", self._next_client_port)
        server_addr = address.IPv4Address("TCP", host, port)
        server = listener.factory.buildProtocol(client_addr)
        if server is None:
            return fail(error.ConnectionRefusedError(f"{host}:{port} refused the connection"))
        pipe = MemoryPipe(self, protocol, server, client_addr, server_addr)
        self._pipes.append(pipe)
        server.makeConnection(pipe.server_transport)
        protocol.makeConnection(pipe.client_transport)
        return succeed(protocol)

    def notify(self) -> None:
        """Something was queued: with a clock, schedule one flush at the current time."""
        if self.clock is not None and not self._flush_scheduled:
            self._flush_scheduled = True
            self.clock.callLater(0, self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def flush(self) -> bool:
        """Deliver everything queued on every pipe until quiet. True if anything moved."""
        moved = False
        for _ in range(MAX_FLUSH_ROUNDS):
            round_moved = False
            for pipe in list(self._pipes):
                if pipe.flush(self.max_chunk):
                    round_moved = True
            if not round_moved:
                return moved
            moved = True
        raise RuntimeError(f"memory network still busy after {MAX_FLUSH_ROUNDS} flush rounds")

    def _forget(self, pipe: MemoryPipe) -> None:
        if pipe in self._pipes:
            self._pipes.remove(pipe)

    @property
    def open_connections(self) -> int:
        return len(self._pipes)


class MemoryConnector:
    """A client connector over a ``MemoryNetwork`` (the ``IConnector`` part an AMI client uses): connects
    ``factory``'s protocol to whatever listens at ``server.host``/``server.port``."""

    def __init__(self, net: MemoryNetwork, server: Any, factory: Any) -> None:
        self.server = server
        proto = factory.buildProtocol(None)
        d = net.connect(server.host, server.port, proto)
        d.addErrback(lambda failure: factory.clientConnectionFailed(self, failure))

    def stopConnecting(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def getDestination(self) -> str:
        return f"memory:{self.server.host}:{self.server.port}"
