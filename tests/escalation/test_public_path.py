"""The public radius end to end on real processes: `hearth run`, `hearth serve` and `hearth plan`
with `--radius public` and `--max-memory 1M` (so the model does not fit here) escalate to a
coordinator; the reply streams back with its cost, and the requester parses a real server's SSE.

The coordinator here is tests/escalation/scripted_coordinator.py, a SCRIPTED stand-in for the
coordinator's C1 routes (built in parallel by helper "dispatch"): it relays to a real `hearth
serve`, so every token comes from the real engine and model, and adds the cost as C1 says.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from hearth.engine.events import Done, Start, Token
from hearth.identity import NodeIdentity
from hearth.models.store import ModelStore
from hearth.public_swarm.requester import PublicRequester
from hearth.public_swarm.sse import PublicCost, PublicStreamInvalid
from tests.conftest import HEARTH, REPO, Server, free_port, hearth_env, start_server, stop_server, wait_answering

pytestmark = pytest.mark.slow
MODEL, PROMPT, PRICE = "smollm2-135m", "Name three colours.", 60
TINY = ("--max-memory", "1M")


@pytest.fixture(scope="module")
def coordinator(server: Server, models_home: Path) -> Iterator[str]:
    """The scripted coordinator in front of the real `hearth serve` fixture."""
    digest = ModelStore(models_home / "models").get(MODEL).digest  # type: ignore[union-attr]
    port = free_port()
    log = models_home / f"scripted-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.escalation.scripted_coordinator", str(port),
                                 server.url, digest], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(url + "/v1/models", proc, log)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def hearth(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEARTH, *args], env=hearth_env(home, HEARTH_TUNNEL="sealed", **env), cwd=REPO,
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)


def requester_events(url: str, home: Path) -> tuple[list[object], BaseException | None]:
    async def go() -> tuple[list[object], BaseException | None]:
        seen: list[object] = []
        async with PublicRequester(url, NodeIdentity.load_or_create(home)) as r:
            try:
                async for ev in r.run(MODEL, "chat", messages=[{"role": "user", "content": PROMPT}],
                                      max_tokens=12, temperature=0.0, stop=[]):
                    seen.append(ev)
            except PublicStreamInvalid as exc:
                return seen, exc
        return seen, None

    return asyncio.run(go())


def test_the_requester_reads_a_real_openai_servers_stream(server: Server, tmp_path: Path) -> None:
    """`hearth serve` speaks the same SSE as the coordinator but sends no cost: the tokens arrive
    exactly as the server's own non-streamed reply, then the missing cost is a clear error."""
    whole = httpx.post(server.base + "/chat/completions", timeout=120, json={
        "model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 12,
        "temperature": 0}).json()["choices"][0]["message"]["content"]
    events, error = requester_events(server.url, tmp_path)
    assert isinstance(events[0], Start)
    assert "".join(e.text for e in events if isinstance(e, Token)) == whole
    assert isinstance(error, PublicStreamInvalid) and "usage.cost_credits" in error.message


def test_the_requester_reads_the_coordinators_cost(coordinator: str, tmp_path: Path) -> None:
    events, error = requester_events(coordinator, tmp_path)
    assert error is None
    cost, done = events[-2], events[-1]
    assert isinstance(cost, PublicCost) and isinstance(done, Done)
    assert cost.price == PRICE and cost.micro_credits == (done.prompt_tokens + done.completion_tokens) * PRICE
    assert cost.workers == ("scripted-worker-0001",)


