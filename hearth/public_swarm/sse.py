"""A coordinator's streamed reply read as hearth's engine events (sans-IO: bytes in, events out).

The coordinator streams OpenAI's server-sent events (contract C1): `data: {chunk}` lines, a final
chunk with `choices: []`, `usage` and `hearth` (cost, job id, workers, receipt), then
`data: [DONE]`. `SseLines` cuts bytes into `data` payloads with a bound on each line and on the
whole stream; `ChunkReader` turns payloads into Token, then PublicCost and Done. Anything else
(a line too long, a chunk that is not the shape, a stream that ends early) is one
`PublicStreamInvalid` saying what was wrong, so a misbehaving coordinator is an error, never a
hang, a crash or a wrong bill.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hearth.engine.events import Done, FinishReason, Token
from hearth.errors import HearthError, LinkFailed

MAX_LINE = 256 * 1024
"""Longest SSE line: a chunk carries a few tokens, the final one a receipt."""
MAX_STREAM = 32 * 1024 * 1024
"""Most bytes one streamed reply may carry in all."""
MAX_RECEIPT = 16 * 1024
MAX_WORKERS = 64


class PublicStreamInvalid(LinkFailed):
    """The coordinator's stream is not what hearth's coordinator sends: too long, malformed or cut
    short. Nothing more is read; the reply so far may be incomplete."""

    http_status = 502
    code = "public_stream_invalid"


@dataclass(frozen=True)
class PublicCost:
    """What a public reply cost and who served it; comes just before its Done."""

    micro_credits: int
    """Charged to this node's account (ledger micro-credits)."""
    price: int
    """Credits per million tokens (= micro-credits per token)."""
    job_id: str
    workers: tuple[str, ...]
    """Node ids of the workers that streamed it (more than one after a failover)."""
    receipt: str
    """The last worker's signed receipt (hearth.public_swarm.receipts wire form)."""


