"""The wallboard's supervisor actions (issue #16: "wallboard and actions in Chromium") in a real headless
Chromium (Debian's /usr/bin/chromium driven by Playwright) on the real server and the simulated PBX
(tests/console_stack.py): from an agent's Actions menu a supervisor forces it not ready (the table follows,
an audit row is written), edits its skills (checked in the page, refused by the server in its words), listens
to and barges into its call (the Originate into [cti-spy] is sent; barge and log-out ask again in the page),
and logs it out; the recording push shows on the agent's call as a dot with words; on a campaign tile the
supervisor pauses and resumes it and changes its mode and cap (a cap over the law's is refused with the
server's message). No horizontal overflow at 390 px. Writes docs/img/wallboard-actions.png (the menu open)
when missing, or again with ``CTI_DOCS_SCREENSHOTS=1``."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from centre.audit import AuditEntry, AuditStore
from tests.console_stack import HASHES, SUPERVISOR_PHONE, Stack, make_settings, open_client, running
from tests.test_console_supervisor import LEADS, NUMBERS, progressive
from tests.test_wallboard_browser import ARGS, CHROMIUM, DOCS_IMG, no_overflow, shot_ok

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")

RECORDED = {"queues": {"sales": "all", "support": "none"},
            "path": "/var/spool/asterisk/monitor/cti/{date}/{call_id}-{part}.wav"}


def audit(stack: Stack) -> list[tuple[str, str, str]]:
    assert stack.server.database is not None
    rows: list[AuditEntry] = list(reversed(AuditStore(stack.server.database.engine).entries()))
    return [(r.action, r.target, r.result) for r in rows]


async def open_wallboard(p: Any, stack: Stack, width: int = 1920, height: int = 1080) -> tuple[Any, Any, list[str]]:
    browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = await (await browser.new_context(viewport={"width": width, "height": height})).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"http://127.0.0.1:{stack.port}/wallboard")
    await page.get_by_test_id("login-agent").fill("sup")
    await page.get_by_test_id("login-password").fill("pw-sup")
    await page.get_by_test_id("login-submit").click()
    await page.get_by_test_id("app").wait_for()
    return browser, page, errors


@pytest.mark.timeout(120)
def test_agent_actions_from_the_wallboard(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    async def body() -> None:
        async with running(recording=RECORDED) as stack, async_playwright() as p:
            browser, page, errors = await open_wallboard(p, stack)
            wt = page.get_by_test_id
            status, menu = wt("wb-action-status"), wt("wb-agent-menu")
            agents = {a: await open_client(stack, a) for a in ("1001", "1002")}
            for client in agents.values():
                await client.request("login")
                await client.request("ready")
            row1, row2 = wt("wb-agent-1001"), wt("wb-agent-1002")
            await expect(row2.get_by_test_id("wb-agent-state")).to_have_text("Ready")

            # Force 1002 not ready (meeting): the table follows, the outcome is said, the action is audited.
            await row2.get_by_test_id("wb-agent-actions").click()
            await expect(menu).to_be_visible()
            await expect(row2.get_by_test_id("wb-agent-actions")).to_have_attribute("aria-expanded", "true")
            await expect(menu.get_by_test_id("wb-monitor")).to_be_hidden()  # no call: no listen/whisper/barge
            await menu.get_by_test_id("wb-nr-reason").select_option("meeting")
            await menu.get_by_test_id("wb-act-not-ready").click()
            await expect(status).to_have_text("\u2713 Agent 1002 is now not ready (meeting).")
            await expect(menu).to_be_hidden()
            await expect(row2.get_by_test_id("wb-agent-state")).to_have_text("Not ready")
            await expect(row2.get_by_test_id("wb-agent-reason")).to_have_text("meeting")
            assert stack.state("1002") == "not_ready"
            assert audit(stack) == [("force_not_ready", "agent:1002", "ok")]

            # Edit 1002's skills: a bad level is caught in the page (nothing sent), an unknown skill is the
            # server's refusal in its words, then support 4 + sales 2; the form comes back prefilled.
            await row2.get_by_test_id("wb-agent-actions").click()
            await menu.get_by_test_id("wb-act-skills").click()
            form = menu.get_by_test_id("wb-skills-form")
            await form.get_by_test_id("wb-skill-name").fill("support")
            await form.get_by_test_id("wb-skill-level").fill("11")
            await form.get_by_test_id("wb-skills-save").click()
            await expect(form.get_by_test_id("wb-skills-error")).to_have_text(
                "The level of support is a whole number from 1 to 10.")
            await form.get_by_test_id("wb-skill-level").fill("4")
            await form.get_by_test_id("wb-skill-add").click()
            await form.get_by_test_id("wb-skill-name").nth(1).fill("spanish")
            await form.get_by_test_id("wb-skills-save").click()
            await expect(status).to_contain_text(
                "\u2715 Could not change Agent 1002's skills: no agent or queue has skill 'spanish'")
            await expect(wt("wb-action-toast")).to_have_attribute("data-kind", "error")
            await form.get_by_test_id("wb-skill-name").nth(1).fill("sales")
            await form.get_by_test_id("wb-skill-level").nth(1).fill("2")
            await form.get_by_test_id("wb-skills-save").click()
            await expect(status).to_have_text("\u2713 Agent 1002's skills: support 4, sales 2; works sales, support.")
            assert dict(stack.server.acd.agent_snapshot("1002").skills) == {"support": 4, "sales": 2}
            await row2.get_by_test_id("wb-agent-actions").click()
            await menu.get_by_test_id("wb-act-skills").click()
            assert await form.get_by_test_id("wb-skill-name").evaluate_all("(l) => l.map((i) => i.value)") == \
                ["support", "sales"]
            await menu.get_by_test_id("wb-menu-close").click()
            await expect(menu).to_be_hidden()
            assert audit(stack)[1:] == [("set_skills", "agent:1002", "refused"), ("set_skills", "agent:1002", "ok")]

            # 1001 takes a recorded sales call: the row says so with a dot and words.
            await stack.connect("1001")
            await expect(row1.get_by_test_id("wb-agent-state")).to_have_text("On call")
            rec = row1.get_by_test_id("wb-agent-rec")
            await expect(rec).to_have_text("\u25cfRecording")
            await expect(rec).to_have_attribute("data-rec", "recording")

            # Listen: the supervisor's phone is rung into [cti-spy] (the Originate), the outcome is said.
            await row1.get_by_test_id("wb-agent-actions").click()
            await expect(menu.get_by_test_id("wb-monitor")).to_be_visible()
            since = len(stack.sender.sent)
            await menu.get_by_test_id("wb-act-listen").click()
            await expect(status).to_have_text(f"\u2713 Calling your phone ({SUPERVISOR_PHONE}) to listen to "
                                              "Agent 1001's call: answer it to join.")
            (originate,) = [f for name, f in stack.sender.actions(since) if name == "Originate"]
            assert (originate["Channel"], originate["Exten"]) == (SUPERVISOR_PHONE, "listen")

            # Barge asks again in the page; Cancel sends nothing, the confirmation sends it.
            await row1.get_by_test_id("wb-agent-actions").click()
            await menu.get_by_test_id("wb-act-barge").click()
            confirm = menu.get_by_test_id("wb-confirm")
            await expect(confirm).to_contain_text("Barge into Agent 1001's call?")
            # the docs' picture: the menu open, on a call being recorded
            shot = tmp_path / "wallboard-actions.png"
            await page.screenshot(path=str(shot))
            shot_ok(shot)
            since = len(stack.sender.sent)
            await confirm.get_by_test_id("wb-confirm-no").click()
            await expect(confirm).to_be_hidden()
            assert [n for n, _ in stack.sender.actions(since)] == []
            await menu.get_by_test_id("wb-act-barge").click()
            await confirm.get_by_test_id("wb-confirm-yes").click()
            await expect(status).to_contain_text("to barge into Agent 1001's call")
            assert [f["Exten"] for n, f in stack.sender.actions(since) if n == "Originate"] == ["barge"]

            # The agent pauses the recording (a card number): the row says "Recording paused".
            assert (await agents["1001"].request("recording_pause"))["recording"] == "paused"
            await expect(rec).to_have_attribute("data-rec", "paused")
            await expect(rec).to_have_text("\u2016Recording paused")

            # Log 1002 out, through the confirmation.
            await row2.get_by_test_id("wb-agent-actions").click()
            await menu.get_by_test_id("wb-act-logout").click()
            await menu.get_by_test_id("wb-confirm").get_by_test_id("wb-confirm-yes").click()
            await expect(status).to_have_text("\u2713 Agent 1002 is now logged out.")
            await expect(row2.get_by_test_id("wb-agent-state")).to_have_text("Logged out")
            assert [r[0] for r in audit(stack)] == ["force_not_ready", "set_skills", "set_skills", "monitor",
                                                    "monitor", "force_logout"]

            # A phone, 390 px wide: the rows, the menu and the outcome stay inside the screen.
            await page.set_viewport_size({"width": 390, "height": 844})
            await no_overflow(page, 390)
            await row1.get_by_test_id("wb-agent-actions").click()
            await menu.get_by_test_id("wb-act-skills").click()
            box = await menu.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
            toast = await wt("wb-action-toast").bounding_box()
            assert toast and toast["x"] >= 0 and toast["x"] + toast["width"] <= 390, toast
            await no_overflow(page, 390)
            await page.screenshot(path=str(tmp_path / "wallboard-actions-mobile.png"))
            await page.keyboard.press("Escape")
            await expect(menu).to_be_hidden()
            await expect(row1.get_by_test_id("wb-agent-actions")).to_be_focused()  # focus back on the row
            await wt("wb-action-dismiss").click()
            await expect(wt("wb-action-toast")).to_have_attribute("data-kind", "")
            await expect(status).to_have_text("")
            await expect(wt("wb-action-dismiss")).to_be_hidden()
            assert errors == [], errors
            await browser.close()
            DOCS_IMG.mkdir(exist_ok=True)
            if os.environ.get("CTI_DOCS_SCREENSHOTS") == "1" or not (DOCS_IMG / shot.name).exists():
                shutil.copyfile(shot, DOCS_IMG / shot.name)

    asyncio.run(asyncio.wait_for(body(), 100))


@pytest.mark.timeout(120)
def test_campaign_actions_and_no_phone_from_the_wallboard() -> None:
    """Pause, resume, a mode and cap change, a cap over the law's (the server's message), a cap out of range
    (the page's); a supervisor with no phone configured who asks to listen sees the server's refusal."""
    from playwright.async_api import async_playwright, expect

    async def body() -> None:
        settings = make_settings(supervisors=[{"id": "sup", "password_hash": HASHES["sup"]}])  # no endpoint
        with tempfile.TemporaryDirectory() as tmp:
            leads = Path(tmp) / "leads.csv"
            leads.write_text("id,number,name\n" + LEADS, encoding="utf-8")
            async with running(settings, dialer=progressive(leads), numbers=NUMBERS) as stack, \
                    async_playwright() as p:
                browser, page, errors = await open_wallboard(p, stack)
                wt = page.get_by_test_id
                status = wt("wb-action-status")
                tile = wt("wb-campaign-spring")
                campaign = stack.server.dialer.campaigns["spring"]  # type: ignore[union-attr]
                await expect(tile).to_have_attribute("data-paused", "false")

                await tile.get_by_test_id("wb-campaign-pause").click()
                await expect(tile).to_have_attribute("data-paused", "true")
                await expect(tile.get_by_test_id("wb-campaign-paused")).to_have_text("\u2016 Paused")
                await expect(status).to_contain_text("\u2713 Campaign spring paused: no new dials")
                await expect(tile.get_by_test_id("wb-campaign-pause")).to_have_text("\u25b6 Resume")

                # While paused, an agent on a support call: listening needs the supervisor's phone.
                agent = await open_client(stack, "1002")
                await agent.request("login")
                await agent.request("ready")
                await stack.connect("1002", queue="support")
                row = wt("wb-agent-1002")
                await expect(row.get_by_test_id("wb-agent-state")).to_have_text("On call")
                await row.get_by_test_id("wb-agent-actions").click()
                await wt("wb-agent-menu").get_by_test_id("wb-act-listen").click()
                await expect(status).to_have_text("\u2715 Could not listen to Agent 1002's call: supervisor sup has "
                                                  "no phone to ring (console.supervisors[].endpoint).")
                await page.keyboard.press("Escape")

                await tile.get_by_test_id("wb-campaign-pause").click()
                await expect(tile).to_have_attribute("data-paused", "false")
                await expect(status).to_contain_text("Campaign spring resumed")
                assert campaign.settings.mode == "progressive"

                change = tile.get_by_test_id("wb-campaign-change")
                await change.locator("summary").click()
                await expect(change.get_by_test_id("wb-campaign-cap")).to_have_value("3")  # prefilled: 0.03
                await change.get_by_test_id("wb-campaign-mode").select_option("predictive")
                await change.get_by_test_id("wb-campaign-cap").fill("2")
                await change.get_by_test_id("wb-campaign-save").click()
                await expect(status).to_have_text("\u2713 Campaign spring: mode predictive, abandon cap 2.0%.")
                assert (campaign.settings.mode, campaign.settings.max_abandon_rate) == ("predictive", 0.02)
                await expect(tile.get_by_test_id("wb-cap")).to_have_text("2.0%")

                # Over the law's cap: the server's words; out of range: the page's, and nothing is sent.
                await change.locator("summary").click()
                await change.get_by_test_id("wb-campaign-cap").fill("5")
                await change.get_by_test_id("wb-campaign-save").click()
                await expect(status).to_contain_text("\u2715 Could not change campaign spring: 0.05 is over us_tsr "
                                                     "(FTC TSR 16 CFR 310.4(b)(4))'s cap of 0.03")
                await change.get_by_test_id("wb-campaign-cap").fill("60")
                rows = len(audit(stack))
                await change.get_by_test_id("wb-campaign-save").click()
                await expect(change.get_by_test_id("wb-campaign-cap-error")).to_have_text(
                    "The abandon cap is a percentage from 0 to 50.")
                await expect(change.get_by_test_id("wb-campaign-cap")).to_have_attribute("aria-invalid", "true")
                assert len(audit(stack)) == rows
                assert campaign.settings.max_abandon_rate == 0.02
                assert audit(stack) == [
                    ("pause_campaign", "campaign:spring", "ok"), ("monitor", "agent:1002", "refused"),
                    ("resume_campaign", "campaign:spring", "ok"), ("set_campaign", "campaign:spring", "ok"),
                    ("set_campaign", "campaign:spring", "refused")]

                await page.set_viewport_size({"width": 390, "height": 844})
                await no_overflow(page, 390)
                await page.set_viewport_size({"width": 1920, "height": 1080})
                await no_overflow(page, 1920)
                assert errors == [], errors
                await browser.close()

    asyncio.run(asyncio.wait_for(body(), 100))
