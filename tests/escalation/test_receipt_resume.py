"""The requester's receipt check when one worker resumed its own job (its link dropped mid-stream,
it redialled and claimed the job again): the coordinator names one worker, but that worker's last
receipt covers only what its second run streamed, so comparing it with the whole text would call
an honest reply forged."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from hearth.identity import NodeIdentity
from hearth.public_swarm.receipts import ReceiptForged, encode, sign_receipt
from hearth.public_swarm.requester import check_receipt
from hearth.public_swarm.sse import PublicCost

WORKER = NodeIdentity(SigningKey(bytes([5]) * 32))


def cost_for(output: str, completion_tokens: int) -> PublicCost:
    wire = encode(sign_receipt(WORKER, job_id="job-9", model_digest="ab" * 32, prompt="p", output=output,
                               prompt_tokens=3, completion_tokens=completion_tokens)).decode()
    return PublicCost(500, 100, "job-9", (WORKER.node_id,), wire)


def test_a_receipt_of_the_resumed_run_only_is_not_a_forgery() -> None:
    # 3 tokens "Hello," streamed before the drop, then " world!" (2 tokens) by the same worker's second run.
    cost = cost_for(" world!", 2)
    check_receipt(cost, "smollm2-135m", "Hello, world!", completion_tokens=5)


def test_a_receipt_of_the_whole_reply_must_match_its_text() -> None:
    cost = cost_for("Hello, world!", 5)
    check_receipt(cost, "smollm2-135m", "Hello, world!", completion_tokens=5)
    with pytest.raises(ReceiptForged, match="another output"):
        check_receipt(cost, "smollm2-135m", "Hello, there!", completion_tokens=5)
    with pytest.raises(ReceiptForged, match="another output"):  # callers that give no count: as before
        check_receipt(cost, "smollm2-135m", "Hello, there!")
