"""The public worker's job runner: offered jobs run on hearth's own engine pool, injected.

public_swarm may not import the orchestrator (layers), so the engine pool comes in as `Generate`,
a callable with the signature of `hearth.orchestrator.engines.EnginePool.run(model, op, **fields)`;
`hearth contribute` passes `EnginePool(settings, policy=...).run`, so a household's pool can serve
as one worker a model no single machine holds. The decisions (hours, upload cap, request -> fields,
framing) are pure, in hearth.public_swarm.runner_rules; this module only drives the generation:
each engine Token goes out as a Tokens frame through the WorkerSession, Done ends the job with
`finish` (the session signs the receipt over exactly what was streamed), an engine error with
`fail`, and a StopJob (Cancel, or the coordinator gone) cancels the generation task, which cancels
the request in the engine child. A spot-check (an Offer with `check`) runs the engine's "score" op
instead and answers with one `checked`; engine errors and cancels go the same way as a job's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from hearth.engine.events import Done, ReplyEvent, Scored, Token
from hearth.errors import HearthError, LinkFailed
from hearth.public_swarm.protocol import Action, WorkerSession
from hearth.public_swarm.protocol.messages import ModelOffer, Offer
from hearth.public_swarm.runner_rules import Admission, Framer, engine_fields, score_fields

log = logging.getLogger("hearth.contribute")


class Generate(Protocol):
    """`EnginePool.run`: wait for the engine, then yield the request's events (an error is raised)."""

    def __call__(self, model: str, op: str, **fields: Any) -> AsyncGenerator[ReplyEvent, None]: ...


Perform = Callable[[list[Action]], Awaitable[None]]
"""Performs a session's actions on the link (sends frames)."""

SPEED_PROMPT = "Here is a short story about a lighthouse keeper who"
SPEED_TOKENS = 32
MEASURE_TRIES = 3
"""A model measured through the household is tried again after a link failure (a node busy or
restarting, a lease unanswered), so that a passing hiccup does not leave the worker with nothing
to offer; any other failure is final."""
RETRY_S = 2.0


