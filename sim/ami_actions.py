"""AMI actions of the simulated Asterisk (Originate, Redirect, Hangup, Setvar/Getvar, channel lists,
Bridge, transfers, Command, PlayDTMF, UserEvent, Core*, the AstDB's DB*), answering with Asterisk 22's exact
Response/Message texts and list shapes. Each handler is ``handler(session, msg)``; a handler that
returns a Deferred holds its session (synchronous Originate). No reactor, no wall clock.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from cti.ami.message import AMIMessage
from sim.ami_events import bridge_headers, snapshot
from sim.ami_read_classes import event_mask
from sim.channel import Channel
from sim.channel_requests import OriginateResult
from sim.functions import FUNCTIONS
from sim.mixmonitor import action_mixmonitor, action_mixmonitormute, action_stopmixmonitor
from sim.outgoing import DEFAULT_ORIGINATE_TIMEOUT, OriginateRequest, originate
from sim.transfers import (
    blind_transfer,
    bridge_channels,
    cancel_attended_transfer,
    queue_atxfer,
)

if TYPE_CHECKING:
    from sim.ami_server import ActionHandler, AMISession

log = logging.getLogger(__name__)

ASTERISK_VERSION = "22.10.1"
# The recorded Asterisk's exact line (clients parse the version out of it).
VERSION_LINE = f"Asterisk {ASTERISK_VERSION} built by root @ vm on a x86_64 running Linux on 2026-11-23 13:57:44 UTC"
MAX_VARIABLES = 256
MAX_REGEX_LENGTH = 256
_NESTED_QUANTIFIER = re.compile(r"\([^)]*[+*}][^)]*\)\s*[+*{]")


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "true", "y", "t", "1", "on")


def _variables(msg: AMIMessage) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for header in msg.getall("Variable"):
        for item in re.split(r"(?<!\\),", header):
            name, sep, value = item.partition("=")
            if sep and name.strip():
                out.append((name.strip(), value.replace("\\,", ",")))
    return out[:MAX_VARIABLES]


def _find(session: AMISession, name: str | None) -> Channel | None:
    return session.pbx.find_channel((name or "").strip())


# ---------------------------------------------------------------------------------------------
def action_ping(session: AMISession, msg: AMIMessage) -> None:
    session.success(msg, None, [("Ping", "Pong"), ("Timestamp", f"{session.pbx.now_epoch():.6f}")])


def action_events(session: AMISession, msg: AMIMessage) -> None:
    mask = (msg.get("EventMask") or "").strip().lower()
    session.event_mask = event_mask(mask)
    session.events_on = session.event_mask != frozenset()
    session.respond(msg, "Success", [("Events", "On" if session.events_on else "Off")])


def action_originate(session: AMISession, msg: AMIMessage) -> Deferred[None] | None:
    channel = (msg.get("Channel") or "").strip()
    if not channel:
        session.error(msg, "Channel not specified")
        return None
    if "/" not in channel:
        session.error(msg, "Invalid channel")
        return None
    timeout_ms = (msg.get("Timeout") or "").strip()
    try:
        timeout = int(timeout_ms) / 1000.0 if timeout_ms else DEFAULT_ORIGINATE_TIMEOUT
    except ValueError:
        session.error(msg, "Invalid timeout")
        return None
    application = (msg.get("Application") or "").strip()
    context = (msg.get("Context") or "").strip()
    exten = (msg.get("Exten") or "").strip()
    priority = (msg.get("Priority") or "1").strip() or "1"
    if not application and exten and not priority.isdigit():
        if session.pbx.resolve_priority(context or "default", exten, priority) is None:
            session.error(msg, "Invalid priority")
            return None
    req = OriginateRequest(
        channel=channel, context=context or "default", exten=exten or "s", priority=priority,
        application=application, data=msg.get("Data") or "", timeout=max(timeout, 0.001),
        caller_id=msg.get("CallerID") or "", variables=tuple(_variables(msg)), account=msg.get("Account") or "")
    done = originate(session.pbx, req)
    if _true(msg.get("Async")):
        session.success(msg, "Originate successfully queued")
        done.addCallback(_originate_response, session, msg, req)
        return None

    def sync_result(result: OriginateResult) -> None:
        if result.success:
            session.success(msg, "Originate successfully queued")
        else:
            session.error(msg, "Originate failed")

    return done.addCallback(sync_result)


def _originate_response(result: OriginateResult, session: AMISession, msg: AMIMessage,
                        req: OriginateRequest) -> None:
    from sim.ami_events import parse_caller_id

    name, num = parse_caller_id(req.caller_id) if req.caller_id else ("", "")
    headers: list[tuple[str, str]] = []
    if msg.action_id is not None:
        headers.append(("ActionID", msg.action_id))
    chan = result.channel
    headers += [("Response", "Success" if result.success else "Failure"),
                ("Channel", chan.name if chan is not None else req.channel)]
    if req.application:
        headers += [("Application", req.application), ("Data", req.data)]
    else:
        headers += [("Context", req.context), ("Exten", req.exten)]
    headers += [("Reason", str(result.reason)),
                ("Uniqueid", chan.uniqueid if chan is not None else "<unknown>"),
                ("CallerIDNum", num or "<unknown>"), ("CallerIDName", name or "<unknown>")]
    session.pbx.emit("OriginateResponse", "call,all", headers)


def action_redirect(session: AMISession, msg: AMIMessage) -> None:
    pbx = session.pbx
    name = (msg.get("Channel") or "").strip()
    if not name:
        session.error(msg, "Channel not specified")
        return
    targets = [(name, msg.get("Context"), msg.get("Exten"), msg.get("Priority"))]
    extra = (msg.get("ExtraChannel") or "").strip()
    if extra:
        targets.append((extra, msg.get("ExtraContext") or msg.get("Context"), msg.get("ExtraExten") or
                        msg.get("Exten"), msg.get("ExtraPriority") or msg.get("Priority")))
    resolved: list[tuple[Channel, str, str, int]] = []
    for chan_name, context, exten, priority in targets:
        chan = pbx.find_channel(chan_name)
        if chan is None:
            session.error(msg, f"Channel does not exist: {chan_name}")
            return
        ctx = (context or chan.context).strip()
        ext = (exten or chan.exten).strip()
        prio_text = (priority or "1").strip()
        prio = int(prio_text) if prio_text.isdigit() else pbx.resolve_priority(ctx, ext, prio_text)
        if prio is None:
            session.error(msg, "Invalid priority")
            return
        resolved.append((chan, ctx, ext, prio))
    for chan, ctx, ext, prio in resolved:
        pbx.async_goto(chan, ctx, ext, prio)
    session.success(msg, "Dual Redirect successful" if len(resolved) > 1 else "Redirect successful")


def action_hangup(session: AMISession, msg: AMIMessage) -> None:
    pbx = session.pbx
    name = (msg.get("Channel") or "").strip()
    if not name:
        session.error(msg, "No channel specified")
        return
    cause_text = (msg.get("Cause") or "").strip()
    cause = int(cause_text) if cause_text.isdigit() else 16  # AST_CAUSE_NORMAL_CLEARING by default
    if len(name) > 2 and name.startswith("/") and name.endswith("/"):
        if len(name) > MAX_REGEX_LENGTH:
            session.error(msg, "Regex too long")
            return
        pattern = name[1:-1]
        # Asterisk uses POSIX regexes (no catastrophic backtracking); refuse nested quantifiers here.
        if _NESTED_QUANTIFIER.search(pattern):
            session.error(msg, "Regex too complex")
            return
        try:
            rx = re.compile(pattern)
        except re.error:
            session.error(msg, "Invalid regex")
            return
        matched = [c for c in pbx.ordered_channels() if rx.search(c.name)]
        session.respond(msg, "Success", [("EventList", "start"), ("Message", "Channels hung up will follow")])
        for chan in matched:
            item = [("Event", "ChannelHungup"), ("Channel", chan.name)]
            if msg.action_id is not None:
                item.append(("ActionID", msg.action_id))
            session.write(AMIMessage(item, "event"))
        session.list_complete(msg, "ChannelsHungupListComplete", len(matched))
        for chan in matched:
            pbx.softhangup(chan, cause)
        return
    chan = pbx.find_channel(name)
    if chan is None:
        session.error(msg, "No such channel")
        return
    pbx.softhangup(chan, cause)
    session.success(msg, "Channel Hungup")


def _var_request(session: AMISession, msg: AMIMessage) -> tuple[str, Channel | None] | None:
    """Variable and (optional) Channel of Setvar/Getvar, answering their errors."""
    variable = (msg.get("Variable") or "").strip()
    if not variable:
        session.error(msg, "No variable specified")
        return None
    name = (msg.get("Channel") or "").strip()
    chan = session.pbx.find_channel(name) if name else None
    if name and chan is None:
        session.error(msg, "No such channel")
        return None
    return variable, chan


def action_setvar(session: AMISession, msg: AMIMessage) -> None:
    request = _var_request(session, msg)
    if request is None:
        return
    variable, chan = request
    value = msg.get("Value") or ""
    pbx = session.pbx
    if chan is not None:
        pbx.set_var(chan, variable, value)
    elif "(" not in variable:
        pbx.globals[variable] = value
        pbx.emit("VarSet", "dialplan,all", [("Channel", "none"), ("Uniqueid", "none"),
                                            ("Variable", variable), ("Value", value)])
    session.success(msg, "Variable Set")


def action_getvar(session: AMISession, msg: AMIMessage) -> None:
    request = _var_request(session, msg)
    if request is None:
        return
    variable, chan = request
    pbx = session.pbx
    if chan is None:
        value = pbx.globals.get(variable, "")
    elif variable.endswith(")") and "(" in variable:
        fname, _, args = variable[:-1].partition("(")
        value = pbx.read_function(chan, fname.upper(), pbx.substitute(chan, args))
    else:
        value = chan.get_var(variable) or ""
    session.success(msg, None, [("Variable", variable), ("Value", value)])


def _duration(session: AMISession, chan: Channel) -> str:
    secs = max(int(session.pbx.clock.seconds() - chan.created), 0)
    return f"{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


def action_coreshowchannels(session: AMISession, msg: AMIMessage) -> None:
    session.respond(msg, "Success", [("EventList", "start"), ("Message", "Channels will follow")])
    chans = session.pbx.ordered_channels()
    for chan in chans:
        session.list_item(msg, "CoreShowChannel", [
            *snapshot(chan), ("Application", chan.app), ("ApplicationData", chan.appdata),
            ("Duration", _duration(session, chan)), ("BridgeId", chan.bridge.uniqueid if chan.bridge else "")])
    session.list_complete(msg, "CoreShowChannelsComplete", len(chans))


def action_status(session: AMISession, msg: AMIMessage) -> None:
    pbx = session.pbx
    name = (msg.get("Channel") or "").strip()
    if name:
        chan = pbx.find_channel(name)
        if chan is None:
            session.error(msg, "No such channel")
            return
        chans = [chan]
    else:
        chans = pbx.ordered_channels()
    session.respond(msg, "Success", [("EventList", "start"), ("Message", "Channel status will follow")])
    for chan in chans:
        fmt = "slin" if chan.tech == "Local" else "ulaw"
        fields = [*snapshot(chan), ("Type", chan.tech), ("DNID", chan.dnid),
                  ("EffectiveConnectedLineNum", chan.conn_num or "<unknown>"),
                  ("EffectiveConnectedLineName", chan.conn_name or "<unknown>"), ("TimeToHangup", "0"),
                  ("BridgeID", chan.bridge.uniqueid if chan.bridge else ""), ("Application", chan.app),
                  ("Data", chan.appdata), ("Nativeformats", f"({fmt})"), ("Readformat", fmt), ("Readtrans", ""),
                  ("Writeformat", fmt), ("Writetrans", ""), ("Callgroup", "0"), ("Pickupgroup", "0"),
                  ("Seconds", str(max(int(pbx.clock.seconds() - chan.created), 0)))]
        if msg.action_id is not None:
            fields.append(("ActionID", msg.action_id))
        session.write(AMIMessage([("Event", "Status"), ("Privilege", "Call"), *fields], "event"))
    session.list_complete(msg, "StatusComplete", len(chans), [("Items", str(len(chans)))])


def action_bridge(session: AMISession, msg: AMIMessage) -> None:
    names = [(msg.get("Channel1") or "").strip(), (msg.get("Channel2") or "").strip()]
    chans: list[Channel] = []
    for i, name in enumerate(names, 1):
        chan = _find(session, name)
        if chan is None:
            text = f"Channel{i} does not exist: {name}" if name else f"Missing channel parameter Channel{i}"
            session.error(msg, text)
            return
        chans.append(chan)
    if chans[0] is chans[1]:
        session.error(msg, "Unable to bridge a channel with itself")
        return
    session.success(msg, "Channels have been bridged")
    bridge_channels(session.pbx, chans[0], chans[1])


def action_bridgelist(session: AMISession, msg: AMIMessage) -> None:
    bridges = list(session.pbx.bridges.values())
    session.respond(msg, "Success", [("EventList", "start"), ("Message", "Bridge listing will follow")])
    for bridge in bridges:
        session.list_item(msg, "BridgeListItem", bridge_headers(bridge))
    session.list_complete(msg, "BridgeListComplete", len(bridges))


def _transfer_request(session: AMISession, msg: AMIMessage) -> tuple[Channel, str, str] | None:
    """Channel/Context/Exten of BlindTransfer and Atxfer, answering their errors."""
    chan = _find(session, msg.get("Channel"))
    if chan is None:
        session.error(msg, "Channel specified does not exist")
        return None
    exten = (msg.get("Exten") or "").strip()
    if not exten:
        session.error(msg, "No extension specified")
        return None
    return chan, (msg.get("Context") or chan.context).strip(), exten


def _bridged(chan: Channel) -> bool:
    return chan.bridge is not None and len(chan.bridge.channels) >= 2


def action_blindtransfer(session: AMISession, msg: AMIMessage) -> None:
    request = _transfer_request(session, msg)
    if request is None:
        return
    chan, context, exten = request
    if not _bridged(chan):
        session.error(msg, "Transfer invalid")
        return
    if session.pbx.resolve_priority(context, exten, "1") is None:
        session.error(msg, "Transfer failed")
        return
    session.success(msg, "Transfer succeeded")
    blind_transfer(session.pbx, chan, context, exten)


def action_atxfer(session: AMISession, msg: AMIMessage) -> None:
    """Atxfer as Asterisk 22 answers it (main/manager.c action_atxfer): the action only queues the
    atxfer feature code and the Exten as DTMF on the channel; whether a transfer starts is up to the
    channel's bridge features (sim.transfers.atxfer_feature)."""
    name = (msg.get("Channel") or "").strip()
    exten = (msg.get("Exten") or "").strip()
    if not name:
        session.error(msg, "No channel specified")
        return
    if not exten:
        session.error(msg, "No extension specified")
        return
    chan = _find(session, name)
    if chan is None:
        session.error(msg, "Channel specified does not exist")
        return
    code = session.pbx.feature_code(chan, "atxfer")
    if not code:
        session.error(msg, "No attended transfer feature code found")
        return
    context = (msg.get("Context") or "").strip()
    if context:
        session.pbx.set_var(chan, "TRANSFER_CONTEXT", context)
    session.success(msg, "Atxfer successfully queued")
    queue_atxfer(session.pbx, chan, code, exten)


