"""A small scripted AMI server over real loopback TCP for the client's tests, plus reactor helpers.

It speaks the Asterisk 22 wire format of the transcripts (banner, Challenge/Login with MD5 or
plain secret, Ping, Logoff, list actions) using the same sans-I/O codec from the server side.
Tests steer it through attributes (``answer_ping``, ``handlers``...) and inspect ``actions``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from cti.ami.message import AMIMessage
from cti.ami.protocol import AMIParser, encode
from cti.reactor import install_reactor

reactor: Any = install_reactor()
# The project runs Twisted on asyncio; if another test module installed the default reactor first
# (importing twisted.trial does), the helpers below still work through reactor.iterate().
LOOP: asyncio.AbstractEventLoop | None = getattr(reactor, "_asyncioEventloop", None)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"

Handler = Callable[["AMIServerProtocol", AMIMessage], None]


def run_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Run the reactor until ``condition()`` holds (fail after ``timeout`` seconds)."""
    if LOOP is not None:

        async def poll() -> None:
            while not condition():
                await asyncio.sleep(0.001)

        LOOP.run_until_complete(asyncio.wait_for(poll(), timeout))
        return
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        reactor.iterate(0.001)


def wait(d: defer.Deferred[Any], timeout: float = 5.0) -> Any:
    """Run the reactor until ``d`` fires; return its result or raise its failure."""
    results: list[Any] = []
    d.addBoth(results.append)
    run_until(lambda: bool(results), timeout)
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def response(action: AMIMessage, status: str = "Success", **headers: str) -> bytes:
    fields: list[tuple[str, str]] = [("Response", status)]
    if action.action_id is not None:
        fields.append(("ActionID", action.action_id))
    fields.extend((k, v) for k, v in headers.items())
    return encode(AMIMessage(fields, "response"))


def event(name: str, **headers: str) -> bytes:
    return encode(AMIMessage([("Event", name), *headers.items()], "event"))


class AMIServerProtocol(Protocol):
    """One client connection of the fake Asterisk."""

    factory: AMIServerFactory

    def __init__(self) -> None:
        self.parser = AMIParser(expect_banner=False)
        self.challenge = ""
        self.logged_in = False

    def connectionMade(self) -> None:
        self.factory.connections.append(self)
        assert self.transport is not None
        self.transport.write(self.factory.banner)

    def dataReceived(self, data: bytes) -> None:
        for item in self.parser.feed(data):
            assert isinstance(item, AMIMessage), item
            self.factory.actions.append(item)
            name = item.name.lower()
            custom = self.factory.handlers.get(name)
            method = getattr(self, f"do_{name}", None)
            if custom is not None:
                custom(self, item)
            elif method is not None:
                method(item)
            else:
                self.send(response(item, "Error", Message="Invalid/unknown command"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.closed += 1

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def do_challenge(self, action: AMIMessage) -> None:
        self.challenge = "123456789"
        self.send(response(action, Challenge=self.challenge))

    def do_login(self, action: AMIMessage) -> None:
        secret = self.factory.users.get(action.get("Username") or "")
        if action.get("AuthType", "").lower() == "md5":
            ok = secret is not None and action.get("Key") == hashlib.md5((self.challenge + secret).encode()).hexdigest()
        else:
            ok = secret is not None and action.get("Secret") == secret
        if not ok:
            # Asterisk answers after ~1 s and closes the socket.
            self.send(response(action, "Error", Message="Authentication failed"))
            assert self.transport is not None
            self.transport.loseConnection()
            return
        self.logged_in = True
        self.send(response(action, Message="Authentication accepted"))
        self.send(event("FullyBooted", Privilege="system,all", Uptime="1", LastReload="1", Status="Fully Booted"))

    def do_ping(self, action: AMIMessage) -> None:
        if self.factory.answer_ping:
            self.send(response(action, Ping="Pong", Timestamp="1795442973.111866"))

    def do_logoff(self, action: AMIMessage) -> None:
        self.send(response(action, "Goodbye", Message="Thanks for all the fish."))
        assert self.transport is not None
        self.transport.loseConnection()

    def do_coreshowchannels(self, action: AMIMessage) -> None:
        aid = action.action_id or ""
        self.send(response(action, EventList="start", Message="Channels will follow"))
        for n in range(self.factory.channels):
            self.send(event("CoreShowChannel", ActionID=aid, Channel=f"Local/a{n}@sim-0000000{n};1"))
        self.send(
            event("CoreShowChannelsComplete", ActionID=aid, EventList="Complete", ListItems=str(self.factory.channels))
        )


class AMIServerFactory(Factory):
    """Shared state and knobs of the fake Asterisk."""

    protocol = AMIServerProtocol

    def __init__(self, users: dict[str, str] | None = None, banner: bytes = BANNER) -> None:
        self.users = users if users is not None else {"cti": "cti-secret"}
        self.banner = banner
        self.answer_ping = True
        self.channels = 2
        self.handlers: dict[str, Handler] = {}
        self.connections: list[AMIServerProtocol] = []
        self.actions: list[AMIMessage] = []
        self.closed = 0

    def buildProtocol(self, addr: IAddress) -> Protocol | None:
        proto = AMIServerProtocol()
        proto.factory = self
        return proto

    @property
    def last(self) -> AMIServerProtocol:
        return self.connections[-1]

    def names(self) -> list[str]:
        return [a.name for a in self.actions]


def listen(factory: Factory) -> IListeningPort:
    """Listen on an ephemeral loopback port."""
    return reactor.listenTCP(0, factory, interface="127.0.0.1")
