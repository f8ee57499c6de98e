"""A console as a test process drives one over a real websocket: hello (password), login, ready."""

from __future__ import annotations

import json
from contextlib import ExitStack

from websockets.sync.client import ClientConnection, connect


def ready_console(port: int, agent: str, password: str, consoles: ExitStack,
                  tolerated: tuple[str, ...] = ()) -> ClientConnection:
    """The agent's console on the node listening on ``port``: said hello, logged in and ready (an error among
    ``tolerated`` is let pass: logged in already, say); kept open until ``consoles`` closes."""
    ws: ClientConnection = consoles.enter_context(connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10))
    for n, (kind, fields) in enumerate((("hello", {"agent_id": agent, "password": password}),
                                        ("login", {"endpoint": f"PJSIP/{agent}"}), ("ready", {}))):
        ws.send(json.dumps({"v": 1, "type": kind, "id": f"r{n}", **fields}))
        while True:
            msg = json.loads(ws.recv(timeout=10))
            if msg.get("re") == f"r{n}":
                break
        if msg["type"] == "error" and msg.get("error_id") not in tolerated:
            raise AssertionError(f"agent {agent}: {kind} refused: {msg}")
    return ws
