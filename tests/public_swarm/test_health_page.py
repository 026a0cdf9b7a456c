"""The swarm health page and `GET /v1/swarm`: in process (workers listed without sockets, see
jobs_http_kit) its JSON counts workers, models and jobs and is rebuilt at most every SNAPSHOT_S;
then a real coordinator with a real linked worker, its page loaded in headless Chromium: the
rendered DOM (after the page's script ran) shows the worker count and the model."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from hearth.identity import NodeIdentity
from hearth.public_swarm.coordinator.health import CSP, Snapshots, Swarm
from hearth.settings import DEFAULT_MODEL
from tests.conftest import free_port
from tests.public_swarm.browser_kit import chromium, page_after
from tests.public_swarm.dispatch_kit import DIGEST, MODEL, PRICE
from tests.public_swarm.jobs_http_kit import books
from tests.public_swarm.worker_proc import FIRST_LINK_S, contributor, coordinator_at, live, wait_for

CHAT = {"model": MODEL.name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def test_swarm_json_counts_workers_models_throughput_and_jobs(tmp_path: Path) -> None:
    async def go() -> None:
        with books(f"sqlite:///{tmp_path / 'h.db'}", workers=3) as b:
            b.stats.record(120)
            async with b.anonymous() as anyone:
                assert (await anyone.post("/v1/jobs", json=CHAT)).status_code == 202
                swarm = (await anyone.get("/v1/swarm")).json()
                page = await anyone.get("/")
                script = await anyone.get("/health.js")
                for bad in ("POST", "DELETE"):
                    assert (await anyone.request(bad, "/v1/swarm")).status_code == 405
        assert swarm["live_workers"] == 3 and len(swarm["workers"]) == 3
        assert [(m["name"], m["digest"], m["workers"], m["price"]) for m in swarm["models"]] == [
            (MODEL.name, DIGEST, 3, PRICE)]
        assert swarm["tokens_per_s_1m"] == 2.0 and swarm["series"][-1]["tokens"] == 120
        assert swarm["jobs"]["queued"] == 1 and swarm["jobs"]["running"] == 0
        assert all(len(w["node_id"]) == 12 for w in swarm["workers"])
        assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
        assert '<script src="/health.js">' in page.text and "http" not in page.text.replace('href="/v1/swarm"', "")
        assert script.headers["content-type"].startswith("text/javascript") and "textContent" in script.text

    asyncio.run(go())


def test_snapshots_are_rebuilt_at_most_every_few_seconds() -> None:
    now, built = [1000.0], []

    def build(at: float) -> Swarm:
        built.append(at)
        return Swarm(at=at, live_workers=0, workers=[], models=[], tokens_per_s_1m=0, tokens_per_s_5m=0, series=[],
                     jobs={})

    latest = Snapshots(build, every_s=2.0, clock=lambda: now[0])
    for step in (0.0, 0.5, 1.9, 2.1, 2.2, -100.0):  # a clock stepped back rebuilds too
        now[0] += step
        latest()
    assert built == pytest.approx([1000.0, 1002.4, 1004.5, 1006.7, 906.7])


@pytest.mark.slow
def test_the_page_in_headless_chromium_shows_the_linked_worker_and_its_model(tmp_path: Path) -> None:
    browser = chromium()
    port, me = free_port(), NodeIdentity.load_or_create(tmp_path / "asker")
    url = f"http://127.0.0.1:{port}"
    with coordinator_at(tmp_path / "coord", port), contributor(tmp_path / "w", url):
        wait_for("worker linked", lambda: bool(live(url, me)), FIRST_LINK_S, tmp_path / "w" / "contribute.log")
        dom = asyncio.run(page_after(browser, url + "/", tmp_path / "profile", 6.0))
    assert re.search(r'id="live-workers">1<', dom), dom[:3000]
    assert re.search(r'id="model-count">1<', dom)
    assert re.search(rf"<td>{re.escape(DEFAULT_MODEL)}</td><td class=\"num\">1</td>", dom), dom[:3000]
    assert "Updated" in dom and "Could not load" not in dom
