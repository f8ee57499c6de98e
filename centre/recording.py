"""Call recording on the bus: MixMonitor on the caller's channel when an agent answers a recorded call,
its state from Asterisk's MixMonitor events, pauses for PCI DSS, and the recording on the interaction.

The decision and the file name are ``cti.recording``'s (pure). This engine:

* on ``CallAnswered`` (after the session engine, which numbers the agent's part): the call's policy (its
  campaign's ``recording``, else its queue's, else ``recording.default_policy``) decides; a recorded call
  gets ``StartRecording`` (AMI MixMonitor, File = the rendered path, Options = ``recording.options``) on the
  caller's channel, its interaction the file path (``recording_path``), and the agent a ``recording`` frame
  (``starting``). A previous part's recording still running on that channel is stopped first;
* follows ``RecordingChanged`` (MixMonitorStart/Stop/Mute): ``recording``, ``paused``, ``stopped``;
  a refused MixMonitor (``CommandFailed``) is ``failed``;
* keeps the pause intervals (``paused``/``resumed`` from the console, or a MixMonitorMute seen on the
  channel) and writes them on the interaction (``recording_pauses``: ``[{"from", "to", "by"}]``, epoch
  seconds) each time one opens or closes, for audit: what was muted is silence in the file;
* when the agent is off the call (``AgentStateChanged`` from ``on_call``) and the caller's channel is still
  up (a transfer), stops the recording; a hangup ends it (Asterisk sends no MixMonitorStop then) and closes
  an open pause.

The supervisors get the same ``recording`` frame with the agent id and the file path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from acd.events import AgentStateChanged, CallAnswered
from centre.call_log import InteractionWrite
from centre.call_sessions import interaction_key
from cti.bus import Outputs, Reactive
from cti.commands import CommandFailed, PushToAgent, PushToSupervisors, StartRecording, StopRecording
from cti.contract import CTI_CAMPAIGN
from cti.events import ChannelHungup, RecordingChanged
from cti.recording import RecordingSection, decide, render_path
from cti.sessions import CallSession

log = logging.getLogger(__name__)

REF_PREFIX = "recording:"
FRAME = "recording"
ACTIVE = ("starting", "recording", "paused")


@dataclass
class Recording:
    """One agent's part of a call being recorded."""

    server: str
    uniqueid: str  # the caller's channel
    channel: str
    call_id: str
    agent_id: str
    key: str  # the interaction's call key
    path: str
    state: str = "starting"  # starting, recording, paused, stopped, failed
    pauses: list[dict[str, Any]] = field(default_factory=list)
    asked_by: str = ""  # the agent whose MixMonitorMute is under way (its event may come before the response)

    @property
    def paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1]["to"] is None


def recording_message(rec: Recording, *, supervisor: bool = False) -> dict[str, Any]:
    """The ``recording`` frame: the agent sees the state; the supervisors also whose call and the file."""
    message: dict[str, Any] = {"type": FRAME, "call_id": rec.call_id, "state": rec.state,
                               "paused_total": round(sum((p["to"] or p["from"]) - p["from"] for p in rec.pauses), 3)}
    if supervisor:
        message.update(agent_id=rec.agent_id, path=rec.path, interaction=rec.key)
    return message


