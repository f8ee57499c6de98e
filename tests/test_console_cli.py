"""`cti agent-password` and `cti agent-token`: output verifies, secrets never printed, bad input refused."""

from __future__ import annotations

import io
import time

import pytest

from agent_console.auth import verify_password, verify_token
from centre.cli import main
from centre.cli_console import parse_ttl

SECRET = "cli-secret-0123456789"


SUP_HASH = "scrypt$16384$8$1$mTWabujdAIlpBWqD1Ml9iw$rzxo5IObpFvt4DK9mbkmkG--UIklEMCsu1oSMPkgv3Q"  # config/examples

def test_agent_password_from_stdin_prints_verifiable_hash(monkeypatch, capsys) -> None:
    """The printed hash verifies the password read from stdin; the password itself is not printed."""
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert main(["agent-password", "--stdin"]) == 0
    out = capsys.readouterr()
    encoded = out.out.strip()
    assert encoded.startswith("scrypt$") and verify_password("correct horse", encoded)
    assert "correct horse" not in out.out + out.err


def test_agent_password_refuses_short(monkeypatch, capsys) -> None:
    """A password shorter than 8 characters is refused with exit status 1."""
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["agent-password", "--stdin"]) == 1
    assert "8-256" in capsys.readouterr().err


def test_agent_token_from_env(monkeypatch, capsys) -> None:
    """agent-token signs with $CTI_CONSOLE_SECRET; role and ttl end up in the token; the secret is not printed."""
    monkeypatch.setenv("CTI_CONSOLE_SECRET", SECRET)
    assert main(["agent-token", "sup1", "--role", "supervisor", "--ttl", "30m"]) == 0
    out = capsys.readouterr()
    ident = verify_token(SECRET, out.out.strip(), time.time() + 1700)
    assert (ident.user_id, ident.role) == ("sup1", "supervisor")
    assert SECRET not in out.out + out.err


def test_agent_token_from_config(tmp_path, monkeypatch, capsys) -> None:
    """With --config the secret comes from console.token_secret (here via ${VAR} in the YAML)."""
    monkeypatch.setenv("MY_CONSOLE_SECRET", SECRET)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("console:\n  token_secret: ${MY_CONSOLE_SECRET}\n  token_max_ttl: 3600\n"
                   "  token_default_ttl: 600\n  supervisors: [{id: sup, password_hash: '" + SUP_HASH + "'}]\n"
                   "acd:\n  queues: [{name: sales, skills: {sales: 1}}]\n"
                   "  agents: [{id: '1001', name: Ann, endpoint: PJSIP/1001, skills: {sales: 5}}]\n")
    assert main(["agent-token", "1001", "--config", str(cfg), "--ttl", "2h"]) == 1  # over the 1 h maximum
    assert "token_max_ttl" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("console:\n  token_secret: 123short\n")
    assert main(["agent-token", "1001", "--config", str(bad)]) == 1
    assert "token_secret" in capsys.readouterr().err
    assert main(["agent-token", "1001", "--config", str(cfg), "--ttl", "1h"]) == 0
    assert verify_token(SECRET, capsys.readouterr().out.strip(), time.time()).user_id == "1001"


def test_agent_token_refuses_whom_the_config_does_not_know(tmp_path, monkeypatch, capsys) -> None:
    """With --config, a token is issued only to a configured agent (or, for --role supervisor, a configured
    supervisor): a typo must not produce a token that logs nobody in. Without --config the id is unchecked,
    and the command says so."""
    monkeypatch.setenv("MY_CONSOLE_SECRET", SECRET)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("console:\n  token_secret: ${MY_CONSOLE_SECRET}\n"
                   "  supervisors: [{id: sup, password_hash: '" + SUP_HASH + "'}]\n"
                   "acd:\n  queues: [{name: sales, skills: {sales: 1}}]\n"
                   "  agents: [{id: '1001', name: Ann, endpoint: PJSIP/1001, skills: {sales: 5}}]\n")
    assert main(["agent-token", "1009", "--config", str(cfg)]) == 1
    out = capsys.readouterr()
    assert "no agent '1009'" in out.err and "acd.agents" in out.err and out.out == ""
    assert main(["agent-token", "1001", "--role", "supervisor", "--config", str(cfg)]) == 1
    assert "console.supervisors" in capsys.readouterr().err
    assert main(["agent-token", "sup", "--role", "supervisor", "--config", str(cfg)]) == 0
    assert verify_token(SECRET, capsys.readouterr().out.strip(), time.time()).role == "supervisor"
    monkeypatch.setenv("CTI_CONSOLE_SECRET", SECRET)
    assert main(["agent-token", "1009"]) == 0
    assert "not checked" in capsys.readouterr().err


def test_agent_token_without_secret_or_with_bad_args(monkeypatch, capsys) -> None:
    """No secret, a bad id or a bad ttl: exit 1 with a message."""
    monkeypatch.delenv("CTI_CONSOLE_SECRET", raising=False)
    assert main(["agent-token", "1001"]) == 1
    assert "CTI_CONSOLE_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("CTI_CONSOLE_SECRET", SECRET)
    assert main(["agent-token", "bad id"]) == 1
    assert main(["agent-token", "1001", "--ttl", "forever"]) == 1


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("8h", 28800),
                                               ("2d", 172800), ("1.5h", 5400)])
def test_parse_ttl(text: str, seconds: float) -> None:
    """Durations accept s/m/h/d suffixes."""
    assert parse_ttl(text) == seconds
