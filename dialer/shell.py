"""The dialer as the server runs it: the campaigns of ``cfg.dialer``, their leads, and the ordering that
makes an attempt durable before its Originate goes out. Thin shell around ``dialer.campaign``.

``Dialer.handle(event, now)`` / ``tick(now)`` return commands and dialer events for the server to apply,
like ``AcdService``. Writes go to a ``LeadStore`` through one serial queue in a worker thread (so an
attempt's start is written before its end); an Originate is released only when its ``AttemptStarted``
is committed, and it reaches the server through ``sink``. Without a store (virtual demo, tests) the
same happens synchronously in memory. Reads no clock itself (``now`` is passed in or asked of ``clock``);
imports Twisted only for Deferreds. Must not import ``centre.server``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from twisted.internet import defer
from twisted.python.failure import Failure

from acd.events import CallOffered, OfferNotAnswered, QueueCallFinished
from cti.commands import CommandFailed
from cti.db import is_unavailable, retry_backoff
from cti.events import (
    AmdResult,
    AmiConnectionChanged,
    CallEnded,
    CallQueued,
    ChannelHungup,
    DialEnded,
    DialStarted,
    OriginateResult,
    VariableSet,
)
from dialer.campaign import REF_PREFIX, Campaign, Output
from dialer.compliance import RETAIN, ComplianceLedger
from dialer.events import (
    AttemptAnswered,
    AttemptFinished,
    AttemptStarted,
    DialerEvent,
    DialerWarning,
    PreviewOffered,
)
from dialer.figures import DayFigures, pacing_figures
from dialer.leads import DemoLeads, LeadSourceError, read_source
from dialer.pacer import AgentOutlook, WindowFigures
from dialer.preview import PreviewError, Previews
from dialer.settings import DIAL_MODES, LAW_CAP, LAW_POLICIES, CampaignSettings, DialerSection

log = logging.getLogger("dialer")

UPKEEP_EVERY = 5.0  # seconds between refills of the hoppers (and reads of the do-not-call list and callbacks)
CALLBACK_LEAD = 60.0  # a scheduled callback is claimed for its campaign this many seconds before it is due

RunInThread = Callable[[Callable[[], Any]], "defer.Deferred[Any]"]


#: What the dialer reads of the ACD for a campaign queue at a time: its agents' outlook (ready agents,
#: ages of the calls and wrap-ups of the busy ones, what blending reserves). ``centre.wiring`` builds it.
Outlook = Callable[[str, float], AgentOutlook]
#: The abandonment so far in a campaign's policy window (``campaign, now``), e.g. from the compliance ledger;
#: None (or no such read): the campaign's own ``abandon_window``.
Windows = Callable[[str, float], WindowFigures | None]


class CampaignChangeError(Exception):
    """A supervisor's change to a campaign was refused and changed nothing; ``error_id`` is stable
    (``unknown-campaign``, ``campaign-disabled``, ``bad-mode``, ``bad-cap``, ``over-legal-cap``, ``invalid-change``)."""

    def __init__(self, error_id: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message
        self.details = details


def refill_plan(campaign: Campaign, now: float) -> tuple[int, float]:
    """What a hopper read takes of the store (``LeadStore.refill``): up to the hopper's size, and the supply due
    within the run-out warning's horizon."""
    return campaign.settings.hopper, now + campaign.settings.run_out_warning * 60.0


