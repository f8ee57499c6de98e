"""The agent console as an agent uses it (issue 12, items 1-5), in a real headless Chromium (Debian's
/usr/bin/chromium driven by Playwright) against the hub and the production backend over the real server
and the simulated PBX (tests/console_stack.py): pops from the real customer store and composer.

Each test saves screenshots under its pytest temp dir and asserts on what is visible, not only on the DOM.
Time: the hub, the server and the page read clocks the test moves forward together (``Clock.advance``), so
the call and hold timers are checked without sleeping.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from centre.call_log import call_key
from screenpop.records import AccountRecord
from tests.console_stack import PBX, Stack, make_settings, open_client, run, running

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
STATIC = Path(__file__).resolve().parent.parent / "agent_console" / "static"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")


class Clock:
    """Moves the stack's time (server and hub) and the page's (``page.clock``) forward together."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.page: Any = None

    async def advance(self, seconds: float) -> None:
        await self.stack.advance(seconds)
        if self.page is not None:
            await self.page.clock.fast_forward(int(seconds * 1000))


ROSA_PHONE = "+16165550123"


def add_rosa(stack: Stack) -> None:
    """A known customer in the real store, with a callback promised on an earlier contact."""
    stack.add_customer("C-42", "Rosa", "Rossi", ROSA_PHONE, segment="gold",
                       accounts=(AccountRecord("ACC-0042", "fibre 500", "active"),
                                 AccountRecord("ACC-0043", "mobile", "suspended")),
                       history=({"started_at": datetime(2025, 1, 5, 10, 0, tzinfo=UTC), "disposition": "resolved",
                                 "notes": "billing question", "agent_id": "1003"},
                                {"started_at": datetime(2025, 2, 1, 9, 30, tzinfo=UTC), "disposition": "callback",
                                 "notes": "wants the upgrade price", "agent_id": "1002"}))


def rosa_calls(stack: Stack) -> Any:
    """Rosa calls and comes through the IVR to sales (account entered, PIN too): the caller's channel."""
    return stack.arrive(ROSA_PHONE, "Wei Lopez", collected={"account": "0042", "pin": "1234"})


async def _open(p: Any, port: int, clock: Clock | None = None) -> tuple[Any, Any, list[str]]:
    browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    if clock is not None:
        await page.clock.install()
        clock.page = page
    dialogs: list[str] = []

    async def refuse(dialog: Any) -> None:  # a prompt()/alert()/confirm() would land here
        dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    page.on("dialog", refuse)
    await page.goto(f"http://127.0.0.1:{port}/")
    return browser, page, dialogs


async def _sign_in(page: Any, agent: str, password: str) -> None:
    tid = page.get_by_test_id
    if await tid("login-agent").input_value() != agent:
        await tid("login-agent").fill(agent)
    await tid("login-password").fill(password)
    await tid("login-submit").click()


async def _focus_moves_to(page: Any, testid: str) -> None:
    await page.wait_for_function("id => document.activeElement && document.activeElement.dataset.testid === id",
                                 arg=testid, timeout=5000)


async def _focused(page: Any) -> str | None:
    return await page.evaluate("() => document.activeElement && document.activeElement.dataset.testid")


def test_static_pages_use_no_browser_dialogs() -> None:
    """No prompt(), alert() or confirm() in any page script: questions and messages are in the page."""
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        assert not re.search(r"\b(prompt|alert|confirm)\s*\(", text), script.name


