"""How Asterisk 22 spells channel snapshots, states and causes in AMI events. Pure tables and
formatters; imports nothing from sim/ besides typing, no clock, no I/O.

Every name, header set and order here is copied from the transcripts in tests/fixtures/asterisk.
"""

from __future__ import annotations

from typing import Protocol

Headers = list[tuple[str, str]]

# ast_state2str()
STATE_DESC: dict[int, str] = {
    0: "Down",
    1: "Rsrvd",
    2: "OffHook",
    3: "Dialing",
    4: "Ring",
    5: "Ringing",
    6: "Up",
    7: "Busy",
    8: "Dialing Offhook",
    9: "Pre-ring",
    10: "Unknown",
}
DOWN, RING, RINGING, UP, BUSY = 0, 4, 5, 6, 7

# ast_cause2str() for the causes a contact centre meets.
CAUSE_TEXT: dict[int, str] = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    3: "No route to destination",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    26: "Answered elsewhere",
    27: "Destination out of order",
    28: "Invalid number format (incomplete number)",
    31: "Normal, unspecified",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    41: "Temporary failure",
    42: "Switching equipment congestion",
    58: "Bearer capability not available",
    66: "Channel not implemented",
    102: "Recovery on timer expiry",
    127: "Interworking, unspecified",
}


def cause_text(cause: int) -> str:
    return CAUSE_TEXT.get(cause, "Unknown")


class Snapshot(Protocol):
    """What a channel snapshot needs (sim.pbx.Channel provides it)."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> int: ...
    @property
    def caller_num(self) -> str: ...
    @property
    def caller_name(self) -> str: ...
    @property
    def conn_num(self) -> str: ...
    @property
    def conn_name(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def accountcode(self) -> str: ...
    @property
    def context(self) -> str: ...
    @property
    def exten(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def uniqueid(self) -> str: ...
    @property
    def linkedid(self) -> str: ...


def _unknown(value: str) -> str:
    return value if value else "<unknown>"


def snapshot(chan: Snapshot, prefix: str = "") -> Headers:
    """The 14 channel headers every channel event carries, optionally prefixed (``Dest``, ``LocalOne``...)."""
    return [
        (prefix + "Channel", chan.name),
        (prefix + "ChannelState", str(chan.state)),
        (prefix + "ChannelStateDesc", STATE_DESC.get(chan.state, "Unknown")),
        (prefix + "CallerIDNum", _unknown(chan.caller_num)),
        (prefix + "CallerIDName", _unknown(chan.caller_name)),
        (prefix + "ConnectedLineNum", _unknown(chan.conn_num)),
        (prefix + "ConnectedLineName", _unknown(chan.conn_name)),
        (prefix + "Language", chan.language),
        (prefix + "AccountCode", chan.accountcode),
        (prefix + "Context", chan.context),
        (prefix + "Exten", chan.exten),
        (prefix + "Priority", str(chan.priority)),
        (prefix + "Uniqueid", chan.uniqueid),
        (prefix + "Linkedid", chan.linkedid),
    ]


class BridgeSnapshot(Protocol):
    @property
    def uniqueid(self) -> str: ...
    @property
    def num_channels(self) -> int: ...


def bridge_headers(bridge: BridgeSnapshot, prefix: str = "Bridge", num: int | None = None) -> Headers:
    """The bridge headers of BridgeCreate/Enter/Leave/Destroy (``prefix`` ``ToBridge``... for BridgeMerge)."""
    p = prefix
    return [
        (p + "Uniqueid", bridge.uniqueid),
        (p + "Type", "basic"),
        (p + "Technology", "simple_bridge"),
        (p + "Creator", "<unknown>"),
        (p + "Name", "<unknown>"),
        (p + "NumChannels", str(bridge.num_channels if num is None else num)),
        (p + "VideoSourceMode", "none"),
    ]


def caller_id_string(name: str, num: str) -> str:
    """``"Name" <num>`` as the Cdr CallerID header writes it."""
    return f'"{name}" <{num}>'


def parse_caller_id(text: str) -> tuple[str, str]:
    """``"Jane" <+1555>`` / ``Jane <+1555>`` / ``+1555`` -> (name, number), as ast_callerid_parse."""
    text = text.strip()
    if "<" in text and text.endswith(">"):
        name, _, num = text[:-1].rpartition("<")
        name = name.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1]
        return name, num.strip()
    if text and all(c in "0123456789+*#" for c in text):
        return "", text
    return text.strip('"'), ""
