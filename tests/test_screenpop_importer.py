"""The CSV importer on good and broken files, with the exact report expected, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from screenpop.importer import ImportReport, import_csv
from screenpop.store import AccountRecord, CustomerStore, PhoneRecord
from tests.conftest import POSTGRES_URL
from tests.screenpop_db import database_fixtures

HEADER = b"external_id,first_name,last_name,phone,mobile,account,email,notes,city\n"
ANN = b"C1,Ann,Lee,(201) 555-0123,,ACC-1001,ann@example.com,,Newark\n"
BOB = b"C2,Bob,Ng,2125550100,+1 212 555 0101;2125550100,ACC-2002;ACC-2003,,VIP,\n"


db_url, store = database_fixtures(POSTGRES_URL)


def run(tmp_path: Path, store: CustomerStore, data: bytes, **kwargs) -> ImportReport:
    path = tmp_path / "customers.csv"
    path.write_bytes(data)
    return import_csv(path, store, **kwargs)


def test_good_file_imports_and_reimport_changes_nothing(tmp_path, store):
    """A clean file imports every row with phones in E.164, several numbers and accounts per cell and extra
    columns as attributes; importing it again creates nothing and reports every row unchanged."""
    report = run(tmp_path, store, HEADER + ANN + BOB)
    assert report == ImportReport(imported=2, updated=0, skipped=0, bad_rows=[], rows_read=2)
    bob = store.find_by_external_id("C2")
    assert bob.phones == (PhoneRecord("+12125550100", "main"), PhoneRecord("+12125550101", "mobile"))
    assert bob.accounts == (AccountRecord("ACC-2002"), AccountRecord("ACC-2003"))
    assert bob.notes == "VIP"
    assert store.find_by_external_id("C1").attributes == {"city": "Newark"}
    again = run(tmp_path, store, HEADER + ANN + BOB)
    assert again == ImportReport(imported=0, updated=0, skipped=2, bad_rows=[], rows_read=2)
    changed = run(tmp_path, store, HEADER + ANN.replace(b"Newark", b"Trenton") + BOB)
    assert (changed.imported, changed.updated, changed.skipped) == (0, 1, 1)
    assert store.count_customers() == 2


def test_broken_rows_are_reported_with_line_numbers_and_good_rows_imported(tmp_path, store):
    """Wrong column counts, a bad phone, a bad e-mail, a row with no key and bad UTF-8 are each reported with
    their line and every reason; the good rows around them are imported."""
    data = (HEADER + ANN
            + b"C3,Cy\n"                                                            # line 3
            + b"C4,Di,Ro,555-0100,,ACC-4,di@example,,\n"                            # line 4
            + b",Ed,,2125550102,,,,,\n"                                             # line 5
            + b"C6,Fran\xe7ois,Roy,2125550103,,ACC-6,,,,extra\n"                    # line 6
            + b"C7,G\xe9rard,Roy,2125550104,,ACC-7,,,\n"                            # line 7
            + BOB)                                                                  # line 8
    report = run(tmp_path, store, data)
    assert report.bad_rows == [
        (3, "expected 9 columns, got 2"),
        (4, "column phone: bad phone '555-0100': not a valid number for region US; "
            "column email: not an e-mail address 'di@example'"),
        (5, "no external_id or account to identify the customer"),
        (6, "expected 9 columns, got 10"),
        (7, "column first_name is not valid UTF-8"),
    ]
    assert (report.imported, report.updated, report.skipped, report.rows_read) == (2, 0, 0, 7)
    assert store.find_by_external_id("C7") is None


def test_other_encodings_import_with_the_encoding_option(tmp_path, store):
    """A Latin-1 file read with encoding='latin-1' imports its accented names intact."""
    report = run(tmp_path, store, HEADER + b"C7,G\xe9rard,Roy,2125550104,,ACC-7,,,\n", encoding="latin-1")
    assert report.ok and report.imported == 1
    assert store.find_by_external_id("C7").first_name == "Gérard"


def test_duplicate_rows_in_one_file(tmp_path, store):
    """A repeated identical row is reported as a duplicate; a second, different row for the same key or
    claiming another row's account is reported as a conflict; the first occurrence wins."""
    data = (HEADER + ANN + ANN                                          # lines 2, 3
            + ANN.replace(b"Ann", b"Anne")                              # line 4
            + b"C9,Zed,Ko,2125550109,,acc 1001,,,\n"                    # line 5
            + b",Nameless,,,,ACC-1001,,,\n")                            # line 6
    report = run(tmp_path, store, data)
    assert report.bad_rows == [
        (3, "duplicate of line 2"),
        (4, "external_id C1 is also on line 2"),
        (5, "account acc 1001 is also on line 2"),
        (6, "account ACC-1001 is also on line 2"),
    ]
    assert report.imported == 1
    assert store.find_by_external_id("C1").first_name == "Ann"