def action_cancelatxfer(session: AMISession, msg: AMIMessage) -> None:
    """CancelAtxfer: queues the atxferabort code (it answers Success whether or not a transfer runs)."""
    name = (msg.get("Channel") or "").strip()
    if not name:
        session.error(msg, "No channel specified")
        return
    chan = _find(session, name)
    if chan is None:
        session.error(msg, "Channel specified does not exist")
        return
    session.success(msg, "CancelAtxfer successfully queued")
    cancel_attended_transfer(session.pbx, chan)


def action_command(session: AMISession, msg: AMIMessage) -> None:
    command = " ".join((msg.get("Command") or "").split())
    pbx = session.pbx
    output: list[str] | None = None
    if command == "core show version":
        output = [VERSION_LINE]
    elif command == "core show uptime":
        up = int(pbx.now_epoch() - pbx.started)
        output = [f"System uptime: {up} seconds", f"Last reload: {up} seconds"]
    elif command in ("core show channels", "core show calls"):
        n = len(pbx.channels)
        output = [f"{n} active channel{'s' if n != 1 else ''}", f"{pbx.processed_calls} calls processed"]
    elif command == "core show applications":
        names = sorted(pbx.apps, key=str.lower)
        output = ["    -= Registered Asterisk Applications =-",
                  *(f"{name:>22}: simulated" for name in names),
                  f"    -= {len(names)} Applications Registered =-"]
    elif command == "core show functions":
        output = ["Installed Custom Functions:", "-" * 80,
                  *(f"{name:<21} {name}(...)  simulated" for name in FUNCTIONS),
                  f"{len(FUNCTIONS)} custom functions installed."]
    elif command == "core show sounds":
        output = ["Available audio files:", *sorted(pbx.sounds())]
    elif command == "moh show classes":
        output = ["Class: default", "\tMode: files", "\tDirectory: moh"]
    if output is None:
        session.respond(msg, "Error", [("Message", "Command output follows"), ("Output", (
            f"No such command '{command}' (type 'core show help {command}' for other possible commands)"))])
        return
    session.respond(msg, "Success", [("Message", "Command output follows"), *(("Output", line) for line in output)])


