"""CSV import of customers: parse, validate and normalise each row, report bad rows, upsert the good ones.

No SQL here (the store writes) and no event loop. The file is streamed; only keys seen so far are kept.

File format: UTF-8 (a BOM is fine; ``encoding=`` for others), comma-separated, a header row naming the
columns (case and spaces ignored). The columns ``external_id`` and/or ``account`` identify a customer
(the key is the external id, else the first account number), so importing the same file again updates
and never duplicates. Calls find customers by phone number or account, so a header with neither a phone
column nor an ``account`` column is refused. Known columns: ``external_id, first_name, last_name, company,
email, language, segment, notes, phone, mobile, home_phone, work_phone, account, product, account_status``. Phone and
account cells may list several values separated by ``;``. Any other column is kept as a customer
attribute. A row is rejected as a whole with every reason found; the other rows still import.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cti.csv_lines import OVERSIZE, capped_lines
from screenpop.phone import PhoneError, normalise_strict
from screenpop.records import AccountRecord, CustomerInput, PhoneRecord
from screenpop.store import MAX_NOTES, CustomerStore, account_key

PHONE_COLUMNS = {"phone": "main", "mobile": "mobile", "home_phone": "home", "work_phone": "work"}
TEXT_LIMITS = {
    "external_id": 64, "first_name": 100, "last_name": 100, "company": 200, "email": 254, "language": 16,
    "segment": 64, "notes": MAX_NOTES, "product": 64, "account_status": 32,
}
KNOWN_COLUMNS = frozenset(TEXT_LIMITS) | frozenset(PHONE_COLUMNS) | {"account"}
MAX_COLUMNS = 200
MAX_ATTRIBUTE_VALUE = 1000
MAX_CELL = 1000  # phone and account cells
MAX_VALUES_PER_CELL = 10
MAX_LINE = 1 << 20  # characters in one physical line; longer lines are skipped and reported
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ACCOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .\-/]*$")


@dataclass
class ImportReport:
    """Outcome of one import. ``skipped`` counts rows identical to what the store already held."""

    imported: int = 0
    updated: int = 0
    skipped: int = 0
    bad_rows: list[tuple[int, str]] = field(default_factory=list)
    rows_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.bad_rows

    def summary(self, name: str) -> str:
        return (f"{name}: {self.rows_read} rows read: {self.imported} imported, {self.updated} updated, "
                f"{self.skipped} unchanged, {len(self.bad_rows)} bad")


def _show(value: str, limit: int = 32) -> str:
    text = value if len(value) <= limit else value[: limit - 3] + "..."
    return repr(text.encode("utf-8", "backslashreplace").decode("utf-8"))


def _column_name(raw: str) -> str:
    return re.sub(r"\s+", "_", raw.strip().lower())


def check_header(header: list[str]) -> tuple[list[str], str | None]:
    """Normalised column names, or a reason the header cannot be used."""
    if any(_has_surrogates(h) for h in header):
        return [], "header is not valid UTF-8 (is the file in another encoding? see --encoding)"
    names = [_column_name(h) for h in header]
    if len(names) > MAX_COLUMNS:
        return [], f"{len(names)} columns (limit {MAX_COLUMNS})"
    for i, name in enumerate(names, 1):
        if not name:
            return [], f"column {i} of the header has no name"
        if len(name) > 64:
            return [], f"column {i} of the header is longer than 64 characters"
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        return [], f"duplicate column(s) in the header: {', '.join(dupes)}"
    if "external_id" not in names and "account" not in names:
        return [], "the header needs an external_id or an account column to identify customers"
    if "account" not in names and not set(PHONE_COLUMNS) & set(names):
        return [], ("the header has no phone column (" + ", ".join(PHONE_COLUMNS) + ") and no account column: "
                    "calls find customers by the caller's number or the account entered, so no call could "
                    "ever find these customers")
    return names, None


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def parse_row(names: list[str], row: list[str], region: str) -> tuple[CustomerInput | None, list[str]]:
    """One data row to a ``CustomerInput``, or the list of reasons it is bad."""
    if len(row) != len(names):
        return None, [f"expected {len(names)} columns, got {len(row)}"]
    errors: list[str] = []
    cells: dict[str, str] = {}
    for name, raw in zip(names, row, strict=True):
        if _has_surrogates(raw):
            errors.append(f"column {name} is not valid UTF-8")
            continue
        if "\x00" in raw:
            errors.append(f"column {name} contains a NUL character")
            continue
        value = raw.strip()
        limit = TEXT_LIMITS.get(name, MAX_CELL if name in KNOWN_COLUMNS else MAX_ATTRIBUTE_VALUE)
        if len(value) > limit:
            errors.append(f"column {name} is {len(value)} characters long (limit {limit})")
            continue
        cells[name] = value
    phones: dict[str, PhoneRecord] = {}
    for column, kind in PHONE_COLUMNS.items():
        values = [v.strip() for v in cells.get(column, "").split(";") if v.strip()]
        if len(values) > MAX_VALUES_PER_CELL:
            errors.append(f"column {column} lists more than {MAX_VALUES_PER_CELL} numbers")
            continue
        for value in values:
            try:
                e164 = normalise_strict(value, region)
            except PhoneError as exc:
                errors.append(f"column {column}: bad phone {_show(value)}: {exc}")
                continue
            phones.setdefault(e164, PhoneRecord(e164, kind))
    accounts: dict[str, AccountRecord] = {}
    numbers = [v.strip() for v in cells.get("account", "").split(";") if v.strip()]
    if len(numbers) > MAX_VALUES_PER_CELL:
        errors.append(f"column account lists more than {MAX_VALUES_PER_CELL} accounts")
        numbers = []
    for number in numbers:
        if not _ACCOUNT.match(number) or len(account_key(number)) > 64:
            errors.append(f"column account: bad account number {_show(number)}")
            continue
        accounts.setdefault(account_key(number), AccountRecord(number, cells.get("product", ""),
                                                               cells.get("account_status", "")))
    email = cells.get("email", "")
    if email and not _EMAIL.match(email):
        errors.append(f"column email: not an e-mail address {_show(email)}")
    external_id = cells.get("external_id", "") or None
    if not errors and external_id is None and not accounts:
        errors.append("no external_id or account to identify the customer")
    if errors:
        return None, errors
    attributes = tuple(sorted((k, v) for k, v in cells.items() if k not in KNOWN_COLUMNS and v))
    return CustomerInput(
        external_id=external_id, first_name=cells.get("first_name", ""), last_name=cells.get("last_name", ""),
        company=cells.get("company", ""), email=email, language=cells.get("language", ""),
        segment=cells.get("segment", ""), notes=cells.get("notes", ""), phones=tuple(phones.values()),
        accounts=tuple(accounts.values()), attributes=attributes,
    ), []


class _DuplicateCheck:
    """Rows of one file that name the same customer or account as an earlier row."""

    def __init__(self) -> None:
        self.by_key: dict[str, tuple[int, CustomerInput]] = {}
        self.accounts: dict[str, tuple[int, str]] = {}

    def check(self, line: int, inp: CustomerInput) -> str | None:
        key = f"external_id {inp.external_id}" if inp.external_id else f"account {inp.accounts[0].number}"
        earlier = self.by_key.get(key)
        if earlier is not None:
            if earlier[1] == inp:
                return f"duplicate of line {earlier[0]}"
            return f"{key} is also on line {earlier[0]}"
        for acct in inp.accounts:
            seen = self.accounts.get(account_key(acct.number))
            if seen is not None and seen[1] != key:
                return f"account {acct.number} is also on line {seen[0]}"
        self.by_key[key] = (line, inp)
        for acct in inp.accounts:
            self.accounts.setdefault(account_key(acct.number), (line, key))
        return None


def _rows(reader: Iterator[list[str]], line_of: list[int]) -> Iterator[tuple[int, list[str] | None, str]]:
    """(first line of the row, fields or None, csv error) for each row after the header."""
    reader_obj = reader
    while True:
        start = line_of[0] + 1
        try:
            row = next(reader_obj)
        except StopIteration:
            return
        except csv.Error as exc:
            line_of[0] = reader_obj.line_num  # type: ignore[attr-defined]
            text = str(exc)
            if "field larger than field limit" in text:
                text = f"a field is longer than {csv.field_size_limit()} characters"
            yield start, None, f"unreadable CSV row: {text}"
            continue
        line_of[0] = reader_obj.line_num  # type: ignore[attr-defined]
        if row == [OVERSIZE]:
            yield start, None, f"line longer than {MAX_LINE} characters"
            continue
        yield start, row, ""


def _read_header(reader: Iterator[list[str]], line_of: list[int]) -> tuple[list[str] | None, tuple[int, str] | None]:
    """The file's normalised column names, or (line, reason) the header cannot be used."""
    for line, row, error in _rows(reader, line_of):
        if error or row is None:
            return None, (line, error)
        if not row or all(not c.strip() for c in row):
            continue  # blank lines before the header
        names, problem = check_header(row)
        if problem:
            return None, (line, problem)
        return names, None
    return None, (1, "empty file: no header row")


