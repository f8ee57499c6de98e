"""``cti leads import`` and ``cti dnc import`` as functions: a CSV file of leads (or of numbers) read row by
row into the dialer's store, one transaction per chunk. Reads the file and writes through the store it is
given; no event loop, no server. Must not import the dialer's shell.

Leads: a header row, then one lead per row. A column mapping (``number=Phone,timezone=TZ,id=Ref``) names the
file's columns for the lead's ``number`` (required), ``id`` (default: the number) and ``timezone`` (IANA,
several separated by spaces; default: the zones of the number, from phonenumbers' data); the other columns
are kept as the lead's fields. Numbers are normalised to E.164 (``region`` for numbers without +).

A row is refused with its line number and reason (not a number, a bad id or zone, the same lead or number
earlier in the file); a lead the campaign has already is counted as known (a re-import adds nothing); a
number the campaign has under another id, or on the do-not-call list, is skipped with its reason. Each chunk
is one transaction: a crash leaves whole chunks, and running the same import again resumes after them.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cti.csv_lines import OVERSIZE, capped_lines
from dialer.campaign import Lead
from dialer.leads import LEAD_ID_RE, MAX_COLUMNS, MAX_VALUE, e164, is_zone, number_zones
from dialer.store import DncStore, LeadStore

MAPPED = ("number", "id", "timezone")  # what a mapping may name
DEFAULT_COLUMNS = {"number": ("number", "phone"), "id": ("id", "lead_id"), "timezone": ("timezone", "tz")}
CHUNK = 1000  # rows per transaction
MAX_LINE = 64 * 1024  # characters in one physical line; a longer line is skipped (read in chunks) and refused


class LeadFileError(Exception):
    """The file as a whole cannot be imported (no header, a mapped column missing): nothing was written."""


@dataclass
class ImportReport:
    """What an import did: rows read, leads (or numbers) added, known already, skipped and refused."""

    rows: int = 0
    added: int = 0
    known: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, reason): duplicates, do-not-call
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line, reason): rows that are not leads

    def summary(self, name: str, what: str = "leads") -> str:
        return (f"{name}: {self.rows} rows, {self.added} {what} added, {self.known} known already, "
                f"{len(self.skipped)} skipped, {len(self.bad)} refused")


def parse_mapping(text: str | None) -> dict[str, str]:
    """``number=Phone,timezone=TZ`` -> {"number": "phone", "timezone": "tz"} (file columns compared without
    case); ``ValueError`` names what is wrong."""
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, column = part.partition("=")
        key, column = key.strip().lower(), column.strip().lower()
        if not sep or not column:
            raise ValueError(f"--map: {part.strip()!r} is not FIELD=COLUMN")
        if key not in MAPPED:
            raise ValueError(f"--map: unknown field {key!r}; map {', '.join(MAPPED)}")
        mapping[key] = column
    return mapping


def _columns(header: list[str], mapping: dict[str, str]) -> dict[str, int]:
    names = [h.strip().lower() for h in header]
    if len(names) > MAX_COLUMNS:
        raise LeadFileError(f"line 1: {len(names)} columns, at most {MAX_COLUMNS}")
    found: dict[str, int] = {}
    for key in MAPPED:
        if key in mapping:
            if mapping[key] not in names:
                raise LeadFileError(f"line 1: no column {mapping[key]!r} for {key} (columns: {', '.join(names)})")
            found[key] = names.index(mapping[key])
        else:
            col = next((names.index(c) for c in DEFAULT_COLUMNS[key] if c in names), None)
            if col is not None:
                found[key] = col
    if "number" not in found:
        raise LeadFileError("line 1: no number column: name one with --map number=COLUMN")
    return found


def _rows(text: IO[str], encoding: str = "utf-8") -> Iterator[tuple[int, list[str] | None, str]]:
    """(line, cells or None, error) per CSV row, the header included. A row with bytes that are not text in
    ``encoding`` (read with ``surrogateescape``) is an error naming the encoding, never silently altered."""
    reader = csv.reader(capped_lines(text, MAX_LINE))
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield line, None, f"unreadable row: {exc}"
            line = reader.line_num + 1
            continue
        if row == [OVERSIZE]:
            yield line, None, f"line longer than {MAX_LINE} characters"
            line = reader.line_num + 1
            continue
        try:
            "".join(row).encode("utf-8")
        except UnicodeEncodeError:
            yield line, None, f"not valid {encoding} text (another encoding? see --encoding)"
        else:
            yield line, row, ""
        line = reader.line_num + 1


def lead_from_row(row: list[str], names: list[str], cols: dict[str, int], region: str) -> tuple[Lead | None, str]:
    """The lead of one row, or the reason it is refused."""
    if len(row) != len(names):
        return None, f"{len(row)} fields, the header has {len(names)}"
    if any(len(cell) > MAX_VALUE for cell in row):
        return None, f"a value longer than {MAX_VALUE} characters"
    raw = row[cols["number"]]
    number = e164(raw, region)
    if number is None:
        return None, f"not a valid phone number: {raw.strip()[:40]!r}"
    lead_id = row[cols["id"]].strip() if "id" in cols else number
    if not LEAD_ID_RE.fullmatch(lead_id):
        return None, f"bad lead id {lead_id[:40]!r}: 1-64 letters, digits, _ . + -"
    zones = row[cols["timezone"]].split() if "timezone" in cols else []
    for zone in zones:
        if not is_zone(zone):
            return None, f"unknown time zone {zone[:40]!r}"
    if not zones:
        zones = number_zones(number)  # [] -> the campaign's zone
    skip = set(cols.values())
    fields = {names[i]: cell.strip() for i, cell in enumerate(row) if i not in skip and names[i]}
    return Lead(lead_id, number, fields, " ".join(zones)), ""


class _Reading:
    """A CSV file being imported: its rows (``_rows``) and the progress bar, advanced by the bytes read each
    time a chunk has been written (``chunk_written``) and to the end by ``_reading`` when the rows are done."""

    def __init__(self, rows: Iterator[tuple[int, list[str] | None, str]], raw: IO[bytes], bar: Any) -> None:
        self.rows = rows
        self._raw = raw
        self._bar = bar
        self._done = 0

    def chunk_written(self) -> None:
        self.advance(self._raw.tell())

    def advance(self, pos: int) -> None:
        self._bar.update(pos - self._done)
        self._done = pos


@contextmanager
def _reading(path: str | os.PathLike[str], desc: str, *, encoding: str, progress: bool,
             progress_file: IO[str] | None) -> Iterator[_Reading]:
    """Open the file for ``_rows`` (UTF-8 with or without a BOM, or ``encoding``) with a progress bar in bytes."""
    from tqdm import tqdm

    size = Path(path).stat().st_size
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    with open(path, "rb") as raw, tqdm(total=size, unit="B", unit_scale=True, desc=desc, disable=not progress,
                                        file=progress_file or sys.stderr) as bar:
        text = io.TextIOWrapper(raw, encoding=codec, errors="surrogateescape", newline="")
        reading = _Reading(_rows(text, encoding), raw, bar)
        yield reading
        reading.advance(size)
        text.detach()


def import_leads(path: str | os.PathLike[str], store: LeadStore, campaign: str, *, now: float,
                 mapping: dict[str, str] | None = None, region: str = "US", chunk: int = CHUNK,
                 encoding: str = "utf-8", progress: bool = False,
                 progress_file: IO[str] | None = None) -> ImportReport:
    """Import the CSV file's leads into ``campaign`` (see the module docstring). Raises ``LeadFileError`` for a
    file that cannot be imported at all (before anything is written), ``OSError`` when it cannot be read,
    ``LookupError`` for an unknown ``encoding``."""
    report = ImportReport()
    with _reading(path, f"leads {campaign}", encoding=encoding, progress=progress,
                  progress_file=progress_file) as reading:
        rows = reading.rows
        names: list[str] | None = None
        cols: dict[str, int] = {}
        for line, row, error in rows:
            if error or row is None:
                raise LeadFileError(f"line {line}: {error}")
            if any(cell.strip() for cell in row):
                names, cols = [h.strip().lower() for h in row], _columns(row, mapping or {})
                break
        if names is None:
            raise LeadFileError("empty file: no header row")
        batch: list[tuple[int, Lead]] = []
        seen_ids: dict[str, int] = {}
        seen_numbers: dict[str, int] = {}
        for line, row, error in rows:
            if row is not None and not any(cell.strip() for cell in row):
                continue
            report.rows += 1
            if error or row is None:
                report.bad.append((line, error))
                continue
            lead, reason = lead_from_row(row, names, cols, region)
            if lead is None:
                report.bad.append((line, reason))
                continue
            if lead.lead_id in seen_ids:
                report.bad.append((line, f"lead {lead.lead_id!r} again (first on line {seen_ids[lead.lead_id]})"))
                continue
            if lead.number in seen_numbers:
                report.skipped.append((line, f"{lead.number} again (first on line {seen_numbers[lead.number]})"))
                continue
            seen_ids[lead.lead_id] = seen_numbers[lead.number] = line
            batch.append((line, lead))
            if len(batch) >= chunk:
                _flush(store, campaign, batch, report, now)
                reading.chunk_written()
        _flush(store, campaign, batch, report, now)
    return report


def _flush(store: LeadStore, campaign: str, batch: list[tuple[int, Lead]], report: ImportReport,
           now: float) -> None:
    if not batch:
        return
    result = store.import_chunk(campaign, [lead for _, lead in batch], now)
    report.added += result.added
    report.known += len(result.known)
    for line, lead in batch:
        reason = result.skipped.get(lead.lead_id)
        if reason is not None:
            report.skipped.append((line, reason))
    batch.clear()


def import_dnc(path: str | os.PathLike[str], store: DncStore, *, now: float, source: str, region: str = "US",
               column: str | None = None, chunk: int = CHUNK, encoding: str = "utf-8", progress: bool = False,
               progress_file: IO[str] | None = None) -> ImportReport:
    """Add the numbers of a do-not-call list file to the store: one number per line, or a CSV file whose
    header names a ``number``/``phone`` column (or ``column``). Each chunk is one transaction."""
    report = ImportReport()
    with _reading(path, "do-not-call", encoding=encoding, progress=progress,
                  progress_file=progress_file) as reading:
        col: int | None = 0
        batch: list[str] = []
        first = True
        for line, row, error in reading.rows:
            if row is not None and not any(cell.strip() for cell in row):
                continue
            if first:
                first = False
                names = [c.strip().lower() for c in row or []]
                wanted = [column.lower()] if column else ["number", "phone"]
                col = next((names.index(c) for c in wanted if c in names), None)
                if col is not None:
                    continue  # a header row
                if column:
                    raise LeadFileError(f"line 1: no column {column!r}")
                if row is not None and e164(row[0], region) is None and len(row) > 1:
                    raise LeadFileError("line 1: no number column: name one with --column")
                col = 0
            report.rows += 1
            if error or row is None:
                report.bad.append((line, error))
                continue
            raw_number = row[col] if col < len(row) else ""
            number = e164(raw_number, region)
            if number is None:
                report.bad.append((line, f"not a valid phone number: {raw_number.strip()[:40]!r}"))
                continue
            batch.append(number)
            if len(batch) >= chunk:
                _flush_dnc(store, batch, report, now, source)
                reading.chunk_written()
        _flush_dnc(store, batch, report, now, source)
    return report


def _flush_dnc(store: DncStore, batch: list[str], report: ImportReport, now: float, source: str) -> None:
    if not batch:
        return
    added = store.add(batch, source, now)
    report.added += added
    report.known += len(batch) - added
    batch.clear()
