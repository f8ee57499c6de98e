"""Asterisk's side of one AGI session, sans-I/O: a scripted caller that answers AGI commands.

Tests, the benchmark and simulators use it to play the PBX: ``environment()`` gives the ``agi_*`` block,
``reply_to(line)`` the bytes Asterisk would answer to one command line, in the exact forms of
../tests/fixtures/asterisk/fastagi.txt (``200 result=53 endpos=...``, ``200 result= (timeout)``, ``510``,
``511`` on a dead channel, ``HANGUP`` after the reply of the command running at hang-up; a prompt in
``missing_prompts`` gives ``STREAM FILE``'s ``200 result=-1 endpos=0`` and ``GET DATA``'s ``200 result=-1``).
No sockets.

The caller's keypad is a list of tokens, one per input the IVR asks for:
``"5"`` a key (taken by an escapable STREAM FILE, WAIT FOR DIGIT or GET DATA), ``"1234#"`` digits for
GET DATA (without ``#``: they end by timeout), ``None`` silence, ``"hangup"`` the caller hangs up
during the next command. When the tokens run out the caller stays silent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cti.contract import INBOUND_CONTEXT
from ivr.agi_protocol import AgiCommand, AgiReply, AgiServerCodec, HangupNotice, split_command
from ivr.events import IvrEvent
from ivr.interpreter import EmitEvent, IvrSession, LookupCustomer, SendCommand
from ivr.ports import LookupResult

ENDPOS = 8000


def environment_block(values: Mapping[str, str]) -> bytes:
    """``agi_key: value`` lines and the empty line that ends them."""
    return "".join(f"{k}: {v}\n" for k, v in values.items()).encode("utf-8") + b"\n"


def fastagi_environment(flow: str, uniqueid: str = "1795443026.0", ani: str = "+15551230002",
                        query: str = "", args: Iterable[str] = ()) -> dict[str, str]:
    """An environment shaped like Asterisk 22's for ``AGI(agi://127.0.0.1:4573/<flow>?<query>)``."""
    script = flow + (f"?{query}" if query else "")
    env = {
        "agi_network": "yes", "agi_network_script": script, "agi_request": f"agi://127.0.0.1:4573/{script}",
        "agi_channel": f"PJSIP/trunk-{uniqueid.replace('.', '')[-8:]}", "agi_language": "en",
        "agi_type": "PJSIP", "agi_uniqueid": uniqueid, "agi_version": "22.10.1", "agi_callerid": ani or "unknown",
        "agi_calleridname": "Caller", "agi_callingpres": "0", "agi_callingani2": "0", "agi_callington": "0",
        "agi_callingtns": "0", "agi_dnid": "unknown", "agi_rdnis": "unknown", "agi_context": INBOUND_CONTEXT,
        "agi_extension": "s", "agi_priority": "5", "agi_enhanced": "0.0", "agi_accountcode": "",
        "agi_threadid": "140280187893440",
    }
    for i, arg in enumerate(args, 1):
        env[f"agi_arg_{i}"] = arg
    return env


_DEAD_OK = {"GET VARIABLE", "GET FULL VARIABLE", "SET VARIABLE", "NOOP", "VERBOSE", "HANGUP"}


