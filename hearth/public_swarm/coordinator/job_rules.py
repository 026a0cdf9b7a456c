"""The job queue's rules, with no I/O: what a job is, which inputs are well formed, and which
state changes each operation may make.

A job is one requester's request for one model (by GGUF sha256 digest), paid for by one ledger
hold. Its life:

    queued --claim--> running --finish--> done
       ^                 |  \\--fail------> failed   (the worker says it cannot; retry=False)
       |                 |
       +--requeue--------+  (lease expired, or fail(retry=True)): attempts + 1, streamed part kept;
                              failed once attempts reaches `max_attempts`
    queued/running --cancel--> cancelled

`jobs.JobQueue` reads a job's row inside one locked transaction, asks these functions what the
change is, and writes it. Every refusal is a `JobInputInvalid` (malformed, 400), `JobNotFound`
(404) or `JobConflict` (409): the coordinator answers with their status and nothing is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from hearth.errors import HearthError, InvalidRequest
from hearth.identity import NODE_ID_LEN
from hearth.public_swarm.ledger import rules as ledger_rules

JOB_ID = re.compile(r"[a-z0-9]{8,64}")
"""A job id (the queue makes 24 hex digits); the same shape as a ledger hold id."""
WORKER_ID = re.compile(rf"[a-z2-7]{{{NODE_ID_LEN}}}")
"""A worker is named by its node id (as in the protocol's Hello)."""
DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_REQUEST_BYTES = 2 * 1024 * 1024
"""The request's JSON, UTF-8 encoded (a 1,000,000-character prompt and its options fit)."""
MAX_TOKENS = 2**20
MAX_TEXT_CHARS = 4 * 1024 * 1024
"""The most text a job may stream (progress and finish refuse more)."""
MAX_REASON_CHARS = 500
MAX_DIGESTS = 64
"""Models one claim may offer (as a worker's Hello)."""
MAX_LEASE_S = 3600.0
MAX_ATTEMPTS = 3
"""Runs a job may lose (its worker stopped, or gave it back) before it is failed."""
MAX_TOKEN_ID = 2**31 - 1
MAX_RESULT_BYTES = 4096
"""A finished job's result (counts, finish reason, receipt) as JSON."""


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


class JobInputInvalid(InvalidRequest):
    """A job id, worker id, digest, size, state or key is malformed or out of range: fix the input."""

    code = "invalid_job_input"


class JobRefused(HearthError):
    """Category: the queue refused a well-formed operation; nothing was written."""

    http_status = 409
    error_type = "invalid_request_error"
    code = "job_refused"


class JobNotFound(JobRefused):
    """No job has that id (or it is another requester's)."""

    http_status = 404
    code = "job_not_found"


class JobConflict(JobRefused):
    """The job is not in a state that allows this (not running on this worker, already final, or the
    text does not continue what was streamed)."""

    code = "job_conflict"


@dataclass(frozen=True)
class Job:
    """One job as the queue holds it. `text`/`tokens` are what was streamed so far (the whole
    result once done): a worker that takes over a requeued job replays the prompt plus `text`."""

    id: str
    requester: str
    digest: str
    request: dict[str, Any]
    max_tokens: int
    hold_id: str | None
    state: JobState
    worker_id: str | None
    attempts: int
    text: str
    tokens: int
    error: str | None
    created_at: float
    updated_at: float
    lease_expires: float | None
    lease_s: float | None = None
    """The lease a claim set; each progress report renews it by this much."""
    token_ids: tuple[int, ...] = ()
    """The token ids of `text` (migration c0003), so a worker resuming the job continues exactly."""
    parts: tuple[tuple[str, int], ...] = ()
    """(worker, tokens) for each worker that streamed, in order; the counts sum to `tokens` when
    ids were reported. Each worker is paid for its part."""
    result: dict[str, Any] | None = None
    """Set when done: finish_reason, prompt_tokens, the finishing worker and its receipt."""
    purpose: str = "user"
    """'user', or (issue 11, `claim_rules`) 'check' (scores `parent`'s tokens) or 'canary'."""
    target: str | None = None
    avoid: tuple[str, ...] = ()
    avoid_owner: str | None = None
    parent: str | None = None
    verified_only: bool = False
    """Who may claim it: only `target`; never one in `avoid` or of `avoid_owner`; only trusted ones."""


# -- checks ---------------------------------------------------------------------------------

def _bad(param: str, want: str, got: object) -> JobInputInvalid:
    return JobInputInvalid(f"{param} must be {want}; got {got!r:.80}", param=param)


def check_job_id(job_id: object) -> str:
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise _bad("job_id", "8-64 characters of a-z, 0-9", job_id)
    return job_id


def check_worker_id(worker_id: object) -> str:
    if not isinstance(worker_id, str) or not WORKER_ID.fullmatch(worker_id):
        raise _bad("worker_id", f"a node id ({NODE_ID_LEN} characters of a-z, 2-7)", worker_id)
    return worker_id


def check_requester(requester: object) -> str:
    try:
        return ledger_rules.check_account(requester, "requester")
    except InvalidRequest as exc:
        raise JobInputInvalid(exc.message, param="requester") from exc


def check_key(key: object) -> str:
    try:
        return ledger_rules.check_key(key)
    except InvalidRequest as exc:
        raise JobInputInvalid(exc.message, param="key") from exc


def check_hold_id(hold_id: object) -> str | None:
    if hold_id is None:
        return None
    try:
        return ledger_rules.check_hold_id(hold_id)
    except InvalidRequest as exc:
        raise JobInputInvalid(exc.message, param="hold_id") from exc


def check_digest(digest: object) -> str:
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise _bad("digest", "a sha256 in 64 lower-case hex digits", digest)
    return digest


def check_digests(digests: object) -> list[str]:
    if not isinstance(digests, list | tuple | set | frozenset) or not 1 <= len(digests) <= MAX_DIGESTS:
        raise _bad("digests", f"1 to {MAX_DIGESTS} digests", digests)
    return sorted({check_digest(d) for d in digests})


def _count(value: object, param: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _bad(param, f"an integer from {low} to {high}", value)
    return value


def check_max_tokens(max_tokens: object) -> int:
    return _count(max_tokens, "max_tokens", 1, MAX_TOKENS)


def check_tokens(tokens: object, max_tokens: int) -> int:
    return _count(tokens, "tokens", 0, max_tokens)


def check_attempts(max_attempts: object) -> int:
    return _count(max_attempts, "max_attempts", 1, 100)


def check_limit(limit: object) -> int:
    return _count(limit, "limit", 1, 1000)


def check_seconds(value: object, param: str, high: float = MAX_LEASE_S) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
        raise _bad(param, f"seconds in (0, {high:.0f}]", value)
    return float(value)


def check_text(text: object, param: str = "text", high: int = MAX_TEXT_CHARS) -> str:
    if not isinstance(text, str) or len(text) > high:
        raise _bad(param, f"text of at most {high} characters", text if not isinstance(text, str) else text[:40])
    return text


def check_token_ids(token_ids: object, tokens: int) -> tuple[int, ...]:
    """The whole stream's token ids: exactly `tokens` of them, each a token id."""
    if not isinstance(token_ids, list | tuple) or len(token_ids) != tokens or not all(
            type(t) is int and 0 <= t <= MAX_TOKEN_ID for t in token_ids):
        raise _bad("token_ids", f"a list of {tokens} token ids", type(token_ids).__name__)
    return tuple(token_ids)


def check_result(result: object) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise _bad("result", "a JSON object", result)
    if len(encode_request(result).encode()) > MAX_RESULT_BYTES:
        raise JobInputInvalid(f"result is over {MAX_RESULT_BYTES} bytes of JSON", param="result")
    return result


def check_state(state: object) -> JobState:
    try:
        return JobState(str(state)) if isinstance(state, str) else JobState("")
    except ValueError:
        raise _bad("state", "one of " + ", ".join(s.value for s in JobState), state) from None


def encode_request(request: object) -> str:
    """The request as canonical JSON (sorted keys), refused when it is no JSON object or too big."""
    if not isinstance(request, dict):
        raise _bad("request", "a JSON object", request)
    try:
        text = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise JobInputInvalid(f"request is not plain JSON: {exc}", param="request") from exc
    if len(text.encode()) > MAX_REQUEST_BYTES:
        raise JobInputInvalid(f"request is over {MAX_REQUEST_BYTES} bytes of JSON", param="request")
    return text


def fingerprint(digest: str, request_json: str, max_tokens: int, hold_id: str | None) -> str:
    """What a submit's idempotency key is bound to (the same key with other arguments is refused)."""
    return ledger_rules.fingerprint("submit", digest, max_tokens, hold_id, request_json)


# -- transitions ----------------------------------------------------------------------------

def require(job: Job | None, job_id: str) -> Job:
    if job is None:
        raise JobNotFound(f"No job {job_id!r}.", param="job_id")
    return job


def _running_on(job: Job, worker_id: str, op: str) -> None:
    if job.state is not JobState.RUNNING or job.worker_id != worker_id:
        raise JobConflict(f"Job {job.id!r} is {job.state.value}"
                          + (" on another worker" if job.state is JobState.RUNNING else "")
                          + f"; {worker_id} cannot {op} it.", param="job_id")


def _grown(job: Job, worker_id: str, text: str, tokens: int, token_ids: tuple[int, ...] | None) -> Job:
    """The job with the stream grown to `text`/`tokens` (and `token_ids`), the new tokens added to
    this worker's part. Refused unless the text (and ids) continue what was streamed."""
    if not text.startswith(job.text):
        raise JobConflict(f"Job {job.id!r}: the text does not continue the {len(job.text)} characters "
                          "already streamed.", param="text")
    if token_ids is not None and job.token_ids and token_ids[:len(job.token_ids)] != job.token_ids:
        raise JobConflict(f"Job {job.id!r}: the token ids do not continue the {len(job.token_ids)} already "
                          "streamed.", param="token_ids")
    parts = list(job.parts)
    if (new := tokens - job.tokens) > 0:
        if parts and parts[-1][0] == worker_id:
            parts[-1] = (worker_id, parts[-1][1] + new)
        else:
            parts.append((worker_id, new))
    return replace(job, text=text, tokens=tokens, parts=tuple(parts),
                   token_ids=job.token_ids if token_ids is None else token_ids)


def plan_progress(job: Job, worker_id: str, text: str, tokens: int, now: float, lease_s: float,
                  token_ids: tuple[int, ...] | None = None) -> Job:
    """The running job with `text`/`tokens` (and their `token_ids`) as the whole stream so far and
    its lease renewed. The text must continue what was streamed (a resumed job starts from it); a
    stale report (fewer tokens than stored) only renews the lease, so retries and reordering are
    harmless."""
    _running_on(job, worker_id, "report progress on")
    check_tokens(tokens, job.max_tokens)
    if tokens < job.tokens:
        return replace(job, updated_at=now, lease_expires=now + lease_s)
    return replace(_grown(job, worker_id, text, tokens, token_ids), updated_at=now, lease_expires=now + lease_s)


def plan_finish(job: Job, worker_id: str, text: str, tokens: int, now: float,
                token_ids: tuple[int, ...] | None = None, result: dict[str, Any] | None = None) -> Job:
    """Done with the whole result. Finishing again with the same result is a no-op (a retry)."""
    if job.state is JobState.DONE and job.worker_id == worker_id and job.text == text and job.tokens == tokens:
        return job
    _running_on(job, worker_id, "finish")
    check_tokens(tokens, job.max_tokens)
    if tokens < job.tokens:
        raise JobConflict(f"Job {job.id!r}: the result is shorter than what was streamed.", param="tokens")
    grown = _grown(job, worker_id, text, tokens, token_ids)
    return replace(grown, state=JobState.DONE, updated_at=now, lease_expires=None, result=result)


def plan_release(job: Job, worker_id: str, reason: str, now: float) -> Job:
    """The worker declined the job before streaming any of it: back to the queue as it was, not
    counted as a lost attempt. The same report again is a no-op."""
    if job.state is JobState.QUEUED and job.worker_id is None:
        return job
    _running_on(job, worker_id, "give back")
    return replace(job, state=JobState.QUEUED, worker_id=None, lease_expires=None, updated_at=now,
                   error=reason[:MAX_REASON_CHARS])


def plan_requeue(job: Job, now: float, max_attempts: int, reason: str) -> Job:
    """A run was lost: back to the queue with what was streamed kept, or failed when it was the last."""
    attempts = job.attempts + 1
    if attempts >= max_attempts:
        return replace(job, state=JobState.FAILED, attempts=attempts, worker_id=None, lease_expires=None,
                       updated_at=now, error=f"gave up after {attempts} attempts; last: {reason}"[:MAX_REASON_CHARS])
    return replace(job, state=JobState.QUEUED, attempts=attempts, worker_id=None, lease_expires=None,
                   updated_at=now, error=reason[:MAX_REASON_CHARS])


def plan_fail(job: Job, worker_id: str, reason: str, retry: bool, now: float, max_attempts: int) -> Job:
    """The worker gives the job up: requeued (`retry`) or failed. The same report again is a no-op."""
    if job.worker_id is None and job.error == reason and job.state in (JobState.FAILED, JobState.QUEUED):
        return job
    _running_on(job, worker_id, "fail")
    if retry:
        return plan_requeue(job, now, max_attempts, reason)
    return replace(job, state=JobState.FAILED, worker_id=None, lease_expires=None, updated_at=now, error=reason)


def plan_cancel(job: Job, requester: str, now: float) -> Job:
    """The requester drops the job; cancelling a cancelled job is a no-op, a done or failed one a conflict."""
    if job.requester != requester:
        raise JobNotFound(f"No job {job.id!r}.", param="job_id")
    if job.state is JobState.CANCELLED:
        return job
    if job.state in FINAL:
        raise JobConflict(f"Job {job.id!r} is already {job.state.value}.", param="job_id")
    return replace(job, state=JobState.CANCELLED, worker_id=None, lease_expires=None, updated_at=now,
                   error="cancelled by the requester")


def plan_drop(job: Job, reason: str, now: float) -> Job:
    """The coordinator drops a job that can no longer be paid for (its hold expired): a queued or
    running job is cancelled with `reason`; a final one is left as it is."""
    if job.state in FINAL:
        return job
    return replace(job, state=JobState.CANCELLED, worker_id=None, lease_expires=None, updated_at=now, error=reason)
