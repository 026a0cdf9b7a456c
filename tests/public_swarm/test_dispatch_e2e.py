"""End to end with everything real: a `hearth coordinator` process, a `hearth contribute` process
running the embedded model, and the official `openai` client (its HTTP client signing with a hearth
identity). The completion streamed through the public swarm equals a local greedy run, the usage
carries the cost and the `hearth` object, and the books balance: the requester paid exactly what the
worker earned."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types import Completion

from hearth.engine.events import Token
from hearth.identity import NodeIdentity
from hearth.orchestrator.engines import EnginePool
from hearth.pairing.signed import SignedAuth
from hearth.public_swarm.coordinator.job_rules import JobState
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.ledger.rules import WELCOME_GRANT
from hearth.public_swarm.protocol.messages import JobRequest
from hearth.public_swarm.runner_rules import engine_fields
from hearth.settings import load_settings
from tests.conftest import HEARTH, N_CTX, REPO, hearth_env
from tests.public_swarm.coordinator_proc import coordinator
from tests.public_swarm.worker_jobs_kit import contributor
from tests.public_swarm.worker_proc import stop

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"
PROMPT = "The three primary colours are"
MAX_TOKENS = 16


async def local_text(home: Path, models: Path, max_tokens: int = MAX_TOKENS) -> str:
    pool = EnginePool(load_settings(home=home, models_dir=models, n_ctx=N_CTX, n_threads=2))
    try:
        op, fields = engine_fields(JobRequest(prompt=PROMPT, max_tokens=max_tokens))
        return "".join([e.text async for e in pool.run(MODEL, op, **fields) if isinstance(e, Token)])
    finally:
        await pool.close()


def test_openai_client_through_a_real_worker_equals_a_local_run(tmp_path: Path, models_home: Path) -> None:
    models = models_home / "models"
    expected = asyncio.run(local_text(tmp_path / "local", models))
    me = NodeIdentity.load_or_create(tmp_path / "asker")
    with coordinator(tmp_path / "coord") as coord, \
            contributor(tmp_path / "w", coord.url, models, "--model", MODEL, "--radius", "machine"):
        worker = NodeIdentity.load_or_create(tmp_path / "w").node_id
        with httpx.Client(auth=SignedAuth(me), timeout=120) as http:
            client = openai.OpenAI(base_url=coord.url + "/v1", api_key="unused", http_client=http)
            start = time.monotonic()
            while not [m for m in client.models.list().data if m.id == MODEL]:
                assert time.monotonic() - start < 120, (tmp_path / "w" / "contribute.log").read_text()[-2000:]
                time.sleep(0.5)
            print(f"worker linked after {time.monotonic() - start:.1f} s (model load and speed measured)")
            start = time.monotonic()
            plain = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0)
            assert plain.choices[0].text == expected and expected
            usage = plain.usage.model_extra if plain.usage else None
            assert usage and usage["cost_credits"] > 0 and usage["price"] > 0
            hearth = (plain.model_extra or {})["hearth"]
            assert hearth["workers"] == [worker] and hearth["served_by"] == "public" and hearth["receipt"]
            chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=MAX_TOKENS,
                                                    temperature=0, stream=True))
            streamed = "".join(c.choices[0].text for c in chunks if c.choices)
            assert streamed == expected
            last = chunks[-1]
            assert last.choices == [] and last.usage is not None and (last.model_extra or {})["hearth"]["job_id"]
            print(f"two jobs through the swarm in {time.monotonic() - start:.1f} s: {expected!r}")
        time.sleep(1.0)
        with coord.ledger() as ledger:
            spent = 2 * usage["cost_credits"]  # the worker registered (signed), so it was welcomed too
            assert ledger.balance(worker) == WELCOME_GRANT + spent and ledger.audit() == []
            assert ledger.balance(me.node_id) == WELCOME_GRANT - spent
            assert ledger.holds_of(me.node_id) == []


@contextlib.contextmanager
def killable(home: Path, url: str, models: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`hearth contribute` as worker_jobs_kit.contributor starts it, stopped at the end whatever its
    exit (this test kills one with SIGKILL)."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "contribute.log").open("ab") as log:
        proc = subprocess.Popen([*HEARTH, "contribute", "--coordinator", url, "--model", MODEL, "--radius", "machine"],
                                env=hearth_env(home, HEARTH_MODELS_DIR=str(models)), stdout=log,
                                stderr=subprocess.STDOUT, cwd=REPO)
    try:
        yield proc
    finally:
        stop(proc)


def test_a_worker_killed_mid_stream_is_resumed_by_another(tmp_path: Path, models_home: Path) -> None:
    """kill -9 of the worker streaming a job: the coordinator moves the job at once (its link drops)
    to the other worker, which resumes from the streamed token ids; the requester's one stream is
    the local greedy run, billed once, each worker paid for its part."""
    models, long = models_home / "models", 96
    expected = asyncio.run(local_text(tmp_path / "local", models, long))
    me = NodeIdentity.load_or_create(tmp_path / "asker")
    with coordinator(tmp_path / "coord") as coord, \
            killable(tmp_path / "w1", coord.url, models) as p1, killable(tmp_path / "w2", coord.url, models) as p2, \
            httpx.Client(auth=SignedAuth(me), timeout=120) as http:
        procs = {NodeIdentity.load_or_create(tmp_path / n).node_id: p for n, p in (("w1", p1), ("w2", p2))}
        client = openai.OpenAI(base_url=coord.url + "/v1", api_key="unused", http_client=http)
        start = time.monotonic()
        while [m.model_extra["workers"] for m in client.models.list().data if m.id == MODEL] != [2]:
            assert time.monotonic() - start < 180, "workers did not link"
            time.sleep(0.5)
        out: list[object] = []
        reader = threading.Thread(target=lambda: out.extend(client.completions.create(
            model=MODEL, prompt=PROMPT, max_tokens=long, temperature=0, stream=True)))
        reader.start()
        with JobQueue.open(coord.db) as queue:
            while not (jobs := queue.list_for(me.node_id)) or jobs[0].tokens < 8:
                assert time.monotonic() - start < 300 and reader.is_alive(), "the job did not stream"
                time.sleep(0.05)
            victim = jobs[0].worker_id
            assert victim in procs
            procs[victim].kill()
            killed_at, at_tokens = time.monotonic(), jobs[0].tokens
            reader.join(300)  # the rest of the reply on one loaded 2-core machine
            job = queue.get(jobs[0].id)
        assert job is not None and job.state is JobState.DONE
        chunks = [c for c in out if isinstance(c, Completion)]
        assert "".join(c.choices[0].text for c in chunks if c.choices) == expected
        last = chunks[-1].model_extra or {}
        assert chunks[-1].usage is not None
        usage = chunks[-1].usage.model_extra or {}
        survivor = next(n for n in procs if n != victim)
        assert last["hearth"]["workers"] == [victim, survivor] and job.parts[0][0] == victim
        print(f"killed {victim} at {at_tokens} tokens; the job finished on {survivor} "
              f"{time.monotonic() - killed_at:.1f} s later")
        time.sleep(1.0)
        with coord.ledger() as ledger:
            cost = usage["cost_credits"]
            earned = {n: ledger.balance(n) - WELCOME_GRANT for n in procs}
            assert earned[victim] == job.parts[0][1] * usage["price"]
            assert sum(earned.values()) == cost and ledger.balance(me.node_id) == WELCOME_GRANT - cost
            assert ledger.audit() == []
