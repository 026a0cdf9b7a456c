"""The coordinator's dispatcher (issue 10): opens jobs, hands them to linked workers, streams their
output to requesters, and settles each job exactly once.

Pull-based and safe with several coordinator processes on one PostgreSQL: a job is opened into the
durable `JobQueue` (after its ledger hold, or its free allowance), and every process offers jobs
only to its own linked workers, each after `JobQueue.claim` took the job for that worker (SKIP
LOCKED: one job never goes to two workers). The pump wakes on a submit, a job's end, a worker
linking, and a short poll (jobs opened at another process). Worker events (`LiveLinks.on_event`,
see `runs.Runs`) stream into the job's row; a lost or failed run goes back to the queue with what
it streamed (text and token ids), so another worker of the same model resumes it. A timer in every
process requeues jobs whose lease ran out (a coordinator that died), settles jobs a dead process
left final but unsettled (`books`), and expires old holds.

`follow` streams a job to its requester: pushed deltas for jobs running here, polling the row for
jobs running at another process, so no process holds state another needs.

With `trust` (issue 11; `hearth coordinator` always, tests of other things may leave it out):
workers' earnings go to `trust.payee` (escrow while new), a linking worker's standing is recorded
(`Trust.seen`), links closed for a lie are suspicions, each job made final here goes to the
`Verifier` (spot-checks and canaries), and the sweep vests escrows, lifts quarantines and drops
checks nobody could take.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Protocol

from hearth.errors import InvalidRequest
from hearth.models.catalogue import CATALOGUE
from hearth.public_swarm.coordinator import dispatch_rules as D
from hearth.public_swarm.coordinator import events as E
from hearth.public_swarm.coordinator.books import Books
from hearth.public_swarm.coordinator.dispatch_rules import JobEnded, JobSpec, JobUpdate, ServedModel, TextDelta
from hearth.public_swarm.coordinator.job_rules import FINAL, Job, JobNotFound, JobRefused, JobState
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.coordinator.links import Link, LiveLinks
from hearth.public_swarm.coordinator.presence import Presence
from hearth.public_swarm.coordinator.ratelimit_rules import JOBS_PER_REQUESTER, TooManyJobs
from hearth.public_swarm.coordinator.retention import Retention
from hearth.public_swarm.coordinator.runs import Runs
from hearth.public_swarm.coordinator.stats import SwarmStats
from hearth.public_swarm.coordinator.verifier import TrustBook, Verifier
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.ledger.errors import LedgerRefused
from hearth.public_swarm.pricing import check_ceiling, max_cost, price_of_quant
from hearth.public_swarm.protocol.messages import JobRequest

log = logging.getLogger("hearth.coordinator.dispatch")

POLL_S = 0.5
"""How often the pump looks for jobs opened at other processes, and a follower polls a job's row."""
CLOSED_KEPT = 10_000
SWEEP_S = 2.0
"""How often the timer requeues expired leases and expires holds."""


class FreeAllowance(Protocol):
    """The anonymous free allowance (coordinator.allowance.Allowance): tokens per client address."""

    def take(self, address: str, tokens: int) -> None: ...

    def give_back(self, address: str, tokens: int) -> None: ...


