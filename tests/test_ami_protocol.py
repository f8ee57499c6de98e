"""Tests of the sans-I/O AMI codec: real Asterisk transcripts, odd splits, limits, bad bytes, encoding."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.ami.message import AMIMessage
from cti.ami.protocol import (
    ActionIdAllocator,
    AMIParser,
    Banner,
    EventListCollector,
    ParseError,
    encode,
    is_list_start,
)
from tests.transcripts import AMI_TRANSCRIPTS

AMI_FILES = list(AMI_TRANSCRIPTS)


def read_chunks(fixtures: Path, name: str) -> list[list[bytes]]:
    """Per connection, the chunks exactly as Asterisk's bytes arrived (or the whole file)."""
    timeline = fixtures / f"{name}.timeline.jsonl"
    if not timeline.exists():
        return [[(fixtures / f"{name}.txt").read_bytes()]]
    by_conn: dict[str, list[bytes]] = {}
    with timeline.open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec["dir"] == "recv":
                by_conn.setdefault(rec["conn"], []).append(rec["data"].encode("latin-1"))
    return list(by_conn.values())


def expected_counts(fixtures: Path, name: str) -> tuple[Counter[str], Counter[str]]:
    """(events per type, responses per value) from the README table of the transcripts."""
    readme = (fixtures / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"\*\*`{name}\.txt`\*\* — (\d+) events; responses: (.*)\n\n(.*)\n", readme)
    assert match, f"README has no counts for {name}"
    responses = Counter({k: int(v) for k, v in re.findall(r"`(\w+)` (\d+)", match.group(2))})
    events = Counter({k: int(v) for k, v in re.findall(r"`(\w+)` (\d+)", match.group(3))})
    assert sum(events.values()) == int(match.group(1))
    return events, responses


def parse_all(chunks: list[bytes], **kwargs: object) -> list[object]:
    parser = AMIParser(**kwargs)  # type: ignore[arg-type]
    out: list[object] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    assert parser.buffered == 0, "bytes left over at the end of a complete capture"
    return out


def tally(items: list[object]) -> tuple[Counter[str], Counter[str], int]:
    events: Counter[str] = Counter()
    responses: Counter[str] = Counter()
    banners = 0
    for item in items:
        assert not isinstance(item, ParseError), item
        if isinstance(item, Banner):
            banners += 1
        elif isinstance(item, AMIMessage):
            (events if item.kind == "event" else responses)[item.name] += 1
    return events, responses, banners


@pytest.mark.parametrize("name", AMI_FILES)
def test_transcript_real_read_boundaries(fixtures_dir: Path, name: str) -> None:
    """Every capture, fed in Asterisk's real TCP read chunks per connection, parses with no error and
    yields exactly the README's count of events and responses per type, and one banner per connection."""
    events: Counter[str] = Counter()
    responses: Counter[str] = Counter()
    conns = read_chunks(fixtures_dir, name)
    for chunks in conns:
        e, r, banners = tally(parse_all(chunks))
        assert banners == 1
        events += e
        responses += r
    assert (events, responses) == expected_counts(fixtures_dir, name)


@pytest.mark.parametrize("name", AMI_FILES)
def test_transcript_one_byte_chunks(fixtures_dir: Path, name: str) -> None:
    """Every capture fed one byte at a time (splits inside every CRLF) gives the same messages as
    feeding each connection whole."""
    for chunks in read_chunks(fixtures_dir, name):
        data = b"".join(chunks)
        whole = parse_all([data])
        parser = AMIParser()
        single: list[object] = []
        for i in range(len(data)):
            single.extend(parser.feed(data[i : i + 1]))
        assert single == whole
        assert parser.buffered == 0


def test_login_concatenation_reports_each_banner(fixtures_dir: Path) -> None:
    """login.txt (six connections back to back) parsed as one stream yields six banners and the same
    messages as parsing the connections separately (a banner at the start of a message is recognised)."""
    data = (fixtures_dir / "login.txt").read_bytes()
    items = parse_all([data])
    assert [i for i in items if isinstance(i, Banner)] == [Banner("Asterisk Call Manager/11.0.0")] * 6
    events, responses, _ = tally(items)
    assert (events, responses) == expected_counts(fixtures_dir, "login")


