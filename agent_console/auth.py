"""Console authentication: scrypt password hashes, HMAC-signed tokens, failure throttling. No I/O.

Must not import the hub or websockets. Time is passed in (``clock``); nothing here logs a password,
a hash or a token, and every comparison of secret material is constant-time.

Password hash format (self-describing, one line): ``scrypt$<n>$<r>$<p>$<salt b64url>$<hash b64url>``.
Token format: ``v1.<payload b64url>.<HMAC-SHA256 b64url>`` where the payload is compact JSON
``{"sub": agent_id, "role": "agent"|"supervisor", "iat": int, "exp": int}`` signed with
``console.token_secret``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from agent_console.settings import ConsoleSection

Role = Literal["agent", "supervisor"]
ROLES: tuple[Role, ...] = ("agent", "supervisor")

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_MAX_N = 2**20  # refuse absurd work factors from a hostile or broken config
_MAX_TOKEN_CHARS = 1024
_MAX_PASSWORD_CHARS = 256


class AuthError(Exception):
    """Authentication failed. ``error_id`` is stable; the message never contains secret material."""

    def __init__(self, error_id: str, message: str) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection belongs to once authenticated."""

    user_id: str
    role: Role


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P,
                  salt: bytes | None = None) -> str:
    """A self-describing scrypt hash of ``password`` for an agent's ``password_hash`` field."""
    if not password:
        raise ValueError("empty password")
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_maxmem(n, r), dklen=32)
    return f"scrypt${n}${r}${p}${_b64e(salt)}${_b64e(digest)}"


def _maxmem(n: int, r: int) -> int:
    return 128 * r * n * 2 + 1024 * 1024


def parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    """Split a stored hash into (n, r, p, salt, digest); ValueError (without the value) if malformed."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("not a scrypt$n$r$p$salt$hash string")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _b64d(parts[4]), _b64d(parts[5])
    except ValueError:
        raise ValueError("malformed scrypt parameters") from None
    if n < 2 or n > _MAX_N or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16 or not salt or len(digest) < 16:
        raise ValueError("scrypt parameters out of range")
    return n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches the stored hash (constant-time compare). Malformed hash -> False."""
    try:
        n, r, p, salt, digest = parse_hash(encoded)
    except ValueError:
        return False
    candidate = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                               maxmem=_maxmem(n, r), dklen=len(digest))
    return hmac.compare_digest(candidate, digest)


