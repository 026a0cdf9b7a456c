"""The async jobs API's messages (`/v1/jobs`, contract C1), with no I/O: the submit body, the
JobView every route answers, and the estimated wait.

Every field from the network is bounded and strict (unknown fields, wrong types and lone
surrogates are a 400 naming the field, before anything is written). A submit carries what
`POST /v1/chat/completions` or `/v1/completions` would, minus streaming: the job runs whether or
not anyone is connected, and `GET /v1/jobs/{id}` tells how far it is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from hearth.errors import InvalidRequest
from hearth.public_swarm.coordinator.job_rules import Job, JobState
from hearth.public_swarm.protocol.messages import (
    MAX_CHAT_MESSAGES,
    MAX_PROMPT_CHARS,
    MAX_TOKENS,
    ChatMessage,
    JobRequest,
    Sampling,
)

JOBS = "/v1/jobs"
DEFAULT_MAX_TOKENS = 256
LIST_LIMIT = 20
"""Jobs `GET /v1/jobs` shows unless `limit` says otherwise (at most MAX_LIST)."""
MAX_LIST = 100
MAX_PRICE_HEADER = "x-hearth-max-price"
VERIFIED_ONLY_HEADER = "x-hearth-verified-only"
"""`1`: only a trusted (verified) worker may run the job (issue 11); it waits for one."""
_PRICE = re.compile(r"[0-9]{1,12}")
MAX_WAIT_S = 7 * 86_400.0
"""Estimates past a week are not estimates: shown as unknown (null)."""


def _storable(value: str) -> str:
    """Text a database stores as sent: no lone surrogates (JSON can carry \\ud800) and no NUL
    (PostgreSQL's text refuses it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode text (a lone surrogate at character {exc.start})") from None
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


Text = Annotated[str, AfterValidator(_storable)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Message(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: Text = Field(max_length=MAX_PROMPT_CHARS)


StopWord = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_storable)]


class JobSubmit(_Strict):
    """`POST /v1/jobs`: an OpenAI chat (`messages`) or completion (`prompt`) request, not streamed,
    with an optional idempotency `key` (the same key from the same requester returns the first job)."""

    model: Text = Field(min_length=1, max_length=200)
    messages: list[Message] | None = Field(default=None, min_length=1, max_length=MAX_CHAT_MESSAGES)
    prompt: Text | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    stop: StopWord | list[StopWord] | None = Field(default=None)
    key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:-]{8,128}$")
    verified_only: bool = False
    """Only a trusted worker may run it (as the X-Hearth-Verified-Only header)."""

    @model_validator(mode="after")
    def _one_input(self) -> JobSubmit:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a job has either 'messages' (chat) or 'prompt' (completion), not both and not neither")
        return self

    @property
    def kind(self) -> str:
        return "chat" if self.messages is not None else "completion"

    def job_request(self) -> JobRequest:
        """The generation request the dispatcher queues; its own limits refused as a 400."""
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        sampling: dict[str, Any] = {"stop": stop}
        for name in ("temperature", "top_p", "seed"):
            if (value := getattr(self, name)) is not None:
                sampling[name] = value
        try:
            messages = None if self.messages is None else [ChatMessage(role=m.role, content=m.content)
                                                           for m in self.messages]
            return JobRequest(messages=messages, prompt=self.prompt, sampling=Sampling(**sampling),
                              max_tokens=self.max_tokens)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise InvalidRequest(f"Invalid job: {where}: {first['msg']}.", param=where) from None


def verified_only(header: str | None) -> bool:
    """`X-Hearth-Verified-Only`: 1/true asks for trusted workers only; absent, 0 or false does not."""
    if header is None:
        return False
    value = header.strip().lower()
    if value not in ("1", "0", "true", "false"):
        raise InvalidRequest(f"X-Hearth-Verified-Only must be 1 or 0; got {header!r:.40}.",
                             param="X-Hearth-Verified-Only")
    return value in ("1", "true")


def max_price(header: str | None) -> int | None:
    """`X-Hearth-Max-Price` (whole credits per million tokens) as an int, or None when absent."""
    if header is None:
        return None
    if not _PRICE.fullmatch(header.strip()):
        raise InvalidRequest(f"X-Hearth-Max-Price must be whole credits per million tokens; got {header!r:.40}.",
                             param="X-Hearth-Max-Price")
    return int(header)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_credits: int
    """Micro-credits charged (0 on the free allowance)."""
    price: int
    """Credits per million tokens."""


class JobResult(BaseModel):
    text: str
    finish_reason: str | None
    usage: Usage
    gone: Literal["fetched", "expired", "withheld"] | None = None
    """Why `text` is empty: the result was fetched already (it is returned once) or expired
    unfetched (HEARTH_RESULT_TTL_S); "withheld": this view (the list, or a `?peek=true` look) does
    not carry it, and `GET /v1/jobs/{id}` still returns it (once). Null in the view that carries it."""


class JobView(BaseModel):
    """A job as its requester sees it."""

    id: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    model: str
    digest: str
    created_at: float
    position: int | None
    """Queued jobs of the same model ahead of this one (0: next); null unless queued."""
    estimated_wait_s: float | None
    """Seconds until it starts, roughly; null when unknown (or not queued)."""
    result: JobResult | None
    error: str | None


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobView]


def model_name(job: Job) -> str:
    """The model's name fixed when the job was opened (the stored request's `model`), else its digest."""
    name = job.request.get("model") if isinstance(job.request, Mapping) else None
    return name if isinstance(name, str) and name else f"sha256:{job.digest}"


def view(job: Job, *, position: int | None, wait_s: float | None, result: JobResult | None) -> JobView:
    """The JobView of `job`; `result` only for a done job, the error only for a failed one."""
    done = job.state is JobState.DONE
    return JobView(id=job.id, state=job.state.value, model=model_name(job), digest=job.digest,
                   created_at=job.created_at, position=position if job.state is JobState.QUEUED else None,
                   estimated_wait_s=wait_s if job.state is JobState.QUEUED else None,
                   result=result if done else None,
                   error=(job.error or job.state.value) if job.state in (JobState.FAILED, JobState.CANCELLED) else None)


def estimate_wait(position: int | None, recent_tokens: Sequence[int], worker_tps: Sequence[float]) -> float | None:
    """position × mean job time / live workers of the model, where a job's time is the mean
    tokens of the model's recent done jobs over its workers' mean decode speed (from their Hello).
    None when it cannot be known: not queued, no recent job, no live worker."""
    speeds = [s for s in worker_tps if math.isfinite(s) and s > 0]
    tokens = [t for t in recent_tokens if t >= 0]
    if position is None or position < 0 or not tokens or not speeds:
        return None
    job_s = (sum(tokens) / len(tokens)) / (sum(speeds) / len(speeds))
    wait = position * job_s / len(speeds)
    return round(wait, 1) if wait <= MAX_WAIT_S else None