def test_banner_then_messages_in_one_chunk() -> None:
    """The banner line has no blank line after it; the message right behind it still parses."""
    items = AMIParser().feed(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: a-1\r\n\r\n")
    assert items[0] == Banner("Asterisk Call Manager/11.0.0")
    assert items[0].version == "11.0.0"  # type: ignore[union-attr]
    assert isinstance(items[1], AMIMessage) and items[1].kind == "response" and items[1].action_id == "a-1"


def test_values_with_colon_space_and_bare_lf_and_repeats() -> None:
    """A value keeps everything after the first ': ' (including further ': ' and a bare LF); repeated
    keys are all kept in order; empty values ('Key: ') are empty strings."""
    raw = (
        b"Response: Success\r\nMessage: Command output follows\r\nOutput: Name: x: y\r\n"
        b"Output: line\nwith LF\r\nOutput: \r\nOutput:    indented\r\n\r\n"
    )
    (msg,) = AMIParser(expect_banner=False).feed(raw)
    assert isinstance(msg, AMIMessage)
    assert msg.getall("Output") == ["Name: x: y", "line\nwith LF", "", "   indented"]
    assert msg["message"] == "Command output follows"


def test_split_inside_crlf_and_separator() -> None:
    """Splitting between CR and LF of a line end or of the blank line changes nothing."""
    raw = b"Event: Foo\r\nA: 1\r\n\r\nEvent: Bar\r\nB: 2\r\n\r\n"
    for cut in range(1, len(raw)):
        for cut2 in range(cut, len(raw)):
            parser = AMIParser(expect_banner=False)
            items = parser.feed(raw[:cut]) + parser.feed(raw[cut:cut2]) + parser.feed(raw[cut2:])
            assert [m.name for m in items] == ["Foo", "Bar"]  # type: ignore[union-attr]


def test_event_classified_before_response() -> None:
    """ChallengeResponseFailed carries a Response: header but is an event."""
    raw = b"Event: ChallengeResponseFailed\r\nPrivilege: security,all\r\nResponse: abc\r\n\r\n"
    (msg,) = AMIParser(expect_banner=False).feed(raw)
    assert isinstance(msg, AMIMessage) and msg.kind == "event" and msg.name == "ChallengeResponseFailed"


LEGACY = (
    b"Response: Follows\r\nPrivilege: Command\r\nActionID: cmd-1\r\n"
    b"Name: one\nSecond line: here\n\nafter blank\r\n\r\nafter CRLF blank\n--END COMMAND--\r\n\r\n"
    b"Event: Next\r\nX: 1\r\n\r\n"
)


def test_legacy_command_output() -> None:
    """Old 'Response: Follows' ... '--END COMMAND--' output, even with blank lines (and a CRLF blank
    line) inside, becomes one response with an Output header per line; the next event is intact."""
    items = AMIParser(expect_banner=False).feed(LEGACY)
    assert len(items) == 2
    resp, event = items
    assert isinstance(resp, AMIMessage) and isinstance(event, AMIMessage)
    assert resp.kind == "response" and resp.name == "Follows" and resp.action_id == "cmd-1"
    assert resp.getall("Output") == ["Name: one", "Second line: here", "", "after blank", "", "after CRLF blank"]
    assert resp["Privilege"] == "Command"
    assert event.name == "Next"


def test_legacy_command_output_byte_by_byte() -> None:
    """The legacy form parses the same when it arrives one byte at a time."""
    parser = AMIParser(expect_banner=False)
    items: list[object] = []
    for i in range(len(LEGACY)):
        items.extend(parser.feed(LEGACY[i : i + 1]))
    assert items == AMIParser(expect_banner=False).feed(LEGACY)


def test_modern_command_output_from_transcript(fixtures_dir: Path) -> None:
    """Asterisk 22's Command response keeps every Output: line, including empty and indented ones."""
    data = (fixtures_dir / "hangup_redirect.txt").read_bytes()
    items = parse_all([data])
    cmd = [m for m in items if isinstance(m, AMIMessage) and m.get("Message") == "Command output follows"]
    assert cmd[0].getall("Output")[0].startswith("Asterisk 22.10.1 built by")
    queue = cmd[1].getall("Output")
    assert queue[1:4] == ["   No Members", "   No Callers", ""]


def test_non_utf8_bytes_fall_back_to_latin1() -> None:
    """A message with invalid UTF-8 is decoded as Latin-1 (bytes recoverable); its neighbours stay UTF-8."""
    raw = (
        b"Event: A\r\nName: caf\xc3\xa9\r\n\r\n"
        b"Event: B\r\nName: caf\xe9 \xff\r\n\r\n"
        b"Event: C\r\nName: \xe2\x82\xac\r\n\r\n"
    )
    for chunks in ([raw], [raw[i : i + 1] for i in range(len(raw))]):
        parser = AMIParser(expect_banner=False)
        items = [item for chunk in chunks for item in parser.feed(chunk)]
        assert [m["Name"] for m in items] == ["café", "caf\xe9 \xff", "€"]  # type: ignore[index]
        assert items[1]["Name"].encode("latin-1") == b"caf\xe9 \xff"  # type: ignore[index]


def test_oversize_message_dropped_and_resynced() -> None:
    """A message over the limit yields one ParseError counting the dropped bytes; the messages before
    and after it parse, and the buffer stays bounded while the big message streams in."""
    parser = AMIParser(max_message_bytes=1000, expect_banner=False)
    big = b"Event: Big\r\n" + b"Junk: " + b"x" * 5000 + b"\r\n\r\n"
    stream = b"Event: Before\r\n\r\n" + big + b"Event: After\r\n\r\n"
    items: list[object] = []
    for i in range(0, len(stream), 100):
        items.extend(parser.feed(stream[i : i + 100]))
        assert parser.buffered <= 1000
    assert [getattr(i, "name", None) for i in items] == ["Before", None, "After"]
    err = items[1]
    assert isinstance(err, ParseError) and err.discarded == len(big) and "1000" in err.reason


def test_oversize_message_in_one_chunk() -> None:
    """A complete over-limit message delivered in one read is dropped with a ParseError; others survive."""
    big = b"Event: Big\r\nJunk: " + b"y" * 2000 + b"\r\n\r\n"
    items = AMIParser(max_message_bytes=1000, expect_banner=False).feed(big + b"Event: Ok\r\n\r\n")
    assert isinstance(items[0], ParseError) and items[0].discarded == len(big)
    assert isinstance(items[1], AMIMessage) and items[1].name == "Ok"


def test_junk_without_banner_or_blank_line() -> None:
    """Junk on the port with no line end: one error about the missing banner, bounded memory, and the
    parser recovers at the next blank line."""
    parser = AMIParser(max_message_bytes=4096)
    items: list[object] = []
    for _ in range(100):
        items.extend(parser.feed(b"\x00\x01garbage" * 100))
        assert parser.buffered <= 4096
    assert items == []
    items = parser.feed(b"\r\n\r\nEvent: Ok\r\n\r\n")
    assert isinstance(items[0], ParseError) and "banner" in items[0].reason and items[0].discarded == 90_004
    assert isinstance(items[1], AMIMessage) and items[1].name == "Ok"


def test_header_instead_of_banner() -> None:
    """A stream that starts with a header line instead of the banner gets an error and still parses."""
    items = AMIParser().feed(b"Response: Success\r\n\r\n")
    assert isinstance(items[0], ParseError) and "banner" in items[0].reason
    assert isinstance(items[1], AMIMessage) and items[1].name == "Success"


def test_odd_lines() -> None:
    """'Key:value' (no space) and 'Key:' parse; a line with no colon is dropped with an error that does
    not echo it; blank lines between messages are ignored."""
    raw = b"\r\n\r\nAction: Login\r\nUsername:cti\r\nsecretvalue\r\nEvents:\r\n\r\n\r\n\r\nAction: Ping\r\n\r\n"
    items = AMIParser(expect_banner=False).feed(raw)
    err = [i for i in items if isinstance(i, ParseError)]
    msgs = [i for i in items if isinstance(i, AMIMessage)]
    assert len(err) == 1 and "secretvalue" not in err[0].reason and err[0].discarded == len(b"secretvalue\r\n")
    assert msgs[0].headers == [("Action", "Login"), ("Username", "cti"), ("Events", "")]
    assert msgs[1].name == "Ping" and msgs[1].kind == "action"


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(LEGACY) * 2), max_size=12))
def test_any_split_gives_same_result(cuts: list[int]) -> None:
    """Feeding the same bytes split at arbitrary points gives the same items as one feed."""
    raw = (
        b"Asterisk Call Manager/11.0.0\r\nEvent: A\r\nK: v: w\r\n\r\n"
        + LEGACY
        + b"Event: B\r\nName: \xff\xfe\r\n\r\n\r\nResponse: Success\r\nOutput: a\r\nOutput: b\r\n\r\n"
    )
    expected = AMIParser().feed(raw)
    points = sorted({c % (len(raw) + 1) for c in cuts} | {0, len(raw)})
    parser = AMIParser()
    got: list[object] = []
    for a, b in zip(points, points[1:], strict=False):
        got.extend(parser.feed(raw[a:b]))
    assert got == expected
    assert not any(isinstance(i, ParseError) for i in got)


