"""Runs requests on engines: one engine child at a time, requests served first come, first served."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from hearth.engine.supervisor import EngineConfig, EngineProcess
from hearth.errors import QueueFull
from hearth.models.pull import resolve
from hearth.models.store import ModelStore
from hearth.settings import Settings


class FairQueue:
    """A FIFO slot for the engine with a bounded number of waiters (429 beyond it)."""

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self._lock = asyncio.Lock()  # asyncio.Lock wakes waiters in arrival order
        self.waiting = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._lock.locked() and self.waiting >= self.max_waiting:
            raise QueueFull(
                f"{self.waiting} requests are already waiting for the engine; retry shortly "
                "(raise HEARTH_MAX_QUEUE to allow more)."
            )
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._lock.release()

    @property
    def busy(self) -> bool:
        return self._lock.locked()


class EnginePool:
    """Keeps one engine loaded (the last model used) and restarts it when it dies."""

    def __init__(self, settings: Settings, store: ModelStore | None = None) -> None:
        self.settings = settings
        self.store = store or ModelStore(settings.models_dir)
        self.queue = FairQueue(settings.max_queue)
        self.engine: EngineProcess | None = None
        self.restarts = 0

    async def _engine_for(self, model: str) -> EngineProcess:
        name, path = await asyncio.to_thread(resolve, self.store, model)
        current = self.engine
        if current is not None and current.alive and current.config.model_name == name:
            return current
        if current is not None:
            if not current.alive:
                self.restarts += 1
            await current.stop()
            self.engine = None
        engine = EngineProcess(EngineConfig(
            model_name=name, model_path=path, n_ctx=self.settings.n_ctx,
            n_threads=self.settings.n_threads, log_path=self.settings.home / "logs" / "engine.log",
        ))
        await engine.start()
        self.engine = engine
        return engine

    async def load(self, model: str) -> EngineProcess:
        async with self.queue.slot():
            return await self._engine_for(model)

    async def run(self, model: str, op: str, **fields: Any) -> AsyncGenerator[dict[str, Any], None]:
        """Wait for the engine, then yield the request's events (see EngineProcess.request)."""
        async with self.queue.slot():
            engine = await self._engine_for(model)
            async for event in engine.request(op, **fields):
                yield event

    def status(self) -> dict[str, Any]:
        e = self.engine
        return {
            "model": e.config.model_name if e else None,
            "engine_pid": e.pid if e and e.alive else None,
            "n_ctx": e.n_ctx if e else None,
            "busy": self.queue.busy,
            "waiting": self.queue.waiting,
            "restarts": self.restarts,
        }

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.stop()
            self.engine = None
