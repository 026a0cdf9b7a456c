from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.identity import ForgedNode, NodeIdentity, node_id_of, verify_proof
from hearth.net.b64 import decode as unb64
from hearth.net.b64 import encode as b64


def test_identity_is_created_once_with_0600(tmp_path: Path) -> None:
    a = NodeIdentity.load_or_create(tmp_path)
    key = tmp_path / "identity" / "node.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    b = NodeIdentity.load_or_create(tmp_path)
    assert a.node_id == b.node_id and len(a.node_id) == 16
    os.chmod(key, 0o644)
    NodeIdentity.load_or_create(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_proof_verifies_and_forgeries_fail(tmp_path: Path) -> None:
    me = NodeIdentity.load_or_create(tmp_path / "a")
    other = NodeIdentity.load_or_create(tmp_path / "b")
    nonce = os.urandom(32)
    verify_proof(me.node_id, me.public_key, nonce, me.prove(nonce))
    with pytest.raises(ForgedNode, match="not its own"):
        verify_proof(me.node_id, other.public_key, nonce, other.prove(nonce))  # claims my id with its key
    with pytest.raises(ForgedNode, match="failed to sign"):
        verify_proof(me.node_id, me.public_key, nonce, me.prove(os.urandom(32)))  # replayed proof
    with pytest.raises(ForgedNode):
        verify_proof(me.node_id, b"short", nonce, b"")


@given(st.binary(max_size=40), st.binary(max_size=80))
def test_random_proofs_are_refused(key: bytes, sig: bytes) -> None:
    with pytest.raises(ForgedNode):
        verify_proof(node_id_of(key), key, b"nonce", sig)


def test_b64_round_trip() -> None:
    for data in (b"", b"\x00", os.urandom(33)):
        assert unb64(b64(data)) == data