def test_run_escalates_when_the_model_does_not_fit_and_says_what_it_cost(coordinator: str, models_home: Path,
                                                                          tmp_path: Path) -> None:
    args = ("run", MODEL, PROMPT, "-n", "12", "--temperature", "0", "--json")
    local = hearth(models_home, *args, "--radius", "machine")
    assert local.returncode == 0, local.stderr
    public = hearth(models_home, *args, "--radius", "public", "--yes", *TINY, HEARTH_COORDINATOR=coordinator)
    assert public.returncode == 0, public.stderr
    mine, theirs = json.loads(local.stdout), json.loads(public.stdout)
    assert theirs["text"] == mine["text"] and mine["cost_credits"] == 0 and mine["public"] is None
    assert theirs["cost_credits"] == (theirs["prompt_tokens"] + theirs["completion_tokens"]) * PRICE > 0
    assert theirs["public"]["workers"] == ["scripted-worker-0001"]
    assert f"The circle cannot serve {MODEL}" in public.stderr
    assert "served by the public swarm" in public.stderr and "scripted-worker" in public.stderr
    assert "credits per million tokens" in public.stderr


def test_run_without_consent_or_within_the_ceiling_refuses_clearly(coordinator: str, tmp_path: Path) -> None:
    args = ("run", MODEL, PROMPT, "-n", "4", "--radius", "public", *TINY)
    unasked = hearth(tmp_path, *args, HEARTH_COORDINATOR=coordinator)
    assert unasked.returncode == 2 and "--yes" in unasked.stderr and "HEARTH_PUBLIC_OK" in unasked.stderr
    cheap = hearth(tmp_path, *args, "--max-price", "10", HEARTH_COORDINATOR=coordinator, HEARTH_PUBLIC_OK="1")
    assert cheap.returncode == 2 and "ceiling of 10" in cheap.stderr, cheap.stderr
    assert "Traceback" not in unasked.stderr + cheap.stderr


def test_plan_explains_the_public_route_and_its_price(coordinator: str, models_home: Path) -> None:
    r = hearth(models_home, "plan", MODEL, "--radius", "public", "--json", "--wait", "0", *TINY,
               HEARTH_COORDINATOR=coordinator)
    assert r.returncode == 0, r.stderr
    route = json.loads(r.stdout)
    assert route["price"] == PRICE and route["cost_credits"] == 256 * PRICE and route["asked"].startswith("sha256:")
    assert "This machine has" in route["why"] and "--max-memory" in route["why"]


def test_serve_carries_the_cost_in_usage_and_a_header(coordinator: str, models_home: Path) -> None:
    srv = start_server(models_home, "--radius", "public", "--yes", *TINY, HEARTH_COORDINATOR=coordinator,
                       HEARTH_TUNNEL="sealed")
    try:
        client = openai.OpenAI(base_url=srv.base, api_key="unused", max_retries=0, timeout=120)
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}], max_tokens=8, temperature=0)
        reply = raw.parse()
        assert reply.usage is not None
        cost = (reply.usage.model_extra or {})["cost_credits"]
        assert cost == reply.usage.total_tokens * PRICE and raw.headers["x-hearth-cost"] == str(cost)
        chunks = list(client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}], max_tokens=8, temperature=0, stream=True))
        last = chunks[-1]
        assert last.usage is not None and (last.usage.model_extra or {})["cost_credits"] == cost
        ollama = httpx.post(srv.url + "/api/generate", json={"model": MODEL, "prompt": PROMPT, "stream": False,
                                                               "options": {"num_predict": 8}}, timeout=120)
        assert ollama.json()["cost_credits"] > 0 and int(ollama.headers["x-hearth-cost"]) > 0
        assert srv.status()["public"]["requests"] == 3  # type: ignore[index]
    finally:
        stop_server(srv)


def test_serve_without_consent_refuses_public_requests_with_403(coordinator: str, tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--radius", "public", *TINY, HEARTH_COORDINATOR=coordinator, HEARTH_TUNNEL="sealed")
    try:
        r = httpx.post(srv.base + "/chat/completions", timeout=120, json={
            "model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 4})
        assert r.status_code == 403 and r.json()["error"]["code"] == "public_not_consented"
        assert "HEARTH_PUBLIC_OK" in r.json()["error"]["message"]
    finally:
        stop_server(srv)