def test_account_owned_in_the_store_by_another_customer_is_a_bad_row(tmp_path, store):
    """A row whose account already belongs to another customer in the store is reported, not merged."""
    run(tmp_path, store, HEADER + ANN)
    report = run(tmp_path, store, HEADER + b"C5,Eve,Ma,,,ACC 1001,,,\n")
    assert report.bad_rows == [(2, "account ACC 1001 belongs to another customer (external_id C1)")]
    assert report.imported == 0


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file: no header row"),
    (b"\xef\xbb\xbf\n\n  \n", "empty file: no header row"),
    (b"first_name,last_name\nAnn,Lee\n", "the header needs an external_id or an account column to identify customers"),
    (b"external_id,first_name,city\nC1,Ann,Rome\n",
     "the header has no phone column (phone, mobile, home_phone, work_phone) and no account column: calls find "
     "customers by the caller's number or the account entered, so no call could ever find these customers"),
    (b"external_id,phone,Phone\nC1,,\n", "duplicate column(s) in the header: phone"),
    (b"external_id,,phone\nC1,,\n", "column 2 of the header has no name"),
    (b"external_id,n\xe4me\nC1,x\n", "header is not valid UTF-8 (is the file in another encoding? see --encoding)"),
])
def test_unusable_files_report_one_reason_and_import_nothing(tmp_path, store, data, reason):
    """An empty file or an unusable header gives a single report line and imports nothing."""
    report = run(tmp_path, store, data)
    assert report.bad_rows == [(1, reason)] and report.imported == 0
    assert store.count_customers() == 0


def test_huge_fields_are_bad_rows_and_the_rest_still_imports(tmp_path, store):
    """A field over its column limit, and one over the CSV reader's own limit, are reported with their
    lines; rows after them still import."""
    data = (HEADER
            + b"C1,Ann,Lee,,,ACC-1,,\"" + b"n" * 5000 + b"\",\n"       # line 2: notes limit 4000
            + b"C2,Bob,Ng,,,ACC-2,,,\"" + b"c" * 200_000 + b"\"\n"      # line 3: csv module limit
            + b"C3,Cy,Ok,,,ACC-3,,,\"" + b"c" * 1001 + b"\"\n"          # line 4: attribute limit 1000
            + b"C4,Di,Ro,,,ACC-4,,\"multi\nline notes\",\n"            # lines 5-6
            + b"C5,Ed,Su,,,ACC-5,,,\n")                                 # line 7
    report = run(tmp_path, store, data)
    assert report.bad_rows == [
        (2, "column notes is 5000 characters long (limit 4000)"),
        (3, "unreadable CSV row: a field is longer than 131072 characters"),
        (4, "column city is 1001 characters long (limit 1000)"),
    ]
    assert report.imported == 2
    assert store.find_by_external_id("C4").notes == "multi\nline notes"
    assert store.find_by_external_id("C5") is not None


def test_nul_bytes_and_blank_lines(tmp_path, store):
    """A NUL byte in a cell is a bad row (PostgreSQL text cannot hold it); blank lines and rows of empty
    cells are ignored and do not shift line numbers."""
    data = HEADER + b"\n,,,,,,,,\n" + b"C1,A\x00nn,Lee,,,ACC-1,,,\n" + ANN.replace(b"C1", b"C2").replace(b"1001", b"1")
    report = run(tmp_path, store, data)
    assert report.bad_rows == [(4, "column first_name contains a NUL character")]
    assert (report.imported, report.rows_read) == (1, 2)


def test_progress_bar_is_written_when_asked(tmp_path, store):
    """With progress=True the tqdm bar goes to the given stream and reaches the file size."""
    stream = io.StringIO()
    data = HEADER + ANN + BOB
    report = run(tmp_path, store, data, progress=True, progress_file=stream)
    assert report.imported == 2
    assert f"{len(data)}/{len(data)}" in stream.getvalue()


def test_over_long_line_is_skipped_without_reading_it_whole(tmp_path, store):
    """A physical line over MAX_LINE characters (junk with no separator or newline for 2 MB) is reported
    as one bad row; the rows before and after it import with their right line numbers."""
    data = HEADER + ANN + b"x" * (2 << 20) + b"\n" + b"C8,Hal,Ot,,,ACC-8,,,\n" + b"C9,Ida" + b",y" * 600_000 + b"\n"
    report = run(tmp_path, store, data)
    assert report.bad_rows == [(3, "line longer than 1048576 characters"), (5, "line longer than 1048576 characters")]
    assert (report.imported, report.rows_read) == (2, 4)
    assert store.find_by_external_id("C8") is not None
