"""Spot-checks and canaries (issue 11), with no I/O: which finished job gets which check, what the
check and canary jobs hold, what a check's answer means, and what the verifier is paid.

After a requester's job is done by one worker, with probability `standing.check_rate()`:
- a greedy job (temperature 0) gets a *check* job: another worker, of another owner, scores the
  job's token ids (its first `MAX_CHECK_TOKENS`) under its own copy of the model
  (`Offer.check`), and `verify.verdict` + `verify.text_agrees` say whether they are what the model
  writes and whether the streamed text is their detokenisation;
- a sampled job whose worker named its sampler (`Hello.sampler`) gets a *replay* check: it ran with
  a seed (the requester's, else `job_seed` of its id, which the dispatcher put in the Offer), so
  another worker naming the same sampler re-runs it teacher-forced with that seed
  (`CheckRequest.replay`) and `verify.replay_verdict` compares its picks with the job's tokens.
  A checker whose sampler turns out to differ makes the check inconclusive and the worker a canary;
- any other sampled job cannot be compared token by token, so the worker instead gets a *canary*:
  a greedy job the coordinator makes up (a prompt from a small built-in pool, in the shape of the
  job it follows: chat or completion, the same max_tokens), which the worker cannot tell from a
  requester's. A canary is always checked.
A job streamed by several workers (failover) is not checked: no one worker wrote it, and the
failover already means its first worker misbehaved or vanished (counted as `aborted`).
Check and canary jobs belong to `CHECKS_ACCOUNT` (no requester lists or pays them); the operator
pays the canary's worker its usual part and the checking worker its prompt and scored tokens.
"""

from __future__ import annotations

import hashlib
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


def job_seed(job_id: str) -> int:
    """The seed of a sampled job whose requester gave none: fixed by its id, so the job's Offer,
    a failover's Offer and its replay check all draw alike (and the requester's jobs still differ)."""
    return int.from_bytes(hashlib.sha256(b"hearth-seed:" + job_id.encode()).digest()[:4], "big")


def seeded(request: JobRequest, job_id: str) -> JobRequest:
    """`request` with its seed set (to `job_seed(job_id)` unless it has one): what a sampled job's
    Offer carries. A greedy request is returned as it is."""
    if is_greedy(request) or request.sampling.seed is not None:
        return request
    sampling = request.sampling.model_copy(update={"seed": job_seed(job_id)})
    return request.model_copy(update={"sampling": sampling})


def sampler_of(job: Job) -> str | None:
    """The sampler its worker named (stored in the result when it finished), or None."""
    sampler = (job.result or {}).get("sampler")
    return sampler if isinstance(sampler, str) and sampler else None


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
    if sampler_of(job) is not None:
        return Plan("check", worker, "sampled job with sampling: a same-seed re-run")
    return Plan("canary", worker, "sampled job with sampling, its worker names no sampler: a canary instead")


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
    replay = not is_greedy(spec.request)
    request = seeded(spec.request, job.id)
    body = JobSpec(request, spec.kind, spec.model, spec.price, spec.prompt_cap, None).to_json()
    body["check"] = {"token_ids": ids, "top_k": verify.SAMPLER_TOP_K if replay else verify.TOP_K,
                     "cut": len(job.token_ids) > len(ids)}
    if replay:
        body["check"].update(replay=True, sampler=sampler_of(job))
    return body


def check_request(body: Mapping[str, Any]) -> tuple[CheckRequest, bool]:
    """The Offer.check of a check job's stored request, and whether it scores only a prefix."""
    data = body["check"]
    return CheckRequest(token_ids=list(data["token_ids"]), top_k=int(data["top_k"]),
                        replay=bool(data.get("replay", False))), bool(data["cut"])


def replay_sampler(body: Mapping[str, Any]) -> str | None:
    """The sampler a replay check's worker must name (None: the check is no replay)."""
    data = body["check"]
    return str(data.get("sampler") or "") if data.get("replay") else None


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
          cut: bool, replay: tuple[Sequence[int], Sequence[int]] | None = None) -> verify.Verdict:
    """A check's outcome: the scores pass `verify.verdict` (a replay's, given as (the checked ids,
    the checker's picks), `verify.replay_verdict`) and the streamed text is the scored ids'."""
    seen = (verify.verdict(ranks, gaps, top_k=top_k) if replay is None
            else verify.replay_verdict(replay[0], replay[1], ranks, top_k=top_k))
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
