"""The coordinator's stream read as engine events (hearth.public_swarm.sse), without sockets:
any cut of the bytes gives the same events; malformed, oversized or cut-short streams give one
PublicStreamInvalid (or the coordinator's own refusal), never another exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.engine.events import Done, Token
from hearth.errors import HearthError
from hearth.public_swarm.coordinator.client import refusal
from hearth.public_swarm.coordinator.dispatch_rules import NoWorker
from hearth.public_swarm.requester import MORE_REFUSALS
from hearth.public_swarm.sse import ChunkReader, PublicCost, PublicEvent, PublicStreamInvalid, SseLines


def in_band(code: str | None, message: str) -> HearthError:
    body = json.dumps({"error": {"message": message, "code": code}}).encode()
    return refusal(502, body, "the stream", MORE_REFUSALS)


def stream(texts: list[str], *, cost: int = 420, workers: tuple[str, ...] = ("w1", "w2"),
           chat: bool = True, crlf: bool = False) -> bytes:
    """A stream as contract C1 describes it."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    chunks: list[dict[str, Any]] = []
    if chat:
        chunks.append(base | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                           "finish_reason": None}]})
    for t in texts:
        choice = {"index": 0, "delta": {"content": t}} if chat else {"index": 0, "text": t}
        chunks.append(base | {"choices": [choice | {"finish_reason": None}]})
    last = {"index": 0, "delta": {}} if chat else {"index": 0, "text": ""}
    chunks.append(base | {"choices": [last | {"finish_reason": "length"}]})
    chunks.append(base | {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": len(texts),
                                                   "total_tokens": 5 + len(texts), "cost_credits": cost,
                                                   "price": 60},
                          "hearth": {"served_by": "public", "job_id": "job-1", "workers": list(workers),
                                     "receipt": "r"}})
    end = "\r\n" if crlf else "\n"
    lines = [f": keep-alive{end}{end}"] + [f"data: {json.dumps(c)}{end}{end}" for c in chunks] + [f"data: [DONE]{end}{end}"]
    return "".join(lines).encode()


def read(data: bytes, cuts: list[int] | None = None, **limits: int) -> list[PublicEvent]:
    lines, reader = SseLines(**limits), ChunkReader("r", in_band, lambda: 0.0)
    events: list[PublicEvent] = []
    pieces = [data] if not cuts else [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    for piece in pieces:
        for payload in lines.feed(piece):
            events += reader.payload(payload)
    reader.close()
    return events


TEXTS = st.lists(st.text(min_size=1, max_size=12), max_size=8)


@given(TEXTS, st.booleans(), st.booleans(), st.data())
def test_any_cut_of_a_stream_gives_the_tokens_then_the_cost_then_done(texts: list[str], chat: bool, crlf: bool,
                                                                      data: st.DataObject) -> None:
    raw = stream(texts, chat=chat, crlf=crlf)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(raw) - 1)), max_size=6))))
    events = read(raw, cuts)
    assert [e.text for e in events if isinstance(e, Token)] == texts
    cost, done = events[-2], events[-1]
    assert isinstance(cost, PublicCost) and isinstance(done, Done)
    assert (cost.micro_credits, cost.price, cost.job_id, cost.workers) == (420, 60, "job-1", ("w1", "w2"))
    assert (done.finish_reason, done.prompt_tokens, done.completion_tokens) == ("length", 5, len(texts))