class Recordings(Reactive):
    """Recordings by (server, caller uniqueid). ``session_of(server, uniqueid)``: the session engine's call;
    ``channel_up(server, name)``: whether the tracker still has that channel; ``policies``: queue and
    campaign names to their policy (unset ones absent)."""

    subscriptions = (CallAnswered, RecordingChanged, CommandFailed, AgentStateChanged, ChannelHungup)

    def __init__(self, section: RecordingSection, *, queue_policies: dict[str, str],
                 campaign_policies: dict[str, str], session_of: Callable[[str, str], CallSession | None],
                 channel_up: Callable[[str, str], bool]) -> None:
        self.section = section
        self.queue_policies = queue_policies
        self.campaign_policies = campaign_policies
        self.session_of = session_of
        self.channel_up = channel_up
        self._active: dict[tuple[str, str], Recording] = {}
        self.started = 0
        self.skipped = 0
        self.failed = 0

    # ------------------------------------------------------------------ reads
    def policy(self, queue: str, campaign: str = "") -> str:
        """The policy of a call in ``queue`` (for ``campaign``, when outbound)."""
        return (self.campaign_policies.get(campaign) if campaign else None) \
            or self.queue_policies.get(queue) or self.section.default_policy

    def for_session(self, session: CallSession) -> Recording | None:
        rec = self._active.get((session.queued.server, session.queued.uniqueid))
        return rec if rec is not None and rec.agent_id == session.agent_id else None

    def __len__(self) -> int:
        return len(self._active)

    def states_by_agent(self) -> dict[str, tuple[str, str]]:
        """agent -> (call id, state) of the recordings under way (for the wallboard: a screen opened in the
        middle of a recorded call shows it at once, not from its next change)."""
        return {rec.agent_id: (rec.call_id, rec.state) for rec in self._active.values() if rec.state in ACTIVE}

    # ------------------------------------------------------------------ console
    def set_paused(self, rec: Recording, paused: bool, now: float, by: str) -> Outputs:
        """The pause state Asterisk confirmed (the console's MixMonitorMute answered Success, or its event):
        an interval opens or closes, the interaction keeps it, the consoles are told. Idempotent."""
        if rec.state not in ACTIVE or rec.paused == paused:
            return ()
        if paused:
            rec.pauses.append({"from": now, "to": None, "by": by})
        else:
            rec.pauses[-1]["to"] = now
        rec.state = "paused" if paused else "recording"
        return [InteractionWrite(rec.key, {"recording_pauses": [dict(p) for p in rec.pauses]}), *self._frames(rec)]

    # ------------------------------------------------------------------ events
    def handle(self, event: object, now: float) -> Outputs:
        if isinstance(event, CallAnswered):
            return self._on_answered(event, now)
        if isinstance(event, RecordingChanged):
            return self._on_changed(event, now)
        if isinstance(event, CommandFailed):
            return self._on_failed(event)
        if isinstance(event, AgentStateChanged):
            return self._on_agent(event)
        if isinstance(event, ChannelHungup):
            return self._on_hungup(event)
        return ()

    def _on_answered(self, event: CallAnswered, now: float) -> Outputs:
        session = self.session_of(event.server, event.uniqueid)
        if session is None or session.agent_id != event.agent_id:
            return ()
        q = session.queued
        campaign = q.data.get(CTI_CAMPAIGN, "")
        if not decide(self.policy(q.queue, campaign), q.call_id):
            self.skipped += 1
            return ()
        out: list[object] = []
        key = (q.server, q.uniqueid)
        previous = self._active.pop(key, None)
        if previous is not None and previous.state in ACTIVE:  # the caller's earlier part, still recording
            out.append(StopRecording(self._ref(previous), q.server, previous.channel))
        path = render_path(self.section.path, call_id=q.call_id, part=session.part, server=q.server,
                           queue=q.queue, agent_id=event.agent_id, answered_at=event.ts)
        rec = Recording(server=q.server, uniqueid=q.uniqueid, channel=q.channel, call_id=q.call_id,
                        agent_id=event.agent_id, key=interaction_key(session), path=path)
        self._active[key] = rec
        self.started += 1
        out.append(StartRecording(self._ref(rec), q.server, q.channel, path, self.section.options))
        out.append(InteractionWrite(rec.key, {"recording_path": path}))
        out.extend(self._frames(rec))
        return out

    def _on_changed(self, event: RecordingChanged, now: float) -> Outputs:
        rec = self._active.get((event.server, event.uniqueid))
        if rec is None:
            return ()
        if event.what == "started":
            if rec.state != "starting":
                return ()
            rec.state = "recording"
            return self._frames(rec)
        if event.what in ("muted", "unmuted"):
            return self.set_paused(rec, event.what == "muted", event.ts, rec.asked_by or "pbx")
        return self._ended(rec, event.ts)  # stopped

    def _on_failed(self, failed: CommandFailed) -> Outputs:
        if not isinstance(failed.command, StartRecording):
            return ()
        rec = next((r for r in self._active.values() if self._ref(r) == failed.ref), None)
        if rec is None or rec.state != "starting":
            return ()
        self.failed += 1
        log.warning("recording of call %s (%s) did not start: %s", rec.call_id, rec.channel, failed.reason)
        rec.state = "failed"
        del self._active[(rec.server, rec.uniqueid)]
        return [InteractionWrite(rec.key, {"recording_path": ""}), *self._frames(rec)]

    def _on_agent(self, event: AgentStateChanged) -> Outputs:
        """The agent is off the call (wrap-up, ...): its part is over. A caller still there went on elsewhere
        (a transfer): the recording stops, so the next part (or a third party) is not in this file."""
        if event.previous != "on_call" or event.state == "on_call":
            return ()
        rec = next((r for r in self._active.values() if r.agent_id == event.agent_id), None)
        if rec is None:
            return ()
        if rec.state in ACTIVE and self.channel_up(rec.server, rec.channel):
            return [StopRecording(self._ref(rec), rec.server, rec.channel), *self._ended(rec, event.ts)]
        return self._ended(rec, event.ts)

    def _on_hungup(self, event: ChannelHungup) -> Outputs:
        rec = self._active.get((event.server, event.uniqueid))
        return self._ended(rec, event.ts) if rec is not None else ()

    def _ended(self, rec: Recording, ts: float) -> Outputs:
        """The recording is over (stopped or hung up): an open pause closes with it; the engine forgets it."""
        self._active.pop((rec.server, rec.uniqueid), None)
        out: list[object] = []
        if rec.paused:
            rec.pauses[-1]["to"] = ts
            out.append(InteractionWrite(rec.key, {"recording_pauses": [dict(p) for p in rec.pauses]}))
        rec.state = "stopped"
        out.extend(self._frames(rec))
        return out

    def _frames(self, rec: Recording) -> list[object]:
        return [PushToAgent(FRAME, rec.agent_id, recording_message(rec)),
                PushToSupervisors(FRAME, recording_message(rec, supervisor=True))]

    @staticmethod
    def _ref(rec: Recording) -> str:
        return f"{REF_PREFIX}{rec.server}:{rec.uniqueid}:{rec.key}"
