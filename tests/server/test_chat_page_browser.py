"""Issue 14, item 9: the chat page driven in the system's headless Chromium (playwright pointed at
it, no downloaded browser) against a real `hearth serve` that requires an API key: key entry after a
401, a streamed reply, stop, an error then recovery (the failed message stays out of the history),
clear, and the favicon."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, start_server, stop_server
from tests.public_swarm.browser_kit import chromium

pytestmark = [pytest.mark.slow, pytest.mark.chromium]

KEY = "page test key"
PROMPT_LIMIT = 3000
TIMEOUT_MS = 90_000
MAX_TOKENS = 8


@pytest.fixture(scope="module")
def keyed(models_home: Path) -> Iterator[Server]:
    srv = start_server(models_home, "--api-key", KEY, HEARTH_N_CTX="512", HEARTH_MAX_PROMPT_CHARS=str(PROMPT_LIMIT))
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()  # skips (not root) or fails (root: setup.sh installs it) when absent
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


class Page:
    """One fresh browser context on the chat page, recording the chat requests it sends."""

    def __init__(self, browser: Any, url: str, key: str | None) -> None:
        self.context = browser.new_context()
        if key is not None:
            self.context.add_init_script(f"localStorage.setItem('hearth.apiKey', {json.dumps(key)})")
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.sent: list[dict[str, Any]] = []
        self.statuses: list[tuple[str, int]] = []
        self.max_tokens = MAX_TOKENS
        self.page.route("**/v1/chat/completions", self._bounded)
        self.page.on("response", lambda r: self.statuses.append((r.url, r.status)))
        self.page.goto(url + "/")

    def _bounded(self, route: Any) -> None:
        """Records what the page sends, then sends it with a token limit: the page asks for none
        (a reply runs to the model's end), which a loaded test machine cannot afford."""
        body = json.loads(route.request.post_data)
        self.sent.append({"body": body, "headers": route.request.headers})
        route.continue_(post_data=json.dumps(body | {"max_tokens": self.max_tokens}))

    def send(self, text: str) -> None:
        self.page.fill("#q", text)
        self.page.click("#send")

    def idle(self) -> None:
        """Until the reply (or its failure) ended: Send is enabled again."""
        self.page.wait_for_function("!document.getElementById('send').disabled && "
                                    "document.getElementById('stop').disabled")

    def texts(self, selector: str) -> list[str]:
        return [str(t) for t in self.page.locator(selector).all_text_contents()]


@pytest.fixture
def open_page(browser: Any, keyed: Server) -> Iterator[Any]:
    pages: list[Page] = []

    def make(key: str | None = KEY) -> Page:
        pages.append(Page(browser, keyed.url, key))
        return pages[-1]

    yield make
    for p in pages:
        p.context.close()


def test_api_key_entry_after_a_401_then_a_streamed_reply(open_page: Any) -> None:
    p = open_page(None)
    p.send("Hi")
    p.idle()
    assert p.page.is_visible("#keyform"), "the key form did not open after the 401"
    assert any("API key" in t for t in p.texts(".error")), p.texts("#log div")
    assert p.page.input_value("#q") == "Hi"  # the failed message is back in the box
    p.page.fill("#key", KEY)
    p.page.click("#savekey")
    assert not p.page.is_visible("#keyform")
    # count the reply's renders: a streamed reply grows in several steps
    p.page.evaluate("""window.renders = 0; new MutationObserver(() => window.renders++)
        .observe(document.getElementById('log'), {childList: true, subtree: true, characterData: true})""")
    p.page.click("#send")
    p.idle()
    reply = p.texts(".assistant")
    assert len(reply) == 1 and reply[0].strip(), p.texts("#log div")
    assert p.page.evaluate("window.renders") >= 4  # user line, empty reply, then at least two deltas
    first, second = p.sent
    assert "authorization" not in first["headers"] and second["headers"]["authorization"] == f"Bearer {KEY}"
    assert second["body"]["stream"] is True
    assert second["body"]["messages"] == [{"role": "user", "content": "Hi"}]  # the 401 left no trace


def test_stop_ends_the_reply_and_keeps_what_came(open_page: Any) -> None:
    p = open_page()
    p.max_tokens = 400  # long enough to be stopped: the test stops it after its first words
    p.send("Write a very long story about a dragon who learns to bake bread, in many chapters.")
    p.page.wait_for_function("document.querySelector('.assistant') && "
                             "document.querySelector('.assistant').textContent.length > 0")
    p.page.click("#stop")
    p.idle()
    assert p.texts(".stopped") == ["(stopped)"]
    kept = p.texts(".assistant")[0]
    p.page.wait_for_timeout(1500)
    assert p.texts(".assistant")[0] == kept  # nothing more arrives once stopped
    p.max_tokens = MAX_TOKENS
    p.send("Thanks")
    p.idle()
    assert [m["role"] for m in p.sent[-1]["body"]["messages"]] == ["user", "assistant", "user"]
    assert p.sent[-1]["body"]["messages"][1]["content"] == kept


def test_an_error_then_recovery_and_clear(open_page: Any) -> None:
    p = open_page()
    too_long = "word " * (PROMPT_LIMIT // 5 + 10)
    p.send(too_long)
    p.idle()
    errors = p.texts(".error")
    assert len(errors) == 1 and "HEARTH_MAX_PROMPT_CHARS" in errors[0], p.texts("#log div")
    assert p.texts(".user.failed") == [too_long.strip()] and not p.texts(".assistant")
    p.send("Hi")
    p.idle()
    assert p.sent[-1]["body"]["messages"] == [{"role": "user", "content": "Hi"}]  # not poisoned
    assert p.texts(".assistant")[0].strip() and len(p.texts(".error")) == 1
    p.page.click("#clear")
    assert p.texts("#log div") == []
    p.send("Hello")
    p.idle()
    assert p.sent[-1]["body"]["messages"] == [{"role": "user", "content": "Hello"}]
    assert p.texts(".user") == ["Hello"]


def test_the_favicon_is_served_without_the_key_and_nothing_404s(open_page: Any, keyed: Server) -> None:
    icon = httpx.get(keyed.url + "/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg")
    p = open_page()
    assert p.page.get_attribute("link[rel=icon]", "href") == "/favicon.ico"
    p.page.wait_for_load_state("networkidle")
    assert not [s for s in p.statuses if s[1] >= 400], p.statuses