def test_signing_in_logs_the_configured_phone_in_and_says_what_to_do_next(tmp_path: Path) -> None:
    """Item 1. Signing in asks for no endpoint: the console logs the phone in at the configured one (no
    browser prompt), the agent lands in "Not ready" with Ready enabled, and a line says what to do next at
    every step. Another endpoint is refused unless the config allows it."""
    from playwright.async_api import async_playwright, expect

    async def body() -> None:
        async with running() as stack, async_playwright() as p:
            browser, page, dialogs = await _open(p, stack.port)
            tid = page.get_by_test_id
            await expect(tid("login-endpoint")).to_have_count(0)  # no endpoint to type at sign-in
            await _sign_in(page, "1001", "pw-1001")
            badge = tid("state-badge")
            await expect(badge).to_have_text("Not ready")
            assert stack.server.acd.agent_snapshot("1001").endpoint == "PJSIP/1001"
            await expect(tid("btn-ready")).to_be_enabled()
            await expect(tid("next-step")).to_be_visible()
            await expect(tid("next-step")).to_contain_text("Press Ready (Alt+R) to take calls")
            await expect(tid("phone-form")).to_be_hidden()
            await page.screenshot(path=str(tmp_path / "1-signed-in-not-ready.png"))
            await tid("btn-ready").click()
            await expect(badge).to_have_text("Ready")
            await expect(tid("next-step")).to_contain_text("Waiting for a call")
            assert dialogs == []

            # Another endpoint is refused when the config does not allow it (the page shows no field).
            agent = await open_client(stack, "1002")
            refused = await agent.request("login", endpoint="PJSIP/9999")
            assert refused["error_id"] == "endpoint-fixed" and "PJSIP/1002" in refused["message"]
            assert stack.state("1002") == "logged_out"
            await agent.ws.close()
            await browser.close()

        async with running(make_settings(allow_endpoint_override=True)) as stack, async_playwright() as p:
            browser, page, dialogs = await _open(p, stack.port)
            tid = page.get_by_test_id
            await _sign_in(page, "1002", "pw-1002")
            # Hot desking allowed: the phone form asks, pre-filled with the configured endpoint.
            await expect(tid("phone-form")).to_be_visible()
            await expect(tid("state-badge")).to_have_text("Logged out")
            await expect(tid("phone-text")).to_contain_text("PJSIP/1002")
            await expect(tid("phone-endpoint")).to_have_value("PJSIP/1002")
            await expect(tid("next-step")).to_contain_text("Log in phone (Alt+L)")
            assert await _focused(page) == "phone-endpoint"
            await page.screenshot(path=str(tmp_path / "1-override-phone-form.png"))
            await tid("phone-endpoint").fill("PJSIP/2002")
            await page.keyboard.press("Enter")
            await expect(tid("state-badge")).to_have_text("Not ready")
            assert stack.server.acd.agent_snapshot("1002").endpoint == "PJSIP/2002"
            await expect(tid("phone-form")).to_be_hidden()
            assert dialogs == []
            await browser.close()

    run(body)


