"""Console security in a real headless Chromium (issue 13, item 5 and the CSP): a page of another site
cannot use the agent's browser to talk to the hub, and the console's own pages may talk only to the
hub's own websocket."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import pytest

from tests.console_stack import make_settings, run, running

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")

# Opens the hub's websocket, sends a wrong-password hello, and says what came back.
PROBE = """async (url) => await new Promise((resolve) => {
  let ws;
  try { ws = new WebSocket(url); } catch (e) { resolve("threw " + e.name); return; }
  ws.onopen = () => ws.send(JSON.stringify({v: 1, type: "hello", id: 1, agent_id: "1001", password: "guess-1"}));
  ws.onmessage = (event) => resolve("answered " + JSON.parse(event.data).error_id);
  ws.onclose = (event) => resolve("closed " + event.code);
  setTimeout(() => resolve("timeout"), 4000);
})"""


async def _page_server() -> asyncio.Server:
    """A plain page on another port of loopback: another origin (a public site would be stopped by
    Chromium's local-network checks before reaching the hub; other browsers have none)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 12\r\n"
                         b"Connection: close\r\n\r\n<p>other</p>")
            await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


def test_a_page_of_another_site_cannot_open_the_hub_websocket() -> None:
    """Item 5: with allowed_origins unset, a page of another origin opened in the agent's browser is refused
    at the websocket handshake (so it can neither guess passwords nor lock anyone out); the hub's own page
    connects; an origin listed in allowed_origins connects too."""
    from playwright.async_api import async_playwright

    async def probe(browser: Any, page_url: str, ws_url: str) -> str:
        page = await browser.new_page()
        await page.goto(page_url)
        outcome: str = await page.evaluate(PROBE, ws_url)
        await page.close()
        return outcome

    async def body() -> None:
        server = await _page_server()
        other = server.sockets[0].getsockname()[1]
        evil, partner = f"http://127.0.0.1:{other}", f"http://localhost:{other}"
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            async with running() as stack:
                assert await probe(browser, f"{evil}/", stack.url) == "closed 1006"
                assert stack.hub.stats()["rejected_origin"] == 1 and stack.hub.stats()["auth_failures"] == 0
                own = f"http://127.0.0.1:{stack.port}/"
                assert await probe(browser, own, stack.url) == "answered auth-failed"
            async with running(make_settings(allowed_origins=[partner])) as stack:
                assert await probe(browser, f"{partner}/", stack.url) == "answered auth-failed"
                assert await probe(browser, f"{evil}/", stack.url) == "closed 1006"
            await browser.close()
        server.close()

    run(body)


def test_the_console_page_may_connect_only_to_its_own_websocket() -> None:
    """The CSP's connect-src names the hub's own websocket origin: from the console page, a websocket to
    another host is blocked by the browser (a securitypolicyviolation), the hub's own one is not."""
    from playwright.async_api import async_playwright

    script = """async (url) => await new Promise((resolve) => {
      document.addEventListener("securitypolicyviolation", (e) => resolve("blocked " + e.violatedDirective));
      try { const ws = new WebSocket(url); ws.onopen = () => resolve("open"); }
      catch (e) { resolve("threw " + e.name); }
      setTimeout(() => resolve("not blocked"), 3000);
    })"""

    async def body() -> None:
        async with running() as stack, async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = await browser.new_page()
            response = await page.goto(f"http://127.0.0.1:{stack.port}/")
            assert response is not None
            csp = (await response.all_headers())["content-security-policy"]
            assert f"connect-src 'self' ws://127.0.0.1:{stack.port} wss://127.0.0.1:{stack.port};" in csp
            assert "frame-ancestors 'none'" in csp
            elsewhere = await page.evaluate(script, f"ws://127.0.0.2:{stack.port}/ws")
            assert elsewhere.startswith("blocked connect-src"), elsewhere
            assert await page.evaluate(script, stack.url) == "open"
            await browser.close()

    run(body)
