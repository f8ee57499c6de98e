"""One outbound campaign as a pure engine: leads, attempts as a state table, events in, commands out.

No I/O, no clock (``now`` is passed in), no Twisted, no database: must not import ``dialer.store``,
``dialer.shell`` or ``centre.server``. ``dialer.shell`` feeds it ``cti.events``, ``CommandFailed`` and the
ACD's CallOffered / OfferNotAnswered, and carries out what it returns (``cti.commands``, ``dialer.events``).

An attempt's life (``TRANSITIONS``)::

    persisting --persisted--> dialling --originate-answered--> answered --amd-human--> human
        human --agent-ringing--> ringing --agent-answered--> connected --ended--> finished (connected)
        human --safe-harbour--> safe_harbour --ended--> finished (abandoned)
        answered --amd-machine--> machine --ended--> finished (machine)
        dialling --originate-failed--> finished (busy | noanswer | congestion | failed)
        persisting --persisted--> (a number that cannot be dialled) finished (invalid; never retried)

The Originate of an attempt goes out only after the ``AttemptStarted`` that announced it has been made
durable (``persisted``): a crash then leaves the lead "active" in the store, and the next start resolves
it as ``unknown`` (``load``) and retries it once, later, instead of losing it or dialling it twice.
A lead has at most one attempt at a time.

The customer's channel is bound to its attempt by the ``CTI_ATTEMPT`` channel variable the Originate
sets (its VarSet arrives before anything else about the channel), by the OriginateResponse's Uniqueid,
and by the ``CTIAmd`` UserEvent's lead and campaign.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from acd.events import CallOffered, OfferNotAnswered, QueueCallFinished
from cti.commands import Command, CommandFailed, Originate, Redirect
from cti.contract import (
    AMD_OFF,
    CTI_ATTEMPT,
    CTI_CAMPAIGN,
    CTI_CAMPAIGN_QUEUE,
    CTI_LEAD_ID,
    CTI_LEAD_NUMBER,
    CTI_MACHINE_MESSAGE,
    CTI_SAFE_HARBOUR,
    CTI_USE_AMD,
    OUTBOUND_CONTEXT,
    SAFE_HARBOUR_CONTEXT,
    START_EXTEN,
)
from cti.events import (
    AmdResult,
    CallEnded,
    CallQueued,
    ChannelHungup,
    DialEnded,
    DialStarted,
    OriginateResult,
    VariableSet,
)
from dialer.events import AttemptAnswered, AttemptFinished, AttemptStarted, DialerEvent, DialerWarning
from dialer.measures import CampaignMeasures, Priors
from dialer.pacer import (
    AgentOutlook,
    CallsInFlight,
    PacingDecision,
    PredictiveParams,
    WindowFigures,
    pace,
    pace_predictive,
    step_of,
)
from dialer.settings import CampaignSettings

Output = Command | DialerEvent

REF_PREFIX = "dial:"
DNC_STATUS = "dnc"  # a lead never dialled because its number is on the do-not-call list (in memory only)
FINISHED_STATUSES = frozenset({"done", "exhausted", DNC_STATUS})
EVICTED_KEPT = 10_000  # finished leads whose fields stay readable after the hopper let them go
RATE_WINDOW = 300.0  # seconds of recent dials the run-out warning measures the dial rate over
SUPPLY_CHECK_EVERY = 30.0  # seconds between run-out checks
MAX_WINDOW_STEPS = 8  # zones of one number whose windows have not met after this many steps: retry in a day
STEP_WARNING_EVERY = 60.0  # seconds: at most one pacing-step warning (to or from preview) per campaign
DIALLING_GRACE = 60.0  # seconds past the Originate timeout before a silent attempt is declared unknown

INVALID_NUMBER = "invalid"  # the attempt's result when the lead's number cannot be dialled at all

# OriginateResponse Reason codes (AST_CONTROL_*), as the transcripts show them.
ORIGINATE_RESULTS = {5: "busy", 8: "congestion", 3: "noanswer", 1: "noanswer", 0: "failed"}


class AttemptState(Enum):
    PERSISTING = "persisting"  # AttemptStarted handed to the store; no Originate yet
    DIALLING = "dialling"  # Originate sent, no answer yet
    ANSWERED = "answered"  # the far end answered; answering-machine detection running
    HUMAN = "human"  # a person, waiting in the holding context for a campaign agent
    RINGING = "ringing"  # an agent's phone rings for this person
    CONNECTED = "connected"  # an agent answered
    MACHINE = "machine"  # an answering machine: the message plays, then the call ends
    SAFE_HARBOUR = "safe_harbour"  # no agent in time: the safe-harbour message plays
    FINISHED = "finished"


S = AttemptState
# Trigger -> next state, per state. A trigger missing here is ignored (late or duplicate event).
TRANSITIONS: dict[AttemptState, dict[str, AttemptState]] = {
    S.PERSISTING: {"persisted": S.DIALLING, "not-persisted": S.FINISHED},
    S.DIALLING: {"originate-answered": S.ANSWERED, "originate-failed": S.FINISHED, "amd-human": S.HUMAN,
                 "amd-machine": S.MACHINE, "amd-hangup": S.ANSWERED, "queued": S.HUMAN, "refused": S.FINISHED,
                 "watchdog": S.FINISHED, "agent-ringing": S.RINGING},
    S.ANSWERED: {"amd-human": S.HUMAN, "amd-machine": S.MACHINE, "queued": S.HUMAN, "agent-ringing": S.RINGING,
                 "ended": S.FINISHED},
    S.HUMAN: {"agent-ringing": S.RINGING, "safe-harbour": S.SAFE_HARBOUR, "ended": S.FINISHED},
    S.RINGING: {"agent-answered": S.CONNECTED, "agent-missed": S.HUMAN, "ended": S.FINISHED},
    S.CONNECTED: {"ended": S.FINISHED},
    S.MACHINE: {"ended": S.FINISHED},
    S.SAFE_HARBOUR: {"agent-ringing": S.RINGING, "ended": S.FINISHED},
    S.FINISHED: {},
}
# States in which the attempt still needs a line and no agent has it yet (the pacer's "in flight").
IN_FLIGHT = frozenset({S.PERSISTING, S.DIALLING, S.ANSWERED, S.HUMAN, S.RINGING})


@dataclass(slots=True)
class Lead:
    """A person to call. ``status``: pending (due at ``next_at``), active (an attempt is open), done
    (reached an agent), exhausted (no attempts left)."""

    lead_id: str
    number: str
    fields: dict[str, str] = field(default_factory=dict)
    timezone: str = ""
    status: str = "pending"
    attempts: int = 0
    unknowns: int = 0
    next_at: float = 0.0
    last_result: str = ""
    last_at: float = 0.0  # when the last attempt ended


@dataclass(slots=True)
class OwnedCallback:
    """A scheduled callback an agent owns: offered to that agent (a preview aimed at it) from ``due``; if the
    agent has not taken it by ``expires`` (``callback_owner_grace`` after it is due, or after the lead's
    calling window opens), the whole campaign dials it like any callback."""

    agent_id: str
    due: float
    expires: float
    notes: str = ""


@dataclass(slots=True)
class Attempt:
    ref: str
    lead: Lead
    number: int
    state: AttemptState
    started: float
    uniqueid: str = ""
    call_id: str = ""
    channel: str = ""
    result: str = ""
    human_at: float | None = None
    connected_at: float | None = None
    deadline: float | None = None
    ended: bool = False  # the customer's channel is gone (may precede the OriginateResponse)
    redirected: bool = False
    ended_at: float = 0.0
    log: list[str] = field(default_factory=list)
    dialled_at: float | None = None  # the Originate went out
    answered_at: float | None = None
    redirected_at: float | None = None  # the safe-harbour Redirect went out
    amd: str = ""


class Campaign:
    """One campaign's leads and attempts. ``server``: the Asterisk connection it dials through;
    ``dial_template``: the Originate channel with ``{number}`` when the campaign names none."""

    def __init__(self, settings: CampaignSettings, *, server: str, dial_template: str) -> None:
        self.settings = settings
        self.name = settings.name
        self.server = server
        self.dial_template = dial_template
        self.leads: dict[str, Lead] = {}
        self.attempts: dict[str, Attempt] = {}  # open attempts by ref
        self._by_uid: dict[str, str] = {}
        self._by_call: dict[str, str] = {}
        # (next_at, seq, lead_id) of pending leads, lazily pruned: leads already tried (due retries go first)
        # and fresh leads
        self._retries: list[tuple[float, int, str]] = []
        self._fresh: list[tuple[float, int, str]] = []
        self._callbacks: list[tuple[float, int, str]] = []  # scheduled callbacks: dialled first, at their time
        self._callback_due: dict[str, float] = {}  # lead -> its callback's time, until it is dialled
        self._owned: dict[str, OwnedCallback] = {}  # lead -> its callback an agent owns (in no heap meanwhile)
        self._handed_over: set[str] = set()  # owned callbacks given to the whole campaign, until dialled
        self.step = settings.mode  # the mode the last decision paced in (``dialer.pacer.step_of``)
        self._next_step_warning = 0.0
        self._reported_step = settings.mode  # the step the last pacing-step warning named
        self._evicted: OrderedDict[str, Lead] = OrderedDict()  # the latest leads the hopper let go, for lead_fields
        self._ended_calls: OrderedDict[str, str] = OrderedDict()  # call id -> lead of the latest finished attempts
        self.dnc: set[str] = set()  # numbers never to dial (checked when a lead is taken)
        self._dials: deque[float] = deque()  # when recent attempts started (the dial rate for run-out warnings)
        self._next_supply_check = 0.0
        self._running_out = False
        self._timers: list[tuple[float, int, str]] = []  # (deadline, seq, ref)
        self._seq = 0
        self._zones: dict[str, ZoneInfo] = {}
        self._humans: deque[bool] = deque(maxlen=settings.abandon_window)  # True: abandoned
        self.counts: dict[str, int] = {"dialled": 0, "ignored": 0}
        self.results: dict[str, int] = {}
        self.last_decision: PacingDecision | None = None
        self.measures = CampaignMeasures(_priors(settings))

    # ------------------------------------------------------------------ leads
    def load(self, leads: Iterable[Lead], now: float, *, recover: bool = True) -> list[Output]:
        """Take leads (fresh, or as the store last saw them). A lead left ``active`` had an attempt open
        when the server stopped: that attempt is resolved as ``unknown`` and the lead retried once. Without
        ``recover`` (several nodes: the attempt may be another node's, live) such a lead is left out: the node
        that paces the campaign resolves it (``recover_open``)."""
        out: list[Output] = []
        for lead in leads:
            if lead.lead_id in self.leads:
                out.append(DialerWarning(now, self.name, "duplicate-lead", f"lead {lead.lead_id!r} listed twice"))
                continue
            if lead.status == "active" and not recover:
                continue
            if lead.status == "active":
                out.append(self._left_open(lead, now))
                continue
            self.leads[lead.lead_id] = lead
            if lead.status == "pending":
                self._schedule(lead)
        return out

    def recover_open(self, leads: Iterable[Lead], now: float) -> list[Output]:
        """The leads the store has with an attempt open, read when this node took the campaign's pacing over
        (several nodes): those not open here were another node's, which no longer paces the campaign; each such
        attempt is resolved as ``unknown`` (the lead retried once, after the campaign's retry delay)."""
        out: list[Output] = []
        for lead in leads:
            known = self.leads.get(lead.lead_id)
            if lead.status != "active" or (known is not None and known.status == "active"):
                continue  # (this node's own attempt, in flight)
            out.append(self._left_open(lead, now))
        return out

    def _left_open(self, lead: Lead, now: float) -> AttemptFinished:
        """A lead the store has with an attempt no node will finish: taken, and the attempt resolved as ``unknown``
        (the lead retried once)."""
        self.leads[lead.lead_id] = lead
        return self._close_lead(lead, self._ref(lead, lead.attempts), lead.attempts, "unknown", now)

    def lead_fields(self, lead_id: str) -> dict[str, str]:
        """The lead's fields for the screen pop (``phone`` is the number dialled)."""
        lead = self.leads.get(lead_id) or self._evicted.get(lead_id)
        if lead is None:
            return {}
        return {**lead.fields, "phone": lead.number, "lead_id": lead.lead_id}

    def block_numbers(self, numbers: Iterable[str]) -> None:
        """Numbers on the do-not-call list: a pending lead with one of them is never taken again."""
        self.dnc.update(numbers)

    def schedule_callback(self, lead: Lead, due: float, owner: str = "", notes: str = "") -> bool:
        """A scheduled callback: the lead (a known one, or new) is dialled at ``due`` (or when its window opens),
        ahead of retries and fresh leads, whatever attempts it has used. With ``owner`` (an agent's own
        callback) it is offered to that agent only (``callback_for``) until ``callback_owner_grace`` seconds
        after it is due, then to the whole campaign (``tick``). False when the lead has an attempt open or is
        shown to an agent (the callback is for later: ask again after it ends). Idempotent: the store hands a
        callback it has queued over again at each read."""
        known = self.leads.get(lead.lead_id)
        if known is not None and known.status in ("active", "preview"):
            return False
        lead_id = lead.lead_id
        if owner and lead_id in self._handed_over:
            owner = ""  # its owner's grace is over already: the campaign's
        if known is not None and known.status == "pending":
            held = self._owned.get(lead_id)
            if (held is not None and held.due == due and held.agent_id == owner) or \
                    (not owner and held is None and self._callback_due.get(lead_id) == due):
                return True  # scheduled already
        if known is None:
            self.leads[lead_id] = known = lead
        elif lead.fields:
            known.fields.update(lead.fields)
        known.status, known.next_at = "pending", due
        if owner:
            self._callback_due.pop(lead_id, None)
            self._owned[lead_id] = OwnedCallback(owner, due, due + self.settings.callback_owner_grace, notes)
            return True
        self._owned.pop(lead_id, None)
        self._callback_due[lead_id] = due
        self._schedule(known)
        return True

    def owned_callback(self, lead_id: str) -> OwnedCallback | None:
        """The owned callback of a lead, if it has one waiting for its agent."""
        return self._owned.get(lead_id)

    def owned_callbacks(self) -> int:
        """Agents' own callbacks waiting for their owners (the wallboard's count)."""
        return len(self._owned)

    def owners_due(self, now: float) -> set[str]:
        """The agents with a callback of theirs due by ``now`` and not shown to them yet."""
        return {o.agent_id for lead_id, o in self._owned.items()
                if o.due <= now and lead_id in self.leads and self.leads[lead_id].status == "pending"}

    def callback_for(self, agent_id: str, now: float) -> Lead | None:
        """The agent's own callback due by ``now`` (earliest first) whose lead may be called now, set aside for
        a preview aimed at that agent (as ``take_lead``); None when it has none."""
        if not self.settings.enabled:
            return None
        mine = sorted((o.due, lead_id) for lead_id, o in self._owned.items() if o.agent_id == agent_id and o.due <= now)
        for _, lead_id in mine:
            lead = self.leads.get(lead_id)
            if lead is None or lead.status != "pending":
                continue
            if lead.number in self.dnc:
                lead.status = DNC_STATUS
                self.counts["dnc"] = self.counts.get("dnc", 0) + 1
                del self._owned[lead_id]
                continue
            if max(self._window_opens(lead, now), self._redial_opens(lead)) > now:
                continue  # outside its window: its grace starts again when the window opens (``tick``)
            lead.status = "preview"
            return lead
        return None

    def _release_owned(self, now: float, out: list[Output]) -> None:
        """Owned callbacks whose owner did not take them within the grace go to the whole campaign."""
        for lead_id, o in list(self._owned.items()):
            lead = self.leads.get(lead_id)
            if lead is None:
                del self._owned[lead_id]
                continue
            if o.due > now or lead.status != "pending":
                continue
            opens = max(self._window_opens(lead, now), self._redial_opens(lead))
            if opens > now:  # the lead may not be called now: its owner gets the grace once it may
                o.expires = max(o.expires, opens + self.settings.callback_owner_grace)
                continue
            if now < o.expires:
                continue
            del self._owned[lead_id]
            self._handed_over.add(lead_id)
            self._callback_due[lead_id] = o.due
            lead.next_at = o.due
            self._schedule(lead)
            self.counts["callbacks_handed_over"] = self.counts.get("callbacks_handed_over", 0) + 1
            out.append(DialerWarning(now, self.name, "callback-to-campaign",
                                     f"lead {lead_id}: agent {o.agent_id} did not take its callback due "
                                     f"{now - o.due:.0f} s ago: any agent of the campaign gets it now"))

    def refill(self, leads: Iterable[Lead]) -> int:
        """The hopper: take pending leads read from the store that are not in memory yet (those already here
        are as the campaign knows them, fresher than the store); returns how many were added."""
        added = 0
        for lead in leads:
            if lead.lead_id in self.leads or lead.status != "pending":
                continue
            self.leads[lead.lead_id] = lead
            self._schedule(lead)
            added += 1
        return added

    def evict_finished(self) -> int:
        """Forget leads that will not be dialled again (done, exhausted, on the do-not-call list): the store
        keeps them. Returns how many."""
        gone = [k for k, lead in self.leads.items() if lead.status in FINISHED_STATUSES]
        for lead_id in gone:
            self._evicted[lead_id] = self.leads.pop(lead_id)  # its fields stay readable a while (pops, records)
        while len(self._evicted) > EVICTED_KEPT:
            self._evicted.popitem(last=False)
        return len(gone)

    def forget_pending(self) -> int:
        """Drop the pending leads read from the store and not dialled here: another node paced the campaign
        meanwhile (several nodes: its lease was theirs) and may have dialled them; the next refill brings back
        those the store still has pending. Leads with an attempt open here and callbacks stay. Returns how many."""
        busy = {a.lead.lead_id for a in self.attempts.values()}
        gone = [k for k, lead in self.leads.items() if lead.status == "pending" and k not in busy
                and k not in self._callback_due and k not in self._owned]
        for lead_id in gone:
            del self.leads[lead_id]  # its heap entries are skipped when they come up (``_take``)
        return len(gone)

    def pending(self) -> int:
        """Leads in memory waiting for a dial (the hopper's depth)."""
        return sum(1 for lead in self.leads.values() if lead.status == "pending")

    def dialable(self, now: float, horizon: float) -> int:
        """Leads in memory that may be dialled before ``now + horizon`` (pending, due by then, not on the
        do-not-call list)."""
        until = now + horizon
        return sum(1 for lead in self.leads.values()
                   if lead.status == "pending" and lead.next_at <= until and lead.number not in self.dnc)

    def supply_warning(self, now: float, dialable: int | None = None) -> list[Output]:
        """A ``leads-running-out`` warning when, at the dial rate of the last minutes, the ``dialable`` leads
        (those due within ``run_out_warning`` minutes, in the store; default: those in memory) will be used up
        before then (once, until the supply recovers)."""
        minutes = self.settings.run_out_warning
        if minutes <= 0 or now < self._next_supply_check:
            return []
        self._next_supply_check = now + SUPPLY_CHECK_EVERY
        while self._dials and self._dials[0] < now - RATE_WINDOW:
            self._dials.popleft()
        per_minute = len(self._dials) / (RATE_WINDOW / 60.0)
        if per_minute <= 0:
            return []
        left = self.dialable(now, minutes * 60.0) if dialable is None else dialable
        short = left < per_minute * minutes
        warn = short and not self._running_out
        self._running_out = short
        if not warn:
            return []
        return [DialerWarning(now, self.name, "leads-running-out",
                              f"{left} dialable leads left at {per_minute:.1f} dials a minute: out within "
                              f"{left / per_minute:.0f} minutes")]

    # ------------------------------------------------------------------ pacing
    @property
    def in_flight(self) -> int:
        return sum(1 for a in self.attempts.values() if a.state in IN_FLIGHT)

    def abandon_rate(self) -> float | None:
        if not self._humans:
            return None
        return sum(self._humans) / len(self._humans)

    def flight(self, now: float) -> CallsInFlight:
        """The calls in flight as the predictive pacer sees them (an agent's phone ringing holds its own)."""
        ringing: list[float] = []
        detecting = waiting = offered = 0
        for a in self.attempts.values():
            if a.state in (S.PERSISTING, S.DIALLING):
                ringing.append(now - (a.dialled_at if a.dialled_at is not None else a.started))
            elif a.state == S.ANSWERED:
                detecting += 1
            elif a.state == S.HUMAN:
                waiting += 1
            elif a.state == S.RINGING:
                offered += 1
        return CallsInFlight(tuple(ringing), detecting, waiting, offered)

    def window_figures(self) -> WindowFigures:
        """The abandonment over the campaign's ``abandon_window`` (its last answers by a person), as the
        pacer's policy window. (The compliance ledger's per-policy windows replace this source.)"""
        n, cap = len(self._humans), self.settings.abandon_window
        return WindowFigures(live=n, abandoned=sum(self._humans), cap=self.settings.max_abandon_rate,
                             elapsed_fraction=min(1.0, n / cap) if cap else 1.0)

    def decide(self, now: float, agents: int | AgentOutlook, window: WindowFigures | None = None) -> PacingDecision:
        """The pacing decision of the campaign's mode (no side effect but ``last_decision``)."""
        s = self.settings
        outlook = AgentOutlook.idle_only(agents) if isinstance(agents, int) else agents
        own = sum(1 for a in self.attempts.values() if a.state == S.HUMAN)
        idle = max(0, outlook.ready - outlook.reserve - max(0, outlook.queue_waiting - own))
        if s.mode == "predictive":
            p = s.predictive
            params = PredictiveParams(max_lines=s.max_lines, safe_harbour=self.measures.patience(s.safe_harbour_after),
                                      target_share=p.target_share, fallback_share=p.fallback_share,
                                      amd_accuracy=self._amd_accuracy(),
                                      count_amd_misses=p.count_amd_misses and s.counts_amd_misses(),
                                      warmup=p.min_samples)
            decision = pace_predictive(agents=outlook, flight=self.flight(now),
                                       measures=self.measures.snapshot(self.abandon_rate(), len(self._humans)),
                                       window=window or self.window_figures(), params=params)
        elif s.mode == "preview":
            decision = PacingDecision(0, 0, 0.0, "preview", {"mode": "preview"})  # an agent's accept dials
        else:
            ratio = s.ratio if s.mode == "ratio" else 1.0
            w = window or self.window_figures()
            decision = pace(idle_agents=idle, in_flight=self.in_flight, ratio=ratio, abandon_rate=self.abandon_rate(),
                            max_abandon_rate=s.max_abandon_rate, max_lines=s.max_lines, window=w)
            decision = replace(decision, explain={
                "mode": s.mode, "idle": idle, "reserve": outlook.reserve, "in_flight": self.in_flight,
                "abandon_rate": self.abandon_rate(), "dial": decision.dial, "reason": decision.reason,
                "previews": decision.previews,
                "window": {"live": w.live, "abandoned": w.abandoned, "cap": w.cap,
                           "elapsed": round(w.elapsed_fraction, 4)}})
        decision = replace(decision, step=step_of(s.mode, decision.reason))
        decision.explain["step"] = decision.step
        self.last_decision = decision
        return decision

    def _amd_accuracy(self) -> float:
        """The AMD accuracy the pacer plans with: 1 without AMD (no person is taken for a machine), else the
        campaign's measured ``amd_accuracy`` (the one its policy counts the misses with), else the pacer's own.
        (The misses count against the budget only under a policy that counts them: ``counts_amd_misses``.)"""
        s = self.settings
        if not s.amd:
            return 1.0
        return s.amd_accuracy if s.amd_accuracy is not None else s.predictive.amd_accuracy

    def pace(self, now: float, agents: int | AgentOutlook, window: WindowFigures | None = None) -> list[Output]:
        """Start as many attempts as the pacer allows now. Returns ``AttemptStarted`` events: persist each,
        then call ``persisted(ref)`` to get its Originate (or ``not_persisted`` to put the lead back).
        ``agents``: the campaign queue's agents (an ``AgentOutlook``, or a count of idle agents);
        ``window``: the policy window's figures (default: the campaign's own ``abandon_window``)."""
        if not self.settings.enabled:
            return []
        decision = self.decide(now, agents, window)
        out: list[Output] = []
        self.step = decision.step
        if self.step != self._reported_step:
            # the operator hears of a step down to preview and back (the wallboard shows every step), at most
            # once a minute should the budget hover at the edge (then the step it is at a minute later)
            if "preview" not in (self._reported_step, self.step):
                self._reported_step = self.step
            elif now >= self._next_step_warning:
                self._next_step_warning = now + STEP_WARNING_EVERY
                w = decision.explain.get("window") or {}
                out.append(DialerWarning(now, self.name, "pacing-step",
                                         f"pacing {self._reported_step} -> {self.step} ({decision.reason}; window "
                                         f"{w.get('abandoned')} abandoned of {w.get('live')} live answers, cap "
                                         f"{w.get('cap')})"))
                self._reported_step = self.step
        for _ in range(decision.dial):
            lead = self._next_lead(now)
            if lead is None:
                break
            lead.status = "active"
            lead.attempts += 1
            self._handed_over.discard(lead.lead_id)
            if self.settings.run_out_warning > 0:
                self._dials.append(now)
            ref = self._ref(lead, lead.attempts)
            self.attempts[ref] = Attempt(ref, lead, lead.attempts, S.PERSISTING, now)
            out.append(AttemptStarted(now, self.name, lead.lead_id, ref, lead.attempts, lead.number))
        while self._dials and self._dials[0] < now - RATE_WINDOW:
            self._dials.popleft()
        return out

    # ------------------------------------------------------------------ preview mode (dialer.preview)
    def take_lead(self, now: float) -> Lead | None:
        """The next lead to dial (as ``pace`` would take it), set aside for a preview: not dialled, not
        written (the store still has it pending, so a restart offers it again)."""
        lead = self._next_lead(now) if self.settings.enabled else None
        if lead is not None:
            lead.status = "preview"
        return lead

    def next_ref(self, lead: Lead) -> str:
        """The reference of the lead's next attempt (what a preview's accept will start)."""
        return self._ref(lead, lead.attempts + 1)

    def start_attempt(self, lead_id: str, now: float) -> AttemptStarted | None:
        """Start an attempt of a lead set aside by ``take_lead`` (a preview accepted): as ``pace`` does."""
        lead = self.leads.get(lead_id)
        if lead is None or lead.status != "preview":
            return None
        lead.status = "active"
        lead.attempts += 1
        self._owned.pop(lead_id, None)
        self._handed_over.discard(lead_id)
        self._callback_due.pop(lead_id, None)
        ref = self._ref(lead, lead.attempts)
        self.attempts[ref] = Attempt(ref, lead, lead.attempts, S.PERSISTING, now)
        return AttemptStarted(now, self.name, lead.lead_id, ref, lead.attempts, lead.number)

    def put_back(self, lead_id: str, at: float | None = None) -> None:
        """A lead set aside by ``take_lead`` goes back among the pending ones, due at ``at`` (None: where it
        was, at the head of the leads due)."""
        lead = self.leads.get(lead_id)
        if lead is not None and lead.status == "preview":
            lead.status = "pending"
            owned = self._owned.get(lead_id)
            if owned is not None:  # still its owner's: due again at ``at`` (a skip), else as it was
                if at is not None:
                    lead.next_at = owned.due = at
                    owned.expires = at + self.settings.callback_owner_grace
                return
            if at is not None:
                lead.next_at = at
                self._schedule(lead)
                return
            self._seq += 1  # ahead of the leads due at the same time (a negative sequence number sorts first)
            heapq.heappush(self._retries if lead.attempts else self._fresh, (lead.next_at, -self._seq, lead.lead_id))

    def persisted(self, ref: str, now: float) -> list[Output]:
        """The store holds the attempt: dial it."""
        a = self.attempts.get(ref)
        if a is None or not self._move(a, "persisted"):
            return []
        s = self.settings
        try:
            channel = s.dial_string(self.dial_template, a.lead.number)
        except ValueError as exc:
            a.result = INVALID_NUMBER  # never retried: no later attempt can make the number dialable
            self._move(a, "refused")
            return [DialerWarning(now, self.name, "bad-number", f"lead {a.lead.lead_id}: {exc}"),
                    self._finish(a, now)]
        # CTI_LEAD_NUMBER: the channel's caller ID is the campaign's; the server records the customer's number
        variables = {CTI_CAMPAIGN: self.name, CTI_LEAD_ID: a.lead.lead_id, CTI_CAMPAIGN_QUEUE: s.queue,
                     CTI_LEAD_NUMBER: a.lead.number, CTI_ATTEMPT: ref}
        if s.safe_harbour_message:
            variables[CTI_SAFE_HARBOUR] = s.safe_harbour_message
        if s.machine_message:
            variables[CTI_MACHINE_MESSAGE] = s.machine_message
        if not s.amd:
            variables[CTI_USE_AMD] = AMD_OFF  # cti-outbound skips AMD(): every answer waits for an agent
        self.counts["dialled"] += 1
        a.dialled_at = now
        self._arm(a, now + s.originate_timeout + DIALLING_GRACE)
        return [Originate(ref=ref, server=self.server, channel=channel, context=OUTBOUND_CONTEXT, exten=START_EXTEN,
                          priority=1, caller_id=s.caller_id, timeout_ms=int(s.originate_timeout * 1000),
                          variables=variables)]

    def not_persisted(self, ref: str, now: float, reason: str) -> list[Output]:
        """The store could not record the attempt: nothing was dialled; the lead is as it was."""
        a = self.attempts.get(ref)
        if a is None or not self._move(a, "not-persisted"):
            return []
        del self.attempts[ref]
        lead = a.lead
        lead.attempts -= 1
        lead.status = "pending"
        lead.next_at = now + self.settings.retry_after.failed
        self._schedule(lead)
        return [DialerWarning(now, self.name, "store-failed", f"lead {lead.lead_id} not dialled: {reason[:200]}")]

    # ------------------------------------------------------------------ events
    def handle(self, event: object, now: float) -> list[Output]:
        """One domain event or CommandFailed; events about other calls are ignored cheaply."""
        out: list[Output] = []
        if isinstance(event, QueueCallFinished):
            if event.queue == self.settings.queue and event.outcome == "answered":
                self.measures.on_handled(event.talk, event.wrapup)
            return out
        if isinstance(event, VariableSet):
            if event.name == CTI_ATTEMPT and event.value in self.attempts and event.server == self.server:
                self._bind(self.attempts[event.value], event.uniqueid, event.call_id, event.channel)
            return out
        if isinstance(event, OriginateResult):
            a = self.attempts.get(event.action_id)
            if a is None:
                return out
            if event.success:
                if event.uniqueid:
                    self._bind(a, event.uniqueid, a.call_id or event.uniqueid, event.channel)
                self._trigger(a, "originate-answered", now, out)
            else:
                a.result = ORIGINATE_RESULTS.get(event.reason, "failed")
                self._trigger(a, "originate-failed", now, out)
            return out
        if isinstance(event, CommandFailed):
            a = self.attempts.get(event.ref)
            if a is not None and isinstance(event.command, Originate):
                a.result = "failed"
                out.append(DialerWarning(now, self.name, "originate-refused",
                                         f"lead {a.lead.lead_id}: {event.reason[:200]}"))
                self._trigger(a, "refused", now, out)
            return out
        if event.__class__ not in _CALL_EVENTS or getattr(event, "server", None) != self.server:
            return out
        a = self._find(event)
        if a is None:
            return out
        if isinstance(event, AmdResult):
            status = event.status.upper()
            a.amd = status[:16]
            trigger = "amd-machine" if status == "MACHINE" else "amd-hangup" if status == "HANGUP" else "amd-human"
            self._trigger(a, trigger, now, out)
        elif isinstance(event, CallQueued):
            self._trigger(a, "queued", now, out)
        elif isinstance(event, CallOffered):
            self._trigger(a, "agent-ringing", now, out)  # the ACD chose an agent: its Redirect is on the way
        elif isinstance(event, OfferNotAnswered):
            self._trigger(a, "agent-missed", now, out)
        elif isinstance(event, DialStarted):
            if event.uniqueid == a.uniqueid:
                self._trigger(a, "agent-ringing", now, out)
        elif isinstance(event, DialEnded):
            if event.uniqueid == a.uniqueid:
                self._trigger(a, "agent-answered" if event.status == "ANSWER" else "agent-missed", now, out)
        elif isinstance(event, CallEnded) and event.merged_into:
            self._by_call.pop(a.call_id, None)
            a.call_id = ""
            self._bind(a, "", event.merged_into, "")  # the channel lives on in another call
        elif isinstance(event, ChannelHungup | CallEnded):
            a.ended = True
            self._trigger(a, "ended", now, out)
        return out

    def tick(self, now: float) -> list[Output]:
        """Fire due timers: safe harbour for people still waiting, and the watchdog of silent attempts."""
        out: list[Output] = []
        if self._owned:
            self._release_owned(now, out)
        while self._timers and self._timers[0][0] <= now:
            deadline, _, ref = heapq.heappop(self._timers)
            a = self.attempts.get(ref)
            if a is None or a.deadline != deadline:
                continue
            a.deadline = None
            if a.state == S.HUMAN:
                self._safe_harbour(a, now, out)
            elif a.state == S.DIALLING:
                a.result = "unknown"
                out.append(DialerWarning(now, self.name, "no-originate-response",
                                         f"lead {a.lead.lead_id}: no OriginateResponse for {ref}"))
                self._trigger(a, "watchdog", now, out)
        return out

    def next_deadline(self) -> float | None:
        """The earliest timer: a person's safe harbour, a silent attempt's watchdog, an owned callback's grace."""
        # (a callback shown to its owner meanwhile waits for the answer: no timer, or it would fire at once)
        grace = min((o.expires for lead_id, o in self._owned.items()
                     if lead_id in self.leads and self.leads[lead_id].status == "pending"), default=None)
        while self._timers:
            deadline, _, ref = self._timers[0]
            a = self.attempts.get(ref)
            if a is not None and a.deadline == deadline:
                return deadline if grace is None else min(deadline, grace)
            heapq.heappop(self._timers)
        return grace

    def next_due(self) -> float | None:
        """When the earliest pending lead becomes due (None: no lead left to dial, or the campaign is disabled)."""
        if not self.settings.enabled:
            return None
        heads = [h for h in (self._head(self._callbacks), self._head(self._retries), self._head(self._fresh))
                 if h is not None]
        heads += [o.due for lead_id, o in self._owned.items()
                  if lead_id in self.leads and self.leads[lead_id].status == "pending"]
        return min(heads) if heads else None

    def _head(self, heap: list[tuple[float, int, str]]) -> float | None:
        while heap:
            at, _, lead_id = heap[0]
            lead = self.leads.get(lead_id)
            if lead is not None and lead.status == "pending" and lead.next_at == at:
                return at
            heapq.heappop(heap)
        return None

    def due_leads(self, now: float) -> int:
        """Leads waiting to be dialled and due by ``now`` (the depth of what is ready to dial)."""
        return sum(1 for lead in self.leads.values() if lead.status == "pending" and lead.next_at <= now)

    def stats(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for lead in self.leads.values():
            by_status[lead.status] = by_status.get(lead.status, 0) + 1
        rate = self.abandon_rate()
        return {"campaign": self.name, "queue": self.settings.queue, "leads": by_status,
                "dialled": self.counts["dialled"], "results": dict(self.results), "in_flight": self.in_flight,
                "open": len(self.attempts), "abandon_rate": rate, "humans": len(self._humans),
                "pacing": None if self.last_decision is None else self.last_decision.reason,
                "mode": self.settings.mode, "step": self.step, "owned_callbacks": len(self._owned),
                "pacing_explain": None if self.last_decision is None else dict(self.last_decision.explain)}

    # ------------------------------------------------------------------ internals
    def _ref(self, lead: Lead, attempt: int) -> str:
        return f"{REF_PREFIX}{self.name}/{lead.lead_id}/{attempt}"

    def _schedule(self, lead: Lead) -> None:
        self._seq += 1
        heap = (self._callbacks if lead.lead_id in self._callback_due else
                self._retries if lead.attempts else self._fresh)
        heapq.heappush(heap, (lead.next_at, self._seq, lead.lead_id))

    def _next_lead(self, now: float) -> Lead | None:
        """A due scheduled callback, else a due retry, else the next fresh lead, inside its calling window (leads
        outside it are pushed to when it opens) and not on the do-not-call list."""
        return self._take(self._callbacks, now) or self._take(self._retries, now) or self._take(self._fresh, now)

    def _take(self, heap: list[tuple[float, int, str]], now: float) -> Lead | None:
        while heap and heap[0][0] <= now:
            at, _, lead_id = heapq.heappop(heap)
            lead = self.leads.get(lead_id)
            if lead is None or lead.status != "pending" or lead.next_at != at or lead_id in self._owned:
                continue  # gone, taken, moved, or an agent's own callback (``callback_for``)
            if lead.number in self.dnc:
                lead.status = DNC_STATUS
                self.counts["dnc"] = self.counts.get("dnc", 0) + 1
                continue
            opens = max(self._window_opens(lead, now), self._redial_opens(lead))
            if opens > now:
                lead.next_at = opens
                self._schedule(lead)
                continue
            self._callback_due.pop(lead.lead_id, None)
            return lead
        return None

    def _redial_opens(self, lead: Lead) -> float:
        """When the policy lets a lead whose last call was abandoned be called again (uk_ofcom: 72 h after)."""
        hold = self.settings.redial_after_abandon()
        return lead.last_at + hold if hold and lead.last_result == "abandoned" else 0.0

    def _window_opens(self, lead: Lead, now: float) -> float:
        """``now`` if the lead may be called now, else when its local calling window next opens. A lead with
        several zones (a number spanning zones) may be called only inside the window in every one of them."""
        zones = [self._zone(name) for name in (lead.timezone.split() or [self.settings.timezone])]
        at = now
        for _ in range(MAX_WINDOW_STEPS):
            opens = max(self._zone_opens(zone, at) for zone in zones)
            if opens == at:
                return at
            at = opens
        return max(at, now + 86400.0)  # the zones' windows do not meet soon: look again in a day

    def _zone(self, name: str) -> ZoneInfo:
        zone = self._zones.get(name)
        if zone is None:
            try:
                zone = ZoneInfo(name)
            except (ValueError, KeyError, OSError):
                zone = ZoneInfo(self.settings.timezone)
            self._zones[name] = zone
        return zone

    def _zone_opens(self, zone: ZoneInfo, now: float) -> float:
        local = datetime.fromtimestamp(now, zone)
        start, end = self.settings.calling_window.bounds()
        minute = local.hour * 60 + local.minute
        if start <= minute < end:
            return now
        day = local.date() if minute < start else local.date() + timedelta(days=1)
        opening = datetime(day.year, day.month, day.day, start // 60, start % 60, tzinfo=zone)
        return max(now, opening.timestamp())

    def _bind(self, a: Attempt, uniqueid: str, call_id: str, channel: str) -> None:
        if uniqueid and not a.uniqueid:
            a.uniqueid = uniqueid
            self._by_uid[uniqueid] = a.ref
        if call_id and not a.call_id:
            a.call_id = call_id
            self._by_call[call_id] = a.ref
        if channel and not a.channel:
            a.channel = channel

    def _find(self, event: Any) -> Attempt | None:
        ref = self._by_uid.get(getattr(event, "uniqueid", ""))
        if ref is None and isinstance(event, CallEnded):
            ref = self._by_call.get(event.call_id)
        if ref is None and isinstance(event, AmdResult) and event.campaign == self.name:
            lead = self.leads.get(event.lead_id)
            if lead is not None and lead.status == "active":
                ref = self._ref(lead, lead.attempts)
        if ref is None and isinstance(event, CallQueued):
            ref = event.data.get(CTI_ATTEMPT)
        a = self.attempts.get(ref) if ref is not None else None
        if a is not None and isinstance(event, AmdResult | CallQueued):
            self._bind(a, event.uniqueid, event.call_id, event.channel)
        return a

    def _move(self, a: Attempt, trigger: str) -> bool:
        nxt = TRANSITIONS[a.state].get(trigger)
        if nxt is None:
            self.counts["ignored"] += 1
            return False
        a.log.append(trigger)
        a.state = nxt
        return True

    def _trigger(self, a: Attempt, trigger: str, now: float, out: list[Output]) -> None:
        if trigger == "ended" and a.state == S.DIALLING:
            return  # the channel failed before the OriginateResponse that says why; wait for it
        before = a.state
        if not self._move(a, trigger):
            return
        self._measure(a, before, trigger, now)
        state = a.state
        if a.answered_at is None and state not in (S.DIALLING, S.FINISHED):
            a.answered_at = now
        if state == S.HUMAN:
            if a.human_at is None:
                a.human_at = now
                out.append(AttemptAnswered(now, self.name, a.lead.lead_id, a.ref, a.uniqueid))
                self._arm(a, now + self.settings.safe_harbour_after)
            elif now >= a.human_at + self.settings.safe_harbour_after:
                self._safe_harbour(a, now, out)  # an agent missed the call after the window closed
            else:
                self._arm(a, a.human_at + self.settings.safe_harbour_after)
        elif state == S.RINGING and a.human_at is None:
            a.human_at = now  # queued without an AMD verdict we saw
        elif state == S.CONNECTED:
            a.connected_at = now
            a.deadline = None
        elif state in (S.ANSWERED, S.MACHINE):
            a.deadline = None
        if a.ended and a.state not in (S.DIALLING, S.FINISHED):
            self._move(a, "ended")
        if a.state == S.FINISHED:
            out.append(self._finish(a, now))

    def _measure(self, a: Attempt, before: AttemptState, trigger: str, now: float) -> None:
        """What the pacer learns from a move: answered or not (and after how long), AMD's verdict, the delay
        from dial to a person waiting."""
        m = self.measures
        since = now - (a.dialled_at if a.dialled_at is not None else a.started)
        if before == S.DIALLING:
            if a.state != S.FINISHED:
                m.on_dial_result(True, since)
            elif trigger == "originate-failed":
                m.on_dial_result(False, since)
        # a person from now on: waiting for an agent, or an agent's phone already ringing for them (the ACD can
        # offer before the campaign sees the call queued, as it does at once without AMD and with agents free)
        person = a.human_at is None and a.state in (S.HUMAN, S.RINGING)
        if trigger in ("amd-human", "amd-machine"):
            m.on_amd(trigger == "amd-human")
        elif person and not any(t.startswith("amd-") for t in a.log[:-1]):
            m.on_amd(True)  # no AMD verdict seen: a person reached the queue
        if person:
            m.on_person(since)

    def _safe_harbour(self, a: Attempt, now: float, out: list[Output]) -> None:
        if not self._move(a, "safe-harbour"):
            return
        a.redirected = True
        if a.channel:
            a.redirected_at = now
            out.append(Redirect(ref=a.ref + "/safe-harbour", server=self.server, channel=a.channel,
                                context=SAFE_HARBOUR_CONTEXT, exten=START_EXTEN, priority=1))

    def _arm(self, a: Attempt, deadline: float) -> None:
        a.deadline = deadline
        self._seq += 1
        heapq.heappush(self._timers, (deadline, self._seq, a.ref))

    def _outcome(self, a: Attempt) -> tuple[str, bool]:
        """(result, late) of an attempt that reached FINISHED."""
        if a.result:
            return a.result, False
        window = self.settings.safe_harbour_after
        if a.connected_at is not None:
            late = a.human_at is not None and a.connected_at - a.human_at > window
            return "connected", late
        if "amd-machine" in a.log:
            return "machine", False
        if a.human_at is None:
            return "hangup", False  # answered, gone before AMD said anything: not known to be a person
        # A person answered and got no agent: abandoned, whether the safe-harbour message played or they hung
        # up first in the silence (the law counts a person who got neither an agent nor a message; the dialer
        # cannot see when the greeting ended, so it does not grant itself the seconds after it).
        return "abandoned", False

    def lead_of_call(self, call_id: str) -> str | None:
        """The lead whose attempt is (or recently was) the call ``call_id`` (an agent's callback on that call
        is for that lead)."""
        ref = self._by_call.get(call_id)
        if ref is not None and ref in self.attempts:
            return self.attempts[ref].lead.lead_id
        return self._ended_calls.get(call_id)

    def _finish(self, a: Attempt, now: float) -> AttemptFinished:
        self.attempts.pop(a.ref, None)
        if a.call_id:
            self._ended_calls[a.call_id] = a.lead.lead_id
            while len(self._ended_calls) > EVICTED_KEPT:
                self._ended_calls.popitem(last=False)
        if self._by_uid.get(a.uniqueid) == a.ref:
            del self._by_uid[a.uniqueid]
        if self._by_call.get(a.call_id) == a.ref:
            del self._by_call[a.call_id]
        a.ended_at = now
        result, late = self._outcome(a)
        if a.human_at is not None:
            self._humans.append(result == "abandoned" or late)
            if result == "abandoned" and not a.redirected:
                self.measures.on_giveup(now - a.human_at)  # hung up in the silence: how long they waited
        wait = None if a.connected_at is None or a.human_at is None else a.connected_at - a.human_at
        ring = None if a.dialled_at is None else (a.answered_at if a.answered_at is not None else now) - a.dialled_at
        message: bool | None = None
        if result == "abandoned" or late:
            message = (a.redirected_at is not None and a.human_at is not None
                       and a.redirected_at - a.human_at <= self.settings.message_within() + 1e-6)
        return self._close_lead(a.lead, a.ref, a.number, result, now, uniqueid=a.uniqueid, wait=wait, late=late,
                                person=a.human_at is not None, amd=a.amd, ring=ring, message=message)

    def _close_lead(self, lead: Lead, ref: str, attempt: int, result: str, now: float, *, uniqueid: str = "",
                    wait: float | None = None, late: bool = False, person: bool = False, amd: str = "",
                    ring: float | None = None, message: bool | None = None) -> AttemptFinished:
        self.results[result] = self.results.get(result, 0) + 1
        lead.last_result, lead.last_at = result, now
        next_at: float | None = None
        if result == "connected":
            lead.status = "done"
        else:
            if result == "unknown":
                lead.unknowns += 1
            retry = result != INVALID_NUMBER and (
                (result == "unknown" and lead.unknowns == 1) or lead.attempts < self.settings.max_attempts)
            if retry:
                lead.status = "pending"
                next_at = lead.next_at = now + self.settings.retry_after.seconds(result)
                self._schedule(lead)
            else:
                lead.status = "exhausted"
        return AttemptFinished(now, self.name, lead.lead_id, ref, attempt, result, lead.status, next_at,
                               uniqueid, wait, late, person, amd, ring, message)


def _priors(s: CampaignSettings) -> Priors:
    p = s.predictive
    return Priors(answer_prob=p.prior_answer_rate, human_share=p.prior_human_share, talk_mean=p.prior_talk,
                  talk_sd=p.prior_talk / 2.0, wrap=p.prior_wrap, answer_time=p.prior_answer_time,
                  ring_timeout=s.originate_timeout, connect=p.prior_answer_time + 2.0,
                  connect_quantile=p.horizon_quantile, min_samples=p.min_samples)


_CALL_EVENTS = frozenset({AmdResult, CallQueued, DialStarted, DialEnded, ChannelHungup, CallEnded, CallOffered,
                          OfferNotAnswered})
