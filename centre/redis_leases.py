"""The leases' store on Redis (``cti.leases.LeaseStore`` for several nodes): one Lua script per change."""

from __future__ import annotations

import math
from typing import Any

from redis.exceptions import RedisError

from cti.leases import Lease, LeaseStoreDown, check_span

# A lease is a hash ``prefix:name`` {node, until, epoch}; released: node "" (the epoch is kept). Expiry is
# judged by the caller's ``now``; Redis expires the key only as garbage collection, ``gc_after`` seconds past
# ``until`` (relative to ``now``: PEXPIRE, so that a virtual clock's small numbers work too). A name whose key
# was collected starts again at epoch 1: its last holder's lease ended ``gc_after`` ago, so any renew of it is
# refused as expired anyway.
ACQUIRE = """
local now = tonumber(ARGV[2])
local cur = redis.call('HMGET', KEYS[1], 'node', 'until', 'epoch')
local epoch = tonumber(cur[3]) or 0
if cur[1] and cur[1] ~= '' and now < tonumber(cur[2]) then
  if cur[1] ~= ARGV[1] then return false end
  redis.call('HSET', KEYS[1], 'until', ARGV[3])
else
  epoch = epoch + 1
  redis.call('HSET', KEYS[1], 'node', ARGV[1], 'until', ARGV[3], 'epoch', epoch)
  redis.call('HDEL', KEYS[1], 'asked_by', 'asked_until')
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {ARGV[1], ARGV[3], epoch}
"""

RENEW = """
local cur = redis.call('HMGET', KEYS[1], 'node', 'until', 'epoch')
if cur[1] ~= ARGV[1] or tonumber(cur[3]) ~= tonumber(ARGV[2]) or not (tonumber(ARGV[3]) < tonumber(cur[2])) then
  return false
end
redis.call('HSET', KEYS[1], 'until', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {ARGV[1], ARGV[4], tonumber(cur[3])}
"""

RELEASE = """
local cur = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if cur[1] ~= ARGV[1] or tonumber(cur[2]) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'node', '', 'until', '0')
return 1
"""

# The home node asking for a lease back: fields of the lease's hash (``asked_by``, ``asked_until``), only while a
# node holds the lease (as ``MemoryLeases.ask``); a new holder's ACQUIRE clears them.
ASK = """
local cur = redis.call('HMGET', KEYS[1], 'node', 'until')
if not cur[1] or cur[1] == '' or not (tonumber(ARGV[3]) < tonumber(cur[2])) then return 0 end
redis.call('HSET', KEYS[1], 'asked_by', ARGV[1], 'asked_until', ARGV[2])
return 1
"""

GC_AFTER = 24 * 3600.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisLeases:
    """``LeaseStore`` on a synchronous ``redis.Redis`` (``centre.redis_link.redis_sync_client``): keys
    ``prefix:name``; any Redis failure is raised as ``LeaseStoreDown`` naming only the operation and the
    error's class (never the URL or the password)."""

    def __init__(self, client: Any, prefix: str, *, gc_after: float = GC_AFTER) -> None:
        if not prefix:
            raise ValueError("the leases need a key prefix")
        if not gc_after > 0:
            raise ValueError("gc_after must be positive")
        self.client = client
        self.prefix = prefix
        self.gc_after = gc_after
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self._ask = client.register_script(ASK)

    def key(self, name: str) -> str:
        if not name:
            raise ValueError("a lease needs a name")
        return f"{self.prefix}:{name}"

    def acquire(self, name: str, node: str, now: float, until: float) -> Lease | None:
        check_span(now, until)
        _check_node(node)
        reply = self._call("acquire", self._acquire, [self.key(name)],
                           [node, repr(float(now)), repr(float(until)), self._gc_ms(now, until)])
        return _lease(name, reply)

    def renew(self, name: str, node: str, epoch: int, now: float, until: float) -> Lease | None:
        check_span(now, until)
        _check_node(node)
        reply = self._call("renew", self._renew, [self.key(name)],
                           [node, int(epoch), repr(float(now)), repr(float(until)), self._gc_ms(now, until)])
        return _lease(name, reply)

    def release(self, name: str, node: str, epoch: int) -> bool:
        _check_node(node)
        return bool(self._call("release", self._release, [self.key(name)], [node, int(epoch)]))

    def holder(self, name: str, now: float) -> Lease | None:
        try:
            fields = self.client.hmget(self.key(name), "node", "until", "epoch")
        except RedisError as exc:
            raise _down("holder", exc) from None
        return _live(name, fields, now)

    def leases(self, prefix: str, now: float) -> list[Lease]:
        start = len(self.prefix) + 1
        try:
            keys = sorted({_text(k) for k in self.client.scan_iter(
                match=_glob_escape(f"{self.prefix}:{prefix}") + "*", count=500)})
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(key, "node", "until", "epoch")
            rows = pipe.execute()
        except RedisError as exc:
            raise _down("leases", exc) from None
        found = (_live(key[start:], fields, now) for key, fields in zip(keys, rows, strict=True))
        return [lease for lease in found if lease is not None]

    def ask(self, name: str, node: str, now: float, until: float) -> None:
        check_span(now, until)
        _check_node(node)
        self._call("ask", self._ask, [self.key(name)], [node, repr(float(until)), repr(float(now))])

    def asked(self, name: str, now: float) -> str | None:
        try:
            node, until = self.client.hmget(self.key(name), "asked_by", "asked_until")
        except RedisError as exc:
            raise _down("asked", exc) from None
        if node is None or until is None or not now < float(_text(until)):
            return None
        return _text(node)

    def _gc_ms(self, now: float, until: float) -> int:
        return math.ceil((until - now + self.gc_after) * 1000)

    @staticmethod
    def _call(operation: str, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return script(keys=keys, args=args)
        except RedisError as exc:
            raise _down(operation, exc) from None


def _check_node(node: str) -> None:
    if not node:
        raise ValueError("a lease holder needs a node name")


def _down(operation: str, exc: RedisError) -> LeaseStoreDown:
    return LeaseStoreDown(f"lease store: {operation} failed ({exc.__class__.__name__})")


def _lease(name: str, reply: Any) -> Lease | None:
    if reply is None:
        return None
    node, until, epoch = reply
    return Lease(name, _text(node), float(_text(until)), int(epoch))


def _live(name: str, fields: list[Any], now: float) -> Lease | None:
    node, until, epoch = fields
    if node is None or not _text(node) or until is None or epoch is None:
        return None
    lease = Lease(name, _text(node), float(_text(until)), int(_text(epoch)))
    return lease if now < lease.until else None
