"""A real ``cti serve`` whose PBX is unreachable, its wallboard in a real headless Chromium: the health line
says at once that the PBX is down, for how long and why (the log keeps quiet; see test_ami_unreachable)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.test_cli_sim_serve import SUPERVISOR, Proc, write_config

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")


@pytest.mark.timeout(60)
def test_wallboard_health_line_says_the_pbx_is_down_for_how_long_and_why(tmp_path: Path) -> None:
    """With nothing on the AMI port, the supervisor's wallboard shows "AMI sim DOWN for m:ss: cannot
    connect: ... refused" as soon as it opens, in the "down" style, and the time grows while it stays down."""
    from playwright.async_api import async_playwright, expect

    path, doc = write_config(tmp_path)
    server = Proc("serve", str(path))
    try:
        server.wait_for(r"centre\.process: cti: FastAGI on", timeout=20)
        server.wait_for(r"cti\.ami\.client: AMI sim .*cannot connect", timeout=10)

        async def body() -> None:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{doc['listen']['http']['port']}/wallboard")
                tid = page.get_by_test_id
                await tid("login-agent").fill(SUPERVISOR[0])
                await tid("login-password").fill(SUPERVISOR[1])
                await tid("login-submit").click()
                health = tid("wb-health-AMI-sim")
                await expect(health).to_have_class("down")
                await expect(health).to_contain_text("AMI sim DOWN for 0:0")
                await expect(health).to_contain_text("cannot connect")
                await expect(health).to_contain_text("refused")
                first = await health.inner_text()
                await expect(health).not_to_have_text(first, timeout=5000)  # the time since goes on
                assert await health.is_visible()
                await page.screenshot(path=str(tmp_path / "wallboard-pbx-down.png"), full_page=True)
                await browser.close()

        asyncio.run(asyncio.wait_for(body(), 40))
        code, _, err = server.terminate()
        assert code == 0, err[-3000:]
    finally:
        if server.popen.poll() is None:
            server.popen.kill()
            server.popen.communicate()
