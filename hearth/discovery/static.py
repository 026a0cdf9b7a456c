"""Peers given by hand (`--peer HOST:PORT`) where mDNS cannot reach, kept in the data folder."""

from __future__ import annotations

import json
from pathlib import Path

from hearth.errors import InvalidRequest
from hearth.net.endpoint import Endpoint
from hearth.ports import DEFAULT_NODE_PORT


def save_static_peers(home: Path, peers: list[str]) -> None:
    """Static peers given to `hearth node --peer` are used by orchestrators sharing this data folder."""
    path = home / "peers.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sorted(set(peers))))


def load_static_peers(home: Path) -> list[str]:
    path = home / "peers.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return [str(p) for p in data] if isinstance(data, list) else []


def check_peer(spec: str) -> str:
    """A static peer as HOST:PORT (the node agent's control API), written the one way."""
    try:
        return str(Endpoint.parse(spec))
    except ValueError as exc:
        raise InvalidRequest(f"--peer {exc}; e.g. 192.168.1.20:{DEFAULT_NODE_PORT}.") from None
