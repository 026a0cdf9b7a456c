"""Spot-checks and canaries on the queue and the ledger (issue 11; `verifier_rules` says what).

The dispatcher calls `ended(job)` once for each job its process made final: a requester's job done
by one worker may get a check job (greedy) or a canary for its worker (sampled), at the worker's
check rate; a done canary always gets a check; a check job that ended without an answer (its
checkers kept vanishing) is inconclusive. `checked(...)` takes a checking worker's answer: the
verdict goes to `Trust.decide` (escrow forfeited and reputation dropped on a failure) and the
operator pays the checking worker. `sweep()` drops checks and canaries nobody could claim in time
(no worker of another owner is linked; the canary's worker left): a dropped check is inconclusive.

Every step is keyed by the job ids (submit keys, ledger keys, the check's id = its job's id), so a
retry or a second coordinator process repeats nothing.
"""

from __future__ import annotations

import logging
import random as _random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from sqlalchemy import select, update

from hearth.public_swarm import verify
from hearth.public_swarm.coordinator import events as E
from hearth.public_swarm.coordinator import verifier_rules as V
from hearth.public_swarm.coordinator.dispatch_rules import JobSpec
from hearth.public_swarm.coordinator.job_rules import Job, JobRefused, JobState
from hearth.public_swarm.coordinator.job_tables import checks, jobs
from hearth.public_swarm.coordinator.jobs import JobQueue, _job
from hearth.public_swarm.ledger.db import Ledger

log = logging.getLogger("hearth.coordinator.verifier")

SWEEP_BATCH = 100


class TrustBook(Protocol):
    """What the dispatcher and the verifier use of `trust.Trust` (contract C6)."""

    def seen(self, node_id: str, address: str) -> Any: ...

    def standing(self, node_id: str) -> Any: ...

    def standings(self, node_ids: Iterable[str]) -> dict[str, Any]: ...

    def finished(self, node_id: str) -> None: ...

    def aborted(self, node_id: str) -> None: ...

    def suspect(self, node_id: str, reason: str) -> Any: ...

    def sweep(self) -> None: ...

    def open_check(self, check_id: str, job_id: str, worker: str) -> None: ...

    def decide(self, check_id: str, verifier: str, ok: bool, reason: str) -> Any: ...

    def payee(self, node_id: str) -> str: ...


