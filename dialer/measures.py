"""What a campaign measures for its pacer: answers, AMD verdicts, ring, talk and wrap-up times. Pure.

Rolling samples (the last ``keep`` of each), with priors that fade as measurements arrive: until
``min_samples`` are measured, prior samples make up the difference, so the first decisions are sane
and the measured figures take over smoothly. ``snapshot()`` hands the pacer its ``DialMeasures``.
No I/O, no clock: the campaign calls ``on_*`` with the durations it saw.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from dialer.pacer import DialMeasures, FloatArray

GIVEUP_MIN = 5  # people who hung up waiting, measured before their waits shorten the pacer's horizon
GIVEUP_QUANTILE = 0.25  # of their waits, the one the pacer plans for (lower: more careful)


@dataclass(frozen=True, slots=True)
class Priors:
    """What to assume before measuring (``dialer.settings.PredictiveSettings``)."""

    answer_prob: float = 0.25
    human_share: float = 0.85
    talk_mean: float = 120.0
    talk_sd: float = 60.0
    wrap: float = 10.0
    answer_time: float = 8.0
    ring_timeout: float = 30.0
    connect: float = 10.0
    connect_quantile: float = 0.25  # the pacer's horizon: this quantile of dial-to-person times (early people)
    min_samples: int = 30


def _lognormal_quantiles(mean: float, sd: float, n: int) -> FloatArray:
    """``n`` evenly spaced quantiles of the lognormal with that mean and sd (deterministic prior samples)."""
    sigma2 = np.log1p((sd / mean) ** 2)
    mu = np.log(mean) - sigma2 / 2.0
    rng = np.random.default_rng(12345)
    z = np.sort(rng.standard_normal(4000))
    picks = z[((np.arange(n) + 0.5) / n * len(z)).astype(int)]
    return np.asarray(np.exp(mu + np.sqrt(sigma2) * picks), dtype=np.float64)


class CampaignMeasures:
    """Rolling measurements of one campaign."""

    def __init__(self, priors: Priors | None = None, keep: int = 500) -> None:
        self.priors = p = priors or Priors()
        self.keep = keep
        self.answered: deque[bool] = deque(maxlen=keep * 2)  # per dial that got a result: answered?
        self.human: deque[bool] = deque(maxlen=keep)  # per answer: AMD said person?
        self.answer_times: deque[float] = deque(maxlen=keep)
        self.fail_times: deque[float] = deque(maxlen=keep)
        self.talk: deque[float] = deque(maxlen=keep)
        self.wrap: deque[float] = deque(maxlen=keep)
        self.connect: deque[float] = deque(maxlen=keep)
        self.giveups: deque[float] = deque(maxlen=keep)  # seconds people waited for an agent before hanging up
        n = max(1, p.min_samples)
        self._prior_talk = _lognormal_quantiles(p.talk_mean, p.talk_sd, n)
        self._prior_wrap = np.full(n, p.wrap)
        self._prior_answer = np.linspace(0.5, 1.5, n) * p.answer_time
        self._prior_fail = np.full(n, p.ring_timeout)

    # ------------------------------------------------------------------ what the campaign saw
    def on_dial_result(self, answered: bool, seconds: float) -> None:
        self.answered.append(answered)
        (self.answer_times if answered else self.fail_times).append(max(0.0, seconds))

    def on_amd(self, human: bool) -> None:
        self.human.append(human)

    def on_person(self, seconds_since_dial: float) -> None:
        self.connect.append(max(0.0, seconds_since_dial))

    def on_giveup(self, waited: float) -> None:
        """A person hung up waiting for an agent, ``waited`` seconds after they became a person."""
        self.giveups.append(max(0.0, waited))

    def patience(self, safe_harbour: float) -> float:
        """The seconds a person may be counted on to wait for an agent: the safe-harbour time, or less when the
        people who hang up in the silence do so sooner (the ``GIVEUP_QUANTILE`` of their waits, once
        ``GIVEUP_MIN`` are measured): they are abandoned too."""
        if len(self.giveups) < GIVEUP_MIN:
            return safe_harbour
        return min(safe_harbour, float(np.quantile(np.fromiter(self.giveups, dtype=np.float64), GIVEUP_QUANTILE)))

    def on_handled(self, talk: float, wrap: float) -> None:
        self.talk.append(max(0.0, talk))
        self.wrap.append(max(0.0, wrap))

    # ------------------------------------------------------------------ the pacer's view
    def _share(self, values: deque[bool], prior: float) -> float:
        n0 = self.priors.min_samples
        weight = max(0, n0 - len(values))
        return (sum(values) + prior * weight) / max(len(values) + weight, 1)

    def _samples(self, values: deque[float], prior: FloatArray) -> FloatArray:
        measured = np.fromiter(values, dtype=np.float64, count=len(values))
        missing = max(0, self.priors.min_samples - len(measured))
        if missing == 0:
            return measured
        picks = prior[np.linspace(0, len(prior) - 1, missing).astype(int)]
        return np.concatenate([measured, picks])

    def snapshot(self, recent_rate: float | None = None, recent_n: int = 0) -> DialMeasures:
        p = self.priors
        connect = self._samples(self.connect, np.full(max(1, p.min_samples), p.connect))
        return DialMeasures(
            answer_prob=self._share(self.answered, p.answer_prob),
            human_share=self._share(self.human, p.human_share),
            answer_times=self._samples(self.answer_times, self._prior_answer),
            fail_times=self._samples(self.fail_times, self._prior_fail),
            talk=self._samples(self.talk, self._prior_talk),
            wrap=self._samples(self.wrap, self._prior_wrap),
            connect=float(np.quantile(connect, p.connect_quantile)), connect_times=connect,
            connect_quantile=p.connect_quantile, results=len(self.answered),
            answers=sum(self.answered),
            recent_rate=recent_rate, recent_n=recent_n)

    def figures(self) -> dict[str, float | int]:
        """Counts for stats and explanations."""
        return {"results": len(self.answered), "answers": sum(self.answered), "amd": len(self.human),
                "humans": sum(self.human), "handled": len(self.talk)}
