"""The supervisor wallboard (issue #16 item 3) in a real headless Chromium (Debian's /usr/bin/chromium driven
by Playwright), served by the hub over the real server and the simulated PBX (tests/console_stack.py):

* the queue tiles show the figures of the live statistics: the page's copy of each stream (snapshot, then
  the deltas applied in the browser) equals the server's published figures, and the tiles show them;
* the agents table names the caller (the pop's customer, else the number) and the queue, never a call id;
* a threshold the supervisor sets turns the tile to the warning colour, is announced (an ARIA alert) and
  beeps once; after a reconnect the page resumes its subscriptions from the last seq;
* no horizontal overflow at 390 px wide, and the layout at 1920x1080; screenshots under the test's tmp
  dir (and, for the docs, docs/img/wallboard-1080p.png and docs/img/wallboard-mobile.png: written when
  missing, or again with ``CTI_DOCS_SCREENSHOTS=1``)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.console_stack import Stack, open_client, running

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")

# Elements whose content must stay inside them (cards, tiles, the agents' table), and the page's width.
OVERFLOW_JS = """() => {
  const out = [];
  const cards = document.querySelectorAll('.tile, .panel, .wb-agents-card, .wb-section, .topbar, .health');
  for (const card of cards) {
    if (card.offsetParent === null) continue;
    const box = card.getBoundingClientRect();
    if (card.scrollWidth > card.clientWidth + 1)
      out.push(card.className + ' scrolls ' + card.scrollWidth + '>' + card.clientWidth);
    for (const child of card.querySelectorAll('*')) {
      if (child.offsetParent === null) continue;
      const r = child.getBoundingClientRect();
      if (r.width && (r.right > box.right + 1 || r.left < box.left - 1))
        out.push((child.dataset.testid || child.tagName) + ' in ' + card.className + ': ' + r.left + '-' + r.right
                 + ' outside ' + box.left + '-' + box.right);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, bodyWidth: document.body.scrollWidth, overflow: out};
}"""


def published(stack: Stack, topic: str) -> dict[str, Any]:
    """The stream's figures as the server last published them, and their seq."""
    assert stack.server.kpi is not None
    stream = stack.server.kpi.feed.streams[topic]
    return {"seq": stream.seq, "figures": stream.figures}


async def page_stream(page: Any, topic: str) -> dict[str, Any] | None:
    return await page.evaluate("(t) => { const s = window.CTI_WALLBOARD.streams.get(t);"
                               " return s ? {seq: s.seq, figures: s.figures} : null; }", topic)


async def in_step(stack: Stack, page: Any, topic: str, timeout: float = 10.0) -> dict[str, Any]:
    """Wait until the page's copy of ``topic`` is the server's last published one (same seq, same figures)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        server, mine = published(stack, topic), await page_stream(page, topic)
        if mine is not None and mine["seq"] == server["seq"]:
            assert mine["figures"] == server["figures"], "the deltas applied in the browser differ from the server's"
            return server["figures"]  # type: ignore[no-any-return]
        if loop.time() > deadline:
            raise AssertionError(f"the page's {topic} is at {mine and mine['seq']}, the server's at {server['seq']}")
        await asyncio.sleep(0.05)


async def no_overflow(page: Any, width: int) -> None:
    report = await page.evaluate(OVERFLOW_JS)
    assert report["scrollWidth"] <= width and report["bodyWidth"] <= width, report
    assert report["overflow"] == [], report["overflow"]


def shot_ok(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, f"{path}: {len(data)} bytes"


@pytest.mark.timeout(120)
def test_wallboard_tiles_thresholds_agents_and_layouts(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    async def body() -> None:
        async with running() as stack, async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = await browser.new_context(viewport={"width": 1920, "height": 1080})
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
            wt = page.get_by_test_id
            await page.goto(f"http://127.0.0.1:{stack.port}/wallboard")
            await wt("login-agent").fill("sup")
            await wt("login-password").fill("pw-sup")
            await wt("login-submit").click()
            sales, support = wt("wb-queue-sales"), wt("wb-queue-support")
            await expect(sales).to_be_visible()
            await expect(sales.get_by_test_id("wb-sl-note")).to_contain_text("target 80% in 20 s")

            # Two agents take calls: 1001 a known customer's, 1002 an unknown number's (no network name).
            stack.add_ada()
            agents = {a: await open_client(stack, a) for a in ("1001", "1002")}
            for a, client in agents.items():
                await client.request("login", endpoint=f"PJSIP/{a}")
            await agents["1001"].request("ready")
            ada = await stack.connect("1001")
            await agents["1002"].request("ready")
            unknown = await stack.connect("1002", caller="+15559990000", name="", queue="support")
            row = wt("wb-agent-1001")
            await expect(row.get_by_test_id("wb-agent-state")).to_have_text("On call")
            await expect(row.get_by_test_id("wb-agent-caller")).to_have_text("Ada Lovelace")
            await expect(row.get_by_test_id("wb-agent-queue")).to_have_text("sales")
            row2 = wt("wb-agent-1002")
            await expect(row2.get_by_test_id("wb-agent-caller")).to_have_text("+15559990000")
            await expect(row2.get_by_test_id("wb-agent-queue")).to_have_text("support")
            text = await page.inner_text("body")
            for chan in (ada, unknown):  # no raw call id anywhere on the page
                assert chan.uniqueid not in text and chan.linkedid not in text

            # A third caller waits for sales (both agents busy): the tiles show the server's figures.
            waiting = stack.arrive("+15550001111", "BOB")
            await expect(sales.get_by_test_id("wb-waiting")).to_have_text("1")
            figures = await in_step(stack, page, "queue:sales")
            day = figures["windows"]["day"]
            assert (figures["waiting"], day["offered"], day["answered"]) == (1, 2, 1)
            await expect(sales.get_by_test_id("wb-offered")).to_have_text(str(day["offered"]))
            await expect(sales.get_by_test_id("wb-answered")).to_have_text(str(day["answered"]))
            await expect(sales.get_by_test_id("wb-sl")).to_have_text("100%")
            await expect(sales.get_by_test_id("wb-sl-note")).to_contain_text("on target")
            await expect(sales.get_by_test_id("wb-ready")).to_have_text(str(figures["agents"]["ready"]))
            await expect(sales.get_by_test_id("wb-oncall")).to_have_text(
                str(figures["agents"]["on_call"] + figures["agents"]["reserved"]))
            await expect(sales.get_by_test_id("wb-spark")).to_have_attribute("data-total", str(day["offered"]))
            support_figures = await in_step(stack, page, "queue:support")
            await expect(support.get_by_test_id("wb-offered")).to_have_text(
                str(support_figures["windows"]["day"]["offered"]))

            # The supervisor sets sales' threshold: more than 0 waiting. The tile turns, says so, beeps once.
            assert await sales.get_attribute("data-alert") == "false"
            await sales.get_by_test_id("wb-thresholds").locator("summary").click()
            await sales.get_by_test_id("wb-th-waiting").fill("0")
            await sales.get_by_test_id("wb-th-save").click()
            await expect(sales).to_have_attribute("data-alert", "true")
            await expect(sales.get_by_test_id("wb-alert-text")).to_have_text("\u26a0 1 waiting (over 0)")
            await expect(wt("wb-announce")).to_have_text("Threshold crossed: sales: 1 waiting (over 0)")
            await expect(wt("wb-alert-sales")).to_be_visible()
            await expect(page.locator("body")).to_have_attribute("data-beeps", "1")
            assert await support.get_attribute("data-alert") == "false"
            kept = await page.evaluate("() => JSON.parse(localStorage.getItem('cti.wallboard.thresholds'))")
            assert kept == {"sales": {"waiting": 0, "longest": None, "sl": None}}
            await asyncio.sleep(1.5)  # two more renders: still crossed, no second beep
            assert await page.locator("body").get_attribute("data-beeps") == "1"

            # Layout on a 1080p wall screen: the queue tiles side by side, nothing spills out of its card.
            boxes = [await t.bounding_box() for t in (sales, support)]
            assert boxes[0] and boxes[1] and abs(boxes[0]["y"] - boxes[1]["y"]) < 1 and boxes[1]["x"] > boxes[0]["x"]
            await no_overflow(page, 1920)
            wall = tmp_path / "wallboard-1080p.png"
            await page.screenshot(path=str(wall))
            shot_ok(wall)

            # The caller gives up: the alert clears; the supervisor's page loses the server and resumes.
            await stack.caller_hangs_up(waiting)
            await expect(sales).to_have_attribute("data-alert", "false")
            assert stack.server.kpi is not None
            resumed = stack.server.kpi.feed.counters["resumed"]
            port = stack.port
            await stack.hub.stop()
            await expect(wt("conn-banner")).to_have_attribute("data-status", "lost")
            await stack.hub.start("127.0.0.1", port)
            await expect(wt("conn-banner")).to_have_attribute("data-status", "back", timeout=15000)
            await stack.until(lambda: stack.server.kpi.feed.counters["resumed"] >= resumed + 2,  # type: ignore[union-attr]
                              "the page to resume its subscriptions", timeout=10)
            stack.arrive("+15550002222", "CY")  # crossed again: announced and beeps again
            await expect(page.locator("body")).to_have_attribute("data-beeps", "2")
            figures = await in_step(stack, page, "queue:sales")
            await expect(sales.get_by_test_id("wb-offered")).to_have_text(str(figures["windows"]["day"]["offered"]))

            # A longest-wait threshold on support: crossed once its caller has waited more than 1 s.
            await support.get_by_test_id("wb-thresholds").locator("summary").click()
            await support.get_by_test_id("wb-th-longest").fill("1")
            await support.get_by_test_id("wb-th-save").click()
            assert await support.get_attribute("data-alert") == "false"
            stack.arrive("+15550003333", "DEE", queue="support")
            await expect(support).to_have_attribute("data-alert", "true", timeout=8000)
            await expect(support.get_by_test_id("wb-alert-text")).to_contain_text("longest wait 0:0")
            await expect(support.get_by_test_id("wb-alert-text")).to_contain_text("(over 0:01)")
            await expect(wt("wb-announce")).to_contain_text("Threshold crossed: support: longest wait")
            await expect(page.locator("body")).to_have_attribute("data-beeps", "3")

            # A phone, 390 px wide: one column, no horizontal scrolling, no card content overflowing.
            await expect(wt("conn-banner")).to_be_hidden(timeout=8000)  # "Connection restored." goes
            await page.set_viewport_size({"width": 390, "height": 844})
            await expect(sales).to_be_visible()
            await no_overflow(page, 390)
            boxes = [await t.bounding_box() for t in (sales, support)]
            assert boxes[0] and boxes[1] and boxes[1]["y"] > boxes[0]["y"] + boxes[0]["height"] - 1
            assert boxes[0]["x"] >= 0 and boxes[0]["x"] + boxes[0]["width"] <= 390
            await expect(row.get_by_test_id("wb-agent-caller")).to_be_visible()
            mobile = tmp_path / "wallboard-mobile.png"
            await page.screenshot(path=str(mobile), full_page=True)
            shot_ok(mobile)
            assert errors == [], errors
            await browser.close()
            # The docs' copies: written when missing or asked for (CTI_DOCS_SCREENSHOTS=1), so that a test run
            # does not leave the work tree changed (the clock and timers differ on every run).
            DOCS_IMG.mkdir(exist_ok=True)
            for shot in (wall, mobile):
                if os.environ.get("CTI_DOCS_SCREENSHOTS") == "1" or not (DOCS_IMG / shot.name).exists():
                    shutil.copyfile(shot, DOCS_IMG / shot.name)

    asyncio.run(asyncio.wait_for(body(), 100))
