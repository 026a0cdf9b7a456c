"""The dashboard's watch of the node agents themselves: each node's `GET /v1/node` every few
seconds (all at once, each bounded in time, its round trip measured), and each node's event
stream followed into the log. Bounded: at most `WATCH_MAX` nodes read and followed; a follower
whose node is gone from the list is stopped; a failing stream is opened again with backoff; a
problem is said once (one log line, until it changes or the node answers again), never raised.
What the readings mean for the node list is `hearth.tui.nodemerge`'s (no I/O there).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from hearth.errors import HearthError
from hearth.node_api.status import DashEvent, NodeView, ServeStatus
from hearth.tui.nodemerge import WATCH_MAX, Reading, Target, judge, merge, targets
from hearth.tui.source import Circle, NodeReader

READ_EVERY_S = 5.0
READ_TIMEOUT_S = 2.0
BACKOFF_S = (1.0, 30.0)
"""A follower's first wait before opening a failed stream again, and its longest."""

OnEvent = Callable[[Target, DashEvent], None]
Say = Callable[[str], None]


class NodeWatch:
    """Reads and follows the nodes `watch` is given; `readings` holds the last read of each."""

    def __init__(self, reader: NodeReader, on_event: OnEvent, say: Say, *, timeout: float = READ_TIMEOUT_S,
                 limit: int = WATCH_MAX, backoff: tuple[float, float] = BACKOFF_S) -> None:
        self.reader, self.on_event, self.say = reader, on_event, say
        self.timeout, self.limit, self.backoff = timeout, limit, backoff
        self.readings: dict[str, Reading] = {}
        self._followers: dict[str, tuple[Target, asyncio.Task[None]]] = {}
        self._said: dict[tuple[str, str], str] = {}

    async def read(self, watched: Sequence[Target]) -> dict[str, Reading]:
        """Every node at once; what each said (or why not) replaces the readings."""
        watched = list(watched)[: self.limit]
        got = await asyncio.gather(*(self._read_one(t) for t in watched))
        for target, reading in zip(watched, got, strict=True):
            self._note(target, "status", reading.problem)
        self.readings = {t.node_id: r for t, r in zip(watched, got, strict=True)}
        return self.readings

    async def _read_one(self, target: Target) -> Reading:
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            async with asyncio.timeout(self.timeout):
                node = await self.reader.node_status(target.address)
        except TimeoutError:
            return Reading(problem=f"no answer within {self.timeout:g} s")
        except HearthError as exc:
            return Reading(problem=exc.message)
        return judge(target, node, (loop.time() - began) * 1000)

    def follow(self, watched: Sequence[Target]) -> None:
        """Follow these nodes' streams (the first `limit`); stop following any other."""
        wanted = {t.node_id: t for t in list(watched)[: self.limit]}
        for node_id, (target, task) in list(self._followers.items()):
            if wanted.get(node_id) != target:
                task.cancel()
                del self._followers[node_id]
        for node_id, target in wanted.items():
            if node_id not in self._followers:
                task = asyncio.create_task(self._follow(target), name=f"node events {target.name}")
                self._followers[node_id] = (target, task)

    @property
    def following(self) -> list[Target]:
        return [target for target, _ in self._followers.values()]

    async def _follow(self, target: Target) -> None:
        since, wait = 0, self.backoff[0]
        while True:
            try:
                async for event in self.reader.node_events(target.address, since):
                    since, wait = max(since, event.seq), self.backoff[0]
                    self._note(target, "events", None)
                    self.on_event(target, event)
            except HearthError as exc:
                self._note(target, "events", exc.message)
            await asyncio.sleep(wait)
            wait = min(wait * 2, self.backoff[1])

    def _note(self, target: Target, part: str, problem: str | None) -> None:
        """Say a problem once, and that it is over once."""
        key = (target.node_id, part)
        before = self._said.get(key)
        if problem is None:
            if before is not None:
                del self._said[key]
                self.say(f"{target.name}: {'its events flow' if part == 'events' else 'answers'} again")
        elif problem != before:
            self._said[key] = problem
            self.say(f"{target.name}: ({'event stream' if part == 'events' else 'status'}: {problem})")

    async def aclose(self) -> None:
        tasks = [task for _, task in self._followers.values()]
        self._followers.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def read_once(reader: NodeReader, status: ServeStatus | None, circle: Circle | None,
                    timeout: float = READ_TIMEOUT_S) -> list[NodeView]:
    """The node list as the dashboard shows it, read once (`hearth dash --once`)."""
    said: list[str] = []
    watch = NodeWatch(reader, lambda target, event: None, said.append, timeout=timeout)
    readings = await watch.read(targets(status, circle))
    return merge(status.nodes if status else [], circle, readings)
