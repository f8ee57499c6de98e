"""``cti-agi <flow>``: the IVR as a classic AGI script over stdin/stdout (pyst2), for PBXs that cannot reach
the FastAGI port. Asterisk runs it as ``AGI(cti-agi,<flow>)``; it drives the same ``IvrSession``.

pyst2's ``asterisk.agi.AGI`` reads the ``agi_*`` environment, catches Asterisk's SIGHUP (script-mode
hang-up signal) and writes commands; replies are read with our ``AgiServerCodec`` because pyst2's
``get_result`` cannot parse every reply form (``HANGUP`` lines, ``200 result= (timeout)``, 520 blocks).
Look-ups use the configured customer database through ``screenpop`` (or ``--customers FILE.json``).
Events go to ``--events-file`` as JSON lines (secrets already masked) and a one-line summary to stderr.
The configuration comes from ``--config`` or the ``CTI_CONFIG`` environment variable.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from asterisk.agi import AGI, AGISIGHUPHangup

from ivr.agi_protocol import AgiEnvironment, AgiProtocolError, AgiReply, AgiServerCodec, HangupNotice, decode_line
from ivr.events import IvrCompleted, IvrEvent, PromptMissing
from ivr.interpreter import Action, EmitEvent, IvrSession, LookupCustomer, SendCommand
from ivr.ports import CustomerLookup, InMemoryCustomerLookup, LookupResult

log = logging.getLogger("centre.agi_script")


def sync_lookup(port: CustomerLookup | None, by: str, value: str) -> LookupResult:
    """Call a ``CustomerLookup`` from blocking code: a fired Deferred or a coroutine gives its result."""
    import asyncio
    import inspect

    from twisted.internet.defer import Deferred

    if port is None:
        return LookupResult("unavailable")
    try:
        answer: Any = port.lookup(by, value)  # type: ignore[arg-type]
        if inspect.iscoroutine(answer):
            answer = asyncio.run(answer)
        elif isinstance(answer, Deferred):
            box: list[Any] = []
            answer.addBoth(box.append)
            if not box:  # it would need a running reactor: not in a one-shot script
                answer.cancel()
                return LookupResult("unavailable")
            answer = box[0]
    except Exception as exc:
        log.warning("customer lookup by %s failed: %s", by, type(exc).__name__)
        return LookupResult("unavailable")
    return answer if isinstance(answer, LookupResult) else LookupResult("unavailable")


def database_lookup(cfg: Any) -> CustomerLookup | None:
    """The screen-pop store's look-up over the configured database, run synchronously (no reactor)."""
    try:
        from twisted.internet import task
        from twisted.internet.defer import maybeDeferred

        from cti.db import make_engine
        from screenpop.lookup import PopLookup
        from screenpop.store import CustomerStore
    except ImportError as exc:
        log.warning("no customer database look-up available (%s); look-ups answer unavailable", exc)
        return None
    store = CustomerStore(make_engine(cfg.database.url))
    return PopLookup.from_settings(store, lambda fn: maybeDeferred(fn), task.Clock(), cfg.screenpop)


def environment_of(values: dict[str, str]) -> AgiEnvironment:
    """The environment pyst2 read (from stdin decoded with surrogateescape) as the FastAGI codec gives it: each
    value UTF-8 when its bytes are, else latin-1 (``AgiEnvironment.latin1``), no byte lost or replaced."""
    decoded: dict[str, str] = {}
    latin1: set[str] = set()
    for key, value in values.items():
        text, encoding = decode_line(value.encode("utf-8", errors="surrogateescape"))
        decoded[key] = text
        if encoding == "latin-1":
            latin1.add(key)
    return AgiEnvironment(decoded, frozenset(latin1))


