"""An agent's own callback (issue 15) through the console hub, the production backend, the real server (ACD,
dialer, callbacks on SQLite) and the simulated PBX (tests/console_stack.py): 1001 takes a campaign call and
disposes it with a callback; the callback is for that lead and 1001's own. Once due it is shown to 1001 as a
preview (``callback`` in the frame), never to 1002 (ready all along) and never dialled before; accepted, it is
dialled and the person who answers is offered to 1001 only. A second callback whose owner stays away goes to
the whole campaign after ``callback_owner_grace``, with a warning on the wallboard."""

from __future__ import annotations

import contextlib
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sim.far_end import FarEnd
from tests.console_stack import Client, Stack, open_client, run, running
from tests.dial_windows import noon_zone

LEADS = "id,number,name\nL1,+15550001,Ann One\n"
NUMBERS = {"+15550001": FarEnd("answer", ring_time=1.0)}
GRACE = 120.0


def dialer(leads: Path) -> dict[str, Any]:
    return {"pace_interval": 0.5, "campaigns": [{
        "name": "spring", "queue": "sales", "leads": str(leads), "mode": "progressive", "caller_id": "+15550100",
        "callback_owner_grace": GRACE, "retry_after": {"noanswer": 86400},
        "calling_window": {"start": "09:00", "end": "20:00"}, "timezone": noon_zone(time.time())}]}


async def _drain(client: Client) -> list[dict[str, Any]]:
    """Every push the client has been sent so far (kept or still on the socket)."""
    with contextlib.suppress(TimeoutError):
        while True:
            client.pushes.append(await client.recv(timeout=0.3))
    return client.pushes


def _originates(stack: Stack) -> list[dict[str, Any]]:
    return [fields for name, fields in stack.sender.actions() if name == "Originate"]


async def _take_the_first_call(stack: Stack, c: Client) -> str:
    """1001 (the only agent ready) gets L1's person, talks, and the person hangs up: 1001 is in wrap-up."""
    await stack.until(lambda: len(_originates(stack)) == 1, "the Originate of L1")
    await stack.advance(5)  # ring, answer, AMD
    await stack.ringing("1001")
    await stack.answer("1001")
    call = await c.wait_push("call", lambda m: m["status"] == "connected")
    live = stack.live("1001")
    assert live is not None and live.queued.data.get("CTI_LEAD_ID") == "L1"
    await stack.hang_up_phone("1001")
    await c.wait_push("state", lambda m: m["state"] == "wrap_up")
    return str(call["call_id"])


def test_a_due_callback_goes_to_its_owner_only_and_the_person_to_that_agent() -> None:
    async def body() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            leads = Path(tmp) / "leads.csv"
            leads.write_text(LEADS, encoding="utf-8")
            async with running(dialer=dialer(leads), numbers=NUMBERS) as stack:
                other = await open_client(stack, "1002")
                await other.request("login")
                await other.request("not_ready", reason="break")
                c = await open_client(stack, "1001")
                await c.request("login")
                await c.request("ready")
                call_id = await _take_the_first_call(stack, c)
                due = stack.server.now() + 60
                at = datetime.fromtimestamp(due, UTC).isoformat()
                done = await c.request("dispose", call_id=call_id, disposition="callback", then="not_ready",
                                       reason="break", callback={"at": at, "number": "+15550001",
                                                                 "notes": "call back about May"})
                assert done["type"] == "result", done
                (stored,) = stack.server.callback_store.pending()
                assert (stored.agent_id, stored.lead_id, stored.campaign) == ("1001", "L1", "spring")
                await other.request("ready")

                # claimed within a minute of its time, not dialled before it, and never given to 1002
                await stack.advance(30)
                assert stack.server.dialer is not None
                campaign = stack.server.dialer.campaigns["spring"]
                await stack.until(lambda: campaign.owned_callbacks() == 1, "the callback claimed")
                await stack.advance(35)
                await stack.advance(10)
                assert len(_originates(stack)) == 1 and stack.state("1002") == "ready"
                assert not [m for m in await _drain(other) if m["type"] == "preview"]

                # the owner is back: the callback pops on its console, as a preview of its own
                await c.request("ready")
                shown = await c.wait_push("preview", lambda m: m["status"] == "offered")
                assert (shown["lead_id"], shown["number"], shown["campaign"]) == ("L1", "+15550001", "spring")
                assert shown["callback"] == {"due": pytest.approx(due, abs=1e-3), "notes": "call back about May"}
                assert stack.server.state_message("1001")["reason"] == "preview"
                await c.request("preview_accept", lead_id="L1")
                await stack.until(lambda: len(_originates(stack)) == 2, "the callback's Originate")
                await stack.advance(5)
                await stack.ringing("1001")  # 1002 is ready too: the person goes to 1001, held for it
                assert stack.state("1002") == "ready"
                await stack.answer("1001")
                await c.wait_push("call", lambda m: m["status"] == "connected")
                assert stack.server.callback_store.pending() == []
                assert stack.state("1002") == "ready"
                assert not [m for m in await _drain(other) if m["type"] in ("preview", "call", "pop")]

    run(body)


def test_an_absent_owner_hands_the_callback_to_the_campaign_after_the_grace() -> None:
    async def body() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            leads = Path(tmp) / "leads.csv"
            leads.write_text(LEADS, encoding="utf-8")
            async with running(dialer=dialer(leads), numbers=NUMBERS) as stack:
                other = await open_client(stack, "1002")
                await other.request("login")
                await other.request("not_ready", reason="break")
                c = await open_client(stack, "1001")
                await c.request("login")
                await c.request("ready")
                call_id = await _take_the_first_call(stack, c)
                due = stack.server.now() + 30
                at = datetime.fromtimestamp(due, UTC).isoformat()
                await c.request("dispose", call_id=call_id, disposition="callback", then="not_ready",
                                reason="break", callback={"at": at, "number": "+15550001"})
                await other.request("ready")
                for _ in range(int((30 + GRACE) / 10) - 1):  # 1001 stays away
                    await stack.advance(10)
                assert len(_originates(stack)) == 1
                await stack.advance(15)
                await stack.until(lambda: len(_originates(stack)) == 2, "the callback dialled by the campaign")
                await stack.advance(5)
                await stack.ringing("1002")  # any agent of the campaign now
                sup = await open_client(stack, "sup", role="supervisor")
                board = await sup.request("snapshot")
                assert [w for w in board["warnings"] if w["code"] == "callback-to-campaign"], board["warnings"]
                assert board["campaigns"][0]["owned_callbacks"] == 0

    run(body)
