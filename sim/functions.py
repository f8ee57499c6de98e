"""Dialplan functions and built-in variables of the simulated PBX (IF, CALLERID, CHANNEL, CDR, ...).
Pure functions over a Pbx and a Channel; no clock of their own, no I/O, no Twisted.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sim.ami_events import STATE_DESC, caller_id_string, parse_caller_id
from sim.dialplan import check_condition, split_condition

if TYPE_CHECKING:
    from sim.channel import Channel
    from sim.pbx import Pbx

log = logging.getLogger(__name__)


# The dialplan functions this PBX has (what ``core show functions`` lists).
FUNCTIONS = ("CALLERID", "CDR", "CHANNEL", "CONNECTEDLINE", "DB", "EXISTS", "FEATUREMAP", "IF", "ISNULL", "LEN",
             "PJSIP_HEADER")


def builtin_var(pbx: Pbx, chan: Channel, name: str) -> str | None:
    """The read-only variables every channel has (CHANNEL, UNIQUEID, EXTEN, ...), or None."""
    return {
        "CHANNEL": chan.name,
        "UNIQUEID": chan.uniqueid,
        "EXTEN": chan.exten,
        "CONTEXT": chan.context,
        "PRIORITY": str(chan.priority),
        "CALLERID(num)": chan.caller_num,
        "HANGUPCAUSE": str(chan.hangupcause),
        "EPOCH": str(int(pbx.now_epoch())),
    }.get(name)


def write_function(pbx: Pbx, chan: Channel, expr: str, value: str) -> None:
    """Set(FUNC(args)=value): CALLERID, CDR(userfield), CHANNEL(language|accountcode), FEATUREMAP, DB."""
    fname, _, args = expr[:-1].partition("(")
    fname = fname.upper()
    if fname == "CALLERID":
        what = args.strip().lower()
        num, nm = chan.caller_num, chan.caller_name
        if what in ("num", "number"):
            num = value
        elif what == "name":
            nm = value
        elif what == "all":
            nm, num = parse_caller_id(value)
        pbx.set_caller(chan, num, nm)
    elif fname == "CDR" and args.strip().lower() == "userfield":
        chan.variables["\0cdr_userfield"] = value
    elif fname == "CHANNEL" and args.strip().lower() == "language":
        chan.write_language(value)
    elif fname == "CHANNEL" and args.strip().lower() == "accountcode":
        pbx.set_accountcode(chan, value)
    elif fname == "FEATUREMAP":
        chan.featuremap[args.strip().lower()] = value
    elif fname == "PJSIP_HEADER":
        _pjsip_header(chan, args, value)
    elif fname == "DB":
        where = _db_args(chan, args)
        if where is not None:
            if not where[1] or where[1].startswith("/") or where[1].endswith("/") or "//" in where[1]:
                log.warning("DB: key '%s' seems malformed", where[1])
            pbx.astdb[where] = value
    # Anything else (DEVICE_STATE, ...) is accepted and ignored, as a module-less Asterisk would warn.

def _pjsip_header(chan: Channel, args: str, value: str) -> None:
    """``PJSIP_HEADER(add,Name)=value`` on a PJSIP channel before it is called (a pre-dial handler):
    the header goes out on its INVITE. On any other channel res_pjsip_header_funcs refuses it."""
    action, _, name = args.partition(",")
    if chan.tech != "PJSIP":
        log.error("This function requires a PJSIP channel.")
        return
    if action.strip().lower() == "add" and name.strip():
        chan.sip_headers.append((name.strip(), value))
    elif action.strip().lower() == "remove":
        chan.sip_headers[:] = [(n, v) for n, v in chan.sip_headers if n.lower() != name.strip().lower()]


def _db_args(chan: Channel, args: str) -> tuple[str, str] | None:
    """``DB(family/key)``: family up to the first ``/``, the key is the rest (func_db.c)."""
    family, slash, key = args.partition("/")
    if not args or not slash:
        log.warning("%s: DB requires an argument, DB(<family>/<key>)", chan.name)
        return None
    return family, key


def read_function(pbx: Pbx, chan: Channel, fname: str, args: str) -> str:
    """${FUNC(args)} for the functions the dialplans use: IF, CALLERID, CONNECTEDLINE, CHANNEL, LEN, CDR, DB."""
    a = args.strip()
    if fname == "IF":
        cond, iftrue, iffalse = split_condition(args)
        return iftrue if check_condition(cond) else iffalse
    if fname == "CALLERID":
        what = a.lower()
        if what in ("num", "number"):
            return chan.caller_num
        if what == "name":
            return chan.caller_name
        if what == "all":
            return caller_id_string(chan.caller_name, chan.caller_num)
        if what == "dnid":
            return chan.dnid
        return ""
    if fname == "FEATUREMAP":
        return pbx.feature_code(chan, a.lower())
    if fname == "CONNECTEDLINE":
        return chan.conn_num if a.lower() in ("num", "number") else chan.conn_name
    if fname == "CHANNEL":
        return {
            "state": STATE_DESC.get(chan.state, "Unknown"),
            "name": chan.name,
            "language": chan.language,
            "uniqueid": chan.uniqueid,
            "linkedid": chan.linkedid,
            "accountcode": chan.accountcode,
            "channeltype": chan.tech,
            "context": chan.context,
            "exten": chan.exten,
        }.get(a.lower(), "")
    if fname == "LEN":
        return str(len(args))
    if fname == "CDR":
        return chan.variables.get("\0cdr_userfield", "") if a.lower() == "userfield" else ""
    if fname == "DB":
        # A key found is also left in DB_RESULT; a missing key reads as "" (func_db.c).
        where = _db_args(chan, args)
        if where is None or where not in pbx.astdb:
            return ""
        pbx.set_var(chan, "DB_RESULT", pbx.astdb[where])
        return pbx.astdb[where]
    if fname == "EXISTS":
        return "1" if args else "0"
    if fname == "ISNULL":
        return "0" if args else "1"
    return ""
