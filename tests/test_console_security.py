"""Console security over real sockets (issue 13): nobody locks agents out, floods cost the attacker and not
the agents, nothing secret reaches a log, hostile frames and tokens are refused cleanly.

The attacker connects from 127.0.0.2 and the agents from 127.0.0.1 (both loopback on Linux), so the hub
sees two source addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
import sys
import time
from typing import Any

from websockets.asyncio.client import connect

from agent_console import protocol
from agent_console.auth import hash_password, issue_token
from tests.console_stack import PASSWORDS, SECRET, Client, Stack, make_settings, open_client, run, running

ATTACKER = "127.0.0.2"


async def hello(stack: Stack, agent_id: str, source: str | None = None, **credentials: Any) -> dict[str, Any]:
    """One hello on a fresh connection; the reply (the connection is left to close)."""
    client = await open_client(stack, source=source)
    try:
        return await client.request("hello", agent_id=agent_id, **credentials)
    finally:
        with contextlib.suppress(Exception):
            await client.ws.close()


async def guess(stack: Stack, agent_id: str, times: int, **extra: Any) -> list[str]:
    """``times`` wrong-password hellos for ``agent_id`` from the attacker's address; their error ids."""
    out = []
    for i in range(times):
        reply = await hello(stack, agent_id, ATTACKER, password=f"guess-{i}", **extra)
        out.append(reply.get("error_id", reply["type"]))
    return out


def test_guessing_from_one_address_locks_out_nobody_else() -> None:
    """Item 1: many wrong passwords for 1001 and for the supervisor id `sup` (as an agent and as a
    supervisor) from one address never keep 1001 or sup out: their password from their own address and a
    valid token from anywhere (the attacker's address included) log in at once. The attacker's own
    password checks slow down (auth-throttled) instead."""

    async def body() -> None:
        async with running(make_settings(auth_failures=3, auth_delay=30)) as stack:
            seen = await guess(stack, "1001", 6)
            assert seen[:3] == ["auth-failed"] * 3 and set(seen[3:]) == {"auth-throttled"}, seen
            await guess(stack, "sup", 6)
            await guess(stack, "sup", 6, role="supervisor")
            assert (await hello(stack, "1001", password=PASSWORDS["1001"]))["type"] == "result"
            sup = await hello(stack, "sup", password=PASSWORDS["sup"], role="supervisor")
            assert sup["type"] == "result" and sup["role"] == "supervisor"
            now = time.time()
            token = issue_token(SECRET, "1001", "agent", 3600, now)
            assert (await hello(stack, "1001", ATTACKER, token=token))["type"] == "result"
            sup_token = issue_token(SECRET, "sup", "supervisor", 3600, now)
            assert (await hello(stack, "sup", ATTACKER, token=sup_token))["type"] == "result"
            # The attacker's own checks are refused at once, without a scrypt, while the delay runs.
            assert (await hello(stack, "1001", ATTACKER, password=PASSWORDS["1001"]))["error_id"] == "auth-throttled"

    run(body)


def test_idle_sockets_from_one_address_never_keep_an_agent_out() -> None:
    """Item 3: one address opening many idle websockets is capped (console.max_unauthenticated_per_address:
    the sockets past it are reset), and idle sockets do not count against max_connections, so an agent
    still logs in; the total cap of connections not logged in holds across addresses too."""

    async def body() -> None:
        settings = make_settings(max_connections=3, max_unauthenticated_per_address=5, max_unauthenticated=8,
                                 hello_timeout=5.0)
        async with running(settings) as stack:
            idle: list[Any] = []
            refused = 0
            for _ in range(12):
                try:
                    idle.append(await connect(stack.url, open_timeout=2, local_addr=(ATTACKER, 0)))
                except Exception:
                    refused += 1
            assert len(idle) == 5 and refused == 7, (len(idle), refused)
            assert stack.hub.stats()["unauthenticated"] == 5
            agent = await open_client(stack, "1001")  # from 127.0.0.1: in at once, no "server full"
            assert (await agent.request("ping"))["type"] == "result"
            assert stack.hub.stats()["unauthenticated"] == 5  # a logged-in session is no longer counted
            for source in ("127.0.0.3", "127.0.0.4"):  # the total cap (8) across addresses
                for _ in range(3):
                    with contextlib.suppress(Exception):
                        idle.append(await connect(stack.url, open_timeout=2, local_addr=(source, 0)))
            assert stack.hub.stats()["unauthenticated"] == 8
            for ws in idle:
                await ws.close()

    run(body)


