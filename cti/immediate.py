"""Writing a Twisted TCP connection's bytes at once instead of on the next loop iteration.

Used by the FastAGI server (``ivr.fastagi``) and the AMI client (``cti.ami.client``).
"""

from __future__ import annotations

import socket

from twisted.internet.interfaces import ISSLTransport, ISystemHandle, ITCPTransport, ITransport


class ImmediateWriter:
    """Writes a connection's bytes with one ``send()`` now, while Twisted's write buffer has never been used.

    Why: a Twisted transport never writes at once: ``write()`` buffers and registers the socket for
    writing, and the bytes leave on the next loop iteration, after which the socket is unregistered. On the
    asyncio reactor that is two selector updates and one loop iteration of delay per AGI command or AMI action.
    FastAGI keeps one command outstanding and AMI actions are short lines into a socket buffer that is
    almost always empty, so one direct ``send()`` almost always takes it all.

    Order is kept without looking inside the transport: after the first short or failed ``send()`` the
    rest, and every later write, go through ``transport.write()`` for good (errors then surface through
    Twisted's own ``connectionLost``). Transports without a socket handle, or with TLS, always use
    ``transport.write()``.
    """

    __slots__ = ("transport", "_sock")

    def __init__(self, transport: ITransport) -> None:
        self.transport = transport
        handle = transport.getHandle() if ISystemHandle.providedBy(transport) else None
        # A TLS transport must encrypt every byte: never bypass it (FastAGI sessions never start TLS).
        direct = (ITCPTransport.providedBy(transport) and not ISSLTransport.providedBy(transport)
                  and isinstance(handle, socket.socket))
        self._sock: socket.socket | None = handle if direct else None

    @property
    def direct(self) -> bool:
        """True while writes still bypass Twisted's buffer."""
        return self._sock is not None

    def write(self, data: bytes) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sent = sock.send(data)
            except OSError:  # EAGAIN, EPIPE, ECONNRESET, EBADF: Twisted's buffer and error path take over
                sent = 0
            if sent == len(data):
                return
            self._sock = None
            data = data[sent:]
        self.transport.write(data)
