"""Lead lists: a CSV file of leads, or the demo customers. Parsing is pure (text in, leads and errors out);
``read_source`` is the one function that touches the file system. Must not import the engine's shell
(``dialer.shell``), the store, Twisted or the server.

CSV: a header row, then one lead per row. ``number`` (or ``phone``) is required; ``id`` (or ``lead_id``)
names the lead (default: the number); ``timezone`` (IANA) sets its calling window's zone; every other
column is kept as a lead field for the agent's screen pop. A broken row is reported as ``file:line:
message`` and skipped; the other rows load.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_timezones

from dialer.campaign import Lead

MAX_FILE_BYTES = 64 * 1024 * 1024  # a lead file larger than this is refused whole
MAX_ROWS = 1_000_000
MAX_COLUMNS = 50
MAX_VALUE = 500  # characters per field value
MAX_ERRORS = 100  # errors kept verbatim; beyond that they are counted

LEAD_ID_RE = re.compile(r"[A-Za-z0-9_.+-]{1,64}")
NUMBER_RE = re.compile(r"\+?[0-9]{3,20}")
_PUNCTUATION = str.maketrans("", "", " -().\t")


STORE_ONLY = "store"  # a campaign's ``leads:`` when its leads come only from ``cti leads import``


class LeadSourceError(Exception):
    """The lead source as a whole is unusable (missing file, too large, no number column)."""


def normalise_number(raw: str) -> str | None:
    """``+1 (555) 010-0100`` -> ``+15550100100``; None when it is not a phone number."""
    number = raw.strip().translate(_PUNCTUATION)
    return number if NUMBER_RE.fullmatch(number) else None


def e164(raw: str, region: str) -> str | None:
    """``(555) 010-0100`` in region US -> ``+15550100100``: the number in E.164, or None when it is not a valid
    number (``region``: ISO 3166 code for numbers written without a leading +)."""
    text = raw.strip()
    if not text or len(text) > 40:
        return None
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def number_zones(number: str) -> list[str]:
    """The IANA time zones an E.164 number may ring in (phonenumbers' data; several for a number whose area
    spans zones); [] when unknown."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return []
    zones = [z for z in number_timezones.time_zones_for_number(parsed) if z != "Etc/Unknown"]
    return sorted(z for z in set(zones) if is_zone(z))


_ZONES: dict[str, bool] = {}


def is_zone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this system can load."""
    known = _ZONES.get(name)
    if known is None:
        try:
            ZoneInfo(name)
            known = True
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: e.g. a name too long for a file
            known = False
        if len(_ZONES) < 10_000:
            _ZONES[name] = known
    return known


def parse_leads_csv(text: str, filename: str = "<leads>") -> tuple[list[Lead], list[str]]:
    """Leads from CSV text, and one ``file:line: message`` per rejected row (at most MAX_ERRORS, then a count)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise LeadSourceError(f"{filename}: empty file, expected a header row with a number column") from None
    except csv.Error as exc:
        raise LeadSourceError(f"{filename}:1: unreadable header: {exc}") from None
    columns = [h.strip().lower() for h in header]
    if len(columns) > MAX_COLUMNS:
        raise LeadSourceError(f"{filename}:1: {len(columns)} columns, at most {MAX_COLUMNS}")
    number_col = next((columns.index(c) for c in ("number", "phone") if c in columns), None)
    if number_col is None:
        raise LeadSourceError(f"{filename}:1: no 'number' (or 'phone') column in the header")
    id_col = next((columns.index(c) for c in ("id", "lead_id") if c in columns), None)
    tz_col = columns.index("timezone") if "timezone" in columns else None
    leads: list[Lead] = []
    errors: list[str] = []
    dropped = 0
    seen: dict[str, int] = {}
    zones: dict[str, bool] = {}

    def reject(line: int, message: str) -> None:
        nonlocal dropped
        if len(errors) < MAX_ERRORS:
            errors.append(f"{filename}:{line}: {message}")
        else:
            dropped += 1

    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            reject(reader.line_num, f"unreadable row: {exc}")
            continue
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(leads) >= MAX_ROWS:
            reject(line, f"more than {MAX_ROWS} leads; the rest of the file is ignored")
            break
        if len(row) != len(columns):
            reject(line, f"{len(row)} fields, the header has {len(columns)}")
            continue
        if any(len(cell) > MAX_VALUE for cell in row):
            reject(line, f"a value longer than {MAX_VALUE} characters")
            continue
        number = normalise_number(row[number_col])
        if number is None:
            reject(line, f"not a phone number: {row[number_col][:40]!r}")
            continue
        lead_id = row[id_col].strip() if id_col is not None else number
        if not LEAD_ID_RE.fullmatch(lead_id):
            reject(line, f"bad lead id {lead_id[:40]!r}: 1-64 letters, digits, _ . + -")
            continue
        if lead_id in seen:
            reject(line, f"lead {lead_id!r} again (first on line {seen[lead_id]})")
            continue
        tz = row[tz_col].strip() if tz_col is not None else ""
        if tz:
            if tz not in zones:
                try:
                    ZoneInfo(tz)
                    zones[tz] = True
                except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: e.g. a name too long for a file
                    zones[tz] = False
            if not zones[tz]:
                reject(line, f"unknown time zone {tz[:40]!r}")
                continue
        seen[lead_id] = line
        skip = {number_col, id_col, tz_col}
        fields = {columns[i]: cell.strip() for i, cell in enumerate(row) if i not in skip and columns[i]}
        leads.append(Lead(lead_id, number, fields, tz))
    if dropped:
        errors.append(f"{filename}: {dropped} more rejected rows not listed")
    return leads, errors


#: Where ``"demo"`` leads come from: ``n`` -> leads. The application hands it over (the demo's leads are its
#: customers, which the dialer does not know).
DemoLeads = Callable[[int], list[Lead]]


def read_source(source: str, demo_count: int, base_dir: Path | None = None,
                demo: DemoLeads | None = None) -> tuple[list[Lead], list[str]]:
    """The leads a campaign names: ``"demo"`` (from ``demo``), ``"store"`` (none here: only those ``cti leads
    import`` put in the database) or a CSV path (relative paths from ``base_dir``)."""
    if source == STORE_ONLY:
        return [], []
    if source == "demo":
        if demo is None:
            raise LeadSourceError('"demo" leads: this process has no demo customers to call')
        return demo(demo_count), []
    path = Path(source)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise LeadSourceError(f"{path}: {size} bytes, lead files are limited to {MAX_FILE_BYTES}")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LeadSourceError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise LeadSourceError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise LeadSourceError(f"{path}: cannot read: {exc.__class__.__name__}") from None
    return parse_leads_csv(text, str(path))
