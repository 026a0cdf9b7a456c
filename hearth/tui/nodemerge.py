"""The node list the dashboard shows, from three sources, without I/O: the nodes the server's
status names, the circle's peers it does not (a server whose model fits here never surveyed its
pool), and what each node's own agent said when the dashboard last asked it (`GET /v1/node`):
its budget (lent), what is leased out of it (used), the rest (free), its leases, the time it took
to answer (RTT), and whether it drains. The node knows its budget; the server's survey does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from hearth.net.endpoint import Endpoint
from hearth.node_api.status import MAX_NODES, NodeView, ServeStatus
from hearth.node_api.wire import NodeStatus
from hearth.tui.source import Circle, CirclePeer

State = Literal["up", "holding", "draining", "lost", "unreachable", "unknown"]
WATCH_MAX = 16
"""The most nodes a dashboard reads and follows at once."""


@dataclass(frozen=True)
class Target:
    """A node to read: its id (what the status and the circle call it), name and agent HOST:PORT."""

    node_id: str
    name: str
    address: str


@dataclass(frozen=True)
class Reading:
    """What one `GET /v1/node` gave: the node's status and its round trip, or why there is none."""

    status: NodeStatus | None = None
    rtt_ms: float | None = None
    problem: str | None = None


def _endpoint(address: str | None) -> str | None:
    """HOST:PORT as a URL can hold it, or None (no port, junk)."""
    if not address:
        return None
    try:
        return str(Endpoint.parse(address))
    except ValueError:
        return None


def targets(status: ServeStatus | None, circle: Circle | None, limit: int = WATCH_MAX) -> list[Target]:
    """The nodes the status names (not this machine, even when the circle finds its own agent),
    then the circle's reachable peers, each once, with an agent address; at most `limit`."""
    found: dict[str, Target] = {}
    here = {n.node_id for n in status.nodes if n.radius == "machine"} if status else set()
    named = [(n.node_id, n.name, n.address) for n in status.nodes if n.radius != "machine"] if status else []
    peers = [(p.node_id, p.name, p.address) for p in circle.peers if p.reachable] if circle else []
    for node_id, name, address in named + peers:
        endpoint = _endpoint(address)
        if endpoint is not None and node_id not in found and node_id not in here and len(found) < limit:
            found[node_id] = Target(node_id, name, endpoint)
    return list(found.values())


def draining(node: NodeStatus) -> bool:
    """A drained node says only that it is full (its policy refuses every lease). Full while a
    slot and a minimum lease of memory are left can only mean it drains."""
    budget, leased, slots, least = node.budget, node.leased_bytes, node.max_leases, node.min_lease_bytes
    if node.full != "1" or budget is None or leased is None or slots is None or least is None:
        return False
    return len(node.leases) < slots and budget - leased >= least


def judge(target: Target, node: NodeStatus, rtt_ms: float) -> Reading:
    """An answer from the right node is a reading; one from another node id is a problem."""
    if node.id != target.node_id:
        return Reading(problem=f"{target.address} answers as another node ({node.id[:12]})")
    return Reading(node, float(round(rtt_ms)))  # whole ms: what is shown, so a redraw only when it changes


def read_view(view: NodeView, reading: Reading | None) -> NodeView:
    """`view` with what the node itself said (nothing: as it was)."""
    if reading is None:
        return view
    node = reading.status
    if node is None:
        state: State = "lost" if view.state == "lost" else "unreachable"
        return view.model_copy(update={"state": state, "rtt_ms": None})
    update: dict[str, object] = {"leases": len(node.leases), "rtt_ms": reading.rtt_ms}
    if node.budget is not None:
        update["lent_bytes"] = node.budget
    if node.leased_bytes is not None:
        update["used_bytes"] = node.leased_bytes
    if node.budget is not None and node.leased_bytes is not None:
        update["free_bytes"] = max(0, node.budget - node.leased_bytes)
    if not view.device and node.devices:
        update["device"] = node.devices[0].name[:256]
    if draining(node):
        update["state"] = "draining"
    elif view.state in ("unreachable", "unknown", "draining"):
        update["state"] = "up"
    return view.model_copy(update=update)


def circle_view(peer: CirclePeer) -> NodeView:
    """A peer of the circle the status does not list, in the circle's words."""
    state: State = "up" if peer.reachable else "unreachable" if peer.state == "unreachable" else "unknown"
    radius: Literal["trusted", "household"] = "trusted" if peer.radius == "trusted" else "household"
    return NodeView(node_id=peer.node_id[:64], name=peer.name[:128], radius=radius, state=state,
                    free_bytes=peer.free_bytes if peer.free_bytes is None or peer.free_bytes >= 0 else None,
                    address=_endpoint(peer.address) if peer.reachable else None)


def merge(nodes: Sequence[NodeView], circle: Circle | None, readings: Mapping[str, Reading]) -> list[NodeView]:
    """The status's nodes, then the circle's peers it does not list, each with its reading."""
    listed = list(nodes)
    seen = {n.node_id for n in listed}
    for peer in circle.peers if circle else ():
        if peer.node_id[:64] not in seen:
            seen.add(peer.node_id[:64])
            listed.append(circle_view(peer))
    return [read_view(view, readings.get(view.node_id)) for view in listed[:MAX_NODES]]
