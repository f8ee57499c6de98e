"""The shared agent pool (``acd.shared_state.SharedState``) in Redis, for several nodes: claims as Lua scripts.

Keys (``P`` is the prefix, ``centre.redis_link.redis_key``-style ``P:part:part``)::

    P:agents                 hash  agent -> {"state", "since", "node"} (JSON)
    P:claim:agent:<agent>    hash  call, node, until, version: the agent's claim (one side)
    P:claim:call:<call>      str   the agent whose claim the call holds (the other side)
    P:claims:until           zset  agent scored by its claim's until (what ``expire`` scans)
    P:claims:node:<node>     set   agents claimed by node (what ``renew`` scans)
    P:version                int   the counter each claim and release takes the next number of
    P:node:<node>            str   until when the node said it runs (``present``; PEXPIRE'd past that)
    P:waiting                hash  call -> WaitingEntry (JSON): every waiting call
    P:queue:<queue>          zset  call scored by entered: the calls waiting in a queue

``claim``, ``release``, ``renew`` and ``expire`` are Lua scripts (EVALSHA, loaded once per Redis: the first run
after a Redis start costs one more round trip, redis-py's SCRIPT LOAD), so each is atomic and ONE round trip;
every other method is one command or one read-only script too. ``round_trips`` counts them. The scripts name
keys built from the prefix (the claim's call, the node's set), so they need one Redis (a primary), not a
Cluster. A claim's keys carry a PEXPIRE of (until - now) + ``gc_margin``: only garbage collection for a pool
no node expires any more; leases are decided on the claimers' clocks, by ``until``.

A Redis that cannot be reached (refused, timed out, wrong password) raises ``SharedStateDown``, whose message
names no password.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from acd.shared_state import (
    AVAILABLE,
    RESERVED,
    AgentEntry,
    Claim,
    SharedStateDown,
    StateWrite,
    WaitingEntry,
    live,
    waiting_order,
)

T = TypeVar("T")

# Lua: cjson.decode only reads fields (a state, a node, a queue); every number written is the decimal Python
# made (json.dumps / repr of a float round-trips), passed in as text, so no precision is lost in Lua.

CLAIM_FN = """
local function claim(p, agent, call, node, now, until_s, reserved, gc)
  local raw = redis.call('HGET', p .. ':agents', agent)
  if not raw or cjson.decode(raw).state ~= '@AVAILABLE@' then return 0 end
  local ckey = p .. ':claim:agent:' .. agent
  local old = redis.call('HMGET', ckey, 'call', 'until', 'node')
  if old[1] and tonumber(old[2]) >= now then return 0 end
  local held = redis.call('GET', p .. ':claim:call:' .. call)
  if held then
    local h = redis.call('HMGET', p .. ':claim:agent:' .. held, 'call', 'until')
    if h[1] == call and tonumber(h[2]) >= now then return 0 end
  end
  if old[1] then
    local okey = p .. ':claim:call:' .. old[1]
    if redis.call('GET', okey) == agent then redis.call('DEL', okey) end
    redis.call('SREM', p .. ':claims:node:' .. old[3], agent)
    redis.call('DEL', ckey)
  end
  local v = redis.call('INCR', p .. ':version')
  redis.call('HSET', ckey, 'call', call, 'node', node, 'until', until_s, 'version', v)
  redis.call('PEXPIRE', ckey, gc)
  redis.call('SET', p .. ':claim:call:' .. call, agent, 'PX', gc)
  redis.call('ZADD', p .. ':claims:until', until_s, agent)
  redis.call('SADD', p .. ':claims:node:' .. node, agent)
  redis.call('HSET', p .. ':agents', agent, reserved)
  return v
end
"""

RELEASE_FN = """
local function set_entry(p, agent, state_json, since_json, node)
  redis.call('HSET', p .. ':agents', agent,
    '{"state":' .. state_json .. ',"since":' .. since_json .. ',"node":' .. cjson.encode(node) .. '}')
end

local function release(p, agent, call, state_json, since_json)
  local ckey = p .. ':claim:agent:' .. agent
  local c = redis.call('HMGET', ckey, 'call', 'node')
  if c[1] ~= call then return 0 end
  redis.call('DEL', ckey)
  local k = p .. ':claim:call:' .. call
  if redis.call('GET', k) == agent then redis.call('DEL', k) end
  redis.call('ZREM', p .. ':claims:until', agent)
  redis.call('SREM', p .. ':claims:node:' .. c[2], agent)
  local node = c[2]
  local raw = redis.call('HGET', p .. ':agents', agent)
  if raw then node = cjson.decode(raw).node end
  set_entry(p, agent, state_json, since_json, node)
  return redis.call('INCR', p .. ':version')
