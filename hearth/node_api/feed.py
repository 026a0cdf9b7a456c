"""The event feed of one process (`hearth serve` or `hearth node`): what the dashboard's event
stream carries (issue 12). No sockets here: the routes (hearth.server.status_routes,
hearth.rpc_pool.agent) turn a subscription into Server-Sent Events with `sse_lines`.

- `publish` numbers events from 1 with no gaps (under a lock: callers may be threads) and keeps
  the last `KEEP` for `since`, which replays them after a reconnect.
- At most `MAX_SUBSCRIBERS` streams at once; each has a queue of `QUEUE` events. A subscriber
  that falls behind loses its oldest events, and then reads one `notice` ("N events dropped")
  before the next event: the feed's numbering stays whole, only that reader's copy has a hole
  (and the notice says where, so it may ask `since` for what the ring still holds).
- Facts in `data` are numbers and short strings only; messages and strings are clipped, so an
  event can never grow past what `DashEvent` allows. Callers never pass secrets or text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

from hearth.errors import OutOfCapacity
from hearth.node_api.status import DashEvent

KEEP = 500
MAX_SUBSCRIBERS = 16
QUEUE = 256
MAX_DATA = 16
MAX_STRING = 200
MAX_MESSAGE = 500
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
Fact = str | int | float | bool | None


class TooManyStreams(OutOfCapacity):
    """Every event stream slot is taken (per client, or for the whole server); close one."""

    http_status = 429
    error_type = "rate_limit_error"
    code = "too_many_streams"
    retry_after = 5


def _fact(value: object) -> Fact:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)[:MAX_STRING]


class Subscription:
    """One reader's bounded queue. Filled by `Feed.publish` (any thread), read by one task."""

    def __init__(self, feed: Feed, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._feed, self._loop, self._size = feed, loop, size
        self._backlog: deque[DashEvent] = deque()
        """The replay asked for with `since`: read first, never dropped."""
        self._queue: deque[DashEvent] = deque()
        self._wake = asyncio.Event()
        self._dropped = 0
        self._first_dropped = 0
        self._last_dropped = 0
        self.closed = False

    def _put(self, event: DashEvent) -> None:
        """Called with the feed's lock held."""
        if len(self._queue) >= self._size:
            lost = self._queue.popleft()
            if not self._dropped:
                self._first_dropped = lost.seq
            self._dropped += 1
            self._last_dropped = lost.seq
        self._queue.append(event)
        self._signal()

    def _signal(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._wake.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    def _take(self) -> DashEvent | None:
        """The next event (the replay, then a notice after drops), or None; with the feed's lock held."""
        if self._backlog:
            return self._backlog.popleft()
        if self._dropped:
            n, first, last = self._dropped, self._first_dropped, self._last_dropped
            self._dropped = 0
            return DashEvent(seq=last, at=self._feed.clock(), kind="notice",
                             message=f"{n} events dropped (this reader fell behind)",
                             data={"dropped": n, "first": first, "last": last})
        return self._queue.popleft() if self._queue else None

    async def get(self, timeout: float | None = None) -> DashEvent | None:
        """The next event; None after `timeout` seconds without one (time for a heartbeat).
        StopAsyncIteration once the feed is closed and this queue is empty."""
        while True:
            with self._feed._lock:
                event = self._take()
                if event is None:
                    if self.closed:
                        raise StopAsyncIteration
                    self._wake.clear()
            if event is not None:
                return event
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return None

    def detach(self) -> bool:
        """Stop receiving; True the first time (so a caller's own count drops exactly once)."""
        return self._feed._detach(self)

    def __aiter__(self) -> AsyncIterator[DashEvent]:
        return self

    async def __anext__(self) -> DashEvent:
        while True:
            event = await self.get()
            if event is not None:
                return event


class Feed:
    """One process's events: numbered, kept for replay, fanned out to bounded subscribers."""

    def __init__(self, *, keep: int = KEEP, max_subscribers: int = MAX_SUBSCRIBERS, queue: int = QUEUE,
                 clock: Callable[[], float] = time.time) -> None:
        self.keep, self.max_subscribers, self.queue = keep, max_subscribers, queue
        self.clock = clock
        self._lock = threading.Lock()
        self._ring: deque[DashEvent] = deque(maxlen=keep)
        self._subscribers: list[Subscription] = []
        self._seq = 0

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, kind: str, message: str, **data: object) -> DashEvent:
        """Number, keep and fan out one event. `kind` is a short snake_case word (see
        status.EventKind); `data` holds at most 16 facts (numbers, short strings)."""
        if not _KIND.fullmatch(kind):
            raise ValueError(f"event kind {kind!r} is not a short snake_case word")
        facts = {str(k)[:32]: _fact(v) for k, v in list(data.items())[:MAX_DATA]}
        with self._lock:
            self._seq += 1
            event = DashEvent(seq=self._seq, at=self.clock(), kind=kind, message=message[:MAX_MESSAGE],
                              data=facts)
            self._ring.append(event)
            for sub in self._subscribers:
                sub._put(event)
        return event

    def since(self, seq: int) -> list[DashEvent]:
        """What the ring still holds after `seq` (all of it for 0 or less), oldest first."""
        with self._lock:
            return [e for e in self._ring if e.seq > seq]

    def attach(self, since: int | None = None) -> Subscription:
        """A subscription for the running loop: with `since`, what the ring holds after it comes
        first, then live events, with nothing lost or repeated between the two. Detach it when
        done. TooManyStreams when `max_subscribers` are already reading."""
        sub = Subscription(self, asyncio.get_running_loop(), self.queue)
        with self._lock:
            if len(self._subscribers) >= self.max_subscribers:
                raise TooManyStreams(f"{len(self._subscribers)} event streams are open here, the most allowed; "
                                     "close one and retry.")
            if since is not None:
                sub._backlog.extend(e for e in self._ring if e.seq > since)
            self._subscribers.append(sub)
        return sub

    def _detach(self, sub: Subscription) -> bool:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)
                return True
            return False

    @contextlib.asynccontextmanager
    async def subscribe(self, since: int | None = None) -> AsyncIterator[Subscription]:
        """`attach`, detached on the way out."""
        sub = self.attach(since)
        try:
            yield sub
        finally:
            sub.detach()

    def close(self) -> None:
        """End every subscription once it has read what it holds (the process is stopping)."""
        with self._lock:
            for sub in self._subscribers:
                sub.closed = True
                sub._signal()


def sse_lines(event: DashEvent) -> bytes:
    """One event as Server-Sent Events lines: `id`, `event` and one `data` line of JSON (which
    escapes every newline, so no field can start another line)."""
    kind = event.kind if _KIND.fullmatch(event.kind) else "notice"
    return f"id: {event.seq}\nevent: {kind}\ndata: {json.dumps(event.model_dump(), ensure_ascii=True)}\n\n".encode()


HEARTBEAT = b": keep-alive\n\n"
"""An SSE comment: readers ignore it; it keeps idle connections (and proxies) open."""
