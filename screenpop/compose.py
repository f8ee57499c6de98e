"""Pop composition: what an agent's console shows for a call, as a JSON-ready dict. Pure: no I/O, no
clock, no database; must not import Twisted, SQLAlchemy sessions or any engine package.

A pop message (``"type": "pop"``) is complete or partial. A partial pop (``"complete": false``, look-up
status ``"pending"``) goes out when the customer look-up is slow; the look-up's end then sends a
``"type": "pop_update"`` message for the same ``call_key`` that carries the whole pop again, so the
console simply replaces what it shows. Every customer found is one entry of ``matches``
(``customer_id``, ``profile``, ``interactions`` newest first, ``crm_url``); ``customer`` is that entry
when exactly one matched, else None. Several matches are a choice for the agent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from screenpop.crmlink import build_link
from screenpop.phone import normalise_for_lookup
from screenpop.records import CustomerRecord, InteractionRecord
from screenpop.settings import ScreenpopSection

# Limits on what outside data (IVR entries, lead fields) may put in one pop message.
MAX_POP_VALUE = 500
MAX_POP_KEYS = 100
MAX_IVR_PATH = 100
MASK = "****"

LookupBy = Literal["id", "ani", "account", "external_id"]
LookupStatus = Literal["found", "multiple", "not_found", "pending", "unavailable"]

# Lead fields that name the customer directly, tried before the account and the dialled number.
LEAD_EXTERNAL_ID_KEYS = ("external_id", "customer_external_id", "customer_id")


@dataclass(frozen=True, slots=True)
class PopContext:
    """What the call itself tells us. ``ani`` is the customer's number: the caller ID for inbound calls,
    the dialled number for outbound ones. ``ivr_collected`` is already masked by the IVR (it is masked
    again here by key name, to be safe). ``account`` is an account number the IVR collected, if any
    (otherwise the ``account_keys`` of the settings are looked for in ``ivr_collected``). ``customer_id``
    is the store id the IVR already identified (channel variable CTI_CUSTOMER_ID), looked up first."""

    call_id: str
    uniqueid: str
    direction: Literal["inbound", "outbound"]
    ani: str
    dnis: str = ""
    queue: str = ""
    wait_seconds: float = 0.0
    server: str = ""
    agent_id: str = ""
    caller_name: str = ""
    ivr_path: tuple[str, ...] = ()
    ivr_steps: tuple[str, ...] = ()  # the path in the flow's labels, for people (``ivr_path`` has node ids)
    ivr_reason: str = ""  # what the caller chose in the IVR, in words ("Sales")
    ivr_collected: Mapping[str, str] = field(default_factory=dict)
    account: str | None = None
    customer_id: str | None = None
    campaign: str = ""
    lead_id: str = ""
    lead: Mapping[str, str] = field(default_factory=dict)
    script: str = ""

    @property
    def call_key(self) -> str:
        """The key interactions and dispositions are stored under: ``<server>/<call_id>``."""
        return f"{self.server}/{self.call_id}" if self.server else self.call_id


@dataclass(frozen=True, slots=True)
class LookupKey:
    by: LookupBy
    value: str


def _is_secret(key: str, settings: ScreenpopSection) -> bool:
    low = key.lower()
    return any(word in low for word in settings.mask_keys)


def _clip(value: object) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_POP_VALUE else text[: MAX_POP_VALUE - 1] + "…"


def masked(data: Mapping[str, str], settings: ScreenpopSection) -> dict[str, str]:
    """Copy of ``data`` with secret-looking keys masked and every value clipped; at most MAX_POP_KEYS keys."""
    out: dict[str, str] = {}
    for key, value in list(data.items())[:MAX_POP_KEYS]:
        name = _clip(key)
        out[name] = MASK if _is_secret(name, settings) else _clip(value)
    return out


def collected_account(call: PopContext, settings: ScreenpopSection) -> str | None:
    """The account number the caller entered (or the lead names), if any."""
    if call.account and call.account.strip():
        return call.account.strip()
    for source in (call.ivr_collected, call.lead):
        for key in settings.account_keys:
            value = source.get(key, "").strip()
            if value and value != MASK:
                return value
    return None


def lookup_keys(call: PopContext, settings: ScreenpopSection) -> list[LookupKey]:
    """The look-ups to try, most specific first: the customer the IVR identified, the lead's customer id,
    the account number, then the number."""
    keys: list[LookupKey] = []
    if call.customer_id and call.customer_id.strip().isdigit() and len(call.customer_id.strip()) < 19:
        keys.append(LookupKey("id", call.customer_id.strip()))
    if call.direction == "outbound":
        for k in LEAD_EXTERNAL_ID_KEYS:
            value = call.lead.get(k, "").strip()
            if value:
                keys.append(LookupKey("external_id", value))
                break
    account = collected_account(call, settings)
    if account:
        keys.append(LookupKey("account", account))
    e164 = normalise_for_lookup(call.ani, settings.default_region) if call.ani else None
    if e164 is None and call.direction == "outbound" and call.lead.get("phone"):
        e164 = normalise_for_lookup(call.lead["phone"], settings.default_region)
    if e164:
        keys.append(LookupKey("ani", e164))
    return keys


def _link_values(call: PopContext, customer: CustomerRecord | None, e164: str | None) -> dict[str, object]:
    values: dict[str, object] = {
        "call_id": call.call_id, "call_key": call.call_key, "uniqueid": call.uniqueid,
        "direction": call.direction, "ani": e164 or call.ani, "dnis": call.dnis, "queue": call.queue,
        "agent_id": call.agent_id, "campaign": call.campaign, "lead_id": call.lead_id,
    }
    if customer is not None:
        values.update({
            "customer_id": customer.id, "external_id": customer.external_id,
            "account": customer.accounts[0].number if customer.accounts else None,
            "first_name": customer.first_name, "last_name": customer.last_name, "name": customer.name,
            "email": customer.email,
        })
    return values


def crm_link(call: PopContext, customer: CustomerRecord | None, settings: ScreenpopSection) -> str | None:
    """The external CRM URL for this call (and customer), or None when no template is configured."""
    if not settings.crm_url_template:
        return None
    e164 = normalise_for_lookup(call.ani, settings.default_region) if call.ani else None
    return build_link(settings.crm_url_template, _link_values(call, customer, e164))


def compose_pop(
    call: PopContext,
    customers: Sequence[CustomerRecord] | None,
    interactions: Mapping[int, Sequence[InteractionRecord]] | None,
    settings: ScreenpopSection,
    *,
    lookup_by: LookupKey | None = None,
    unavailable: bool = False,
) -> dict[str, Any]:
    """The pop for ``call``.

    ``customers`` None means the look-up is still pending (``complete`` false: a ``pop_update`` will
    follow) or, with ``unavailable=True``, that it failed (``complete`` true: nothing will follow). An
    empty list is a new caller. ``interactions`` maps customer id to that customer's recent
    interactions, newest first. ``lookup_by`` says which key found the customers.
    """
    e164 = normalise_for_lookup(call.ani, settings.default_region) if call.ani else None
    status: LookupStatus
    if customers is None:
        status = "unavailable" if unavailable else "pending"
    elif not customers:
        status = "not_found"
    else:
        status = "found" if len(customers) == 1 else "multiple"
    matches = []
    for c in (customers or ())[: settings.max_matches]:
        recent = list((interactions or {}).get(c.id, ()))[: settings.recent_interactions]
        matches.append({
            "customer_id": c.id,
            "profile": c.to_dict(),
            "interactions": [i.to_dict() for i in recent],
            "crm_url": crm_link(call, c, settings),
        })
    single = customers[0] if customers and len(customers) == 1 else None
    pop: dict[str, Any] = {
        "type": "pop",
        "call_id": call.call_id,
        "call_key": call.call_key,
        "uniqueid": call.uniqueid,
        "server": call.server,
        "direction": call.direction,
        "ani": _clip(call.ani),
        "ani_e164": e164,
        "caller_name": _clip(call.caller_name),
        "dnis": _clip(call.dnis),
        "queue": call.queue,
        "wait_seconds": round(max(call.wait_seconds, 0.0), 1),
        "agent_id": call.agent_id,
        "complete": status != "pending",
        "lookup": {"status": status, "by": lookup_by.by if lookup_by else None,
                   "value": lookup_by.value if lookup_by else None},
        "new_caller": status == "not_found",
        "customer": matches[0] if single is not None else None,
        "matches": matches,
        "ivr": {"path": [_clip(p) for p in call.ivr_path[:MAX_IVR_PATH]],
                "steps": [_clip(p) for p in call.ivr_steps[:MAX_IVR_PATH]],
                "reason": _clip(call.ivr_reason),
                "collected": masked(call.ivr_collected, settings)},
        "outbound": None,
        "crm_url": crm_link(call, single, settings),
    }
    if call.direction == "outbound":
        pop["outbound"] = {"campaign": call.campaign, "lead_id": call.lead_id,
                           "lead": masked(call.lead, settings), "script": call.script}
    return pop


def compose_followup(
    call: PopContext,
    customers: Sequence[CustomerRecord] | None,
    interactions: Mapping[int, Sequence[InteractionRecord]] | None,
    settings: ScreenpopSection,
    *,
    lookup_by: LookupKey | None = None,
    unavailable: bool = False,
) -> dict[str, Any]:
    """The message that completes a partial pop: the whole pop again as ``"type": "pop_update"``.

    ``customers`` None here means the look-up failed or timed out (status ``unavailable``).
    """
    pop = compose_pop(call, customers, interactions, settings, lookup_by=lookup_by,
                      unavailable=unavailable or customers is None)
    pop["type"] = "pop_update"
    return pop
