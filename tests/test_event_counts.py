"""``centre.event_counts``: the counters behind the metrics stay bounded (anything not configured is ``other``)
and count what they say (a lost link only when it was up)."""

from __future__ import annotations

from acd.events import AgentStateChanged, CallOffered
from centre.event_counts import OTHER, EventCounts
from cti.bus import EventBus
from cti.events import AmiConnectionChanged
from dialer.events import AttemptFinished, AttemptStarted


def test_counts_are_bounded_by_the_configuration_and_follow_the_bus() -> None:
    counts = EventCounts(queues=["sales"], servers=["pbx1"], campaigns=["spring"])
    bus = EventBus(lambda command: None)
    bus.add(counts)
    for queue in ("sales", "sales", "made-up-by-a-dialplan"):
        bus.publish(CallOffered(ts=1.0, server="pbx1", uniqueid="1.1", call_id="1.1", queue=queue, agent_id="1001",
                                endpoint="PJSIP/1001", wait=2.0, attempt=1), 1.0)
    assert counts.queue_events["offered"] == {"sales": 2, OTHER: 1}
    bus.publish(AgentStateChanged(ts=1.0, agent_id="1001", state="ready", previous="logged_out", reason="",
                                  since=0.0), 1.0)
    assert counts.agent_states["ready"] == 1 and counts.agent_states["on_call"] == 0
    # a failed first attempt is not a loss; up, down, up: two logins, one loss; an unknown PBX is "other"
    for connected in (False, True, False, True):
        bus.publish(AmiConnectionChanged(server="pbx1", ts=1.0, connected=connected, detail=""), 1.0)
    bus.publish(AmiConnectionChanged(server="pbx9", ts=1.0, connected=True, detail=""), 1.0)
    assert counts.ami_logins == {"pbx1": 2, OTHER: 1} and counts.ami_losses == {"pbx1": 1, OTHER: 0}
    bus.publish(AttemptStarted(ts=1.0, campaign="spring", lead_id="L1", ref="r1", attempt=1, number="+15550001"), 1.0)
    bus.publish(AttemptFinished(ts=2.0, campaign="spring", lead_id="L1", ref="r1", attempt=1, result="busy",
                                lead_status="pending", next_at=None), 2.0)
    bus.publish(AttemptFinished(ts=2.0, campaign="spring", lead_id="L1", ref="r1", attempt=1, result="weird",
                                lead_status="pending", next_at=None), 2.0)
    assert counts.attempts == {"spring": 1, OTHER: 0}
    assert counts.results["spring"]["busy"] == 1 and counts.results["spring"][OTHER] == 1