def test_a_reload_or_a_lost_connection_restores_the_pop_timers_and_wrapup(tmp_path: Path) -> None:
    """Item 2. Mid-call, a browser reload (the tab signs back in by itself, with its resume token) brings
    back the customer card with its history and IVR data, the call's state and its call timer; in wrap-up a
    reload brings back the card and the form with the notes typed so far; a lost connection (server gone
    and back) keeps them too."""
    from playwright.async_api import async_playwright, expect

    async def body() -> None:
        # Heartbeats far apart: jumping the page's clock must not look like a dead link.
        async with running(make_settings(heartbeat_interval=100.0)) as stack, async_playwright() as p:
            clock = Clock(stack)
            add_rosa(stack)
            browser, page, dialogs = await _open(p, stack.port, clock)
            tid = page.get_by_test_id
            await _sign_in(page, "1001", "pw-1001")
            await tid("btn-ready").click()
            await expect(tid("state-badge")).to_have_text("Ready")
            caller = rosa_calls(stack)
            await expect(tid("pop-customer-name")).to_have_text("Rosa Rossi")
            await stack.answer("1001")
            await expect(tid("call-status")).to_have_text("Connected")
            await clock.advance(125)

            await page.reload()  # the tab signs itself back in with its resume token: no password asked
            await expect(tid("login-form")).to_be_hidden()
            await expect(tid("pop-card")).to_be_visible()
            await expect(tid("pop-customer-name")).to_have_text("Rosa Rossi")
            await expect(tid("pop-interactions")).to_contain_text("billing question")
            await expect(tid("pop-ivr-path")).to_contain_text("Main menu: pressed 1 (Sales)")
            await expect(tid("pop-ivr-data")).to_contain_text("0042")
            await expect(tid("call-status")).to_have_text("Connected")
            await expect(tid("call-timer")).to_have_text(re.compile(r"^2:0[5-9]$"))
            await page.screenshot(path=str(tmp_path / "2-after-reload-on-call.png"))

            await tid("btn-hangup").click()
            await expect(tid("wrapup-form")).to_be_visible()
            await tid("wrapup-disposition").select_option("sale")
            await tid("wrapup-notes").fill("ordered the fibre upgrade")
            await page.reload()
            await expect(tid("state-badge")).to_have_text("Wrap-up")
            await expect(tid("pop-customer-name")).to_have_text("Rosa Rossi")
            await expect(tid("wrapup-form")).to_be_visible()
            await expect(tid("wrapup-notes")).to_have_value("ordered the fibre upgrade")
            await expect(tid("wrapup-disposition")).to_have_value("sale")
            await page.screenshot(path=str(tmp_path / "2-after-reload-in-wrapup.png"))

            port = stack.port
            await stack.hub.stop()
            await expect(tid("conn-banner")).to_have_attribute("data-status", "lost")
            await stack.hub.start("127.0.0.1", port)
            await expect(tid("conn-banner")).to_have_attribute("data-status", "back", timeout=15000)
            await expect(tid("pop-customer-name")).to_have_text("Rosa Rossi")
            await expect(tid("wrapup-notes")).to_have_value("ordered the fibre upgrade")
            await page.screenshot(path=str(tmp_path / "2-after-reconnect-in-wrapup.png"))
            await tid("btn-dispose").click()
            await expect(tid("state-badge")).to_have_text("Ready")
            record = await stack.record(call_key(PBX, caller.linkedid))
            assert (record.disposition, record.notes) == ("sale", "ordered the fibre upgrade")
            assert dialogs == []
            await browser.close()

    run(body)


def test_the_pop_reads_at_a_glance(tmp_path: Path) -> None:
    """Item 3. The card names the customer as such and the caller-ID name as such, says how the caller was
    identified, the reason for the call (from the IVR), the segment and the wait in one glance row; accounts
    are a table (number, product, status apart); open follow-ups and recent contacts are listed; the IVR
    path is in words, not node ids. All of it sits in the first screen."""
    from playwright.async_api import async_playwright, expect

    async def body() -> None:
        async with running() as stack, async_playwright() as p:
            add_rosa(stack)
            browser, page, _ = await _open(p, stack.port)
            tid = page.get_by_test_id
            await _sign_in(page, "1001", "pw-1001")
            await expect(tid("state-badge")).to_have_text("Not ready")
            rosa_calls(stack)
            await stack.advance(42)  # she waits 42 s in sales before the agent is ready
            await tid("btn-ready").click()
            await expect(tid("pop-card")).to_be_visible()
            await expect(tid("pop-who-label")).to_have_text("Customer")
            await expect(tid("pop-customer-name")).to_have_text("Rosa Rossi")
            glance = tid("pop-glance")
            await expect(glance.get_by_text("Caller ID name")).to_be_visible()
            await expect(tid("pop-caller-name")).to_have_text("Wei Lopez")
            await expect(tid("pop-caller")).to_have_text("+16165550123")
            await expect(tid("pop-verified")).to_have_text("Yes, by the calling number")
            await expect(tid("pop-reason")).to_have_text("Sales")
            await expect(tid("pop-segment")).to_have_text("gold")
            await expect(tid("pop-wait")).to_have_text("0:42 in sales")
            path = tid("pop-ivr-path")
            await expect(path).to_have_text("Caller's number: recognised \u203a VIP customer: no \u203a "
                                            "Main menu: pressed 1 (Sales) \u203a Sales")
            assert "menu:1" not in (await path.inner_text())
            rows = tid("pop-account").locator("tr")
            await expect(rows).to_have_count(2)
            await expect(rows.nth(0).locator("td")).to_have_text(["ACC-0042", "fibre 500", "active"])
            await expect(rows.nth(1).locator("td")).to_have_text(["ACC-0043", "mobile", "suspended"])
            await expect(tid("pop-open")).to_contain_text("Callback promised")
            await expect(tid("pop-open")).to_contain_text("wants the upgrade price")
            await expect(tid("pop-interactions").locator("li")).to_have_count(2)
            await expect(tid("pop-interactions")).to_contain_text("Callback requested")  # the label, not the code
            await expect(tid("pop-ivr-data")).to_contain_text("****")  # the PIN stays masked
            for what in ("pop-customer-name", "pop-glance", "pop-account", "pop-open"):
                box = await tid(what).bounding_box()
                assert box is not None and box["y"] + box["height"] <= 800, (what, box)  # in the first screen
            await page.screenshot(path=str(tmp_path / "3-pop-card.png"))
            await browser.close()

    run(body)


