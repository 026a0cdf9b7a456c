"""Live pieces for the dispatcher's tests: a real coordinator app (serve.run_coordinator: uvicorn,
the real WebSocket links, the dispatcher) on 127.0.0.1, and scripted workers.

The scripted worker is a stand-in until the real job runner (helper "runner", `hearth contribute`
running jobs) is merged: it dials the real link over a real WebSocket with the real sans-IO
`WorkerSession` and a real node key, accepts each offer, streams fixed tokens (continuing after a
Resume exactly as a real worker must) and finishes with a real signed receipt. `hang_after` makes it
go silent mid-stream (no frames, no heartbeats), as a machine that vanished; `slow_s` paces tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from nacl.signing import SigningKey
from websockets.asyncio.client import ClientConnection, connect

from hearth.identity import NodeIdentity
from hearth.public_swarm.coordinator import serve
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.protocol import Close, Send, WorkerSession, encode
from hearth.public_swarm.protocol.actions import Action, JobOffered, StopJob
from hearth.public_swarm.protocol.messages import Finished, Offer
from hearth.settings import Settings
from tests.conftest import free_port
from tests.public_swarm.dispatch_kit import MODEL, PRICE

PIECES = [("Hello", 1), (",", 2), (" world", 3), ("!", 4), (" How", 5), (" are", 6), (" you", 7), ("?", 8)]
TEXT = "".join(p for p, _ in PIECES)
PROMPT_TOKENS = 7


def identity(seed: int) -> NodeIdentity:
    return NodeIdentity(SigningKey(bytes([seed]) * 32))


@contextlib.asynccontextmanager
async def coordinator(tmp: Path, url: str, *, allowance: Any = None, heartbeat_s: float = 2.0,
                      name: str = "coord", checks: bool = False, references: tuple[str, ...] = (),
                      random: Any = None) -> AsyncIterator[str]:
    """`hearth coordinator`'s serving coroutine on a free port over the database at `url`; its base URL.
    `checks`: with trust, spot-checks and canaries (issue 11; off here by default, so the tests of
    other things keep simple books); `random` fixes which jobs are checked."""
    home = tmp / name
    home.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=home)
    ledger, registry = serve.open_books(url, 10**6, print)
    port = free_port()
    ready = asyncio.Event()
    old = serve.heartbeat_from_env
    serve.heartbeat_from_env = lambda: heartbeat_s  # type: ignore[assignment]
    try:
        task = asyncio.create_task(serve.run_coordinator(settings, "127.0.0.1", port, ledger, registry,
                                                         NodeIdentity.load_or_create(home), ready, allowance,
                                                         references=references, checks=checks, random=random))
        await asyncio.wait({task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        serve.heartbeat_from_env = old  # type: ignore[assignment]
    if task.done():
        task.result()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        ledger.close()


@dataclass
class ScriptedWorker:
    """A scripted worker (see the module docstring) on one link."""

    me: NodeIdentity
    hang_after: int | None = None
    slow_s: float = 0.02
    cheat: bool = False
    """Stream other token ids than the model's (issue 11's "random tokens" cheat: no real worker cheats,
    so a cheater is scripted); its text stays the same."""
    checked: list[Offer] = field(default_factory=list)
    bad_receipt: bool = False
    """Finish with a receipt that does not verify (scripted for the same reason as `cheat`)."""
    max_jobs: int = 1
    sampler: str | None = None
    """The Hello's sampler name: a scripted checker naming it "re-runs" a sampled job by picking PIECES."""
    offered: list[Offer] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    streamed: int = 0
    linked: asyncio.Event = field(default_factory=asyncio.Event)
    accepted: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _ws: ClientConnection | None = None
    _jobs: set[asyncio.Task[None]] = field(default_factory=set)
    hung: bool = False
    frames: list[str] = field(default_factory=list)
    """Every frame the link received, as text (what the coordinator told this worker)."""

    async def start(self, base: str) -> ScriptedWorker:
        self._task = asyncio.create_task(self._run(base.replace("http://", "ws://") + "/v1/workers/link"))
        await asyncio.wait_for(self.linked.wait(), 20)
        return self

    async def stop(self) -> None:
        for t in [*self._jobs, *([self._task] if self._task else [])]:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def _run(self, url: str) -> None:
        async with connect(url, ping_interval=None, max_size=None) as ws:
            self._ws = ws
            self.session = WorkerSession(self.me, [MODEL], self.max_jobs, time.monotonic(), sampler=self.sampler)
            ticker = asyncio.create_task(self._tick())
            try:
                async for frame in ws:
                    self.frames.append(frame if isinstance(frame, str) else frame.decode())
                    if self.hung:
                        continue
                    await self._do(self.session.receive_text(frame, time.monotonic()))
            finally:
                ticker.cancel()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            if not self.hung:
                await self._do(self.session.tick(time.monotonic()))

    async def _do(self, actions: list[Action]) -> None:
        assert self._ws is not None
        for a in actions:
            if isinstance(a, Send):
                await self._ws.send(encode(a.message))
            elif isinstance(a, Close):
                await self._ws.close(int(a.code))
            elif isinstance(a, JobOffered):
                self.offered.append(a.offer)
                task = asyncio.create_task(self._serve(a.offer))
                self._jobs.add(task)
                task.add_done_callback(self._jobs.discard)
            elif isinstance(a, StopJob):
                pass
            elif type(a).__name__ == "Welcomed":
                self.linked.set()

    async def _serve(self, offer: Offer) -> None:
        now = time.monotonic
        await self._do(self.session.accept(offer.job_id, now()))
        self.accepted.set()
        if offer.check is not None:  # score as an honest copy of the model whose greedy output is PIECES
            self.checked.append(offer)
            model = [tid for _, tid in PIECES]
            ids = offer.check.token_ids
            ranks = [0 if i < len(model) and t == model[i] else offer.check.top_k for i, t in enumerate(ids)]
            gaps = [0.0 if r == 0 else 9.0 for r in ranks]
            text = "".join(PIECES[i][0] if r == 0 else "\ufffd" for i, r in enumerate(ranks))
            picks = [model[i] if i < len(model) else 0 for i in range(len(ids))] if offer.check.replay else None
            await asyncio.sleep(self.slow_s)
            await self._do(self.session.checked(offer.job_id, PROMPT_TOKENS, ranks, gaps, text, now(), picks))
            return
        start = len(offer.request.resume.token_ids) if offer.request.resume else 0
        for text, tid in PIECES[start:offer.request.max_tokens]:
            if self.hang_after is not None and self.streamed >= self.hang_after:
                self.hung = True  # silent from now on: the coordinator must notice by the heartbeat
                return
            await asyncio.sleep(self.slow_s)
            if offer.job_id not in self.session.jobs:
                return  # cancelled
            await self._do(self.session.tokens(offer.job_id, text, [tid + 1000 if self.cheat else tid], now()))
            self.streamed += 1
        reason = "stop" if offer.request.max_tokens > len(PIECES) else "length"
        if self.bad_receipt and self._ws is not None:
            await self._ws.send(encode(Finished(job_id=offer.job_id, finish_reason=reason, prompt_tokens=PROMPT_TOKENS,
                                                completion_tokens=self.streamed, receipt="not-a-receipt")))
            return
        await self._do(self.session.finish(offer.job_id, reason, PROMPT_TOKENS, now()))
        self.finished.append(offer.job_id)


