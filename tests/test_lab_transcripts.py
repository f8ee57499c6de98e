"""The lab recordings (tests/fixtures/asterisk/lab: the server's own AMI connection and FastAGI sessions
against a real Asterisk 22.10.1 running the shipped dialplan, recorded by tests/lab/lab_scenarios.py
--record) read as the real PBX wrote them: the codec gives the same messages whatever the read
boundaries; the call tracker sees the attended transfers the way Asterisk did them; the simulated PBX
answers the IVR's commands for missing prompts as the real one did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cti.ami.message import AMIMessage
from cti.ami.protocol import AMIParser
from cti.calls import CallTracker
from cti.events import CallEnded, CallTransferred
from tests.test_sim_fastagi_client import ScriptedChannel, lines, run_memory

LAB = Path(__file__).resolve().parent / "fixtures" / "asterisk" / "lab"
RECORDINGS = ("attended", "inbound_hold", "ivr_missing_prompts", "outbound")


def chunks(name: str, conn_prefix: str, direction: str = "recv") -> dict[str, list[bytes]]:
    """Each connection's chunks in one direction, as they were read (conn -> chunks)."""
    out: dict[str, list[bytes]] = {}
    for line in (LAB / f"{name}.timeline.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec["conn"].startswith(conn_prefix) and rec["dir"] == direction:
            out.setdefault(rec["conn"], []).append(rec["data"].encode("latin-1"))
    return out


def ami_messages(name: str, step: int | None = None) -> list[AMIMessage]:
    (conn,) = chunks(name, "ami").values()
    data = b"".join(conn)
    parser = AMIParser(expect_banner=True)
    items: list[object] = []
    pieces = conn if step is None else [data[i:i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        items.extend(parser.feed(piece))
    return [m for m in items if isinstance(m, AMIMessage)]


@pytest.mark.parametrize("name", RECORDINGS)
def test_lab_recordings_parse_the_same_at_any_read_boundary(name: str) -> None:
    """The real read boundaries, 1-byte and 7-byte reads all give the same messages."""
    real = ami_messages(name)
    assert len(real) > 100
    assert [m.headers for m in ami_messages(name, 7)] == [m.headers for m in real]
    if name == "ivr_missing_prompts":  # the smallest: one-byte reads are slow in pure Python
        assert [m.headers for m in ami_messages(name, 1)] == [m.headers for m in real]


def test_attended_transfers_as_the_tracker_sees_them() -> None:
    """Three consultations by agent 1001: one completed (AttendedTransfer: the caller now talks to the
    target) and two that returned to the caller. The completed one is reported as an attended transfer
    by the agent's leg; the caller's call does not end when the agent's leg hangs up to complete it."""
    tracker = CallTracker()
    events = []
    for i, msg in enumerate(ami_messages("attended")):
        events.extend(tracker.handle("lab", msg, float(i)))
    transfers = [e for e in events if isinstance(e, CallTransferred)]
    assert [(t.kind, t.result) for t in transfers] == [("attended", "Success")]
    agent_leg = transfers[0].channel
    assert agent_leg.startswith("Local/1001@cti-lab-phone-") and agent_leg.endswith(";1")
    assert transfers[0].transferee_channel.startswith("Local/100@cti-lab-caller-")
    ended = [e for e in events if isinstance(e, CallEnded)]
    assert ended, "the recording ends with every call hung up"
    for e in ended:  # the transferring agent's leg never counts as the party who ended a call
        assert e.hung_up_by != agent_leg, e


def test_the_real_pbx_answers_missing_prompts_as_the_ivr_expects() -> None:
    """The recorded FastAGI session of the lab flow "missing": STREAM FILE of a missing prompt answers
    ``200 result=-1 endpos=0`` and GET DATA of one ``200 result=-1`` at once, CHANNEL STATUS says the
    caller is still there, ``GET DATA ""`` then reads the digits, and the flow's transfer is set."""
    (sent,) = chunks("ivr_missing_prompts", "fastagi", "send").values()
    (got,) = chunks("ivr_missing_prompts", "fastagi", "recv").values()
    commands = [c.decode() for c in sent]
    replies = [c.decode() for c in got[1:]]  # after the environment block
    pairs = list(zip(commands, replies, strict=False))
    assert pairs[:6] == [
        ("ANSWER\n", "200 result=0\n"),
        ('STREAM FILE lab-no-such-prompt ""\n', "200 result=-1 endpos=0\n"),
        ("CHANNEL STATUS\n", "200 result=6\n"),
        ("GET DATA lab-no-such-prompt-either 6000 4\n", "200 result=-1\n"),
        ("CHANNEL STATUS\n", "200 result=6\n"),
        ('GET DATA "" 6000 4\n', "200 result=1234\n"),
    ]
    assert ("SET VARIABLE CTI_NEXT transfer\n", "200 result=1\n") in pairs


def test_the_simulated_pbx_answers_the_recorded_commands_alike() -> None:
    """The IVR's recorded commands replayed against the simulated PBX get the real PBX's answers."""
    (sent,) = chunks("ivr_missing_prompts", "fastagi", "send").values()
    (got,) = chunks("ivr_missing_prompts", "fastagi", "recv").values()
    commands = list(sent)
    real = [c.decode().rstrip("\n") for c in got[1:]]
    reply, _results, _chan, _server, _clock = run_memory(
        commands, lambda clock: ScriptedChannel(clock, keys=[("1234", 1.5)]),
        url="agi://127.0.0.1:4573/missing?dnis=+18005550100")
    assert lines(reply)[:len(real)] == real
