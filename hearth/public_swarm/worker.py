"""`hearth contribute`: a public worker's one outbound link to the coordinator (issue 10).

Workers dial out, so contributing needs no open port: the worker opens one WebSocket to the
coordinator's `/v1/workers/link` and keeps it up. It is the thin runtime around the sans-IO
`WorkerSession` (hearth.public_swarm.protocol): it answers the Challenge with this machine's
NodeIdentity, offers its stored models by GGUF sha256 with their decode speed measured here
(hearth.public_swarm.offers, runner.measured), sends heartbeats on the session's timer, and when the
link drops (coordinator restarted, network gone, peer silent) dials again with exponential backoff
and jitter, until cancelled. Once welcomed, it registers its hardware with the signed
`POST /v1/workers` (hearth.public_swarm.hardware).

Offers go to the job runner (hearth.public_swarm.runner): accepted within the owner's hours and
upload cap, run on the injected engine pool, streamed as Tokens and ended with a signed receipt;
a Cancel, or the link's end, cancels the generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from hearth.engine.protocol import sampler_id
from hearth.errors import HearthError, InvalidRequest
from hearth.identity import NodeIdentity
from hearth.public_swarm.coordinator.client import CoordinatorClient, coordinator_url
from hearth.public_swarm.coordinator.wire import (
    MAX_TPS,
    WORKER_LINK,
    Credits,
    Hardware,
    OfferedModel,
    StandingView,
    WorkerRegistration,
)
from hearth.public_swarm.hardware import clean, describe_hardware, detect
from hearth.public_swarm.offers import NothingToOffer, model_offers
from hearth.public_swarm.pricing import MAX_PARAMS, MAX_TOKENS
from hearth.public_swarm.protocol import Action, Close, Send, WorkerSession, encode
from hearth.public_swarm.protocol.actions import JobOffered, StopJob, Welcomed
from hearth.public_swarm.protocol.messages import MAX_FRAME_CHARS, MAX_JOBS, ModelOffer
from hearth.public_swarm.runner import Generate, Runner, measured
from hearth.public_swarm.runner_rules import Admission, jobs_at_once
from hearth.public_swarm.worker_page import Earnings, Served, page_app, serve_page
from hearth.settings import Settings

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
"""Redials wait 0.5 s, 1 s, 2 s, ... up to this, each ±25 %; a link that was welcomed resets it."""
OPEN_TIMEOUT_S = 10.0


def link_url(coordinator: str) -> str:
    """The link's ws(s):// URL from the coordinator's http(s):// base (validated as the client's)."""
    base = coordinator_url(coordinator)
    return ("wss://" + base.removeprefix("https://") if base.startswith("https://")
            else "ws://" + base.removeprefix("http://")) + WORKER_LINK


def next_delay(delay: float) -> float:
    """The backoff after a failed dial that waited `delay`."""
    return min(BACKOFF_MAX_S, delay * 2)


class Link:
    """One connection's life: a WorkerSession driven by one socket's frames and a timer; its jobs
    run on `runner` and end (cancelled) with the link."""

    def __init__(self, ws: ClientConnection, session: WorkerSession, runner: Runner, say: Callable[[str], None],
                 on_welcome: Callable[[], Coroutine[Any, Any, None]] | None = None,
                 served: Served | None = None) -> None:
        self.ws, self.session, self.runner, self.say = ws, session, runner, say
        self.served = served if served is not None else Served()
        self.on_welcome = on_welcome
        self.welcomed = False
        self.closed = False
        self._send_lock = asyncio.Lock()
        self._welcome_task: asyncio.Task[None] | None = None

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
            await self.runner.stop_all()
            if self._welcome_task is not None:
                self._welcome_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._welcome_task

    async def _tick(self) -> None:
        while not self.closed:
            await asyncio.sleep(min(1.0, self.session.heartbeat_s / 4) if self.welcomed else 0.25)
            await self.perform(self.session.tick(time.monotonic()))

    async def perform(self, actions: list[Action]) -> None:
        for action in actions:
            if self.closed:
                return
            match action:
                case Send():
                    async with self._send_lock:
                        await self.ws.send(encode(action.message))
                    self.served.record(action.message)
                case Close():
                    self.closed = True
                    self.say(f"closing the link: {action.reason}")
                    await self.ws.close(int(action.code), action.reason.encode()[:120].decode("utf-8", "ignore"))
                    return
                case Welcomed():
                    self.welcomed = True
                    self.say(f"linked as {self.session.identity.node_id}, offering "
                             f"{', '.join(m.name for m in self.session.models)}")
                    if self.on_welcome is not None:
                        self._welcome_task = asyncio.create_task(self.on_welcome())
                case JobOffered():
                    await self.runner.offered(self.session, action.offer, self._perform_job)
                case StopJob():
                    self.runner.stop(action.job_id)
                case _:
                    pass


    async def _perform_job(self, actions: list[Action]) -> None:
        """A job's frames: a link that broke under them ends by its read loop, which stops the jobs."""
        try:
            await self.perform(actions)
        except websockets.ConnectionClosed:
            self.closed = True


def registration(offers: Sequence[ModelOffer], hardware: Hardware) -> WorkerRegistration:
    """`POST /v1/workers`'s body: this machine's name, its offers, its hardware."""
    models = [OfferedModel(digest=m.digest, name=m.name, n_params=min(MAX_PARAMS, max(1, m.params)),
                           quantization=m.quant, n_ctx=min(MAX_TOKENS, m.n_ctx), decode_tps=min(MAX_TPS, m.decode_tps))
              for m in offers]
    return WorkerRegistration(name=clean(platform.node()) or "hearth worker", models=models, hardware=hardware)


