"""Control-API requests signed by a node's identity key (sans-IO core plus an httpx auth).

A trusted node grants leases only to requests signed by a paired key. Each signature covers the
method, path, a timestamp, a random nonce and the body's hash; the node refuses a timestamp
outside a short window and any nonce it has already seen within it, so a captured request cannot
be replayed.

    X-Hearth-Key: identity public key, base64url     X-Hearth-Time: unix seconds
    X-Hearth-Nonce: 16 random bytes, base64url       X-Hearth-Signature: Ed25519, base64url
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Generator, Mapping
from typing import Generic, Protocol, TypeVar

import httpx
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from hearth.errors import RefusedByPeer
from hearth.identity import NodeIdentity
from hearth.net import b64
from hearth.units import digits

CONTEXT = b"hearth-request\x00"
WINDOW_S = 30.0
HEADERS = ("x-hearth-key", "x-hearth-time", "x-hearth-nonce", "x-hearth-signature")
_B64_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
T = TypeVar("T")


class Unsigned(RefusedByPeer):
    """The request carries no valid signature of a paired node."""

    http_status = 401
    error_type = "permission_error"
    code = "unsigned_request"


class NotPaired(RefusedByPeer):
    """The request is signed by a key this node has not paired with (or has unpaired)."""

    http_status = 403
    error_type = "permission_error"
    code = "not_paired"


def message(method: str, path: str, stamp: str, nonce: str, body: bytes) -> bytes:
    head = f"{method.upper()}\n{path}\n{stamp}\n{nonce}\n".encode()
    return CONTEXT + head + hashlib.sha256(body).digest()


def sign(identity: NodeIdentity, method: str, path: str, body: bytes, now: float | None = None,
         nonce: bytes | None = None) -> dict[str, str]:
    stamp = str(int(time.time() if now is None else now))
    nonce_s = b64.encode(nonce if nonce is not None else os.urandom(16))
    sig = identity.signing_key.sign(message(method, path, stamp, nonce_s, body)).signature
    return {"x-hearth-key": b64.encode(identity.public_key), "x-hearth-time": stamp, "x-hearth-nonce": nonce_s,
            "x-hearth-signature": b64.encode(bytes(sig))}


def _decode(value: str, size: int, what: str) -> bytes:
    try:
        if not _B64_RE.match(value):
            raise ValueError(value)
        raw = b64.decode(value)
    except ValueError as exc:
        raise Unsigned(f"The {what} header is not base64url.") from exc
    if len(raw) != size:
        raise Unsigned(f"The {what} header is not {size} bytes.")
    return raw


class NonceStore(Protocol):
    """Where a Verifier remembers the nonces it admitted. In memory for one process; a service run
    as several processes behind one address shares one (the coordinator's is in its database)."""

    def remember(self, nonce: str, until: float, now: float) -> bool:
        """Record `nonce` until `until`; False when it is already recorded (a replay). Entries
        past their `until` may be forgotten."""
        ...


class MemoryNonces:
    """Nonces in this process, forgotten once past their time (thread-safe)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def remember(self, nonce: str, until: float, now: float) -> bool:
        with self._lock:
            self._seen = {n: t for n, t in self._seen.items() if t >= now}
            if nonce in self._seen:
                return False
            self._seen[nonce] = until
            return True


class Verifier(Generic[T]):
    """Checks signed requests against the paired keys; remembers nonces for the window (in
    `nonces`: this process's memory unless a shared store is given)."""

    def __init__(self, lookup: Callable[[str], T | None], window: float = WINDOW_S,
                 nonces: NonceStore | None = None) -> None:
        self.lookup = lookup
        """identity key (base64url) -> the paired peer, or None."""
        self.window = window
        self.nonces: NonceStore = nonces if nonces is not None else MemoryNonces()

    def verify(self, method: str, path: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> T:
        now = time.time() if now is None else now
        values = [headers.get(h) for h in HEADERS]
        if any(v is None for v in values):
            raise Unsigned("This node serves paired peers only: the request is not signed. Pair with `hearth pair`.")
        key_s, stamp, nonce_s, sig_s = (str(v) for v in values)
        key = _decode(key_s, 32, "X-Hearth-Key")
        _decode(nonce_s, 16, "X-Hearth-Nonce")
        signature = _decode(sig_s, 64, "X-Hearth-Signature")
        if not digits(stamp) or len(stamp) > 12:
            raise Unsigned("The X-Hearth-Time header is not a unix time.")
        if abs(now - int(stamp)) > self.window:
            raise Unsigned(f"The request's time is more than {self.window:.0f} s from this node's clock; "
                           "check both machines' clocks.")
        try:
            VerifyKey(key).verify(message(method, path, stamp, nonce_s, body), signature)
        except (BadSignatureError, ValueError) as exc:
            raise Unsigned("The request's signature does not verify.") from exc
        peer = self.lookup(b64.encode(key))
        if peer is None:
            raise NotPaired("This node has not paired with the key that signed the request.")
        if not self.nonces.remember(nonce_s, now + 2 * self.window, now):
            raise Unsigned("This request was already received (replayed nonce).")
        return peer


class SignedAuth(httpx.Auth):
    """Signs every request an httpx client sends (to agents that ignore it, too)."""

    requires_request_body = True

    def __init__(self, identity: NodeIdentity) -> None:
        self.identity = identity

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(sign(self.identity, request.method, request.url.path, request.content))
        yield request
