"""Calling windows for tests that run on the wall clock: campaigns may dial only 08:00-21:00 local time."""

from __future__ import annotations

from datetime import UTC, datetime


def noon_zone(now: float) -> str:
    """A fixed-offset zone where it is about noon at ``now``: the campaign may dial whenever the test runs."""
    offset = 12 - datetime.fromtimestamp(now, UTC).hour  # hours east of UTC
    offset = max(-12, min(14, offset if offset <= 12 else offset - 24))
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # the POSIX sign: Etc/GMT-3 is UTC+3
