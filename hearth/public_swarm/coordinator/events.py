"""The coordinator's event stream (issue 12): what `GET /v1/swarm/events` carries, one `DashEvent`
per thing that happened in this process: a worker linked or left, a job queued, dispatched, done
or failed, a spot-check decided.

Per process, not per swarm: several coordinators may share one PostgreSQL swarm, and each streams
only what happened in its own process (the workers linked to it, the jobs it opened, dispatched or
settled). A dashboard that wants the whole swarm reads every coordinator's stream, or `GET
/v1/swarm` for counts.

Public, like `/v1/swarm`, so it names no one: a worker by the first `SHORT_ID` characters of its
node id (as the health page does), never a requester, a job id, a key, a prompt or an output.
Facts are numbers and short strings. The functions below only format (no I/O); `SwarmEvents`
publishes their results to this process's `Feed`, which the route turns into Server-Sent Events.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from hearth.errors import HearthError
from hearth.node_api.feed import Fact, Feed
from hearth.public_swarm.coordinator import books_rules as B
from hearth.public_swarm.coordinator.dispatch_rules import JobSpec
from hearth.public_swarm.coordinator.job_rules import Job, JobState
from hearth.public_swarm.ledger.rules import format_credits

log = logging.getLogger("hearth.coordinator.events")

SHORT_ID = 12
"""Characters of a worker's node id an event shows (health.ID_CHARS)."""
MAX_MODELS_TEXT = 120
MAX_NAME = 64
Event = tuple[str, str, dict[str, Fact]]
"""(kind, message, data), as `Feed.publish` takes them."""

_CODE = re.compile(r"[^a-z0-9_]+")
VERDICTS = ("passed", "failed", "inconclusive")


def short(node_id: str | None) -> str:
    return (node_id or "")[:SHORT_ID]


def code(reason: str | None) -> str:
    """A short snake_case reason code (never free text: a reason may name a worker or a job)."""
    text = _CODE.sub("_", (reason or "").lower()).strip("_")[:32].strip("_")
    return text or "unknown"


def name(model: str | None) -> str:
    return (model or "?")[:MAX_NAME]


def model_of(job: Job) -> str:
    """The model name the job was opened for (its stored request), '?' if unreadable."""
    try:
        return name(JobSpec.from_json(job.request).model)
    except HearthError:
        return "?"


def cost_of(job: Job) -> int:
    """Micro-credits the requester pays for a final job: its hold's settlement (0 on the free tier,
    whose workers the operator pays; and 0 for a request this build cannot read, which
    `Books.close` refuses too). The same sum `Books.close` settles and a follower is told."""
    if job.hold_id is None:
        return 0
    try:
        return sum(B.closing(job).paid.values())
    except HearthError:
        return 0


def worker_joined(node_id: str, models: Iterable[str]) -> Event:
    names = sorted({name(m) for m in models})
    listed = ", ".join(names)[:MAX_MODELS_TEXT]
    who = short(node_id)
    return ("worker_joined", f"worker joined: {who}… with {listed or 'no models'}",
            {"worker": who, "models": listed, "n_models": len(names)})


def worker_left(node_id: str, why: str | None) -> Event:
    who, reason = short(node_id), code(why)
    return "worker_left", f"worker left: {who}… ({reason})", {"worker": who, "reason": reason}


def job_queued(model: str) -> Event:
    return "job_queued", f"job queued: {name(model)}", {"model": name(model)}


def job_dispatched(model: str, worker: str) -> Event:
    who = short(worker)
    return "job_dispatched", f"job dispatched: {name(model)} to {who}…", {"model": name(model), "worker": who}


def job_done(model: str, tokens: int, cost: int, ms: int) -> Event:
    return ("job_done", f"job done: {name(model)}, {tokens} tokens, {format_credits(cost)} credits, {ms} ms",
            {"model": name(model), "tokens": tokens, "cost": cost, "ms": ms})


def job_failed(model: str, reason: str | None) -> Event:
    why = code(reason)
    return "job_failed", f"job failed: {name(model)} ({why})", {"model": name(model), "reason": why}


def check_done(verdict: str, worker: str | None) -> Event:
    if verdict not in VERDICTS:
        raise ValueError(f"a check's verdict is one of {VERDICTS}, not {verdict!r}")
    who = short(worker)
    of = f" of {who}…" if who else ""
    return "check_done", f"check {verdict}{of}", {"verdict": verdict, "worker": who}


def job_ended(job: Job, why: str | None = None) -> Event | None:
    """A requester's job made final here: done (tokens, cost, ms from opening to its end) or
    failed (`why`, a reason code; a cancelled job's is 'cancelled'). None for checks and canaries
    (their outcome is a `check_done`) and for jobs not final."""
    if job.purpose != "user":
        return None
    model = model_of(job)
    if job.state is JobState.DONE:
        ms = max(0, round((job.updated_at - job.created_at) * 1000))
        return job_done(model, job.tokens, cost_of(job), ms)
    if job.state is JobState.CANCELLED:
        return job_failed(model, "cancelled")
    if job.state is JobState.FAILED:
        return job_failed(model, why or "failed")
    return None


class SwarmEvents:
    """Publishes the events above to one process's `Feed` (thread-safe: the dispatcher's database
    work runs in threads). A failure to publish is logged, never raised into a job's path."""

    def __init__(self, feed: Feed | None = None) -> None:
        self.feed = feed if feed is not None else Feed()

    def emit(self, event: Event | None) -> None:
        if event is None:
            return
        kind, message, data = event
        try:
            self.feed.publish(kind, message, **data)
        except ValueError:
            log.exception("event %s not published", kind)
