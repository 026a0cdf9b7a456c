"""The swarm's health page: `GET /` (HTML plus `/health.js`, no CDN, no external fonts) and its
JSON, `GET /v1/swarm`: live workers, the models they serve and how many serve each, tokens/s over
the last minutes, jobs queued and running; and `GET /v1/swarm/events`, Server-Sent Events of what
happens in this process (`events`; several coordinators on one database each stream their own).

Unsigned and read-only. Bounded: one snapshot is built at most every SNAPSHOT_S seconds (one
count query, whatever the request rate), lists are cut at MAX_LISTED, and node ids are shown
shortened (a worker's full id is for `GET /v1/workers`, signed). The page's Content-Security-Policy
allows only this coordinator's own script and nothing else, so the page can load nothing from
elsewhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from hearth.node_api.feed import Feed
from hearth.node_api.feed_sse import StreamLimit, event_stream, heartbeat_s, parse_since
from hearth.public_swarm.coordinator import wire
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.coordinator.links import LiveLinks, model_view
from hearth.public_swarm.coordinator.stats import SwarmStats

SWARM, PAGE, SCRIPT = wire.SWARM, wire.HEALTH_PAGE, wire.HEALTH_SCRIPT
"""Unsigned (in wire.UNSIGNED)."""
SNAPSHOT_S = 2.0
MAX_LISTED = 100
ID_CHARS = 12
SERIES_MINUTES = 15
CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
       "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class WorkerRow(BaseModel):
    node_id: str
    """The first ID_CHARS characters of the worker's node id."""
    models: list[str]
    linked_at: float
    last_seen: float


class ModelRow(BaseModel):
    name: str
    digest: str
    workers: int
    price: int
    """Credits per million tokens."""
    n_ctx: int


class Minute(BaseModel):
    minute: int
    """The minute's start, epoch seconds."""
    tokens: int


class Swarm(BaseModel):
    at: float
    live_workers: int
    workers: list[WorkerRow]
    models: list[ModelRow]
    tokens_per_s_1m: float
    tokens_per_s_5m: float
    series: list[Minute]
    jobs: dict[str, int]


def snapshot(links: LiveLinks, queue: JobQueue, stats: SwarmStats, now: float) -> Swarm:
    """The swarm as the page shows it (reads the database once: job counts)."""
    rows: list[WorkerRow] = []
    models: dict[str, ModelRow] = {}
    for view in links.views():
        rows.append(WorkerRow(node_id=view.node_id[:ID_CHARS], models=sorted({m.name for m in view.models}),
                              linked_at=view.registered_at, last_seen=view.last_seen))
    for link in list(links.by_node.values()):
        for offer in {m.digest: m for m in link.models}.values():
            if (priced := model_view(offer)) is None:
                continue
            seen = models.get(offer.digest)
            models[offer.digest] = ModelRow(
                name=offer.name, digest=offer.digest, workers=1 + (seen.workers if seen else 0),
                price=priced.credits_per_million_tokens, n_ctx=min(offer.n_ctx, seen.n_ctx if seen else offer.n_ctx))
    window = min(300.0, stats.minutes * 60.0)
    return Swarm(at=now, live_workers=len(rows), workers=rows[:MAX_LISTED],
                 models=sorted(models.values(), key=lambda m: (-m.workers, m.name, m.digest))[:MAX_LISTED],
                 tokens_per_s_1m=round(stats.tokens_per_s(min(60.0, window), now), 3),
                 tokens_per_s_5m=round(stats.tokens_per_s(window, now), 3),
                 series=[Minute(minute=m, tokens=n)
                         for m, n in stats.series(min(SERIES_MINUTES, stats.minutes), now)],
                 jobs={state.value: n for state, n in queue.counts().items()})


@dataclass
class Snapshots:
    """The newest snapshot, rebuilt at most every `every_s` seconds (thread-safe)."""

    build: Callable[[float], Swarm]
    every_s: float = SNAPSHOT_S
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._last: Swarm | None = None

    def __call__(self) -> Swarm:
        with self._lock:
            now = self.clock()
            if self._last is None or not 0 <= now - self._last.at < self.every_s:
                self._last = self.build(now)
            return self._last


def asset(name: str) -> str:
    return files("hearth.public_swarm.coordinator").joinpath(f"static/{name}").read_text(encoding="utf-8")


def install_health(app: FastAPI, links: LiveLinks, queue: JobQueue, stats: SwarmStats, feed: Feed) -> None:
    """Add `GET /`, `GET /health.js`, `GET /v1/swarm` and `GET /v1/swarm/events` (the events of
    `feed`, this process's, as `hearth serve`'s `/hearth/events` streams its own) to the app."""
    limit = StreamLimit()
    latest = Snapshots(lambda now: snapshot(links, queue, stats, now))
    page, script = asset("health.html").encode(), asset("health.js").encode()
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}

    @app.get(SWARM)
    def swarm() -> Swarm:
        return latest()

    @app.get(wire.SWARM_EVENTS, response_model=None)
    async def swarm_events(request: Request, since: str | None = None,
                           every: float = Depends(heartbeat_s)) -> StreamingResponse:
        return event_stream(request, feed, parse_since(since, request.headers.get("last-event-id")), every, limit)

    @app.get(PAGE, include_in_schema=False)
    def health_page() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=headers)

    @app.get(SCRIPT, include_in_schema=False)
    def health_script() -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8", headers=headers)

