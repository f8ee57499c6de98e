"""Security warnings about a valid configuration file: secrets written inline in a file everyone may read,
a console websocket open to pages of any site, and the operations endpoint (no authentication) beyond
loopback. ``cti check-config`` and ``cti serve`` print them.

Reads the file and its permission bits; never prints a secret's value. Does not validate (``config.load``
does); a file that does not load gets no warnings.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import yaml

from config.load import ConfigIssue
from config.schema import CtiConfig

_SECRET_KEY_RE = re.compile(r"secret|password", re.IGNORECASE)
_URL_PASSWORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:([^/@]+)@")
_ENV_REF_RE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")  # ${NAME}; ${NAME:-default} has its default inline
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


@dataclass(frozen=True)
class ConfigWarning(ConfigIssue):
    """A valid file's risk: where it is, like a ``ConfigIssue``, printed as a warning."""

    def __str__(self) -> str:
        return str(ConfigIssue(self.file, self.line, self.path, f"warning: {self.message}"))


def _inline_secrets(node: yaml.Node, path: str, out: list[tuple[str, int]]) -> None:
    """(key path, line) of every secret written in the file itself rather than taken from ${ENV}."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            if isinstance(value_node, yaml.ScalarNode) and isinstance(value_node.value, str):
                # a string only: ``secret: true`` (an IVR collect node's "mask the digits") is a flag, not a secret
                is_text = value_node.tag == "tag:yaml.org,2002:str"
                value: str | None = value_node.value if is_text and _SECRET_KEY_RE.search(key) else None
                url = _URL_PASSWORD_RE.match(value_node.value) if key == "url" else None
                if url is not None:
                    value = url.group(1)  # the password in user:password@
                if value and _ENV_REF_RE.sub("", value):
                    out.append((child, key_node.start_mark.line + 1))
            else:
                _inline_secrets(value_node, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _inline_secrets(item, f"{path}[{i}]", out)


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def security_warnings(path: str | os.PathLike[str], cfg: CtiConfig) -> list[ConfigWarning]:
    """What in the file at ``path`` (already loaded into ``cfg``) weakens the server's security."""
    name = str(path)
    warnings: list[ConfigWarning] = []
    p = Path(path)
    try:
        mode = p.stat().st_mode
        root = yaml.compose(p.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        root = None
        mode = 0
    if root is not None and mode & stat.S_IROTH:
        found: list[tuple[str, int]] = []
        _inline_secrets(root, "", found)
        for key, line in found:
            warnings.append(ConfigWarning(
                name, line, key, "a secret written in a file every user of this machine can read: "
                "take it from the environment (${NAME}) or make the file private (chmod o-r)"))
    if "*" in cfg.console.allowed_origins and not _is_loopback(cfg.listen.http.host):
        warnings.append(ConfigWarning(
            name, None, "console.allowed_origins",
            f'"*" lets a page of any site use an agent\'s browser to reach the console websocket on '
            f"{cfg.listen.http.host}: list the origins that need it instead"))
    if cfg.metrics is not None and not _is_loopback(cfg.metrics.host):
        warnings.append(ConfigWarning(
            name, None, "metrics.host",
            f"/metrics, /healthz and /readyz have no authentication and listen on {cfg.metrics.host}: let only "
            "the monitoring host reach that port (firewall), or keep it on loopback behind a proxy"))
    return warnings
