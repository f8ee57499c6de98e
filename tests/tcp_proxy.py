"""A TCP proxy a test controls, to put a real network fault between a client and a real server.

``TcpProxy(host, port)`` listens on a free loopback port and relays each connection to ``host:port`` (one
thread per direction). ``cut()`` drops every relayed connection and from then on accepts and at once closes
new ones (the client sees a connection closed by the server, as with a database restarting); ``restore()``
relays again; ``wait_refused(n)`` waits for the n-th refused connection. ``close()`` stops it. Only tests
import this module.
"""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Condition()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self.refused = 0  # connections accepted and closed while cut
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """Drop every relayed connection and refuse new ones until ``restore``."""
        with self._lock:
            self._cut = True
            socks, self._open = self._open, set()
        for sock in socks:
            _shut(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def wait_refused(self, n: int, timeout: float) -> bool:
        """Wait until ``n`` connections in all were refused while cut (a client retrying); False past ``timeout``."""
        with self._lock:
            return self._lock.wait_for(lambda: self.refused >= n, timeout)

    def close(self) -> None:
        self._closed = True
        self.cut()
        _shut(self._listener)
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                cut = self._cut
                if cut:
                    self.refused += 1
                    self._lock.notify_all()
            if cut:
                _shut(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _shut(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._open.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), name="tcp-proxy-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with self._lock:
                    self._open.discard(sock)
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
