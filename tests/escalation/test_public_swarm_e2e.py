"""The public radius end to end with every part real: a `hearth coordinator` process, a
`hearth contribute` worker process running the embedded model on its engine, and a requester
whose own machine cannot hold the model (`--max-memory 1M`): `hearth run --radius public`
escalates and its greedy text equals a local run; the official openai client against
`hearth serve --radius public` sees the cost in usage."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pexpect
import pytest

from hearth.escalation.consent import remembered
from hearth.identity import NodeIdentity
from hearth.net import b64
from hearth.node_api.status import SERVE_EVENTS_PATH, STATUS_PATH, ServeStatus
from tests.conftest import HEARTH, REPO, Server, free_port, hearth_env, start_server, stop_server
from tests.public_swarm.coordinator_proc import Coordinator
from tests.public_swarm.coordinator_proc import coordinator as coordinator_process
from tests.public_swarm.worker_proc import contributor
from tests.server.test_status_serve import read_until

pytestmark = pytest.mark.slow
MODEL, PROMPT = "smollm2-135m", "Name three colours."
TINY = ("--max-memory", "1M")


@pytest.fixture(scope="module")
def swarm_parts(models_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Coordinator, int]]:
    """A real coordinator and one real worker offering the embedded model (its page on a free port):
    the coordinator and that port."""
    home = tmp_path_factory.mktemp("coordinator")
    page = free_port()
    with coordinator_process(home) as c, contributor(models_home, c.url, "--model", MODEL, "--radius", "machine",
                                                     "--page-port", str(page)):
        deadline = time.monotonic() + 120
        while True:
            served = httpx.get(c.url + "/v1/models", timeout=5).json().get("data", [])
            if any(m["id"] == MODEL and m["workers"] >= 1 for m in served):
                break
            assert time.monotonic() < deadline, (models_home / "contribute.log").read_text()[-2000:]
            time.sleep(0.5)
        yield c, page


@pytest.fixture(scope="module")
def swarm(swarm_parts: tuple[Coordinator, int]) -> str:
    """The coordinator's URL."""
    return swarm_parts[0].url


def hearth(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEARTH, *args], env=hearth_env(home, HEARTH_TUNNEL="sealed", **env), cwd=REPO,
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)


def test_run_radius_public_equals_a_local_run_and_prints_the_cost(swarm: str, models_home: Path,
                                                                   tmp_path: Path) -> None:
    args = ("run", MODEL, PROMPT, "-n", "12", "--temperature", "0", "--json")
    local = hearth(models_home, *args, "--radius", "machine")
    assert local.returncode == 0, local.stderr
    public = hearth(tmp_path, *args, "--radius", "public", "--yes", *TINY, HEARTH_COORDINATOR=swarm)
    assert public.returncode == 0, public.stderr
    mine, theirs = json.loads(local.stdout), json.loads(public.stdout)
    assert theirs["text"] == mine["text"] and theirs["completion_tokens"] == mine["completion_tokens"]
    assert theirs["cost_credits"] > 0 and theirs["public"]["price"] > 0 and len(theirs["public"]["workers"]) == 1
    assert "served by the public swarm" in public.stderr and "credits per million tokens" in public.stderr


def price_of(swarm: str) -> int:
    served = httpx.get(swarm + "/v1/models", timeout=5).json()["data"]
    return int(next(m["price"] for m in served if m["id"] == MODEL))


def test_run_without_consent_or_above_the_ceiling_refuses_clearly(swarm: str, tmp_path: Path) -> None:
    args = ("run", MODEL, PROMPT, "-n", "4", "--radius", "public", *TINY)
    unasked = hearth(tmp_path, *args, HEARTH_COORDINATOR=swarm)
    assert unasked.returncode == 2 and "--yes" in unasked.stderr and "HEARTH_PUBLIC_OK" in unasked.stderr
    cheap = hearth(tmp_path, *args, "--max-price", "1", HEARTH_COORDINATOR=swarm, HEARTH_PUBLIC_OK="1")
    assert cheap.returncode == 2 and "ceiling of 1" in cheap.stderr and f"{price_of(swarm):,}" in cheap.stderr
    assert "Traceback" not in unasked.stderr + cheap.stderr


def test_plan_explains_the_public_route_and_its_price(swarm: str, models_home: Path) -> None:
    r = hearth(models_home, "plan", MODEL, "--radius", "public", "--json", "--wait", "0", *TINY,
               HEARTH_COORDINATOR=swarm)
    assert r.returncode == 0, r.stderr
    route = json.loads(r.stdout)
    price = price_of(swarm)
    assert route["price"] == price and route["cost_credits"] == 256 * price and route["workers"] == 1
    assert route["asked"].startswith("sha256:") and "This machine has" in route["why"]
    text = hearth(models_home, "plan", MODEL, "--radius", "public", "--wait", "0", *TINY, HEARTH_COORDINATOR=swarm)
    assert "The circle cannot serve it" in text.stdout and "Public route" in text.stdout