class Dialer:
    """Every configured campaign. ``outlook(queue, now)``: the queue's agents as outbound may count them
    (or, simpler, ``idle_agents(queue)``: ready agents for the queue now); ``sink``: where outputs produced
    later (after a store write) go; ``clock``: the current time for those. An engine on the server's bus
    (``cti.bus.Engine``): ``subscriptions`` are the events the campaigns follow (``QueueCallFinished``: the
    talk and wrap-up times the predictive pacer learns)."""

    subscriptions: tuple[type, ...] = (CommandFailed, AmiConnectionChanged, VariableSet, OriginateResult, AmdResult,
                                       CallQueued, DialStarted, DialEnded, ChannelHungup, CallEnded, CallOffered,
                                       OfferNotAnswered, QueueCallFinished)

    def __init__(self, section: DialerSection, *, servers: list[str], dial_template: str,
                 idle_agents: Callable[[str], int] | None = None, sink: Callable[[list[Any]], None],
                 clock: Callable[[], float], base_dir: Path | None = None,
                 demo_leads: DemoLeads | None = None, outlook: Outlook | None = None,
                 windows: Windows | None = None,
                 ready_agents: Callable[[str], Sequence[str]] | None = None) -> None:
        if outlook is None and idle_agents is None:
            raise ValueError("the dialer needs outlook= (or idle_agents=) to know the campaign queues' agents")
        self.section = section
        self.idle_agents = idle_agents
        self.outlook = outlook
        self.windows = windows
        self.sink = sink
        self.clock = clock
        self.base_dir = base_dir
        self.demo_leads = demo_leads
        self.campaigns: dict[str, Campaign] = {}
        for c in section.campaigns:
            server = c.server or (servers[0] if servers else "")
            self.campaigns[c.name] = Campaign(c, server=server, dial_template=dial_template)
        # previews: ``ready_agents(queue)``, the ids of the queue's ready agents, get the leads to preview (in
        # preview mode, when a campaign's pacer steps down to preview, and an agent its own callbacks)
        self.ready_agents = ready_agents
        self.previews = {name: Previews(c) for name, c in self.campaigns.items()}
        self.day_figures = {name: DayFigures(c.settings.timezone) for name, c in self.campaigns.items()}
        self.loaded = False
        self.store: Any | None = None
        self._run: RunInThread | None = None
        self._tail: defer.Deferred[Any] | None = None
        self._next_pace: float | None = None
        self._up: set[str] = set()  # Asterisk servers whose AMI is connected: campaigns dial only through those
        self._next_upkeep = 0.0  # when the hopper, the do-not-call list and the callbacks are next read
        self._next_dnc = 0.0
        self._upkeep_running = False
        # the store unreachable (cti.db.is_unavailable): no dialling; the results of attempts already written
        # are held, in order, and written before anything else at the next try (``_retry_at``, with backoff)
        self._store_down_since: float | None = None
        self._store_failures = 0
        self._held: list[DialerEvent] = []
        self._retry_at: float | None = None
        self.listeners: list[Callable[[object], None]] = []
        self.paused: set[str] = set()  # campaigns a supervisor paused (``pause``/``resume``)
        # campaigns whose lease this node holds (several nodes: one paces each campaign; ``set_held``); None: every
        # campaign (no leases)
        self.held: frozenset[str] | None = None
        self.taking_over: set[str] = set()  # campaigns just gained whose hopper is being read again (``take_over``)
        self._take_over_again: set[str] = set()  # those whose read failed: read again at the next upkeep
        # the campaigns' compliance evidence and windows (dialer.compliance): fed with every AttemptFinished,
        # rebuilt from the store on start-up; the pacer reads ``compliance.window(campaign, now)``
        self.compliance = ComplianceLedger(section.campaigns)
        if self.windows is None:  # the policy's window as the ledger keeps it (rebuilt from the store at start)
            self.windows = self.compliance.window

    # ------------------------------------------------------------------ leads
    def load_memory(self, now: float) -> list[Output]:
        """Read every campaign's leads into memory (no store: progress is not kept across restarts)."""
        out: list[Output] = []
        for campaign in self.campaigns.values():
            leads, errors = self._read(campaign, now, out)
            loaded = campaign.load(leads, now)
            self._record(loaded)
            out.extend(loaded)
            del errors
        self.loaded = True
        return out

    def open_store(self, store: Any, run_in_thread: RunInThread, now: float, *, recover: bool = True) -> list[Output]:
        """Blocking (start-up, before the server runs): add new leads to the store, load the hopper of each
        campaign (the leads with an attempt open, and the next ``hopper`` pending ones), write the recovery of
        attempts a crash left open, read the do-not-call list and the callbacks queued for the campaigns.
        Later reads and writes use ``run_in_thread``. Without ``recover`` (several nodes: an attempt open may be
        a live node's) the attempts left open are resolved only by the node that takes the campaign's pacing
        (``take_over``)."""
        out: list[Output] = []
        dnc = store.dnc_numbers()
        for campaign in self.campaigns.values():
            leads, _ = self._read(campaign, now, out)
            added = store.import_leads(campaign.name, leads, now)
            stored = store.load(campaign.name, campaign.settings.hopper)
            campaign.block_numbers(dnc)
            recovered = campaign.load(stored, now, recover=recover)
            store.apply([e for e in recovered if isinstance(e, DialerEvent)])
            self.compliance.rebuild(campaign.name, store.ledger_entries(campaign.name, now - RETAIN, now + 1.0))
            out.extend(recovered)
            log.info("campaign %s: %d leads (%d new)", campaign.name, len(stored), added)
        for cb in store.claim_callbacks(self._queues(), now + CALLBACK_LEAD, now):
            self.campaigns[cb.campaign].schedule_callback(cb.lead, cb.due, cb.owner, cb.notes)
        self.store, self._run, self.loaded = store, run_in_thread, True
        self._next_dnc = now + self.section.dnc_refresh
        self._next_upkeep = now + UPKEEP_EVERY
        return out

    def _queues(self) -> dict[str, str]:
        return {c.name: c.settings.queue for c in self.campaigns.values() if c.settings.enabled}

    def block_number(self, number: str, source: str, now: float) -> defer.Deferred[Any]:
        """Put ``number`` on the do-not-call list: at once for every campaign, and in the store (the Deferred
        fires when it is written; at once without a store)."""
        for campaign in self.campaigns.values():
            campaign.block_numbers([number])
        store, run = self.store, self._run
        if store is None or run is None:
            return defer.succeed(False)
        return self._serial(lambda: store.add_dnc(number, source, now))

    def _serial(self, job: Callable[[], Any]) -> defer.Deferred[Any]:
        """Run ``job`` in the store's thread after every write queued before it (reads see those writes)."""
        run = self._run
        assert run is not None
        result: defer.Deferred[Any] = defer.Deferred()
        prev = self._tail if self._tail is not None else defer.succeed(None)

        def go(_: object) -> defer.Deferred[Any]:
            return run(job)

        d = prev.addBoth(go)
        d.addBoth(lambda r: result.callback(r) if not isinstance(r, Failure) else result.errback(r))
        self._tail = d
        return result

    def _upkeep(self, now: float) -> None:
        """In the store's thread: refill each campaign's hopper, count its supply, re-read the do-not-call list
        (every ``dnc_refresh`` s) and claim the callbacks due soon; then hand them to the campaigns."""
        store = self.store
        if store is None or self._upkeep_running:
            return
        for name in sorted(self._take_over_again):
            self._take_over_again.discard(name)
            self.take_over(name)
        self._upkeep_running = True
        read_dnc = now >= self._next_dnc
        if read_dnc:
            self._next_dnc = now + self.section.dnc_refresh
        plans = {c.name: refill_plan(c, now) for c in self.campaigns.values() if c.settings.enabled}
        queues = self._queues()

        def job() -> tuple[dict[str, tuple[list[Any], int]], set[str] | None, list[Any]]:
            refills = {name: store.refill(name, size, until) for name, (size, until) in plans.items()}
            dnc = store.dnc_numbers() if read_dnc else None
            return refills, dnc, store.claim_callbacks(queues, now + CALLBACK_LEAD, now)

        def done(result: tuple[dict[str, tuple[list[Any], int]], set[str] | None, list[Any]]) -> None:
            self._upkeep_running = False
            self._store_reached()
            refills, dnc, callbacks = result
            at = self.clock()
            out: list[Any] = []
            for name, (leads, supply) in refills.items():
                campaign = self.campaigns[name]
                if dnc is not None:
                    campaign.block_numbers(dnc)
                campaign.refill(leads)  # before the eviction: a lead finished since the read is still known
                campaign.evict_finished()
                out.extend(campaign.supply_warning(at, supply))
            for cb in callbacks:
                self.campaigns[cb.campaign].schedule_callback(cb.lead, cb.due, cb.owner, cb.notes)
            for w in out:
                log.warning("campaign %s: %s: %s", w.campaign, w.code, w.message)
            if out:
                self.sink(out)

        def failed(failure: Failure) -> None:
            self._upkeep_running = False
            if is_unavailable(failure.value):
                self._store_unreachable(failure)
            else:
                log.error("dialer: reading the store failed: %s", failure.getErrorMessage())

        self._serial(job).addCallbacks(done, failed)

    def _read(self, campaign: Campaign, now: float, out: list[Output]) -> tuple[list[Any], list[str]]:
        s = campaign.settings
        try:
            leads, errors = read_source(s.leads, s.demo_leads, self.base_dir, self.demo_leads)
        except LeadSourceError as exc:
            out.append(DialerWarning(now, campaign.name, "lead-source", str(exc)))
            log.error("campaign %s: %s", campaign.name, exc)
            return [], []
        for error in errors:
            log.warning("campaign %s: %s", campaign.name, error)
        if errors:
            out.append(DialerWarning(now, campaign.name, "lead-rows", f"{len(errors)} rejected rows: {errors[0]}"))
        return leads, errors

    def lead_of_call(self, call_id: str) -> tuple[str, str] | None:
        """(campaign, lead) of the campaign call ``call_id`` (open, or among the latest finished), else None:
        an agent's callback on that call is for that lead (``centre.callbacks``)."""
        for name, c in self.campaigns.items():
            lead_id = c.lead_of_call(call_id)
            if lead_id is not None:
                return name, lead_id
        return None

    def lead_fields(self, campaign: str, lead_id: str) -> dict[str, str]:
        c = self.campaigns.get(campaign)
        return c.lead_fields(lead_id) if c is not None else {}

    # ------------------------------------------------------------------ events in
    def handle(self, event: object, now: float) -> list[Output]:
        if isinstance(event, CommandFailed) and not event.ref.startswith(REF_PREFIX):
            return []
        if isinstance(event, AmiConnectionChanged):
            (self._up.add if event.connected else self._up.discard)(event.server)
        out: list[Output] = []
        for campaign in self.campaigns.values():
            out.extend(campaign.handle(event, now))
        out.extend(self._follow(out))
        return self._persist(out, now) if out else out

    def tick(self, now: float) -> list[Output]:
        """Timers of every campaign, then pacing when due."""
        out: list[Output] = []
        for campaign in self.campaigns.values():
            out.extend(campaign.tick(now))
        for previews in self.previews.values():
            out.extend(previews.tick(now))
        out.extend(self._follow(out))
        if self.store is not None and now >= self._next_upkeep:
            self._next_upkeep = now + UPKEEP_EVERY
            self._upkeep(now)
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._write([], [])  # the held results, on their own
        if self.loaded and (self._next_pace is None or now >= self._next_pace - 1e-9):
            self._next_pace = now + self.section.pace_interval
            for campaign in self.campaigns.values():
                # no dialling while the PBX is unreachable: every Originate would fail and use up an attempt;
                # nor while the store is: no attempt may start that is not written first
                # nor a campaign another node paces (its lease is not held here)
                if campaign.server in self._up and not self.store_down and self.paces(campaign.name) \
                        and campaign.next_due() is not None:
                    out.extend(self._pace(campaign, now))
        return self._persist(out, now) if out else out

    def _pace(self, campaign: Campaign, now: float) -> list[Output]:
        """One campaign's pacing round: its agents' own callbacks due first (each to its owner, as a preview),
        then its mode: previews for the ready agents (preview mode, or the pacer stepped down to preview), or
        the lines the pacer allows."""
        out: list[Output] = []
        previews = self.previews[campaign.name]
        queue = campaign.settings.queue
        ready: list[str] | None = None

        def ready_now() -> list[str]:
            nonlocal ready
            if ready is None:
                ready = list(self.ready_agents(queue)) if self.ready_agents is not None else []
            return ready

        if campaign.owners_due(now):
            out.extend(previews.offer_callbacks(now, ready_now()))
        if campaign.settings.mode == "preview":
            out.extend(previews.pop(now, ready_now()))
            return out
        window = self.windows(campaign.name, now) if self.windows is not None else None
        agents = self._agents(queue, now)
        if out:  # agents just shown their callbacks are held when the bus applies it: not ready for a line now
            agents = (max(0, agents - len(out)) if isinstance(agents, int)
                      else replace(agents, ready=max(0, agents.ready - len(out))))
        out.extend(campaign.pace(now, agents, window))
        decision = campaign.last_decision
        if decision is not None and decision.previews > 0:
            out.extend(previews.pop(now, ready_now(), limit=decision.previews))
        if decision is not None and (decision.dial or decision.previews) and log.isEnabledFor(logging.DEBUG):
            log.debug("campaign %s pacing: %s", campaign.name, decision.explain)
        return out

    def _agents(self, queue: str, now: float) -> AgentOutlook | int:
        if self.outlook is not None:
            return self.outlook(queue, now)
        assert self.idle_agents is not None
        return self.idle_agents(queue)

    def next_deadline(self) -> float | None:
        """The earliest campaign timer, or the next pacing round when a lead is (or becomes) due."""
        deadlines = [d for d in (c.next_deadline() for c in self.campaigns.values()) if d is not None]
        deadlines += [d for d in (p.next_deadline() for p in self.previews.values()) if d is not None]
        if self.store is not None:
            deadlines.append(self._next_upkeep)
        if self._retry_at is not None:
            deadlines.append(self._retry_at)
        if self.loaded:
            due = [d for d in (c.next_due() for n, c in self.campaigns.items() if self.paces(n)) if d is not None]
            if due:
                deadlines.append(max(min(due), self._next_pace if self._next_pace is not None else min(due)))
        return min(deadlines) if deadlines else None

    # ------------------------------------------------------------------ several nodes: which campaigns are ours
    def set_held(self, names: Iterable[str] | None) -> None:
        """The campaigns this node holds the lease of (``centre.node_leases``): only those are paced. A campaign
        dropped stops at once: no new attempt, preview or callback dial starts here (calls in flight go on and
        their results are kept); one added is paced at the next round. None: every campaign."""
        held = None if names is None else frozenset(names)
        if held is not None and self.held is not None and held - self.held:
            self._next_pace = None  # pace the ones just gained at the next tick
        self.held = held

    def paces(self, name: str) -> bool:
        """Whether this node paces campaign ``name`` (its lease is held here, or there are no leases, and its
        hopper is as the store has it since it was taken over)."""
        return (self.held is None or name in self.held) and name not in self.taking_over

    def take_over(self, name: str, changed_hands: bool = True) -> None:
        """Campaign ``name``'s pacing is this node's now (several nodes: its lease, ``centre.node_leases``). The
        attempts the store has open that are not this node's were made by a node that no longer paces it (dead,
        or stopped): they are resolved as ``unknown`` (``Campaign.recover_open``). If the lease ``changed_hands``,
        the leads this node read earlier and still takes for pending may have been dialled there, so they are
        dropped and the hopper read again from the store before this node dials any (``paces`` is False until
        then; a failed read is retried by the next upkeep)."""
        campaign = self.campaigns.get(name)
        store = self.store
        if campaign is None or store is None:
            return
        dropped = campaign.forget_pending() if changed_hands else 0
        self.taking_over.add(name)
        size, until = refill_plan(campaign, self.clock())

        def read() -> tuple[tuple[list[Any], int] | None, list[Any]]:
            return (store.refill(name, size, until) if changed_hands else None), store.open_leads(name)

        def done(result: tuple[tuple[list[Any], int] | None, list[Any]]) -> None:
            refill, open_leads = result
            added = campaign.refill(refill[0]) if refill is not None else 0
            now = self.clock()
            recovered = campaign.recover_open(open_leads, now)
            self.taking_over.discard(name)
            self._next_pace = None
            log.info("campaign %s taken over: hopper read again (%d leads dropped, %d pending now), %d attempts "
                     "another node left open resolved as unknown", name, dropped, added, len(recovered))
            if recovered:
                self.sink(self._persist(recovered, now))

        def failed(failure: Failure) -> None:
            self._take_over_again.add(name)
            log.error("campaign %s taken over: reading its hopper failed (%s); retried at the next upkeep", name,
                      failure.getErrorMessage())

        self._serial(read).addCallbacks(done, failed)

    # ------------------------------------------------------------------ a supervisor's changes at run time
    def pause(self, name: str) -> None:
        """Stop dialling the campaign at once: no new attempt, preview or callback dial starts (the pacer is not
        asked, an accepted preview is refused); calls in flight go on and their results are kept. For this
        process: a restart runs the campaign as configured."""
        campaign = self._campaign(name)
        if campaign.settings.enabled:
            campaign.settings = campaign.settings.model_copy(update={"enabled": False})
            self.paused.add(name)

    def resume(self, name: str) -> None:
        """Dial a paused campaign again (at the next pacing round). A campaign disabled in the configuration
        is not started here (``CampaignChangeError`` ``campaign-disabled``)."""
        campaign = self._campaign(name)
        if name not in self.paused:
            if not campaign.settings.enabled:
                raise CampaignChangeError("campaign-disabled", f"campaign {name} is disabled in the configuration")
            return
        self.paused.discard(name)
        campaign.settings = campaign.settings.model_copy(update={"enabled": True})
        self._next_pace = None  # pace at the next tick

    def change(self, name: str, *, mode: str | None = None, max_abandon_rate: float | None = None,
               ratio: float | None = None) -> CampaignSettings:
        """Change a campaign's dial mode, abandon cap or ratio for this process (the next pacing round uses
        them), validated as the configuration is: a mode not in ``DIAL_MODES`` (``bad-mode``), a cap over the
        campaign policy's legal one (``over-legal-cap``, naming the law) or out of range (``bad-cap``).
        Leaving ``ratio`` mode sets the ratio back to 1. Returns the new settings."""
        campaign = self._campaign(name)
        old = campaign.settings
        update: dict[str, Any] = {}
        if mode is not None:
            if mode not in DIAL_MODES:
                raise CampaignChangeError("bad-mode", f"{mode[:20]!r} is not a dial mode ({', '.join(DIAL_MODES)})")
            update["mode"] = mode
            if mode != "ratio" and ratio is None:
                update["ratio"] = 1.0
        if ratio is not None:
            update["ratio"] = ratio
        if max_abandon_rate is not None:
            update["max_abandon_rate"] = max_abandon_rate
        try:
            new = CampaignSettings.model_validate({**old.model_dump(), **update})
        except ValidationError as exc:
            problem = exc.errors(include_input=False, include_url=False)[0]
            field = ".".join(str(p) for p in problem["loc"]) or "campaign"
            # a whole-model error is about mode and ratio together (ratio belongs to mode: ratio)
            error_id = "bad-cap" if field == "max_abandon_rate" else "bad-mode" \
                if field in ("mode", "ratio") or ({"mode", "ratio"} & set(update) and not problem["loc"]) \
                else "invalid-change"
            raise CampaignChangeError(error_id, f"{field}: {problem['msg']}") from None
        for loc, message in new.policy_errors():
            if loc == ("max_abandon_rate",):
                raise CampaignChangeError("over-legal-cap", message, law=LAW_POLICIES.get(new.policy, new.policy),
                                          legal_cap=LAW_CAP)
        campaign.settings = new
        if new.policy == "custom" and name in self.compliance.policies:  # the custom policy's cap is the campaign's
            self.compliance.policies[name] = replace(self.compliance.policies[name], cap=new.max_abandon_rate)
        return new

    def _campaign(self, name: str) -> Campaign:
        campaign = self.campaigns.get(name)
        if campaign is None:
            raise CampaignChangeError("unknown-campaign", f"no campaign named {name[:64]!r}",
                                      known=sorted(self.campaigns))
        return campaign

    # ------------------------------------------------------------------ preview mode
    def preview_accept(self, agent_id: str, lead_id: str, now: float) -> list[Output]:
        """The agent accepts its preview: the lead is dialled (raises ``PreviewError`` if none is shown, or
        ``campaign-paused`` while a supervisor paused the campaign: the agent may skip it)."""
        previews = self._previews_of(agent_id)
        if previews.campaign.name in self.paused:
            raise PreviewError("campaign-paused", "the campaign is paused by a supervisor: nothing is dialled now")
        if not self.paces(previews.campaign.name):
            raise PreviewError("campaign-paused", "another node dials this campaign now: nothing is dialled here")
        out = previews.accept(agent_id, lead_id, now)
        return self._persist(out, now)

    def preview_skip(self, agent_id: str, lead_id: str, reason: str, now: float) -> list[Output]:
        """The agent skips its preview: the lead goes back, the agent is freed."""
        return self._previews_of(agent_id).skip(agent_id, lead_id, reason, now)

    def preview_withdraw(self, agent_id: str, now: float) -> None:
        """The agent's preview cannot be shown (the agent is no longer ready): its lead goes back."""
        for previews in self.previews.values():
            previews.withdraw(agent_id, now)

    def preview_for(self, agent_id: str) -> PreviewOffered | None:
        """The preview the agent is looking at, if any."""
        for previews in self.previews.values():
            shown = previews.showing(agent_id)
            if shown is not None:
                return shown
        return None

    def _previews_of(self, agent_id: str) -> Previews:
        for previews in self.previews.values():
            if previews.showing(agent_id) is not None:
                return previews
        raise PreviewError("no-preview", "no preview lead is waiting for you")

    def _follow(self, out: Sequence[object]) -> list[Output]:
        """What the previews make of attempts that finished (an accepted lead not reached frees its agent)."""
        follow: list[Output] = []
        if not out:
            return follow
        for previews in self.previews.values():
            if previews.dialling:
                follow.extend(previews.follow(out))
        return follow

    def figures(self, now: float) -> list[dict[str, Any]]:
        """Each campaign's live figures (the wallboard's ``campaigns``): today's tally (``dialer.figures``),
        the recent abandon rate the pacer steers by (over the campaign's last ``abandon_window`` live
        answers), leads due now, calls in flight, the pacer's last decision, the mode it paces in now
        (``step``: the campaign's mode, or the step down to progressive or preview), the agents' own callbacks
        waiting for their owners and the previews shown."""
        out = []
        for name, c in self.campaigns.items():
            decision = c.last_decision
            previews = self.previews.get(name)
            out.append({
                "campaign": name, "queue": c.settings.queue, "mode": c.settings.mode, "enabled": c.settings.enabled,
                "paused": name in self.paused, "max_abandon_rate": c.settings.max_abandon_rate,
                "today": self.day_figures[name].tally(now).as_dict(),
                "recent_abandon_rate": c.abandon_rate(), "due_leads": c.due_leads(now), "in_flight": c.in_flight,
                "pacing": pacing_figures(decision), "step": c.step, "owned_callbacks": c.owned_callbacks(),
                "previews": len(previews.offers) if previews is not None else 0,
            })
        return out

    def stats(self) -> list[dict[str, Any]]:
        return [c.stats() for c in self.campaigns.values()]

    # ------------------------------------------------------------------ durability
    def _persist(self, out: list[Output], now: float) -> list[Output]:
        """Hand dialer events to the store (in order); release each attempt's Originate once its start is
        written. Returns what may be applied now."""
        for w in out:
            if isinstance(w, DialerWarning):
                log.warning("campaign %s: %s: %s", w.campaign, w.code, w.message)
        self._record(out)
        events = [e for e in out if isinstance(e, DialerEvent) and not isinstance(e, DialerWarning)]
        starts = [e for e in events if isinstance(e, AttemptStarted)]
        if self.store is None or self._run is None:
            for s in starts:
                out.extend(self.campaigns[s.campaign].persisted(s.ref, now))
            out.extend(self._follow(out))
            self._observe(out, now)
            return out
        if events:
            self._write(events, starts)
        self._observe(out, now)
        return out

    def _record(self, out: list[Output]) -> None:
        for e in out:
            if isinstance(e, AttemptFinished):
                lead = self.campaigns[e.campaign].leads.get(e.lead_id)
                self.compliance.record(e, lead.number if lead is not None else "")

    def _observe(self, out: list[Output], now: float) -> None:
        for e in out:
            if isinstance(e, DialerEvent) and e.campaign in self.day_figures:
                self.day_figures[e.campaign].observe(e, now)

    @property
    def store_down(self) -> bool:
        """The store could not be reached at the last try: no dialling, finished attempts' results held."""
        return self._store_down_since is not None

    def _store_unreachable(self, failure: Failure) -> None:
        """Log the outage once; arm the next try of the held writes (with backoff)."""
        self._store_failures += 1
        if self._store_down_since is None:
            self._store_down_since = self.clock()
            log.warning("dialer: the store is unavailable (%s: %s); no dialling until it is back, results kept",
                        failure.type.__name__ if failure.type else "error",
                        (failure.getErrorMessage().splitlines() or [""])[0][:200])
        if self._held:
            self._retry_at = self.clock() + retry_backoff(self._store_failures)

    def _store_reached(self) -> None:
        if self._store_down_since is not None:
            log.warning("dialer: the store is back after %.1f s and %d failed tries",
                        self.clock() - self._store_down_since, self._store_failures)
        self._store_down_since, self._store_failures = None, 0

    def _write(self, events: list[DialerEvent], starts: list[AttemptStarted]) -> None:
        store, run = self.store, self._run
        assert store is not None and run is not None
        taken: list[DialerEvent] = []  # the results held from an earlier try, written first

        def write(_: object) -> defer.Deferred[Any]:
            taken.extend(self._held)
            self._held.clear()
            batch = taken + events
            if not batch:
                return defer.succeed(None)
            return run(lambda: store.apply(batch))

        def written(_: object) -> None:
            if taken or events:
                self._store_reached()
            now = self.clock()
            released: list[Any] = []
            for s in starts:
                released.extend(self.campaigns[s.campaign].persisted(s.ref, now))
            if released:
                # an attempt can end right there (a number that cannot be dialled): its end is written too
                released.extend(self._follow(released))
                self.sink(self._persist(released, now))

        def failed(failure: Failure) -> None:
            now = self.clock()
            reason = failure.getErrorMessage()
            if is_unavailable(failure.value):
                # keep what happened to attempts already written (not those this write would have started)
                started = {s.ref for s in starts}
                self._held[:0] = taken + [e for e in events if isinstance(e, (AttemptAnswered, AttemptFinished))
                                          and e.ref not in started]
                self._store_unreachable(failure)
            else:
                log.error("store write failed (%d events): %s", len(events) + len(taken), reason)
            back: list[Any] = []
            for s in starts:
                back.extend(self.campaigns[s.campaign].not_persisted(s.ref, now, reason))
                previews = self.previews.get(s.campaign)
                if previews is not None:
                    back.extend(previews.not_dialled(s.ref, now))
            if back:
                self.sink(back)

        prev = self._tail if self._tail is not None else defer.succeed(None)
        d = prev.addBoth(write)  # one write at a time, in order, whatever became of the previous one
        d.addCallbacks(written, failed)
        d.addErrback(lambda f: log.error("%s", f.getErrorMessage()))
        self._tail = d
