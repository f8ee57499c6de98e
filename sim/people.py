"""Seeded numpy models of the people around the simulated PBX: inbound callers, agents' phones and
outbound customers. Pure: no clock, no Twisted, no I/O; times are passed in and returned in seconds.

Determinism: every model takes one ``numpy.random.Generator`` (``root_rng(settings)``) and derives its
own streams from it with ``child_rng(rng, *key)``, stable keys instead of a spawn counter, so adding
a model, a DID or an agent never shifts the numbers another one draws. Each draw consumes a fixed
number of variates whatever the outcome, and outbound outcomes are keyed by (number, attempt), so a
lead gets the same fate whatever order a dialer calls it in (common random numbers for comparing
pacing policies).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np

from sim.settings import OUTCOMES, CallerSettings, InboundNumber, LogNormal, MeanSd, SimSection, Uniform

# Stable stream keys: never renumber, only append.
INBOUND_KEY = 1
AGENTS_KEY = 2
OUTBOUND_KEY = 3

_BLOCK = 256  # candidate arrivals drawn per numpy call

_FIRST_NAMES = ("Jane", "John", "Maria", "Ahmed", "Wei", "Olga", "Pedro", "Aisha", "Lukas", "Sofia",
                "Kenji", "Fatima", "Liam", "Chloe", "Ravi", "Emma", "Noah", "Ines", "Omar", "Zoe")
_LAST_NAMES = ("Smith", "Garcia", "Chen", "Kowalski", "Okafor", "Silva", "Novak", "Khan", "Muller",
               "Rossi", "Tanaka", "Dubois", "Jensen", "Haddad", "Murphy", "Ivanova", "Lopez", "Singh")


def root_rng(settings: SimSection) -> np.random.Generator:
    """The simulation's one root generator, seeded from ``settings.seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(settings.seed)))