def action_playdtmf(session: AMISession, msg: AMIMessage) -> None:
    name = (msg.get("Channel") or "").strip()
    chan = _find(session, name)
    if chan is None:
        session.error(msg, f"Channel '{name}' not found")
        return
    digit = (msg.get("Digit") or "").strip()
    if not digit:
        session.error(msg, "No digit specified")
        return
    duration = (msg.get("Duration") or "").strip()
    session.success(msg, "DTMF successfully queued")
    session.pbx.dtmf(chan, digit[0], int(duration) if duration.isdigit() else 250, begin=False)


def action_userevent(session: AMISession, msg: AMIMessage) -> None:
    name = (msg.get("UserEvent") or "").strip()
    if not name:
        session.error(msg, "UserEvent not specified")
        return
    body = [(k, v) for k, v in msg.headers if k.lower() != "userevent"]
    session.success(msg, "Event Sent")
    session.pbx.emit("UserEvent", "user,all", [("UserEvent", name), *body])


# AstDB (main/db.c manager_db*): the texts of Asterisk 22, including which errors end with a full stop.
def action_dbput(session: AMISession, msg: AMIMessage) -> None:
    family, key = msg.get("Family") or "", msg.get("Key") or ""
    if not family:
        session.error(msg, "No family specified")
        return
    if not key:
        session.error(msg, "No key specified")
        return
    session.pbx.astdb[(family, key)] = msg.get("Val") or ""
    session.success(msg, "Updated database successfully")


