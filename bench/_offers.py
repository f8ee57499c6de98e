"""The PBX's side of an offer, for the benchmarks that drive the ACD without a PBX: the events of an offered call
answered by the agent and ended at once (``acd_route``, ``scaleout``)."""

from __future__ import annotations

from cti.commands import OfferCall
from cti.events import ChannelHungup, DialEnded, DialStarted


def answered_and_ended(o: OfferCall, ts: float) -> tuple[DialStarted, DialEnded, ChannelHungup]:
    """The agent's phone dialled, answered, and the caller hung up, all at ``ts``."""
    d = {"server": o.server, "ts": ts, "call_id": o.call_id, "uniqueid": o.uniqueid, "channel": o.channel,
         "dest_uniqueid": f"{o.uniqueid}-a", "dest_channel": f"{o.endpoint}-1"}
    return (DialStarted(**d, dial_string=o.endpoint), DialEnded(**d, status="ANSWER"),
            ChannelHungup(server=o.server, ts=ts, call_id=o.call_id, uniqueid=o.uniqueid, channel=o.channel,
                          cause=16, cause_txt=""))
