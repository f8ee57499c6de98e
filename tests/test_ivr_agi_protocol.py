"""AGI codec, sans-I/O: the real Asterisk 22 FastAGI transcript parses exactly; junk is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.agi_protocol import (
    AgiCommand,
    AgiEnvironment,
    AgiError,
    AgiProtocolError,
    AgiReply,
    AgiServerCodec,
    HangupNotice,
    encode_command,
    quote_arg,
    split_command,
)


def timeline(fixtures_dir: Path) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in (fixtures_dir / "fastagi.timeline.jsonl").read_text().splitlines()]
    return [r for r in rows if r["conn"] in ("agi1", "agi2")]


def replay(rows: list[dict[str, str]], conn: str, split: int | None = None) -> list[object]:
    """Feed one recorded connection to a codec, sending the recorded commands; return every event."""
    codec = AgiServerCodec()
    events: list[object] = []
    for row in rows:
        if row["conn"] != conn:
            continue
        data = row["data"].encode("latin-1")
        if row["dir"] == "send":
            words = split_command(data.decode().rstrip("\n"))
            codec.send(AgiCommand(" ".join(words[:1]), tuple(words[1:])))
            continue
        pieces = [data] if split is None else [data[i:i + split] for i in range(0, len(data), split)]
        for piece in pieces:
            events.extend(codec.receive_data(piece))
    return events


EXPECTED_AGI1 = [
    AgiReply(200, "0", None, None, "result=0"),
    AgiReply(200, "53", None, 25760, "result=53"),
    AgiReply(200, "1234", None, None, "result=1234"),
    AgiReply(200, "1", None, None, "result=1"),
    AgiReply(200, "1", "1234", None, "result=1 (1234)"),
    AgiReply(200, "0", None, None, "result=0"),
    AgiReply(200, "1", "+15551230002|IVR-1795443026.0|Local/dtmfcaller@sim-00000000;1", None,
             "result=1 (+15551230002|IVR-1795443026.0|Local/dtmfcaller@sim-00000000;1)"),
    AgiReply(200, "0", None, None, "result=0"),
    AgiReply(200, "0", None, None, "result=0"),
    AgiReply(200, "6", None, None, "result=6"),
    AgiReply(200, "1", None, None, "result=1"),
    AgiReply(200, "0", None, None, "result=0"),
    AgiReply(510, text="Invalid or unknown command"),
    AgiReply(520, text="Invalid command syntax.  Proper usage follows:\n"
                       "Stream the given <replaceable>file</replaceable>, and receive DTMF data.\n"
                       "Returns the digits received from the channel at the other end."),
]


def test_golden_session_1_every_reply_form(fixtures_dir: Path) -> None:
    """Session 1 of fastagi.txt, at its real TCP chunk boundaries: env, 200 forms, 510, multi-line 520."""
    events = replay(timeline(fixtures_dir), "agi1")
    env = events[0]
    assert isinstance(env, AgiEnvironment)
    assert env.flow_name == "ivr" and env.params == {"lang": "en"}
    assert env.uniqueid == "1795443026.0" and env.ani == "+15551230002"
    assert env.get("agi_accountcode") == "" and env.dnis == "s"
    assert events[1:] == EXPECTED_AGI1


def test_golden_session_2_hangup_line_and_511(fixtures_dir: Path) -> None:
    """Session 2: result=-1 then the unsolicited HANGUP line, then 511 for commands on the dead channel."""
    events = replay(timeline(fixtures_dir), "agi2")
    env = events[0]
    assert isinstance(env, AgiEnvironment)
    assert env.flow_name == "hup" and env.args == ("welcome", "42")
    assert events[1:] == [
        AgiReply(200, "0", None, None, "result=0"),
        AgiReply(200, "-1", None, 24160, "result=-1"),
        HangupNotice(),
        AgiReply(200, "1", "IVR-1795443038.2", None, "result=1 (IVR-1795443038.2)"),
        AgiReply(511, text="Command Not Permitted on a dead channel or intercept routine"),
        AgiReply(511, text="Command Not Permitted on a dead channel or intercept routine"),
        AgiReply(200, "0", None, None, "result=0"),
    ]


@pytest.mark.parametrize("split", [1, 2, 7, 64])
def test_any_split_gives_the_same_events(fixtures_dir: Path, split: int) -> None:
    """The parser is incremental: feeding the transcript in tiny pieces changes nothing."""
    rows = timeline(fixtures_dir)
    assert replay(rows, "agi1", split) == replay(rows, "agi1")
    assert replay(rows, "agi2", split) == replay(rows, "agi2")


def test_recorded_commands_survive_our_quoting(fixtures_dir: Path) -> None:
    """Every command of fastagi.sent.txt, re-encoded by us, splits into the same Asterisk arguments."""
    for line in (fixtures_dir / "fastagi.sent.txt").read_text().splitlines():
        words = split_command(line)
        ours = encode_command(AgiCommand(words[0], tuple(words[1:]))).decode().rstrip("\n")
        assert split_command(ours) == words


def test_get_data_timeout_forms() -> None:
    """GET DATA answers ``result= (timeout)`` with no digits and ``result=12 (timeout)`` with some."""
    codec = AgiServerCodec()
    codec.receive_data(b"agi_network: yes\n\n")
    codec.send(AgiCommand("GET DATA", ("x", "100", "4")))
    assert codec.receive_data(b"200 result= (timeout)\n") == [AgiReply(200, "", "timeout", None, "result= (timeout)")]
    codec.send(AgiCommand("GET DATA", ("x", "100", "4")))
    assert codec.receive_data(b"200 result=12 (timeout)\r\n")[0].result == "12"


@pytest.mark.parametrize("data, reason", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not an AGI environment line"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "binary data"),
    (b"agi_network: yes\x00\n", "binary data"),
    (b"\n", "empty AGI environment"),
    (b"a" * 9000, "line longer than 8192 bytes"),
    (b"agi_x: " + b"y" * 9000 + b"\n", "line longer than 8192 bytes"),
    (b"agi_network: yes\n\n200 result=0\n", "reply without a command"),
    (b"".join(b"agi_k%d: v\n" % i for i in range(300)), "more than 256 environment lines"),
])
def test_junk_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    """Non-AGI bytes, binary, oversized lines and unsolicited replies raise AgiProtocolError; state closes."""
    codec = AgiServerCodec()
    with pytest.raises(AgiProtocolError) as info:
        codec.receive_data(data)
    assert reason in info.value.reason
    assert codec.state == "closed" and codec.receive_data(b"agi_x: y\n\n") == []


def test_bad_replies_to_a_command() -> None:
    """A garbled reply, a 200 without result= and an endless 520 are protocol errors."""
    for line in (b"hello there\n", b"200 ok\n", b"2000 result=1\n"):
        codec = AgiServerCodec()
        codec.receive_data(b"agi_network: yes\n\n")
        codec.send(AgiCommand("NOOP"))
        with pytest.raises(AgiProtocolError):
            codec.receive_data(line)
    codec = AgiServerCodec(max_usage_lines=3)
    codec.receive_data(b"agi_network: yes\n\n")
    codec.send(AgiCommand("GET DATA"))
    with pytest.raises(AgiProtocolError, match="520 usage text longer than 3 lines"):
        codec.receive_data(b"520-x\na\nb\nc\nd\n")


def test_one_command_at_a_time() -> None:
    """A second command before the first one's reply, or before the environment, is refused."""
    codec = AgiServerCodec()
    with pytest.raises(AgiError):
        codec.send(AgiCommand("NOOP"))
    codec.receive_data(b"agi_network: yes\n\n")
    codec.send(AgiCommand("NOOP"))
    with pytest.raises(AgiError):
        codec.send(AgiCommand("NOOP"))


