"""Console protocol, auth and settings without sockets: validation, error ids, tokens, hashes, limits."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from agent_console import protocol
from agent_console.auth import (
    Authenticator,
    AuthError,
    LoginThrottle,
    hash_password,
    issue_token,
    parse_hash,
    verify_password,
    verify_token,
)
from agent_console.protocol import AGENT_ACTIONS, CALL_ACTIONS, ProtocolError, RateLimiter, decode
from agent_console.settings import ConsoleSection
from agent_console.static_site import StaticSite

SECRET = "0123456789abcdef-secret"


def _err(frame: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(frame)
    return info.value


def test_decode_valid_messages() -> None:
    """Valid requests decode into their models; params_of drops v/type/id."""
    msg = decode(json.dumps({"v": 1, "type": "transfer", "id": 7, "to": "queue", "target": "sales"}))
    assert protocol.params_of(msg) == {"call_id": None, "to": "queue", "target": "sales"}
    msg = decode(json.dumps({"v": 1, "type": "dispose", "id": "a", "call_id": "c", "disposition": "sale",
                             "callback": {"at": "2030-01-01T10:00:00+02:00", "number": "+4412"}}))
    assert protocol.params_of(msg)["callback"]["at"].utcoffset().total_seconds() == 7200


def test_the_actions_on_a_call_are_agent_actions_each_with_a_request_type() -> None:
    from agent_console.protocol import REQUEST_TYPES

    assert CALL_ACTIONS <= AGENT_ACTIONS and CALL_ACTIONS <= REQUEST_TYPES


@pytest.mark.parametrize(("frame", "error_id"), [
    ("{", "bad-json"),
    ("null", "bad-message"),
    ('"hello"', "bad-message"),
    (b"{}", "bad-frame"),
    ('{"v": 1, "id": 1}', "bad-message"),
    ('{"v": "1", "type": "ping", "id": 1}', "unsupported-version"),
    ('{"v": 1, "type": "Ping", "id": 1}', "unknown-type"),
    ('{"v": 1, "type": "ping"}', "bad-message"),
    ('{"v": 1, "type": "ping", "id": true}', "bad-message"),
    ('{"v": 1, "type": "ping", "id": 1, "x": 2}', "invalid-params"),
    ('{"v": 1, "type": "not_ready", "id": 1, "reason": ""}', "invalid-params"),
    ('{"v": 1, "type": "hello", "id": 1, "agent_id": "a"}', "invalid-params"),
    ('{"v": 1, "type": "hello", "id": 1, "agent_id": "a", "password": "p", "token": "t"}', "invalid-params"),
    ('{"v": 1, "type": "schedule_callback", "id": 1, "at": "2030-01-01T10:00:00", "number": "1"}',
     "invalid-params"),
    ('{"v": 1, "type": "attended_transfer", "id": 1, "number": "12;Dial(x)"}', "invalid-params"),
    ('{"v": 1, "type": "login", "id": 1, "endpoint": "PJSIP/1001,t"}', "invalid-params"),
])
def test_decode_refuses_with_stable_error_ids(frame: str | bytes, error_id: str) -> None:
    """Each kind of bad frame is refused with its documented error id."""
    assert _err(frame).error_id == error_id


def test_invalid_params_never_echo_values() -> None:
    """A validation error names the field and the problem but never repeats the value (it may be a secret)."""
    exc = _err(json.dumps({"v": 1, "type": "hello", "id": 1, "agent_id": "a b", "password": 123456789}))
    text = json.dumps(exc.to_message())
    assert "123456789" not in text and "a b" not in text
    assert {f["field"] for f in exc.fields} == {"agent_id", "password"} and exc.re == 1


def test_encode_adds_version_and_serialises_datetimes() -> None:
    """Outbound messages get v=1 and datetimes become ISO-8601 strings."""
    from datetime import UTC, datetime

    out = json.loads(protocol.encode({"type": "state", "at": datetime(2030, 1, 1, tzinfo=UTC)}))
    assert out == {"v": 1, "type": "state", "at": "2030-01-01T00:00:00+00:00"}


def test_rate_limiter_burst_then_refill() -> None:
    """The token bucket allows `burst` at once, then `rate` per second."""
    limiter = RateLimiter(rate=2.0, burst=3, now=100.0)
    assert [limiter.allow(100.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow(100.5) and not limiter.allow(100.5)
    assert limiter.allow(110.0)


def test_password_hash_roundtrip_and_format() -> None:
    """hash_password makes a scrypt$n$r$p$salt$hash string that verifies only the right password."""
    encoded = hash_password("s3cret", n=2**4)
    assert encoded.startswith("scrypt$16$8$1$")
    assert verify_password("s3cret", encoded) and not verify_password("s3creT", encoded)
    assert parse_hash(encoded)[0] == 16
    for bad in ("", "scrypt$1$8$1$aa$bb", "md5$x", "scrypt$3$8$1$AAAA$AAAAAAAAAAAAAAAAAAAAAAAA",
                "scrypt$16$8$1$!!$??", f"scrypt${2**30}$8$1$AAAA$AAAAAAAAAAAAAAAAAAAAAAAA"):
        assert not verify_password("s3cret", bad)


def test_token_roundtrip_expiry_and_tamper() -> None:
    """A token verifies until it expires; any change to payload or signature, or another secret, fails."""
    token = issue_token(SECRET, "1001", "supervisor", 60, now=1000.0)
    ident = verify_token(SECRET, token, now=1059.0)
    assert (ident.user_id, ident.role) == ("1001", "supervisor")
    with pytest.raises(AuthError) as info:
        verify_token(SECRET, token, now=1060.0)
    assert info.value.error_id == "token-expired"
    head, body, sig = token.split(".")
    forged = issue_token("other-secret-0123456", "1001", "supervisor", 60, now=1000.0).split(".")[2]
    for bad in (f"{head}.{body}.{forged}", f"{head}.{body[:-2]}xx.{sig}", "v2." + body + "." + sig, "junk",
                "v1..", "v1." + body + ".%%%", "x" * 5000):
        with pytest.raises(AuthError) as info:
            verify_token(SECRET, bad, now=1000.0)
        assert info.value.error_id == "bad-token"
        assert SECRET not in info.value.message


def test_authenticator_password_token_throttle() -> None:
    """Authenticator: agents by password, supervisors by their own table, tokens with the console secret;
    after auth_failures failures from one address the (id, address) waits auth_delay, doubling, while the
    same id from another address and a valid token are never slowed down."""
    now = [1000.0]
    settings = ConsoleSection(token_secret=SECRET, auth_failures=2, auth_delay=1, auth_lockout=30,
                              supervisors=[{"id": "sup", "password_hash": hash_password("boss", n=16)}])
    auth = Authenticator(settings, {"1001": hash_password("pw", n=16)}, clock=lambda: now[0])
    assert auth.verify("1001", password="pw").role == "agent"
    assert auth.verify("sup", password="boss", role="supervisor").role == "supervisor"
    with pytest.raises(AuthError):
        auth.verify("sup", password="boss")  # a supervisor password is not an agent password
    token = issue_token(SECRET, "1001", "agent", 60, now[0])
    assert auth.verify("1001", token=token).user_id == "1001"
    with pytest.raises(AuthError) as info:
        auth.verify("1001", token=token, role="supervisor")
    assert info.value.error_id == "bad-token"
    for _ in range(2):
        with pytest.raises(AuthError):
            auth.verify("1001", password="wrong", address="10.0.0.66")
    assert auth.password_wait("1001", "10.0.0.66") == 1.0  # after the 2 free failures
    now[0] += 1
    with pytest.raises(AuthError):
        auth.verify("1001", password="wrong", address="10.0.0.66")
    assert auth.password_wait("1001", "10.0.0.66") == 2.0  # and the next one doubles it
    with pytest.raises(AuthError) as info:
        auth.verify("1001", password="pw", address="10.0.0.66")
    assert info.value.error_id == "auth-throttled"
    assert auth.verify("1001", password="pw", address="10.0.0.7").user_id == "1001"
    assert auth.verify("1001", token=token, address="10.0.0.66").user_id == "1001"
    now[0] += 2
    assert auth.verify("1001", password="pw", address="10.0.0.66").user_id == "1001"
    with pytest.raises(AuthError) as info:
        auth.verify("ghost", password="pw")
    assert info.value.error_id == "auth-failed"


def test_token_disabled_without_secret() -> None:
    """With no console.token_secret, token logins are refused with token-disabled."""
    auth = Authenticator(ConsoleSection(), {})
    with pytest.raises(AuthError) as info:
        auth.verify("1001", token=issue_token(SECRET, "1001", "agent", 60, 0.0))
    assert info.value.error_id == "token-disabled"


def test_login_throttle_grows_caps_forgets_and_is_bounded() -> None:
    """Delays start after `free` failures, double up to max_delay, are forgotten after a quiet max_delay,
    and the oldest keys go beyond max_keys, so a spray of ids cannot grow it forever."""
    throttle = LoginThrottle(free=1, base=1.0, max_delay=8.0, max_keys=3)
    waits = []
    for _ in range(6):
        throttle.failed("k", 0.0)
        waits.append(throttle.wait("k", 0.0))
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert throttle.wait("k", 15.9) == 0.0 and len(throttle) == 1 and throttle.wait("k", 16.0) == 0.0
    assert len(throttle) == 0
    for i in range(10):
        throttle.failed(f"id{i}", 0.0)
    assert len(throttle) == 3 and throttle.wait("id9", 0.5) == 0.5 and throttle.wait("id0", 0.5) == 0.0


def test_settings_semantic_errors() -> None:
    """Short secrets, duplicate disposition codes, and malformed supervisor hashes are reported."""
    settings = ConsoleSection(token_secret="short", dispositions=[{"code": "a", "label": "A"},
                                                                  {"code": "a", "label": "B"}],
                              supervisors=[{"id": "s", "password_hash": "plaintext"}])
    problems = {loc: msg for loc, msg in settings.semantic_errors()}
    assert ("token_secret",) in problems and ("dispositions", 1, "code") in problems
    assert ("supervisors", 0, "password_hash") in problems
    assert "plaintext" not in " ".join(problems.values())
    with pytest.raises(ValidationError):
        ConsoleSection(compression="brotli")
    assert ConsoleSection().compression == "none" and ConsoleSection().semantic_errors() == []


def test_static_site_table() -> None:
    """The static table serves the pages by exact path only."""
    site = StaticSite()
    assert site.lookup("/").content_type.startswith("text/html")  # type: ignore[union-attr]
    assert site.lookup("/wallboard?x=1") is not None
    assert site.lookup("/static/../settings.py") is None and site.lookup("/settings.py") is None
    assert all(p in site.paths() for p in ("/static/console.js", "/static/console.css", "/static/wallboard.js"))