def test_encode_roundtrip_and_repeated_keys() -> None:
    """encode() writes Key: Value CRLF lines and a blank line; the parser reads the same action back."""
    action = AMIMessage.action(
        "Originate", {"ActionID": "x-1", "Channel": "Local/1@sim", "Variable": ["A=1", "B=x: y"], "Async": "true"}
    )
    raw = encode(action)
    assert raw.endswith(b"Async: true\r\n\r\n") and raw.count(b"Variable: ") == 2
    (back,) = AMIParser(expect_banner=False).feed(raw)
    assert back == action


@pytest.mark.parametrize(
    "headers",
    [
        [("Action", "Login"), ("Secret", "s3cret\r\nAction: Logoff")],
        [("Bad\nKey", "v")],
        [("Bad: Key", "v")],
        [("", "v")],
    ],
)
def test_encode_rejects_injection(headers: list[tuple[str, str]]) -> None:
    """CR/LF in a value or key, ':' in a key or an empty key raise ValueError that never shows the value."""
    with pytest.raises(ValueError) as info:
        encode(AMIMessage(headers, "action"))
    assert "s3cret" not in str(info.value)


def test_action_ids_unique() -> None:
    """ActionIDs are unique across allocators in one process, even with the same prefix."""
    a, b = ActionIdAllocator("srv"), ActionIdAllocator("srv")
    ids = [a.next() for _ in range(1000)] + [b.next() for _ in range(1000)]
    assert len(set(ids)) == 2000 and all(i.startswith("srv-") for i in ids)