class Runner:
    """Runs the jobs a link's session accepts; one task per job, cancelled by StopJob."""

    def __init__(self, generate: Generate, models: Sequence[ModelOffer], admission: Admission | None = None) -> None:
        self.generate = generate
        self.names = {m.digest: m.name for m in models}
        self.admission = admission or Admission()
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def offered(self, session: WorkerSession, offer: Offer, perform: Perform) -> None:
        """Accept and start, or decline, an offer the session passed on (it already checked the
        model and the capacity)."""
        reason = self.admission.refusal()
        if reason is not None:
            await perform(session.decline(offer.job_id, reason, time.monotonic()))
            return
        await perform(session.accept(offer.job_id, time.monotonic()))
        self.start(session, offer, perform)

    def start(self, session: WorkerSession, offer: Offer, perform: Perform) -> None:
        task = asyncio.create_task(self._run(session, offer, perform), name=f"job {offer.job_id}")
        self.tasks[offer.job_id] = task
        task.add_done_callback(lambda t: self._ended(offer.job_id, t))

    def _ended(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self.tasks.get(job_id) is task:
            del self.tasks[job_id]

    def stop(self, job_id: str) -> None:
        task = self.tasks.pop(job_id, None)
        if task is not None:
            task.cancel()

    async def stop_all(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, session: WorkerSession, offer: Offer, perform: Perform) -> None:
        job_id = offer.job_id
        try:
            if offer.check is not None:
                await self._score(session, offer, perform)
            else:
                await self._generate(session, offer, perform)
        except HearthError as exc:
            log.info("job %s failed: %s", job_id, exc.message)
            await perform(session.fail(job_id, exc.code, exc.message, time.monotonic()))
        except (OSError, RuntimeError, ValueError) as exc:  # the link or the engine broke under us
            log.warning("job %s failed: %s", job_id, exc, exc_info=True)
            await perform(session.fail(job_id, "worker_error", f"{type(exc).__name__}: {exc}", time.monotonic()))

    async def _score(self, session: WorkerSession, offer: Offer, perform: Perform) -> None:
        """A spot-check: score the check's ids under this machine's copy of the model."""
        assert offer.check is not None
        job_id = offer.job_id
        scored: Scored | None = None
        async for event in self.generate(self.names[offer.model_digest], "score",
                                         **score_fields(offer.request, offer.check)):
            if isinstance(event, Scored):
                scored = event
            elif isinstance(event, Done):
                break
        if (scored is None or len(scored.ranks) != len(offer.check.token_ids)
                or offer.check.replay != (scored.picks is not None)):
            await perform(session.fail(job_id, "cancelled" if scored is None else "engine_error",
                                       "The engine ended the check without scoring every token.",
                                       time.monotonic()))
            return
        await perform(session.checked(job_id, scored.prompt_tokens, scored.ranks, scored.gaps, scored.text,
                                      time.monotonic(), scored.picks))

    async def _generate(self, session: WorkerSession, offer: Offer, perform: Perform) -> None:
        job_id = offer.job_id
        op, fields = engine_fields(offer.request)
        framer = Framer()
        async for event in self.generate(self.names[offer.model_digest], op, **fields):
            if isinstance(event, Token):
                for text, ids in framer.push(event.text, event.ids):
                    await perform(session.tokens(job_id, text, ids, time.monotonic()))
                    self.admission.sent(text)
            elif isinstance(event, Done):
                if event.finish_reason == "cancelled":
                    await perform(session.fail(job_id, "cancelled", "The engine cancelled the job.",
                                               time.monotonic()))
                else:
                    await perform(session.finish(job_id, event.finish_reason, event.prompt_tokens,
                                                 time.monotonic()))
                return
        await perform(session.fail(job_id, "engine_error", "The engine ended without finishing.",
                                   time.monotonic()))


async def measure_tps(generate: Generate, model: str) -> float:
    """Decode speed of `model` here, tokens/s, from one short greedy generation (loads the model)."""
    t0 = time.perf_counter()
    done: Done | None = None
    async for event in generate(model, "complete", prompt=SPEED_PROMPT, max_tokens=SPEED_TOKENS, temperature=0.0):
        if isinstance(event, Done):
            done = event
    if done is None or done.completion_tokens == 0:
        raise RuntimeError(f"{model} generated nothing to time")
    if done.decode_tokens_per_s:
        return float(done.decode_tokens_per_s)
    seconds = max(1e-3, (done.total_ms - done.ttft_ms) / 1000 if done.total_ms > done.ttft_ms
                  else time.perf_counter() - t0)
    return done.completion_tokens / seconds


async def measured(generate: Generate, offers: Sequence[ModelOffer],
                   say: Callable[[str], None], *, retry_s: float = RETRY_S) -> list[ModelOffer]:
    """The offers with their decode_tps measured here; a model that cannot run here is left out."""
    out = []
    for offer in offers:
        tps = await _measure(generate, offer.name, say, retry_s)
        if tps is None:
            continue
        tps = round(min(1e6, max(0.01, tps)), 2)
        say(f"{offer.name}: {tps:g} tokens/s decode (measured)")
        out.append(offer.model_copy(update={"decode_tps": tps}))
    return out


async def _measure(generate: Generate, name: str, say: Callable[[str], None], retry_s: float) -> float | None:
    """`name`'s decode speed, trying again after a link failure (MEASURE_TRIES); None if it cannot run."""
    for attempt in range(1, MEASURE_TRIES + 1):
        try:
            return await measure_tps(generate, name)
        except LinkFailed as exc:
            if attempt == MEASURE_TRIES:
                say(f"{name}: cannot run here, not offered ({exc.message})")
                return None
            say(f"{name}: {exc.message} Trying again in {retry_s * attempt:g} s.")
            await asyncio.sleep(retry_s * attempt)
        except (HearthError, RuntimeError) as exc:
            say(f"{name}: cannot run here, not offered ({getattr(exc, 'message', exc)})")
            return None
    return None