REAL_HASHES = {agent: hash_password(pw) for agent, pw in PASSWORDS.items() if agent != "sup"}  # n = 2**14


def test_password_checks_are_bounded_and_failures_throttled_per_address() -> None:
    """Item 4: 100 hellos with different unknown ids at once from one address cost at most
    console.auth_pending_per_address scrypt checks at a time (the rest get auth-throttled at once), so a
    real password login from another address waits for a couple of checks, not for all of them; after
    console.auth_address_failures failures from one address, whatever the ids, its next checks wait too."""

    async def body() -> None:
        settings = make_settings(auth_address_failures=200, max_unauthenticated_per_address=200)
        async with running(settings, hashes=REAL_HASHES) as stack:
            clients = [await open_client(stack, source=ATTACKER) for _ in range(100)]
            for i, c in enumerate(clients):
                await c.send_raw(json.dumps({"v": 1, "type": "hello", "id": 1, "agent_id": f"ghost{i}",
                                             "password": "x" * 12}))
            started = time.perf_counter()
            assert (await hello(stack, "1001", password=PASSWORDS["1001"]))["type"] == "result"
            waited = time.perf_counter() - started
            replies = [(await c.recv())["error_id"] for c in clients]
            print(f"password login behind 100 unknown-id hellos: {waited * 1000:.0f} ms, "
                  f"{replies.count('auth-throttled')} of them refused at once")
            assert replies.count("auth-throttled") >= 90, replies
            assert waited < 1.0, f"a real login waited {waited:.2f} s behind the attacker's checks"

        async with running(make_settings(auth_address_failures=5, auth_delay=30)) as stack:
            seen = [(await hello(stack, f"ghost{i}", ATTACKER, password="nope-nope"))["error_id"]
                    for i in range(8)]
            assert seen[:5] == ["auth-failed"] * 5 and set(seen[5:]) == {"auth-throttled"}, seen
            assert (await hello(stack, "1002", password=PASSWORDS["1002"]))["type"] == "result"

    run(body)


def test_unknown_ids_cost_the_same_time_as_known_ones() -> None:
    """Item 4: a wrong password for an unknown id takes as long as for a known one (the dummy hash has the
    work factor of the configured ones), so ids cannot be told apart by timing. Compares the fastest of 15
    interleaved attempts each (the least disturbed by other load on the machine)."""
    hashes = {agent: hash_password(PASSWORDS[agent], n=2**12) for agent in ("1001", "1002")}

    async def body() -> None:
        settings = make_settings(auth_failures=1000, auth_address_failures=100000,
                                 supervisors=[{"id": "sup", "password_hash": hash_password("pw-sup", n=2**12)}])
        async with running(settings, hashes=hashes) as stack:
            async def timed(agent_id: str) -> float:
                client = await open_client(stack)
                started = time.perf_counter()
                reply = await client.request("hello", agent_id=agent_id, password="wrong-password")
                assert reply["error_id"] == "auth-failed"
                return time.perf_counter() - started

            known, unknown = [], []
            for _ in range(15):
                known.append(await timed("1001"))
                unknown.append(await timed("nobody"))
            k, u = min(known), min(unknown)  # the least disturbed by other load on the machine
            assert abs(u - k) < max(0.5 * k, 0.004), f"known {k * 1000:.1f} ms, unknown {u * 1000:.1f} ms"

    run(body)


ATTACK = r"""
import asyncio, contextlib, json, sys, time
from websockets.asyncio.client import connect

url, seconds = sys.argv[1], float(sys.argv[2])

async def attacker(kind, counts):
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n += 1
        counts[kind] += 1
        with contextlib.suppress(Exception):
            ws = await connect(url, open_timeout=2, local_addr=("127.0.0.2", 0))
            if kind == 0:    # password guessing for the agent who logs in
                await ws.send(json.dumps({"v": 1, "type": "hello", "id": 1, "agent_id": "1001",
                                          "password": f"guess-{n}"}))
            elif kind == 1:  # a spray of unknown ids, each a scrypt check
                await ws.send(json.dumps({"v": 1, "type": "hello", "id": 1, "agent_id": f"g{n}",
                                          "password": "guess-guess"}))
            elif kind == 2:  # hostile frames
                await ws.send("[" * 5000 + "]" * 5000)
            else:            # idle sockets
                await asyncio.sleep(0.5)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await ws.recv()
            await ws.close()
        await asyncio.sleep(0)

async def main():
    counts = [0, 0, 0, 0]
    print("started", flush=True)
    await asyncio.gather(*(attacker(i % 4, counts) for i in range(12)))
    print(json.dumps(counts), flush=True)

asyncio.run(main())
"""


