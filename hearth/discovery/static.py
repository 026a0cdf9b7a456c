"""Peers given by hand (`--peer HOST:PORT`) where mDNS cannot reach, kept in the data folder."""

from __future__ import annotations

import json
from pathlib import Path

from hearth.net.endpoint import option_endpoint
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


def static_peers(home: Path, given: list[str]) -> list[str]:
    """The peers given now (checked) and those saved by `hearth node --peer`."""
    return [check_peer(p) for p in given] + load_static_peers(home)


def check_peer(spec: str) -> str:
    """A static peer as HOST:PORT (the node agent's control API), written the one way."""
    return str(option_endpoint(spec, "--peer", DEFAULT_NODE_PORT))