class Verifier:
    events: E.SwarmEvents | None = None
    """Where each check's verdict is told (`check_done`); the dispatcher sets its own."""

    def __init__(self, queue: JobQueue, ledger: Ledger, trust: TrustBook, *,
                 random: Callable[[], float] = _random.random, clock: Callable[[], float] = time.time,
                 wait_s: float = V.CHECK_WAIT_S) -> None:
        self.queue, self.ledger, self.trust = queue, ledger, trust
        self.random, self.clock, self.wait_s = random, clock, wait_s

    def ended(self, job: Job) -> V.Plan:
        """After `job` became final: queue its check or canary, or mark its check inconclusive."""
        if job.purpose == "check":
            if job.state is not JobState.DONE:
                self._inconclusive(job, job.error or job.state.value)
            return V.Plan("none")
        worker = V.only_worker(job)
        standing = None if worker is None else self.trust.standing(worker)
        rate = verify.NEW_RATE if standing is None else float(standing.check_rate())
        plan = V.plan(job, rate, self.random())
        if plan.kind == "check" and plan.worker is not None:
            self._check(job, plan.worker, None if standing is None else standing.owner)
        elif plan.kind == "canary" and plan.worker is not None:
            self._canary(job, plan.worker)
        return plan

    def _canary(self, job: Job, worker: str) -> Job:
        spec = V.canary_spec(job, int(self.random() * 1_000_000))
        canary = self.queue.submit(V.CHECKS_ACCOUNT, V.canary_key(job.id), job.digest, spec.to_json(),
                                   spec.request.max_tokens, None, purpose="canary", target=worker, parent=job.id)
        log.info("job %s: canary %s for worker %s", job.id, canary.id, worker)
        return canary

    def _check(self, job: Job, worker: str, owner: str | None) -> Job:
        body = V.check_body(job)
        check = self.queue.submit(V.CHECKS_ACCOUNT, V.check_key(job.id), job.digest, body,
                                  len(body["check"]["token_ids"]), None, purpose="check", avoid=[worker],
                                  avoid_owner=owner or f"local:{worker}", parent=job.id)
        self.trust.open_check(check.id, job.id, worker)
        log.info("job %s (%s, worker %s): check %s queued", job.id, job.purpose, worker, check.id)
        return check

    def checked(self, check: Job, verifier: str, prompt_tokens: int, ranks: Sequence[int], gaps: Sequence[float],
                text: str, picks: Sequence[int] | None = None, sampler: str | None = None) -> verify.Verdict:
        """A checking worker's answer to `check` (running on it; `sampler` is the one it named, and
        `picks` a replay's seeded picks): pay it, decide the checked worker's check, and finish the
        check job. Safe to repeat (keys; `decide` applies once)."""
        parent = self.queue.get(check.parent) if check.parent else None
        request, cut = V.check_request(check.request)
        spec = JobSpec.from_json(check.request)
        if parent is None or (worker := V.only_worker(parent)) is None:
            self._inconclusive(check, "the checked job is gone")
            return verify.Verdict(False, "the checked job is gone")
        amount = V.verifier_pay(prompt_tokens, len(ranks), spec)
        if amount > 0:
            self.ledger.grant(self.trust.payee(verifier), amount, V.verifier_pay_key(check.id, verifier))
        wanted = V.replay_sampler(check.request)
        if wanted is not None and (picks is None or sampler != wanted):
            return self._unlike(check, parent, worker, verifier, sampler)
        replay = None if picks is None else (request.token_ids, picks)
        outcome = V.judge(ranks, gaps, text, parent.text, top_k=request.top_k, cut=cut, replay=replay)
        self.trust.decide(check.id, verifier, outcome.ok, outcome.reason)
        log.log(logging.INFO if outcome.ok else logging.WARNING, "check %s of job %s on %s by %s: %s %s", check.id,
                parent.id, worker, verifier, "passed" if outcome.ok else "FAILED", outcome.reason)
        self.queue.finish(check.id, verifier, "", 0, [], {
            "outcome": "passed" if outcome.ok else "failed", "reason": outcome.reason[:400],
            "prompt_tokens": prompt_tokens, "scored": len(ranks), "checked": worker})
        self._tell("passed" if outcome.ok else "failed", worker)
        return outcome

    def _unlike(self, check: Job, parent: Job, worker: str, verifier: str, sampler: str | None) -> verify.Verdict:
        """A replay answered by a worker of another sampler proves nothing: the check is
        inconclusive and the checked worker gets a canary instead (once: keyed by its job)."""
        reason = f"the checker's sampler {sampler!r:.90} is not the checked worker's"
        self._inconclusive(check, reason)
        self.queue.finish(check.id, verifier, "", 0, [], {"outcome": "inconclusive", "reason": reason,
                                                          "checked": worker})
        self._canary(parent, worker)
        return verify.Verdict(False, reason)

    def sweep(self) -> list[str]:
        """Drop checks and canaries queued for longer than `wait_s`; the ids dropped."""
        now = self.clock()
        with self.queue.engine.connect() as conn:
            rows = conn.execute(select(jobs).where(jobs.c.purpose != "user", jobs.c.state == JobState.QUEUED.value,
                                                   jobs.c.created_at < now - self.wait_s)
                                .order_by(jobs.c.created_at).limit(SWEEP_BATCH)).all()
        out = []
        for job in (_job(r) for r in rows):
            if not V.too_old(job, now, self.wait_s):
                continue
            try:
                dropped = self.queue.drop(job.id, "no worker could take it in time")
            except JobRefused as exc:
                log.info("%s %s not dropped: %s", job.purpose, job.id, exc.message)
                continue
            if dropped.state is JobState.CANCELLED:
                out.append(job.id)
                if job.purpose == "check":
                    self._inconclusive(dropped, "no worker of another owner could check it in time")
        return out

    def _tell(self, verdict: str, worker: str | None) -> None:
        if self.events is not None:
            self.events.emit(E.check_done(verdict, worker))

    def _inconclusive(self, check: Job, reason: str) -> None:
        """The check's row ends 'inconclusive' (once; nothing happens to the checked worker). Written
        here because `Trust` (contract C6) has no such operation: the guard on 'pending' keeps
        `Trust.decide` and this from both applying."""
        with self.queue.engine.begin() as conn:
            made = conn.execute(update(checks).where(checks.c.id == check.id, checks.c.outcome == "pending")
                                .values(outcome="inconclusive", reason=reason[:400], decided_at=self.clock())).rowcount
            worker = conn.execute(select(checks.c.worker).where(checks.c.id == check.id)).scalar() if made else None
        if made:
            self._tell("inconclusive", worker)
        log.info("check %s of job %s: inconclusive (%s)", check.id, check.parent, reason)
