"""The requester's side of the public swarm (contract C4): one reply streamed from the coordinator.

`PublicRequester.run` posts an OpenAI request with `stream: true` to the coordinator's
`/v1/chat/completions` or `/v1/completions`, signed with this node's identity (the account that
pays), with the price ceiling in `X-Hearth-Max-Price`, and yields hearth's engine events: Start
when the coordinator accepts it, Token for each piece of text, then `PublicCost` and Done. The
transport, signing and error mapping are CoordinatorClient's (one client per coordinator); the
parsing is `hearth.public_swarm.sse` (pure). Every read is bounded: each line, the whole stream,
the wait for each piece, and the whole reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hearth.engine.events import Done, Start, Token
from hearth.errors import HearthError, InvalidRequest
from hearth.identity import NodeIdentity
from hearth.public_swarm import receipts
from hearth.public_swarm.coordinator.client import CoordinatorAnswerInvalid, CoordinatorClient, refusal
from hearth.public_swarm.coordinator.dispatch_rules import FreeTierClosed, ModelNotServed, NoWorker
from hearth.public_swarm.coordinator.openai_wire import JobNotServed
from hearth.public_swarm.pricing import PriceAboveCeiling
from hearth.public_swarm.sse import ChunkReader, PublicCost, PublicEvent, PublicStreamInvalid, SseLines
from hearth.settings import Settings

CHAT, COMPLETIONS, MODELS = "/v1/chat/completions", "/v1/completions", "/v1/models"
DEFAULT_MAX_TOKENS = 256
"""What the coordinator generates when a request names no max_tokens (C1)."""
IDLE_S = 120.0
"""Longest wait for the next piece of a reply (a queued job waits for a free worker)."""
TOTAL_S = 1800.0
"""Longest a whole reply may take."""
MAX_REFUSAL = 64 * 1024
FORWARDED = ("max_tokens", "temperature", "top_p", "seed", "stop")
"""The engine's request fields the coordinator's OpenAI body carries."""
LOCAL_ONLY_OK = frozenset({"messages", "prompt", "exact"})
"""Fields a public request may carry without the body forwarding them: the prompt goes its own
way, and `exact` (whole-chunk prompt reuse) is what a worker always does for the swarm."""


MORE_REFUSALS: dict[str, type[HearthError]] = {c.code: c for c in (
    ModelNotServed, NoWorker, FreeTierClosed, JobNotServed)}
"""The coordinator's requester refusals (C1), by code, beyond CoordinatorClient's own."""


class PublicModel(BaseModel):
    """One model of the coordinator's `GET /v1/models` (C1), as far as a requester needs it."""

    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=256)
    digest: str | None = Field(default=None, max_length=80)
    price: int = Field(ge=1, le=10**18, strict=True)
    workers: int = Field(default=0, ge=0, strict=True)
    n_ctx: int | None = Field(default=None, ge=0, strict=True)

    def names(self, wanted: str) -> bool:
        return wanted in (self.id, f"sha256:{self.digest}", self.digest)


def check_receipt(cost: PublicCost, asked: str, text: str, completion_tokens: int | None = None) -> None:
    """ReceiptInvalid/ReceiptForged unless the receipt the coordinator forwarded is for this job,
    from a worker that streamed it, of the weights asked for (sha256:<digest>), and, when one
    worker's one run served the whole reply, of exactly the text received. A receipt covers only
    what its run streamed (resume tokens excluded), so when it counts fewer tokens than the reply's
    `completion_tokens` (the same worker resumed its own job after its link dropped) the text is
    not compared. (Its signature needs the worker's public key, which the coordinator's C1 answer
    does not carry: `receipts.verify` checks it.)"""
    receipt = receipts.parse(cost.receipt)
    if receipt.job_id != cost.job_id or receipt.worker not in cost.workers:
        raise receipts.ReceiptForged(f"The receipt is for job {receipt.job_id!r} by {receipt.worker!r}, not job "
                                     f"{cost.job_id!r} by {', '.join(cost.workers) or 'nobody'}.")
    if asked.startswith("sha256:") and receipt.model_digest != asked.removeprefix("sha256:"):
        raise receipts.ReceiptForged(f"The receipt says weights {receipt.model_digest[:12]}…, not the "
                                     f"{asked[7:19]}… asked for.")
    whole = completion_tokens is None or receipt.completion_tokens >= completion_tokens
    if len(cost.workers) == 1 and whole and receipts.sha256_hex(text) != receipt.output_sha256:
        raise receipts.ReceiptForged("The receipt covers another output than the text received.")