def test_a_token_login_stays_fast_while_an_attack_runs() -> None:
    """Done-when: while another process attacks from another address with all of the above at once
    (password guessing for the agent's own id, a spray of unknown ids costing scrypt checks, nested-JSON
    frames, idle sockets), that agent's token login succeeds fast. Issue: under 100 ms. Asserted with a
    margin for a shared test machine (docs/security.md): the median of 20 logins under 100 ms and 18 of
    the 20 under 100 ms (on an idle machine all 20 take a few ms)."""

    async def body() -> None:
        async with running(make_settings(hello_timeout=5.0), hashes=REAL_HASHES) as stack:
            await guess(stack, "1001", 8)  # the agent's id is under attack from the start
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", ATTACK, stack.url, "6", stdout=asyncio.subprocess.PIPE)
            assert proc.stdout is not None
            assert (await proc.stdout.readline()).strip() == b"started"
            await asyncio.sleep(1.0)  # let the attack get going
            token = issue_token(SECRET, "1001", "agent", 3600, time.time())
            times = []
            for _ in range(20):
                ws = await connect(stack.url, open_timeout=5)
                client = Client(ws)
                started = time.perf_counter()
                reply = await client.request("hello", agent_id="1001", token=token)
                times.append(time.perf_counter() - started)
                assert reply["type"] == "result", reply
                await ws.close()
                await asyncio.sleep(0.1)
            counts = json.loads((await proc.stdout.readline()) or b"null")
            await proc.wait()
            stats = stack.hub.stats()
            assert counts and sum(counts) > 100 and stats["auth_failures"] + stats["auth_throttled"] > 20, (
                counts, stats)
            shown = [round(t * 1000, 1) for t in times]
            print(f"token login under attack (ms): median {statistics.median(shown)}, all {sorted(shown)}; "
                  f"attack connections by kind {counts}")
            assert statistics.median(times) < 0.100 and sum(t < 0.100 for t in times) >= 18, shown

    run(body)


def test_frame_contents_never_reach_the_debug_log() -> None:
    """Item 2: with every logger at DEBUG, a password login, a token login and a pop leave no password,
    no token and no customer data in the server's log (the websockets library would log every frame)."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not record.name.startswith("websockets.client"):  # the test's own client, not the server
                records.append(f"{record.name}: {record.getMessage()}")

    handler = Keep(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    token = issue_token(SECRET, "1002", "agent", 3600, time.time())

    async def body() -> None:
        async with running() as stack:
            stack.add_ada()  # the real store, look-up and composer make the pop
            agent = await open_client(stack, "1001")
            await open_client(stack, "1002", token=token)
            await agent.request("login", endpoint="PJSIP/1001")
            await agent.request("ready")
            stack.arrive()
            pop = await agent.wait_push("pop")
            assert pop["customer"]["profile"]["email"] == "ada@example.com"

    try:
        run(body)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    text = "\n".join(records)
    assert "console agent 1001 connected" in text  # the log was captured at all
    for secret in (PASSWORDS["1001"], token, token[-12:], "Lovelace", "ada@example.com"):
        assert secret not in text, f"{secret!r} in the DEBUG log"


def test_deeply_nested_json_is_bad_json_before_and_after_login() -> None:
    """Item 6: a 1,980-byte nested array is answered bad-json (before login: then closed 4001, not 1011),
    and a logged-in connection that sends one keeps working."""

    async def body() -> None:
        nested = "[" * 990 + "]" * 990
        async with running() as stack:
            client = await open_client(stack)
            await client.send_raw(nested)
            reply = await client.recv()
            assert reply["error_id"] == "bad-json"
            assert await client.closed() == protocol.CLOSE_UNAUTHENTICATED
            agent = await open_client(stack, "1001")
            await agent.send_raw("[" * 8000 + "]" * 8000)
            assert (await agent.reply(None))["error_id"] == "bad-json"
            assert (await agent.request("ping"))["type"] == "result"

    run(body)


def _flip_unused_bits(text: str) -> str:
    """The same bytes spelt differently: change the unused low bits of the last base64url character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return text[:-1] + alphabet[alphabet.index(text[-1]) ^ 1]


