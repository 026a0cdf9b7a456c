"""Per node: name, device, memory lent / used / free as a bar, leases, RTT, state."""

from __future__ import annotations

from textual.content import Content
from textual.widget import Widget

from hearth.node_api.status import NodeView
from hearth.tui.widgets.palette import BAD, MUTED, OK, WARN
from hearth.tui.widgets.text import bar, fit, millis, size

STATE_STYLE = {"up": OK, "holding": OK, "draining": WARN, "lost": BAD, "unreachable": BAD, "unknown": MUTED}
BAR = 8


def node_line(node: NodeView) -> list[tuple[str, str] | str]:
    """One row; the bar is the node's budget, filled by what is leased out of it."""
    used, free = bar(node.used_bytes, node.lent_bytes, BAR)
    memory = f"{size(node.used_bytes)}/{size(node.lent_bytes)}"
    rtt = "local" if node.via == "local" else millis(node.rtt_ms)
    return [fit(node.name, 14), " ", (fit(node.device or "-", 12), MUTED), " ",
            ("█" * used, WARN), ("░" * free if used + free else fit("", BAR), MUTED), " ",
            fit(memory, 10), " ", fit(size(node.free_bytes), 6), " ",
            fit(str(node.leases), 2), " ", fit(rtt, 6), " ", (node.state, STATE_STYLE.get(node.state, MUTED))]


def draw(nodes: list[NodeView]) -> Content:
    header = Content.styled(
        fit("node", 14) + " " + fit("device", 12) + " " + fit("memory used/lent", BAR + 11) + " " + fit("free", 6)
        + " " + fit("ls", 2) + " " + fit("rtt", 6) + " state", "bold")
    if not nodes:
        return Content.assemble(header, "\n", ("no nodes: this server runs on this machine alone", MUTED))
    rows = [Content.assemble(*node_line(n)) for n in nodes]
    return Content("\n").join([header, *rows])


class NodesView(Widget):
    DEFAULT_CSS = "NodesView { height: auto; }"

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 (Textual's name)
        super().__init__(id=id)
        self.nodes: list[NodeView] = []

    def show(self, nodes: list[NodeView]) -> None:
        if nodes != self.nodes:
            grew = len(nodes) != len(self.nodes)
            self.nodes = nodes
            self.refresh(layout=grew)  # a new layout of the whole screen only when its height changes

    def render(self) -> Content:
        return draw(self.nodes)

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        return 1 + max(len(self.nodes), 1)
