"""Spot-checks and canaries (issue 11), with no I/O: which finished job gets which check, what the
check and canary jobs hold, what a check's answer means, and what the verifier is paid.

After a requester's job is done by one worker, with probability `standing.check_rate()`:
- a greedy job (temperature 0) gets a *check* job: another worker, of another owner, scores the
  job's token ids (its first `MAX_CHECK_TOKENS`) under its own copy of the model
  (`Offer.check`), and `verify.verdict` + `verify.text_agrees` say whether they are what the model
  writes and whether the streamed text is their detokenisation;
- a sampled job cannot be compared token by token (workers cannot be made to share a sampler), so
  the worker instead gets a *canary*: a greedy job the coordinator makes up (a prompt from a small
  built-in pool, in the shape of the job it follows: chat or completion, the same max_tokens), which
  the worker cannot tell from a requester's. A canary is always checked.
A job streamed by several workers (failover) is not checked: no one worker wrote it, and the
failover already means its first worker misbehaved or vanished (counted as `aborted`).
Check and canary jobs belong to `CHECKS_ACCOUNT` (no requester lists or pays them); the operator
pays the canary's worker its usual part and the checking worker its prompt and scored tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hearth.public_swarm import verify
from hearth.public_swarm.coordinator.dispatch_rules import JobSpec, prompt_cap
from hearth.public_swarm.coordinator.job_rules import Job, JobState
from hearth.public_swarm.protocol.messages import MAX_CHECK_TOKENS, ChatMessage, CheckRequest, JobRequest, Sampling

CHECKS_ACCOUNT = "operator.checks"
"""The queue's requester of check and canary jobs: no node id looks like it, and no hold pays it."""
CHECK_WAIT_S = 600.0
"""A check or canary not claimed within this long is dropped; a check then ends 'inconclusive'."""
CANARY_PROMPTS = (
    "Explain in two sentences why the sky is blue.",
    "Write a short list of three fruits and their colours.",
    "What is the capital of France? Answer briefly.",
    "Summarise what a hash function does.",
    "Give one tip for keeping houseplants alive.",
    "Describe a cup of tea in one sentence.",
    "Count from one to ten in words.",
    "Why do cats purr? Answer in one paragraph.",
)
"""Made-up prompts for canaries: ordinary requests, nothing that marks them as tests."""


@dataclass(frozen=True)
class Plan:
    """What follows a finished job: nothing, a check of it, or a canary for its worker."""

    kind: str
    """'none', 'check' or 'canary'."""
    worker: str | None = None
    """The worker it tests."""
    reason: str = ""


def is_greedy(request: JobRequest) -> bool:
    return request.sampling.temperature == 0 or request.sampling.top_k == 1


def only_worker(job: Job) -> str | None:
    """The one worker that streamed all of a done job, or None (failover, or nothing streamed)."""
    workers = {w for w, n in job.parts if n > 0}
    finisher = (job.result or {}).get("finisher")
    if len(workers) != 1 or finisher not in workers:
        return None
    return str(finisher)


def plan(job: Job, rate: float, draw: float) -> Plan:
    """What to do after `job` ended: `rate` is its worker's check rate, `draw` uniform in [0, 1)."""
    if job.state is not JobState.DONE or job.purpose == "check":
        return Plan("none", reason="not a finished generation")
    worker = only_worker(job)
    if worker is None or len(job.token_ids) != job.tokens or not job.token_ids:
        return Plan("none", reason="streamed by several workers (failover) or without token ids: not checked")
    if job.purpose == "canary":
        return Plan("check", worker, "a canary is always checked")
    if draw >= rate:
        return Plan("none", worker, "not sampled")
    if is_greedy(JobSpec.from_json(job.request).request):
        return Plan("check", worker, "sampled greedy job")
    return Plan("canary", worker, "sampled job with sampling: a canary instead")


def check_key(job_id: str) -> str:
    return f"check-{job_id}"


def canary_key(job_id: str) -> str:
    return f"canary-{job_id}"


def verifier_pay_key(check_id: str, verifier: str) -> str:
    return f"job-{check_id}-check-{verifier}"


def check_body(job: Job) -> dict[str, Any]:
    """The stored request of the check of `job`: the job's own spec (its price, prompt cap, request
    without resume) and the ids to score. Never the free tier's: the operator pays a check."""
    spec = JobSpec.from_json(job.request)
    ids = list(job.token_ids[:MAX_CHECK_TOKENS])
    body = JobSpec(spec.request, spec.kind, spec.model, spec.price, spec.prompt_cap, None).to_json()
    body["check"] = {"token_ids": ids, "top_k": verify.TOP_K, "cut": len(job.token_ids) > len(ids)}
    return body


def check_request(body: Mapping[str, Any]) -> tuple[CheckRequest, bool]:
    """The Offer.check of a check job's stored request, and whether it scores only a prefix."""
    data = body["check"]
    return CheckRequest(token_ids=list(data["token_ids"]), top_k=int(data["top_k"])), bool(data["cut"])


def canary_spec(job: Job, pick: int) -> JobSpec:
    """A canary in the shape of `job` (chat or completion, its max_tokens), greedy, prompt number
    `pick` of the pool (any integer)."""
    spec = JobSpec.from_json(job.request)
    text = CANARY_PROMPTS[pick % len(CANARY_PROMPTS)]
    shape: dict[str, Any] = ({"messages": [ChatMessage(role="user", content=text)]} if spec.request.messages
                             else {"prompt": text})
    request = JobRequest(**shape, sampling=Sampling(temperature=0.0), max_tokens=spec.request.max_tokens)
    return JobSpec(request, spec.kind, spec.model, spec.price, prompt_cap(request), None)


def judge(ranks: Sequence[int], gaps: Sequence[float], scored_text: str, streamed: str, *, top_k: int,
          cut: bool) -> verify.Verdict:
    """A check's outcome: the scores pass `verify.verdict` and the streamed text is the scored ids'."""
    seen = verify.verdict(ranks, gaps, top_k=top_k)
    if not seen.ok:
        return seen
    if not verify.text_agrees(scored_text, streamed, cut=cut):
        return verify.Verdict(False, "The text it streamed is not the detokenisation of the token ids it sent.")
    return seen


def verifier_pay(prompt_tokens: int, scored: int, spec: JobSpec) -> int:
    """Micro-credits the checking worker earns: the prompt (at most the job's prompt cap) and the
    scored tokens, at the model's price."""
    return (min(max(0, prompt_tokens), spec.prompt_cap) + scored) * spec.price


def too_old(job: Job, now: float, wait_s: float = CHECK_WAIT_S) -> bool:
    """A queued check or canary nobody could claim in time (no worker of another owner; the
    canary's worker gone)."""
    return job.purpose != "user" and job.state is JobState.QUEUED and now - job.created_at > wait_s
