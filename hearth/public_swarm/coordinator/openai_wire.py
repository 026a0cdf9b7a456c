"""The requester API's OpenAI shapes (C1), with no I/O: request bodies parsed into a JobRequest, and
the responses and stream chunks built from a job's updates.

Bodies are read as OpenAI clients send them (unknown fields such as `user` are ignored, the known
ones are type-checked strictly and bounded by the protocol's limits); anything wrong is an
InvalidRequest naming the field, before anything is written.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hearth.errors import InvalidRequest, LinkFailed
from hearth.public_swarm.coordinator.dispatch_rules import JobEnded, JobUpdate, ServedModel
from hearth.public_swarm.protocol import messages as m

DEFAULT_MAX_TOKENS = 256
MAX_BODY = 2 * 1024 * 1024
"""The largest request body (a prompt of protocol.MAX_PROMPT_CHARS fits; signed ones are capped
lower by the gate)."""


class JobNotServed(LinkFailed):
    """The job failed on every worker that tried it (or was cancelled): retry, or try another model."""

    http_status = 502
    code = "job_failed"


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class TextPart(_Body):
    type: Literal["text"]
    text: str = Field(max_length=m.MAX_PROMPT_CHARS)


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = Field(default=None, max_length=m.MAX_PROMPT_CHARS)

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class StreamOptions(_Body):
    include_usage: bool = False


class _Common(_Body):
    model: str = Field(min_length=1, max_length=200)
    max_tokens: int | None = Field(default=None, ge=1, le=m.MAX_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    stop: Annotated[str, Field(min_length=1, max_length=64)] | list[
        Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(default=None, max_length=4)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1)

    def sampling(self) -> m.Sampling:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        given: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}
        return m.Sampling.model_validate({"stop": stop, **{k: v for k, v in given.items() if v is not None}})


class ChatBody(_Common):
    messages: list[Message] = Field(min_length=1, max_length=m.MAX_CHAT_MESSAGES)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=m.MAX_TOKENS)


class CompletionBody(_Common):
    prompt: str | list[str] = Field(max_length=m.MAX_PROMPT_CHARS)


def _invalid(exc: ValidationError, what: str) -> InvalidRequest:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"] if "[" not in str(p)) or what
    return InvalidRequest(f"The {what} is wrong at {where[:80]}: {first['msg'][:160]}.", param=where[:80])


def parse_body(raw: bytes, kind: str) -> tuple[ChatBody | CompletionBody, m.JobRequest]:
    """The OpenAI body of a `chat` or `completion` request and the job it asks for."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest("The request body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("The request body is a JSON object.")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")  # refuses lone surrogates, which no worker can take
        body: ChatBody | CompletionBody = (ChatBody if kind == "chat" else CompletionBody).model_validate(data)
    except UnicodeEncodeError as exc:
        raise InvalidRequest("The request holds a lone UTF-16 surrogate; send valid Unicode.") from exc
    except ValidationError as exc:
        raise _invalid(exc, "request body") from exc
    max_tokens = DEFAULT_MAX_TOKENS
    if isinstance(body, ChatBody):
        max_tokens = body.max_completion_tokens or body.max_tokens or max_tokens
        given: dict[str, Any] = {"messages": [
            m.ChatMessage(role="system" if x.role == "developer" else x.role, content=x.text())
            for x in body.messages]}
    else:
        max_tokens = body.max_tokens or max_tokens
        if isinstance(body.prompt, list) and len(body.prompt) != 1:
            raise InvalidRequest("prompt must be one string (or a list of exactly one).", param="prompt")
        given = {"prompt": body.prompt if isinstance(body.prompt, str) else body.prompt[0]}
    try:
        return body, m.JobRequest(sampling=body.sampling(), max_tokens=max_tokens, **given)
    except ValidationError as exc:
        raise _invalid(exc, "request") from exc


# -- responses --------------------------------------------------------------------------------

def usage(end: JobEnded) -> dict[str, Any]:
    return {"prompt_tokens": end.prompt_tokens, "completion_tokens": end.completion_tokens,
            "total_tokens": end.prompt_tokens + end.completion_tokens, "cost_credits": end.cost,
            "price": end.price}


def hearth_obj(end: JobEnded) -> dict[str, Any]:
    return {"served_by": "public", "job_id": end.job_id, "workers": list(end.workers), "receipt": end.receipt}


def completion_id(kind: str, job_id: str) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + job_id


def response(kind: str, model: str, text: str, end: JobEnded, created: int) -> dict[str, Any]:
    """The non-streaming body of a finished job."""
    choice: dict[str, Any] = (
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": end.finish_reason}
        if kind == "chat" else {"index": 0, "text": text, "finish_reason": end.finish_reason, "logprobs": None})
    return {"id": completion_id(kind, end.job_id), "object": "chat.completion" if kind == "chat" else "text_completion",
            "created": created, "model": model, "choices": [choice], "usage": usage(end), "hearth": hearth_obj(end)}


def chunk(kind: str, job_id: str, model: str, created: int, *, text: str | None = None,
          finish_reason: str | None = None, first: bool = False) -> dict[str, Any]:
    """One stream chunk with a choice: the role first (chat), then text, then the finish reason."""
    if kind == "chat":
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else (
            {"content": text} if text is not None else {})
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish_reason, "logprobs": None}
        obj = "text_completion"
    return {"id": completion_id(kind, job_id), "object": obj, "created": created, "model": model, "choices": [choice]}


def usage_chunk(kind: str, model: str, end: JobEnded, created: int) -> dict[str, Any]:
    """The last chunk: no choices, the usage and the `hearth` object (C1)."""
    return {"id": completion_id(kind, end.job_id), "object": "chat.completion.chunk" if kind == "chat"
            else "text_completion", "created": created, "model": model, "choices": [], "usage": usage(end),
            "hearth": hearth_obj(end)}


def sse(obj: dict[str, Any] | str) -> bytes:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n".encode()


def failed(end: JobEnded) -> JobNotServed:
    return JobNotServed(f"Job {end.job_id} {end.state}: {end.error or 'no reason given'}"[:500])


def model_list(models: list[ServedModel]) -> dict[str, Any]:
    """`GET /v1/models`: the OpenAI list, each with hearth's fields."""
    return {"object": "list", "data": [
        {"id": s.name, "object": "model", "created": 0, "owned_by": "hearth-swarm", "digest": s.digest,
         "n_params": s.n_params, "quantization": s.quantization, "n_ctx": s.n_ctx, "price": s.price,
         "workers": s.workers} for s in models]}


def now() -> int:
    return int(time.time())


__all__ = ["JobUpdate"]