class _ModelList(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: list[PublicModel] = Field(max_length=4096)


def _unset(value: Any) -> bool:
    """None, False or empty: a field left at its default (0 is a value: logprobs 0 asks for them)."""
    return value is None or value is False or (isinstance(value, str | list | dict) and not value)


def request_body(model: str, op: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI body for an engine request (`op` chat or complete) to the coordinator."""
    if op not in ("chat", "complete"):
        raise InvalidRequest(f"The public swarm serves chat and completions, not {op!r}.")
    dropped = sorted(k for k, v in fields.items()
                     if k not in FORWARDED and k not in LOCAL_ONLY_OK and not _unset(v))
    if dropped:
        raise InvalidRequest(
            f"The public swarm serves plain chat and completions; {', '.join(dropped)} needs the circle. "
            "Load the model in your household (or on a trusted peer), or leave the field out.")
    body: dict[str, Any] = {"model": model, "stream": True, "stream_options": {"include_usage": True}}
    body |= {k: fields[k] for k in FORWARDED if fields.get(k) is not None}
    if body.get("stop") == []:
        del body["stop"]
    body |= {"messages": fields["messages"]} if op == "chat" else {"prompt": fields["prompt"]}
    return body


class PublicRequester:
    """Asks one coordinator, signing as `identity`; `max_price` (credits per million tokens) is
    the ceiling sent with every request; `verified_only` (default: HEARTH_VERIFIED_ONLY) asks for
    trusted workers only. Close it (or `async with`)."""

    def __init__(self, url: str, identity: NodeIdentity, *, max_price: int | None = None,
                 idle_s: float = IDLE_S, total_s: float = TOTAL_S,
                 transport: httpx.AsyncBaseTransport | None = None, verified_only: bool | None = None) -> None:
        self.client = CoordinatorClient(url, identity, transport=transport)
        self.max_price, self.idle_s, self.total_s = max_price, idle_s, total_s
        self.verified_only = Settings().verified_only if verified_only is None else verified_only

    async def __aenter__(self) -> PublicRequester:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.client.aclose()

    async def models(self) -> list[PublicModel]:
        """What the swarm serves now, with prices (`GET /v1/models`)."""
        response, answer = await self.client.exchange("GET", self.client.base + MODELS)
        if response.status_code != 200:
            raise refusal(response.status_code, answer, f"GET {MODELS}", MORE_REFUSALS)
        try:
            return _ModelList.model_validate_json(answer).data
        except ValidationError as exc:
            raise CoordinatorAnswerInvalid("The coordinator's model list is malformed: is that URL a hearth "
                                           "coordinator of this version?") from exc

    async def model(self, name: str) -> PublicModel:
        """The swarm's entry for `name` (a served name or sha256:<digest>), or ModelNotServed."""
        for m in await self.models():
            if m.names(name):
                return m
        raise ModelNotServed(f"No worker of the public swarm at {self.client.base} serves {name!r} now.")

    async def run(self, model: str, op: str, **fields: Any) -> AsyncGenerator[Start | PublicEvent, None]:
        """The reply's events: Start, Token..., PublicCost, Done (see the module's docstring)."""
        path = CHAT if op == "chat" else COMPLETIONS
        content = json.dumps(request_body(model, op, fields), ensure_ascii=False).encode()
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        if self.max_price is not None:
            headers["x-hearth-max-price"] = str(self.max_price)
        if self.verified_only:
            headers["x-hearth-verified-only"] = "1"
        deadline = time.monotonic() + self.total_s
        timeout = httpx.Timeout(self.client.timeout, read=self.idle_s)
        async with self.client.streaming("POST", self.client.base + path, content=content, headers=headers,
                                         timeout=timeout) as response:
            if response.status_code != 200:
                raise await self._refused(response, model, f"POST {path}")
            rid = f"public-{id(response):x}"
            yield Start(rid, 0)
            reader = ChunkReader(rid, self._in_band, time.monotonic)
            lines = SseLines()
            received: list[str] = []
            async with contextlib.aclosing(_bounded(response.aiter_bytes(), deadline, self.total_s)) as body:
                async for data in body:
                    for payload in lines.feed(data):
                        for event in reader.payload(payload):
                            if isinstance(event, Token):
                                received.append(event.text)
                            elif isinstance(event, PublicCost):
                                check_receipt(event, model, "".join(received),
                                              reader.done.completion_tokens if reader.done else None)
                            yield event
            # Read to the body's end even after [DONE] (more data there is an error): httpx's
            # nested body iterators are only finished cleanly when they run out.
            reader.close()

    def _in_band(self, code: str | None, message: str) -> HearthError:
        body = json.dumps({"error": {"message": message, "code": code}}).encode()
        return refusal(502, body, "the stream", MORE_REFUSALS)

    async def _refused(self, response: httpx.Response, model: str, what: str) -> HearthError:
        body = await self.client.read(response, MAX_REFUSAL)
        error = refusal(response.status_code, body, what, MORE_REFUSALS)
        if getattr(error, "remote_code", None) != PriceAboveCeiling.code or self.max_price is None:
            return error
        # The body names the price in words only: ask the price list for the number.
        try:
            price = (await self.model(model)).price
        except HearthError:
            price = 0
        try:
            said = str(json.loads(body)["error"]["message"])[:1000]
        except (ValueError, KeyError, TypeError):
            said = error.message
        return PriceAboveCeiling(said, price=price, ceiling=self.max_price)


async def _bounded(chunks: AsyncIterator[bytes], deadline: float,
                   total_s: float) -> AsyncGenerator[bytes, None]:
    """The body's chunks until `deadline` (each read also bounded by the client's read timeout);
    the body's iterator is closed here, so none is left for the garbage collector to finish."""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PublicStreamInvalid(f"The public reply took longer than {total_s:g} s; stopped reading.")
            try:
                data = await asyncio.wait_for(anext(chunks), left)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise PublicStreamInvalid(f"The public reply took longer than {total_s:g} s; "
                                          "stopped reading.") from None
            yield data
    finally:
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()


__all__ = ["Done", "PublicCost", "PublicRequester", "PublicStreamInvalid", "Token", "request_body"]