def header_problem(path: str | os.PathLike[str], encoding: str = "utf-8") -> tuple[int, str] | None:
    """(line, reason) if the CSV file's header cannot be imported, else None: lets a command refuse a file
    before it opens (or creates) a database. Raises ``OSError``/``LookupError`` like ``import_csv``."""
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding,
                                errors="surrogateescape", newline="")
        try:
            return _read_header(csv.reader(capped_lines(text, MAX_LINE)), [0])[1]
        finally:
            text.detach()


def import_csv(
    path: str | os.PathLike[str],
    store: CustomerStore,
    progress: bool = False,
    *,
    region: str = "US",
    encoding: str = "utf-8",
    batch_size: int = 500,
    progress_file: IO[str] | None = None,
) -> ImportReport:
    """Import the customers of the CSV file at ``path`` into ``store`` (see the module docstring).

    Bad rows are reported with their first line number (the header is line 1) and every reason
    found; good rows are imported whatever the bad ones. Raises ``OSError`` if the file cannot be read.
    """
    from tqdm import tqdm

    report = ImportReport()
    size = Path(path).stat().st_size
    with open(path, "rb") as raw, tqdm(total=size, unit="B", unit_scale=True, desc="customers",
                                        disable=not progress, file=progress_file or sys.stderr) as bar:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding,
                                errors="surrogateescape", newline="")
        reader = csv.reader(capped_lines(text, MAX_LINE))
        line_of = [0]
        header, bad = _read_header(reader, line_of)
        if header is None:
            assert bad is not None
            report.bad_rows.append(bad)
            return report
        dupes = _DuplicateCheck()
        batch: list[tuple[int, CustomerInput]] = []
        done = 0
        for line, row, error in _rows(reader, line_of):
            if row is not None and all(not cell.strip() for cell in row):
                continue  # blank line, or a spreadsheet's row of empty cells
            report.rows_read += 1
            if error or row is None:
                report.bad_rows.append((line, error))
                continue
            inp, reasons = parse_row(header, row, region)
            if inp is None:
                report.bad_rows.append((line, "; ".join(reasons)))
                continue
            clash = dupes.check(line, inp)
            if clash:
                report.bad_rows.append((line, clash))
                continue
            batch.append((line, inp))
            if len(batch) >= batch_size:
                _flush(store, batch, report)
                batch.clear()
                pos = raw.tell()
                bar.update(pos - done)
                done = pos
        _flush(store, batch, report)
        bar.update(size - done)
        text.detach()
    report.bad_rows.sort()
    return report


def _flush(store: CustomerStore, batch: list[tuple[int, CustomerInput]], report: ImportReport) -> None:
    if not batch:
        return
    outcomes = store.upsert_customers([inp for _, inp in batch])
    for (line, _), out in zip(batch, outcomes, strict=True):
        if out.kind == "created":
            report.imported += 1
        elif out.kind == "updated":
            report.updated += 1
        elif out.kind == "unchanged":
            report.skipped += 1
        else:
            report.bad_rows.append((line, out.reason))
