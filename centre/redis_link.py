"""The server's Redis client, made from the ``redis:`` settings: the URL, the ACL user and password (a secret:
never logged, never in an error), and the key prefix every key the server writes starts with.

Nothing else builds a Redis client: the readiness check (``centre.ops_http``) uses ``redis_client`` today, and
the several-node transport will; the shared agent pool (``centre.redis_state``) and the leases' store
(``centre.redis_leases``) use ``redis_sync_client``. ``redis_key`` is the one place a key is named.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from config.schema import RedisSettings


def redis_client(settings: RedisSettings, *, timeout: float | None = None) -> Any:
    """A ``redis.asyncio.Redis`` for ``settings`` (it connects on first use). ``password`` and ``username``
    override any given in the URL; ``timeout`` caps connecting and each reply (seconds)."""
    import redis.asyncio as aioredis  # only when Redis is configured

    return aioredis.from_url(settings.url, socket_connect_timeout=timeout, socket_timeout=timeout,
                             **_credentials(settings))


def redis_sync_client(settings: RedisSettings, *, timeout: float = 0.5) -> Any:
    """A synchronous ``redis.Redis`` for ``settings``, for the shared agent pool's one-round-trip claims and the
    leases. ``password`` and ``username`` override any given in the URL; ``timeout`` caps connecting and each
    reply (seconds), small so that a node notices a lost Redis and degrades; no retries inside the client
    (redis-py's default retries with back-off would hold the event loop for seconds: the callers retry on their
    own timers). One connection, not a pool, when Redis answers now: its users make one request at a time on
    the reactor's thread, and a pool takes a connection and gives it back at each request (about a sixth of the
    client's CPU for a script call); it connects again at the next request after a failure. When Redis cannot be
    reached now, a pool, which connects on first use (a node starts whether Redis is up or not)."""
    import redis  # only when Redis is configured
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": timeout,
                               "retry": Retry(NoBackoff(), 0), **_credentials(settings)}
    try:
        return redis.Redis.from_url(settings.url, single_connection_client=True, **options)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
        return redis.Redis.from_url(settings.url, **options)


def _credentials(settings: RedisSettings) -> dict[str, Any]:
    """``password`` and ``username`` as client arguments (they override any given in the URL)."""
    extra: dict[str, Any] = {}
    if settings.password is not None:
        extra["password"] = settings.password.get_secret_value()
    if settings.username is not None:
        extra["username"] = settings.username
    return extra


def redis_key(settings: RedisSettings, *parts: str) -> str:
    """``prefix:part:part``: every key of this centre, so that a shared Redis keeps them apart."""
    if not parts or any(not p for p in parts):
        raise ValueError("a Redis key needs one or more non-empty parts")
    return ":".join((settings.prefix, *parts))


def redis_secrets(settings: RedisSettings) -> tuple[str, ...]:
    """The values a log line or an error must never show: the password, and one written in the URL."""
    return tuple(s for s in ((settings.password.get_secret_value() if settings.password else ""),
                             urlsplit(settings.url).password or "") if s)
