"""Agents, skills and queues as configured. No I/O.

STUB laid down by the foundation; the ACD issue fills it in.
"""

from __future__ import annotations

from config.base import ConfigModel


class AcdSection(ConfigModel):
    """The ``acd:`` section: agents, queues, routing strategies and expansion rules."""

    def queue_names(self) -> list[str]:
        return []
