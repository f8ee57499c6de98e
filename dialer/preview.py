"""Preview mode of one campaign, pure: which agent sees which lead, and what its accept, skip or time-out
does. No I/O, no clock (``now`` is passed in).

A ready agent of the campaign's queue is given the next lead (``PreviewOffered``; the application holds
the agent in the ACD, reserved with reason ``preview``, for the attempt ``ref`` an accept will start):

* accept: the attempt starts as any other (durable first, then its Originate); the person who answers is
  queued with ``CTI_ATTEMPT`` = ``ref`` and the ACD offers that call to the agent held for it, no other.
  If the dial does not reach the agent (busy, no answer, machine, ...), ``PreviewEnded`` with that result
  frees the agent (ready: the next lead pops).
* skip: the lead goes back, due again after ``preview_skip_retry`` seconds, the skip's reason in
  ``PreviewEnded``; the agent is ready again and gets the next lead at the next pacing round.
* time-out (``preview_timeout`` seconds without an answer): the lead goes back where it was, at the head
  of the leads due (the next agent gets it), and the agent is made not ready with reason
  ``preview-timeout``: an agent who does not answer a preview is probably away, and popping lead after
  lead to an empty desk would only hold them up.

A preview is not written to the store: the lead stays pending there until an accept starts its attempt,
so a restart pops it again rather than losing it.

Previews serve three purposes, with the same accept / skip / time-out: a campaign in ``mode: preview``
(``pop``); any other campaign stepped down to preview by its pacer (``preview-fallback``: ``pop`` with the
decision's count of agents); and an agent's own scheduled callback (``offer_callback``: aimed at that agent
alone, whatever the campaign's mode; skipped, it stays the agent's, due again after ``preview_skip_retry``;
timed out, it waits for the agent until its grace is over, ``Campaign.tick``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dialer.campaign import Campaign, Output
from dialer.events import AttemptFinished, AttemptStarted, PreviewEnded, PreviewOffered

PREVIEW_TIMEOUT_REASON = "preview-timeout"  # the not-ready reason of an agent whose preview timed out
MAX_SKIP_REASON = 200


class PreviewError(Exception):
    """A refused preview action; ``error_id`` is the console protocol's (``no-preview``, ``unknown-lead``)."""

    def __init__(self, error_id: str, message: str) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message


@dataclass(frozen=True, slots=True)
class Offer:
    lead_id: str
    ref: str
    deadline: float
    event: PreviewOffered


