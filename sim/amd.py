"""Answering machine detection of the simulated PBX: amd.conf's settings (with AMD()'s arguments over
them) and app_amd's decision for a Local channel, made from what the other half of the pair plays.
Pure: no clock, no I/O besides reading an amd.conf it is asked to load, no Twisted, no other sim module.

The model (apps/app_amd.c of Asterisk 22.10.1, checked against it with tests/lab/extensions_lab.conf):
app_amd reads frames from its channel. A Local ``;1`` gets voice frames only while its ``;2`` plays
something (Playback, music on hold); a ``;2`` in Wait() or Answer() sends no frames at all, so AMD sees
no silence (its silence counters run on frames), never counts a word boundary, and decides:

- voice: every prompt is modelled as continuous speech. Once ``min_word_length`` ms of it make a word
  the greeting starts; at ``maximum_word_length`` ms of voice -> MACHINE ``MAXWORDLENGTH-<ms>``, at
  ``greeting`` ms -> MACHINE ``LONGGREETING-<ms>-<greeting>`` (whichever comes first; the same
  frame checks MAXWORDLENGTH first);
- otherwise, ``total_analysis_time`` ms after AMD started -> NOTSURE, ``TOOLONG-<ms>``, or
  ``NOAUDIODATA-<ms>`` when no voice frame came at all (app_amd's wall-clock check).

So on Local channels ``initial_silence``, ``after_greeting_silence``, ``between_words_silence`` and
``maximum_number_of_words`` never decide: a person who says "hello" and waits is NOTSURE after the
analysis time (the reference PBX: ``NOTSURE``, ``TOOLONG-3800`` 4.04 s after the answer with
total_analysis_time 4000 -- its frame counter runs behind its clock by the scheduling slack of ~40
empty 100 ms reads, which the sim does not model: it reports ``TOOLONG-4000`` at 4.0 s), and a
machine playing ``vm-intro&vm-intro`` is ``MACHINE``, ``LONGGREETING-1500-1500`` (the reference:
1.76 s after its Playback started, the sim: 1.5 s; the sound file's own leading quiet is not modelled).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

SHIPPED_AMD_CONF = Path(__file__).resolve().parent.parent / "config" / "asterisk" / "amd.conf"
MAX_AMD_CONF_BYTES = 100_000
FRAME_MS = 20  # a voice frame (slin at 8 kHz, 20 ms)

# amd.conf keys -> AmdSettings fields (apps/app_amd.c load_config)
_KEYS = {
    "initial_silence": "initial_silence", "greeting": "greeting",
    "after_greeting_silence": "after_greeting_silence", "silence_threshold": "silence_threshold",
    "total_analysis_time": "total_analysis_time", "min_word_length": "min_word_length",
    "between_words_silence": "between_words_silence", "maximum_number_of_words": "maximum_number_of_words",
    "maximum_word_length": "maximum_word_length",
}
# AMD()'s positional arguments, in order (the tenth, audioFile, is accepted and not played)
_ARGS = ("initial_silence", "greeting", "after_greeting_silence", "total_analysis_time", "min_word_length",
         "between_words_silence", "maximum_number_of_words", "silence_threshold", "maximum_word_length")


class AmdConfigError(ValueError):
    """amd.conf could not be understood; the message names the file, line and key."""


@dataclass(frozen=True, slots=True)
class AmdSettings:
    """app_amd's parameters in ms (defaults: app_amd's built-in ones, used when amd.conf has no value)."""

    initial_silence: int = 2500
    greeting: int = 1500
    after_greeting_silence: int = 800
    total_analysis_time: int = 5000
    min_word_length: int = 100
    between_words_silence: int = 50
    maximum_number_of_words: int = 2
    silence_threshold: int = 256
    maximum_word_length: int = 5000

    def with_args(self, args: list[str]) -> AmdSettings:
        """AMD(initialSilence,greeting,...) arguments over these settings (atoi, as app_amd reads them)."""
        changes = {name: _atoi(value) for name, value in zip(_ARGS, args, strict=False) if value.strip()}
        return replace(self, **changes)


def _atoi(text: str) -> int:
    digits = ""
    for i, ch in enumerate(text.strip()):
        if ch.isdigit() or (i == 0 and ch in "+-"):
            digits += ch
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0


def parse_amd_conf(text: str, source: str = "amd.conf") -> AmdSettings:
    """The ``[general]`` section of an amd.conf (unknown keys and other sections are ignored, as app_amd
    ignores them)."""
    if len(text) > MAX_AMD_CONF_BYTES:
        raise AmdConfigError(f"{source}: larger than {MAX_AMD_CONF_BYTES} bytes")
    values: dict[str, int] = {}
    section = ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            section = line.strip("[] \t").lower()
            continue
        if section != "general":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise AmdConfigError(f"{source}:{lineno}: expected key = value, got {line!r}")
        field = _KEYS.get(key.strip().lower())
        if field is None:
            continue
        if not value.strip().lstrip("+-").isdigit():
            raise AmdConfigError(f"{source}:{lineno}: general.{key.strip()}: expected a whole number of ms, "
                                 f"got {value.strip()!r}")
        values[field] = int(value.strip())
    return AmdSettings(**values)


def load_amd_conf(path: Path = SHIPPED_AMD_CONF) -> AmdSettings:
    """Read an amd.conf (default: the one we ship, config/asterisk/amd.conf)."""
    return parse_amd_conf(path.read_text(encoding="utf-8"), str(path))


@dataclass(frozen=True, slots=True)
class AmdDecision:
    """What AMD sets: AMDSTATUS and AMDCAUSE."""

    status: str
    cause: str


class LocalAmd:
    """app_amd listening on a Local ``;1``: fed when the ``;2`` starts and stops playing (times in
    seconds on the PBX clock), it says when it will decide (``due``) and what (``decide``)."""

    def __init__(self, settings: AmdSettings, start: float) -> None:
        self.settings = settings
        self.start = start
        self.voice_ms = 0.0  # voice heard before the current stretch
        self.voice_since: float | None = None  # the ;2 is playing since then
        self.heard_audio = False

    def voice(self, on: bool, now: float) -> None:
        """The ``;2`` started (``on``) or stopped playing at ``now``."""
        if on and self.voice_since is None:
            self.voice_since = now
            self.heard_audio = True
        elif not on and self.voice_since is not None:
            self.voice_ms += (now - self.voice_since) * 1000.0
            self.voice_since = None

    def _machine_at_voice_ms(self) -> tuple[int, AmdDecision]:
        """How much voice makes a MACHINE, and the decision then (MAXWORDLENGTH is checked first)."""
        s = self.settings
        # The greeting starts in the frame after min_word_length ms of voice make a word.
        greeting_at = max(s.greeting, _frames_ms(s.min_word_length) + FRAME_MS)
        maxword_at = _frames_ms(s.maximum_word_length)
        if maxword_at <= greeting_at:
            return maxword_at, AmdDecision("MACHINE", f"MAXWORDLENGTH-{maxword_at}")
        at = _frames_ms(greeting_at)
        return at, AmdDecision("MACHINE", f"LONGGREETING-{at}-{s.greeting}")

    def due(self, now: float) -> float:
        """The PBX time at which AMD decides if nothing changes from ``now`` on."""
        timeout = self.start + self.settings.total_analysis_time / 1000.0
        if self.voice_since is None:
            return timeout
        need_ms, _ = self._machine_at_voice_ms()
        machine = self.voice_since + max(need_ms - self.voice_ms, 0.0) / 1000.0
        return min(machine, timeout)

    def decide(self, now: float) -> AmdDecision:
        """The decision at ``now`` (called at ``due``)."""
        heard = self.voice_ms + ((now - self.voice_since) * 1000.0 if self.voice_since is not None else 0.0)
        need_ms, machine = self._machine_at_voice_ms()
        if heard + 1e-6 >= need_ms:
            return machine
        total = self.settings.total_analysis_time
        if not self.heard_audio:
            return AmdDecision("NOTSURE", f"NOAUDIODATA-{total}")
        return AmdDecision("NOTSURE", f"TOOLONG-{total}")


def _frames_ms(ms: int) -> int:
    """``ms`` rounded up to whole 20 ms frames (app_amd adds frame lengths)."""
    return -(-max(ms, 0) // FRAME_MS) * FRAME_MS
