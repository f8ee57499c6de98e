"""The demo's account of every call: ``CallLedger`` follows each inbound call and outbound attempt from the
events, ``DemoFigures`` are the figures of the live line and of the final account, defined and counted here
once (docs/demo.md), and the per-call lines. Events in, text out: no I/O, no clock of its own.

Every figure counts inbound calls (one per call, however many queues or offers it went through) unless
it says ``outbound``:

* offered: calls that reached the PBX's inbound context;
* in IVR: offered calls in an IVR flow now (or arriving at it);
* waiting: offered calls queued for an agent now, not yet answered (an agent's phone may be ringing);
* talking: answered calls whose conversation is not over yet;
* answered: calls an agent answered, counted once at the answer (talking ones included);
* abandoned: calls whose caller hung up while queued, before any answer;
* overflowed: calls the queue sent to voicemail or a callback at its maximum wait;
* ended in IVR: calls that ended without reaching a queue (hung up in the IVR, or the flow ended them);
* ended on hold: queued calls that ended before the ACD took them (hung up in the instant between);
* lost: calls that are nowhere, the figure that must stay 0;
* SL: answered within their queue's service-level seconds (counted from entering the queue they were
  answered from) over answered + abandoned; abandoned %: abandoned over answered + abandoned.

So ``offered = in IVR + waiting + answered + abandoned + overflowed + ended in IVR + ended on hold + lost``.
Outbound: ``dialled`` attempts; their results as the dialer reports them (``connected``, ``abandoned``,
``noanswer``, ``busy``, ``machine``, ...), ``late`` the connected ones that came after the safe-harbour time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from acd.events import CallAbandoned, CallAnswered, CallOverflowed, CallWaiting, QueueCallFinished
from cti.contract import INBOUND_CONTEXT
from cti.events import CallEnded, CallQueued, CallStarted
from dialer.events import AttemptAnswered, AttemptFinished, AttemptStarted
from ivr.events import IvrCompleted, IvrStarted

ARRIVING_GRACE = 30.0
"""Seconds a call may take from arrival to its IVR before the account calls it lost."""


@dataclass
class InboundCall:
    """One inbound call as the account sees it."""

    uniqueid: str
    arrived: float
    caller: str
    in_ivr: bool = False
    ivr_path: str = ""
    ivr_outcome: str = ""
    queue: str = ""
    queued_at: float | None = None
    answered_at: float | None = None
    answer_wait: float | None = None  # the ACD's wait in the queue it was answered from
    agent: str = ""
    outcome: str = ""  # abandoned | overflowed:<action>, once known
    left_queue_at: float | None = None  # abandoned or overflowed at
    ended_at: float | None = None

    @property
    def wait(self) -> float | None:
        """Seconds from entering the first queue to the answer, the abandon or the overflow (None: not yet)."""
        if self.queued_at is None:
            return None
        end = self.answered_at if self.answered_at is not None else self.left_queue_at
        return None if end is None else max(0.0, end - self.queued_at)


@dataclass
class OutboundAttempt:
    """One dialler attempt: the lead, its number, what the attempt gave, and the agent if a person was connected."""

    ref: str
    campaign: str
    lead_id: str
    attempt: int
    number: str
    dialled: float
    uniqueid: str = ""
    queue: str = ""
    agent: str = ""
    agent_wait: float | None = None
    result: str = ""
    late: bool = False


@dataclass(frozen=True)
class DemoFigures:
    """The figures of one moment (see the module docstring for what each counts)."""

    offered: int
    in_ivr: int
    waiting: int
    talking: int
    answered: int
    abandoned: int
    overflowed: int
    ended_in_ivr: int
    queued_ended: int
    lost: int
    answered_in_sl: int
    outbound: Mapping[str, int]

    @property
    def service_level(self) -> float | None:
        total = self.answered + self.abandoned
        return None if total == 0 else 100.0 * self.answered_in_sl / total

    @property
    def abandon_rate(self) -> float | None:
        total = self.answered + self.abandoned
        return None if total == 0 else 100.0 * self.abandoned / total

    def counts(self) -> dict[str, int]:
        """Where the offered calls are (``talking`` is part of ``answered``)."""
        return {"offered": self.offered, "in_ivr": self.in_ivr, "waiting": self.waiting, "talking": self.talking,
                "answered": self.answered, "abandoned": self.abandoned, "overflowed": self.overflowed,
                "ended_in_ivr": self.ended_in_ivr, "queued_ended": self.queued_ended, "lost": self.lost}


@dataclass
class CallLedger:
    """Follows every inbound call (keyed by the trunk channel's uniqueid) and every outbound attempt.

    ``sl_seconds``: each queue's service-level time, for the SL figure (queues not named count 20 s)."""

    sl_seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, InboundCall] = field(default_factory=dict)
    attempts: dict[str, OutboundAttempt] = field(default_factory=dict)
    queued: set[str] = field(default_factory=set)  # every uniqueid that reached a queue, inbound or outbound
    _attempt_by_uid: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_config(cls, cfg: Any) -> CallLedger:
        return cls(sl_seconds={q.name: float(q.service_level.seconds) for q in cfg.acd.queues})

    @property
    def started(self) -> dict[str, float]:
        """Arrival time of every inbound call."""
        return {uid: c.arrived for uid, c in self.calls.items()}

    @property
    def final(self) -> dict[str, str]:
        """How each call that is over ended (answered, abandoned, overflowed:..., ivr:<outcome>)."""
        out: dict[str, str] = {}
        for uid, c in self.calls.items():
            if c.outcome:
                out[uid] = c.outcome
            elif c.answered_at is not None and c.ended_at is not None:
                out[uid] = "answered"
            elif c.ended_at is not None and c.queued_at is None and c.ivr_outcome:
                out[uid] = f"ivr:{c.ivr_outcome}"
        return out

    def __call__(self, event: object) -> None:
        if isinstance(event, AttemptStarted | AttemptAnswered | AttemptFinished):
            self._outbound(event)
            return
        if isinstance(event, CallStarted):
            if event.channel.startswith("PJSIP/trunk-") and event.context == INBOUND_CONTEXT:
                self.calls.setdefault(event.uniqueid, InboundCall(event.uniqueid, event.ts, event.caller_num))
            return
        if isinstance(event, CallQueued):
            self.queued.add(event.uniqueid)
        uid = getattr(event, "uniqueid", None)
        if isinstance(event, CallEnded):
            uid = event.call_id
        call = self.calls.get(uid) if isinstance(uid, str) else None
        if call is None:
            if isinstance(uid, str) and uid in self._attempt_by_uid:
                self._outbound_call(self.attempts[self._attempt_by_uid[uid]], event)
            return
        if isinstance(event, IvrStarted):
            call.in_ivr = True
        elif isinstance(event, IvrCompleted):
            call.in_ivr = False
            call.ivr_outcome = event.outcome
            call.ivr_path = " > ".join(f"{s.node}:{s.digits or s.result}" if s.digits or s.result else s.node
                                       for s in event.path)
        elif isinstance(event, CallQueued):
            if call.queued_at is None:
                call.queued_at = event.ts
            call.queue = call.queue or event.queue
        elif isinstance(event, CallWaiting):
            if call.answered_at is None:
                call.queue = event.queue
        elif isinstance(event, CallAnswered):
            if call.answered_at is None:  # answered once, whatever happens next (a transfer, a re-queue)
                call.answered_at = event.ts
                call.answer_wait = event.wait
                call.agent = event.agent_id
                call.queue = event.queue
        elif isinstance(event, CallAbandoned):
            if call.answered_at is None and not call.outcome:
                call.outcome = "abandoned"
                call.left_queue_at = event.ts
        elif isinstance(event, CallOverflowed):
            if event.action != "overflow" and call.answered_at is None and not call.outcome:
                call.outcome = f"overflowed:{event.action}"
                call.left_queue_at = event.ts
        elif isinstance(event, CallEnded):
            if call.ended_at is None:
                call.ended_at = event.ts
        elif isinstance(event, QueueCallFinished):
            if event.outcome == "abandoned" and call.answered_at is None and not call.outcome:
                call.outcome = "abandoned"
                call.left_queue_at = event.ts

    def _outbound(self, event: AttemptStarted | AttemptAnswered | AttemptFinished) -> None:
        if isinstance(event, AttemptStarted):
            self.attempts[event.ref] = OutboundAttempt(event.ref, event.campaign, event.lead_id, event.attempt,
                                                       event.number, event.ts)
            return
        attempt = self.attempts.get(event.ref)
        if attempt is None:
            return
        if event.uniqueid:
            attempt.uniqueid = event.uniqueid
            self._attempt_by_uid[event.uniqueid] = event.ref
        if isinstance(event, AttemptFinished):
            attempt.result = event.result
            attempt.late = event.late
            if event.agent_wait is not None:
                attempt.agent_wait = event.agent_wait

    @staticmethod
    def _outbound_call(attempt: OutboundAttempt, event: object) -> None:
        if isinstance(event, CallQueued | CallWaiting) and not attempt.agent:
            attempt.queue = event.queue
        elif isinstance(event, CallAnswered) and not attempt.agent:
            attempt.queue = event.queue
            attempt.agent = event.agent_id

    # ------------------------------------------------------------------------------------ figures
    def where(self, call: InboundCall, now: float, known_to_server: set[str] | None = None) -> str:
        """The one place each call is counted (a key of ``DemoFigures.counts``, ``talking`` aside)."""
        if call.answered_at is not None:
            return "answered"
        if call.outcome == "abandoned":
            return "abandoned"
        if call.outcome.startswith("overflowed"):
            return "overflowed"
        if call.in_ivr:
            return "in_ivr"
        if call.queued_at is not None or call.ivr_outcome == "queue":
            if call.ended_at is not None:
                return "queued_ended"
            if known_to_server is not None and call.queued_at is not None and call.uniqueid not in known_to_server:
                return "lost"
            return "waiting"
        if call.ivr_outcome:
            return "ended_in_ivr"
        if call.ended_at is None and now - call.arrived <= ARRIVING_GRACE:
            return "in_ivr"  # arriving: the IVR session starts within moments
        return "lost"

    def figures(self, now: float, known_to_server: set[str] | None = None) -> DemoFigures:
        """The figures now. ``known_to_server``: uniqueids the server still holds (waiting or with an agent);
        a queued call it does not know is lost. Without it, queued calls not ended count as waiting."""
        counts = dict.fromkeys(("in_ivr", "waiting", "answered", "abandoned", "overflowed", "ended_in_ivr",
                                "queued_ended", "lost"), 0)
        talking = in_sl = 0
        for call in self.calls.values():
            place = self.where(call, now, known_to_server)
            counts[place] += 1
            if place == "answered":
                talking += call.ended_at is None
                if call.answer_wait is not None and call.answer_wait <= self.sl_seconds.get(call.queue, 20.0):
                    in_sl += 1
        return DemoFigures(offered=len(self.calls), talking=talking, answered_in_sl=in_sl,
                           outbound=self.outbound_counts(), **counts)

    def lost(self, now: float, known_to_server: set[str] | None = None) -> list[str]:
        return [uid for uid, call in self.calls.items() if self.where(call, now, known_to_server) == "lost"]

    def outbound_counts(self) -> dict[str, int]:
        """``dialled``, ``in_progress``, then each result (``late`` counts connected ones past safe harbour)."""
        out = {"dialled": len(self.attempts), "in_progress": 0}
        for attempt in self.attempts.values():
            key = attempt.result or "in_progress"
            out[key] = out.get(key, 0) + 1
            if attempt.late:
                out["late"] = out.get("late", 0) + 1
        return out

    def account(self, server: Any) -> dict[str, Any]:
        """The figures now, cross-checked with the server (a queued call it does not hold is lost)."""
        now = server.now()
        known = server_known_calls(server)
        figures = self.figures(now, known)
        return {"counts": figures.counts(), "lost": self.lost(now, known), "outbound": dict(figures.outbound),
                "figures": figures}


