"""Fuzz (issue 19): the AMI codec on random bytes and on mutated real transcripts never raises, reports
every bad input as a ParseError with a reason, keeps its buffer under its bound and recovers at the next
blank line. (Read-boundary invariance is tests/test_ami_split_invariance.py.)"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cti.ami.message import AMIMessage
from cti.ami.protocol import BANNER_MAX_BYTES, AMIParser, Banner, ParseError
from tests.conftest import FIXTURES
from tests.fuzzing import fuzz_settings, junk, mutated
from tests.test_ami_split_invariance import parse_split, snapshot
from tests.transcripts import AMI_TRANSCRIPTS

pytestmark = pytest.mark.timeout(60)
SMALL = 512  # a small message limit, so that mutations reach it
SEEDS = [(Path(FIXTURES) / f"{name}.txt").read_bytes()[:6000] for name in AMI_TRANSCRIPTS]
SENTINEL = b"\r\n\r\nEvent: FuzzCheck\r\nSeq: 1\r\n\r\n"


def feed_all(parser: AMIParser, data: bytes, cuts: list[int]) -> list[object]:
    """Feed ``data`` cut at ``cuts``; check the items and the buffer bound after every read."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    items: list[object] = []
    for a, b in zip(points, points[1:], strict=False):
        got = parser.feed(data[a:b])
        check_items(got)
        items.extend(got)
        assert parser.buffered <= max(SMALL, BANNER_MAX_BYTES), parser.buffered
    return items


def check_items(items: list[object]) -> None:
    for item in items:
        assert isinstance(item, AMIMessage | Banner | ParseError), type(item)
        if isinstance(item, ParseError):
            assert item.reason.strip() and item.discarded >= 0
        elif isinstance(item, AMIMessage):  # every read of a (lazily parsed) message works
            assert item.kind in ("event", "response", "action", None) and isinstance(item.name, str)
            _ = (item.action_id, item.get("ActionID"), "event" in item)
            for key, value in item.headers:
                assert item.get(key) is not None and item.raw(key) is not None and item.decoding(key)
                assert isinstance(value, str)


streams = st.one_of(junk(3000), mutated(SEEDS, 6))
cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)


@fuzz_settings(300)
@given(data=streams, cut_points=cuts, banner=st.booleans())
# A read ending between overlapping blank lines made "Response: Follows\r\n" open Command output, and the
# response built from it had no Response header: its .name raised KeyError.
@example(data=b"Response: Follows\r\n", cut_points=[23], banner=False)
def test_bad_streams_give_items_or_parse_errors_and_the_parser_recovers(data: bytes, cut_points: list[int],
                                                                      banner: bool) -> None:
    parser = AMIParser(max_message_bytes=SMALL, expect_banner=banner)
    items = feed_all(parser, data + SENTINEL, cut_points)
    # After any junk, a blank line and a good message: that message is read.
    events = [i for i in items if isinstance(i, AMIMessage)]
    assert events and events[-1].name == "FuzzCheck" and events[-1].get("Seq") == "1"
    left = parser.feed_eof()
    assert all(isinstance(e, ParseError) and e.reason for e in left)


@fuzz_settings(200)
@given(data=streams, banner=st.booleans())
def test_a_stream_cut_anywhere_ends_with_at_most_one_clear_error(data: bytes, banner: bool) -> None:
    parser = AMIParser(max_message_bytes=SMALL, expect_banner=banner)
    check_items(parser.feed(data))
    left = parser.feed_eof()
    assert len(left) <= 1 and all(e.reason for e in left)
    assert parser.buffered == 0


def test_an_endless_message_is_discarded_in_bounded_memory_and_linear_time() -> None:
    """50 MB without a blank line in 64 KB reads: the buffer stays under the limit, memory flat, time linear."""
    parser = AMIParser(max_message_bytes=65_536, expect_banner=False)
    chunk = b"Key: " + b"v" * 65_000 + b"\r\n"
    tracemalloc.start()
    try:
        start = time.process_time()
        errors = 0
        for _ in range(800):
            errors += len(parser.feed(chunk))
            assert parser.buffered <= 65_536
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.process_time() - start < 5
    assert peak < 1_000_000, peak
    assert errors == 0  # one error for the whole discarded run, given when it ends:
    items = parser.feed(b"\r\n\r\nEvent: Next\r\n\r\n")
    assert isinstance(items[0], ParseError) and "longer than 65536 bytes" in items[0].reason
    assert isinstance(items[1], AMIMessage) and items[1].name == "Next"


def test_unterminated_command_output_is_bounded() -> None:
    """``Response: Follows`` with no ``--END COMMAND--``: held up to the limit, then dropped with an error."""
    parser = AMIParser(max_message_bytes=4096, expect_banner=False)
    items = parser.feed(b"Response: Follows\r\nPrivilege: Command\r\n\r\n")
    for _ in range(600):
        items += parser.feed(b"line of output\r\n\r\n")
        assert parser.buffered <= 4096
    errors = [i for i in items if isinstance(i, ParseError)]
    assert errors and "Command output longer than 4096 bytes" in errors[0].reason
    assert all(e.reason for e in errors)  # then each orphan line: "line 1 of a message has no 'Key:'"


@fuzz_settings(200)
@given(data=streams, cut_points=cuts, banner=st.booleans())
@example(data=b"Response: Follows\r\n" + SENTINEL, cut_points=[23], banner=False)
def test_mutated_streams_parse_the_same_at_any_split(data: bytes, cut_points: list[int], banner: bool) -> None:
    """Junk and mutated transcripts give the same items whatever the read boundaries."""
    whole = snapshot(parse_split(data, [], expect_banner=banner))
    assert snapshot(parse_split(data, cut_points, expect_banner=banner)) == whole


@pytest.mark.parametrize("line", [b"Key:x y", b"Key:x y: z", b"Application:\x00 AppDial2", b"K:\xc3\xa9 \xc3\xa9"])
def test_a_header_without_a_space_after_its_colon_reads_the_same_on_both_paths(line: bytes) -> None:
    """Found by the split fuzz: "Key:x y" (no space after the first ':' but one later) was the key "Key:x y"
    on the fast path and "Key" = "x y" line by line (a leading blank line, another read boundary)."""
    data = b"Event: Newexten\r\n" + line + b"\r\nUniqueid: 1.2\r\n\r\n"
    fast = AMIParser(expect_banner=False).feed(data)
    careful = AMIParser(expect_banner=False).feed(b"\r\n" + data)
    assert snapshot(fast) == snapshot(careful)
    key = line.split(b":")[0].decode()
    again = AMIParser(expect_banner=False).feed(data)[0]
    assert isinstance(again, AMIMessage) and isinstance(careful[0], AMIMessage)
    assert again.get(key) == careful[0].get(key) and again.get("Uniqueid") == "1.2"
