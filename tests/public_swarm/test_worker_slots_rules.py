"""How many jobs a public worker takes at once (issue 13): as many as its engine decodes together
(its slots), unless the owner's --max-jobs says otherwise; and the job runner really runs that many
together. No sockets and no model: the rules are pure, and the runner is driven through a real
WorkerSession and CoordinatorSession in memory (protocol_kit.Link) with a scripted engine that
holds each generation until the test lets it go (test_worker_slots.py runs the real processes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hearth.engine.events import Done, ReplyEvent, Start, Token
from hearth.public_swarm.protocol.actions import Action, JobFinished, JobTokens
from hearth.public_swarm.protocol.messages import MAX_JOBS, ModelOffer
from hearth.public_swarm.runner import Runner
from hearth.public_swarm.runner_rules import engine_slots, jobs_at_once
from hearth.public_swarm.worker import measured_with_slots
from tests.public_swarm.protocol_kit import MODEL, Link, offer

anything = st.one_of(st.none(), st.booleans(), st.integers(-5, 200), st.text(max_size=3), st.floats(allow_nan=False))


@given(anything, st.one_of(st.none(), st.integers(-5, 200)))
def test_engine_slots_is_always_a_count_a_hello_can_carry(slots: object, parallel: int | None) -> None:
    got = engine_slots({"slots": slots}, parallel)
    assert 1 <= got <= MAX_JOBS
    if isinstance(slots, int) and not isinstance(slots, bool) and slots >= 1:
        assert got == min(MAX_JOBS, slots)  # the loaded engine's own count wins over the setting
    elif parallel is not None and parallel >= 1:
        assert got == min(MAX_JOBS, parallel)
    else:
        assert got == 1


def test_engine_slots_from_the_pool_status_then_the_setting_then_one() -> None:
    assert engine_slots({"model": "m", "slots": 4}, 2) == 4
    assert engine_slots({"model": None, "slots": None}, 2) == 2  # no engine loaded: HEARTH_PARALLEL
    assert engine_slots({}, None) == 1  # a pool that does not report slots, no setting
    assert engine_slots({"slots": True}, None) == 1


@given(st.one_of(st.none(), st.integers(1, MAX_JOBS)), st.integers(-3, 100))
def test_max_jobs_is_the_flag_when_given_else_the_slots(asked: int | None, slots: int) -> None:
    jobs, line = jobs_at_once(asked, slots)
    assert 1 <= jobs <= MAX_JOBS and line.startswith(f"taking up to {jobs} job")
    assert jobs == (asked if asked is not None else max(1, min(MAX_JOBS, slots)))
    assert ("wait here for a slot" in line) == (asked is not None and asked > max(1, slots))


def test_the_lines_say_where_the_number_came_from() -> None:
    assert jobs_at_once(None, 2) == (2, "taking up to 2 job(s) at once: the engine decodes 2 at a time "
                                        "(its slots: HEARTH_PARALLEL, or chosen from memory); --max-jobs takes fewer")
    assert jobs_at_once(1, 4)[1] == "taking up to 1 job(s) at once (--max-jobs); the engine decodes 4 at a time"
    assert "jobs past 2 wait here for a slot" in jobs_at_once(3, 2)[1]


class Gate:
    """A scripted engine whose generations run together: each yields Start, then waits until the
    test opens the gate, then one token and Done. Records how many generations were open at once."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.open = 0
        self.most = 0
        self.started = 0

    async def __call__(self, model: str, op: str, **fields: Any) -> AsyncGenerator[ReplyEvent, None]:
        self.open += 1
        self.started += 1
        self.most = max(self.most, self.open)
        try:
            yield Start("1", 3)
            await self.gate.wait()
            yield Token("1", " x", (7,))
            yield Done("1", "length", prompt_tokens=3, completion_tokens=1, ttft_ms=1.0, total_ms=2.0,
                       decode_tokens_per_s=50.0)
        finally:
            self.open -= 1


def test_the_runner_runs_every_accepted_job_at_once() -> None:
    """Two offers to a worker with max_jobs 2: both generations are under way before either ends,
    and both end with a receipt the coordinator's session verified."""
    link = Link(max_jobs=2)
    engine = Gate()

    async def main() -> None:
        runner = Runner(engine, [MODEL])
        link.handshake()

        async def perform(actions: list[Action]) -> None:
            link.from_worker(actions)

        for job in ("job-a", "job-b"):
            link.from_coord(link.coord.offer(offer(job), link.now))
            await runner.offered(link.worker, link.worker.jobs[job].offer, perform)
        for _ in range(100):
            if engine.open == 2:
                break
            await asyncio.sleep(0.01)
        assert engine.open == 2 and not [e for e in link.coord_events if isinstance(e, JobTokens)]
        engine.gate.set()
        await asyncio.gather(*runner.tasks.values())

    asyncio.run(main())
    assert engine.most == 2
    assert sorted(e.job_id for e in link.coord_events if isinstance(e, JobFinished)) == ["job-a", "job-b"]
    assert not link.closes()


def test_the_fewest_slots_of_the_offered_models_bound_the_jobs() -> None:
    """Each model's measurement loads its engine; the slots read right after it are that engine's."""
    small = MODEL
    large = MODEL.model_copy(update={"digest": "cd" * 32, "name": "bigger"})
    per_model = iter([4, 2])
    engine = Gate()
    engine.gate.set()
    said: list[str] = []
    offers, least = asyncio.run(measured_with_slots(engine, [small, large], said.append, lambda: next(per_model)))
    assert [o.name for o in offers] == [small.name, "bigger"] and least == 2
    none: list[ModelOffer] = []
    assert asyncio.run(measured_with_slots(engine, none, said.append, lambda: 9)) == ([], 1)
