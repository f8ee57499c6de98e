"""The ``dialer:`` configuration section. No I/O.

STUB laid down by the foundation; the dialer issue fills it in.
"""

from __future__ import annotations

from config.base import ConfigModel


class DialerSection(ConfigModel):
    """Outbound campaigns."""
