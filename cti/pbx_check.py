"""What a PBX must have for the shipped dialplan, and what it lacks: pure parsing of CLI output.

Pure: the server sends the AMI ``Command`` actions of ``COMMANDS`` when it connects and hands their
``Output`` lines here; nothing here does I/O, reads a clock or imports an application package. The
applications and functions needed are read from the shipped dialplan itself
(``config/asterisk/extensions_cti.conf``), so the check follows the dialplan as it changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SHIPPED_DIALPLAN = Path(__file__).resolve().parent.parent / "config" / "asterisk" / "extensions_cti.conf"

# CLI commands (AMI action Command) whose output the check reads.
COMMANDS = {
    "applications": "core show applications",
    "functions": "core show functions",
    "sounds": "core show sounds",
    "moh": "moh show classes",
}

# Which module provides what the dialplan uses, for the message (Asterisk 22 module names).
PROVIDERS = {
    "AGI": "res_agi.so",
    "AMD": "app_amd.so (loads only with /etc/asterisk/amd.conf: copy config/asterisk/amd.conf)",
    "ChanSpy": "app_chanspy.so",
    "Dial": "app_dial.so",
    "MusicOnHold": "res_musiconhold.so",
    "Playback": "app_playback.so",
    "Return": "app_stack.so",
    "UserEvent": "app_userevent.so",
    "VoiceMail": "app_voicemail.so",
    "WaitForSilence": "app_waitforsilence.so",
    "ExecIf": "pbx (core)",
    "IF": "func_logic.so",
    "CALLERID": "func_callerid.so",
    "FEATUREMAP": "features (core)",
    "PJSIP_HEADER": "res_pjsip_header_funcs.so (with chan_pjsip)",
    "MixMonitor": "app_mixmonitor.so",
}

RECORDING_USE = "call recording: AMI MixMonitor"

#: What the dialplan uses only on some channels, so a PBX without it still runs every call: each with
#: why. The dialplan guards each (``CHANNEL(channeltype)``), and the check does not count it missing.
OPTIONAL = {
    "PJSIP_HEADER": "auto-answer headers on a campaign call to a PJSIP phone ([cti-agent-leg])",
}

_STEP = re.compile(r"^\s*(?:exten\s*=>\s*[^,]+,[^,]+|same\s*=>\s*[^,]+),\s*([A-Za-z][A-Za-z0-9_]*)\s*\(")
_FUNCTION = re.compile(r"(?:\$\{|\bSet\(\s*)([A-Z][A-Z0-9_]*)\(")
_CONTEXT = re.compile(r"^\s*\[([^\]]+)\]", re.M)


@dataclass(frozen=True, slots=True)
class DialplanNeeds:
    """The applications and functions a dialplan uses, each with the contexts that use it."""

    applications: Mapping[str, tuple[str, ...]]
    functions: Mapping[str, tuple[str, ...]]


def dialplan_needs(text: str) -> DialplanNeeds:
    """Applications (``App(`` of each priority) and functions (``${FUNC(`` and ``Set(FUNC(...)=``) of
    an ``extensions.conf`` text, with the contexts using each."""
    apps: dict[str, list[str]] = {}
    funcs: dict[str, list[str]] = {}
    context = ""
    for line in text.splitlines():
        line = line.split(";", 1)[0]
        if m := _CONTEXT.match(line):
            context = m.group(1)
            continue
        if context in ("general", "globals"):
            continue
        if m := _STEP.match(line):
            uses = apps.setdefault(m.group(1), [])
            if context not in uses:
                uses.append(context)
        for fm in _FUNCTION.finditer(line):
            uses = funcs.setdefault(fm.group(1), [])
            if context not in uses:
                uses.append(context)
    return DialplanNeeds({k: tuple(v) for k, v in apps.items()}, {k: tuple(v) for k, v in funcs.items()})


def shipped_needs(recording: bool = False) -> DialplanNeeds:
    """What the shipped dialplan needs; with ``recording`` also MixMonitor (the server sends it over AMI)."""
    needs = dialplan_needs(SHIPPED_DIALPLAN.read_text(encoding="utf-8"))
    if recording:
        needs = DialplanNeeds({**needs.applications, "MixMonitor": (RECORDING_USE,)}, needs.functions)
    return needs


def parse_applications(lines: Iterable[str]) -> set[str]:
    """``core show applications``: ``                   AMD: Attempt to detect ...`` lines."""
    found = set()
    for line in lines:
        m = re.match(r"^\s*([A-Za-z][A-Za-z0-9_]*): ", line)
        if m:
            found.add(m.group(1).lower())
    return found


def parse_functions(lines: Iterable[str]) -> set[str]:
    """``core show functions``: ``FEATUREMAP            FEATUREMAP(feature_name)  ...`` lines."""
    found = set()
    for line in lines:
        m = re.match(r"^([A-Z][A-Z0-9_]*)\s+\1\(", line)
        if m:
            found.add(m.group(1))
    return found


def parse_sounds(lines: Iterable[str]) -> set[str]:
    """``core show sounds``: one sound id per line after ``Available audio files:``."""
    return {line.strip() for line in lines if line.strip() and not line.rstrip().endswith(":")}


def parse_moh_classes(lines: Iterable[str]) -> set[str]:
    """``moh show classes``: ``Class: default`` lines."""
    return {line.split(":", 1)[1].strip() for line in lines if line.strip().startswith("Class:")}


@dataclass(frozen=True, slots=True)
class PbxReport:
    """What the PBX lacks. ``problems()`` says it for a person; empty when nothing is missing."""

    missing_applications: tuple[tuple[str, tuple[str, ...]], ...] = ()
    missing_functions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    missing_prompts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    no_default_moh: bool = False
    unchecked: tuple[str, ...] = field(default=())
    #: Optional applications and functions (``OPTIONAL``) the PBX lacks: not problems, said by ``notes()``.
    missing_optional: tuple[str, ...] = field(default=())

    def notes(self) -> list[str]:
        """What the PBX lacks that only some channels need (no call fails for it)."""
        return [f"{name} not on this PBX (optional: {OPTIONAL[name]}; load {PROVIDERS.get(name, 'its module')} "
                f"if you use such phones)" for name in self.missing_optional]

    def problems(self) -> list[str]:
        out = []
        for app, contexts in self.missing_applications:
            out.append(f"application {app} missing (used in {', '.join(contexts)}): load "
                       f"{PROVIDERS.get(app, 'the module that provides it')}")
        for func, contexts in self.missing_functions:
            out.append(f"function {func}() missing (used in {', '.join(contexts)}): load "
                       f"{PROVIDERS.get(func, 'the module that provides it')}")
        if self.no_default_moh:
            out.append("no music-on-hold class 'default' (callers wait in silence): configure musiconhold.conf")
        for prompt, uses in self.missing_prompts:
            out.append(f"prompt {prompt} not on the PBX (used by {', '.join(uses)}): it is skipped")
        out.extend(f"could not check {what}" for what in self.unchecked)
        return out


def check(outputs: Mapping[str, Sequence[str] | None], needs: DialplanNeeds,
          prompts: Mapping[str, Sequence[str]]) -> PbxReport:
    """Compare the PBX's answers (``COMMANDS`` key -> output lines, None when the command failed) with
    what the dialplan needs and the prompts the flows name (prompt -> where it is used)."""
    unchecked = tuple(COMMANDS[k] for k in COMMANDS if outputs.get(k) is None)
    apps_out, funcs_out = outputs.get("applications"), outputs.get("functions")
    sounds_out, moh_out = outputs.get("sounds"), outputs.get("moh")
    missing_apps: tuple[tuple[str, tuple[str, ...]], ...] = ()
    optional: list[str] = []
    if apps_out is not None:
        have = parse_applications(apps_out)
        missing_apps = tuple((a, c) for a, c in sorted(needs.applications.items())
                             if a.lower() not in have and a not in OPTIONAL)
        optional += [a for a in sorted(needs.applications) if a in OPTIONAL and a.lower() not in have]
    missing_funcs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    if funcs_out is not None:
        have_f = parse_functions(funcs_out)
        missing_funcs = tuple((f, c) for f, c in sorted(needs.functions.items())
                              if f not in have_f and f not in OPTIONAL)
        optional += [f for f in sorted(needs.functions) if f in OPTIONAL and f not in have_f]
    missing_prompts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    if sounds_out is not None:
        have_s = parse_sounds(sounds_out)
        missing_prompts = tuple((p, tuple(u)) for p, u in sorted(prompts.items()) if p not in have_s)
    no_moh = moh_out is not None and "default" not in parse_moh_classes(moh_out)
    return PbxReport(missing_apps, missing_funcs, missing_prompts, no_moh, unchecked, tuple(optional))