def test_hold_shows_call_and_hold_time_one_callback_place_and_log_out_signs_out(tmp_path: Path) -> None:
    """Item 4. On hold the call timer keeps counting from the answer and a hold timer runs beside it (the
    badge says on hold); after the hold the hold total stays shown. "Schedule a callback" is offered once,
    in the wrap-up. Log out logs the phone out and signs the console out, without a stale message."""
    from playwright.async_api import async_playwright, expect

    async def body() -> None:
        async with running(make_settings(heartbeat_interval=100.0)) as stack, async_playwright() as p:
            clock = Clock(stack)
            add_rosa(stack)
            browser, page, _ = await _open(p, stack.port, clock)
            tid = page.get_by_test_id
            await _sign_in(page, "1001", "pw-1001")
            await tid("btn-ready").click()
            await expect(tid("state-badge")).to_have_text("Ready")
            rosa_calls(stack)
            await stack.answer("1001")
            await expect(tid("call-status")).to_have_text("Connected")
            await clock.advance(90)
            await tid("btn-hold").click()
            await expect(tid("call-status")).to_have_text("On hold")
            await expect(tid("state-badge")).to_have_text("On call \u00b7 on hold")
            await expect(tid("call-timer")).to_have_text(re.compile(r"^1:3\d$"))  # not back to 0:00
            await expect(tid("hold-box")).to_be_visible()
            await clock.advance(20)
            await expect(tid("hold-timer")).to_have_text(re.compile(r"^0:2\d$"))
            await expect(tid("call-timer")).to_have_text(re.compile(r"^1:5\d$"))
            await page.screenshot(path=str(tmp_path / "4-on-hold.png"))
            await tid("btn-retrieve").click()
            await expect(tid("call-status")).to_have_text("Connected")
            await expect(tid("hold-box")).to_be_hidden()
            await expect(tid("hold-total-box")).to_be_visible()
            await expect(tid("hold-total")).to_have_text(re.compile(r"^0:2\d$"))
            await expect(tid("call-timer")).to_have_text(re.compile(r"^1:5\d$"))

            await expect(page.get_by_text("Schedule a callback")).to_have_count(1)
            await tid("btn-hangup").click()
            await expect(tid("wrapup-form")).to_be_visible()
            callback = page.get_by_text("Schedule a callback")
            await expect(callback).to_have_count(1)
            await expect(callback).to_be_visible()
            await tid("wrapup-disposition").select_option("resolved")
            await tid("btn-dispose").click()
            await expect(tid("action-ok")).to_have_text("Wrap-up recorded.")
            await expect(tid("state-badge")).to_have_text("Ready")

            await tid("btn-logout").click()
            await expect(tid("login")).to_be_visible()
            await expect(tid("app")).to_be_hidden()
            await expect(tid("login-info")).to_contain_text("logged out")
            await expect(page.get_by_text("Wrap-up recorded.")).to_be_hidden()
            assert stack.state("1001") == "logged_out"
            await page.screenshot(path=str(tmp_path / "4-logged-out.png"))
            await browser.close()

    run(body)


