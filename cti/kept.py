"""``Kept``: the last N values by key, encoded into one ring of bytes. Pure; no I/O.

For histories a server keeps all day and reads rarely (the IVR paths the screen pop shows, the routing
decisions a supervisor may ask to have explained). Kept as live objects, 10,000 entries are 100,000-150,000
small objects that every full garbage collection walks; kept as one ``bytes`` object each, they are 10,000
blocks of 300-1,500 bytes that live for minutes among the short-lived strings of the traffic, and the C
allocator's heap fragments around them (a soak measured its free space growing 3 MB a minute for good). Here
each value is encoded into one ``bytearray`` used as a ring: no allocation per entry that outlives the call, a
memory that reaches its size once and stays there. Reading one back (rare) decodes it.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

FIRST_CAPACITY = 64 * 1024  # bytes; the ring doubles while it holds fewer than ``limit`` values


def pickled(value: object) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def unpickled(data: bytes) -> object:
    return pickle.loads(data)  # only ever bytes this process encoded itself


class Kept(Generic[K, V]):
    """The last ``limit`` values put, by key (a key put again becomes the newest; the oldest is dropped).

    ``encode`` and ``decode`` turn a value into bytes and back (default: pickle, for values that are plain data;
    a value referring to live objects needs its own encoding, or would keep them alive and copy them). The
    encoded values share one ring of bytes, which doubles (up to ``max_bytes``) while it cannot hold ``limit``
    of them; at ``max_bytes`` the oldest values are dropped sooner. ``put`` says whether it kept the value: one
    that ``encode`` refuses (``TypeError``, ``ValueError``, ``AttributeError``, ``RecursionError``,
    ``pickle.PicklingError``: what json and pickle raise) or larger than the ring may
    grow is not kept (nor the key's earlier value), and counted in ``refused``; a history is not worth an error.
    """

    def __init__(self, limit: int, encode: Callable[[V], bytes] = pickled,
                 decode: Callable[[bytes], V] = unpickled,  # type: ignore[assignment]
                 max_bytes: int = 64 * 1024 * 1024) -> None:
        if limit < 1:
            raise ValueError(f"Kept: limit must be at least 1, got {limit}")
        self.limit = limit
        self.max_bytes = max(max_bytes, 1)
        self._encode = encode
        self._decode = decode
        self._ring = bytearray(min(FIRST_CAPACITY, self.max_bytes))
        self._head = 0  # where the next value is written
        self._index: dict[K, tuple[int, int]] = {}  # key -> (start, length); oldest first
        self.refused = 0  # values not kept: not encodable, or larger than the ring may grow

    @property
    def capacity(self) -> int:
        return len(self._ring)

    def put(self, key: K, value: V) -> bool:
        """Keep ``value`` as the newest, under ``key``; whether it was kept (see the class)."""
        self._index.pop(key, None)
        try:
            data = self._encode(value)
        except (TypeError, ValueError, AttributeError, RecursionError, pickle.PicklingError):
            self.refused += 1
            return False
        n = len(data)
        if n > len(self._ring):
            self._grow(n)
            if n > len(self._ring):
                self.refused += 1
                return False
        while self._index and (len(self._index) >= self.limit or self._used() + n > len(self._ring)):
            if len(self._index) < self.limit and self._grow(self._used() + n):
                continue
            del self._index[next(iter(self._index))]
        start, cap = self._head, len(self._ring)
        first = min(n, cap - start)
        view = memoryview(data)
        self._ring[start:start + first] = view[:first]
        if first < n:
            self._ring[:n - first] = view[first:]
        self._head = (start + n) % cap
        self._index[key] = (start, n)
        return True

    def get(self, key: K) -> V | None:
        where = self._index.get(key)
        return None if where is None else self._decode(self._read(*where))

    def _read(self, start: int, n: int) -> bytes:
        end = start + n
        cap = len(self._ring)
        if end <= cap:
            return bytes(self._ring[start:end])
        return bytes(self._ring[start:]) + bytes(self._ring[:end - cap])

    def _used(self) -> int:
        """Bytes from the oldest value kept to the head (holes of values put again included)."""
        if not self._index:
            return 0
        oldest = next(iter(self._index.values()))[0]
        used = (self._head - oldest) % len(self._ring)
        return used if used else len(self._ring)  # head on the oldest value's start: the ring is full

    def _grow(self, need: int) -> bool:
        """Double the ring (up to ``max_bytes``) until ``need`` bytes fit; the values copied in order.
        Whether it grew."""
        cap = len(self._ring)
        new = cap
        while new < need and new < self.max_bytes:
            new = min(new * 2, self.max_bytes)
        if new == cap:
            return False
        ring = bytearray(new)
        index: dict[K, tuple[int, int]] = {}
        pos = 0
        for key, (start, n) in self._index.items():
            ring[pos:pos + n] = self._read(start, n)
            index[key] = (pos, n)
            pos += n
        self._ring, self._index, self._head = ring, index, pos % new
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)
