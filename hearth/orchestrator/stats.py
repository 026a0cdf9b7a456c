"""What the dashboard shows of the requests this server ran: recent requests (timings and counts
only, never text), tokens/s per `SAMPLE_S` window, and what the public swarm cost. Recorded by the
engine pool as replies pass through it (no second engine, no polling); read by the status route.

Also publishes the requests' events on the process's Feed: request_started, request_done (with
ttft_ms and tokens_per_s), request_failed, request_escalated and job_settled for a reply the swarm
served. A request the circle cannot serve is not failed but handed over: the escalating pool sets
a `Handover` (`handing_over`) around the pool's first step, the pool's `failed` with one of its
codes leaves the request open, and the escalating pool goes on with it (`escalated`), so the
request ends done, served by "public" (or failed if the public job fails).
"""

from __future__ import annotations

import contextlib
import statistics
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from hearth.engine.events import Done
from hearth.node_api.feed import Feed
from hearth.node_api.status import (
    MAX_REQUESTS,
    MAX_SAMPLES,
    SAMPLE_S,
    PublicJob,
    PublicView,
    RequestStat,
    Throughput,
)


class Throughputs:
    """Generated tokens counted into windows of `SAMPLE_S` seconds (monotonic clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._windows: deque[tuple[int, int]] = deque(maxlen=MAX_SAMPLES)

    def add(self, tokens: int) -> None:
        window = int(self.clock() // SAMPLE_S)
        if self._windows and self._windows[-1][0] == window:
            self._windows[-1] = (window, self._windows[-1][1] + tokens)
        else:
            self._windows.append((window, tokens))

    def samples(self) -> list[float]:
        """Tokens/s of the last MAX_SAMPLES windows up to now, oldest first, 0 where nothing ran;
        the window under way counts as far as it has come."""
        now = self.clock()
        current = int(now // SAMPLE_S)
        counts = dict(self._windows)
        if not counts:
            return []
        first = max(min(counts), current - MAX_SAMPLES + 1)
        elapsed = max(now - current * SAMPLE_S, 1.0)
        return [round(counts.get(w, 0) / (elapsed if w == current else SAMPLE_S), 2)
                for w in range(first, current + 1)]


class Tracker:
    """One request under way: `token` per generated piece, then `done`, `failed` or `cancelled`."""

    def __init__(self, stats: RequestStats, stat: RequestStat, t0: float) -> None:
        self.stats, self.stat, self.t0 = stats, stat, t0
        self.ended = False
        self.handed_over = False
        """The circle could not serve it and the escalating pool takes it on (see `Handover`)."""

    def running(self) -> None:
        if self.stat.state == "queued":
            self.stat.state = "running"

    def token(self, n: int) -> None:
        if self.stat.ttft_ms is None:
            self.stat.ttft_ms = round((self.stats.mono() - self.t0) * 1000, 1)
        self.stat.tokens += n
        self.stats.throughput.add(n)

    def done(self, event: Done) -> None:
        s = self.stat
        s.tokens = max(s.tokens, event.completion_tokens)
        s.ttft_ms = round(event.ttft_ms, 1) if event.ttft_ms >= 0 else s.ttft_ms
        rate = event.decode_tokens_per_s
        s.tokens_per_s = round(rate, 2) if rate is not None and rate >= 0 else None
        self.finished()

    def finished(self) -> None:
        """The reply ended well (embeddings and scores end without a Done)."""
        if self.ended:
            return
        self._end("done")
        s = self.stat
        self.stats.feed.publish("request_done", f"{s.model}: {s.tokens} tokens", id=s.id, model=s.model,
                                tokens=s.tokens, ttft_ms=s.ttft_ms, tokens_per_s=s.tokens_per_s,
                                served_by=s.served_by)

    def failed(self, code: str) -> None:
        handover = _HANDOVER.get()
        if handover is not None and handover.tracker is None and code in handover.codes and not self.ended:
            handover.tracker, self.handed_over = self, True  # not failed: escalated next
            return
        self.handed_over = False
        self._end("failed")
        self.stats.feed.publish("request_failed", f"{self.stat.model}: {code}", id=self.stat.id,
                                model=self.stat.model, code=code)

    def escalated(self, reason: str) -> None:
        """The circle could not serve it (`reason`, an error code): the public swarm serves it now."""
        self.handed_over = False
        self.stat.served_by = "public"
        self.running()
        self.stats.feed.publish("request_escalated", f"{self.stat.model}: to the public swarm ({reason})",
                                id=self.stat.id, model=self.stat.model, reason=reason[:64])

    def cancelled(self) -> None:
        if not self.handed_over:  # the pool lets go of a request it handed over; the escalating pool ends it
            self._end("cancelled")

    def _end(self, state: str) -> None:
        if not self.ended:
            self.ended = True
            self.stat.state = state  # type: ignore[assignment]
            self.stats.in_flight.discard(self)


class Handover:
    """Set by the escalating pool around the pool's first step of a request: a failure there with
    one of `codes` (the circle cannot serve) hands the request over instead of failing it."""

    def __init__(self, codes: frozenset[str]) -> None:
        self.codes = codes
        self.tracker: Tracker | None = None
        """The request handed over, if it was."""


_HANDOVER: ContextVar[Handover | None] = ContextVar("hearth_handover", default=None)


@contextlib.contextmanager
def handing_over(codes: frozenset[str]) -> Iterator[Handover]:
    """A Handover for what runs in this task until the block ends (one step of the pool: no other
    request of the task can run inside it)."""
    handover = Handover(codes)
    token = _HANDOVER.set(handover)
    try:
        yield handover
    finally:
        _HANDOVER.reset(token)


class RequestStats:
    """The recent requests and throughput of one engine pool, and its public spending."""

    def __init__(self, feed: Feed, clock: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic) -> None:
        self.feed, self.clock, self.mono = feed, clock, mono
        self.recent: deque[RequestStat] = deque(maxlen=MAX_REQUESTS)
        self.in_flight: set[Tracker] = set()
        self.throughput = Throughputs(mono)
        self.public = PublicView()

    def start(self, model: str, op: str, served_by: str = "machine") -> Tracker:
        stat = RequestStat(id=f"req-{uuid.uuid4().hex[:12]}", model=model[:256], state="queued",
                           served_by=served_by, started_at=self.clock())  # type: ignore[arg-type]
        self.recent.append(stat)
        tracker = Tracker(self, stat, self.mono())
        self.in_flight.add(tracker)
        self.feed.publish("request_started", f"{stat.model}: {op}", id=stat.id, model=stat.model, op=op[:16])
        return tracker

    def public_job(self, job_id: str, model: str, tokens: int, micro_credits: int) -> None:
        """A reply the swarm served, with what it cost (PublicCost)."""
        job = PublicJob(id=job_id[:64], model=model[:256], tokens=max(0, tokens),
                        cost_credits=max(0, micro_credits), at=self.clock())
        self.public.spent += job.cost_credits
        self.public.recent = [*self.public.recent[-(MAX_REQUESTS - 1):], job]
        self.feed.publish("job_settled", f"public job: {job.cost_credits} micro-credits", job=job.id[:12],
                          model=job.model, tokens=job.tokens, cost_credits=job.cost_credits)

    def view(self, queue_depth: int) -> tuple[list[RequestStat], Throughput]:
        """Copies for a status answer: recent requests (newest last) and throughput."""
        ttfts = [s.ttft_ms for s in self.recent if s.state == "done" and s.ttft_ms is not None]
        p50 = round(statistics.median(ttfts), 1) if ttfts else None
        return ([s.model_copy() for s in self.recent],
                Throughput(samples=self.throughput.samples(), ttft_ms_p50=p50, queue_depth=queue_depth))