def test_tokens_decode_strictly_and_are_checked_against_config() -> None:
    """Item 7: a token whose signature is spelt non-canonically (unused bits of its last character changed,
    junk characters inserted), whose lifetime exceeds console.token_max_ttl, or that names an id the
    configuration does not know, is refused with bad-token; the genuine one logs in."""

    async def body() -> None:
        async with running(make_settings(token_max_ttl=3600, token_default_ttl=600)) as stack:
            now = time.time()
            good = issue_token(SECRET, "1001", "agent", 600, now)
            head, payload, sig = good.split(".")
            bad = {
                "unused bits": f"{head}.{payload}.{_flip_unused_bits(sig)}",
                "junk in signature": f"{head}.{payload}.{sig[:10]}!*{sig[10:]}",
                "junk in payload": f"{head}.{payload[:5]}!{payload[5:]}.{sig}",
                "ttl over max": issue_token(SECRET, "1001", "agent", 7 * 86400, now),
            }
            for what, token in bad.items():
                reply = await hello(stack, "1001", token=token)
                assert reply.get("error_id") == "bad-token", (what, reply)
            ghost = issue_token(SECRET, "ghost", "agent", 600, now)
            assert (await hello(stack, "ghost", token=ghost))["error_id"] == "bad-token"
            boss = issue_token(SECRET, "boss", "supervisor", 600, now)
            assert (await hello(stack, "boss", token=boss))["error_id"] == "bad-token"
            assert (await hello(stack, "1001", token=good))["type"] == "result"

    run(body)


def test_version_must_be_the_integer_1() -> None:
    """Item 8: `"v": true` is not protocol version 1 (True == 1 in Python)."""

    async def body() -> None:
        async with running() as stack:
            agent = await open_client(stack, "1001")
            await agent.send_raw(json.dumps({"v": True, "type": "ping", "id": "p"}))
            assert (await agent.reply("p"))["error_id"] == "unsupported-version"
            await agent.send_raw(json.dumps({"v": 1.0, "type": "ping", "id": "q"}))
            assert (await agent.reply("q"))["error_id"] == "unsupported-version"

    run(body)



def test_behind_a_trusted_proxy_clients_are_told_apart_by_x_forwarded_for() -> None:
    """Behind a TLS proxy every connection comes from the proxy: with console.trusted_proxies the hub counts
    and throttles each under the client the proxy names (the right-most X-Forwarded-For entry that is not
    a trusted proxy, so a client cannot pick its own by sending the header), and the caps and delays hit
    the attacking client only; a header from an untrusted address is ignored."""

    async def via(stack: Stack, client: str, source: str | None = None, **extra: Any) -> Any:
        headers = {"X-Forwarded-For": client}
        local = {"local_addr": (source, 0)} if source else {}
        return await connect(stack.url, open_timeout=2, additional_headers=headers, **local, **extra)

    async def hello_via(stack: Stack, client: str, agent_id: str, source: str | None = None,
                        **credentials: Any) -> dict[str, Any]:
        c = Client(await via(stack, client, source))
        try:
            return await c.request("hello", agent_id=agent_id, **credentials)
        finally:
            await c.ws.close()

    async def body() -> None:
        settings = make_settings(trusted_proxies=["127.0.0.1"], auth_failures=3, auth_delay=30,
                                 max_unauthenticated_per_address=3)
        async with running(settings) as stack:
            evil = "198.51.100.66, 203.0.113.9"  # the client made up the first entry
            seen = [(await hello_via(stack, evil, "1001", password=f"guess-{i}"))["error_id"] for i in range(5)]
            assert seen == ["auth-failed"] * 3 + ["auth-throttled"] * 2, seen
            assert (await hello_via(stack, "198.51.100.66", "1001", password="pw-1001"))["type"] == "result"
            idle, refused = [], 0
            for _ in range(5):
                try:
                    idle.append(await via(stack, "203.0.113.9"))
                except Exception:
                    refused += 1
            assert (len(idle), refused) == (3, 2)
            assert (await hello_via(stack, "198.51.100.7", "1002", password="pw-1002"))["type"] == "result"
            for ws in idle:
                await ws.close()
            # Not from a trusted proxy: the header is ignored, the address is the socket's own.
            seen = [(await hello_via(stack, f"192.0.2.{i}", "1002", ATTACKER, password="nope-nope"))["error_id"]
                    for i in range(5)]
            assert seen == ["auth-failed"] * 3 + ["auth-throttled"] * 2, seen

    run(body)
