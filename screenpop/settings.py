"""The ``screenpop:`` configuration section. No I/O.

STUB laid down by the foundation; the screen-pop issue fills it in.
"""

from __future__ import annotations

from config.base import ConfigModel


class ScreenpopSection(ConfigModel):
    """Customer look-up and pop composition settings."""
