"""The dashboard's picture of the pool, from what the pool already holds: the layer map of the
loaded model (from its plan) and the circle's nodes (from the last survey and the trust store).
Pure functions: no sockets, no files; the status route gathers their inputs.
"""

from __future__ import annotations

from collections.abc import Iterable

from hearth.node_api.status import MAX_NODES, LayerMap, LayerSpan, NodeView
from hearth.orchestrator.peers import Peer
from hearth.orchestrator.planner import Plan
from hearth.pairing.trust import TrustedPeer
from hearth.radius import Radius


def layer_map(model: str, n_layers: int, plan: Plan | None, here_id: str, here_name: str) -> LayerMap:
    """Spans in layer order. llama.cpp gives layers to devices in the plan's order (remote
    servers first, this machine last) and keeps the output head with the last layers, so the
    output node is the one holding the last span. Without a plan: one local span of every layer."""
    if plan is None:
        spans = [LayerSpan(node_id=here_id, name=here_name, first=0, count=n_layers, local=True)]
    else:
        spans, first = [], 0
        for a in plan.assignments:
            if a.layers <= 0:
                continue
            node_id, name = (here_id, here_name) if a.node.local else (a.node.node_id[:64], a.node.name[:128])
            spans.append(LayerSpan(node_id=node_id, name=name, first=first, count=a.layers, local=a.node.local))
            first += a.layers
    return LayerMap(model=model[:256], n_layers=n_layers, spans=spans[:MAX_NODES],
                    output_node=spans[-1].node_id if spans else None)


def _via(peer: Peer) -> str:
    if peer.radius is Radius.TRUSTED:
        return "sealed" if peer.secret is not None else "wireguard"
    return "static" if peer.source == "static" else "lan"


def peer_view(peer: Peer, holding: dict[str, int], lost: set[str]) -> NodeView:
    """A node that answered the last survey; `holding` counts this server's leases per node id.
    `address` is its agent as this server reaches it, where a dashboard reads the node itself: its
    budget and what is leased out of it are the node's to tell (the survey's record has only what
    was free then, so lent is left unknown here rather than shown as the device's total)."""
    r = peer.record
    node_id = r.node_id
    state = "lost" if node_id in lost else "holding" if holding.get(node_id) else "up"
    return NodeView(node_id=node_id[:64], name=r.name[:128],
                    radius="trusted" if peer.radius is Radius.TRUSTED else "household",
                    via=_via(peer), device=(r.devices[0].name if r.devices else "")[:256], state=state,  # type: ignore[arg-type]
                    free_bytes=r.free_bytes, leases=holding.get(node_id, 0),
                    address=str(peer.agent)[:256])


def node_views(here: NodeView, found: Iterable[Peer], paired: Iterable[TrustedPeer], holding: dict[str, int],
               lost: set[str]) -> list[NodeView]:
    """This machine, the nodes that answered, then paired peers that did not (unreachable): what
    `hearth peers` shows, without a new survey."""
    views = [here]
    seen = {here.node_id}
    for peer in found:
        if peer.record.node_id not in seen:
            seen.add(peer.record.node_id)
            views.append(peer_view(peer, holding, lost))
    for t in paired:
        if t.node_id not in seen:
            seen.add(t.node_id)
            views.append(NodeView(node_id=t.node_id[:64], name=t.info.name[:128], radius="trusted",
                                  state="lost" if t.node_id in lost else "unreachable"))
    return views[:MAX_NODES]
