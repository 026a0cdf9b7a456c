"""Ollama's load and unload idioms and `keep_alive`, over hearth's engines.

hearth keeps a model loaded until another replaces it (Ollama's keep_alive -1). A request's
keep_alive 0 unloads the model (after the requests in flight); a positive keep_alive unloads it
that long after the request that set it, unless a later request moved the deadline. A generate
with an empty prompt, or a chat with no messages, loads the model and generates nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from datetime import UTC, datetime, timedelta

from hearth.errors import HearthError
from hearth.escalation.pool import Engines, Escalating
from hearth.models.catalogue import lookup
from hearth.orchestrator.engines import EnginePool
from hearth.server.steering import Steerable

log = logging.getLogger("hearth.http")
FOREVER = timedelta(days=365 * 100)
"""How far off /api/ps puts the expiry of a model kept loaded for good."""


def stored_name(model: str) -> str:
    """The store's name for a model as an Ollama client names it (alias, ':latest' suffix)."""
    entry = lookup(model)
    return entry.alias if entry else model.strip().removesuffix(":latest")


def engine_pool(pool: Engines) -> EnginePool:
    return pool.pool if isinstance(pool, Escalating) else pool


class Keeper:
    """When each loaded model is to be unloaded (monotonic deadlines), and the task that does it."""

    def __init__(self, pool: Engines) -> None:
        self.pool = pool
        self.deadlines: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def loaded(self) -> str | None:
        """The stored name of the model the circle's engine holds, if any."""
        engine = self.pool.engine
        return engine.config.model_name if engine is not None and engine.alive else None

    def expires_at(self, name: str) -> datetime:
        now = datetime.now(UTC)
        deadline = self.deadlines.get(name)
        return now + FOREVER if deadline is None else now + timedelta(seconds=max(0.0, deadline - time.monotonic()))

    async def unload(self, model: str) -> bool:
        """Unload `model` if it is loaded, after the requests in flight; whether it was."""
        name = stored_name(model)
        self.deadlines.pop(name, None)
        pool = engine_pool(self.pool)
        async with pool.queue.whole(bounded=False):
            if self.loaded() != name:
                return False
            await pool._stop_engine()
            log.info("unloaded %s (keep_alive)", name)
            return True

    async def keep(self, model: str, seconds: float | None) -> None:
        """Apply a request's keep_alive (seconds; inf: for good; None: leave as is)."""
        if seconds is None:
            return
        name = stored_name(model)
        if seconds == 0:
            await self.unload(model)
        elif math.isinf(seconds):
            self.deadlines.pop(name, None)
            self._changed.set()
        else:
            self.deadlines[name] = time.monotonic() + seconds
            self._changed.set()
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._expire(), name="keep_alive")
                if isinstance(self.pool, Steerable):  # cancelled when the server stops
                    self.pool.background.add(self._task)
                    self._task.add_done_callback(self.pool.background.discard)

    async def _expire(self) -> None:
        while self.deadlines:
            name, due = min(self.deadlines.items(), key=lambda kv: kv[1])
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.0, due - time.monotonic()))
                continue  # a deadline was set or cleared meanwhile: look again
            if self.deadlines.get(name) == due:
                try:
                    await self.unload(name)
                except HearthError as exc:  # the engine failed to stop: it is gone either way
                    log.warning("unloading %s after its keep_alive failed: %s", name, exc.message)
