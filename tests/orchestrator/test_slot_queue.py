"""The pool's slots in asyncio, without an engine: the slot queue's order, bound and cancellation,
and the pool's streams on stand-in engines (recording fakes: a pooled engine that dies under
several streams needs nodes in network namespaces, see tests/rpc_pool/test_pool_lan.py; the same
pool with the real model is tests/server/test_parallel_http.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hearth.engine.events import Done, Start, Token
from hearth.errors import EngineCrashed, QueueFull
from hearth.node_api.feed import Feed
from hearth.orchestrator.engines import EnginePool
from hearth.orchestrator.slots import SlotQueue
from hearth.settings import Settings


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), 10))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class Jobs:
    """Requests holding slots until released, recording the order they started in."""

    def __init__(self, queue: SlotQueue) -> None:
        self.queue, self.started, self.gates, self.tasks = queue, [], {}, []  # type: ignore[var-annotated]

    def add(self, name: str, client: str | None = None, model: str | None = "m") -> None:
        gate = self.gates[name] = asyncio.Event()

        async def job() -> None:
            slot = self.queue.whole() if model is None else self.queue.slot(model, client)
            async with slot:
                self.started.append(name)
                await gate.wait()

        self.tasks.append(asyncio.ensure_future(job()))

    async def end(self, name: str) -> None:
        self.gates[name].set()
        await settle()


def test_one_slot_serves_in_arrival_order_and_bounds_the_waiters() -> None:
    async def scenario() -> None:
        q = SlotQueue(max_waiting=3)
        jobs = Jobs(q)
        for name in "0123":
            jobs.add(name)
            await settle()
        assert q.waiting == 3 and q.active == 1 and q.busy
        with pytest.raises(QueueFull, match="HEARTH_MAX_QUEUE") as exc:
            async with q.slot("m"):
                pass
        assert exc.value.retry_after == 2 and exc.value.http_status == 429
        for name in "0123":
            await jobs.end(name)
        assert jobs.started == list("0123") and not q.busy and q.waiting == 0

    run(scenario)


def test_a_freed_slot_goes_to_the_client_holding_fewest() -> None:
    async def scenario() -> None:
        q = SlotQueue(max_waiting=8, capacity=lambda model: 2)
        jobs = Jobs(q)
        for name, client in [("a1", "a"), ("a2", "a"), ("a3", "a"), ("a4", "a"), ("b1", "b"), ("c1", None)]:
            jobs.add(name, client)
            await settle()
        assert jobs.started == ["a1", "a2"] and q.waiting == 4
        await jobs.end("a1")  # a holds 1, b and the anonymous caller none: b came first
        assert jobs.started[-1] == "b1"
        await jobs.end("a2")  # a holds none now, as the anonymous caller: a3 came first
        assert jobs.started[-1] == "a3"
        await jobs.end("b1")  # a holds 1 again, the anonymous caller none
        assert jobs.started[-1] == "c1"
        for name in ("c1", "a3", "a4"):
            await jobs.end(name)
        assert sorted(jobs.started) == sorted(jobs.gates) and not q.busy

    run(scenario)


def test_another_model_waits_for_the_running_ones_and_is_not_overtaken() -> None:
    async def scenario() -> None:
        q = SlotQueue(max_waiting=8, capacity=lambda model: 4)
        jobs = Jobs(q)
        jobs.add("m1", "a")
        await settle()
        jobs.add("n1", "b", model="n")
        jobs.add("m2", "c")
        await settle()
        assert jobs.started == ["m1"] and q.waiting == 2  # a slot is free, yet m2 waits behind n1
        await jobs.end("m1")
        assert jobs.started == ["m1", "n1"] and q.model == "n"
        await jobs.end("n1")
        assert jobs.started == ["m1", "n1", "m2"]
        await jobs.end("m2")

    run(scenario)


def test_the_whole_engine_waits_for_every_stream_and_then_runs_alone() -> None:
    async def scenario() -> None:
        q = SlotQueue(max_waiting=8, capacity=lambda model: 4)
        jobs = Jobs(q)
        jobs.add("s1", "a")
        jobs.add("s2", "b")
        await settle()
        jobs.add("load", model=None)
        jobs.add("s3", "c")
        await settle()
        assert jobs.started == ["s1", "s2"]
        await jobs.end("s1")
        assert jobs.started == ["s1", "s2"]
        await jobs.end("s2")
        assert jobs.started[-1] == "load" and q.busy and q.active == 0
        await jobs.end("load")
        assert jobs.started[-1] == "s3"
        await jobs.end("s3")

    run(scenario)


def test_a_waiter_that_leaves_gives_up_its_place_and_holds_nothing() -> None:
    async def scenario() -> None:
        q = SlotQueue(max_waiting=1)
        jobs = Jobs(q)
        jobs.add("first")
        jobs.add("gone")
        await settle()
        assert q.waiting == 1
        jobs.tasks[1].cancel()
        await settle()
        assert q.waiting == 0 and q.active == 1
        jobs.add("next")  # the place is free again: no 429
        await settle()
        await jobs.end("first")
        assert jobs.started == ["first", "next"] and q.active == 1
        await jobs.end("next")
        assert not q.busy

    run(scenario)


def test_more_slots_let_the_waiters_in_at_once() -> None:
    async def scenario() -> None:
        slots = {"m": 1}
        q = SlotQueue(max_waiting=8, capacity=lambda model: slots[model])
        jobs = Jobs(q)
        for name in "abc":
            jobs.add(name, name)
        await settle()
        assert jobs.started == ["a"]  # one slot while the engine loads
        slots["m"] = 3
        q.wake()  # the engine is up with three
        await settle()
        assert jobs.started == ["a", "b", "c"] and q.active == 3
        for name in "abc":
            await jobs.end(name)

    run(scenario)


# -- the pool's streams on stand-in engines ----------------------------------------------------
class Dying:
    """A pooled engine whose streams each get one token, then all lose it at once."""

    parallel = 4

    def __init__(self, streams: int) -> None:
        self.streams, self.first = streams, 0
        self.dead = asyncio.Event()

    async def request(self, op: str, **fields: Any) -> AsyncGenerator[object, None]:
        n = fields["n"]
        yield Start(f"r{n}", 3)
        yield Token(f"r{n}", f"{n}a", (n * 10,))
        self.first += 1
        if self.first == self.streams:
            self.dead.set()
        await self.dead.wait()
        raise EngineCrashed("the RPC server went away")


class Resuming:
    """The new engine: each stream goes on from its own ids."""

    parallel = 4

    def __init__(self) -> None:
        self.resumed: dict[int, list[int]] = {}

    async def request(self, op: str, **fields: Any) -> AsyncGenerator[object, None]:
        n = fields["n"]
        self.resumed[n] = list(fields["resume"])
        yield Start(f"s{n}", 3)
        await asyncio.sleep(0.01 * n)
        yield Token(f"s{n}", f"{n}b", (n * 10 + 1,))
        yield Done(f"s{n}", "stop", 3, 2, 1.0, 1.0, 1.0)


def test_streams_on_a_lost_engine_recover_once_and_each_resumes_its_own(tmp_path: Path) -> None:
    feed = Feed()
    pool = EnginePool(Settings(home=tmp_path), feed=feed)
    old, new = Dying(streams=3), Resuming()
    recovered: list[int] = []

    async def engine_for(model: str, on_progress: object = None) -> object:
        return new if recovered else old

    async def recover() -> None:
        await asyncio.sleep(0.05)  # the others see the loss while this one recovers
        recovered.append(1)
        pool.excluded |= {"node-b"}

    pool._engine_for = engine_for  # type: ignore[method-assign,assignment]
    pool._recover = recover  # type: ignore[method-assign]
    pool.placement = object()  # type: ignore[assignment]  # pooled: a crash fails over
    pool.queue.capacity = lambda model: 4

    async def stream(n: int, client: str) -> str:
        return "".join([e.text async for e in pool.run("m", "chat", client=client, n=n) if isinstance(e, Token)])

    async def scenario() -> list[str]:
        return list(await asyncio.gather(*(stream(n, f"c{n}") for n in (1, 2, 3))))

    assert run(scenario) == ["1a1b", "2a2b", "3a3b"]
    assert recovered == [1] and pool.recoveries == 1
    assert new.resumed == {1: [10], 2: [20], 3: [30]}
    kinds = [e.kind for e in feed.since(0)]
    assert kinds.count("failover") == 1 and kinds.count("request_done") == 3
    (failover,) = [e for e in feed.since(0) if e.kind == "failover"]
    assert failover.data["lost"] == "node-b" and failover.data["recoveries"] == 1


def test_a_machine_engine_lost_under_several_streams_fails_each_of_them(tmp_path: Path) -> None:
    pool = EnginePool(Settings(home=tmp_path), feed=Feed())
    old = Dying(streams=2)

    async def engine_for(model: str, on_progress: object = None) -> object:
        return old

    pool._engine_for = engine_for  # type: ignore[method-assign,assignment]
    pool.queue.capacity = lambda model: 2

    async def stream(n: int) -> str:
        try:
            return "".join([e.text async for e in pool.run("m", "chat", n=n) if isinstance(e, Token)])
        except EngineCrashed as exc:
            return exc.code

    async def scenario() -> list[str]:
        return list(await asyncio.gather(stream(1), stream(2)))

    assert run(scenario) == ["engine_crashed", "engine_crashed"] and pool.recoveries == 0
    assert [s.state for s in pool.stats.recent] == ["failed", "failed"] and not pool.queue.busy


def test_the_pools_own_upkeep_waits_even_when_the_queue_is_full() -> None:
    async def scenario() -> None:
        q = SlotQueue(max_waiting=0)
        jobs = Jobs(q)
        jobs.add("stream")
        await settle()
        with pytest.raises(QueueFull):
            async with q.whole():
                pass

        async def upkeep() -> str:
            async with q.whole(bounded=False):
                return "unloaded"

        task = asyncio.ensure_future(upkeep())
        await settle()
        assert q.waiting == 1 and not task.done()
        await jobs.end("stream")
        assert await task == "unloaded" and not q.busy

    run(scenario)
