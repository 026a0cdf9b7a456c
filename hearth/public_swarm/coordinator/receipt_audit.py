"""Auditing one's own receipts (`hearth credits receipts --verify`, issue 11), with no I/O.

For each finished job the coordinator lists (`GET /v1/receipts`), the requester checks, trusting
nothing the coordinator says that a worker's signature or the ledger can confirm:

- the receipt is well formed and signed by the key listed with it, that key hashes to the
  receipt's worker id (hearth.identity), and the receipt names this job and this model digest;
- the charge: what the coordinator charged by the job's row (`cost`) equals the receipt's prompt
  and output tokens times the job's price, and the ledger's own entries for the job's hold
  (`charged`) took exactly that; and where the signer's statement (`GET /v1/credits`, the newest
  entries) shows the hold, its lines net to the same amount.

A job that failed over (earlier workers streamed part of it, then lost the link) has one receipt,
the finisher's, covering only the tokens it streamed: the earlier workers' tokens carry no
signature. Such a job is checked as cost = (receipt's tokens + the earlier tokens the coordinator
counted) × price and shown with a note saying how many tokens rest on the coordinator's word.
A job the signer served itself costs it nothing for its own part (`dispatch_rules.not_to_requester`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hearth.errors import HearthError
from hearth.identity import node_id_of
from hearth.net import b64
from hearth.public_swarm import receipts
from hearth.public_swarm.coordinator.receipts_wire import ReceiptView
from hearth.public_swarm.coordinator.wire import LineView


class ReceiptCheckFailed(HearthError):
    """`hearth credits receipts --verify` found a receipt or a charge that does not check: the
    message names each job and what is wrong. Keep the output; it is your evidence."""

    code = "receipt_check_failed"
    exit_code = 10


@dataclass(frozen=True)
class Audit:
    job_id: str
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    expected: int | None
    """Micro-credits the receipt says the job should cost (None when the receipt does not check)."""

    @property
    def ok(self) -> bool:
        return not self.problems


def signed(view: ReceiptView) -> tuple[receipts.Receipt | None, list[str]]:
    """The receipt if it is well formed, signed by the listed key, that key is its worker's, and it
    names this job and model; else None and what is wrong."""
    if view.receipt is None:
        return None, ["no receipt is recorded for it"]
    if view.worker_key is None:
        return None, ["no worker key is recorded with its receipt, so its signature cannot be checked"]
    try:
        receipt = receipts.parse(view.receipt)
        key = b64.decode(view.worker_key)
    except (receipts.ReceiptInvalid, ValueError) as exc:
        return None, [f"its receipt or worker key is malformed: {getattr(exc, 'message', exc)}"]
    problems = []
    if len(key) != 32 or node_id_of(key) != receipt.worker:
        problems.append(f"the worker key listed is not the key of the receipt's worker {receipt.worker}")
    else:
        try:
            receipts.verify(receipt, key)
        except receipts.ReceiptForged:
            problems.append(f"its receipt's signature does not check with worker {receipt.worker}'s key "
                            "(the receipt was altered or never signed by that worker)")
    if receipt.job_id != view.job_id:
        problems.append(f"its receipt names another job ({receipt.job_id})")
    if receipt.model_digest != view.model_digest:
        problems.append(f"its receipt names other weights (sha256 {receipt.model_digest[:12]}…) than the job's "
                        f"({view.model_digest[:12]}…)")
    return (None if problems else receipt), problems


def expected_cost(view: ReceiptView, receipt: receipts.Receipt, me: str) -> tuple[int, list[str]]:
    """What the job should have cost `me` by its receipt (see the module docstring), and notes."""
    notes = []
    earlier = max(0, view.completion_tokens - receipt.completion_tokens)
    prompt = receipt.prompt_tokens
    if view.prompt_tokens < prompt:  # capped at what the hold covered: in the requester's favour
        notes.append(f"prompt charged at the hold's cap of {view.prompt_tokens} tokens (the worker counted {prompt})")
        prompt = view.prompt_tokens
    own = 0 if receipt.worker == me else prompt + receipt.completion_tokens
    if earlier:
        notes.append(f"failed over: {earlier} token(s) from earlier worker(s) carry no receipt; "
                     "they are charged as the coordinator counted them")
    if receipt.worker == me:
        notes.append("served by this identity itself: its own part costs nothing")
    return (own + earlier) * view.price if view.hold_id is not None else 0, notes


def audit(view: ReceiptView, me: str, statement: Sequence[LineView]) -> Audit:
    """Check one listed job (see the module docstring) against its receipt and the statement."""
    receipt, problems = signed(view)
    if receipt is None:
        return Audit(view.job_id, tuple(problems), (), None)
    expected, notes = expected_cost(view, receipt, me)
    if view.completion_tokens < receipt.completion_tokens:
        problems.append(f"the coordinator counts {view.completion_tokens} output tokens, fewer than the "
                        f"{receipt.completion_tokens} its receipt signs")
    if view.cost != expected:
        problems.append(f"charged {view.cost} µcr, but its receipt's tokens × the price "
                        f"({view.price} µcr/token) make {expected} µcr")
    if view.charged is not None and view.charged != view.cost:
        problems.append(f"the ledger took {view.charged} µcr for its hold, not the {view.cost} µcr charged")
    lines = [line for line in statement if view.hold_id is not None and line.hold_id == view.hold_id]
    if any(line.kind == "hold" for line in lines):
        net = -sum(line.amount for line in lines)
        if net != view.cost:
            problems.append(f"your ledger statement shows {net} µcr paid for its hold {view.hold_id}, "
                            f"not the {view.cost} µcr charged")
    elif view.hold_id is not None:
        notes.append("its hold is not among your statement's newest entries: checked against the ledger's sum only")
    return Audit(view.job_id, tuple(problems), tuple(notes), expected)


def failures(audits: Sequence[Audit]) -> ReceiptCheckFailed | None:
    """The error naming every job that failed, or None when all checked."""
    bad = [a for a in audits if not a.ok]
    if not bad:
        return None
    said = "; ".join(f"job {a.job_id}: {', '.join(a.problems)}" for a in bad[:10])
    more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
    return ReceiptCheckFailed(f"{len(bad)} of {len(audits)} receipt(s) do not check: {said}{more}.")
