"""argparse value types for the ``cti`` commands: each refuses a bad value with a message that says what
was expected (argparse prints it as ``cti demo: error: argument --duration: ...`` and exits 2).
No I/O, no imports from the engines.
"""

from __future__ import annotations

import argparse
import math
import re

PHONE_KEYS = frozenset("0123456789*#")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text[:20]!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text[:20]!r}")
    return value


def positive_seconds(text: str) -> float:
    """A duration in seconds, > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text[:20]!r}")
    return value


def positive_number(text: str) -> float:
    """A number > 0 (a speed factor, a rate)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text[:20]!r}")
    return value


def speed(text: str) -> float | str:
    """``max`` (virtual time) or a factor > 0."""
    if text.strip().lower() == "max":
        return "max"
    try:
        return positive_number(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a number > 0 or 'max', got {text[:20]!r}") from None


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (a count, a seed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:20]!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text[:20]!r}")
    return value


def phone_keys(text: str) -> list[str | None]:
    """IVR caller input: comma-separated entries of phone keys (0-9, *, #); an empty entry is silence and
    ``hangup`` hangs up."""
    if not text:
        return []
    keys: list[str | None] = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            keys.append(None)
        elif entry.lower() == "hangup":
            keys.append("hangup")
        elif set(entry) <= PHONE_KEYS:
            keys.append(entry)
        else:
            bad = "".join(sorted(set(entry) - PHONE_KEYS))[:10]
            raise argparse.ArgumentTypeError(
                f"{entry[:20]!r} is not phone keys: {bad!r} is not on a phone keypad (0-9, * and #; "
                "an empty entry is silence, 'hangup' hangs up)")
    return keys


def redis_url(text: str) -> str:
    """A ``redis://`` or ``rediss://`` URL (``cti serve --redis``); the value is never echoed (it may hold a
    password)."""
    if not re.match(r"^rediss?://\S+$", text):
        raise argparse.ArgumentTypeError("expected a redis:// or rediss:// URL")
    return text


def node_id(text: str) -> str:
    """A node id: letters, digits, _ . - (1-64 characters), as ``node.id`` in the configuration."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise argparse.ArgumentTypeError(f"expected a node id: letters, digits, _ . - (1-64 characters), "
                                         f"got {text[:20]!r}")
    return text
