"""End to end with everything real: a `hearth coordinator` process, a `hearth contribute` process
running the embedded model, and the official `openai` client (its HTTP client signing with a hearth
identity). The completion streamed through the public swarm equals a local greedy run, the usage
carries the cost and the `hearth` object, and the books balance: the requester paid exactly what the
worker earned."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import openai
import pytest

from hearth.engine.events import Token
from hearth.identity import NodeIdentity
from hearth.orchestrator.engines import EnginePool
from hearth.pairing.signed import SignedAuth
from hearth.public_swarm.ledger.rules import WELCOME_GRANT
from hearth.public_swarm.protocol.messages import JobRequest
from hearth.public_swarm.runner_rules import engine_fields
from hearth.settings import load_settings
from tests.conftest import N_CTX
from tests.public_swarm.coordinator_proc import coordinator
from tests.public_swarm.worker_jobs_kit import contributor

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"
PROMPT = "The three primary colours are"
MAX_TOKENS = 16


async def local_text(home: Path, models: Path) -> str:
    pool = EnginePool(load_settings(home=home, models_dir=models, n_ctx=N_CTX, n_threads=2))
    try:
        op, fields = engine_fields(JobRequest(prompt=PROMPT, max_tokens=MAX_TOKENS))
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
