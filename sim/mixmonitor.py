"""AMI MixMonitor, MixMonitorMute and StopMixMonitor as Asterisk 22.10.1's app_mixmonitor.c answers them
(``manager_mixmonitor``, ``manager_mute_mixmonitor``, ``manager_stop_mixmonitor``), with the events
manager_channels.c publishes for them: MixMonitorStart, MixMonitorStop (a channel snapshot each) and
MixMonitorMute (a snapshot, ``Direction`` as the action gave it, ``State`` 1/0), all class ``call``.

What the source does and this copies:

* Errors are ``Response: Error`` with these exact messages, checked in this order. MixMonitor: ``No channel
  specified``, ``No such channel``, ``Could not start monitoring channel`` (no File and no r()/t() option).
  MixMonitorMute: ``No direction specified. Must be read, write or both``, ``Invalid direction specified.
  Must be read, write or both``, ``No channel specified``, ``No state specified``, ``No such channel``,
  ``Cannot set mute flag`` (the channel never had an audiohook; with a MixMonitorID: no such MixMonitor).
  StopMixMonitor: ``No channel specified``, ``No such channel``, ``Could not stop monitoring channel``
  (none running).
* Success is ``Response: Success`` with the ActionID and no ``Message`` (MixMonitor adds ``MixMonitorID``
  only with the ``i()`` option, which the server does not use and this does not model).
* MixMonitor sets ``MIXMONITOR_FILENAME`` (a VarSet) to the file, made absolute under the monitor spool
  directory when it is relative (``.wav49`` becomes ``.WAV``), before MixMonitorStart.
* MixMonitorMute with ``State`` is muted unless the state is false (``ast_false``: 0, no, false, off, n, f);
  the event's ``State`` is ``1`` only when it is true (``ast_true``). A channel whose audiohooks exist but
  run no MixMonitor (all stopped) is answered Success and the event is still sent (the count is 0).
* StopMixMonitor stops one MixMonitor (the newest: channel datastores are found head first). A hangup
  ends the recordings with no MixMonitorStop event (the datastore is destroyed, nothing is published).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cti.ami.message import AMIMessage

if TYPE_CHECKING:
    from sim.ami_server import AMISession
    from sim.channel import Channel
    from sim.pbx import Pbx

MONITOR_DIR = "/var/spool/asterisk/monitor"  # ast_config_AST_MONITOR_DIR of a default install
_TRUE = ("yes", "true", "y", "t", "1", "on")
_FALSE = ("no", "false", "n", "f", "0", "off")
DIRECTIONS = ("read", "write", "both")


def _options_name_files(options: str) -> bool:
    """Whether the options carry r(file) or t(file) (a recording without the mixed file)."""
    return any(f"{flag}(" in options for flag in ("r", "t"))


def filename(file: str) -> str:
    """``filename_parse``: absolute under the monitor directory; ``.wav49`` becomes ``.WAV``."""
    path = file if file.startswith("/") else f"{MONITOR_DIR}/{file}"
    if path.endswith(".wav49"):
        path = path[: -len(".wav49")] + ".WAV"
    return path


def start(pbx: Pbx, chan: Channel, file: str, options: str) -> bool:
    """``mixmonitor_exec``: False (nothing happens) without a file and without r()/t(); else the recording
    runs, MIXMONITOR_FILENAME is set and MixMonitorStart published."""
    if not file and not _options_name_files(options):
        return False
    path = filename(file) if file else ""
    pbx.set_var(chan, "MIXMONITOR_FILENAME", path)
    chan.mixmonitors.append(path)
    chan.audiohooks = True
    return True


def stop(pbx: Pbx, chan: Channel) -> bool:
    """``stop_mixmonitor_full``: False when no MixMonitor runs; else the newest stops (MixMonitorStop)."""
    if not chan.mixmonitors:
        return False
    chan.mixmonitors.pop()
    return True


def app_mixmonitor(pbx: Pbx, chan: Channel, data: str) -> int:
    """The dialplan application MixMonitor(file[,options[,command]]): -1 (hang up) when it cannot start."""
    file, _, rest = data.partition(",")
    options = rest.partition(",")[0]
    if not start(pbx, chan, file.strip(), options.strip()):
        return -1
    pbx.chan_event("MixMonitorStart", chan)
    return 0


def app_stopmixmonitor(pbx: Pbx, chan: Channel, data: str) -> int:
    """StopMixMonitor([MixMonitorID]): always 0 (``stop_mixmonitor_exec``)."""
    if stop(pbx, chan):
        pbx.chan_event("MixMonitorStop", chan)
    return 0


def _channel(session: AMISession, msg: AMIMessage) -> Channel | None:
    """The action's ``Channel``, or None after answering the error Asterisk gives (none named; no such channel)."""
    name = (msg.get("Channel") or "").strip()
    if not name:
        session.error(msg, "No channel specified")
        return None
    chan = session.pbx.find_channel(name)
    if chan is None:
        session.error(msg, "No such channel")
    return chan


def action_mixmonitor(session: AMISession, msg: AMIMessage) -> None:
    chan = _channel(session, msg)
    if chan is None:
        return
    if not start(session.pbx, chan, (msg.get("File") or "").strip(), (msg.get("Options") or "").strip()):
        session.error(msg, "Could not start monitoring channel")
        return
    session.success(msg)
    session.pbx.chan_event("MixMonitorStart", chan)


def action_mixmonitormute(session: AMISession, msg: AMIMessage) -> None:
    direction = (msg.get("Direction") or "").strip()
    if not direction:
        session.error(msg, "No direction specified. Must be read, write or both")
        return
    if direction.lower() not in DIRECTIONS:
        session.error(msg, "Invalid direction specified. Must be read, write or both")
        return
    if not (msg.get("Channel") or "").strip():
        session.error(msg, "No channel specified")
        return
    state = (msg.get("State") or "").strip()
    if not state:
        session.error(msg, "No state specified")
        return
    chan = _channel(session, msg)
    if chan is None:
        return
    if not chan.audiohooks or (msg.get("MixMonitorID") or "").strip():
        session.error(msg, "Cannot set mute flag")
        return
    session.success(msg)
    session.pbx.chan_event("MixMonitorMute", chan, [("Direction", direction),
                                                    ("State", "1" if state.lower() in _TRUE else "0")])


def action_stopmixmonitor(session: AMISession, msg: AMIMessage) -> None:
    chan = _channel(session, msg)
    if chan is None:
        return
    if not stop(session.pbx, chan):
        session.error(msg, "Could not stop monitoring channel")
        return
    session.success(msg)
    session.pbx.chan_event("MixMonitorStop", chan)
