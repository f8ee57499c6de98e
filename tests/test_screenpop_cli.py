"""`cti customers generate | import | find` through the real `cti` entry point."""

from __future__ import annotations

import json

import pytest

from centre.cli import main

BROKEN = (
    "external_id,first_name,last_name,phone,account\n"
    "C1,Ann,Lee,(201) 555-0123,ACC-1\n"
    "C2,Bob,Ng,555-0100,ACC-2\n"
    "C3,Cy\n"
    "C4,Di,Ro,2125550100,ACC-4\n"
)


def test_generate_writes_deterministic_csv(tmp_path, capsys):
    """`cti customers generate N --out FILE` writes N rows plus a header, the same for the same seed."""
    out = tmp_path / "c.csv"
    assert main(["customers", "generate", "25", "--out", str(out), "--seed", "4"]) == 0
    first = out.read_text(encoding="utf-8")
    assert first.count("\n") == 26 and first.startswith("external_id,first_name,")
    assert main(["customers", "generate", "25", "--out", str(out), "--seed", "4"]) == 0
    assert out.read_text(encoding="utf-8") == first
    assert main(["customers", "generate", "-1", "--out", str(out)]) == 2


def test_import_reports_bad_rows_exits_1_and_imports_the_rest(tmp_path, capsys):
    """Import migrates the database, prints each bad row as FILE:LINE: reason, imports the good rows and
    exits 1; importing again updates nothing; find shows an imported customer."""
    csv_path = tmp_path / "customers.csv"
    csv_path.write_text(BROKEN, encoding="utf-8")
    db = f"sqlite:///{tmp_path}/cli.sqlite3"
    assert main(["customers", "import", str(csv_path), "--db", db, "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"{csv_path}:3: column phone: bad phone '555-0100': not a valid number for region US",
        f"{csv_path}:4: expected 5 columns, got 2",
    ]
    assert out.splitlines() == [f"{csv_path}: importing into sqlite:///{tmp_path.resolve()}/cli.sqlite3 (--db)",
                                f"{csv_path}: 4 rows read: 2 imported, 0 updated, 0 unchanged, 2 bad"]
    assert main(["customers", "import", str(csv_path), "--db", db, "--no-progress"]) == 1
    assert capsys.readouterr().out.strip().endswith("0 imported, 0 updated, 2 unchanged, 2 bad")
    assert main(["customers", "find", "--phone", "201.555.0123", "--db", db]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [c["external_id"] for c in found] == ["C1"]
    assert main(["customers", "find", "--account", "nope", "--db", db]) == 1


def test_import_takes_database_and_region_from_the_config(tmp_path, capsys):
    """With --config, the database URL and the default region come from the configuration file."""
    db = tmp_path / "fromcfg.sqlite3"
    cfg = tmp_path / "cti.yaml"
    cfg.write_text(f"database:\n  url: sqlite:///{db}\nscreenpop:\n  default_region: GB\n", encoding="utf-8")
    csv_path = tmp_path / "uk.csv"
    csv_path.write_text("external_id,phone\nU1,020 7946 0123\n", encoding="utf-8")
    assert main(["customers", "import", str(csv_path), "--config", str(cfg), "--no-progress"]) == 0
    assert db.exists()
    capsys.readouterr()
    assert main(["customers", "find", "--phone", "020 7946 0123", "--config", str(cfg)]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [(c["external_id"], c["phones"][0]["e164"]) for c in found] == [("U1", "+442079460123")]


@pytest.mark.parametrize("argv, message", [
    (["customers", "import", "/nonexistent/x.csv", "--db", "sqlite:///{tmp}/x.sqlite3"], "no such file"),
    (["customers", "import", "{csv}", "--db", "postgresql+psycopg://u:hunter2@127.0.0.1:1/x?connect_timeout=1"],
     "cannot open the database"),
    (["customers", "import", "{csv}", "--db", "sqlite:///{tmp}/x.sqlite3", "--region", "XX"], "unknown region"),
])
def test_import_errors_exit_2_without_leaking_secrets(tmp_path, capsys, argv, message):
    """A missing file, an unreachable database or a bad region exit 2 with a clear message that never
    shows the database password."""
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("external_id,phone\nC1,+12015550123\n", encoding="utf-8")
    args = [a.format(tmp=tmp_path, csv=csv_path) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "hunter2" not in err


def test_import_says_where_the_data_goes(tmp_path, capsys, monkeypatch):
    """Without --db or --config, import says that it writes to the default database and where that file
    is (an absolute path); with --config it names the config it took the URL from."""
    monkeypatch.chdir(tmp_path)
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("external_id,phone\nC1,+12015550123\n", encoding="utf-8")
    assert main(["customers", "import", str(csv_path), "--no-progress"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (f"{csv_path}: importing into sqlite:///{tmp_path.resolve()}/var/cti.sqlite3 "
                     "(the default database: no --db or --config given)")
    cfg = tmp_path / "cti.yaml"
    cfg.write_text("database:\n  url: postgresql+psycopg://u:hunter2@127.0.0.1:1/x?connect_timeout=1\n")
    assert main(["customers", "import", str(csv_path), "--config", str(cfg), "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == (f"{csv_path}: importing into postgresql+psycopg://u:***@127.0.0.1:1/x?"
                                   f"connect_timeout=1 (database.url of {cfg})")
    assert "hunter2" not in out + err


@pytest.mark.parametrize("header", ["external_id,first_name,last_name", "external_id,name,email,city"])
def test_import_refuses_a_file_without_a_look_up_key_before_creating_a_database(tmp_path, capsys, header):
    """A CSV with neither a phone column nor an account column is refused (exit 1, the header's line and
    why) and no database file is created: its customers could never be found by a call."""
    csv_path = tmp_path / "c.csv"
    csv_path.write_text(f"{header}\nC1,Ann,Lee\n", encoding="utf-8")
    db = tmp_path / "never.sqlite3"
    assert main(["customers", "import", str(csv_path), "--db", f"sqlite:///{db}", "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith(f"{csv_path}:1: the header has no phone column (phone, mobile, home_phone, work_phone) "
                          "and no account column")
    assert "no call could ever find these customers" in err
    assert out == "" and not db.exists()


def test_find_does_not_create_a_database(tmp_path, capsys):
    """``customers find`` on a SQLite file that does not exist says so (exit 2) instead of creating an empty
    database and answering "not found"."""
    db = tmp_path / "none.sqlite3"
    assert main(["customers", "find", "--phone", "+12015550123", "--db", f"sqlite:///{db}"]) == 2
    assert "no customer database at sqlite:///" in capsys.readouterr().err
    assert not db.exists()