def stable_key(text: str) -> int:
    """A 64-bit key for ``text`` that is the same in every process (unlike ``hash()``)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def child_rng(rng: np.random.Generator, *key: int) -> np.random.Generator:
    """An independent generator derived from ``rng``'s seed and ``key``; the same key gives the same
    stream every time, and calling this does not advance ``rng``."""
    seq = getattr(rng.bit_generator, "seed_seq", None)
    if not isinstance(seq, np.random.SeedSequence):
        raise ValueError("child_rng needs a Generator built from a SeedSequence (use root_rng)")
    child = np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, *key), pool_size=seq.pool_size)
    return np.random.Generator(np.random.PCG64(child))


def _normal_at_least(dist: MeanSd, z: float) -> float:
    return max(dist.min_s, dist.mean_s + dist.sd_s * z)


def _duration(dist: MeanSd | Uniform, z: float) -> float:
    """A draw of ``dist`` from one standard normal variate (a uniform one through its CDF), so that either
    kind of distribution consumes the same variates."""
    if isinstance(dist, Uniform):
        return dist.min_s + (dist.max_s - dist.min_s) * 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    return _normal_at_least(dist, z)


def _lognormal(dist: LogNormal, z: float) -> float:
    return dist.median_s * math.exp(dist.sigma * z)


# --- inbound callers ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class InboundArrival:
    """One inbound call: when it arrives, who calls, and how the caller behaves."""

    at: float
    did: str
    caller_num: str
    caller_name: str
    patience: float  # seconds the caller waits in queue before abandoning
    keys: tuple[str, ...]  # what the caller presses at successive IVR prompts
    think_time: float  # seconds from the start of a prompt to the first key
    hangup_in_ivr_after: float | None  # seconds after answer at which the caller gives up in the IVR
    flow: str = "main"  # IVR flow of the DID


class _ArrivalStream:
    """Arrivals of one DID: a Poisson process (thinned by the hourly profile) drawn in time order from
    a fixed origin, so how the time line is cut into windows does not change the result."""

    def __init__(self, number: InboundNumber, callers: CallerSettings, zone: ZoneInfo,
                 times: np.random.Generator, attrs: np.random.Generator) -> None:
        self._number = number
        self._callers = callers
        self._zone = zone
        self._times = times
        self._attrs = attrs
        profile = number.profile or [1.0] * 24
        self._profile = profile
        self._peak = max(profile)
        self._rate = number.rate_per_hour / 3600.0 * self._peak  # candidate rate (per second)
        self._next: float | None = None
        self._next_u = 0.0
        self._gaps = np.empty(0)
        self._us = np.empty(0)
        self._i = 0
        self._a_u = self._a_digits = self._a_exp = self._a_norm = np.empty(0)
        self._j = 0
        weights = np.array([s.weight for s in callers.ivr_scripts], dtype=float)
        self._script_cdf = np.cumsum(weights / weights.sum())
        self._hour_cache: tuple[float, float, int] = (0.0, -1.0, 0)

    def _hour(self, t: float) -> int:
        lo, hi, hour = self._hour_cache
        if lo <= t < hi:
            return hour
        local = datetime.fromtimestamp(t, self._zone)
        start = t - (local.minute * 60 + local.second + local.microsecond / 1e6)
        self._hour_cache = (start, start + 3600.0, local.hour)
        return local.hour

    def _candidate(self) -> tuple[float, float]:
        """Next (gap, uniform) pair of the thinning process, drawn in fixed-size blocks."""
        if self._i >= len(self._gaps):
            self._gaps = self._times.exponential(1.0 / self._rate, _BLOCK)
            self._us = self._times.random(_BLOCK)
            self._i = 0
        i = self._i
        self._i += 1
        return float(self._gaps[i]), float(self._us[i])

    def take(self, origin: float, start: float, end: float) -> list[InboundArrival]:
        if self._rate <= 0.0:
            return []
        if self._next is None:
            gap, self._next_u = self._candidate()
            self._next = origin + gap
        out: list[InboundArrival] = []
        while self._next < end:
            t, u = self._next, self._next_u
            gap, self._next_u = self._candidate()
            self._next = t + gap
            if u * self._peak < self._profile[self._hour(t)]:
                arrival = self._caller(t)  # drawn even before ``start`` so windows do not shift streams
                if t >= start:
                    out.append(arrival)
        return out

    def _attributes(self) -> tuple[np.ndarray, np.ndarray, float, float]:
        """One caller's variates (uniforms, digits, exponential, normal), drawn in fixed-size blocks."""
        if self._j >= len(self._a_exp):
            a = self._attrs
            self._a_u = a.random((_BLOCK, 7))
            self._a_digits = a.integers(0, 10, size=(_BLOCK, 11))
            self._a_exp = a.exponential(1.0, _BLOCK)
            self._a_norm = a.standard_normal(_BLOCK)
            self._j = 0
        j = self._j
        self._j += 1
        return self._a_u[j], self._a_digits[j], float(self._a_exp[j]), float(self._a_norm[j])

    def _caller(self, t: float) -> InboundArrival:
        c = self._callers
        u, digits, e, z = self._attributes()  # u: known?, which known, first, last, script, hang up?, when
        patience = e * c.patience_mean_s
        think = c.think_time_s * math.exp(c.think_time_sigma * z)
        if c.known_customers and u[0] < c.known_customer_share:
            caller_num = c.known_customers[min(int(u[1] * len(c.known_customers)), len(c.known_customers) - 1)]
        else:
            prefix = c.country_prefix if c.country_prefix.startswith("+") else "+" + c.country_prefix
            need = max(4, 11 - (len(prefix) - 1))
            caller_num = prefix + "".join(map(str, digits[:need].tolist()))
        first = _FIRST_NAMES[min(int(u[2] * len(_FIRST_NAMES)), len(_FIRST_NAMES) - 1)]
        last = _LAST_NAMES[min(int(u[3] * len(_LAST_NAMES)), len(_LAST_NAMES) - 1)]
        script = min(int(np.searchsorted(self._script_cdf, u[4], side="right")), len(c.ivr_scripts) - 1)
        hang = 1.0 + float(u[6]) * max(0.0, c.hangup_in_ivr_within_s - 1.0) if u[5] < c.hangup_in_ivr_prob else None
        return InboundArrival(at=t, did=self._number.did, caller_num=caller_num, caller_name=f"{first} {last}",
                              patience=patience, keys=tuple(c.ivr_scripts[script].keys), think_time=think,
                              hangup_in_ivr_after=hang, flow=self._number.flow)


class InboundTraffic:
    """Inbound arrivals for every configured DID. Ask for consecutive windows of time:
    ``arrivals(start, end)`` returns the calls arriving in ``[start, end)``, sorted by time."""

    def __init__(self, settings: SimSection, rng: np.random.Generator) -> None:
        zone = ZoneInfo(settings.timezone)
        self._streams = [
            _ArrivalStream(number, settings.callers, zone,
                           child_rng(rng, INBOUND_KEY, stable_key(number.did), 0),
                           child_rng(rng, INBOUND_KEY, stable_key(number.did), 1))
            for number in settings.inbound
        ]
        self._origin: float | None = None
        self._cursor: float | None = None

    def arrivals(self, start: float, end: float) -> list[InboundArrival]:
        """Arrivals in ``[start, end)``. Windows must not go back in time (``start`` >= the previous
        ``end``); a gap between windows skips the arrivals in it without changing later ones."""
        if not end >= start:
            raise ValueError(f"end {end!r} is before start {start!r}")
        if self._cursor is not None and start < self._cursor:
            raise ValueError(f"window starts at {start!r}, before the previous window's end {self._cursor!r}")
        if self._origin is None:
            self._origin = start
        out: list[InboundArrival] = []
        for stream in self._streams:
            out.extend(stream.take(self._origin, start, end))
        out.sort(key=lambda a: (a.at, a.did))
        self._cursor = end
        return out