def test_values_cannot_inject_a_second_command() -> None:
    """CR/LF inside a value become spaces and the value is quoted: one command line stays one."""
    wire = encode_command(AgiCommand("SET VARIABLE", ("CTI_NAME", 'Jane\nHANGUP "x" \\')))
    assert wire.count(b"\n") == 1
    assert split_command(wire.decode().rstrip("\n")) == ["SET", "VARIABLE", "CTI_NAME", 'Jane HANGUP "x" \\']


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_quote_round_trip(value: str) -> None:
    """For any text, Asterisk's argument splitter gives back the value (control characters as spaces)."""
    expected = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in value)
    assert split_command("SET " + quote_arg(value)) == ["SET", expected]


def test_environment_from_request_and_dnis_parameter() -> None:
    """Without agi_network_script the flow comes from agi_request; ?dnis= overrides agi_dnid."""
    env = AgiEnvironment({"agi_request": "agi://10.0.0.5:4573/sales/?dnis=%2B18005550100&x=1",
                          "agi_dnid": "100", "agi_callerid": "unknown"})
    assert env.flow_name == "sales" and env.dnis == "+18005550100" and env.ani == ""
    assert AgiEnvironment({"agi_dnid": "100"}).dnis == "100"
    raw = AgiEnvironment({"agi_network_script": "main?dnis=+18005550100&lang=fr"})
    assert raw.dnis == "+18005550100" and raw.params["lang"] == "fr"  # Asterisk does not URL-encode ${EXTEN}


