"""Lets the synchronous CLI stream from the async engine pool running on a background loop.

The terminal keeps the main thread, so Ctrl-C arrives there as KeyboardInterrupt and is turned
into a cancellation of the current request, not an exit.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Generator
from typing import Any

from hearth.escalation.pool import Engines, Event

_END = object()


class EngineBridge:
    def __init__(self, pool: Engines) -> None:
        self.pool = pool
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hearth-loop", daemon=True)
        self._thread.start()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def stream(self, model: str, op: str, **fields: Any) -> Generator[Event, None, None]:
        """Yield the request's events; closing the iterator cancels the request."""
        out: queue.Queue[Any] = queue.Queue()

        async def pump() -> None:
            try:
                async for ev in self.pool.run(model, op, **fields):
                    out.put(ev)
            except Exception as exc:  # hand the error to the caller's thread
                out.put(exc)

        async def spawn() -> asyncio.Task[None]:
            task = asyncio.ensure_future(pump())
            # A done callback runs even when the task is cancelled before it starts.
            task.add_done_callback(lambda _: out.put(_END))
            return task

        task: asyncio.Task[None] = self.call(spawn())
        ended = False
        try:
            while (item := out.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                yield item
            ended = True
        finally:
            if not ended:
                self._loop.call_soon_threadsafe(task.cancel)
                # Wait until the engine has been told to stop, so the next request starts clean.
                while out.get() is not _END:
                    pass

    def close(self) -> None:
        try:
            self.call(self.pool.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
