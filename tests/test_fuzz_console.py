"""Fuzz (issue 19): the console's frame decoder and the hub on random and mutated frames.

``protocol.decode`` returns a message model or raises ``ProtocolError`` with a documented error id and a
message, whose reply encodes as JSON; the hub answers every junk frame with one error (or a result) and
keeps serving, both before and after login. (Hand-written cases are in tests/test_console_protocol.py.)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel

from agent_console import protocol
from agent_console.protocol import REQUEST_TYPES, ProtocolError, decode
from tests.console_stack import make_settings, open_client, run, running
from tests.fuzzing import fuzz_settings, mutate, mutated

ROOT = Path(__file__).resolve().parents[1]
SECRET_VALUE = "pw-SECRET-4242"
ERROR_IDS = {"bad-frame", "bad-json", "bad-message", "unsupported-version", "unknown-type", "invalid-params"}

pytestmark = pytest.mark.timeout(60)


def documented_frames() -> list[str]:
    """The client frames written out in docs/console-protocol.md (one JSON object per line)."""
    out = []
    for line in (ROOT / "docs" / "console-protocol.md").read_text().splitlines():
        line = line.strip().rstrip(",")
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("type") in REQUEST_TYPES:
                out.append(line)
    return out


FRAMES = [frame.replace('"..."', f'"{SECRET_VALUE}"') for frame in documented_frames()] + [json.dumps(f) for f in [
    {"v": 1, "type": "ping", "id": "p1"},
    {"v": 1, "type": "login", "id": 2, "endpoint": "PJSIP/1001"},
    {"v": 1, "type": "not_ready", "id": "n", "reason": "break"},
    {"v": 1, "type": "transfer", "id": "t", "to": "queue", "target": "sales"},
    {"v": 1, "type": "attended_transfer", "id": "a", "number": "+15551230002"},
    {"v": 1, "type": "dispose", "id": "d", "call_id": "1700000100.5", "disposition": "resolved", "notes": "ok",
     "callback": {"at": "2026-03-01T14:30:00Z", "number": "+15551230002"}, "then": "not_ready", "reason": "break"},
    {"v": 1, "type": "schedule_callback", "id": "s", "at": "2026-03-01T14:30:00+01:00", "number": "5551230002"},
    {"v": 1, "type": "subscribe", "id": 9, "topics": ["queue:sales"], "resume": {"queue:sales": {"epoch": "e",
                                                                                                 "seq": 4}}},
    {"v": 1, "type": "set_skills", "id": "k", "agent_id": "1001", "skills": {"sales": 3}},
    {"v": 1, "type": "set_campaign", "id": "c", "campaign": "c1", "ratio": 1.5},
    {"v": 1, "type": "monitor", "id": "m", "agent_id": "1001", "mode": "whisper"},
]]
assert len(FRAMES) >= 14
SEEDS = [f.encode() for f in FRAMES]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=80)
    | st.sampled_from(["2026-03-01T14:30:00Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "sales",
                       "queue:sales", "PJSIP/1001", "+15551230002", "", "\u0000", "\ud800"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)


@st.composite
def edited_objects(draw: st.DrawFn) -> str:
    """A valid frame with one field replaced by (or one field added with) any JSON value."""
    obj = json.loads(draw(st.sampled_from(FRAMES)))
    key = draw(st.sampled_from([*obj, "extra", "callback", "resume", "skills"]))
    obj[key] = draw(json_values)
    return json.dumps(obj)


frames = st.one_of(
    edited_objects(),
    st.text(max_size=200),
    mutated(SEEDS, 5).map(lambda b: b.decode("utf-8", "replace")),
    st.sampled_from(SEEDS).flatmap(lambda s: mutate(s, 2)),  # bytes: binary frames
    st.integers(1, 3000).map(lambda n: '{"v":1,"type":"ping","id":' + "[" * n + "]" * n + "}"),
    st.sampled_from(['{"v":1,"type":"ping","id":1e999999}', '{"v":1,"type":"ping","id":' + "9" * 5000 + "}",
                     '{"v":1,"type":"ping","id":"\\ud800"}', '{"v":1,"type":"hello","id":1,"agent_id":"\\u0000"}',
                     '{"v":1,"type":"schedule_callback","id":1,"at":"9999-12-31T23:59:59-23:59","number":"1"}',
                     '{"v":true,"type":"ping","id":1}', '{"v":1,"type":"ping","id":-1}', "null", "\ufeff{}"]),
)


@fuzz_settings(400)
@given(frame=frames)
@example(frame="[" * 200_000)
@example(frame='{"v":1,"type":"hello","id":1,"agent_id":"1001","password":"' + SECRET_VALUE + '","token":"x"}')
def test_decode_gives_a_message_or_a_documented_error(frame: str | bytes) -> None:
    try:
        message = decode(frame)
    except ProtocolError as exc:
        assert exc.error_id in ERROR_IDS and exc.message.strip()
        reply = protocol.encode(exc.to_message())  # the error reply is JSON
        assert json.loads(reply)["error_id"] == exc.error_id
        assert SECRET_VALUE not in reply  # never echoes a value (a frame may hold a password)
        return
    assert isinstance(message, BaseModel)
    assert message.type in REQUEST_TYPES  # type: ignore[attr-defined]
    json.dumps(protocol.params_of(message), default=str)


# --- the hub over a real websocket ----------------------------------------------------------------------

def junk_frames() -> list[str | bytes]:
    """Fixed junk for the socket test: seeded mutations of the frames above, plus a few hand-picked ones."""
    rng = random.Random(19)
    out: list[str | bytes] = ["[" * 5000, "\x00", '{"v":1}', b"\xff\xfe\x00", "{" * 3, '"' * 9, "9" * 5000]
    for _ in range(20):
        data = bytearray(rng.choice(SEEDS))
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(data))
            if rng.random() < 0.5:
                data[pos] ^= 1 << rng.randrange(8)
            else:
                del data[pos:pos + rng.randint(1, 12)]
        out.append(bytes(data).decode("utf-8", "replace"))
    return out


def test_hub_answers_junk_frames_and_keeps_serving() -> None:
    """Logged in, 27 junk frames each get one reply (an error, or a result for a frame that still makes
    sense); the session still answers a ping, and another agent logs in. Junk as the first frame of a new
    connection is refused (4001) and the next connection logs in."""

    async def body() -> None:
        async with running(make_settings(rate_burst=1000, rate_per_second=1000.0)) as stack:
            client = await open_client(stack, "1001")
            for frame in junk_frames():
                await client.send_raw(frame)
                while True:
                    msg = await client.recv()
                    if msg.get("type") in ("result", "error"):
                        assert msg.get("type") == "result" or msg["message"]
                        break
            assert (await client.request("ping"))["type"] == "result"
            for frame in junk_frames()[:5]:
                first = await open_client(stack)
                await first.send_raw(frame)
                msg = await first.recv()
                assert msg["type"] == "error" and msg["message"]
                assert await first.closed() == protocol.CLOSE_UNAUTHENTICATED
            other = await open_client(stack, "1002")
            assert (await other.request("ping"))["type"] == "result"
            assert (await client.request("ping"))["type"] == "result"

    run(body)