def action_dbget(session: AMISession, msg: AMIMessage) -> None:
    family, key = msg.get("Family") or "", msg.get("Key") or ""
    if not family:
        session.error(msg, "No family specified.")
        return
    if not key:
        session.error(msg, "No key specified.")
        return
    value = session.pbx.astdb.get((family, key))
    if value is None:
        session.error(msg, "Database entry not found")
        return
    session.respond(msg, "Success", [("EventList", "start"), ("Message", "Result will follow")])
    item = [("Event", "DBGetResponse"), ("Family", family), ("Key", key), ("Val", value)]
    if msg.action_id is not None:
        item.append(("ActionID", msg.action_id))
    session.write(AMIMessage(item, "event"))
    session.list_complete(msg, "DBGetComplete", 1)


def action_dbdel(session: AMISession, msg: AMIMessage) -> None:
    family, key = msg.get("Family") or "", msg.get("Key") or ""
    if not family:
        session.error(msg, "No family specified.")
        return
    if not key:
        session.error(msg, "No key specified.")
        return
    if session.pbx.astdb.pop((family, key), None) is None:
        session.error(msg, "Database entry could not be deleted")
        return
    session.success(msg, "Key deleted successfully")


def action_dbdeltree(session: AMISession, msg: AMIMessage) -> None:
    """Deletes ``/family/key`` and everything under it (``key || '/' LIKE prefix || '/%'``)."""
    family, key = msg.get("Family") or "", msg.get("Key") or ""
    if not family:
        session.error(msg, "No family specified.")
        return
    prefix = (f"/{family}/{key}" if key else f"/{family}").lower() + "/"
    doomed = [k for k in session.pbx.astdb if f"/{k[0]}/{k[1]}/".lower().startswith(prefix)]
    for k in doomed:
        del session.pbx.astdb[k]
    if not doomed:
        session.error(msg, "Database entry not found")
        return
    session.success(msg, "Key tree deleted successfully")


