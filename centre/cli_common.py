"""What every ``cti`` subcommand shares: logging set-up, loading the configuration (or exit with its
errors), the demo's default configuration."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from config.load import ConfigError, load_config
from config.schema import CtiConfig
from config.security import security_warnings

DEFAULT_DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "examples" / "demo.yaml"


QUIET_LIBRARIES = ("alembic", "websockets", "agent_console.websockets")
"""Libraries whose INFO lines (Alembic's plugin set-up and migration context, websockets' "server listening"
and "server closing", under its own name or the hub's) say nothing a person needs: at INFO and above they
show only warnings; at DEBUG, everything they log."""


def setup_logging(level: str = "INFO") -> None:
    """Log lines to stderr; at INFO, start-up is the few lines that say what runs where (``centre.process``)."""
    numeric = getattr(logging, level, logging.INFO)
    logging.basicConfig(
        level=numeric,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING if numeric > logging.DEBUG else logging.NOTSET)



def print_security_warnings(path: str, cfg: CtiConfig | None = None) -> None:
    """Warnings that do not make the file invalid (secrets readable by all, any Origin): stderr."""
    for warning in security_warnings(path, cfg or load_config(path)):
        print(warning, file=sys.stderr)


def load_or_exit(path: str, status: int = 1) -> CtiConfig:
    """The configuration at ``path``, or every error printed as ``file:line key.path: message`` and exit with
    ``status``."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        raise SystemExit(status) from None