def test_event_list_collector_on_transcript(fixtures_dir: Path) -> None:
    """Every list action in the captures collects exactly ListItems item events plus its Complete event."""
    collector = EventListCollector()
    finished: list[tuple[AMIMessage, list[AMIMessage]]] = []
    for name in ("hangup_redirect", "inbound_queue", "originate_outbound", "queue_member_ops", "burst"):
        for chunks in read_chunks(fixtures_dir, name):
            for item in parse_all(chunks):
                assert isinstance(item, AMIMessage | Banner)
                if isinstance(item, Banner):
                    continue
                if item.kind == "response":
                    collector.start(item)
                elif (done := collector.add(item)) is not None:
                    finished.append(done)
    assert len(collector) == 0
    assert len(finished) == 27  # the number of "EventList: start" responses in those files
    for response, events in finished:
        last = events[-1]
        assert last["EventList"] == "Complete"
        assert int(last["ListItems"]) == len(events) - 1
        assert all(e.action_id == response.action_id for e in events)


def test_list_start_legacy_message() -> None:
    """Older Asterisk without EventList: a Success '... will follow' opens a list that the
    '...Complete' event closes."""
    resp = AMIMessage([("Response", "Success"), ("ActionID", "q-1"), ("Message", "Queue status will follow")])
    assert is_list_start(resp)
    collector = EventListCollector()
    assert collector.start(resp)
    assert collector.add(AMIMessage([("Event", "QueueMember"), ("ActionID", "q-1")])) is None
    assert collector.add(AMIMessage([("Event", "QueueMember"), ("ActionID", "other")])) is None
    done = collector.add(AMIMessage([("Event", "QueueStatusComplete"), ("ActionID", "q-1")]))
    assert done is not None and [e.name for e in done[1]] == ["QueueMember", "QueueStatusComplete"]
    assert not is_list_start(AMIMessage([("Response", "Success"), ("Message", "Authentication accepted")]))


