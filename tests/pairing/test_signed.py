"""Signed control-API requests: who may lease on a node that admits paired peers only."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.identity import NodeIdentity
from hearth.net.b64 import encode as b64
from hearth.pairing.signed import NotPaired, Unsigned, Verifier, sign


@pytest.fixture
def keys(tmp_path: Path) -> tuple[NodeIdentity, NodeIdentity]:
    return NodeIdentity.load_or_create(tmp_path / "friend"), NodeIdentity.load_or_create(tmp_path / "stranger")


def verifier_for(friend: NodeIdentity) -> Verifier[str]:
    return Verifier(lambda key: "friend" if key == b64(friend.public_key) else None)


def test_a_paired_signature_passes_once(keys: tuple[NodeIdentity, NodeIdentity]) -> None:
    friend, _ = keys
    v = verifier_for(friend)
    headers = sign(friend, "POST", "/v1/leases", b'{"bytes": 1}', now=1000.0)
    assert v.verify("POST", "/v1/leases", headers, b'{"bytes": 1}', now=1001.0) == "friend"
    with pytest.raises(Unsigned, match="replayed"):
        v.verify("POST", "/v1/leases", headers, b'{"bytes": 1}', now=1002.0)


def test_anything_changed_fails(keys: tuple[NodeIdentity, NodeIdentity]) -> None:
    friend, stranger = keys
    v = verifier_for(friend)
    body = b'{"bytes": 1}'
    headers = sign(friend, "POST", "/v1/leases", body, now=1000.0)
    for method, path, data in (("DELETE", "/v1/leases", body), ("POST", "/v1/node", body),
                               ("POST", "/v1/leases", b'{"bytes": 2}')):
        with pytest.raises(Unsigned, match="does not verify"):
            v.verify(method, path, headers, data, now=1000.0)
    with pytest.raises(Unsigned, match="clock"):
        v.verify("POST", "/v1/leases", headers, body, now=1000.0 + 31)
    with pytest.raises(NotPaired):
        v.verify("POST", "/v1/leases", sign(stranger, "POST", "/v1/leases", body, now=1000.0), body, now=1000.0)
    with pytest.raises(Unsigned, match="not signed"):
        v.verify("POST", "/v1/leases", {}, body, now=1000.0)
    forged = dict(headers, **{"x-hearth-key": b64(stranger.public_key)})
    with pytest.raises(Unsigned, match="does not verify"):
        v.verify("POST", "/v1/leases", forged, body, now=1000.0)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["x-hearth-key", "x-hearth-time", "x-hearth-nonce", "x-hearth-signature",
                                        "other"]), st.text(max_size=120)), st.binary(max_size=64))
def test_any_headers_fail_only_with_unsigned_or_not_paired(headers: dict[str, str], body: bytes) -> None:
    v: Verifier[str] = Verifier(lambda key: None)
    with pytest.raises((Unsigned, NotPaired)):
        v.verify("POST", "/v1/leases", headers, body, now=1000.0)
