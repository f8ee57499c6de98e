"""Building a ``PopContext`` from the shared events: ``cti.events.CallQueued`` and the IVR's
``ivr.events.IvrCompleted``. Pure; imports only those event contracts, no I/O, no clock (``now`` is passed).
"""

from __future__ import annotations

from collections.abc import Mapping

from cti.events import CallQueued
from ivr.events import IvrCompleted
from screenpop.compose import PopContext

# Dialplan contract variables (config/asterisk/extensions_cti.conf); every other CTI_* variable on a
# queued call is something the caller entered in the IVR (non-secret: the IVR never sets secrets).
CONTRACT_VARIABLES = frozenset({
    "CTI_FLOW", "CTI_DNIS", "CTI_NEXT", "CTI_QUEUE", "CTI_SKILLS", "CTI_PRIORITY", "CTI_LANGUAGE",
    "CTI_TRANSFER_DIAL", "CTI_VOICEMAIL_BOX", "CTI_AGENT_ENDPOINT", "CTI_RING_TIMEOUT", "CTI_AGENT_ID",
    "CTI_CAMPAIGN", "CTI_LEAD_ID", "CTI_CAMPAIGN_QUEUE", "CTI_CUSTOMER_ID", "CTI_IVR_PATH",
    "CTI_MACHINE_MESSAGE", "CTI_SAFE_HARBOUR",
})


def pop_context(
    event: CallQueued,
    *,
    agent_id: str,
    now: float,
    ivr: IvrCompleted | None = None,
    lead: Mapping[str, str] | None = None,
    script: str = "",
) -> PopContext:
    """The pop context of a queued call offered to ``agent_id`` at ``now``.

    ``ivr`` (from ``ivr.ports.RecentCompletions.get(uniqueid)``) gives the full path and the masked
    entries; without it they come from the channel variables (CTI_IVR_PATH, CTI_<NAME>). For outbound
    calls (CTI_CAMPAIGN or CTI_LEAD_ID set) ``lead`` holds the lead's fields from the dialer; its
    ``phone`` is the customer's number (the channel's caller ID is then our own outbound number).
    """
    data = event.data
    outbound = bool(data.get("CTI_CAMPAIGN") or data.get("CTI_LEAD_ID"))
    lead = dict(lead or {})
    if ivr is not None:
        path = tuple(f"{s.node}:{s.digits or s.result}" if (s.digits or s.result) else s.node for s in ivr.path)
        collected = dict(ivr.collected)
    else:
        summary = data.get("CTI_IVR_PATH", "")
        path = tuple(p for p in summary.split(">") if p) if summary else ()
        collected = {k[4:].lower(): v for k, v in data.items()
                     if k.startswith("CTI_") and k not in CONTRACT_VARIABLES}
    customer_id = data.get("CTI_CUSTOMER_ID") or (ivr.customer.get("id") if ivr is not None else None)
    return PopContext(
        call_id=event.call_id, uniqueid=event.uniqueid, server=event.server,
        direction="outbound" if outbound else "inbound",
        ani=(lead.get("phone") or event.caller_num) if outbound else event.caller_num,
        caller_name=event.caller_name, dnis=event.dnis or data.get("CTI_DNIS", ""), queue=event.queue,
        wait_seconds=max(0.0, now - event.ts), agent_id=agent_id, ivr_path=path, ivr_collected=collected,
        customer_id=customer_id or None, campaign=data.get("CTI_CAMPAIGN", ""), lead_id=data.get("CTI_LEAD_ID", ""),
        lead=lead, script=script,
    )