def _date_time(epoch: float) -> tuple[str, str]:
    t = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return t.strftime("%Y-%m-%d"), t.strftime("%H:%M:%S")


def action_corestatus(session: AMISession, msg: AMIMessage) -> None:
    pbx = session.pbx
    day, time = _date_time(pbx.started)
    calls = sum(1 for c in pbx.channels.values() if not c.local_one)
    session.success(msg, None, [("CoreStartupDate", day), ("CoreStartupTime", time), ("CoreReloadDate", day),
                                ("CoreReloadTime", time), ("CoreCurrentCalls", str(calls)),
                                ("CoreProcessedCalls", str(pbx.processed_calls))])


def action_coresettings(session: AMISession, msg: AMIMessage) -> None:
    session.success(msg, None, [
        ("AMIversion", "11.0.0"), ("AsteriskVersion", ASTERISK_VERSION), ("SystemName", ""),
        ("CoreMaxCalls", "500"), ("CoreMaxLoadAvg", "0.000000"), ("CoreRunUser", ""), ("CoreRunGroup", ""),
        ("CoreMaxFilehandles", "0"), ("CoreRealTimeEnabled", "No"), ("CoreCDRenabled", "Yes"),
        ("CoreHTTPenabled", "No"), ("SoundsSearchCustomDir", "No")])