end
"""

CLAIM = CLAIM_FN + """
return claim(ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8])
"""

RELEASE = RELEASE_FN + """
return release(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
"""

# ``apply`` and ``claim`` with writes: n writes (5 arguments each), then, if more arguments follow, a claim; one
# version per write (0: not released), then the claim's (0: refused)
BATCH = RELEASE_FN + CLAIM_FN + """
local p, now, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
local i = 4
for _ = 1, n do
  local agent, call, state_json, since_json, node = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  local v = 0
  local held = false
  if call ~= '' then
    v = release(p, agent, call, state_json, since_json)
    if v == 0 then
      local c = redis.call('HMGET', p .. ':claim:agent:' .. agent, 'call', 'until')
      held = c[1] and tonumber(c[2]) >= now
    end
  end
  if v == 0 and not held then set_entry(p, agent, state_json, since_json, node) end
  table.insert(out, v)
end
if ARGV[i] then
  table.insert(out, claim(p, ARGV[i], ARGV[i + 1], ARGV[i + 2], now, ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]))
end
return out
"""

RENEW = """
local p, node, now, until_s, gc = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local nkey = p .. ':claims:node:' .. node
local n = 0
for _, agent in ipairs(redis.call('SMEMBERS', nkey)) do
  local ckey = p .. ':claim:agent:' .. agent
  local c = redis.call('HMGET', ckey, 'node', 'until', 'call')
  if c[1] ~= node then
    redis.call('SREM', nkey, agent)
  elseif tonumber(c[2]) >= now then
    redis.call('HSET', ckey, 'until', until_s)
    redis.call('PEXPIRE', ckey, gc)
    local k = p .. ':claim:call:' .. c[3]
    if redis.call('GET', k) == agent then redis.call('PEXPIRE', k, gc) end
    redis.call('ZADD', p .. ':claims:until', until_s, agent)
    n = n + 1
  end
end
return n
"""

EXPIRE = """
local p, now_s, now_json = ARGV[1], ARGV[2], ARGV[3]
local now = tonumber(now_s)
local idx = p .. ':claims:until'
local out = {}
for _, agent in ipairs(redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. now_s)) do
  local ckey = p .. ':claim:agent:' .. agent
  local c = redis.call('HMGET', ckey, 'call', 'node', 'until', 'version')
  if not c[1] then
    redis.call('ZREM', idx, agent)
  elseif tonumber(c[3]) < now then
    redis.call('DEL', ckey)
    redis.call('ZREM', idx, agent)
    redis.call('SREM', p .. ':claims:node:' .. c[2], agent)
    local k = p .. ':claim:call:' .. c[1]
    if redis.call('GET', k) == agent then redis.call('DEL', k) end
    local raw = redis.call('HGET', p .. ':agents', agent)
    if raw then
      local e = cjson.decode(raw)
      if e.state == '@RESERVED@' then
        redis.call('HSET', p .. ':agents', agent,
          '{"state":"@AVAILABLE@","since":' .. now_json .. ',"node":' .. cjson.encode(e.node) .. '}')
      end
    end
    table.insert(out, {agent, c[1], c[2], c[3], c[4]})
  end
end
return out
"""

CLAIM_OF_CALL = """
local p, call = ARGV[1], ARGV[2]
local agent = redis.call('GET', p .. ':claim:call:' .. call)
if not agent then return false end
local c = redis.call('HMGET', p .. ':claim:agent:' .. agent, 'call', 'node', 'until', 'version')
if c[1] ~= call then return false end
return {agent, c[1], c[2], c[3], c[4]}
"""

REPLACE_AGENT = """
local p, agent, state, since, node, now, entry = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local raw = redis.call('HGET', p .. ':agents', agent)
if not raw then return 0 end
local e = cjson.decode(raw)
if e.state ~= state or e.node ~= node or e.since ~= tonumber(since) then return 0 end
local c = redis.call('HMGET', p .. ':claim:agent:' .. agent, 'call', 'until')
if c[1] and tonumber(c[2]) >= now then return 0 end
redis.call('HSET', p .. ':agents', agent, entry)
return 1
"""

ENQUEUE = """
local p, call, queue, entered, entry = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local old = redis.call('HGET', p .. ':waiting', call)
if old then redis.call('ZREM', p .. ':queue:' .. cjson.decode(old).queue, call) end
redis.call('HSET', p .. ':waiting', call, entry)
redis.call('ZADD', p .. ':queue:' .. queue, entered, call)
return 1
"""

DEQUEUE = """
local p, call = ARGV[1], ARGV[2]
local old = redis.call('HGET', p .. ':waiting', call)
if not old then return 0 end
redis.call('ZREM', p .. ':queue:' .. cjson.decode(old).queue, call)
redis.call('HDEL', p .. ':waiting', call)
return 1
"""

WAITING = """
local p, queue = ARGV[1], ARGV[2]
local out = {}
for _, call in ipairs(redis.call('ZRANGE', p .. ':queue:' .. queue, 0, -1)) do
  local e = redis.call('HGET', p .. ':waiting', call)
  if e then table.insert(out, e) end
