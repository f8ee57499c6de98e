"""Preview mode (issue 15, item 1) through the console hub, the production backend, the real server (ACD,
dialer, sessions) and the simulated PBX (tests/console_stack.py): a ready agent of the campaign's queue
gets the next lead as a ``preview`` push and is held (reserved, reason ``preview``); skipping puts the
lead back and pops the next; accepting dials it, and the person who answers is offered to that same agent
(a number that is busy frees the agent for the next lead); a preview left unanswered goes back and the
agent is made not ready (``preview-timeout``)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from sim.far_end import FarEnd
from tests.console_stack import Client, Stack, open_client, run, running
from tests.dial_windows import noon_zone

LEADS = "id,number,name\nL1,+15550001,Ann One\nL2,+15550002,Bob Two\nL3,+15550003,Cy Three\n"
NUMBERS = {"+15550001": FarEnd("answer", ring_time=1.0), "+15550002": FarEnd("busy", ring_time=1.0),
           "+15550003": FarEnd("answer", ring_time=1.0)}


def preview_dialer(leads: Path, timeout: float = 20.0) -> dict[str, Any]:
    return {"pace_interval": 0.5, "campaigns": [{
        "name": "spring", "queue": "sales", "leads": str(leads), "mode": "preview", "preview_timeout": timeout,
        "caller_id": "+15550100", "calling_window": {"start": "09:00", "end": "20:00"},
        "timezone": noon_zone(time.time())}]}


async def _agent(stack: Stack) -> Client:
    """1001 ready for the campaign; 1002 (also in sales) not ready, so every preview goes to 1001."""
    other = await open_client(stack, "1002")
    await other.request("login")
    await other.request("not_ready", reason="break")
    c = await open_client(stack, "1001")
    await c.request("login")
    await c.request("ready")
    return c


def _originates(stack: Stack) -> list[dict[str, Any]]:
    return [fields for name, fields in stack.sender.actions() if name == "Originate"]


def test_skip_accept_busy_then_accept_connects_the_person_to_the_same_agent() -> None:
    async def body() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            leads = Path(tmp) / "leads.csv"
            leads.write_text(LEADS, encoding="utf-8")
            async with running(dialer=preview_dialer(leads), numbers=NUMBERS) as stack:
                c = await _agent(stack)
                first = await c.wait_push("preview", lambda m: m["status"] == "offered")
                assert (first["lead_id"], first["name"], first["number"]) == ("L1", "Ann One", "+15550001")
                state = stack.server.state_message("1001")
                assert (state["state"], state["reason"]) == ("reserved", "preview")
                assert _originates(stack) == []  # nothing is dialled before the agent accepts

                # the wrong lead, or accepting what is not shown, is refused and changes nothing
                assert (await c.request("preview_accept", lead_id="L2"))["error_id"] == "unknown-lead"
                other = await open_client(stack, "1002")
                assert (await other.request("preview_skip", lead_id="L1"))["error_id"] == "no-preview"

                # skip: the lead goes back (later), the agent is ready and gets the next lead
                reply = await c.request("preview_skip", lead_id="L1", reason="customer asked for May")
                assert reply["type"] == "result"
                ended = await c.wait_push("preview", lambda m: m["status"] == "skipped")
                assert ended["reason"] == "customer asked for May"
                second = await c.wait_push("preview", lambda m: m["status"] == "offered")
                assert second["lead_id"] == "L2"

                # accept a busy number: it is dialled; busy frees the agent, and the next lead pops
                reply = await c.request("preview_accept", lead_id="L2")
                assert reply["status"] == "dialling"
                await stack.until(lambda: len(_originates(stack)) == 1, "the Originate of L2")
                assert "+15550002" in _originates(stack)[0]["Channel"]
                busy = await c.wait_push("preview", lambda m: m["status"] not in ("offered", "accepted"))
                assert busy["status"] == "busy" and busy["lead_id"] == "L2"
                third = await c.wait_push("preview", lambda m: m["status"] == "offered")
                assert third["lead_id"] == "L3"

                # accept a person: answered, queued, and offered to 1001 (held meanwhile), who answers
                await c.request("preview_accept", lead_id="L3")
                await stack.until(lambda: len(_originates(stack)) == 2, "the Originate of L3")
                assert stack.state("1001") == "reserved"
                await stack.advance(5)  # ring, answer, AMD
                await stack.ringing("1001")
                await stack.answer("1001")
                call = await c.wait_push("call", lambda m: m["status"] == "connected")
                assert call["queue"] == "sales"
                live = stack.live("1001")
                assert live is not None and live.queued.data.get("CTI_LEAD_ID") == "L3"
                assert stack.server.dialer is not None
                assert stack.server.dialer.campaigns["spring"].leads["L1"].status == "pending"

                # the campaign's figures on the supervisor's wallboard (item 8)
                sup = await open_client(stack, "sup", role="supervisor")
                board = await sup.request("snapshot")
                (spring,) = board["campaigns"]
                assert spring["mode"] == "preview" and spring["queue"] == "sales"
                today = spring["today"]
                assert (today["dials"], today["answers"], today["live_answers"], today["contacts"]) == (2, 0, 1, 0)
                assert spring["occupancy"] == 0.5  # 1001 on the call; 1002 not ready
                assert spring["previews"] == 0 and spring["due_leads"] == 0 and spring["in_flight"] == 0
                await stack.hang_up_phone("1001")
                await stack.until(lambda: stack.server.wallboard()["campaigns"][0]["today"]["contacts"] == 1,
                                  "the contact counted")
                assert stack.server.wallboard()["campaigns"][0]["today"]["contact_rate"] == 0.5

    run(body)


def test_a_preview_not_answered_in_time_goes_back_and_the_agent_is_not_ready() -> None:
    async def body() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            leads = Path(tmp) / "leads.csv"
            leads.write_text(LEADS, encoding="utf-8")
            async with running(dialer=preview_dialer(leads, timeout=10.0), numbers=NUMBERS) as stack:
                c = await _agent(stack)
                await c.wait_push("preview", lambda m: m["status"] == "offered" and m["lead_id"] == "L1")
                await stack.advance(11)
                await c.wait_push("preview", lambda m: m["status"] == "timeout")
                await c.wait_push("state", lambda m: m["state"] == "not_ready" and m["reason"] == "preview-timeout")
                assert stack.server.dialer is not None
                assert stack.server.dialer.campaigns["spring"].leads["L1"].status == "pending"
                assert _originates(stack) == []
                # the agent, ready again, is shown the lead that went back
                await c.request("ready")
                again = await c.wait_push("preview", lambda m: m["status"] == "offered")
                assert again["lead_id"] == "L1"

    run(body)