class Previews:
    """The previews of one campaign: offers waiting for an agent's answer, and accepted ones being dialled."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self.offers: dict[str, Offer] = {}  # agent id -> the lead it is looking at
        self.dialling: dict[str, tuple[str, str]] = {}  # attempt ref -> (the agent who accepted it, lead id)

    def busy(self) -> set[str]:
        """The agents looking at a preview or held for one they accepted."""
        return set(self.offers) | {agent_id for agent_id, _ in self.dialling.values()}

    def pop(self, now: float, ready_agents: Sequence[str], limit: int | None = None) -> list[Output]:
        """Give each ready agent without a preview the next lead (as many as there are leads; at most ``limit``
        new previews)."""
        out: list[Output] = []
        busy = self.busy()
        for agent_id in ready_agents:
            if limit is not None and len(out) >= limit:
                break
            if agent_id in busy:
                continue
            lead = self.campaign.take_lead(now)
            if lead is None:
                break
            out.append(self._show(agent_id, lead.lead_id, now))
        return out

    def offer_callbacks(self, now: float, ready_agents: Sequence[str]) -> list[Output]:
        """Give each ready agent without a preview its own callback due by ``now``, if it has one."""
        out: list[Output] = []
        owners = self.campaign.owners_due(now)
        if not owners:
            return out
        busy = self.busy()
        for agent_id in ready_agents:
            if agent_id not in owners or agent_id in busy:
                continue
            lead = self.campaign.callback_for(agent_id, now)
            if lead is not None:
                out.append(self._show(agent_id, lead.lead_id, now))
        return out

    def _show(self, agent_id: str, lead_id: str, now: float) -> PreviewOffered:
        lead = self.campaign.leads[lead_id]
        ref = self.campaign.next_ref(lead)
        deadline = now + self.campaign.settings.preview_timeout
        owned = self.campaign.owned_callback(lead_id)
        event = PreviewOffered(now, self.campaign.name, lead_id, ref, agent_id, self.campaign.lead_fields(lead_id),
                               deadline, callback_due=None if owned is None else owned.due,
                               callback_notes="" if owned is None else owned.notes)
        self.offers[agent_id] = Offer(lead_id, ref, deadline, event)
        return event

    def _offer(self, agent_id: str, lead_id: str) -> Offer:
        offer = self.offers.get(agent_id)
        if offer is None:
            raise PreviewError("no-preview", "no preview lead is waiting for you")
        if offer.lead_id != lead_id:
            raise PreviewError("unknown-lead", "that is not the lead you are previewing")
        return offer

    def accept(self, agent_id: str, lead_id: str, now: float) -> list[Output]:
        """Dial the lead: its ``AttemptStarted`` (persist it, then ``Campaign.persisted`` gives the Originate)."""
        offer = self._offer(agent_id, lead_id)
        started = self.campaign.start_attempt(lead_id, now)
        del self.offers[agent_id]
        if started is None:  # cannot happen while the offer stands; said plainly if it does
            raise PreviewError("no-preview", "the lead is no longer available")
        assert isinstance(started, AttemptStarted) and started.ref == offer.ref
        self.dialling[offer.ref] = (agent_id, lead_id)
        return [started, PreviewEnded(now, self.campaign.name, lead_id, offer.ref, agent_id, "accepted",
                                      release=False)]

    def skip(self, agent_id: str, lead_id: str, reason: str, now: float) -> list[Output]:
        """The lead goes back (due again after ``preview_skip_retry``); the agent is freed."""
        offer = self._offer(agent_id, lead_id)
        del self.offers[agent_id]
        self.campaign.put_back(lead_id, now + self.campaign.settings.preview_skip_retry)
        return [PreviewEnded(now, self.campaign.name, lead_id, offer.ref, agent_id, "skipped",
                             reason=reason[:MAX_SKIP_REASON])]

    def withdraw(self, agent_id: str, now: float) -> None:
        """The agent could not be held for its preview (no longer ready): the lead goes back at once."""
        offer = self.offers.pop(agent_id, None)
        if offer is not None:
            self.campaign.put_back(offer.lead_id)

    def tick(self, now: float) -> list[Output]:
        """Previews not answered in time: the lead goes back at once, the agent is made not ready."""
        out: list[Output] = []
        for agent_id, offer in list(self.offers.items()):
            if offer.deadline <= now:
                del self.offers[agent_id]
                self.campaign.put_back(offer.lead_id)
                out.append(PreviewEnded(now, self.campaign.name, offer.lead_id, offer.ref, agent_id, "timeout",
                                        not_ready=PREVIEW_TIMEOUT_REASON))
        return out

    def next_deadline(self) -> float | None:
        return min((o.deadline for o in self.offers.values()), default=None)

    def follow(self, outputs: Sequence[object]) -> list[Output]:
        """An accepted preview's attempt finished: unless it reached the agent, the agent is freed."""
        out: list[Output] = []
        for e in outputs:
            if isinstance(e, AttemptFinished) and e.ref in self.dialling:
                agent_id, _ = self.dialling.pop(e.ref)
                if e.result != "connected":
                    out.append(PreviewEnded(e.ts, self.campaign.name, e.lead_id, e.ref, agent_id, e.result))
        return out

    def not_dialled(self, ref: str, now: float) -> list[Output]:
        """An accepted lead could not be dialled (its attempt could not be written): the agent is freed."""
        held = self.dialling.pop(ref, None)
        if held is None:
            return []
        agent_id, lead_id = held
        return [PreviewEnded(now, self.campaign.name, lead_id, ref, agent_id, "failed")]

    def showing(self, agent_id: str) -> PreviewOffered | None:
        """The preview the agent is looking at (a reconnecting console shows it again)."""
        offer = self.offers.get(agent_id)
        return None if offer is None else offer.event
