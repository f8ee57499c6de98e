"""Test helper for tests/test_fuzz_*.py: hypothesis strategies that mutate valid inputs byte by byte.

``mutated(seeds)`` takes real examples (recorded transcripts, documented frames, example configs, small CSVs)
and applies a few mutations to one of them: flip a byte, insert junk (NUL, CR/LF mixes, invalid UTF-8, a huge
number, a long run), delete or duplicate a slice, truncate. ``junk()`` is plain random bytes. The suite's
settings: derandomized (the same examples on every run, so CI is reproducible) and a per-example budget.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# What an attacker or a broken peer tends to send: control bytes, line-end mixes, bad UTF-8, huge numbers.
NASTY = [
    b"\x00", b"\r", b"\n", b"\r\n", b"\n\r", b"\r\n\r\n", b"\n\n", b"\xff", b"\xc3", b"\xc3\x28", b"\xed\xa0\x80",
    b"\xef\xbb\xbf", b":", b": ", b"\"", b",", b"'", b"\\", b"{", b"}", b"[", b"]", b"&a", b"*a", b"!!python/object",
    b"9" * 5000, b"-" + b"9" * 400, b"1e999999", b"x" * 70_000, b"\t", b"\x7f", b"%", b"${HOME}", b"\xe2\x80\xae",
]

insertion = st.one_of(st.sampled_from(NASTY), st.binary(min_size=1, max_size=24))


@st.composite
def mutate(draw: st.DrawFn, data: bytes, max_mutations: int = 4) -> bytes:
    """``data`` with 1..max_mutations random edits."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, max_mutations))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate"]))
        pos = draw(st.integers(0, len(buf)))
        if op == "flip" and buf:
            i = min(pos, len(buf) - 1)
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            buf[pos:pos] = draw(insertion)
        elif op == "delete" and buf:
            buf[pos:pos + draw(st.integers(1, 64))] = b""
        elif op == "duplicate" and buf:
            size = draw(st.integers(1, 256))
            buf[pos:pos] = buf[pos:pos + size] * draw(st.integers(1, 8))
        elif op == "truncate":
            del buf[pos:]
    return bytes(buf)


def mutated(seeds: Sequence[bytes], max_mutations: int = 4) -> st.SearchStrategy[bytes]:
    return st.sampled_from(list(seeds)).flatmap(lambda seed: mutate(seed, max_mutations))


def junk(max_size: int = 2000) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=max_size)


# CTI_FUZZ_SCALE=20 runs twenty times the examples, with fresh random ones (a deeper run by hand; CI keeps 1).
SCALE = float(os.environ.get("CTI_FUZZ_SCALE", "1"))


def fuzz_settings(max_examples: int, deadline_ms: int = 2000) -> settings:
    """Reproducible (derandomized) with a per-example deadline: a hang or a slow path fails the test."""
    return settings(max_examples=max(1, int(max_examples * SCALE)), derandomize=SCALE == 1, deadline=deadline_ms,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])
