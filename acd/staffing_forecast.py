"""A staffing forecast read from CSV: a header naming ``start``, ``calls``, ``aht`` (seconds) and optionally
``patience`` (seconds) and ``queue``, then one row per interval. Reads text only (the caller opens the
file); every bad row is reported as ``file:line: what was expected``. Limits: lines of ``MAX_LINE``
characters, ``MAX_ROWS`` rows."""

from __future__ import annotations

import csv
import math
import re
from typing import IO

from acd.staffing import ForecastInterval
from cti.csv_lines import OVERSIZE, capped_lines

MAX_LINE = 1000
MAX_ROWS = 100_000  # a year of 15-minute intervals for a few queues
MAX_ERRORS = 20  # bad rows reported before giving up

COLUMNS = {"start": ("start", "interval", "interval_start", "time"), "calls": ("calls", "offered", "volume"),
           "aht": ("aht", "aht_seconds", "handle_time"), "patience": ("patience", "patience_seconds"),
           "queue": ("queue",)}
START_RE = re.compile(r"(?:(\d{4}-\d{2}-\d{2})[ T])?(\d{1,2}):(\d{2})(?::(\d{2}))?")


class ForecastError(ValueError):
    """A forecast file that cannot be used; the message names each bad line."""


def _header(row: list[str], where: str) -> dict[str, int]:
    names = [c.strip().lower() for c in row]
    cols = {}
    for key, aliases in COLUMNS.items():
        col = next((names.index(a) for a in aliases if a in names), None)
        if col is not None:
            cols[key] = col
    missing = [k for k in ("start", "calls", "aht") if k not in cols]
    if missing:
        raise ForecastError(f"{where}:1: expected a header naming start, calls and aht (seconds), optionally "
                            f"patience and queue; missing {', '.join(missing)} in {','.join(names)[:120]!r}")
    return cols


def _number(text: str, what: str, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what}: expected a number, got {text.strip()[:30]!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0) or value > 1e7:
        raise ValueError(f"{what}: expected a number {'>' if positive else '>='} 0, got {text.strip()[:30]!r}")
    return value


def _start(text: str, interval_minutes: int) -> str:
    m = START_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"start: expected HH:MM or YYYY-MM-DD HH:MM, got {text.strip()[:30]!r}")
    day, hour, minute, second = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4) or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"start: not a time of day: {text.strip()[:30]!r}")
    if (hour * 60 + minute) % interval_minutes or second:
        raise ValueError(f"start: {text.strip()[:30]!r} is not on a {interval_minutes}-minute boundary (--interval)")
    return f"{day + ' ' if day else ''}{hour:02d}:{minute:02d}"


def read_forecast(text: IO[str], where: str, interval_minutes: int) -> list[ForecastInterval]:
    """The intervals of a forecast CSV (``where`` names the file in errors)."""
    reader = csv.reader(capped_lines(text, MAX_LINE))
    errors: list[str] = []
    out: list[ForecastInterval] = []
    seen: dict[tuple[str, str], int] = {}
    cols: dict[str, int] | None = None
    width = 0
    line = 1
    while len(errors) < MAX_ERRORS:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(f"{where}:{line}: unreadable row: {exc}")
            line = reader.line_num + 1
            continue
        here, line = line, reader.line_num + 1
        if row == [OVERSIZE]:
            errors.append(f"{where}:{here}: line longer than {MAX_LINE} characters")
            continue
        if not row or all(not c.strip() for c in row):
            continue
        if cols is None:
            cols = _header(row, where)
            width = len(row)
            continue
        if len(out) >= MAX_ROWS:
            errors.append(f"{where}:{here}: more than {MAX_ROWS} intervals")
            break
        if len(row) != width:
            errors.append(f"{where}:{here}: {len(row)} fields, the header has {width}")
            continue
        try:
            patience_text = row[cols["patience"]].strip() if "patience" in cols else ""
            iv = ForecastInterval(
                start=_start(row[cols["start"]], interval_minutes),
                calls=_number(row[cols["calls"]], "calls", positive=False),
                aht=_number(row[cols["aht"]], "aht", positive=True),
                patience=_number(patience_text, "patience", positive=True) if patience_text else None,
                queue=row[cols["queue"]].strip()[:64] if "queue" in cols else "")
        except ValueError as e:
            errors.append(f"{where}:{here}: {e}")
            continue
        key = (iv.queue, iv.start)
        if key in seen:
            errors.append(f"{where}:{here}: interval {iv.start}{' of ' + iv.queue if iv.queue else ''} "
                          f"already given on line {seen[key]}")
            continue
        seen[key] = here
        out.append(iv)
    if cols is None and not errors:
        errors.append(f"{where}:1: empty file: expected a header naming start, calls and aht")
    if errors:
        more = [f"{where}: stopped after {MAX_ERRORS} errors"] if len(errors) >= MAX_ERRORS else []
        raise ForecastError("\n".join(errors + more))
    if not out:
        raise ForecastError(f"{where}: no intervals after the header")
    return out
