"""The radii, nearest first: this machine, the household's nodes (mDNS), the paired peers
(reachable or not), the public swarm. The radius the server reaches to is marked."""

from __future__ import annotations

from dataclasses import dataclass, replace

from textual.content import Content
from textual.widget import Widget

from hearth.node_api.status import ServeStatus
from hearth.tui.source import Circle, CirclePeer
from hearth.tui.widgets.palette import BAD, MUTED, OK
from hearth.tui.widgets.text import credits, fit

RADII = ("machine", "household", "trusted", "public")
SHOWN = 4
"""Peers named per line; the rest are counted."""


@dataclass(frozen=True)
class RadiiFacts:
    status: ServeStatus | None
    problem: str | None
    circle: Circle | None
    now: float


def _peers(peers: list[CirclePeer], what: str) -> list[tuple[str, str] | str]:
    if not peers:
        return [(f"none {what}", MUTED)]
    parts: list[tuple[str, str] | str] = [f"{len(peers)} {what}: "]
    for peer in peers[:SHOWN]:
        parts += [peer.name, ("✓ " if peer.reachable else "✗ ", OK if peer.reachable else BAD)]
    if len(peers) > SHOWN:
        parts.append((f"+{len(peers) - SHOWN}", MUTED))
    return parts


def _uptime(status: ServeStatus, now: float) -> str:
    if status.started_at is None:
        return ""
    s = max(int(now - status.started_at), 0)  # whole minutes: the panel is not redrawn every second
    return f"  up {s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"  up {s // 60}m"


def _machine(facts: RadiiFacts) -> list[tuple[str, str] | str]:
    status = facts.status
    if status is None:
        return [("not connected", BAD), (f"  {facts.problem or 'connecting…'}", MUTED)]
    model = status.model or "no model loaded"
    where = "pooled" if status.pooled else "here"
    pid = f"  pid {status.engine_pid}" if status.engine_pid else ""
    return [(model, "bold"), (f"  {where}{pid}{_uptime(status, facts.now)}  v{status.version}", MUTED)]


def _public(status: ServeStatus | None) -> list[tuple[str, str] | str]:
    if status is None or not status.public.enabled:
        return [("off", MUTED)]
    p = status.public
    ceiling = "none" if p.max_price is None else f"{p.max_price}/M"
    return [("connected" if p.connected else "not connected", OK if p.connected else BAD),
            f"  balance {credits(p.balance)}  ceiling {ceiling}"]


def with_servers_nodes(circle: Circle, status: ServeStatus | None) -> Circle:
    """The circle this machine found, plus the nodes the server names that it did not (a server's
    --peer nodes, or ones reached by a tunnel this machine has not): the radii count both."""
    if status is None:
        return circle
    seen = {p.node_id for p in circle.peers}
    more = tuple(CirclePeer(n.name, n.node_id, n.radius, n.address or "",
                            "ready" if n.state in ("up", "holding", "draining") else n.state, n.free_bytes)
                 for n in status.nodes if n.radius != "machine" and n.node_id not in seen)
    return replace(circle, peers=circle.peers + more) if more else circle


def draw(facts: RadiiFacts) -> Content:
    reach = facts.status.radius if facts.status else None
    circle = with_servers_nodes(facts.circle, facts.status) if facts.circle else None
    household = _peers(circle.of_radius("household"), "found") if circle else [("looking (mDNS)…", MUTED)]
    trusted = _peers(circle.of_radius("trusted"), "paired") if circle else [("reading the pairings…", MUTED)]
    rows = zip(RADII, (_machine(facts), household, trusted, _public(facts.status)), strict=True)
    lines = []
    for radius, parts in rows:
        inside = reach is not None and RADII.index(radius) <= RADII.index(reach)
        mark = ("▸ ", OK) if inside else "  "
        lines.append(Content.assemble(mark, (fit(radius, 10), "bold" if inside else MUTED), *parts))
    return Content("\n").join(lines)


class RadiiPanel(Widget):
    DEFAULT_CSS = "RadiiPanel { height: 4; }"

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 (Textual's name)
        super().__init__(id=id)
        self.facts = RadiiFacts(None, None, None, 0.0)

    def show(self, facts: RadiiFacts) -> None:
        if facts != self.facts:
            self.facts = facts
            self.refresh()

    def render(self) -> Content:
        return draw(self.facts)
