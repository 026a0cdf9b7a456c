"""The engine's slots: up to `parallel` requests of the loaded model run at once, the rest wait in
a bounded queue (429 beyond it) and get a slot by the fair rule of slots_rules.next_turn."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable

from hearth.errors import QueueFull
from hearth.orchestrator.slots_rules import Client, Running, Waiter, next_turn


class SlotQueue:
    """Slots for the engine's requests, and the whole engine for a load or an unload.

    `capacity(model)` says how many requests of `model` may run at once (the loaded engine's
    parallel, 1 while another model or none is loaded); call `wake()` when it changes.
    """

    def __init__(self, max_waiting: int, capacity: Callable[[str], int] = lambda _: 1) -> None:
        self.max_waiting = max_waiting
        self.capacity = capacity
        self.held: Counter[Client] = Counter()
        self.model: str | None = None
        self.whole_held = False
        self._waiters: dict[int, tuple[Waiter, asyncio.Future[None]]] = {}
        self._seq = itertools.count()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def active(self) -> int:
        """Requests holding a slot now."""
        return sum(self.held.values())

    @property
    def busy(self) -> bool:
        return self.whole_held or self.active > 0

    def now(self) -> Running:
        slots = self.capacity(self.model) if self.model is not None and self.active else 1
        return Running(dict(self.held), self.model, max(1, slots), self.whole_held)

    @contextlib.asynccontextmanager
    async def slot(self, model: str, client: Client = None) -> AsyncIterator[None]:
        """Hold one slot for a request of `model` from `client`."""
        waiter = await self._enter(model, client)
        try:
            yield
        finally:
            self._leave(waiter)

    @contextlib.asynccontextmanager
    async def whole(self, bounded: bool = True) -> AsyncIterator[None]:
        """Hold the whole engine: after every running request ends, before any waiting one starts.
        Not `bounded`: wait even when the queue is full (the pool's own upkeep, never refused)."""
        waiter = await self._enter(None, None, bounded)
        try:
            yield
        finally:
            self._leave(waiter)

    def wake(self) -> None:
        """Start every waiter that may start now (after a slot frees or the capacity grows)."""
        while True:
            turn = next_turn([w for w, _ in self._waiters.values()], self.now())
            if turn is None:
                return
            _, future = self._waiters.pop(turn.seq)
            self._take(turn)
            future.set_result(None)

    async def _enter(self, model: str | None, client: Client, bounded: bool = True) -> Waiter:
        waiter = Waiter(next(self._seq), client, model)
        if not self._waiters and next_turn([waiter], self.now()) is waiter:
            self._take(waiter)
            return waiter
        if bounded and len(self._waiters) >= self.max_waiting:
            raise QueueFull(
                f"{len(self._waiters)} requests are already waiting for the engine's {self.now().slots} "
                "slot(s); retry shortly (raise HEARTH_MAX_QUEUE to let more wait, or HEARTH_PARALLEL "
                "to serve more at once)."
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[waiter.seq] = (waiter, future)
        self.wake()  # it may be first in the fair order
        try:
            await future
        except asyncio.CancelledError:
            if self._waiters.pop(waiter.seq, None) is None:  # its slot was given just as it left
                self._leave(waiter)
            raise
        return waiter

    def _take(self, waiter: Waiter) -> None:
        if waiter.whole:
            self.whole_held = True
        else:
            self.held[waiter.client] += 1
            self.model = waiter.model

    def _leave(self, waiter: Waiter) -> None:
        if waiter.whole:
            self.whole_held = False
        else:
            self.held[waiter.client] -= 1
            if self.held[waiter.client] <= 0:
                del self.held[waiter.client]
        self.wake()
