"""The pairing exchange as two sans-IO state machines (no sockets; tests drive them directly).

    guest -> host   {"t": "pake", "nameplate": N, "msg": SPAKE2_B}
    host  -> guest  {"t": "pake", "msg": SPAKE2_A, "confirm": MAC_A}
    guest -> host   {"t": "confirm", "confirm": MAC_B, "box": sealed guest info}
    host  -> guest  {"t": "box", "box": sealed host info}

The code is the SPAKE2 password. Each side proves it derived the same key (MAC over the
transcript) before anything is revealed; the identities travel sealed under a key derived from
it. A code allows one attempt: once the host has answered a well-formed key-exchange message
(a point on the curve, for this nameplate) the attempt is spent, and any failure after that burns
the code, so a wrong guess costs the guesser the code. Anything short of that (silence, garbage,
a wrong nameplate, bytes that are not a point) is NotAnAttempt: the host has revealed nothing
that could test a guess, so the code stays usable. Fresh SPAKE2 randomness on each side makes a
replayed transcript fail. Both sides show the same short verifier for people to compare.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox
from spake2 import SPAKE2_A, SPAKE2_B
from spake2.ed25519_basic import NotOnCurve
from spake2.ed25519_group import Ed25519Group
from spake2.spake2 import SPAKEError

from hearth.errors import HearthError, LinkFailed
from hearth.identity import node_id_of
from hearth.net import b64
from hearth.net.endpoint import Endpoint
from hearth.pairing.codes import WORDS
from hearth.ports import DEFAULT_NODE_PORT
from hearth.tunnel.wireguard import tunnel_address

DEFAULT_TTL_S = 300.0
ID_A, ID_B = b"hearth-pair-host", b"hearth-pair-guest"
_NAME_RE = re.compile(r"^[\w .'-]{1,63}$")


class PairingFailed(HearthError):
    """The pairing did not complete; the message says why (wrong code, expired, malformed) and what to try."""

    http_status = 403
    error_type = "permission_error"
    code = "pairing_failed"
    exit_code = 7


class PairingUnreachable(PairingFailed, LinkFailed):
    """The other machine or the rendezvous could not be reached, or hung up: check the address and try again."""


class NotAnAttempt(PairingFailed):
    """A connection or message that never reached the key exchange: the code is still usable."""


@dataclass(frozen=True)
class PairingInfo:
    """What each side tells the other once the code is proven."""

    name: str
    identity_key: str
    """Ed25519 public key, base64url."""
    wireguard_key: str
    """WireGuard public key, base64 (32 bytes)."""
    tunnel_address: str
    endpoints: tuple[str, ...]
    """host:port of the WireGuard socket; the host is also where the agent answers without WireGuard."""
    agent_port: int = DEFAULT_NODE_PORT
    hostname: str = ""
    """The machine's host name, so `hearth unpair` accepts it besides `name` ("" from older peers)."""

    @property
    def node_id(self) -> str:
        return node_id_of(b64.decode(self.identity_key))

    @classmethod
    def parse(cls, data: Any) -> PairingInfo:
        if not isinstance(data, dict):
            raise PairingFailed("The peer's details are not an object.")
        try:
            info = cls(str(data["name"]), str(data["identity_key"]), str(data["wireguard_key"]),
                       str(data["tunnel_address"]), tuple(str(e) for e in data["endpoints"]),
                       data["agent_port"], str(data.get("hostname") or ""))
        except (KeyError, TypeError) as exc:
            raise PairingFailed(f"The peer's details lack a field: {exc}") from exc
        if type(info.agent_port) is not int or not 0 < info.agent_port < 65536:
            raise PairingFailed("The peer's agent port is not a port number.")
        if not _NAME_RE.match(info.name):
            raise PairingFailed("The peer's name is not 1-63 letters, digits, spaces or . ' - _")
        if info.hostname and not _NAME_RE.match(info.hostname):
            raise PairingFailed("The peer's host name is not 1-63 letters, digits, spaces or . ' - _")
        for label, key in (("identity", info.identity_key), ("WireGuard", info.wireguard_key)):
            try:
                raw = b64.decode(key)
            except ValueError as exc:
                raise PairingFailed(f"The peer's {label} key is not base64.") from exc
            if len(raw) != 32:
                raise PairingFailed(f"The peer's {label} key is not 32 bytes.")
        if len(info.endpoints) > 8 or any(len(e) > 64 for e in info.endpoints) or len(info.tunnel_address) > 64:
            raise PairingFailed("The peer's addresses are too long or too many.")
        # Derived from the identity key, so no peer can claim another's address in the circle.
        if info.tunnel_address != tunnel_address(b64.decode(info.identity_key)):
            raise PairingFailed("The peer's tunnel address is not the one its identity key gives.")
        for endpoint in info.endpoints:
            try:
                Endpoint.parse(endpoint, ip=True)
            except ValueError as exc:
                raise PairingFailed(f"The peer's endpoint is not IP:PORT: {exc}") from exc
        return info


