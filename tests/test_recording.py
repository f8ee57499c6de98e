"""Call recording outside the console: the pure core (policy decision by hash of the call id, the path
template's checks and rendering, the configuration's errors), the migration up and down on SQLite, and
``cti recordings purge`` on a temporary directory with a real database."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

from centre.cli import main
from centre.database import alembic_config, upgrade
from config.load import ConfigError, load_config
from cti.db import make_engine
from cti.recording import RecordingSection, bucket, decide, render_path, safe_part, template_problem
from screenpop.store import CustomerStore, interaction_add, interaction_update

TEMPLATE = "/var/spool/asterisk/monitor/cti/{date}/{call_id}-{part}.wav"


def test_policies_decide_by_the_call_id_alone() -> None:
    ids = [f"1795443000.{n}" for n in range(2000)]
    assert all(decide("all", i) for i in ids) and not any(decide("none", i) for i in ids)
    picked = [i for i in ids if decide("percent 30", i)]
    assert 0.25 < len(picked) / len(ids) < 0.35
    assert picked == [i for i in ids if decide("percent 30", i)]  # same answer every time (a restart too)
    assert bucket("1795443000.7") == bucket("1795443000.7")
    assert not any(decide("percent 0", i) for i in ids) and all(decide("percent 100", i) for i in ids)
    # a call recorded at 30% is recorded at any higher percentage
    assert set(picked) <= {i for i in ids if decide("percent 60", i)}


def test_path_template_is_checked_and_rendered_safely() -> None:
    assert template_problem(TEMPLATE) == ""
    assert "absolute" in template_problem("cti/{call_id}-{part}.wav")
    assert "unknown placeholder {caller}" in template_problem("/rec/{caller}-{call_id}-{part}.wav")
    assert "{call_id} and {part}" in template_problem("/rec/{date}/{call_id}.wav")
    assert "extension" in template_problem("/rec/{call_id}-{part}")
    assert "only letters" in template_problem("/rec/a,b/{call_id}-{part}.wav")  # MixMonitor splits on commas
    assert ". or .." in template_problem("/rec/../{call_id}-{part}.wav")
    assert "fixed directory" in template_problem("/{date}/{call_id}-{part}.wav")
    path = render_path(TEMPLATE, call_id="../../etc/passwd", part=2, server="pbx1", queue="sales", agent_id="1001",
                       answered_at=datetime(2026, 12, 5, 23, 59, tzinfo=UTC).timestamp())
    assert path == "/var/spool/asterisk/monitor/cti/2026-12-05/_.._etc_passwd-2.wav"
    assert safe_part("") == "_" and safe_part("a b;c") == "a_b_c"
    assert RecordingSection().directory == "/var/spool/asterisk/monitor/cti"


def test_configuration_errors_name_the_file_the_key_and_what_was_expected(tmp_path: Path) -> None:
    cfg = tmp_path / "cti.yaml"
    cfg.write_text("acd:\n  queues:\n    - name: sales\n      recording: percent 101\n"
                   "dialer:\n  campaigns:\n    - {name: c1, queue: sales, leads: demo, recording: sometimes}\n"
                   "recording:\n  path: /rec/{date}.wav\n  retention_days: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(cfg))
    text = "\n".join(str(i) for i in info.value.issues)
    assert f"{cfg}:4 acd.queues[0].recording: expected a recording policy" in text
    assert "dialer.campaigns[0].recording: expected a recording policy" in text
    assert f"{cfg}:9 recording.path: the file name must contain {{call_id}} and {{part}}" in text
    assert f"{cfg}:10 recording.retention_days: expected a number of days 1-3650" in text


def test_migration_adds_the_recording_columns_and_downgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    upgrade(url)
    engine = create_engine(url)
    columns = {c["name"] for c in inspect(engine).get_columns("customer_interactions")}
    assert {"recording_path", "recording_pauses", "recording_purged_at"} <= columns
    command.downgrade(alembic_config(url), "0007_dialer_dnc")  # type: ignore[arg-type]
    engine.dispose()
    engine = create_engine(url)
    columns = {c["name"] for c in inspect(engine).get_columns("customer_interactions")}
    assert not {"recording_path", "recording_pauses", "recording_purged_at"} & columns
    engine.dispose()
    upgrade(url)
    engine = create_engine(url)
    assert "recording_path" in {c["name"] for c in inspect(engine).get_columns("customer_interactions")}
    engine.dispose()


def _touch(path: Path, age_days: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF" + b"\0" * 60)
    when = time.time() - age_days * 86400
    os.utime(path, (when, when))


def test_purge_deletes_only_expired_recordings_and_marks_their_interactions(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spool = tmp_path / "spool"
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    cfg = tmp_path / "cti.yaml"
    cfg.write_text(f"database:\n  url: {url}\nrecording:\n  path: {spool}/{{date}}/{{call_id}}-{{part}}.wav\n"
                   "  retention_days: 30\n")
    old = spool / "2026-10-01" / "1.1-1.wav"
    young = spool / "2026-12-01" / "2.2-1.wav"
    other = spool / "2026-10-01" / "notes.txt"
    _touch(old, 40)
    _touch(young, 3)
    _touch(other, 400)
    outside = tmp_path / "elsewhere.wav"
    _touch(outside, 400)
    (spool / "2026-10-01" / "link.wav").symlink_to(outside)
    os.utime(spool / "2026-10-01" / "link.wav", (time.time() - 400 * 86400,) * 2, follow_symlinks=False)
    upgrade(url)
    store = CustomerStore(make_engine(url))
    start = datetime(2026, 10, 1, tzinfo=UTC)
    store.write_interactions([interaction_add("pbx1/1.1", started_at=start, direction="inbound"),
                              interaction_update("pbx1/1.1", recording_path=str(old)),
                              interaction_add("pbx1/2.2", started_at=start, direction="inbound"),
                              interaction_update("pbx1/2.2", recording_path=str(young))])

    assert main(["recordings", "purge", "--config", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would delete {old}" in out and "1 recordings" in out and old.exists()

    assert main(["recordings", "purge", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "1 recordings (64 bytes) older than 30 days deleted" in out and "1 interactions marked purged" in out
    assert not old.exists() and young.exists() and other.exists() and outside.exists()
    purged = store.recording_of("pbx1/1.1")
    assert purged is not None and purged.path == str(old) and purged.purged_at is not None
    kept = store.recording_of("pbx1/2.2")
    assert kept is not None and kept.purged_at is None

    # not on this host: a clear error, nothing done
    cfg.write_text(f"database:\n  url: {url}\nrecording:\n  path: {tmp_path}/nope/{{call_id}}-{{part}}.wav\n")
    assert main(["recordings", "purge", "--config", str(cfg)]) == 2
    assert "Asterisk writes the recordings on the PBX host" in capsys.readouterr().err


def test_the_pbx_check_asks_for_app_mixmonitor_when_calls_are_recorded() -> None:
    """With a recording policy the connect-time check needs MixMonitor: the real 22.10.1 (recorded ``core show
    applications``) has it; without it the problem names app_mixmonitor.so. Without recording it is not asked."""
    from cti import pbx_check
    from tests.test_pbx_check import output, real_outputs

    assert "MixMonitor" not in pbx_check.shipped_needs().applications
    needs = pbx_check.shipped_needs(recording=True)
    assert pbx_check.check(real_outputs(), needs, {}).problems() == []
    outputs = real_outputs()
    outputs["applications"] = [line for line in output("applications") if "MixMonitor:" not in line]
    problems = pbx_check.check(outputs, needs, {}).problems()
    assert len(problems) == 1 and "MixMonitor" in problems[0] and "app_mixmonitor.so" in problems[0]


def test_a_campaigns_policy_wins_over_its_queues_then_the_default() -> None:
    from centre.recording import Recordings

    rec = Recordings(RecordingSection(default_policy="percent 5"), queue_policies={"sales": "all"},
                     campaign_policies={"renewals": "none"}, session_of=lambda s, u: None,
                     channel_up=lambda s, n: True)
    assert rec.policy("sales", "renewals") == "none"
    assert rec.policy("sales", "other") == "all" and rec.policy("sales") == "all"
    assert rec.policy("support") == "percent 5"
