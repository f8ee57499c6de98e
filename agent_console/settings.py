"""The ``console:`` configuration section. No I/O.

STUB laid down by the foundation; the console issue fills it in.
"""

from __future__ import annotations

from config.base import ConfigModel


class ConsoleSection(ConfigModel):
    """Websocket hub settings."""
