"""The radii count the nodes the server names as well as the circle this machine found."""

from __future__ import annotations

from hearth.node_api.status import NodeView, ServeStatus
from hearth.tui.source import Circle, CirclePeer
from hearth.tui.widgets.radii import RadiiFacts, draw, with_servers_nodes


def status(*nodes: NodeView) -> ServeStatus:
    here = NodeView(node_id="n-here", name="kitchen", radius="machine", state="holding")
    return ServeStatus(version="0", radius="household", nodes=[here, *nodes])


def test_a_servers_peer_nodes_count_in_the_household_even_when_mdns_found_none() -> None:
    attic = NodeView(node_id="n-attic", name="attic", radius="household", state="holding", address="127.0.0.1:1")
    gone = NodeView(node_id="n-gone", name="cellar", radius="household", state="lost")
    circle = with_servers_nodes(Circle(), status(attic, gone))
    assert [(p.name, p.reachable) for p in circle.of_radius("household")] == [("attic", True), ("cellar", False)]
    text = draw(RadiiFacts(status(attic, gone), None, Circle(), 0.0)).plain
    assert "2 found: attic✓ cellar✗" in text


def test_a_node_in_both_is_counted_once_and_the_circles_word_wins() -> None:
    den = CirclePeer("den", "n-den", "household", "192.0.2.2:11436", "full")
    seen = NodeView(node_id="n-den", name="den", radius="household", state="up")
    circle = with_servers_nodes(Circle(peers=(den,)), status(seen))
    assert circle.peers == (den,)
    assert with_servers_nodes(Circle(), None) == Circle()