@pytest.mark.parametrize("name", ["hangup_redirect", "login", "burst"])
def test_messages_equal_eager_reference(fixtures_dir: Path, name: str) -> None:
    """Messages (whose headers are built on first use) equal AMIMessages built eagerly from the same
    bytes by a plain reference split: same kind, name, ActionID, headers, look-ups and hash."""
    data = (fixtures_dir / f"{name}.txt").read_bytes()
    clean = data.replace(b"Asterisk Call Manager/11.0.0\r\n", b"").decode("utf-8")  # drop banner lines
    reference = [
        AMIMessage([line.partition(": ")[::2] for line in b.split("\r\n")]) for b in clean.split("\r\n\r\n") if b
    ]
    got = [m for m in parse_all([data]) if isinstance(m, AMIMessage)]
    assert len(got) == len(reference)
    for msg, ref in zip(got, reference, strict=True):
        assert (msg.kind, msg.name, msg.action_id) == (ref.kind, ref.name, ref.action_id)
        assert msg == ref and hash(msg) == hash(ref) and list(msg) == ref.headers
        assert msg.get("CHANNEL") == ref.get("channel") and msg.as_dict() == ref.as_dict()


def test_lazy_lookup_matches_a_fully_built_message() -> None:
    """Reading single headers straight from the wire text (no index built) gives exactly what a fully
    built message gives: first value of a repeated key, any spelling of the key, values with ': '."""
    wire = (b"Event: VarSet\r\nChannel: PJSIP/a-1\r\nVariable: X\r\nValue: a: b\r\nVariable: Y\r\n"
            b"uniqueid: 1.5\r\nEmpty: \r\n\r\n")
    lazy = [m for m in AMIParser(expect_banner=False).feed(wire) if isinstance(m, AMIMessage)][0]
    built = AMIMessage(list(lazy.headers))
    fresh = [m for m in AMIParser(expect_banner=False).feed(wire) if isinstance(m, AMIMessage)][0]
    for key in ("Variable", "variable", "VALUE", "Uniqueid", "UniqueID", "Empty", "Missing", "Event", "Chan"):
        assert fresh.get(key) == built.get(key), key
        assert (key in fresh) == (key in built), key
    assert fresh["Value"] == "a: b"
    assert fresh.get("Variable") == "X"
    with pytest.raises(KeyError):
        fresh["Missing"]


MIXED = (
    b"Event: Newchannel\r\nCallerIDName: M\xfcller \xe9\r\nValue: caf\xc3\xa9 \xe2\x82\xac\r\n"
    b"Channel: PJSIP/1-1\r\n\r\n"
)


