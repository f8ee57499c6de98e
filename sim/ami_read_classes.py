"""Manager read classes, as Asterisk's manager.c reads them: a Login ``Events:`` / ``EventMask:`` value, the
classes of an event's ``Privilege`` header, and a manager.conf user's ``read`` line. Pure functions."""

from __future__ import annotations

from cti.ami.message import AMIMessage

_OFF = ("off", "no", "false", "0", "none", "")
_ON = ("on", "yes", "true", "y", "t", "1", "-1")


def event_mask(value: str) -> frozenset[str] | None:
    """A Login ``Events:`` / Events ``EventMask:`` value as classes: None for every class (on), the
    empty set for none (off), else the listed classes (manager.c strings_to_mask)."""
    v = value.strip().lower()
    if v in _ON or v.lstrip("-").isdigit() and v not in _OFF:
        return None
    if v in _OFF:
        return frozenset()
    return frozenset(c.strip() for c in v.split(",") if c.strip())


def event_classes(msg: AMIMessage) -> frozenset[str]:
    """The classes of an event's ``Privilege`` header (``call,all`` -> {call})."""
    return frozenset(c.strip().lower() for c in (msg.get("Privilege") or "").split(",")) - {"all", ""}


def manager_conf_read(text: str, username: str) -> frozenset[str] | None:
    """The ``read`` classes a manager.conf text gives ``username`` (None: no such user or no ``read``)."""
    section = ""
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[] \t")
        elif section == username and line.partition("=")[0].strip().lower() == "read":
            value = line.partition("=")[2]
            return frozenset(c.strip().lower() for c in value.split(",") if c.strip())
    return None