def test_flow_name_is_url_decoded() -> None:
    """``agi_network_script`` is the URL's path as written in the dialplan: ``main%20menu`` is the flow
    ``main menu``; the query string is not part of the name and its values are decoded too."""
    env = AgiEnvironment({"agi_network_script": "main%20menu?dnis=%2B18005550100&lang=fr"})
    assert env.flow_name == "main menu" and env.dnis == "+18005550100" and env.params["lang"] == "fr"
    assert AgiEnvironment({"agi_network_script": "caf%C3%A9/"}).flow_name == "café"
    assert AgiEnvironment({"agi_request": "agi://h:4573/main%20menu?x=1"}).flow_name == "main menu"
    assert AgiEnvironment({"agi_network_script": "a%3Fb?x=1"}).flow_name == "a?b"  # an encoded '?' is no query


def _feed(codec: AgiServerCodec, wire: bytes, split: int | None) -> list[object]:
    pieces = [wire] if split is None else [wire[i:i + split] for i in range(0, len(wire), split)]
    return [event for piece in pieces for event in codec.receive_data(piece)]


@pytest.mark.parametrize("split", [None, 1, 3])
def test_latin1_reply_data_keeps_its_bytes(split: int | None) -> None:
    """Each line is decoded on its own: UTF-8 when it is valid UTF-8, else latin-1, which maps every byte
    to one character, so the raw bytes come back with ``data_bytes`` and ``encoding`` says which was used.
    A non-UTF-8 environment value (a latin-1 trunk's caller name) never breaks the parse."""
    codec = AgiServerCodec()
    [env] = _feed(codec, b"agi_network: yes\nagi_calleridname: Jos\xe9\nagi_callerid: 100\n\n", split)
    assert isinstance(env, AgiEnvironment) and env.get("agi_calleridname") == "Jos\xe9"
    assert env.raw("agi_calleridname") == b"Jos\xe9" and env.raw("agi_callerid") == b"100"
    codec.send(AgiCommand("GET VARIABLE", ("X",)))
    [latin] = _feed(codec, b"200 result=1 (M\xfcller)\n", split)
    assert isinstance(latin, AgiReply) and latin.data == "M\xfcller" and latin.encoding == "latin-1"
    assert latin.data_bytes == b"M\xfcller"
    codec.send(AgiCommand("GET VARIABLE", ("X",)))
    [utf8] = _feed(codec, b"200 result=1 (M\xc3\xbcller)\n", split)
    assert isinstance(utf8, AgiReply) and utf8.data == "M\xfcller" and utf8.encoding == "utf-8"
    assert utf8.data_bytes == b"M\xc3\xbcller"
