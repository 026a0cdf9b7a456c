"""keep_alive deadlines over a stand-in engine pool: a deadline moved earlier is honoured, a later
request's -1 keeps the model, 0 unloads at once, and only the loaded model is unloaded."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from hearth.server.ollama_keep import Keeper, stored_name


@dataclass
class FakeEngine:
    name: str
    alive: bool = True

    @property
    def config(self) -> Any:
        return type("Config", (), {"model_name": self.name})()


@dataclass
class FakeQueue:
    @contextlib.asynccontextmanager
    async def whole(self, bounded: bool = True) -> AsyncIterator[None]:
        yield


@dataclass
class FakePool:
    engine: FakeEngine | None = None
    queue: FakeQueue = field(default_factory=FakeQueue)
    stopped: list[float] = field(default_factory=list)

    async def _stop_engine(self) -> None:
        self.stopped.append(time.monotonic())
        self.engine = None


def keeper(pool: FakePool) -> Keeper:
    return Keeper(pool)  # type: ignore[arg-type]


def test_a_deadline_moved_earlier_is_honoured() -> None:
    async def main() -> float:
        pool = FakePool(FakeEngine("smollm2-135m"))
        k = keeper(pool)
        t0 = time.monotonic()
        await k.keep("smollm2", 300)
        await asyncio.sleep(0.05)
        await k.keep("smollm2-135m:latest", 0.2)
        await asyncio.sleep(0.6)
        assert len(pool.stopped) == 1
        return pool.stopped[0] - t0

    assert 0.2 <= asyncio.run(main()) < 0.5


def test_forever_cancels_a_deadline_and_zero_unloads_now() -> None:
    async def main() -> None:
        pool = FakePool(FakeEngine("smollm2-135m"))
        k = keeper(pool)
        await k.keep("smollm2", 0.1)
        await k.keep("smollm2", float("inf"))
        await asyncio.sleep(0.3)
        assert pool.stopped == [] and k.expires_at("smollm2-135m").year > 2100
        await k.keep("other-model", 0)  # not the loaded one: nothing happens
        assert pool.stopped == []
        await k.keep("smollm2", None)
        assert pool.stopped == []
        await k.keep("smollm2", 0)
        assert len(pool.stopped) == 1 and k.loaded() is None

    asyncio.run(main())


def test_stored_names() -> None:
    assert stored_name("smollm2") == "smollm2-135m"
    assert stored_name("my-model:latest") == "my-model"
