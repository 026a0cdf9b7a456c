"""The client side of `/v1/jobs` (async batch jobs), on CoordinatorClient's signed transport.

Requests are signed with the caller's identity, so jobs are billed to its credits and listed for
it; the coordinator's refusals come back as the HearthError its body names (FreeAllowanceUsed,
JobNotFound, ModelNotServed, NoWorker, PriceAboveCeiling, InsufficientCredits, ...). Used by
`hearth jobs`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlencode

from pydantic import ValidationError

from hearth.errors import HearthError, InvalidRequest
from hearth.identity import NodeIdentity
from hearth.public_swarm.coordinator import job_rules as R
from hearth.public_swarm.coordinator.client import CoordinatorClient, _parse, coordinator_url
from hearth.public_swarm.coordinator.job_wire import (
    DEFAULT_MAX_TOKENS,
    JOBS,
    LIST_LIMIT,
    JobList,
    JobSubmit,
    JobView,
    Message,
)
from hearth.settings import Settings

T = TypeVar("T")
POLL_S = 1.0
FINAL = frozenset({"done", "failed", "cancelled"})

class WaitTimedOut(HearthError):
    """The job did not end within --timeout: it keeps running; ask again with `hearth jobs result`."""

    code = "job_wait_timed_out"
    exit_code = 9


class ResultGone(HearthError):
    """A done job's result is returned once: it was fetched already (by `hearth jobs result` or
    `status`) or expired unfetched (HEARTH_RESULT_TTL_S); the coordinator no longer has the text.
    Submit the job again for a new result."""

    code = "job_result_gone"
    exit_code = 11


def gone_note(job: JobView) -> str | None:
    """What to tell a requester whose done job's text is gone, else None."""
    if job.result is None or job.result.gone in (None, "withheld"):
        return None
    why = "was fetched already (a result is returned once)" if job.result.gone == "fetched" \
        else "expired before it was fetched"
    return f"The result of job {job.id} {why}: the coordinator no longer keeps its text. Submit the job again."


class JobsClient(CoordinatorClient):
    """CoordinatorClient plus the jobs routes."""

    async def submit(self, job: JobSubmit, max_price: int | None = None) -> JobView:
        """Queue `job` (202): its view, queued, with its place in line."""
        extra = {"x-hearth-max-price": str(max_price)} if max_price is not None else None
        return _parse(JobView, await self._call("POST", JOBS, job, extra), f"POST {JOBS}")

    async def status(self, job_id: str, *, peek: bool = False) -> JobView:
        """The job; a done one's text is delivered (once) unless `peek`."""
        path = f"{JOBS}/{R.check_job_id(job_id)}" + ("?peek=true" if peek else "")
        return _parse(JobView, await self._call("GET", path), f"GET {path}")

    async def cancel(self, job_id: str) -> JobView:
        path = f"{JOBS}/{R.check_job_id(job_id)}"
        return _parse(JobView, await self._call("DELETE", path), f"DELETE {path}")

    async def list(self, state: str | None = None, limit: int = LIST_LIMIT) -> JobList:
        """The signer's jobs, newest first."""
        query = urlencode({k: v for k, v in (("state", state), ("limit", limit)) if v is not None})
        return _parse(JobList, await self._call("GET", f"{JOBS}?{query}"), f"GET {JOBS}")

    async def result(self, job_id: str, *, wait: bool = False, timeout: float = 600.0, poll_s: float = POLL_S,
                     clock: Callable[[], float] = time.monotonic) -> JobView:
        """The job now or, with `wait`, once it ends (WaitTimedOut after `timeout` seconds);
        ResultGone when it is done but its result was fetched before or expired."""
        if not 0 < timeout <= 7 * 86_400:
            raise InvalidRequest(f"--timeout must be in (0, 604800] seconds; got {timeout!r:.20}", param="timeout")
        deadline = clock() + timeout
        while True:
            job = await self.status(job_id)
            if (note := gone_note(job)) is not None:
                raise ResultGone(note)
            if not wait or job.state in FINAL:
                return job
            if clock() >= deadline:
                raise WaitTimedOut(f"Job {job_id} is still {job.state} after {timeout:g} s; it keeps running: ask "
                                   f"again with `hearth jobs result {job_id} --wait`.")
            await asyncio.sleep(poll_s)


def job_submit(model: str, prompt: str, *, raw: bool = False, max_tokens: int = DEFAULT_MAX_TOKENS,
               temperature: float | None = None, seed: int | None = None, key: str | None = None) -> JobSubmit:
    """The submit body for `prompt` as one user message (or, `raw`, a completion prompt); a bad
    field is an InvalidRequest naming it, before anything is sent."""
    try:
        return JobSubmit(model=model, max_tokens=max_tokens, temperature=temperature, seed=seed, key=key,
                         **({"prompt": prompt} if raw else {"messages": [Message(role="user", content=prompt)]}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "job"
        raise InvalidRequest(f"Invalid job: {where}: {first['msg']}.", param=where) from None


def with_jobs(settings: Settings, url: str | None, action: Callable[[JobsClient], Awaitable[T]]) -> T:
    """Run `action` with a JobsClient for the coordinator at `url` (else HEARTH_COORDINATOR),
    signing as this HEARTH_HOME's identity."""
    base = coordinator_url(url or settings.coordinator)
    identity = NodeIdentity.load_or_create(settings.home)

    async def go() -> T:
        jobs = JobsClient(base, identity)
        async with jobs:
            return await action(jobs)

    return asyncio.run(go())