def test_mixed_utf8_and_latin1_headers_are_decoded_each_on_its_own() -> None:
    """A latin-1 caller name next to a UTF-8 value: each header line is decoded on its own (UTF-8 when valid,
    else latin-1), so the UTF-8 value is not garbled; the message says which decoding each value got and
    gives its original bytes back, in one read, one byte at a time and next to other messages."""
    stream = b"Event: Before\r\nX: \xe2\x82\xac\r\n\r\n" + MIXED + b"Event: After\r\nY: 1\r\n\r\n"
    for chunks in ([stream], [stream[i : i + 1] for i in range(len(stream))], [MIXED]):
        parser = AMIParser(expect_banner=False)
        msgs = [m for c in chunks for m in parser.feed(c) if isinstance(m, AMIMessage)]
        (msg,) = [m for m in msgs if m.name == "Newchannel"]
        assert msg["CallerIDName"] == "Müller é" and msg.decoding("CallerIDName") == "latin-1"
        assert msg["Value"] == "café €" and msg.decoding("value") == "utf-8"
        assert msg.raw("CallerIDName") == b"M\xfcller \xe9" and msg.raw("Value") == b"caf\xc3\xa9 \xe2\x82\xac"
        assert msg.decoding("Channel") == "utf-8" and msg.decoding("Missing") is None and msg.raw("Missing") is None
    built = AMIMessage([("Action", "Setvar"), ("Value", "café")], "action")
    assert built.decoding("Value") == "utf-8" and built.raw("Value") == "café".encode()


def test_legacy_command_output_decodes_each_line_on_its_own() -> None:
    """Legacy Command output with one latin-1 line keeps the other lines' UTF-8."""
    raw = b"Response: Follows\r\nPrivilege: Command\r\nName: caf\xc3\xa9\nM\xfcller\n--END COMMAND--\r\n\r\n"
    (msg,) = AMIParser(expect_banner=False).feed(raw)
    assert isinstance(msg, AMIMessage) and msg.getall("Output") == ["Name: café", "Müller"]
    assert [msg.decoding("Output"), msg.raw("Privilege")] == ["utf-8", b"Command"]
    assert msg.headers[-1] == ("Output", "Müller") and msg._latin1 == frozenset({len(msg.headers) - 1})


@pytest.mark.parametrize(
    "odd",
    [
        b"Event: A\r\nKey:x: y\r\n\r\n",  # several colons, the first one without a space
        b"Event: A\r\nK: v: w\r\nodd line\r\n\r\n",  # a line without colon hidden by a value with ': '
        b"Event: A\r\n: no key: x\r\nB: 1\r\n\r\n",  # nothing before the colon
        b"Action: Ping\r\nResponse: Success\r\n\r\n",  # action first, but a response
        b"Event: A\r\n\r\n\r\n",  # extra CRLF after the message
    ],
)
def test_odd_lines_parse_the_same_next_to_a_non_utf8_message(odd: bytes) -> None:
    """Odd lines give the same items whether their message arrives alone or in one read with a message
    that is not valid UTF-8 (which used to switch the whole read to another parser with other rules)."""
    latin1 = b"Event: B\r\nName: \xff\r\n\r\n"

    def seen(items: list[object]) -> list[object]:
        return [(i.kind, i.name, i.headers) if isinstance(i, AMIMessage) else i for i in items]

    alone = seen(AMIParser(expect_banner=False).feed(odd) + AMIParser(expect_banner=False).feed(latin1))
    assert seen(AMIParser(expect_banner=False).feed(odd + latin1)) == alone
    assert seen(AMIParser(expect_banner=False).feed(latin1 + odd)) == alone[-1:] + alone[:-1]


def test_key_is_before_the_first_colon() -> None:
    """'Key:x: y' is key 'Key' with value 'x: y' (as Asterisk reads it), on every path."""
    for raw in (b"Event: A\r\nKey:x: y\r\n\r\n", b"Event: A\r\nKey:x: y\r\nN: \xff\r\n\r\n"):
        (msg,) = AMIParser(expect_banner=False).feed(raw)
        assert isinstance(msg, AMIMessage) and msg["Key"] == "x: y"


