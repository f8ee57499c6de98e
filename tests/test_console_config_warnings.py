"""`cti check-config` and `cti serve` warn about a configuration that weakens security (issue 13, items 5
and 9): secrets written inline in a file everyone can read, and a console open to pages of any site."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from centre.cli import main

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """\
asterisk:
  - name: pbx1
    host: 127.0.0.1
    port: 1
    username: cti
    secret: {ami_secret}
database:
  url: {db_url}
listen:
  fastagi: {{host: 127.0.0.1, port: {fastagi}}}
  http: {{host: {http_host}, port: {http_port}}}
console:
  allowed_origins: {origins}
{token_line}"""


def write(tmp_path: Path, mode: int, **values: object) -> Path:
    fields = {"ami_secret": "ami-inline-s3cret", "db_url": f"sqlite:///{tmp_path / 'x.sqlite3'}",
              "fastagi": 4573, "http_host": "127.0.0.1", "http_port": 8080,
              "token_line": "", "origins": "[]", **values}
    path = tmp_path / "cti.yaml"
    path.write_text(CONFIG.format(**fields))
    path.chmod(mode)
    return path


def test_inline_secrets_in_a_world_readable_file_are_warned_about(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Item 9: a file readable by everyone with the AMI secret, the token secret (also as a ${VAR:-default})
    and a database password inline gets one warning per secret naming file:line and key path, never the
    value; the file still checks OK. Private, or with secrets from the environment: no warning."""
    path = write(tmp_path, 0o644, token_line="  token_secret: ${CTI_TEST_SECRET:-inline-default-0123456789}\n",
                 db_url="postgresql+psycopg://cti:db-inline-pw@db/cti")
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr()
    assert f"{path}: OK" in out.out
    lines = out.err.strip().splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == [f"{path}:6", f"{path}:8", f"{path}:14"], lines
    assert "asterisk[0].secret: warning:" in lines[0] and "database.url: warning:" in lines[1]
    assert "console.token_secret: warning:" in lines[2]  # a default after :- is written inline too
    for secret in ("ami-inline-s3cret", "db-inline-pw", "inline-default"):
        assert secret not in out.err

    path.chmod(0o600)
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().err == ""
    path = write(tmp_path, 0o644, ami_secret="${AMI_SECRET}", db_url="postgresql+psycopg://cti:${DB_PW}@db/cti")
    os.environ.update(AMI_SECRET="from-env", DB_PW="from-env")
    try:
        assert main(["check-config", str(path)]) == 0
    finally:
        del os.environ["AMI_SECRET"], os.environ["DB_PW"]
    assert capsys.readouterr().err == ""


def test_any_origin_on_a_reachable_address_is_warned_about(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Item 5: allowed_origins ["*"] with the console listening beyond loopback is warned about; on loopback
    (a developer's machine) it is not; an origin that is not scheme://host[:port] is an error."""
    path = write(tmp_path, 0o600, origins='["*"]', http_host="0.0.0.0")
    assert main(["check-config", str(path)]) == 0
    err = capsys.readouterr().err
    assert "console.allowed_origins: warning:" in err and "0.0.0.0" in err
    path = write(tmp_path, 0o600, origins='["*"]')
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().err == ""
    path = write(tmp_path, 0o600, origins='["https://crm.example.com/path"]')
    assert main(["check-config", str(path)]) == 1
    assert "console.allowed_origins[0]: expected an origin" in capsys.readouterr().err


def test_serve_prints_the_warnings_before_starting(tmp_path: Path) -> None:
    """Item 9: `cti serve` prints the same warnings on stderr before it starts (here it then fails to
    start, its FastAGI port being taken, and exits 1)."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        path = write(tmp_path, 0o644, fastagi=busy.getsockname()[1])
        proc = subprocess.run([sys.executable, "-m", "centre.cli", "serve", str(path)], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        busy.close()
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"{path}:6 asterisk[0].secret: warning:" in proc.stderr
    assert "ami-inline-s3cret" not in proc.stderr


def test_a_secret_flag_is_not_a_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An IVR collect node's ``secret: true`` (mask the digits in records) is a flag, not a secret written
    inline: the shipped IVR example, world-readable, checks OK with no warning about it."""
    example = Path(__file__).resolve().parent.parent / "config" / "examples" / "ivr_demo.yaml"
    path = tmp_path / "ivr.yaml"
    path.write_text(example.read_text())
    path.chmod(0o644)
    assert "secret: true" in path.read_text()
    assert main(["check-config", str(path)]) == 0
    assert ".secret: warning" not in capsys.readouterr().err
