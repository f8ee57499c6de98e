"""The ``sim:`` configuration section (used by ``cti demo`` and ``cti sim``). No I/O.

STUB laid down by the foundation; the simulator issue fills it in.
"""

from __future__ import annotations

from config.base import ConfigModel


class SimSection(ConfigModel):
    """Simulator settings: seed, arrival rates, people models."""