class SseLines:
    """Bytes of an event stream in, the payloads of its `data:` lines out (comments, `event:`,
    `id:` and blank lines are skipped: the coordinator sends one JSON object per data line)."""

    def __init__(self, *, max_line: int = MAX_LINE, max_stream: int = MAX_STREAM) -> None:
        self.max_line, self.max_stream = max_line, max_stream
        self._buffer = bytearray()
        self.seen = 0

    def feed(self, data: bytes) -> list[str]:
        self.seen += len(data)
        if self.seen > self.max_stream:
            raise PublicStreamInvalid(f"The coordinator's stream runs past {self.max_stream} bytes; stopped reading.")
        self._buffer += data
        payloads: list[str] = []
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end]).removesuffix(b"\r")
            del self._buffer[:end + 1]
            self._check(len(line))
            payload = self._payload(line)
            if payload is not None:
                payloads.append(payload)
        self._check(len(self._buffer))
        return payloads

    def _check(self, size: int) -> None:
        if size > self.max_line:
            raise PublicStreamInvalid(f"A line of the coordinator's stream runs past {self.max_line} bytes.")

    @staticmethod
    def _payload(line: bytes) -> str | None:
        if not line.startswith(b"data:"):
            return None
        try:
            text = line[5:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PublicStreamInvalid(f"The coordinator's stream is not UTF-8 (byte {exc.start + 5}).") from None
        return text[1:] if text.startswith(" ") else text


class _Delta(BaseModel):
    model_config = ConfigDict(extra="ignore")
    content: str | None = Field(default=None, max_length=MAX_LINE)


class _Choice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    index: int = 0
    delta: _Delta | None = None
    text: str | None = Field(default=None, max_length=MAX_LINE)
    finish_reason: Literal["stop", "length", "cancelled"] | None = None


class _Usage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    prompt_tokens: int = Field(ge=0, le=10**9, strict=True)
    completion_tokens: int = Field(ge=0, le=10**9, strict=True)
    cost_credits: int = Field(ge=0, le=10**18, strict=True)
    price: int = Field(ge=1, le=10**18, strict=True)


class _Hearth(BaseModel):
    model_config = ConfigDict(extra="ignore")
    served_by: Literal["public"] = "public"
    job_id: str = Field(min_length=1, max_length=128)
    workers: list[str] = Field(max_length=MAX_WORKERS)
    receipt: str = Field(default="", max_length=MAX_RECEIPT)


class _Chunk(BaseModel):
    model_config = ConfigDict(extra="ignore")
    choices: list[_Choice] = Field(max_length=1)
    usage: _Usage | None = None
    hearth: _Hearth | None = None


class _InBandError(BaseModel):
    model_config = ConfigDict(extra="ignore")
    message: str = Field(max_length=4096)
    code: str | None = Field(default=None, max_length=128)


class _ErrorChunk(BaseModel):
    error: _InBandError


Refusal = Callable[[str | None, str], HearthError]
"""Turns an in-band error's code and message into the HearthError to raise."""
PublicEvent = Token | PublicCost | Done


class ChunkReader:
    """The payloads of one streamed reply, in order, as events: Token for each piece of text,
    then PublicCost and Done from the final usage chunk, then nothing after [DONE]."""

    def __init__(self, request_id: str, refusal: Refusal, clock: Callable[[], float]) -> None:
        self.request_id, self.refusal, self.clock = request_id, refusal, clock
        self.started = clock()
        self.first_token: float | None = None
        self.finish: FinishReason | None = None
        self.done: Done | None = None
        self.ended = False

    def payload(self, text: str) -> list[PublicEvent]:
        if self.ended:
            raise PublicStreamInvalid("The coordinator sent data after [DONE].")
        if text.strip() == "[DONE]":
            self.ended = True
            if self.done is None:
                raise PublicStreamInvalid("The coordinator's stream ended without its usage and cost.")
            return []
        try:
            raw = json.loads(text)
        except ValueError:
            raise PublicStreamInvalid("A chunk of the coordinator's stream is not JSON.") from None
        if isinstance(raw, dict) and "error" in raw:
            try:
                error = _ErrorChunk.model_validate(raw).error
            except ValidationError:
                raise PublicStreamInvalid("The coordinator's stream ended with an unreadable error.") from None
            raise self.refusal(error.code, error.message)
        if self.done is not None:
            raise PublicStreamInvalid("The coordinator sent a chunk after its usage and cost.")
        try:
            chunk = _Chunk.model_validate(raw)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "the chunk"
            raise PublicStreamInvalid(f"A chunk of the coordinator's stream is malformed at {where!r}.") from None
        return self._events(chunk)

    def _events(self, chunk: _Chunk) -> list[PublicEvent]:
        events: list[PublicEvent] = []
        for choice in chunk.choices:
            text = choice.delta.content if choice.delta is not None else choice.text
            if text:
                if self.first_token is None:
                    self.first_token = self.clock()
                events.append(Token(self.request_id, text, ()))
            if choice.finish_reason is not None:
                self.finish = choice.finish_reason
        if chunk.usage is not None or chunk.hearth is not None:
            if chunk.usage is None or chunk.hearth is None or chunk.choices:
                raise PublicStreamInvalid("The coordinator's final chunk lacks its usage or its hearth part.")
            events += self._end(chunk.usage, chunk.hearth)
        return events

    def _end(self, usage: _Usage, hearth: _Hearth) -> list[PublicEvent]:
        now = self.clock()
        ttft = ((self.first_token or now) - self.started) * 1000
        decode_s = now - (self.first_token or now)
        tps = (usage.completion_tokens - 1) / decode_s if usage.completion_tokens > 1 and decode_s > 0 else None
        cost = PublicCost(usage.cost_credits, usage.price, hearth.job_id, tuple(hearth.workers), hearth.receipt)
        self.done = Done(self.request_id, self.finish or "stop", usage.prompt_tokens, usage.completion_tokens,
                         ttft, (now - self.started) * 1000, tps)
        return [cost, self.done]

    def close(self) -> None:
        """The stream's bytes ended: it must have reached [DONE]."""
        if not self.ended:
            raise PublicStreamInvalid("The coordinator's stream ended before [DONE]: the connection was cut "
                                      "or the coordinator stopped; the reply may be incomplete.")
