"""Closing a job's books, with no I/O: what a final job owes and to whom, and what the sweep does
with jobs whose books a dead coordinator left open.

A job is settled by the process whose write made it final (`Dispatcher.close_books`). If that
process dies between the write and the settlement, the job's hold stays open until it expires
(hours later), and expiry returns everything to the requester: the worker is never paid. So
every coordinator sweeps at start and on its timer (`books.Books.sweep`): each final job whose
hold is still open is closed exactly as the dispatcher would have (`closing`, the same ledger
key: a settlement that did happen is replayed, not repeated). A job still queued or running
whose hold is no longer open (or is past its expiry) can never be paid for: it is dropped
(cancelled), so no worker serves it unpaid. The sweep settles before it expires holds, and a
restarted coordinator sweeps before its first expiry, so only a coordinator down for longer than a
hold's TTL (`dispatch_rules.HOLD_TTL_S`) leaves a final job unsettled: its requester refunded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from hearth.public_swarm.coordinator import dispatch_rules as D
from hearth.public_swarm.coordinator.dispatch_rules import JobSpec
from hearth.public_swarm.coordinator.job_rules import FINAL, Job, JobState
from hearth.public_swarm.ledger.rules import Hold, HoldState

DROP_REASON = "its credit hold expired before it ran"


@dataclass(frozen=True)
class Closing:
    """A final job's books: `paid` (worker -> micro-credits) from its hold under `key`, or, for a
    free-tier job (no hold), paid by the operator with `pay_key(job, worker)` and `give_back`
    tokens returned to the client address's allowance."""

    job_id: str
    hold_id: str | None
    paid: dict[str, int]
    key: str
    free_address: str | None
    give_back: int


def closing(job: Job) -> Closing:
    """What closing a final job's books writes: the requester pays for the tokens delivered (the
    prompt only when done), each worker that streamed is paid its part, the rest returns."""
    if job.state not in FINAL:
        raise ValueError(f"job {job.id} is {job.state.value}, not final")
    spec = JobSpec.from_json(job.request)
    result = job.result or {}
    done = job.state is JobState.DONE
    prompt = min(int(result.get("prompt_tokens", 0)), spec.prompt_cap) if done else 0
    paid = D.payouts(job.parts, spec.price, prompt_tokens=prompt,
                     finisher=result.get("finisher") if done else None, max_tokens=job.max_tokens)
    if job.hold_id is not None:
        paid = D.not_to_requester(paid, job.requester)
    used = prompt + sum(n for _, n in job.parts)
    return Closing(job.id, job.hold_id, paid, D.settle_key(job.id), spec.free_address,
                   max(0, spec.allowance_tokens - used) if spec.free_address is not None else 0)


def paid_to(paid: Mapping[str, int], payee: Callable[[str], str]) -> dict[str, int]:
    """Workers' parts keyed by the account each is paid to now (its own, or its vesting account):
    parts whose payees coincide are added, so nothing is lost if a payee maps two workers together."""
    out: dict[str, int] = {}
    for worker, amount in paid.items():
        account = payee(worker)
        out[account] = out.get(account, 0) + amount
    return out


@dataclass(frozen=True)
class SweepPlan:
    settle: tuple[Job, ...]
    """Final jobs whose hold is still open: close them as the dispatcher would have."""
    drop: tuple[Job, ...]
    """Queued or running jobs whose hold is closed or past expiry: cancel them, they cannot be paid."""


def plan_sweep(pending: Iterable[tuple[Job, Hold | None]], now: float) -> SweepPlan:
    """Sort (job, its hold) pairs into what the sweep does; pairs needing nothing are left out.
    A job with no hold (free tier) is never the sweep's: its books have no open state to find."""
    settle, drop = [], []
    for job, hold in pending:
        if job.hold_id is None or (hold is not None and hold.id != job.hold_id):
            continue
        if job.state in FINAL:
            if hold is not None and hold.state is HoldState.OPEN:
                settle.append(job)
        elif hold is None or hold.state is not HoldState.OPEN or hold.expires_at <= now:
            drop.append(job)
    return SweepPlan(tuple(settle), tuple(drop))
