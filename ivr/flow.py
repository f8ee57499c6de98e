"""IVR flow schema and its load-time validation. No I/O.

STUB laid down by the foundation; the IVR issue fills it in.
"""

from __future__ import annotations

from config.base import ConfigModel, Loc


class IvrSection(ConfigModel):
    """The ``ivr:`` section: named flows and FastAGI server settings."""

    def queue_references(self) -> list[tuple[Loc, str]]:
        """Every (location, queue name) a flow hands calls to, for the cross-section check."""
        return []
