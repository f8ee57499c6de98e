"""The dialplan contract: the contexts, channel variables and UserEvents that the shipped dialplan
(``config/asterisk/extensions_cti.conf``, mirrored by ``sim/dialplan.yaml``) and the server share.

Kernel floor: pure constants and tiny pure helpers; imports nothing but the standard library (no
engine, no simulator, no configuration). Every module that names a context, a ``CTI_*`` variable or a
UserEvent takes it from here; ``tests/test_contract.py`` parses both dialplans and fails when they name
a context, variable, ``CTI_NEXT`` value or UserEvent field that this module does not, or the reverse.

Variables are named by their own text (``CTI_QUEUE = "CTI_QUEUE"``) so that a grep for a variable finds
both the dialplan and every Python use of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

# ---------------------------------------------------------------------------------------------- contexts
INBOUND_CONTEXT: Final = "cti-inbound"  # DIDs (and "s": the ACD's callback overflow) -> cti-ivr
IVR_CONTEXT: Final = "cti-ivr"  # answers, runs the IVR flow over FastAGI, follows CTI_NEXT
FALLBACK_CONTEXT: Final = "cti-fallback"  # the IVR did not decide: queue to CTI_FALLBACK_QUEUE
HOLD_CONTEXT: Final = "cti-hold"  # callers wait with music until the ACD offers them (CTIQueued)
AGENT_CONTEXT: Final = "cti-agent"  # the ACD's Redirect: Dial of the agent's phone; Exten is the agent id
AGENT_LEG_CONTEXT: Final = "cti-agent-leg"  # pre-dial handler of the agent's leg (atxfer feature code)
ON_HOLD_CONTEXT: Final = "cti-onhold"  # console hold: the caller, with music
AGENT_ON_HOLD_CONTEXT: Final = "cti-agent-onhold"  # console hold: the agent's leg, waiting
CONSULT_CONTEXT: Final = "cti-consult"  # console attended transfer: AMI Atxfer of the agent's leg lands here
TRANSFER_CONTEXT: Final = "cti-transfer"  # IVR transfer node and console blind transfer to a number
VOICEMAIL_CONTEXT: Final = "cti-voicemail"  # IVR voicemail node and the ACD's voicemail overflow
OUTBOUND_CONTEXT: Final = "cti-outbound"  # the dialer's Originate: AMD, humans to cti-hold
SAFE_HARBOUR_CONTEXT: Final = "cti-safe-harbour"  # outbound humans no agent took in time
SPY_CONTEXT: Final = "cti-spy"  # a supervisor's phone, Originated: ChanSpy on CTI_SPY_CHANNEL (listen/whisper/barge)

#: Every context of the dialplan (``[globals]`` is not a context).
CONTEXTS: Final = frozenset({
    INBOUND_CONTEXT, IVR_CONTEXT, FALLBACK_CONTEXT, HOLD_CONTEXT, AGENT_CONTEXT, AGENT_LEG_CONTEXT, ON_HOLD_CONTEXT,
    AGENT_ON_HOLD_CONTEXT, CONSULT_CONTEXT, TRANSFER_CONTEXT, VOICEMAIL_CONTEXT, OUTBOUND_CONTEXT,
    SAFE_HARBOUR_CONTEXT, SPY_CONTEXT,
})
#: Contexts where a caller waits for the ACD (a resync re-queues the unknown ones).
HOLD_CONTEXTS: Final = frozenset({HOLD_CONTEXT})

# -------------------------------------------------------------------------------------------- extensions
START_EXTEN: Final = "s"  # where the server sends a channel in every context but cti-agent and cti-consult
HOLD_RETURN_EXTEN: Final = "return"  # cti-hold,return: an offer ended unanswered (CTIReturned)
#: AMI Atxfer plays its Exten into the transfer as DTMF, so the consultation's extension must be digits
#: that match at once ("s" never dials).
CONSULT_EXTEN: Final = "0"
#: cti-spy's extensions, one per way of joining an agent's call; each runs ChanSpy with fixed options (q quiet,
#: w whisper to the agent, B barge: talk to both; E: end when the agent's channel hangs up; S: end at once when
#: there is no such channel), so no option travels in a channel variable.
SPY_EXTENS: Final = {"listen": "listen", "whisper": "whisper", "barge": "barge"}

# ------------------------------------------------------------------------------- variables: [globals]
CTI_FASTAGI: Final = "CTI_FASTAGI"  # the server's FastAGI URL (agi://host:port)
CTI_FALLBACK_QUEUE: Final = "CTI_FALLBACK_QUEUE"  # queue of callers whose IVR did not decide
CTI_MAX_HOLD: Final = "CTI_MAX_HOLD"  # seconds a caller may hold at most (safety net)
GLOBAL_VARIABLES: Final = frozenset({CTI_FASTAGI, CTI_FALLBACK_QUEUE, CTI_MAX_HOLD})

# -------------------------------------------------------------------- variables: on the caller's channel
CTI_FLOW: Final = "CTI_FLOW"  # IVR flow name (you, per DID; the ACD's callback overflow)
CTI_DNIS: Final = "CTI_DNIS"  # the dialled number (cti-inbound, inherited: __CTI_DNIS)
CTI_NEXT: Final = "CTI_NEXT"  # what the IVR decided, set last: one of NEXT_VALUES
CTI_QUEUE: Final = "CTI_QUEUE"  # routing data of the IVR's queue node (and console/overflow re-queues)
CTI_SKILLS: Final = "CTI_SKILLS"  # "skill:level skill:level"
CTI_PRIORITY: Final = "CTI_PRIORITY"
CTI_LANGUAGE: Final = "CTI_LANGUAGE"
CTI_TRANSFER_DIAL: Final = "CTI_TRANSFER_DIAL"  # dial string for cti-transfer
CTI_VOICEMAIL_BOX: Final = "CTI_VOICEMAIL_BOX"  # mailbox for cti-voicemail
CTI_AGENT_ENDPOINT: Final = "CTI_AGENT_ENDPOINT"  # set by the ACD's offer (AMI Setvar) before cti-agent
CTI_RING_TIMEOUT: Final = "CTI_RING_TIMEOUT"
CTI_AGENT_ID: Final = "CTI_AGENT_ID"  # set by cti-agent from its extension
CTI_CONSULT_DIAL: Final = "CTI_CONSULT_DIAL"  # on the agent's leg, inherited by the consultation channel
CTI_CAMPAIGN: Final = "CTI_CAMPAIGN"  # the dialer's Originate: the campaign's name
CTI_LEAD_ID: Final = "CTI_LEAD_ID"  # the dialer's Originate: the lead, within its campaign
CTI_CAMPAIGN_QUEUE: Final = "CTI_CAMPAIGN_QUEUE"  # the dialer's Originate: cti-outbound queues humans there
CTI_MACHINE_MESSAGE: Final = "CTI_MACHINE_MESSAGE"  # the dialer's Originate (optional): for answering machines
CTI_SAFE_HARBOUR: Final = "CTI_SAFE_HARBOUR"  # the dialer's Originate (optional): cti-safe-harbour's message
CTI_USE_AMD: Final = "CTI_USE_AMD"  # the dialer's Originate: "0" (amd: false) skips AMD() in cti-outbound
#: The value of ``CTI_USE_AMD`` that turns answering-machine detection off for the call (anything else: AMD runs).
AMD_OFF: Final = "0"
CTI_SPY_CHANNEL: Final = "CTI_SPY_CHANNEL"  # a supervisor's Originate into cti-spy: the agent's channel to spy on
#: Every variable the dialplan reads or sets, globals included.
DIALPLAN_VARIABLES: Final = GLOBAL_VARIABLES | frozenset({
    CTI_FLOW, CTI_DNIS, CTI_NEXT, CTI_QUEUE, CTI_SKILLS, CTI_PRIORITY, CTI_LANGUAGE, CTI_TRANSFER_DIAL,
    CTI_VOICEMAIL_BOX, CTI_AGENT_ENDPOINT, CTI_RING_TIMEOUT, CTI_AGENT_ID, CTI_CONSULT_DIAL, CTI_CAMPAIGN,
    CTI_LEAD_ID, CTI_CAMPAIGN_QUEUE, CTI_MACHINE_MESSAGE, CTI_SAFE_HARBOUR, CTI_USE_AMD, CTI_SPY_CHANNEL,
})

# Set on the channel for the server only (the dialplan never reads them).
CTI_LEAD_NUMBER: Final = "CTI_LEAD_NUMBER"  # the dialer's Originate: the number dialled (caller ID is ours)
CTI_ATTEMPT: Final = "CTI_ATTEMPT"  # the dialer's Originate: binds the channel to its attempt
CTI_IVR_PATH: Final = "CTI_IVR_PATH"  # the IVR: its path, summarised (script mode, pops after a restart)
CTI_CUSTOMER_ID: Final = "CTI_CUSTOMER_ID"  # the IVR: the store id of the customer its look-up found
SERVER_VARIABLES: Final = frozenset({CTI_LEAD_NUMBER, CTI_ATTEMPT, CTI_IVR_PATH, CTI_CUSTOMER_ID})

#: The ``CTI_`` variables the contract gives a meaning to. A flow may not write them (``set`` node
#: variables, nor a ``collect`` whose name becomes one), and the pop never shows them as what the caller
#: entered. It is every variable of the contract, not a hand-picked list: writing any of them from a flow
#: changes what the dialplan or the server does with the call (a channel's CTI_MAX_HOLD shadows the global,
#: CTI_CUSTOMER_ID picks the customer popped, CTI_LEAD_ID would make the call outbound), and none of them is
#: something a caller typed. The two lists this replaces (``ivr.flow`` and ``screenpop.context``) were each
#: part of it: the IVR's lacked CTI_CUSTOMER_ID, CTI_MACHINE_MESSAGE and CTI_SAFE_HARBOUR, and both lacked
#: CTI_LEAD_NUMBER, CTI_ATTEMPT, CTI_CONSULT_DIAL and the globals (so an outbound pop listed the dialer's
#: lead number and attempt reference as IVR entries).
RESERVED_VARIABLES: Final = DIALPLAN_VARIABLES | SERVER_VARIABLES

#: Prefix of every contract variable, and of the variables the IVR sets for what a caller entered.
VARIABLE_PREFIX: Final = "CTI_"

# ----------------------------------------------------------------------------------------- CTI_NEXT
NEXT_QUEUE: Final = "queue"  # -> cti-hold
NEXT_TRANSFER: Final = "transfer"  # -> cti-transfer (CTI_TRANSFER_DIAL)
NEXT_VOICEMAIL: Final = "voicemail"  # -> cti-voicemail (CTI_VOICEMAIL_BOX)
NEXT_HANGUP: Final = "hangup"  # -> Hangup(); anything else (or nothing) -> cti-fallback
NEXT_VALUES: Final = frozenset({NEXT_QUEUE, NEXT_TRANSFER, NEXT_VOICEMAIL, NEXT_HANGUP})

# ------------------------------------------------------------------- Asterisk's own variables we read
DIALSTATUS: Final = "DIALSTATUS"
AMDSTATUS: Final = "AMDSTATUS"
AMDCAUSE: Final = "AMDCAUSE"


# --------------------------------------------------------------------------------------- UserEvents
@dataclass(frozen=True, slots=True)
class UserEventSpec:
    """A ``UserEvent(name,Header: ${SOURCE},...)`` the dialplan raises: its name and its fields in order,
    each a header and the variable the dialplan puts in it."""

    name: str
    fields: tuple[tuple[str, str], ...]

    def headers(self) -> dict[str, str]:
        """Source variable -> header in lower case (the tracker reads a UserEvent's headers lower-cased)."""
        return {source: header.lower() for header, source in self.fields}


#: [cti-hold],s: the caller waits for the queue the IVR (or the fallback, or the dialer) chose.
CTI_QUEUED: Final = UserEventSpec("CTIQueued", (
    ("Queue", CTI_QUEUE), ("Skills", CTI_SKILLS), ("Priority", CTI_PRIORITY), ("Language", CTI_LANGUAGE),
    ("DNIS", CTI_DNIS)))
#: [cti-hold],return: an offer to an agent ended unanswered.
CTI_RETURNED: Final = UserEventSpec("CTIReturned", (
    ("Queue", CTI_QUEUE), ("Agent", CTI_AGENT_ID), ("DialStatus", DIALSTATUS)))
#: [cti-outbound]: answering-machine detection finished.
CTI_AMD: Final = UserEventSpec("CTIAmd", (
    ("Status", AMDSTATUS), ("Cause", AMDCAUSE), ("Lead", CTI_LEAD_ID), ("Campaign", CTI_CAMPAIGN)))
USER_EVENTS: Final = {e.name: e for e in (CTI_QUEUED, CTI_RETURNED, CTI_AMD)}

# --------------------------------------------------------------------------------------- outbound
#: What the dialer's Originate (``dialer.campaign.Campaign.persisted``) sets on every call it places.
OUTBOUND_VARIABLES: Final = (CTI_CAMPAIGN, CTI_LEAD_ID, CTI_CAMPAIGN_QUEUE, CTI_LEAD_NUMBER, CTI_ATTEMPT)


def is_outbound(variables: Mapping[str, str]) -> bool:
    """Whether a call is one the dialer placed, from its channel's ``CTI_*`` variables.

    The one definition, used for the call's record, its interaction and its screen pop. Only the
    dialer's Originate sets ``OUTBOUND_VARIABLES`` (a flow may not: they are reserved), and it sets all
    of them, so for the calls it places today "``CTI_CAMPAIGN`` set" (what the server checked) and
    "``CTI_CAMPAIGN`` or ``CTI_LEAD_ID`` set" (what the pop checked) agree. They differ for a call that
    carries only some of them, as a preview or callback dial may: such a call is still one we dialled,
    whose caller ID is our own number and whose customer is the number dialled, so any of them,
    non-empty, makes the call outbound (the broader of the two checks, widened to the whole set).
    """
    return any(variables.get(name) for name in OUTBOUND_VARIABLES)


# ----------------------------------------------------------------------------------------- helpers
def inherited(variable: str) -> str:
    """The name that makes a variable inherited by every channel this one creates (``__CTI_DNIS``)."""
    return "__" + variable


def collected_variable(name: str) -> str:
    """The channel variable the IVR sets for what a caller entered under ``name`` (``account`` ->
    ``CTI_ACCOUNT``)."""
    return VARIABLE_PREFIX + name.upper()


def collected_name(variable: str) -> str | None:
    """The IVR entry a channel variable holds (``CTI_ACCOUNT`` -> ``account``), or None for a contract
    variable or one that is not ours."""
    if not variable.startswith(VARIABLE_PREFIX) or variable in RESERVED_VARIABLES:
        return None
    return variable[len(VARIABLE_PREFIX):].lower()
