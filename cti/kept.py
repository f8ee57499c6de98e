"""``Kept``: the last N values by key, each held as one encoded ``bytes`` object. Pure; no I/O.

For histories a server keeps all day and reads rarely (the IVR paths the screen pop shows, the routing
decisions a supervisor may ask to have explained). Kept as live objects, 10,000 entries are 100,000-150,000
small objects that every full garbage collection walks and that fragment the allocator's arenas as they are
replaced; encoded, an entry is one ``bytes`` object the collector does not track, and reading one back (rare)
decodes it.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def pickled(value: object) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def unpickled(data: bytes) -> object:
    return pickle.loads(data)  # only ever bytes this process encoded itself


class Kept(Generic[K, V]):
    """The last ``limit`` values put, by key (a key put again becomes the newest; the oldest is dropped).

    ``encode`` and ``decode`` turn a value into bytes and back (default: pickle, for values that are plain data;
    a value referring to live objects needs its own encoding, or would keep them alive and copy them).
    """

    def __init__(self, limit: int, encode: Callable[[V], bytes] = pickled,
                 decode: Callable[[bytes], V] = unpickled) -> None:  # type: ignore[assignment]
        if limit < 1:
            raise ValueError(f"Kept: limit must be at least 1, got {limit}")
        self.limit = limit
        self._encode = encode
        self._decode = decode
        self._items: OrderedDict[K, bytes] = OrderedDict()

    def put(self, key: K, value: V) -> None:
        self._items[key] = self._encode(value)
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def get(self, key: K) -> V | None:
        data = self._items.get(key)
        return None if data is None else self._decode(data)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
