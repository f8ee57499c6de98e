"""End to end in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright): the agent
console and the wallboard served by the hub, talking protocol v1 to the production backend over the real
server and the simulated PBX (tests/console_stack.py): pops come from the real customer store, look-up and
composer; the phone rings and answers on the simulated PBX."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from centre.call_log import call_key
from screenpop.records import AccountRecord
from tests.console_stack import PBX, SAMPLE_POP, make_settings, open_client, run, running
from tests.test_console_preview import LEADS, NUMBERS, preview_dialer

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")


def composed_pop(call_id: str, customers: int) -> dict:
    """A pop made by the real composer (screenpop.compose), with 0, 1 or 2 matching customers."""
    from screenpop.compose import PopContext, compose_pop
    from screenpop.records import CustomerRecord, InteractionRecord
    from screenpop.settings import ScreenpopSection

    people = [
        CustomerRecord(id=42, external_id="C-42", first_name="Ada", last_name="Lovelace", segment="gold",
                       accounts=(AccountRecord("ACC-0042", "broadband", "active"),)),
        CustomerRecord(id=43, external_id="C-43", first_name="Charles", last_name="Babbage",
                       accounts=(AccountRecord("ACC-0043"),)),
    ][:customers]
    history = {42: [InteractionRecord(id=1, call_key="pbx/1", customer_id=42,
                                      started_at=datetime(2025, 1, 5, 10, 0, tzinfo=UTC), direction="inbound",
                                      disposition="resolved", notes="billing question", agent_id="1002")]}
    call = PopContext(call_id=call_id, uniqueid=call_id, direction="inbound", ani="+15551234567", queue="sales",
                      wait_seconds=42, caller_name="ADA L", ivr_path=("main", "billing"),
                      ivr_collected={"account": "0042", "pin": "1234"})
    return compose_pop(call, people, history, ScreenpopSection())


async def _browser(p):
    return await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)


def test_agent_logs_in_takes_a_call_disposes_and_goes_ready() -> None:
    """Login with endpoint, ready, an offered call pops the right customer, hold/retrieve, hang up, wrap-up
    with a callback disposition records the interaction and returns the agent to ready; a lost server
    shows the banner and the console resumes when it is back."""
    from playwright.async_api import async_playwright, expect

    async def body() -> None:
        async with running(make_settings(heartbeat_interval=5.0)) as stack, async_playwright() as p:
            browser = await _browser(p)
            page = await browser.new_page()
            tid = page.get_by_test_id
            await page.goto(f"http://127.0.0.1:{stack.port}/")
            await tid("login-agent").fill("1001")
            await tid("login-password").fill("wrong-password")
            await tid("login-submit").click()
            await expect(tid("login-error")).to_contain_text("wrong password")
            await tid("login-password").fill("pw-1001")
            await tid("login-submit").click()
            badge = tid("state-badge")
            await expect(badge).to_have_attribute("data-state", "not_ready")
            assert stack.server.acd.agent_snapshot("1001").endpoint == "PJSIP/1001"
            await tid("btn-ready").click()
            await expect(badge).to_have_attribute("data-state", "ready")
            await expect(tid("state-timer")).to_have_text("0:00")

            stack.add_ada()
            caller = stack.arrive(collected={"account": "0042", "pin": "1234"})
            await expect(badge).to_have_attribute("data-state", "reserved")
            await expect(tid("pop-customer-name")).to_have_text("Ada Lovelace")
            await expect(tid("pop-account")).to_contain_text("ACC-0042")
            await expect(tid("pop-tier")).to_have_text("gold")
            await expect(tid("pop-ivr-path")).to_contain_text("Main menu: pressed 1 (Sales)")
            await expect(tid("pop-ivr-data")).to_contain_text("****")  # the PIN arrives masked
            await expect(tid("pop-interactions")).to_contain_text("billing question")
            await expect(tid("pop-new-caller")).to_be_hidden()

            await stack.answer("1001")
            await expect(badge).to_have_attribute("data-state", "on_call")
            await tid("btn-hold").click()
            await expect(tid("call-status")).to_have_attribute("data-status", "held")
            await tid("btn-retrieve").click()
            await expect(tid("call-status")).to_have_attribute("data-status", "connected")
            await tid("btn-hangup").click()
            await expect(badge).to_have_attribute("data-state", "wrap_up")
            await expect(tid("wrapup-form")).to_be_visible()
            await tid("wrapup-disposition").select_option("callback")
            await expect(tid("wrapup-callback")).to_be_checked()
            await tid("wrapup-callback-at").fill("2099-06-01T10:30")
            await tid("wrapup-notes").fill("call back about the upgrade")
            await tid("btn-dispose").click()
            await expect(badge).to_have_attribute("data-state", "ready")
            await expect(tid("pop-card")).to_be_hidden()
            record = await stack.record(call_key(PBX, caller.linkedid))
            assert (record.disposition, record.notes) == ("callback", "call back about the upgrade")
            assert [cb.number for cb in stack.server.callback_store.pending()] == ["+15551234567"]

            # A disabled control forced on anyway: the server refuses and the page shows why.
            await tid("btn-hangup").evaluate("b => { b.disabled = false; b.click(); }")
            await expect(tid("action-error")).to_contain_text("no call right now")
            assert stack.state("1001") == "ready"
            await tid("notready-reason").select_option("lunch")
            await tid("btn-not-ready").click()
            await expect(tid("state-reason")).to_have_text("lunch")

            port = stack.port
            await stack.hub.stop()
            await expect(tid("conn-banner")).to_have_attribute("data-status", "lost")
            await expect(tid("conn-banner")).to_contain_text("lost")
            await stack.hub.start("127.0.0.1", port)
            await expect(tid("conn-banner")).to_have_attribute("data-status", "back", timeout=15000)
            await expect(badge).to_have_attribute("data-state", "not_ready")
            await tid("btn-ready").click()
            await expect(badge).to_have_attribute("data-state", "ready")
            await browser.close()

    run(body)


async def _ready_agent(p, port: int):
    """A browser with agent 1001 signed in by password and ready."""
    from playwright.async_api import expect

    browser = await _browser(p)
    page = await browser.new_page()
    tid = page.get_by_test_id
    await page.goto(f"http://127.0.0.1:{port}/")
    await tid("login-agent").fill("1001")
    await tid("login-password").fill("pw-1001")
    await tid("login-submit").click()
    await expect(tid("state-badge")).to_have_attribute("data-state", "not_ready")
    await tid("btn-ready").click()
    await expect(tid("state-badge")).to_have_attribute("data-state", "ready")
    return browser, page


def test_a_missed_call_says_so_in_words() -> None:
    """Ring-no-answer: the ACD's reason is "ring-no-answer" (the real server's, not "rona"): the page
    shows the agent in words why they are not ready."""
    from playwright.async_api import async_playwright, expect

    async def body() -> None:
        async with running(make_settings()) as stack, async_playwright() as p:
            browser, page = await _ready_agent(p, stack.port)
            tid = page.get_by_test_id
            badge = tid("state-badge")
            stack.arrive()
            await expect(badge).to_have_attribute("data-state", "reserved")
            await stack.ringing("1001")
            await stack.advance(16)  # the queue's ring timeout (15 s) passes: the PBX stops ringing the phone
            await expect(badge).to_have_attribute("data-state", "not_ready")
            assert stack.server.acd.agent_snapshot("1001").reason == "ring-no-answer"
            await expect(tid("state-reason")).to_have_text("missed a call")
            await browser.close()

    run(body)


def test_a_reload_mid_call_signs_back_in_without_the_password() -> None:
    """The hello result's resume token, kept for the tab: a reload mid-call brings the agent straight back
    to the call with the customer card, no password typed; after signing out a reload shows the sign-in."""
    from playwright.async_api import async_playwright, expect

    async def body() -> None:
        async with running(make_settings()) as stack, async_playwright() as p:
            browser, page = await _ready_agent(p, stack.port)
            tid = page.get_by_test_id
            badge = tid("state-badge")
            stack.add_ada()
            await stack.connect("1001")
            await expect(badge).to_have_attribute("data-state", "on_call")
            await page.reload()
            await expect(badge).to_have_attribute("data-state", "on_call")
            await expect(tid("pop-customer-name")).to_have_text("Ada Lovelace")
            await expect(tid("login-form")).to_be_hidden()
            await tid("btn-hangup").click()
            await expect(badge).to_have_attribute("data-state", "wrap_up")
            await tid("wrapup-disposition").select_option("resolved")
            await tid("btn-dispose").click()
            await expect(badge).to_have_attribute("data-state", "ready")
            await tid("notready-reason").select_option("lunch")
            await tid("btn-not-ready").click()
            await expect(badge).to_have_attribute("data-state", "not_ready")
            await tid("btn-logout").click()
            await expect(tid("login-form")).to_be_visible()
            opened: list[str] = []
            page.on("websocket", lambda ws: opened.append(ws.url))
            await page.reload(wait_until="load")  # the page's script has run: a resume would have connected
            await expect(tid("login-form")).to_be_visible()
            await expect(tid("app")).to_be_hidden()
            assert opened == [], "the page signed itself in after a sign-out"
            await browser.close()

    run(body)


def test_multi_match_chooser_new_caller_and_wallboard() -> None:
    """Two matching customers show a chooser and choosing one fills the card; a caller with no match is a
    "new caller"; the supervisor wallboard shows agents by state live and refuses agent credentials."""
    from playwright.async_api import async_playwright, expect

    async def body() -> None:
        async with running() as stack, async_playwright() as p:
            browser = await _browser(p)
            wall = await browser.new_page()
            await wall.goto(f"http://127.0.0.1:{stack.port}/wallboard")
            wt = wall.get_by_test_id
            await wt("login-agent").fill("1001")
            await wt("login-password").fill("pw-1001")
            await wt("login-submit").click()
            await expect(wt("login-error")).to_be_visible()
            await wt("login-agent").fill("sup")
            await wt("login-password").fill("pw-sup")
            await wt("login-submit").click()
            await expect(wt("wb-queue-sales")).to_be_visible()
            await expect(wt("wb-agent-1002").get_by_test_id("wb-agent-state")).to_have_text("Logged out")

            page = await browser.new_page()
            tid = page.get_by_test_id
            await page.goto(f"http://127.0.0.1:{stack.port}/")
            await tid("login-agent").fill("1002")
            await tid("login-password").fill("pw-1002")
            await tid("login-submit").click()
            await tid("btn-ready").click()
            await expect(tid("state-badge")).to_have_attribute("data-state", "ready")
            await expect(wt("wb-agent-1002").get_by_test_id("wb-agent-state")).to_have_text("Ready")
            await expect(wt("wb-queue-support").get_by_test_id("wb-ready")).to_have_text("1")

            stack.add_ada()
            charles = stack.add_customer("C-43", "Charles", "Babbage", SAMPLE_POP["ani"],
                                         accounts=(AccountRecord("ACC-0043"),))
            caller = await stack.connect("1002", queue="support")
            await expect(tid("pop-matches")).to_be_visible()
            await expect(tid("pop-customer-name")).to_have_text("2 possible customers")
            await tid(f"match-{charles}").click()
            await expect(tid("pop-customer-name")).to_have_text("Charles Babbage")
            await expect(tid("pop-matches")).to_be_hidden()
            await expect(wt("wb-agent-1002").get_by_test_id("wb-agent-state")).to_have_text("On call")

            await tid("transfer-kind").select_option("queue")
            await tid("transfer-target").fill("sales")
            await tid("btn-transfer").click()
            await expect(tid("state-badge")).to_have_attribute("data-state", "wrap_up")
            assert ("Redirect", {"Channel": caller.name, "Context": "cti-hold", "Exten": "s", "Priority": "1"}) \
                in stack.sender.actions()
            await stack.caller_hangs_up(caller)  # waiting in sales: gone before 1002 is ready again
            await tid("wrapup-disposition").select_option("resolved")
            await tid("btn-dispose").click()
            await expect(tid("state-badge")).to_have_attribute("data-state", "ready")

            stack.arrive("+15559990000", queue="support")
            await expect(tid("pop-new-caller")).to_be_visible()
            await expect(tid("pop-customer-name")).to_have_text("Unknown caller")
            await expect(tid("pop-caller-name")).to_have_text("ADA L")
            await browser.close()

    run(body)


def test_sample_pop_renders() -> None:
    """The hand-written SAMPLE_POP of tests.console_stack has the composer's keys (kept in step)."""
    assert set(composed_pop("x", 1)) <= set(SAMPLE_POP) | {"type"}