def sse_events(lines: list[str]) -> list[Any]:
    out: list[Any] = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


async def wait_until(what: str, check: Any, timeout: float = 20.0) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def ledger_of(url: str) -> Ledger:
    return Ledger.open(url, pool_size=1)


__all__ = ["httpx"]


def assert_each_job_once_and_books_balance(url: str, workers: list[ScriptedWorker], askers: list[NodeIdentity],
                                           results: list[dict[str, object]], jobs: int) -> None:
    """After `jobs` completions over `workers` (2 coordinators on one database): each job offered to
    exactly one worker, every text the scripted one, each worker paid for what it finished, books balanced."""
    offered = Counter(o.job_id for w in workers for o in w.offered)
    assert len(offered) == jobs and set(offered.values()) == {1}, offered
    assert all(r["choices"][0]["text"] == TEXT for r in results)  # type: ignore[index]
    cost = (PROMPT_TOKENS + 8) * PRICE
    with ledger_of(url) as ledger:
        for w in workers:
            assert ledger.balance(w.me.node_id) == len(w.finished) * cost
        assert sum(len(w.finished) for w in workers) == jobs
        assert ledger.audit() == [] and sum(ledger.balances().values()) == 0
        assert all(ledger.holds_of(x.node_id) == [] for x in askers)
    print("jobs per worker:", [len(w.finished) for w in workers])
