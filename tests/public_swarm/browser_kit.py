"""Headless Chromium for the health page's tests: the page's DOM some seconds after it opened.

`--dump-dom` waits for the page's network to go idle (with `--virtual-time-budget`, virtual time
stops while a fetch is open), which the page's event stream (an EventSource that stays open) never
lets happen; so the DOM is read over the DevTools protocol instead, after real seconds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import free_port


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.geteuid() == 0:
            pytest.fail("chromium is missing although this is root: run scripts/setup.sh")
        pytest.skip("chromium is not installed and this is not root (scripts/setup.sh installs it as root)")
    return found


async def page_after(browser: str, url: str, profile: Path, seconds: float) -> str:
    """The page's DOM `seconds` after headless Chromium opened it, read over the DevTools protocol
    (`--dump-dom` waits for the page's network to go idle, which an open event stream never does)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    pages: list[dict[str, str]] = []
    try:
        async with httpx.AsyncClient(timeout=5) as c:
            for _ in range(100):
                with contextlib.suppress(httpx.HTTPError):
                    pages = [t for t in (await c.get(f"http://127.0.0.1:{port}/json/list")).json() if t["type"] == "page"]
                    if pages:
                        break
                await asyncio.sleep(0.2)
        assert pages, "headless Chromium's DevTools did not list the page"
        await asyncio.sleep(seconds)
        async with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as ws:
            await ws.send(json.dumps({"id": 1, "method": "Runtime.evaluate", "params": {
                "expression": "document.documentElement.outerHTML", "returnByValue": True}}))
            while True:
                answer = json.loads(await asyncio.wait_for(ws.recv(), 20))
                if answer.get("id") == 1:
                    return str(answer["result"]["result"]["value"])
    finally:
        proc.terminate()
        await proc.wait()
