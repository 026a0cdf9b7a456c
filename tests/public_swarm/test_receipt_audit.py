"""`hearth credits receipts --verify`'s checks (no I/O) on real signed receipts: an honest job passes;
a receipt from another key, for another job or weights, an over-charge, a ledger that took more, a
statement that disagrees each fail with a sentence naming it; a failed-over job is checked with the
earlier workers' tokens and says they carry no receipt; a job served by the requester itself
costs its own part nothing. And the operator's page counts frames, never contents."""

from __future__ import annotations

from nacl.signing import SigningKey

from hearth.identity import NodeIdentity
from hearth.net import b64
from hearth.public_swarm import receipts
from hearth.public_swarm.coordinator.receipt_audit import audit, failures
from hearth.public_swarm.coordinator.receipts_wire import ReceiptView
from hearth.public_swarm.coordinator.wire import LineView
from hearth.public_swarm.protocol.messages import Accept, Checked, Decline, Failed, Finished, Heartbeat, Tokens
from hearth.public_swarm.worker_page import Served, render, snapshot

WORKER, OTHER, ME = (NodeIdentity(SigningKey(bytes([i]) * 32)) for i in (3, 4, 5))
DIGEST = "cd" * 32
PRICE = 100


def view(*, prompt: int = 10, out: int = 5, signed_out: int | None = None, cost: int | None = None,
         charged: int | None = None, key: NodeIdentity = WORKER, signer: NodeIdentity = WORKER,
         job: str = "job1", digest: str = DIGEST, workers: tuple[str, ...] = ()) -> ReceiptView:
    receipt = receipts.sign_receipt(signer, job_id=job, model_digest=digest, prompt=b"p", output=b"o",
                                    prompt_tokens=prompt, completion_tokens=out if signed_out is None else signed_out)
    cost = (prompt + out) * PRICE if cost is None else cost
    return ReceiptView(job_id="job1", model="m", model_digest=DIGEST, created_at=0.0, price=PRICE,
                       prompt_tokens=prompt, completion_tokens=out, workers=list(workers or (signer.node_id,)),
                       cost=cost, charged=cost if charged is None else charged, hold_id="hold1",
                       receipt=receipts.encode(receipt).decode(), worker_key=b64.encode(key.public_key))


def lines(paid: int, held: int = 10_000) -> list[LineView]:
    return [LineView(id=2, at=0, kind="release", amount=held - paid, counterparty="escrow", hold_id="hold1"),
            LineView(id=1, at=0, kind="hold", amount=-held, counterparty="escrow", hold_id="hold1")]


def test_an_honest_receipt_passes_and_lies_fail_with_a_reason() -> None:
    honest = audit(view(), ME.node_id, lines(1500))
    assert honest.ok and honest.expected == 1500 and honest.notes == ()
    assert "not among your statement" in audit(view(), ME.node_id, []).notes[0]
    cases = {
        "not the key of the receipt's worker": view(key=OTHER),
        "names another job": view(job="job2"),
        "names other weights": view(digest="ef" * 32),
        "make 1500 µcr": view(cost=1600, charged=1600),
        "the ledger took 1700": view(charged=1700),
        "fewer than the 9": view(out=5, signed_out=9, cost=1500),
    }
    for said, bad in cases.items():
        result = audit(bad, ME.node_id, [])
        assert not result.ok and any(said in p for p in result.problems), (said, result.problems)
    shown = audit(view(), ME.node_id, lines(1400))
    assert not shown.ok and "statement shows 1400" in shown.problems[0]
    error = failures([honest, shown])
    assert error is not None and error.exit_code == 10 and "job job1" in error.message and "1 of 2" in error.message
    assert failures([honest]) is None


def test_an_altered_or_missing_receipt_fails() -> None:
    altered = view()
    text = altered.receipt.replace('"completion_tokens":5', '"completion_tokens":6')  # type: ignore[union-attr]
    assert "signature does not check" in audit(altered.model_copy(update={"receipt": text}), ME.node_id, []).problems[0]
    assert "no receipt" in audit(view().model_copy(update={"receipt": None}), ME.node_id, []).problems[0]
    assert "no worker key" in audit(view().model_copy(update={"worker_key": None}), ME.node_id, []).problems[0]
    assert "malformed" in audit(view().model_copy(update={"receipt": "{}"}), ME.node_id, []).problems[0]


def test_failed_over_and_self_served_jobs() -> None:
    over = audit(view(out=8, signed_out=5, workers=(OTHER.node_id, WORKER.node_id)), ME.node_id, [])
    assert over.ok and over.expected == 18 * PRICE and "failed over: 3 token(s)" in over.notes[0]
    mine = audit(view(signer=ME, key=ME, cost=0, charged=0), ME.node_id, lines(0))
    assert mine.ok and "served by this identity itself" in mine.notes[0]


def test_the_operators_page_counts_frames_not_contents() -> None:
    served = Served(started=0.0)
    for message in (Accept(job_id="j1"), Tokens(job_id="j1", seq=0, text="secret words", token_ids=[1, 2, 3]),
                    Finished(job_id="j1", finish_reason="stop", prompt_tokens=7, completion_tokens=3, receipt="r"),
                    Decline(job_id="j2", reason="busy"), Failed(job_id="j3", code="x", message="secret failure"),
                    Checked(job_id="j4", prompt_tokens=1, ranks=[0], gaps=[0.0], text="secret check"), Heartbeat()):
        served.record(message)
    shown = snapshot(served, {"balance": 2_500_000, "earned_recent": 1_000, "error": "<b>down</b>"}, "node")
    assert shown["jobs"] == {"accepted": 1, "finished": 1, "failed": 1, "declined": 1}
    assert shown["tokens"] == {"streamed": 3, "prompt": 7} and shown["checks"]["scored_for_others"] == 1
    page = render(shown)
    assert "secret" not in str(shown) + page and "j1" not in page and "&lt;b&gt;down" in page
    assert 'id="jobs-finished">1<' in page and 'id="credits-balance">2.5<' in page
