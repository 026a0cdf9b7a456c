"""The coordinator's HTTP API: its paths and messages, shared by the app and its client (no I/O).

Every message is strict: unknown fields, wrong types (a bool or float where an integer goes, a
number as text), lone surrogates and out-of-range counts are refused with a 400 naming the field,
before anything is written. Amounts are integers of micro-credits, as in the ledger; people type
credits, which `parse_credits` turns into micro-credits exactly.

The worker's WebSocket messages (jobs, tokens, receipts) are another module's
(`hearth.public_swarm.protocol`); this one is the plain HTTP side: registration, prices, credits.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from hearth.errors import InvalidRequest
from hearth.node_api.status import SWARM_EVENTS_PATH
from hearth.public_swarm.ledger import rules
from hearth.public_swarm.pricing import BITS_PER_WEIGHT, MAX_PARAMS, MAX_TOKENS

WORKERS = "/v1/workers"
PRICES = "/v1/prices"
CREDITS = "/v1/credits"
STANDING = "/v1/standing"
GRANTS = "/v1/grants"
WORKER_LINK = "/v1/workers/link"
"""The workers' WebSocket (hearth.public_swarm.protocol): unsigned over HTTP, since the Hello's
signature of the coordinator's challenge proves the worker's identity."""
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MODELS = "/v1/models"
JOBS = "/v1/jobs"
SWARM = "/v1/swarm"
SWARM_EVENTS = SWARM_EVENTS_PATH
"""The coordinator's event stream (Server-Sent Events, `events`): this process's only."""
HEALTH_PAGE = "/"
HEALTH_SCRIPT = "/health.js"
UNSIGNED = frozenset({PRICES, MODELS, SWARM, SWARM_EVENTS, HEALTH_PAGE, HEALTH_SCRIPT})
"""Paths anyone may ask without a signature."""
SIGNATURE_OPTIONAL = (CHAT, COMPLETIONS, JOBS)
"""Paths (and those under them) a signature is checked on when there is one, and that serve
unsigned requests too: the requester routes, whose unsigned requests use the free allowance."""


def signature_optional(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in SIGNATURE_OPTIONAL)

MAX_MODELS = 64
"""Most models one worker may offer in one registration."""
MAX_TEXT = 128
MAX_MEMORY = 1 << 50
"""A petabyte: more memory than any machine claims honestly."""
MAX_TPS = 100_000.0
STATEMENT_LINES = 20
"""Recent entries `GET /v1/credits` shows."""
GRANT_KEY = re.compile(r"[A-Za-z0-9._:-]{8,120}")
"""The operator's idempotency key for a grant; the ledger stores it as `grant:<key>`."""


def _text(value: str) -> str:
    """Printable Unicode only: no control characters (they garble logs and terminals) and no
    lone surrogates (JSON can carry \\ud800; a database cannot store it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode text (a lone surrogate at character {exc.start})") from None
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise ValueError("contains control characters")
    return value


Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_text)]
Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
"""A GGUF file's sha256, lower-case hex: the exact weights a worker holds."""
Memory = Annotated[int, Field(ge=0, le=MAX_MEMORY)]


def _quant(value: str) -> str:
    if value.upper() not in BITS_PER_WEIGHT:
        raise ValueError(f"has no price; known: {', '.join(sorted(BITS_PER_WEIGHT))}")
    return value.upper()


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class OfferedModel(Strict):
    """One model a worker holds and will serve whole."""

    digest: Digest
    name: Text
    """Display name ("qwen2.5-7b-instruct-q4_k_m"); the digest, not this, says which weights."""
    n_params: int = Field(ge=1, le=MAX_PARAMS)
    quantization: Annotated[str, Field(max_length=16), AfterValidator(_quant)]
    """llama.cpp's file type (Q4_K_M, Q8_0, F16, ...): with n_params, it sets the price."""
    n_ctx: int = Field(ge=64, le=MAX_TOKENS)
    """The context the worker runs the model with: the longest prompt plus reply it takes."""
    decode_tps: float = Field(gt=0, le=MAX_TPS, allow_inf_nan=False)
    """Measured decode speed on this worker, tokens per second."""


class Hardware(Strict):
    """What the worker runs on, as it detected it."""

    cpu: Text
    cores: int = Field(ge=1, le=4096)
    memory_bytes: Memory
    gpu: Text | None = None
    gpu_memory_bytes: Memory = 0