end
return out
"""


def _states(script: str) -> str:
    """The script with the pool's state names (``acd.shared_state``: the ACD's own) in place of the markers."""
    return script.replace("@AVAILABLE@", AVAILABLE).replace("@RESERVED@", RESERVED)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _num(value: float) -> str:
    """A number as the exact decimal Redis and Lua read back (``repr`` of a float round-trips)."""
    return repr(float(value))


def _agent_json(state: str, since: float, node: str) -> str:
    return json.dumps({"state": state, "since": float(since), "node": node})


def _write_args(writes: Sequence[StateWrite]) -> list[str]:
    """``BATCH``'s five arguments per write."""
    out: list[str] = []
    for w in writes:
        out += (w.agent, w.call, json.dumps(w.state), json.dumps(float(w.since)), w.node)
    return out


def _claim_of(row: list[Any]) -> Claim:
    agent, call, node, until, version = (_text(v) for v in row)
    return Claim(agent, call, node, float(until), int(version))


def _waiting_of(raw: Any) -> WaitingEntry:
    d = json.loads(_text(raw))
    return WaitingEntry(d["call"], d["queue"], int(d["priority"]), float(d["entered"]), d["node"])


class RedisState:
    """``SharedState`` on a synchronous ``redis.Redis`` (``centre.redis_link.redis_sync_client``), every key
    under ``prefix:``. ``round_trips`` counts the requests made to Redis."""

    def __init__(self, client: Any, prefix: str, *, gc_margin: float = 3600.0) -> None:
        if not prefix:
            raise ValueError("a Redis key prefix must not be empty")
        self.client = client
        self.prefix = prefix
        self.gc_margin = gc_margin
        self.round_trips = 0
        self.last_version = 0
        self.last_applied: list[int] = []
        self._agents_key = f"{prefix}:agents"
        self._waiting_key = f"{prefix}:waiting"
        self._scripts = {name: client.register_script(_states(src)) for name, src in (
            ("claim", CLAIM), ("release", RELEASE), ("batch", BATCH), ("renew", RENEW), ("expire", EXPIRE),
            ("claim_of_call", CLAIM_OF_CALL), ("replace_agent", REPLACE_AGENT), ("enqueue", ENQUEUE),
            ("dequeue", DEQUEUE), ("waiting", WAITING))}

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _secrets(self) -> tuple[str, ...]:
        pool = getattr(self.client, "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", {}) or {}
        return tuple(str(s) for s in (kwargs.get("password"),) if s)

    def _call(self, request: Callable[[], T]) -> T:
        """One request to Redis; unreachable Redis -> ``SharedStateDown`` (no password in its message)."""
        self.round_trips += 1
        try:
            return request()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            detail = str(exc)
            for secret in self._secrets():
                detail = detail.replace(secret, "***")
            raise SharedStateDown(f"shared state (Redis) unreachable: {type(exc).__name__}: {detail}") from None

    def _script(self, name: str, *args: str) -> Any:
        script = self._scripts[name]
        return self._call(lambda: script(keys=[], args=[self.prefix, *args]))

    def _gc_ms(self, now: float, until: float) -> str:
        return str(max(1, int((until - now + self.gc_margin) * 1000)))

    # -- agents -----------------------------------------------------------------------------------------------

    def set_agent(self, agent: str, state: str, since: float, node: str) -> None:
        self._call(lambda: self.client.hset(self._agents_key, agent, _agent_json(state, since, node)))

    def add_agent(self, agent: str, state: str, since: float, node: str) -> bool:
        return bool(self._call(lambda: self.client.hsetnx(self._agents_key, agent, _agent_json(state, since, node))))

    def agents(self) -> dict[str, AgentEntry]:
        raw = self._call(lambda: self.client.hgetall(self._agents_key))
        out: dict[str, AgentEntry] = {}
        for key, value in raw.items():
            agent, d = _text(key), json.loads(_text(value))
            out[agent] = AgentEntry(agent, d["state"], float(d["since"]), d["node"])
        return out

    def agent(self, agent: str) -> AgentEntry | None:
        raw = self._call(lambda: self.client.hget(self._agents_key, agent))
        if raw is None:
            return None
        d = json.loads(_text(raw))
        return AgentEntry(agent, d["state"], float(d["since"]), d["node"])

    def replace_agent(self, expected: AgentEntry, state: str, since: float, node: str) -> bool:
        return bool(int(self._script("replace_agent", expected.agent, expected.state, _num(expected.since),
                                     expected.node, _num(since), _agent_json(state, since, node))))

    def present(self, node: str, until: float) -> None:
        key = f"{self.prefix}:node:{node}"
        ttl_ms = max(1, int(self.gc_margin * 1000))
        self._call(lambda: self.client.set(key, _num(until), px=ttl_ms))

    def present_until(self, node: str) -> float | None:
        key = f"{self.prefix}:node:{node}"
        raw = self._call(lambda: self.client.get(key))
        return None if raw is None else float(_text(raw))

    # -- claims -----------------------------------------------------------------------------------------------

    def claim(self, agent: str, call: str, node: str, now: float, until: float,
              writes: Sequence[StateWrite] = ()) -> Claim | None:
        args = (agent, call, node, _num(now), _num(until), _agent_json(RESERVED, now, node), self._gc_ms(now, until))
        if writes:
            *versions, version = (int(v) for v in self._script("batch", _num(now), str(len(writes)),
                                                                *_write_args(writes), *(args[:3] + args[4:])))
            self._applied(versions)
        else:
            version = int(self._script("claim", *args))
        if not version:
            return None
        self.last_version = version
        return Claim(agent, call, node, float(until), version)

    def holder(self, agent: str, now: float) -> Claim | None:
        key = f"{self.prefix}:claim:agent:{agent}"
        row = self._call(lambda: self.client.hmget(key, "call", "node", "until", "version"))
        if row[0] is None:
            return None
        return live(_claim_of([agent, *row]), now)

    def claim_of_call(self, call: str, now: float) -> Claim | None:
        row = self._script("claim_of_call", call)
        return live(_claim_of(row), now) if row else None

    def release(self, agent: str, call: str, state: str, since: float) -> bool:
        version = int(self._script("release", agent, call, json.dumps(state), json.dumps(float(since))))
        if version:
            self.last_version = version
        return bool(version)

    def apply(self, writes: Sequence[StateWrite], now: float) -> list[int]:
        if not writes:
            self.last_applied = []
            return []
        versions = [int(v) for v in self._script("batch", _num(now), str(len(writes)), *_write_args(writes))]
        self._applied(versions)
        return versions

    def _applied(self, versions: list[int]) -> None:
        self.last_applied = versions
        self.last_version = max(versions, default=0) or self.last_version

    def renew(self, node: str, now: float, until: float) -> int:
        return int(self._script("renew", node, _num(now), _num(until), self._gc_ms(now, until)))

    def expire(self, now: float) -> list[Claim]:
        return [_claim_of(row) for row in self._script("expire", _num(now), json.dumps(float(now)))]

    # -- waiting calls ----------------------------------------------------------------------------------------

    def enqueue(self, entry: WaitingEntry) -> None:
        doc = json.dumps({"call": entry.call, "queue": entry.queue, "priority": entry.priority,
                          "entered": float(entry.entered), "node": entry.node})
        self._script("enqueue", entry.call, entry.queue, _num(entry.entered), doc)

    def dequeue(self, call: str) -> bool:
        return bool(int(self._script("dequeue", call)))

    def waiting(self, queue: str) -> list[WaitingEntry]:
        return sorted((_waiting_of(raw) for raw in self._script("waiting", queue)), key=waiting_order)

    def waiting_of_node(self, node: str) -> list[WaitingEntry]:
        raw = self._call(lambda: self.client.hgetall(self._waiting_key))
        return sorted((e for e in map(_waiting_of, raw.values()) if e.node == node), key=waiting_order)

    def keys(self) -> list[str]:
        """Every key under this prefix (SCAN; several round trips): for clean-up and inspection."""
        return [_text(k) for k in self._call(lambda: list(self.client.scan_iter(match=f"{self.prefix}:*",
                                                                                 count=500)))]
