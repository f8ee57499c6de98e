"""Call recording, the pure core: the ``recording:`` section (path template, retention), a queue's or a
campaign's policy (``all``, ``none``, ``percent N``), the deterministic decision for one call and the
recording's file path. No I/O, no clock (the answer time is passed in).

The decision for ``percent N`` hashes the call id (SHA-256, first 8 bytes, modulo 100): the same call gets
the same answer after a restart or on another node. The file path is rendered from the template with
values the server controls or has checked: the call id, server and agent id keep only ``[A-Za-z0-9._-]``
(anything else becomes ``_``), so no caller-controlled text reaches the path unvalidated, and a value never
contains a ``/`` or starts with ``.``. The template itself may use only ``[A-Za-z0-9_./{}-]`` (no comma:
MixMonitor's AMI action joins File, Options and Command with commas).
"""

from __future__ import annotations

import hashlib
import re
import string
from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field, field_validator

from cti.config_types import ConfigModel, expected

POLICY_PATTERN = r"^(all|none|percent (100|[1-9][0-9]|[0-9]))$"
POLICY_EXPECTED = 'a recording policy: "all", "none" or "percent N" (N 0-100)'
RecordingPolicy = Annotated[str, Field(pattern=POLICY_PATTERN, json_schema_extra={"expected": POLICY_EXPECTED})]

PLACEHOLDERS = ("date", "year", "month", "day", "call_id", "part", "server", "queue", "agent_id")
_TEMPLATE_CHARS = re.compile(r"^[A-Za-z0-9_./{}-]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_PATH = 255


def decide(policy: str, call_id: str) -> bool:
    """Whether a call under ``policy`` is recorded: the same answer for the same call id, always."""
    if policy == "all":
        return True
    if policy == "none" or not policy.startswith("percent "):
        return False
    percent = int(policy.split()[1])
    return bucket(call_id) < percent


def bucket(call_id: str) -> int:
    """The call's bucket 0-99 (a percentage policy records buckets below N)."""
    return int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big") % 100


def safe_part(value: str) -> str:
    """A path component from a value: only ``[A-Za-z0-9._-]``, no leading dot, never empty."""
    cleaned = _UNSAFE.sub("_", value)[:64].lstrip(".")
    return cleaned or "_"


class RecordingSection(ConfigModel):
    """The ``recording:`` section: where Asterisk writes the files, how long they are kept, what is
    recorded when a queue or campaign says nothing, and MixMonitor's options."""

    # an absolute path template under the PBX's spool, {call_id} and {part} in the file name, an extension
    # (the check says what is wrong: ``template_problem``)
    path: str = Field(default="/var/spool/asterisk/monitor/cti/{date}/{call_id}-{part}.wav", max_length=200)
    retention_days: int = expected("a number of days 1-3650", default=90, ge=1, le=3650)
    default_policy: RecordingPolicy = expected(POLICY_EXPECTED, default="none")
    # MixMonitor's options that keep one mixed file the server names: a (append), b (only while bridged: hold
    # music is not recorded), c, p/P (beep at start/stop), B or B(seconds) (a periodic beep; needs
    # func_periodic_hook). Not d (deletes the file), m, r, t, i: they would take the file elsewhere.
    options: str = expected('MixMonitor options of a b c p P B B(seconds), e.g. "b" (the default: only while bridged)',
                            default="b", max_length=20, pattern=r"^([abcpP]|B(\([0-9]{1,4}\))?)*$")

    @field_validator("path")
    @classmethod
    def _template(cls, value: str) -> str:
        problem = template_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @property
    def directory(self) -> str:
        """The fixed directory above every recording (the template's path before its first placeholder):
        what the purge walks."""
        return fixed_directory(self.path)


def template_problem(template: str) -> str:
    """Why ``template`` is not a usable recording path template ('' when it is)."""
    if not template.startswith("/"):
        return "the recording path must be absolute (Asterisk resolves relative names in its monitor directory)"
    if not _TEMPLATE_CHARS.match(template):
        return "the recording path may use only letters, digits and _ . / - besides {placeholders}"
    parts = template.split("/")
    if any(p in (".", "..") for p in parts):
        return "the recording path may not contain . or .. components"
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        return f"bad placeholder in the recording path: {exc}"
    unknown = sorted(n for n in names if n not in PLACEHOLDERS)
    if unknown:
        return f"unknown placeholder {{{unknown[0]}}}; known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
    file_name = parts[-1]
    if "{call_id}" not in file_name or "{part}" not in file_name:
        return "the file name must contain {call_id} and {part} (one file per agent's part of a call)"
    stem, dot, ext = file_name.rpartition(".")
    if not dot or not stem or not re.fullmatch(r"[A-Za-z0-9]{2,6}", ext):
        return "the file name needs an extension Asterisk can write, such as .wav"
    if fixed_directory(template) in ("", "/"):
        return "the recording path needs a fixed directory before its first placeholder (the purge walks it)"
    return ""


def fixed_directory(template: str) -> str:
    head = template.split("{", 1)[0]
    return head.rsplit("/", 1)[0] if "/" in head else ""


def render_path(template: str, *, call_id: str, part: int, server: str, queue: str, agent_id: str,
                answered_at: float) -> str:
    """The recording's absolute file name for one agent's part of a call."""
    day = datetime.fromtimestamp(answered_at, UTC)
    path = template.format(
        date=day.strftime("%Y-%m-%d"), year=day.strftime("%Y"), month=day.strftime("%m"), day=day.strftime("%d"),
        call_id=safe_part(call_id), part=str(int(part)), server=safe_part(server), queue=safe_part(queue),
        agent_id=safe_part(agent_id))
    return path[:MAX_PATH]