def test_serve_without_consent_refuses_public_requests_with_403(swarm: str, tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--radius", "public", *TINY, HEARTH_COORDINATOR=swarm, HEARTH_TUNNEL="sealed")
    try:
        r = httpx.post(srv.base + "/chat/completions", timeout=120, json={
            "model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 4})
        assert r.status_code == 403 and r.json()["error"]["code"] == "public_not_consented"
        assert "HEARTH_PUBLIC_OK" in r.json()["error"]["message"]
    finally:
        stop_server(srv)


def test_openai_client_against_serve_radius_public_sees_the_cost(swarm: str, tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--radius", "public", "--yes", *TINY, HEARTH_COORDINATOR=swarm,
                       HEARTH_TUNNEL="sealed")
    try:
        client = openai.OpenAI(base_url=srv.base, api_key="unused", max_retries=0, timeout=120)
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}], max_tokens=8, temperature=0)
        reply = raw.parse()
        assert reply.usage is not None and reply.choices[0].message.content
        cost = (reply.usage.model_extra or {})["cost_credits"]
        assert cost > 0 and raw.headers["x-hearth-cost"] == str(cost)
        last = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}],
                                                   max_tokens=8, temperature=0, stream=True))[-1]
        assert last.usage is not None and (last.usage.model_extra or {})["cost_credits"] == cost
        ollama = httpx.post(srv.url + "/api/generate", json={"model": MODEL, "prompt": PROMPT, "stream": False,
                                                               "options": {"num_predict": 8}}, timeout=120)
        assert ollama.json()["cost_credits"] > 0 and int(ollama.headers["x-hearth-cost"]) > 0
        assert srv.status()["public"]["requests"] == 3  # type: ignore[index]
    finally:
        stop_server(srv)


def test_a_person_is_asked_once_in_the_terminal_and_the_yes_is_remembered(swarm: str, tmp_path: Path) -> None:
    """The interactive chat in a real pseudo-terminal: the question comes before the first prompt."""
    child = pexpect.spawn(sys.executable, ["-m", "hearth.cli.main", "run", MODEL, "--radius", "public", *TINY,
                                           "--temperature", "0", "-n", "6"],
                          env=hearth_env(tmp_path, HEARTH_COORDINATOR=swarm, HEARTH_TUNNEL="sealed", COLUMNS="200"),
                          encoding="utf-8", timeout=90)
    try:
        child.expect(r"stranger's machine.*\[y/N\] ")
        child.sendline("y")
        child.expect(">>> ")
        child.sendline(PROMPT)
        child.expect("served by the public swarm")
        child.expect(">>> ")
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0 and remembered(tmp_path) == {swarm}
    again = hearth(tmp_path, "run", MODEL, PROMPT, "-n", "4", "--radius", "public", *TINY, HEARTH_COORDINATOR=swarm)
    assert again.returncode == 0 and "served by the public swarm" in again.stderr, again.stderr


def test_the_status_shows_the_escalation_its_cost_and_what_this_machine_served(
        swarm_parts: tuple[Coordinator, int], tmp_path: Path) -> None:
    """issue 12: `hearth serve --radius public`'s status reads its own account on the coordinator (the
    ledger's balance), an escalated request is recorded as escalated (never failed) and the balance
    drops by its cost; the worker of this machine (the swarm's, here on loopback) shows as contributing."""
    c, page = swarm_parts
    srv = start_server(tmp_path, "--radius", "public", "--yes", *TINY, HEARTH_COORDINATOR=c.url,
                       HEARTH_TUNNEL="sealed", HEARTH_WORKER_PAGE_PORT=str(page))
    account = NodeIdentity.load_or_create(tmp_path).node_id
    try:
        before = status_until(srv, lambda s: s.public.connected and s.public.contributing)
        with c.ledger() as ledger:
            assert before.public.balance == ledger.balance(account) > 0
        assert before.public.swarm_workers == 1 and before.public.held == 0
        r = httpx.post(srv.base + "/chat/completions", timeout=120, json={
            "model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 6, "temperature": 0})
        assert r.status_code == 200, r.text
        cost = r.json()["usage"]["cost_credits"]
        after = status_until(srv, lambda s: s.public.balance != before.public.balance
                             and s.public.jobs_served > before.public.jobs_served)
        with c.ledger() as ledger:
            assert after.public.balance == ledger.balance(account) == before.public.balance - cost
        assert after.public.spent == cost and [j.cost_credits for j in after.public.recent] == [cost]
        assert after.public.jobs_served == before.public.jobs_served + 1
        last = after.requests[-1]
        assert (last.state, last.served_by, last.cost_credits) == ("done", "public", cost)
        raw, events = asyncio.run(read_until(srv.url + SERVE_EVENTS_PATH + "?since=0", "request_done", {}, 30))
        kinds = [e.kind for e in events]
        assert "request_failed" not in kinds, kinds
        assert kinds.index("request_started") < kinds.index("request_escalated") < kinds.index("job_settled")
        escalated = next(e for e in events if e.kind == "request_escalated")
        assert escalated.data["reason"] == "does_not_fit"  # --max-memory 1M: the circle cannot hold it
        done = next(e for e in events if e.kind == "request_done")
        assert done.data["served_by"] == "public"
        seed = (tmp_path / "identity" / "node.key").read_bytes()
        for secret in (b64.encode(seed), seed.hex()):  # the account's key
            assert secret not in raw and secret not in after.model_dump_json()
    finally:
        stop_server(srv)


def status_until(srv: Server, check: Callable[[ServeStatus], bool], seconds: float = 45) -> ServeStatus:
    """Read the status twice a second (as a dashboard does) until `check`; every read is quick."""
    deadline = time.monotonic() + seconds
    while True:
        t0 = time.monotonic()
        status = ServeStatus.model_validate(httpx.get(srv.url + STATUS_PATH, timeout=10).json())
        assert time.monotonic() - t0 < 2.0
        if check(status):
            return status
        assert time.monotonic() < deadline, status.public
        time.sleep(0.5)
