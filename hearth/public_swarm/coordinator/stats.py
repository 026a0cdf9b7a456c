"""The swarm's throughput, in memory: tokens streamed per second bucket, for the health page.

The dispatcher records every batch of tokens a worker streams through this coordinator process;
`GET /v1/swarm` and the health page read tokens/s over a recent window and a per-minute series.
Each coordinator process counts what passed through it (several processes: each shows its own
share). Bounded: only `minutes` minutes of one-second buckets are kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MINUTES = 15
"""How far back the per-minute series goes."""
WINDOW_S = 60.0
"""The default window of `tokens_per_s`."""


class SwarmStats:
    """Tokens streamed, in one-second buckets over the last `minutes` minutes. Thread-safe."""

    def __init__(self, *, minutes: int = MINUTES, clock: Callable[[], float] = time.time) -> None:
        if type(minutes) is not int or not 1 <= minutes <= 24 * 60:
            raise ValueError(f"minutes must be 1 to 1440; got {minutes!r:.40}")
        self.minutes = minutes
        self.clock = clock
        self._buckets: dict[int, int] = {}
        self._lock = threading.Lock()
        self.total = 0
        """Tokens recorded since start (never pruned)."""

    def record(self, tokens: int, at: float | None = None) -> None:
        """`tokens` more streamed at `at` (now by default); negative or zero counts are ignored."""
        if type(tokens) is not int or tokens <= 0:
            return
        second = int(self.clock() if at is None else at)
        with self._lock:
            self._buckets[second] = self._buckets.get(second, 0) + tokens
            self.total += tokens
            self._prune(second)

    def _prune(self, now_s: int) -> None:
        oldest = now_s - self.minutes * 60
        if len(self._buckets) > self.minutes * 60 or min(self._buckets) < oldest:
            for s in [s for s in self._buckets if s < oldest]:
                del self._buckets[s]

    def tokens_per_s(self, window_s: float = WINDOW_S, now: float | None = None) -> float:
        """Mean tokens per second over the last `window_s` seconds."""
        if not 0 < window_s <= self.minutes * 60:
            raise ValueError(f"window_s must be in (0, {self.minutes * 60}]; got {window_s!r:.40}")
        now_s = self.clock() if now is None else now
        with self._lock:
            got = sum(n for s, n in self._buckets.items() if now_s - window_s < s + 1 and s <= now_s)
        return got / window_s

    def series(self, minutes: int | None = None, now: float | None = None) -> list[tuple[int, int]]:
        """(minute start in epoch seconds, tokens in that minute) for the last `minutes` minutes,
        oldest first, the current (partial) minute last; minutes with nothing count 0."""
        minutes = self.minutes if minutes is None else minutes
        if type(minutes) is not int or not 1 <= minutes <= self.minutes:
            raise ValueError(f"minutes must be 1 to {self.minutes}; got {minutes!r:.40}")
        this_minute = int(self.clock() if now is None else now) // 60 * 60
        starts = [this_minute - 60 * i for i in range(minutes - 1, -1, -1)]
        out = dict.fromkeys(starts, 0)
        with self._lock:
            for s, n in self._buckets.items():
                if (m := s // 60 * 60) in out:
                    out[m] += n
        return list(out.items())
