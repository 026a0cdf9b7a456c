"""The job runner between a real WorkerSession and a real CoordinatorSession (in memory, through the
real codec: tests/public_swarm/protocol_kit.Link), no sockets. The engine is a scripted `Generate`
here, to produce on demand what the real one rarely does (a resumed reply's id-less text, an engine
error, a generation that would run forever); test_worker_jobs.py runs the real engine."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from hearth.engine.events import Done, ReplyEvent, Start, Token
from hearth.errors import EngineFailed, NodeUnreachable
from hearth.public_swarm.protocol.actions import Action, JobDeclined, JobFailed, JobFinished, JobTokens, StopJob
from hearth.public_swarm.runner import MEASURE_TRIES, Runner, measured
from hearth.public_swarm.runner_rules import Admission, parse_hours
from tests.public_swarm.protocol_kit import MODEL, Link, offer


def done(n: int, reason: Any = "stop", tps: float | None = 50.0) -> Done:
    return Done("1", reason, prompt_tokens=7, completion_tokens=n, ttft_ms=5.0, total_ms=25.0,
                decode_tokens_per_s=tps)


class Engine:
    """A scripted engine: yields `events`, then (if `hang`) waits forever; records the requests."""

    def __init__(self, events: list[ReplyEvent], *, fail: Exception | None = None, hang: bool = False) -> None:
        self.events, self.fail, self.hang = events, fail, hang
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.closed = asyncio.Event()

    async def __call__(self, model: str, op: str, **fields: Any) -> AsyncGenerator[ReplyEvent, None]:
        self.requests.append((model, op, fields))
        try:
            for event in self.events:
                yield event
            if self.fail is not None:
                raise self.fail
            if self.hang:
                await asyncio.Event().wait()
        finally:
            self.closed.set()


async def run_one(engine: Engine, link: Link, admission: Admission | None = None,
                  job: str = "job-1") -> Runner:
    runner = Runner(engine, [MODEL], admission)
    link.handshake()
    link.from_coord(link.coord.offer(offer(job), link.now))

    async def perform(actions: list[Action]) -> None:
        link.from_worker(actions)

    await runner.offered(link.worker, link.worker.jobs[job].offer, perform)
    for task in list(runner.tasks.values()):
        if not engine.hang:
            await task
    return runner


def coord(link: Link, kind: type[Any]) -> list[Any]:
    return [e for e in link.coord_events if isinstance(e, kind)]


def test_tokens_stream_and_the_receipt_verifies_text_without_ids_riding_on_the_next_frame() -> None:
    link = Link()
    engine = Engine([Start("1", 7), Token("1", " held", ()), Token("1", " back", (11,)), Token("1", "!", (12, 13)),
                     done(3)])
    asyncio.run(run_one(engine, link))
    assert [(t.text, t.token_ids) for t in coord(link, JobTokens)] == [(" held back", (11,)), ("!", (12, 13))]
    [finished] = coord(link, JobFinished)  # the coordinator's session verified the receipt
    assert (finished.finish_reason, finished.prompt_tokens, finished.completion_tokens) == ("stop", 7, 3)
    assert engine.requests == [(MODEL.name, "chat", {"messages": [{"role": "user", "content": "Why is the sky blue?"}],
                                                     "max_tokens": 16, "temperature": 0.0, "top_p": 1.0, "stop": [],
                                                     "exact": True})]
    assert not link.closes()


def test_an_engine_error_fails_the_job_with_its_code() -> None:
    link = Link()
    asyncio.run(run_one(Engine([Start("1", 7), Token("1", "a", (1,))], fail=EngineFailed("boom")), link))
    [failed] = coord(link, JobFailed)
    assert (failed.code, failed.message) == ("engine_error", "boom")
    assert not coord(link, JobFinished) and not link.closes()


def test_a_cancel_cancels_the_generation() -> None:
    link = Link()
    engine = Engine([Start("1", 7), Token("1", "a", (1,))], hang=True)

    async def main() -> None:
        runner = await run_one(engine, link)
        await asyncio.sleep(0.05)
        assert len(coord(link, JobTokens)) == 1 and "job-1" in runner.tasks
        link.from_coord(link.coord.cancel("job-1", link.now))
        stops = [e for e in link.worker_events if isinstance(e, StopJob)]
        assert stops == [StopJob("job-1")]
        runner.stop("job-1")  # what the worker's Link does with a StopJob
        await asyncio.wait_for(engine.closed.wait(), 2)
        assert not runner.tasks

    asyncio.run(main())
    assert not coord(link, JobFinished) and not coord(link, JobFailed) and not link.closes()


def test_off_hours_declines_without_asking_the_engine() -> None:
    link = Link()
    engine = Engine([done(0)])
    late = Admission(hours=parse_hours("9-17"), clock=lambda: datetime.datetime(2026, 1, 1, 3, 0))
    asyncio.run(run_one(engine, link, late))
    assert coord(link, JobDeclined) == [JobDeclined("job-1", "off_hours")] and not engine.requests


@pytest.mark.parametrize(("tps", "expected"), [(50.0, 50.0), (None, 2 / 0.02)])
def test_decode_speed_is_measured_per_model_and_a_model_that_cannot_run_is_left_out(
        tps: float | None, expected: float) -> None:
    said: list[str] = []
    good = Engine([Start("1", 3), Token("1", "x", (1,)), Token("1", "y", (2,)), done(2, "length", tps)])
    [offer_] = asyncio.run(measured(good, [MODEL], said.append))
    assert offer_.decode_tps == pytest.approx(expected) and offer_.digest == MODEL.digest
    assert good.requests[0][2]["temperature"] == 0.0 and said == [f"{MODEL.name}: {offer_.decode_tps:g} tokens/s "
                                                                  "decode (measured)"]
    assert asyncio.run(measured(Engine([], fail=EngineFailed("no room")), [MODEL], said.append)) == []
    assert "cannot run here" in said[-1] and "no room" in said[-1]


class Flaky(Engine):
    """Fails with `fail` on the first `failures` requests, then plays `events`."""

    def __init__(self, events: list[ReplyEvent], fail: Exception, failures: int) -> None:
        super().__init__(events)
        self.error, self.failures = fail, failures

    async def __call__(self, model: str, op: str, **fields: Any) -> AsyncGenerator[ReplyEvent, None]:
        self.requests.append((model, op, fields))
        if len(self.requests) <= self.failures:
            raise self.error
        for event in self.events:
            yield event


def test_a_household_link_failure_while_measuring_is_tried_again_and_then_gives_up() -> None:
    """Seen across namespaces: a pooled worker's node was slow to answer its first lease, and the
    worker quit with nothing to offer. A link failure is tried again; a lasting one still leaves it out."""
    said: list[str] = []
    events: list[ReplyEvent] = [Start("1", 3), Token("1", "x", (1,)), done(1)]
    slow_node = Flaky(events, NodeUnreachable("node6 did not answer."), failures=MEASURE_TRIES - 1)
    [offer_] = asyncio.run(measured(slow_node, [MODEL], said.append, retry_s=0))
    assert offer_.decode_tps == 50.0 and len(slow_node.requests) == MEASURE_TRIES
    assert said[0] == f"{MODEL.name}: node6 did not answer. Trying again in 0 s."
    gone = Flaky(events, NodeUnreachable("node6 did not answer."), failures=MEASURE_TRIES)
    assert asyncio.run(measured(gone, [MODEL], said.append, retry_s=0)) == []
    assert len(gone.requests) == MEASURE_TRIES and "cannot run here" in said[-1]
    final = Flaky(events, EngineFailed("no room"), failures=1)
    assert asyncio.run(measured(final, [MODEL], said.append, retry_s=0)) == [] and len(final.requests) == 1
