"""Test helper: read the real Asterisk AMI transcripts into AMIMessages (via cti.ami.protocol)."""

from __future__ import annotations

from pathlib import Path

from cti.ami.message import AMIMessage
from cti.ami.protocol import AMIParser, Banner, ParseError

AMI_TRANSCRIPTS = (
    "login",
    "inbound_queue",
    "queue_member_ops",
    "originate_outbound",
    "fastagi_ami",
    "hangup_redirect",
    "burst",
)


def load_ami_messages(path: Path | str) -> list[AMIMessage]:
    """Every AMI message of a transcript in order (banners skipped); raises ValueError on a parse error."""
    data = Path(path).read_bytes()
    out: list[AMIMessage] = []
    for item in AMIParser().feed(data):
        if isinstance(item, ParseError):
            raise ValueError(f"{path}: {item.reason} ({item.discarded} bytes dropped)")
        if not isinstance(item, Banner):
            out.append(item)
    return out