def _bytes_allocated_feeding(parser: AMIParser, data: bytes) -> int:
    """Sum over one-byte feeds of the memory each feed allocated beyond what it started with."""
    import tracemalloc

    tracemalloc.start()
    try:
        total = 0
        for i in range(len(data)):
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            parser.feed(data[i : i + 1])
            total += max(0, tracemalloc.get_traced_memory()[1] - before)
    finally:
        tracemalloc.stop()
    return total


def test_a_long_line_fed_one_byte_at_a_time_costs_linear_work() -> None:
    """Feeding a long line one byte at a time allocates a constant amount per byte (the held tail grows in
    place and only new bytes are searched): twice the line, twice the bytes allocated, and at most 1 KiB per
    byte fed. Copying the whole tail for every byte is quadratic: ~2 GiB for the 64 KiB line here."""
    totals = []
    for n in (32_768, 65_536):
        line = b"Event: Big\r\nData: " + b"x" * n
        parser = AMIParser(expect_banner=False)
        totals.append(_bytes_allocated_feeding(parser, line))
        assert parser.buffered == len(line)
        (msg,) = parser.feed(b"\r\n\r\n")
        assert isinstance(msg, AMIMessage) and len(msg["Data"]) == n
    assert totals[1] < 1024 * 65_536, totals
    assert totals[1] < 2.5 * totals[0], totals


def test_feed_eof_reports_an_unterminated_message_once() -> None:
    """At end of stream an unterminated message is reported (one ParseError with its size, never its
    text); complete streams, trailing blank lines and a second call report nothing."""
    parser = AMIParser(expect_banner=False)
    assert [m.name for m in parser.feed(b"Event: A\r\n\r\nEvent: B\r\nSecret: s3cret\r\n")] == ["A"]  # type: ignore[union-attr]
    (err,) = parser.feed_eof()
    assert isinstance(err, ParseError) and err.discarded == len(b"Event: B\r\nSecret: s3cret\r\n")
    assert "message" in err.reason and "s3cret" not in err.reason
    assert parser.feed_eof() == [] and parser.buffered == 0
    done = AMIParser(expect_banner=False)
    done.feed(b"Event: A\r\n\r\n\r\n")
    assert done.feed_eof() == []


def test_feed_eof_reports_unfinished_command_output_and_discarding() -> None:
    """Command output without --END COMMAND-- and an over-long message being discarded are reported too."""
    legacy = AMIParser(expect_banner=False)
    legacy.feed(b"Response: Follows\r\nPrivilege: Command\r\nsome output\r\n\r\nmore")
    (err,) = legacy.feed_eof()
    assert "Command output" in err.reason and err.discarded > 0
    big = AMIParser(max_message_bytes=100, expect_banner=False)
    big.feed(b"Event: Big\r\nJunk: " + b"z" * 500)
    (err,) = big.feed_eof()
    assert "longer than 100" in err.reason and err.discarded == 500 + len(b"Event: Big\r\nJunk: ")
    banner = AMIParser()
    banner.feed(b"Asterisk Call Man")
    (err,) = banner.feed_eof()
    assert "banner" in err.reason and err.discarded == 17


@pytest.mark.parametrize(
    "message",
    [b"Event: A\r\nKey:x: y\r\n\r\n", b"Action: Ping\r\nResponse: Success\r\n\r\n", b"Event: A\r\nN: \xff\r\n\r\n"],
)
def test_an_extra_crlf_after_a_message_changes_nothing(message: bytes) -> None:
    """A stray CRLF after a message (same read or the next one) gives the same items as none at all."""

    def seen(items: list[object]) -> list[object]:
        return [(i.kind, i.name, i.headers) if isinstance(i, AMIMessage) else i for i in items]

    plain = seen(AMIParser(expect_banner=False).feed(message))
    assert seen(AMIParser(expect_banner=False).feed(message + b"\r\n")) == plain
    parser = AMIParser(expect_banner=False)
    assert seen(parser.feed(message) + parser.feed(b"\r\n")) == plain
    assert parser.feed_eof() == []
