"""The dispatcher's rules, with no I/O: which models the swarm serves now, what a job holds and
costs, who is paid what, and the updates a follower of a job sees.

A job's stored request (`JobSpec`, the JobQueue's `request` column) carries everything any
coordinator process needs to run, follow and settle it: the generation request, the model's name
and price fixed when it was opened, the cap on prompt tokens its hold covers, and for the free
tier the client address whose allowance pays. So no coordinator holds state another needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from hearth.errors import InvalidRequest, ModelNotFound, OutOfCapacity, Unauthorized
from hearth.public_swarm.pricing import BITS_PER_WEIGHT, price_of_quant
from hearth.public_swarm.protocol.messages import JobRequest, ModelOffer

HOLD_TTL_S = 6 * 3600.0
"""How long a job's hold stays open: longer than any job waits and runs; expiry returns it."""
SHA_PREFIX = "sha256:"
TEMPLATE_TOKENS = 32
"""Prompt tokens a chat template adds at most, beyond those of the messages themselves..."""
PER_MESSAGE_TOKENS = 8
"""...and per message (role markers)."""


class ModelNotServed(ModelNotFound):
    """No worker of the public swarm serves a model by that name: see GET /v1/models."""

    code = "model_not_served"


class NoWorker(OutOfCapacity):
    """The model is known but no live worker holds it now: try again later, or another model."""

    http_status = 503
    error_type = "server_error"
    code = "no_worker"
    retry_after = 10


class FreeTierClosed(Unauthorized):
    """An unsigned request where this coordinator gives no free allowance: sign it (hearth's client does)."""

    error_type = "authentication_error"
    code = "signature_required"


def free_account(address: str) -> str:
    """The queue's requester for an unsigned request from `address` (its free allowance pays): no
    node id looks like it, so it never names a signer's account."""
    return "free." + hashlib.sha256(address.encode("utf-8", "replace")).hexdigest()[:32]


@dataclass(frozen=True)
class ServedModel:
    """A model live workers serve now, as `GET /v1/models` lists it."""

    digest: str
    name: str
    n_params: int
    quantization: str
    n_ctx: int
    """The smallest context among its workers: any of them can run a job that fits."""
    price: int
    """Credits per million tokens (= micro-credits per token)."""
    workers: int


def served_models(offers: Iterable[Sequence[ModelOffer]]) -> list[ServedModel]:
    """The models in the live workers' Hellos (one sequence per worker), by digest, those without a
    price left out; the most served first, then by name."""
    found: dict[str, tuple[ModelOffer, int, int]] = {}
    for worker in offers:
        for m in {o.digest: o for o in worker}.values():
            if m.quant.upper() not in BITS_PER_WEIGHT or m.params < 1:
                continue
            first, n_ctx, count = found.get(m.digest, (m, m.n_ctx, 0))
            found[m.digest] = (first, min(n_ctx, m.n_ctx), count + 1)
    out = [ServedModel(d, m.name, m.params, m.quant.upper(), n_ctx, price_of_quant(m.params, m.quant).per_token, n)
           for d, (m, n_ctx, n) in found.items()]
    return sorted(out, key=lambda s: (-s.workers, s.name, s.digest))


def pick(models: Sequence[ServedModel], model: object, known: Iterable[str] = ()) -> ServedModel:
    """The served model a request names: `sha256:<hex>` (exact weights) or a name. Raises NoWorker
    for exact weights or a `known` name no live worker holds, ModelNotServed for any other name."""
    if not isinstance(model, str) or not 1 <= len(model) <= 200:
        raise InvalidRequest("model must be a served model's name (GET /v1/models) or sha256:<64 hex>.",
                             param="model")
    if model.startswith(SHA_PREFIX):
        digest = model[len(SHA_PREFIX):]
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise InvalidRequest("model sha256:<digest> needs 64 lower-case hex digits.", param="model")
        for s in models:
            if s.digest == digest:
                return s
        raise NoWorker(f"No live worker holds the weights {model[:20]}…; try again later.", param="model")
    same = [s for s in models if s.name == model] or [s for s in models if s.name.lower() == model.lower()]
    if same:
        return same[0]  # the most served of those of that name
    if model.lower() in {k.lower() for k in known}:
        raise NoWorker(f"No live worker serves {model!r} now; try again later.", param="model")
    names = ", ".join(sorted({s.name for s in models})[:10]) or "none right now"
    raise ModelNotServed(f"No worker of the public swarm serves {model[:80]!r}; served: {names}.", param="model")