@dataclass
class ScriptedCaller:
    """One simulated channel answering AGI commands from a list of keypad tokens."""

    env: dict[str, str]
    keys: list[str | None] = field(default_factory=list)
    missing_prompts: frozenset[str] = frozenset()
    variables: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    hung_up: bool = False

    def environment(self) -> bytes:
        return environment_block(self.env)

    def _next_key(self) -> str | None:
        return self.keys.pop(0) if self.keys else None

    def _hangup_now(self) -> bool:
        if self.keys and self.keys[0] == "hangup":
            self.keys.pop(0)
            self.hung_up = True
            return True
        return False

    def reply_to(self, line: str) -> bytes:
        """What Asterisk answers to one command line (without its newline)."""
        self.commands.append(line)
        verb, args = _split_verb(split_command(line))
        if self.hung_up:
            if verb in _HANDLERS and verb not in _DEAD_OK:
                return b"511 Command Not Permitted on a dead channel or intercept routine\n"
        elif verb in ("STREAM FILE", "WAIT FOR DIGIT", "GET DATA") and self._hangup_now():
            endpos = f" endpos={ENDPOS}" if verb == "STREAM FILE" else ""
            return f"200 result=-1{endpos}\nHANGUP\n".encode()
        handler = _HANDLERS.get(verb)
        if handler is None:
            return b"510 Invalid or unknown command\n"
        return handler(self, args).encode("utf-8") + b"\n"

    # --- command handlers -------------------------------------------------------------------------------

    def _stream_file(self, args: list[str]) -> str:
        if not args:
            return _USAGE
        name, escape = args[0], args[1] if len(args) > 1 else ""
        if name in self.missing_prompts:
            return "200 result=-1 endpos=0"
        token = self.keys[0] if self.keys else None
        if token and len(token) == 1 and token in escape:
            self.keys.pop(0)
            return f"200 result={ord(token)} endpos={ENDPOS // 2}"
        return f"200 result=0 endpos={ENDPOS}"

    def _wait_for_digit(self, args: list[str]) -> str:
        token = self._next_key()
        return f"200 result={ord(token[0])}" if token else "200 result=0"

    def _get_data(self, args: list[str]) -> str:
        if not args:
            return _USAGE
        if args[0] in self.missing_prompts:
            return "200 result=-1"  # Asterisk 22: the prompt cannot be opened, no digit is read
        max_digits = int(args[2]) if len(args) > 2 and args[2].isdigit() else 1024
        token = self._next_key() or ""
        if "#" in token:
            return f"200 result={token.split('#', 1)[0][:max_digits]}"
        if len(token) >= max_digits:
            return f"200 result={token[:max_digits]}"
        return f"200 result={token} (timeout)"

    def _set_variable(self, args: list[str]) -> str:
        if len(args) < 2:
            return _USAGE
        self.variables[args[0]] = args[1]
        return "200 result=1"

    def _get_variable(self, args: list[str]) -> str:
        value = self.variables.get(args[0]) if args else None
        return "200 result=0" if value is None else f"200 result=1 ({value})"

    def _channel_status(self, args: list[str]) -> str:
        return "200 result=6"

    def _hangup(self, args: list[str]) -> str:
        self.hung_up = True
        return "200 result=1"


_USAGE = ("520-Invalid command syntax.  Proper usage follows:\n"
          "Stream the given <replaceable>file</replaceable>, and receive DTMF data.\n"
          "520 End of proper usage.")
_HANDLERS = {
    "ANSWER": lambda self, args: "200 result=0",
    "STREAM FILE": ScriptedCaller._stream_file,
    "WAIT FOR DIGIT": ScriptedCaller._wait_for_digit,
    "GET DATA": ScriptedCaller._get_data,
    "SET VARIABLE": ScriptedCaller._set_variable,
    "GET VARIABLE": ScriptedCaller._get_variable,
    "GET FULL VARIABLE": ScriptedCaller._get_variable,
    "CHANNEL STATUS": ScriptedCaller._channel_status,
    "HANGUP": ScriptedCaller._hangup,
    "NOOP": lambda self, args: "200 result=0",
    "VERBOSE": lambda self, args: "200 result=1",
    "EXEC": lambda self, args: "200 result=0",
}


def _split_verb(words: list[str]) -> tuple[str, list[str]]:
    """(``STREAM FILE``, its arguments): the longest known verb of up to three words."""
    for n in (3, 2, 1):
        verb = " ".join(w.upper() for w in words[:n])
        if verb in _HANDLERS:
            return verb, words[n:]
    return (words[0].upper() if words else ""), words[1:]


def converse(session: IvrSession, caller: ScriptedCaller, now: Callable[[], float] = lambda: 0.0,
             lookup: Callable[[str, str], LookupResult] | None = None, limit: int = 100000) -> list[IvrEvent]:
    """Run ``session`` against ``caller`` in memory, through the real codec; return the events emitted.

    ``lookup(by, value)`` answers customer look-ups synchronously (None: every look-up is unavailable).
    """
    codec = AgiServerCodec()
    codec.receive_data(caller.environment())
    events: list[IvrEvent] = []
    actions = session.start(now())
    for _ in range(limit):
        command: AgiCommand | None = None
        for action in actions:
            if isinstance(action, EmitEvent):
                events.append(action.event)
            elif isinstance(action, SendCommand):
                command = action.command
            elif isinstance(action, LookupCustomer):
                result = lookup(action.by, action.value) if lookup else LookupResult("unavailable")
                actions = session.on_lookup(result, now())
                break
        else:
            if session.done or command is None:
                return events
            wire = codec.send(command)
            actions = []
            for event in codec.receive_data(caller.reply_to(wire.decode("utf-8").rstrip("\n"))):
                if isinstance(event, AgiReply):
                    actions.extend(session.on_reply(event, now()))
                elif isinstance(event, HangupNotice):
                    actions.extend(session.on_hangup(now()))
    raise RuntimeError(f"conversation did not end within {limit} exchanges")
