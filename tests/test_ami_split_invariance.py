"""The AMI codec gives the same items whatever the read boundaries: a property on nasty streams and the transcripts."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti.ami.message import AMIMessage
from cti.ami.protocol import AMIParser, Banner, ParseError
from tests.conftest import FIXTURES
from tests.transcripts import AMI_TRANSCRIPTS

Item = AMIMessage | Banner | ParseError


def snapshot(items: list[Item]) -> list[object]:
    """What a consumer can observe of each item: kind, name, headers and how each header was decoded."""
    out: list[object] = []
    for item in items:
        if isinstance(item, AMIMessage):
            out.append((item.kind, item.name, list(item.headers), [item.decoding(k) for k, _ in item.headers],
                        [item.raw(k) for k, _ in item.headers]))
        else:
            out.append(item)
    return out


def parse_split(data: bytes, cuts: list[int], *, expect_banner: bool = True) -> list[Item]:
    parser = AMIParser(expect_banner=expect_banner)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    items: list[Item] = []
    for a, b in zip(points, points[1:], strict=False):
        items.extend(parser.feed(data[a:b]))
    return items


# Lines that have made the codec depend on read boundaries, and their neighbours.
LINES = [
    b"Event: Newchannel",
    b"Response: Success",
    b"Action: Ping",
    b"ActionID: a-1",
    b"Channel: PJSIP/1001-0000000a",
    b"Key:x: y",  # several colons, the first one without a space
    b"AppData: agi://127.0.0.1:4573/main?dnis=5000",
    b"Output: Name: x: y",
    b"Output:    indented",
    b"Key:value",
    b"Empty:",
    b"Empty: ",
    b"no colon at all",
    b": no key",
    b"CallerIDName: M\xfcller",  # latin-1
    b"Value: caf\xc3\xa9 \xe2\x82\xac",  # UTF-8
    b"Bad: \xff\xfe",
    b"Bare: line\nwith LF",
    b"Event: ChallengeResponseFailed",
    b"Asterisk Call Manager/11.0.0",
]
LEGACY = (
    b"Response: Follows\r\nPrivilege: Command\r\nActionID: cmd-1\r\n"
    b"Name: one\n\nafter blank: \xe9\r\n\r\nlast\n--END COMMAND--\r\n\r\n"
)

message = st.lists(st.sampled_from(LINES), min_size=1, max_size=6).map(lambda ls: b"\r\n".join(ls) + b"\r\n\r\n")
chunk = st.one_of(message, message, message, st.just(b"\r\n"), st.just(LEGACY))
stream = st.lists(chunk, min_size=1, max_size=8).map(b"".join)
cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=16)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=stream, cut_points=cuts, banner=st.booleans())
def test_constructed_streams_parse_the_same_at_any_split(data: bytes, cut_points: list[int], banner: bool) -> None:
    """Streams of odd lines (several colons, no colon, no key), mixed UTF-8 and latin-1 values, extra CRLF
    between messages and legacy Command output give identical items (same headers, same decodings, same
    errors) at any read boundaries, including one byte at a time."""
    if banner:
        data = b"Asterisk Call Manager/11.0.0\r\n" + data
    whole = snapshot(parse_split(data, [], expect_banner=banner))
    assert snapshot(parse_split(data, cut_points, expect_banner=banner)) == whole
    assert snapshot(parse_split(data, list(range(len(data))), expect_banner=banner)) == whole


@given(first=message, second=message)
def test_a_message_parses_the_same_alone_or_after_another(first: bytes, second: bytes) -> None:
    """A message's items do not depend on which message came before it in the same read (a non-UTF-8
    neighbour used to switch a whole read to another parsing path)."""
    alone = snapshot(AMIParser(expect_banner=False).feed(second))
    parser = AMIParser(expect_banner=False)
    n_first = len(parser.feed(first))
    together = AMIParser(expect_banner=False).feed(first + second)
    assert snapshot(together[n_first:]) == alone


@cache
def _transcript(name: str) -> tuple[bytes, tuple[object, ...]]:
    data = (Path(FIXTURES) / f"{name}.txt").read_bytes()
    return data, tuple(snapshot(parse_split(data, [])))


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(AMI_TRANSCRIPTS)), cut_points=st.lists(st.integers(min_value=0), max_size=40))
def test_transcripts_parse_the_same_at_any_split(name: str, cut_points: list[int]) -> None:
    """Every AMI transcript in tests/fixtures/asterisk gives the same items at arbitrary read boundaries."""
    data, whole = _transcript(name)
    assert tuple(snapshot(parse_split(data, cut_points))) == whole