class ScriptRunner:
    """Drives one ``IvrSession`` over a pyst2 ``AGI`` object (blocking, one caller per process)."""

    def __init__(self, agi: AGI, session: IvrSession, lookup: CustomerLookup | None,
                 events_out: IO[str] | None = None, max_line_bytes: int = 8192) -> None:
        self.agi = agi
        self.session = session
        self.lookup = lookup
        self.events_out = events_out
        self.codec = AgiServerCodec(max_line_bytes=max_line_bytes, expect_environment=False)
        self.max_line_bytes = max_line_bytes

    def run(self) -> IvrCompleted:
        actions = self.session.start(time.time())
        while actions:
            actions = self._apply(actions)
        assert self.session.completed is not None
        return self.session.completed

    def _apply(self, actions: list[Action]) -> list[Action]:
        for action in actions:
            if isinstance(action, EmitEvent):
                self._emit(action.event)
            elif isinstance(action, SendCommand):
                return self._exchange(action)
            elif isinstance(action, LookupCustomer):
                return self.session.on_lookup(sync_lookup(self.lookup, action.by, action.value), time.time())
        return []

    def _hung_up(self) -> bool:
        try:
            self.agi.test_hangup()
        except AGISIGHUPHangup:
            return True
        return False

    def _exchange(self, action: SendCommand) -> list[Action]:
        if self._hung_up():
            return self.session.on_hangup(time.time())
        try:
            self.agi.send_command(self.codec.send(action.command).decode("utf-8").rstrip("\n"))
        except OSError:  # EPIPE: Asterisk is gone
            return self.session.on_hangup(time.time())
        actions: list[Action] = []
        while True:
            line = self.agi.stdin.readline(self.max_line_bytes + 1)
            if isinstance(line, str):  # stdin decoded with surrogateescape: the bytes Asterisk sent, unchanged
                line = line.encode("utf-8", errors="surrogateescape")
            if not line:
                return self.session.on_failure("stdin closed by Asterisk", time.time())
            try:
                events = self.codec.receive_data(line)
            except AgiProtocolError as exc:
                log.warning("bad AGI input: %s", exc.reason)
                return self.session.on_failure(f"protocol error: {exc.reason}", time.time())
            for event in events:
                if isinstance(event, HangupNotice):
                    actions.extend(self.session.on_hangup(time.time()))
                elif isinstance(event, AgiReply):
                    if self._hung_up():
                        return self.session.on_hangup(time.time())
                    actions.extend(self.session.on_reply(event, time.time()))
                    return actions

    def _emit(self, event: IvrEvent) -> None:
        if self.events_out is not None:
            record = {"type": type(event).__name__, **dataclasses.asdict(event)}
            self.events_out.write(json.dumps(record, default=str) + "\n")
            self.events_out.flush()
        if isinstance(event, PromptMissing):  # one process per call: once per prompt per call
            print(f"cti-agi: flow {event.flow!r} node {event.node!r}: cannot play prompt {event.prompt!r} "
                  "(no such sound file?); skipped", file=sys.stderr)
        if isinstance(event, IvrCompleted):
            print(f"cti-agi: flow {event.flow} uniqueid {event.uniqueid} outcome {event.outcome}"
                  + (f" queue {event.queue}" if event.queue else "") + (f" ({event.reason})" if event.reason else ""),
                  file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cti-agi", description="Run an IVR flow as an Asterisk AGI script: "
                                "AGI(cti-agi,<flow>)")
    p.add_argument("flow", nargs="?", default=None, help="flow name (default: ivr.default_flow)")
    p.add_argument("--config", default=os.environ.get("CTI_CONFIG"), help="configuration file (or CTI_CONFIG)")
    p.add_argument("--customers", default=None, help="JSON list of customers instead of the database")
    p.add_argument("--events-file", default=None, help="append IVR events here as JSON lines")
    return p


def main(argv: Sequence[str] | None = None, stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="cti-agi %(levelname)s: %(message)s")
    if stdin is None:  # Asterisk may send non-UTF-8 caller names: keep their bytes (the codec decodes each line)
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
    with open(os.devnull, "w", errors="surrogateescape") as quiet:  # pyst2 echoes the environment and commands
        agi = AGI(stdin=stdin, stdout=stdout or sys.stdout, stderr=quiet)
        return _run(agi, args)


def _run(agi: AGI, args: argparse.Namespace) -> int:
    from config.load import ConfigError, load_config

    if not args.config:
        print("cti-agi: no configuration: pass --config FILE or set CTI_CONFIG", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"cti-agi: {issue}", file=sys.stderr)
        return 1
    env = environment_of(agi.env)
    name = args.flow or env.flow_name or cfg.ivr.default_flow or ""
    flow = cfg.ivr.flows.get(name)
    if flow is None:
        print(f"cti-agi: unknown flow {name[:64]!r}; known: {', '.join(sorted(cfg.ivr.flows)) or 'none'}",
              file=sys.stderr)
        return 1  # the dialplan sees no CTI_NEXT and falls back to [cti-fallback]
    if args.customers:
        lookup: CustomerLookup | None = InMemoryCustomerLookup(json.loads(Path(args.customers).read_text()))
    else:
        lookup = database_lookup(cfg)
    events_out = open(args.events_file, "a", encoding="utf-8") if args.events_file else None
    try:
        session = IvrSession(name, flow, env, server=socket.gethostname())
        ScriptRunner(agi, session, lookup, events_out, cfg.ivr.max_line_bytes).run()
    finally:
        if events_out is not None:
            events_out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