def _field(msg: Any, name: str) -> bytes:
    if not isinstance(msg, dict) or not isinstance(msg.get(name), str) or len(msg[name]) > 4096:
        raise PairingFailed(f"Malformed pairing message: no {name!r}.")
    try:
        return b64.decode(msg[name])
    except ValueError as exc:
        raise PairingFailed(f"Malformed pairing message: {name!r} is not base64.") from exc


SPAKE_MSG_LEN = 33  # a side byte and a compressed Ed25519 point


def _finish(spake: SPAKE2_A | SPAKE2_B, theirs: bytes, who: str) -> bytes:
    if len(theirs) != SPAKE_MSG_LEN:
        raise PairingFailed(f"The {who}'s key-exchange message is malformed.")
    try:
        return bytes(spake.finish(theirs))
    except (SPAKEError, NotOnCurve, ValueError) as exc:  # bytes that are not a point on the curve
        raise PairingFailed(f"The {who}'s key-exchange message is malformed.") from exc


def check_pake(msg: Any, nameplate: int) -> bytes:
    """The guest's SPAKE2 message if `msg` is a real attempt at this nameplate, else NotAnAttempt.

    A real attempt is what SPAKE2 can test a password guess with: a point on the curve from
    the guest's side. The rendezvous checks this too, so nothing less ever reaches a host."""
    if not isinstance(msg, dict) or msg.get("t") != "pake":
        raise NotAnAttempt("Expected the guest's key-exchange message first; the code is still valid.")
    if msg.get("nameplate") != nameplate:
        raise NotAnAttempt("The guest asked for another nameplate; check the code's number.")
    try:
        theirs = _field(msg, "msg")
    except PairingFailed as exc:
        raise NotAnAttempt(exc.message) from exc
    if len(theirs) != SPAKE_MSG_LEN or theirs[:1] != b"B":
        raise NotAnAttempt("The guest's key-exchange message is malformed.")
    try:
        Ed25519Group.bytes_to_element(theirs[1:])
    except (NotOnCurve, ValueError, AssertionError) as exc:
        raise NotAnAttempt("The guest's key-exchange message is not a point on the curve.") from exc
    return theirs


def _subkey(key: bytes, label: str) -> bytes:
    return hashlib.blake2b(label.encode(), key=key, digest_size=32).digest()


def verifier(key: bytes, transcript: bytes) -> str:
    """Three words both people read aloud; equal only if both hold the same key and transcript."""
    digest = _subkey(key, "verifier") + hashlib.sha256(transcript).digest()
    h = hashlib.sha256(digest).digest()
    return "-".join(WORDS[b] for b in h[:3])


def _mac(key: bytes, side: bytes, transcript: bytes) -> bytes:
    return hmac.new(_subkey(key, "confirm"), side + transcript, hashlib.sha256).digest()


def _seal(key: bytes, info: PairingInfo) -> str:
    return b64.encode(bytes(SecretBox(_subkey(key, "box")).encrypt(json.dumps(asdict(info)).encode())))


def _open(key: bytes, box: bytes) -> PairingInfo:
    try:
        plain = SecretBox(_subkey(key, "box")).decrypt(box)
        return PairingInfo.parse(json.loads(plain))
    except (CryptoError, ValueError) as exc:
        raise PairingFailed("The peer's sealed details do not open: wrong key or tampering.") from exc