def server_known_calls(server: Any) -> set[str]:
    """Uniqueids of the calls the server holds: waiting in an ACD queue or with an agent."""
    now = server.now()
    waiting = {c.uniqueid for q in server.acd.queue_stats(now) for c in server.acd.waiting_calls(q, now)}
    return waiting | {session.queued.uniqueid for session in server.sessions}


# ------------------------------------------------------------------------------------------ text

def _clock(elapsed: float) -> str:
    h, rem = divmod(int(elapsed), 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def summary_line(figures: DemoFigures, elapsed: float) -> str:
    """The live line (and the final account's first line): the same figures, the same words."""
    sl = "-" if figures.service_level is None else f"{figures.service_level:.0f}%"
    ab = "-" if figures.abandon_rate is None else f"{figures.abandon_rate:.1f}%"
    line = (f"[{_clock(elapsed)}] offered {figures.offered} | in IVR {figures.in_ivr} | waiting {figures.waiting}"
            f" | talking {figures.talking} | answered {figures.answered} | abandoned {figures.abandoned} ({ab})"
            f" | SL {sl}")
    out = figures.outbound
    if out.get("dialled"):
        late = f" ({out['late']} late)" if out.get("late") else ""
        line += (f" | outbound dialled {out['dialled']}, connected {out.get('connected', 0)}{late}, "
                 f"abandoned {out.get('abandoned', 0)}")
    return line


def account_lines(figures: DemoFigures, elapsed: float) -> list[str]:
    """The final account: the last live line, then where every call is, adding up to what was offered."""
    lines = [summary_line(figures, elapsed),
             f"inbound: offered {figures.offered} = in IVR {figures.in_ivr} + waiting {figures.waiting} + answered "
             f"{figures.answered} (talking {figures.talking}) + abandoned {figures.abandoned} + overflowed "
             f"{figures.overflowed} + ended in IVR {figures.ended_in_ivr} + ended on hold {figures.queued_ended} "
             f"+ lost {figures.lost}"]
    out = dict(figures.outbound)
    if out.get("dialled"):
        dialled, late = out.pop("dialled"), out.pop("late", 0)
        parts = [f"{k.replace('_', ' ')} {v}" + (f" ({late} late)" if k == "connected" and late else "")
                 for k, v in out.items() if v]
        lines.append(f"outbound: dialled {dialled} = " + " + ".join(parts))
    return lines


OUTBOUND_OUTCOMES = {"connected": "answered", "abandoned": "abandoned (no agent in time)", "noanswer": "no answer",
                     "machine": "answering machine", "hangup": "hung up before an agent"}
CALL_COLUMNS = ("direction", "arrival", "number", "ivr_path", "queue", "wait_s", "agent", "outcome",
                "attempt_result", "lead")


def call_rows(ledger: CallLedger, now: float, epoch: float = 0.0) -> list[dict[str, str]]:
    """One row per inbound call and per outbound attempt, in arrival order (``arrival`` as UTC time)."""
    rows: list[tuple[float, dict[str, str]]] = []
    for call in ledger.calls.values():
        place = ledger.where(call, now)
        if place == "answered":
            outcome = "talking" if call.ended_at is None else "answered"
        elif place == "overflowed":
            outcome = call.outcome
        elif place == "ended_in_ivr":
            outcome = f"ended in IVR ({call.ivr_outcome})"
        elif place == "queued_ended":
            outcome = "ended on hold"
        elif place == "in_ivr":
            outcome = "in IVR"
        else:
            outcome = place
        wait = call.wait if call.wait is not None else (now - call.queued_at if call.queued_at is not None else None)
        rows.append((call.arrived, {
            "direction": "in", "arrival": _when(call.arrived), "number": call.caller, "ivr_path": call.ivr_path,
            "queue": call.queue, "wait_s": "" if wait is None else f"{wait:.1f}", "agent": call.agent,
            "outcome": outcome, "attempt_result": "", "lead": ""}))
    for a in ledger.attempts.values():
        result = (a.result + (" (late)" if a.late else "")) if a.result else "in progress"
        if not a.result:
            outcome = "talking" if a.agent else "in progress"
        else:
            outcome = OUTBOUND_OUTCOMES.get(a.result, a.result)
        rows.append((a.dialled, {
            "direction": "out", "arrival": _when(a.dialled), "number": a.number, "ivr_path": "",
            "queue": a.queue, "wait_s": "" if a.agent_wait is None else f"{a.agent_wait:.1f}", "agent": a.agent,
            "outcome": outcome, "attempt_result": result, "lead": f"{a.campaign}/{a.lead_id}#{a.attempt}"}))
    rows.sort(key=lambda r: r[0])
    return [r for _, r in rows]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def format_call_lines(rows: Iterable[Mapping[str, str]]) -> list[str]:
    """The rows as aligned text lines, one per call (for the terminal)."""
    out = []
    for r in rows:
        parts = [r["arrival"], f"{r['direction']:<3}", f"{r['number']:<14}"]
        if r["direction"] == "in":
            parts.append(f"IVR {r['ivr_path'] or '-'}")
        else:
            parts.append(f"lead {r['lead']}: {r['attempt_result']}")
        if r["queue"]:
            parts.append(f"queue {r['queue']}")
        if r["wait_s"]:
            parts.append(f"wait {float(r['wait_s']):.0f}s")
        if r["agent"]:
            parts.append(f"agent {r['agent']}")
        parts.append(f"-> {r['outcome']}")
        out.append("  ".join(parts))
    return out


def calls_csv(rows: Iterable[Mapping[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CALL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
