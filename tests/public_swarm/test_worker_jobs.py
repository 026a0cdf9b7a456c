"""`hearth contribute` runs jobs (issue 10): real worker processes with the embedded model, linked to
an in-process coordinator app whose links the test drives (worker_jobs_kit says why: the dispatcher
is not merged yet).

A job's streamed text equals a local greedy run of the same request on hearth's EnginePool, and it
ends with a JobFinished (the coordinator's session verified the signed receipt to make it); a Cancel
stops the generation; a job resumed from the first tokens of another worker's run continues with
exactly the rest of the local run; a worker outside its --hours declines `off_hours`, one past its
--upload-cap declines `upload_cap`. The worker measured its decode speed and registered its hardware.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from hearth.engine.events import Token
from hearth.identity import NodeIdentity
from hearth.models.store import ModelStore
from hearth.orchestrator.engines import EnginePool
from hearth.public_swarm.coordinator.client import CoordinatorClient
from hearth.public_swarm.coordinator.wire import WorkerView
from hearth.public_swarm.coordinator.workers import WorkerStore
from hearth.public_swarm.offers import UNMEASURED_TPS
from hearth.public_swarm.protocol.actions import JobAccepted, JobDeclined, JobFinished, JobTokens
from hearth.public_swarm.protocol.messages import ChatMessage, JobRequest, Resume, decode
from hearth.public_swarm.protocol.messages import Tokens as TokensFrame
from hearth.public_swarm.runner_rules import engine_fields
from hearth.settings import load_settings
from tests.conftest import N_CTX
from tests.public_swarm.worker_jobs_kit import Swarm, contributor

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
COMPLETE = JobRequest(prompt="The three primary colours are", max_tokens=24)
CHAT = JobRequest(messages=[ChatMessage(role="user", content="Name a fruit.")], max_tokens=12)
LONG = JobRequest(prompt="1, 2, 3, 4, 5, 6, 7, 8,", max_tokens=1500)


@dataclass
class Workers:
    swarm: Swarm
    digest: str
    plain: str
    """Takes every job (--max-jobs 1)."""
    off_hours: str
    capped: str
    logs: dict[str, Path]
    reference: dict[str, list[Token]]
    """The local greedy run of COMPLETE and CHAT: its Token events."""


async def local_runs(home: Path, models: Path) -> dict[str, list[Token]]:
    pool = EnginePool(load_settings(home=home, models_dir=models, n_ctx=N_CTX, n_threads=2))
    try:
        out = {}
        for name, request in (("complete", COMPLETE), ("chat", CHAT)):
            op, fields = engine_fields(request)
            out[name] = [e async for e in pool.run(MODEL, op, **fields) if isinstance(e, Token)]
        return out
    finally:
        await pool.close()


def hours_without_now() -> str:
    """A one-hour window that is not the current local hour (nor the next, should it turn meanwhile)."""
    hour = datetime.datetime.now().hour
    return f"{(hour + 3) % 24}-{(hour + 4) % 24 or 24}"


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory, models_home: Path) -> Iterator[Workers]:
    root = tmp_path_factory.mktemp("jobs")
    models = models_home / "models"
    manifest = ModelStore(models).get(MODEL)
    assert manifest is not None
    swarm = Swarm(root / "coord")
    flags = {"plain": (), "off_hours": ("--hours", hours_without_now()), "capped": ("--upload-cap", "20")}
    reference = asyncio.run(local_runs(root / "local", models))
    logs = {name: root / name / "contribute.log" for name in flags}
    with ExitStack() as stack:
        stack.callback(swarm.close)
        nodes = {}
        for name, extra in flags.items():  # one after the other: each measures its speed alone
            home = root / name
            nodes[name] = NodeIdentity.load_or_create(home).node_id
            stack.enter_context(contributor(home, swarm.url, models, "--model", MODEL, "--radius", "machine", *extra))
            swarm.wait_linked(nodes[name], 120, logs[name])
        yield Workers(swarm, manifest.digest, nodes["plain"], nodes["off_hours"], nodes["capped"], logs, reference)


def streamed(events: list[object]) -> tuple[str, list[int]]:
    tokens = [e for e in events if isinstance(e, JobTokens)]
    return "".join(t.text for t in tokens), [i for t in tokens for i in t.token_ids]


def test_a_job_streams_the_local_greedy_text_and_a_verified_receipt(workers: Workers) -> None:
    swarm = workers.swarm
    for job_id, request, name in (("job-complete", COMPLETE, "complete"), ("job-chat", CHAT, "chat")):
        start = time.monotonic()
        swarm.offer(workers.plain, job_id, workers.digest, request)
        events = swarm.wait_end(job_id)
        assert isinstance(events[0], JobAccepted), events[:2]
        end = events[-1]
        assert isinstance(end, JobFinished), end  # made only once the session verified the receipt
        text, ids = streamed(events)
        local = workers.reference[name]
        assert text == "".join(t.text for t in local) and text
        assert ids == [i for t in local for i in t.ids]
        assert end.completion_tokens == len(ids) and end.prompt_tokens > 0
        assert end.receipt.job_id == job_id and end.receipt.model_digest == workers.digest
        assert end.receipt.worker == workers.plain and end.receipt.completion_tokens == len(ids)
        print(f"{job_id}: {len(ids)} tokens in {time.monotonic() - start:.2f} s: {text!r}")


def test_a_resumed_job_continues_where_the_first_worker_stopped(workers: Workers) -> None:
    local = workers.reference["complete"]
    with_ids = [i for i, t in enumerate(local) if t.ids]
    cut = with_ids[len(with_ids) // 3] + 1  # the first third of the tokens "came from a dead worker"
    done_text = "".join(t.text for t in local[:cut])
    done_ids = [i for t in local[:cut] for i in t.ids]
    resumed = COMPLETE.model_copy(update={"resume": Resume(text=done_text, token_ids=done_ids)})
    workers.swarm.offer(workers.plain, "job-resumed", workers.digest, resumed)
    events = workers.swarm.wait_end("job-resumed")
    assert isinstance(events[-1], JobFinished), events[-1]
    text, ids = streamed(events)
    assert done_text + text == "".join(t.text for t in local)
    assert done_ids + ids == [i for t in local for i in t.ids]
    assert events[-1].completion_tokens == len(ids) == sum(len(t.ids) for t in local) - len(done_ids)
    print(f"resumed after {len(done_ids)} tokens: {text!r}")


def test_a_cancel_stops_the_generation(workers: Workers) -> None:
    swarm = workers.swarm
    swarm.offer(workers.plain, "job-long", workers.digest, LONG)
    start = time.monotonic()
    while not any(isinstance(e, JobTokens) for e in swarm.of("job-long")):
        assert time.monotonic() - start < 60, swarm.of("job-long")
        time.sleep(0.02)
    swarm.cancel(workers.plain, "job-long")

    def sent() -> int:
        return sum(len(m.token_ids) for f in swarm.frames
                   if isinstance(m := decode(f), TokensFrame) and m.job_id == "job-long")

    time.sleep(1.0)
    after_cancel = sent()
    time.sleep(2.0)
    assert sent() == after_cancel < LONG.max_tokens // 2, "tokens kept coming after the Cancel"
    assert not any(isinstance(e, JobFinished) for e in swarm.of("job-long"))
    # The slot and the engine are free again: the next job (max-jobs 1) runs and finishes at once.
    swarm.offer(workers.plain, "job-after-cancel", workers.digest, COMPLETE)
    events = swarm.wait_end("job-after-cancel", timeout=30)
    assert isinstance(events[-1], JobFinished)
    assert streamed(events)[0] == "".join(t.text for t in workers.reference["complete"])
    print(f"cancelled after {after_cancel} of at most {LONG.max_tokens} tokens")


def test_off_hours_and_upload_cap_decline(workers: Workers) -> None:
    swarm = workers.swarm
    swarm.offer(workers.off_hours, "job-night", workers.digest, COMPLETE)
    assert swarm.wait_end("job-night", timeout=10) == [JobDeclined("job-night", "off_hours")]
    swarm.offer(workers.capped, "job-under-cap", workers.digest, COMPLETE)  # 20 bytes left: it runs
    assert isinstance(swarm.wait_end("job-under-cap")[-1], JobFinished)
    swarm.offer(workers.capped, "job-over-cap", workers.digest, COMPLETE)
    assert swarm.wait_end("job-over-cap", timeout=10) == [JobDeclined("job-over-cap", "upload_cap")]


def test_the_worker_measured_its_speed_and_registered_its_hardware(workers: Workers) -> None:
    link = workers.swarm.links.get(workers.plain)
    assert link is not None
    tps = link.models[0].decode_tps
    assert tps != UNMEASURED_TPS and tps > 0  # how fast depends on the load of this shared machine
    log = workers.logs["plain"].read_text()
    assert f"{MODEL}: {tps:g} tokens/s decode (measured)" in log and "hardware: " in log
    # Registered once, when the link opened (minutes ago, past the registry's own liveness window).
    registered = {w.node_id: w for w in WorkerStore(workers.swarm.ledger.engine, live_s=3600).live()}
    hw = registered[workers.plain].hardware
    assert hw is not None and hw.cores == os.cpu_count() and hw.memory_bytes > 0
    assert registered[workers.plain].models[0].decode_tps == tps
    # GET /v1/workers shows the linked worker with the hardware it registered, however long ago.
    listed = {w.node_id: w for w in workers.swarm.call(_listed(workers.swarm.url, workers.logs["plain"].parent / "asker"))}
    assert listed[workers.plain].linked and listed[workers.plain].hardware == hw
    print(f"measured {tps} tokens/s; hardware {hw}")


async def _listed(url: str, home: Path) -> list[WorkerView]:
    async with CoordinatorClient(url, NodeIdentity.load_or_create(home)) as client:
        return (await client.workers()).data
