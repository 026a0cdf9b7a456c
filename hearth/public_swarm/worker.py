"""`hearth contribute`: a public worker's one outbound link to the coordinator (issue 10).

Workers dial out, so contributing needs no open port: the worker opens one WebSocket to the
coordinator's `/v1/workers/link` and keeps it up. It is the thin runtime around the sans-IO
`WorkerSession` (hearth.public_swarm.protocol): it answers the Challenge with this machine's
NodeIdentity, offers its stored models by GGUF sha256 (hearth.public_swarm.offers), sends
heartbeats on the session's timer, and when the link drops (coordinator restarted, network gone,
peer silent) dials again with exponential backoff and jitter, until cancelled.

Jobs are not run yet: every offer is declined (`no_runner`). The job runner (a later session)
replaces `_decline_all` with a pool of engines that accepts, streams Tokens and finishes with a
signed receipt through the same session.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence

import websockets
from websockets.asyncio.client import ClientConnection, connect

from hearth.identity import NodeIdentity
from hearth.public_swarm.coordinator.client import coordinator_url
from hearth.public_swarm.coordinator.wire import WORKER_LINK
from hearth.public_swarm.offers import model_offers
from hearth.public_swarm.protocol import Action, Close, Send, WorkerSession, encode
from hearth.public_swarm.protocol.actions import JobOffered, Welcomed
from hearth.public_swarm.protocol.messages import MAX_FRAME_CHARS, MAX_JOBS, ModelOffer
from hearth.settings import Settings

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
"""Redials wait 0.5 s, 1 s, 2 s, ... up to this, each ±25 %; a link that was welcomed resets it."""
OPEN_TIMEOUT_S = 10.0
DECLINE_REASON = "no_runner"


def link_url(coordinator: str) -> str:
    """The link's ws(s):// URL from the coordinator's http(s):// base (validated as the client's)."""
    base = coordinator_url(coordinator)
    return ("wss://" + base.removeprefix("https://") if base.startswith("https://")
            else "ws://" + base.removeprefix("http://")) + WORKER_LINK


def next_delay(delay: float) -> float:
    """The backoff after a failed dial that waited `delay`."""
    return min(BACKOFF_MAX_S, delay * 2)


class Link:
    """One connection's life: a WorkerSession driven by one socket's frames and a timer."""

    def __init__(self, ws: ClientConnection, session: WorkerSession, say: Callable[[str], None]) -> None:
        self.ws, self.session, self.say = ws, session, say
        self.welcomed = False
        self.closed = False

    async def run(self) -> None:
        ticker = asyncio.create_task(self._tick())
        try:
            async for frame in self.ws:
                await self.perform(self.session.receive_text(frame, time.monotonic()))
                if self.closed:
                    break
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def _tick(self) -> None:
        while not self.closed:
            await asyncio.sleep(min(1.0, self.session.heartbeat_s / 4) if self.welcomed else 0.25)
            await self.perform(self.session.tick(time.monotonic()))

    async def perform(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Send():
                    await self.ws.send(encode(action.message))
                case Close():
                    self.closed = True
                    self.say(f"closing the link: {action.reason}")
                    await self.ws.close(int(action.code), action.reason.encode()[:120].decode("utf-8", "ignore"))
                    return
                case Welcomed():
                    self.welcomed = True
                    self.say(f"linked as {self.session.identity.node_id}, offering "
                             f"{', '.join(m.name for m in self.session.models)}")
                case JobOffered():
                    await self.perform(self._decline_all(action))
                case _:
                    pass  # StopJob: no job runs yet

    def _decline_all(self, offered: JobOffered) -> list[Action]:
        """No job runner yet: every offer is declined."""
        return self.session.decline(offered.offer.job_id, DECLINE_REASON, time.monotonic())


async def link_once(url: str, identity: NodeIdentity, offers: Sequence[ModelOffer], max_jobs: int,
                    say: Callable[[str], None]) -> bool:
    """Dial `url`, run the link until it ends; whether the coordinator welcomed this worker."""
    async with connect(url, open_timeout=OPEN_TIMEOUT_S, max_size=MAX_FRAME_CHARS * 4, compression=None,
                       ping_interval=None, close_timeout=2) as ws:
        link = Link(ws, WorkerSession(identity, offers, max_jobs, time.monotonic()), say)
        try:
            await link.run()
        except websockets.ConnectionClosed:
            pass
        if ws.close_code is not None and not link.closed:
            say(f"the coordinator closed the link ({ws.close_code}: {ws.close_reason or 'no reason'})")
        return link.welcomed


async def contribute(settings: Settings, coordinator: str | None, models: Sequence[str] = (), max_jobs: int = 1,
                     *, say: Callable[[str], None] = print) -> None:
    """Be a public worker until cancelled: keep one link to `coordinator` (default
    HEARTH_COORDINATOR) up, offering `models` (default: every stored model with a priced
    quantisation) for at most `max_jobs` jobs at once. Jobs are declined for now (no runner yet).
    Bad arguments raise before any dial (NoCoordinator, ModelNotFound, NothingToOffer, InvalidRequest)."""
    from hearth.errors import InvalidRequest

    if not 1 <= max_jobs <= MAX_JOBS:
        raise InvalidRequest(f"--max-jobs must be 1 to {MAX_JOBS}; got {max_jobs}.", param="max_jobs")
    url = link_url(coordinator or settings.coordinator or "")
    offers = await asyncio.to_thread(model_offers, settings, models)
    identity = NodeIdentity.load_or_create(settings.home)
    say(f"contributing {len(offers)} model(s) to {url} as {identity.node_id}")
    delay = BACKOFF_FIRST_S
    while True:
        try:
            if await link_once(url, identity, offers, max_jobs, say):
                delay = BACKOFF_FIRST_S
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            say(f"cannot reach the coordinator: {exc}")
        wait = delay * random.uniform(0.75, 1.25)
        say(f"redialling in {wait:.1f} s")
        await asyncio.sleep(wait)
        delay = next_delay(delay)
