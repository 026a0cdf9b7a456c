"""A node's identity: an Ed25519 key pair kept 0600 in the data folder.

The node id is a short fingerprint of the public key, so an mDNS record can name a node but
only the holder of the key can prove to be it (signed challenge; discovery is only a hint).
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from hearth.errors import HearthError

PROOF_CONTEXT = b"hearth-node-proof\x00"
NODE_ID_LEN = 16


class ForgedNode(HearthError):
    """A node could not prove the identity it claims."""

    http_status = 403
    error_type = "permission_error"
    code = "forged_node"


def node_id_of(public_key: bytes) -> str:
    digest = hashlib.sha256(public_key).digest()
    return base64.b32encode(digest).decode().lower()[:NODE_ID_LEN]


@dataclass(frozen=True)
class NodeIdentity:
    signing_key: SigningKey

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def node_id(self) -> str:
        return node_id_of(self.public_key)

    def prove(self, nonce: bytes) -> bytes:
        return bytes(self.signing_key.sign(PROOF_CONTEXT + nonce).signature)

    @classmethod
    def load_or_create(cls, home: Path) -> NodeIdentity:
        path = home / "identity" / "node.key"
        if path.exists():
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)  # a key readable by others is repaired, not trusted blindly
            seed = path.read_bytes()
            if len(seed) != 32:
                raise HearthError(f"{path} is not a node key (32 bytes); move it away to make a new identity.")
            return cls(SigningKey(seed))
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = SigningKey.generate()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(key))
        return cls(key)


def verify_proof(claimed_id: str, public_key: bytes, nonce: bytes, signature: bytes) -> None:
    """Raise ForgedNode unless public_key hashes to claimed_id and signed our nonce."""
    if len(public_key) != 32 or node_id_of(public_key) != claimed_id:
        raise ForgedNode(f"Node {claimed_id!r} presented a key that is not its own; ignoring it.")
    try:
        VerifyKey(public_key).verify(PROOF_CONTEXT + nonce, signature)
    except (BadSignatureError, ValueError) as exc:
        raise ForgedNode(f"Node {claimed_id!r} failed to sign our challenge; ignoring it.") from exc
