"""Console authentication: scrypt password hashes, HMAC-signed tokens, login throttling. No I/O.

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
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
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


_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")


def _b64d_strict(text: str) -> bytes:
    """Decode unpadded base64url, accepting only the one canonical spelling of the bytes (the lax
    decoder ignores junk characters and the unused bits of the last one); ValueError otherwise."""
    if not _B64URL_RE.match(text):
        raise ValueError("not base64url")
    data = _b64d(text)
    if _b64e(data) != text:
        raise ValueError("not the canonical encoding")
    return data


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


def verify_token(secret: str, token: str, now: float, max_ttl: float | None = None) -> Identity:
    """The identity a valid, unexpired token names; AuthError otherwise. Signature and payload must be in
    canonical base64url; a token whose lifetime (exp - iat) exceeds ``max_ttl`` is refused."""
    if len(token) > _MAX_TOKEN_CHARS:
        raise AuthError("bad-token", "token too long")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "v1":
        raise AuthError("bad-token", "malformed token")
    try:
        sig = _b64d_strict(parts[2])
        body = _b64d_strict(parts[1])
    except ValueError:
        raise AuthError("bad-token", "malformed token") from None
    expected_sig = hmac.new(secret.encode("utf-8"), f"v1.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(sig, expected_sig):
        raise AuthError("bad-token", "token signature does not verify")
    try:
        payload = json.loads(body)
        user_id, role, iat, exp = payload["sub"], payload["role"], payload["iat"], payload["exp"]
    except (ValueError, KeyError, TypeError):
        raise AuthError("bad-token", "malformed token payload") from None
    if (not isinstance(user_id, str) or role not in ROLES or type(exp) is not int or type(iat) is not int
            or exp < iat):
        raise AuthError("bad-token", "malformed token payload")
    if max_ttl is not None and exp - iat > max_ttl + 1:  # + 1: `cti agent-token` rounds iat and exp down
        raise AuthError("bad-token", "token lifetime exceeds console.token_max_ttl")
    if now >= exp:
        raise AuthError("token-expired", "token expired; ask for a new one (`cti agent-token`)")
    return Identity(user_id=user_id, role=role)


class LoginThrottle:
    """Growing delays after failed logins, per (id, source address) and per source address. Pure; time passed in.

    Nothing is ever locked: after ``free`` failures a key must wait ``base`` seconds before its next check,
    then twice as long after each further failure, up to ``max_delay``; an attempt during the wait is
    refused at once without being checked (and does not count). A key is forgotten once it has been quiet
    for ``max_delay`` seconds after its wait ended. Keying by address means that guesses from one address
    never slow down the same id logging in from another one. Memory is bounded (oldest keys go first).
    """

    def __init__(self, free: int, base: float, max_delay: float, max_keys: int = 10000) -> None:
        self._free = free
        self._base = base
        self._max = max_delay
        self._max_keys = max_keys
        self._keys: dict[object, tuple[int, float]] = {}  # key -> (failures, may try again at)

    def wait(self, key: object, now: float) -> float:
        """Seconds until ``key`` may be checked again (0: now)."""
        entry = self._keys.get(key)
        if entry is None:
            return 0.0
        failures, until = entry
        if now >= until + self._max:
            del self._keys[key]
            return 0.0
        return max(0.0, until - now)

    def failed(self, key: object, now: float) -> None:
        entry = self._keys.pop(key, None)
        if entry is not None and now >= entry[1] + self._max:
            entry = None
        failures = (entry[0] if entry else 0) + 1
        delay = 0.0 if failures < self._free else min(self._max, self._base * 2.0 ** (failures - self._free))
        if len(self._keys) >= self._max_keys:
            self._keys.pop(next(iter(self._keys)))  # bounded memory under a spray of ids or addresses
        self._keys[key] = (failures, now + delay)

    def succeeded(self, key: object) -> None:
        self._keys.pop(key, None)

    def __len__(self) -> int:
        return len(self._keys)


class PendingChecks:
    """Bounds the password checks waiting for or running scrypt: ``limit`` in all, ``per_address`` from one
    address. Pure bookkeeping; the hub acquires before queueing a check and releases when it ends."""

    def __init__(self, limit: int, per_address: int) -> None:
        self._limit = limit
        self._per_address = per_address
        self._total = 0
        self._by_address: dict[str, int] = {}

    def acquire(self, address: str) -> bool:
        mine = self._by_address.get(address, 0)
        if self._total >= self._limit or mine >= self._per_address:
            return False
        self._total += 1
        self._by_address[address] = mine + 1
        return True

    def release(self, address: str) -> None:
        self._total -= 1
        left = self._by_address.get(address, 1) - 1
        if left > 0:
            self._by_address[address] = left
        else:
            self._by_address.pop(address, None)

    @property
    def total(self) -> int:
        return self._total


def _dummy_hash(hashes: list[str]) -> str:
    """A hash with the work factor most of the real ones use, verified when the id is unknown, so that an
    unknown id costs exactly what a wrong password costs (no user enumeration by timing)."""
    params: dict[tuple[int, int, int, int], int] = {}
    for encoded in hashes:
        try:
            n, r, p, _, digest = parse_hash(encoded)
        except ValueError:
            continue
        params[(n, r, p, len(digest))] = params.get((n, r, p, len(digest)), 0) + 1
    n, r, p, size = max(params, key=lambda k: params[k]) if params else (SCRYPT_N, SCRYPT_R, SCRYPT_P, 32)
    salt = b"\0" * 16
    digest = hashlib.scrypt(b"not-a-real-password", salt=salt, n=n, r=r, p=p, maxmem=_maxmem(n, r), dklen=size)
    return f"scrypt${n}${r}${p}${_b64e(salt)}${_b64e(digest)}"


class Authenticator:
    """Checks a hello's credentials: password against ``password_hashes`` (agents) or the supervisors of
    ``settings``, or a token signed with ``settings.token_secret`` for an id the configuration knows.

    Password checks are CPU-bound (scrypt, tens of milliseconds): the hub runs ``verify`` for them in a
    worker thread, after asking ``password_wait`` and bounding the checks in flight. Failed checks slow
    further ones down per (id, address) and per address (``LoginThrottle``); a token is never throttled:
    a valid one always logs in, at the cost of one HMAC.
    """

    def __init__(self, settings: ConsoleSection, password_hashes: Mapping[str, str],
                 supervisor_hashes: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time, *, agent_ids: Collection[str] | None = None) -> None:
        """``agent_ids``: every configured agent (default: those in ``password_hashes``); a token for an id
        that is neither one of them nor a configured supervisor is refused."""
        self._agents = password_hashes
        sup = {a.id: a.password_hash.get_secret_value() for a in settings.supervisors if a.password_hash}
        sup.update(supervisor_hashes or {})
        self._supervisors = sup
        self._agent_ids = frozenset(agent_ids if agent_ids is not None else password_hashes)
        self._supervisor_ids = frozenset({a.id for a in settings.supervisors} | set(sup))
        self._secret = settings.token_secret.get_secret_value() if settings.token_secret else None
        self._max_ttl = settings.token_max_ttl
        self._clock = clock
        self._pairs = LoginThrottle(settings.auth_failures, settings.auth_delay, settings.auth_lockout)
        self._addresses = LoginThrottle(settings.auth_address_failures, settings.auth_delay, settings.auth_lockout)
        self._dummy = _dummy_hash([*self._agents.values(), *self._supervisors.values()])
        self._lock = threading.Lock()  # verify() runs in worker threads; the throttles are shared

    def resume_token(self, identity: Identity, ttl: float) -> str | None:
        """A token that signs ``identity`` back in for ``ttl`` seconds (capped by ``token_max_ttl``), so that
        a console can resume after a reload without asking for the password again; None when token
        logins are off (no ``token_secret``)."""
        if self._secret is None:
            return None
        return issue_token(self._secret, identity.user_id, identity.role, min(ttl, self._max_ttl), self._clock())

    def password_wait(self, user_id: str, address: str) -> float:
        """Seconds before a password from ``address`` for ``user_id`` may be checked (0: now). Cheap."""
        now = self._clock()
        with self._lock:
            return max(self._pairs.wait((user_id, address), now), self._addresses.wait(address, now))

    def verify(self, user_id: str, password: str | None = None, token: str | None = None,
               role: Role | None = None, address: str = "") -> Identity:
        """The authenticated identity, or AuthError("auth-failed" | "bad-token" | "token-expired" |
        "auth-throttled" | "token-disabled" | "bad-request"). Exactly one of password/token. ``address``:
        where the attempt comes from (the throttle's key, see ``LoginThrottle``).

        ``role`` None means "agent" for a password and "whatever the token grants" for a token; a token
        that does not grant the asked-for role fails with "bad-token"."""
        if (password is None) == (token is None):
            raise AuthError("bad-request", "give exactly one of password or token")
        now = self._clock()
        if token is not None:  # never throttled: forging one is hopeless, and a valid one must always work
            return self._check_token(user_id, token, role, now)
        assert password is not None
        if self.password_wait(user_id, address) > 0:
            raise AuthError("auth-throttled", "too many failed logins from your address; try again later")
        try:
            identity = self._check_password(user_id, password, role)
        except AuthError:
            with self._lock:
                self._pairs.failed((user_id, address), now)
                self._addresses.failed(address, now)
            raise
        with self._lock:
            self._pairs.succeeded((user_id, address))
        return identity

    def _check_token(self, user_id: str, token: str, role: Role | None, now: float) -> Identity:
        if self._secret is None:
            raise AuthError("token-disabled", "token login is not enabled on this server")
        identity = verify_token(self._secret, token, now, max_ttl=self._max_ttl)
        if identity.user_id != user_id:
            raise AuthError("bad-token", "token was issued for another id")
        if role is not None and identity.role != role:
            raise AuthError("bad-token", f"token does not grant the {role} role")
        known = self._supervisor_ids if identity.role == "supervisor" else self._agent_ids
        if identity.user_id not in known:
            raise AuthError("bad-token", f"no {identity.role} with this id is configured")
        return identity

    def _check_password(self, user_id: str, password: str, role: Role | None) -> Identity:
        table = self._supervisors if role == "supervisor" else self._agents
        stored = table.get(user_id)
        ok = verify_password(password[:_MAX_PASSWORD_CHARS], stored or self._dummy)
        if not ok or stored is None or len(password) > _MAX_PASSWORD_CHARS:
            raise AuthError("auth-failed", "unknown id or wrong password")
        return Identity(user_id=user_id, role=role or "agent")
