"""Signed job receipts (hearth.public_swarm.receipts): real Ed25519 node keys, round trips, and
every change or malformed input refused with a ReceiptInvalid (ReceiptForged once well formed)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from hearth.identity import NodeIdentity
from hearth.net import b64
from hearth.public_swarm.receipts import (
    FIELDS,
    MAX_RECEIPT_BYTES,
    Receipt,
    ReceiptForged,
    ReceiptInvalid,
    encode,
    from_json,
    parse,
    sha256_hex,
    sign_receipt,
    verify,
)

WORKER = NodeIdentity(SigningKey(bytes(range(32))))
OTHER = NodeIdentity(SigningKey(bytes(range(1, 33))))
DIGEST = "ab" * 32

jobs: st.SearchStrategy[dict[str, object]] = st.builds(
    dict,
    job_id=st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=64),
    model_digest=st.text("0123456789abcdef", min_size=64, max_size=64),
    prompt=st.one_of(st.text(max_size=200), st.binary(max_size=200)),
    output=st.one_of(st.text(max_size=200), st.binary(max_size=200)),
    prompt_tokens=st.integers(0, 2**32 - 1),
    completion_tokens=st.integers(0, 2**32 - 1),
    finished_at=st.integers(0, 2**40),
)


def _receipt(**over: object) -> Receipt:
    fields: dict[str, object] = dict(job_id="job-1", model_digest=DIGEST, prompt="Why is the sky blue?",
                                     output="Rayleigh scattering.", prompt_tokens=7, completion_tokens=5,
                                     finished_at=1_700_000_000)
    fields.update(over)
    return sign_receipt(WORKER, **fields)  # type: ignore[arg-type]


@given(jobs)
@settings(max_examples=60)
def test_sign_encode_parse_verify_round_trip(job: dict[str, object]) -> None:
    r = sign_receipt(WORKER, **job)  # type: ignore[arg-type]
    wire = encode(r)
    assert len(wire) <= MAX_RECEIPT_BYTES
    back = parse(wire)
    assert back == r
    assert from_json(json.loads(wire)) == r
    verify(back, WORKER.public_key, prompt=job["prompt"], output=job["output"])  # type: ignore[arg-type]
    assert back.worker == WORKER.node_id


def test_the_wire_form_is_canonical_json() -> None:
    wire = encode(_receipt())
    obj = json.loads(wire)
    assert list(obj) == sorted(FIELDS) and obj["v"] == 1
    assert obj["prompt_sha256"] == sha256_hex("Why is the sky blue?")
    assert b" " not in wire
    with pytest.raises(ReceiptInvalid, match="canonical"):
        parse(json.dumps(obj, indent=1))


_CHANGES: dict[str, object] = {
    "job_id": "job-2", "model_digest": "cd" * 32, "prompt_sha256": "00" * 32, "output_sha256": "11" * 32,
    "prompt_tokens": 8, "completion_tokens": 4, "worker": OTHER.node_id, "finished_at": 1_700_000_001,
    "signature": bytes(64),
}


@pytest.mark.parametrize("field", sorted(_CHANGES))
def test_any_single_field_change_fails_verification(field: str) -> None:
    changed = dataclasses.replace(_receipt(), **{field: _CHANGES[field]})  # type: ignore[arg-type]
    with pytest.raises(ReceiptForged):
        verify(changed, WORKER.public_key)
    with pytest.raises(ReceiptForged):  # and after a trip over the wire
        verify(parse(encode(changed)), WORKER.public_key)


@given(st.data())
@settings(max_examples=200)
def test_every_bit_flip_is_refused_or_fails_verification(data: st.DataObject) -> None:
    wire = bytearray(encode(_receipt()))
    i = data.draw(st.integers(0, len(wire) * 8 - 1))
    wire[i // 8] ^= 1 << (i % 8)
    with pytest.raises(ReceiptInvalid):  # ReceiptForged is one
        verify(parse(bytes(wire)), WORKER.public_key)


def test_every_bit_flip_exhaustively() -> None:
    wire = encode(_receipt())
    refused = forged = 0
    for i in range(len(wire) * 8):
        flipped = bytearray(wire)
        flipped[i // 8] ^= 1 << (i % 8)
        try:
            r = parse(bytes(flipped))
        except ReceiptInvalid:
            refused += 1
            continue
        with pytest.raises(ReceiptForged):
            verify(r, WORKER.public_key)
        forged += 1
    assert refused + forged == len(wire) * 8 and forged > 0


def test_wrong_key_wrong_prompt_wrong_output() -> None:
    r = _receipt()
    with pytest.raises(ReceiptForged, match="not that worker's"):
        verify(r, OTHER.public_key)
    with pytest.raises(ReceiptForged):
        verify(r, b"short")
    with pytest.raises(ReceiptForged, match="different prompt") as info:
        verify(r, WORKER.public_key, prompt="Why is the sky green?")
    assert info.value.param == "prompt"
    with pytest.raises(ReceiptForged, match="different output"):
        verify(r, WORKER.public_key, output=b"Rayleigh scattering!")
    verify(r, WORKER.public_key, prompt=b"Why is the sky blue?", output="Rayleigh scattering.")


def test_a_receipt_signature_is_not_a_node_proof_and_the_reverse() -> None:
    """Domain separation: the node-identity proof of the same bytes does not verify as a receipt."""
    r = _receipt()
    proof = WORKER.prove(r.signed_bytes())
    with pytest.raises(ReceiptForged):
        verify(dataclasses.replace(r, signature=proof), WORKER.public_key)


def test_signing_refuses_fields_parse_would_refuse() -> None:
    for bad in ({"job_id": "job 1"}, {"model_digest": "AB" * 32}, {"prompt_tokens": -1},
                {"completion_tokens": True}, {"finished_at": 1.5}, {"job_id": "x" * 65}):
        with pytest.raises(ReceiptInvalid):
            _receipt(**bad)


@pytest.mark.parametrize("text,match", [
    ("", "ASCII JSON"), ("[]", "object"), ("null", "object"), ('{"v":1}', "exactly the fields"),
    ("{" * 600, "ASCII JSON"), ("x" * (MAX_RECEIPT_BYTES + 1), "at most"), ('{"a":NaN}', "NaN"),
])
def test_malformed_text_is_refused_clearly(text: str, match: str) -> None:
    with pytest.raises(ReceiptInvalid, match=match):
        parse(text)


def test_duplicate_fields_and_non_ascii_are_refused() -> None:
    wire = encode(_receipt()).decode()
    with pytest.raises(ReceiptInvalid, match="twice"):
        parse(wire[:-1] + ',"v":1}')
    with pytest.raises(ReceiptInvalid, match="ASCII"):
        parse(wire.replace("job-1", "job-\u00e9"))
    with pytest.raises(ReceiptInvalid):
        parse("\ud800")


def test_field_types_are_strict() -> None:
    good = _receipt().to_json()
    for field, value in (("v", 2), ("v", True), ("prompt_tokens", 7.0), ("prompt_tokens", "7"),
                         ("finished_at", 2**41), ("worker", "A" * 16), ("worker", OTHER.node_id + "\n"),
                         ("signature", b64.encode(bytes(63))), ("signature", "!" * 86), ("signature", 5),
                         ("prompt_tokens", 10**5000)):
        with pytest.raises(ReceiptInvalid) as info:
            from_json({**good, field: value})
        assert field in info.value.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=10),
    max_leaves=20,
)


def _near_receipts() -> st.SearchStrategy[dict[str, object]]:
    """Receipt-shaped objects with some fields replaced by arbitrary JSON."""
    good = _receipt().to_json()
    return st.dictionaries(st.sampled_from([*FIELDS, "extra"]), json_values, max_size=11).map(
        lambda over: {**good, **over})


@given(st.one_of(json_values, _near_receipts()))
@settings(max_examples=300)
def test_arbitrary_json_parses_to_a_receipt_or_raises_receipt_invalid(obj: object) -> None:
    wire = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    attempts: list[Callable[[], Receipt]] = [lambda: from_json(obj), lambda: parse(wire)]
    for attempt in attempts:
        try:
            r = attempt()
        except ReceiptInvalid:
            continue
        try:
            verify(r, WORKER.public_key)
        except ReceiptForged:
            pass


@given(st.binary(max_size=MAX_RECEIPT_BYTES + 10) | st.text(max_size=300))
@settings(max_examples=300)
def test_arbitrary_bytes_parse_or_raise_receipt_invalid(data: bytes | str) -> None:
    try:
        parse(data)
    except ReceiptInvalid:
        pass


def test_parse_refuses_what_is_not_text() -> None:
    with pytest.raises(ReceiptInvalid):
        parse(42)  # type: ignore[arg-type]