@pytest.mark.parametrize("raw, says", [
    (stream(["a"]).replace(b"data: [DONE]\n\n", b""), "before \\[DONE\\]"),
    (b"data: [DONE]\n\n", "without its usage"),
    (b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n', "before \\[DONE\\]"),
    (b"data: {not json}\n\n", "not JSON"),
    (b'data: {"choices": "x"}\n\n', "malformed at 'choices'"),
    (b'data: {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "cost_credits": 1, '
     b'"price": 1}}\n\n', "lacks its usage or its hearth"),
    (b'data: {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "cost_credits": -1, '
     b'"price": 1}, "hearth": {"job_id": "j", "workers": []}}\n\n', "malformed at 'usage.cost_credits'"),
    (b'data: {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "cost_credits": "1", '
     b'"price": 1}, "hearth": {"job_id": "j", "workers": []}}\n\n', "malformed at 'usage.cost_credits'"),
    (stream(["a"]) + b"data: {}\n\n", "after \\[DONE\\]"),
    (b"data: \xff\xfe\n\n", "not UTF-8"),
    (b'data: {"error": 7}\n\n', "unreadable error"),
])
def test_malformed_streams_are_one_clear_error(raw: bytes, says: str) -> None:
    with pytest.raises(PublicStreamInvalid, match=says):
        read(raw)


def test_a_chunk_after_the_cost_is_refused() -> None:
    raw = stream(["a"]).replace(b"data: [DONE]", b'data: {"choices": []}\n\ndata: [DONE]')
    with pytest.raises(PublicStreamInvalid, match="after its usage"):
        read(raw)


def test_an_in_band_error_is_the_coordinators_refusal() -> None:
    with pytest.raises(NoWorker, match="no live worker"):
        read(b'data: {"error": {"message": "no live worker holds m", "code": "no_worker"}}\n\n')


def test_oversized_lines_and_streams_are_refused_without_reading_on() -> None:
    with pytest.raises(PublicStreamInvalid, match="line .* runs past 64 bytes"):
        read(b"data: " + b"x" * 100, max_line=64)  # no newline ever comes: still bounded
    with pytest.raises(PublicStreamInvalid, match="stream runs past 1000 bytes"):
        read(stream(["word"] * 40), max_stream=1000)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.binary(max_size=600), st.lists(st.integers(1, 599), max_size=4))
def test_arbitrary_bytes_give_events_or_a_hearth_error_only(raw: bytes, cuts: list[int]) -> None:
    cuts = sorted({c for c in cuts if c < len(raw)})
    try:
        read(raw, cuts, max_line=200)
    except HearthError:
        pass


@given(st.lists(st.sampled_from([b"data: ", b"[DONE]", b"{", b"}", b'"choices"', b":", b"[]", b"\n", b"\r\n",
                                 b'"usage"', b'"hearth"', b'"error"', b"null", b",", b"1"]), max_size=40))
def test_near_miss_streams_give_a_hearth_error_only(parts: list[bytes]) -> None:
    try:
        read(b"".join(parts))
    except HearthError:
        pass


def test_the_forwarded_receipt_must_be_for_this_job_these_weights_and_this_text() -> None:
    from nacl.signing import SigningKey

    from hearth.identity import NodeIdentity
    from hearth.public_swarm.receipts import ReceiptForged, ReceiptInvalid, encode, sign_receipt
    from hearth.public_swarm.requester import check_receipt

    worker = NodeIdentity(SigningKey(bytes([3]) * 32))
    digest = "ab" * 32
    wire = encode(sign_receipt(worker, job_id="job-1", model_digest=digest, prompt="p", output="Hello world",
                               prompt_tokens=3, completion_tokens=2)).decode()
    cost = PublicCost(300, 60, "job-1", (worker.node_id,), wire)
    check_receipt(cost, f"sha256:{digest}", "Hello world")
    check_receipt(cost, "smollm2-135m", "Hello world")  # a name: any weights the swarm serves by it
    with pytest.raises(ReceiptForged, match="another output"):
        check_receipt(cost, "m", "Hello there")
    with pytest.raises(ReceiptForged, match="weights"):
        check_receipt(cost, "sha256:" + "cd" * 32, "Hello world")
    with pytest.raises(ReceiptForged, match="job-2"):
        check_receipt(PublicCost(300, 60, "job-2", (worker.node_id,), wire), "m", "Hello world")
    check_receipt(PublicCost(300, 60, "job-1", (worker.node_id, "x" * 16), wire), "m", "other text after failover")
    with pytest.raises(ReceiptInvalid):
        check_receipt(PublicCost(300, 60, "job-1", (worker.node_id,), "not a receipt"), "m", "Hello world")
