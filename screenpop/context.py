"""Building a ``PopContext`` from the shared events: ``cti.events.CallQueued`` and the IVR's
``ivr.events.IvrCompleted``, with the path in the flow's labels (``ivr.flow``). Pure; imports only those
event contracts, the dialplan contract (``cti.contract``) and the flow schema, no I/O, no clock (``now`` is
passed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cti.contract import (
    CTI_CAMPAIGN,
    CTI_CUSTOMER_ID,
    CTI_DNIS,
    CTI_FLOW,
    CTI_IVR_PATH,
    CTI_LEAD_ID,
    collected_name,
    is_outbound,
)
from cti.events import CallQueued
from ivr.events import IvrCompleted
from ivr.flow import BranchNode, Flow, MenuNode
from screenpop.compose import PopContext

# What a step's result means to an agent, by result (node-kind specific words are below).
RESULT_WORDS = {
    "found": "recognised", "not_found": "not recognised", "unavailable": "look-up unavailable",
    "timeout": "no key pressed", "invalid": "wrong key", "open": "open", "closed": "closed",
    "holiday": "holiday", "requested": "callback requested", "no number": "no callback number",
}


def ivr_words(flow: Flow | None, path: Sequence[str]) -> tuple[tuple[str, ...], str]:
    """The IVR path (``node`` or ``node:choice`` entries) in the flow's labels, and the reason for the
    call: the queue the caller's choices led to (else the last menu choice). Without the flow: ``((), "")``."""
    if flow is None:
        return (), ""
    steps: list[str] = []
    chosen_last = queue_reached = ""
    for entry in path:
        node_id, _, choice = entry.partition(":")
        node = flow.nodes.get(node_id)
        if node is None:
            steps.append(entry)
            continue
        label = node.display_label(node_id)
        if isinstance(node, MenuNode) and choice in node.options:
            target = node.options[choice]
            chosen = flow.nodes[target].display_label(target) if target in flow.nodes else target
            steps.append(f"{label}: pressed {choice} ({chosen})")
            chosen_last = chosen
        elif isinstance(node, BranchNode) and choice:
            steps.append(f"{label}: {'no' if choice == 'default' else 'yes'}")
        elif node.kind == "queue":
            steps.append(label)
            queue_reached = label
        elif node.kind == "collect" and choice and choice not in RESULT_WORDS:
            steps.append(f"{label}: entered {choice}")
        elif choice:
            steps.append(f"{label}: {RESULT_WORDS.get(choice, choice)}")
        else:
            steps.append(label)
    return tuple(steps), queue_reached or chosen_last


def pop_context(
    event: CallQueued,
    *,
    agent_id: str,
    now: float,
    ivr: IvrCompleted | None = None,
    lead: Mapping[str, str] | None = None,
    script: str = "",
    flows: Mapping[str, Flow] | None = None,
) -> PopContext:
    """The pop context of a queued call offered to ``agent_id`` at ``now``.

    ``ivr`` (from ``ivr.ports.RecentCompletions.get(uniqueid)``) gives the full path and the masked
    entries; without it they come from the channel variables (CTI_IVR_PATH, CTI_<NAME>). For outbound
    calls (``cti.contract.is_outbound``) ``lead`` holds the lead's fields from the dialer; its
    ``phone`` is the customer's number (the channel's caller ID is then our own outbound number).
    ``flows`` (the configured IVR flows) put the path in the nodes' labels (``ivr_words``).
    """
    data = event.data
    outbound = is_outbound(data)
    lead = dict(lead or {})
    if ivr is not None:
        path = tuple(f"{s.node}:{s.digits or s.result}" if (s.digits or s.result) else s.node for s in ivr.path)
        collected = dict(ivr.collected)
    else:
        summary = data.get(CTI_IVR_PATH, "")
        path = tuple(p for p in summary.split(">") if p) if summary else ()
        collected = {name: v for k, v in data.items() if (name := collected_name(k)) is not None}
    flow_name = ivr.flow if ivr is not None else data.get(CTI_FLOW, "")
    steps, reason = ivr_words((flows or {}).get(flow_name), path)
    customer_id = data.get(CTI_CUSTOMER_ID) or (ivr.customer.get("id") if ivr is not None else None)
    return PopContext(
        call_id=event.call_id, uniqueid=event.uniqueid, server=event.server,
        direction="outbound" if outbound else "inbound",
        ani=(lead.get("phone") or event.caller_num) if outbound else event.caller_num,
        caller_name=event.caller_name, dnis=event.dnis or data.get(CTI_DNIS, ""), queue=event.queue,
        wait_seconds=max(0.0, now - event.ts), agent_id=agent_id, ivr_path=path, ivr_steps=steps,
        ivr_reason=reason, ivr_collected=collected,
        customer_id=customer_id or None, campaign=data.get(CTI_CAMPAIGN, ""), lead_id=data.get(CTI_LEAD_ID, ""),
        lead=lead, script=script,
    )
