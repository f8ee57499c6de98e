"""Lead lists: CSV rows become leads, broken rows are reported with file:line and skipped, limits hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from centre.demo_leads import demo_leads
from dialer import leads as leads_mod
from dialer.leads import LeadSourceError, normalise_number, parse_leads_csv, read_source

CSV = """id,number,name,timezone,account
L1,+1 (212) 555-0100,Ann Lee,America/New_York,ACC-1
L2,2125550101,Bo Chan,,ACC-2
L3,not-a-number,Cy,,ACC-3
L1,+12125550102,Dup,,ACC-4
L5,+12125550103,Eve,Mars/Olympus,ACC-5
L6,+12125550104,only three
L 7,+12125550105,Bad Id,,ACC-7

L8,+12125550106,"Quoted, Name",Europe/Paris,ACC-8
"""


def test_good_rows_load_and_bad_rows_are_reported() -> None:
    """Good rows become leads (number normalised, extra columns kept as fields); each bad row is one
    ``file:line: message`` and the rows after it still load."""
    leads, errors = parse_leads_csv(CSV, "leads.csv")
    assert [(x.lead_id, x.number, x.timezone) for x in leads] == [
        ("L1", "+12125550100", "America/New_York"), ("L2", "2125550101", ""), ("L8", "+12125550106", "Europe/Paris")]
    assert leads[2].fields == {"name": "Quoted, Name", "account": "ACC-8"}
    assert errors == [
        "leads.csv:4: not a phone number: 'not-a-number'",
        "leads.csv:5: lead 'L1' again (first on line 2)",
        "leads.csv:6: unknown time zone 'Mars/Olympus'",
        "leads.csv:7: 3 fields, the header has 5",
        "leads.csv:8: bad lead id 'L 7': 1-64 letters, digits, _ . + -",
    ]


def test_number_only_file_uses_number_as_id() -> None:
    """Without an id column the number names the lead; ``phone`` is accepted for the number column."""
    leads, errors = parse_leads_csv("phone\n+15550100100\n+15550100101\n", "x.csv")
    assert errors == [] and [x.lead_id for x in leads] == ["+15550100100", "+15550100101"]


@pytest.mark.parametrize(("text", "message"), [
    ("", "x.csv: empty file"),
    ("name,city\nAnn,Paris\n", "x.csv:1: no 'number' (or 'phone') column"),
    (",".join(f"c{i}" for i in range(60)) + "\n", "x.csv:1: 60 columns, at most 50"),
])
def test_unusable_files_are_refused_whole(text: str, message: str) -> None:
    """A file with no header, no number column or too many columns is one clear error."""
    with pytest.raises(LeadSourceError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_leads_csv(text, "x.csv")


def test_long_values_and_error_flood_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """An oversize value rejects its row; past MAX_ERRORS the rest are counted, not listed."""
    monkeypatch.setattr(leads_mod, "MAX_ERRORS", 3)
    text = "number,name\n+15550100100," + "x" * 600 + "\n" + "bad,row\n" * 10
    leads, errors = parse_leads_csv(text, "x.csv")
    assert leads == []
    assert errors[0] == "x.csv:2: a value longer than 500 characters"
    assert len(errors) == 4 and errors[-1] == "x.csv: 8 more rejected rows not listed"


def test_injection_in_number_is_refused() -> None:
    """A number carrying a second dial target or an AMI header never becomes a lead."""
    assert normalise_number("555&PJSIP/evil") is None
    assert normalise_number("5550100\r\nAction: Hangup") is None
    assert normalise_number(" +1 555-010-0100 ") == "+15550100100"


def test_read_source_file_and_demo(tmp_path: Path) -> None:
    """read_source reads a CSV file relative to the base folder, says which file is missing, refuses
    non-UTF-8, and makes demo leads with the customer's external id for the screen pop."""
    (tmp_path / "l.csv").write_text("\ufeffnumber\n+15550100100\n", encoding="utf-8")
    leads, errors = read_source("l.csv", 0, tmp_path)
    assert [x.number for x in leads] == ["+15550100100"] and errors == []
    with pytest.raises(LeadSourceError, match="file not found"):
        read_source("missing.csv", 0, tmp_path)
    (tmp_path / "bin.csv").write_bytes(b"number\n\xff\xfe\n")
    with pytest.raises(LeadSourceError, match="not UTF-8"):
        read_source("bin.csv", 0, tmp_path)
    demo, errors = read_source("demo", 5, tmp_path, demo=demo_leads)
    assert len(demo) == 5 and len({x.lead_id for x in demo}) == 5 and errors == []
    assert all(x.fields["external_id"] == x.lead_id and x.number.startswith("+1") for x in demo)
    with pytest.raises(LeadSourceError, match="no demo customers"):  # a process that was handed no demo source
        read_source("demo", 5, tmp_path)


def test_cli_check_leads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``cti dialer-check-leads`` lists rejected rows and exits 1 when there are any, 0 when clean, 2 when the
    file is unusable."""
    from centre.cli import main

    (tmp_path / "bad.csv").write_text(CSV, encoding="utf-8")
    (tmp_path / "ok.csv").write_text("number\n+15550100100\n", encoding="utf-8")
    assert main(["dialer-check-leads", str(tmp_path / "bad.csv")]) == 1
    out = capsys.readouterr()
    assert "3 leads (2 with their own time zone), 5 rejected rows" in out.out and "bad.csv:4:" in out.err
    assert main(["dialer-check-leads", str(tmp_path / "ok.csv")]) == 0
    assert main(["dialer-check-leads", str(tmp_path / "none.csv")]) == 2