def test_preview_lead_in_the_console_and_campaign_figures_on_the_wallboard() -> None:
    """Preview mode in the real pages: the lead pops in the console's preview panel; Skip shows the next
    one; Call now dials it (a busy number: the next lead pops); the wallboard's campaign row counts the dial
    and says how many previews are shown."""
    from playwright.async_api import async_playwright, expect

    async def body() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            leads = Path(tmp) / "leads.csv"
            leads.write_text(LEADS, encoding="utf-8")
            async with running(dialer=preview_dialer(leads), numbers=NUMBERS) as stack, async_playwright() as p:
                other = await open_client(stack, "1002")
                await other.request("login")
                await other.request("not_ready", reason="break")
                browser = await _browser(p)
                wall = await browser.new_page()
                await wall.goto(f"http://127.0.0.1:{stack.port}/wallboard")
                wt = wall.get_by_test_id
                await wt("login-agent").fill("sup")
                await wt("login-password").fill("pw-sup")
                await wt("login-submit").click()
                row = wt("wb-campaign-spring")
                await expect(row).to_be_visible()
                await expect(row.get_by_test_id("wb-dials")).to_have_text("0")

                page = await browser.new_page()
                tid = page.get_by_test_id
                await page.goto(f"http://127.0.0.1:{stack.port}/")
                await tid("login-agent").fill("1001")
                await tid("login-password").fill("pw-1001")
                await tid("login-submit").click()
                await tid("btn-ready").click()
                await expect(tid("preview-panel")).to_be_visible()
                await expect(tid("preview-details")).to_contain_text("Ann One")
                await expect(row.get_by_test_id("wb-pacer")).to_have_text("1 shown")
                await tid("preview-skip-reason").fill("wrong time")
                await tid("btn-preview-skip").click()
                await expect(tid("preview-details")).to_contain_text("Bob Two")
                await tid("btn-preview-accept").click()
                await expect(row.get_by_test_id("wb-dials")).to_have_text("1")
                await expect(tid("preview-details")).to_contain_text("Cy Three")  # L2 was busy: the next one
                assert stack.server.dialer is not None
                assert stack.server.dialer.campaigns["spring"].leads["L1"].status == "pending"
                await browser.close()

    run(body)
