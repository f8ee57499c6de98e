"""Fuzz (issue 19): the CSV importers (customers for the screen pop, leads and do-not-call numbers for the
dialer) on mutated small valid files and random bytes, into real stores (SQLite).

Each import ends with a report whose every refused row has a line and a reason, or (leads, do-not-call)
with a ``LeadFileError`` saying why the whole file is refused; nothing else escapes; an endless line is
skipped in bounded memory. (The hand-written cases are tests/test_screenpop_importer.py and
tests/test_dialer_dnc.py.)
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from centre.database import upgrade
from cti.db import make_engine
from dialer.lead_import import LeadFileError, import_dnc, import_leads, parse_mapping
from dialer.store import DncStore, LeadStore
from screenpop.importer import header_problem, import_csv
from screenpop.store import CustomerStore
from tests.fuzzing import fuzz_settings, junk, mutated

T0 = 1_767_261_600.0
CUSTOMERS = [
    b"external_id,first_name,last_name,phone,mobile,account,email,notes,city\n"
    b"C1,Ann,Lee,(201) 555-0123,,ACC-1001,ann@example.com,,Newark\n"
    b'C2,Bob,Ng,2125550100,+1 212 555 0101;2125550100,ACC-2002;ACC-2003,,"VIP, ""gold""\nsince 2020",\n',
    b"\xef\xbb\xbfaccount,Phone , Company\r\nA-1,+44 20 7946 0000,Acme\r\nA-2,,\r\n",
]
LEADS = [
    b"Ref,Phone,Name,TZ\nA1,(212) 736-5000,Ann,\nA2,+44 20 7946 0000,Bob,Europe/London\n"
    b"A5,+1 415 555 2671,Mars,Mars/Olympus\nA6,+1 312 555 0100,Cy,America/Chicago America/New_York\n",
    b"number\n+15550100100\n+15550100101\n",
    b'id,number,notes\nx1,2125550100,"multi\nline"\nx2,2125550101,\n',
]
DNC = [b"number\n2125550100\n+442079460000\n", b"2125550100\n2125550101\n"]

pytestmark = pytest.mark.timeout(60)


class Stores:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fuzz-csv-"))
        url = f"sqlite:///{self.dir / 'fuzz.sqlite3'}"
        upgrade(url)
        engine = make_engine(url)
        self.customers = CustomerStore(engine)
        self.leads = LeadStore(engine)
        self.dnc = DncStore(engine)
        self.file = self.dir / "input.csv"

    def write(self, data: bytes) -> Path:
        self.file.write_bytes(data)
        return self.file


_stores: Stores | None = None


def stores() -> Stores:
    global _stores
    if _stores is None:
        _stores = Stores()
    return _stores


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    if _stores is not None:
        import shutil

        shutil.rmtree(_stores.dir, ignore_errors=True)


def check_rows(rows: list[tuple[int, str]], data: bytes) -> None:
    for line, reason in rows:
        assert 1 <= line <= data.count(b"\n") + data.count(b"\r") + 2, (line, reason)
        assert reason.strip()


@fuzz_settings(120)
@given(data=st.one_of(mutated(CUSTOMERS, 5), junk(600)))
@example(data=CUSTOMERS[0][:71] + b"," * 300 + b"\n")  # more columns than allowed
@example(data=CUSTOMERS[0] + b"C3," + b"x" * 200_000 + b"\n")  # a field over csv's limit
def test_customer_import_reports_every_bad_row(data: bytes) -> None:
    s = stores()
    path = s.write(data)
    problem = header_problem(path)  # what `cti customers import` checks before it opens the database
    assert problem is None or (problem[0] >= 1 and problem[1].strip())
    report = import_csv(path, s.customers)
    assert (problem is None) or report.bad_rows[0] == problem
    check_rows(report.bad_rows, data)
    assert report.imported + report.updated + report.skipped + len(report.bad_rows) >= report.rows_read - 1


@fuzz_settings(120)
@given(data=st.one_of(mutated(LEADS, 5), junk(600)), mapped=st.booleans())
@example(data=b"number\n" + b"x" * 200_000 + b"\n+15550100100\n", mapped=False)
def test_lead_import_reports_every_bad_row_or_refuses_the_file(data: bytes, mapped: bool) -> None:
    s = stores()
    mapping = parse_mapping("number=Phone,timezone=TZ,id=Ref") if mapped else None
    try:
        report = import_leads(s.write(data), s.leads, "fuzz", now=T0, mapping=mapping)
    except LeadFileError as exc:
        assert str(exc).strip() and str(exc).startswith(("line ", "empty file")), str(exc)
        return
    check_rows(report.bad, data)
    check_rows(report.skipped, data)


@fuzz_settings(80)
@given(data=st.one_of(mutated(DNC, 5), junk(400)))
def test_dnc_import_reports_every_bad_row_or_refuses_the_file(data: bytes) -> None:
    s = stores()
    try:
        report = import_dnc(s.write(data), s.dnc, now=T0, source="fuzz")
    except LeadFileError as exc:
        assert str(exc).strip()
        return
    check_rows(report.bad, data)


ENDLESS = 40 * 1024 * 1024  # one line, no line end


def endless_file(header: bytes) -> Path:
    path = stores().dir / "endless.csv"
    with path.open("wb") as f:
        f.write(header)
        chunk = b"9" * (1 << 20)
        for _ in range(ENDLESS // len(chunk)):
            f.write(chunk)
        f.write(b"\n" + header.splitlines()[-1] + b"\n")
    return path


@pytest.mark.parametrize("kind", ["customers", "leads", "dnc"])
def test_an_endless_line_is_skipped_in_bounded_memory(kind: str) -> None:
    """40 MB without a line end: that row is refused with a reason, memory stays a few MB, the row after it
    is read."""
    s = stores()
    header = {"customers": b"account,phone\n", "leads": b"number\n", "dnc": b"number\n"}[kind]
    path = endless_file(header + (b"A-9,2125550199\n" if kind == "customers" else b"2125550199\n"))
    tracemalloc.start()
    try:
        start = time.process_time()
        if kind == "customers":
            report = import_csv(path, s.customers)
            bad = report.bad_rows
        elif kind == "leads":
            lead_report = import_leads(path, s.leads, "endless", now=T0)
            bad = lead_report.bad
        else:
            dnc_report = import_dnc(path, s.dnc, now=T0, source="endless")
            bad = dnc_report.bad
        elapsed = time.process_time() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bad and all(reason for _, reason in bad)
    assert any("longer than" in reason for _, reason in bad), bad
    assert peak < 8 * 1024 * 1024, peak
    assert elapsed < 10