def issue_token(secret: str, user_id: str, role: Role, ttl: float, now: float) -> str:
    """A signed token for ``user_id`` valid ``ttl`` seconds from ``now``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    payload = json.dumps({"sub": user_id, "role": role, "iat": int(now), "exp": int(now + ttl)},
                         separators=(",", ":"), sort_keys=True).encode("utf-8")
    body = _b64e(payload)
    sig = hmac.new(secret.encode("utf-8"), f"v1.{body}".encode("ascii"), hashlib.sha256).digest()
    return f"v1.{body}.{_b64e(sig)}"


def verify_token(secret: str, token: str, now: float) -> Identity:
    """The identity a valid, unexpired token names; AuthError otherwise."""
    if len(token) > _MAX_TOKEN_CHARS:
        raise AuthError("bad-token", "token too long")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "v1":
        raise AuthError("bad-token", "malformed token")
    expected_sig = hmac.new(secret.encode("utf-8"), f"v1.{parts[1]}".encode("ascii", "replace"),
                            hashlib.sha256).digest()
    try:
        sig = _b64d(parts[2])
    except ValueError:
        raise AuthError("bad-token", "malformed token") from None
    if not hmac.compare_digest(sig, expected_sig):
        raise AuthError("bad-token", "token signature does not verify")
    try:
        payload = json.loads(_b64d(parts[1]))
        user_id, role, exp = payload["sub"], payload["role"], payload["exp"]
    except (ValueError, KeyError, TypeError):
        raise AuthError("bad-token", "malformed token payload") from None
    if not isinstance(user_id, str) or role not in ROLES or not isinstance(exp, int):
        raise AuthError("bad-token", "malformed token payload")
    if now >= exp:
        raise AuthError("token-expired", "token expired; ask for a new one (`cti agent-token`)")
    return Identity(user_id=user_id, role=role)


class FailureThrottle:
    """Locks an id out for ``lockout`` seconds after ``limit`` failures within that window. Pure."""

    def __init__(self, limit: int, lockout: float, max_ids: int = 10000) -> None:
        self._limit = limit
        self._lockout = lockout
        self._max_ids = max_ids
        self._failures: dict[str, list[float]] = {}

    def locked(self, user_id: str, now: float) -> bool:
        recent = [t for t in self._failures.get(user_id, ()) if now - t < self._lockout]
        if recent:
            self._failures[user_id] = recent
        else:
            self._failures.pop(user_id, None)
        return len(recent) >= self._limit

    def failed(self, user_id: str, now: float) -> None:
        if user_id not in self._failures and len(self._failures) >= self._max_ids:
            self._failures.pop(next(iter(self._failures)))  # bounded memory under a spray of ids
        self._failures.setdefault(user_id, []).append(now)

    def succeeded(self, user_id: str) -> None:
        self._failures.pop(user_id, None)


# Verified against when the id is unknown, so that an unknown id costs as much as a wrong password.
_DUMMY_HASH = hash_password("not-a-real-password", n=SCRYPT_N, salt=b"\0" * 16)


class Authenticator:
    """Checks a hello's credentials: password against ``password_hashes`` (agents) or the supervisors of
    ``settings``, or a token signed with ``settings.token_secret``.

    ``verify`` is CPU-bound (scrypt, tens of milliseconds): the hub runs it in a worker thread.
    """

    def __init__(self, settings: ConsoleSection, password_hashes: Mapping[str, str],
                 supervisor_hashes: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._agents = password_hashes
        sup = {a.id: a.password_hash.get_secret_value() for a in settings.supervisors}
        sup.update(supervisor_hashes or {})
        self._supervisors = sup
        self._secret = settings.token_secret.get_secret_value() if settings.token_secret else None
        self._clock = clock
        self._throttle = FailureThrottle(settings.auth_failures, settings.auth_lockout)
        self._lock = threading.Lock()  # verify() runs in worker threads; the throttle is shared

    def verify(self, user_id: str, password: str | None = None, token: str | None = None,
               role: Role | None = None) -> Identity:
        """The authenticated identity, or AuthError("auth-failed" | "bad-token" | "token-expired" |
        "auth-throttled" | "token-disabled" | "bad-request"). Exactly one of password/token.

        ``role`` None means "agent" for a password and "whatever the token grants" for a token; a token
        that does not grant the asked-for role fails with "bad-token"."""
        if (password is None) == (token is None):
            raise AuthError("bad-request", "give exactly one of password or token")
        now = self._clock()
        with self._lock:
            if self._throttle.locked(user_id, now):
                raise AuthError("auth-throttled", "too many failed logins; try again later")
        try:
            identity = self._check(user_id, password, token, role, now)
        except AuthError:
            with self._lock:
                self._throttle.failed(user_id, now)
            raise
        with self._lock:
            self._throttle.succeeded(user_id)
        return identity

    def _check(self, user_id: str, password: str | None, token: str | None, role: Role | None,
               now: float) -> Identity:
        if token is not None:
            if self._secret is None:
                raise AuthError("token-disabled", "token login is not enabled on this server")
            identity = verify_token(self._secret, token, now)
            if identity.user_id != user_id:
                raise AuthError("bad-token", "token was issued for another id")
            if role is not None and identity.role != role:
                raise AuthError("bad-token", f"token does not grant the {role} role")
            return identity
        assert password is not None
        table = self._supervisors if role == "supervisor" else self._agents
        stored = table.get(user_id)
        ok = verify_password(password[:_MAX_PASSWORD_CHARS], stored or _DUMMY_HASH)
        if not ok or stored is None or len(password) > _MAX_PASSWORD_CHARS:
            raise AuthError("auth-failed", "unknown id or wrong password")
        return Identity(user_id=user_id, role=role or "agent")
