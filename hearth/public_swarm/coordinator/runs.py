"""The dispatcher's jobs running on this process's linked workers: offering, streaming, ending.

One `Run` per job offered to a local link: what this run streamed (text and token ids) on top of
what the job held when claimed. Tokens are pushed to local followers at once and written to the
job's row by the flusher every FLUSH_S (which also renews the lease); a run's end is written in one
place (`_end`), serialised with the flushes by the run's lock. Declined jobs go back to the queue
uncounted and the link cools down before it is offered another; lost or failed runs go back with
what they streamed, so the next worker resumes them.

With trust (issue 11, `trust.Trust` and `verifier.Verifier`): links with room are offered work in
the order of their standing (`Standing.rank()`: reference and trusted first, then the faster), a
quarantined worker is offered nothing, each claim says the worker's owner and whether it is trusted
(`claim_rules`); a check job is offered as `Offer(check=...)` and its JobChecked goes to the
verifier; a finished job counts for its worker (and may raise the too-fast suspicion), a failed or
lost one against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hearth.errors import HearthError
from hearth.net import b64
from hearth.public_swarm import receipts
from hearth.public_swarm.coordinator import events as E
from hearth.public_swarm.coordinator import verifier_rules as V
from hearth.public_swarm.coordinator.dispatch_rules import JobSpec
from hearth.public_swarm.coordinator.job_rules import FINAL, Job, JobConflict
from hearth.public_swarm.coordinator.jobs import LEASE_S, JobQueue
from hearth.public_swarm.coordinator.links import Link, LiveLinks
from hearth.public_swarm.coordinator.stats import SwarmStats
from hearth.public_swarm.coordinator.trust_rules import TrustState, too_fast
from hearth.public_swarm.coordinator.verifier import TrustBook, Verifier
from hearth.public_swarm.protocol.actions import (
    Action,
    JobAccepted,
    JobChecked,
    JobDeclined,
    JobFailed,
    JobFinished,
    JobLost,
    JobTokens,
)
from hearth.public_swarm.protocol.coordinator import Phase
from hearth.public_swarm.protocol.messages import Offer, Resume

log = logging.getLogger("hearth.coordinator.runs")

FLUSH_S = 0.25
"""How often streamed tokens are written to their job's row (other processes' followers read it)."""
COOL_S = 2.0
"""After a decline, a worker is offered no job for this long."""


@dataclass
class Run:
    job: Job
    """The job as claimed: its text and token ids are what earlier runs streamed."""
    link: Link
    worker: str
    text: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    written: int = 0
    """Token ids of this run already in the row."""
    renewed: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ended: bool = False
    started: float = field(default_factory=time.monotonic)

    def full_text(self) -> str:
        return self.job.text + "".join(self.text)

    def full_ids(self) -> list[int]:
        return [*self.job.token_ids, *self.ids]


class Runs:
    """This process's running jobs; the LiveLinks event handler and the flusher."""

    def __init__(self, queue: JobQueue, links: LiveLinks, stats: SwarmStats, *,
                 close_books: Callable[[Job, str | None], None], wake: Callable[[], None],
                 lease_s: float | None = None, trust: TrustBook | None = None,
                 verifier: Verifier | None = None, events: E.SwarmEvents | None = None) -> None:
        self.queue, self.links, self.stats = queue, links, stats
        self.events = events if events is not None else E.SwarmEvents()
        self.trust, self.verifier = trust, verifier
        self.close_books, self.wake = close_books, wake
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lease_s = lease_s or LEASE_S
        self.local: dict[str, Run] = {}
        self.cooling: dict[str, float] = {}
        self.signals: dict[str, set[asyncio.Event]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- followers ----------------------------------------------------------------------------

    def subscribe(self, job_id: str) -> asyncio.Event:
        signal = asyncio.Event()
        self.signals.setdefault(job_id, set()).add(signal)
        return signal

    def unsubscribe(self, job_id: str, signal: asyncio.Event) -> None:
        subs = self.signals.get(job_id)
        if subs is not None:
            subs.discard(signal)
            if not subs:
                del self.signals[job_id]

    def notify(self, job_id: str) -> None:
        for signal in self.signals.get(job_id, ()):
            signal.set()

    def local_text(self, job_id: str) -> str | None:
        run = self.local.get(job_id)
        return None if run is None or run.ended else run.full_text()

    # -- offering -----------------------------------------------------------------------------

    async def dispatch_all(self) -> None:
        """Claim and offer jobs to every local link with room, until the queue has none for it;
        with trust, best standing first and never to a quarantined worker."""
        ready = [(n, link) for n, link in list(self.links.by_node.items()) if self._has_room(n, link)]
        if not ready:
            return
        standings: dict[str, Any] = {}
        if self.trust is not None:
            standings = await asyncio.to_thread(self.trust.standings, [n for n, _ in ready])
            now = time.time()
            ready = [(n, link) for n, link in ready if n in standings and standings[n].may_serve(now)]
            ready.sort(key=lambda nl: (*standings[nl[0]].rank(), -_speed(nl[1])))
        for node_id, link in ready:
            s = standings.get(node_id)
            owner = None if s is None else s.owner
            trusted = s is not None and s.state is TrustState.TRUSTED
            while self._has_room(node_id, link):
                digests = list(link.session.models)
                job = await asyncio.to_thread(self.queue.claim, node_id, digests, self.lease_s,
                                              owner=owner, trusted=trusted)
                if job is None:
                    break
                await self._offer(job, link, node_id)

    def _has_room(self, node_id: str, link: Link) -> bool:
        session = link.session
        if link.closed or session.phase is not Phase.READY or not session.models:
            return False
        if self.cooling.get(node_id, 0.0) > time.monotonic():
            return False
        return len(session.jobs) < session.max_jobs

    async def _offer(self, job: Job, link: Link, node_id: str) -> None:
        spec = JobSpec.from_json(job.request)
        resume = Resume(text=job.text, token_ids=list(job.token_ids)) if job.token_ids else None
        if job.purpose == "check":  # scores the checked job's ids after its prompt: no resume
            resume = None
        request = V.seeded(spec.request, job.id).model_copy(update={"resume": resume})
        run = Run(job, link, node_id)
        self.local[job.id] = run
        try:
            check = V.check_request(job.request)[0] if job.purpose == "check" else None
            offer = Offer(job_id=job.id, model_digest=job.digest, request=type(request).model_validate(
                request.model_dump()), check=check)
            events = await link.offer(offer)
        except (HearthError, ValueError, KeyError, OSError, RuntimeError) as exc:
            events = [JobDeclined(job.id, "offer_failed")]
            log.info("job %s: offer to %s failed: %s", job.id, node_id, exc)
        for event in events:
            self.on_event(link, event)

    # -- events from the links (on the event loop) -------------------------------------------

    def on_event(self, link: Link, event: Action) -> None:
        job_id = getattr(event, "job_id", None)
        run = self.local.get(job_id) if isinstance(job_id, str) else None
        if run is None or run.link is not link or run.ended:
            return
        match event:
            case JobAccepted():
                if run.job.purpose == "user":
                    self.events.emit(E.job_dispatched(E.model_of(run.job), run.worker))
            case JobTokens():
                run.text.append(event.text)
                run.ids.extend(event.token_ids)
                self.stats.record(len(event.token_ids))
                self.notify(run.job.id)
            case JobFinished():
                self.spawn(self._end(run, "finished", event))
            case JobChecked():
                self.spawn(self._end(run, "checked", event))
            case JobDeclined():
                self.cooling[run.worker] = time.monotonic() + COOL_S
                self.spawn(self._end(run, "declined", event.reason))
            case JobFailed():
                self._tell(None if self.trust is None else self.trust.aborted, run.worker)
                self.spawn(self._end(run, "lost", f"worker {run.worker} failed: {event.code}: {event.message}",
                                     "worker_failed"))
            case JobLost():
                self._tell(None if self.trust is None else self.trust.aborted, run.worker)
                self.spawn(self._end(run, "lost", f"worker {run.worker} was lost", "worker_lost"))

    def _tell(self, hook: Callable[..., Any] | None, *args: Any) -> None:
        """Call a Trust method in a thread, its failure logged (a standing is not worth a job)."""
        if hook is not None:
            self.spawn(_logged(hook, *args))

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end(self, run: Run, how: str, detail: Any, why: str | None = None) -> None:
        """`why`: a reason code for the event stream, should the job fail for good."""
        run.ended = True
        async with run.lock:
            try:
                job = await asyncio.to_thread(self._write_end, run, how, detail)
                if job is not None and job.state in FINAL:
                    await asyncio.to_thread(self.close_books, job, why)
            except JobConflict as exc:  # cancelled or moved meanwhile: nothing of ours to write
                log.info("job %s: %s after it changed: %s", run.job.id, how, exc.message)
            except Exception:
                log.exception("job %s: writing its %s failed (the lease will move it)", run.job.id, how)
        if self.local.get(run.job.id) is run:
            del self.local[run.job.id]
        self.notify(run.job.id)
        self.wake()

    def _write_end(self, run: Run, how: str, detail: Any) -> Job | None:
        q, job_id, text, ids = self.queue, run.job.id, run.full_text(), run.full_ids()
        if how == "checked":
            assert isinstance(detail, JobChecked) and self.verifier is not None
            self.verifier.checked(run.job, run.worker, detail.prompt_tokens, detail.ranks, detail.gaps, detail.text,
                                  detail.picks, run.link.session.sampler)
            return None  # the verifier finished the check job; it has no books
        if how == "finished":
            assert isinstance(detail, JobFinished)
            result = {"finish_reason": detail.finish_reason, "prompt_tokens": detail.prompt_tokens,
                      "finisher": run.worker, "receipt": receipts.encode(detail.receipt).decode("ascii"),
                      "worker_key": b64.encode(run.link.session.public_key or b""),  # C9: receipts are checkable
                      "sampler": run.link.session.sampler}  # who may re-run it with its seed
            done = q.finish(job_id, run.worker, text, len(ids), ids, result)
            try:
                self._finished_by(run, len(run.ids))
            except Exception:  # a standing not updated must not leave the job's books open
                log.exception("job %s: the worker's standing was not updated", job_id)
            return done
        if how == "declined" and not run.ids:
            return q.release(job_id, run.worker, f"declined by {run.worker}: {detail}")
        if run.ids:
            q.progress(job_id, run.worker, text, len(ids), ids)
        return q.fail(job_id, run.worker, str(detail), retry=True)

    # -- the flusher --------------------------------------------------------------------------

    async def flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            await self.flush()

    async def flush(self) -> None:
        """Write each running job's new tokens to its row, and renew leases due for it."""
        now = time.monotonic()
        for run in list(self.local.values()):
            due = now - run.renewed > self.lease_s / 3
            if run.ended or (len(run.ids) == run.written and not due):
                continue
            async with run.lock:
                if run.ended:
                    continue
                text, ids = run.full_text(), run.full_ids()
                try:
                    await asyncio.to_thread(self.queue.progress, run.job.id, run.worker, text, len(ids), ids)
                    run.written, run.renewed = len(ids) - len(run.job.token_ids), now
                except JobConflict:  # cancelled, or moved by another process: stop the worker
                    self._stop(run)
                except Exception:
                    log.exception("job %s: progress not written (retried next flush)", run.job.id)

    async def give_back_all(self, reason: str) -> None:
        """Stopping: every job running here goes back to the queue with what it streamed, so another
        process's workers resume it now rather than after its lease; pending writes finish first."""
        for run in list(self.local.values()):
            if not run.ended:
                self.spawn(self._end(run, "lost", reason, "coordinator_stopping"))
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def snapshot(self, job_id: str) -> tuple[str, str, int, list[int]] | None:
        """(worker, text, tokens, token ids) a local job streamed so far, for `JobQueue.progress`."""
        run = self.local.get(job_id)
        if run is None:
            return None
        ids = run.full_ids()
        return run.worker, run.job.text + "".join(list(run.text)), len(ids), ids

    def stop_local(self, job_id: str) -> None:
        """Tell a local job's worker to stop (thread-safe); its later events are ignored."""
        run = self.local.get(job_id)
        loop = self.loop
        if run is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop, run)

    def _stop(self, run: Run) -> None:
        run.ended = True
        if self.local.get(run.job.id) is run:
            del self.local[run.job.id]
        self.notify(run.job.id)
        self.spawn(_perform(run.link, lambda: run.link.session.cancel(run.job.id, time.monotonic())))


    def _finished_by(self, run: Run, tokens: int) -> None:
        """A finished run counts for its worker; streamed faster than its own declared speed allows,
        it is a suspicion (`trust_rules.too_fast`)."""
        if self.trust is None:
            return
        if run.job.purpose == "user":
            self.trust.finished(run.worker)
        declared = _speed(run.link, run.job.digest)
        reason = too_fast(tokens, time.monotonic() - run.started, declared) if declared > 0 else None
        if reason is not None:
            self.trust.suspect(run.worker, reason)


def _speed(link: Link, digest: str | None = None) -> float:
    """The decode speed the worker declared (tokens/s) for `digest`, or its best."""
    speeds = [m.decode_tps for m in link.models if digest is None or m.digest == digest]
    return max(speeds, default=0.0)


async def _logged(hook: Callable[..., Any], *args: Any) -> None:
    try:
        await asyncio.to_thread(hook, *args)
    except Exception:
        log.exception("trust: %s%s failed", getattr(hook, "__name__", "hook"), args)


async def _perform(link: Link, actions: Callable[[], list[Action]]) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        await link.perform(actions())
