"""`GET /v1/receipts` (issue 11, contract C9): the signer's finished jobs with what lets it audit
them, with no I/O.

Each entry carries the worker's signed receipt (`hearth.public_swarm.receipts` wire form) and the
finishing worker's public key, so the requester checks the signature itself and that the key is
the receipt's worker; the price and token counts the coordinator charged by (`cost`, from the
job's row) and what the ledger took from the signer for the job's hold (`charged`), so it checks
that the two agree and equal the receipt's tokens times the price.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

RECEIPTS = "/v1/receipts"
LIST_LIMIT = 20
MAX_LIST = 100


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ReceiptView(_Strict):
    """One finished (done) job of the signer."""

    job_id: str = Field(max_length=64)
    model: str = Field(max_length=300)
    model_digest: str = Field(max_length=64)
    created_at: float
    price: int = Field(ge=0)
    """Micro-credits per token, fixed when the job was opened."""
    prompt_tokens: int = Field(ge=0)
    """Prompt tokens charged (the finishing worker's count, at most the hold's cap)."""
    completion_tokens: int = Field(ge=0)
    """Output tokens of the whole job: a failed-over job's earlier workers' too."""
    workers: list[str] = Field(max_length=64)
    """Workers that streamed, in order; the last finished (and signed the receipt)."""
    cost: int = Field(ge=0)
    """Micro-credits the coordinator charged by the job's row (0: free tier, or served by the signer)."""
    charged: int | None
    """Micro-credits the ledger took from the signer for the job's hold (None: no hold)."""
    hold_id: str | None = Field(max_length=64)
    receipt: str | None = Field(max_length=2048)
    """The finishing worker's signed receipt (None for a job that has none recorded)."""
    worker_key: str | None = Field(max_length=64)
    """base64url of the finishing worker's Ed25519 public key (None on jobs older than C9)."""


class ReceiptList(_Strict):
    object: str = "list"
    data: list[ReceiptView] = Field(max_length=MAX_LIST)
    """Newest first."""