# --- agents' phones ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RingOutcome:
    """What an agent's phone does with an offered call: answered after N seconds, or never
    (``answer_after`` None: rings until the ring timeout), busy, or unreachable."""

    answer_after: float | None
    busy: bool = False
    unavailable: bool = False


class AgentPhones:
    """Agents' phones and habits, one independent stream per endpoint and per question."""

    def __init__(self, settings: SimSection, rng: np.random.Generator) -> None:
        self._cfg = settings.agents
        self._rng = rng
        self._gens: dict[tuple[str, int], np.random.Generator] = {}

    def _gen(self, endpoint: str, which: int) -> np.random.Generator:
        gen = self._gens.get((endpoint, which))
        if gen is None:
            gen = self._gens[(endpoint, which)] = child_rng(self._rng, AGENTS_KEY, stable_key(endpoint), which)
        return gen

    def ring_outcome(self, endpoint: str, now: float) -> RingOutcome:
        """How the phone at ``endpoint`` reacts to a call offered at ``now``."""
        cfg = self._cfg
        gen = self._gen(endpoint, 0)
        u = float(gen.random())
        z = float(gen.standard_normal())
        if u < cfg.unavailable_prob:
            return RingOutcome(None, unavailable=True)
        u -= cfg.unavailable_prob
        if u < cfg.busy_prob:
            return RingOutcome(None, busy=True)
        u -= cfg.busy_prob
        if u < cfg.no_answer_prob:
            return RingOutcome(None)
        return RingOutcome(_normal_at_least(cfg.answer_delay_s, z))

    def talk_time(self, endpoint: str) -> float:
        """Seconds the agent at ``endpoint`` talks on the next answered call (lognormal)."""
        return _lognormal(self._cfg.talk_time, float(self._gen(endpoint, 1).standard_normal()))

    def wrapup_time(self, endpoint: str) -> float:
        """Seconds of after-call work for the agent at ``endpoint``."""
        return _normal_at_least(self._cfg.wrapup_s, float(self._gen(endpoint, 2).standard_normal()))


# --- outbound customers ------------------------------------------------------------------------

OutboundKind = Literal["answer", "busy", "noanswer", "congestion", "machine"]


@dataclass(frozen=True, slots=True)
class OutboundOutcome:
    """How a dialled customer number ends. ``ring_time``: seconds until answer (answer, machine), until
    the busy/congestion signal, or until the network gives up (noanswer). ``talk_time``: the human's
    conversation length, or the machine's greeting length. ``patience``: seconds an answered human
    waits in silence for an agent before hanging up (0 for the others). ``amd_wrong``: answering-machine
    detection will take this person for a machine, or this machine for a person."""

    kind: OutboundKind
    ring_time: float
    talk_time: float
    patience: float
    amd_wrong: bool = False


class OutboundCustomers:
    """Outbound customers: the fate of attempt N to a number depends only on (seed, number, N)."""

    def __init__(self, settings: SimSection, rng: np.random.Generator) -> None:
        error = settings.outbound.sum_error()
        if error:
            raise ValueError(f"sim.outbound: {error}")
        self._cfg = settings.outbound
        self._rng = rng
        self._cdf = np.cumsum(np.array(settings.outbound.probabilities(), dtype=float))
        self._attempts: dict[str, int] = {}

    def outcome(self, number: str) -> OutboundOutcome:
        """The next attempt's outcome for ``number``."""
        attempt = self._attempts.get(number, 0)
        self._attempts[number] = attempt + 1
        gen = child_rng(self._rng, OUTBOUND_KEY, stable_key(number), attempt)
        u = float(gen.random())
        z = gen.standard_normal(3)
        e = float(gen.exponential(1.0))
        amd = float(gen.random())  # drawn last: the variates before it are what they were without it
        cfg = self._cfg
        index = min(int(np.searchsorted(self._cdf, u, side="right")), len(OUTCOMES) - 1)
        kind: OutboundKind = OUTCOMES[index]  # type: ignore[assignment]
        amd_wrong = amd >= cfg.amd_accuracy
        if kind == "answer":
            patience = cfg.silence_patience_s if cfg.silence_patience_s is not None else e * cfg.patience_mean_s
            return OutboundOutcome(kind, _duration(cfg.ring_time_s, float(z[0])),
                                   _lognormal(cfg.talk_time, float(z[1])), patience, amd_wrong)
        if kind == "machine":
            return OutboundOutcome(kind, _duration(cfg.ring_time_s, float(z[0])),
                                   _normal_at_least(cfg.machine_greeting_s, float(z[2])), 0.0, amd_wrong)
        if kind == "noanswer":
            return OutboundOutcome(kind, cfg.noanswer_ring_s, 0.0, 0.0)
        return OutboundOutcome(kind, _normal_at_least(cfg.busy_after_s, float(z[0])), 0.0, 0.0)