def registrar(base: str, identity: NodeIdentity, body: WorkerRegistration,
              say: Callable[[str], None]) -> Callable[[], Coroutine[Any, Any, None]]:
    """Registers the hardware once per link; a refusal is reported, and the link goes on."""
    async def register() -> None:
        try:
            async with CoordinatorClient(base, identity) as client:
                await client.register(body)
        except HearthError as exc:
            say(f"could not register this machine's hardware: {exc.message}")
    return register


async def link_once(url: str, identity: NodeIdentity, offers: Sequence[ModelOffer], max_jobs: int,
                    runner: Runner, say: Callable[[str], None],
                    on_welcome: Callable[[], Coroutine[Any, Any, None]] | None = None,
                    served: Served | None = None) -> bool:
    """Dial `url`, run the link until it ends; whether the coordinator welcomed this worker."""
    async with connect(url, open_timeout=OPEN_TIMEOUT_S, max_size=MAX_FRAME_CHARS * 4, compression=None,
                       ping_interval=None, close_timeout=2) as ws:
        session = WorkerSession(identity, offers, max_jobs, time.monotonic(), sampler=sampler_id())
        link = Link(ws, session, runner, say, on_welcome, served)
        try:
            await link.run()
        except websockets.ConnectionClosed:
            pass
        if ws.close_code is not None and not link.closed:
            say(f"the coordinator closed the link ({ws.close_code}: {ws.close_reason or 'no reason'})")
        return link.welcomed


async def contribute(settings: Settings, coordinator: str | None, generate: Generate, models: Sequence[str] = (),
                     max_jobs: int | None = None, admission: Admission | None = None, *,
                     say: Callable[[str], None] = print, page_port: int = 0,
                     slots: Callable[[], int] | None = None) -> None:
    """Be a public worker until cancelled: keep one link to `coordinator` (default
    HEARTH_COORDINATOR) up, offering `models` (default: every stored model with a priced
    quantisation), each measured here first, and run at most `max_jobs` jobs at once on `generate`
    (EnginePool.run) within `admission`'s hours and upload cap; with `page_port`, show what it served
    on 127.0.0.1 (worker_page). `max_jobs` None takes as many as the engine decodes at once:
    `slots()` read after each model is loaded (the fewest of them; default 1). Bad arguments raise
    before any dial (NoCoordinator, ModelNotFound, NothingToOffer, InvalidRequest)."""
    if max_jobs is not None and not 1 <= max_jobs <= MAX_JOBS:
        raise InvalidRequest(f"--max-jobs must be 1 to {MAX_JOBS}; got {max_jobs}.", param="max_jobs")
    base = coordinator_url(coordinator or settings.coordinator or "")
    url = link_url(base)
    stored = await asyncio.to_thread(model_offers, settings, models)
    hardware = await asyncio.to_thread(detect)
    say(f"hardware: {describe_hardware(hardware)}")
    offers, least = await measured_with_slots(generate, stored, say, slots or (lambda: 1))
    if not offers:
        raise NothingToOffer("None of the models can run on this machine (or pool); see the lines above.",
                             param="model")
    max_jobs, line = jobs_at_once(max_jobs, least)
    say(line)
    identity = NodeIdentity.load_or_create(settings.home)
    runner = Runner(generate, offers, admission)
    on_welcome = registrar(base, identity, registration(offers, hardware), say)
    say(f"contributing {len(offers)} model(s) to {url} as {identity.node_id}")
    served = Served()
    page = asyncio.create_task(operator_page(settings, base, identity, served, page_port, say))
    try:
        await keep_linked(url, identity, offers, max_jobs, runner, say, on_welcome, served)
    finally:
        page.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await page


async def measured_with_slots(generate: Generate, stored: Sequence[ModelOffer], say: Callable[[str], None],
                              slots: Callable[[], int]) -> tuple[list[ModelOffer], int]:
    """The offers measured here (runner.measured), and the fewest slots of their engines: each
    model's engine is loaded by its measurement, so `slots()` right after it reads that engine's."""
    offers: list[ModelOffer] = []
    least = MAX_JOBS
    for offer in stored:
        got = await measured(generate, [offer], say)
        if got:
            offers += got
            least = min(least, slots())
    return offers, least if offers else 1


async def keep_linked(url: str, identity: NodeIdentity, offers: Sequence[ModelOffer], max_jobs: int, runner: Runner,
                      say: Callable[[str], None], on_welcome: Callable[[], Coroutine[Any, Any, None]],
                      served: Served) -> None:
    """One link at a time, redialled with backoff, until cancelled."""
    delay = BACKOFF_FIRST_S
    while True:
        try:
            if await link_once(url, identity, offers, max_jobs, runner, say, on_welcome, served):
                delay = BACKOFF_FIRST_S
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            say(f"cannot reach the coordinator: {exc}")
        wait = delay * random.uniform(0.75, 1.25)
        say(f"redialling in {wait:.1f} s")
        await asyncio.sleep(wait)
        delay = next_delay(delay)


async def operator_page(settings: Settings, base: str, identity: NodeIdentity, served: Served, port: int,
                        say: Callable[[str], None]) -> None:
    """The operator's page on 127.0.0.1:`port` (0: none), its credits asked signed as this worker."""
    if not port:
        return

    async def credits() -> Credits:
        async with CoordinatorClient(base, identity) as client:
            return await client.credits()

    async def standing() -> StandingView:
        async with CoordinatorClient(base, identity) as client:
            return await client.standing()

    await serve_page(settings, page_app(served, Earnings(credits, standing=standing), identity.node_id), port, say)