class WorkerRegistration(Strict):
    """`POST /v1/workers`: register, or refresh (the models listed replace the last list). The
    worker's identity is the request's signer, never a field."""

    name: Text
    models: list[OfferedModel] = Field(min_length=1, max_length=MAX_MODELS)
    hardware: Hardware

    @model_validator(mode="after")
    def _distinct(self) -> WorkerRegistration:
        digests = [m.digest for m in self.models]
        if len(set(digests)) != len(digests):
            raise ValueError("models lists the same digest twice")
        return self


class ModelView(OfferedModel):
    credits_per_million_tokens: int
    """The model's price (hearth.public_swarm.pricing), from n_params and quantization."""


class WorkerView(Strict):
    node_id: str
    name: str
    models: list[ModelView]
    hardware: Hardware | None
    """None for a worker known only by its link (a Hello carries no hardware)."""
    registered_at: float
    """When it registered over HTTP, or when its link opened."""
    last_seen: float
    linked: bool = False
    """Connected now by its WebSocket link, so jobs can be offered to it."""


class WorkerList(Strict):
    object: Literal["list"] = "list"
    live_within_s: float
    """Workers listed were seen within this many seconds."""
    data: list[WorkerView]


class HoldView(Strict):
    id: str
    amount: int
    expires_at: float


class LineView(Strict):
    id: int
    at: float
    kind: str
    amount: int
    """Signed micro-credits: + in, - out."""
    counterparty: str
    hold_id: str | None


class Credits(Strict):
    """`GET /v1/credits`: the signer's account."""

    account: str
    balance: int
    """Micro-credits (1 credit = 1,000,000), entries summed."""
    held: int
    """Micro-credits set aside by open holds (already out of the balance)."""
    holds: list[HoldView]
    entries: list[LineView]
    """The newest first, at most STATEMENT_LINES."""


class StandingView(Strict):
    """`GET /v1/standing`: the signing worker's own standing (issue 11), for its operator's page.
    Counts only: never which job was checked, nor the worker's current check rate."""

    spot_checks: bool
    """False when the coordinator runs without trust (HEARTH_SPOT_CHECKS=off): nothing below is kept."""
    state: str = "new"
    """new, trusted or quarantined."""
    reference: bool = False
    """One of the operator's reference workers: never checked nor escrowed."""
    verified: int = 0
    """Spot-checks of this worker's output that passed."""
    failed: int = 0
    escrowed: int = 0
    """Micro-credits earned and held in escrow now (they vest after enough passed checks or time)."""
    vested: int = 0
    forfeited: int = 0
    """Micro-credits of escrow lost to failed checks."""


class GrantRequest(Strict):
    """`POST /v1/grants`, operator only: give `amount` micro-credits to `account`, once per `key`."""

    account: str = Field(max_length=64)
    amount: int = Field(ge=1, le=rules.MAX_AMOUNT)
    key: str = Field(pattern=GRANT_KEY.pattern)

    @model_validator(mode="after")
    def _account(self) -> GrantRequest:
        if not rules.ACCOUNT_ID.fullmatch(self.account) or self.account == rules.OPERATOR:
            raise ValueError("account must be a node id or 3-64 characters of a-z, 0-9, '_', '.', '-'")
        return self


class Granted(Strict):
    account: str
    amount: int
    key: str
    balance: int
    """The account's balance after the grant."""


_CREDITS = re.compile(r"(\d{1,9})(?:\.(\d{1,6}))?")


def parse_credits(text: str, what: str = "amount") -> int:
    """Credits as people type them ('10', '2.5', '0.000001') as exact micro-credits, at least 1."""
    match = _CREDITS.fullmatch(text.strip().replace("_", "")) if isinstance(text, str) else None
    if match is None or (micro := int(match[1]) * rules.MICRO + int((match[2] or "").ljust(6, "0"))) < 1:
        raise InvalidRequest(f"{what} must be credits such as 10 or 2.5 (at most 6 decimals, more than 0, "
                             f"below a billion); got {str(text)[:40]!r}.", param=what)
    return micro


def grant_key(key: str) -> str:
    """The ledger's key for an operator grant (keys are global to the ledger)."""
    return f"grant:{key}"
