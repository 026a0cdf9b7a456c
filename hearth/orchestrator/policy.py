"""How far a model may reach beyond this machine, assembled from flags, settings and saved peers."""

from __future__ import annotations

from dataclasses import dataclass

from hearth.discovery.static import static_peers
from hearth.errors import InvalidRequest
from hearth.radius import Radius
from hearth.settings import Settings
from hearth.units import parse_size


@dataclass(frozen=True)
class PoolPolicy:
    """How far a model may reach beyond this machine."""

    radius: Radius = Radius.HOUSEHOLD
    """MACHINE keeps every model on this machine; HOUSEHOLD pools with LAN nodes when a model does
    not fit; TRUSTED also with paired peers (through WireGuard or sealed tunnels)."""
    force: bool = False
    """Pool even when the model fits here (--pool)."""
    static_peers: tuple[str, ...] = ()
    discover_wait: float = 2.0
    max_memory: int | None = None
    """Cap on what hearth may use of this machine."""


def pool_policy(settings: Settings, radius: Radius, force: bool = False, peers: list[str] | None = None,
                max_memory: str | None = None) -> PoolPolicy:
    """The policy for this run: the given peers plus those saved by `hearth node --peer`."""
    if force and radius is Radius.MACHINE:
        raise InvalidRequest("--pool and --radius machine contradict each other.")
    statics = static_peers(settings.home, peers or [])
    cap = parse_size(max_memory) if max_memory else None
    return PoolPolicy(radius=radius, force=force, static_peers=tuple(statics), max_memory=cap)
