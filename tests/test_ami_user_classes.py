"""The shipped AMI user (``config/asterisk/manager_cti.conf``) is least-privilege: every action the server sends
is allowed by its ``write`` classes, every event the server reads reaches it through its ``read`` classes,
and it holds no class nothing needs.

The classes are Asterisk 22's (tag 22.9.0), copied here from its source so that the check needs no PBX:
actions from ``ast_manager_register_xml(_core)(name, authority, ...)`` in main/manager.c, main/features.c
and apps/app_mixmonitor.c (an action runs when the user's write classes share one class with its
authority, or its authority is 0: manager.c ``process_message``); events from their ``manager_event`` /
``ast_manager_event_blob_create`` / ``publish_basic_channel_event`` calls in main/manager_channels.c,
main/manager_bridges.c, main/stasis_bridges.c, main/stasis_channels.c, main/devicestate.c, main/core_local.c,
main/channel.c, main/manager.c and apps/app_userevent.c. The actions and events are read from our own source,
so a new one without a row here fails the test.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "config" / "asterisk" / "manager_cti.conf"

#: action -> its authority classes in Asterisk 22 (empty: any logged-in user).
ACTION_CLASSES: dict[str, frozenset[str]] = {
    "Login": frozenset(), "Challenge": frozenset(), "Logoff": frozenset(), "Ping": frozenset(),  # manager.c
    "Setvar": frozenset({"call"}),                                  # manager.c: EVENT_FLAG_CALL
    "Getvar": frozenset({"call", "reporting"}),                     # EVENT_FLAG_CALL | EVENT_FLAG_REPORTING
    "Redirect": frozenset({"call"}),
    "Hangup": frozenset({"system", "call"}),
    "Atxfer": frozenset({"call"}),
    "CancelAtxfer": frozenset({"call"}),
    "BlindTransfer": frozenset({"call"}),
    "Originate": frozenset({"originate"}),                          # EVENT_FLAG_ORIGINATE
    "Command": frozenset({"command"}),                              # EVENT_FLAG_COMMAND
    "CoreShowChannels": frozenset({"system", "reporting"}),
    "Bridge": frozenset({"call"}),                                  # main/features.c
    "MixMonitor": frozenset({"system"}),                            # apps/app_mixmonitor.c: system only
    "MixMonitorMute": frozenset({"system", "call"}),
    "StopMixMonitor": frozenset({"system", "call"}),
}

#: event -> its class in Asterisk 22.
EVENT_CLASS: dict[str, str] = {
    **dict.fromkeys(("Newchannel", "Newstate", "Hangup", "NewCallerid", "NewConnectedLine", "DialBegin",
                     "DialState", "DialEnd", "Hold", "Unhold", "MixMonitorStart", "MixMonitorStop",
                     "MixMonitorMute"), "call"),                    # main/manager_channels.c
    **dict.fromkeys(("BridgeEnter", "BridgeLeave", "BridgeDestroy"), "call"),  # main/manager_bridges.c
    "BlindTransfer": "call", "AttendedTransfer": "call",            # main/stasis_bridges.c
    "DeviceStateChange": "call",                                     # main/devicestate.c
    "LocalBridge": "call",                                           # main/core_local.c
    "Rename": "call",                                                # main/channel.c
    "OriginateResponse": "call",                                     # main/manager.c
    "Newexten": "dialplan",                                          # main/manager_channels.c
    "VarSet": "dialplan",                                            # main/stasis_channels.c
    "UserEvent": "user",                                             # apps/app_userevent.c, manager.c
}

#: where the server names the AMI actions it sends
ACTION_SOURCES = ("cti/dispatch.py", "cti/ami/client.py", "cti/ami/session.py", "centre/pbx_links.py",
                  "centre/recording.py", "centre/supervisor_actions.py", "dialer/shell.py")


def conf_classes(key: str, user: str = "cti") -> set[str]:
    section = ""
    for raw in CONF.read_text(encoding="utf-8").splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[] ")
        elif section == user and "=" in line and line.split("=", 1)[0].strip() == key:
            return {c.strip() for c in line.split("=", 1)[1].split(",") if c.strip()}
    raise AssertionError(f"no {key}= for [{user}] in {CONF}")


def sent_actions() -> set[str]:
    """Every AMI action name our source sends: ``send(server, "Name"``, ``return command.server, "Name"``,
    ``_send(cmd, cmd.server, "Name"``, ``AMIMessage.action("Name"``, and the login exchange."""
    pattern = re.compile(r'(?:send\([\w.]+, |server, |AMIMessage\.action\()"([A-Z][A-Za-z]+)"')
    names: set[str] = set()
    for rel in ACTION_SOURCES:
        path = ROOT / rel
        if path.exists():
            names |= set(pattern.findall(path.read_text(encoding="utf-8")))
    session = (ROOT / "cti/ami/session.py").read_text(encoding="utf-8")
    names |= {n for n in ("Login", "Challenge", "Ping", "Logoff") if f'"{n}"' in session}
    return names


def read_events() -> set[str]:
    """The AMI events the call tracker handles (its handler table: ``"Name": self._on_...``)."""
    text = (ROOT / "cti/calls/tracker.py").read_text(encoding="utf-8")
    return set(re.findall(r'^\s+"([A-Z][A-Za-z]+)": self\._', text, re.MULTILINE))


def test_every_action_the_server_sends_is_allowed_by_a_granted_write_class() -> None:
    """Each action we send has one of its Asterisk classes in ``write`` (or needs none)."""
    actions = sent_actions()
    assert {"Originate", "Redirect", "Setvar", "MixMonitor", "Command", "CoreShowChannels", "Login"} <= actions
    unknown = actions - ACTION_CLASSES.keys()
    assert not unknown, f"add the Asterisk class of {sorted(unknown)} to ACTION_CLASSES (from the Asterisk source)"
    write = conf_classes("write")
    refused = {a: sorted(ACTION_CLASSES[a]) for a in actions if ACTION_CLASSES[a] and not ACTION_CLASSES[a] & write}
    assert refused == {}, f"write = {sorted(write)} refuses {refused}"


def test_every_event_the_server_reads_is_in_a_granted_read_class() -> None:
    events = read_events()
    assert {"Newchannel", "VarSet", "UserEvent", "Hangup", "BridgeEnter"} <= events
    unknown = events - EVENT_CLASS.keys()
    assert not unknown, f"add the Asterisk class of {sorted(unknown)} to EVENT_CLASS (from the Asterisk source)"
    read = conf_classes("read")
    missing = {e: EVENT_CLASS[e] for e in events if EVENT_CLASS[e] not in read}
    assert missing == {}, f"read = {sorted(read)} hides {missing}"


def test_no_class_is_granted_that_nothing_needs() -> None:
    """Least privilege: drop a class from ``read`` or ``write`` and a test above fails, except for ``system``
    in ``write``, which only MixMonitor needs (CoreShowChannels takes system or reporting)."""
    read, write = conf_classes("read"), conf_classes("write")
    events = read_events()
    assert read == {EVENT_CLASS[e] for e in events}
    actions = sent_actions()
    needed: set[str] = set()
    for cls in write:
        if any(ACTION_CLASSES[a] and not ACTION_CLASSES[a] & (write - {cls}) for a in actions):
            needed.add(cls)
    assert needed == write, f"granted but not needed: {sorted(write - needed)}"
    assert not {"all", "config", "agent", "dtmf", "security", "cdr", "agi"} & (read | write)