class PairingHost:
    """The side that printed the code and waits."""

    def __init__(self, code: str, nameplate: int, me: PairingInfo, now: float, ttl: float = DEFAULT_TTL_S) -> None:
        self.code, self.nameplate, self.me = code, nameplate, me
        self.expires = now + ttl
        self.state = "waiting"
        self.peer: PairingInfo | None = None
        self.verifier: str | None = None
        self.secret = b""
        """Shared by both sides once done: keys the sealed fallback tunnel (never sent)."""
        self._key = b""
        self._transcript = b""

    def receive(self, msg: Any, now: float) -> dict[str, Any]:
        """The reply to one guest message. Once an attempt is under way ('used'), any failure
        burns the code; NotAnAttempt never changes the state."""
        try:
            return self._receive(msg, now)
        except NotAnAttempt:
            raise
        except PairingFailed:
            if self.state == "used":
                self.state = "burned"
            raise

    def _receive(self, msg: Any, now: float) -> dict[str, Any]:
        kind = msg.get("t") if isinstance(msg, dict) else None
        if self.state in ("burned", "done") or (self.state == "used" and kind == "pake"):
            raise PairingFailed("This code was already used; run `hearth pair` again for a new one.")
        if now > self.expires:
            self.state = "burned"
            raise PairingFailed("This code has expired; run `hearth pair` again for a new one.")
        if self.state == "waiting":
            theirs = check_pake(msg, self.nameplate)
            spake = SPAKE2_A(self.code.encode(), idA=ID_A, idB=ID_B)
            mine = spake.start()
            try:
                self._key = _finish(spake, theirs, "guest")
            except PairingFailed as exc:  # check_pake let through a point spake2 refuses: nothing sent
                raise NotAnAttempt(exc.message) from exc
            self.state = "used"  # our answer lets the guest test one guess: the attempt is spent
            self._transcript = mine + theirs
            confirm = _mac(self._key, ID_A, self._transcript)
            return {"t": "pake", "msg": b64.encode(mine), "confirm": b64.encode(confirm)}
        if self.state == "used" and kind == "confirm":
            if not hmac.compare_digest(_field(msg, "confirm"), _mac(self._key, ID_B, self._transcript)):
                raise PairingFailed("Wrong code: the guest did not derive the same key. The code is burned.")
            self.peer = _open(self._key, _field(msg, "box"))
            self.verifier = verifier(self._key, self._transcript)
            self.secret = _subkey(self._key, "tunnel")
            self.state = "done"
            return {"t": "box", "box": _seal(self._key, self.me)}
        raise PairingFailed(f"Unexpected pairing message {str(kind)[:20]!r} in state {self.state}.")


class PairingGuest:
    """The side that typed the code."""

    def __init__(self, code: str, nameplate: int, me: PairingInfo) -> None:
        self.code, self.nameplate, self.me = code, nameplate, me
        self.state = "new"
        self.peer: PairingInfo | None = None
        self.verifier: str | None = None
        self.secret = b""
        self._spake = SPAKE2_B(code.encode(), idA=ID_A, idB=ID_B)
        self._mine = b""
        self._key = b""
        self._transcript = b""

    def start(self) -> dict[str, Any]:
        if self.state != "new":
            raise PairingFailed("This pairing already started.")
        self.state = "sent"
        self._mine = self._spake.start()
        return {"t": "pake", "nameplate": self.nameplate, "msg": b64.encode(self._mine)}

    def receive(self, msg: Any) -> dict[str, Any] | None:
        try:
            return self._receive(msg)
        except PairingFailed:
            self.state = "failed"
            raise

    def _receive(self, msg: Any) -> dict[str, Any] | None:
        kind = msg.get("t") if isinstance(msg, dict) else None
        if self.state == "sent" and kind == "pake":
            theirs = _field(msg, "msg")
            self._key = _finish(self._spake, theirs, "host")
            self._transcript = theirs + self._mine
            if not hmac.compare_digest(_field(msg, "confirm"), _mac(self._key, ID_A, self._transcript)):
                raise PairingFailed("Wrong code: the host derived another key. Check the code and ask for a new one.")
            self.state = "confirmed"
            return {"t": "confirm", "confirm": b64.encode(_mac(self._key, ID_B, self._transcript)),
                    "box": _seal(self._key, self.me)}
        if self.state == "confirmed" and kind == "box":
            self.peer = _open(self._key, _field(msg, "box"))
            self.verifier = verifier(self._key, self._transcript)
            self.secret = _subkey(self._key, "tunnel")
            self.state = "done"
            return None
        raise PairingFailed(f"Unexpected pairing message {str(kind)[:20]!r} in state {self.state}.")
