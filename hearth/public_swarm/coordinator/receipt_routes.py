"""`GET /v1/receipts` (signed, issue 11): the signer's finished jobs with their receipts, newest
first, `limit` at most MAX_LIST (`receipts_wire`). The job rows give the receipt, the worker's key
and what the coordinator charged; the ledger's entries give what the signer actually paid for each
job's hold. Database reads run in FastAPI's thread pool (a sync route)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Depends, FastAPI, Query
from sqlalchemy import select

from hearth.public_swarm.coordinator.auth import signer_of
from hearth.public_swarm.coordinator.dispatch import Dispatcher, ended
from hearth.public_swarm.coordinator.dispatch_rules import JobSpec
from hearth.public_swarm.coordinator.job_rules import Job, JobState
from hearth.public_swarm.coordinator.job_tables import jobs
from hearth.public_swarm.coordinator.job_wire import model_name
from hearth.public_swarm.coordinator.jobs import _job
from hearth.public_swarm.coordinator.receipts_wire import LIST_LIMIT, MAX_LIST, RECEIPTS, ReceiptList, ReceiptView
from hearth.public_swarm.ledger.models import entries


def finished_jobs(dispatcher: Dispatcher, account: str, limit: int) -> list[Job]:
    """`account`'s own done jobs (not the coordinator's checks), newest first."""
    query = (select(jobs).where(jobs.c.requester == account, jobs.c.state == JobState.DONE.value,
                                jobs.c.purpose == "user")
             .order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit))
    with dispatcher.queue.engine.connect() as conn:
        return [_job(row) for row in conn.execute(query)]


def charged(dispatcher: Dispatcher, account: str, hold_ids: Sequence[str]) -> dict[str, int]:
    """What each hold cost `account` on the ledger: what it set aside minus what came back."""
    if not hold_ids:
        return {}
    query = select(entries.c.hold_id, entries.c.debit, entries.c.credit, entries.c.amount).where(
        entries.c.hold_id.in_(list(hold_ids)), (entries.c.debit == account) | (entries.c.credit == account))
    out = dict.fromkeys(hold_ids, 0)
    with dispatcher.ledger.engine.connect() as conn:
        for hold_id, debit, credit, amount in conn.execute(query):
            out[hold_id] += amount if debit == account else 0
            out[hold_id] -= amount if credit == account else 0
    return out


def receipt_view(job: Job, paid: dict[str, int]) -> ReceiptView:
    end, cap = ended(job), JobSpec.from_json(job.request).prompt_cap
    result = job.result or {}
    receipt, key = result.get("receipt"), result.get("worker_key")
    return ReceiptView(job_id=job.id, model=model_name(job), model_digest=job.digest, created_at=job.created_at,
                       price=end.price, prompt_tokens=min(end.prompt_tokens, cap),
                       completion_tokens=end.completion_tokens, workers=list(end.workers), cost=end.cost,
                       charged=None if job.hold_id is None else paid.get(job.hold_id, 0), hold_id=job.hold_id,
                       receipt=receipt if isinstance(receipt, str) else None,
                       worker_key=key if isinstance(key, str) and key else None)


def install_receipt_routes(app: FastAPI, dispatcher: Dispatcher) -> None:
    """Add `GET /v1/receipts` (signed: SignedOnly refuses it unsigned) to the coordinator's app."""

    signer = Depends(signer_of)

    @app.get(RECEIPTS)
    def receipts(limit: int = Query(default=LIST_LIMIT, ge=1, le=MAX_LIST), account: str = signer) -> ReceiptList:
        done = finished_jobs(dispatcher, account, limit)
        paid = charged(dispatcher, account, [j.hold_id for j in done if j.hold_id is not None])
        return ReceiptList(data=[receipt_view(job, paid) for job in done])