class Dispatcher:
    """Jobs from requesters to this process's linked workers. Sync methods block on the database
    (call them in a thread from async code); `follow` and the pump run on the event loop."""

    jobs_per_requester: int = JOBS_PER_REQUESTER
    """Jobs queued or running at once per requester (`Limits.jobs_per_requester`; the app sets it)."""

    def __init__(self, ledger: Ledger, queue: JobQueue, links: LiveLinks, *, stats: SwarmStats,
                 allowance: FreeAllowance | None = None, poll_s: float = POLL_S, sweep_s: float = SWEEP_S,
                 lease_s: float | None = None, trust: TrustBook | None = None,
                 verifier: Verifier | None = None, events: E.SwarmEvents | None = None) -> None:
        self.ledger, self.queue, self.links, self.stats = ledger, queue, links, stats
        self.events = events if events is not None else E.SwarmEvents()
        """This process's event feed (`GET /v1/swarm/events`)."""
        self.allowance = allowance
        self.poll_s, self.sweep_s = poll_s, sweep_s
        self.presence = Presence(queue.engine)
        self.trust = trust
        self.verifier = verifier if verifier is not None or trust is None else Verifier(queue, ledger, trust)
        self.books = (Books(ledger, queue, allowance) if trust is None
                      else Books(ledger, queue, allowance, payee=trust.payee))
        if self.verifier is not None:
            self.verifier.events = self.events
        self.runs = Runs(queue, links, stats, close_books=self.close_books, wake=self.wake, lease_s=lease_s,
                         trust=trust, verifier=self.verifier, events=self.events)
        self.retention = Retention(queue)  # forgets finished jobs' prompts and outputs (issue 11)
        self.known: set[str] = {e.alias for e in CATALOGUE.values()}
        """Model names once served (or in the catalogue): asked for with no live worker, a 503."""
        self._tasks: list[asyncio.Task[None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._closed: dict[str, None] = {}
        """Jobs whose books this process closed (the ledger's keys make settling once; this keeps a
        free job's allowance from being given back twice by a repeated call)."""

    # -- life ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Close the books dead processes left open (`Books.sweep`), then start the loops."""
        await asyncio.to_thread(self.books.sweep)
        self.loop = self.runs.loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.links.on_event = self.runs.on_event
        self.links.on_link = self._linked
        self.links.on_suspect = self._suspect
        self.links.on_unlink = self._unlinked
        self._tasks = [asyncio.create_task(self._pump(), name="dispatch-pump"),
                       asyncio.create_task(self._sweep(), name="dispatch-sweep"),
                       asyncio.create_task(self.runs.flusher(), name="dispatch-flush")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.runs.give_back_all("the coordinator is stopping")

    def _linked(self, node_id: str, link: Link) -> None:
        """A worker linked: record its standing, publish it now (other processes may open jobs for
        it), tell the event stream, and offer it work."""
        self.events.emit(E.worker_joined(node_id, (m.name for m in link.models)))
        if self.trust is not None and self.loop is not None:
            self.runs.spawn(self._seen(self.trust, node_id, link.peer))
        else:
            self.wake()
        if self.loop is not None:
            self.runs.spawn(asyncio.to_thread(self.presence.publish, [
                (n, link.models, link.session.max_jobs) for n, link in list(self.links.by_node.items())]))

    def _unlinked(self, node_id: str, why: str) -> None:
        self.events.emit(E.worker_left(node_id, why))

    async def _seen(self, trust: TrustBook, node_id: str, peer: str) -> None:
        try:
            await asyncio.to_thread(trust.seen, node_id, peer)
        except Exception:  # without a standing it is offered nothing until it links again
            log.exception("worker %s: standing not recorded", node_id)
        self.wake()

    def _suspect(self, node_id: str, reason: str) -> None:
        log.warning("worker %s: suspicion: %s", node_id, reason)
        if self.trust is not None and self.loop is not None:
            self.runs._tell(self.trust.suspect, node_id, reason)

    def wake(self) -> None:
        """Look for work now (thread-safe): a job was opened or ended, or a worker linked."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._wake.set)

    # -- models -------------------------------------------------------------------------------

    def served_models(self) -> list[ServedModel]:
        """Models served by workers linked here or (published in the database) to another process."""
        local = {node_id: link.models for node_id, link in self.links.by_node.items()}
        elsewhere = [models for node_id, models in self.presence.live() if node_id not in local]
        models = D.served_models([*local.values(), *elsewhere])
        self.known.update(m.name for m in models)
        return models

    def resolve(self, model: str) -> ServedModel:
        return D.pick(self.served_models(), model, self.known)

    # -- requesters ---------------------------------------------------------------------------

    def open_job(self, account: str, key: str, model: str, request: JobRequest, max_price: int | None, *,
                 kind: str = "chat", free_address: str | None = None, verified_only: bool = False) -> Job:
        """Queue `request` for `model`, paid by `account`'s credits (a ledger hold of its maximum
        cost) or, with `free_address`, by that address's free allowance; `verified_only`: only a
        trusted worker may take it (it waits for one). Refusals (ModelNotServed,
        NoWorker, PriceAboveCeiling, InsufficientCredits, FreeAllowanceUsed, a bad request) write
        nothing. The same `key` from the same account returns the first job."""
        if self.queue.active_count(account, besides_key=key) >= self.jobs_per_requester:
            raise TooManyJobs(f"This requester has {self.jobs_per_requester} jobs queued or running, the most "
                              "this coordinator allows at once: wait for one to end or cancel one, then retry.")
        served = self.resolve(model)
        check_ceiling(served.price, max_price, model=served.name)
        if request.resume is not None:
            raise InvalidRequest("A request carries no resume data; the coordinator adds it.", param="resume")
        if request.max_tokens >= served.n_ctx:
            raise InvalidRequest(f"max_tokens ({request.max_tokens}) must be below {served.name}'s context of "
                                 f"{served.n_ctx} tokens.", param="max_tokens")
        price = price_of_quant(served.n_params, served.quantization)
        spec = JobSpec(request, kind, served.name, price.per_token, D.prompt_cap(request), free_address,
                       verified_only)
        if free_address is not None:
            return self._open_free(account, key, served, spec)
        hold = self.ledger.hold(account, max_cost(price, spec.prompt_cap, request.max_tokens),
                                D.hold_key(account, key), D.HOLD_TTL_S)
        asked = self.queue.clock()
        try:
            job = self.queue.submit(account, key, served.digest, spec.to_json(), request.max_tokens, hold.id,
                                    verified_only=spec.verified_only)
        except BaseException:
            with contextlib.suppress(LedgerRefused):
                self.ledger.release(hold.id, f"{D.hold_key(account, key)}-undo")
            raise
        self._queued(job, served, asked)
        return job

    def _open_free(self, account: str, key: str, served: ServedModel, spec: JobSpec) -> Job:
        if self.allowance is None:
            raise D.FreeTierClosed("This coordinator has no free allowance: sign the request with a hearth "
                                   "identity (hearth's client does) to pay with credits.")
        assert spec.free_address is not None
        self.allowance.take(spec.free_address, spec.allowance_tokens)
        asked = self.queue.clock()
        try:
            job = self.queue.submit(account, key, served.digest, spec.to_json(), spec.request.max_tokens, None,
                                    verified_only=spec.verified_only)
        except BaseException:
            self.allowance.give_back(spec.free_address, spec.allowance_tokens)
            raise
        self._queued(job, served, asked)
        return job

    def _queued(self, job: Job, served: ServedModel, asked: float) -> None:
        """A job opened here: wake the pump, and tell the stream once (a repeated key returns the
        job it opened first, made before this call was `asked`)."""
        if job.created_at >= asked:
            self.events.emit(E.job_queued(served.name))
        self.wake()

    def hold_amount(self, job: Job) -> int:
        """Micro-credits held for `job` (0 for the free tier)."""
        if job.hold_id is None:
            return 0
        hold = self.ledger.get_hold(job.hold_id)
        return 0 if hold is None else hold.amount

    def cancel(self, job_id: str, account: str) -> Job:
        """Drop a job (the requester went away or asked): its worker is told to stop, and the
        requester pays for what was streamed. Cancelling a job that ended changes nothing."""
        before = self.queue.get(job_id)
        if before is None or before.requester != account:
            return self.queue.cancel(job_id, account)  # raises JobNotFound
        if before.state in FINAL:
            return before
        streamed = self.runs.snapshot(job_id)
        self.runs.stop_local(job_id)
        if streamed is not None:  # write what reached the requester first: it pays for that
            with contextlib.suppress(JobRefused):
                self.queue.progress(job_id, *streamed)
        job = self.queue.cancel(job_id, account)
        self.close_books(job)
        self.wake()
        return job

    async def follow(self, job_id: str) -> AsyncIterator[JobUpdate]:
        """The job's output as it streams (TextDelta), then one JobEnded. Jobs running here are
        pushed; others are polled from their row."""
        sent = 0
        signal = self.runs.subscribe(job_id)
        try:
            while True:
                text = self.runs.local_text(job_id)
                job = None
                if text is None:
                    job = await asyncio.to_thread(self.queue.get, job_id)
                    if job is None:
                        raise JobNotFound(f"No job {job_id!r}.", param="job_id")
                    text = job.text
                if len(text) > sent:
                    yield TextDelta(text[sent:])
                    sent = len(text)
                if job is not None and job.state in FINAL:
                    yield ended(job)
                    return
                signal.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signal.wait(), self.poll_s)
        finally:
            self.runs.unsubscribe(job_id, signal)

    # -- books --------------------------------------------------------------------------------

    def close_books(self, job: Job, why: str | None = None) -> None:
        """Settle a job that just became final, once (ledger keys from the job id): the requester
        pays for what was delivered, each worker is paid its part, the rest returns (`Books.close`).
        Called by the one process whose write made the job final; the sweep catches its death.
        `why`: a failed job's reason code, for the event stream."""
        if job.state not in FINAL or job.id in self._closed:
            return
        self.events.emit(E.job_ended(job, why))
        self._closed[job.id] = None
        while len(self._closed) > CLOSED_KEPT:
            del self._closed[next(iter(self._closed))]
        if job.purpose != "check":  # a check has no hold; the verifier pays its worker
            self.books.close(job)
        if self.verifier is not None:
            try:
                self.verifier.ended(job)
                self.wake()
            except Exception:  # a check not made is not worth the job's books: logged
                log.exception("job %s: spot-check planning failed", job.id)

    # -- loops --------------------------------------------------------------------------------

    async def _pump(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.runs.dispatch_all()
            except Exception:  # a database hiccup must not stop dispatching; it is logged
                log.exception("dispatch round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_s)
            try:
                await asyncio.to_thread(self.sweep_once)
            except Exception:
                log.exception("sweep failed")

    def sweep_once(self) -> None:
        """Publish this process's links; requeue jobs whose lease ran out (settling those that failed
        for good); close books left open by a dead process, then expire holds (`Books.sweep`)."""
        self.presence.publish((node_id, link.models, link.session.max_jobs)
                              for node_id, link in list(self.links.by_node.items()))
        moved = self.queue.requeue_expired()
        for job in moved:
            self.close_books(job, "lease_expired")
        if moved:
            self.wake()
        self.books.sweep()
        if self.trust is not None:
            self.trust.sweep()
        if self.verifier is not None and self.verifier.sweep():
            self.wake()
        self.retention.sweep()


def ended(job: Job) -> JobEnded:
    """The JobEnded a follower sees for a final job, from its row."""
    spec = JobSpec.from_json(job.request)
    result = job.result or {}
    done = job.state is JobState.DONE
    prompt = int(result.get("prompt_tokens", 0)) if done else 0
    completion = job.tokens
    charged_prompt = min(prompt, spec.prompt_cap)
    paid = D.payouts(job.parts, spec.price, prompt_tokens=charged_prompt,
                     finisher=result.get("finisher") if done else None, max_tokens=job.max_tokens)
    cost = 0 if job.hold_id is None else sum(D.not_to_requester(paid, job.requester).values())
    return JobEnded(job.id, job.state.value, result.get("finish_reason") if done else None, prompt, completion,
                    cost, spec.price, workers_of(job.parts), result.get("receipt"),
                    None if done else (job.error or job.state.value))


def workers_of(parts: Iterable[tuple[str, int]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(w for w, n in parts if n > 0))
