"""`/v1/jobs`: the coordinator's async batch jobs (issue 10, contract C1).

A job is submitted once and runs whether or not its requester stays connected; it lives in the
durable JobQueue, so it survives a coordinator restart and any coordinator process on the same
database answers for it.

Who may see what: a signed request acts for its signer (billed to its credits). An unsigned one
acts for its client address (the socket's peer address; X-Forwarded-For is not trusted), whose
free allowance pays, and sees only the jobs that address submitted: `dispatch_rules.free_account`
names them, and no signer's account looks like one. Another's job id answers 404, as an unknown
one does, so ids cannot be probed.

Database calls run in FastAPI's thread pool (sync routes), never on the event loop.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from fastapi import FastAPI, Query, Request
from sqlalchemy import Engine, select

from hearth.errors import InvalidRequest
from hearth.public_swarm.coordinator import job_rules as R
from hearth.public_swarm.coordinator.auth import signer_or_none
from hearth.public_swarm.coordinator.dispatch import Dispatcher, ended
from hearth.public_swarm.coordinator.dispatch_rules import free_account
from hearth.public_swarm.coordinator.job_rules import Job, JobState
from hearth.public_swarm.coordinator.job_tables import jobs
from hearth.public_swarm.coordinator.job_wire import (
    JOBS,
    LIST_LIMIT,
    MAX_LIST,
    MAX_PRICE_HEADER,
    VERIFIED_ONLY_HEADER,
    JobList,
    JobResult,
    JobSubmit,
    JobView,
    Usage,
    estimate_wait,
    max_price,
    verified_only,
    view,
)
from hearth.public_swarm.coordinator.retention_rules import Policy, result_gone

RECENT_JOBS = 20
"""Done jobs of a model whose length the wait estimate averages."""
RECENT_S = 3600.0
"""...finished within this long."""


@dataclass(frozen=True)
class Requester:
    """Who a request acts for: the signer, or an unsigned client address's free account."""

    account: str
    address: str | None
    """The client address whose free allowance pays; None for a signed request."""


def requester_of(request: Request) -> Requester:
    signer = signer_or_none(request)
    if signer is not None:
        return Requester(signer, None)
    host = request.client.host if request.client is not None else ""
    if not host:
        raise InvalidRequest("An unsigned request needs a client address; sign it with a hearth identity.")
    return Requester(free_account(host), host)


def recent_tokens(engine: Engine, digest: str, now: float) -> list[int]:
    """Output tokens of the model's last RECENT_JOBS done jobs (finished within RECENT_S)."""
    query = (select(jobs.c.tokens).where(jobs.c.digest == digest, jobs.c.state == JobState.DONE.value,
                                         jobs.c.updated_at >= now - RECENT_S)
             .order_by(jobs.c.updated_at.desc()).limit(RECENT_JOBS))
    with engine.connect() as conn:
        return [int(n) for n in conn.execute(query).scalars()]


def result_of(job: Job, policy: Policy, now: float, *, withhold: bool = False) -> JobResult | None:
    """A done job's result; once fetched (or expired), or in a view that does not deliver it
    (`withhold`), its text is empty and `gone` says why."""
    if job.state is not JobState.DONE:
        return None
    end = ended(job)
    usage = Usage(prompt_tokens=end.prompt_tokens, completion_tokens=end.completion_tokens,
                  total_tokens=end.prompt_tokens + end.completion_tokens, cost_credits=end.cost, price=end.price)
    gone = result_gone(job.request, has_text=bool(job.text), ended_at=job.updated_at, policy=policy, now=now)
    shown = gone or ("withheld" if withhold else None)
    return JobResult(text="" if shown else job.text, finish_reason=end.finish_reason, usage=usage, gone=shown)


class JobViews:
    """JobViews with their queue position and estimated wait (one estimate per model and call)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def __call__(self, batch: list[Job], *, withhold: bool = False) -> list[JobView]:
        """The views; `withhold`: results without their text (the list, a peek: nothing delivered)."""
        queue = self.dispatcher.queue
        now = queue.clock()
        speeds: dict[str, list[float]] = {}
        for link in list(self.dispatcher.links.by_node.values()):
            for offer in {m.digest: m for m in link.models}.values():
                speeds.setdefault(offer.digest, []).append(offer.decode_tps)
        lengths: dict[str, list[int]] = {}
        out = []
        for job in batch:
            position = wait = None
            if job.state is JobState.QUEUED:
                position = queue.position(job.id)
                if job.digest not in lengths:
                    lengths[job.digest] = recent_tokens(queue.engine, job.digest, now)
                wait = estimate_wait(position, lengths[job.digest], speeds.get(job.digest, []))
            out.append(view(job, position=position, wait_s=wait,
                             result=result_of(job, self.dispatcher.retention.policy, now, withhold=withhold)))
        return out


def own_job(dispatcher: Dispatcher, job_id: str, account: str) -> Job:
    """The job `job_id` if `account` submitted it; JobNotFound (404) otherwise, as for no job at all."""
    job = dispatcher.queue.get(R.check_job_id(job_id))
    if job is None or job.requester != account:
        raise R.JobNotFound(f"No job {job_id!r} of yours.", param="job_id")
    return job


def install_job_routes(app: FastAPI, dispatcher: Dispatcher) -> None:
    """Add `POST/GET /v1/jobs` and `GET/DELETE /v1/jobs/{id}` to the coordinator's app."""
    views = JobViews(dispatcher)

    @app.post(JOBS, status_code=202)
    def submit(body: JobSubmit, request: Request) -> JobView:
        who = requester_of(request)
        ceiling = max_price(request.headers.get(MAX_PRICE_HEADER))
        only = body.verified_only or verified_only(request.headers.get(VERIFIED_ONLY_HEADER))
        job = dispatcher.open_job(who.account, body.key or secrets.token_hex(16), body.model, body.job_request(),
                                  ceiling, kind=body.kind, free_address=who.address, verified_only=only)
        return views([job])[0]

    @app.get(JOBS)
    def listed(request: Request, state: str | None = Query(default=None, max_length=16),
               limit: int = Query(default=LIST_LIMIT, ge=1, le=MAX_LIST)) -> JobList:
        who = requester_of(request)
        # no text in a list: a result is delivered once, by GET /v1/jobs/{id} (privacy, retention)
        return JobList(data=views(dispatcher.queue.list_for(who.account, state=state, limit=limit), withhold=True))

    @app.get(JOBS + "/{job_id}")
    def one(job_id: str, request: Request, peek: bool = Query(default=False)) -> JobView:
        """The job; once done, its result text, delivered (forgotten after). `peek`: the state and
        usage only, the text withheld and still there to fetch."""
        shown = views([own_job(dispatcher, job_id, requester_of(request).account)], withhold=peek)[0]
        if shown.result is not None and shown.result.gone is None:  # fetched now: forget its text (retention)
            dispatcher.retention.delivered(shown.id)
        return shown

    @app.delete(JOBS + "/{job_id}")
    def cancel(job_id: str, request: Request) -> JobView:
        who = requester_of(request)
        own_job(dispatcher, job_id, who.account)
        return views([dispatcher.cancel(job_id, who.account)])[0]