def test_the_console_works_from_the_keyboard_and_for_a_screen_reader(tmp_path: Path) -> None:
    """Item 5. Shortcuts are shown in the page and work: Alt+R/Alt+N ready and not ready, Alt+H hold and
    retrieve, Alt+X hang up, Alt+W to the wrap-up, Ctrl+Enter finishes it. Focus moves to the next action
    (Ready after sign-in, Hold when the call connects, Retrieve on hold, the disposition in wrap-up). The
    controls have accessible names, and a live region announces the pop."""
    from playwright.async_api import async_playwright, expect

    async def body() -> None:
        async with running() as stack, async_playwright() as p:
            add_rosa(stack)
            browser, page, _ = await _open(p, stack.port)
            tid = page.get_by_test_id
            await _sign_in(page, "1001", "pw-1001")
            badge = tid("state-badge")
            await expect(badge).to_have_text("Not ready")
            await expect(tid("shortcuts")).to_be_visible()
            await expect(tid("shortcuts")).to_contain_text("Alt+R")
            await expect(page.get_by_role("button", name=re.compile("^Ready"))).to_contain_text("Alt+R")
            await expect(tid("btn-hangup")).to_have_attribute("aria-keyshortcuts", "Alt+X")
            assert await _focused(page) == "btn-ready"
            await page.keyboard.press("Alt+R")
            await expect(badge).to_have_text("Ready")
            await page.keyboard.press("Alt+N")
            await expect(badge).to_have_text("Not ready")
            await page.keyboard.press("Alt+R")
            await expect(badge).to_have_text("Ready")

            caller = rosa_calls(stack)
            announce = tid("pop-announce")
            await expect(announce).to_have_attribute("aria-live", "assertive")
            await expect(announce).to_contain_text("Incoming call from customer Rosa Rossi")
            await expect(announce).to_contain_text("reason Sales")
            await stack.answer("1001")
            await expect(tid("call-status")).to_have_text("Connected")
            await expect(page.get_by_role("region", name=re.compile("^Call"))).to_be_visible()
            await _focus_moves_to(page, "btn-hold")
            await page.keyboard.press("Alt+H")
            await expect(tid("call-status")).to_have_text("On hold")
            await _focus_moves_to(page, "btn-retrieve")
            await page.keyboard.press("Alt+H")
            await expect(tid("call-status")).to_have_text("Connected")
            await page.screenshot(path=str(tmp_path / "5-keyboard-on-call.png"))
            await page.keyboard.press("Alt+X")
            await expect(badge).to_have_text("Wrap-up")
            await _focus_moves_to(page, "wrapup-disposition")
            await expect(page.get_by_label("Disposition")).to_be_visible()
            await expect(page.get_by_label("Notes")).to_be_visible()
            await page.keyboard.press("Tab")  # from the disposition to the notes, typing only
            await page.keyboard.type("keyboard only")
            await page.keyboard.press("Alt+W")
            assert await _focused(page) == "wrapup-disposition"
            await page.get_by_label("Disposition").select_option("resolved")
            await page.keyboard.press("Control+Enter")
            await expect(badge).to_have_text("Ready")
            assert (await stack.record(call_key(PBX, caller.linkedid))).notes == "keyboard only"
            await page.screenshot(path=str(tmp_path / "5-keyboard-done.png"))
            snapshot = await page.locator("main").aria_snapshot()
            assert 'button "Ready' in snapshot or "button \"Ready" in snapshot, snapshot
            await browser.close()

    run(body)