def action_listcommands(session: AMISession, msg: AMIMessage) -> None:
    names = ["Login", "Logoff", "Challenge", *sorted(ACTIONS)]
    session.success(msg, None, [(name, f"{name} (Priv: all)") for name in names])


ACTIONS: dict[str, ActionHandler] = {
    "Ping": action_ping,
    "Events": action_events,
    "Originate": action_originate,
    "Redirect": action_redirect,
    "Hangup": action_hangup,
    "Setvar": action_setvar,
    "Getvar": action_getvar,
    "CoreShowChannels": action_coreshowchannels,
    "Status": action_status,
    "Bridge": action_bridge,
    "BridgeList": action_bridgelist,
    "BlindTransfer": action_blindtransfer,
    "Atxfer": action_atxfer,
    "CancelAtxfer": action_cancelatxfer,
    "Command": action_command,
    "PlayDTMF": action_playdtmf,
    "UserEvent": action_userevent,
    "CoreStatus": action_corestatus,
    "CoreSettings": action_coresettings,
    "ListCommands": action_listcommands,
    "DBPut": action_dbput,
    "DBGet": action_dbget,
    "DBDel": action_dbdel,
    "DBDelTree": action_dbdeltree,
    "MixMonitor": action_mixmonitor,
    "MixMonitorMute": action_mixmonitormute,
    "StopMixMonitor": action_stopmixmonitor,
}


