"""Paired peers, kept 0600 in the data folder: who they are, their keys, where they live."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from hearth.errors import HearthError
from hearth.net import b64
from hearth.pairing.exchange import PairingFailed, PairingInfo


class PeerNotPaired(HearthError):
    """No paired peer by that name or node id."""

    http_status = 404
    error_type = "invalid_request_error"
    code = "peer_not_paired"
    exit_code = 3


@dataclass(frozen=True)
class TrustedPeer:
    info: PairingInfo
    paired_at: float
    secret: str
    """Pairing secret (base64url) that keys the sealed fallback tunnel; never shown."""
    last_seen: float | None = None

    @property
    def node_id(self) -> str:
        return self.info.node_id

    @property
    def secret_bytes(self) -> bytes:
        return b64.decode(self.secret)

    def to_json(self) -> dict[str, Any]:
        return {"info": asdict(self.info), "paired_at": self.paired_at, "secret": self.secret,
                "last_seen": self.last_seen}

    def public(self) -> dict[str, Any]:
        """What `hearth peers --json` shows: no secret."""
        return {"node_id": self.node_id, "name": self.info.name, "tunnel_address": self.info.tunnel_address,
                "endpoints": list(self.info.endpoints), "agent_port": self.info.agent_port,
                "paired_at": self.paired_at, "last_seen": self.last_seen}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrustedPeer:
        return cls(PairingInfo.parse(data["info"]), float(data["paired_at"]), str(data["secret"]),
                   float(data["last_seen"]) if data.get("last_seen") is not None else None)


class TrustStore:
    def __init__(self, home: Path) -> None:
        self.path = home / "trust" / "peers.json"

    def stamp(self) -> tuple[int, int]:
        """Changes whenever the store is written (to watch it cheaply)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

    def all(self) -> list[TrustedPeer]:
        if not self.path.exists():
            return []
        try:
            rows = json.loads(self.path.read_text())
            return [TrustedPeer.from_json(r) for r in rows]
        except (ValueError, KeyError, TypeError, PairingFailed) as exc:
            raise HearthError(f"{self.path} is damaged ({exc}); move it away and pair again.") from exc

    def _update(self, change: Callable[[list[TrustedPeer]], list[TrustedPeer]]) -> None:
        """Read, change and replace the store under an exclusive lock: a running node noting a
        peer as seen must never write back a peer that `hearth unpair` removed meanwhile."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = os.open(self.path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            peers = change(self.all())
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump([p.to_json() for p in peers], f, indent=2)
            os.replace(tmp, self.path)
        finally:
            os.close(lock)  # releases the lock

    def add(self, info: PairingInfo, secret: bytes, now: float | None = None) -> TrustedPeer:
        """Pairing again with the same identity replaces the old entry (new keys, new address)."""
        peer = TrustedPeer(info, time.time() if now is None else now, b64.encode(secret))
        self._update(lambda peers: [p for p in peers if p.node_id != info.node_id] + [peer])
        return peer

    def find(self, name_or_id: str) -> TrustedPeer:
        """By node id or the name it paired under; failing those, by its host name (a peer paired
        as its node's name, say "den", is still known by the host name people see elsewhere)."""
        peers = self.all()
        matches = [p for p in peers if name_or_id in (p.node_id, p.info.name)]
        if not matches:
            matches = [p for p in peers if p.info.hostname and p.info.hostname == name_or_id]
        if len(matches) != 1:
            known = ", ".join(f"{p.info.name} ({p.node_id})" for p in peers) or "none"
            what = "is ambiguous" if matches else "is not paired"
            raise PeerNotPaired(f"{name_or_id!r} {what}; paired peers: {known}.")
        return matches[0]

    def remove(self, name_or_id: str) -> TrustedPeer:
        peer = self.find(name_or_id)
        self._update(lambda peers: [p for p in peers if p.node_id != peer.node_id])
        return peer

    def by_identity_key(self, key_b64: str) -> TrustedPeer | None:
        return next((p for p in self.all() if p.info.identity_key == key_b64), None)

    def seen(self, *node_ids: str, now: float | None = None) -> None:
        """Note these peers as seen, in one write."""
        when = time.time() if now is None else now
        self._update(lambda peers: [replace(p, last_seen=when) if p.node_id in node_ids else p for p in peers])