def prompt_cap(request: JobRequest) -> int:
    """An upper bound on the prompt's tokens without a tokenizer: every token is at least one
    UTF-8 byte, plus the chat template's markers. The hold covers this many; no more are charged."""
    if request.messages is not None:
        body = sum(len(m.content.encode("utf-8")) + PER_MESSAGE_TOKENS for m in request.messages)
    else:
        body = len((request.prompt or "").encode("utf-8"))
    return body + TEMPLATE_TOKENS


def hold_key(account: str, key: str) -> str:
    """The ledger key of a job's hold, from the requester's own key (keys are global to the ledger)."""
    return "job-hold-" + hashlib.sha256(f"{account}|{key}".encode()).hexdigest()[:48]


def settle_key(job_id: str) -> str:
    return f"job-{job_id}-settle"


def pay_key(job_id: str, worker: str) -> str:
    """The key of a free-tier job's payment to one worker (the operator pays; no hold)."""
    return f"job-{job_id}-pay-{worker}"


@dataclass(frozen=True)
class JobSpec:
    """What a job's stored request holds (the queue's `request` column)."""

    request: JobRequest
    kind: str
    """'chat' or 'completion': which OpenAI shape the requester reads."""
    model: str
    price: int
    prompt_cap: int
    free_address: str | None = None
    """The client address whose free allowance pays (unsigned requests); None: the ledger hold."""
    verified_only: bool = False
    """Only a trusted worker may run it (issue 11: `X-Hearth-Verified-Only`)."""

    def to_json(self) -> dict[str, Any]:
        out = {"v": 1, "request": self.request.model_dump(mode="json", exclude={"resume"}), "kind": self.kind,
               "model": self.model, "price": self.price, "prompt_cap": self.prompt_cap,
               "free_address": self.free_address}
        if self.verified_only:
            out["verified_only"] = True
        return out

    @property
    def allowance_tokens(self) -> int:
        return self.prompt_cap + self.request.max_tokens

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobSpec:
        try:
            return cls(JobRequest.model_validate(data["request"]), str(data["kind"]), str(data["model"]),
                       int(data["price"]), int(data["prompt_cap"]), data.get("free_address"),
                       data.get("verified_only") is True)
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            raise InvalidRequest(f"A stored job request is not one this build reads: {exc}"[:300]) from exc


def payouts(parts: Sequence[tuple[str, int]], price: int, *, prompt_tokens: int = 0,
            finisher: str | None = None, max_tokens: int | None = None) -> dict[str, int]:
    """Micro-credits each worker earned: its streamed tokens times the price, and the finisher the
    prompt tokens too. Tokens past `max_tokens` are not paid (so the total never exceeds the hold)."""
    left = max_tokens if max_tokens is not None else sum(n for _, n in parts)
    out: dict[str, int] = {}
    for worker, n in parts:
        paid = max(0, min(n, left))
        left -= paid
        if paid:
            out[worker] = out.get(worker, 0) + paid * price
    if finisher is not None and prompt_tokens > 0:
        out[finisher] = out.get(finisher, 0) + prompt_tokens * price
    return out


def not_to_requester(paid: Mapping[str, int], requester: str) -> dict[str, int]:
    """The payouts of a credit-paid job without the requester's own part: a node that served its
    own job (`hearth jobs submit` where it also runs `hearth contribute`) pays itself nothing, and
    the ledger refuses to pay a requester from its own hold."""
    return {w: a for w, a in paid.items() if w != requester}


@dataclass(frozen=True)
class TextDelta:
    """More of a job's output, in order."""

    text: str


@dataclass(frozen=True)
class JobEnded:
    """The job's end: its finish_reason and usage when it is done, or an error."""

    job_id: str
    state: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: int
    """Micro-credits charged (0 for the free tier)."""
    price: int
    workers: tuple[str, ...]
    receipt: str | None
    error: str | None = None


JobUpdate = TextDelta | JobEnded

