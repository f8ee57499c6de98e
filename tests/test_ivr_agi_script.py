"""``cti-agi`` script mode: the real console script as a subprocess, fed an agi_* block and replies on stdin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.agi_peer import ScriptedCaller, fastagi_environment

CTI_AGI = Path(sys.executable).parent / "cti-agi"

CONFIG = """\
ivr:
  flows:
    main:
      start: who
      nodes:
        who: {kind: lookup, by: ani, found: menu, not_found: menu}
        menu: {kind: menu, prompt: main-menu, options: {"1": acct, "2": cb}, retries: 0}
        acct: {kind: collect, name: account, prompt: enter-account, next: pin}
        pin: {kind: collect, name: pin, prompt: enter-pin, secret: true, next: q}
        q: {kind: queue, queue: billing, skills: {billing: 2}}
        cb: {kind: callback, queue: billing}
"""


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "cti.yaml").write_text(CONFIG)
    (tmp_path / "customers.json").write_text(json.dumps([{"id": "c7", "name": "Ann", "phone": "+15551230002"}]))
    yield tmp_path


def start(tmp: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(CTI_AGI), *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})}, cwd=tmp)


def converse(proc: subprocess.Popen[bytes], caller: ScriptedCaller, hangup_after: int | None = None) -> None:
    """Play Asterisk: send the environment, answer each command line the script writes until it exits."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(caller.environment())
    proc.stdin.flush()
    while True:
        line = proc.stdout.readline()
        if not line:
            break
        if hangup_after is not None and len(caller.commands) == hangup_after:
            proc.send_signal(signal.SIGHUP)  # what Asterisk does to a script when the caller hangs up
        proc.stdin.write(caller.reply_to(line.decode().rstrip("\n")))
        proc.stdin.flush()
    proc.wait(timeout=20)


def events_of(tmp: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (tmp / "events.jsonl").read_text().splitlines()]


def test_script_walks_the_flow_and_hands_off(setup: Path) -> None:
    """Over stdin/stdout the script answers, looks up the caller, collects digits and sets the hand-off."""
    caller = ScriptedCaller(fastagi_environment("cti-agi"), keys=["1", "12345#", "9999#"])
    proc = start(setup, "main", "--customers", "customers.json", "--events-file", "events.jsonl",
                 env={"CTI_CONFIG": str(setup / "cti.yaml")})
    converse(proc, caller)
    assert proc.returncode == 0
    assert caller.commands[0] == "ANSWER" and caller.commands[-1] == "SET VARIABLE CTI_NEXT queue"
    assert caller.variables["CTI_QUEUE"] == "billing" and caller.variables["CTI_ACCOUNT"] == "12345"
    assert caller.variables["CTI_CUSTOMER_ID"] == "c7" and "CTI_PIN" not in caller.variables
    done = events_of(setup)[-1]
    assert done["type"] == "IvrCompleted" and done["outcome"] == "queue"
    assert done["collected"] == {"account": "12345", "pin": "****"}
    assert b"9999" not in (setup / "events.jsonl").read_bytes()
    assert b"outcome queue queue billing" in proc.stderr.read()  # type: ignore[union-attr]


def test_sighup_ends_the_flow_as_caller_hangup(setup: Path) -> None:
    """Asterisk's SIGHUP (script-mode hang-up) stops the script before its next command."""
    caller = ScriptedCaller(fastagi_environment("x"), keys=[None])
    proc = start(setup, "main", "--config", "cti.yaml", "--customers", "customers.json", "--events-file",
                 "events.jsonl")
    converse(proc, caller, hangup_after=1)
    assert proc.returncode == 0
    assert caller.commands == ["ANSWER", "STREAM FILE main-menu 0123456789*#"]
    assert events_of(setup)[-1]["outcome"] == "caller_hangup"


def test_callback_request_and_bad_setup(setup: Path) -> None:
    """The callback request reaches the events file; a missing config or unknown flow exits non-zero."""
    caller = ScriptedCaller(fastagi_environment("x"), keys=["2"])
    proc = start(setup, "main", "--config", "cti.yaml", "--customers", "customers.json", "--events-file",
                 "events.jsonl")
    converse(proc, caller)
    request = [e for e in events_of(setup) if e["type"] == "CallbackRequested"][0]
    assert request["number"] == "+15551230002" and request["queue"] == "billing"
    env = {k: v for k, v in os.environ.items() if k != "CTI_CONFIG"}
    proc = subprocess.run([str(CTI_AGI), "main"], input=ScriptedCaller(fastagi_environment("x")).environment(),
                          capture_output=True, env=env, cwd=setup, timeout=20)
    assert proc.returncode == 2 and b"no configuration" in proc.stderr and proc.stdout == b""
    proc = subprocess.run([str(CTI_AGI), "nosuch", "--config", "cti.yaml"],
                          input=ScriptedCaller(fastagi_environment("x")).environment(),
                          capture_output=True, cwd=setup, timeout=20)
    assert proc.returncode == 1 and b"unknown flow 'nosuch'; known: main" in proc.stderr


def test_missing_prompts_are_reported_and_skipped(setup: Path) -> None:
    """Script mode too: a menu and a collect whose prompts the PBX lacks still read the caller's key and
    digits; each missing prompt is reported once on stderr, naming flow and node; a latin-1 caller name
    in the environment does not disturb anything."""
    caller = ScriptedCaller(fastagi_environment("x"), keys=["1", "12345#", "9999#"],
                            missing_prompts=frozenset({"main-menu", "enter-account"}))
    caller.env["agi_calleridname"] = "Jos\xe9"
    proc = start(setup, "main", "--config", "cti.yaml", "--customers", "customers.json", "--events-file",
                 "events.jsonl")
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    environment = caller.environment
    caller.environment = lambda: environment().replace("Jos\xe9".encode(), b"Jos\xe9")  # type: ignore[method-assign]
    converse(proc, caller)
    err = proc.stderr.read().decode()
    assert proc.returncode == 0 and caller.variables["CTI_ACCOUNT"] == "12345"
    assert 'GET DATA "" 5000 16' in caller.commands
    assert err.count("cannot play prompt") == 2
    assert "flow 'main' node 'menu': cannot play prompt 'main-menu'" in err
    assert [e["prompt"] for e in events_of(setup) if e["type"] == "PromptMissing"] == ["main-menu", "enter-account"]


def test_environment_keeps_latin1_bytes() -> None:
    """What pyst2 reads from stdin (decoded with surrogateescape) becomes the environment the FastAGI codec
    would give: a latin-1 caller name keeps its byte (raw), a UTF-8 one is UTF-8, nothing is replaced."""
    from centre.agi_script import environment_of

    latin1 = b"Jos\xe9".decode("utf-8", errors="surrogateescape")
    env = environment_of({"agi_calleridname": latin1, "agi_callerid": "+15551230002",
                          "agi_dnid": "Zoë".encode().decode("utf-8", errors="surrogateescape")})
    assert env.get("agi_calleridname") == "José" and env.raw("agi_calleridname") == b"Jos\xe9"
    assert env.latin1 == frozenset({"agi_calleridname"})
    assert env.get("agi_dnid") == "Zoë" and env.raw("agi_dnid") == "Zoë".encode()
