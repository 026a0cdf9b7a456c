"""A public worker answers spot-checks (issue 11): a real `Runner` on a real EnginePool (SmolLM2-135M
engine child), between a real WorkerSession and CoordinatorSession joined in memory through the real
codec (protocol_kit.Link). A greedy job's own output, offered back as a check, scores rank 0 at every
token and passes verify; an engine error fails the check; a Cancel stops it and the engine serves on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hearth.orchestrator.engines import EnginePool
from hearth.public_swarm.protocol.actions import Action, JobChecked, JobFailed, JobFinished, JobTokens
from hearth.public_swarm.protocol.messages import CheckRequest, ModelOffer, Offer, Sampling
from hearth.public_swarm.runner import Runner
from hearth.public_swarm.verify import SAMPLER_TOP_K, TOP_K, replay_verdict, text_agrees, verdict
from hearth.settings import load_settings
from tests.conftest import N_CTX
from tests.public_swarm.protocol_kit import DIGEST, Link, offer

pytestmark = pytest.mark.slow

SMOL = ModelOffer(digest=DIGEST, name="smollm2-135m", params=135_000_000, quant="Q4_1", n_ctx=N_CTX, decode_tps=30.0)


@pytest.fixture
def pool(models_home: Path) -> EnginePool:
    """A pool per test (a model load is about a second): each test's loop ends with its threads."""
    return EnginePool(load_settings(home=models_home, models_dir=models_home / "models", n_ctx=N_CTX, n_threads=1))


async def closing(pool: EnginePool, steps: Any) -> None:
    try:
        await steps
    finally:
        await pool.close()


async def run(pool: EnginePool, link: Link, job: Offer, *, cancel_after: float | None = None) -> None:
    runner = Runner(pool.run, [SMOL])
    if link.coord.node_id is None:
        link.handshake()
    link.from_coord(link.coord.offer(job, link.now))

    async def perform(actions: list[Action]) -> None:
        link.from_worker(actions)

    await runner.offered(link.worker, link.worker.jobs[job.job_id].offer, perform)
    if cancel_after is not None:
        await asyncio.sleep(cancel_after)
        link.from_coord(link.coord.cancel(job.job_id, link.now))
        runner.stop(job.job_id)  # what the worker's link does with the StopJob
    for task in list(runner.tasks.values()):
        await asyncio.gather(task, return_exceptions=True)


def of(link: Link, kind: type[Any], job_id: str) -> list[Any]:
    return [e for e in link.coord_events if isinstance(e, kind) and e.job_id == job_id]


def check(job_id: str, ids: list[int], base: Offer) -> Offer:
    return Offer(job_id=job_id, model_digest=DIGEST, request=base.request,
                 check=CheckRequest(token_ids=ids, top_k=TOP_K))


def test_a_check_of_a_greedy_job_scores_rank_0_and_passes(pool: EnginePool) -> None:
    link = Link()
    job = offer("job-1", max_tokens=12)

    async def steps() -> None:
        await run(pool, link, job)
        frames = of(link, JobTokens, "job-1")
        assert of(link, JobFinished, "job-1") and frames
        ids = [i for f in frames for i in f.token_ids]
        text = "".join(f.text for f in frames)
        await run(pool, link, check("check-1", ids, job))
        [answer] = of(link, JobChecked, "check-1")
        assert answer.ranks == (0,) * len(ids) and answer.gaps == (0.0,) * len(ids)
        assert verdict(answer.ranks, answer.gaps, top_k=TOP_K).ok and text_agrees(answer.text, text)
        assert answer.prompt_tokens > 0 and not link.closes()

    asyncio.run(closing(pool, steps()))


def sampled(job_id: str, seed: int, base: Offer) -> Offer:
    sampling = Sampling(temperature=0.9, top_p=0.95, seed=seed)
    return Offer(job_id=job_id, model_digest=DIGEST, request=base.request.model_copy(update={"sampling": sampling}))


def test_a_sampled_job_re_run_with_its_seed_picks_every_token_it_streamed(pool: EnginePool) -> None:
    """The replay check (CheckRequest.replay) through the runner and the engine child: the job's
    own seed picks what it streamed; another seed's picks are not its tokens."""
    link = Link()
    job = sampled("job-s", 4242, offer("job-s", max_tokens=16))

    async def steps() -> None:
        await run(pool, link, job)
        ids = [i for f in of(link, JobTokens, "job-s") for i in f.token_ids]
        assert of(link, JobFinished, "job-s") and len(ids) >= 4
        await run(pool, link, offer("job-g", max_tokens=16))
        greedy_ids = [i for f in of(link, JobTokens, "job-g") for i in f.token_ids]
        assert ids != greedy_ids[:len(ids)]  # the seed really sampled: this is no greedy reply
        for check_id, seed in (("replay-same", 4242), ("replay-other", 7)):
            request = sampled(check_id, seed, job).request
            await run(pool, link, Offer(job_id=check_id, model_digest=DIGEST, request=request,
                                        check=CheckRequest(token_ids=ids, top_k=SAMPLER_TOP_K, replay=True)))
        [same] = of(link, JobChecked, "replay-same")
        [other] = of(link, JobChecked, "replay-other")
        assert same.picks == tuple(ids) and replay_verdict(ids, same.picks, same.ranks).ok
        assert other.picks is not None and other.picks != tuple(ids)
        assert not replay_verdict(ids, other.picks, other.ranks).ok
        assert not link.closes()

    asyncio.run(closing(pool, steps()))


def test_an_engine_error_fails_a_check_and_a_cancel_stops_one(pool: EnginePool) -> None:
    link = Link()

    async def steps() -> None:
        await run(pool, link, check("check-2", [10**7], offer("x")))
        [failed] = of(link, JobFailed, "check-2")
        assert failed.code == "invalid_request" and not of(link, JobChecked, "check-2")
        await run(pool, link, check("check-3", [28] * 1500, offer("x")), cancel_after=1.0)
        assert not of(link, JobChecked, "check-3") and not of(link, JobFailed, "check-3")
        await run(pool, link, check("check-4", [28, 28], offer("x")))  # the engine serves on
        assert len(of(link, JobChecked, "check-4")[0].ranks) == 2 and not link.closes()

    asyncio.run(closing(pool, steps()))
